//! Delivery acknowledgement latency and idle memory of `ember-ci serve`.
//!
//! Starts the real binary on loopback with a throw-away state dir, measures
//! its idle RSS, then sends signed deliveries at a fixed rate (open loop: a
//! slow answer does not slow the sender down) and prints the latency
//! percentiles of the acknowledgements and the RSS afterwards. Each delivery
//! is a real-sized `pull_request` payload (the test-ok fixture, as `closed`
//! with its own delivery id): checked, journaled with an fsync, and queued
//! like any other, without starting a Podman job per delivery.
//!
//!     cargo build --release && cargo run --release --example ack_bench -- \
//!         [--rate 200] [--seconds 10] [--bin target/release/ember-ci]
//!
//! Needs Podman (serve connects to it at start). The state dir, and so the
//! journal's fsyncs, live under TMPDIR: point it at the disk to measure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ember_ci::webhook::signature;
use serde_json::Value;

const SECRET: &str = "ack-bench-secret";
const IDLE_SETTLE: Duration = Duration::from_secs(3);

struct Options {
    rate: u32,
    seconds: u32,
    bin: PathBuf,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        rate: 200,
        seconds: 10,
        bin: default_binary()?,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rate" => options.rate = value.parse().context("--rate: deliveries per second")?,
            "--seconds" => options.seconds = value.parse().context("--seconds: run time")?,
            "--bin" => options.bin = PathBuf::from(value),
            _ => bail!("unknown option {flag}; see the file's docs"),
        }
    }
    if options.rate == 0 || options.seconds == 0 {
        bail!("--rate and --seconds must be positive");
    }
    Ok(options)
}

/// `ember-ci` beside this example's directory (target/<profile>/).
fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this example")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the example is not in target/<profile>/examples")?;
    Ok(profile_dir.join("ember-ci"))
}

fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir)?;
    let config = format!(
        "GH_TOKEN=\"\"\nGH_EMBER_SECRET=\"{SECRET}\"\nCI_DIR=\"{}\"\nWEB_ADDR=127.0.0.1\nWEB_PORT=0\n\
         NUM_DRIVERS=1\nDRIVER_NAME_1=bench\nDRIVER_CONFIG_1='{{\"driver\": \"BenchDriver\"}}'\n",
        dir.join("state").display()
    );
    std::fs::write(config_dir.join("config"), config)?;
    Ok(config_dir)
}

/// Starts serve and returns it with its webhook URL.
fn start_serve(bin: &Path, config_dir: &Path, log: &Path) -> anyhow::Result<(Child, String)> {
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release` first, or pass --bin",
            bin.display()
        );
    }
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("serve's stdout")?;
    for line in BufReader::new(stdout).lines() {
        if let Some(url) = line?.strip_prefix("ember-ci listening on ") {
            return Ok((child, format!("{url}/change_hook/github")));
        }
    }
    let _ = child.kill();
    bail!("serve exited before listening; see {}", log.display())
}

fn rss_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn closed_pr_body() -> anyhow::Result<Vec<u8>> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/github/test-ok.json");
    let delivery: Value = serde_json::from_str(&std::fs::read_to_string(&fixture)?)?;
    let mut body = delivery["body"].clone();
    body["action"] = "closed".into();
    Ok(serde_json::to_vec(&body)?)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let dir = tempfile::tempdir()?;
    let config_dir = write_config(dir.path())?;
    let log = dir.path().join("serve.log");
    let (mut serve, url) = start_serve(&options.bin, &config_dir, &log)?;
    let pid = serve.id();

    tokio::time::sleep(IDLE_SETTLE).await;
    let idle_rss = rss_kb(pid, "VmRSS")?;

    let body = Arc::new(closed_pr_body()?);
    let signature = signature::sign(SECRET.as_bytes(), &body).sha256;
    let client = reqwest::Client::new();
    let total = options.rate * options.seconds;
    let interval = Duration::from_secs(1) / options.rate;
    let started = tokio::time::Instant::now();
    let mut requests = Vec::with_capacity(total as usize);
    for n in 0..total {
        tokio::time::sleep_until(started + interval * n).await;
        let (client, url, body, signature) =
            (client.clone(), url.clone(), body.clone(), signature.clone());
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-github-event", "pull_request")
                .header("x-github-delivery", format!("bench-{n}"))
                .header("x-hub-signature-256", signature)
                .body(body.as_ref().clone())
                .send()
                .await;
            let status = match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            (sent.elapsed(), status)
        }));
    }
    let mut latencies = Vec::with_capacity(requests.len());
    let mut refused = 0;
    for request in requests {
        let (latency, status) = request.await?;
        if status != 202 {
            refused += 1;
        }
        latencies.push(latency);
    }
    let elapsed = started.elapsed();
    let loaded_rss = rss_kb(pid, "VmRSS")?;
    let peak_rss = rss_kb(pid, "VmHWM")?;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = serve.wait()?;

    latencies.sort();
    println!(
        "ack_bench: {total} deliveries of {} bytes at {}/s over {:.1} s ({refused} not answered 202)",
        body.len(),
        options.rate,
        elapsed.as_secs_f64()
    );
    println!(
        "ack latency: p50 {}  p90 {}  p99 {}  max {}",
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.90)),
        millis(percentile(&latencies, 0.99)),
        millis(percentile(&latencies, 1.0)),
    );
    println!(
        "serve RSS: idle {idle_rss} kB, after the load {loaded_rss} kB, peak {peak_rss} kB; exit {exit}"
    );
    Ok(())
}
