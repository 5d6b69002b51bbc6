//! The persistent clone of the logs branch under the state dir. Each change
//! starts from the remote tip ([`LogsBranch::sync`]), so a push rejected as
//! non-fast-forward is retried by syncing and re-applying the change: the
//! changes are whole job folders, which never conflict.
//!
//! Callers serialise access (the publisher holds one lock around every
//! sync-change-push sequence).

use std::path::Path;

use super::git::{GitError, GitRunner};
use crate::config::Secret;

#[derive(Clone)]
pub struct LogsBranch {
    git: GitRunner,
    remote_url: String,
    branch: String,
}

impl LogsBranch {
    /// `clone_dir` is created on first use.
    pub fn new(
        clone_dir: &Path,
        remote_url: &str,
        branch: &str,
        author: &str,
        token: &Secret,
    ) -> Self {
        Self {
            git: GitRunner::new(clone_dir, remote_url, author, token),
            remote_url: remote_url.to_string(),
            branch: branch.to_string(),
        }
    }

    /// The same clone, working on another branch of the same remote (one
    /// branch per backend): [`LogsBranch::sync`] switches the clone over.
    pub fn on_branch(&self, branch: &str) -> Self {
        Self {
            branch: branch.to_string(),
            ..self.clone()
        }
    }

    pub fn name(&self) -> &str {
        &self.branch
    }

    /// The clone's working tree: the branch's files.
    pub fn worktree(&self) -> &Path {
        self.git.dir()
    }

    /// Makes the working tree exactly the remote branch's tip, or empty when
    /// the branch does not exist yet. Returns the tip.
    pub async fn sync(&self) -> Result<Option<String>, GitError> {
        let branch_ref = format!("refs/heads/{}", self.branch);
        if self.worktree().join(".git").is_dir() {
            self.git
                .run(&["remote", "set-url", "origin", &self.remote_url])
                .await?;
            self.git.run(&["symbolic-ref", "HEAD", &branch_ref]).await?;
        } else {
            tokio::fs::create_dir_all(self.worktree())
                .await
                .map_err(GitError::Spawn)?;
            self.git.run(&["init", "-q", "-b", &self.branch]).await?;
            self.git
                .run(&["remote", "add", "origin", &self.remote_url])
                .await?;
        }
        let listing = self.git.run(&["ls-remote", "origin", &branch_ref]).await?;
        let tip = listing.split_whitespace().next().map(ToString::to_string);
        match &tip {
            Some(tip) => {
                let refspec = format!("+{branch_ref}:refs/remotes/origin/{}", self.branch);
                self.git.run(&["fetch", "-q", "origin", &refspec]).await?;
                self.git.run(&["reset", "-q", "--hard", tip]).await?;
            }
            None => {
                self.git.run(&["update-ref", "-d", &branch_ref]).await?;
                self.git.run(&["read-tree", "--empty"]).await?;
            }
        }
        self.git.run(&["clean", "-q", "-f", "-d", "-x"]).await?;
        Ok(tip)
    }

    /// Stages the whole working tree and commits it; false when nothing
    /// changed (a folder already pushed by an attempt that looked failed).
    pub async fn commit_all(&self, message: &str) -> Result<bool, GitError> {
        self.git.run(&["add", "-A"]).await?;
        let changes = self.git.run(&["status", "--porcelain"]).await?;
        if changes.trim().is_empty() {
            return Ok(false);
        }
        self.git.run(&["commit", "-q", "-m", message]).await?;
        Ok(true)
    }

    /// Pushes HEAD to the branch. A plain push is refused when the remote
    /// moved; `replace_tip` force-pushes, but only over that exact tip.
    pub async fn push(&self, replace_tip: Option<&str>) -> Result<(), GitError> {
        let destination = format!("HEAD:refs/heads/{}", self.branch);
        match replace_tip {
            None => {
                self.git
                    .run(&["push", "-q", "origin", &destination])
                    .await?
            }
            Some(tip) => {
                let lease = format!("--force-with-lease=refs/heads/{}:{tip}", self.branch);
                self.git
                    .run(&["push", "-q", &lease, "origin", &destination])
                    .await?
            }
        };
        Ok(())
    }

    /// Commits on the local branch (0 when it has none yet).
    pub async fn commit_count(&self) -> Result<usize, GitError> {
        match self.git.run(&["rev-list", "--count", "HEAD"]).await {
            Ok(count) => Ok(count.trim().parse().unwrap_or(0)),
            // An unborn branch has no HEAD to count from.
            Err(GitError::Failed { .. }) => Ok(0),
            Err(other) => Err(other),
        }
    }

    /// Replaces the local branch's history by one root commit holding the
    /// current tree.
    pub async fn squash(&self, message: &str) -> Result<(), GitError> {
        let branch_ref = format!("refs/heads/{}", self.branch);
        self.git.run(&["update-ref", "-d", &branch_ref]).await?;
        self.git.run(&["add", "-A"]).await?;
        self.git.run(&["commit", "-q", "-m", message]).await?;
        Ok(())
    }

    /// Drops objects no longer reachable (squashed history), so the clone
    /// stays as small as the branch.
    pub async fn compact(&self) -> Result<(), GitError> {
        self.git
            .run(&["reflog", "expire", "--expire=now", "--all"])
            .await?;
        self.git.run(&["gc", "-q", "--prune=now"]).await?;
        Ok(())
    }
}
