//! One delivery's raw headers and bytes -> a reply, plus at most one
//! [`Delivery`] on the channel.
//!
//! The order of checks is the security boundary: the signature is checked
//! over the raw bytes before anything parses them, and nothing reaches the
//! channel unless it is signed, parsed, about the watched repository and new.
//! Transport-free, so the HTTP endpoint and the smee relay share it.
//!
//! A delivery is on the journal's disk before it is acknowledged: a 202
//! means it survives a crash. While the service drains for a stop, every
//! delivery is answered 503 so GitHub (or the relay) can send it again later.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::mpsc::{self, error::TrySendError};

use super::event::{Event, PrAction};
use super::form;
use super::seen::SeenDeliveries;
use super::signature;
use super::{Delivery, DeliveryHeaders, Origin};
use crate::config::Secret;
use crate::journal::{DeliveryRecord, Journal};
use crate::model::RepoName;

/// How many forwarded delivery ids are remembered for de-duplication.
/// GitHub redelivers within hours at most; this covers days of traffic.
const REMEMBERED_DELIVERIES: usize = 10_000;

/// GitHub's delivery ids are UUIDs; anything much longer is not one, and
/// must not be allowed to grow the de-duplication memory.
const MAX_DELIVERY_ID_LEN: usize = 128;

/// The answer to one delivery, transport-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeReply {
    /// An HTTP status: 2xx for anything GitHub should not retry.
    pub status: u16,
    pub message: String,
}

/// Counters for metrics; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct IntakeStats {
    accepted: AtomicU64,
    ignored: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
}

/// A consistent-enough reading of [`IntakeStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeCounts {
    /// Forwarded on the channel.
    pub accepted: u64,
    /// Answered 2xx without forwarding: pings, other events, other repos.
    pub ignored: u64,
    /// Forwarded before under the same delivery id or with the same body.
    pub duplicates: u64,
    /// Refused with 4xx/5xx: bad signature, bad payload, channel full.
    pub rejected: u64,
}

impl IntakeStats {
    pub fn snapshot(&self) -> IntakeCounts {
        IntakeCounts {
            accepted: self.accepted.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    fn count(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Accepted { .. } => &self.accepted,
            Outcome::Pong | Outcome::Ignored(_) => &self.ignored,
            Outcome::Duplicate(_) => &self.duplicates,
            Outcome::Rejected { .. } => &self.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Checks deliveries and forwards the wanted ones.
pub struct Intake {
    secret: Secret,
    repo: RepoName,
    /// Ids of forwarded deliveries and the channel they go to. A std mutex:
    /// it is held only for a lookup, a journal write and a non-blocking
    /// send, never across an await.
    forwarded: Mutex<Forwarding>,
    /// Set once the service stops taking deliveries.
    is_draining: AtomicBool,
    /// Every forwarded delivery is recorded here before it is acknowledged,
    /// and redeliveries of ids it remembers are recognised after a restart.
    journal: Journal,
    stats: IntakeStats,
    /// Set once a delivery signed with SHA-1 alone was warned about.
    warned_sha1_only: AtomicBool,
}

struct Forwarding {
    seen: SeenDeliveries,
    /// None once draining: the dispatcher sees the channel close when the
    /// deliveries already in it are done.
    sink: Option<mpsc::Sender<Delivery>>,
}

/// The reply to every delivery while the service stops.
const DRAINING_MESSAGE: &str = "not accepting deliveries: shutting down";

impl fmt::Debug for Intake {
    // Not derived: the remembered ids would flood any Debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intake")
            .field("repo", &self.repo)
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// `repo` is the watched repository; deliveries about any other are
    /// ignored. Forwarded deliveries are recorded in `journal`.
    pub fn new(
        secret: Secret,
        repo: RepoName,
        journal: Journal,
        sink: mpsc::Sender<Delivery>,
    ) -> Self {
        Self {
            secret,
            repo,
            forwarded: Mutex::new(Forwarding {
                seen: SeenDeliveries::new(REMEMBERED_DELIVERIES),
                sink: Some(sink),
            }),
            is_draining: AtomicBool::new(false),
            journal,
            stats: IntakeStats::default(),
            warned_sha1_only: AtomicBool::new(false),
        }
    }

    /// Stops taking deliveries: from now on every one is answered 503, and
    /// the channel closes once nothing more can be sent on it. Deliveries
    /// already acknowledged are unaffected.
    pub fn start_draining(&self) {
        self.is_draining.store(true, Ordering::SeqCst);
        self.lock_forwarding().sink = None;
    }

    pub fn is_draining(&self) -> bool {
        self.is_draining.load(Ordering::SeqCst)
    }

    fn lock_forwarding(&self) -> std::sync::MutexGuard<'_, Forwarding> {
        // A panic elsewhere while holding the lock leaves the set intact.
        self.forwarded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the dispatcher's queue has room for another delivery.
    pub fn has_room(&self) -> bool {
        self.lock_forwarding()
            .sink
            .as_ref()
            .is_some_and(|sink| sink.capacity() > 0)
    }

    pub fn stats(&self) -> &IntakeStats {
        &self.stats
    }

    /// Checks one delivery and forwards it if wanted. Never blocks on the
    /// channel: a full channel is answered 503 so the sender retries later.
    pub async fn handle(&self, headers: &DeliveryHeaders, body: &[u8]) -> IntakeReply {
        let span = tracing::info_span!(
            "delivery",
            id = headers.delivery_id.as_deref().unwrap_or("-"),
            event = headers.event.as_deref().unwrap_or("-"),
        );
        span.in_scope(|| self.conclude(self.process(headers, body)))
    }

    /// Takes an event read from GitHub's API (the relay's catch-up sweep):
    /// no signature to check, since GitHub itself answered, but the same
    /// parsing, triage, journal and de-duplication as a webhook. `id` is
    /// the event's key ([`event_key`]), `body` a webhook-shaped payload,
    /// `occurred_at` when GitHub says it happened (a comment's creation),
    /// which the delivery carries as its `received_at`: an `/ok-to-test`
    /// read late must not look newer than a head pushed after it.
    pub async fn handle_from_api(
        &self,
        id: &str,
        event_name: &str,
        body: &[u8],
        occurred_at: SystemTime,
    ) -> IntakeReply {
        let span = tracing::info_span!("delivery", id, event = event_name, origin = "api");
        span.in_scope(|| {
            let outcome = if self.is_draining() {
                Outcome::rejected(503, DRAINING_MESSAGE)
            } else {
                self.process_verified(event_name, Some(id), body, (Origin::Api, occurred_at))
            };
            self.conclude(outcome)
        })
    }

    /// Whether the body's signature matches our secret; the relay uses it
    /// to decide whether a repaired body is the one GitHub signed.
    pub fn verifies(&self, headers: &DeliveryHeaders, body: &[u8]) -> bool {
        !self.secret.is_empty()
            && signature::verify(
                self.secret.expose().as_bytes(),
                body,
                headers.signature_256.as_deref(),
                headers.signature_sha1.as_deref(),
            )
            .is_ok()
    }

    fn conclude(&self, outcome: Outcome) -> IntakeReply {
        self.stats.count(&outcome);
        outcome.log();
        outcome.into_reply()
    }

    fn process(&self, headers: &DeliveryHeaders, body: &[u8]) -> Outcome {
        if self.is_draining() {
            return Outcome::rejected(503, DRAINING_MESSAGE);
        }
        if self.secret.is_empty() {
            // An empty HMAC key is still a key anyone can sign with.
            return Outcome::rejected(
                401,
                "signature cannot be checked: no webhook secret configured",
            );
        }
        if let Err(error) = signature::verify(
            self.secret.expose().as_bytes(),
            body,
            headers.signature_256.as_deref(),
            headers.signature_sha1.as_deref(),
        ) {
            return Outcome::rejected(401, error.to_string());
        }
        if headers.signature_256.is_none() && !self.warned_sha1_only.swap(true, Ordering::Relaxed) {
            tracing::warn!("a delivery signed with SHA-1 alone (X-Hub-Signature) was accepted; GitHub sends X-Hub-Signature-256, only old saved deliveries lack it (warned once)");
        }
        let Some(event_name) = headers.event.as_deref() else {
            return Outcome::rejected(400, "missing X-GitHub-Event header");
        };
        let json = match form::json_body(headers.content_type.as_deref(), body) {
            Ok(json) => json,
            Err(error) => return Outcome::rejected(400, error.to_string()),
        };
        let id = headers.delivery_id.as_deref();
        if let Some(id) = id {
            if id.len() > MAX_DELIVERY_ID_LEN {
                return Outcome::rejected(400, "X-GitHub-Delivery header is too long");
            }
            // Those name events read from the API, journaled under that id.
            if Origin::of_id(id) == Origin::Api {
                return Outcome::rejected(
                    400,
                    "X-GitHub-Delivery uses a prefix reserved for events read from the API",
                );
            }
        }
        self.process_verified(event_name, id, &json, (Origin::Webhook, SystemTime::now()))
    }

    /// Everything after the signature: parse, triage, de-duplicate, journal.
    fn process_verified(
        &self,
        event_name: &str,
        id: Option<&str>,
        body: &[u8],
        (origin, received_at): (Origin, SystemTime),
    ) -> Outcome {
        let event = match Event::parse(event_name, body) {
            Ok(event) => event,
            Err(error) => {
                return Outcome::rejected(400, format!("{error}{}", form::hint_for(body)))
            }
        };
        let summary = match triage(&event, &self.repo) {
            Verdict::Pong => return Outcome::Pong,
            Verdict::Ignore(reason) => return Outcome::Ignored(reason),
            Verdict::Forward(summary) => summary,
        };
        let id = match id {
            Some(id) if id.len() > MAX_DELIVERY_ID_LEN => {
                return Outcome::rejected(400, "X-GitHub-Delivery header is too long");
            }
            Some(id) => id.to_string(),
            // Without an id there is nothing to de-duplicate on; a local id
            // still lets logs follow the delivery.
            None => format!("local-{}", uuid::Uuid::new_v4().simple()),
        };
        let wanted = Wanted {
            key: event_key(&event),
            id,
            event_name,
            body,
            event,
            summary,
            origin,
            received_at,
        };
        self.forward(wanted)
    }

    /// Sends a wanted delivery on unless it was sent before, under its
    /// delivery id or its event's key (a comment relayed and also found by
    /// the catch-up sweep is one delivery). Check, journal, send and
    /// remember happen under one lock so two concurrent redeliveries of the
    /// same id cannot both get through. A place in the channel is reserved
    /// before the journal write: a delivery on disk is always also on its
    /// way (or, after a crash, re-dispatched at start).
    fn forward(&self, wanted: Wanted<'_>) -> Outcome {
        // The signature covers the body only: the same body under another
        // (or no) delivery id is a replay, remembered by its digest.
        let digest = crate::journal::body_digest(wanted.body).map(|hex| format!("sha256:{hex}"));
        let mut guard = self.lock_forwarding();
        let forwarding = &mut *guard;
        let keys = || {
            std::iter::once(&wanted.id)
                .chain(wanted.key.as_ref())
                .chain(digest.as_ref())
        };
        if let Some(seen) = keys().find(|key| forwarding.seen.contains(key)) {
            return Outcome::Duplicate(seen.clone());
        }
        let Some(sink) = &forwarding.sink else {
            return Outcome::rejected(503, DRAINING_MESSAGE);
        };
        let permit = match sink.try_reserve() {
            Ok(permit) => permit,
            Err(TrySendError::Full(())) => {
                return Outcome::rejected(503, "not accepting deliveries: queue full")
            }
            Err(TrySendError::Closed(())) => return Outcome::rejected(503, DRAINING_MESSAGE),
        };
        let received_at = wanted.received_at;
        match self.journal.record_delivery_keyed(
            &wanted.id,
            wanted.key.as_deref(),
            wanted.event_name,
            received_at,
            wanted.body,
        ) {
            Ok(DeliveryRecord::New) => {}
            Ok(DeliveryRecord::AlreadyRecorded) => {
                keys().for_each(|key| forwarding.seen.remember(key));
                return Outcome::Duplicate(wanted.id);
            }
            Err(error) => {
                tracing::error!(%error, "cannot journal the delivery");
                return Outcome::rejected(
                    503,
                    "cannot record the delivery on disk; send it again later",
                );
            }
        }
        permit.send(Delivery {
            id: wanted.id.clone(),
            event: wanted.event,
            received_at,
            origin: wanted.origin,
        });
        keys().for_each(|key| forwarding.seen.remember(key));
        Outcome::Accepted {
            summary: wanted.summary,
        }
    }
}

/// What makes two deliveries the same event whatever their delivery ids:
/// a comment's id, a pull request's (number, head) for the actions that
/// announce a head. None for the rest (a `reopened` or `closed` may repeat
/// for one head).
pub fn event_key(event: &Event) -> Option<String> {
    match event {
        Event::IssueComment(comment) if comment.action == "created" => {
            Some(format!("issue-comment-{}", comment.comment_id))
        }
        Event::PullRequest(pr) if matches!(pr.action, PrAction::Opened | PrAction::Synchronize) => {
            Some(format!("pr-head-{}-{}", pr.pr, pr.head_sha))
        }
        _ => None,
    }
}

/// A checked delivery the intake wants to forward.
struct Wanted<'a> {
    id: String,
    /// [`event_key`], de-duplicated like the id.
    key: Option<String>,
    origin: Origin,
    /// Now for a webhook; when it happened for an API event.
    received_at: SystemTime,
    event_name: &'a str,
    /// The verified raw body, journaled for re-dispatch after a crash.
    body: &'a [u8],
    event: Event,
    summary: String,
}

/// What became of one delivery.
#[derive(Debug)]
enum Outcome {
    Accepted { summary: String },
    Pong,
    Ignored(String),
    Duplicate(String),
    Rejected { status: u16, reason: String },
}

impl Outcome {
    fn rejected(status: u16, reason: impl Into<String>) -> Self {
        Outcome::Rejected {
            status,
            reason: reason.into(),
        }
    }

    fn log(&self) {
        match self {
            Outcome::Accepted { summary } => tracing::info!("accepted {summary}"),
            Outcome::Pong => tracing::info!("ping"),
            Outcome::Ignored(reason) => tracing::info!("ignored: {reason}"),
            Outcome::Duplicate(id) => tracing::info!("duplicate of already accepted delivery {id}"),
            Outcome::Rejected { status, reason } => tracing::warn!(status, "rejected: {reason}"),
        }
    }

    fn into_reply(self) -> IntakeReply {
        let (status, message) = match self {
            Outcome::Accepted { summary } => (202, format!("accepted: {summary}")),
            Outcome::Pong => (200, "pong".to_string()),
            Outcome::Ignored(reason) => (200, format!("ignored: {reason}")),
            Outcome::Duplicate(id) => (200, format!("duplicate delivery {id}, already accepted")),
            Outcome::Rejected { status, reason } => (status, reason),
        };
        IntakeReply { status, message }
    }
}

/// Whether a parsed event is work for us.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Pong,
    /// Forward it; the text names what was accepted.
    Forward(String),
    Ignore(String),
}

fn triage(event: &Event, watched: &RepoName) -> Verdict {
    let other_repo = |repo: &RepoName| Verdict::Ignore(format!("repository {repo} is not watched"));
    match event {
        Event::Ping { .. } => Verdict::Pong,
        Event::Other { name } => Verdict::Ignore(format!("event {name} is not handled")),
        Event::PullRequest(pr) => {
            if !watched.is_same(&pr.repo.to_string()) {
                return other_repo(&pr.repo);
            }
            match &pr.action {
                PrAction::Opened
                | PrAction::Synchronize
                | PrAction::Reopened
                | PrAction::Closed => {
                    Verdict::Forward(format!("PR #{} {}", pr.pr, pr.head_sha.short()))
                }
                PrAction::Other(action) => {
                    Verdict::Ignore(format!("pull_request action {action} is not handled"))
                }
            }
        }
        Event::IssueComment(comment) => {
            if !watched.is_same(&comment.repo.to_string()) {
                return other_repo(&comment.repo);
            }
            if comment.action != "created" {
                return Verdict::Ignore(format!(
                    "issue_comment action {} is not handled",
                    comment.action
                ));
            }
            if !comment.is_pull_request {
                return Verdict::Ignore(format!(
                    "comment on issue #{}, not a pull request",
                    comment.issue_number
                ));
            }
            Verdict::Forward(format!(
                "comment {} on PR #{}",
                comment.comment_id, comment.issue_number
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::{IssueCommentEvent, PullRequestEvent};
    use super::*;
    use crate::model::{CommitSha, PrNumber};

    const SECRET: &str = "intake-unit-secret";

    fn repo(name: &str) -> RepoName {
        RepoName::new(name).expect("valid repo name")
    }

    fn pull_request(repo_name: &str, action: &str) -> Event {
        Event::PullRequest(PullRequestEvent {
            action: PrAction::from(action.to_string()),
            repo: repo(repo_name),
            pr: PrNumber::new(129).expect("valid PR number"),
            head_sha: CommitSha::new("4155f91779c72125baee651f628640274794ca37")
                .expect("valid sha"),
            title: "t".into(),
            author: "Akrog".into(),
            author_id: None,
            author_association: "MEMBER".into(),
            html_url: "https://github.com/embercsi/ember-csi/pull/129".into(),
            sender: None,
            head_owner: None,
            updated_at: None,
        })
    }

    fn comment(action: &str, is_pull_request: bool) -> Event {
        Event::IssueComment(IssueCommentEvent {
            action: action.into(),
            repo: repo("embercsi/ember-csi"),
            issue_number: PrNumber::new(130).expect("valid PR number"),
            is_pull_request,
            comment_id: 42,
            body: "recheck".into(),
            author: "Akrog".into(),
            author_id: None,
            author_association: "MEMBER".into(),
            created_at: None,
        })
    }

    #[test]
    fn triage_forwards_only_wanted_events_of_the_watched_repo() {
        let watched = repo("embercsi/ember-csi");
        for action in ["opened", "synchronize", "reopened", "closed"] {
            assert_eq!(
                triage(&pull_request("EmberCSI/Ember-CSI", action), &watched),
                Verdict::Forward("PR #129 4155f91".into()),
                "{action}"
            );
        }
        assert_eq!(
            triage(&pull_request("embercsi/ember-csi", "labeled"), &watched),
            Verdict::Ignore("pull_request action labeled is not handled".into())
        );
        assert_eq!(
            triage(&pull_request("someone/ember-csi", "opened"), &watched),
            Verdict::Ignore("repository someone/ember-csi is not watched".into())
        );
        assert_eq!(
            triage(&comment("created", true), &watched),
            Verdict::Forward("comment 42 on PR #130".into())
        );
        assert_eq!(
            triage(&comment("edited", true), &watched),
            Verdict::Ignore("issue_comment action edited is not handled".into())
        );
        assert_eq!(
            triage(&comment("created", false), &watched),
            Verdict::Ignore("comment on issue #130, not a pull request".into())
        );
        assert_eq!(triage(&Event::Ping { zen: None }, &watched), Verdict::Pong);
    }

    /// An intake for embercsi/ember-csi signed with [`SECRET`].
    fn intake_for(journal: Journal, sink: mpsc::Sender<Delivery>) -> Intake {
        Intake::new(
            Secret::new(SECRET),
            repo("embercsi/ember-csi"),
            journal,
            sink,
        )
    }

    /// A journal in a temporary directory, which must outlive it.
    fn temp_journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path()).expect("journal");
        (dir, journal)
    }

    fn signed_headers(body: &[u8], id: &str) -> DeliveryHeaders {
        DeliveryHeaders {
            event: Some("ping".into()),
            delivery_id: Some(id.into()),
            signature_256: Some(signature::sign(SECRET.as_bytes(), body).sha256),
            signature_sha1: None,
            content_type: None,
        }
    }

    #[tokio::test]
    async fn empty_secret_refuses_even_deliveries_signed_with_it() {
        let (sink, _deliveries) = mpsc::channel(1);
        let (_journal_dir, journal) = temp_journal();
        let intake = Intake::new(Secret::new(""), repo("embercsi/ember-csi"), journal, sink);
        let body = br#"{"zen":"x"}"#;
        let mut headers = signed_headers(body, "d1");
        headers.signature_256 = Some(signature::sign(b"", body).sha256);
        let reply = intake.handle(&headers, body).await;
        assert_eq!(reply.status, 401, "{reply:?}");
    }

    #[tokio::test]
    async fn full_or_closed_channel_answers_503_and_forgets_the_id() {
        let (sink, mut deliveries) = mpsc::channel(1);
        let (_journal_dir, journal) = temp_journal();
        let intake = intake_for(journal, sink);
        // One body per id: a byte-identical body is a duplicate whatever its id.
        let send = |id: &'static str| {
            let body = pr_reopened_body(id);
            let headers = pr_headers(&body, id);
            let intake = &intake;
            async move { intake.handle(&headers, &body).await }
        };

        assert_eq!(send("a").await.status, 202);
        let full = send("b").await;
        assert_eq!(
            (full.status, full.message.as_str()),
            (503, "not accepting deliveries: queue full")
        );

        // "b" was not forwarded, so its retry must not count as a duplicate.
        deliveries.recv().await.expect("first delivery queued");
        assert_eq!(send("b").await.status, 202);

        drop(deliveries);
        assert_eq!(send("c").await.status, 503);
        assert_eq!(
            intake.stats().snapshot(),
            IntakeCounts {
                accepted: 2,
                ignored: 0,
                duplicates: 0,
                rejected: 2
            }
        );
    }

    /// A `reopened` delivery: not keyed by its head ([`event_key`]), so
    /// only its delivery id (or its body) de-duplicates it.
    fn pr_reopened_body(title: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "action": "reopened",
            "repository": {"full_name": "embercsi/ember-csi"},
            "pull_request": {"number": 129, "title": title, "html_url": "u",
                "author_association": "MEMBER", "user": {"login": "Akrog"},
                "head": {"sha": "4155f91779c72125baee651f628640274794ca37"}}
        }))
        .expect("JSON serialises")
    }

    fn pr_headers(body: &[u8], id: &str) -> DeliveryHeaders {
        DeliveryHeaders {
            event: Some("pull_request".into()),
            ..signed_headers(body, id)
        }
    }

    #[tokio::test]
    async fn accepted_deliveries_are_journaled_and_known_after_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path()).expect("journal");
        let body = pr_reopened_body("t");
        let (sink, _deliveries) = mpsc::channel(4);
        let intake = intake_for(journal.clone(), sink);
        assert_eq!(
            intake.handle(&pr_headers(&body, "a"), &body).await.status,
            202
        );
        let stored = journal.undispatched_deliveries().expect("list");
        assert_eq!(stored.len(), 1);
        assert_eq!(
            (stored[0].id.as_str(), stored[0].body.as_slice()),
            ("a", body.as_slice())
        );

        // A new intake (a restarted service) still knows the id.
        let (sink, _deliveries) = mpsc::channel(4);
        let restarted = intake_for(journal.clone(), sink);
        let again = restarted.handle(&pr_headers(&body, "a"), &body).await;
        assert_eq!(again.status, 200, "{again:?}");
        assert!(again.message.starts_with("duplicate"), "{again:?}");
        assert_eq!(journal.delivery_count().expect("count"), 1);
    }

    #[tokio::test]
    async fn a_byte_identical_body_is_a_duplicate_under_any_id_or_none() {
        let (_journal_dir, journal) = temp_journal();
        let (sink, _deliveries) = mpsc::channel(4);
        let intake = intake_for(journal, sink);
        let body = pr_reopened_body("t");
        assert_eq!(
            intake.handle(&pr_headers(&body, "a"), &body).await.status,
            202
        );
        let mut without_id = pr_headers(&body, "-");
        without_id.delivery_id = None;
        for headers in [pr_headers(&body, "b"), without_id] {
            let replay = intake.handle(&headers, &body).await;
            assert_eq!(replay.status, 200, "{replay:?}");
            assert!(replay.message.starts_with("duplicate"), "{replay:?}");
        }
        assert_eq!(intake.stats().snapshot().duplicates, 2);
    }

    #[tokio::test]
    async fn a_delivery_refused_for_a_full_queue_is_not_journaled() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path()).expect("journal");
        let (body, other) = (pr_reopened_body("t"), pr_reopened_body("u"));
        let (sink, _deliveries) = mpsc::channel(1);
        let intake = intake_for(journal.clone(), sink);
        assert_eq!(
            intake.handle(&pr_headers(&body, "a"), &body).await.status,
            202
        );
        assert_eq!(
            intake.handle(&pr_headers(&other, "b"), &other).await.status,
            503
        );
        assert!(journal.has_delivery("a").expect("lookup"));
        assert!(!journal.has_delivery("b").expect("lookup"));
    }

    #[tokio::test]
    async fn draining_answers_503_and_closes_the_channel_after_its_backlog() {
        let body = pr_reopened_body("t");
        let (sink, mut deliveries) = mpsc::channel(4);
        let (_journal_dir, journal) = temp_journal();
        let intake = intake_for(journal, sink);
        assert_eq!(
            intake.handle(&pr_headers(&body, "a"), &body).await.status,
            202
        );
        intake.start_draining();
        let refused = intake.handle(&pr_headers(&body, "b"), &body).await;
        assert_eq!(
            (refused.status, refused.message.as_str()),
            (503, DRAINING_MESSAGE)
        );
        assert_eq!(deliveries.recv().await.map(|d| d.id), Some("a".to_string()));
        assert!(
            deliveries.recv().await.is_none(),
            "channel closes once drained"
        );
    }

    #[tokio::test]
    async fn the_same_event_under_another_id_or_read_from_the_api_is_a_duplicate() {
        let (sink, mut deliveries) = mpsc::channel(8);
        let (_journal_dir, journal) = temp_journal();
        let intake = intake_for(journal, sink);
        let body = pr_reopened_body("t");
        let opened = String::from_utf8(body)
            .expect("UTF-8")
            .replace("reopened", "opened");
        let opened = opened.as_bytes();
        assert_eq!(
            intake.handle(&pr_headers(opened, "a"), opened).await.status,
            202
        );
        let again = intake.handle(&pr_headers(opened, "b"), opened).await;
        assert!(again.message.starts_with("duplicate"), "{again:?}");
        let key = "pr-head-129-4155f91779c72125baee651f628640274794ca37";
        let from_api = intake
            .handle_from_api(key, "pull_request", opened, SystemTime::now())
            .await;
        assert!(from_api.message.starts_with("duplicate"), "{from_api:?}");
        // Webhook ids may not pose as API events.
        let posing = intake.handle(&pr_headers(opened, key), opened).await;
        assert_eq!(posing.status, 400, "{posing:?}");
        assert_eq!(
            deliveries.recv().await.map(|d| d.origin),
            Some(Origin::Webhook)
        );
        assert!(deliveries.try_recv().is_err());
    }
}
