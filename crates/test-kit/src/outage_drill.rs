//! A smee outage, staged: a real smee relay (with its catch-up sweep on the
//! fake GitHub) follows the fake smee while "GitHub" takes a PR comment at a
//! steady rate, records it (so the API lists it) and delivers it to smee at
//! once, signed. Mid-way smee is stopped for a while and started again on
//! the same address; deliveries made meanwhile reach nobody, as with the
//! real smee, which keeps no history. The drill reports how soon the relay
//! was back and whether every comment reached the intake's channel exactly
//! once. Used by the outage test and by `examples/relay_outage.rs`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ember_ci::config::Secret;
use ember_ci::github::GitHub;
use ember_ci::journal::Journal;
use ember_ci::model::RepoName;
use ember_ci::relay::{smee, Backoff, CatchUp, SmeeRelay};
use ember_ci::webhook::{signature, Event, Intake, Origin};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fake_github::FakeGitHub;
use crate::fake_smee::FakeSmee;

/// The webhook secret the drill signs with.
pub const SECRET: &str = "outage-drill-secret";
const PR: u64 = 130;
const WAIT: Duration = Duration::from_secs(120);

/// How the outage is staged.
#[derive(Debug, Clone, Copy)]
pub struct Drill {
    /// How long smee is down.
    pub outage: Duration,
    /// Between two comments.
    pub comment_every: Duration,
    /// Comments before the outage and after smee is back.
    pub settle: Duration,
}

/// What the drill saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillReport {
    /// From smee listening again to the relay's stream being open.
    pub reconnect: Duration,
    /// Comments GitHub took (and lists through the API).
    pub created: Vec<u64>,
    /// Comment ids that reached the channel, in arrival order.
    pub received: Vec<u64>,
    /// Of those, how many the catch-up sweep found (not the stream).
    pub recovered: usize,
}

impl DrillReport {
    /// Comments GitHub shows that never reached the channel.
    pub fn lost(&self) -> Vec<u64> {
        self.created
            .iter()
            .copied()
            .filter(|id| !self.received.contains(id))
            .collect()
    }

    /// Comments that reached the channel more than once.
    pub fn duplicates(&self) -> usize {
        let mut sorted = self.received.clone();
        sorted.sort_unstable();
        let before = sorted.len();
        sorted.dedup();
        before - sorted.len()
    }
}

impl Drill {
    pub async fn run(self) -> DrillReport {
        let github = Arc::new(FakeGitHub::start().await);
        github.add_pull(PR, &"a".repeat(40), "Broken", "Akrog", "MEMBER");
        let journal_dir = tempfile::tempdir().expect("temp dir");
        let (sender, mut deliveries) = mpsc::channel(1024);
        let intake = Arc::new(Intake::new(
            Secret::new(SECRET),
            RepoName::new(&github.repo()).expect("valid repo"),
            Journal::open(journal_dir.path()).expect("journal"),
            sender,
        ));
        let api = GitHub::new(
            &github.url(),
            &Secret::new(github.token()),
            RepoName::new(&github.repo()).expect("valid repo"),
        )
        .expect("client for the fake");
        let catch_up = CatchUp::new(
            Arc::new(api),
            intake.clone(),
            vec!["3rdparty/lvm".to_string()],
            journal_dir.path(),
        );
        let smee = FakeSmee::start().await;
        // The production reconnect timing: that is what is measured.
        let relay = SmeeRelay::new(&smee.url(), intake.clone())
            .expect("valid smee URL")
            .with_backoff(
                Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
                smee::RETRY_INTERVAL,
            )
            .with_catch_up(Arc::new(catch_up));
        let shutdown = CancellationToken::new();
        let relay = tokio::spawn(relay.run(shutdown.clone()));
        smee.wait_for_streams(1, WAIT)
            .await
            .expect("relay connects");

        let received = Arc::new(Mutex::new(Vec::new()));
        let recovered = Arc::new(Mutex::new(0usize));
        let collector = {
            let (received, recovered) = (received.clone(), recovered.clone());
            tokio::spawn(async move {
                while let Some(delivery) = deliveries.recv().await {
                    let Event::IssueComment(comment) = &delivery.event else {
                        continue;
                    };
                    if delivery.origin == Origin::Api {
                        *recovered.lock().unwrap_or_else(PoisonError::into_inner) += 1;
                    }
                    received
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(comment.comment_id);
                }
            })
        };

        let smee = Arc::new(tokio::sync::Mutex::new(Some(smee)));
        let commenting = CancellationToken::new();
        let writer = tokio::spawn(write_comments(
            github.clone(),
            smee.clone(),
            self.comment_every,
            commenting.clone(),
        ));
        tokio::time::sleep(self.settle).await;
        let stopped = smee.lock().await.take().expect("smee runs");
        let addr = stopped.stop().await;
        tokio::time::sleep(self.outage).await;
        let back = FakeSmee::start_on(addr).await;
        let restarted = Instant::now();
        back.wait_for_streams(1, WAIT)
            .await
            .expect("relay reconnects");
        let reconnect = restarted.elapsed();
        *smee.lock().await = Some(back);
        tokio::time::sleep(self.settle).await;
        commenting.cancel();
        let created = writer.await.expect("the comment writer did not panic");

        crate::wait::poll_until(WAIT, Duration::from_millis(20), || {
            let count = received
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len();
            std::future::ready((count >= created.len()).then_some(()))
        })
        .await;
        // Late duplicates would show up now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        shutdown.cancel();
        relay.await.expect("the relay task did not panic");
        collector.abort();
        let received = received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let recovered = *recovered.lock().unwrap_or_else(PoisonError::into_inner);
        DrillReport {
            reconnect,
            created,
            received,
            recovered,
        }
    }
}

/// Takes a comment every `every` until `stop`: recorded by GitHub, then
/// delivered to smee when it is up. Returns the ids in order.
async fn write_comments(
    github: Arc<FakeGitHub>,
    smee: Arc<tokio::sync::Mutex<Option<FakeSmee>>>,
    every: Duration,
    stop: CancellationToken,
) -> Vec<u64> {
    let mut created = Vec::new();
    let mut ticker = tokio::time::interval(every);
    while !stop.is_cancelled() {
        ticker.tick().await;
        let id = github.add_comment(PR, "Akrog", "MEMBER", "recheck");
        if let Some(smee) = smee.lock().await.as_ref() {
            smee.publish_text(&comment_message(&github.repo(), id, "recheck"));
        }
        created.push(id);
    }
    created
}

/// smee's message for a signed `issue_comment` delivery of comment `id`,
/// from the real delivery in tests/data/github.
pub fn comment_message(repo: &str, id: u64, text: &str) -> String {
    let mut saved: Value = serde_json::from_str(REAL_COMMENT).expect("fixture is JSON");
    let body = &mut saved["body"];
    body["comment"]["id"] = Value::from(id);
    body["comment"]["body"] = Value::from(text);
    body["issue"]["number"] = Value::from(PR);
    body["repository"]["full_name"] = Value::from(repo);
    let bytes = serde_json::to_vec(body).expect("serialises");
    let signatures = signature::sign(SECRET.as_bytes(), &bytes);
    saved["x-hub-signature-256"] = Value::from(signatures.sha256);
    saved["x-hub-signature"] = Value::from(signatures.sha1);
    saved["x-github-delivery"] = Value::from(format!("drill-{id}"));
    saved.to_string()
}

const REAL_COMMENT: &str = include_str!("../../../tests/data/github/issue_comment-created.json");
