//! The local web UI and JSON API: what the CI is doing, at a glance.
//!
//! These routes have their own listener on 127.0.0.1 (WEB_UI_PORT), apart
//! from the webhook's, and answer only requests that are local in every
//! way ([`local_only`]): a loopback peer, a loopback `Host` (a page from a
//! DNS-rebound site cannot read them) and no proxy headers (`Forwarded`,
//! `X-Forwarded-*`, `Via`: a local reverse proxy or tunnel would otherwise
//! make every page reachable from outside). Pages are server-rendered HTML that works without JavaScript; a
//! little script refreshes them in place and streams the running step's log.
//!
//! - `view`: the read model shared by pages and API (board + `job.json`).
//! - `health`: relay, GitHub reporting and intake figures.
//! - `pages` + `html`: the dashboard, job page, backends page and each
//!   backend's history page (`/backends/<name>/history`).
//! - `api`: `/api/jobs`, `/api/jobs/{id}`, `/api/health`,
//!   `/api/backends/<name>/specs` (the history as JSON).
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
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;
use warp::path::FullPath;
use warp::{Filter, Rejection, Reply};

use crate::config::{find_backend, BackendConfig, RelayConfig, Secret, WebConfig};
use crate::github::Reporter;
use crate::github::StatusOutbox;
use crate::history::BackendHistory;
use crate::journal::JournalError;
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

    /// A configured backend's history, its free text masked; None for a
    /// name that is not a backend.
    fn history(&self, name: &str) -> Option<Result<BackendHistory, JournalError>> {
        let backend = self.backend(name)?;
        let journal = self.context.scheduler.journal();
        Some(
            journal
                .backend_history(backend.name.as_str(), SystemTime::now())
                .map(|mut history| {
                    for job in &mut history.recent {
                        job.description = self.mask(&job.description);
                    }
                    history
                }),
        )
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
    local_only().and(
        pages::routes(web.clone())
            .or(api::routes(web.clone()))
            .or(actions::routes(web.clone()))
            .or(metrics::routes(web.clone()))
            .or(live::routes(web.clone()))
            .or(files::routes(web)),
    )
}

/// Why a request is not served: it is not local.
#[derive(Debug)]
struct NotLocal(String);

impl warp::reject::Reject for NotLocal {}

/// Passes local requests only; see the module docs.
fn local_only() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    crate::server::peer_addr()
        .and(warp::header::headers_cloned())
        .and_then(
            |remote: Option<SocketAddr>, headers: warp::http::HeaderMap| async move {
                local_request(remote, &headers).map_err(|why| warp::reject::custom(NotLocal(why)))
            },
        )
        .untuple_one()
}

fn local_request(
    remote: Option<SocketAddr>,
    headers: &warp::http::HeaderMap,
) -> Result<(), String> {
    if !remote.is_some_and(|addr| addr.ip().is_loopback()) {
        return Err("the web UI answers loopback clients only".to_string());
    }
    if let Some(name) = headers.keys().find(|name| {
        let name = name.as_str();
        name == "forwarded" || name == "via" || name.starts_with("x-forwarded-")
    }) {
        return Err(format!(
            "the request came through a proxy ({name} header); the web UI answers local clients only"
        ));
    }
    let host = headers
        .get("host")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !actions::is_loopback_host(host) {
        return Err(format!(
            "Host {:?} is not a loopback name (localhost, 127.0.0.1, [::1])",
            host.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

/// The UI's answers for refused requests, then the webhook's.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Rejection> {
    if let Some(NotLocal(why)) = rejection.find::<NotLocal>() {
        let status = warp::http::StatusCode::FORBIDDEN;
        return Ok(warp::reply::with_status(why.clone(), status).into_response());
    }
    crate::webhook::recover(rejection)
        .await
        .map(|reply| reply.into_response())
}

/// `/jobs/<id>` is the job page, `/jobs/<id>/` the log index (warp matches
/// both with one path filter, so the request's own path decides).
fn has_trailing_slash(path: &FullPath) -> bool {
    path.as_str().ends_with('/')
}
