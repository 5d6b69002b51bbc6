//! The local web UI and JSON API: what the CI is doing, at a glance.
//!
//! Only loopback clients get these routes; from elsewhere only the webhook
//! path answers, so a public WEB_ADDR exposes nothing but signed-delivery
//! intake. Pages are server-rendered HTML that works without JavaScript; a
//! little script refreshes them in place and streams the running step's log.
//!
//! - `view`: the read model shared by pages and API (board + `job.json`).
//! - `health`: relay, GitHub reporting and intake figures.
//! - `pages` + `html`: the dashboard, job page and backends page.
//! - `api`: `/api/jobs`, `/api/jobs/{id}`, `/api/health`.
//! - `metrics`: Prometheus text at `/metrics`.
//! - `actions`: re-run and cancel, with the admin-token and same-origin checks.
//! - `live`: server-sent events tailing a job's step logs.
//! - `files`: `/jobs/<id>/` (the Details link of a status) and the raw logs.
//!
//! Nothing here changes a job except through `actions`, and every free text
//! shown (descriptions, notes, log lines) passes the secret masker.

mod actions;
mod api;
mod files;
mod health;
mod html;
mod live;
mod metrics;
mod pages;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use warp::path::FullPath;
use warp::{Filter, Rejection, Reply};

use crate::config::{find_backend, BackendConfig, RelayConfig, Secret, WebConfig};
use crate::github::Reporter;
use crate::github::StatusOutbox;
use crate::logs::LogStore;
use crate::model::JobId;
use crate::relay::RelayHealth;
use crate::scheduler::Scheduler;
use crate::webhook::Intake;

pub use actions::{ActionError, ActionRefused};
pub use html::html_escape;

/// What the web UI reads and acts on; built once by the service.
#[derive(Clone)]
pub struct WebContext {
    pub web: WebConfig,
    /// `config::summary`, already masked (the backends page shows it).
    pub config_summary: String,
    pub backends: Arc<[BackendConfig]>,
    /// For how deliveries arrive (health).
    pub relay: RelayConfig,
    /// NUM_WORKERS, for health.
    pub workers: usize,
    /// Asked whether statuses are posted, and where.
    pub reporter: Arc<Reporter>,
    /// Re-run and cancel go through it; its board is what the pages show.
    pub scheduler: Scheduler,
    /// Where job folders live and their published (Details) links.
    pub logs: LogStore,
    /// For the backlog of statuses not yet accepted by GitHub.
    pub outbox: StatusOutbox,
    /// For the webhook delivery counters.
    pub intake: Arc<Intake>,
    /// The smee link's state, when a smee relay runs.
    pub smee: Option<RelayHealth>,
    /// The job runner, asked what host state jobs left behind (health).
    pub host: Arc<dyn crate::scheduler::JobRunner>,
    /// Cancelled when the service stops: ends open live-log streams, which
    /// would otherwise hold the server's graceful shutdown until their job ends.
    pub shutdown: CancellationToken,
}

/// [`WebContext`] plus what is derived from the config once.
struct Web {
    context: WebContext,
    admin_token: Option<Secret>,
}

impl Web {
    fn board(&self) -> &crate::scheduler::JobBoard {
        self.context.scheduler.board()
    }

    fn job_dir(&self, id: &JobId) -> std::path::PathBuf {
        self.context.logs.jobs_dir.join(id.as_str())
    }

    fn mask(&self, text: &str) -> String {
        self.context.logs.masker().mask(text)
    }

    fn backend(&self, name: &str) -> Option<&BackendConfig> {
        find_backend(&self.context.backends, name)
    }
}

/// Every route of the web UI, for loopback clients only. Combine with the
/// webhook routes and `webhook::recover` (unknown paths become 404).
pub fn routes(
    context: WebContext,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let web = Arc::new(Web {
        admin_token: context
            .web
            .admin_token
            .clone()
            .filter(|token| !token.is_empty()),
        context,
    });
    let local = warp::addr::remote().and_then(|remote: Option<SocketAddr>| async move {
        match remote {
            Some(addr) if addr.ip().is_loopback() => Ok(()),
            _ => Err(warp::reject::not_found()),
        }
    });
    local.untuple_one().and(
        pages::routes(web.clone())
            .or(api::routes(web.clone()))
            .or(actions::routes(web.clone()))
            .or(metrics::routes(web.clone()))
            .or(live::routes(web.clone()))
            .or(files::routes(web)),
    )
}

/// `/jobs/<id>` is the job page, `/jobs/<id>/` the log index (warp matches
/// both with one path filter, so the request's own path decides).
fn has_trailing_slash(path: &FullPath) -> bool {
    path.as_str().ends_with('/')
}
