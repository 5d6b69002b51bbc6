//! Pull-request comments and pushes driving the CI, through the front door:
//! signed deliveries (the fixtures in tests/data/github, re-targeted) posted
//! to the webhook endpoint, a local GitHub API recording statuses, comments
//! and reactions. Each scenario runs twice: in process (`service::start`
//! with a scripted job runner: the commands, trust and supersede logic in
//! seconds), and through `ember-ci serve` as a child process running the
//! demo plugin's jobs on real Podman (the same scenario end to end).
//!
//! The Podman runs need root Podman with runc and docker.io/library/debian:bookworm
//! (scripts/setup-host.sh). The first job on a fresh host also builds the
//! sandbox image, hence the long job deadline.

use ember_ci_test_kit::ci_env;
use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::git_server::STANDIN_PASSED;
use ember_ci_test_kit::wait::poll_until;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ember_ci::config::Config;
use ember_ci::executor::{CancelSignal, Job, StepObserver, StepResult};
use ember_ci::github::Reporter;
use ember_ci::model::{JobOutcome, Step};
use ember_ci::scheduler::JobRunner;
use ember_ci::service::Parts;
use tokio_util::sync::CancellationToken;

use ci_env::{
    containers_with_label, volumes_with_label, DemoRepo, Service, TEST_SECRET, TEST_TOKEN,
};
use ember_ci::relay::saved::{prepare_saved_delivery, PreparedDelivery};
use fake_github::{FakeGitHub, FakeState, BOT_LOGIN};
use serde_json::Value;

/// Jobs take seconds once the sandbox image exists; the first one on a
/// fresh host builds it.
const JOB_DEADLINE: Duration = Duration::from_secs(900);
/// A reply needs a GitHub read and a comment or two.
const REPLY_DEADLINE: Duration = Duration::from_secs(120);

const MEMBER: &str = "Akrog";
const STRANGER: &str = "drive-by-dev";

/// Two demo backends: the same plugin under two names.
const TWO_BACKENDS: &str = r#"
NUM_DRIVERS=2
DRIVER_NAME_2="demo2"
DRIVER_CONFIG_2='{"name": "demo2", "driver": "DemoDriver", "password": "demo-array-password"}'
SANITY_COMMAND_2="/config/sanity.sh 127.0.0.1:50051"
"#;

/// Where the scenario runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Front {
    /// `service::start` in this process, jobs run by [`ScriptedJobs`].
    InProcess,
    /// `ember-ci serve` as a child, jobs on real Podman.
    Serve,
}

impl Front {
    /// The final status of a passing job: the scripted runner writes no
    /// report; the csi-sanity stand-in on real Podman reports its one spec.
    fn passed(self) -> String {
        let description = match self {
            Front::InProcess => "CSI sanity passed",
            Front::Serve => STANDIN_PASSED,
        };
        format!("success:{description}")
    }
}

/// The running service, either way.
enum Running {
    InProcess {
        url: String,
        ui_url: String,
        shutdown: CancellationToken,
        _service: ember_ci::service::Running,
    },
    Serve(Service),
}

impl Running {
    fn url(&self) -> &str {
        match self {
            Running::InProcess { url, .. } => url,
            Running::Serve(service) => &service.url,
        }
    }

    fn hook_url(&self) -> String {
        format!("{}/change_hook/github", self.url())
    }

    /// The web UI's base URL.
    fn ui_url(&self) -> &str {
        match self {
            Running::InProcess { ui_url, .. } => ui_url,
            Running::Serve(service) => &service.ui_url,
        }
    }

    fn log(&self) -> String {
        match self {
            Running::InProcess { .. } => "(in process: see the test's own output)".to_string(),
            Running::Serve(service) => service.log(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Running::InProcess { shutdown, .. } = self {
            shutdown.cancel();
        }
    }
}

/// Runs jobs in process the way the demo config's scripts would, without
/// Podman: a pre-run saying its head, then success; a job of the head
/// `hangs_on` waits in its pre-run until it is cancelled; a post-run always
/// reports the result (as POST_RUN's `$1`).
struct ScriptedJobs {
    hangs_on: Option<String>,
}

#[async_trait]
impl JobRunner for ScriptedJobs {
    async fn run(
        &self,
        job: &Job,
        observer: &dyn StepObserver,
        cancel: CancelSignal,
    ) -> JobOutcome {
        let sha = job.request.sha.as_str();
        let passed = StepResult {
            exit_code: Some(0),
            duration: Duration::from_millis(1),
            note: None,
        };
        observer.step_started(Step::PreRun);
        observer.output(Step::PreRun, format!("pre-run for {sha}\n").as_bytes());
        let outcome = if self.hangs_on.as_deref() == Some(sha) {
            cancel.cancelled().await;
            cancel.outcome()
        } else {
            JobOutcome::Success
        };
        observer.step_finished(Step::PreRun, &passed);
        observer.step_started(Step::PostRun);
        let result = format!("post-run for {sha}: result {}\n", outcome.exit_code());
        observer.output(Step::PostRun, result.as_bytes());
        observer.step_finished(Step::PostRun, &passed);
        outcome
    }
}

/// One running service with its own repository, state dir and fake GitHub.
/// Fields drop in order: the service stops while the fake GitHub still
/// answers, before its state dir goes.
struct Ci {
    service: Running,
    front: Front,
    github: FakeGitHub,
    repo: DemoRepo,
    state_dir: PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _serial: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl Ci {
    /// `extra_config` lines go after the demo config; `config_for` may use
    /// the demo repository's SHAs. In process, jobs of `hangs_on` wait for
    /// their cancel.
    async fn start(
        front: Front,
        hangs_on: impl FnOnce(&DemoRepo) -> Option<String>,
        extra_config: impl FnOnce(&DemoRepo) -> String,
    ) -> Ci {
        let serial = match front {
            Front::Serve => Some(ember_ci_test_kit::podman_lock().await),
            Front::InProcess => None,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let github = FakeGitHub::start_with(TEST_TOKEN, "embercsi/ember-csi").await;
        let repo = DemoRepo::create(dir.path());
        let state_dir = dir.path().join("state");
        let extra = format!("GH_USER=\"{BOT_LOGIN}\"\n{}", extra_config(&repo));
        let config = ci_env::write_config(dir.path(), &repo, &github.url(), &state_dir, &extra);
        let service = match front {
            Front::Serve => Running::Serve(Service::start(&config, dir.path())),
            Front::InProcess => {
                let config = Config::load(&config).expect("the test config loads");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("binding 127.0.0.1:0");
                let parts = Parts {
                    ui_listener: tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("binding the UI's 127.0.0.1:0"),
                    runner: Arc::new(ScriptedJobs {
                        hangs_on: hangs_on(&repo),
                    }),
                    reporter: Arc::new(
                        Reporter::from_config(&config.github).expect("the GitHub client"),
                    ),
                    listener,
                };
                let shutdown = CancellationToken::new();
                let service = ember_ci::service::start(config, parts, shutdown.clone())
                    .await
                    .expect("the service starts");
                Running::InProcess {
                    url: format!("http://{}", service.address()),
                    ui_url: format!("http://{}", service.ui_address()),
                    shutdown,
                    _service: service,
                }
            }
        };
        Ci {
            service,
            front,
            github,
            repo,
            state_dir,
            http: reqwest::Client::new(),
            _dir: dir,
            _serial: serial,
        }
    }

    /// Signs and posts a delivery built from `fixture` (its body edited by
    /// `edit`) under a fresh delivery id; expects it to be accepted. Returns
    /// it, for a replay.
    async fn deliver(&self, fixture: &str, edit: impl FnOnce(&mut Value)) -> PreparedDelivery {
        let prepared = signed_delivery(fixture, edit);
        let (status, text) = self.post(&prepared).await;
        assert_eq!(status, 202, "delivery {fixture} not accepted: {text}");
        prepared
    }

    /// Posts a signed delivery as it is; the status and the reply's text.
    async fn post(&self, prepared: &PreparedDelivery) -> (u16, String) {
        let mut request = self
            .http
            .post(self.service.hook_url())
            .body(prepared.body.clone());
        for (name, value) in &prepared.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("posting the delivery");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// A `pull_request` `opened` delivery for `sha` by `author`.
    async fn pull_request_opened(&self, pr: u64, sha: &str, author: &str, association: &str) {
        self.deliver("test-ok.json", |body| {
            retarget_pull_request(body, pr, sha, author, association)
        })
        .await;
    }

    /// A `pull_request` `synchronize` delivery: `author` pushed `after`.
    async fn pull_request_pushed(
        &self,
        pr: u64,
        before: &str,
        after: &str,
        author: &str,
        association: &str,
    ) {
        self.deliver("pull_request-synchronize.json", |body| {
            retarget_pull_request(body, pr, after, author, association);
            body["before"] = Value::from(before);
            body["after"] = Value::from(after);
        })
        .await;
    }

    /// An `issue_comment` `created` delivery on PR `pr`, written now.
    async fn comment(
        &self,
        pr: u64,
        id: u64,
        author: &str,
        association: &str,
        text: &str,
    ) -> PreparedDelivery {
        self.deliver("issue_comment-created.json", |body| {
            retarget_comment(body, pr, id, author, association, text)
        })
        .await
    }

    async fn wait_for(
        &self,
        what: &str,
        deadline: Duration,
        predicate: impl Fn(&FakeState) -> bool,
    ) {
        if let Err(err) = self.github.wait_for(predicate, deadline).await {
            panic!(
                "waiting for {what}: {err}\nstatuses: {:#?}\ncomments: {:#?}\nservice log:\n{}",
                self.github.state(|s| s.statuses.clone()),
                self.github.comments(),
                self.service.log()
            );
        }
    }

    /// The job board as `/api/jobs` shows it.
    async fn jobs(&self) -> Vec<Value> {
        let url = format!("{}/api/jobs", self.service.ui_url());
        let jobs: Value = self
            .http
            .get(&url)
            .send()
            .await
            .expect("GET /api/jobs")
            .json()
            .await
            .expect("/api/jobs answers JSON");
        jobs.as_array().cloned().expect("/api/jobs is a list")
    }

    /// Polls `/api/jobs` until one job satisfies `predicate`; returns it.
    async fn wait_for_job(&self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let found = poll_until(JOB_DEADLINE, Duration::from_millis(200), || async {
            self.jobs().await.into_iter().find(|job| predicate(job))
        })
        .await;
        found
            .unwrap_or_else(|| panic!("no job became {what}; service log:\n{}", self.service.log()))
    }

    /// The text of a finished job's log file for `step`.
    fn step_log(&self, job_id: &str, step: &str) -> String {
        let dir = self.state_dir.join("logs").join(job_id);
        let summary: Value = serde_json::from_slice(
            &std::fs::read(dir.join("job.json")).expect("the job wrote job.json"),
        )
        .expect("job.json is JSON");
        let file = summary["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["step"] == step)
            .and_then(|s| s["file"].as_str())
            .unwrap_or_else(|| panic!("job {job_id} has no {step} step: {summary:#}"));
        std::fs::read_to_string(dir.join(file)).expect("reading the step log")
    }
}

fn load_fixture(file: &str) -> Value {
    let path = ci_env::project_dir().join("tests/data/github").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A delivery built from `fixture` (its body edited by `edit`), signed with
/// the test secret, under a fresh delivery id.
fn signed_delivery(fixture: &str, edit: impl FnOnce(&mut Value)) -> PreparedDelivery {
    let mut saved = load_fixture(fixture);
    edit(&mut saved["body"]);
    saved["x-github-delivery"] = Value::from(uuid::Uuid::new_v4().to_string());
    prepare_saved_delivery(&saved, Some(TEST_SECRET)).expect("fixture is a delivery")
}

/// GitHub's timestamp form, `secs_from_now` seconds from now.
fn github_time(secs_from_now: i64) -> Value {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs_from_now);
    let at = at.replace_nanosecond(0).expect("0 is a valid nanosecond");
    Value::from(
        at.format(&time::format_description::well_known::Rfc3339)
            .expect("formats"),
    )
}

/// A PR delivery by `author`, pushed (its head owned and sent by `author`) now.
fn retarget_pull_request(body: &mut Value, pr: u64, sha: &str, author: &str, association: &str) {
    body["number"] = Value::from(pr);
    let pull = &mut body["pull_request"];
    pull["number"] = Value::from(pr);
    pull["head"]["sha"] = Value::from(sha);
    pull["head"]["repo"]["owner"]["login"] = Value::from(author);
    pull["user"]["login"] = Value::from(author);
    pull["author_association"] = Value::from(association);
    pull["updated_at"] = github_time(0);
    body["sender"]["login"] = Value::from(author);
}

fn retarget_comment(
    body: &mut Value,
    pr: u64,
    id: u64,
    author: &str,
    association: &str,
    text: &str,
) {
    body["issue"]["number"] = Value::from(pr);
    body["comment"]["id"] = Value::from(id);
    body["comment"]["body"] = Value::from(text);
    body["comment"]["user"]["login"] = Value::from(author);
    body["comment"]["author_association"] = Value::from(association);
    body["comment"]["created_at"] = github_time(0);
    body["sender"]["login"] = Value::from(author);
}

/// `state:description` of every status of `context` on `sha`, oldest first.
fn statuses(state: &FakeState, sha: &str, context: &str) -> Vec<String> {
    state
        .statuses_for(sha)
        .iter()
        .filter(|s| s.context == context)
        .map(|s| format!("{}:{}", s.state, s.description.clone().unwrap_or_default()))
        .collect()
}

fn count(state: &FakeState, sha: &str, context: &str, wanted: &str) -> usize {
    statuses(state, sha, context)
        .iter()
        .filter(|s| s.starts_with(wanted))
        .count()
}

fn has_reaction(state: &FakeState, comment_id: u64) -> bool {
    state
        .reactions
        .iter()
        .any(|r| r.comment_id == comment_id && r.content == "eyes")
}

fn has_reply(state: &FakeState, pr: u64, needle: &str) -> bool {
    state
        .comments
        .iter()
        .any(|c| c.pr == pr && c.body.contains(needle))
}

const DEMO: &str = "3rdparty/demo";
const DEMO2: &str = "3rdparty/demo2";

#[tokio::test(flavor = "multi_thread")]
async fn recheck_reruns_backends_and_help_lists_them_in_process() {
    recheck_reruns_backends_and_help_lists_them(Front::InProcess).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recheck_reruns_backends_and_help_lists_them_through_serve() {
    recheck_reruns_backends_and_help_lists_them(Front::Serve).await;
}

async fn recheck_reruns_backends_and_help_lists_them(front: Front) {
    let ci = Ci::start(front, |_| None, |_| TWO_BACKENDS.to_string()).await;
    let sha = ci.repo.ok_sha.clone();
    ci.github.add_pull(129, &sha, "Test PR", MEMBER, "MEMBER");

    ci.pull_request_opened(129, &sha, MEMBER, "MEMBER").await;
    ci.wait_for("both backends to pass", JOB_DEADLINE, |s| {
        count(s, &sha, DEMO, "success") == 1 && count(s, &sha, DEMO2, "success") == 1
    })
    .await;

    // A bare `recheck` runs every backend again on the finished head.
    ci.comment(
        129,
        1001,
        MEMBER,
        "MEMBER",
        "Flaky array?\r\n\r\nrecheck\r\n",
    )
    .await;
    ci.wait_for("both backends to pass again", JOB_DEADLINE, |s| {
        count(s, &sha, DEMO, "success") == 2 && count(s, &sha, DEMO2, "success") == 2
    })
    .await;
    assert!(ci.github.state(|s| has_reaction(s, 1001)));

    // `/recheck <name>` (any case) runs that backend only.
    ci.comment(129, 1002, MEMBER, "MEMBER", "/recheck DEMO2")
        .await;
    ci.wait_for("demo2 to pass a third time", JOB_DEADLINE, |s| {
        count(s, &sha, DEMO2, "success") == 3
    })
    .await;
    ci.github.state(|s| {
        assert!(has_reaction(s, 1002));
        // Had demo been queued too, its "queued" status would have been
        // posted before demo2's, so it would show by now.
        assert_eq!(
            statuses(s, &sha, DEMO),
            [
                "pending:queued",
                "pending:running: build and CSI sanity",
                ci.front.passed().as_str()
            ]
            .repeat(2)
        );
    });

    // The bot's own comment is no command, even one that reads like one;
    // the member's comment after it is answered.
    ci.comment(129, 1003, BOT_LOGIN, "NONE", "recheck").await;
    ci.comment(
        129,
        1004,
        MEMBER,
        "MEMBER",
        "/help\n```\nrecheck\n```\n> /recheck demo\n/recheck nosuch",
    )
    .await;
    ci.wait_for(
        "the help and unknown-backend replies",
        REPLY_DEADLINE,
        |s| {
            has_reply(s, 129, "Backends: `demo`, `demo2`.")
                && has_reply(
                    s,
                    129,
                    "Unknown backend `nosuch`. This CI runs: `demo`, `demo2`.",
                )
        },
    )
    .await;
    let help = ci
        .github
        .comments()
        .into_iter()
        .find(|c| c.body.contains("Backends:"))
        .expect("help reply");
    for command in [
        "`recheck`",
        "`/recheck <backend>...`",
        "`/ok-to-test`",
        "`/help`",
    ] {
        assert!(
            help.body.contains(command),
            "{command} not in {}",
            help.body
        );
    }
    ci.github.state(|s| {
        assert!(has_reaction(s, 1004));
        assert!(!has_reaction(s, 1003), "the bot reacted to its own comment");
        assert_eq!(s.comments.len(), 2, "{:#?}", s.comments);
        // Nothing ran for the quoted, fenced or unknown rechecks, nor the bot's.
        assert_eq!(count(s, &sha, DEMO, "pending:queued"), 2);
        assert_eq!(count(s, &sha, DEMO2, "pending:queued"), 3);
    });
    assert!(ci.jobs().await.iter().all(|job| job["state"] == "finished"));

    // Once the PR is closed a recheck runs nothing and says why.
    ci.github.close_pull(129);
    ci.deliver("pull_request-closed.json", |body| {
        retarget_pull_request(body, 129, &sha, MEMBER, "MEMBER")
    })
    .await;
    ci.comment(129, 1005, MEMBER, "MEMBER", "recheck").await;
    ci.wait_for("the closed-PR reply", REPLY_DEADLINE, |s| {
        has_reply(s, 129, "This pull request is closed")
    })
    .await;
    let jobs = ci.jobs().await;
    assert_eq!(jobs.len(), 5, "{jobs:#?}");
    assert!(ci.github.state(|s| has_reaction(s, 1005)));
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_pull_request_waits_for_a_members_ok_to_test_in_process() {
    untrusted_pull_request_waits_for_a_members_ok_to_test(Front::InProcess).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_pull_request_waits_for_a_members_ok_to_test_through_serve() {
    untrusted_pull_request_waits_for_a_members_ok_to_test(Front::Serve).await;
}

async fn untrusted_pull_request_waits_for_a_members_ok_to_test(front: Front) {
    let ci = Ci::start(front, |_| None, |_| String::new()).await;
    let first = ci.repo.ok_sha.clone();
    ci.github
        .add_pull(129, &first, "Drive-by fix", STRANGER, "CONTRIBUTOR");

    ci.pull_request_opened(129, &first, STRANGER, "CONTRIBUTOR")
        .await;
    ci.wait_for("the waiting status", REPLY_DEADLINE, |s| {
        statuses(s, &first, DEMO) == ["pending:waiting for /ok-to-test from a project member"]
    })
    .await;
    assert_eq!(ci.jobs().await, Vec::<Value>::new(), "an untrusted PR ran");

    // The author cannot approve their own code: a polite refusal, no job.
    ci.comment(129, 2001, STRANGER, "CONTRIBUTOR", "/ok-to-test")
        .await;
    ci.wait_for("the refusal", REPLY_DEADLINE, |s| {
        has_reply(s, 129, &format!("@{STRANGER} thanks! Only project members"))
    })
    .await;
    assert!(ci.github.state(|s| has_reaction(s, 2001)));
    // A member's recheck does not bypass the ok either.
    ci.comment(129, 2002, MEMBER, "MEMBER", "recheck").await;
    ci.wait_for("the needs-ok reply", REPLY_DEADLINE, |s| {
        has_reply(s, 129, "does not trust yet, so it has not run")
    })
    .await;
    assert_eq!(
        ci.jobs().await,
        Vec::<Value>::new(),
        "a refused command ran"
    );
    assert_eq!(ci.github.statuses_for(&first).len(), 1);

    // A member's ok runs the head.
    ci.comment(129, 2003, MEMBER, "MEMBER", "/ok-to-test").await;
    ci.wait_for("the approved head to pass", JOB_DEADLINE, |s| {
        statuses(s, &first, DEMO).last().map(String::as_str) == Some(ci.front.passed().as_str())
    })
    .await;

    // The same author pushes again: the new head waits for a new ok.
    let second = ci.repo.push_pull_request(
        129,
        &first,
        &[("CHANGELOG", "drive-by change\n")],
        "Second push",
    );
    ci.github
        .add_pull(129, &second, "Drive-by fix", STRANGER, "CONTRIBUTOR");
    ci.pull_request_pushed(129, &first, &second, STRANGER, "CONTRIBUTOR")
        .await;
    ci.wait_for("the new head's waiting status", REPLY_DEADLINE, |s| {
        statuses(s, &second, DEMO) == ["pending:waiting for /ok-to-test from a project member"]
    })
    .await;
    assert_eq!(ci.jobs().await.len(), 1, "the new push ran without an ok");

    ci.comment(129, 2004, MEMBER, "MEMBER", "/OK-to-test").await;
    ci.wait_for("the second approved head to pass", JOB_DEADLINE, |s| {
        statuses(s, &second, DEMO).last().map(String::as_str) == Some(ci.front.passed().as_str())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn push_while_a_job_runs_supersedes_it_in_process() {
    push_while_a_job_runs_supersedes_it(Front::InProcess).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn push_while_a_job_runs_supersedes_it_through_serve() {
    push_while_a_job_runs_supersedes_it(Front::Serve).await;
}

async fn push_while_a_job_runs_supersedes_it(front: Front) {
    // The first head's PRE_RUN outlasts the test's patience; any later head
    // runs straight through. POST_RUN says what it was told.
    let ci = Ci::start(front, |repo| Some(repo.ok_sha.clone()), |repo| {
        format!(
            "PRE_RUN_1='echo \"pre-run for $COMMIT_SHA\"; if [ \"$COMMIT_SHA\" = {} ]; then sleep 600; fi'\n\
             POST_RUN_1='echo \"post-run for $COMMIT_SHA: result $1\"'\n",
            repo.ok_sha
        )
    })
    .await;
    let old = ci.repo.ok_sha.clone();
    ci.pull_request_opened(129, &old, MEMBER, "MEMBER").await;
    let old_job = ci
        .wait_for_job("running the old head's pre-run", |job| {
            job["sha"] == old.as_str() && job["state"] == "running" && job["step"] == "pre-run"
        })
        .await;
    let old_job_id = old_job["id"].as_str().expect("job id").to_string();
    let label = format!("ember-ci.job={old_job_id}");
    let is_on_podman = ci.front == Front::Serve;
    assert!(
        !is_on_podman || !containers_with_label(&label).is_empty(),
        "the running job has no sandbox"
    );

    let new = ci.repo.push_pull_request(
        129,
        &old,
        &[("CHANGELOG", "new push\n")],
        "Push while the job runs",
    );
    ci.pull_request_pushed(129, &old, &new, MEMBER, "MEMBER")
        .await;
    let superseded = format!("error:cancelled: superseded by {}", &new[..7]);
    ci.wait_for("the old head to end superseded", JOB_DEADLINE, |s| {
        statuses(s, &old, DEMO).last() == Some(&superseded)
    })
    .await;
    ci.wait_for("the new head to pass", JOB_DEADLINE, |s| {
        statuses(s, &new, DEMO).last().map(String::as_str) == Some(ci.front.passed().as_str())
    })
    .await;

    // POST_RUN ran for the cancelled job, with a non-zero result.
    let post_run = ci.step_log(&old_job_id, "post-run");
    assert!(
        post_run.contains(&format!("post-run for {old}: result 2")),
        "{post_run}"
    );
    let pre_run = ci.step_log(&old_job_id, "pre-run");
    assert!(pre_run.contains(&format!("pre-run for {old}")), "{pre_run}");
    if is_on_podman {
        assert_eq!(containers_with_label(&label), Vec::<String>::new());
        assert_eq!(volumes_with_label(&label), Vec::<String>::new());
    }
    let jobs = ci.jobs().await;
    assert_eq!(jobs.len(), 2, "{jobs:#?}");
}

// The trust gate against replays: only bodies GitHub signed, sent again.

/// Sets (or, with None, removes) a prepared delivery's `X-GitHub-Delivery`.
fn with_delivery_id(prepared: &PreparedDelivery, id: Option<&str>) -> PreparedDelivery {
    let mut headers: Vec<(String, String)> = prepared
        .headers
        .iter()
        .filter(|(name, _)| name != "x-github-delivery")
        .cloned()
        .collect();
    if let Some(id) = id {
        headers.push(("x-github-delivery".into(), id.into()));
    }
    PreparedDelivery {
        headers,
        body: prepared.body.clone(),
    }
}

fn reactions_to(state: &FakeState, comment_id: u64) -> usize {
    state
        .reactions
        .iter()
        .filter(|r| r.comment_id == comment_id)
        .count()
}

/// Polls the job board briefly: no job of `sha` may appear.
async fn assert_never_runs(ci: &Ci, sha: &str, why: &str) {
    let ran = poll_until(
        Duration::from_millis(800),
        Duration::from_millis(100),
        || async { ci.jobs().await.into_iter().find(|job| job["sha"] == sha) },
    )
    .await;
    assert!(ran.is_none(), "{why}: {ran:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_ok_approves_nothing_in_process() {
    let ci = Ci::start(Front::InProcess, |_| None, |_| String::new()).await;
    let first = ci.repo.ok_sha.clone();
    ci.github
        .add_pull(131, &first, "Drive-by fix", STRANGER, "CONTRIBUTOR");
    ci.deliver("test-ok.json", |body| {
        retarget_pull_request(body, 131, &first, STRANGER, "CONTRIBUTOR");
        body["pull_request"]["updated_at"] = github_time(-100);
    })
    .await;
    let ok = ci
        .deliver("issue_comment-created.json", |body| {
            retarget_comment(body, 131, 3001, MEMBER, "MEMBER", "/ok-to-test");
            body["comment"]["created_at"] = github_time(-50);
        })
        .await;
    ci.wait_for("the approved head to pass", JOB_DEADLINE, |s| {
        count(s, &first, DEMO, "success") == 1
    })
    .await;

    // The outsider pushes new code; it waits for a new ok.
    let second = ci
        .repo
        .push_pull_request(131, &first, &[("CHANGELOG", "evil\n")], "Second push");
    ci.github
        .add_pull(131, &second, "Drive-by fix", STRANGER, "CONTRIBUTOR");
    ci.pull_request_pushed(131, &first, &second, STRANGER, "CONTRIBUTOR")
        .await;
    ci.wait_for("the new head's waiting status", REPLY_DEADLINE, |s| {
        statuses(s, &second, DEMO) == ["pending:waiting for /ok-to-test from a project member"]
    })
    .await;

    // The captured ok, byte for byte, under a new delivery id and under none.
    let fresh_id = uuid::Uuid::new_v4().to_string();
    for replay in [
        with_delivery_id(&ok, Some(&fresh_id)),
        with_delivery_id(&ok, None),
    ] {
        let (status, text) = ci.post(&replay).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.starts_with("duplicate delivery"), "{text}");
    }
    // The same comment in a body the journal never saw (signed, so it came
    // from GitHub: a redelivery of an `edited` form, a capture from
    // elsewhere), even dated after the push: a comment acts once, ever.
    // (The intake knows the comment by its id while the journal remembers
    // it; the consumed-comment record is what holds for ever after.)
    let (status, text) = ci
        .post(&signed_delivery("issue_comment-created.json", |body| {
            retarget_comment(body, 131, 3001, MEMBER, "MEMBER", "/ok-to-test");
            body["comment"]["updated_at"] = github_time(0);
        }))
        .await;
    assert!(
        status == 202 || text.starts_with("duplicate"),
        "{status} {text}"
    );
    // Another ok, written before the push, delivered late: refused.
    ci.deliver("issue_comment-created.json", |body| {
        retarget_comment(body, 131, 3002, MEMBER, "MEMBER", "/ok-to-test");
        body["comment"]["created_at"] = github_time(-10);
    })
    .await;
    ci.wait_for("the outdated-ok reply", REPLY_DEADLINE, |s| {
        has_reply(s, 131, "changed after this `/ok-to-test` was written")
    })
    .await;
    assert_never_runs(&ci, &second, "a replayed or outdated ok ran the new head").await;
    assert_eq!(ci.github.state(|s| reactions_to(s, 3001)), 1);

    // A member's ok written now approves it.
    ci.comment(131, 3003, MEMBER, "MEMBER", "/ok-to-test").await;
    ci.wait_for("the second head to pass", JOB_DEADLINE, |s| {
        count(s, &second, DEMO, "success") == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_recheck_or_synchronize_does_nothing_in_process() {
    let ci = Ci::start(
        Front::InProcess,
        |repo| Some(repo.broken_sha.clone()),
        |_| String::new(),
    )
    .await;
    let old = ci.repo.ok_sha.clone();
    ci.github.add_pull(132, &old, "Member PR", MEMBER, "MEMBER");
    ci.deliver("test-ok.json", |body| {
        retarget_pull_request(body, 132, &old, MEMBER, "MEMBER");
        body["pull_request"]["updated_at"] = github_time(-100);
    })
    .await;
    ci.wait_for("the head to pass", JOB_DEADLINE, |s| {
        count(s, &old, DEMO, "success") == 1
    })
    .await;
    ci.comment(132, 3101, MEMBER, "MEMBER", "recheck").await;
    ci.wait_for("the recheck to pass", JOB_DEADLINE, |s| {
        count(s, &old, DEMO, "success") == 2
    })
    .await;
    // The recheck again, in a body the journal never saw: nothing runs.
    let (status, text) = ci
        .post(&signed_delivery("issue_comment-created.json", |body| {
            retarget_comment(body, 132, 3101, MEMBER, "MEMBER", "recheck");
            body["comment"]["updated_at"] = github_time(0);
        }))
        .await;
    assert!(
        status == 202 || text.starts_with("duplicate"),
        "{status} {text}"
    );

    // A new head (it hangs while running), then a synchronize announcing the
    // old head, signed but older than the new push.
    let new = ci.repo.broken_sha.clone();
    ci.github.add_pull(132, &new, "Member PR", MEMBER, "MEMBER");
    ci.deliver("pull_request-synchronize.json", |body| {
        retarget_pull_request(body, 132, &new, MEMBER, "MEMBER");
        body["pull_request"]["updated_at"] = github_time(-50);
    })
    .await;
    ci.wait_for_job("running the new head", |job| {
        job["sha"] == new.as_str() && job["state"] == "running"
    })
    .await;
    let (status, text) = ci
        .post(&signed_delivery("pull_request-synchronize.json", |body| {
            retarget_pull_request(body, 132, &old, MEMBER, "MEMBER");
            body["pull_request"]["updated_at"] = github_time(-80);
        }))
        .await;
    assert!(
        status == 202 || text.starts_with("duplicate"),
        "{status} {text}"
    );
    // A `reopened` is not keyed by its head: the dispatcher's check on
    // signed push times is what ignores it.
    ci.deliver("pull_request-synchronize.json", |body| {
        retarget_pull_request(body, 132, &old, MEMBER, "MEMBER");
        body["action"] = Value::from("reopened");
        body["pull_request"]["updated_at"] = github_time(-70);
    })
    .await;
    // Deliveries are dispatched in order: once this is answered the stale
    // synchronize was handled.
    ci.comment(132, 3102, MEMBER, "MEMBER", "/help").await;
    ci.wait_for("the help reply", REPLY_DEADLINE, |s| {
        has_reply(s, 132, "Backends:")
    })
    .await;
    let jobs = ci.jobs().await;
    let new_job = jobs
        .iter()
        .find(|job| job["sha"] == new.as_str())
        .expect("the new head's job");
    assert_eq!(new_job["state"], "running", "{jobs:#?}");
    assert_eq!(jobs.len(), 3, "{jobs:#?}");
    ci.github.state(|s| {
        assert_eq!(count(s, &old, DEMO, "success"), 2);
        assert_eq!(reactions_to(s, 3101), 1);
        assert_eq!(count(s, &new, DEMO, "error"), 0);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ok_for_a_head_whose_push_was_never_seen_asks_for_a_new_one_in_process() {
    // The PR predates the service (or its push was missed in an outage):
    // no push time is known, so no ok can be judged against it.
    let ci = Ci::start(Front::InProcess, |_| None, |_| String::new()).await;
    let sha = ci.repo.ok_sha.clone();
    ci.github
        .add_pull(133, &sha, "Old PR", STRANGER, "CONTRIBUTOR");
    ci.deliver("issue_comment-created.json", |body| {
        retarget_comment(body, 133, 3201, MEMBER, "MEMBER", "/ok-to-test");
        body["comment"]["created_at"] = github_time(-30);
    })
    .await;
    ci.wait_for("the ask for a new ok", REPLY_DEADLINE, |s| {
        has_reply(s, 133, "comment `/ok-to-test` again")
            && statuses(s, &sha, DEMO) == ["pending:waiting for /ok-to-test from a project member"]
    })
    .await;
    assert_never_runs(
        &ci,
        &sha,
        "an ok older than the head's first sighting ran it",
    )
    .await;

    ci.deliver("issue_comment-created.json", |body| {
        retarget_comment(body, 133, 3202, MEMBER, "MEMBER", "/ok-to-test");
        body["comment"]["created_at"] = github_time(2);
    })
    .await;
    ci.wait_for("the approved head to pass", JOB_DEADLINE, |s| {
        count(s, &sha, DEMO, "success") == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outsiders_push_to_a_members_pr_waits_for_an_ok_in_process() {
    let ci = Ci::start(Front::InProcess, |_| None, |_| String::new()).await;
    let first = ci.repo.ok_sha.clone();
    ci.github
        .add_pull(134, &first, "From a fork", MEMBER, "MEMBER");
    // The member opens a PR from the outsider's branch: it runs.
    ci.deliver("test-ok.json", |body| {
        retarget_pull_request(body, 134, &first, MEMBER, "MEMBER");
        body["pull_request"]["head"]["repo"]["owner"]["login"] = Value::from(STRANGER);
        body["pull_request"]["updated_at"] = github_time(-60);
    })
    .await;
    ci.wait_for("the member's head to pass", JOB_DEADLINE, |s| {
        count(s, &first, DEMO, "success") == 1
    })
    .await;
    // The outsider pushes to their branch: held.
    let second = ci
        .repo
        .push_pull_request(134, &first, &[("CHANGELOG", "unreviewed\n")], "Push");
    ci.github
        .add_pull(134, &second, "From a fork", MEMBER, "MEMBER");
    ci.deliver("pull_request-synchronize.json", |body| {
        retarget_pull_request(body, 134, &second, MEMBER, "MEMBER");
        body["pull_request"]["head"]["repo"]["owner"]["login"] = Value::from(STRANGER);
        body["pull_request"]["updated_at"] = github_time(-30);
        body["sender"]["login"] = Value::from(STRANGER);
    })
    .await;
    ci.wait_for("the pushed head's waiting status", REPLY_DEADLINE, |s| {
        statuses(s, &second, DEMO) == ["pending:waiting for /ok-to-test from a project member"]
    })
    .await;
    assert_never_runs(&ci, &second, "an outsider's push ran unreviewed").await;
    ci.comment(134, 3301, MEMBER, "MEMBER", "/ok-to-test").await;
    ci.wait_for("the reviewed push to pass", JOB_DEADLINE, |s| {
        count(s, &second, DEMO, "success") == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_listed_by_numeric_id_is_trusted_under_any_login_in_process() {
    let ci = Ci::start(
        Front::InProcess,
        |_| None,
        |_| "TRUSTED_USERS=\"424242\"\n".to_string(),
    )
    .await;
    let (listed, impostor) = (ci.repo.ok_sha.clone(), ci.repo.broken_sha.clone());
    ci.github
        .add_pull(135, &listed, "Renamed bot", "renamed-bot", "CONTRIBUTOR");
    ci.deliver("test-ok.json", |body| {
        retarget_pull_request(body, 135, &listed, "renamed-bot", "CONTRIBUTOR");
        body["pull_request"]["user"]["id"] = Value::from(424242);
    })
    .await;
    // Someone who took the login "424242" is not the listed user.
    ci.deliver("test-ok.json", |body| {
        retarget_pull_request(body, 136, &impostor, "424242", "CONTRIBUTOR");
        body["pull_request"]["user"]["id"] = Value::from(7);
    })
    .await;
    ci.wait_for(
        "the listed id's head to pass and the other to wait",
        JOB_DEADLINE,
        |s| {
            count(s, &listed, DEMO, "success") == 1
                && statuses(s, &impostor, DEMO)
                    == ["pending:waiting for /ok-to-test from a project member"]
        },
    )
    .await;
}
