//! Turns accepted deliveries into scheduler work: one job per backend for a
//! new or updated pull request (or a "waiting for /ok-to-test" status when
//! the author is not trusted), cancellation of superseded and closed work,
//! and the PR comment commands. Runs as one task fed by the webhook intake
//! and the relays; comment handling talks to GitHub in its own task so a slow
//! API never holds up deliveries.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::commands::{parse_commands, Command};
use crate::config::{BackendConfig, Config};
use crate::github::{CommitStatus, GitHub, GitHubError};
use crate::model::{CommitSha, JobRequest, PrNumber, StatusState};
use crate::policy::{is_own_comment, is_trusted};
use crate::scheduler::{Enqueued, Scheduler, StatusOutbox};
use crate::webhook::{Delivery, Event, IssueCommentEvent, PrAction, PullRequestEvent};

/// The status description of a PR held back until a trusted user's ok.
pub const WAITING_FOR_OK: &str = "waiting for /ok-to-test from a project member";

/// Reaction acknowledging a command.
const ACK_REACTION: &str = "eyes";

/// Everything the dispatcher acts through.
#[derive(Clone)]
pub struct Dispatcher {
    pub scheduler: Scheduler,
    pub config: Arc<Config>,
    pub outbox: StatusOutbox,
    /// None when no GH_TOKEN is set: comments cannot be answered then.
    pub github: Option<Arc<GitHub>>,
}

impl Dispatcher {
    /// Consumes deliveries until every sender is dropped.
    pub async fn run(self, mut deliveries: mpsc::Receiver<Delivery>) {
        while let Some(delivery) = deliveries.recv().await {
            let span = info_span!("delivery", id = %delivery.id);
            let _entered = span.enter();
            let delivery_id = delivery.id.clone();
            match delivery.event {
                Event::PullRequest(pr) => self.on_pull_request(&pr),
                Event::IssueComment(comment) => {
                    let this = self.clone();
                    tokio::spawn(
                        async move { this.on_comment(comment).await }.instrument(span.clone()),
                    );
                }
                Event::Ping { .. } | Event::Other { .. } => {}
            }
            // Its work is queued now (a comment command: handed to its
            // task), so a restart must not dispatch it again.
            if let Some(journal) = self.scheduler.journal() {
                if let Err(err) = journal.mark_dispatched(&delivery_id) {
                    warn!(error = %err, "cannot mark the delivery dispatched; a restart will dispatch it again");
                }
            }
        }
        debug!("delivery channel closed; dispatcher stopping");
    }

    fn on_pull_request(&self, event: &PullRequestEvent) {
        match &event.action {
            PrAction::Opened | PrAction::Reopened | PrAction::Synchronize => {
                let reason = format!("superseded by {}", event.head_sha.short());
                let cancelled =
                    self.scheduler
                        .cancel_pull_request(event.pr, Some(&event.head_sha), &reason);
                if cancelled > 0 {
                    info!(pr = %event.pr, cancelled, "older jobs of the pull request cancelled");
                }
                if is_trusted(
                    &event.author,
                    &event.author_association,
                    &self.config.trusted_users,
                ) {
                    self.enqueue_all(event.pr, &event.head_sha, false);
                } else {
                    info!(pr = %event.pr, author = %event.author, "author not trusted; waiting for /ok-to-test");
                    for backend in &self.config.backends {
                        self.outbox.send(&event.head_sha, waiting_status(backend));
                    }
                }
            }
            PrAction::Closed => {
                let cancelled =
                    self.scheduler
                        .cancel_pull_request(event.pr, None, "pull request closed");
                info!(pr = %event.pr, cancelled, "pull request closed");
            }
            PrAction::Other(action) => {
                debug!(pr = %event.pr, action, "pull request action ignored")
            }
        }
    }

    fn enqueue_all(&self, pr: PrNumber, sha: &CommitSha, is_rerun: bool) {
        let backends: Vec<&BackendConfig> = self.config.backends.iter().collect();
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

    async fn on_comment(&self, comment: IssueCommentEvent) {
        if comment.action != "created"
            || !comment.is_pull_request
            || is_own_comment(&comment.author, &self.config.gh_user)
        {
            return;
        }
        let commands = parse_commands(&comment.body);
        if commands.is_empty() {
            return;
        }
        let Some(github) = self.github.clone() else {
            warn!(pr = %comment.issue_number, "comment commands need GH_TOKEN to read the PR and reply; ignored");
            return;
        };
        if let Err(err) = self.run_commands(&github, &comment, &commands).await {
            warn!(pr = %comment.issue_number, error = %err, "handling a comment command failed");
        }
    }

    async fn run_commands(
        &self,
        github: &GitHub,
        comment: &IssueCommentEvent,
        commands: &[Command],
    ) -> Result<(), GitHubError> {
        let pr = comment.issue_number;
        let is_author_trusted = is_trusted(
            &comment.author,
            &comment.author_association,
            &self.config.trusted_users,
        );
        github
            .add_reaction(comment.comment_id, ACK_REACTION)
            .await?;
        for command in commands {
            match command {
                Command::Help => github.create_comment(pr, &self.help_text()).await?,
                Command::Recheck { .. } | Command::OkToTest if !is_author_trusted => {
                    let reply = format!(
                        "@{} thanks! Only members of the project (or users the CI's operator trusts) can start jobs on this CI; \
                         a member can comment `/ok-to-test` to run this pull request.",
                        comment.author
                    );
                    github.create_comment(pr, &reply).await?;
                    info!(%pr, author = %comment.author, "command from an untrusted user refused");
                    // One refusal per comment is enough.
                    return Ok(());
                }
                Command::Recheck { backends } => {
                    let (known, unknown) = self.select_backends(backends);
                    if !unknown.is_empty() {
                        github
                            .create_comment(pr, &self.unknown_backends_text(&unknown))
                            .await?;
                    }
                    if !known.is_empty() {
                        let head = github.pull_request(pr).await?;
                        info!(%pr, sha = %head.head_sha.short(), backends = known.len(), "recheck requested");
                        self.enqueue_backends(pr, &head.head_sha, &known, true);
                    }
                }
                Command::OkToTest => {
                    let head = github.pull_request(pr).await?;
                    info!(%pr, sha = %head.head_sha.short(), by = %comment.author, "ok-to-test given");
                    self.enqueue_all(pr, &head.head_sha, false);
                }
            }
        }
        Ok(())
    }

    /// The backends named in a recheck (all when none is named), and the
    /// names that match no backend.
    fn select_backends<'a>(&'a self, names: &[String]) -> (Vec<&'a BackendConfig>, Vec<String>) {
        if names.is_empty() {
            return (self.config.backends.iter().collect(), Vec::new());
        }
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match self.config.backend(name) {
                Some(backend)
                    if !known
                        .iter()
                        .any(|k: &&BackendConfig| k.index == backend.index) =>
                {
                    known.push(backend)
                }
                Some(_) => {}
                None => unknown.push(name.clone()),
            }
        }
        (known, unknown)
    }

    fn backend_list(&self) -> String {
        self.config
            .backends
            .iter()
            .map(|b| format!("`{}`", b.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn unknown_backends_text(&self, unknown: &[String]) -> String {
        let names: Vec<String> = unknown
            .iter()
            .map(|n| format!("`{}`", crate::model::truncate_chars(n, 40)))
            .collect();
        format!(
            "Unknown backend {}. This CI runs: {}.",
            names.join(", "),
            self.backend_list()
        )
    }

    fn help_text(&self) -> String {
        format!(
            "Commands this CI understands, each alone on a line:\n\n\
             - `recheck`: run every backend again on the PR's current head\n\
             - `/recheck <backend>...`: run only the named backends again\n\
             - `/ok-to-test`: (project members) run a pull request from an author the CI does not trust yet\n\
             - `/help`: this message\n\n\
             Backends: {}.",
            self.backend_list()
        )
    }
}

fn waiting_status(backend: &BackendConfig) -> CommitStatus {
    CommitStatus {
        context: backend.name.status_context(),
        state: StatusState::Pending,
        description: WAITING_FOR_OK.to_string(),
        target_url: None,
    }
}
