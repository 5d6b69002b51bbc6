//! The read model shared by the pages and the JSON API: jobs as the board
//! sees them, completed by what each job's `job.json` ([`JobRecord`]) holds (steps and
//! their timings), so a job stays viewable after it left the board or the
//! service restarted. Every free text is masked here, once.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::Web;
use crate::logs::{format_utc, JobRecord};
use crate::model::{BackendName, CommitSha, JobId, JobRequest, PrNumber, Step};
use crate::sanity::SuiteResults;
use crate::scheduler::{result_label, JobState, JobView};

/// A job's state as shown: the board's states, plus `interrupted` for a
/// job found only on disk without a result (the service stopped under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShownState {
    Queued,
    Running,
    Finished,
    Interrupted,
}

impl ShownState {
    pub fn as_str(self) -> &'static str {
        match self {
            ShownState::Queued => "queued",
            ShownState::Running => "running",
            ShownState::Finished => "finished",
            ShownState::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ShownState::Queued,
            ShownState::Running,
            ShownState::Finished,
            ShownState::Interrupted,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }

    pub fn is_live(self) -> bool {
        matches!(self, ShownState::Queued | ShownState::Running)
    }
}

/// One job in a list or at the head of its page.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: JobId,
    pub pr: PrNumber,
    pub sha: CommitSha,
    pub short_sha: String,
    pub backend: BackendName,
    pub state: ShownState,
    /// The step a running job is at.
    pub step: Option<Step>,
    /// `success`, `failure`, `error` or `cancelled` once finished.
    pub result: Option<&'static str>,
    /// The status description (masked).
    pub description: Option<String>,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Start to result, or start to now while running.
    pub duration_secs: Option<f64>,
    /// This UI's job page.
    pub page_url: String,
    /// This UI's log index (`/jobs/<id>/`).
    pub logs_url: String,
    /// The status's Details link (published logs), when there is one.
    pub details_url: Option<String>,
}

/// How one step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Passed,
    Failed,
    Running,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Passed => "passed",
            StepState::Failed => "failed",
            StepState::Running => "running",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub step: Step,
    pub state: StepState,
    pub exit_code: Option<i64>,
    /// None while the step runs.
    pub duration_secs: Option<f64>,
    /// Why it failed, was skipped or abandoned (masked).
    pub note: Option<String>,
    /// The raw step log under this UI.
    pub log_url: String,
    pub log_bytes: Option<u64>,
}

/// A job with its steps: the job page and `/api/jobs/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobRow,
    pub steps: Vec<StepRow>,
    /// The sanity suite's counts and failing specs, from its JUnit report.
    pub sanity: Option<SuiteResults>,
    /// File name of the running step's log, if a step is running.
    #[serde(skip)]
    pub live_file: Option<String>,
}

/// Every job on the board, newest first.
pub fn job_rows(web: &Web) -> Vec<JobRow> {
    let now = SystemTime::now();
    let mut rows: Vec<JobRow> = web
        .board()
        .jobs()
        .iter()
        .map(|job| row_from_board(web, job, now))
        .collect();
    rows.reverse();
    rows
}

/// One job from the board, or from its folder when the board forgot it.
pub fn job_detail(web: &Web, id: &JobId) -> Option<JobDetail> {
    let recorded = JobRecord::read(&web.job_dir(id)).ok();
    let board = web.board().job(id);
    let job = match (&board, &recorded) {
        (Some(view), _) => row_from_board(web, view, SystemTime::now()),
        (None, Some(recorded)) => row_from_disk(web, id, recorded),
        (None, None) => return None,
    };
    let mut steps: Vec<StepRow> = recorded
        .iter()
        .flat_map(|r| r.steps.iter())
        .map(|step| StepRow {
            step: step.step,
            state: if step.note.is_some() {
                StepState::Failed
            } else {
                StepState::Passed
            },
            exit_code: step.exit_code,
            duration_secs: Some(step.duration_ms as f64 / 1000.0),
            note: step.note.as_deref().map(|note| web.mask(note)),
            log_url: format!("/jobs/{id}/{}", step.file),
            log_bytes: Some(step.bytes),
        })
        .collect();
    // job.json lists a step once it ended; the running one is only on disk.
    let live_file = match (job.state, job.step) {
        (ShownState::Running, Some(step)) if !steps.iter().any(|s| s.step == step) => {
            step_file(&web.job_dir(id), step, steps.len() + 1)
        }
        _ => None,
    };
    if let (Some(file), Some(step)) = (&live_file, job.step) {
        steps.push(StepRow {
            step,
            state: StepState::Running,
            exit_code: None,
            duration_secs: None,
            note: None,
            log_url: format!("/jobs/{id}/{file}"),
            log_bytes: None,
        });
    }
    let sanity = recorded.and_then(|r| r.sanity).map(|mut results| {
        for failure in &mut results.failures {
            failure.message = web.mask(&failure.message);
        }
        results
    });
    Some(JobDetail {
        job,
        steps,
        sanity,
        live_file,
    })
}

fn row_from_board(web: &Web, view: &JobView, now: SystemTime) -> JobRow {
    let state = match view.state {
        JobState::Queued => ShownState::Queued,
        JobState::Running => ShownState::Running,
        JobState::Finished => ShownState::Finished,
    };
    let duration_secs = view.started_at.map(|started| {
        view.finished_at
            .unwrap_or(now)
            .duration_since(started)
            .unwrap_or_default()
            .as_secs_f64()
    });
    JobRow {
        step: view.step.filter(|_| state == ShownState::Running),
        result: view.outcome.as_ref().map(result_label),
        description: view
            .outcome
            .as_ref()
            .map(|outcome| web.mask(&outcome.description())),
        queued_at: Some(format_utc(view.queued_at)),
        started_at: view.started_at.map(format_utc),
        finished_at: view.finished_at.map(format_utc),
        duration_secs,
        ..row_base(web, &view.id, &view.request, state)
    }
}

fn row_from_disk(web: &Web, id: &JobId, recorded: &JobRecord) -> JobRow {
    let state = if recorded.outcome.is_some() {
        ShownState::Finished
    } else {
        ShownState::Interrupted
    };
    // job.json keeps step times, not the job's exact span.
    let steps_ms: u128 = recorded.steps.iter().map(|s| s.duration_ms).sum();
    JobRow {
        result: recorded.outcome.as_ref().map(result_label),
        description: recorded
            .outcome
            .as_ref()
            .map(|outcome| web.mask(&outcome.description())),
        started_at: Some(recorded.started_at.clone()),
        finished_at: recorded.finished_at.clone(),
        duration_secs: Some(steps_ms as f64 / 1000.0),
        ..row_base(web, id, &recorded.request, state)
    }
}

fn row_base(web: &Web, id: &JobId, request: &JobRequest, state: ShownState) -> JobRow {
    JobRow {
        id: id.clone(),
        pr: request.pr,
        sha: request.sha.clone(),
        short_sha: request.sha.short().to_string(),
        backend: request.backend.clone(),
        state,
        step: None,
        result: None,
        description: None,
        queued_at: None,
        started_at: None,
        finished_at: None,
        duration_secs: None,
        page_url: format!("/jobs/{id}"),
        logs_url: format!("/jobs/{id}/"),
        details_url: web.context.logs.job_url(id),
    }
}

/// The log file `logs::JobLog` opens for the `index`-th step (from 1).
fn step_file(dir: &Path, step: Step, index: usize) -> Option<String> {
    let name = format!("{index:02}-{step}.txt");
    dir.join(&name).is_file().then_some(name)
}

/// Jobs per backend among the board's finished jobs, newest first.
pub fn latest_by_backend(rows: &[JobRow]) -> HashMap<&BackendName, &JobRow> {
    let mut latest = HashMap::new();
    for row in rows.iter().filter(|r| r.state == ShownState::Finished) {
        latest.entry(&row.backend).or_insert(row);
    }
    latest
}
