//! `ember-ci serve` under slow clients: RSS and the latency of valid
//! deliveries while 200 slow connections are held open.
//!
//! Starts the real binary on loopback (as `ack_bench` does), then opens
//! `--slow` connections, half of them stuck in their request headers and
//! half stuck in a 24 MiB body after its first MiB, and meanwhile sends
//! `--valid` signed deliveries one after the other. Prints the latency of
//! those, how the slow ones ended, and serve's RSS before, during and at
//! its peak.
//!
//!     cargo build && cargo run --example slow_sockets -- [--slow 200] [--valid 20]
//!
//! Needs Podman (serve connects to it at start).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ember_ci::webhook::signature;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "slow-sockets-secret";
const SETTLE: Duration = Duration::from_secs(2);
const STALLED_BODY_BYTES: usize = 24 * 1024 * 1024;
const SENT_OF_EACH_BODY: usize = 1024 * 1024;

fn option(name: &str, default: usize) -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .with_context(|| format!("{name}: a number")),
        None => Ok(default),
    }
}

fn rss_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("not in target/<profile>/examples")?;
    Ok(dir.join("ember-ci"))
}

/// A slow client: headers cut short, or a big body stalled after its start.
async fn hold(addr: String, stuck_in_body: bool) -> String {
    let Ok(mut stream) = TcpStream::connect(&addr).await else {
        return "connect failed".into();
    };
    let head = if stuck_in_body {
        format!(
            "POST /change_hook/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: ping\r\n\
             Content-Length: {STALLED_BODY_BYTES}\r\n\r\n"
        )
    } else {
        "POST /change_hook/github HTTP/1.1\r\nHost: x\r\n".to_string()
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    if stuck_in_body {
        let _ = stream.write_all(&vec![b' '; SENT_OF_EACH_BODY]).await;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or("").to_string();
    if status.is_empty() {
        "closed without an answer".into()
    } else {
        status
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (slow, valid) = (option("--slow", 200)?, option("--valid", 20)?);
    let dir = tempfile::tempdir()?;
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir)?;
    std::fs::write(
        config_dir.join("config"),
        format!(
            "GH_TOKEN=\"\"\nGH_EMBER_SECRET=\"{SECRET}\"\nCI_DIR=\"{}\"\nWEB_ADDR=127.0.0.1\nWEB_PORT=0\n\
             NUM_DRIVERS=1\nDRIVER_NAME_1=bench\nDRIVER_CONFIG_1='{{\"driver\": \"BenchDriver\"}}'\n",
            dir.path().join("state").display()
        ),
    )?;
    let bin = binary()?;
    if !bin.exists() {
        bail!("{} not found: cargo build first", bin.display());
    }
    let mut serve = Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&config_dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("serve.log"))?)
        .spawn()?;
    let stdout = serve.stdout.take().context("serve's stdout")?;
    let base = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            Some(
                line.strip_prefix("ember-ci listening on http://")?
                    .to_string(),
            )
        })
        .context("serve exited before listening")?;
    let pid = serve.id();
    tokio::time::sleep(SETTLE).await;
    let idle_rss = rss_kb(pid, "VmRSS")?;

    let holders: Vec<_> = (0..slow)
        .map(|n| tokio::spawn(hold(base.clone(), n % 2 == 1)))
        .collect();
    tokio::time::sleep(SETTLE).await;
    let held_rss = rss_kb(pid, "VmRSS")?;

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/github/test-ok.json");
    let delivery: Value = serde_json::from_str(&std::fs::read_to_string(fixture)?)?;
    let mut body = delivery["body"].clone();
    body["action"] = "closed".into();
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    let mut not_accepted = 0;
    for n in 0..valid {
        body["number"] = n.into();
        let bytes = serde_json::to_vec(&body)?;
        let sent = Instant::now();
        let status = client
            .post(format!("http://{base}/change_hook/github"))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", format!("valid-{n}"))
            .header(
                "x-hub-signature-256",
                signature::sign(SECRET.as_bytes(), &bytes).sha256,
            )
            .body(bytes)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        latencies.push(sent.elapsed());
        not_accepted += usize::from(status != 202);
    }
    let loaded_rss = rss_kb(pid, "VmRSS")?;
    let mut endings = std::collections::BTreeMap::<String, usize>::new();
    let cut_started = Instant::now();
    for holder in holders {
        *endings.entry(holder.await?).or_default() += 1;
    }
    let cut_after = cut_started.elapsed();
    let peak_rss = rss_kb(pid, "VmHWM")?;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    serve.wait()?;

    latencies.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "slow_sockets: {slow} slow connections ({} stuck in headers, {} in a {} MiB body after 1 MiB)",
        slow - slow / 2,
        slow / 2,
        STALLED_BODY_BYTES >> 20
    );
    println!(
        "valid deliveries: {valid} sent, {not_accepted} not answered 202; latency p50 {} max {}",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1])
    );
    println!(
        "slow connections ended (all within {:.1} s of the last valid one):",
        cut_after.as_secs_f64()
    );
    for (ending, count) in &endings {
        println!("  {count:4} × {ending}");
    }
    println!(
        "serve RSS: idle {idle_rss} kB, slow ones held {held_rss} kB, after the valid ones {loaded_rss} kB, peak {peak_rss} kB"
    );
    Ok(())
}
