//! How the service's outside links are doing, as far as it knows: the job
//! queue, GitHub reporting (where statuses go and how many wait), the ways
//! deliveries arrive (with the smee link's state), and what the webhook
//! intake accepted and refused.

use serde::Serialize;

use super::Web;
use crate::logs::format_utc;
use crate::scheduler::JobState;

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub workers: usize,
    pub jobs: QueueHealth,
    pub github: GitHubHealth,
    pub relay: Relay,
    pub deliveries: DeliveryHealth,
    /// False when a job left kernel state (loop, dm, LVM, iSCSI, mounts)
    /// that host hygiene could not remove: the next job may trip over it.
    pub host_is_clean: bool,
    /// What was left, and why it stayed.
    pub host_problems: Vec<String>,
    /// Every host jobs run on (`local` first, then PODMAN_HOSTS).
    pub hosts: Vec<HostHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostHealth {
    pub name: String,
    pub slots: usize,
    /// Ids of the jobs running there.
    pub running_jobs: Vec<String>,
    pub is_reachable: bool,
    /// Why not (ssh's own words, masked), when unreachable.
    pub problem: Option<String>,
    /// What jobs left there that hygiene could not remove (masked), each
    /// naming the backend; non-empty: the host is unhealthy.
    pub left_behind: Vec<String>,
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

/// How deliveries arrive.
#[derive(Debug, Clone, Serialize)]
pub struct Relay {
    /// Deliveries arrive on the HTTP endpoint in every setup.
    pub http_endpoint: bool,
    /// Whether a smee channel is set; the channel itself is a secret.
    pub smee_channel_set: bool,
    /// The smee link, when a smee relay runs.
    pub smee: Option<SmeeLink>,
    pub poll_interval_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SmeeLink {
    pub is_connected: bool,
    /// When `is_connected` last changed.
    pub since: Option<String>,
    pub last_event_at: Option<String>,
    pub deliveries_relayed: u64,
    pub deliveries_refused: u64,
    /// Why the link last dropped (masked).
    pub last_error: Option<String>,
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
    let jobs = web.board().jobs();
    let count = |state: JobState| jobs.iter().filter(|job| job.state == state).count();
    let reporter = &context.reporter;
    let counts = context.intake.stats().snapshot();
    let host_problems: Vec<String> = context
        .host
        .host_problems()
        .iter()
        .map(|problem| web.mask(problem))
        .collect();
    let statuses = context.host.host_statuses();
    let hosts = context
        .scheduler
        .host_usage()
        .into_iter()
        .map(|usage| {
            let status = statuses.iter().find(|s| s.name == usage.name);
            HostHealth {
                name: usage.name.to_string(),
                slots: usage.slots,
                running_jobs: usage.running.iter().map(ToString::to_string).collect(),
                is_reachable: status.is_some_and(|s| s.is_reachable),
                problem: status
                    .and_then(|s| s.problem.as_deref())
                    .map(|problem| web.mask(problem)),
                left_behind: status
                    .map(|s| s.left_behind.iter().map(|p| web.mask(p)).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Health {
        hosts,
        host_is_clean: host_problems.is_empty(),
        host_problems,
        workers: context.workers,
        jobs: QueueHealth {
            queued: count(JobState::Queued),
            running: count(JobState::Running),
        },
        github: GitHubHealth {
            reporting: if reporter.is_posting() {
                "github"
            } else {
                "console"
            },
            api_url: reporter.api_url().map(str::to_string),
            statuses_waiting: context.outbox.backlog(),
        },
        relay: Relay {
            http_endpoint: true,
            smee_channel_set: context.relay.smee_url.is_some(),
            smee: context.smee.as_ref().map(|health| {
                let status = health.snapshot();
                SmeeLink {
                    is_connected: status.is_connected,
                    since: status.since.map(format_utc),
                    last_event_at: status.last_event_at.map(format_utc),
                    deliveries_relayed: status.deliveries_relayed,
                    deliveries_refused: status.deliveries_refused,
                    last_error: status.last_error.as_deref().map(|e| web.mask(e)),
                }
            }),
            poll_interval_secs: context.relay.poll_interval.map(|i| i.as_secs()),
        },
        deliveries: DeliveryHealth {
            accepted: counts.accepted,
            ignored: counts.ignored,
            duplicates: counts.duplicates,
            rejected: counts.rejected,
        },
    }
}
