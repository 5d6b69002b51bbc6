//! How the service's outside links are doing, as far as it knows: the job
//! queue, GitHub reporting (where statuses go and how many wait), the relay
//! settings, and what the webhook intake accepted and refused.

use serde::Serialize;

use super::Web;
use crate::scheduler::JobState;

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub workers: usize,
    pub jobs: QueueHealth,
    pub github: GitHubHealth,
    pub relay: RelayHealth,
    pub deliveries: DeliveryHealth,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueHealth {
    pub queued: usize,
    pub running: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct GitHubHealth {
    /// `github` when statuses are posted, `console` when printed (no GH_TOKEN).
    pub reporting: &'static str,
    pub api_url: Option<String>,
    /// Statuses queued and not yet accepted; growing means GitHub refuses
    /// or cannot be reached (the outbox keeps retrying).
    pub statuses_waiting: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayHealth {
    /// Deliveries arrive on the HTTP endpoint in every setup.
    pub http_endpoint: bool,
    pub smee_url: Option<String>,
    pub poll_interval_secs: Option<u64>,
}

/// Webhook intake counters since start.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryHealth {
    pub accepted: u64,
    pub ignored: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

pub fn health(web: &Web) -> Health {
    let context = &web.context;
    let config = &context.config;
    let jobs = web.board().jobs();
    let count = |state: JobState| jobs.iter().filter(|job| job.state == state).count();
    let is_posting = !config.gh_token.is_empty();
    let counts = context.intake.stats().snapshot();
    Health {
        workers: config.num_workers,
        jobs: QueueHealth {
            queued: count(JobState::Queued),
            running: count(JobState::Running),
        },
        github: GitHubHealth {
            reporting: if is_posting { "github" } else { "console" },
            api_url: is_posting.then(|| config.gh_api_url.clone()),
            statuses_waiting: context.outbox.backlog(),
        },
        relay: RelayHealth {
            http_endpoint: true,
            smee_url: config.relay.smee_url.clone(),
            poll_interval_secs: config.relay.poll_interval.map(|i| i.as_secs()),
        },
        deliveries: DeliveryHealth {
            accepted: counts.accepted,
            ignored: counts.ignored,
            duplicates: counts.duplicates,
            rejected: counts.rejected,
        },
    }
}
