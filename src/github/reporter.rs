//! Where commit statuses go: to GitHub when a token is configured, to stdout
//! when `GH_TOKEN` is empty (the offline demo has no GitHub account, and its
//! user still wants to see what would have been posted).

use std::io::Write as _;

use super::{retry, GitHub, GitHubError, RetryPolicy};
use crate::config::GitHubConfig;
use crate::model::{CommitSha, CommitStatus};

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one long-lived value per service; boxing the client would buy nothing"
)]
pub enum Reporter {
    GitHub(GitHub),
    Console,
}

impl Reporter {
    /// GitHub when GH_TOKEN is set, else the console.
    pub fn from_config(config: &GitHubConfig) -> Result<Self, GitHubError> {
        if config.token.is_empty() {
            return Ok(Reporter::Console);
        }
        GitHub::new(&config.api_url, &config.token, config.repo.clone()).map(Reporter::GitHub)
    }

    /// Whether statuses reach GitHub (false: printed on the console).
    pub fn is_posting(&self) -> bool {
        matches!(self, Reporter::GitHub(_))
    }

    /// The API statuses are posted to, when they are.
    pub fn api_url(&self) -> Option<&str> {
        self.github().map(GitHub::api_url)
    }

    /// The GitHub client, for calls beyond statuses (comments, PR lookups).
    pub fn github(&self) -> Option<&GitHub> {
        match self {
            Reporter::GitHub(github) => Some(github),
            Reporter::Console => None,
        }
    }

    /// Posts `status` once.
    pub async fn report(&self, sha: &CommitSha, status: &CommitStatus) -> Result<(), GitHubError> {
        match self {
            Reporter::GitHub(github) => github.post_status(sha, status).await,
            Reporter::Console => {
                let line = console_line(sha, status);
                writeln!(std::io::stdout().lock(), "{line}")
                    .map_err(|error| GitHubError::fatal("printing a status", error.to_string()))
            }
        }
    }

    /// Posts `status`, retrying retryable failures as `policy` allows.
    pub async fn report_with_retry(
        &self,
        sha: &CommitSha,
        status: &CommitStatus,
        policy: &RetryPolicy,
    ) -> Result<(), GitHubError> {
        let what = format!(
            "posting status {} {} on {}",
            status.context,
            status.state,
            sha.short()
        );
        retry(policy, &what, || self.report(sha, status)).await
    }
}

/// `[status] <sha short> <context> <state>: <description> (<target_url>)`
fn console_line(sha: &CommitSha, status: &CommitStatus) -> String {
    let mut line = format!(
        "[status] {} {} {}: {}",
        sha.short(),
        status.context,
        status.state,
        status.sendable_description()
    );
    if let Some(url) = &status.target_url {
        line.push_str(&format!(" ({url})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StatusState;

    fn sha() -> CommitSha {
        CommitSha::new("4155f91779c72125baee651f628640274794ca37").expect("valid sha")
    }

    #[test]
    fn console_line_shows_short_sha_context_state_description_and_link() {
        let status = CommitStatus {
            context: "3rdparty/lvm".into(),
            state: StatusState::Failure,
            description: "failed at sanity: 2 tests failed".into(),
            target_url: Some("https://logs.example/job/1/".into()),
        };
        assert_eq!(
            console_line(&sha(), &status),
            "[status] 4155f91 3rdparty/lvm failure: failed at sanity: 2 tests failed (https://logs.example/job/1/)"
        );
    }

    #[test]
    fn console_line_without_link_has_no_parentheses() {
        let status = CommitStatus {
            context: "3rdparty/lvm".into(),
            state: StatusState::Pending,
            description: "queued".into(),
            target_url: None,
        };
        assert_eq!(
            console_line(&sha(), &status),
            "[status] 4155f91 3rdparty/lvm pending: queued"
        );
    }
}
