//! Plain data that crosses the github module's edge, free of octocrab types.

use crate::model::{truncate_chars, CommitSha, PrNumber, StatusState};

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

/// What ember-ci needs to know about a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestInfo {
    pub number: PrNumber,
    pub head_sha: CommitSha,
    pub title: String,
    /// The author's login.
    pub author: String,
    /// GitHub's `author_association` (`OWNER`, `MEMBER`, `CONTRIBUTOR`, `NONE`, ...),
    /// kept as GitHub spells it for the trust policy to judge.
    pub author_association: String,
    pub html_url: String,
    pub is_open: bool,
}
