//! The executor on real Podman and real git: the demo plugin's PRs #129
//! (passes), #130 (dies at start) and a never-serving #131, timeouts,
//! cancellation, and what is left afterwards.
//!
//! Needs root Podman with runc and the local registry seeded with
//! docker.io/library/debian:bookworm (the test kit starts it)
//! (scripts/setup-host.sh). Each case has its own state dir (so its own
//! image stores); they run one at a time to keep a 2-core CI host calm.

use ember_ci_test_kit::executor_env;
use ember_ci_test_kit::wait::wait_until_every;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_ci::config::DriverConfig;
use ember_ci::executor::CancelSignal;
use ember_ci::model::{JobOutcome, StatusState, Step};
use executor_env::{
    assert_nothing_left, run_job, run_job_observed, run_ok, start_executor, DemoEnv,
    RecordingObserver, Timeouts, GENEROUS, NEVER_SERVING_PR,
};

#[tokio::test]
async fn passing_pr_succeeds_and_second_run_reuses_the_layer_cache() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let executor = start_executor(env.config(GENEROUS)).await;

    let started = Instant::now();
    let first = run_job(&executor, env.job(129)).await;
    eprintln!(
        "TIMING first #129 job: {:.1}s",
        started.elapsed().as_secs_f32()
    );
    assert_eq!(first.outcome, JobOutcome::Success);
    first.observer.assert_steps_paired();
    assert_eq!(
        first.observer.started_steps(),
        [
            Step::Fetch,
            Step::Sandbox,
            Step::PreRun,
            Step::Build,
            Step::DriverConfig,
            Step::StartPlugin,
            Step::WaitPlugin,
            Step::Sanity,
            Step::PostRun,
            Step::Cleanup
        ]
    );
    assert!(first
        .output_of(Step::PreRun)
        .contains("preparing the demo array for backend demo"));
    let sanity = first.output_of(Step::Sanity);
    assert!(
        sanity.contains("plugin answered: ember-csi-demo OK driver=DemoDriver"),
        "{sanity}"
    );
    assert!(sanity.contains("SUCCESS! -- 1 Passed"), "{sanity}");
    first.assert_post_run_result(0);
    // The plugin's own log is kept, and the backend password never shows in a command line.
    let cleanup = first.output_of(Step::Cleanup);
    assert!(cleanup.contains("serving driver DemoDriver"), "{cleanup}");
    assert!(!first
        .output_of(Step::StartPlugin)
        .contains("demo-array-password"));
    assert_nothing_left(&env, &first.job.id);

    let started = Instant::now();
    let second = run_job(&executor, env.job(129)).await;
    eprintln!(
        "TIMING warm #129 job: {:.1}s",
        started.elapsed().as_secs_f32()
    );
    assert_eq!(second.outcome, JobOutcome::Success);
    let build = second.output_of(Step::Build);
    assert!(
        build.contains("Using cache"),
        "second build did not reuse layers:\n{build}"
    );
    assert_nothing_left(&env, &second.job.id);
}

#[tokio::test]
async fn broken_pr_fails_naming_the_plugin_exit() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let executor = start_executor(env.config(GENEROUS)).await;

    let run = run_job(&executor, env.job(130)).await;

    let JobOutcome::Failure { step, reason } = &run.outcome else {
        panic!("expected a failure, got {:?}", run.outcome);
    };
    assert!(
        matches!(step, Step::WaitPlugin | Step::StartPlugin),
        "failed at {step}"
    );
    assert!(reason.starts_with("plugin exited with code"), "{reason}");
    // The plugin's dying words are in the log.
    assert!(run.output_of(*step).contains("broken on purpose"));
    run.assert_post_run_result(1);
    assert_eq!(
        run.observer.finished(Step::Sanity),
        None,
        "sanity ran after a failed start"
    );
    run.assert_ended_cleanly(&env);
}

#[tokio::test]
async fn never_serving_plugin_is_an_error_within_the_start_timeout() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let plugin_start = Duration::from_secs(5);
    let executor = start_executor(env.config(Timeouts {
        job: Duration::from_secs(900),
        plugin_start,
    }))
    .await;

    let run = run_job(&executor, env.job(NEVER_SERVING_PR)).await;

    assert_eq!(
        run.outcome,
        JobOutcome::Error {
            step: Step::WaitPlugin,
            reason: "plugin start timed out: not serving after 5s (PLUGIN_START_TIMEOUT)".into()
        }
    );
    let waited = run
        .observer
        .finished(Step::WaitPlugin)
        .expect("wait-plugin finished")
        .duration;
    assert!(
        waited >= plugin_start && waited < plugin_start + Duration::from_secs(60),
        "waited {waited:?}"
    );
    run.assert_post_run_result(2);
    run.assert_ended_cleanly(&env);
}

#[tokio::test]
async fn job_timeout_abandons_the_step_and_still_runs_post_run_and_cleanup() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let executor = start_executor(env.config(Timeouts {
        job: Duration::from_secs(8),
        plugin_start: Duration::from_secs(600),
    }))
    .await;
    // A cold sandbox image build must not eat the job's 8 seconds.
    executor
        .ensure_sandbox_image(&RecordingObserver::default())
        .await
        .expect("sandbox image");

    let started = Instant::now();
    let run = run_job(&executor, env.job(NEVER_SERVING_PR)).await;

    let JobOutcome::TimedOut { step, after_secs } = &run.outcome else {
        panic!("expected a timeout, got {:?}", run.outcome);
    };
    assert_eq!(*after_secs, 8);
    assert!(
        run.outcome
            .description()
            .ends_with(": job timed out after 8s (JOB_TIMEOUT)"),
        "{}",
        run.outcome.description()
    );
    assert_eq!(run.outcome.status_state(), StatusState::Error);
    let abandoned = run
        .observer
        .finished(*step)
        .expect("abandoned step reported");
    assert_eq!(
        abandoned.note.as_deref(),
        Some("abandoned: the job timed out")
    );
    run.assert_post_run_result(2);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    run.assert_ended_cleanly(&env);
}

#[tokio::test]
async fn cancelled_job_runs_post_run_and_cleanup() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let executor = start_executor(env.config(GENEROUS)).await;
    let cancel = CancelSignal::new();
    let observer = RecordingObserver::cancelling_at(Step::WaitPlugin, cancel.clone());

    let run = run_job_observed(&executor, env.job(NEVER_SERVING_PR), observer, cancel).await;

    assert_eq!(
        run.outcome,
        JobOutcome::Cancelled {
            reason: "cancelled at wait-plugin".into()
        }
    );
    let abandoned = run
        .observer
        .finished(Step::WaitPlugin)
        .expect("wait-plugin reported");
    assert_eq!(
        abandoned.note.as_deref(),
        Some("abandoned: the job was cancelled")
    );
    assert_eq!(run.observer.finished(Step::Sanity), None);
    run.assert_post_run_result(2);
    run.assert_ended_cleanly(&env);
}

#[tokio::test]
async fn commit_missing_from_the_pr_ref_is_an_error_at_fetch() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let executor = start_executor(env.config(GENEROUS)).await;
    // #130's head is a descendant of #129's, so fetching #129 cannot bring it.
    let mut job = env.job(129);
    job.request.sha = env.head(130);

    let run = run_job(&executor, job).await;

    assert_eq!(
        run.outcome,
        JobOutcome::Error {
            step: Step::Fetch,
            reason: format!(
                "commit {} not found in refs/pull/129/head",
                env.head(130).short()
            ),
        }
    );
    let post_run = run
        .observer
        .finished(Step::PostRun)
        .expect("post-run reported");
    assert_eq!(
        post_run.note.as_deref(),
        Some("skipped: the job ended before its sandbox started")
    );
    run.assert_ended_cleanly(&env);
}

/// The sweep runs against a Podman of its own (separate storage root), so
/// it cannot touch the jobs of anything else running on this host. Pods
/// without an infra container need no image, so they stand in for
/// containers here.
#[tokio::test]
async fn sweep_removes_this_instances_job_leftovers_only() {
    let env = DemoEnv::new();
    let root = env.dir.path().join("podman-root");
    let runroot = env.dir.path().join("podman-runroot");
    let tmpdir = env.dir.path().join("podman-tmp");
    let socket = env.dir.path().join("isolated.sock");
    let podman = |args: &[&str]| {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .arg("--tmpdir")
            .arg(&tmpdir)
            .args(args);
        command
    };
    let mut service = tokio::process::Command::from(podman(&["system", "service", "--time=0"]));
    let mut service = service
        .arg(format!("unix://{}", socket.display()))
        .kill_on_drop(true)
        .spawn()
        .expect("isolated podman service");
    wait_until_every(
        "the isolated podman service to start",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || socket.exists(),
    )
    .await;
    let mut config = (*env.config(GENEROUS)).clone();
    config.executor.podman_socket = Some(socket.clone());
    let executor = start_executor(Arc::new(config)).await;
    let ours = format!("ember-ci.instance={}", executor.instance_id());
    let theirs = "ember-ci.instance=another-instance";
    for (name, instance) in [("our-leftover", ours.as_str()), ("their-job", theirs)] {
        let labels = ["--label", "ember-ci.job=crashed-job", "--label", instance];
        run_ok(&mut podman(
            &[&["volume", "create"][..], &labels, &[name]].concat(),
        ));
        run_ok(&mut podman(
            &[
                &["pod", "create", "--infra=false", "--name", name][..],
                &labels,
            ]
            .concat(),
        ));
    }
    let leftover_dir = env.state_dir.join("jobs").join("crashed-job");
    std::fs::create_dir_all(leftover_dir.join("src")).expect("leftover work dir");
    let scratch = env.state_dir.join("tmp").join("sandbox-image-0123-1");
    std::fs::create_dir_all(&scratch).expect("leftover build context");
    let store = env.slot_store(0);
    std::fs::create_dir_all(&store).expect("a slot store");

    let removed = executor.sweep_leftovers().await.expect("sweep");

    assert_eq!(
        removed, 4,
        "one volume, one pod, one work dir, one scratch dir"
    );
    assert!(!leftover_dir.exists());
    assert!(!scratch.exists());
    assert!(store.exists(), "the layer cache must survive");
    let volumes = run_ok(&mut podman(&["volume", "ls", "-q"]));
    assert_eq!(volumes.trim(), "their-job", "another instance's volume");
    let pods = run_ok(&mut podman(&["pod", "ps", "--format", "{{.Name}}"]));
    assert_eq!(pods.trim(), "their-job", "another instance's pod");
    run_ok(&mut podman(&["pod", "rm", "-f", "their-job"]));
    run_ok(&mut podman(&["volume", "rm", "-f", "their-job"]));
    drop(executor);
    service.kill().await.expect("stop isolated service");
}

#[tokio::test]
async fn driver_config_script_feeds_the_plugin_and_its_system_files() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let staging = env.dir.path().join("system-files");
    std::fs::create_dir_all(staging.join("etc/demo")).expect("staging dir");
    std::fs::write(staging.join("etc/demo/keyring"), "demo key\n").expect("system file");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&staging)
            .arg("-cf")
            .arg(env.config_dir.join("files.tar"))
            .arg("etc/demo/keyring"),
    );
    let script = env.config_dir.join("driver.sh");
    std::fs::write(
        &script,
        "echo \"resolving the backend for PR $PR_NUMBER\"\n\
         DRIVER_CONFIG='{\"name\": \"demo\", \"driver\": \"ScriptedDriver\"}'\n\
         CSI_SYSTEM_FILES=files.tar\n",
    )
    .expect("driver script");
    let mut config = (*env.config(GENEROUS)).clone();
    config.backends[0].driver_config = DriverConfig::Script(script.clone());
    let executor = start_executor(Arc::new(config)).await;

    let run = run_job(&executor, env.job(129)).await;

    assert_eq!(run.outcome, JobOutcome::Success);
    assert!(run
        .output_of(Step::DriverConfig)
        .contains("resolving the backend for PR 129"));
    assert!(run
        .output_of(Step::Sanity)
        .contains("driver=ScriptedDriver"));
    let plugin_log = run.output_of(Step::Cleanup);
    assert!(
        plugin_log.contains("unpacked system files from /config/files.tar"),
        "{plugin_log}"
    );
    assert_nothing_left(&env, &run.job.id);

    std::fs::write(&script, "echo 'forgot to set it'\n").expect("broken driver script");
    let run = run_job(&executor, env.job(129)).await;
    assert_eq!(
        run.outcome,
        JobOutcome::Error {
            step: Step::DriverConfig,
            reason: "driver config script driver.sh failed (exit 3)".into()
        }
    );
    assert!(run
        .output_of(Step::DriverConfig)
        .contains("did not set DRIVER_CONFIG"));
    assert_nothing_left(&env, &run.job.id);
}

#[tokio::test]
async fn vendor_extras_layer_is_built_on_the_pr_image() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let mut config = (*env.config(GENEROUS)).clone();
    config.backends[0].extra_containerfile = Some(env.write_extras_containerfile());
    let executor = start_executor(Arc::new(config)).await;

    let run = run_job(&executor, env.job(129)).await;

    assert_eq!(run.outcome, JobOutcome::Success);
    let build = run.output_of(Step::Build);
    assert!(
        build.contains("FROM localhost/ember-csi-job:slot900"),
        "{build}"
    );
    assert!(
        build.contains("COPY sanity.sh /usr/local/share/vendor-sanity.sh"),
        "{build}"
    );
    let start = run.output_of(Step::StartPlugin);
    assert!(
        start.contains(" localhost/ember-csi-job:slot900-extras\n"),
        "{start}"
    );
    assert_nothing_left(&env, &run.job.id);
}
