//! What the fake GitHub keeps: statuses per commit, comments, reactions,
//! open pull requests, the requests it answered, and failures it was told
//! to answer with next.

use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStatus {
    pub id: u64,
    pub context: String,
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedComment {
    pub id: u64,
    pub pr: u64,
    pub body: String,
    /// The bot's login for comments ember-ci wrote.
    pub author: String,
    pub author_association: String,
    /// Unix seconds (GitHub's timestamps have whole seconds).
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedReaction {
    pub id: u64,
    pub comment_id: u64,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The status code the fake answered with.
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePull {
    pub number: u64,
    pub head_sha: String,
    pub title: String,
    pub author: String,
    pub author_association: String,
    pub is_open: bool,
    /// Unix seconds of the last change (open, push, close).
    pub updated_at: u64,
}

/// An answer queued by `fail_next` / `rate_limit_next`.
#[derive(Debug, Clone)]
pub(super) struct PlannedFailure {
    pub(super) status: u16,
    pub(super) retry_after_secs: Option<u64>,
}

/// The fake's model; tests read it through `FakeGitHub::state` or `wait_for`.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Per commit SHA, oldest first.
    pub statuses: BTreeMap<String, Vec<RecordedStatus>>,
    pub comments: Vec<RecordedComment>,
    pub reactions: Vec<RecordedReaction>,
    pub pulls: BTreeMap<u64, FakePull>,
    /// Bumped on every change to `pulls`; the PR list ETag derives from it.
    pub pulls_version: u64,
    /// How many conditional requests were answered 304 Not Modified.
    pub not_modified_count: usize,
    pub requests: Vec<LoggedRequest>,
    pub(super) planned_failures: VecDeque<PlannedFailure>,
    pub(super) last_id: u64,
    /// The token's scopes as GitHub lists them in `X-OAuth-Scopes`.
    pub token_scopes: String,
}

impl FakeState {
    pub fn statuses_for(&self, sha: &str) -> Vec<RecordedStatus> {
        self.statuses.get(sha).cloned().unwrap_or_default()
    }

    /// Requests with this method whose path is exactly `path`.
    pub fn count_requests(&self, method: &str, path: &str) -> usize {
        self.requests
            .iter()
            .filter(|request| request.method == method && request.path == path)
            .count()
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }
}
