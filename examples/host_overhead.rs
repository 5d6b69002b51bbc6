//! Job overhead on another Podman host against this one, side by side in
//! one run: the demo job (PR #129) on `local` and on `lab`, a second host
//! on this machine (a network namespace with sshd and its own Podman
//! service, as in tests/all/hosts.rs), reached through ssh like a vendor's
//! lab machine. Both hosts are the same CPU and disk, so the difference is
//! the price of the transport: the ssh-forwarded API socket and copying
//! the job's files in and out.
//!
//!     cargo run --release --example host_overhead -- [--rounds 5]
//!
//! Needs root, Podman, iproute2 and openssh-server (scripts/setup-host.sh).
//! The first round on each host warms its layer cache (and copies the
//! sandbox image to `lab` when its store lacks it); it is shown apart.

use std::time::{Duration, Instant};

use anyhow::Context;
use ember_ci::config::HostName;
use ember_ci::model::{JobOutcome, Step};
use ember_ci_test_kit::executor_env::{run_job, start_executor, DemoEnv, GENEROUS};
use ember_ci_test_kit::second_host::SecondHost;

fn rounds() -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--rounds") {
        Some(i) => args
            .get(i + 1)
            .context("--rounds needs a value")?
            .parse()
            .context("--rounds: a number"),
        None => Ok(5),
    }
}

/// One job's wall time and each step's duration.
struct Timing {
    total: Duration,
    steps: Vec<Duration>,
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds = rounds()?.max(1);
    let env = DemoEnv::new();
    let lab = SecondHost::start("lab", &env.config_dir);
    let keys = format!(
        "PODMAN_HOSTS=\"{}\"\nNUM_DRIVERS=2\nDRIVER_NAME_2=\"demo-lab\"\n\
         DRIVER_CONFIG_2='{{\"name\": \"demo\", \"driver\": \"DemoDriver\", \"password\": \"p\"}}'\n\
         SANITY_COMMAND_2=\"/config/sanity.sh 127.0.0.1:50051\"\nDRIVER_HOST_2=\"lab\"\n\
         PRE_RUN_2=\"$PRE_RUN_1\"\nPOST_RUN_2=\"$POST_RUN_1\"\n",
        lab.podman_hosts_entry(1)
    );
    let executor = start_executor(env.config_with(GENEROUS, &keys)).await;
    let lab_name = HostName::new("lab").map_err(anyhow::Error::msg)?;

    let mut timings: [Vec<Timing>; 2] = [Vec::new(), Vec::new()];
    for round in 0..=rounds {
        for (side, on_lab) in [(0, false), (1, true)] {
            let mut job = if on_lab {
                env.job_for("demo-lab", 129, 901)
            } else {
                env.job(129)
            };
            if on_lab {
                job.host = lab_name.clone();
            }
            let started = Instant::now();
            let run = run_job(&executor, job).await;
            let total = started.elapsed();
            anyhow::ensure!(
                run.outcome == JobOutcome::Success,
                "round {round} on {}: {:?}",
                if on_lab { "lab" } else { "local" },
                run.outcome
            );
            let steps = Step::ALL
                .iter()
                .map(|step| {
                    run.observer
                        .finished(*step)
                        .map_or(Duration::ZERO, |r| r.duration)
                })
                .collect();
            timings[side].push(Timing { total, steps });
        }
    }

    println!(
        "demo job (PR #129), {rounds} warm round(s) per host after one cold round; medians in ms"
    );
    println!("{:<14} {:>8} {:>8} {:>8}", "", "local", "lab", "lab-local");
    let row = |label: &str, local: Duration, remote: Duration| {
        let delta = remote.as_secs_f64() - local.as_secs_f64();
        println!(
            "{label:<14} {:>8} {:>8} {:>+8.0}",
            ms(local),
            ms(remote),
            delta * 1000.0
        );
    };
    row("cold job", timings[0][0].total, timings[1][0].total);
    let warm = |side: usize, pick: &dyn Fn(&Timing) -> Duration| {
        median(timings[side][1..].iter().map(pick).collect())
    };
    row("warm job", warm(0, &|t| t.total), warm(1, &|t| t.total));
    for (i, step) in Step::ALL.iter().enumerate() {
        row(
            &format!("  {}", step.name()),
            warm(0, &|t| t.steps[i]),
            warm(1, &|t| t.steps[i]),
        );
    }
    Ok(())
}
