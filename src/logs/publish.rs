//! Publishing a finished job folder to the logs branch (LOGS_REPO,
//! LOGS_BRANCH): the publish gate first, then one commit per job under
//! `<backend>/<PR>-<short sha>-<job id>/`, pushed with bounded retries.
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
use crate::model::{JobId, JobRequest};

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
    /// LOGS_REPO.
    pub repo_url: String,
    /// LOGS_BRANCH.
    pub branch: String,
    /// LOGS_URL: the public base of the branch's pages, if any.
    pub public_url: Option<String>,
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
    branch: LogsBranch,
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
        Self {
            branch: LogsBranch::new(clone_dir, &target.repo_url, &target.branch, author, token),
            public_url: target
                .public_url
                .map(|url| url.trim_end_matches('/').to_string()),
            gate_secrets,
            retry: PushRetry::default(),
            lock: Mutex::new(()),
        }
    }

    /// The publisher for LOGS_REPO, cloned under `<state_dir>/logs-branch`,
    /// committing as `author` (the bot's login, else "ember-ci") and pushing
    /// with `token`; None when LOGS_REPO is unset.
    pub fn for_config(
        config: &LogsConfig,
        state_dir: &Path,
        author: &str,
        token: &Secret,
        gate_secrets: Masker,
    ) -> Option<Self> {
        let target = PublishTarget {
            repo_url: config.repo.clone()?,
            branch: config.branch.clone(),
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

    /// `<backend>/<PR>-<short sha>-<job id>`: the job's folder on the branch.
    pub fn job_folder(request: &JobRequest, id: &JobId) -> String {
        format!(
            "{}/{}-{}-{}",
            request.backend,
            request.pr,
            request.sha.short(),
            id
        )
    }

    /// The public URL of a job folder's index page, when LOGS_URL is set.
    pub fn job_url(&self, folder: &str) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|base| format!("{base}/{folder}/{}", super::render::INDEX_FILE))
    }

    /// Checks `job_dir` with the gate (`job_masker` plus the config's
    /// secrets), then commits it as `folder` and pushes. Returns the public
    /// URL of its index page, if LOGS_URL is set.
    pub async fn publish(
        &self,
        job_dir: &Path,
        folder: &str,
        job_masker: &Masker,
        message: &str,
    ) -> Result<Option<String>, PublishError> {
        let mut gate = job_masker.clone();
        gate.extend_from(&self.gate_secrets);
        let dir = job_dir.to_path_buf();
        // A gate that could not finish is a gate that did not pass.
        tokio::task::spawn_blocking(move || check_folder(&dir, &gate))
            .await
            .unwrap_or_else(|join| {
                Err(GateError::Io {
                    path: job_dir.to_path_buf(),
                    source: std::io::Error::other(join),
                })
            })
            .map_err(PublishError::Withheld)?;

        let _one_change_at_a_time = self.lock.lock().await;
        self.retrying("publishing logs", || async {
            self.branch.sync().await?;
            replace_folder(job_dir, &self.branch.worktree().join(folder)).await?;
            mark_no_jekyll(self.branch.worktree()).await?;
            if self.branch.commit_all(message).await? {
                self.branch.push(None).await?;
            }
            Ok(())
        })
        .await?;
        Ok(self.job_url(folder))
    }

    /// The branch clone, for changes made through [`Publisher::change_branch`].
    pub(super) fn branch(&self) -> &LogsBranch {
        &self.branch
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
