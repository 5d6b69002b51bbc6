//! Test environment for the executor: the demo repository (PRs #129, #130,
//! a never-serving #131 and any PR a test pushes), a config dir made from
//! examples/demo, a state dir, a recording observer, and checks on what
//! Podman still holds.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_ci::config::Config;
use ember_ci::executor::{CancelSignal, Executor, Job, StepObserver, StepResult};
use ember_ci::model::{
    BackendName, CancelReason, CommitSha, JobId, JobOutcome, JobRequest, PrNumber, Step,
};

/// The PR whose plugin never opens its endpoint (made by [`DemoEnv::new`]).
pub const NEVER_SERVING_PR: u64 = 131;
/// Any slot works (each test has its own state dir, so its own stores); a
/// distinctive one makes test images easy to spot in logs.
pub const TEST_SLOT: usize = 900;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    crate::ci_env::project_dir()
}

/// Starts the local registry (scripts/local-registry.sh) that mirrors
/// docker.io here, seeded with the debootstrapped Debian as
/// docker.io/library/debian:bookworm, once per test process.
pub fn ensure_local_registry() {
    static SEEDED: std::sync::Once = std::sync::Once::new();
    SEEDED.call_once(|| {
        run_ok(
            Command::new(repo_root().join("scripts/local-registry.sh")).args([
                "seed",
                "localhost/debian:bookworm",
                DEBIAN_IMAGE,
            ]),
        );
    });
}

/// The public name every test image is built FROM, as on a vendor's host.
pub const DEBIAN_IMAGE: &str = "docker.io/library/debian:bookworm";

/// Runs a command that must succeed, returning its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| {
        panic!("cannot run {command:?}: {e} (is it installed? see scripts/setup-host.sh)")
    });
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Timeouts a test case runs with.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub job: Duration,
    pub plugin_start: Duration,
}

/// Timeouts no demo job comes near on a slow CI host.
pub const GENEROUS: Timeouts = Timeouts {
    job: Duration::from_secs(900),
    plugin_start: Duration::from_secs(120),
};

/// The sandbox's extras file used by the extras cases: one COPY from the
/// config dir, so its layer is cheap and shows in the build log.
pub const EXTRAS_CONTAINERFILE: &str = "COPY sanity.sh /usr/local/share/vendor-sanity.sh\n";

/// An executor on `config`, with its own Podman service.
pub async fn start_executor(config: Arc<Config>) -> Executor {
    Executor::new(config.executor.clone(), config.backends.clone())
        .await
        .expect("executor starts its own podman service")
}

pub struct DemoEnv {
    pub dir: tempfile::TempDir,
    /// The `config` file's text before per-test keys are appended.
    base_config: String,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    /// (PR number, head SHA) of #129, #130, #131 and pushed PRs.
    pub heads: Vec<(u64, CommitSha)>,
    /// The bare repository standing in for embercsi/ember-csi.
    pub repo: PathBuf,
}

impl Default for DemoEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl DemoEnv {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("ember-csi.git");
        let listing =
            run_ok(Command::new(repo_root().join("scripts/make-demo-repo.sh")).arg(&repo));
        let mut heads: Vec<(u64, CommitSha)> = listing
            .lines()
            .map(|line| {
                let (pr, sha) = line
                    .split_once(' ')
                    .expect("make-demo-repo prints '<pr> <sha>'");
                (
                    pr.parse().expect("PR number"),
                    CommitSha::new(sha).expect("SHA"),
                )
            })
            .collect();
        heads.push((NEVER_SERVING_PR, push_never_serving_pr(dir.path(), &repo)));

        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir).expect("config dir");
        let demo = repo_root().join("examples/demo");
        std::fs::copy(demo.join("sanity.sh"), config_dir.join("sanity.sh"))
            .expect("copy sanity.sh");
        let state_dir = dir.path().join("state");
        let demo_config = std::fs::read_to_string(demo.join("config")).expect("demo config");
        let config_file = format!(
            "{demo_config}\n# Test overrides\nGH_CLONE_URL=\"{}\"\nCI_DIR=\"{}\"\nPOST_RUN_1='echo \"post-run result=$1\"'\n{}",
            repo.display(),
            state_dir.display(),
            crate::git_server::csi_sanity_standin().config_keys(),
        );
        ensure_local_registry();
        std::fs::write(config_dir.join("config"), &config_file).expect("write config");
        Self {
            dir,
            base_config: config_file,
            config_dir,
            state_dir,
            heads,
            repo,
        }
    }

    /// Commits the demo plugin (main) as changed by `edit` (given the
    /// checkout) as refs/pull/<pr>/head.
    pub fn push_pr(&mut self, pr: u64, message: &str, edit: impl FnOnce(&Path)) -> CommitSha {
        let sha = push_pr(self.dir.path(), &self.repo, pr, message, edit);
        self.heads.push((pr, sha.clone()));
        sha
    }

    /// Writes [`EXTRAS_CONTAINERFILE`] as `extras.Containerfile` in the
    /// config dir and returns its path.
    pub fn write_extras_containerfile(&self) -> PathBuf {
        let extras = self.config_dir.join("extras.Containerfile");
        std::fs::write(&extras, EXTRAS_CONTAINERFILE).expect("extras file");
        extras
    }

    /// Where slot `slot`'s image store lives.
    pub fn slot_store(&self, slot: usize) -> PathBuf {
        self.state_dir
            .join("image-store")
            .join(format!("slot-{slot}"))
            .join("containers")
    }

    pub fn head(&self, pr: u64) -> CommitSha {
        self.heads
            .iter()
            .find(|(number, _)| *number == pr)
            .map(|(_, sha)| sha.clone())
            .unwrap_or_else(|| panic!("no head for PR {pr}"))
    }

    pub fn job(&self, pr: u64) -> Job {
        self.job_for("demo", pr, TEST_SLOT)
    }

    pub fn job_for(&self, backend: &str, pr: u64, slot: usize) -> Job {
        Job {
            id: JobId::generate(),
            request: JobRequest {
                pr: PrNumber::new(pr).expect("PR number"),
                sha: self.head(pr),
                backend: BackendName::new(backend).expect("backend name"),
            },
            slot,
            host: ember_ci::config::HostName::local(),
        }
    }

    /// The config dir loaded the way `ember-ci` loads it, with the test's
    /// timeouts as keys (the `config` file is rewritten each call).
    pub fn config(&self, timeouts: Timeouts) -> Arc<Config> {
        self.config_with(timeouts, "")
    }

    /// Like [`Self::config`], with `extra_keys` (config-file lines) last.
    pub fn config_with(&self, timeouts: Timeouts, extra_keys: &str) -> Arc<Config> {
        let with_timeouts = format!(
            "{}JOB_TIMEOUT={}\nPLUGIN_START_TIMEOUT={}\n{extra_keys}\n",
            self.base_config,
            timeouts.job.as_secs(),
            timeouts.plugin_start.as_secs()
        );
        std::fs::write(self.config_dir.join("config"), with_timeouts).expect("writing config");
        let config = Config::load_with_env(&self.config_dir, &Default::default())
            .unwrap_or_else(|errors| panic!("test config is invalid:\n{errors}"));
        Arc::new(config)
    }
}

/// Commits a copy of the demo plugin whose container only sleeps, as
/// refs/pull/131/head, and returns its SHA.
fn push_never_serving_pr(scratch: &Path, bare: &Path) -> CommitSha {
    push_pr(
        scratch,
        bare,
        NEVER_SERVING_PR,
        "Plugin that never serves",
        |work| replace_dockerfile_cmd(work, r#"CMD ["sleep", "infinity"]"#),
    )
}

/// Replaces the CMD line of the Dockerfile in checkout `work` with
/// `replacement` (which may be several instructions).
pub fn replace_dockerfile_cmd(work: &Path, replacement: &str) {
    let dockerfile = work.join("Dockerfile");
    let original = std::fs::read_to_string(&dockerfile).expect("demo Dockerfile");
    let replaced: String = original
        .lines()
        .map(|line| {
            if line.starts_with("CMD ") {
                replacement
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&dockerfile, replaced + "\n").expect("write Dockerfile");
}

fn push_pr(
    scratch: &Path,
    bare: &Path,
    pr: u64,
    message: &str,
    edit: impl FnOnce(&Path),
) -> CommitSha {
    let work = scratch.join(format!("pr-{pr}"));
    run_ok(
        Command::new("git")
            .args(["clone", "-q", "--branch", "main"])
            .arg(bare)
            .arg(&work),
    );
    edit(&work);
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .arg("-C")
                .arg(&work)
                .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
                .args(args),
        )
    };
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", message]);
    git(&["push", "-q", "origin", &format!("HEAD:refs/pull/{pr}/head")]);
    CommitSha::new(git(&["rev-parse", "HEAD"]).trim()).expect("SHA")
}

#[derive(Debug, Clone)]
pub enum Event {
    Started(Step),
    Output(Step, Vec<u8>),
    Finished(Step, StepResult),
}

/// Keeps every event; can cancel a job when a given step starts.
#[derive(Default)]
pub struct RecordingObserver {
    events: Mutex<Vec<Event>>,
    cancel_at: Option<(Step, CancelSignal)>,
}

impl RecordingObserver {
    /// Cancels as a user on the web UI would, when `step` starts.
    pub fn cancelling_at(step: Step, token: CancelSignal) -> Self {
        Self {
            events: Mutex::default(),
            cancel_at: Some((step, token)),
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("observer lock").clone()
    }

    /// Everything `step` printed.
    pub fn output_of(&self, step: Step) -> String {
        let bytes: Vec<u8> = self
            .events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Output(s, bytes) if s == step => Some(bytes),
                _ => None,
            })
            .flatten()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn finished(&self, step: Step) -> Option<StepResult> {
        self.events().into_iter().find_map(|event| match event {
            Event::Finished(s, result) if s == step => Some(result),
            _ => None,
        })
    }

    /// Steps in the order they started.
    pub fn started_steps(&self) -> Vec<Step> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Started(step) => Some(step),
                _ => None,
            })
            .collect()
    }

    /// Every started step finished exactly once, in order.
    pub fn assert_steps_paired(&self) {
        let mut open: Option<Step> = None;
        for event in self.events() {
            match event {
                Event::Started(step) => {
                    assert_eq!(open, None, "{step} started while {open:?} was running");
                    open = Some(step);
                }
                Event::Finished(step, _) => {
                    assert_eq!(open, Some(step), "{step} finished but {open:?} was running");
                    open = None;
                }
                Event::Output(..) => {}
            }
        }
        assert_eq!(open, None, "a step never finished");
    }

    fn push(&self, event: Event) {
        self.events.lock().expect("observer lock").push(event);
    }
}

impl StepObserver for RecordingObserver {
    fn step_started(&self, step: Step) {
        eprintln!("[{step}] started");
        self.push(Event::Started(step));
        if let Some((at, token)) = &self.cancel_at {
            if *at == step {
                token.cancel(CancelReason::FromWebUi);
            }
        }
    }

    fn output(&self, step: Step, chunk: &[u8]) {
        eprint!("[{step}] {}", String::from_utf8_lossy(chunk));
        self.push(Event::Output(step, chunk.to_vec()));
    }

    fn step_finished(&self, step: Step, result: &StepResult) {
        eprintln!("[{step}] finished: {result:?}");
        self.push(Event::Finished(step, result.clone()));
    }
}

/// A job run to its end: what it came to and what its observer saw.
pub struct JobRun {
    pub job: Job,
    pub outcome: JobOutcome,
    pub observer: RecordingObserver,
}

/// Runs `job` uncancelled, recording every step event.
pub async fn run_job(executor: &Executor, job: Job) -> JobRun {
    run_job_observed(
        executor,
        job,
        RecordingObserver::default(),
        CancelSignal::new(),
    )
    .await
}

/// Runs `job` with `observer` (say one that cancels at a step) and `cancel`.
pub async fn run_job_observed(
    executor: &Executor,
    job: Job,
    observer: RecordingObserver,
    cancel: CancelSignal,
) -> JobRun {
    let outcome = executor.run(&job, &observer, cancel).await;
    JobRun {
        job,
        outcome,
        observer,
    }
}

impl JobRun {
    /// Everything `step` printed.
    pub fn output_of(&self, step: Step) -> String {
        self.observer.output_of(step)
    }

    /// The test config's POST_RUN_1 echoes the job result it was given
    /// (0 success, 1 failure, 2 error).
    pub fn assert_post_run_result(&self, result: u8) {
        let post_run = self.output_of(Step::PostRun);
        assert!(
            post_run.contains(&format!("post-run result={result}")),
            "{post_run}"
        );
    }

    /// Every step it started finished once, and nothing of it is left.
    pub fn assert_ended_cleanly(&self, env: &DemoEnv) {
        self.observer.assert_steps_paired();
        assert_nothing_left(env, &self.job.id);
    }
}

/// Asserts that Podman holds no container, pod or volume of `job` and that
/// its work dir is gone.
pub fn assert_nothing_left(env: &DemoEnv, job: &JobId) {
    let filter = format!("label=ember-ci.job={job}");
    let containers = run_ok(Command::new("podman").args(["ps", "-a", "-q", "--filter", &filter]));
    assert_eq!(containers.trim(), "", "containers of job {job} remain");
    let pods = run_ok(Command::new("podman").args(["pod", "ps", "-q", "--filter", &filter]));
    assert_eq!(pods.trim(), "", "pods of job {job} remain");
    let volumes = run_ok(Command::new("podman").args(["volume", "ls", "-q", "--filter", &filter]));
    assert_eq!(volumes.trim(), "", "volumes of job {job} remain");
    let work_dir = env.state_dir.join("jobs").join(job.as_str());
    assert!(!work_dir.exists(), "{} remains", work_dir.display());
}

/// What slot `slot`'s store still holds in nested containers (storage-only
/// ones of killed builds included), pods and volumes, as its own Podman
/// sees it from a throwaway sandbox. Empty when nothing is left.
pub fn nested_leftovers(env: &DemoEnv, slot: usize, sandbox_image: &str) -> String {
    let store = env.slot_store(slot);
    let script = "podman ps -a --external --format 'container {{.Names}}'; \
                  podman pod ps --format 'pod {{.Name}}'; \
                  podman volume ls --format 'volume {{.Name}}'";
    run_ok(
        Command::new("podman")
            .args([
                "run",
                "--rm",
                "--privileged",
                "--label",
                "ember-ci.test=nested-check",
            ])
            .arg("-v")
            .arg(format!("{}:/var/lib/containers", store.display()))
            .args(["-v", "/var/lib/containers/storage:/var/lib/host-store:ro"])
            .args([sandbox_image, "bash", "-c", script]),
    )
    .trim()
    .to_string()
}
