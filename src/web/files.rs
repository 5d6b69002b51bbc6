//! A job's log folder over HTTP: `/jobs/<id>/` is its log index (the
//! Details link of the job's statuses points here when logs are not
//! published elsewhere): the rendered `index.html` once the job finished,
//! before that a plain list of its step files. `/jobs/<id>/<file>` serves
//! the files themselves, masked when they were written. A job whose logs
//! the publish gate withheld (a secret survived masking) is served not at
//! all: a page says where to read them on the host.

use std::fmt::Write as _;
use std::sync::Arc;

use warp::http::StatusCode;
use warp::path::FullPath;
use warp::{Filter, Rejection, Reply};

use super::html::{badge, duration, html_escape as esc, message_page, page};
use super::view::job_detail;
use super::{has_trailing_slash, Web};
use crate::logs::{INDEX_FILE, JOB_SUMMARY_FILE, WITHHELD_MARKER};
use crate::model::JobId;

pub fn routes(web: Arc<Web>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let jobs_dir = web.context.logs.jobs_dir.clone();
    let index = warp::path!("jobs" / String)
        .and(warp::get())
        .and(warp::path::full())
        .and_then(|id: String, path: FullPath| async move {
            if has_trailing_slash(&path) {
                Ok(id)
            } else {
                Err(warp::reject::not_found())
            }
        })
        .map({
            let web = web.clone();
            move |id: String| log_index(&web, &id)
        });
    let withheld =
        warp::path!("jobs" / String / ..)
            .and(warp::get())
            .and_then(move |id: String| {
                let web = web.clone();
                async move {
                    match JobId::parse(&id) {
                        Ok(id) if is_withheld(&web, &id) => Ok(withheld_page(&web, &id)),
                        _ => Err(warp::reject::not_found()),
                    }
                }
            });
    let files = warp::path("jobs")
        .and(warp::get())
        .and(warp::fs::dir(jobs_dir));
    withheld.or(index).or(files)
}

fn is_withheld(web: &Web, id: &JobId) -> bool {
    web.job_dir(id).join(WITHHELD_MARKER).exists()
}

fn withheld_page(web: &Web, id: &JobId) -> warp::reply::Response {
    let text = format!(
        "The publish gate found a secret in these logs, so they are not served. \
         Read them on the host in {}.",
        web.job_dir(id).display()
    );
    message_page(StatusCode::FORBIDDEN, "Logs withheld", &text)
}

fn log_index(web: &Web, id: &str) -> warp::reply::Response {
    let Ok(id) = JobId::parse(id) else {
        return no_logs();
    };
    // The page `logs::render_job` wrote (and published, with LOGS_REPO).
    if let Ok(page) = std::fs::read_to_string(web.job_dir(&id).join(INDEX_FILE)) {
        return warp::reply::html(page).into_response();
    }
    let Some(detail) = job_detail(web, &id) else {
        return no_logs();
    };
    let job = &detail.job;
    let mut body = format!(
        "<h1>PR #{} {} on {}</h1><p>{} {}</p><p><a href=\"{}\">Job page</a> · \
         <a href=\"{JOB_SUMMARY_FILE}\">{JOB_SUMMARY_FILE}</a></p>\n",
        job.pr,
        esc(&job.short_sha),
        esc(job.backend.as_str()),
        badge(job.result.unwrap_or(job.state.as_str())),
        job.description.as_deref().map(esc).unwrap_or_default(),
        esc(&job.page_url),
    );
    body.push_str(
        "<table><tr><th>step</th><th>state</th><th>exit</th><th>duration</th><th>size</th></tr>\n",
    );
    for step in &detail.steps {
        let _ = writeln!(
            body,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&step.log_url),
            step.step,
            badge(step.state.as_str()),
            step.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            step.duration_secs.map(duration).unwrap_or_default(),
            step.log_bytes
                .map(|b| format!("{b} bytes"))
                .unwrap_or_default(),
        );
    }
    body.push_str("</table>");
    let title = format!("Logs of job {}", job.id);
    warp::reply::html(page(&title, 0, &body)).into_response()
}

fn no_logs() -> warp::reply::Response {
    message_page(
        StatusCode::NOT_FOUND,
        "No such job",
        "This job has no logs here.",
    )
}
