//! Other ways deliveries arrive besides GitHub calling our HTTP endpoint, for
//! hosts with no fixed IP and no open port.
//!
//! - [`smee`]: follows a smee.io channel's event stream and hands every
//!   delivery to the same [`Intake`] as the HTTP endpoint, signature check
//!   included (the relay is untrusted).
//! - [`catch_up`]: after a smee outage (and at start), reads what GitHub's
//!   API shows for the gap (heads, PR comments) into the same intake.
//! - [`poll`]: lists open pull requests through the API (ETag-conditional)
//!   and feeds heads that have no status of ours to the dispatcher, either as
//!   the only way in (`POLL_INTERVAL`) or as a reconciliation sweep beside a
//!   relay or endpoint.
//! - [`saved`]: the saved-delivery format (headers beside `body`) smee
//!   forwards and `ember-ci send` replays.
//! - [`RelayHealth`]: what the web UI shows about the smee link.
//!
//! [`Relays`] starts whichever of them the config asks for. Nothing here
//! decides what runs: trust policy, supersede and de-duplication stay with
//! the intake, dispatcher and scheduler, so every way in obeys the same rules.

mod backoff;
pub mod catch_up;
mod health;
pub mod poll;
pub mod saved;
pub mod smee;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use backoff::Backoff;
pub use catch_up::{CatchUp, CatchUpReport};
pub use health::{RelayHealth, RelayStatus};
pub use poll::{PollError, PollMode, PollReport, Poller};
pub use smee::{SmeeError, SmeeRelay};

use crate::config::RelayConfig;
use crate::github::GitHub;
use crate::webhook::{Delivery, Intake};

/// The relay tasks of a running service.
pub struct Relays {
    tasks: Vec<JoinHandle<()>>,
    smee_health: Option<RelayHealth>,
}

impl Relays {
    /// Starts the smee relay when SMEE_ID/SMEE_URL is set (with a catch-up
    /// sweep when there is a GitHub client; its mark lives in `state_dir`)
    /// and the poller when [`PollMode::for_config`] says so. Every task ends once `shutdown` is
    /// cancelled; await [`Relays::stopped`] before waiting for the dispatcher,
    /// since the tasks hold senders of its channel.
    pub fn start(
        config: &RelayConfig,
        contexts: Vec<String>,
        intake: Arc<Intake>,
        deliveries: mpsc::Sender<Delivery>,
        github: Option<Arc<GitHub>>,
        state_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Self, SmeeError> {
        let mut tasks = Vec::new();
        let mut smee_health = None;
        if let Some(url) = &config.smee_url {
            let mut relay = SmeeRelay::new(url, intake.clone())?;
            if let Some(github) = &github {
                relay = relay.with_catch_up(Arc::new(CatchUp::new(
                    github.clone(),
                    intake,
                    contexts.clone(),
                    state_dir,
                )));
            }
            smee_health = Some(relay.health());
            tasks.push(tokio::spawn(relay.run(shutdown.clone())));
        }
        match (PollMode::for_config(config, github.is_some()), github) {
            (Some(mode), Some(github)) => {
                info!(%mode, "polling open pull requests");
                let poller = Poller::new(github, contexts, deliveries);
                tasks.push(tokio::spawn(poller.run(mode, shutdown)));
            }
            (None, _) if config.poll_interval.is_some() => {
                warn!("POLL_INTERVAL is set but GH_TOKEN is not: the API cannot be polled");
            }
            _ => {}
        }
        Ok(Self { tasks, smee_health })
    }

    /// The smee link's health, when a smee relay runs.
    pub fn smee_health(&self) -> Option<RelayHealth> {
        self.smee_health.clone()
    }

    /// Waits until every relay task has ended (they end on shutdown).
    pub async fn stopped(self) {
        for task in self.tasks {
            if let Err(error) = task.await {
                warn!(%error, "a relay task ended abnormally");
            }
        }
    }
}
