//! Heavy and hostile traffic against `ember-ci serve` on loopback: 2,000
//! signed deliveries from a concurrent client mixed with forged, malformed
//! and injection-laden ones. Every valid one must be journaled, every bad one
//! refused with the right 4xx, and memory must stay flat.
//!
//! The valid deliveries are `pull_request` `closed` events for a handful of
//! PRs, each with its own delivery id: the intake checks, journals and
//! forwards them like any other, and the dispatcher's work for them is a
//! queue scan, so the soak measures ember-ci rather than 2,000 Podman jobs.

use ember_ci_test_kit::ci_env;
use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::wait;

use std::time::{Duration, Instant};

use ember_ci::journal::Journal;
use ember_ci::webhook::signature;
use fake_github::FakeGitHub;
use futures_util::StreamExt;
use serde_json::Value;

const VALID_DELIVERIES: usize = 2_000;
const FORGED_DELIVERIES: usize = 200;
const MALFORMED_DELIVERIES: usize = 200;
const CONCURRENT_REQUESTS: usize = 32;
/// Generous for two slow cores; the run takes a fraction of it.
const SOAK_LIMIT: Duration = Duration::from_secs(300);
/// RSS growth allowed between the first and the second half of the valid
/// deliveries. A leak of the bodies alone would be over 20 MB.
const FLAT_RSS_MARGIN_KB: u64 = 8 * 1024;

/// One request of the soak and the status it must get.
struct Shot {
    id: String,
    event: &'static str,
    body: Vec<u8>,
    secret: &'static str,
    expected: u16,
}

fn fixture_body() -> Value {
    let text =
        std::fs::read_to_string(ci_env::project_dir().join("tests/data/github/test-ok.json"))
            .expect("reading the test-ok fixture");
    let delivery: Value = serde_json::from_str(&text).expect("fixture is JSON");
    delivery["body"].clone()
}

fn closed_pr(base: &Value, pr: u64) -> Vec<u8> {
    let mut body = base.clone();
    body["action"] = "closed".into();
    body["number"] = pr.into();
    body["pull_request"]["number"] = pr.into();
    body["pull_request"]["state"] = "closed".into();
    serde_json::to_vec(&body).expect("serialising")
}

fn valid(base: &Value, n: usize) -> Shot {
    // Each real delivery's body differs (a byte-identical one is a replay,
    // a duplicate whatever its id): here the PR's comment count.
    let mut body = base.clone();
    body["pull_request"]["comments"] = n.into();
    Shot {
        id: format!("soak-{n:05}"),
        event: "pull_request",
        body: closed_pr(&body, 1 + (n % 16) as u64),
        secret: ci_env::TEST_SECRET,
        expected: 202,
    }
}

fn forged(base: &Value, n: usize) -> Shot {
    Shot {
        id: format!("forged-{n:05}"),
        event: "pull_request",
        body: closed_pr(base, 7),
        secret: "not-the-webhook-secret",
        expected: 401,
    }
}

fn malformed(base: &Value, n: usize) -> Shot {
    let mut body = closed_pr(base, 9);
    body.truncate(body.len() / 2 + n % 100);
    Shot {
        id: format!("malformed-{n:05}"),
        event: "pull_request",
        body,
        secret: ci_env::TEST_SECRET,
        expected: 400,
    }
}

/// Values that would be dangerous if they reached git, a shell or Podman.
fn hostile(base: &Value) -> Vec<(Shot, &'static str)> {
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = base.clone();
        change(&mut body);
        serde_json::to_vec(&body).expect("serialising")
    };
    let shot = |id: &str, body: Vec<u8>| Shot {
        id: id.to_string(),
        event: "pull_request",
        body,
        secret: ci_env::TEST_SECRET,
        expected: 400,
    };
    vec![
        (
            shot(
                "hostile-sha",
                with(&|b| {
                    b["pull_request"]["head"]["sha"] = "--upload-pack=touch /tmp/pwned".into()
                }),
            ),
            "pull_request.head.sha",
        ),
        (
            shot(
                "hostile-sha-shell",
                with(&|b| b["pull_request"]["head"]["sha"] = "$(touch /tmp/pwned)".into()),
            ),
            "pull_request.head.sha",
        ),
        (
            shot(
                "hostile-pr-text",
                with(&|b| b["pull_request"]["number"] = "1; rm -rf /".into()),
            ),
            "pull_request.number",
        ),
        (
            shot(
                "hostile-pr-zero",
                with(&|b| b["pull_request"]["number"] = 0.into()),
            ),
            "pull_request.number",
        ),
        (
            shot(
                "hostile-pr-negative",
                with(&|b| b["pull_request"]["number"] = (-129).into()),
            ),
            "pull_request.number",
        ),
        (
            shot(
                "hostile-repo",
                with(&|b| b["repository"]["full_name"] = "../../etc/passwd".into()),
            ),
            "repository.full_name",
        ),
    ]
}

async fn fire(client: &reqwest::Client, url: &str, shot: &Shot) -> (u16, String) {
    let signatures = signature::sign(shot.secret.as_bytes(), &shot.body);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", shot.event)
        .header("x-github-delivery", &shot.id)
        .header("x-hub-signature-256", signatures.sha256)
        .body(shot.body.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("sending {}: {e}", shot.id));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Sends `shots` with at most CONCURRENT_REQUESTS in flight; returns the
/// ids whose answer was not the expected one, with what came back.
async fn fire_all(client: &reqwest::Client, url: &str, shots: &[Shot]) -> Vec<String> {
    futures_util::stream::iter(shots)
        .map(|shot| async move {
            let (status, text) = fire(client, url, shot).await;
            (status != shot.expected).then(|| format!("{}: {status} {text}", shot.id))
        })
        .buffer_unordered(CONCURRENT_REQUESTS)
        .filter_map(|wrong| async move { wrong })
        .collect()
        .await
}

/// A field of /proc/<pid>/status, in kB.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/<pid>/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_signed_deliveries_are_journaled_bad_ones_refused_memory_flat() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = ci_env::DemoRepo::create(dir.path());
    let github = FakeGitHub::start_with(ci_env::TEST_TOKEN, "embercsi/ember-csi").await;
    let state = dir.path().join("state");
    let config = ci_env::write_config(dir.path(), &repo, &github.url(), &state, "");
    let mut service = ci_env::Service::start(&config, dir.path());
    let url = service.hook_url();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENT_REQUESTS)
        .build()
        .expect("HTTP client");
    let base = fixture_body();

    // Hostile values are refused with a reason naming the field, one by one.
    for (shot, field) in hostile(&base) {
        let (status, text) = fire(&client, &url, &shot).await;
        assert_eq!(status, 400, "{}: {text}", shot.id);
        assert!(
            text.contains(field),
            "{}: the reason should name {field}: {text}",
            shot.id
        );
    }

    // Two halves of valid deliveries, the bad ones mixed into each.
    let mut halves: Vec<Vec<Shot>> = vec![Vec::new(), Vec::new()];
    for n in 0..VALID_DELIVERIES {
        halves[n * 2 / VALID_DELIVERIES].push(valid(&base, n));
    }
    for n in 0..FORGED_DELIVERIES {
        halves[n % 2].push(forged(&base, n));
    }
    for n in 0..MALFORMED_DELIVERIES {
        halves[n % 2].push(malformed(&base, n));
    }
    for half in &mut halves {
        // Interleave deterministically: every fifth request is a bad one.
        half.sort_by_key(|shot| {
            (
                shot.id.bytes().rev().take(3).collect::<Vec<_>>(),
                shot.id.clone(),
            )
        });
    }
    let pid = service.pid();
    let started = Instant::now();
    let rss_before_kb = proc_status_kb(pid, "VmRSS");
    let wrong = fire_all(&client, &url, &halves[0]).await;
    assert_eq!(
        wrong,
        Vec::<String>::new(),
        "unexpected answers in the first half"
    );
    let rss_half_kb = proc_status_kb(pid, "VmRSS");
    let wrong = fire_all(&client, &url, &halves[1]).await;
    assert_eq!(
        wrong,
        Vec::<String>::new(),
        "unexpected answers in the second half"
    );
    let rss_end_kb = proc_status_kb(pid, "VmRSS");
    let peak_kb = proc_status_kb(pid, "VmHWM");
    let elapsed = started.elapsed();
    assert!(elapsed < SOAK_LIMIT, "the soak took {elapsed:?}");
    let total = VALID_DELIVERIES + FORGED_DELIVERIES + MALFORMED_DELIVERIES;
    println!(
        "soak: {total} requests in {:.1} s ({:.0}/s); serve RSS {rss_before_kb} kB before, \
         {rss_half_kb} kB after the first half, {rss_end_kb} kB after the second; peak (VmHWM) {peak_kb} kB",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    assert!(
        rss_end_kb <= rss_half_kb + FLAT_RSS_MARGIN_KB,
        "memory grew from {rss_half_kb} kB to {rss_end_kb} kB over the second half"
    );

    // Every valid delivery, and nothing else, is in the journal and dispatched.
    let journal = Journal::open(&state).expect("journal");
    assert_eq!(
        journal.delivery_count().expect("count"),
        VALID_DELIVERIES as u64
    );
    for n in [0, VALID_DELIVERIES / 2, VALID_DELIVERIES - 1] {
        assert!(journal
            .has_delivery(&format!("soak-{n:05}"))
            .expect("lookup"));
    }
    wait::wait_until_every(
        "every delivery to be dispatched",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || journal.undispatched_deliveries().expect("read").is_empty(),
    )
    .await;
    // A redelivery of an accepted id is recognised, not queued again.
    let (status, text) = fire(&client, &url, &valid(&base, 0)).await;
    assert_eq!(
        (status, text.starts_with("duplicate")),
        (200, true),
        "{text}"
    );
    assert_eq!(
        service.stop(Duration::from_secs(120)),
        Some(0),
        "serve log:\n{}",
        service.log()
    );
    // The only call is the reconciliation poller's baseline listing of open
    // PRs at start (GH_TOKEN is set); closing unknown PRs needs none.
    let calls: Vec<_> = github
        .requests()
        .into_iter()
        .filter(|r| !(r.method == "GET" && r.path.starts_with("/repos/embercsi/ember-csi/pulls")))
        .collect();
    assert!(
        calls.is_empty(),
        "closing unknown PRs needs no GitHub call: {calls:?}"
    );
}
