//! Turns accepted deliveries into scheduler work: one job per backend for a
//! new or updated pull request, cancellation of superseded and closed work.
//! Runs as one task fed by the webhook intake and the relays.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info, info_span, Instrument};

use crate::config::Config;
use crate::model::JobRequest;
use crate::scheduler::{Enqueued, Scheduler};
use crate::webhook::{Delivery, Event, PrAction, PullRequestEvent};

/// Consumes deliveries until every sender is dropped.
pub async fn run_dispatcher(mut deliveries: mpsc::Receiver<Delivery>, scheduler: Scheduler, config: Arc<Config>) {
    while let Some(delivery) = deliveries.recv().await {
        let span = info_span!("delivery", id = %delivery.id);
        async { dispatch(&delivery.event, &scheduler, &config) }.instrument(span).await;
    }
    debug!("delivery channel closed; dispatcher stopping");
}

fn dispatch(event: &Event, scheduler: &Scheduler, config: &Config) {
    match event {
        Event::PullRequest(pr) => dispatch_pull_request(pr, scheduler, config),
        // Comment commands are parsed and acted on by the commands module
        // once it lands; until then a comment starts nothing.
        Event::IssueComment(comment) => {
            debug!(pr = %comment.issue_number, "comment received; comment commands are not handled yet")
        }
        Event::Ping { .. } | Event::Other { .. } => {}
    }
}

fn dispatch_pull_request(event: &PullRequestEvent, scheduler: &Scheduler, config: &Config) {
    match &event.action {
        PrAction::Opened | PrAction::Reopened | PrAction::Synchronize => {
            let reason = format!("superseded by {}", event.head_sha.short());
            let cancelled = scheduler.cancel_pull_request(event.pr, Some(&event.head_sha), &reason);
            if cancelled > 0 {
                info!(pr = %event.pr, cancelled, "older jobs of the pull request cancelled");
            }
            for backend in &config.backends {
                let request = JobRequest { pr: event.pr, sha: event.head_sha.clone(), backend: backend.name.clone() };
                match scheduler.enqueue(request.clone()) {
                    Enqueued::Queued(id) => debug!(job = %id, %request, "queued"),
                    Enqueued::AlreadyLive(id) => info!(job = %id, %request, "a job for this commit and backend is already live"),
                    Enqueued::Refused => info!(%request, "not queued: ember-ci is shutting down"),
                }
            }
        }
        PrAction::Closed => {
            let cancelled = scheduler.cancel_pull_request(event.pr, None, "pull request closed");
            info!(pr = %event.pr, cancelled, "pull request closed");
        }
        PrAction::Other(action) => debug!(pr = %event.pr, action, "pull request action ignored"),
    }
}
