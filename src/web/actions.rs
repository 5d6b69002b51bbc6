//! Re-run and cancel, the only routes that change anything, and who may
//! use them.
//!
//! - `POST /jobs/<id>/rerun`, `POST /jobs/<id>/cancel`: the page's forms;
//!   success redirects (303) to the job page, a refusal is a small page.
//! - `POST /api/jobs/<id>/rerun`, `POST /api/jobs/<id>/cancel`: JSON.
//!
//! Every UI route already answers loopback clients only. Actions also need
//! a loopback Host name (a page from a DNS-rebound site cannot post here),
//! a same-origin request (no cross-site form posts from other tabs), and
//! WEB_ADMIN_TOKEN as `Authorization: Bearer <token>` or the form field
//! `token`: without WEB_ADMIN_TOKEN set, actions are disabled.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::IpAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use thiserror::Error;
use warp::http::{HeaderMap, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::api::json_error;
use super::view::job_detail;
use super::{html, Web};
use crate::model::{CancelReason, JobId, JobRequest};
use crate::scheduler::Enqueued;

/// A form carries one short token; anything bigger is not ours.
const MAX_FORM_BYTES: usize = 4096;

/// Why an action request was not let through.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ActionRefused {
    #[error("this action needs the admin token (WEB_ADMIN_TOKEN): send `Authorization: Bearer <token>` or the form field `token`")]
    TokenMissing,
    #[error("the admin token does not match")]
    TokenWrong,
    #[error("web actions are disabled: set WEB_ADMIN_TOKEN to enable them")]
    Disabled,
    #[error("actions are only taken from pages of this UI: cross-site request refused")]
    CrossSite,
    #[error("actions need a loopback Host (localhost, 127.0.0.1 or [::1]), not {0:?}")]
    ForeignHost(String),
    #[error("request body larger than {MAX_FORM_BYTES} bytes or unreadable")]
    BadBody,
}

impl ActionRefused {
    fn status(&self) -> StatusCode {
        match self {
            ActionRefused::TokenMissing => StatusCode::UNAUTHORIZED,
            ActionRefused::BadBody => StatusCode::BAD_REQUEST,
            ActionRefused::TokenWrong
            | ActionRefused::Disabled
            | ActionRefused::CrossSite
            | ActionRefused::ForeignHost(_) => StatusCode::FORBIDDEN,
        }
    }
}

/// Why an authorised action could not be done.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ActionError {
    #[error("no such job")]
    NoSuchJob,
    #[error("the job is not queued or running")]
    NotLive,
    #[error("job {0} for the same commit and backend is queued or running")]
    AlreadyLive(JobId),
    #[error("backend {0} is no longer configured")]
    BackendGone(String),
    #[error("ember-ci is shutting down")]
    ShuttingDown,
}

impl ActionError {
    fn status(&self) -> StatusCode {
        match self {
            ActionError::NoSuchJob => StatusCode::NOT_FOUND,
            ActionError::NotLive | ActionError::AlreadyLive(_) | ActionError::BackendGone(_) => {
                StatusCode::CONFLICT
            }
            ActionError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Rerun,
    Cancel,
}

impl Action {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "rerun" => Some(Action::Rerun),
            "cancel" => Some(Action::Cancel),
            _ => None,
        }
    }
}

/// Who asked, as far as the checks need to know.
struct Request {
    headers: HeaderMap,
    form: HashMap<String, String>,
}

#[derive(Serialize)]
struct Done<'a> {
    action: &'a str,
    /// The job acted on, or for a re-run the new job.
    job: &'a JobId,
    page_url: String,
}

/// How a route answers: the API in JSON, the page's forms with pages.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Json,
    Page,
}

pub fn routes(web: Arc<Web>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let api = warp::path!("api" / "jobs" / String / String)
        .and(post_only())
        .and(request())
        .then(answering(web.clone(), Answer::Json));
    let form = warp::path!("jobs" / String / String)
        .and(post_only())
        .and(request())
        .then(answering(web, Answer::Page));
    api.or(form).unify()
}

/// The handler of one route pair: `(id, action, request)` to the answer.
fn answering(
    web: Arc<Web>,
    shape: Answer,
) -> impl Fn(String, String, Result<Request, ActionRefused>) -> Ready<warp::reply::Response> + Clone
{
    move |id, action, request| ready(answer(&web, shape, &id, &action, request))
}

/// POST, else "not found" rather than warp's 405: these paths overlap the
/// raw log files (`/jobs/<id>/<file>`), and a 405 would outrank their 404.
fn post_only() -> impl Filter<Extract = (), Error = Rejection> + Copy {
    warp::method()
        .and_then(|method: warp::http::Method| async move {
            if method == warp::http::Method::POST {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

fn request() -> impl Filter<Extract = (Result<Request, ActionRefused>,), Error = Rejection> + Clone
{
    warp::header::headers_cloned()
        .and(warp::body::stream())
        .then(|headers: HeaderMap, body| async move {
            let bytes = read_capped(body).await?;
            let form = if is_form(&headers) {
                parse_form(&bytes)
            } else {
                HashMap::new()
            };
            Ok(Request { headers, form })
        })
}

fn answer(
    web: &Web,
    shape: Answer,
    id: &str,
    action: &str,
    request: Result<Request, ActionRefused>,
) -> warp::reply::Response {
    let Some(action) = Action::parse(action) else {
        return shape.no_such_action();
    };
    if let Err(refused) = request.and_then(|request| authorize(web, &request)) {
        return refusal(shape.refused(&refused), &refused);
    }
    match act(web, id, action) {
        Ok((name, job)) => shape.done(name, &job),
        Err(err) => shape.not_done(&err),
    }
}

impl Answer {
    fn no_such_action(self) -> warp::reply::Response {
        match self {
            Answer::Json => {
                json_error(StatusCode::NOT_FOUND, "no such action: use rerun or cancel")
            }
            Answer::Page => html::message_page(
                StatusCode::NOT_FOUND,
                "No such action",
                "Use rerun or cancel.",
            ),
        }
    }

    fn refused(self, refused: &ActionRefused) -> warp::reply::Response {
        match self {
            Answer::Json => json_error(refused.status(), &refused.to_string()),
            Answer::Page => html::message_page(refused.status(), "Refused", &refused.to_string()),
        }
    }

    /// The API says what was done; a form post goes on to the job's page.
    fn done(self, action: &str, job: &JobId) -> warp::reply::Response {
        let page_url = format!("/jobs/{job}");
        match self {
            Answer::Json => warp::reply::with_status(
                warp::reply::json(&Done {
                    action,
                    job,
                    page_url,
                }),
                StatusCode::ACCEPTED,
            )
            .into_response(),
            Answer::Page => see_other(&page_url),
        }
    }

    fn not_done(self, err: &ActionError) -> warp::reply::Response {
        match self {
            Answer::Json => json_error(err.status(), &err.to_string()),
            Answer::Page => html::message_page(err.status(), "Not done", &err.to_string()),
        }
    }
}

/// A 401 names the scheme it wants.
fn refusal(mut response: warp::reply::Response, refused: &ActionRefused) -> warp::reply::Response {
    if *refused == ActionRefused::TokenMissing {
        response.headers_mut().insert(
            "www-authenticate",
            warp::http::HeaderValue::from_static("Bearer realm=\"ember-ci\""),
        );
    }
    response
}

fn see_other(location: &str) -> warp::reply::Response {
    let mut response = warp::reply::with_status("", StatusCode::SEE_OTHER).into_response();
    if let Ok(value) = warp::http::HeaderValue::from_str(location) {
        response.headers_mut().insert("location", value);
    }
    response
}

/// Does the action; returns its name and the job it concerns (the new job
/// for a re-run).
fn act(web: &Web, id: &str, action: Action) -> Result<(&'static str, JobId), ActionError> {
    let id = JobId::parse(id).map_err(|_| ActionError::NoSuchJob)?;
    match action {
        Action::Rerun => rerun(web, &id).map(|new| ("rerun", new)),
        Action::Cancel => cancel(web, &id).map(|()| ("cancel", id)),
    }
}

/// Queues the job's request again, even though it already has a result.
fn rerun(web: &Web, id: &JobId) -> Result<JobId, ActionError> {
    let job = job_detail(web, id).ok_or(ActionError::NoSuchJob)?.job;
    if web.backend(job.backend.as_str()).is_none() {
        return Err(ActionError::BackendGone(job.backend.to_string()));
    }
    let request = JobRequest {
        pr: job.pr,
        sha: job.sha,
        backend: job.backend,
    };
    match web.context.scheduler.enqueue_rerun(request) {
        Enqueued::Queued(new) => Ok(new),
        Enqueued::AlreadyLive(live) => Err(ActionError::AlreadyLive(live)),
        // A re-run skips the finished-commit check, so only a closed queue
        // refuses it; the arm is kept for completeness.
        Enqueued::Refused | Enqueued::AlreadyFinished => Err(ActionError::ShuttingDown),
    }
}

fn cancel(web: &Web, id: &JobId) -> Result<(), ActionError> {
    if web
        .context
        .scheduler
        .cancel_job(id, CancelReason::FromWebUi)
    {
        Ok(())
    } else if job_detail(web, id).is_some() {
        Err(ActionError::NotLive)
    } else {
        Err(ActionError::NoSuchJob)
    }
}

fn authorize(web: &Web, request: &Request) -> Result<(), ActionRefused> {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let host = header("host").unwrap_or_default();
    if !is_loopback_host(host) {
        return Err(ActionRefused::ForeignHost(host.chars().take(80).collect()));
    }
    // Browsers send Sec-Fetch-Site on every request they make for a page;
    // "none" is the user typing or bookmarking, which is as good as same-origin.
    if header("sec-fetch-site").is_some_and(|site| site != "same-origin" && site != "none") {
        return Err(ActionRefused::CrossSite);
    }
    if header("origin").is_some_and(|origin| origin != format!("http://{host}")) {
        return Err(ActionRefused::CrossSite);
    }
    let Some(expected) = &web.admin_token else {
        return Err(ActionRefused::Disabled);
    };
    let given = header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .or_else(|| request.form.get("token").map(String::as_str))
        .filter(|token| !token.is_empty())
        .ok_or(ActionRefused::TokenMissing)?;
    if is_same_secret(given.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ActionRefused::TokenWrong)
    }
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
pub(super) fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares in time independent of where the first difference is, so the
/// token cannot be guessed byte by byte from response times.
fn is_same_secret(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}

/// `a=1&b=x+y` -> {a: 1, b: "x y"}; the first of repeated keys wins.
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut form = HashMap::new();
    for pair in String::from_utf8_lossy(body).split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        form.entry(decode(key)).or_insert_with(|| decode(value));
    }
    form
}

async fn read_capped<S, B, E>(body: S) -> Result<bytes::Bytes, ActionRefused>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| ActionRefused::BadBody)?;
        if collected.len() + chunk.remaining() > MAX_FORM_BYTES {
            return Err(ActionRefused::BadBody);
        }
        collected.put(chunk);
    }
    Ok(collected.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names_with_and_without_ports() {
        for host in [
            "localhost",
            "localhost:8010",
            "127.0.0.1:1",
            "127.1.2.3",
            "[::1]:8010",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example:8010",
            "10.0.0.1:8010",
            "[::2]:1",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn form_fields_are_percent_decoded() {
        let form = parse_form(b"token=a%2Bb+c&token=second&empty");
        assert_eq!(form.get("token").map(String::as_str), Some("a+b c"));
        assert_eq!(form.get("empty").map(String::as_str), Some(""));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(is_same_secret(b"abc", b"abc"));
        assert!(!is_same_secret(b"abc", b"abd"));
        assert!(!is_same_secret(b"ab", b"abc"));
    }
}
