//! Job logs: capture with timestamps, secret masking, and where a job's
//! logs can be opened (the Details link of its status).

mod capture;
mod mask;

use std::path::PathBuf;
use std::sync::Arc;

pub use capture::{format_utc, utc_now, JobLog, StepRecord, JOB_SUMMARY_FILE, MAX_STEP_LOG_BYTES};
pub use mask::{Masker, MASK};

use crate::config::{Config, DriverConfig};
use crate::model::{JobId, JobRequest};
use crate::scheduler::StepTracker;

/// Where jobs' logs are written and linked from.
#[derive(Debug, Clone)]
pub struct LogStore {
    /// One folder per job.
    pub jobs_dir: PathBuf,
    /// Base URL under which `<job id>/` is a job's logs, if reachable by URL.
    pub base_url: Option<String>,
    masker: Arc<Masker>,
}

impl LogStore {
    pub fn new(jobs_dir: PathBuf, base_url: Option<String>, masker: Masker) -> Self {
        Self {
            jobs_dir,
            base_url,
            masker: Arc::new(masker),
        }
    }

    /// The store for a config: logs under `<CI_DIR>/logs`, linked through
    /// the local web UI at `web_base_url`. (`<CI_DIR>/jobs` holds the
    /// executor's work dirs, removed after each job.)
    pub fn for_config(config: &Config, web_base_url: Option<String>) -> Self {
        let base_url = web_base_url.map(|base| format!("{}/jobs", base.trim_end_matches('/')));
        Self::new(config.state_dir.join("logs"), base_url, masker_for(config))
    }

    pub fn job_url(&self, id: &JobId) -> Option<String> {
        self.base_url
            .as_ref()
            .map(|base| format!("{}/{id}/", base.trim_end_matches('/')))
    }

    pub fn open_job(
        &self,
        id: &JobId,
        request: &JobRequest,
        tracker: Option<StepTracker>,
    ) -> std::io::Result<JobLog> {
        JobLog::create(&self.jobs_dir, id, request, self.masker.clone(), tracker)
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }
}

/// Every secret the config knows: tokens, SECRETS, and credential-like
/// values of JSON driver configs.
pub fn masker_for(config: &Config) -> Masker {
    let mut masker = Masker::new(config.secret_values());
    for backend in &config.backends {
        if let DriverConfig::Json(json) = &backend.driver_config {
            masker.add(crate::config::credential_values(json));
        }
    }
    masker
}
