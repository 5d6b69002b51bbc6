//! `ember-ci serve`: wires config, reporter, executor, scheduler, intake,
//! relays and the HTTP server, and stops them in order on SIGTERM/SIGINT.

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
use crate::logs::{LogStore, RetentionPolicy};
use crate::relay::Relays;
use crate::scheduler::{Scheduler, StatusOutbox};
use crate::webhook::{self, Intake};

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

    let reporter =
        Arc::new(Reporter::from_config(&config).context("setting up the GitHub client")?);
    let (outbox, outbox_task) = StatusOutbox::start(reporter.clone());

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

    let (scheduler, scheduler_task) = Scheduler::start(
        Arc::new(executor),
        outbox.clone(),
        logs.clone(),
        config.num_workers,
    );

    let (delivery_tx, delivery_rx) = mpsc::channel(DELIVERY_BACKLOG);
    let intake = Arc::new(Intake::new(
        config.gh_ember_secret.clone(),
        config.gh_repo.clone(),
        delivery_tx.clone(),
    ));
    let github = reporter.github().cloned().map(Arc::new);
    let dispatcher = Dispatcher::new(
        scheduler.clone(),
        config.clone(),
        outbox.clone(),
        github.clone(),
    );
    let dispatcher = tokio::spawn(dispatcher.run(delivery_rx));
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
    let stop_accepting = shutdown.clone();
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(async move { stop_accepting.cancelled().await })
        .run();
    let server = tokio::spawn(server);
    info!(%address, repo = %config.gh_repo, backends = config.backends.len(), workers = config.num_workers, "ember-ci listening");
    on_listening(address);

    shutdown.cancelled().await;
    info!("shutting down: no new deliveries; waiting for running jobs");
    drop(intake);
    let _ = server.await;
    // The relays hold senders of the dispatcher's channel: it ends after them.
    relays.stopped().await;
    let _ = dispatcher.await;
    scheduler.shutdown(config.shutdown_grace).await;
    let _ = scheduler_task.await;
    let _ = retention.await;
    let unsent = outbox.flush(STATUS_FLUSH_LIMIT).await;
    if unsent > 0 {
        warn!(unsent, "statuses not yet accepted by GitHub at exit");
    }
    drop(outbox);
    outbox_task.abort();
    info!("ember-ci stopped");
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
