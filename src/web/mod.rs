//! The local web UI: job logs and the job board. Only loopback clients get
//! these pages; from elsewhere only the webhook path answers, so a public
//! WEB_ADDR exposes nothing but signed-delivery intake.

use std::net::SocketAddr;
use std::path::PathBuf;

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::logs::{INDEX_FILE, JOB_SUMMARY_FILE};
use crate::model::JobId;
use crate::scheduler::JobBoard;

/// Routes of the web UI: `/jobs/<id>/` (log index), `/jobs/<id>/<file>`
/// (raw logs) and `/api/jobs`.
pub fn routes(
    board: JobBoard,
    jobs_dir: PathBuf,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let local = warp::addr::remote().and_then(|remote: Option<SocketAddr>| async move {
        match remote {
            Some(addr) if addr.ip().is_loopback() => Ok(()),
            _ => Err(warp::reject::not_found()),
        }
    });
    let index_dir = jobs_dir.clone();
    // `/jobs/<id>/` (the Details link) and `/jobs/<id>`; files below go to
    // the static handler.
    let job_index = warp::path("jobs")
        .and(warp::path::param::<String>())
        .and(warp::path::tail())
        .and(warp::get())
        .and_then(move |id: String, rest: warp::path::Tail| {
            let index_dir = index_dir.clone();
            async move {
                if rest.as_str().is_empty() {
                    Ok(job_index(&index_dir, &id))
                } else {
                    Err(warp::reject::not_found())
                }
            }
        });
    let job_files = warp::path("jobs")
        .and(warp::get())
        .and(warp::fs::dir(jobs_dir));
    let api_jobs = warp::path!("api" / "jobs")
        .and(warp::get())
        .map(move || warp::reply::json(&board.jobs()));
    local
        .untuple_one()
        .and(job_index.or(job_files).or(api_jobs))
}

/// The job's rendered `index.html`, or while it runs a plain index of its
/// log files built from its `job.json`.
fn job_index(jobs_dir: &std::path::Path, id: &str) -> warp::reply::Response {
    let Ok(id) = JobId::parse(id) else {
        return warp::reply::with_status("no such job", StatusCode::NOT_FOUND).into_response();
    };
    // A finished job has its rendered page (the one published to LOGS_REPO).
    if let Ok(page) = std::fs::read_to_string(jobs_dir.join(id.as_str()).join(INDEX_FILE)) {
        return warp::reply::html(page).into_response();
    }
    let summary = std::fs::read(jobs_dir.join(id.as_str()).join(JOB_SUMMARY_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let Some(summary) = summary else {
        return warp::reply::with_status("no such job", StatusCode::NOT_FOUND).into_response();
    };
    let text = |v: &serde_json::Value| html_escape(v.as_str().unwrap_or(""));
    let mut rows = String::new();
    for step in summary["steps"].as_array().into_iter().flatten() {
        let file = text(&step["file"]);
        rows.push_str(&format!(
            "<tr><td><a href=\"{file}\">{}</a></td><td>{}</td><td>{:.1} s</td><td>{} bytes</td></tr>\n",
            text(&step["step"]),
            step["exit_code"],
            step["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            step["bytes"],
        ));
    }
    let request = &summary["request"];
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ember-ci job {id}</title></head><body>\
         <h1>PR #{} {} on {}</h1><p>Result: {}</p><p>Started {} UTC, finished {}</p>\
         <table><tr><th>step</th><th>exit</th><th>duration</th><th>size</th></tr>\n{rows}</table></body></html>",
        request["pr"],
        text(&request["sha"]),
        text(&request["backend"]),
        html_escape(summary["description"].as_str().unwrap_or("running")),
        text(&summary["started_at"]),
        html_escape(summary["finished_at"].as_str().unwrap_or("-")),
    );
    warp::reply::html(page).into_response()
}

pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
