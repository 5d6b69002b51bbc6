//! The documented deploy, end to end: the ember-ci image (this build's
//! binary injected), started with the README's own `podman run` command and
//! a config dir holding only what a vendor sets plus where the local
//! stand-ins are (fake GitHub, git server for the PRs and csi-test, the
//! local registry mirror). Both fixtures replayed with `ember-ci send` end
//! in success (129) and failure (130) through the default sandbox and the
//! default csi-sanity path; `podman stop` mid-job leaves no pending status
//! and no job container.
//!
//! The inner image store is a named volume kept between runs (the Debian
//! base, the sandbox image and its Go stage: a cache of images, about two
//! minutes to build cold); the state volume, with the journal and every
//! result, is new each run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ember_ci_test_kit::ci_env::{
    delivery_for, project_dir, send, DemoRepo, TEST_SECRET, TEST_TOKEN,
};
use ember_ci_test_kit::fake_github::{FakeGitHub, RecordedStatus};
use ember_ci_test_kit::git_server::{
    self, LogsRepo, LOGS_PUBLIC_URL, STANDIN_PASSED, STANDIN_VERSION,
};

use crate::deploy::{build_image, container_logs, podman, run, stdout, wait_healthy, IMAGE};

const NAME: &str = "ember-ci-deploy-e2e";
const STATE_VOLUME: &str = "ember-ci-deploy-e2e-state";
/// Kept between runs: images only.
const STORAGE_VOLUME: &str = "ember-ci-deploy-e2e-storage";
/// The first job on an empty inner store builds the sandbox image too.
const FIRST_JOBS_DEADLINE: Duration = Duration::from_secs(900);
/// The README's words for a host whose registries are set by a drop-in.
pub(crate) const MIRROR_DROP_IN: &str =
    "/etc/containers/registries.conf.d/50-ember-ci-local-mirror.conf";

/// The README's `podman run` command, as arguments after `podman`.
fn readme_podman_run() -> Vec<String> {
    let readme = std::fs::read_to_string(project_dir().join("README.md")).expect("README.md");
    let block = readme
        .split("```sh\n")
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.trim_start().starts_with("podman run "))
        .expect("README.md has a ```sh block starting with `podman run`");
    let args: Vec<String> = block
        .replace("\\\n", " ")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("podman"), "{block}");
    args[1..].to_vec()
}

/// The README's command with this test's names: the config dir, the
/// container, the volumes, the image, and the mirror drop-in mounted as the
/// README says for a host that pulls through a mirror.
fn podman_run_args(config: &Path) -> Vec<String> {
    let readme = std::fs::read_to_string(project_dir().join("README.md")).expect("README.md");
    let mount = format!("-v {MIRROR_DROP_IN}:{MIRROR_DROP_IN}:ro");
    assert!(
        readme.contains(
            "-v /etc/containers/registries.conf.d/FILE:/etc/containers/registries.conf.d/FILE:ro"
        ),
        "the README no longer says how a mirror's drop-in is passed on"
    );
    let mut args: Vec<String> = readme_podman_run()
        .into_iter()
        .map(|arg| match arg.as_str() {
            "ember-ci" => NAME.to_string(),
            "localhost/ember-ci:latest" => IMAGE.to_string(),
            _ => arg
                .replace("/etc/ember-ci:", &format!("{}:", config.display()))
                .replace("ember-ci-state:", &format!("{STATE_VOLUME}:"))
                .replace("ember-ci-storage:", &format!("{STORAGE_VOLUME}:")),
        })
        .collect();
    let image = args.pop().expect("the README's command names an image");
    assert_eq!(image, IMAGE, "the README's command ends with the image");
    args.extend(mount.split(' ').map(str::to_string));
    args.push(image);
    args
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// What a deploy test talks to: the demo repository served by a git
/// server, a fake GitHub, and a vendor's config dir pointing at them.
pub(crate) struct StandIns {
    pub dir: tempfile::TempDir,
    pub repo: DemoRepo,
    pub github: FakeGitHub,
    /// The Ember-CSI team's logs repository (EMBER_LOGS_REPO).
    pub logs: LogsRepo,
    pub config: PathBuf,
    pub web_port: u16,
    pub ui_port: u16,
}

impl StandIns {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let repos = dir.path().join("repos");
        let repo = DemoRepo::create(&repos);
        let clone_url = format!("git://{}/ember-csi.git", git_server::serve(&repos, false));
        let github = FakeGitHub::start_with(TEST_TOKEN, "embercsi/ember-csi").await;
        let logs = LogsRepo::create();
        let (web_port, ui_port) = (free_port(), free_port());
        let stand_ins = format!(
            "GH_API_URL=\"{}\"\nGH_CLONE_URL=\"{clone_url}\"\n{}",
            github.url(),
            logs.config_keys()
        );
        let config = vendor_config(dir.path(), &stand_ins, web_port, ui_port);
        Self {
            dir,
            repo,
            github,
            logs,
            config,
            web_port,
            ui_port,
        }
    }

    /// `ember-ci send` of a fixture re-targeted at `sha`; must be accepted.
    pub fn send(&self, fixture: &str, sha: &str) {
        let hook = format!("http://127.0.0.1:{}/change_hook/github", self.web_port);
        let delivery = delivery_for(fixture, sha, self.dir.path());
        let (code, answer) = send(&hook, &delivery, TEST_SECRET);
        assert_eq!(code, 0, "{fixture}: {answer}");
        assert!(answer.starts_with("202"), "{fixture}: {answer}");
    }

    /// Waits until every SHA's last status is final.
    pub async fn wait_final(&self, shas: &[&str], limit: Duration) -> Result<(), String> {
        self.github
            .wait_for(
                |s| {
                    shas.iter().all(|sha| {
                        s.statuses_for(sha)
                            .last()
                            .is_some_and(|st| st.state != "pending")
                    })
                },
                limit,
            )
            .await
    }

    pub fn last_status(&self, sha: &str) -> RecordedStatus {
        self.github
            .statuses_for(sha)
            .pop()
            .unwrap_or_else(|| panic!("no status for {sha}"))
    }

    /// Pushes a new head of PR 129 whose build sleeps a minute, sends it
    /// and returns once its job runs; `message` makes the commit new.
    pub async fn start_slow_job(&self, message: &str) -> String {
        let dockerfile =
            std::fs::read_to_string(project_dir().join("examples/demo/plugin/Dockerfile"))
                .expect("the demo Dockerfile");
        let slow = dockerfile.replacen("\nCOPY ", "\nRUN sleep 60\nCOPY ", 1);
        assert_ne!(slow, dockerfile, "the demo Dockerfile has no COPY");
        let sha =
            self.repo
                .push_pull_request(129, &self.repo.ok_sha, &[("Dockerfile", &slow)], message);
        self.send("test-ok.json", &sha);
        self.github
            .wait_for(
                |s| {
                    s.statuses_for(&sha).last().is_some_and(|st| {
                        st.description
                            .as_deref()
                            .is_some_and(|d| d.starts_with("running"))
                    })
                },
                Duration::from_secs(120),
            )
            .await
            .unwrap_or_else(|err| panic!("the slow job did not start: {err}"));
        // Into its build step.
        tokio::time::sleep(Duration::from_secs(3)).await;
        sha
    }

    /// Each final status links to its job's folder, pushed to the logs
    /// repository's backend branch (the old CI's place, the default).
    pub fn assert_logs_published(&self, statuses: &[&RecordedStatus]) {
        let folders = self.logs.folders("demo");
        for status in statuses {
            let link = status.target_url.as_deref().unwrap_or_default();
            let folder = link
                .strip_prefix(&format!("{LOGS_PUBLIC_URL}/demo/"))
                .and_then(|rest| rest.strip_suffix("/index.html"))
                .unwrap_or_else(|| {
                    panic!("Details link {link:?} is not under {LOGS_PUBLIC_URL}/demo/")
                });
            assert!(
                folders.iter().any(|f| f == folder),
                "{folder} not pushed: {folders:?}"
            );
        }
    }

    /// A job stopped by a drain ended with a final status, not pending.
    pub fn assert_drained(&self, sha: &str, logs: &str) {
        let status = self.last_status(sha);
        eprintln!(
            "deploy: the drained job ended {}: {:?}",
            status.state, status.description
        );
        assert!(
            matches!(status.state.as_str(), "error" | "failure" | "success"),
            "{status:?}\n{logs}"
        );
    }
}

/// What a vendor sets (token, secret, backend, ports, a short grace), then
/// where the stand-ins are (`stand_ins`, and csi-test's).
fn vendor_config(dir: &Path, stand_ins: &str, web_port: u16, ui_port: u16) -> PathBuf {
    let standin = git_server::csi_sanity_standin();
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(
        config.join("config"),
        format!(
            "GH_TOKEN=\"{TEST_TOKEN}\"\nGH_USER=\"ember-ci-bot\"\nGH_EMBER_SECRET=\"{TEST_SECRET}\"\n\
             DRIVER_NAME_1=\"demo\"\n\
             DRIVER_CONFIG_1='{{\"name\": \"demo\", \"driver\": \"DemoDriver\", \"password\": \"demo-array-password\"}}'\n\
             WEB_PORT={web_port}\nWEB_UI_PORT={ui_port}\nSHUTDOWN_GRACE=5\n\
             # The local stand-ins of GitHub, its git server, the logs repository and csi-test's.\n\
             {stand_ins}\
             CSI_SANITY_REPO=\"{}\"\nCSI_SANITY_VERSION=\"{STANDIN_VERSION}\"\nCSI_SANITY_COMMIT=\"{}\"\n",
            standin.repo,
            standin.commit,
        ),
    )
    .expect("writing the config");
    config
}

/// Job containers left in the (stopped) container's image store.
fn job_containers() -> String {
    let volume = format!("{STORAGE_VOLUME}:/var/lib/containers");
    let output = podman(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        &volume,
        "--entrypoint",
        "podman",
        IMAGE,
        "ps",
        "-a",
        "--filter",
        "label=ember-ci.job",
        "--format",
        "{{.Names}} {{.Labels}}",
    ]);
    stdout(&output).trim().to_string()
}

/// Removes the container and the state volume (the storage volume stays).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "-f", NAME]).output();
        let _ = Command::new("podman")
            .args(["volume", "rm", "-f", STATE_VOLUME])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_podman_run_passes_129_fails_130_and_stops_mid_job_cleanly() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    build_image();
    let stand_ins = StandIns::start().await;
    let repo = &stand_ins.repo;

    drop(Cleanup);
    let _cleanup = Cleanup;
    run(Command::new("podman").args(podman_run_args(&stand_ins.config)));
    wait_healthy(NAME);

    let started = Instant::now();
    stand_ins.send("test-ok.json", &repo.ok_sha);
    stand_ins.send("test-broken.json", &repo.broken_sha);
    let logs = || container_logs(NAME);
    if let Err(err) = stand_ins
        .wait_final(&[&repo.ok_sha, &repo.broken_sha], FIRST_JOBS_DEADLINE)
        .await
    {
        panic!("jobs did not finish: {err}\n{}", logs());
    }
    eprintln!(
        "deploy e2e: 129 and 130 finished {:.1} s after the sends",
        started.elapsed().as_secs_f64()
    );
    let ok_final = stand_ins.last_status(&repo.ok_sha);
    assert_eq!(ok_final.state, "success", "{ok_final:?}\n{}", logs());
    assert_eq!(ok_final.description.as_deref(), Some(STANDIN_PASSED));
    assert_eq!(ok_final.context, "3rdparty/demo");
    let broken_final = stand_ins.last_status(&repo.broken_sha);
    assert_eq!(
        broken_final.state,
        "failure",
        "{broken_final:?}\n{}",
        logs()
    );
    stand_ins.assert_logs_published(&[&ok_final, &broken_final]);

    // Stopped mid-job: SIGTERM gives the job SHUTDOWN_GRACE (5 s), then it
    // is cancelled with a final status.
    let slow_sha = stand_ins.start_slow_job("Slow build").await;
    let stop_started = Instant::now();
    podman(&["stop", "-t", "60", NAME]);
    eprintln!(
        "deploy e2e: podman stop mid-job took {:.1} s",
        stop_started.elapsed().as_secs_f64()
    );
    let exit = stdout(&podman(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        NAME,
    ]));
    assert_eq!(exit.trim(), "0", "exit code after SIGTERM:\n{}", logs());
    stand_ins.assert_drained(&slow_sha, &logs());
    assert_eq!(
        job_containers(),
        "",
        "job containers left after podman stop"
    );
}
