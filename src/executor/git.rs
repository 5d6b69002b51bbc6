//! The host-side git cache: one bare clone of the watched repository under
//! the state dir, updated one PR ref at a time (only new objects cross the
//! network), and the export of one commit's tree into a job's work dir.
//!
//! git runs as a child process with validated arguments, never through a
//! shell, and never prompts for credentials.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use thiserror::Error;
use tokio::process::Command;
use tokio::sync::Mutex;

use super::process::{describe_exit, run_quiet, run_streaming};
use crate::model::{CommitSha, PrNumber};

#[derive(Debug, Error)]
pub enum GitError {
    #[error("cannot run git {action}: {source}")]
    Spawn {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("git {action} failed ({exit}){detail}")]
    Failed {
        action: &'static str,
        exit: String,
        detail: String,
    },
    #[error("commit {short} not found in {reference}")]
    CommitMissing { short: String, reference: String },
    #[error("{reference} does not exist in the repository")]
    RefMissing { reference: String },
    #[error("cannot export the source tree into {path}: {source}")]
    Export {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The cached bare clone. Fetches are serialised: two git processes
/// updating one repository's refs at once can fail on ref locks.
#[derive(Debug)]
pub struct GitCache {
    url: String,
    clone_dir: PathBuf,
    fetch_lock: Mutex<()>,
}

impl GitCache {
    pub fn new(state_dir: &Path, url: &str) -> Self {
        let clone_dir = state_dir
            .join("git")
            .join(format!("{}.git", sanitise_clone_name(url)));
        Self {
            url: url.to_string(),
            clone_dir,
            fetch_lock: Mutex::new(()),
        }
    }

    /// `git fetch` of one ref from the repository into the same ref here.
    fn fetch_ref(&self, reference: &str) -> Command {
        let mut fetch = self.git();
        fetch.args([
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
            &self.url,
            &format!("+{reference}:{reference}"),
        ]);
        fetch
    }

    /// Fetches the PR's head ref and checks that `sha` is now present.
    pub async fn fetch_pr(
        &self,
        pr: PrNumber,
        sha: &CommitSha,
        on_output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(), GitError> {
        let _serialised = self.fetch_lock.lock().await;
        self.ensure_clone().await?;
        let reference = pr.head_ref();
        let fetch = self.fetch_ref(&reference);
        let status = run_streaming(fetch, on_output)
            .await
            .map_err(|source| GitError::Spawn {
                action: "fetch",
                source,
            })?;
        if !status.success() {
            return Err(GitError::Failed {
                action: "fetch",
                exit: describe_exit(status),
                detail: String::new(),
            });
        }
        let mut check = self.git();
        check.args(["cat-file", "-e", &format!("{sha}^{{commit}}")]);
        let found = run_quiet(check).await.map_err(|source| GitError::Spawn {
            action: "cat-file",
            source,
        })?;
        if !found.status.success() {
            return Err(GitError::CommitMissing {
                short: sha.short().to_string(),
                reference,
            });
        }
        Ok(())
    }

    /// The commit to build for a PR whose head is `head`: GitHub's merge
    /// commit (refs/pull/N/merge) when it exists and merges that very head,
    /// so the code that would be merged is tested; otherwise None and the
    /// head is built. Call after [`Self::fetch_pr`].
    pub async fn fetch_merge(&self, pr: PrNumber, head: &CommitSha) -> Option<CommitSha> {
        let _serialised = self.fetch_lock.lock().await;
        let reference = pr.merge_ref();
        let fetch = self.fetch_ref(&reference);
        if !run_quiet(fetch).await.ok()?.status.success() {
            return None;
        }
        // A merge ref GitHub has not recomputed yet still merges an older head.
        if self.rev_parse(&format!("{reference}^2")).await? != head.as_str() {
            return None;
        }
        let merge = self.rev_parse(&format!("{reference}^{{commit}}")).await?;
        CommitSha::new(&merge).ok()
    }

    async fn rev_parse(&self, revision: &str) -> Option<String> {
        let mut command = self.git();
        command
            .args(["rev-parse", "--verify", "--quiet", revision])
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        let output = command.output().await.ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Writes the tree of `sha` into `dest` (created, must not exist yet).
    /// `git archive` goes through a file, so a large tree never sits in memory.
    pub async fn export_tree(&self, sha: &CommitSha, dest: &Path) -> Result<(), GitError> {
        let export_err = |source| GitError::Export {
            path: dest.display().to_string(),
            source,
        };
        let archive_path = dest.with_extension("tar");
        let archive_file = std::fs::File::create(&archive_path).map_err(export_err)?;
        let mut archive = self.git();
        archive
            .args(["archive", "--format=tar", sha.as_str()])
            .stdin(Stdio::null())
            .stdout(archive_file)
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = match archive.spawn() {
            Ok(child) => child.wait_with_output().await,
            Err(source) => Err(source),
        }
        .map_err(|source| GitError::Spawn {
            action: "archive",
            source,
        })?;
        if !output.status.success() {
            let _ = tokio::fs::remove_file(&archive_path).await;
            return Err(GitError::Failed {
                action: "archive",
                exit: describe_exit(output.status),
                detail: format!(": {}", String::from_utf8_lossy(&output.stderr).trim()),
            });
        }
        let unpack_into = dest.to_path_buf();
        let unpack_from = archive_path.clone();
        let unpacked = tokio::task::spawn_blocking(move || unpack(&unpack_from, &unpack_into))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join)));
        let _ = tokio::fs::remove_file(&archive_path).await;
        unpacked.map_err(export_err)
    }

    async fn ensure_clone(&self) -> Result<(), GitError> {
        if self.clone_dir.join("HEAD").is_file() {
            return Ok(());
        }
        if let Some(parent) = self.clone_dir.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| GitError::Spawn {
                    action: "init",
                    source,
                })?;
        }
        let mut init = Command::new("git");
        init.env("GIT_TERMINAL_PROMPT", "0")
            .args(["init", "--bare", "--quiet", "--"])
            .arg(&self.clone_dir);
        let output = run_quiet(init).await.map_err(|source| GitError::Spawn {
            action: "init",
            source,
        })?;
        if !output.status.success() {
            return Err(GitError::Failed {
                action: "init",
                exit: describe_exit(output.status),
                detail: format!(": {}", output.stderr.trim()),
            });
        }
        Ok(())
    }

    /// git on the cache; the ext transport could run arbitrary commands
    /// from a URL, so it is off whatever the user's git config says.
    fn git(&self) -> Command {
        let mut command = Command::new("git");
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .arg("-C")
            .arg(&self.clone_dir)
            .args(["-c", "protocol.ext.allow=never"]);
        command
    }
}

/// The commit `refs/pull/N/head` points at in the repository at `url`
/// (`ember-ci run` has no delivery to tell it).
pub async fn resolve_pull_head(url: &str, pr: PrNumber) -> Result<CommitSha, GitError> {
    let reference = pr.head_ref();
    let output = Command::new("git")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["ls-remote", "--", url, &reference])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| GitError::Spawn {
            action: "ls-remote",
            source,
        })?;
    if !output.status.success() {
        return Err(GitError::Failed {
            action: "ls-remote",
            exit: describe_exit(output.status),
            detail: format!(": {}", String::from_utf8_lossy(&output.stderr).trim()),
        });
    }
    let listing = String::from_utf8_lossy(&output.stdout);
    listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(_, name)| *name == reference)
        .and_then(|(sha, _)| CommitSha::new(sha).ok())
        .ok_or(GitError::RefMissing { reference })
}

fn unpack(archive_path: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir(dest)?;
    let file = std::fs::File::open(archive_path)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(false);
    // unpack() refuses entries that would land outside `dest`.
    archive.unpack(dest)
}

/// A directory name for the clone of `url`: host and path, with anything
/// but letters, digits, `.`, `_` and `-` turned into `_`.
fn sanitise_clone_name(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let trimmed = without_scheme
        .trim_end_matches('/')
        .trim_end_matches(".git");
    let name: String = trimmed
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_matches(|c| c == '_' || c == '.');
    if name.is_empty() {
        "repository".to_string()
    } else {
        name.chars().take(100).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::sanitise_clone_name;

    #[test]
    fn clone_names_are_plain_directory_names() {
        assert_eq!(
            sanitise_clone_name("https://github.com/embercsi/ember-csi.git"),
            "github.com_embercsi_ember-csi"
        );
        assert_eq!(
            sanitise_clone_name("/var/lib/ember-ci/demo/ember-csi.git"),
            "var_lib_ember-ci_demo_ember-csi"
        );
        assert_eq!(
            sanitise_clone_name("git@github.com:a/b.git"),
            "git_github.com_a_b"
        );
        assert_eq!(sanitise_clone_name("../.."), "repository");
    }
}
