//! The github module against a fake GitHub over real HTTP: what octocrab
//! sends and parses, how failures are sorted and retried.

use ember_ci_test_kit::fake_github;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_ci::config::Secret;
use ember_ci::github::{GitHub, GitHubError, PullRequestInfo, Reporter, RetryPolicy};
use ember_ci::model::CommitStatus;
use ember_ci::model::{CommitSha, PrNumber, RepoName, StatusState};
use fake_github::FakeGitHub;

const SHA: &str = "4155f91779c72125baee651f628640274794ca37";
const OTHER_SHA: &str = "b0b0cafe0000000000000000000000000000beef";

fn sha(text: &str) -> CommitSha {
    CommitSha::new(text).expect("test SHA is valid")
}

fn pr(number: u64) -> PrNumber {
    PrNumber::new(number).expect("test PR number is valid")
}

fn client(fake: &FakeGitHub) -> GitHub {
    let repo = RepoName::new(&fake.repo()).expect("fake repo name is valid");
    GitHub::new(&fake.url(), &Secret::new(fake.token()), repo).expect("client for the fake")
}

fn status(context: &str, state: StatusState, description: &str) -> CommitStatus {
    CommitStatus {
        context: context.to_string(),
        state,
        description: description.to_string(),
        target_url: Some(format!("https://logs.example/{context}/")),
    }
}

/// Short waits so retry tests take milliseconds, not minutes.
fn quick_policy(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
    }
}

fn statuses_path(fake: &FakeGitHub, sha: &str) -> String {
    format!("/repos/{}/statuses/{sha}", fake.repo())
}

#[tokio::test]
async fn every_status_state_is_posted_and_read_back_as_latest_per_context() {
    let fake = FakeGitHub::start().await;
    let github = client(&fake);
    let commit = sha(SHA);

    github
        .post_status(
            &commit,
            &status("3rdparty/lvm", StatusState::Pending, "queued"),
        )
        .await
        .expect("pending posted");
    github
        .post_status(
            &commit,
            &status("3rdparty/lvm", StatusState::Success, "CSI sanity passed"),
        )
        .await
        .expect("success posted");
    github
        .post_status(
            &commit,
            &status("3rdparty/ceph", StatusState::Failure, "failed at sanity"),
        )
        .await
        .expect("failure posted");
    github
        .post_status(
            &commit,
            &status("3rdparty/nfs", StatusState::Error, "CI error at sandbox"),
        )
        .await
        .expect("error posted");

    let mut latest = github.statuses(&commit).await.expect("statuses read");
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        latest,
        [
            ("3rdparty/ceph".to_string(), StatusState::Failure),
            ("3rdparty/lvm".to_string(), StatusState::Success),
            ("3rdparty/nfs".to_string(), StatusState::Error),
        ]
    );

    let recorded = fake.statuses_for(SHA);
    let states: Vec<&str> = recorded.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["pending", "success", "failure", "error"]);
    assert_eq!(
        recorded[1].description.as_deref(),
        Some("CSI sanity passed")
    );
    assert_eq!(
        recorded[1].target_url.as_deref(),
        Some("https://logs.example/3rdparty/lvm/")
    );
    assert!(github
        .statuses(&sha(OTHER_SHA))
        .await
        .expect("empty list read")
        .is_empty());
}

#[tokio::test]
async fn long_descriptions_are_cut_to_githubs_limit() {
    let fake = FakeGitHub::start().await;
    let github = client(&fake);
    let long = "x".repeat(500);

    // The fake, like GitHub, answers 422 to anything over 140 characters.
    github
        .post_status(
            &sha(SHA),
            &status("3rdparty/lvm", StatusState::Failure, &long),
        )
        .await
        .expect("truncated status accepted");

    let recorded = fake.statuses_for(SHA);
    let description = recorded[0].description.clone().unwrap_or_default();
    assert_eq!(description.chars().count(), 140);
    assert!(description.ends_with('…'));
}

#[tokio::test]
async fn pull_request_is_parsed_from_a_full_github_object() {
    let fake = FakeGitHub::start().await;
    fake.add_pull(129, SHA, "Test PR for 3rd party CI (OK)", "akrog", "MEMBER");
    let github = client(&fake);

    let pull = github.pull_request(pr(129)).await.expect("PR read");

    assert!(pull.author_id.is_some(), "{pull:?}");
    assert_eq!(
        pull,
        PullRequestInfo {
            number: pr(129),
            head_sha: sha(SHA),
            title: "Test PR for 3rd party CI (OK)".into(),
            author: "akrog".into(),
            author_id: pull.author_id,
            author_association: "MEMBER".into(),
            html_url: "https://github.com/embercsi/ember-csi/pull/129".into(),
            is_open: true,
        }
    );
}

#[tokio::test]
async fn unknown_pull_request_is_fatal_not_found() {
    let fake = FakeGitHub::start().await;
    let github = client(&fake);

    let error = github.pull_request(pr(4242)).await.expect_err("no such PR");

    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.status(), Some(404));
}

#[tokio::test]
async fn unchanged_open_pull_requests_answer_none_through_a_304() {
    let fake = FakeGitHub::start().await;
    fake.add_pull(129, SHA, "ok", "akrog", "MEMBER");
    fake.add_pull(130, OTHER_SHA, "broken", "outsider", "CONTRIBUTOR");
    let github = client(&fake);

    let first = github.open_pull_requests().await.expect("first listing");
    let numbers: Vec<u64> = first
        .expect("first listing has data")
        .iter()
        .map(|p| p.number.get())
        .collect();
    assert_eq!(numbers, [130, 129]);

    let second = github.open_pull_requests().await.expect("second listing");
    assert_eq!(second, None);
    assert_eq!(fake.not_modified_count(), 1);

    fake.close_pull(130);
    let third = github
        .open_pull_requests()
        .await
        .expect("listing after a change");
    let open: Vec<(u64, String)> = third
        .expect("a change brings data")
        .into_iter()
        .map(|p| (p.number.get(), p.author_association))
        .collect();
    assert_eq!(open, [(129, "MEMBER".to_string())]);
    assert_eq!(fake.not_modified_count(), 1);
}

#[tokio::test]
async fn listing_longer_than_one_page_is_fetched_whole_and_never_answered_from_etag() {
    let fake = FakeGitHub::start().await;
    for number in 1..=150 {
        fake.add_pull(number, SHA, &format!("PR {number}"), "akrog", "MEMBER");
    }
    let github = client(&fake);
    let pulls_path = format!("/repos/{}/pulls", fake.repo());

    let first = github.open_pull_requests().await.expect("first listing");
    assert_eq!(first.map(|pulls| pulls.len()), Some(150));
    assert_eq!(fake.count_requests("GET", &pulls_path), 2);

    // Page 1's ETag says nothing about page 2, so the next call asks afresh.
    let second = github.open_pull_requests().await.expect("second listing");
    assert_eq!(second.map(|pulls| pulls.len()), Some(150));
    assert_eq!(fake.not_modified_count(), 0);
}

#[tokio::test]
async fn comment_and_reaction_are_recorded() {
    let fake = FakeGitHub::start().await;
    fake.add_pull(129, SHA, "ok", "akrog", "MEMBER");
    let github = client(&fake);

    github
        .create_comment(pr(129), "Job queued for 3rdparty/lvm")
        .await
        .expect("comment posted");
    github
        .add_reaction(987_654, "eyes")
        .await
        .expect("reaction posted");

    let comments = fake.comments();
    assert_eq!(comments.len(), 1);
    assert_eq!(
        (comments[0].pr, comments[0].body.as_str()),
        (129, "Job queued for 3rdparty/lvm")
    );
    let reactions = fake.reactions();
    assert_eq!(reactions.len(), 1);
    assert_eq!(
        (reactions[0].comment_id, reactions[0].content.as_str()),
        (987_654, "eyes")
    );
}

#[tokio::test]
async fn unknown_reaction_is_refused_before_any_request() {
    let fake = FakeGitHub::start().await;
    let github = client(&fake);

    let error = github
        .add_reaction(1, "thumbsup")
        .await
        .expect_err("not a GitHub reaction");

    assert!(!error.is_retryable());
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn status_survives_three_bad_gateways_with_retry() {
    let fake = FakeGitHub::start().await;
    let reporter = Arc::new(Reporter::GitHub(client(&fake)));
    fake.fail_next(3, 502);

    // Posted in the background, as the scheduler's outbox would.
    let posting = tokio::spawn({
        let reporter = Arc::clone(&reporter);
        async move {
            let pending = status("3rdparty/lvm", StatusState::Pending, "queued");
            reporter
                .report_with_retry(&sha(SHA), &pending, &quick_policy(5))
                .await
        }
    });
    fake.wait_for(
        |state| !state.statuses_for(SHA).is_empty(),
        Duration::from_secs(30),
    )
    .await
    .expect("status arrives after the failures");

    posting
        .await
        .expect("posting task")
        .expect("fourth attempt succeeds");
    assert_eq!(fake.count_requests("POST", &statuses_path(&fake, SHA)), 4);
    let answered: Vec<u16> = fake
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(answered, [502, 502, 502, 201]);
}

#[tokio::test]
async fn single_report_hands_a_bad_gateway_back_as_retryable() {
    let fake = FakeGitHub::start().await;
    let reporter = Reporter::GitHub(client(&fake));
    fake.fail_next(1, 502);

    let error = reporter
        .report(
            &sha(SHA),
            &status("3rdparty/lvm", StatusState::Pending, "queued"),
        )
        .await
        .expect_err("502 comes back");

    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.status(), Some(502));
    // Octocrab's own retry layer must not have replayed it behind our back.
    assert_eq!(fake.count_requests("POST", &statuses_path(&fake, SHA)), 1);
}

#[tokio::test]
async fn retries_give_up_after_the_policys_attempts() {
    let fake = FakeGitHub::start().await;
    let reporter = Reporter::GitHub(client(&fake));
    fake.fail_next(10, 503);

    let error = reporter
        .report_with_retry(
            &sha(SHA),
            &status("3rdparty/lvm", StatusState::Pending, "queued"),
            &quick_policy(3),
        )
        .await
        .expect_err("every attempt fails");

    assert!(error.is_retryable());
    assert_eq!(fake.count_requests("POST", &statuses_path(&fake, SHA)), 3);
}

#[tokio::test]
async fn validation_error_is_fatal_and_not_retried() {
    let fake = FakeGitHub::start().await;
    let reporter = Reporter::GitHub(client(&fake));
    fake.fail_next(1, 422);

    let error = reporter
        .report_with_retry(
            &sha(SHA),
            &status("3rdparty/lvm", StatusState::Success, "ok"),
            &quick_policy(5),
        )
        .await
        .expect_err("422 is final");

    assert!(
        matches!(
            error,
            GitHubError::Fatal {
                status: Some(422),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(fake.count_requests("POST", &statuses_path(&fake, SHA)), 1);
    assert!(fake.statuses_for(SHA).is_empty());
}

#[tokio::test]
async fn rate_limit_carries_retry_after_and_the_retry_waits_for_it() {
    let fake = FakeGitHub::start().await;
    let reporter = Reporter::GitHub(client(&fake));
    let pending = status("3rdparty/lvm", StatusState::Pending, "queued");

    fake.rate_limit_next(1, 1);
    let error = reporter
        .report(&sha(SHA), &pending)
        .await
        .expect_err("rate limited");
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.status(), Some(403));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));

    fake.rate_limit_next(1, 1);
    let started = Instant::now();
    reporter
        .report_with_retry(&sha(SHA), &pending, &quick_policy(3))
        .await
        .expect("posted once the limit lifts");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}, before the 1 s GitHub asked for",
        started.elapsed()
    );
    assert_eq!(fake.count_requests("POST", &statuses_path(&fake, SHA)), 3);
    assert_eq!(fake.statuses_for(SHA).len(), 1);
}

#[tokio::test]
async fn wrong_token_is_fatal_and_nothing_is_recorded() {
    let fake = FakeGitHub::start().await;
    let repo = RepoName::new(&fake.repo()).expect("valid repo");
    let github = GitHub::new(&fake.url(), &Secret::new("ghp_not_the_right_token"), repo)
        .expect("client builds");

    let error = github
        .post_status(
            &sha(SHA),
            &status("3rdparty/lvm", StatusState::Pending, "queued"),
        )
        .await
        .expect_err("401");

    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.status(), Some(401));
    assert!(fake.statuses_for(SHA).is_empty());
}

#[tokio::test]
async fn unreachable_github_is_retryable() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    let url = format!("http://{}", listener.local_addr().expect("probe address"));
    drop(listener);
    let repo = RepoName::new("embercsi/ember-csi").expect("valid repo");
    let github = GitHub::new(&url, &Secret::new("ghp_token"), repo).expect("client builds");

    let error = github
        .post_status(
            &sha(SHA),
            &status("3rdparty/lvm", StatusState::Pending, "queued"),
        )
        .await
        .expect_err("connection refused");

    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.status(), None);
}

#[tokio::test]
async fn empty_token_is_refused_up_front() {
    let repo = RepoName::new("embercsi/ember-csi").expect("valid repo");
    let error =
        GitHub::new("https://api.github.com", &Secret::new(""), repo).expect_err("no token");
    assert!(!error.is_retryable());
}

/// Set in the child process of `console_reporter_prints_the_status_line`.
const CONSOLE_CHILD_ENV: &str = "EMBER_CI_TEST_CONSOLE_REPORTER_CHILD";

#[tokio::test]
async fn console_reporter_prints_the_status_line() {
    let status = CommitStatus {
        context: "3rdparty/demo".into(),
        state: StatusState::Success,
        description: "CSI sanity passed".into(),
        target_url: Some("http://127.0.0.1:8010/jobs/1/".into()),
    };
    if std::env::var_os(CONSOLE_CHILD_ENV).is_some() {
        Reporter::Console
            .report(&sha(SHA), &status)
            .await
            .expect("printed");
        return;
    }
    // The test harness cannot capture what the reporter writes to the real
    // stdout, so run this very test again in a child and read its stdout.
    let output = std::process::Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "github::console_reporter_prints_the_status_line",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CONSOLE_CHILD_ENV, "1")
        .output()
        .expect("running the test binary as a child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    // The harness prints "test <name> ... " before the test's own output,
    // on the same line, so look for the complete status line's text.
    let expected = "[status] 4155f91 3rdparty/demo success: CSI sanity passed (http://127.0.0.1:8010/jobs/1/)\n";
    assert!(
        stdout.contains(expected),
        "status line missing from: {stdout}"
    );
}
