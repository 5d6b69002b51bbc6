//! The poller: finds open pull requests whose head commit has no status of
//! ours and feeds each to the dispatcher as a synthetic `synchronize`
//! delivery, so trust policy, supersede and de-duplication apply exactly as
//! for webhooks.
//!
//! Two modes ([`PollMode`]):
//! - `POLL_INTERVAL` set: polling is a way in of its own (no relay, no open
//!   port); every open head without our status gets its jobs.
//! - otherwise, with GH_TOKEN, a reconciliation sweep every
//!   [`RECONCILE_INTERVAL`] beside the endpoint or relay, catching deliveries
//!   lost while the relay was down. Heads already open when ember-ci starts
//!   are taken as a baseline and left alone, so installing the CI does not
//!   start a job for every old open pull request.
//!
//! Rate limit: the listing is conditional (ETag), and an unchanged answer
//! (304) costs no quota. Statuses are read once per new head; heads known to
//! carry our status, or already fed, are remembered while they stay open.
//!
//! A head counts as handled once *any* of our backends has a status on it:
//! after a restart the scheduler has forgotten finished jobs, so feeding a
//! partly reported head would run its finished backends again. A backend
//! added later is run on old heads by a `recheck` comment.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::RelayConfig;
use crate::github::{GitHub, GitHubError, PullRequestInfo};
use crate::model::{CommitSha, PrNumber, RepoName};
use crate::webhook::{Delivery, Event, Origin, PrAction, PullRequestEvent};

/// How often the reconciliation sweep runs when POLL_INTERVAL is not set.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Why and how often the poller runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// POLL_INTERVAL: the way deliveries arrive; all open heads count.
    Poll(Duration),
    /// Beside a relay or endpoint: only heads that appear after start count.
    Reconcile(Duration),
}

impl PollMode {
    /// The mode the config asks for; None without a GitHub client, which
    /// polling needs.
    pub fn for_config(config: &RelayConfig, has_github: bool) -> Option<Self> {
        if !has_github {
            return None;
        }
        Some(match config.poll_interval {
            Some(interval) => PollMode::Poll(interval),
            None => PollMode::Reconcile(RECONCILE_INTERVAL),
        })
    }

    pub fn interval(self) -> Duration {
        match self {
            PollMode::Poll(interval) | PollMode::Reconcile(interval) => interval,
        }
    }
}

impl fmt::Display for PollMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollMode::Poll(interval) => write!(f, "poll every {}s", interval.as_secs()),
            PollMode::Reconcile(interval) => {
                write!(f, "reconciliation sweep every {}s", interval.as_secs())
            }
        }
    }
}

#[derive(Debug, Error)]
pub enum PollError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error("the dispatcher no longer takes deliveries (shutting down)")]
    DispatcherGone,
}

/// What one poll found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// GitHub answered 304: the open-PR listing is as last time.
    pub is_unchanged: bool,
    /// Open pull requests in the (possibly remembered) listing.
    pub open: usize,
    /// Heads fed to the dispatcher, each as one synthetic delivery.
    pub fed: Vec<(PrNumber, CommitSha)>,
}

/// Lists open pull requests and feeds heads that have no status of ours.
pub struct Poller {
    github: Arc<GitHub>,
    repo: RepoName,
    /// `3rdparty/<backend>` of every configured backend.
    contexts: Vec<String>,
    deliveries: mpsc::Sender<Delivery>,
    /// The last listing GitHub sent. Kept because a 304 carries none: when
    /// handling a listing failed halfway, the next poll finishes the job
    /// even though GitHub says nothing changed.
    listing: Vec<PullRequestInfo>,
    /// Open heads that need nothing more from the poller: they carry our
    /// status, were fed, or were open at the reconciliation baseline.
    settled: HashSet<(PrNumber, CommitSha)>,
}

impl Poller {
    /// A poller for the client's repository, looking for statuses with the
    /// `contexts` of the configured backends.
    pub fn new(
        github: Arc<GitHub>,
        contexts: Vec<String>,
        deliveries: mpsc::Sender<Delivery>,
    ) -> Self {
        Self {
            repo: github.repo().clone(),
            github,
            contexts,
            deliveries,
            listing: Vec::new(),
            settled: HashSet::new(),
        }
    }

    /// Polls every `mode.interval()` until `shutdown` is cancelled. In
    /// [`PollMode::Poll`] the first poll is immediate; in
    /// [`PollMode::Reconcile`] the first round only records the baseline.
    pub async fn run(mut self, mode: PollMode, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(mode.interval());
        // After a slow round (GitHub slow, dispatcher busy) wait a full
        // interval again rather than polling in a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut needs_baseline = matches!(mode, PollMode::Reconcile(_));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if needs_baseline {
                match self.record_baseline().await {
                    Ok(open) => {
                        info!(
                            open,
                            "reconciliation baseline: open pull requests left to the webhooks"
                        );
                        needs_baseline = false;
                    }
                    Err(error) => {
                        warn!(%error, "listing open pull requests for the baseline failed; retrying next round")
                    }
                }
                continue;
            }
            match self.poll_once().await {
                Ok(report) if report.fed.is_empty() => {
                    debug!(
                        unchanged = report.is_unchanged,
                        open = report.open,
                        "poll: nothing new"
                    )
                }
                Ok(report) => info!(
                    open = report.open,
                    fed = report.fed.len(),
                    "poll: started work for heads without our status"
                ),
                Err(PollError::DispatcherGone) => break,
                Err(error) => warn!(%error, "poll failed; retrying next round"),
            }
        }
        debug!("poller stopped");
    }

    /// Records the open heads as settled without feeding any; returns how
    /// many pull requests are open.
    pub async fn record_baseline(&mut self) -> Result<usize, PollError> {
        if let Some(listing) = self.github.open_pull_requests().await? {
            self.listing = listing;
        }
        self.settled = self.listing.iter().map(head_of).collect();
        Ok(self.listing.len())
    }

    /// One round: list open pull requests (conditionally), then feed each
    /// head that is not settled and has no status of ours.
    pub async fn poll_once(&mut self) -> Result<PollReport, PollError> {
        let mut report = PollReport::default();
        match self.github.open_pull_requests().await? {
            Some(listing) => {
                let open: HashSet<_> = listing.iter().map(head_of).collect();
                // Closed PRs and superseded heads are never listed again.
                self.settled.retain(|head| open.contains(head));
                self.listing = listing;
            }
            None => report.is_unchanged = true,
        }
        report.open = self.listing.len();
        for pull in self.listing.iter().filter(|pull| pull.is_open) {
            let head = head_of(pull);
            if self.settled.contains(&head) {
                continue;
            }
            let statuses = self.github.statuses(&pull.head_sha).await?;
            let is_reported = statuses
                .iter()
                .any(|(context, _)| self.contexts.contains(context));
            if !is_reported {
                info!(pr = %pull.number, sha = pull.head_sha.short(), "head has no status of ours; handing it to the dispatcher");
                self.deliveries
                    .send(synthetic_delivery(&self.repo, pull))
                    .await
                    .map_err(|_| PollError::DispatcherGone)?;
                report.fed.push(head.clone());
            }
            self.settled.insert(head);
        }
        Ok(report)
    }
}

fn head_of(pull: &PullRequestInfo) -> (PrNumber, CommitSha) {
    (pull.number, pull.head_sha.clone())
}

/// What GitHub would have sent when the head was pushed.
fn synthetic_delivery(repo: &RepoName, pull: &PullRequestInfo) -> Delivery {
    Delivery {
        id: format!("poll-{}-{}", pull.number, pull.head_sha.short()),
        event: Event::PullRequest(PullRequestEvent {
            action: PrAction::Synchronize,
            repo: repo.clone(),
            pr: pull.number,
            head_sha: pull.head_sha.clone(),
            title: pull.title.clone(),
            author: pull.author.clone(),
            author_association: pull.author_association.clone(),
            html_url: pull.html_url.clone(),
        }),
        received_at: SystemTime::now(),
        origin: Origin::Api,
    }
}
