//! Load time of a backend's history page with 1,000 jobs in the journal.
//!
//! Fills a throw-away journal with 1,000 finished jobs of one backend over
//! the last 30 days (92 specs each, 72 run; one job in five fails one to
//! three specs; every head runs twice, so flaky specs appear), starts the
//! service in process on it, and prints the time to answer
//! `/backends/<name>/history`, `/api/backends/<name>/specs` and `/metrics`
//! (cold first request, then percentiles of the following ones), the page
//! size, and the journal query alone. No job runs.
//!
//!     cargo run --release --example history_bench -- [--jobs 1000] [--requests 50]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use async_trait::async_trait;
use ember_ci::config::Config;
use ember_ci::executor::{CancelSignal, Job, StepObserver};
use ember_ci::github::Reporter;
use ember_ci::journal::Journal;
use ember_ci::model::{BackendName, CommitSha, JobId, JobOutcome, JobRequest, PrNumber};
use ember_ci::sanity::{SpecFailure, SpecState, SuiteResults};
use ember_ci::scheduler::JobRunner;
use ember_ci::service::Parts;
use tokio_util::sync::CancellationToken;

const BACKEND: &str = "bench";
const SPECS: usize = 92;
const RAN: usize = 72;

/// Nothing is enqueued; a job reaching it is a bug in the bench.
struct NoJobs;

#[async_trait]
impl JobRunner for NoJobs {
    async fn run(&self, _: &Job, _: &dyn StepObserver, _: CancelSignal) -> JobOutcome {
        JobOutcome::Success
    }
}

/// A small deterministic generator, so every run measures the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn fill(journal: &Journal, jobs: usize, now: SystemTime) -> anyhow::Result<()> {
    let mut random = Lcg(7);
    let window = Duration::from_secs(29 * 24 * 60 * 60);
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
    for n in 0..jobs {
        let finished = now - window + window.mul_f64(n as f64 / jobs as f64);
        let stamp = time::OffsetDateTime::from(finished).format(&format)?;
        let id = JobId::parse(&format!("{stamp}-{n:06x}"))?;
        // Every head runs twice (a push, then a recheck).
        let head = n / 2;
        let request = JobRequest {
            pr: PrNumber::new(100 + (head / 5) as u64)?,
            sha: CommitSha::new(&format!("{head:040x}"))?,
            backend: BackendName::new(BACKEND)?,
        };
        let failing: Vec<usize> = if random.next(5) == 0 {
            (0..=random.next(3))
                .map(|_| random.next(12) as usize)
                .collect()
        } else {
            Vec::new()
        };
        let failures: Vec<SpecFailure> = failing
            .iter()
            .map(|spec| SpecFailure {
                name: format!(
                    "[It] Controller Service [Controller Server] spec number {spec} should work"
                ),
                state: SpecState::Failed,
                message: "expected success".into(),
            })
            .collect();
        let results = SuiteResults {
            passed: RAN - failures.len(),
            failed: failures.len(),
            skipped: SPECS - RAN,
            failures,
        };
        let result = if results.failed == 0 {
            "success"
        } else {
            "failure"
        };
        journal.record_result(
            &id,
            &request,
            result,
            &results.summary(140),
            Some(&results),
            finished,
        )?;
    }
    Ok(())
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

async fn measure(http: &reqwest::Client, url: &str, requests: usize) -> anyhow::Result<()> {
    let get = || async {
        let started = Instant::now();
        let response = http.get(url).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!("{url}: {status}");
        }
        Ok::<_, anyhow::Error>((started.elapsed(), body.len()))
    };
    let (cold, size) = get().await?;
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        times.push(get().await?.0);
    }
    times.sort();
    println!(
        "{url}\n  {size} bytes; first {}; then median {}, p95 {}, max {} ({requests} requests)",
        ms(cold),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.95)),
        ms(percentile(&times, 1.0)),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut jobs = 1000;
    let mut requests = 50;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: usize = args.next().context("a flag needs a value")?.parse()?;
        match flag.as_str() {
            "--jobs" => jobs = value,
            "--requests" => requests = value.max(1),
            _ => bail!("unknown option {flag}; see the file's docs"),
        }
    }
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let now = SystemTime::now();
    let journal = Journal::open(&state)?;
    let started = Instant::now();
    fill(&journal, jobs, now)?;
    println!("{jobs} jobs recorded in {}", ms(started.elapsed()));
    let started = Instant::now();
    let history = journal.backend_history(BACKEND, now)?;
    println!(
        "journal query and summary alone: {} ({} jobs, {} failing specs, {} flaky, pass rate {:.1}%)",
        ms(started.elapsed()),
        history.jobs,
        history.failing.len(),
        history.flaky.len(),
        history.pass_rate.unwrap_or(0.0) * 100.0
    );
    drop(journal);

    std::fs::write(
        dir.path().join("config"),
        format!(
            "GH_TOKEN=\"\"\nGH_EMBER_SECRET=bench\nCI_DIR=\"{}\"\nDRIVER_NAME_1={BACKEND}\nDRIVER_CONFIG_1='{{}}'\n",
            state.display()
        ),
    )?;
    let config = Config::load(dir.path()).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let parts = Parts {
        ui_listener: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        runner: Arc::new(NoJobs),
        reporter: Arc::new(Reporter::from_config(&config.github)?),
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    let shutdown = CancellationToken::new();
    let service = ember_ci::service::start(config, parts, shutdown.clone()).await?;
    let ui = format!("http://{}", service.ui_address());
    let http = reqwest::Client::new();
    for path in [
        format!("/backends/{BACKEND}/history"),
        format!("/api/backends/{BACKEND}/specs"),
        "/metrics".to_string(),
    ] {
        measure(&http, &format!("{ui}{path}"), requests).await?;
    }
    shutdown.cancel();
    service.stopped().await?;
    Ok(())
}
