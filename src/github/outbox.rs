//! The status outbox: one task posts every commit status, in the order they
//! were queued, retrying while GitHub is unreachable. Jobs hand statuses over
//! and go on, so reporting never blocks the queue, and statuses for one SHA
//! can never overtake each other (a late "pending" hiding a final result).
//!
//! Every status is written to the journal before it is queued and removed
//! once GitHub took it (or refused it for good): statuses GitHub did not
//! get before a stop or crash are posted, still in order, on next start.
//! It lives beside the client: the scheduler and the dispatcher hand it
//! statuses; what to say is theirs, getting it to GitHub is ours.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::{Reporter, RetryPolicy};
use crate::journal::{Journal, JournalError, StatusId};
use crate::model::{CommitSha, CommitStatus};

/// Backoff between attempts while GitHub fails: the policy's doubling delays
/// and its honouring of rate-limit hints, without its attempt limit, since a
/// final status is never dropped for a retryable error.
fn backoff() -> RetryPolicy {
    RetryPolicy {
        attempts: u32::MAX,
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
    }
}

struct Outgoing {
    sha: CommitSha,
    status: CommitStatus,
    /// Its journal row, removed once the status is posted; None when the
    /// journal could not write it (it is posted from memory then).
    journal_id: Option<StatusId>,
}

/// Hands statuses to the outbox task. Cloneable; dropping every clone ends the
/// task once the queue is drained.
#[derive(Clone)]
pub struct StatusOutbox {
    sender: mpsc::UnboundedSender<Outgoing>,
    /// Number of statuses queued and not yet posted (or given up on).
    backlog: watch::Receiver<usize>,
    backlog_tx: Arc<watch::Sender<usize>>,
    journal: Journal,
}

impl StatusOutbox {
    /// Starts the posting task with statuses kept in `journal`; those a
    /// previous run left unsent are queued first. Returns how many those were.
    pub fn start(
        reporter: Arc<Reporter>,
        journal: Journal,
    ) -> Result<(Self, tokio::task::JoinHandle<()>, usize), JournalError> {
        let unsent = journal.unsent_statuses()?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let (backlog_tx, backlog) = watch::channel(0usize);
        let backlog_tx = Arc::new(backlog_tx);
        let task = tokio::spawn(post_in_order(
            reporter,
            receiver,
            backlog_tx.clone(),
            journal.clone(),
        ));
        let outbox = Self {
            sender,
            backlog,
            backlog_tx,
            journal,
        };
        let resumed = unsent.len();
        for stored in unsent {
            outbox.enqueue(Outgoing {
                sha: stored.sha,
                status: stored.status,
                journal_id: Some(stored.id),
            });
        }
        Ok((outbox, task, resumed))
    }

    /// The journal statuses are kept in.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Queues a status; returns at once. The status is on disk when this
    /// returns (if the disk write fails, it is still posted from memory).
    pub fn send(&self, sha: &CommitSha, status: CommitStatus) {
        let journal_id = match self.journal.queue_status(sha, &status) {
            Ok(id) => Some(id),
            Err(err) => {
                error!(sha = %sha.short(), error = %err, "cannot journal a status; posting it from memory only");
                None
            }
        };
        self.enqueue(Outgoing {
            sha: sha.clone(),
            status,
            journal_id,
        });
    }

    /// Queues a status its caller already wrote to the journal (together
    /// with the job change it announces).
    pub(crate) fn send_journaled(&self, id: StatusId, sha: &CommitSha, status: CommitStatus) {
        self.enqueue(Outgoing {
            sha: sha.clone(),
            status,
            journal_id: Some(id),
        });
    }

    fn enqueue(&self, outgoing: Outgoing) {
        self.backlog_tx.send_modify(|n| *n += 1);
        if let Err(mpsc::error::SendError(lost)) = self.sender.send(outgoing) {
            self.backlog_tx.send_modify(|n| *n -= 1);
            error!(sha = %lost.sha, "status outbox is closed; status not posted");
        }
    }

    /// Statuses queued and not yet posted: a growing number means GitHub
    /// is refusing or unreachable (the web UI's health of reporting).
    pub fn backlog(&self) -> usize {
        *self.backlog.borrow()
    }

    /// Waits until every queued status was posted (or given up on as fatal),
    /// at most `limit`. Returns the number still waiting.
    pub async fn flush(&self, limit: Duration) -> usize {
        let mut backlog = self.backlog.clone();
        let drained = tokio::time::timeout(limit, backlog.wait_for(|n| *n == 0)).await;
        match drained {
            Ok(_) => 0,
            Err(_) => *self.backlog.borrow(),
        }
    }
}

async fn post_in_order(
    reporter: Arc<Reporter>,
    mut receiver: mpsc::UnboundedReceiver<Outgoing>,
    backlog: Arc<watch::Sender<usize>>,
    journal: Journal,
) {
    while let Some(Outgoing {
        sha,
        status,
        journal_id,
    }) = receiver.recv().await
    {
        post_until_accepted(&reporter, &sha, &status).await;
        if let Some(id) = journal_id {
            if let Err(err) = journal.status_done(id) {
                // The status was posted; the row only means it is posted
                // once more after a restart (possibly after a newer one, if
                // the disk recovers in between; a failing disk is logged).
                warn!(sha = %sha.short(), error = %err, "cannot remove a posted status from the journal");
            }
        }
        backlog.send_modify(|n| *n = n.saturating_sub(1));
    }
}

async fn post_until_accepted(reporter: &Reporter, sha: &CommitSha, status: &CommitStatus) {
    let policy = backoff();
    let mut failures = 0;
    loop {
        match reporter.report(sha, status).await {
            Ok(()) => {
                info!(sha = %sha.short(), context = %status.context, state = %status.state, "status posted");
                return;
            }
            Err(err) if err.is_retryable() => {
                failures += 1;
                let wait = policy.delay_after(failures, &err);
                warn!(sha = %sha.short(), context = %status.context, error = %err, retry_in_secs = wait.as_secs(), "posting status failed; will retry");
                tokio::time::sleep(wait).await;
            }
            Err(err) => {
                error!(sha = %sha.short(), context = %status.context, error = %err, "GitHub refused the status; giving up on it");
                return;
            }
        }
    }
}
