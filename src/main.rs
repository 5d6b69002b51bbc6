//! The ember-ci command line: parses arguments, installs tracing, and hands
//! over to the library. Exit codes: 0 success, 1 failure (a PR failed, a
//! delivery was refused), 2 error (bad config, our side broke).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use ember_ci::config::{summary, Config};
use ember_ci::model::PrNumber;

#[derive(Parser)]
#[command(
    name = "ember-ci",
    version,
    about = "Third-party CI for Ember-CSI on one Podman host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: webhook endpoint, job queue, web UI.
    Serve {
        /// The config dir (holding the `config` file).
        #[arg(long, env = "EMBER_CI_CONFIG", default_value = "/config")]
        config: PathBuf,
    },
    /// Run one job now for a pull request, printing each step.
    Run {
        #[arg(long, env = "EMBER_CI_CONFIG", default_value = "/config")]
        config: PathBuf,
        /// The pull request number.
        #[arg(long)]
        pr: PrNumber,
        /// Only this backend (DRIVER_NAME_n); all when omitted.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Replay a delivery saved in smee's JSON form (replaces `pysmee send`).
    Send {
        /// Where to POST it, e.g. http://127.0.0.1:8010/change_hook/github
        url: String,
        /// The saved delivery (lower-case headers beside `body`).
        file: PathBuf,
        /// Re-sign the body with this secret (X-Hub-Signature-256 and X-Hub-Signature).
        #[arg(long, env = "EMBER_CI_SEND_SECRET")]
        secret: Option<String>,
        /// Post it form-encoded (`payload=<JSON>`, GitHub's other content
        /// type); needs --secret, since the signed bytes change.
        #[arg(long)]
        form: bool,
        /// Keep the saved X-GitHub-Delivery id (the CI then drops a repeat
        /// as a duplicate); by default each send gets a fresh id.
        #[arg(long)]
        keep_id: bool,
    },
    /// Validate a config dir and print a summary with secrets masked.
    CheckConfig {
        /// The config dir.
        dir: PathBuf,
    },
    /// Exit 0 when the local service answers /api/health (the image's health check).
    Health {
        #[arg(long, env = "EMBER_CI_CONFIG", default_value = "/config")]
        config: PathBuf,
    },
    /// Print (or install) the quadlet units that run the image under systemd.
    Quadlet(ember_ci::deploy::quadlet::QuadletArgs),
    /// Check this host and a config dir before going live; exit 0 when nothing blocks a job.
    Doctor {
        /// The config dir.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = load_config(&config)?;
            let shutdown = CancellationToken::new();
            ember_ci::service::cancel_on_signals(shutdown.clone())?;
            ember_ci::service::serve(config, shutdown, |address| {
                println!("ember-ci listening on http://{address}");
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            pr,
            backend,
        } => {
            let config = load_config(&config)?;
            let outcome = ember_ci::run::run_pull_request(config, pr, backend.as_deref()).await?;
            Ok(ExitCode::from(outcome.exit_code() as u8))
        }
        Command::Send {
            url,
            file,
            secret,
            form,
            keep_id,
        } => {
            let encoding = if form {
                ember_ci::send::BodyEncoding::Form
            } else {
                ember_ci::send::BodyEncoding::AsSaved
            };
            let id = if keep_id {
                ember_ci::send::DeliveryId::Keep
            } else {
                ember_ci::send::DeliveryId::Fresh
            };
            let report =
                ember_ci::send::send_saved_delivery(&url, &file, secret.as_deref(), encoding, id)
                    .await
                    .with_context(|| format!("sending {}", file.display()))?;
            println!("{} {}", report.status, report.response.trim_end());
            Ok(if (200..300).contains(&report.status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::CheckConfig { dir } => {
            let config = load_config(&dir)?;
            print!("{}", summary(&config));
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { config } => {
            ember_ci::deploy::health::check(&load_config(&config)?.web).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quadlet(args) => {
            ember_ci::deploy::quadlet::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { dir } => {
            let report = ember_ci::deploy::doctor::diagnose(&dir).await;
            print!("{report}");
            Ok(ExitCode::from(u8::from(report.blocks())))
        }
    }
}

/// RUST_LOG, else info. The SSE crate warns on every failed reconnect
/// attempt; the relay warns once per outage itself, so the crate is kept
/// to errors unless RUST_LOG names it.
fn log_filter() -> EnvFilter {
    const QUIET_SSE: &str = "eventsource_client=error";
    let names_sse =
        std::env::var("RUST_LOG").is_ok_and(|filter| filter.contains("eventsource_client"));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if names_sse {
        filter
    } else {
        filter.add_directive(QUIET_SSE.parse().expect("a valid directive"))
    }
}

fn load_config(dir: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(dir)
        .map_err(|errors| anyhow::anyhow!("invalid config in {}:\n{errors}", dir.display()))
}
