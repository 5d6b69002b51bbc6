//! Job logs: capture with timestamps and secret masking, static HTML,
//! publishing to a git branch, rotation, and the Details link of a job's
//! final status.
//!
//! - `capture`: [`JobLog`], the per-job folder written while the job runs.
//! - `record`: `job.json`, the folder's machine-readable summary.
//! - `mask`: [`Masker`], secrets and their encoded forms become `***`.
//! - `render`: `index.html` and one page per step.
//! - `gate`: the last scan for surviving secrets before publishing.
//! - `git`, `branch`: the persistent clone of the logs branch.
//! - `publish`: [`Publisher`], one commit per job, retried pushes.
//! - `retention`: LOG_RETENTION_DAYS and history squashing.
//! - `history`: a backend's history (failing and flaky specs, pass rate)
//!   as HTML, for the web UI and the branch's `history.html`.
//!
//! Without a logs repository, logs stay in the state dir and the local web
//! UI serves them; a status then carries no Details link (a reviewer could
//! not open the loopback UI) and its description says the logs are local.

mod branch;
mod capture;
mod gate;
mod git;
mod history;
mod mask;
mod publish;
mod record;
mod render;
mod retention;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

pub use capture::{format_utc, utc_now, JobLog, CONTEXT_FILE, MAX_STEP_LOG_BYTES};
pub use gate::GateError;
pub use git::GitError;
pub use history::{history_body, history_page, HISTORY_FILE};
pub use mask::{Masker, MASK};
pub use publish::{
    BranchLayout, BranchStepError, JobPlace, PublishError, PublishTarget, Publisher, PushRetry,
};
pub use record::{JobRecord, StepRecord, JOB_SUMMARY_FILE};
pub use render::{render_job, RenderError, INDEX_FILE};
pub use retention::{
    prune_branch, prune_local, run_retention, PruneError, PruneReport, RetentionPolicy,
    MAX_BRANCH_COMMITS, RETENTION_INTERVAL,
};

use crate::model::{
    truncate_chars, BackendName, JobId, JobOutcome, JobRequest, RepoName, MAX_DESCRIPTION_CHARS,
};

const WITHHELD_NOTE: &str = "; logs withheld (secret found)";
/// Appended when the logs are on the CI host only: no logs repository.
const LOCAL_NOTE: &str = "; logs kept on the CI host (not published)";
/// Appended when every push failed: the logs are on the CI host only.
const PUSH_FAILED_NOTE: &str = "; logs not published (push failed)";

/// Written into a job's folder when the publish gate withheld it: the web
/// UI then serves none of its files (they hold a secret, by definition).
pub const WITHHELD_MARKER: &str = "WITHHELD";

/// Keeps each finished job's result and answers a backend's history: the
/// journal, in the service. Through this trait the logs never depend on it.
pub trait ResultLog: Send + Sync {
    fn record(&self, log: &JobLog, outcome: &JobOutcome, description: &str);
    fn history(&self, backend: &BackendName) -> Option<crate::history::BackendHistory>;
}

/// Where jobs' logs are written, published and linked from.
#[derive(Clone)]
pub struct LogStore {
    /// One folder per job.
    pub jobs_dir: PathBuf,
    /// Base URL under which `<job id>/` is a job's logs in the local web UI.
    pub base_url: Option<String>,
    masker: Arc<Masker>,
    /// The maskers of jobs being written, which grow as a job reports
    /// secrets (a driver config script's): the live log view uses them.
    live_maskers: Arc<std::sync::Mutex<HashMap<JobId, Arc<std::sync::RwLock<Masker>>>>>,
    /// For the PR link on index pages.
    repo: Option<RepoName>,
    /// Written into every job folder as [`CONTEXT_FILE`].
    context: Option<Arc<str>>,
    publisher: Option<Arc<Publisher>>,
    /// Where results go for the history (and the branch's history page).
    results: Option<Arc<dyn ResultLog>>,
}

/// How a finished job's logs ended up, for its final status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// No logs repository: logs stay in the state dir.
    Local,
    /// Pushed; the URL when a public base is known.
    Published(Option<String>),
    /// The gate found a secret; nothing left the host.
    Withheld(String),
    /// The push failed every attempt; logs stay local.
    Failed(String),
}

/// The final status's link and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedLogs {
    pub publication: Publication,
    pub target_url: Option<String>,
    pub description: String,
}

impl LogStore {
    pub fn new(jobs_dir: PathBuf, base_url: Option<String>, masker: Masker) -> Self {
        Self {
            jobs_dir,
            base_url,
            masker: Arc::new(masker),
            live_maskers: Arc::default(),
            repo: None,
            context: None,
            publisher: None,
            results: None,
        }
    }

    pub fn with_results(mut self, results: Arc<dyn ResultLog>) -> Self {
        self.results = Some(results);
        self
    }

    pub fn with_repo(mut self, repo: RepoName) -> Self {
        self.repo = Some(repo);
        self
    }

    pub fn with_context(mut self, text: &str) -> Self {
        self.context = Some(Arc::from(text));
        self
    }

    pub fn with_publisher(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(Arc::new(publisher));
        self
    }

    pub fn publisher(&self) -> Option<&Publisher> {
        self.publisher.as_deref()
    }

    /// The job's page in the local web UI: for the UI itself, never a
    /// status (reviewers cannot open it).
    pub fn job_url(&self, id: &JobId) -> Option<String> {
        self.base_url
            .as_ref()
            .map(|base| format!("{}/{id}/", base.trim_end_matches('/')))
    }

    pub fn open_job(&self, id: &JobId, request: &JobRequest) -> std::io::Result<JobLog> {
        let log = JobLog::create(
            &self.jobs_dir,
            id,
            request,
            (*self.masker).clone(),
            self.context.as_deref(),
        )?;
        self.lock_live_maskers()
            .insert(id.clone(), log.shared_masker());
        Ok(log)
    }

    /// What the web UI masks a job's text with: the job's own masker while
    /// it runs (with the secrets it learned), the store's afterwards.
    pub fn job_masker(&self, id: &JobId) -> Masker {
        match self.lock_live_maskers().get(id) {
            Some(live) => live
                .read()
                .map_or_else(|p| p.into_inner().clone(), |m| m.clone()),
            None => (*self.masker).clone(),
        }
    }

    fn lock_live_maskers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<std::sync::RwLock<Masker>>>> {
        self.live_maskers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Closes the job's log with its outcome, renders its pages and
    /// publishes them (when LOGS_REPO is set). Never fails: whatever happens
    /// to the logs, the caller gets a link and text for the final status.
    pub async fn finish_job(&self, log: &JobLog, outcome: &JobOutcome) -> FinishedLogs {
        log.finish(outcome);
        self.lock_live_maskers().remove(log.id());
        let dir = log.dir().to_path_buf();
        let repo = self.repo.clone();
        let rendered = tokio::task::spawn_blocking(move || render_job(&dir, repo.as_ref())).await;
        match rendered {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn!(job = %log.id(), error = %err, "cannot render the job's pages"),
            Err(err) => warn!(job = %log.id(), error = %err, "rendering the job's pages panicked"),
        }
        let description = log.status_description(outcome);
        // Cancelled jobs say nothing about the backend.
        let history = match &self.results {
            Some(results) if !matches!(outcome, JobOutcome::Cancelled { .. }) => {
                results.record(log, outcome, &description);
                results.history(&log.request().backend)
            }
            _ => None,
        };
        let publication = self.publish(log, history.as_ref()).await;
        let (target_url, note) = match &publication {
            Publication::Published(url) => (url.clone(), None),
            Publication::Local => (None, Some(LOCAL_NOTE)),
            Publication::Failed(_) => (None, Some(PUSH_FAILED_NOTE)),
            Publication::Withheld(_) => {
                if let Err(err) = std::fs::write(log.dir().join(WITHHELD_MARKER), b"") {
                    warn!(job = %log.id(), error = %err, "cannot mark the job's logs withheld");
                }
                (None, Some(WITHHELD_NOTE))
            }
        };
        FinishedLogs {
            target_url,
            description: match note {
                Some(note) => with_note(&description, note),
                None => description,
            },
            publication,
        }
    }

    async fn publish(
        &self,
        log: &JobLog,
        history: Option<&crate::history::BackendHistory>,
    ) -> Publication {
        let Some(publisher) = &self.publisher else {
            return Publication::Local;
        };
        let request = log.request();
        let place = publisher.job_place(request, log.id());
        let message = format!("logs: {request} (job {})", log.id());
        match publisher
            .publish(log.dir(), &place, &log.masker(), &message, history)
            .await
        {
            Ok(url) => {
                info!(job = %log.id(), branch = %place.branch, folder = %place.folder, "logs published");
                Publication::Published(url)
            }
            Err(PublishError::Withheld(reason)) => {
                warn!(job = %log.id(), %reason, "logs NOT published: the publish gate found a secret; fix the masking or the SECRETS list");
                Publication::Withheld(reason.to_string())
            }
            Err(err) => {
                warn!(job = %log.id(), error = %err, "logs not published; they stay on this host, the status says so");
                Publication::Failed(err.to_string())
            }
        }
    }

    /// Removes job logs older than the policy at `now`, here and on the
    /// logs branch.
    pub async fn prune(
        &self,
        policy: RetentionPolicy,
        now: SystemTime,
    ) -> Result<PruneReport, PruneError> {
        let dir = self.jobs_dir.clone();
        let local = tokio::task::spawn_blocking(move || prune_local(&dir, policy, now))
            .await
            .map_err(std::io::Error::other)
            .and_then(|pruned| pruned)
            .map_err(|source| PruneError::Local {
                dir: self.jobs_dir.clone(),
                source,
            })?;
        let (branch, squashed) = match &self.publisher {
            // The Ember-CSI team's repository is their public record, shared
            // with other CIs: we only add to it (no pruning, no force-push),
            // as the old CI did.
            Some(publisher) if matches!(publisher.layout(), BranchLayout::PerBackend(_)) => {
                (Vec::new(), false)
            }
            Some(publisher) => prune_branch(publisher, policy, now).await?,
            None => (Vec::new(), false),
        };
        Ok(PruneReport {
            local,
            branch,
            squashed,
        })
    }
}

/// The status description with `note`, cut so the note fits.
fn with_note(description: &str, note: &str) -> String {
    let room = MAX_DESCRIPTION_CHARS - note.chars().count();
    format!("{}{note}", truncate_chars(description, room))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::StepObserver;
    use crate::model::{BackendName, CommitSha, PrNumber};

    #[tokio::test]
    async fn the_live_view_masks_with_what_the_running_job_learned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LogStore::new(
            dir.path().to_path_buf(),
            None,
            Masker::new(["store-secret"]),
        );
        let id = JobId::parse("20300101000000-abcde1").expect("job id");
        let request = JobRequest {
            pr: PrNumber::new(1).expect("pr"),
            sha: CommitSha::new(&"a".repeat(40)).expect("sha"),
            backend: BackendName::new("demo").expect("backend"),
        };
        let log = store.open_job(&id, &request).expect("open");
        log.secrets_discovered(&["driver-script-secret".to_string()]);
        let text = "store-secret driver-script-secret";
        assert_eq!(store.job_masker(&id).mask(text), "*** ***");
        store.finish_job(&log, &JobOutcome::Success).await;
        // Finished: its files were written masked; the store's masker remains.
        assert_eq!(store.job_masker(&id).mask(text), "*** driver-script-secret");
    }
}
