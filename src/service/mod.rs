//! `ember-ci serve`: [`start`] wires the journal, outbox, scheduler,
//! intake, dispatcher, relays, log retention and the HTTP server around the
//! parts it is given ([`Parts`]: the job runner, the status reporter and the
//! listener), in the manner of mini-redis's `server::run`: `main` passes the
//! executor, the GitHub reporter and WEB_ADDR:WEB_PORT ([`Parts::for_config`]);
//! tests pass a scripted runner, a reporter on the fake GitHub and a port-0
//! listener, and run the same service in process.
//!
//! Start: open the journal, post the statuses it kept, (the executor has
//! swept leftover containers), resume the jobs and re-dispatch the
//! deliveries it kept, then listen. Stop (when `shutdown` fires): answer 503
//! to deliveries while running jobs get SHUTDOWN_GRACE to finish (then are
//! cancelled), post the final statuses, close the listener, and fold the
//! journal's log into its file. Every task it spawns is awaited, and one
//! that panicked is reported.

mod context;

pub use context::job_context;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use warp::Filter;

use crate::config::Config;
use crate::dispatch::{DispatchPolicy, Dispatcher};
use crate::executor::Executor;
use crate::github::{Reporter, StatusOutbox};
use crate::journal::{self, Journal};
use crate::logs::{LogStore, Masker, Publisher, RetentionPolicy};
use crate::relay::Relays;
use crate::scheduler::{JobRunner, Recovery, Scheduler};
use crate::webhook::{self, Delivery, Event, Intake, Origin};

/// Deliveries accepted but not yet dispatched; beyond this the intake
/// answers 503 so GitHub or the relay retries later.
const DELIVERY_BACKLOG: usize = 1024;

/// How long a stopping service waits for final statuses to reach GitHub.
const STATUS_FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// The parts the service runs with, built by the caller.
pub struct Parts {
    /// Runs jobs: the executor, or a scripted runner in tests.
    pub runner: Arc<dyn JobRunner>,
    /// Where statuses go (and the GitHub client for comments and polls).
    pub reporter: Arc<Reporter>,
    /// The webhook's listener (WEB_ADDR:WEB_PORT).
    pub listener: TcpListener,
    /// The web UI's listener, on loopback (127.0.0.1:WEB_UI_PORT).
    pub ui_listener: TcpListener,
}

impl Parts {
    /// The real parts: the GitHub reporter (the console without GH_TOKEN),
    /// the executor on Podman with what an earlier run left swept away, and
    /// a listener on WEB_ADDR:WEB_PORT and one on 127.0.0.1:WEB_UI_PORT.
    pub async fn for_config(config: &Config) -> anyhow::Result<Parts> {
        let reporter = Arc::new(
            Reporter::from_config(&config.github).context("setting up the GitHub client")?,
        );
        let executor = Executor::new(config.executor.clone(), config.backends.clone())
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
        let (addr, port) = (config.web.addr, config.web.port);
        let listener = TcpListener::bind((addr, port))
            .await
            .with_context(|| format!("listening on {addr}:{port}"))?;
        let ui_port = config.web.ui_port;
        let ui_listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, ui_port))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{ui_port} (WEB_UI_PORT)"))?;
        Ok(Parts {
            runner: Arc::new(executor),
            reporter,
            listener,
            ui_listener,
        })
    }
}

/// Runs the service until `shutdown` is cancelled. `on_listening` gets the
/// bound address (WEB_PORT=0 picks a free port).
/// `on_listening` gets the webhook's and the web UI's bound addresses.
pub async fn serve(
    config: Config,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(SocketAddr, SocketAddr),
) -> anyhow::Result<()> {
    // Before any socket: idle connections must hit our cap, not EMFILE.
    match crate::webhook::limits::raise_open_files_limit() {
        Ok((before, after)) => info!(before, after, "open files limit"),
        Err(error) => warn!(%error, "cannot raise the open files limit"),
    }
    let parts = Parts::for_config(&config).await?;
    let running = start(config, parts, shutdown).await?;
    on_listening(running.address(), running.ui_address());
    running.stopped().await
}

/// A started service: its address and handles for tests and the caller.
pub struct Running {
    address: SocketAddr,
    ui_address: SocketAddr,
    scheduler: Scheduler,
    recovery: Recovery,
    intake: Arc<Intake>,
    outbox: StatusOutbox,
    journal: Journal,
    stop: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Where the webhook endpoint answers.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where the web UI and API answer (loopback).
    pub fn ui_address(&self) -> SocketAddr {
        self.ui_address
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// What start-up did with the jobs an earlier run left live.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    pub fn outbox(&self) -> &StatusOutbox {
        &self.outbox
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Waits until the service has stopped (after `shutdown` fired).
    pub async fn stopped(self) -> anyhow::Result<()> {
        self.stop
            .await
            .context("the service's stop sequence panicked")?
    }
}

/// Starts the service on `parts` and returns once it listens; it stops
/// when `shutdown` is cancelled (await [`Running::stopped`]).
pub async fn start(
    config: Config,
    parts: Parts,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let Parts {
        runner,
        reporter,
        listener,
        ui_listener,
    } = parts;
    for key in &config.obsolete_keys {
        warn!(key, "config key is obsolete and ignored");
    }
    let journal = open_journal(&config)?;
    warn_about_exposed_secrets(&config);

    let (outbox, outbox_task, unsent) = StatusOutbox::start(reporter.clone(), journal.clone())
        .context("reading unsent statuses from the journal")?;
    if unsent > 0 {
        info!(unsent, "posting statuses an earlier run could not");
    }

    let address = listener.local_addr().context("reading the bound address")?;
    let ui_address = ui_listener
        .local_addr()
        .context("reading the web UI's bound address")?;
    // Local Details links point at the loopback UI: nothing about the host
    // (its name, the webhook's port) reaches a public status.
    let logs = log_store(&config, Some(format!("http://{ui_address}")))
        .with_results(Arc::new(journal.clone()));
    // Prunes at start, then daily; stops with the service.
    let retention = tokio::spawn(crate::logs::run_retention(
        logs.clone(),
        RetentionPolicy::days(config.logs.retention_days),
        shutdown.clone(),
    ));

    let (scheduler, scheduler_task, recovery) = Scheduler::start(
        runner.clone(),
        outbox.clone(),
        logs.clone(),
        crate::scheduler::Placement::new(
            config.service.num_workers,
            &config.executor.hosts,
            &config.backends,
        ),
        journal.clone(),
    )
    .context("resuming jobs from the journal")?;
    log_recovery(&recovery);

    let (delivery_tx, delivery_rx) = mpsc::channel(DELIVERY_BACKLOG);
    let intake = Arc::new(Intake::new(
        config.github.webhook_secret.clone(),
        config.github.repo.clone(),
        journal.clone(),
        delivery_tx.clone(),
    ));
    let github = reporter.github().cloned().map(Arc::new);
    let dispatcher = Dispatcher::new(
        scheduler.clone(),
        DispatchPolicy::new(&config.github, &config.backends),
        outbox.clone(),
        github.clone(),
    );
    let dispatcher = tokio::spawn(dispatcher.run(delivery_rx));
    // Before the server answers anyone, so they keep their place before new ones.
    redispatch_journaled(&journal, delivery_tx.clone()).await?;
    let relays = Relays::start(
        &config.relay,
        status_contexts(&config),
        intake.clone(),
        delivery_tx,
        github,
        &config.service.state_dir,
        shutdown.clone(),
    )
    .context("starting the smee relay")?;

    let web = crate::web::WebContext {
        web: config.web.clone(),
        config_summary: crate::config::summary(&config),
        backends: config.backends.clone().into(),
        relay: config.relay.clone(),
        workers: config.service.num_workers,
        reporter: reporter.clone(),
        scheduler: scheduler.clone(),
        logs: logs.clone(),
        outbox: outbox.clone(),
        intake: intake.clone(),
        smee: relays.smee_health(),
        host: runner,
        shutdown: shutdown.clone(),
    };
    let routes = webhook::routes(intake.clone()).recover(webhook::recover);
    let ui_routes = crate::web::routes(web).recover(crate::web::recover);
    // The listener stays open while jobs drain, so deliveries get a 503
    // (GitHub shows it; a relay retries) instead of a refused connection.
    let stop_listening = CancellationToken::new();
    let server_stopped = stop_listening.clone();
    let server = tokio::spawn(crate::server::serve(
        listener,
        warp::service(routes),
        server_stopped,
    ));
    let ui_server = tokio::spawn(crate::server::serve(
        ui_listener,
        warp::service(ui_routes),
        stop_listening.clone(),
    ));
    info!(%address, %ui_address, repo = %config.github.repo, backends = config.backends.len(), workers = config.service.num_workers, "ember-ci listening");

    let tasks = Tasks {
        relays,
        dispatcher,
        scheduler_task,
        retention,
        outbox_task,
        server,
        ui_server,
        stop_listening,
    };
    let stop = tokio::spawn(stop_on(
        shutdown,
        config.service.shutdown_grace,
        tasks,
        intake.clone(),
        scheduler.clone(),
        outbox.clone(),
        journal.clone(),
    ));
    Ok(Running {
        address,
        ui_address,
        scheduler,
        recovery,
        intake,
        outbox,
        journal,
        stop,
    })
}

/// Every task the service spawned, stopped in order by [`stop_on`].
struct Tasks {
    relays: Relays,
    dispatcher: JoinHandle<()>,
    scheduler_task: JoinHandle<()>,
    retention: JoinHandle<()>,
    outbox_task: JoinHandle<()>,
    server: JoinHandle<()>,
    ui_server: JoinHandle<()>,
    stop_listening: CancellationToken,
}

/// Waits for `shutdown`, then stops the service in order.
async fn stop_on(
    shutdown: CancellationToken,
    grace: Duration,
    tasks: Tasks,
    intake: Arc<Intake>,
    scheduler: Scheduler,
    outbox: StatusOutbox,
    journal: Journal,
) -> anyhow::Result<()> {
    shutdown.cancelled().await;
    info!(
        grace_secs = grace.as_secs(),
        "shutting down: answering 503 to deliveries; waiting for running jobs"
    );
    intake.start_draining();
    // The relays hold senders of the dispatcher's channel (they stop on the
    // same token): the dispatcher ends after them.
    tasks.relays.stopped().await;
    // Deliveries acknowledged before the stop reach the scheduler first,
    // and comment commands in progress are answered.
    await_task("dispatcher", tasks.dispatcher).await;
    scheduler.shutdown(grace).await;
    await_task("scheduler", tasks.scheduler_task).await;
    await_task("log retention", tasks.retention).await;
    let unsent = outbox.flush(STATUS_FLUSH_LIMIT).await;
    if unsent > 0 {
        warn!(
            unsent,
            "statuses not yet accepted by GitHub at exit; they are kept in the journal for the next start"
        );
    }
    // What GitHub did not take is in the journal; the task may stop mid-retry.
    tasks.outbox_task.abort();
    tasks.stop_listening.cancel();
    await_task("HTTP server", tasks.server).await;
    await_task("web UI server", tasks.ui_server).await;
    if let Err(err) = journal.checkpoint() {
        warn!(error = %err, "cannot fold the journal's write-ahead log into its file");
    }
    info!("ember-ci stopped");
    Ok(())
}

/// Awaits a task, reporting a panic (a bug) instead of dropping it.
async fn await_task(name: &str, task: JoinHandle<()>) {
    match task.await {
        Ok(()) => {}
        Err(err) if err.is_cancelled() => {}
        Err(err) => error!(task = name, error = %err, "a service task panicked"),
    }
}

/// The log store for a config: logs under `<CI_DIR>/logs` (the executor
/// owns `<CI_DIR>/jobs`, its work dirs, and removes them), masking every
/// value the config hides, linked through the local web UI at
/// `web_base_url`, published when the config names a logs repository. GH_TOKEN reaches the
/// publisher from here, for its pushes.
pub fn log_store(config: &Config, web_base_url: Option<String>) -> LogStore {
    let base_url = web_base_url.map(|base| format!("{}/jobs", base.trim_end_matches('/')));
    let masker = Masker::new(config.masked_values());
    let store = LogStore::new(
        config.service.state_dir.join("logs"),
        base_url,
        masker.clone(),
    )
    .with_repo(config.github.repo.clone())
    .with_context(&job_context(config));
    let backends = config.backends.iter().map(|b| b.name.clone()).collect();
    let publisher = Publisher::for_config(
        &config.logs,
        backends,
        &config.service.state_dir,
        &config.github.user,
        &config.github.token,
        masker,
    );
    match publisher {
        Some(publisher) => store.with_publisher(publisher),
        None => store,
    }
}

/// `3rdparty/<backend>` of every configured backend.
fn status_contexts(config: &Config) -> Vec<String> {
    config
        .backends
        .iter()
        .map(|backend| backend.name.status_context())
        .collect()
}

/// Opens the journal in the state dir and forgets what is only history.
fn open_journal(config: &Config) -> anyhow::Result<Journal> {
    let journal = Journal::open(&config.service.state_dir).context("opening the journal")?;
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
    for exposure in journal::permissions::exposed_paths(&config.dir, &config.service.state_dir) {
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
                    origin: Origin::of_id(&delivery.id),
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
