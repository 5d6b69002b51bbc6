//! Runs the `git` CLI in the logs clone: bounded in time, never prompting,
//! and with the push token passed in the environment (GIT_CONFIG_* as an
//! `http.extraHeader`), never in argv where `ps` or an error message would
//! show it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use thiserror::Error;
use tokio::process::Command;

use crate::config::Secret;

/// A network git command (fetch, push) that takes longer is killed: a hung
/// remote must not hold the publisher forever.
const GIT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("`git {command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`git {command}` did not finish within {}s", GIT_COMMAND_TIMEOUT.as_secs())]
    TimedOut { command: String },
}

/// `git -C <dir>` with a fixed identity and, for https remotes, the token.
#[derive(Clone)]
pub struct GitRunner {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl GitRunner {
    /// `author` names the commits; `token` is sent only to https remotes.
    pub fn new(dir: &Path, remote_url: &str, author: &str, token: &Secret) -> Self {
        let mut env = vec![
            ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
            ("GIT_AUTHOR_NAME".to_string(), author.to_string()),
            ("GIT_AUTHOR_EMAIL".to_string(), format!("{author}@ember-ci")),
            ("GIT_COMMITTER_NAME".to_string(), author.to_string()),
            (
                "GIT_COMMITTER_EMAIL".to_string(),
                format!("{author}@ember-ci"),
            ),
        ];
        if remote_url.starts_with("https://") && !token.is_empty() {
            // GitHub accepts any user name with a token as the password.
            let basic = STANDARD.encode(format!("x-access-token:{}", token.expose()));
            env.extend([
                ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
                (
                    "GIT_CONFIG_KEY_0".to_string(),
                    "http.extraHeader".to_string(),
                ),
                (
                    "GIT_CONFIG_VALUE_0".to_string(),
                    format!("Authorization: Basic {basic}"),
                ),
            ]);
        }
        Self {
            dir: dir.to_path_buf(),
            env,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `git args` and returns its stdout.
    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let command_text = args.join(" ");
        let mut command = Command::new("git");
        command
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().map_err(GitError::Spawn)?;
        let output = tokio::time::timeout(GIT_COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_elapsed| GitError::TimedOut {
                command: command_text.clone(),
            })?
            .map_err(GitError::Spawn)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(GitError::Failed {
                command: command_text,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }
}
