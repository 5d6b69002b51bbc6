//! `job.json`: the machine-readable record of one job's log folder (request,
//! timings, step files, outcome). Written by capture, read by rendering and
//! publishing; nothing else about a job is needed to render its pages.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{JobId, JobOutcome, JobRequest, Step};
use crate::sanity::SuiteResults;

/// The record's file name inside a job folder.
pub const JOB_SUMMARY_FILE: &str = "job.json";

/// One step's log file and how the step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    /// `NN-<step>.txt`, relative to the job folder.
    pub file: String,
    /// UTC, RFC 3339 to the second.
    pub started_at: String,
    pub exit_code: Option<i64>,
    pub duration_ms: u128,
    /// Why the step failed, was skipped or abandoned (masked).
    pub note: Option<String>,
    /// Bytes written to `file`, cut marker excluded.
    pub bytes: u64,
}

/// Everything `job.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub request: JobRequest,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The effective configuration and versions, when written.
    pub context_file: Option<String>,
    pub steps: Vec<StepRecord>,
    pub outcome: Option<JobOutcome>,
    /// The status description of `outcome`.
    pub description: Option<String>,
    /// What the sanity suite's JUnit report said, when it wrote one.
    #[serde(default)]
    pub sanity: Option<SuiteResults>,
    /// Files the sanity suite left in `$ARTIFACTS_DIR`, as kept in the
    /// folder (`artifact-<name>`).
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// What the job actually ran with, as found while it ran (the
    /// csi-sanity build, the sandbox's daemons, the initiator name); also
    /// in the context file's versions block.
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
}

/// The folder's name for an artifact the sanity suite left.
pub fn artifact_file_name(name: &str) -> String {
    format!("artifact-{name}")
}

impl JobRecord {
    /// The step that decided a failed or errored job.
    pub fn deciding_step(&self) -> Option<Step> {
        self.outcome.as_ref().and_then(JobOutcome::deciding_step)
    }

    /// Reads `<dir>/job.json`.
    pub fn read(dir: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(dir.join(JOB_SUMMARY_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}
