//! Rotation (LOG_RETENTION_DAYS): job folders older than the retention are
//! removed from the state dir and from the logs branch, and the branch's
//! history is squashed to one commit once it grows past a bound, so neither
//! the remote nor the local clone grows without limit.
//!
//! A job's age comes from its id, which starts with its UTC start time
//! (`YYYYMMDDHHMMSS-…`); folders whose names carry no such id are left
//! alone. "Now" is always a parameter, so tests can shift the clock.

use std::path::Path;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tracing::{info, warn};

use super::branch::LogsBranch;
use super::publish::{BranchLayout, BranchStepError, PublishError, Publisher};

/// Squash the branch once it has more commits than this (one per job).
pub const MAX_BRANCH_COMMITS: usize = 100;

/// How often the service prunes (it also prunes at start).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

const SECS_PER_DAY: u64 = 24 * 60 * 60;
/// `YYYYMMDDHHMMSS`, the start of every job id.
const STAMP_DIGITS: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub max_age: Duration,
    pub max_branch_commits: usize,
}

impl RetentionPolicy {
    pub fn days(days: u32) -> Self {
        Self {
            max_age: Duration::from_secs(u64::from(days) * SECS_PER_DAY),
            max_branch_commits: MAX_BRANCH_COMMITS,
        }
    }

    /// The stamp below which a job is old at `now`.
    fn cutoff_stamp(&self, now: SystemTime) -> String {
        let cutoff = now
            .checked_sub(self.max_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
        time::OffsetDateTime::from(cutoff)
            .format(&format)
            .unwrap_or_default()
    }
}

#[derive(Debug, Error)]
pub enum PruneError {
    #[error("cannot prune {dir}: {source}")]
    Local {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Branch(#[from] PublishError),
}

/// What one pruning pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Job ids removed from the state dir.
    pub local: Vec<String>,
    /// Folders removed from the branch (`<backend>/<PR>-<sha>-<id>`).
    pub branch: Vec<String>,
    /// Whether the branch's history was squashed.
    pub squashed: bool,
}

/// Whether the job folder `name` (a job id, `<PR>-<sha>-<job id>`, or the
/// old CI's `<sha>-<start epoch>`) started before `cutoff`. Names without
/// a start are never old.
fn is_older_than(name: &str, cutoff: &str) -> bool {
    let id = match name.splitn(3, '-').collect::<Vec<_>>().as_slice() {
        [stamp, _] if stamp.len() == STAMP_DIGITS => name,
        [sha, epoch] if sha.len() == 40 => {
            return epoch_stamp(epoch).is_some_and(|s| s.as_str() < cutoff)
        }
        [_, _, id] => id,
        _ => return false,
    };
    let stamp = id.get(..STAMP_DIGITS).unwrap_or("");
    stamp.len() == STAMP_DIGITS
        && stamp.bytes().all(|b| b.is_ascii_digit())
        && id.as_bytes().get(STAMP_DIGITS) == Some(&b'-')
        && stamp < cutoff
}

/// The UTC stamp of a folder's `<start epoch>`.
fn epoch_stamp(epoch: &str) -> Option<String> {
    if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let start = time::OffsetDateTime::from_unix_timestamp(epoch.parse().ok()?).ok()?;
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
    start.format(&format).ok()
}

/// Removes old job folders from `logs_dir` (one folder per job id).
pub fn prune_local(
    logs_dir: &Path,
    policy: RetentionPolicy,
    now: SystemTime,
) -> std::io::Result<Vec<String>> {
    let cutoff = policy.cutoff_stamp(now);
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(logs_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && is_older_than(&name, &cutoff) {
            std::fs::remove_dir_all(entry.path())?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Removes old job folders from each logs branch in one commit, then
/// squashes a branch's history when it has grown past the policy's bound.
/// Returns the folders removed (`backend/folder`) and whether any branch
/// was squashed.
pub async fn prune_branch(
    publisher: &Publisher,
    policy: RetentionPolicy,
    now: SystemTime,
) -> Result<(Vec<String>, bool), PublishError> {
    let mut removed = Vec::new();
    let mut squashed = false;
    for branch in publisher.branches() {
        let (folders, squash) = prune_one_branch(publisher, &branch, policy, now).await?;
        removed.extend(folders);
        squashed |= squash;
    }
    Ok((removed, squashed))
}

async fn prune_one_branch(
    publisher: &Publisher,
    branch: &LogsBranch,
    policy: RetentionPolicy,
    now: SystemTime,
) -> Result<(Vec<String>, bool), PublishError> {
    let cutoff = policy.cutoff_stamp(now);
    let days = policy.max_age.as_secs() / SECS_PER_DAY;
    // A branch per backend holds job folders at its root.
    let backend_of_root = match publisher.layout() {
        BranchLayout::Shared(_) => None,
        BranchLayout::PerBackend(_) => Some(branch.name()),
    };
    publisher
        .change_branch("pruning the logs branch", || async {
            let Some(tip) = branch.sync().await? else {
                return Ok((Vec::new(), false));
            };
            let removed = match backend_of_root {
                None => remove_old_folders(branch.worktree(), &cutoff).await?,
                Some(backend) => remove_old_jobs(branch.worktree(), backend, &cutoff).await?,
            };
            let mut changed = false;
            if !removed.is_empty() {
                let message = format!(
                    "logs: remove {} job folders older than {days} days",
                    removed.len()
                );
                changed = branch.commit_all(&message).await?;
            }
            let squash = branch.commit_count().await? > policy.max_branch_commits;
            if squash {
                let message = format!(
                    "logs: history squashed, jobs of the last {days} days kept ({})",
                    super::format_utc(now)
                );
                branch.squash(&message).await?;
                branch.push(Some(&tip)).await?;
                branch.compact().await?;
            } else if changed {
                branch.push(None).await?;
            }
            Ok((removed, squash))
        })
        .await
}

/// Deletes `<backend>/<job folder>` directories older than `cutoff`;
/// returns them as `backend/folder`.
async fn remove_old_folders(worktree: &Path, cutoff: &str) -> Result<Vec<String>, BranchStepError> {
    let io = |context: String| move |source| BranchStepError::Io { context, source };
    let mut removed = Vec::new();
    let mut backends = tokio::fs::read_dir(worktree)
        .await
        .map_err(io(format!("reading {}", worktree.display())))?;
    while let Some(backend) = backends
        .next_entry()
        .await
        .map_err(io(format!("reading {}", worktree.display())))?
    {
        let backend_name = backend.file_name().to_string_lossy().into_owned();
        if backend_name.starts_with('.') || !backend.path().is_dir() {
            continue;
        }
        removed.extend(remove_old_jobs(&backend.path(), &backend_name, cutoff).await?);
    }
    removed.sort();
    Ok(removed)
}

/// Deletes the job folders in `dir` (`backend`'s) older than `cutoff`;
/// returns them as `backend/folder`.
async fn remove_old_jobs(
    dir: &Path,
    backend: &str,
    cutoff: &str,
) -> Result<Vec<String>, BranchStepError> {
    let io = |context: String| move |source| BranchStepError::Io { context, source };
    let mut removed = Vec::new();
    let mut jobs = tokio::fs::read_dir(dir)
        .await
        .map_err(io(format!("reading {}", dir.display())))?;
    while let Some(job) = jobs
        .next_entry()
        .await
        .map_err(io(format!("reading {}", dir.display())))?
    {
        let name = job.file_name().to_string_lossy().into_owned();
        if job.path().is_dir() && is_older_than(&name, cutoff) {
            tokio::fs::remove_dir_all(job.path())
                .await
                .map_err(io(format!("removing {}", job.path().display())))?;
            removed.push(format!("{backend}/{name}"));
        }
    }
    removed.sort();
    Ok(removed)
}

/// Prunes at start and then every [`RETENTION_INTERVAL`] until `stop`.
pub async fn run_retention(
    store: super::LogStore,
    policy: RetentionPolicy,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        match store.prune(policy, SystemTime::now()).await {
            Ok(report) if report == PruneReport::default() => {}
            Ok(report) => info!(
                local = report.local.len(),
                branch = report.branch.len(),
                squashed = report.squashed,
                "old job logs removed"
            ),
            Err(err) => warn!(error = %err, "pruning old job logs failed; trying again later"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETENTION_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_comes_from_the_job_id_in_either_folder_form() {
        let cutoff = "20300101000000";
        assert!(is_older_than("20291231235959-abcdef", cutoff));
        assert!(is_older_than("129-0123456-20291231235959-abcdef", cutoff));
        assert!(!is_older_than("20300101000000-abcdef", cutoff));
        assert!(!is_older_than("129-0123456-20300102000000-abcdef", cutoff));
        assert!(!is_older_than("index.html", cutoff));
        assert!(!is_older_than("notes-2020", cutoff));
        let sha = "0123456789abcdef0123456789abcdef01234567";
        // 2029-12-31T23:59:59Z and 2030-01-01T00:00:00Z
        assert!(is_older_than(&format!("{sha}-1893455999"), cutoff));
        assert!(!is_older_than(&format!("{sha}-1893456000"), cutoff));
        assert!(!is_older_than(&format!("{sha}-soon"), cutoff));
    }

    #[test]
    fn cutoff_is_now_minus_the_retention() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(31 * SECS_PER_DAY);
        assert_eq!(
            RetentionPolicy::days(30).cutoff_stamp(now),
            "19700102000000"
        );
    }
}
