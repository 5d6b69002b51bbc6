//! Publishing a finished job folder to a logs branch: the publish gate
//! first, then one commit per job, pushed with bounded retries. Two
//! layouts ([`BranchLayout`]): LOGS_REPO's one branch (LOGS_BRANCH) with
//! `<backend>/<PR>-<short sha>-<job id>/`, or the old CI's, used for the
//! Ember-CSI team's logs repository: one branch per backend, one folder
//! `<head sha>-<start epoch>/` per job.
//!
//! One publisher per service; its lock serialises every change to the
//! branch (jobs finishing together, retention), so the clone is never
//! used by two git sequences at once.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Mutex;
use tracing::warn;

use super::branch::LogsBranch;
use super::gate::{check_folder, GateError};
use super::git::GitError;
use super::mask::Masker;
use crate::config::{LogsConfig, Secret};
use crate::history::{BackendHistory, JobResult};
use crate::model::{BackendName, CommitSha, JobId, JobRequest, PrNumber};

/// How failed pushes are retried: each attempt syncs to the remote tip
/// again, so a branch that moved meanwhile is handled like a rebase.
#[derive(Debug, Clone, Copy)]
pub struct PushRetry {
    pub attempts: u32,
    /// Doubled after each failed attempt.
    pub first_backoff: Duration,
}

impl Default for PushRetry {
    /// Four attempts over about 15 s: long enough for a GitHub hiccup,
    /// short enough that jobs waiting on the publisher are not held long.
    fn default() -> Self {
        Self {
            attempts: 4,
            first_backoff: Duration::from_secs(2),
        }
    }
}

/// Where logs are pushed and where they are read.
#[derive(Debug, Clone)]
pub struct PublishTarget {
    /// LOGS_REPO, or EMBER_LOGS_REPO.
    pub repo_url: String,
    pub layout: BranchLayout,
    /// LOGS_URL (or EMBER_LOGS_URL): the public base of the pages, if any.
    pub public_url: Option<String>,
}

/// Which branch and folder a job's logs go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchLayout {
    /// Every job on this branch, under `<backend>/<PR>-<short sha>-<job id>/`;
    /// the public URL is the branch's root.
    Shared(String),
    /// The old CI's layout: branch `<backend>`, folder
    /// `<head sha>-<start epoch>/`; the public URL has one directory per
    /// branch. Names the backends: the only branches retention touches
    /// (the repository holds other CIs' branches).
    PerBackend(Vec<BackendName>),
}

/// A job's place: its branch and its folder there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlace {
    pub branch: String,
    pub folder: String,
}

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("logs withheld: {0}")]
    Withheld(#[source] GateError),
    #[error("updating the logs branch failed after {attempts} attempts: {last}")]
    Branch {
        attempts: u32,
        #[source]
        last: BranchStepError,
    },
}

/// What broke in one attempt at changing the branch.
#[derive(Debug, Error)]
pub enum BranchStepError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct Publisher {
    /// The clone, on the shared branch or on whichever backend's branch
    /// the last change used.
    branch: LogsBranch,
    layout: BranchLayout,
    public_url: Option<String>,
    /// Searched for by the gate on top of the job's own masker: the
    /// config's secrets, whatever the job's masker was told.
    gate_secrets: Masker,
    retry: PushRetry,
    lock: Mutex<()>,
}

impl Publisher {
    /// `clone_dir` holds the persistent clone; `author` names the commits;
    /// `token` authenticates https pushes.
    pub fn new(
        target: PublishTarget,
        clone_dir: &Path,
        author: &str,
        token: &Secret,
        gate_secrets: Masker,
    ) -> Self {
        let first_branch = match &target.layout {
            BranchLayout::Shared(branch) => branch.clone(),
            BranchLayout::PerBackend(backends) => backends
                .first()
                .map_or_else(|| "logs".to_string(), ToString::to_string),
        };
        Self {
            branch: LogsBranch::new(clone_dir, &target.repo_url, &first_branch, author, token),
            layout: target.layout,
            public_url: target
                .public_url
                .map(|url| url.trim_end_matches('/').to_string()),
            gate_secrets,
            retry: PushRetry::default(),
            lock: Mutex::new(()),
        }
    }

    /// The publisher for the config's logs repository (LOGS_REPO, or the
    /// Ember-CSI team's with one branch per backend of `backends`), cloned
    /// under `<state_dir>/logs-branch`, committing as `author` (the bot's
    /// login, else "ember-ci") and pushing with `token`; None when logs
    /// stay local.
    pub fn for_config(
        config: &LogsConfig,
        backends: Vec<BackendName>,
        state_dir: &Path,
        author: &str,
        token: &Secret,
        gate_secrets: Masker,
    ) -> Option<Self> {
        let layout = if config.branch_per_backend {
            BranchLayout::PerBackend(backends)
        } else {
            BranchLayout::Shared(config.branch.clone())
        };
        let target = PublishTarget {
            repo_url: config.repo.clone()?,
            layout,
            public_url: config.url.clone(),
        };
        let author = if author.is_empty() {
            "ember-ci"
        } else {
            author
        };
        Some(Self::new(
            target,
            &state_dir.join("logs-branch"),
            author,
            token,
            gate_secrets,
        ))
    }

    pub fn with_retry(mut self, retry: PushRetry) -> Self {
        self.retry = retry;
        self
    }

    pub fn layout(&self) -> &BranchLayout {
        &self.layout
    }

    /// Where the job's logs go in this publisher's layout.
    pub fn job_place(&self, request: &JobRequest, id: &JobId) -> JobPlace {
        match &self.layout {
            BranchLayout::Shared(branch) => JobPlace {
                branch: branch.clone(),
                folder: format!(
                    "{}/{}-{}-{}",
                    request.backend,
                    request.pr,
                    request.sha.short(),
                    id
                ),
            },
            // As the old CI named them: `<revision>-<started_at epoch>`.
            BranchLayout::PerBackend(_) => JobPlace {
                branch: request.backend.to_string(),
                folder: format!("{}-{}", request.sha, start_epoch(id)),
            },
        }
    }

    /// The public URL of a job's index page, when a public base is known.
    pub fn job_url(&self, place: &JobPlace) -> Option<String> {
        let index = super::render::INDEX_FILE;
        let folder = &place.folder;
        self.public_url.as_ref().map(|base| match &self.layout {
            BranchLayout::Shared(_) => format!("{base}/{folder}/{index}"),
            BranchLayout::PerBackend(_) => format!("{base}/{}/{folder}/{index}", place.branch),
        })
    }

    /// The backend's `history.html` beside its job folders (its path on
    /// the job's branch), linking each job's folder relatively.
    fn history_page(&self, history: &BackendHistory) -> (String, String) {
        let backend_dir = match &self.layout {
            BranchLayout::Shared(_) => format!("{}/", history.backend),
            BranchLayout::PerBackend(_) => String::new(),
        };
        let link = |job: &JobResult| -> Option<String> {
            let request = JobRequest {
                pr: PrNumber::new(job.pr).ok()?,
                sha: CommitSha::new(&job.sha).ok()?,
                backend: BackendName::new(&history.backend).ok()?,
            };
            let id = JobId::parse(&job.id).ok()?;
            let folder = self.job_place(&request, &id).folder;
            let relative = folder.strip_prefix(&backend_dir).unwrap_or(&folder);
            Some(format!("{relative}/{}", super::render::INDEX_FILE))
        };
        (
            format!("{backend_dir}{}", super::history::HISTORY_FILE),
            super::history::history_page(history, &link),
        )
    }

    /// The branches retention prunes.
    pub(super) fn branches(&self) -> Vec<LogsBranch> {
        match &self.layout {
            BranchLayout::Shared(branch) => vec![self.branch.on_branch(branch)],
            BranchLayout::PerBackend(backends) => backends
                .iter()
                .map(|backend| self.branch.on_branch(backend.as_str()))
                .collect(),
        }
    }

    /// Checks `job_dir` with the gate (`job_masker` plus the config's
    /// secrets), then commits it at `place` and pushes. Returns the public
    /// URL of its index page, if a public base is known.
    pub async fn publish(
        &self,
        job_dir: &Path,
        place: &JobPlace,
        job_masker: &Masker,
        message: &str,
        history: Option<&BackendHistory>,
    ) -> Result<Option<String>, PublishError> {
        let mut gate = job_masker.clone();
        gate.extend_from(&self.gate_secrets);
        let dir = job_dir.to_path_buf();
        let scan = gate.clone();
        // A gate that could not finish is a gate that did not pass.
        tokio::task::spawn_blocking(move || check_folder(&dir, &scan))
            .await
            .unwrap_or_else(|join| {
                Err(GateError::Io {
                    path: job_dir.to_path_buf(),
                    source: std::io::Error::other(join),
                })
            })
            .map_err(PublishError::Withheld)?;

        let branch = self.branch.on_branch(&place.branch);
        let history_page = history.map(|history| {
            let (path, page) = self.history_page(history);
            (path, gate.mask(&page))
        });
        let _one_change_at_a_time = self.lock.lock().await;
        self.retrying("publishing logs", || async {
            branch.sync().await?;
            replace_folder(job_dir, &branch.worktree().join(&place.folder)).await?;
            if let Some((path, page)) = &history_page {
                let file = branch.worktree().join(path);
                tokio::fs::write(&file, page)
                    .await
                    .map_err(|source| BranchStepError::Io {
                        context: format!("writing {}", file.display()),
                        source,
                    })?;
            }
            mark_no_jekyll(branch.worktree()).await?;
            if branch.commit_all(message).await? {
                branch.push(None).await?;
            }
            Ok(())
        })
        .await?;
        Ok(self.job_url(place))
    }

    /// Runs `change` (which works on [`Publisher::branch`]) under the
    /// publisher's lock, with the push retries. Used by retention.
    pub(super) async fn change_branch<T, F, Fut>(
        &self,
        what: &str,
        change: F,
    ) -> Result<T, PublishError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BranchStepError>>,
    {
        let _one_change_at_a_time = self.lock.lock().await;
        self.retrying(what, change).await
    }

    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, PublishError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BranchStepError>>,
    {
        let mut backoff = self.retry.first_backoff;
        let mut tried = 1;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(last) if tried >= self.retry.attempts => {
                    return Err(PublishError::Branch {
                        attempts: tried,
                        last,
                    })
                }
                Err(err) => {
                    warn!(attempt = tried, error = %err, backoff_ms = backoff.as_millis() as u64, "{what} failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    tried += 1;
                }
            }
        }
    }
}

/// Seconds since the epoch at the job's start, from its id's UTC stamp
/// (`YYYYMMDDHHMMSS-…`); now for an id without one.
fn start_epoch(id: &JobId) -> i64 {
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
    id.as_str()
        .get(..14)
        .and_then(|stamp| time::PrimitiveDateTime::parse(stamp, &format).ok())
        .map_or_else(
            || time::OffsetDateTime::now_utc().unix_timestamp(),
            |start| start.assume_utc().unix_timestamp(),
        )
}

/// Copies the job folder's files to `dest`, replacing what was there.
async fn replace_folder(source: &Path, dest: &Path) -> Result<(), BranchStepError> {
    let io = |context: String| move |source| BranchStepError::Io { context, source };
    match tokio::fs::remove_dir_all(dest).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io(format!("removing {}", dest.display()))(e))
        }
        _ => {}
    }
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(io(format!("creating {}", dest.display())))?;
    let mut entries = tokio::fs::read_dir(source)
        .await
        .map_err(io(format!("reading {}", source.display())))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io(format!("reading {}", source.display())))?
    {
        let path: PathBuf = entry.path();
        // Half-written summaries (`job.tmp`) are not part of the record.
        let is_partial = path.extension().is_some_and(|e| e == "tmp");
        if !path.is_file() || is_partial {
            continue;
        }
        let target = dest.join(entry.file_name());
        tokio::fs::copy(&path, &target)
            .await
            .map_err(io(format!("copying {}", path.display())))?;
    }
    Ok(())
}

/// GitHub Pages serves the branch as plain files only with `.nojekyll`.
async fn mark_no_jekyll(worktree: &Path) -> Result<(), BranchStepError> {
    let marker = worktree.join(".nojekyll");
    if marker.exists() {
        return Ok(());
    }
    tokio::fs::write(&marker, b"")
        .await
        .map_err(|source| BranchStepError::Io {
            context: format!("writing {}", marker.display()),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(layout: BranchLayout) -> Publisher {
        let target = PublishTarget {
            repo_url: "https://github.com/embercsi/3rd-party-ci-logs.git".into(),
            layout,
            public_url: Some("https://ci-logs.ember-csi.io/".into()),
        };
        Publisher::new(
            target,
            Path::new("/nonexistent"),
            "bot",
            &Secret::new(String::new()),
            Masker::default(),
        )
    }

    #[test]
    fn the_old_ci_layout_is_a_branch_per_backend_and_a_sha_epoch_folder() {
        let backend = BackendName::new("acme-iscsi").expect("backend");
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let request = JobRequest {
            pr: PrNumber::new(129).expect("pr"),
            sha: CommitSha::new(sha).expect("sha"),
            backend: backend.clone(),
        };
        let id = JobId::parse("20260102030405-abcdef").expect("id");
        let old = publisher(BranchLayout::PerBackend(vec![backend]));
        let place = old.job_place(&request, &id);
        // 2026-01-02T03:04:05Z
        assert_eq!(
            place,
            JobPlace {
                branch: "acme-iscsi".into(),
                folder: format!("{sha}-1767323045"),
            }
        );
        assert_eq!(
            old.job_url(&place).as_deref(),
            Some(
                format!("https://ci-logs.ember-csi.io/acme-iscsi/{sha}-1767323045/index.html")
                    .as_str()
            )
        );
        let shared = publisher(BranchLayout::Shared("gh-pages".into()));
        let place = shared.job_place(&request, &id);
        assert_eq!(place.branch, "gh-pages");
        assert_eq!(place.folder, "acme-iscsi/129-0123456-20260102030405-abcdef");
        assert_eq!(
            shared.job_url(&place).as_deref(),
            Some("https://ci-logs.ember-csi.io/acme-iscsi/129-0123456-20260102030405-abcdef/index.html")
        );
    }
}
