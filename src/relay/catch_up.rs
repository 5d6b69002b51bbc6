//! The catch-up sweep: after the smee link was down (and at start, for the
//! time ember-ci itself was down), asks GitHub's API for what happened in
//! the gap, since smee keeps no history: open pull requests' heads and
//! pull-request comments created since the last event seen. Each is handed
//! to the [`Intake`] as an API event (keys `pr-head-<n>-<sha>`,
//! `issue-comment-<id>`), so parsing, triage, the journal, de-duplication
//! against what the relay did deliver, and every dispatch rule apply to it
//! as to a webhook.
//!
//! "Caught up until" is kept in `CI_DIR/smee-caught-up-until`: advanced
//! while the stream is up and nothing is owed, frozen from a disconnect
//! until a sweep over the gap succeeds. A window never reaches back more
//! than [`MAX_WINDOW`].
//!
//! It decides nothing about what runs; the dispatcher does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tracing::{debug, warn};

use crate::github::{CommentInfo, GitHub, GitHubError, PullRequestInfo};
use crate::webhook::Intake;

/// The file, in the state dir, holding the time we are caught up until.
pub const MARK_FILE: &str = "smee-caught-up-until";
/// The furthest back a sweep looks: older commands are stale anyway.
pub const MAX_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);
/// Looked back beyond the mark: the mark is written every few seconds, not
/// at every event, and GitHub's clock is not ours.
const MARGIN: Duration = Duration::from_secs(60);

/// How long to wait when the dispatcher's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(50);

/// What one sweep found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUpReport {
    /// Pull-request comments created in the window.
    pub comments: usize,
    /// Open heads updated in the window with no status of ours.
    pub heads: usize,
    /// Of those, how many the intake took as new (the relay had missed them).
    pub found: usize,
}

/// Sweeps the API for events the relay may have missed.
pub struct CatchUp {
    github: Arc<GitHub>,
    intake: Arc<Intake>,
    /// `3rdparty/<backend>` of every backend: a head with one is handled.
    contexts: Vec<String>,
    mark_path: PathBuf,
    /// Gaps opened (start-up counts as one) and the last one a sweep
    /// covered: while a gap is owed a sweep the mark must not advance over
    /// it, even if a sweep that started before it ends meanwhile.
    gaps: AtomicU64,
    swept: AtomicU64,
    /// One sweep at a time; a second waits and then finds little.
    sweeping: tokio::sync::Mutex<()>,
}

impl CatchUp {
    pub fn new(
        github: Arc<GitHub>,
        intake: Arc<Intake>,
        contexts: Vec<String>,
        state_dir: &std::path::Path,
    ) -> Self {
        Self {
            github,
            intake,
            contexts,
            mark_path: state_dir.join(MARK_FILE),
            // At start, the time ember-ci was down is a gap too.
            gaps: AtomicU64::new(1),
            swept: AtomicU64::new(0),
            sweeping: tokio::sync::Mutex::new(()),
        }
    }

    /// Where the window of the next sweep starts: the mark less a margin,
    /// at most [`MAX_WINDOW`] ago; None before any mark was written.
    pub fn window_start(&self) -> Option<SystemTime> {
        let text = std::fs::read_to_string(&self.mark_path).ok()?;
        let mark = time::OffsetDateTime::parse(
            text.trim(),
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|error| warn!(path = %self.mark_path.display(), %error, "unreadable catch-up mark; ignored"))
        .ok()?;
        let now = SystemTime::now();
        let oldest = now
            .checked_sub(MAX_WINDOW)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let start = SystemTime::from(mark).checked_sub(MARGIN)?;
        Some(start.max(oldest).min(now))
    }

    /// The link went down: the mark stays where it is until a sweep.
    pub fn fell_behind(&self) {
        self.gaps.fetch_add(1, Ordering::SeqCst);
    }

    /// Records that everything up to `at` was seen, unless a gap is owed.
    pub fn seen_until(&self, at: SystemTime) {
        if self.swept.load(Ordering::SeqCst) >= self.gaps.load(Ordering::SeqCst) {
            self.write_mark(at);
        }
    }

    fn write_mark(&self, at: SystemTime) {
        let Ok(text) =
            time::OffsetDateTime::from(at).format(&time::format_description::well_known::Rfc3339)
        else {
            return;
        };
        // Written aside and renamed: a crash mid-write leaves the old mark.
        let scratch = self.mark_path.with_extension("new");
        let written = std::fs::write(&scratch, format!("{text}\n"))
            .and_then(|()| std::fs::rename(&scratch, &self.mark_path));
        if let Err(error) = written {
            warn!(path = %self.mark_path.display(), %error, "cannot record the catch-up mark");
        }
    }

    /// Sweeps the window from [`CatchUp::window_start`] to now (nothing the
    /// first time ever), then advances the mark. On an error the mark stays,
    /// so the next sweep covers the gap again.
    pub async fn sweep(&self) -> Result<CatchUpReport, GitHubError> {
        let _one_at_a_time = self.sweeping.lock().await;
        let gap = self.gaps.load(Ordering::SeqCst);
        let started = SystemTime::now();
        let report = match self.window_start() {
            Some(since) => self.sweep_since(since).await?,
            None => CatchUpReport::default(),
        };
        // A gap opened during the sweep is still owed: the mark stays.
        if self.gaps.load(Ordering::SeqCst) == gap {
            self.write_mark(started);
        }
        self.swept.fetch_max(gap, Ordering::SeqCst);
        Ok(report)
    }

    /// Heads first, so a comment acting on a head finds it known.
    pub async fn sweep_since(&self, since: SystemTime) -> Result<CatchUpReport, GitHubError> {
        let mut report = CatchUpReport::default();
        for pull in self.github.open_pulls_updated_since(since).await? {
            let statuses = self.github.statuses(&pull.head_sha).await?;
            if statuses
                .iter()
                .any(|(context, _)| self.contexts.contains(context))
            {
                continue;
            }
            report.heads += 1;
            let key = format!("pr-head-{}-{}", pull.number, pull.head_sha);
            // When the head was pushed is unknown: it counts as announced now.
            let body = head_body(&self.github, &pull);
            report.found += usize::from(
                self.hand_over(&key, "pull_request", &body, SystemTime::now())
                    .await,
            );
        }
        for comment in self.github.pr_comments_since(since).await? {
            // `since` filters on the last edit; an edit is not a command.
            if comment.created_at < since {
                continue;
            }
            report.comments += 1;
            let key = format!("issue-comment-{}", comment.id);
            let body = comment_body(&self.github, &comment);
            report.found += usize::from(
                self.hand_over(&key, "issue_comment", &body, comment.created_at)
                    .await,
            );
        }
        Ok(report)
    }

    /// Returns whether the intake took it as new. A full queue is waited
    /// out: a long outage finds more than the dispatcher's backlog holds.
    async fn hand_over(
        &self,
        key: &str,
        event: &str,
        body: &serde_json::Value,
        occurred_at: SystemTime,
    ) -> bool {
        let body = serde_json::to_vec(body).expect("a JSON value serialises");
        loop {
            // Waiting for room first keeps the intake from logging a refusal
            // per try; a race with a webhook still gets a 503, tried again.
            while !self.intake.has_room() && !self.intake.is_draining() {
                tokio::time::sleep(QUEUE_FULL_PAUSE).await;
            }
            let reply = self
                .intake
                .handle_from_api(key, event, &body, occurred_at)
                .await;
            if reply.status == 503 && !self.intake.is_draining() {
                tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                continue;
            }
            debug!(
                key,
                status = reply.status,
                "catch-up event handed to the intake"
            );
            return reply.status == 202;
        }
    }
}

/// A `pull_request` `synchronize` payload for a head found through the API.
/// It has no `sender`: nobody is known to have pushed it.
fn head_body(github: &GitHub, pull: &PullRequestInfo) -> serde_json::Value {
    json!({
        "action": "synchronize",
        "pull_request": {
            "number": pull.number.get(),
            "title": pull.title,
            "html_url": pull.html_url,
            "author_association": pull.author_association,
            "user": {"login": pull.author},
            "head": {"sha": pull.head_sha.to_string()},
        },
        "repository": {"full_name": github.repo().to_string()},
    })
}

/// An `issue_comment` `created` payload for a comment read from the API;
/// GitHub wrote it, so its author is as authentic as a signed delivery's.
fn comment_body(github: &GitHub, comment: &CommentInfo) -> serde_json::Value {
    json!({
        "action": "created",
        "issue": {"number": comment.pr.get(), "pull_request": {}},
        "comment": {
            "id": comment.id,
            "body": comment.body,
            "user": {"login": comment.author},
            "author_association": comment.author_association,
        },
        "repository": {"full_name": github.repo().to_string()},
        "sender": {"login": comment.author},
    })
}
