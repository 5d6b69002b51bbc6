//! The web UI and JSON API over real HTTP: the whole service started in
//! process (`service::start`: routes, scheduler, job logs, webhook intake,
//! dispatcher and status outbox posting to the fake GitHub), with a scripted
//! job runner the test drives line by line (the real executor on Podman is
//! exercised by tests/browser.rs through `ember-ci serve`).

use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::wait::poll_until;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ember_ci::config::Config;
use ember_ci::executor::{CancelSignal, Job, StepObserver, StepResult};
use ember_ci::github::Reporter;
use ember_ci::model::{BackendName, CommitSha, JobId, JobOutcome, JobRequest, PrNumber, Step};
use ember_ci::scheduler::{Enqueued, JobRunner, Scheduler};
use ember_ci::service::Parts;
use fake_github::FakeGitHub;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
/// How often a test asks the UI again.
const POLL: Duration = Duration::from_millis(20);

const WEBHOOK_SECRET: &str = "webhook-secret-4321";
const ALPHA_PASSWORD: &str = "array-password-9876";
const BETA_PASSWORD: &str = "beta-san-pw-5555";
const EXTRA_SECRET: &str = "extra-secret-7777";
const ADMIN_TOKEN: &str = "admin-token-2468";

/// What the scripted runner does next in the running job.
enum Command {
    Say(String),
    Finish,
}

/// Runs each job as: fetch (passes), then sanity, printing what the test
/// sends until told to finish. Backend `alpha` passes, `beta` fails with a
/// reason that quotes a secret (the UI must mask it).
struct ScriptedRunner {
    commands: Mutex<mpsc::UnboundedReceiver<Command>>,
    /// What host hygiene "could not remove": set once a `beta` job ran.
    left_on_host: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl JobRunner for ScriptedRunner {
    async fn run(
        &self,
        job: &Job,
        observer: &dyn StepObserver,
        cancel: CancelSignal,
    ) -> JobOutcome {
        let passed = |duration_ms| StepResult {
            exit_code: Some(0),
            duration: Duration::from_millis(duration_ms),
            note: None,
        };
        observer.step_started(Step::Fetch);
        observer.output(Step::Fetch, b"fetched refs/pull/1/head\n");
        observer.step_finished(Step::Fetch, &passed(1200));
        observer.step_started(Step::Sanity);
        observer.output(
            Step::Sanity,
            format!("sanity starts, token {EXTRA_SECRET}\n").as_bytes(),
        );
        let mut commands = self.commands.lock().await;
        loop {
            let command = tokio::select! {
                command = commands.recv() => command,
                _ = cancel.cancelled() => {
                    observer.step_finished(Step::Sanity, &StepResult { exit_code: None, duration: Duration::from_millis(5), note: Some("cancelled".into()) });
                    return cancel.outcome();
                }
            };
            match command {
                Some(Command::Say(line)) => observer.output(Step::Sanity, line.as_bytes()),
                Some(Command::Finish) | None => break,
            }
        }
        if job.request.backend.as_str() == "beta" {
            *self.left_on_host.lock().expect("lock") = vec![format!(
                "loop device /dev/loop7 (/srv/{BETA_PASSWORD}.img): losetup failed: busy"
            )];
            let reason = format!("2 tests failed; array said password={BETA_PASSWORD}");
            observer.step_finished(
                Step::Sanity,
                &StepResult {
                    exit_code: Some(1),
                    duration: Duration::from_millis(3400),
                    note: Some(reason.clone()),
                },
            );
            JobOutcome::Failure {
                step: Step::Sanity,
                reason,
            }
        } else {
            observer.step_finished(Step::Sanity, &passed(3400));
            JobOutcome::Success
        }
    }

    fn host_problems(&self) -> Vec<String> {
        self.left_on_host.lock().expect("lock").clone()
    }

    fn host_statuses(&self) -> Vec<ember_ci::executor::HostStatus> {
        vec![ember_ci::executor::HostStatus {
            name: ember_ci::config::HostName::local(),
            is_reachable: true,
            problem: None,
            left_behind: self.host_problems(),
        }]
    }
}

/// The web UI on 127.0.0.1:0 in front of a real scheduler.
struct Ui {
    url: String,
    /// The webhook's base URL: another listener.
    hook_url: String,
    scheduler: Scheduler,
    commands: mpsc::UnboundedSender<Command>,
    http: reqwest::Client,
    _github: FakeGitHub,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_ui(admin_token: Option<&str>) -> Ui {
    let github = FakeGitHub::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    let admin = admin_token
        .map(|t| format!("WEB_ADMIN_TOKEN=\"{t}\"\n"))
        .unwrap_or_default();
    let config_text = format!(
        "GH_TOKEN=\"{token}\"\nGH_API_URL=\"{api}\"\nGH_EMBER_SECRET=\"{WEBHOOK_SECRET}\"\n\
         CI_DIR=\"{state}\"\nNUM_DRIVERS=2\n\
         DRIVER_NAME_1=alpha\nDRIVER_CONFIG_1='{{\"name\":\"alpha\",\"driver\":\"LVMVolume\",\"password\":\"{ALPHA_PASSWORD}\"}}'\n\
         PRE_RUN_1='echo preparing with {ALPHA_PASSWORD}'\n\
         DRIVER_NAME_2=beta\nDRIVER_CONFIG_2='{{\"name\":\"beta\",\"driver\":\"LVMVolume\",\"san_password\":\"{BETA_PASSWORD}\"}}'\n\
         SECRETS=\"{EXTRA_SECRET}\"\n{admin}LOGS_REPO=\"\"\n",
        token = github.token(),
        api = github.url(),
        state = dir.path().join("state").display(),
    );
    std::fs::write(config_dir.join("config"), config_text).expect("writing config");
    let config = Config::load_with_env(&config_dir, &HashMap::new())
        .unwrap_or_else(|e| panic!("test config: {e}"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0");
    let (commands, receiver) = mpsc::unbounded_channel();
    let parts = Parts {
        ui_listener: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the UI's 127.0.0.1:0"),
        runner: Arc::new(ScriptedRunner {
            commands: Mutex::new(receiver),
            left_on_host: Default::default(),
        }),
        reporter: Arc::new(Reporter::from_config(&config.github).expect("GitHub client")),
        listener,
    };
    let shutdown = CancellationToken::new();
    let running = ember_ci::service::start(config, parts, shutdown.clone())
        .await
        .expect("the service starts");
    let url = format!("http://{}", running.ui_address());
    let hook_url = format!("http://{}", running.address());
    let scheduler = running.scheduler().clone();
    Ui {
        url,
        hook_url,
        scheduler,
        commands,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        _github: github,
        shutdown,
        _dir: dir,
    }
}

fn request(pr: u64, sha_digit: char, backend: &str) -> JobRequest {
    JobRequest {
        pr: PrNumber::new(pr).expect("pr"),
        sha: CommitSha::new(&sha_digit.to_string().repeat(40)).expect("sha"),
        backend: BackendName::new(backend).expect("backend"),
    }
}

impl Ui {
    fn enqueue(&self, request: JobRequest) -> JobId {
        match self.scheduler.enqueue(request) {
            Enqueued::Queued(id) => id,
            other => panic!("job not queued: {other:?}"),
        }
    }

    fn say(&self, line: &str) {
        self.commands
            .send(Command::Say(format!("{line}\n")))
            .expect("runner alive");
    }

    fn finish_running_job(&self) {
        self.commands.send(Command::Finish).expect("runner alive");
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        form: Option<&str>,
    ) -> (u16, HashMap<String, String>, String) {
        let mut request = self.http.post(format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(form) = form {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.to_string());
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        (status, headers, response.text().await.expect("body"))
    }

    /// Polls `/api/jobs/{id}` until `condition` holds on it.
    async fn wait_for_job(
        &self,
        id: &JobId,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/api/jobs/{id}");
        let found = poll_until(WAIT, POLL, || async {
            Some(self.get_json(&path).await).filter(|job| condition(job))
        })
        .await;
        match found {
            Some(job) => job,
            None => panic!(
                "timed out waiting for job {id} {what}; last: {:#}",
                self.get_json(&path).await
            ),
        }
    }

    async fn wait_until_at_sanity(&self, id: &JobId) -> Value {
        self.wait_for_job(id, "at sanity", |job| {
            job["state"] == "running" && job["step"] == "sanity"
        })
        .await
    }

    async fn wait_until_finished(&self, id: &JobId) -> Value {
        self.wait_for_job(id, "to finish", |job| job["state"] == "finished")
            .await
    }
}

fn ids(jobs: &Value) -> Vec<String> {
    jobs.as_array()
        .expect("a list of jobs")
        .iter()
        .map(|job| job["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn job_list_filters_by_state_backend_and_pr() {
    let ui = start_ui(None).await;
    let first = ui.enqueue(request(1, 'a', "alpha"));
    let second = ui.enqueue(request(2, 'b', "beta"));
    let third = ui.enqueue(request(3, 'c', "alpha"));
    ui.wait_until_at_sanity(&first).await;

    let all = ui.get_json("/api/jobs").await;
    assert_eq!(
        ids(&all),
        [&third, &second, &first].map(|id| id.to_string()),
        "newest first"
    );
    let cases = [
        ("?state=running", vec![&first]),
        ("?state=queued", vec![&third, &second]),
        ("?state=finished", vec![]),
        ("?backend=beta", vec![&second]),
        ("?pr=3", vec![&third]),
        ("?pr=%233&backend=alpha", vec![&third]),
        ("?pr=3&backend=beta", vec![]),
        ("?backend=alpha&state=queued", vec![&third]),
    ];
    for (query, expected) in cases {
        let jobs = ui.get_json(&format!("/api/jobs{query}")).await;
        let expected: Vec<String> = expected.iter().map(|id| id.to_string()).collect();
        assert_eq!(ids(&jobs), expected, "/api/jobs{query}");
    }

    let running = &all[2];
    assert_eq!(running["pr"], 1);
    assert_eq!(running["backend"], "alpha");
    assert_eq!(running["short_sha"], "aaaaaaa");
    assert_eq!(running["step"], "sanity");
    assert_eq!(running["page_url"], format!("/jobs/{first}"));
    assert!(running["duration_secs"].as_f64().is_some(), "{running}");

    for (query, reason) in [
        ("?state=bogus", "state must be"),
        ("?colour=red", "unknown filter `colour`"),
        ("?pr=abc", "pull request number"),
        ("?backend=a%20b", "backend"),
    ] {
        let (status, body) = ui.get(&format!("/api/jobs{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(reason), "{query}: {body}");
    }
}

#[tokio::test]
async fn job_detail_has_steps_and_unknown_jobs_are_404() {
    let ui = start_ui(None).await;
    let id = ui.enqueue(request(7, 'd', "alpha"));
    let running = ui.wait_until_at_sanity(&id).await;
    let steps: Vec<(&str, &str)> = running["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or("?"),
                s["state"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(steps, [("fetch", "passed"), ("sanity", "running")]);
    assert_eq!(running["steps"][0]["duration_secs"], 1.2);
    assert_eq!(
        running["steps"][0]["log_url"],
        format!("/jobs/{id}/01-fetch.txt")
    );

    ui.finish_running_job();
    let done = ui.wait_until_finished(&id).await;
    assert_eq!(done["result"], "success");
    assert_eq!(done["description"], "CSI sanity passed");
    assert_eq!(done["steps"][1]["state"], "passed");
    assert_eq!(done["steps"][1]["duration_secs"], 3.4);
    assert_eq!(done["details_url"], format!("{}/jobs/{id}/", ui.url));

    for path in [
        "/api/jobs/20990101000000-abcdef",
        "/api/jobs/..%2F..%2Fetc",
        "/jobs/20990101000000-abcdef",
        "/jobs/20990101000000-abcdef/",
    ] {
        let (status, body) = ui.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = ui.get("/api/jobs/20990101000000-abcdef").await;
    assert_eq!((status, body.as_str()), (404, r#"{"error":"no such job"}"#));
    let (status, _) = ui.get("/no/such/page").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn health_and_metrics_count_jobs_queue_and_deliveries() {
    let ui = start_ui(None).await;
    let response = ui
        .http
        .post(format!("{}/change_hook/github", ui.hook_url))
        .header("x-github-event", "ping")
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    assert_eq!(status, 401, "a badly signed delivery is refused: {body}");
    let passing = ui.enqueue(request(1, 'a', "alpha"));
    ui.wait_until_at_sanity(&passing).await;
    let failing = ui.enqueue(request(2, 'b', "beta"));

    let health = ui.get_json("/api/health").await;
    assert_eq!(health["workers"], 1);
    assert_eq!(
        health["jobs"],
        serde_json::json!({"queued": 1, "running": 1})
    );
    assert_eq!(health["github"]["reporting"], "github");
    assert_eq!(health["relay"]["http_endpoint"], true);
    assert_eq!(health["deliveries"]["rejected"], 1);
    assert_eq!(health["deliveries"]["accepted"], 0);
    assert_eq!(health["host_is_clean"], true);
    assert_eq!(
        health["hosts"],
        serde_json::json!([{"name": "local", "slots": 1, "running_jobs": [passing.to_string()],
                            "is_reachable": true, "problem": null, "left_behind": []}])
    );

    ui.finish_running_job();
    ui.wait_until_at_sanity(&failing).await;
    ui.finish_running_job();
    ui.wait_until_finished(&failing).await;
    // Host hygiene's leftovers make the host unhealthy, masked.
    let health = ui.get_json("/api/health").await;
    assert_eq!(health["host_is_clean"], false);
    assert_eq!(
        health["host_problems"],
        serde_json::json!(["loop device /dev/loop7 (/srv/***.img): losetup failed: busy"])
    );
    assert_eq!(health["hosts"][0]["left_behind"], health["host_problems"]);
    let (_, dashboard) = ui.get("/").await;
    assert!(dashboard.contains("UNHEALTHY: a job left"), "{dashboard}");

    let response = ui
        .http
        .get(format!("{}/metrics", ui.url))
        .send()
        .await
        .expect("GET /metrics");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        response.headers()
    );
    let metrics = response.text().await.expect("body");
    for line in [
        "# TYPE ember_ci_jobs_finished_total counter",
        "ember_ci_jobs_finished_total{backend=\"alpha\",result=\"success\"} 1",
        "ember_ci_jobs_finished_total{backend=\"beta\",result=\"failure\"} 1",
        "ember_ci_job_duration_seconds_count{backend=\"beta\",result=\"failure\"} 1",
        "ember_ci_jobs_queued 0",
        "ember_ci_jobs_running 0",
        "ember_ci_workers 1",
        "ember_ci_webhook_deliveries_total{outcome=\"accepted\"} 0",
        "ember_ci_webhook_deliveries_total{outcome=\"rejected\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in:\n{metrics}"
        );
    }
    let sum_line = metrics
        .lines()
        .find(|l| l.starts_with("ember_ci_job_duration_seconds_sum{backend=\"alpha\""))
        .expect("duration sum for alpha");
    let sum: f64 = sum_line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(sum > 0.0, "{sum_line}");
    // Statuses reach the fake GitHub, so the outbox drains.
    let drained = poll_until(WAIT, POLL, || async {
        (ui.get_json("/api/health").await["github"]["statuses_waiting"] == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "outbox never drained");
}

#[tokio::test]
async fn pages_show_jobs_steps_backends_and_logs_without_javascript() {
    let ui = start_ui(None).await;
    let passing = ui.enqueue(request(11, 'a', "alpha"));
    ui.wait_until_at_sanity(&passing).await;
    ui.say("sanity: check one passed");

    let (status, dashboard) = ui.get("/").await;
    assert_eq!(status, 200);
    assert!(
        dashboard.contains(&format!("<tr id=\"job-{passing}\" data-state=\"running\">")),
        "{dashboard}"
    );
    assert!(
        dashboard.contains("#11") && dashboard.contains("aaaaaaa"),
        "{dashboard}"
    );
    assert!(
        dashboard.contains(&format!("href=\"/jobs/{passing}\"")),
        "{dashboard}"
    );

    let live_line = "sanity: check one passed";
    let job_path = format!("/jobs/{passing}");
    let job_page = poll_until(WAIT, POLL, || async {
        let (status, page) = ui.get(&job_path).await;
        assert_eq!(status, 200);
        Some(page).filter(|page| page.contains(live_line))
    })
    .await
    .unwrap_or_else(|| panic!("live log tail never showed {live_line:?}"));
    assert!(job_page.contains("id=\"live-log\""), "{job_page}");
    assert!(
        job_page.contains(&format!("action=\"/jobs/{passing}/cancel\"")),
        "a no-JS cancel form: {job_page}"
    );
    assert!(
        job_page.contains("<tr id=\"step-fetch\">") && job_page.contains("<tr id=\"step-sanity\">"),
        "{job_page}"
    );

    // While the job runs, the log index is a plain list of its step files.
    let (status, index) = ui.get(&format!("/jobs/{passing}/")).await;
    assert_eq!(status, 200);
    assert!(
        index.contains(&format!("href=\"/jobs/{passing}/02-sanity.txt\"")),
        "{index}"
    );

    ui.finish_running_job();
    ui.wait_until_finished(&passing).await;
    let failing = ui.enqueue(request(12, 'b', "beta"));
    ui.wait_until_at_sanity(&failing).await;
    ui.finish_running_job();
    ui.wait_until_finished(&failing).await;

    let (_, job_page) = ui.get(&format!("/jobs/{failing}")).await;
    assert!(job_page.contains("2 tests failed"), "{job_page}");
    assert!(
        job_page.contains(&format!("action=\"/jobs/{failing}/rerun\"")),
        "{job_page}"
    );
    assert!(
        !job_page.contains("id=\"live-log\""),
        "no live log once finished"
    );

    let (status, backends) = ui.get("/backends").await;
    assert_eq!(status, 200);
    assert!(
        backends.contains("<code>3rdparty/alpha</code>")
            && backends.contains("<code>3rdparty/beta</code>"),
        "{backends}"
    );
    assert!(
        backends.contains("100% (1 of 1)") && backends.contains("0% (0 of 1)"),
        "{backends}"
    );
    assert!(
        backends.contains("ember-ci configuration from"),
        "the config summary: {backends}"
    );

    // Once finished, the log index is the page the logs module rendered.
    let (status, index) = ui.get(&format!("/jobs/{passing}/")).await;
    assert_eq!(status, 200);
    assert!(index.contains("href=\"02-sanity.txt\""), "{index}");
    let (status, raw) = ui.get(&format!("/jobs/{passing}/02-sanity.txt")).await;
    assert_eq!(status, 200);
    assert!(raw.contains("sanity: check one passed"), "{raw}");
    let (status, _) = ui.get(&format!("/jobs/{passing}/no-such-file.txt")).await;
    assert_eq!(status, 404);
}

/// Reads SSE events from a response until `stop` says so.
async fn read_events(response: reqwest::Response, mut on_event: impl FnMut(&str, &str) -> bool) {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("timed out waiting for events")
            .expect("the stream ended early")
            .expect("reading the stream");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = "message";
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(event) = line.strip_prefix("event:") {
                    name = event;
                } else if let Some(text) = line.strip_prefix("data:") {
                    data.push(text);
                }
            }
            if !data.is_empty() && !on_event(name, &data.join("\n")) {
                return;
            }
        }
    }
}

#[tokio::test]
async fn live_log_streams_lines_as_written_then_says_done() {
    let ui = start_ui(None).await;
    let id = ui.enqueue(request(5, 'e', "alpha"));
    ui.wait_until_at_sanity(&id).await;
    let response = ui
        .http
        .get(format!("{}/jobs/{id}/live", ui.url))
        .send()
        .await
        .expect("GET live");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    let mut events: Vec<(String, String)> = Vec::new();
    let mut said = false;
    read_events(response, |name, data| {
        events.push((name.to_string(), data.to_string()));
        // Once the stream has caught up with what was written, write more.
        if name == "log" && data.contains("sanity starts") && !said {
            ui.say(&format!("line written later, with {EXTRA_SECRET}"));
            said = true;
        }
        if name == "log" && data.contains("line written later") {
            ui.finish_running_job();
        }
        name != "done"
    })
    .await;

    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"step"), "{events:?}");
    assert!(events[0].1.contains("\"step\":\"sanity\""), "{events:?}");
    assert_eq!(names.last(), Some(&"done"), "{events:?}");
    let done: Value = serde_json::from_str(&events.last().expect("done").1).expect("done is JSON");
    assert_eq!(done["result"], "success");
    let log: String = events
        .iter()
        .filter(|(n, _)| n == "log")
        .map(|(_, d)| d.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(log.contains("line written later, with ***"), "{log}");
    assert!(!log.contains(EXTRA_SECRET), "{log}");

    let (status, _) = ui.get("/jobs/20990101000000-abcdef/live").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn actions_are_refused_without_the_admin_token_and_done_with_it() {
    let ui = start_ui(Some(ADMIN_TOKEN)).await;
    let id = ui.enqueue(request(21, 'f', "alpha"));
    ui.wait_until_at_sanity(&id).await;
    let cancel = format!("/api/jobs/{id}/cancel");

    let (status, headers, body) = ui.post(&cancel, &[], None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("needs the admin token"), "{body}");
    assert!(
        headers
            .get("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{headers:?}"
    );
    let (status, _, body) = ui
        .post(&cancel, &[("authorization", "Bearer wrong-token")], None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("does not match"), "{body}");
    let (status, _, body) = ui
        .post(&format!("/jobs/{id}/cancel"), &[], Some("token="))
        .await;
    assert_eq!(status, 401, "an empty form token is no token: {body}");
    assert_eq!(
        ui.get_json(&format!("/api/jobs/{id}")).await["state"],
        "running",
        "refusals changed nothing"
    );

    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let (status, _, body) = ui
        .post(
            &cancel,
            &[
                ("authorization", &bearer),
                ("origin", "http://evil.example"),
            ],
            None,
        )
        .await;
    assert_eq!((status, body.contains("cross-site")), (403, true), "{body}");
    let (status, _, body) = ui
        .post(
            &cancel,
            &[("authorization", &bearer), ("host", "evil.example:8010")],
            None,
        )
        .await;
    assert_eq!(
        (status, body.contains("not a loopback name")),
        (403, true),
        "{body}"
    );

    let (status, _, body) = ui.post(&cancel, &[("authorization", &bearer)], None).await;
    assert_eq!(status, 202, "{body}");
    let cancelled = ui.wait_until_finished(&id).await;
    assert_eq!(cancelled["result"], "cancelled");
    assert_eq!(
        cancelled["description"],
        "cancelled: cancelled from the web UI"
    );
    let (status, _, body) = ui.post(&cancel, &[("authorization", &bearer)], None).await;
    assert_eq!(
        (status, body.as_str()),
        (409, r#"{"error":"the job is not queued or running"}"#)
    );

    // The no-JS form: the token as a form field, answered with a redirect.
    let (status, _, _) = ui
        .post(&format!("/jobs/{id}/rerun"), &[], Some("token=nope"))
        .await;
    assert_eq!(status, 403);
    let (status, headers, body) = ui
        .post(
            &format!("/jobs/{id}/rerun"),
            &[],
            Some(&format!("token={ADMIN_TOKEN}")),
        )
        .await;
    assert_eq!(status, 303, "{body}");
    let location = headers.get("location").expect("a redirect to the new job");
    let rerun_id = location.strip_prefix("/jobs/").expect("a job page");
    assert_ne!(rerun_id, id.as_str());
    let rerun = ui
        .wait_for_job(&JobId::parse(rerun_id).expect("job id"), "to run", |job| {
            job["state"] == "running"
        })
        .await;
    assert_eq!(
        (rerun["pr"].as_u64(), rerun["backend"].as_str()),
        (Some(21), Some("alpha"))
    );
    assert_eq!(rerun["sha"], "f".repeat(40));

    let (status, _, body) = ui
        .post(
            "/api/jobs/20990101000000-abcdef/rerun",
            &[("authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!((status, body.as_str()), (404, r#"{"error":"no such job"}"#));
    let (status, _, _) = ui
        .post(
            &format!("/api/jobs/{id}/explode"),
            &[("authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn actions_are_disabled_without_an_admin_token() {
    let ui = start_ui(None).await;
    let id = ui.enqueue(request(31, 'a', "beta"));
    ui.wait_until_at_sanity(&id).await;
    let own_origin = ui.url.clone();
    for path in [
        format!("/jobs/{id}/cancel"),
        format!("/api/jobs/{id}/cancel"),
    ] {
        let (status, _, body) = ui
            .post(
                &path,
                &[("origin", &own_origin), ("sec-fetch-site", "same-origin")],
                Some(""),
            )
            .await;
        assert_eq!(
            (status, body.contains("set WEB_ADMIN_TOKEN")),
            (403, true),
            "{body}"
        );
    }
    ui.finish_running_job();
    // It ran to its end: nothing cancelled it.
    assert_ne!(ui.wait_until_finished(&id).await["result"], "cancelled");
}

/// A TCP forwarder to `target` that adds `header` to each request, as a
/// local reverse proxy (nginx, caddy) does; None forwards bytes as they are
/// (ssh -R, a tunnel client). Returns its address.
async fn forwarder(target: String, header: Option<&'static str>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the forwarder");
    let address = listener.local_addr().expect("forwarder address");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let mut first = vec![0; 64 * 1024];
                let Ok(n) = client.read(&mut first).await else {
                    return;
                };
                let mut request = first[..n].to_vec();
                if let (Some(header), Some(end)) =
                    (header, request.windows(2).position(|w| w == b"\r\n"))
                {
                    let line = format!("\r\n{header}");
                    request.splice(end..end, line.into_bytes());
                }
                if upstream.write_all(&request).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn the_ui_answers_local_requests_only_not_through_a_proxy_tunnel_or_rebinding() {
    let ui = start_ui(Some(ADMIN_TOKEN)).await;
    let http = reqwest::Client::new();
    let get = |url: String, host: Option<&'static str>| {
        let mut request = http.get(url);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        async move {
            let response = request.send().await.expect("GET");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        }
    };
    assert_eq!(get(format!("{}/api/jobs", ui.url), None).await.0, 200);

    // A reverse proxy in front of the UI: it says so in its headers.
    let ui_host = ui.url.trim_start_matches("http://").to_string();
    for header in [
        "X-Forwarded-For: 203.0.113.9",
        "Forwarded: for=203.0.113.9",
        "Via: 1.1 caddy",
    ] {
        let proxy = forwarder(ui_host.clone(), Some(header)).await;
        let (status, body) = get(format!("http://{proxy}/api/jobs"), None).await;
        assert_eq!(
            (status, body.contains("through a proxy")),
            (403, true),
            "{header}: {body}"
        );
    }
    // A tunnel to the webhook's port: the UI is not there at all, even
    // with a loopback Host.
    let hook_host = ui.hook_url.trim_start_matches("http://").to_string();
    let tunnel = forwarder(hook_host, None).await;
    let (status, _) = get(format!("http://{tunnel}/api/jobs"), Some("127.0.0.1")).await;
    assert_eq!(status, 404);
    // DNS rebinding: a page of another site, resolved to 127.0.0.1.
    let (status, body) = get(format!("{}/api/jobs", ui.url), Some("evil.example:8011")).await;
    assert_eq!(
        (status, body.contains("not a loopback name")),
        (403, true),
        "{body}"
    );
}

#[tokio::test]
async fn withheld_logs_are_never_served() {
    let ui = start_ui(Some(ADMIN_TOKEN)).await;
    let id = ui.enqueue(request(51, 'a', "alpha"));
    ui.wait_until_at_sanity(&id).await;
    ui.finish_running_job();
    ui.wait_until_finished(&id).await;
    let (status, _) = ui.get(&format!("/jobs/{id}/{JOB_SUMMARY}")).await;
    assert_eq!(status, 200);
    // What the publish gate leaves when a secret survived masking.
    let job_dir = ui._dir.path().join("state/logs").join(id.as_str());
    std::fs::write(job_dir.join(ember_ci::logs::WITHHELD_MARKER), "").expect("marker");
    for path in [format!("/jobs/{id}/"), format!("/jobs/{id}/{JOB_SUMMARY}")] {
        let (status, body) = ui.get(&path).await;
        assert_eq!(
            (status, body.contains("Logs withheld")),
            (403, true),
            "{path}: {body}"
        );
    }
}

const JOB_SUMMARY: &str = ember_ci::logs::JOB_SUMMARY_FILE;

#[tokio::test]
async fn no_secret_appears_on_any_page_or_api_answer() {
    let ui = start_ui(Some(ADMIN_TOKEN)).await;
    let passing = ui.enqueue(request(41, 'a', "alpha"));
    ui.wait_until_at_sanity(&passing).await;
    ui.say(&format!(
        "the array password is {ALPHA_PASSWORD} and {BETA_PASSWORD}"
    ));
    ui.finish_running_job();
    ui.wait_until_finished(&passing).await;
    let failing = ui.enqueue(request(42, 'b', "beta"));
    ui.wait_until_at_sanity(&failing).await;
    ui.finish_running_job();
    let failed = ui.wait_until_finished(&failing).await;
    assert!(
        failed["description"]
            .as_str()
            .is_some_and(|d| d.contains("password=***")),
        "the reason was masked: {failed}"
    );
    let running = ui.enqueue(request(43, 'c', "alpha"));
    ui.wait_until_at_sanity(&running).await;

    let mut paths = vec![
        "/".to_string(),
        "/backends".to_string(),
        "/api/jobs".to_string(),
        "/api/health".to_string(),
        "/metrics".to_string(),
    ];
    for id in [&passing, &failing, &running] {
        paths.push(format!("/jobs/{id}"));
        paths.push(format!("/jobs/{id}/"));
        paths.push(format!("/api/jobs/{id}"));
        paths.push(format!("/jobs/{id}/job.json"));
        let detail = ui.get_json(&format!("/api/jobs/{id}")).await;
        for step in detail["steps"].as_array().expect("steps") {
            paths.push(step["log_url"].as_str().expect("log url").to_string());
        }
    }
    let secrets = [
        WEBHOOK_SECRET,
        ALPHA_PASSWORD,
        BETA_PASSWORD,
        EXTRA_SECRET,
        ADMIN_TOKEN,
        fake_github::DEFAULT_TOKEN,
    ];
    let mut masked_seen = 0;
    for path in &paths {
        let (status, body) = ui.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        for secret in secrets {
            assert!(
                !body.contains(secret),
                "GET {path} shows the secret {secret:?}:\n{body}"
            );
        }
        masked_seen += usize::from(body.contains("***"));
    }
    assert!(
        masked_seen >= 5,
        "secrets were in the data and should show masked ({masked_seen} bodies)"
    );

    // The live stream of the running job, up to its first log lines.
    let response = ui
        .http
        .get(format!("{}/jobs/{running}/live", ui.url))
        .send()
        .await
        .expect("GET live");
    read_events(response, |name, data| {
        for secret in secrets {
            assert!(
                !data.contains(secret),
                "live {name} event shows {secret:?}: {data}"
            );
        }
        name != "log"
    })
    .await;
    ui.finish_running_job();
}
