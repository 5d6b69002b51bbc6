//! The status outbox: one task posts every commit status, in the order they
//! were queued, retrying while GitHub is unreachable. Jobs hand statuses over
//! and go on, so reporting never blocks the queue, and statuses for one SHA
//! can never overtake each other (a late "pending" hiding a final result).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::github::{CommitStatus, Reporter};
use crate::model::CommitSha;

/// Backoff between attempts while GitHub fails; a final status is never dropped
/// for a retryable error.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

struct Outgoing {
    sha: CommitSha,
    status: CommitStatus,
}

/// Hands statuses to the outbox task. Cloneable; dropping every clone ends the
/// task once the queue is drained.
#[derive(Clone)]
pub struct StatusOutbox {
    sender: mpsc::UnboundedSender<Outgoing>,
    /// Number of statuses queued and not yet posted (or given up on).
    backlog: watch::Receiver<usize>,
    backlog_tx: Arc<watch::Sender<usize>>,
}

impl StatusOutbox {
    /// Starts the posting task.
    pub fn start(reporter: Arc<Reporter>) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (backlog_tx, backlog) = watch::channel(0usize);
        let backlog_tx = Arc::new(backlog_tx);
        let task = tokio::spawn(post_in_order(reporter, receiver, backlog_tx.clone()));
        (
            Self {
                sender,
                backlog,
                backlog_tx,
            },
            task,
        )
    }

    /// Queues a status; returns at once.
    pub fn send(&self, sha: &CommitSha, status: CommitStatus) {
        self.backlog_tx.send_modify(|n| *n += 1);
        let outgoing = Outgoing {
            sha: sha.clone(),
            status,
        };
        if self.sender.send(outgoing).is_err() {
            self.backlog_tx.send_modify(|n| *n -= 1);
            error!(sha = %sha, "status outbox is closed; status not posted");
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
) {
    while let Some(Outgoing { sha, status }) = receiver.recv().await {
        post_until_accepted(&reporter, &sha, &status).await;
        backlog.send_modify(|n| *n = n.saturating_sub(1));
    }
}

async fn post_until_accepted(reporter: &Reporter, sha: &CommitSha, status: &CommitStatus) {
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        match reporter.report(sha, status).await {
            Ok(()) => {
                info!(sha = %sha.short(), context = %status.context, state = %status.state, "status posted");
                return;
            }
            Err(err) if err.is_retryable() => {
                let wait = err.retry_after().unwrap_or(delay).min(MAX_RETRY_DELAY);
                warn!(sha = %sha.short(), context = %status.context, error = %err, retry_in_secs = wait.as_secs(), "posting status failed; will retry");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(err) => {
                error!(sha = %sha.short(), context = %status.context, error = %err, "GitHub refused the status; giving up on it");
                return;
            }
        }
    }
}
