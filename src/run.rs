//! `ember-ci run`: one job now, without a delivery, printing each step as it
//! runs. Vendors use it to check their setup before going live.

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use crate::config::{BackendConfig, Config};
use crate::executor::{Executor, Job, StepObserver, StepResult};
use crate::github::{CommitStatus, Reporter, RetryPolicy};
use crate::logs::{JobLog, LogStore, Publication};
use crate::model::{CommitSha, JobId, JobOutcome, JobRequest, PrNumber, StatusState, Step};

/// Runs one job per selected backend (all when `backend` is None), one after
/// the other, and returns the worst outcome.
pub async fn run_pull_request(
    config: Config,
    pr: PrNumber,
    backend: Option<&str>,
) -> anyhow::Result<JobOutcome> {
    let config = Arc::new(config);
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
    let sha = crate::executor::resolve_pull_head(&config.gh_clone_url, pr)
        .await
        .with_context(|| {
            format!(
                "finding the head commit of PR #{pr} in {}",
                config.gh_clone_url
            )
        })?;
    println!("PR #{pr} head is {sha}");

    let reporter = Reporter::from_config(&config).context("setting up the GitHub client")?;
    let executor = Executor::new(config.clone())
        .await
        .context("connecting to Podman")?;
    let logs = LogStore::for_config(&config, None);

    let mut worst = JobOutcome::Success;
    for backend in backends {
        let outcome = run_one(&executor, &reporter, &logs, pr, &sha, backend).await?;
        if outcome.exit_code() > worst.exit_code() {
            worst = outcome;
        }
    }
    Ok(worst)
}

async fn run_one(
    executor: &Executor,
    reporter: &Reporter,
    logs: &LogStore,
    pr: PrNumber,
    sha: &CommitSha,
    backend: &BackendConfig,
) -> anyhow::Result<JobOutcome> {
    let request = JobRequest {
        pr,
        sha: sha.clone(),
        backend: backend.name.clone(),
    };
    let job = Job {
        id: JobId::generate(),
        request: request.clone(),
        slot: 0,
    };
    let log = logs
        .open_job(&job.id, &request, None)
        .context("creating the job's log folder")?;
    println!("== job {} : {request}", job.id);
    let status = |state: StatusState, description: String| CommitStatus {
        context: backend.name.status_context(),
        state,
        description,
        target_url: None,
    };
    let policy = RetryPolicy::default();
    reporter
        .report_with_retry(
            sha,
            &status(StatusState::Pending, "running: build and CSI sanity".into()),
            &policy,
        )
        .await
        .context("posting the pending status")?;

    let console = ConsoleObserver { log: &log };
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });
    let mut outcome = executor.run(&job, &console, cancel).await;
    interrupt.abort();
    if let JobOutcome::Cancelled { reason } = &mut outcome {
        *reason = "interrupted".into();
    }
    let logs = logs.finish_job(&log, &outcome).await;
    let final_status = CommitStatus {
        target_url: logs.target_url.clone(),
        ..status(outcome.status_state(), logs.description.clone())
    };
    reporter
        .report_with_retry(sha, &final_status, &policy)
        .await
        .context("posting the final status")?;
    println!(
        "== result: {} ({})",
        outcome.status_state(),
        outcome.description()
    );
    println!("== logs: {}", log.dir().display());
    match &logs.publication {
        Publication::Published(Some(url)) => println!("== published: {url}"),
        Publication::Published(None) => println!("== published (LOGS_URL is not set)"),
        Publication::Withheld(reason) | Publication::Failed(reason) => {
            println!("== not published: {reason}")
        }
        Publication::Local => {}
    }
    Ok(outcome)
}

/// Prints each step's output as it arrives, and keeps the job's log files.
struct ConsoleObserver<'a> {
    log: &'a JobLog,
}

impl StepObserver for ConsoleObserver<'_> {
    fn step_started(&self, step: Step) {
        println!("-- {step}");
        self.log.step_started(step);
    }

    fn output(&self, step: Step, chunk: &[u8]) {
        // The log file gets the masked copy; the console the masked text too.
        let text = self.log.mask(&String::from_utf8_lossy(chunk));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.log.output(step, chunk);
    }

    fn secrets_discovered(&self, values: &[String]) {
        self.log.secrets_discovered(values);
    }

    fn step_finished(&self, step: Step, result: &StepResult) {
        let code = result
            .exit_code
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        println!(
            "-- {step}: exit {code}, {:.1} s",
            result.duration.as_secs_f64()
        );
        self.log.step_finished(step, result);
    }
}
