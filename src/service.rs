//! `ember-ci serve`: wires config, journal, reporter, executor, scheduler,
//! intake, relays, log retention and the HTTP server, and stops them in
//! order on SIGTERM/SIGINT.
//!
//! Start: open the journal, post the statuses it kept, sweep leftover
//! containers, resume the jobs and re-dispatch the deliveries it kept, then
//! listen. Stop: answer 503 to deliveries while running jobs get
//! SHUTDOWN_GRACE to finish (then are cancelled), post the final statuses,
//! close the listener, and fold the journal's log into its file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use warp::Filter;

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::executor::Executor;
use crate::github::Reporter;
use crate::journal::{self, Journal};
use crate::logs::{LogStore, RetentionPolicy};
use crate::relay::Relays;
use crate::scheduler::{Recovery, Scheduler, StatusOutbox};
use crate::webhook::{self, Delivery, Event, Intake};

/// Deliveries accepted but not yet dispatched; beyond this the intake
/// answers 503 so GitHub or the relay retries later.
const DELIVERY_BACKLOG: usize = 1024;

/// How long a stopping service waits for final statuses to reach GitHub.
const STATUS_FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// Runs the service until `shutdown` is cancelled. `on_listening` gets the
/// bound address (WEB_PORT=0 picks a free port).
pub async fn serve(
    config: Config,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    for key in &config.obsolete_keys {
        warn!(key, "config key is obsolete and ignored");
    }
    let journal = open_journal(&config)?;
    warn_about_exposed_secrets(&config);

    let reporter =
        Arc::new(Reporter::from_config(&config).context("setting up the GitHub client")?);
    let (outbox, outbox_task, unsent) =
        StatusOutbox::start_journaled(reporter.clone(), journal.clone())
            .context("reading unsent statuses from the journal")?;
    if unsent > 0 {
        info!(unsent, "posting statuses an earlier run could not");
    }

    let executor = Executor::new(config.clone())
        .await
        .context("connecting to Podman")?;
    let swept = executor
        .sweep_leftovers()
        .await
        .context("removing containers left by an earlier run")?;
    if swept > 0 {
        info!(
            swept,
            "removed containers and volumes left by an earlier run"
        );
    }

    let listener = tokio::net::TcpListener::bind((config.web_addr, config.web_port))
        .await
        .with_context(|| format!("listening on {}:{}", config.web_addr, config.web_port))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let logs = LogStore::for_config(&config, Some(web_base_url(address)));
    // Prunes at start, then daily; stops with the service.
    let retention = tokio::spawn(crate::logs::run_retention(
        logs.clone(),
        RetentionPolicy::days(config.logs.retention_days),
        shutdown.clone(),
    ));

    let (scheduler, scheduler_task, recovery) = Scheduler::start_journaled(
        Arc::new(executor),
        outbox.clone(),
        logs.clone(),
        config.num_workers,
        journal.clone(),
    )
    .context("resuming jobs from the journal")?;
    log_recovery(&recovery);

    let (delivery_tx, delivery_rx) = mpsc::channel(DELIVERY_BACKLOG);
    let intake = Arc::new(
        Intake::new(
            config.gh_ember_secret.clone(),
            config.gh_repo.clone(),
            delivery_tx.clone(),
        )
        .with_journal(journal.clone()),
    );
    let github = reporter.github().cloned().map(Arc::new);
    let dispatcher = Dispatcher::new(
        scheduler.clone(),
        config.clone(),
        outbox.clone(),
        github.clone(),
    );
    let dispatcher = tokio::spawn(dispatcher.run(delivery_rx));
    // Before the server answers anyone, so they keep their place before new ones.
    redispatch_journaled(&journal, delivery_tx.clone()).await?;
    let relays = Relays::start(
        &config,
        intake.clone(),
        delivery_tx,
        github,
        shutdown.clone(),
    )
    .context("starting the smee relay")?;

    let web = crate::web::WebContext {
        config: config.clone(),
        scheduler: scheduler.clone(),
        logs: logs.clone(),
        outbox: outbox.clone(),
        intake: intake.clone(),
        smee: relays.smee_health(),
        shutdown: shutdown.clone(),
    };
    let routes = webhook::routes(intake.clone())
        .or(crate::web::routes(web))
        .recover(webhook::recover);
    // The listener stays open while jobs drain, so deliveries get a 503
    // (GitHub shows it; a relay retries) instead of a refused connection.
    let stop_listening = CancellationToken::new();
    let server_stopped = stop_listening.clone();
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(async move { server_stopped.cancelled().await })
        .run();
    let server = tokio::spawn(server);
    info!(%address, repo = %config.gh_repo, backends = config.backends.len(), workers = config.num_workers, "ember-ci listening");
    on_listening(address);

    shutdown.cancelled().await;
    info!(
        grace_secs = config.shutdown_grace.as_secs(),
        "shutting down: answering 503 to deliveries; waiting for running jobs"
    );
    intake.start_draining();
    // The relays hold senders of the dispatcher's channel (they stop on the
    // same token): the dispatcher ends after them.
    relays.stopped().await;
    // Deliveries acknowledged before the stop reach the scheduler first.
    let _ = dispatcher.await;
    scheduler.shutdown(config.shutdown_grace).await;
    let _ = scheduler_task.await;
    let _ = retention.await;
    let unsent = outbox.flush(STATUS_FLUSH_LIMIT).await;
    if unsent > 0 {
        warn!(
            unsent,
            "statuses not yet accepted by GitHub at exit; they are kept in the journal for the next start"
        );
    }
    drop(outbox);
    outbox_task.abort();
    stop_listening.cancel();
    let _ = server.await;
    if let Err(err) = journal.checkpoint() {
        warn!(error = %err, "cannot fold the journal's write-ahead log into its file");
    }
    info!("ember-ci stopped");
    Ok(())
}

/// Opens the journal in the state dir and forgets what is only history.
fn open_journal(config: &Config) -> anyhow::Result<Journal> {
    let journal = Journal::open(&config.state_dir).context("opening the journal")?;
    match journal.prune() {
        Ok(0) => {}
        Ok(pruned) => info!(pruned, "old deliveries and jobs dropped from the journal"),
        Err(err) => warn!(error = %err, "cannot prune the journal"),
    }
    Ok(journal)
}

/// Warns about config and state paths other users can read: they hold the
/// GitHub token, the webhook secret and the array's passwords.
fn warn_about_exposed_secrets(config: &Config) {
    for exposure in journal::permissions::exposed_paths(&config.dir, &config.state_dir) {
        warn!("secrets at rest: {exposure}");
    }
}

fn log_recovery(recovery: &Recovery) {
    if !recovery.is_empty() {
        info!(
            requeued = recovery.requeued.len(),
            resumed = recovery.resumed.len(),
            given_up = recovery.given_up.len(),
            duplicates = recovery.duplicates.len(),
            "resumed the jobs an earlier run left unfinished"
        );
    }
}

/// Hands the dispatcher the deliveries an earlier run acknowledged but did
/// not act on, oldest first. Their bodies were verified when they arrived.
async fn redispatch_journaled(
    journal: &Journal,
    dispatcher: mpsc::Sender<Delivery>,
) -> anyhow::Result<()> {
    let stored = journal
        .undispatched_deliveries()
        .context("reading undispatched deliveries from the journal")?;
    if !stored.is_empty() {
        info!(
            deliveries = stored.len(),
            "dispatching deliveries an earlier run accepted"
        );
    }
    for delivery in stored {
        match Event::parse(&delivery.event, &delivery.body) {
            Ok(event) => {
                let delivery = Delivery {
                    id: delivery.id,
                    event,
                    received_at: delivery.received_at,
                };
                dispatcher
                    .send(delivery)
                    .await
                    .context("the dispatcher stopped while re-dispatching deliveries")?;
            }
            Err(err) => {
                // It parsed when it arrived; only a changed parser gets here.
                warn!(delivery = %delivery.id, error = %err, "journaled delivery no longer parses; dropped");
                if let Err(err) = journal.mark_dispatched(&delivery.id) {
                    warn!(delivery = %delivery.id, error = %err, "cannot mark the delivery dispatched");
                }
            }
        }
    }
    Ok(())
}

/// Base URL of the local web UI, for Details links when logs are not
/// published elsewhere.
fn web_base_url(address: SocketAddr) -> String {
    if address.ip().is_unspecified() {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        format!("http://{host}:{}", address.port())
    } else {
        format!("http://{address}")
    }
}

/// Cancels the token on SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
        token.cancel();
    });
    Ok(())
}
