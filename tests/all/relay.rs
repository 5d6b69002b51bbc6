//! The smee relay against a local smee server (real SSE over HTTP), the
//! poller against the fake GitHub API, and one end-to-end run of
//! `ember-ci serve` receiving the two vendor deliveries through smee and
//! running them as real Podman jobs.

use ember_ci_test_kit::ci_env;
use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::fake_smee;
use ember_ci_test_kit::outage_drill;
use ember_ci_test_kit::wait;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ember_ci::config::{Config, Secret};
use ember_ci::github::GitHub;
use ember_ci::journal::Journal;
use ember_ci::model::{CommitSha, CommitStatus, PrNumber, RepoName, StatusState};
use ember_ci::relay::saved::prepare_saved_delivery;
use ember_ci::relay::{
    Backoff, CatchUp, CatchUpReport, PollMode, Poller, RelayHealth, RelayStatus, SmeeRelay,
};
use ember_ci::webhook::{signature, Delivery, Event, Intake, Origin, PrAction};
use fake_github::FakeGitHub;
use fake_smee::FakeSmee;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::MakeWriter;

const SECRET: &str = "relay-test-secret";
const REPO: &str = "embercsi/ember-csi";
/// Generous: CI has two slow cores and other suites run beside this one.
const WAIT: Duration = Duration::from_secs(60);
const CONDITION_POLL: Duration = Duration::from_millis(20);
/// Between attempts while a test's channel is down.
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

fn fixture(file: &str) -> Value {
    let path = format!("{}/tests/data/github/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Re-signs a smee-form delivery the way GitHub would have signed its
/// compact body with `secret`.
fn signed(mut delivery: Value, secret: &str) -> Value {
    let body = prepare_saved_delivery(&delivery, None)
        .expect("fixture is a delivery")
        .body;
    let signatures = signature::sign(secret.as_bytes(), &body);
    delivery["x-hub-signature-256"] = Value::from(signatures.sha256);
    delivery["x-hub-signature"] = Value::from(signatures.sha1);
    delivery
}

fn pr_number(delivery: &Delivery) -> u64 {
    match &delivery.event {
        Event::PullRequest(pr) => pr.pr.get(),
        other => panic!("expected a pull request event, got {other:?}"),
    }
}

/// Log lines written while it is installed on the current thread. The
/// relay tests run on a current-thread runtime, so the relay's tasks log
/// on the test's thread too.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A smee relay feeding a real intake whose channel the test reads.
struct RunningRelay {
    intake: Arc<Intake>,
    deliveries: mpsc::Receiver<Delivery>,
    health: RelayHealth,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    _journal_dir: tempfile::TempDir,
}

impl RunningRelay {
    fn start(url: &str) -> Self {
        let (sender, deliveries) = mpsc::channel(16);
        let journal_dir = tempfile::tempdir().expect("temp dir");
        let intake = Arc::new(Intake::new(
            Secret::new(SECRET),
            RepoName::new(REPO).expect("valid repo"),
            Journal::open(journal_dir.path()).expect("journal"),
            sender,
        ));
        let relay = SmeeRelay::new(url, intake.clone())
            .expect("valid smee URL")
            .with_backoff(
                Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
                RETRY_INTERVAL,
            );
        let health = relay.health();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(relay.run(shutdown.clone()));
        Self {
            intake,
            deliveries,
            health,
            shutdown,
            task,
            _journal_dir: journal_dir,
        }
    }

    async fn next_delivery(&mut self) -> Delivery {
        tokio::time::timeout(WAIT, self.deliveries.recv())
            .await
            .expect("a delivery within the deadline")
            .expect("the intake is alive")
    }

    async fn wait_for_health(&self, what: &str, condition: impl Fn(&RelayStatus) -> bool) {
        let seen = wait::poll_until(WAIT, CONDITION_POLL, || {
            std::future::ready(Some(self.health.snapshot()).filter(|status| condition(status)))
        })
        .await;
        assert!(
            seen.is_some(),
            "relay health never showed {what}; last: {:?}",
            self.health.snapshot()
        );
    }

    /// Cancels the relay and checks that it ends promptly.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the relay stops on shutdown")
            .expect("the relay task did not panic");
    }
}

/// Starts a relay on `smee` and waits until its stream is open, so nothing
/// published afterwards can be missed.
async fn connected_relay(smee: &FakeSmee) -> RunningRelay {
    let relay = RunningRelay::start(&smee.url());
    smee.wait_for_streams(1, WAIT)
        .await
        .expect("relay connects");
    relay.wait_for_health("connected", |s| s.is_connected).await;
    relay
}

#[tokio::test]
async fn both_vendor_deliveries_reach_the_dispatcher_through_the_intake() {
    let smee = FakeSmee::start().await;
    let mut relay = connected_relay(&smee).await;

    for file in ["test-ok.json", "test-broken.json"] {
        assert_eq!(smee.publish(&signed(fixture(file), SECRET)), 1, "{file}");
    }
    let first = relay.next_delivery().await;
    let second = relay.next_delivery().await;
    assert_eq!((pr_number(&first), pr_number(&second)), (129, 130));
    assert_eq!(first.id, "e9320fb0-aed5-11e9-9555-45f9ef0f9285");
    let Event::PullRequest(pr) = &first.event else {
        unreachable!("checked above")
    };
    assert_eq!(pr.action, PrAction::Opened);

    let status = relay.health.snapshot();
    assert!(status.is_connected && status.last_event_at.is_some());
    assert_eq!(
        (status.deliveries_relayed, status.deliveries_refused),
        (2, 0)
    );
    assert_eq!(relay.intake.stats().snapshot().accepted, 2);
    relay.stop().await;
}

#[tokio::test]
async fn tampered_delivery_is_dropped_with_a_log_line() {
    let log = CapturedLog::default();
    let _guard = log.install();
    let smee = FakeSmee::start().await;
    let mut relay = connected_relay(&smee).await;

    let mut tampered = signed(fixture("test-ok.json"), SECRET);
    tampered["body"]["pull_request"]["head"]["sha"] =
        Value::from("0123456789abcdef0123456789abcdef01234567");
    smee.publish(&tampered);
    // Deliveries are handled in order: if the tampered one had got through,
    // it would come out first.
    smee.publish(&signed(fixture("test-broken.json"), SECRET));
    assert_eq!(pr_number(&relay.next_delivery().await), 130);

    assert_eq!(relay.intake.stats().snapshot().rejected, 1);
    assert_eq!(relay.health.snapshot().deliveries_refused, 1);
    let text = log.text();
    assert!(
        text.lines().any(|line| line.contains("WARN")
            && line.contains("e9320fb0-aed5-11e9-9555-45f9ef0f9285")
            && line.contains("rejected")
            && line.contains("signature")),
        "no rejection line for the tampered delivery in:\n{text}"
    );
    // Its body is ASCII: re-serialising is not to blame.
    assert!(!text.contains("re-serialising"), "{text}");
    relay.stop().await;
}

/// GitHub escapes some characters that serde_json writes as UTF-8; imitate
/// that for every non-ASCII one.
fn escape_non_ascii(json: &str) -> String {
    let mut escaped = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            escaped.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                escaped.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    escaped
}

#[tokio::test]
async fn a_body_github_sent_ascii_escaped_passes_after_the_named_repair() {
    let log = CapturedLog::default();
    let _guard = log.install();
    let smee = FakeSmee::start().await;
    let mut relay = connected_relay(&smee).await;

    let mut delivery = fixture("pull_request-synchronize.json");
    delivery["body"]["pull_request"]["title"] = Value::from("Añadir soporte para cafés ☕");
    let compact = serde_json::to_string(&delivery["body"]).expect("serialises");
    let as_github_sent = escape_non_ascii(&compact);
    let signatures = signature::sign(SECRET.as_bytes(), as_github_sent.as_bytes());
    delivery["x-hub-signature-256"] = Value::from(signatures.sha256);
    delivery["x-hub-signature"] = Value::from(signatures.sha1);
    smee.publish(&delivery);

    assert_eq!(pr_number(&relay.next_delivery().await), 129);
    assert_eq!(relay.intake.stats().snapshot().rejected, 0);
    let text = log.text();
    assert!(
        text.lines()
            .any(|line| line.contains("signature matched") && line.contains("ASCII-escaped")),
        "no line naming the repair in:\n{text}"
    );
    relay.stop().await;
}

/// A GitHub-shaped `issue_comment` delivery for comment `id`: the text
/// GitHub signed (`edit` changes serde's compact text), the smee message
/// carrying `smee_body` as its body (`None`: GitHub's text unchanged).
fn comment_body(id: u64, text: &str) -> String {
    let mut body = fixture("issue_comment-created.json")["body"].clone();
    body["comment"]["id"] = Value::from(id);
    body["comment"]["body"] = Value::from(text);
    serde_json::to_string(&body).expect("serialises")
}

/// smee's message for a body GitHub signed as `signed`, carried as `sent`.
fn smee_message(id: u64, content_type: &str, signed: &[u8], sent: &str) -> String {
    let signatures = signature::sign(SECRET.as_bytes(), signed);
    format!(
        r#"{{"host":"smee.io","x-github-event":"issue_comment","x-github-delivery":"relay-{id}","content-type":"{content_type}","x-hub-signature":"{}","x-hub-signature-256":"{}","body":{sent},"query":{{}},"timestamp":1733450000000}}"#,
        signatures.sha1, signatures.sha256
    )
}

fn comment_id(delivery: &Delivery) -> u64 {
    match &delivery.event {
        Event::IssueComment(comment) => comment.comment_id,
        other => panic!("expected a comment, got {other:?}"),
    }
}

#[tokio::test]
async fn bodies_smee_reprints_still_pass_the_signature_check() {
    let log = CapturedLog::default();
    let _guard = log.install();
    let smee = FakeSmee::start().await;
    let mut relay = connected_relay(&smee).await;

    // 1. A pasted terminal colour: GitHub writes \u001B, smee \u001b.
    let smee_text = comment_body(1, "recheck\n\u{1b}[31mFAILED\u{1b}[0m");
    let github_text = smee_text.replace("\\u001b", "\\u001B");
    assert_ne!(github_text, smee_text);
    smee.publish_text(&smee_message(
        1,
        "application/json",
        github_text.as_bytes(),
        &smee_text,
    ));
    // 2-4. Text a parsed value would re-print differently, or refuse.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for (id, field) in [
        (2, "\"score\":0.000001".to_string()),
        (3, "\"big\":18446744073709552000".to_string()),
        (4, format!("\"deep\":{deep}")),
    ] {
        let text = comment_body(id, "recheck").replacen('{', &format!("{{{field},"), 1);
        smee.publish_text(&smee_message(
            id,
            "application/json",
            text.as_bytes(),
            &text,
        ));
    }
    // 5. Form-encoded: smee keeps the parsed form, the HMAC covers the form body.
    let json = comment_body(5, "recheck ☕");
    let form = ember_ci::webhook::relayed::form_body(&json);
    let sent = serde_json::json!({ "payload": json }).to_string();
    smee.publish_text(&smee_message(
        5,
        "application/x-www-form-urlencoded",
        &form,
        &sent,
    ));

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(comment_id(&relay.next_delivery().await));
    }
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(relay.intake.stats().snapshot().rejected, 0);
    let text = log.text();
    assert!(
        text.lines()
            .any(|line| line.contains("signature matched") && line.contains("upper-case")),
        "no line naming the repair in:\n{text}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_body_no_repair_restores_is_reported_as_changed_in_transit() {
    let log = CapturedLog::default();
    let _guard = log.install();
    let smee = FakeSmee::start().await;
    let mut relay = connected_relay(&smee).await;

    let smee_text = comment_body(7, "recheck \u{1b}[0m");
    // Changed beyond escapes: no repair can bring GitHub's bytes back.
    let github_text = smee_text.replace("recheck", "Recheck");
    smee.publish_text(&smee_message(
        7,
        "application/json",
        github_text.as_bytes(),
        &smee_text,
    ));
    smee.publish(&signed(fixture("test-broken.json"), SECRET));

    assert_eq!(pr_number(&relay.next_delivery().await), 130);
    assert_eq!(relay.health.snapshot().deliveries_refused, 1);
    let text = log.text();
    assert!(
        text.lines().any(|line| line.contains("WARN")
            && line.contains("relayed body changed in transit")
            && line.contains("relay-7")
            && line.contains("upper-case")),
        "no changed-in-transit line in:\n{text}"
    );
    assert!(!text.contains("signature mismatch"), "{text}");
    relay.stop().await;
}

#[tokio::test]
async fn a_delivery_replayed_through_the_relay_is_forwarded_once() {
    let smee = FakeSmee::start().await;
    let mut relay = connected_relay(&smee).await;

    let delivery = signed(fixture("test-ok.json"), SECRET);
    smee.publish(&delivery);
    smee.publish(&delivery);
    smee.publish(&signed(fixture("test-broken.json"), SECRET));

    assert_eq!(pr_number(&relay.next_delivery().await), 129);
    // The replay was dropped: the next one out is the other delivery.
    assert_eq!(pr_number(&relay.next_delivery().await), 130);
    let counts = relay.intake.stats().snapshot();
    assert_eq!((counts.accepted, counts.duplicates), (2, 1));
    assert_eq!(relay.health.snapshot().deliveries_relayed, 3);
    relay.stop().await;
}

#[tokio::test]
async fn relay_reconnects_after_the_server_restarts_mid_stream() {
    let log = CapturedLog::default();
    let _guard = log.install();
    let smee = FakeSmee::start().await;
    let mut relay = connected_relay(&smee).await;
    smee.publish(&signed(fixture("test-ok.json"), SECRET));
    assert_eq!(pr_number(&relay.next_delivery().await), 129);

    let addr = smee.stop().await;
    relay
        .wait_for_health("the dropped stream", |s| !s.is_connected)
        .await;
    assert!(relay.health.snapshot().last_error.is_some());
    // Long enough for several refused attempts (50 ms apart here).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let smee = FakeSmee::start_on(addr).await;
    smee.wait_for_streams(1, WAIT)
        .await
        .expect("relay reconnects to the restarted server");
    smee.publish(&signed(fixture("test-broken.json"), SECRET));
    assert_eq!(pr_number(&relay.next_delivery().await), 130);
    assert!(relay.health.snapshot().is_connected);
    relay.stop().await;
    let text = log.text();
    let warnings = text
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("smee channel"))
        .count();
    assert_eq!(warnings, 1, "one warning per outage:\n{text}");
    assert!(
        text.lines()
            .any(|line| line.contains("smee channel back after a")
                && line.contains("outage")
                && line.contains("outage_secs")),
        "no line closing the outage:\n{text}"
    );
}

#[tokio::test]
async fn relay_keeps_retrying_until_the_channel_appears() {
    let log = CapturedLog::default();
    let _guard = log.install();
    // A free port with nothing listening on it yet.
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a probe port");
        listener.local_addr().expect("bound address")
    };
    let mut relay = RunningRelay::start(&format!("http://{addr}/{}", fake_smee::CHANNEL));
    relay
        .wait_for_health("a failed connection attempt", |s| {
            !s.is_connected && s.last_error.is_some()
        })
        .await;

    let smee = FakeSmee::start_on(addr).await;
    smee.wait_for_streams(1, WAIT)
        .await
        .expect("relay connects once the server is up");
    smee.publish(&signed(fixture("test-ok.json"), SECRET));
    assert_eq!(pr_number(&relay.next_delivery().await), 129);
    relay.stop().await;
    let text = log.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("smee channel"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per outage:\n{text}");
    assert!(warnings[0].contains("unreachable"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_down_for_15_s_loses_no_comment_github_shows_and_reconnects_quickly() {
    let report = outage_drill::Drill {
        outage: Duration::from_secs(15),
        comment_every: Duration::from_millis(200),
        settle: Duration::from_secs(2),
    }
    .run()
    .await;
    assert_eq!(report.lost(), Vec::<u64>::new(), "{report:?}");
    assert_eq!(report.duplicates(), 0, "{report:?}");
    // 15 s at 5 a second: the comments made while smee was down.
    assert!(report.recovered >= 50, "{report:?}");
    assert!(
        report.reconnect < Duration::from_secs(5),
        "reconnected {:?} after the channel came back",
        report.reconnect
    );
}

// ---- Poller -------------------------------------------------------------

/// A config with two backends whose GitHub is `github`.
/// `3rdparty/<backend>` of every configured backend.
fn contexts(config: &Config) -> Vec<String> {
    config
        .backends
        .iter()
        .map(|backend| backend.name.status_context())
        .collect()
}

fn poll_config(github: &FakeGitHub, extra: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "GH_TOKEN=\"{}\"\nGH_API_URL=\"{}\"\nGH_REPO=\"{}\"\nGH_EMBER_SECRET=\"{SECRET}\"\n\
         NUM_DRIVERS=2\n\
         DRIVER_NAME_1=lvm\nDRIVER_CONFIG_1='{{\"name\":\"lvm\",\"driver\":\"LVMVolume\"}}'\n\
         DRIVER_NAME_2=ceph\nDRIVER_CONFIG_2='{{\"name\":\"ceph\",\"driver\":\"RBD\"}}'\n{extra}\n",
        github.token(),
        github.url(),
        github.repo(),
    );
    std::fs::write(dir.path().join("config"), text).expect("writing config");
    let config = Config::load_with_env(dir.path(), &HashMap::new())
        .unwrap_or_else(|errors| panic!("test config is invalid:\n{errors}"));
    (dir, config)
}

fn client(github: &FakeGitHub) -> GitHub {
    GitHub::new(
        &github.url(),
        &Secret::new(github.token()),
        RepoName::new(&github.repo()).expect("valid repo"),
    )
    .expect("client for the fake")
}

fn sha(digit: char) -> String {
    digit.to_string().repeat(40)
}

fn statuses_path(sha: &str) -> String {
    format!("/repos/{REPO}/commits/{sha}/statuses")
}

async fn post_status(github: &GitHub, sha: &str, context: &str) {
    let status = CommitStatus {
        context: context.to_string(),
        state: StatusState::Success,
        description: "done".to_string(),
        target_url: None,
    };
    github
        .post_status(&CommitSha::new(sha).expect("valid sha"), &status)
        .await
        .expect("fake accepts the status");
}

fn drain(deliveries: &mut mpsc::Receiver<Delivery>) -> Vec<Delivery> {
    let mut drained = Vec::new();
    while let Ok(delivery) = deliveries.try_recv() {
        drained.push(delivery);
    }
    drained
}

#[tokio::test]
async fn poll_starts_only_heads_without_our_status_and_an_unchanged_listing_costs_a_304() {
    let github = FakeGitHub::start().await;
    let (_dir, config) = poll_config(&github, "POLL_INTERVAL=120");
    github.add_pull(201, &sha('a'), "Reported already", "Akrog", "MEMBER");
    github.add_pull(202, &sha('b'), "Never seen", "geguileo", "COLLABORATOR");
    let api = client(&github);
    // Any one of our backends counts as reported; other CIs' statuses do not.
    post_status(&api, &sha('a'), "3rdparty/ceph").await;
    post_status(&api, &sha('b'), "ci/travis").await;

    let (sender, mut deliveries) = mpsc::channel(16);
    let mut poller = Poller::new(Arc::new(api), contexts(&config), sender);
    let report = poller.poll_once().await.expect("first poll");
    assert!(!report.is_unchanged);
    assert_eq!(report.open, 2);
    let pr_202 = PrNumber::new(202).expect("PR number");
    assert_eq!(
        report.fed,
        [(pr_202, CommitSha::new(&sha('b')).expect("sha"))]
    );

    let fed = drain(&mut deliveries);
    assert_eq!(fed.len(), 1, "exactly one head is fed: {fed:?}");
    assert_eq!(fed[0].id, "poll-202-bbbbbbb");
    let Event::PullRequest(event) = &fed[0].event else {
        panic!("expected a pull request event, got {:?}", fed[0].event)
    };
    assert_eq!(event.action, PrAction::Synchronize);
    assert_eq!(event.pr, pr_202);
    assert_eq!(event.author, "geguileo");
    assert_eq!(event.author_association, "COLLABORATOR");
    assert_eq!(event.repo.to_string(), REPO);

    let second = poller.poll_once().await.expect("second poll");
    assert!(second.is_unchanged && second.fed.is_empty(), "{second:?}");
    assert!(drain(&mut deliveries).is_empty());
    assert_eq!(github.not_modified_count(), 1);
    // Settled heads cost no further status reads.
    for head in [sha('a'), sha('b')] {
        assert_eq!(github.count_requests("GET", &statuses_path(&head)), 1);
    }
}

#[tokio::test]
async fn reconciliation_leaves_heads_open_at_start_alone_and_catches_new_ones() {
    let github = FakeGitHub::start().await;
    let (_dir, config) = poll_config(&github, "");
    assert_eq!(
        PollMode::for_config(&config.relay, true),
        Some(PollMode::Reconcile(
            ember_ci::relay::poll::RECONCILE_INTERVAL
        ))
    );
    github.add_pull(301, &sha('c'), "Older than the CI", "Akrog", "MEMBER");
    let (sender, mut deliveries) = mpsc::channel(16);
    let mut poller = Poller::new(Arc::new(client(&github)), contexts(&config), sender);
    assert_eq!(poller.record_baseline().await.expect("baseline"), 1);

    let quiet = poller.poll_once().await.expect("poll");
    assert!(quiet.is_unchanged && quiet.fed.is_empty(), "{quiet:?}");

    // A delivery lost while the relay was down: a new PR, and a push to the old one.
    github.add_pull(
        302,
        &sha('d'),
        "Opened while the relay was down",
        "Akrog",
        "MEMBER",
    );
    github.add_pull(301, &sha('e'), "Older than the CI", "Akrog", "MEMBER");
    let report = poller.poll_once().await.expect("poll");
    let mut fed: Vec<(u64, String)> = drain(&mut deliveries)
        .iter()
        .map(|d| (pr_number(d), d.id.clone()))
        .collect();
    fed.sort();
    assert_eq!(
        fed,
        [
            (301, "poll-301-eeeeeee".to_string()),
            (302, "poll-302-ddddddd".to_string())
        ]
    );
    assert_eq!(report.fed.len(), 2);
    assert_eq!(github.count_requests("GET", &statuses_path(&sha('c'))), 0);
}

#[tokio::test]
async fn poll_mode_follows_the_config() {
    let github = FakeGitHub::start().await;
    let (_dir, polling) = poll_config(&github, "POLL_INTERVAL=2m");
    assert_eq!(
        PollMode::for_config(&polling.relay, true),
        Some(PollMode::Poll(Duration::from_secs(120)))
    );
    // Without a token there is no API to poll.
    assert_eq!(PollMode::for_config(&polling.relay, false), None);
}

// ---- Catch-up sweep ------------------------------------------------------

#[tokio::test]
async fn catch_up_feeds_heads_and_comments_of_the_gap_once_through_the_intake() {
    let github = FakeGitHub::start().await;
    let (dir, config) = poll_config(&github, "");
    github.add_pull(201, &sha('a'), "Reported already", "Akrog", "MEMBER");
    github.add_pull(
        202,
        &sha('b'),
        "Pushed during the outage",
        "someone",
        "NONE",
    );
    let api = Arc::new(client(&github));
    post_status(&api, &sha('a'), "3rdparty/lvm").await;
    let missed = github.add_comment(202, "Akrog", "MEMBER", "/ok-to-test");
    let relayed = github.add_comment(202, "Akrog", "MEMBER", "recheck");

    let (sender, mut deliveries) = mpsc::channel(16);
    let intake = Arc::new(Intake::new(
        Secret::new(SECRET),
        RepoName::new(REPO).expect("valid repo"),
        Journal::open(dir.path()).expect("journal"),
        sender,
    ));
    // One comment did arrive through the relay, under GitHub's delivery id.
    let message = outage_drill::comment_message(REPO, relayed, "recheck");
    let prepared = ember_ci::relay::saved::prepare_saved_text(
        &message,
        Some(SECRET),
        ember_ci::relay::saved::BodyEncoding::AsSaved,
    )
    .expect("prepares");
    let headers = ember_ci::webhook::DeliveryHeaders::from_pairs(prepared.headers.clone());
    assert_eq!(intake.handle(&headers, &prepared.body).await.status, 202);
    drain(&mut deliveries);

    let catch_up = CatchUp::new(api, intake.clone(), contexts(&config), dir.path());
    assert_eq!(
        catch_up.window_start(),
        None,
        "no mark before the first sweep"
    );
    assert_eq!(
        catch_up.sweep().await.expect("first sweep"),
        CatchUpReport::default()
    );
    assert!(catch_up.window_start().is_some());

    let report = catch_up.sweep().await.expect("sweep");
    assert_eq!(
        report,
        CatchUpReport {
            comments: 2,
            heads: 1,
            found: 2
        }
    );
    let fed: Vec<(String, Origin)> = drain(&mut deliveries)
        .into_iter()
        .map(|d| (d.id, d.origin))
        .collect();
    assert_eq!(
        fed,
        [
            (format!("pr-head-202-{}", sha('b')), Origin::Api),
            (format!("issue-comment-{missed}"), Origin::Api),
        ]
    );
    // A second sweep over the same window finds them known.
    assert_eq!(catch_up.sweep().await.expect("sweep").found, 0);
    assert!(drain(&mut deliveries).is_empty());
}

#[tokio::test]
async fn catch_up_window_reaches_back_at_most_three_days() {
    let github = FakeGitHub::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (sender, _deliveries) = mpsc::channel(1);
    let intake = Arc::new(Intake::new(
        Secret::new(SECRET),
        RepoName::new(REPO).expect("valid repo"),
        Journal::open(dir.path()).expect("journal"),
        sender,
    ));
    let catch_up = CatchUp::new(Arc::new(client(&github)), intake, Vec::new(), dir.path());
    let mark = dir.path().join(ember_ci::relay::catch_up::MARK_FILE);
    std::fs::write(&mark, "2020-01-01T00:00:00Z\n").expect("writing the mark");
    let start = catch_up.window_start().expect("a window");
    let reach = std::time::SystemTime::now()
        .duration_since(start)
        .expect("in the past");
    // Measured a moment after the relay did.
    assert!(
        reach.abs_diff(ember_ci::relay::catch_up::MAX_WINDOW) < Duration::from_secs(60),
        "{reach:?}"
    );
}

// ---- End to end ----------------------------------------------------------

const DEMO_CONTEXT: &str = "3rdparty/demo";

/// The state of `DEMO_CONTEXT`'s newest status, from a commit's statuses.
fn last_state(statuses: &[fake_github::RecordedStatus]) -> Option<&str> {
    statuses
        .iter()
        .rev()
        .find(|status| status.context == DEMO_CONTEXT)
        .map(|status| status.state.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_runs_both_vendor_deliveries_received_through_smee() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().to_path_buf();
    let repo = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || ci_env::DemoRepo::create(&dir))
            .await
            .expect("demo repo")
    };
    let github = FakeGitHub::start_with(ci_env::TEST_TOKEN, REPO).await;
    let smee = FakeSmee::start().await;
    let config_dir = ci_env::write_config(
        &dir,
        &repo,
        &github.url(),
        &dir.join("state"),
        &format!("SMEE_URL=\"{}\"\n", smee.url()),
    );
    // Service::start blocks on the child's output; keep it off the runtime.
    let service = {
        let (config_dir, dir) = (config_dir.clone(), dir.clone());
        tokio::task::spawn_blocking(move || ci_env::Service::start(&config_dir, &dir))
            .await
            .expect("service starts")
    };
    if let Err(error) = smee.wait_for_streams(1, Duration::from_secs(120)).await {
        panic!("{error}; serve log:\n{}", service.log());
    }

    for (file, head) in [
        ("test-ok.json", &repo.ok_sha),
        ("test-broken.json", &repo.broken_sha),
    ] {
        let saved = ci_env::delivery_for(file, head, &dir);
        let text = std::fs::read_to_string(&saved).expect("reading the delivery");
        let delivery: Value = serde_json::from_str(&text).expect("delivery is JSON");
        assert_eq!(smee.publish(&signed(delivery, ci_env::TEST_SECRET)), 1);
    }

    let finished = github
        .wait_for(
            |state| {
                last_state(&state.statuses_for(&repo.ok_sha)) == Some("success")
                    && last_state(&state.statuses_for(&repo.broken_sha)) == Some("failure")
            },
            Duration::from_secs(20 * 60),
        )
        .await;
    if let Err(error) = finished {
        panic!("{error}\nserve log:\n{}", service.log());
    }
    for head in [&repo.ok_sha, &repo.broken_sha] {
        let statuses = github.statuses_for(head);
        assert_eq!(statuses[0].state, "pending", "{statuses:?}");
        let last = statuses.last().expect("statuses were posted");
        assert!(
            last.target_url.is_some(),
            "final status links its logs: {last:?}"
        );
    }

    let (exit_code, log) = tokio::task::spawn_blocking(move || {
        let mut service = service;
        let exit_code = service.stop(Duration::from_secs(120));
        (exit_code, service.log())
    })
    .await
    .expect("stopping the service");
    assert_eq!(exit_code, Some(0), "serve exits cleanly:\n{log}");
    assert!(log.contains("connected to smee channel"), "{log}");
    assert!(log.contains("smee relay stopped"), "{log}");
}
