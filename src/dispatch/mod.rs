//! Turns accepted deliveries into scheduler work: one job per backend for a
//! new or updated pull request (or a "waiting for /ok-to-test" status when
//! the author is not trusted), cancellation of superseded and closed work,
//! and the PR comment commands. Runs as one task fed by the webhook intake
//! and the relays; comment handling talks to GitHub in its own task so a slow
//! API never holds up deliveries.
//!
//! - [`comments`]: the comment commands (`recheck`, `/recheck`, `/help`,
//!   `/ok-to-test`) and their replies.
//! - [`ledger`]: which untrusted heads wait for an ok, which were approved.
//! - [`replies`]: the wording of every comment the bot writes.

mod comments;
mod ledger;
mod replies;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::config::{find_backend, BackendConfig, GitHubConfig};
use crate::github::StatusOutbox;
use crate::github::{GitHub, RetryPolicy};
use crate::model::{
    CancelReason, CommitSha, CommitStatus, JobOutcome, JobRequest, PrNumber, StatusState,
};
use crate::policy::{is_listed, is_push_trusted, is_trusted};
use crate::scheduler::{Enqueued, Scheduler};
use crate::webhook::{Delivery, Event, PrAction, PullRequestEvent};
use ledger::OkToTestLedger;

/// The status description of a PR held back until a trusted user's ok.
pub const WAITING_FOR_OK: &str = "waiting for /ok-to-test from a project member";

/// Who may trigger what, and on which backends: the parts of the config
/// the dispatcher judges by.
#[derive(Debug, Clone)]
pub struct DispatchPolicy {
    /// GH_USER: the bot's own comments are never commands.
    pub bot_login: String,
    /// TRUSTED_USERS.
    pub trusted_users: Vec<String>,
    pub backends: Vec<BackendConfig>,
}

impl DispatchPolicy {
    pub fn new(github: &GitHubConfig, backends: &[BackendConfig]) -> Self {
        Self {
            bot_login: github.user.clone(),
            trusted_users: github.trusted_users.clone(),
            backends: backends.to_vec(),
        }
    }

    /// A user trusted by login only: the id seen is logged, to be listed
    /// instead (a renamed login can be registered by someone else).
    fn note_login_trust(&self, login: &str, id: Option<u64>) {
        let users = &self.trusted_users;
        if let Some(id) = id {
            if is_listed(login, None, users) && !is_listed("", Some(id), users) {
                info!(login, id, "trusted by login in TRUSTED_USERS; list the id {id} instead to survive renames");
            }
        }
    }

    fn backend(&self, name: &str) -> Option<&BackendConfig> {
        find_backend(&self.backends, name)
    }
}

/// Everything the dispatcher acts through. Cheap to clone: the ok-to-test
/// ledger lives in the journal.
#[derive(Clone)]
pub struct Dispatcher {
    scheduler: Scheduler,
    policy: Arc<DispatchPolicy>,
    outbox: StatusOutbox,
    /// None when no GH_TOKEN is set: comments cannot be answered then.
    github: Option<Arc<GitHub>>,
    ledger: OkToTestLedger,
    /// For the calls comment commands make (reading the PR, replying).
    retry: RetryPolicy,
}

impl Dispatcher {
    pub fn new(
        scheduler: Scheduler,
        policy: DispatchPolicy,
        outbox: StatusOutbox,
        github: Option<Arc<GitHub>>,
    ) -> Self {
        let ledger = OkToTestLedger::new(scheduler.journal().clone());
        Self {
            scheduler,
            policy: Arc::new(policy),
            outbox,
            github,
            ledger,
            retry: RetryPolicy::default(),
        }
    }

    /// Consumes deliveries until every sender is dropped, then waits for
    /// the comment commands still being answered.
    pub async fn run(self, mut deliveries: mpsc::Receiver<Delivery>) {
        let mut comment_tasks = JoinSet::new();
        while let Some(delivery) = deliveries.recv().await {
            while let Some(ended) = comment_tasks.try_join_next() {
                report_task_end(ended);
            }
            let span = info_span!("delivery", id = %delivery.id);
            let delivery_id = delivery.id.clone();
            match delivery.event {
                Event::PullRequest(pr) => {
                    span.in_scope(|| self.on_pull_request(&pr, delivery.received_at))
                }
                Event::IssueComment(comment) => {
                    let this = self.clone();
                    comment_tasks
                        .spawn(async move { this.on_comment(comment).await }.instrument(span));
                }
                Event::Ping { .. } | Event::Other { .. } => {}
            }
            // Its work is queued now (a comment command: handed to its
            // task), so a restart must not dispatch it again.
            if let Err(err) = self.scheduler.journal().mark_dispatched(&delivery_id) {
                warn!(delivery = %delivery_id, error = %err, "cannot mark the delivery dispatched; a restart will dispatch it again");
            }
        }
        debug!("delivery channel closed; waiting for comment commands in progress");
        while let Some(ended) = comment_tasks.join_next().await {
            report_task_end(ended);
        }
        debug!("dispatcher stopped");
    }

    fn on_pull_request(&self, event: &PullRequestEvent, received_at: SystemTime) {
        let (pr, head) = (event.pr, &event.head_sha);
        match &event.action {
            PrAction::Opened | PrAction::Reopened | PrAction::Synchronize => {
                // The signed time of the push; a delivery without one (the
                // poller's) is dated by its arrival, which is later.
                let pushed_at = event.updated_at.unwrap_or(received_at);
                if self.is_stale(event, pushed_at) {
                    return;
                }
                if let Err(error) = self
                    .scheduler
                    .journal()
                    .record_head_push(pr, head, pushed_at)
                {
                    error!(%pr, %error, "cannot record the head's push time; an ok for it will be refused");
                }
                let reason = CancelReason::Superseded { by: head.clone() };
                let cancelled = self
                    .scheduler
                    .cancel_pull_request(pr, Some(head), reason.clone());
                if cancelled > 0 {
                    info!(%pr, cancelled, "older jobs of the pull request cancelled");
                }
                let is_author_trusted = is_trusted(
                    &event.author,
                    event.author_id,
                    &event.author_association,
                    &self.policy.trusted_users,
                );
                self.policy.note_login_trust(&event.author, event.author_id);
                // A push to a member's PR runs by itself only when it
                // comes from someone trusted too (item: pusher, not author).
                let is_pusher_trusted = event.action != PrAction::Synchronize
                    || is_push_trusted(
                        event.sender.as_deref(),
                        &event.author,
                        event.head_owner.as_deref(),
                        event.repo.owner(),
                        &self.policy.trusted_users,
                    );
                // A head a member approved stays approved when a delivery for
                // it comes again (reopened, redelivered).
                if (is_author_trusted && is_pusher_trusted) || self.ledger.is_approved(pr, head) {
                    if let Some(old) = self.ledger_result(self.ledger.release(pr, Some(head))) {
                        self.end_held_head(&old, &reason);
                    }
                    self.enqueue_all(pr, head, false);
                } else {
                    if let Some(old) = self.ledger_result(self.ledger.hold(pr, head)) {
                        self.end_held_head(&old, &reason);
                    }
                    let sender = event.sender.as_deref().unwrap_or("-");
                    info!(%pr, author = %event.author, %sender, sha = %head.short(), "author or pusher not trusted; waiting for /ok-to-test");
                    self.post_for_every_backend(head, StatusState::Pending, WAITING_FOR_OK);
                }
            }
            PrAction::Closed => {
                let reason = CancelReason::PullRequestClosed;
                let cancelled = self.scheduler.cancel_pull_request(pr, None, reason.clone());
                if let Some(old) = self.ledger_result(self.ledger.release(pr, None)) {
                    self.end_held_head(&old, &reason);
                }
                info!(%pr, cancelled, "pull request closed");
            }
            PrAction::Other(action) => {
                debug!(%pr, action, "pull request action ignored")
            }
        }
    }

    /// Whether a pull request delivery announces a head older than one
    /// already pushed: a replayed `synchronize` must not cancel the newer
    /// head's jobs nor bring the old head back.
    fn is_stale(&self, event: &PullRequestEvent, pushed_at: SystemTime) -> bool {
        match self.scheduler.journal().latest_head_push(event.pr) {
            Ok(Some((latest, latest_at))) if latest != event.head_sha && latest_at > pushed_at => {
                warn!(pr = %event.pr, sha = %event.head_sha.short(), newer = %latest.short(), action = %event.action, "delivery older than the PR's latest push; a replay or a late delivery, ignored");
                true
            }
            Ok(_) => false,
            Err(error) => {
                error!(pr = %event.pr, %error, "cannot read the PR's latest push; delivery ignored");
                true
            }
        }
    }

    /// The ledger's answer, or None (logged) when the journal failed.
    fn ledger_result<T>(
        &self,
        result: Result<Option<T>, crate::journal::JournalError>,
    ) -> Option<T> {
        result.unwrap_or_else(|error| {
            error!(%error, "cannot update the ok ledger in the journal");
            None
        })
    }

    /// A head that waited for an ok and will never run: its pending
    /// "waiting" statuses end like a cancelled job's would.
    fn end_held_head(&self, sha: &CommitSha, reason: &CancelReason) {
        let outcome = JobOutcome::from(reason);
        self.post_for_every_backend(sha, outcome.status_state(), &outcome.description());
    }

    fn post_for_every_backend(&self, sha: &CommitSha, state: StatusState, description: &str) {
        for backend in &self.policy.backends {
            let status = CommitStatus {
                context: backend.name.status_context(),
                state,
                description: description.to_string(),
                target_url: None,
            };
            self.outbox.send(sha, status);
        }
    }

    fn enqueue_all(&self, pr: PrNumber, sha: &CommitSha, is_rerun: bool) {
        let backends: Vec<&BackendConfig> = self.policy.backends.iter().collect();
        self.enqueue_backends(pr, sha, &backends, is_rerun);
    }

    fn enqueue_backends(
        &self,
        pr: PrNumber,
        sha: &CommitSha,
        backends: &[&BackendConfig],
        is_rerun: bool,
    ) {
        for backend in backends {
            let request = JobRequest {
                pr,
                sha: sha.clone(),
                backend: backend.name.clone(),
            };
            let result = if is_rerun {
                self.scheduler.enqueue_rerun(request.clone())
            } else {
                self.scheduler.enqueue(request.clone())
            };
            match result {
                Enqueued::Queued(id) => debug!(job = %id, %request, "queued"),
                Enqueued::AlreadyLive(id) => {
                    info!(job = %id, %request, "a job for this commit and backend is already live")
                }
                Enqueued::AlreadyFinished => {
                    info!(%request, "this commit already ran on this backend; comment recheck to run it again")
                }
                Enqueued::Refused => info!(%request, "not queued: ember-ci is shutting down"),
            }
        }
    }
}

/// A comment command's task ended; a panic is our bug and is reported.
fn report_task_end(ended: Result<(), tokio::task::JoinError>) {
    if let Err(err) = ended {
        error!(error = %err, "a comment command's task ended abnormally");
    }
}
