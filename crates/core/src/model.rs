//! Plain data shared by every part: ids, SHAs, backend names, job requests,
//! outcomes and the commit statuses announcing them. Nothing here does I/O; constructors validate, so a value of
//! these types is safe to hand to git, Podman or a shell argument list.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A value from outside (a delivery, a comment, a CLI flag) that failed validation.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {what} {value:?}: {why}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

fn invalid(what: &'static str, value: &str, why: &'static str) -> InvalidValue {
    // Keep hostile input short in error messages and logs.
    let value: String = value.chars().take(80).collect();
    InvalidValue { what, value, why }
}

/// A pull-request number (positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct PrNumber(u64);

impl PrNumber {
    pub fn new(number: u64) -> Result<Self, InvalidValue> {
        if number == 0 || number > u32::MAX as u64 {
            return Err(invalid(
                "pull request number",
                &number.to_string(),
                "must be 1..=4294967295",
            ));
        }
        Ok(Self(number))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The ref GitHub keeps for the PR's head commit.
    pub fn head_ref(self) -> String {
        format!("refs/pull/{}/head", self.0)
    }

    /// GitHub's test merge of the PR into its base (absent when it conflicts).
    pub fn merge_ref(self) -> String {
        format!("refs/pull/{}/merge", self.0)
    }
}

impl TryFrom<u64> for PrNumber {
    type Error = InvalidValue;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<PrNumber> for u64 {
    fn from(value: PrNumber) -> Self {
        value.0
    }
}

impl std::str::FromStr for PrNumber {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = s
            .trim_start_matches('#')
            .parse::<u64>()
            .map_err(|_| invalid("pull request number", s, "not a number"))?;
        Self::new(number)
    }
}

impl fmt::Display for PrNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A full 40-hex-digit git commit id, lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommitSha(String);

impl CommitSha {
    pub fn new(sha: &str) -> Result<Self, InvalidValue> {
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("commit SHA", sha, "must be 40 hex digits"));
        }
        Ok(Self(sha.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl TryFrom<String> for CommitSha {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<CommitSha> for String {
    fn from(value: CommitSha) -> Self {
        value.0
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A backend name (DRIVER_NAME_n): letters, digits, `.`, `_`, `-`, not
/// starting with `-` or `.`, so it is safe in status contexts, paths,
/// container names and labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackendName(String);

impl BackendName {
    pub fn new(name: &str) -> Result<Self, InvalidValue> {
        let valid_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if name.is_empty() || name.len() > 64 {
            return Err(invalid("backend name", name, "must be 1 to 64 characters"));
        }
        if !valid_chars || name.starts_with(['-', '.']) {
            return Err(invalid(
                "backend name",
                name,
                "use letters, digits, '.', '_' and '-', not starting with '-' or '.'",
            ));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The commit status context GitHub shows for this backend.
    pub fn status_context(&self) -> String {
        format!("3rdparty/{}", self.0)
    }

    /// Names are compared case-insensitively in PR comments.
    pub fn matches(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl TryFrom<String> for BackendName {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<BackendName> for String {
    fn from(value: BackendName) -> Self {
        value.0
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A GitHub repository as `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName {
    owner: String,
    name: String,
}

impl RepoName {
    pub fn new(full_name: &str) -> Result<Self, InvalidValue> {
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 100
                && !p.starts_with(['-', '.'])
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        match full_name.split_once('/') {
            Some((owner, name)) if part_ok(owner) && part_ok(name) => Ok(Self {
                owner: owner.to_string(),
                name: name.to_string(),
            }),
            _ => Err(invalid("repository", full_name, "must be owner/name")),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// GitHub compares repository names case-insensitively.
    pub fn is_same(&self, other: &str) -> bool {
        self.to_string().eq_ignore_ascii_case(other)
    }
}

impl TryFrom<String> for RepoName {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<RepoName> for String {
    fn from(value: RepoName) -> Self {
        value.to_string()
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A job's id: unique per run, used in container names, labels and log paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(String);

impl JobId {
    /// A fresh id: UTC time to the second plus random hex, so ids sort by start.
    /// Each id of this process gets a later second than the one before (a
    /// burst borrows the next seconds): the old CI's log folders are named
    /// `<sha>-<start epoch>`, so two jobs of one head and backend must never
    /// share a second.
    pub fn generate() -> Self {
        static LAST_SECOND: AtomicI64 = AtomicI64::new(i64::MIN);
        let clock = time::OffsetDateTime::now_utc().unix_timestamp();
        let previous = LAST_SECOND
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(clock.max(last.saturating_add(1)))
            })
            .unwrap_or_else(|last| last);
        let second = clock.max(previous.saturating_add(1));
        let now = time::OffsetDateTime::from_unix_timestamp(second)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self(format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}-{}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            &random[..6]
        ))
    }

    pub fn parse(id: &str) -> Result<Self, InvalidValue> {
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid("job id", id, "use letters, digits and '-'"));
        }
        Ok(Self(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to run: one PR head commit on one backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobRequest {
    pub pr: PrNumber,
    pub sha: CommitSha,
    pub backend: BackendName,
}

impl fmt::Display for JobRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PR #{} {} on {}",
            self.pr,
            self.sha.short(),
            self.backend
        )
    }
}

/// The steps of one job, in order (docs/ARCHITECTURE.md "One job").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Fetch,
    Sandbox,
    PreRun,
    Build,
    DriverConfig,
    StartPlugin,
    WaitPlugin,
    Sanity,
    PostRun,
    Cleanup,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::Fetch,
        Step::Sandbox,
        Step::PreRun,
        Step::Build,
        Step::DriverConfig,
        Step::StartPlugin,
        Step::WaitPlugin,
        Step::Sanity,
        Step::PostRun,
        Step::Cleanup,
    ];

    /// Short name used in log file names and status descriptions.
    pub fn name(self) -> &'static str {
        match self {
            Step::Fetch => "fetch",
            Step::Sandbox => "sandbox",
            Step::PreRun => "pre-run",
            Step::Build => "build",
            Step::DriverConfig => "driver-config",
            Step::StartPlugin => "start-plugin",
            Step::WaitPlugin => "wait-plugin",
            Step::Sanity => "sanity",
            Step::PostRun => "post-run",
            Step::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A commit status state as GitHub knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

impl fmt::Display for StatusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job was stopped before its result. Sent with the cancel signal,
/// so the outcome says why without anyone patching a text in later; the
/// journal keeps its text (`JobOutcome::Cancelled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// A newer head of the same pull request arrived.
    Superseded {
        by: CommitSha,
    },
    PullRequestClosed,
    /// A user pressed cancel on the local web UI.
    FromWebUi,
    /// ember-ci stopped while the job was still queued.
    StoppedBeforeStart,
    /// SHUTDOWN_GRACE passed while the job ran.
    ShuttingDown,
    /// Crash recovery found the job interrupted on every attempt.
    InterruptedTwice,
    /// Crash recovery found a second live job for the same commit and backend.
    DuplicateJob,
    /// `ember-ci run` got an interrupt (Ctrl-C).
    Interrupted,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Superseded { by } => write!(f, "superseded by {}", by.short()),
            CancelReason::PullRequestClosed => f.write_str("pull request closed"),
            CancelReason::FromWebUi => f.write_str("cancelled from the web UI"),
            CancelReason::StoppedBeforeStart => {
                f.write_str("ember-ci stopped before the job ran; comment `recheck` to run it")
            }
            CancelReason::ShuttingDown => f.write_str("ember-ci is shutting down"),
            CancelReason::InterruptedTwice => f.write_str(
                "interrupted by a restart of ember-ci twice; comment `recheck` to run it again",
            ),
            CancelReason::DuplicateJob => {
                f.write_str("another job for this commit and backend is live")
            }
            CancelReason::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl From<&CancelReason> for JobOutcome {
    fn from(reason: &CancelReason) -> Self {
        JobOutcome::Cancelled {
            reason: reason.to_string(),
        }
    }
}

/// How a job ended. A PR that fails is a normal outcome, not an `Err`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum JobOutcome {
    /// The sanity suite passed.
    Success,
    /// The PR's code failed: build, plugin start, or the suite.
    Failure { step: Step, reason: String },
    /// Our side broke: pre-run, Podman.
    Error { step: Step, reason: String },
    /// JOB_TIMEOUT passed while `step` ran: an error on our side, since a
    /// PR cannot be told apart from a slow host.
    #[serde(rename = "timed_out")]
    TimedOut { step: Step, after_secs: u64 },
    /// Stopped on purpose (superseded, PR closed, shutdown, a user).
    Cancelled { reason: String },
}

/// Who a stopped job is blamed on: the PR's code (`failure`) or our side
/// (`error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Pr,
    Infra,
}

impl JobOutcome {
    /// The outcome of a job stopped at `step`, by who is to blame.
    pub fn stopped(blame: Blame, step: Step, reason: String) -> Self {
        match blame {
            Blame::Pr => JobOutcome::Failure { step, reason },
            Blame::Infra => JobOutcome::Error { step, reason },
        }
    }

    pub fn status_state(&self) -> StatusState {
        match self {
            JobOutcome::Success => StatusState::Success,
            JobOutcome::Failure { .. } => StatusState::Failure,
            JobOutcome::Error { .. }
            | JobOutcome::TimedOut { .. }
            | JobOutcome::Cancelled { .. } => StatusState::Error,
        }
    }

    /// The step that decided a failed, errored or timed-out job.
    pub fn deciding_step(&self) -> Option<Step> {
        match self {
            JobOutcome::Failure { step, .. }
            | JobOutcome::Error { step, .. }
            | JobOutcome::TimedOut { step, .. } => Some(*step),
            JobOutcome::Success | JobOutcome::Cancelled { .. } => None,
        }
    }

    /// The exit code of `ember-ci run` and the `$1` of POST_RUN's siblings.
    pub fn exit_code(&self) -> i32 {
        match self {
            JobOutcome::Success => 0,
            JobOutcome::Failure { .. } => 1,
            JobOutcome::Error { .. }
            | JobOutcome::TimedOut { .. }
            | JobOutcome::Cancelled { .. } => 2,
        }
    }

    /// The status description: which step decided it, short enough for
    /// GitHub's 140-character limit.
    pub fn description(&self) -> String {
        let text = match self {
            JobOutcome::Success => "CSI sanity passed".to_string(),
            // The sanity step's reasons name the suite and read alone
            // ("csi-sanity: 70 passed, 2 failed: ..."), leaving the room
            // to the failing specs.
            JobOutcome::Failure {
                step: Step::Sanity,
                reason,
            } => reason.clone(),
            JobOutcome::Failure { step, reason } => format!("failed at {step}: {reason}"),
            JobOutcome::Error { step, reason } => format!("CI error at {step}: {reason}"),
            JobOutcome::TimedOut { step, after_secs } => {
                format!("CI error at {step}: job timed out after {after_secs}s (JOB_TIMEOUT)")
            }
            JobOutcome::Cancelled { reason } => format!("cancelled: {reason}"),
        };
        truncate_chars(&text, 140)
    }
}

/// Cuts `text` to at most `max` characters, marking the cut with an ellipsis.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// GitHub rejects commit status descriptions longer than this (HTTP 422).
pub const MAX_DESCRIPTION_CHARS: usize = 140;

/// One commit status as we post it (context `3rdparty/<backend>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub context: String,
    pub state: StatusState,
    /// Any length; cut to [`MAX_DESCRIPTION_CHARS`] when sent.
    pub description: String,
    /// The "Details" link, normally to the job's logs.
    pub target_url: Option<String>,
}

impl CommitStatus {
    /// The description as GitHub will accept it.
    pub fn sendable_description(&self) -> String {
        truncate_chars(&self.description, MAX_DESCRIPTION_CHARS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_in_one_burst_never_share_a_second() {
        let stamps: Vec<String> = (0..5)
            .map(|_| JobId::generate().as_str()[..14].to_string())
            .collect();
        let mut sorted = stamps.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, stamps, "strictly increasing seconds");
    }

    #[test]
    fn sha_must_be_forty_hex_digits() {
        assert!(CommitSha::new("4155f91779c72125baee651f628640274794ca37").is_ok());
        assert!(CommitSha::new("4155f91").is_err());
        assert!(CommitSha::new("--upload-pack=touch_x_aaaaaaaaaaaaaaaaaaaaaaa").is_err());
    }

    #[test]
    fn backend_names_reject_option_and_path_injection() {
        assert!(BackendName::new("lvm-1.x_y").is_ok());
        for bad in ["", "-rf", ".hidden", "a/b", "a b", "x;rm", "ünï"] {
            assert!(BackendName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn repo_name_needs_owner_and_name() {
        assert_eq!(
            RepoName::new("embercsi/ember-csi").map(|r| r.to_string()),
            Ok("embercsi/ember-csi".into())
        );
        assert!(RepoName::new("embercsi").is_err());
        assert!(RepoName::new("a/b/c").is_err());
        assert!(RepoName::new("embercsi/Ember-CSI").is_ok_and(|r| r.is_same("EmberCSI/ember-csi")));
    }

    #[test]
    fn pr_numbers_are_positive() {
        assert!("129".parse::<PrNumber>().is_ok());
        assert!("#130".parse::<PrNumber>().is_ok());
        assert!("0".parse::<PrNumber>().is_err());
        assert!("-1".parse::<PrNumber>().is_err());
    }

    #[test]
    fn outcome_maps_to_status_and_exit_code() {
        let failure = JobOutcome::Failure {
            step: Step::Sanity,
            reason: "2 tests failed".into(),
        };
        assert_eq!(failure.status_state(), StatusState::Failure);
        assert_eq!(failure.exit_code(), 1);
        assert_eq!(failure.description(), "2 tests failed");
        let build = JobOutcome::Failure {
            step: Step::Build,
            reason: "image build failed".into(),
        };
        assert_eq!(build.description(), "failed at build: image build failed");
        let long = JobOutcome::Error {
            step: Step::Build,
            reason: "x".repeat(500),
        };
        assert_eq!(long.description().chars().count(), 140);
    }
}
