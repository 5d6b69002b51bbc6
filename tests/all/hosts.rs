//! PODMAN_HOSTS on real parts: a second host on this machine (a network
//! namespace with its own address, sshd and a Podman service inside it,
//! with a store of its own), reached the way a vendor's lab machine is,
//! through ssh. A backend pinned to it runs there while a local one runs
//! here; its sshd killed mid-job ends the job `error` and the job runs
//! again on this host.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ember_ci::config::{Config, HostName};
use ember_ci::github::Reporter;
use ember_ci::model::{BackendName, JobOutcome, JobRequest, PrNumber, Step};
use ember_ci::scheduler::Enqueued;
use ember_ci::service::Parts;
use ember_ci_test_kit::ci_env::containers_with_label;
use ember_ci_test_kit::executor_env::{run_job, start_executor, DemoEnv, GENEROUS};
use ember_ci_test_kit::fake_github::FakeGitHub;
use ember_ci_test_kit::second_host::SecondHost;
use tokio_util::sync::CancellationToken;

const DEMO_JSON: &str =
    r#"{"name": "demo", "driver": "DemoDriver", "password": "demo-array-password"}"#;
const POLL: Duration = Duration::from_millis(300);

/// The demo config plus host `lab` and, with `second_backend`, a backend
/// `demo-lab` pinned to it.
fn lab_keys(lab: &SecondHost, demo_hosts: &str, second_backend: bool) -> String {
    let mut keys = format!(
        "PODMAN_HOSTS=\"{}\"\nDRIVER_HOST_1=\"{demo_hosts}\"\n",
        lab.podman_hosts_entry(1)
    );
    if second_backend {
        keys.push_str(&format!(
            "NUM_DRIVERS=2\nDRIVER_NAME_2=\"demo-lab\"\nDRIVER_CONFIG_2='{DEMO_JSON}'\n\
             SANITY_COMMAND_2=\"/config/sanity.sh 127.0.0.1:50051\"\nDRIVER_HOST_2=\"lab\"\n\
             PRE_RUN_2='echo \"pre-run: preparing the demo array for backend $DRIVER_NAME\"'\n\
             POST_RUN_2='echo \"post-run result=$1\"'\n"
        ));
    }
    keys
}

/// The sandbox step's log of job `id`.
fn sandbox_log(env: &DemoEnv, id: &ember_ci::model::JobId) -> String {
    std::fs::read_dir(env.state_dir.join("logs").join(id.as_str()))
        .expect("the job's logs")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("-sandbox.txt"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .expect("a sandbox step log")
}

/// Command lines of running processes that contain `text`.
fn command_lines_with(text: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .filter(|line| line.contains(text))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_backend_runs_on_its_host_while_a_local_one_runs_here() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let lab = Arc::new(SecondHost::start("lab", &env.config_dir));
    let config = env.config_with(GENEROUS, &lab_keys(&lab, "local", true));
    let executor = start_executor(config).await;

    let local_job = env.job(129);
    let mut lab_job = env.job_for("demo-lab", 129, 901);
    lab_job.host = HostName::new("lab").expect("host name");
    let (local_label, lab_label) = (
        format!("ember-ci.job={}", local_job.id),
        format!("ember-ci.job={}", lab_job.id),
    );
    // Watches both hosts while the jobs run: each sandbox is listed by its
    // own host's Podman only, and at one moment both run.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, lab) = (done.clone(), lab.clone());
        tokio::task::spawn_blocking(move || {
            let mut misplaced = Vec::new();
            let mut both_at_once = false;
            let mut password_in_argv = Vec::new();
            while !done.load(Ordering::SeqCst) {
                // Both "hosts" are this machine: no process on either may
                // carry the backend's password in its command line.
                password_in_argv.extend(command_lines_with("demo-array-password"));
                let here = containers_with_label(&local_label);
                let there = lab.containers_labelled(&lab_label);
                misplaced.extend(containers_with_label(&lab_label));
                misplaced.extend(lab.containers_labelled(&local_label));
                both_at_once |= !here.is_empty() && !there.is_empty();
                std::thread::sleep(POLL);
            }
            (both_at_once, misplaced, password_in_argv)
        })
    };
    let (local_run, lab_run) =
        tokio::join!(run_job(&executor, local_job), run_job(&executor, lab_job));
    done.store(true, Ordering::SeqCst);
    let (both_at_once, misplaced, password_in_argv) = watcher.await.expect("watcher");
    assert!(password_in_argv.is_empty(), "{password_in_argv:?}");

    assert_eq!(local_run.outcome, JobOutcome::Success, "local job");
    assert_eq!(
        lab_run.outcome,
        JobOutcome::Success,
        "lab job: {}",
        lab_run.output_of(Step::Sandbox)
    );
    assert!(both_at_once, "the two sandboxes never ran at the same time");
    assert!(
        misplaced.is_empty(),
        "a sandbox on the wrong host: {misplaced:?}"
    );
    let sandbox = lab_run.output_of(Step::Sandbox);
    assert!(sandbox.contains("on host lab"), "{sandbox}");
    // The suite ran there and its output came back here.
    let sanity = lab_run.output_of(Step::Sanity);
    assert!(sanity.contains("PASS: 1 of 1 checks passed"), "{sanity}");
    assert!(lab_run
        .output_of(Step::PreRun)
        .contains("preparing the demo array for backend demo-lab"));
    lab_run.assert_post_run_result(0);
    // The slot's volume there is measured against its budget.
    let build = lab_run.output_of(Step::Build);
    assert!(build.contains(" budget used"), "{build}");
    // Nothing of the job stays on the host.
    assert_eq!(
        lab.containers_labelled(&format!("ember-ci.job={}", lab_run.job.id)),
        Vec::<String>::new()
    );
    let facts = executor
        .check_host(&HostName::new("lab").unwrap())
        .await
        .expect("lab answers");
    assert_eq!(facts.runtime, "runc");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_lost_mid_job_ends_it_error_and_the_job_runs_again_here() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let mut lab = SecondHost::start("lab", &env.config_dir);
    let github = FakeGitHub::start().await;
    let keys = format!(
        "{}GH_TOKEN=\"{}\"\nGH_API_URL=\"{}\"\nGH_REPO=\"{}\"\n",
        lab_keys(&lab, "lab local", false),
        github.token(),
        github.url(),
        github.repo()
    );
    let config: Arc<Config> = env.config_with(GENEROUS, &keys);
    let parts = Parts {
        ui_listener: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("ui port"),
        runner: Arc::new(start_executor(config.clone()).await),
        reporter: Arc::new(Reporter::from_config(&config.github).expect("reporter")),
        listener: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("port"),
    };
    let shutdown = CancellationToken::new();
    let service = ember_ci::service::start((*config).clone(), parts, shutdown.clone())
        .await
        .expect("the service starts");
    let sha = env.head(129);
    let request = JobRequest {
        pr: PrNumber::new(129).unwrap(),
        sha: sha.clone(),
        backend: BackendName::new("demo").unwrap(),
    };
    let Enqueued::Queued(first) = service.scheduler().enqueue(request) else {
        panic!("not queued");
    };
    let label = format!("ember-ci.job={first}");
    ember_ci_test_kit::wait::wait_until_every(
        "the job's sandbox on lab",
        Duration::from_secs(300),
        POLL,
        || !lab.containers_labelled(&label).is_empty(),
    )
    .await;
    lab.kill_sshd();

    github
        .wait_for_last_state(sha.as_str(), "success", Duration::from_secs(600))
        .await
        .expect("the re-run succeeds");
    let descriptions: Vec<String> = github
        .statuses_for(sha.as_str())
        .iter()
        .map(|s| format!("{}: {}", s.state, s.description.clone().unwrap_or_default()))
        .collect();
    assert!(
        descriptions
            .iter()
            .any(|d| d.starts_with("error: ") && d.contains("host lab unreachable")),
        "{descriptions:?}"
    );
    let jobs = service.scheduler().board().jobs();
    let rerun = jobs.iter().find(|j| j.id != first).expect("a second job");
    let sandbox = sandbox_log(&env, &rerun.id);
    assert!(!sandbox.contains("on host lab"), "{sandbox}");
    // The dashboard's JSON shows lab lost (its sshd is gone for good).
    let health: serde_json::Value =
        reqwest::get(format!("http://{}/api/health", service.ui_address()))
            .await
            .expect("GET /api/health")
            .json()
            .await
            .expect("health JSON");
    assert_eq!(health["hosts"][1]["name"], "lab", "{health}");
    assert_eq!(health["hosts"][1]["is_reachable"], false, "{health}");

    // The lost job's sandbox is still there; once lab answers again, the
    // next job there sweeps it first.
    assert!(!lab.containers_labelled(&label).is_empty());
    lab.start_sshd();
    let ui = service.ui_address();
    ember_ci_test_kit::wait::poll_until(Duration::from_secs(30), POLL, || async {
        let health: serde_json::Value = reqwest::get(format!("http://{ui}/api/health"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (health["hosts"][1]["is_reachable"] == true).then_some(())
    })
    .await
    .expect("lab answers again");
    let Enqueued::Queued(third) = service.scheduler().enqueue_rerun(JobRequest {
        pr: PrNumber::new(129).unwrap(),
        sha: sha.clone(),
        backend: BackendName::new("demo").unwrap(),
    }) else {
        panic!("not queued");
    };
    ember_ci_test_kit::wait::wait_until("the job on lab again", Duration::from_secs(300), || {
        service
            .scheduler()
            .board()
            .job(&third)
            .is_some_and(|j| j.outcome.is_some())
    })
    .await;
    assert!(
        lab.containers_labelled(&label).is_empty(),
        "the lost job's sandbox stays on lab"
    );
    assert!(sandbox_log(&env, &third).contains("on host lab"));
    shutdown.cancel();
    service.stopped().await.expect("the service stops");
}

/// Loop devices whose backing file is named `name`, as this kernel lists
/// them (every "host" here shares it).
fn loop_devices_backed_by(name: &str) -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
        .filter_map(|entry| {
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            backing
                .contains(name)
                .then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hygiene_on_a_remote_host_removes_the_loop_device_its_job_left() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let lab = SecondHost::start("lab", &env.config_dir);
    // Named for this test, so no other test's device is taken for it.
    let image = "ember-lab-hygiene.img";
    let keys = format!(
        "{}PRE_RUN_1='truncate -s 8M \"$SCRATCH_DIR/{image}\" \
         && echo \"attached $(losetup --show -f \"$SCRATCH_DIR/{image}\")\"'\n",
        lab_keys(&lab, "lab", false)
    );
    let executor = start_executor(env.config_with(GENEROUS, &keys)).await;
    let mut job = env.job(129);
    job.host = HostName::new("lab").expect("host name");

    let run = run_job(&executor, job).await;
    let (pre_run, cleanup) = (run.output_of(Step::PreRun), run.output_of(Step::Cleanup));
    assert_eq!(run.outcome, JobOutcome::Success, "{pre_run}\n{cleanup}");
    assert!(pre_run.contains("attached /dev/loop"), "{pre_run}");
    let hygiene = cleanup
        .split("== host hygiene ==")
        .nth(1)
        .unwrap_or_else(|| panic!("no hygiene section: {cleanup}"));
    assert!(
        hygiene
            .lines()
            .any(|line| line.starts_with("removed loop device /dev/loop") && line.contains(image)),
        "{cleanup}"
    );
    assert_eq!(loop_devices_backed_by(image), Vec::<String>::new());
    // Other tests' devices may come and go meanwhile (one kernel here).
    let problems = executor.host_problems();
    assert!(!problems.iter().any(|p| p.contains(image)), "{problems:?}");
}
