//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the job
//! board's totals, the queue, GitHub reporting and webhook intake.
//!
//! Counters come from totals kept since start (the board's job list is
//! trimmed, its totals are not), so they only ever grow.

use std::fmt::Write as _;
use std::sync::Arc;

use warp::{Filter, Rejection, Reply};

use super::{health, Web};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes(web: Arc<Web>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .map(move || warp::reply::with_header(render(&web), "content-type", CONTENT_TYPE))
}

/// The whole exposition text.
fn render(web: &Web) -> String {
    let mut out = Exposition::default();
    let totals = web.board().finished_totals();

    out.family(
        "ember_ci_jobs_finished_total",
        "counter",
        "Jobs that reached a result since start, by backend and result.",
    );
    for (backend, result, t) in &totals {
        out.sample(
            "ember_ci_jobs_finished_total",
            &[("backend", backend.as_str()), ("result", result)],
            t.finished as f64,
        );
    }

    out.family(
        "ember_ci_job_duration_seconds",
        "summary",
        "Start-to-result time of finished jobs that ran, by backend and result.",
    );
    for (backend, result, t) in &totals {
        let labels = [("backend", backend.as_str()), ("result", *result)];
        out.sample(
            "ember_ci_job_duration_seconds_sum",
            &labels,
            t.run_time.as_secs_f64(),
        );
        out.sample("ember_ci_job_duration_seconds_count", &labels, t.ran as f64);
    }

    let health = health::health(web);
    let gauges = [
        (
            "ember_ci_jobs_queued",
            "Jobs waiting for a worker slot.",
            health.jobs.queued,
        ),
        (
            "ember_ci_jobs_running",
            "Jobs running now.",
            health.jobs.running,
        ),
        (
            "ember_ci_workers",
            "Worker slots (NUM_WORKERS).",
            health.workers,
        ),
        (
            "ember_ci_status_outbox_backlog",
            "Commit statuses queued and not yet accepted by GitHub.",
            health.github.statuses_waiting,
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        out.sample(name, &[], value as f64);
    }

    out.family(
        "ember_ci_webhook_deliveries_total",
        "counter",
        "Webhook deliveries since start, by how the intake answered them.",
    );
    let deliveries = &health.deliveries;
    for (outcome, count) in [
        ("accepted", deliveries.accepted),
        ("ignored", deliveries.ignored),
        ("duplicate", deliveries.duplicates),
        ("rejected", deliveries.rejected),
    ] {
        out.sample(
            "ember_ci_webhook_deliveries_total",
            &[("outcome", outcome)],
            count as f64,
        );
    }
    spec_families(web, &mut out);
    if let Some(smee) = &health.relay.smee {
        out.family(
            "ember_ci_smee_connected",
            "gauge",
            "1 while the smee relay's event stream is open.",
        );
        out.sample(
            "ember_ci_smee_connected",
            &[],
            f64::from(u8::from(smee.is_connected)),
        );
        out.family(
            "ember_ci_smee_deliveries_total",
            "counter",
            "Deliveries that came through the smee relay, by whether the intake refused them.",
        );
        let accepted = smee
            .deliveries_relayed
            .saturating_sub(smee.deliveries_refused);
        for (outcome, count) in [("passed", accepted), ("refused", smee.deliveries_refused)] {
            out.sample(
                "ember_ci_smee_deliveries_total",
                &[("outcome", outcome)],
                count as f64,
            );
        }
    }
    out.text
}

/// Per backend, from the journal's history: the last job's spec counts,
/// the specs failing and flaky in the window, and its pass ratio.
fn spec_families(web: &Web, out: &mut Exposition) {
    let journal = web.context.scheduler.journal();
    let now = std::time::SystemTime::now();
    let mut histories = Vec::new();
    for backend in web.context.backends.iter() {
        let name = backend.name.as_str();
        match journal.backend_history(name, now) {
            Ok(history) => histories.push(history),
            Err(err) => tracing::warn!(backend = name, error = %err, "cannot read the history"),
        }
    }
    // Newest first: the first job with a report is the last one.
    let last = histories.iter().filter_map(|h| {
        let specs = h.recent.iter().find_map(|job| job.specs)?;
        Some((h.backend.as_str(), specs))
    });
    out.family(
        "ember_ci_last_job_specs",
        "gauge",
        "Specs of the backend's last job with a sanity report, by result.",
    );
    for (backend, specs) in last {
        for (result, count) in [
            ("passed", specs.passed),
            ("failed", specs.failed),
            ("skipped", specs.skipped),
        ] {
            out.sample(
                "ember_ci_last_job_specs",
                &[("backend", backend), ("result", result)],
                count as f64,
            );
        }
    }
    let window = format!("{} days", crate::history::HISTORY_DAYS);
    for (name, help, value) in [
        (
            "ember_ci_failing_specs",
            "Distinct specs that failed in the history window.",
            (|h: &crate::history::BackendHistory| h.failing.len() as f64)
                as fn(&crate::history::BackendHistory) -> f64,
        ),
        (
            "ember_ci_flaky_specs",
            "Specs that failed and passed on one commit in the history window.",
            |h| h.flaky.len() as f64,
        ),
        (
            "ember_ci_pass_ratio",
            "Jobs that passed over jobs with a result in the history window.",
            |h| h.pass_rate.unwrap_or(0.0),
        ),
    ] {
        out.family(name, "gauge", &format!("{help} ({window})"));
        for history in &histories {
            out.sample(
                name,
                &[("backend", history.backend.as_str())],
                value(history),
            );
        }
    }
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
                .collect();
            let _ = write!(self.text, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Label values escape backslash, quote and newline (backend names cannot
/// hold them, but the format is kept whatever the value).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
