//! The HTML pages: the dashboard (`/`), a job's page (`/jobs/<id>`) and the
//! backends page (`/backends`). Rendering only: the data comes from
//! [`super::view`] and [`super::health`], already masked.

use std::fmt::Write as _;
use std::sync::Arc;

use warp::http::StatusCode;
use warp::path::FullPath;
use warp::{Filter, Rejection, Reply};

use super::html::{badge, duration, html_escape as esc, message_page, page};
use super::live::tail_of_file;
use super::view::{job_detail, job_rows, latest_by_backend, JobDetail, JobRow, ShownState};
use super::{has_trailing_slash, health, Web};
use crate::model::JobId;

/// How often the dashboard refreshes itself in the browser.
const DASHBOARD_REFRESH_MS: u32 = 2000;
/// A job page follows its log over SSE; this refresh catches the rest
/// (a queued job starting, a stream that dropped).
const JOB_PAGE_REFRESH_MS: u32 = 5000;
/// Finished jobs listed on the dashboard.
const RECENT_JOBS_SHOWN: usize = 50;
/// Bytes of the running step's log put into the page itself.
const LIVE_LOG_TAIL_BYTES: u64 = 64 * 1024;

pub fn routes(web: Arc<Web>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let dashboard_web = web.clone();
    let dashboard = warp::path::end()
        .and(warp::get())
        .map(move || warp::reply::html(dashboard(&dashboard_web)).into_response());
    let backends_web = web.clone();
    let backends = warp::path!("backends")
        .and(warp::get())
        .map(move || warp::reply::html(backends(&backends_web)).into_response());
    let job_web = web.clone();
    let job = warp::path!("jobs" / String)
        .and(warp::get())
        .and(warp::path::full())
        .and_then(|id: String, path: FullPath| async move {
            // `/jobs/<id>/` is the log index, served by `files`.
            if has_trailing_slash(&path) {
                Err(warp::reject::not_found())
            } else {
                Ok(id)
            }
        })
        .map(move |id: String| job(&job_web, &id));
    let history = warp::path!("backends" / String / "history")
        .and(warp::get())
        .map(move |name: String| history(&web, &name));
    dashboard
        .or(backends)
        .unify()
        .or(job)
        .unify()
        .or(history)
        .unify()
}

/// One backend's history: pass rate, failing and flaky specs, recent jobs.
fn history(web: &Web, name: &str) -> warp::reply::Response {
    match web.history(name) {
        Some(Ok(history)) => {
            let body =
                crate::logs::history_body(&history, &|job| Some(format!("/jobs/{}", job.id)));
            warp::reply::html(page(&format!("History of {name}"), 0, &body)).into_response()
        }
        Some(Err(err)) => message_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "History unavailable",
            &err.to_string(),
        ),
        None => message_page(StatusCode::NOT_FOUND, "No such backend", name),
    }
}

fn dashboard(web: &Web) -> String {
    let rows = job_rows(web);
    let health = health::health(web);
    let mut body = String::from("<h1>ember-ci</h1>\n");

    let _ = writeln!(
        body,
        "<section id=\"health\" data-live><h2>Health</h2><table>\
         <tr><th>Jobs</th><td>{} running, {} queued, {} worker slot(s)</td></tr>\
         <tr><th>GitHub reporting</th><td>{}; {} status(es) waiting to be posted</td></tr>\
         <tr><th>Deliveries in</th><td>{}</td></tr>\
         <tr><th>Webhook intake</th><td>{} accepted, {} ignored, {} duplicate, {} rejected</td></tr>\
         <tr><th>Host</th><td>{}</td></tr>\
         {}</table></section>",
        health.jobs.running,
        health.jobs.queued,
        health.workers,
        match &health.github.api_url {
            Some(url) => format!("posting to {}", esc(url)),
            None => "printing to the console (no GH_TOKEN)".to_string(),
        },
        health.github.statuses_waiting,
        relay_text(&health.relay),
        health.deliveries.accepted,
        health.deliveries.ignored,
        health.deliveries.duplicates,
        health.deliveries.rejected,
        if health.host_is_clean {
            "clean: jobs left nothing behind".to_string()
        } else {
            format!(
                "UNHEALTHY: a job left what host hygiene could not remove: {}",
                esc(&health.host_problems.join("; "))
            )
        },
        host_rows(&health.hosts),
    );

    let sections = [
        ("running", "Running", ShownState::Running),
        ("queued", "Queued", ShownState::Queued),
    ];
    for (id, title, state) in sections {
        let jobs: Vec<&JobRow> = rows.iter().filter(|r| r.state == state).collect();
        jobs_section(&mut body, id, &format!("{title} ({})", jobs.len()), &jobs);
    }
    let recent: Vec<&JobRow> = rows
        .iter()
        .filter(|r| !r.state.is_live())
        .take(RECENT_JOBS_SHOWN)
        .collect();
    jobs_section(&mut body, "recent", "Recent", &recent);
    page("Dashboard", DASHBOARD_REFRESH_MS, &body)
}

/// One row per Podman host, when there are others than this one.
fn host_rows(hosts: &[health::HostHealth]) -> String {
    if hosts.len() < 2 {
        return String::new();
    }
    hosts
        .iter()
        .map(|host| {
            let state = match (&host.problem, host.is_reachable) {
                (_, true) => "reachable".to_string(),
                (Some(problem), false) => format!("UNREACHABLE: {}", esc(problem)),
                (None, false) => "UNREACHABLE".to_string(),
            };
            let jobs = if host.running_jobs.is_empty() {
                "no job".to_string()
            } else {
                host.running_jobs
                    .iter()
                    .map(|id| format!("<a href=\"/jobs/{0}\">{0}</a>", esc(id)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "<tr class=\"podman-host\"><th>Host {}</th><td>{state}; {} of {} slot(s) busy: {jobs}</td></tr>",
                esc(&host.name),
                host.running_jobs.len(),
                host.slots
            )
        })
        .collect()
}

fn relay_text(relay: &super::health::Relay) -> String {
    let mut ways = vec!["HTTP endpoint /change_hook/github".to_string()];
    if relay.smee_channel_set {
        let link = match &relay.smee {
            Some(link) if link.is_connected => format!(
                "connected since {}, {} relayed, {} refused",
                link.since.as_deref().unwrap_or("?"),
                link.deliveries_relayed,
                link.deliveries_refused
            ),
            Some(link) => format!(
                "disconnected: {}",
                link.last_error.as_deref().unwrap_or("not connected yet")
            ),
            None => "not running".to_string(),
        };
        ways.push(format!("smee relay, channel set ({})", esc(&link)));
    }
    if let Some(secs) = relay.poll_interval_secs {
        ways.push(format!("GitHub API poll every {secs} s"));
    }
    ways.join(", ")
}

fn jobs_section(body: &mut String, id: &str, title: &str, jobs: &[&JobRow]) {
    let _ = write!(
        body,
        "<section id=\"{id}\" data-live><h2>{}</h2>",
        esc(title)
    );
    if jobs.is_empty() {
        body.push_str("<p class=\"empty\">none</p></section>\n");
        return;
    }
    body.push_str(
        "<table><tr><th>Job</th><th>Backend</th><th>PR</th><th>Commit</th>\
         <th>State</th><th>Result</th><th>Duration</th></tr>\n",
    );
    for job in jobs {
        let state = match job.step {
            Some(step) => format!("{} ({step})", badge(job.state.as_str())),
            None => badge(job.state.as_str()),
        };
        let result = match (job.result, &job.description) {
            (Some(result), Some(description)) => {
                format!("{} {}", badge(result), esc(description))
            }
            (Some(result), None) => badge(result),
            _ => String::new(),
        };
        let _ = writeln!(
            body,
            "<tr id=\"job-{id}\" data-state=\"{state_word}\"><td><a href=\"{page}\">{id}</a></td>\
             <td>{backend}</td><td>#{pr}</td><td><code>{sha}</code></td><td>{state}</td>\
             <td>{result}</td><td>{duration}</td></tr>",
            id = esc(job.id.as_str()),
            state_word = job.state.as_str(),
            page = esc(&job.page_url),
            backend = esc(job.backend.as_str()),
            pr = job.pr,
            sha = esc(&job.short_sha),
            duration = job.duration_secs.map(duration).unwrap_or_default(),
        );
    }
    body.push_str("</table></section>\n");
}

fn job(web: &Web, id: &str) -> warp::reply::Response {
    let Some(detail) = JobId::parse(id).ok().and_then(|id| job_detail(web, &id)) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "No such job",
            "This job is not known here.",
        );
    };
    let title = format!("Job {}", detail.job.id);
    let refresh = if detail.job.state.is_live() {
        JOB_PAGE_REFRESH_MS
    } else {
        0
    };
    warp::reply::html(page(&title, refresh, &job_body(web, &detail))).into_response()
}

fn job_body(web: &Web, detail: &JobDetail) -> String {
    let job = &detail.job;
    let id = esc(job.id.as_str());
    let mut body = format!("<h1>Job {id}</h1>\n<section id=\"summary\" data-live><table>");
    let mut field = |label: &str, value: String| {
        let _ = write!(body, "<tr><th>{label}</th><td>{value}</td></tr>");
    };
    field("Pull request", format!("#{}", job.pr));
    field("Commit", format!("<code>{}</code>", esc(job.sha.as_str())));
    field("Backend", esc(job.backend.as_str()));
    let state = match job.step {
        Some(step) => format!("{} at {step}", badge(job.state.as_str())),
        None => badge(job.state.as_str()),
    };
    field("State", state);
    if let Some(result) = job.result {
        let description = job.description.as_deref().map(esc).unwrap_or_default();
        field("Result", format!("{} {description}", badge(result)));
    }
    for (label, at) in [
        ("Queued", &job.queued_at),
        ("Started", &job.started_at),
        ("Finished", &job.finished_at),
    ] {
        if let Some(at) = at {
            field(label, esc(at));
        }
    }
    if let Some(secs) = job.duration_secs {
        field("Duration", duration(secs));
    }
    let mut links = format!("<a href=\"{}\">log files</a>", esc(&job.logs_url));
    // Without published logs the Details link is this UI's own log index.
    let published = job
        .details_url
        .as_deref()
        .filter(|details| !details.ends_with(&job.logs_url));
    if let Some(details) = published {
        let _ = write!(links, " · <a href=\"{}\">published logs</a>", esc(details));
    }
    field("Logs", links);
    body.push_str("</table>\n");
    body.push_str(&action_forms(web, job));
    body.push_str("</section>\n");

    body.push_str("<section id=\"steps\" data-live><h2>Steps</h2>");
    if detail.steps.is_empty() {
        body.push_str("<p class=\"empty\">no step has started yet</p>");
    } else {
        body.push_str(
            "<table><tr><th>Step</th><th>State</th><th>Exit code</th><th>Duration</th><th>Note</th></tr>\n",
        );
        for step in &detail.steps {
            let _ = writeln!(
                body,
                "<tr id=\"step-{name}\"><td><a href=\"{log}\">{name}</a></td><td>{state}</td>\
                 <td>{exit}</td><td>{duration}</td><td>{note}</td></tr>",
                name = step.step,
                log = esc(&step.log_url),
                state = badge(step.state.as_str()),
                exit = step.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                duration = step.duration_secs.map(duration).unwrap_or_default(),
                note = step.note.as_deref().map(esc).unwrap_or_default(),
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>\n");

    if job.state.is_live() {
        let (step, text) = match &detail.live_file {
            Some(file) => (
                job.step.map(|s| s.to_string()).unwrap_or_default(),
                tail_of_file(&web.job_dir(&job.id).join(file), LIVE_LOG_TAIL_BYTES),
            ),
            None => ("waiting for the first step".to_string(), String::new()),
        };
        let _ = writeln!(
            body,
            "<section id=\"live\"><h2>Live log: <span id=\"live-step\">{}</span></h2>\
             <pre id=\"live-log\" data-stream=\"/jobs/{id}/live\">{}</pre></section>",
            esc(&step),
            esc(&web.mask(&text)),
        );
    }
    body
}

/// Cancel for a live job, re-run for a finished one; with an admin token
/// configured the form asks for it (never filled in by the server).
fn action_forms(web: &Web, job: &JobRow) -> String {
    let (action, label) = if job.state.is_live() {
        ("cancel", "Cancel job")
    } else {
        ("rerun", "Re-run job")
    };
    let token = if web.admin_token.is_some() {
        "<input type=\"password\" name=\"token\" placeholder=\"admin token\" \
         autocomplete=\"current-password\" required> "
    } else {
        ""
    };
    format!(
        "<form class=\"action\" method=\"post\" action=\"/jobs/{}/{action}\">{token}\
         <button type=\"submit\" id=\"{action}\">{label}</button></form>",
        esc(job.id.as_str())
    )
}

fn backends(web: &Web) -> String {
    let rows = job_rows(web);
    let latest = latest_by_backend(&rows);
    let totals = web.board().finished_totals();
    let mut body = String::from(
        "<h1>Backends</h1>\n<section id=\"backends\" data-live><table><tr><th>Backend</th>\
         <th>Status context</th><th>Last result</th><th>Pass rate</th><th>Finished since start</th>\
         <th>Running / queued</th></tr>\n",
    );
    for backend in web.context.backends.iter() {
        let name = &backend.name;
        let count = |result: &str| -> u64 {
            totals
                .iter()
                .filter(|(b, r, _)| b == name && *r == result)
                .map(|(_, _, t)| t.finished)
                .sum()
        };
        let (passed, failed, errors, cancelled) = (
            count("success"),
            count("failure"),
            count("error"),
            count("cancelled"),
        );
        // Cancelled jobs say nothing about the backend.
        let judged = passed + failed + errors;
        let pass_rate = if judged == 0 {
            "no results yet".to_string()
        } else {
            format!(
                "{:.0}% ({passed} of {judged})",
                passed as f64 * 100.0 / judged as f64
            )
        };
        let last = match latest.get(name) {
            Some(job) => format!(
                "{} <a href=\"{}\">PR #{} {}</a>",
                badge(job.result.unwrap_or("unknown")),
                esc(&job.page_url),
                job.pr,
                esc(&job.short_sha)
            ),
            None => "none".to_string(),
        };
        let live = |state: ShownState| {
            rows.iter()
                .filter(|r| &r.backend == name && r.state == state)
                .count()
        };
        let _ = writeln!(
            body,
            "<tr id=\"backend-{n}\"><td><a href=\"/backends/{n}/history\">{n}</a></td><td><code>{context}</code></td><td>{last}</td>\
             <td>{pass_rate}</td><td>{total}</td><td>{running} / {queued}</td></tr>",
            n = esc(name.as_str()),
            context = esc(&name.status_context()),
            total = judged + cancelled,
            running = live(ShownState::Running),
            queued = live(ShownState::Queued),
        );
    }
    body.push_str("</table></section>\n");
    let _ = write!(
        body,
        "<h2>Configuration</h2><p>As <code>ember-ci check-config</code> shows it: secrets masked.</p>\
         <pre id=\"config\">{}</pre>",
        esc(&web.context.config_summary)
    );
    page("Backends", DASHBOARD_REFRESH_MS, &body)
}
