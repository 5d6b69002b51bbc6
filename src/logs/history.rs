//! A backend's history ([`BackendHistory`]) as HTML with no JavaScript:
//! the body of the web UI's history page and, framed on its own, the
//! static `history.html` pushed beside the backend's job folders, so the
//! CI's health can be read with no server.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use super::capture::format_utc;
use super::render::escape as esc;
use crate::history::{BackendHistory, JobResult};

/// The static page's name on the logs branch.
pub const HISTORY_FILE: &str = "history.html";

fn utc(millis: i64) -> String {
    format_utc(UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
}

/// The summary's sections. `job_link` gives a job's page, if it has one.
pub fn history_body(
    history: &BackendHistory,
    job_link: &dyn Fn(&JobResult) -> Option<String>,
) -> String {
    let mut body = format!(
        "<h1>History of {}</h1>\n<section id=\"pass-rate\"><p>",
        esc(&history.backend)
    );
    match history.pass_rate {
        Some(rate) => {
            let _ = write!(
                body,
                "Pass rate over the last {} days: <strong>{:.0}%</strong> ({} of {} jobs passed)",
                history.window_days,
                rate * 100.0,
                history.successes,
                history.jobs
            );
        }
        None => {
            let _ = write!(
                body,
                "No job finished in the last {} days.",
                history.window_days
            );
        }
    }
    body.push_str("</p></section>\n");

    body.push_str("<section id=\"failing-specs\"><h2>Recently failing specs</h2>");
    if history.failing.is_empty() {
        body.push_str("<p class=\"empty\">no spec failed</p>");
    } else {
        body.push_str(
            "<table><tr><th>Spec</th><th>Failed</th><th>Passed</th><th>Last failed</th></tr>\n",
        );
        for spec in &history.failing {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td class=\"failed\">{}</td><td>{}</td><td>{} ({})</td></tr>",
                esc(&spec.spec),
                spec.failures,
                spec.passes,
                utc(spec.last_failed_at_ms),
                esc(&spec.last_failed_job)
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>\n");

    body.push_str(
        "<section id=\"flaky-specs\"><h2>Flaky specs (failed and passed on one commit)</h2>",
    );
    if history.flaky.is_empty() {
        body.push_str("<p class=\"empty\">none</p>");
    } else {
        body.push_str(
            "<table><tr><th>Spec</th><th>Commit</th><th>Failed</th><th>Passed</th></tr>\n",
        );
        for spec in &history.flaky {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td><code>{}</code></td><td class=\"failed\">{}</td><td class=\"passed\">{}</td></tr>",
                esc(&spec.spec),
                esc(spec.sha.get(..7).unwrap_or(&spec.sha)),
                spec.failures,
                spec.passes
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>\n");

    body.push_str("<section id=\"recent-jobs\"><h2>Recent jobs</h2>");
    if history.recent.is_empty() {
        body.push_str("<p class=\"empty\">none</p>");
    } else {
        body.push_str(
            "<table><tr><th>Job</th><th>PR</th><th>Commit</th><th>Finished</th><th>Result</th>\
             <th>Specs (passed / failed / skipped)</th><th>Description</th></tr>\n",
        );
        for job in &history.recent {
            let id = match job_link(job) {
                Some(link) => format!("<a href=\"{}\">{}</a>", esc(&link), esc(&job.id)),
                None => esc(&job.id),
            };
            let specs = job.specs.map_or_else(
                || "no report".to_string(),
                |s| format!("{} / {} / {}", s.passed, s.failed, s.skipped),
            );
            let _ = writeln!(
                body,
                "<tr><td>{id}</td><td>#{}</td><td><code>{}</code></td><td>{}</td>\
                 <td><span class=\"{result}\">{result}</span></td><td>{specs}</td><td>{}</td></tr>",
                job.pr,
                esc(job.sha.get(..7).unwrap_or(&job.sha)),
                utc(job.finished_at_ms),
                esc(&job.description),
                result = esc(&job.result),
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>\n");
    body
}

/// The static page for the logs branch: the body in a frame of its own.
pub fn history_page(
    history: &BackendHistory,
    job_link: &dyn Fn(&JobResult) -> Option<String>,
) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{} · ember-ci history</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1rem;color:#1d2430}}\
         table{{border-collapse:collapse}}th,td{{border:1px solid #d5d9e0;padding:.3rem .6rem;text-align:left}}\
         .success,.passed{{color:#1a7f37}}.failure,.failed{{color:#cf222e}}.error{{color:#9a6700}}\
         </style></head><body>\n{}</body></html>\n",
        esc(&history.backend),
        history_body(history, job_link)
    )
}
