//! Plain data that crosses the github module's edge, free of octocrab types.

use std::time::SystemTime;

use crate::model::{CommitSha, PrNumber};

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

/// A comment on a pull request, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentInfo {
    pub id: u64,
    pub pr: PrNumber,
    pub body: String,
    /// The commenter's login.
    pub author: String,
    pub author_association: String,
    pub created_at: SystemTime,
}
