//! The job sandbox on real Podman: the layer cache across jobs and
//! restarts, the store's disk budget, CSI_SYSTEM_FILES from a Ceph-style
//! driver script, vendor extras, two workers at once, and what a job killed
//! mid-way leaves (and who removes it).
//!
//! Needs root Podman with runc and the local registry seeded with
//! docker.io/library/debian:bookworm (the test kit starts it)
//! (scripts/setup-host.sh); the extras case needs the Debian mirror.

use ember_ci_test_kit::executor_env;
use ember_ci_test_kit::wait::{poll_until, wait_until_every};

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ember_ci::executor::CancelSignal;
use ember_ci::model::{JobOutcome, Step};
use executor_env::{
    assert_nothing_left, nested_leftovers, run_job, run_ok, start_executor, DemoEnv, JobRun,
    RecordingObserver, GENEROUS, NEVER_SERVING_PR,
};
use sha2::{Digest, Sha256};

/// At most two cases at once: each runs privileged sandboxes and nested
/// builds, and CI has two slow cores.
static HEAVY_CASES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// PRs whose Dockerfile is shaped like Ember-CSI's: a slow dependency step,
/// then the source. #141 changes only the source.
const DEPS_PR: u64 = 140;
const SOURCE_CHANGE_PR: u64 = 141;
const DEPS_DOCKERFILE: &str = "FROM docker.io/library/debian:bookworm\n\
RUN echo deps > /deps && sleep 2\n\
COPY ember-csi-demo /usr/local/bin/ember-csi-demo\n\
ENV CSI_ENDPOINT=127.0.0.1:50051\n\
CMD [\"perl\", \"/usr/local/bin/ember-csi-demo\"]\n";

fn push_dependency_prs(env: &mut DemoEnv) {
    env.push_pr(DEPS_PR, "Dockerfile with a dependency step", |work| {
        std::fs::write(work.join("Dockerfile"), DEPS_DOCKERFILE).expect("Dockerfile");
    });
    env.push_pr(SOURCE_CHANGE_PR, "Change the source only", |work| {
        std::fs::write(work.join("Dockerfile"), DEPS_DOCKERFILE).expect("Dockerfile");
        let plugin = work.join("ember-csi-demo");
        let mut source = std::fs::read_to_string(&plugin).expect("plugin source");
        source.push_str("# a source-only change (PR 141)\n");
        std::fs::write(&plugin, source).expect("plugin source");
    });
}

/// The output of the build step that runs `instruction`, up to the next step.
fn build_step<'a>(build_log: &'a str, instruction: &str) -> &'a str {
    let start = build_log
        .find(&format!(": {instruction}"))
        .unwrap_or_else(|| panic!("no step {instruction:?} in the build log:\n{build_log}"));
    let rest = &build_log[start..];
    let end = rest.find("\nSTEP ").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

#[tokio::test]
async fn source_only_change_reuses_dependency_layers_across_a_restart() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let _heavy = HEAVY_CASES.acquire().await.expect("semaphore");
    let mut env = DemoEnv::new();
    push_dependency_prs(&mut env);

    let first = start_executor(env.config(GENEROUS)).await;
    let cold = run_job(&first, env.job(DEPS_PR)).await;
    assert_eq!(cold.outcome, JobOutcome::Success);
    assert_nothing_left(&env, &cold.job.id);
    // A restart of the service: a new executor on the same state dir.
    drop(first);

    let second = start_executor(env.config(GENEROUS)).await;
    let warm = run_job(&second, env.job(SOURCE_CHANGE_PR)).await;
    assert_eq!(warm.outcome, JobOutcome::Success);
    assert_nothing_left(&env, &warm.job.id);

    let (cold_log, warm_log) = (cold.output_of(Step::Build), warm.output_of(Step::Build));
    let deps = "RUN echo deps > /deps && sleep 2";
    let source = "COPY ember-csi-demo /usr/local/bin/ember-csi-demo";
    assert!(
        !build_step(&cold_log, deps).contains("Using cache"),
        "the first build of a fresh store cannot be cached:\n{cold_log}"
    );
    assert!(
        build_step(&warm_log, deps).contains("Using cache"),
        "the dependency step was rebuilt:\n{warm_log}"
    );
    assert!(
        !build_step(&warm_log, source).contains("Using cache"),
        "the changed source was not copied again:\n{warm_log}"
    );
    assert!(warm
        .output_of(Step::Sanity)
        .contains("plugin answered: ember-csi-demo OK"));
    let duration = |run: &JobRun| {
        run.observer
            .finished(Step::Build)
            .expect("build finished")
            .duration
            .as_secs_f32()
    };
    eprintln!(
        "TIMING build step: cold {:.1}s, warm after a source change {:.1}s",
        duration(&cold),
        duration(&warm)
    );
}

#[tokio::test]
async fn store_over_budget_evicts_old_images_first_and_keeps_the_running_jobs() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let _heavy = HEAVY_CASES.acquire().await.expect("semaphore");
    let mut env = DemoEnv::new();
    push_dependency_prs(&mut env);
    env.write_extras_containerfile();

    // Fill the store: #129 with a vendor layer, then #130, whose build
    // takes the slot's tag from #129.
    let with_extras =
        start_executor(env.config_with(GENEROUS, "EXTRA_CONTAINERFILE_1=extras.Containerfile"))
            .await;
    let outcome = run_job(&with_extras, env.job(129)).await.outcome;
    assert_eq!(outcome, JobOutcome::Success);
    drop(with_extras);
    let plain = start_executor(env.config(GENEROUS)).await;
    let outcome = run_job(&plain, env.job(130)).await.outcome;
    assert!(matches!(outcome, JobOutcome::Failure { .. }), "{outcome:?}");
    drop(plain);

    // A budget nothing fits in: everything but the running job's image goes.
    let tiny = start_executor(env.config(GENEROUS))
        .await
        .with_store_budget_bytes(1);
    let run = run_job(&tiny, env.job(DEPS_PR)).await;

    // The plugin ran from the job's image after the eviction.
    assert_eq!(run.outcome, JobOutcome::Success);
    let build = run.output_of(Step::Build);
    let prune = build
        .find("$ podman image prune --force")
        .unwrap_or_else(|| panic!("dangling images were not pruned:\n{build}"));
    let extras_evicted = build
        .find("evicting least recently used image localhost/ember-csi-job:slot900-extras")
        .unwrap_or_else(|| panic!("the old vendor layer was not evicted:\n{build}"));
    assert!(prune < extras_evicted, "dangling images go first:\n{build}");
    assert!(
        !build.contains("evicting least recently used image localhost/ember-csi-job:slot900 "),
        "the running job's image was evicted:\n{build}"
    );
    assert!(
        build.contains("every image left is in use"),
        "eviction did not stop at the job's own images:\n{build}"
    );
    assert_nothing_left(&env, &run.job.id);
}

/// Ceph's driver needs /etc/ceph/ceph.conf and a keyring inside the plugin
/// container: the driver script tars them (CSI_SYSTEM_FILES) and the demo
/// plugin insists on both, byte for byte ("require_files").
#[tokio::test]
async fn ceph_style_system_files_reach_the_plugin_with_their_content() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let _heavy = HEAVY_CASES.acquire().await.expect("semaphore");
    let env = DemoEnv::new();
    const CONF: &str = "[global]\nfsid = 6f1a4a3c\nmon_host = 192.0.2.10:6789\n";
    const KEYRING: &str = "[client.admin]\n\tkey = AQBk8mxmAAAAABAAr2v0YVdZkW1gYd2QmWJrYg==\n";
    let sha = |text: &str| hex::encode(Sha256::digest(text.as_bytes()));
    let require = format!(
        "/etc/ceph/ceph.conf={},/etc/ceph/ceph.client.admin.keyring={}",
        sha(CONF),
        sha(KEYRING)
    );
    // `$1` picks which files go into the tar and the keyring's content.
    let script = env.config_dir.join("ceph-driver.sh");
    let write_script = |tarred: &str, keyring: &str| {
        std::fs::write(
            &script,
            format!(
                "ceph_files=$(mktemp -d)\n\
                 mkdir -p \"$ceph_files/etc/ceph\"\n\
                 printf '%s' '{CONF}' > \"$ceph_files/etc/ceph/ceph.conf\"\n\
                 printf '%s' '{keyring}' > \"$ceph_files/etc/ceph/ceph.client.admin.keyring\"\n\
                 tar --create --file \"$ceph_files/system-files.tar\" --directory \"$ceph_files\" {tarred}\n\
                 CSI_SYSTEM_FILES=\"$ceph_files/system-files.tar\"\n\
                 DRIVER_CONFIG='{{\"name\": \"ceph\", \"driver\": \"RBD\", \"require_files\": \"{require}\"}}'\n"
            ),
        )
        .expect("driver script");
    };
    write_script("etc/ceph", KEYRING);
    let executor =
        start_executor(env.config_with(GENEROUS, "DRIVER_CONFIG_1=ceph-driver.sh")).await;
    // Runs PR #129 and checks that the job left nothing behind.
    let run_checked = || async {
        let run = run_job(&executor, env.job(129)).await;
        assert_nothing_left(&env, &run.job.id);
        run
    };

    let run = run_checked().await;
    assert_eq!(run.outcome, JobOutcome::Success);
    assert!(run
        .output_of(Step::DriverConfig)
        .contains("CSI_SYSTEM_FILES=/job/scratch/"));
    let plugin_log = run.output_of(Step::Cleanup);
    for file in ["ceph.conf", "ceph.client.admin.keyring"] {
        let line =
            format!("required system file /etc/ceph/{file} is present with the expected content");
        assert!(plugin_log.contains(&line), "{line:?} not in:\n{plugin_log}");
    }
    assert!(run.output_of(Step::Sanity).contains("driver=RBD"));

    write_script("etc/ceph/ceph.conf", KEYRING);
    let run = run_checked().await;
    let JobOutcome::Failure { step, reason } = &run.outcome else {
        panic!("a missing keyring must fail the job, got {:?}", run.outcome);
    };
    assert!(reason.starts_with("plugin exited with code"), "{reason}");
    assert!(run
        .output_of(*step)
        .contains("required system file /etc/ceph/ceph.client.admin.keyring is missing"));

    write_script("etc/ceph", "[client.admin]\n\tkey = a-different-key\n");
    let run = run_checked().await;
    let JobOutcome::Failure { step, .. } = &run.outcome else {
        panic!("a wrong keyring must fail the job, got {:?}", run.outcome);
    };
    assert!(run.output_of(*step).contains(
        "required system file /etc/ceph/ceph.client.admin.keyring has unexpected content"
    ));
}

#[tokio::test]
async fn extra_package_is_installed_into_the_plugin_image() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let _heavy = HEAVY_CASES.acquire().await.expect("semaphore");
    let env = DemoEnv::new();
    let needs_jq =
        r#"DRIVER_CONFIG_1='{"name": "demo", "driver": "JqDriver", "require_binaries": "jq"}'"#;

    // Without the package the plugin refuses to start: the check can fail.
    let executor_without = start_executor(env.config_with(GENEROUS, needs_jq)).await;
    let run = run_job(&executor_without, env.job(129)).await;
    let JobOutcome::Failure { step, .. } = &run.outcome else {
        panic!("the plugin started without jq: {:?}", run.outcome);
    };
    assert!(run
        .output_of(*step)
        .contains("required binary jq is not installed"));
    drop(executor_without);

    let executor =
        start_executor(env.config_with(GENEROUS, &format!("{needs_jq}\nEXTRA_PACKAGES_1=jq")))
            .await;
    let run = run_job(&executor, env.job(129)).await;

    assert_eq!(run.outcome, JobOutcome::Success);
    let build = run.output_of(Step::Build);
    assert!(
        build.contains("install -y --no-install-recommends 'jq'"),
        "{build}"
    );
    assert!(
        run.output_of(Step::StartPlugin)
            .contains(" localhost/ember-csi-job:slot900-extras\n"),
        "the plugin did not run from the extras image"
    );
    let plugin_log = run.output_of(Step::Cleanup);
    assert!(
        plugin_log.contains("required binary jq found in /usr/bin"),
        "{plugin_log}"
    );
    assert_nothing_left(&env, &run.job.id);
}

/// Both plugins listen on 127.0.0.1:50051, each in its own sandbox. Each
/// sanity command checks its own plugin, then waits for a file the test
/// writes once both jobs are in their sanity steps: the two plugins serve
/// at the same moment, and each suite reached its own.
#[tokio::test]
async fn two_workers_run_two_backends_at_once() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let _heavy = HEAVY_CASES.acquire().await.expect("semaphore");
    let env = DemoEnv::new();
    let go = env.config_dir.join("both-in-sanity");
    std::fs::write(
        env.config_dir.join("await-other-job.sh"),
        "for _ in $(seq 240); do [ -e /config/both-in-sanity ] && exit 0; sleep 0.5; done
         echo 'the other job never reached its sanity step'; exit 1
",
    )
    .expect("await script");
    let sanity = "/config/sanity.sh 127.0.0.1:50051 && bash /config/await-other-job.sh";
    let keys = format!(
        "NUM_WORKERS=2\nNUM_DRIVERS=2\nDRIVER_NAME_2=demo2\n\
         DRIVER_CONFIG_2='{{\"name\": \"demo2\", \"driver\": \"SecondDriver\"}}'\n\
         SANITY_COMMAND_1=\"{sanity}\"\nSANITY_COMMAND_2=\"{sanity}\""
    );
    let executor = Arc::new(start_executor(env.config_with(GENEROUS, &keys)).await);
    // A cold sandbox image build would serialise the two starts.
    executor
        .ensure_sandbox_image(&RecordingObserver::default())
        .await
        .expect("sandbox image");
    let jobs = [env.job_for("demo", 129, 0), env.job_for("demo2", 129, 1)];
    let mut tasks = Vec::new();
    let mut observers = Vec::new();
    for job in jobs.clone() {
        let executor = executor.clone();
        let observer = Arc::new(RecordingObserver::default());
        observers.push(observer.clone());
        tasks.push(tokio::spawn(async move {
            executor
                .run(&job, observer.as_ref(), CancelSignal::new())
                .await
        }));
    }
    let in_sanity = |o: &RecordingObserver| o.started_steps().contains(&Step::Sanity);
    let ended = |o: &RecordingObserver| o.started_steps().contains(&Step::Cleanup);
    // Some(true): both in sanity; Some(false): one ended first (give up).
    let together = poll_until(Duration::from_secs(300), Duration::from_millis(200), || {
        std::future::ready(if observers.iter().all(|o| in_sanity(o)) {
            Some(true)
        } else if observers.iter().any(|o| ended(o)) {
            Some(false)
        } else {
            None
        })
    })
    .await;
    assert_eq!(
        together,
        Some(true),
        "the two jobs never were in their sanity steps together"
    );
    std::fs::write(&go, "").expect("go file");
    for task in tasks {
        assert_eq!(task.await.expect("job task"), JobOutcome::Success);
    }

    assert!(observers[0]
        .output_of(Step::Sanity)
        .contains("driver=DemoDriver"));
    assert!(observers[1]
        .output_of(Step::Sanity)
        .contains("driver=SecondDriver"));
    assert!(env.slot_store(0).is_dir() && env.slot_store(1).is_dir());
    for job in &jobs {
        assert_nothing_left(&env, &job.id);
    }
}

/// A service killed mid-job runs no cleanup: its sandbox stays on the host
/// and its plugin container in the slot's store. The sweep removes the
/// first (and not a job still running), the slot's next job the second.
#[tokio::test]
async fn killed_job_is_swept_and_the_next_job_of_its_slot_clears_the_store() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let _heavy = HEAVY_CASES.acquire().await.expect("semaphore");
    let env = DemoEnv::new();
    let executor = Arc::new(start_executor(env.config(GENEROUS)).await);
    let sandbox_image = executor
        .ensure_sandbox_image(&RecordingObserver::default())
        .await
        .expect("sandbox image");
    let sandbox_of = |job: &ember_ci::model::JobId| {
        run_ok(Command::new("podman").args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=ember-ci.job={job}"),
        ]))
        .trim()
        .to_string()
    };

    // A job that keeps running through the sweep (slot 1).
    let survivor = env.job_for("demo", NEVER_SERVING_PR, 1);
    let stop_survivor = CancelSignal::new();
    let survivor_seen = Arc::new(RecordingObserver::default());
    let survivor_task = {
        let (executor, job, observer, cancel) = (
            executor.clone(),
            survivor.clone(),
            survivor_seen.clone(),
            stop_survivor.clone(),
        );
        tokio::spawn(async move { executor.run(&job, observer.as_ref(), cancel).await })
    };
    wait_until_every(
        "the surviving job to start its plugin",
        Duration::from_secs(300),
        Duration::from_millis(200),
        || survivor_seen.started_steps().contains(&Step::WaitPlugin),
    )
    .await;

    // The killed job (slot 0): its future is dropped once its plugin runs.
    let killed = env.job_for("demo", NEVER_SERVING_PR, 0);
    let plugin_running = CancelSignal::new();
    let observer = RecordingObserver::cancelling_at(Step::WaitPlugin, plugin_running.clone());
    tokio::select! {
        outcome = executor.run(&killed, &observer, CancelSignal::new()) => {
            panic!("the job ended before its plugin started: {outcome:?}")
        }
        () = plugin_running.cancelled() => {}
    }
    assert_eq!(
        sandbox_of(&killed.id),
        format!("ember-ci-job-{}", killed.id)
    );
    assert!(env.state_dir.join("jobs").join(killed.id.as_str()).is_dir());

    let removed = executor.sweep_leftovers().await.expect("sweep");

    assert_eq!(removed, 2, "the killed job's sandbox and work dir");
    assert_nothing_left(&env, &killed.id);
    assert_eq!(
        sandbox_of(&survivor.id),
        format!("ember-ci-job-{}", survivor.id),
        "the sweep removed a running job's sandbox"
    );
    stop_survivor.cancel("the test is done with the survivor");
    let outcome = survivor_task.await.expect("survivor task");
    assert!(
        matches!(outcome, JobOutcome::Cancelled { .. }),
        "{outcome:?}"
    );
    assert_nothing_left(&env, &survivor.id);

    let nested = nested_leftovers(&env, 0, &sandbox_image);
    assert!(
        nested.contains(&format!("container ember-csi-{}", killed.id)),
        "the killed job's plugin should still be in the slot's store: {nested:?}"
    );
    let next = run_job(&executor, env.job_for("demo", 129, 0)).await;
    assert_eq!(next.outcome, JobOutcome::Success);
    assert_nothing_left(&env, &next.job.id);
    assert_eq!(nested_leftovers(&env, 0, &sandbox_image), "");
    assert_eq!(nested_leftovers(&env, 1, &sandbox_image), "");
}
