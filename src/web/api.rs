//! The JSON API: `GET /api/jobs` (filters `state`, `backend`, `pr`),
//! `GET /api/jobs/{id}` (404 when unknown) and `GET /api/health`.
//! Shapes are those of [`super::view`] and [`super::health`].

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::view::{job_detail, job_rows, JobRow, ShownState};
use super::{health, Web};
use crate::model::{BackendName, InvalidValue, JobId, PrNumber};

/// A `/api/jobs` query the API cannot answer.
#[derive(Debug, Error)]
pub enum FilterError {
    #[error("unknown filter `{0}`: use state, backend or pr")]
    UnknownKey(String),
    #[error("state must be queued, running, finished or interrupted, not `{0}`")]
    State(String),
    #[error("{0}")]
    Value(#[from] InvalidValue),
}

/// Which jobs `/api/jobs` lists; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub state: Option<ShownState>,
    pub backend: Option<BackendName>,
    pub pr: Option<PrNumber>,
}

impl JobFilter {
    pub fn parse(query: &HashMap<String, String>) -> Result<Self, FilterError> {
        let mut filter = JobFilter::default();
        for (key, value) in query {
            match key.as_str() {
                "state" => {
                    filter.state = Some(
                        ShownState::parse(value)
                            .ok_or_else(|| FilterError::State(value.clone()))?,
                    );
                }
                "backend" => filter.backend = Some(BackendName::new(value)?),
                "pr" => filter.pr = Some(value.parse()?),
                _ => return Err(FilterError::UnknownKey(key.clone())),
            }
        }
        Ok(filter)
    }

    pub fn matches(&self, job: &JobRow) -> bool {
        self.state.is_none_or(|state| job.state == state)
            && self.backend.as_ref().is_none_or(|b| &job.backend == b)
            && self.pr.is_none_or(|pr| job.pr == pr)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// `{"error": message}` with `status`.
pub fn json_error(status: StatusCode, message: &str) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(&ErrorBody { error: message }), status)
        .into_response()
}

pub fn routes(web: Arc<Web>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let list_web = web.clone();
    let list = warp::path!("api" / "jobs")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .map(move |query: HashMap<String, String>| list_jobs(&list_web, &query));
    let one_web = web.clone();
    let one = warp::path!("api" / "jobs" / String)
        .and(warp::get())
        .map(move |id: String| one_job(&one_web, &id));
    let health_web = web.clone();
    let health = warp::path!("api" / "health")
        .and(warp::get())
        .map(move || warp::reply::json(&health::health(&health_web)).into_response());
    let specs = warp::path!("api" / "backends" / String / "specs")
        .and(warp::get())
        .map(move |name: String| backend_specs(&web, &name));
    list.or(one).unify().or(health).unify().or(specs).unify()
}

fn backend_specs(web: &Web, name: &str) -> warp::reply::Response {
    match web.history(name) {
        Some(Ok(history)) => warp::reply::json(&history).into_response(),
        Some(Err(err)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
        None => json_error(StatusCode::NOT_FOUND, "no such backend"),
    }
}

fn list_jobs(web: &Web, query: &HashMap<String, String>) -> warp::reply::Response {
    match JobFilter::parse(query) {
        Ok(filter) => {
            let jobs: Vec<JobRow> = job_rows(web)
                .into_iter()
                .filter(|job| filter.matches(job))
                .collect();
            warp::reply::json(&jobs).into_response()
        }
        Err(err) => json_error(StatusCode::BAD_REQUEST, &err.to_string()),
    }
}

fn one_job(web: &Web, id: &str) -> warp::reply::Response {
    match JobId::parse(id).ok().and_then(|id| job_detail(web, &id)) {
        Some(detail) => warp::reply::json(&detail).into_response(),
        None => json_error(StatusCode::NOT_FOUND, "no such job"),
    }
}
