//! `ember-ci run`: one job now, without a delivery, printing a line per
//! step (`cli::progress`), or with `--verbose` everything it prints. Vendors use it to check their setup before going live. A job here
//! lives the same life as one the scheduler runs (`scheduler::lifecycle`),
//! its statuses going through the journaled outbox, so one GitHub did not
//! take is posted by the next `serve`.

use std::io::Write;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::progress::ProgressObserver;
use crate::config::{BackendConfig, Config, HostName};
use crate::executor::{CancelSignal, Executor, Job, StepObserver, StepResult};
use crate::github::{Reporter, StatusOutbox};
use crate::journal::{JobChange, Journal};
use crate::logs::{LogStore, Masker, Publication};
use crate::model::{
    CancelReason, CommitSha, CommitStatus, JobId, JobOutcome, JobRequest, PrNumber, Step,
};
use crate::scheduler::lifecycle::{run_to_final_status, Announcer, JobParts};

/// How long `run` waits at the end for its statuses to reach GitHub.
const STATUS_FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// Runs one job per selected backend (all when `backend` is None), one after
/// the other, and returns the worst outcome. `verbose` streams the steps'
/// output to the console too.
pub async fn run_pull_request(
    config: Config,
    pr: PrNumber,
    backend: Option<&str>,
    verbose: bool,
) -> anyhow::Result<JobOutcome> {
    let backends: Vec<&BackendConfig> = match backend {
        Some(name) => match config.backend(name) {
            Some(found) => vec![found],
            None => bail!(
                "no backend named {name:?}; configured: {}",
                config
                    .backends
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => config.backends.iter().collect(),
    };
    let clone_url = &config.executor.clone_url;
    let sha = crate::executor::resolve_pull_head(clone_url, pr)
        .await
        .with_context(|| format!("finding the head commit of PR #{pr} in {clone_url}"))?;
    println!("PR #{pr} head is {sha}");

    let reporter = Reporter::from_config(&config.github).context("setting up the GitHub client")?;
    let journal = Journal::open(&config.service.state_dir).context("opening the journal")?;
    // Statuses an earlier run or serve left unsent go out first, in order.
    let posting = reporter.is_posting();
    let (outbox, outbox_task, _unsent) = StatusOutbox::start(Arc::new(reporter), journal)
        .context("reading unsent statuses from the journal")?;
    let started = std::time::Instant::now();
    let executor = Executor::new(config.executor.clone(), config.backends.clone())
        .await
        .context("connecting to Podman")?;
    if config.executor.podman_socket.is_none() {
        println!(
            "started the Podman API service in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let logs = crate::service::log_store(&config, None);

    let mut worst = JobOutcome::Success;
    for backend in backends {
        let console = Console { verbose, posting };
        let outcome = run_one(&executor, &outbox, &logs, pr, &sha, backend, console).await;
        if outcome.exit_code() > worst.exit_code() {
            worst = outcome;
        }
    }
    let unsent = outbox.flush(STATUS_FLUSH_LIMIT).await;
    outbox_task.abort();
    if unsent > 0 {
        println!(
            "== {unsent} statuses not accepted by GitHub yet; the next `ember-ci serve` posts them"
        );
    }
    Ok(worst)
}

/// How a job is shown: `verbose` streams its output; `posting` when
/// statuses go to GitHub.
#[derive(Clone, Copy)]
struct Console {
    verbose: bool,
    posting: bool,
}

/// `ember-ci run`'s jobs are not the scheduler's: only their statuses are
/// journaled (for the outbox), never the jobs, so a `serve` on the same
/// state dir never resumes them. Each status posted to GitHub is told on
/// the console (without GitHub, the reporter prints them itself).
struct OutboxOnly<'a> {
    outbox: &'a StatusOutbox,
    say: Option<&'a (dyn Fn(&str) + Sync)>,
}

impl Announcer for OutboxOnly<'_> {
    fn announce(&self, _: &JobId, request: &JobRequest, _: JobChange<'_>, status: CommitStatus) {
        if let Some(say) = self.say {
            say(&format!(
                "== posting status {} {}: {}",
                status.context, status.state, status.description
            ));
        }
        self.outbox.send(&request.sha, status);
    }
}

async fn run_one(
    executor: &Executor,
    outbox: &StatusOutbox,
    logs: &LogStore,
    pr: PrNumber,
    sha: &CommitSha,
    backend: &BackendConfig,
    Console { verbose, posting }: Console,
) -> JobOutcome {
    let job = Job {
        id: JobId::generate(),
        request: JobRequest {
            pr,
            sha: sha.clone(),
            backend: backend.name.clone(),
        },
        slot: 0,
        // The backend's preferred host (`ember-ci run` waits for no slot).
        host: backend
            .hosts
            .first()
            .cloned()
            .unwrap_or_else(HostName::local),
    };
    println!("== job {} : {}", job.id, job.request);
    let job_dir = logs.jobs_dir.join(job.id.as_str());
    let quiet = (!verbose).then(|| ProgressObserver::new(logs.masker().clone(), &job_dir));
    let streaming = ConsoleObserver {
        masker: RwLock::new(logs.masker().clone()),
    };
    let console: &dyn StepObserver = match &quiet {
        Some(quiet) => quiet,
        None => &streaming,
    };
    let say = |line: &str| match &quiet {
        Some(quiet) => quiet.println(line),
        None => println!("{line}"),
    };
    let parts = JobParts {
        runner: executor,
        logs,
        announcer: &OutboxOnly {
            outbox,
            say: posting.then_some(&say),
        },
    };
    let cancel = CancelSignal::new();
    let on_interrupt = cancel.clone();
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel(CancelReason::Interrupted);
        }
    });
    let finished = run_to_final_status(&job, &parts, console, cancel).await;
    interrupt.abort();
    let outcome = finished.outcome;
    println!(
        "== result: {} ({})",
        outcome.status_state(),
        outcome.description()
    );
    println!("== logs: {}", job_dir.display());
    match finished.logs.map(|logs| logs.publication) {
        Some(Publication::Published(Some(url))) => println!("== published: {url}"),
        Some(Publication::Published(None)) => println!("== published (LOGS_URL is not set)"),
        Some(Publication::Withheld(reason)) | Some(Publication::Failed(reason)) => {
            println!("== not published: {reason}")
        }
        Some(Publication::Local) | None => {}
    }
    outcome
}

/// Prints each step and its output, masked like the job's log: the
/// store's secrets plus those the job discovers.
struct ConsoleObserver {
    masker: RwLock<Masker>,
}

impl StepObserver for ConsoleObserver {
    fn step_started(&self, step: Step) {
        println!("-- {step}");
    }

    fn output(&self, _step: Step, chunk: &[u8]) {
        let text = self
            .masker
            .read()
            .expect("console masker lock poisoned")
            .mask(&String::from_utf8_lossy(chunk));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn secrets_discovered(&self, values: &[String]) {
        self.masker
            .write()
            .expect("console masker lock poisoned")
            .add(values.to_vec());
    }

    fn step_finished(&self, step: Step, result: &StepResult) {
        let code = result
            .exit_code
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        println!(
            "-- {step}: exit {code}, {:.1} s",
            result.duration.as_secs_f64()
        );
    }
}
