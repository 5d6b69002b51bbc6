//! A vendor's old scripts and the default csi-sanity path, on real Podman:
//! an LVM pre-run with no post-run passing twice in a row (host hygiene
//! removes what it left), a Ceph-style driver script that runs `docker run`
//! and ships CSI_SYSTEM_FILES, a csi-sanity tag that is not the pinned
//! commit failing the sandbox build, and refs/pull/N/merge built when it
//! merges the head. csi-sanity is built from the stand-in
//! served by `git daemon` (ember_ci_test_kit::git_server).

use ember_ci_test_kit::executor_env::{
    assert_nothing_left, run_job, run_ok, start_executor, DemoEnv, GENEROUS,
};
use ember_ci_test_kit::git_server::csi_sanity_standin;

use ember_ci::model::{JobOutcome, Step};

/// Shaped like the old CI's LVM example: a loop-backed volume group made
/// by PRE_RUN, no POST_RUN to remove it. Run by its `#!` line.
const LVM_PRE_RUN: &str = r#"#!/bin/bash
set -eu
img="$SCRATCH_DIR/ember-volumes.img"
truncate -s 32M "$img"
dev=$(losetup --show -f "$img")
pvcreate -q "$dev"
vgcreate -q ember-ci-test-volumes "$dev"
echo "volume group ember-ci-test-volumes on $dev for PR $PR_NUMBER (shell: $BASH)"
"#;

/// Loop devices on this host whose backing file is the flow's image.
fn lvm_loop_devices() -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
        .filter_map(|entry| {
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            backing
                .contains("ember-volumes.img")
                .then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

#[tokio::test]
async fn lvm_pre_run_without_post_run_passes_twice_in_a_row() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    std::fs::write(env.config_dir.join("lvm-pre-run.sh"), LVM_PRE_RUN).expect("pre-run");
    let config = env.config_with(GENEROUS, "PRE_RUN_1=lvm-pre-run.sh\nPOST_RUN_1=\"\"\n");
    let executor = start_executor(config).await;

    for attempt in 1..=2 {
        let run = run_job(&executor, env.job(129)).await;
        let pre_run = run.output_of(Step::PreRun);
        let cleanup = run.output_of(Step::Cleanup);
        assert_eq!(
            run.outcome,
            JobOutcome::Success,
            "attempt {attempt}\npre-run:\n{pre_run}\ncleanup:\n{cleanup}"
        );
        assert!(pre_run.contains("shell: /bin/bash"), "{pre_run}");
        assert!(cleanup.contains("== host hygiene =="), "{cleanup}");
        assert!(
            cleanup.contains("removed loop device /dev/loop")
                && cleanup.contains("ember-volumes.img"),
            "attempt {attempt}: {cleanup}"
        );
        eprintln!("HYGIENE attempt {attempt}:\n{cleanup}");
        assert_eq!(lvm_loop_devices(), Vec::<String>::new());
        assert!(executor.host_problems().is_empty());
        assert_nothing_left(&env, &run.job.id);
    }
}

#[tokio::test]
async fn ceph_style_driver_script_runs_docker_and_ships_system_files() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    // Like the old CI's Ceph example: the config comes out of a container
    // (short image name, `docker`), the files go into a tar it names.
    std::fs::write(
        env.config_dir.join("ceph-driver.sh"),
        r#"conf=$(docker run --rm debian:bookworm sh -c 'echo "[global] mon_host = 127.0.0.1"')
mkdir -p "$SCRATCH_DIR/etc/ceph"
printf '%s\n' "$conf" > "$SCRATCH_DIR/etc/ceph/ceph.conf"
tar -C "$SCRATCH_DIR" -cf "$SCRATCH_DIR/ceph.tar" etc/ceph
echo "ceph.conf from docker: $conf"
DRIVER_CONFIG='{"name": "demo", "driver": "CephStyleDriver"}'
CSI_SYSTEM_FILES="$SCRATCH_DIR/ceph.tar"
"#,
    )
    .expect("driver script");
    let config = env.config_with(GENEROUS, "DRIVER_CONFIG_1=ceph-driver.sh\n");
    let executor = start_executor(config).await;

    let run = run_job(&executor, env.job(129)).await;

    assert!(run
        .output_of(Step::Sandbox)
        .contains("short image names (e.g. centos:7) resolve on docker.io"));
    let driver = run.output_of(Step::DriverConfig);
    assert_eq!(run.outcome, JobOutcome::Success, "{driver}");
    assert!(
        driver.contains("ceph.conf from docker: [global] mon_host = 127.0.0.1"),
        "{driver}"
    );
    assert!(run
        .output_of(Step::Sanity)
        .contains("driver=CephStyleDriver"));
    let plugin_log = run.output_of(Step::Cleanup);
    assert!(
        plugin_log.contains("unpacked system files from /job/scratch/ceph.tar"),
        "{plugin_log}"
    );
    assert_nothing_left(&env, &run.job.id);
}

#[tokio::test]
async fn csi_sanity_tag_on_another_commit_fails_the_sandbox_build_naming_both() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let env = DemoEnv::new();
    let standin = csi_sanity_standin();
    // The pin says the moved commit, the tag names the original one: the
    // same check a moved tag trips.
    let config = env.config_with(
        GENEROUS,
        &format!("CSI_SANITY_COMMIT={}\n", standin.moved_commit),
    );
    let executor = start_executor(config).await;

    let run = run_job(&executor, env.job(129)).await;

    let JobOutcome::Error { step, reason } = &run.outcome else {
        panic!("expected an error, got {:?}", run.outcome);
    };
    assert_eq!(*step, Step::Sandbox);
    assert!(
        reason.contains(&format!(
            "is commit {}, expected {}",
            standin.commit, standin.moved_commit
        )),
        "{reason}"
    );
    assert_nothing_left(&env, &run.job.id);
}

/// Pushes, as refs/pull/<pr>/merge, a merge of `merged_head` into main
/// after main gained a commit of its own; returns the merge commit.
fn push_merge_ref(env: &DemoEnv, pr: u64, merged_head: &str) -> String {
    let work = env.dir.path().join(format!("merge-{pr}"));
    let git = |args: &[&str]| {
        run_ok(
            std::process::Command::new("git")
                .arg("-C")
                .arg(&work)
                .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
                .args(args),
        )
        .trim()
        .to_string()
    };
    run_ok(
        std::process::Command::new("git")
            .args(["clone", "-q", "--branch", "main"])
            .arg(&env.repo)
            .arg(&work),
    );
    std::fs::write(work.join("BASE-ONLY"), "a change on the base branch\n").expect("file");
    git(&["add", "BASE-ONLY"]);
    git(&["commit", "-q", "-m", "base moves on"]);
    git(&["fetch", "-q", "origin", merged_head]);
    git(&["merge", "-q", "--no-ff", "-m", "test merge", merged_head]);
    git(&[
        "push",
        "-q",
        "origin",
        &format!("HEAD:refs/pull/{pr}/merge"),
    ]);
    git(&["rev-parse", "HEAD"])
}

#[tokio::test]
async fn the_merge_ref_is_built_when_it_merges_the_head_else_the_head() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let mut env = DemoEnv::new();
    let head = env.push_pr(150, "PR with a merge ref", |work| {
        std::fs::write(work.join("PR-150"), "the PR's change\n").expect("file");
    });
    let merge = push_merge_ref(&env, 150, head.as_str());
    // #151's merge ref still merges #150's head: GitHub has not recomputed it.
    let newer = env.push_pr(151, "PR whose merge ref is stale", |work| {
        std::fs::write(work.join("PR-151"), "the PR's change\n").expect("file");
    });
    push_merge_ref(&env, 151, head.as_str());
    let executor = start_executor(env.config(GENEROUS)).await;

    let run = run_job(&executor, env.job(150)).await;
    let fetch = run.output_of(Step::Fetch);
    assert_eq!(run.outcome, JobOutcome::Success, "{fetch}");
    assert!(
        fetch.contains(&format!(
            "building refs/pull/150/merge {merge}: head {head} merged into its base"
        )),
        "{fetch}"
    );
    assert!(fetch.contains(&format!("checked out {merge}")), "{fetch}");

    let run = run_job(&executor, env.job(151)).await;
    let fetch = run.output_of(Step::Fetch);
    assert_eq!(run.outcome, JobOutcome::Success, "{fetch}");
    assert!(
        fetch.contains(&format!(
            "no current refs/pull/151/merge (conflicts, or not computed yet): building the head {newer}"
        )),
        "{fetch}"
    );
    assert!(fetch.contains(&format!("checked out {newer}")), "{fetch}");
    // No merge ref at all (the demo's #129): the head, too.
    let run = run_job(&executor, env.job(129)).await;
    assert!(run
        .output_of(Step::Fetch)
        .contains("no current refs/pull/129/merge"));
}
