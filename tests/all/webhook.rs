//! The webhook endpoint end to end: a real warp server on 127.0.0.1:0, real
//! HTTP requests (through `send_saved_delivery`, reqwest and a raw socket)
//! and the real channel the intake forwards to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ember_ci::config::Secret;
use ember_ci::journal::Journal;
use ember_ci::model::RepoName;
use ember_ci::relay::saved::prepare_saved_delivery;
use ember_ci::send::{send_saved_delivery, BodyEncoding, DeliveryId, SendReport};
use ember_ci::webhook::{
    recover, routes, signature, Delivery, Event, Intake, IntakeCounts, PrAction, MAX_BODY_BYTES,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use warp::Filter;

const SECRET: &str = "webhook-test-secret";
const WATCHED_REPO: &str = "embercsi/ember-csi";
/// Generous: CI runs on two slow cores.
const DEADLINE: Duration = Duration::from_secs(30);

struct Server {
    addr: std::net::SocketAddr,
    intake: Arc<Intake>,
    deliveries: mpsc::Receiver<Delivery>,
    client: reqwest::Client,
    _journal_dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let (sink, deliveries) = mpsc::channel(16);
        let repo = RepoName::new(WATCHED_REPO).expect("valid repository name");
        let journal_dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(journal_dir.path()).expect("journal");
        let intake = Arc::new(Intake::new(Secret::new(SECRET), repo, journal, sink));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("bound address");
        let filter = routes(Arc::clone(&intake)).recover(recover);
        tokio::spawn(warp::serve(filter).incoming(listener).run());
        Self {
            addr,
            intake,
            deliveries,
            client: reqwest::Client::new(),
            _journal_dir: journal_dir,
        }
    }

    fn hook_url(&self) -> String {
        format!("http://{}/change_hook/github", self.addr)
    }

    /// Posts `body` with `headers` (name, value) and returns status and text.
    async fn post(&self, headers: &[(String, String)], body: Vec<u8>) -> SendReport {
        let mut request = self.client.post(self.hook_url()).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        into_report(request.send().await.expect("server answers")).await
    }

    /// Posts a smee-form delivery, re-signed with `secret` when given.
    async fn post_saved(&self, saved: &Value, secret: Option<&str>) -> SendReport {
        let prepared = prepare_saved_delivery(saved, secret).expect("delivery prepares");
        self.post(&prepared.headers, prepared.body).await
    }

    async fn next_delivery(&mut self) -> Delivery {
        tokio::time::timeout(DEADLINE, self.deliveries.recv())
            .await
            .expect("a delivery arrives before the deadline")
            .expect("channel open")
    }

    /// The intake sends before it answers, so once a reply is in hand an
    /// empty channel means nothing was forwarded.
    fn assert_nothing_forwarded(&mut self) {
        match self.deliveries.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => panic!("expected no delivery, got {other:?}"),
        }
    }
}

async fn into_report(response: reqwest::Response) -> SendReport {
    let status = response.status().as_u16();
    let response = response.text().await.expect("response body");
    SendReport { status, response }
}

fn fixture_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/github")
        .join(file)
}

fn fixture(file: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path(file)).expect("fixture is readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Headers of a delivery of `event` whose body is signed with the test secret.
fn signed_headers(event: &str, delivery_id: &str, body: &[u8]) -> Vec<(String, String)> {
    let signatures = signature::sign(SECRET.as_bytes(), body);
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-github-event".into(), event.into()),
        ("x-github-delivery".into(), delivery_id.into()),
        ("x-hub-signature-256".into(), signatures.sha256),
        ("x-hub-signature".into(), signatures.sha1),
    ]
}

#[tokio::test]
async fn resigned_ok_fixture_is_accepted_and_forwarded_once() {
    let mut server = Server::start().await;
    let report = send_saved_delivery(
        &server.hook_url(),
        &fixture_path("test-ok.json"),
        Some(SECRET),
        BodyEncoding::AsSaved,
        DeliveryId::Keep,
    )
    .await
    .expect("replay reaches the server");
    assert_eq!(
        (report.status, report.response.as_str()),
        (202, "accepted: PR #129 4155f91")
    );

    let delivery = server.next_delivery().await;
    assert_eq!(delivery.id, "e9320fb0-aed5-11e9-9555-45f9ef0f9285");
    match delivery.event {
        Event::PullRequest(pr) => {
            assert_eq!(pr.pr.get(), 129);
            assert_eq!(
                pr.head_sha.as_str(),
                "4155f91779c72125baee651f628640274794ca37"
            );
            assert_eq!(pr.action, PrAction::Opened);
        }
        other => panic!("expected a pull_request event, got {other:?}"),
    }
    server.assert_nothing_forwarded();
}

#[tokio::test]
async fn each_send_of_a_file_is_a_new_delivery_unless_the_id_is_kept() {
    const SAVED_ID: &str = "9507dc00-aed8-11e9-8ceb-6a4befef72c9";
    let mut server = Server::start().await;
    let url = server.hook_url();
    let send = |file: &str, id| {
        let file = fixture_path(file);
        let url = url.clone();
        async move {
            send_saved_delivery(&url, &file, Some(SECRET), BodyEncoding::AsSaved, id)
                .await
                .expect("replay")
        }
    };
    // A fresh id: accepted under a new id, not the saved one.
    let fresh = send("test-ok.json", DeliveryId::Fresh).await;
    assert_eq!(fresh.status, 202, "{}", fresh.response);
    let forwarded = server.next_delivery().await.id;
    assert_ne!(forwarded, "e9320fb0-aed5-11e9-9555-45f9ef0f9285");
    // The saved id, twice: the repeat is a duplicate of that id.
    let kept = send("test-broken.json", DeliveryId::Keep).await;
    assert_eq!(kept.status, 202, "{}", kept.response);
    assert_eq!(server.next_delivery().await.id, SAVED_ID);
    let repeat = send("test-broken.json", DeliveryId::Keep).await;
    assert_eq!(
        (repeat.status, repeat.response.as_str()),
        (
            200,
            format!("duplicate delivery {SAVED_ID}, already accepted").as_str()
        )
    );
    // A fresh id is not refused for the saved id (the intake may still
    // know the PR head).
    let again = send("test-broken.json", DeliveryId::Fresh).await;
    assert!(!again.response.contains(SAVED_ID), "{}", again.response);
    server.assert_nothing_forwarded();
}

#[tokio::test]
async fn same_delivery_id_twice_is_forwarded_once() {
    let mut server = Server::start().await;
    let saved = fixture("test-broken.json");
    assert_eq!(server.post_saved(&saved, Some(SECRET)).await.status, 202);
    let again = server.post_saved(&saved, Some(SECRET)).await;
    assert_eq!(
        (again.status, again.response.as_str()),
        (
            200,
            "duplicate delivery 9507dc00-aed8-11e9-8ceb-6a4befef72c9, already accepted"
        )
    );
    let delivery = server.next_delivery().await;
    assert!(matches!(delivery.event, Event::PullRequest(ref pr) if pr.pr.get() == 130));
    server.assert_nothing_forwarded();
    assert_eq!(
        server.intake.stats().snapshot(),
        IntakeCounts {
            accepted: 1,
            duplicates: 1,
            ..IntakeCounts::default()
        }
    );
}

#[tokio::test]
async fn wrong_secret_is_refused_and_nothing_forwarded() {
    let mut server = Server::start().await;
    let report = send_saved_delivery(
        &server.hook_url(),
        &fixture_path("test-ok.json"),
        Some("not-our-secret"),
        BodyEncoding::AsSaved,
        DeliveryId::Fresh,
    )
    .await
    .expect("replay reaches the server");
    assert_eq!(report.status, 401);
    assert!(
        report.response.starts_with("signature mismatch"),
        "{}",
        report.response
    );
    server.assert_nothing_forwarded();

    // The fixture's own signature was made with a secret we do not share.
    let original = server.post_saved(&fixture("test-ok.json"), None).await;
    assert_eq!(original.status, 401);
    server.assert_nothing_forwarded();
    assert_eq!(server.intake.stats().snapshot().rejected, 2);
}

#[tokio::test]
async fn unsigned_delivery_is_refused() {
    let mut server = Server::start().await;
    let prepared =
        prepare_saved_delivery(&fixture("test-ok.json"), None).expect("fixture prepares");
    let unsigned: Vec<_> = prepared
        .headers
        .into_iter()
        .filter(|(name, _)| !name.starts_with("x-hub-signature"))
        .collect();
    let report = server.post(&unsigned, prepared.body).await;
    assert_eq!(report.status, 401);
    assert!(
        report.response.starts_with("signature missing"),
        "{}",
        report.response
    );
    server.assert_nothing_forwarded();
}

#[tokio::test]
async fn legacy_sha1_signature_alone_is_accepted() {
    let mut server = Server::start().await;
    let prepared =
        prepare_saved_delivery(&fixture("test-ok.json"), Some(SECRET)).expect("fixture prepares");
    let sha1_only: Vec<_> = prepared
        .headers
        .into_iter()
        .filter(|(name, _)| name != "x-hub-signature-256")
        .collect();
    assert!(sha1_only.iter().any(|(name, _)| name == "x-hub-signature"));
    let report = server.post(&sha1_only, prepared.body).await;
    assert_eq!(report.status, 202, "{}", report.response);
    assert!(matches!(
        server.next_delivery().await.event,
        Event::PullRequest(_)
    ));
}

#[tokio::test]
async fn malformed_or_incomplete_payloads_are_refused_with_the_reason() {
    let mut server = Server::start().await;
    let body = br#"{"action":"opened","number":129"#.to_vec();
    let report = server
        .post(&signed_headers("pull_request", "bad-1", &body), body)
        .await;
    assert_eq!(report.status, 400);
    assert!(
        report
            .response
            .starts_with("malformed JSON in pull_request payload: EOF while parsing"),
        "{}",
        report.response
    );

    let mut saved = fixture("test-ok.json");
    saved["body"]["pull_request"]["head"]
        .as_object_mut()
        .expect("head is an object")
        .remove("sha");
    let report = server.post_saved(&saved, Some(SECRET)).await;
    assert_eq!(report.status, 400);
    assert!(
        report
            .response
            .starts_with("bad pull_request payload: pull_request.head: missing field `sha`"),
        "{}",
        report.response
    );

    let body = br#"{"zen":"x"}"#.to_vec();
    let mut no_event = signed_headers("ping", "bad-3", &body);
    no_event.retain(|(name, _)| name != "x-github-event");
    let report = server.post(&no_event, body).await;
    assert_eq!(
        (report.status, report.response.as_str()),
        (400, "missing X-GitHub-Event header")
    );
    server.assert_nothing_forwarded();
}

#[tokio::test]
async fn ping_is_answered_pong() {
    let mut server = Server::start().await;
    let report = server.post_saved(&fixture("ping.json"), Some(SECRET)).await;
    assert_eq!((report.status, report.response.as_str()), (200, "pong"));
    server.assert_nothing_forwarded();
}

#[tokio::test]
async fn other_events_and_repositories_are_ignored() {
    let mut server = Server::start().await;
    let body = serde_json::to_vec(
        &json!({"ref": "refs/heads/master", "repository": {"full_name": WATCHED_REPO}}),
    )
    .expect("JSON serialises");
    let report = server
        .post(&signed_headers("push", "push-1", &body), body)
        .await;
    assert_eq!(
        (report.status, report.response.as_str()),
        (200, "ignored: event push is not handled")
    );

    let mut saved = fixture("test-ok.json");
    saved["body"]["repository"]["full_name"] = json!("someone/ember-csi");
    let report = server.post_saved(&saved, Some(SECRET)).await;
    assert_eq!(
        (report.status, report.response.as_str()),
        (200, "ignored: repository someone/ember-csi is not watched")
    );

    let mut saved = fixture("issue_comment-created.json");
    saved["body"]["issue"]
        .as_object_mut()
        .expect("issue is an object")
        .remove("pull_request");
    let report = server.post_saved(&saved, Some(SECRET)).await;
    assert_eq!(
        (report.status, report.response.as_str()),
        (200, "ignored: comment on issue #130, not a pull request")
    );

    let mut saved = fixture("test-ok.json");
    saved["body"]["action"] = json!("labeled");
    saved["x-github-delivery"] = json!("labeled-1");
    let report = server.post_saved(&saved, Some(SECRET)).await;
    assert_eq!(
        (report.status, report.response.as_str()),
        (200, "ignored: pull_request action labeled is not handled")
    );
    server.assert_nothing_forwarded();
    assert_eq!(server.intake.stats().snapshot().ignored, 4);
}

#[tokio::test]
async fn pr_updates_and_pr_comments_are_forwarded() {
    let mut server = Server::start().await;
    let cases = [
        ("pull_request-synchronize.json", "accepted: PR #129 8f3c2a1"),
        ("pull_request-closed.json", "accepted: PR #130 0e21b1f"),
        (
            "issue_comment-created.json",
            "accepted: comment 1999344021 on PR #130",
        ),
    ];
    for (file, expected) in cases {
        let report = send_saved_delivery(
            &server.hook_url(),
            &fixture_path(file),
            Some(SECRET),
            BodyEncoding::AsSaved,
            DeliveryId::Fresh,
        )
        .await
        .expect("replay reaches the server");
        assert_eq!(
            (report.status, report.response.as_str()),
            (202, expected),
            "{file}"
        );
    }
    assert!(matches!(
        server.next_delivery().await.event,
        Event::PullRequest(ref pr) if pr.action == PrAction::Synchronize
    ));
    assert!(matches!(
        server.next_delivery().await.event,
        Event::PullRequest(ref pr) if pr.action == PrAction::Closed
    ));
    match server.next_delivery().await.event {
        Event::IssueComment(comment) => {
            assert_eq!(comment.issue_number.get(), 130);
            assert!(comment.is_pull_request);
        }
        other => panic!("expected an issue_comment event, got {other:?}"),
    }
}

#[tokio::test]
async fn chunked_body_without_content_length_is_accepted() {
    let mut server = Server::start().await;
    let prepared =
        prepare_saved_delivery(&fixture("test-ok.json"), Some(SECRET)).expect("fixture prepares");
    let (first, rest) = prepared.body.split_at(1000);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(first.to_vec()), Ok(rest.to_vec())];
    let mut request = server
        .client
        .post(server.hook_url())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )));
    for (name, value) in &prepared.headers {
        request = request.header(name, value);
    }
    let report = into_report(request.send().await.expect("server answers")).await;
    assert_eq!(report.status, 202, "{}", report.response);
    assert!(matches!(
        server.next_delivery().await.event,
        Event::PullRequest(_)
    ));
}

#[tokio::test]
async fn body_over_the_cap_is_refused_before_it_is_read() {
    let mut server = Server::start().await;
    // A raw request whose Content-Length announces one byte too many: the
    // server must answer without waiting for a body that never comes.
    let mut socket = TcpStream::connect(server.addr).await.expect("connect");
    let request = format!(
        "POST /change_hook/github HTTP/1.1\r\nHost: {}\r\nX-GitHub-Event: ping\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        MAX_BODY_BYTES + 1
    );
    socket
        .write_all(request.as_bytes())
        .await
        .expect("send request head");

    let head = tokio::time::timeout(DEADLINE, read_response_head(&mut socket))
        .await
        .expect("server answers before the deadline");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    server.assert_nothing_forwarded();
}

/// Reads until the end of the response's header block.
async fn read_response_head(socket: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buffer).await.expect("read response");
        assert!(n > 0, "connection closed before a response");
        received.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405() {
    let server = Server::start().await;
    let base = format!("http://{}", server.addr);

    let response = server
        .client
        .post(format!("{base}/change_hook/gitlab"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.text().await.expect("body"), "not found");

    let response = server
        .client
        .get(format!("{base}/nothing-here"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 404);

    let response = server
        .client
        .get(server.hook_url())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.text().await.expect("body"), "method not allowed");
}

#[tokio::test]
async fn form_encoded_deliveries_are_accepted_with_the_hmac_over_the_form_body() {
    let mut server = Server::start().await;
    let report = send_saved_delivery(
        &server.hook_url(),
        &fixture_path("issue_comment-created.json"),
        Some(SECRET),
        BodyEncoding::Form,
        DeliveryId::Fresh,
    )
    .await
    .expect("replay reaches the server");
    assert_eq!(
        (report.status, report.response.as_str()),
        (202, "accepted: comment 1999344021 on PR #130")
    );
    assert!(matches!(
        server.next_delivery().await.event,
        Event::IssueComment(ref comment) if comment.comment_id == 1999344021
    ));

    // The JSON inside, signed as if it were the body, is not what was sent.
    let json = br#"{"zen":"x","hook_id":1}"#;
    let form = ember_ci::webhook::relayed::form_body(std::str::from_utf8(json).expect("UTF-8"));
    let mut headers = signed_headers("ping", "form-1", json);
    headers[0].1 = "application/x-www-form-urlencoded".into();
    let refused = server.post(&headers, form).await;
    assert_eq!(refused.status, 401, "{refused:?}");

    // Form-encoded but labelled JSON: the error says what to change.
    let form = ember_ci::webhook::relayed::form_body(r#"{"action":"opened"}"#);
    let mislabelled = server
        .post(&signed_headers("pull_request", "form-2", &form), form)
        .await;
    assert_eq!(mislabelled.status, 400);
    assert!(
        mislabelled.response.contains("looks form-encoded"),
        "{mislabelled:?}"
    );
    server.assert_nothing_forwarded();
}
