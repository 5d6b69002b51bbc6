//! One job's steps in order and who decides the outcome: `Failure` when the
//! PR's code fails (image build, plugin start, sanity suite), `Error` when
//! our side or the vendor's setup breaks (git, Podman, PRE_RUN, driver
//! config, timeouts).
//!
//! Whatever happens, the step that was running is reported finished,
//! POST_RUN runs with the result (0 = success) as `$1` once a sandbox
//! exists, and cleanup removes the nested containers, pods and volumes,
//! the sandbox, any job-labelled volume and the work dir. After a
//! successful build the slot's store is brought back within its budget,
//! keeping the images this job uses. A failing POST_RUN turns a success
//! into `Error` ("post-run failed") but never hides an earlier verdict.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::hosts::JobHost;
use super::hygiene::{self, HostState, HostView, HygieneReport};
use super::sandbox_argv::{self, InnerCommand, JobNames, PluginLaunch, PluginProbe};
use super::sandbox_host;
use super::{
    CancelSignal, Executor, ExecutorError, Job, StepObserver, StepResult, INSTANCE_LABEL, JOB_LABEL,
};
use crate::config::{find_backend, BackendConfig, DriverConfig, HostDaemon, Script};
use crate::model::{Blame, JobOutcome, Step};

/// POST_RUN and cleanup run after the job's own deadline, so they have
/// bounds of their own.
const POST_RUN_TIMEOUT: Duration = Duration::from_secs(600);
const CLEANUP_EXEC_TIMEOUT: Duration = Duration::from_secs(120);
const PLUGIN_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The root Podman's image store, shared read-only with every sandbox.
pub(super) const HOST_IMAGE_STORE: &str = "/var/lib/containers/storage";
const SANDBOX_HOST_STORE: &str = "/var/lib/host-store";
const SANDBOX_INNER_STORE: &str = "/var/lib/containers";
/// Kernel modules for storage drivers that load them (iSCSI, multipath).
const HOST_KERNEL_MODULES: &str = "/lib/modules";

/// Why a step stopped the job, and who is to blame.
#[derive(Debug)]
pub(super) struct StepStop {
    blame: Blame,
    pub(super) reason: String,
    exit_code: Option<i64>,
}

impl StepStop {
    fn new(blame: Blame, reason: impl Into<String>) -> Self {
        Self {
            blame,
            reason: reason.into(),
            exit_code: None,
        }
    }

    /// The PR's code failed.
    pub(super) fn failure(reason: impl Into<String>) -> Self {
        Self::new(Blame::Pr, reason)
    }

    /// Our side broke.
    pub(super) fn error(reason: impl Into<String>) -> Self {
        Self::new(Blame::Infra, reason)
    }

    pub(super) fn exit(mut self, code: i64) -> Self {
        self.exit_code = Some(code);
        self
    }

    fn into_outcome(self, step: Step) -> JobOutcome {
        JobOutcome::stopped(self.blame, step, self.reason)
    }
}

/// Errors of our own machinery: a step they stop is never the PR's fault.
trait InfraError: std::fmt::Display {}
impl InfraError for super::PodmanError {}
impl InfraError for super::GitError {}
impl InfraError for sandbox_argv::CommandError {}
impl InfraError for ExecutorError {}

impl<E: InfraError> From<E> for StepStop {
    fn from(error: E) -> Self {
        StepStop::error(error.to_string())
    }
}

/// What a step returns: the exit code of the command that decided it.
pub(super) type StepBody = Result<Option<i64>, StepStop>;

enum Interruption {
    TimedOut,
    Cancelled,
}

pub(super) struct JobRun<'a> {
    pub(super) executor: &'a Executor,
    /// Where the sandbox runs; the git cache, the work dir and the logs
    /// stay on this host, and a remote sandbox gets copies over the API.
    pub(super) host: &'a JobHost,
    pub(super) job: &'a Job,
    pub(super) observer: &'a dyn StepObserver,
    pub(super) names: JobNames,
    pub(super) work_dir: PathBuf,
    /// The step begun and not yet finished, with its start time.
    current: Option<(Step, Instant)>,
    pub(super) sandbox_running: bool,
    plugin_started: bool,
    plugin_log_shown: bool,
    backend_json: Option<String>,
    system_files: Option<String>,
    pub(super) plugin_image: String,
    /// The host's kernel state before the job's scripts ran, or why not.
    host_before: Result<HostState, String>,
}

impl<'a> JobRun<'a> {
    pub(super) fn new(
        executor: &'a Executor,
        host: &'a JobHost,
        job: &'a Job,
        observer: &'a dyn StepObserver,
    ) -> Self {
        let names = JobNames::new(&job.id, job.slot);
        Self {
            executor,
            host,
            job,
            observer,
            work_dir: executor.jobs_dir().join(job.id.as_str()),
            plugin_image: names.pr_image.clone(),
            names,
            current: None,
            sandbox_running: false,
            plugin_started: false,
            plugin_log_shown: false,
            backend_json: None,
            system_files: None,
            host_before: Err("the sandbox never started".into()),
        }
    }

    pub(super) async fn run(mut self, cancel: CancelSignal) -> JobOutcome {
        let executor = self.executor;
        let config = &executor.config;
        let Some(backend) = find_backend(&executor.backends, self.job.request.backend.as_str())
        else {
            return JobOutcome::Error {
                step: Step::Fetch,
                reason: format!("backend {} is not configured", self.job.request.backend),
            };
        };
        // On another host the kernel is seen from the sandbox, once it runs.
        if !self.host.is_remote() {
            self.host_before = HostState::read(&HostView::Local).await;
        }
        let job_timeout = config.job_timeout;
        let interrupted = {
            let steps = self.main_steps(backend);
            tokio::select! {
                biased;
                () = cancel.cancelled() => Err(Interruption::Cancelled),
                result = tokio::time::timeout(job_timeout, steps) => {
                    result.map_err(|_elapsed| Interruption::TimedOut)
                }
            }
        };
        let outcome = match interrupted {
            Ok(Ok(())) => JobOutcome::Success,
            Ok(Err(outcome)) => outcome,
            Err(Interruption::TimedOut) => JobOutcome::TimedOut {
                step: self.abandon_step("abandoned: the job timed out"),
                after_secs: job_timeout.as_secs(),
            },
            Err(Interruption::Cancelled) => {
                self.abandon_step("abandoned: the job was cancelled");
                cancel.outcome()
            }
        };
        let outcome = self.post_run(backend, outcome).await;
        self.cleanup().await;
        outcome
    }

    async fn main_steps(&mut self, backend: &BackendConfig) -> Result<(), JobOutcome> {
        self.begin(Step::Fetch);
        let body = self.fetch().await;
        self.finish(body)?;

        self.begin(Step::Sandbox);
        let body = self.start_sandbox(backend).await;
        // Read even when the step failed: cleanup compares with it.
        if self.host.is_remote() && self.sandbox_running {
            self.host_before = HostState::read(&self.host_view()).await;
        }
        self.finish(body)?;

        if let Some(script) = &backend.pre_run {
            self.begin(Step::PreRun);
            let body = self.pre_run(script).await;
            self.finish(body)?;
        }

        self.begin(Step::Build);
        let body = self.build(backend).await;
        self.finish(body)?;

        self.begin(Step::DriverConfig);
        let body = self.driver_config(&backend.driver_config).await;
        self.finish(body)?;

        self.begin(Step::StartPlugin);
        let body = self.start_plugin(backend).await;
        self.finish(body)?;

        self.begin(Step::WaitPlugin);
        let body = self.wait_plugin().await;
        self.finish(body)?;

        self.begin(Step::Sanity);
        let body = self.sanity(backend).await;
        self.finish(body)
    }

    fn begin(&mut self, step: Step) {
        self.observer.step_started(step);
        self.current = Some((step, Instant::now()));
    }

    /// Reports the current step's end; a stop becomes the job's outcome.
    fn finish(&mut self, body: StepBody) -> Result<(), JobOutcome> {
        let (step, started) = self.current.take().expect("finish() follows begin()");
        let (exit_code, note, verdict) = match body {
            Ok(exit_code) => (exit_code, None, Ok(())),
            Err(stop) => (
                stop.exit_code,
                Some(stop.reason.clone()),
                Err(stop.into_outcome(step)),
            ),
        };
        let result = StepResult {
            exit_code,
            duration: started.elapsed(),
            note,
        };
        self.observer.step_finished(step, &result);
        verdict
    }

    /// Reports the step whose future was dropped; returns it (Fetch when
    /// none had begun) for the outcome.
    fn abandon_step(&mut self, note: &str) -> Step {
        match self.current.take() {
            Some((step, started)) => {
                let result = StepResult {
                    exit_code: None,
                    duration: started.elapsed(),
                    note: Some(note.to_string()),
                };
                self.observer.step_finished(step, &result);
                step
            }
            None => Step::Fetch,
        }
    }

    pub(super) fn plugin_started(&self) -> bool {
        self.plugin_started
    }

    pub(super) fn say(&self, step: Step, text: &str) {
        self.observer.output(step, text.as_bytes());
    }

    /// Runs `command` in the sandbox with its trace and output in `step`'s log.
    pub(super) async fn exec_logged(
        &self,
        step: Step,
        command: &InnerCommand,
    ) -> Result<i64, StepStop> {
        self.observer.output(step, command.trace().as_bytes());
        let observer = self.observer;
        let code = self
            .host
            .podman
            .exec(&self.names.sandbox_container, command, &mut |chunk| {
                observer.output(step, chunk)
            })
            .await?;
        Ok(code)
    }

    pub(super) fn job_env(&self) -> Vec<(String, String)> {
        sandbox_argv::job_env(&self.job.id, &self.job.request)
    }

    async fn fetch(&mut self) -> StepBody {
        let request = &self.job.request;
        // scratch/: the vendor scripts' writable dir (SANDBOX_SCRATCH_DIR).
        tokio::fs::create_dir_all(self.work_dir.join("scratch"))
            .await
            .map_err(|e| {
                StepStop::error(format!("cannot create {}: {e}", self.work_dir.display()))
            })?;
        let observer = self.observer;
        self.say(
            Step::Fetch,
            &format!(
                "fetching {} of {}\n",
                request.pr.head_ref(),
                self.executor.config.clone_url
            ),
        );
        self.executor
            .git
            .fetch_pr(request.pr, &request.sha, &mut |chunk| {
                observer.output(Step::Fetch, chunk)
            })
            .await?;
        // Statuses stay on the head SHA whichever commit is built.
        let merge = self
            .executor
            .git
            .fetch_merge(request.pr, &request.sha)
            .await;
        let built = match &merge {
            Some(merge) => {
                self.say(
                    Step::Fetch,
                    &format!(
                        "building {} {merge}: head {} merged into its base\n",
                        request.pr.merge_ref(),
                        request.sha
                    ),
                );
                merge
            }
            None => {
                self.say(
                    Step::Fetch,
                    &format!(
                        "no current {} (conflicts, or not computed yet): building the head {}\n",
                        request.pr.merge_ref(),
                        request.sha
                    ),
                );
                &request.sha
            }
        };
        self.executor
            .git
            .export_tree(built, &self.work_dir.join("src"))
            .await?;
        self.say(Step::Fetch, &format!("checked out {built}\n"));
        Ok(None)
    }

    /// The sandbox, then the host the plugin expects in it.
    async fn start_sandbox(&mut self, backend: &BackendConfig) -> StepBody {
        self.launch_sandbox().await?;
        self.prepare_plugin_host(&backend.plugin.daemons).await?;
        Ok(None)
    }

    async fn launch_sandbox(&mut self) -> StepBody {
        let observer = self.observer;
        let image = self
            .executor
            .sandbox_image(&mut |chunk| observer.output(Step::Sandbox, chunk))
            .await?;
        if self.host.is_remote() {
            return self.start_remote_sandbox(&image).await;
        }
        let store = self.executor.slot_store(self.job.slot);
        let store_dir = store.containers_dir();
        store.ensure().await.map_err(|e| {
            StepStop::error(format!(
                "cannot create the image store {}: {e}",
                store_dir.display()
            ))
        })?;
        let empty_dir = self.executor.state_dir.join("run").join("empty");
        std::fs::create_dir_all(&empty_dir)
            .map_err(|e| StepStop::error(format!("cannot create {}: {e}", empty_dir.display())))?;
        let mut binds = config_binds(
            &self.executor.config_dir,
            &self.executor.state_dir,
            &empty_dir,
        );
        binds.extend([
            bind(self.work_dir.clone(), sandbox_argv::SANDBOX_JOB_DIR, false),
            bind(HOST_IMAGE_STORE.into(), SANDBOX_HOST_STORE, true),
            bind(store_dir.clone(), SANDBOX_INNER_STORE, false),
        ]);
        if std::path::Path::new(HOST_KERNEL_MODULES).is_dir() {
            binds.push(bind(HOST_KERNEL_MODULES.into(), HOST_KERNEL_MODULES, true));
        }
        let spec = super::podman::SandboxSpec {
            name: self.names.sandbox_container.clone(),
            image: image.clone(),
            labels: vec![
                (JOB_LABEL.to_string(), self.job.id.to_string()),
                (
                    INSTANCE_LABEL.to_string(),
                    self.executor.instance_id.clone(),
                ),
            ],
            binds,
            volumes: Vec::new(),
        };
        self.say(
            Step::Sandbox,
            &format!(
                "starting sandbox {} from {image} (image store {})\n\
                 short image names (e.g. centos:7) resolve on docker.io, as on Fedora/RHEL hosts; \
                 `docker` is Podman\n",
                spec.name,
                store_dir.display()
            ),
        );
        self.host.podman.start_sandbox(&spec).await?;
        self.sandbox_running = true;
        self.reset_slot_store().await
    }

    /// A job killed with the service left its nested containers in the
    /// slot's store; they are ours to remove now.
    pub(super) async fn reset_slot_store(&mut self) -> StepBody {
        match self
            .exec_logged(Step::Sandbox, &sandbox_argv::reset_slot_store())
            .await?
        {
            0 => {}
            code => {
                return Err(StepStop::error(format!(
                    "cannot clear the slot's image store of old containers (exit {code})"
                ))
                .exit(code))
            }
        }
        Ok(None)
    }

    /// The worker slot's initiator name (kept in the state dir, written into
    /// the sandbox, on this host or another), then SANDBOX_DAEMONS_n as the
    /// old VM ran them. A daemon that cannot run (the host kernel lacks its
    /// driver) is named in the log and the versions block; the job goes on,
    /// as it did on a VM whose daemon failed.
    async fn prepare_plugin_host(&mut self, daemons: &[HostDaemon]) -> Result<(), StepStop> {
        let state_dir = &self.executor.state_dir;
        let (slot, host) = (self.job.slot, &self.host.name);
        let initiator = sandbox_host::slot_initiator(state_dir, host, slot)
            .await
            .map_err(|e| {
                StepStop::error(format!(
                    "cannot keep the slot's iSCSI initiator name in {}: {e}",
                    sandbox_host::initiator_file(state_dir, host, slot).display()
                ))
            })?;
        match self
            .exec_logged(Step::Sandbox, &sandbox_host::install_initiator(&initiator))
            .await?
        {
            0 => {}
            code => {
                return Err(StepStop::error(format!(
                    "cannot write the iSCSI initiator name into the sandbox (exit {code})"
                ))
                .exit(code))
            }
        }
        self.observer.fact("iscsi initiator", &initiator);
        if daemons.is_empty() {
            self.say(Step::Sandbox, "no daemons (SANDBOX_DAEMONS_n is none)\n");
            return Ok(());
        }
        let command = sandbox_host::start_daemons(daemons);
        let (code, output) = self
            .host
            .podman
            .exec_captured(&self.names.sandbox_container, &command)
            .await?;
        if code != 0 {
            return Err(StepStop::error(format!(
                "cannot start the sandbox's daemons (exit {code}): {}",
                output.trim()
            ))
            .exit(code));
        }
        for state in sandbox_host::parse_daemon_report(daemons, &output) {
            let text = state.describe();
            self.say(Step::Sandbox, &format!("{}: {text}\n", state.daemon.name()));
            self.observer.fact(state.daemon.name(), &text);
        }
        Ok(())
    }

    async fn pre_run(&mut self, script: &Script) -> StepBody {
        let command = sandbox_argv::vendor_script(
            script,
            "pre-run",
            &self.executor.config.config_dir,
            &[],
            self.job_env(),
        )?;
        match self.exec_logged(Step::PreRun, &command).await? {
            0 => Ok(Some(0)),
            code => Err(StepStop::error(format!("pre-run failed (exit {code})")).exit(code)),
        }
    }

    async fn build(&mut self, backend: &BackendConfig) -> StepBody {
        let command =
            sandbox_argv::build_pr_image(&self.executor.config.build_file, &self.names.pr_image)?;
        let code = self.exec_logged(Step::Build, &command).await?;
        if code != 0 {
            return Err(StepStop::failure("image build failed").exit(code));
        }
        let extra_instructions = match &backend.extra_containerfile {
            Some(path) => Some(tokio::fs::read_to_string(path).await.map_err(|e| {
                StepStop::error(format!(
                    "cannot read EXTRA_CONTAINERFILE {}: {e}",
                    path.display()
                ))
            })?),
            None => None,
        };
        let extras = sandbox_argv::extras_containerfile(
            &self.names.pr_image,
            &backend.extra_packages,
            &backend.extra_pip,
            extra_instructions.as_deref(),
        )?;
        let Some(containerfile) = extras else {
            self.keep_store_within_budget().await;
            return Ok(Some(code));
        };
        self.put_job_file(sandbox_argv::EXTRAS_CONTAINERFILE, containerfile.as_bytes())
            .await?;
        let command = sandbox_argv::build_extras_image(&self.names.extras_image);
        match self.exec_logged(Step::Build, &command).await? {
            0 => {
                self.plugin_image = self.names.extras_image.clone();
                self.keep_store_within_budget().await;
                Ok(Some(0))
            }
            // The extras are the vendor's, not the PR's.
            code => {
                Err(StepStop::error(format!("vendor extras layer failed (exit {code})")).exit(code))
            }
        }
    }

    async fn driver_config(&mut self, driver_config: &DriverConfig) -> StepBody {
        let json_path = self.work_dir.join(sandbox_argv::DRIVER_JSON_FILE);
        let script = match driver_config {
            DriverConfig::Json(json) => {
                self.put_job_file(sandbox_argv::DRIVER_JSON_FILE, json.as_bytes())
                    .await?;
                self.observer
                    .secrets_discovered(&crate::config::credential_values(json));
                self.say(
                    Step::DriverConfig,
                    "backend config given as JSON in the config file\n",
                );
                self.backend_json = Some(json.clone());
                return Ok(None);
            }
            DriverConfig::Script(script) => script,
        };
        let script_name = script.file_name().map_or_else(
            || script.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let command = sandbox_argv::resolve_driver_config(
            &self.executor.config.config_dir,
            script,
            self.job_env(),
        )?;
        let code = self.exec_logged(Step::DriverConfig, &command).await?;
        if code != 0 {
            return Err(StepStop::error(format!(
                "driver config script {script_name} failed (exit {code})"
            ))
            .exit(code));
        }
        self.pull_job_files(&[
            sandbox_argv::DRIVER_JSON_FILE,
            sandbox_argv::SYSTEM_FILES_FILE,
        ])
        .await?;
        let json = tokio::fs::read_to_string(&json_path).await.map_err(|e| {
            StepStop::error(format!(
                "driver config script {script_name} left no config: {e}"
            ))
        })?;
        // Never echo the JSON: it holds the array's credentials.
        self.observer
            .secrets_discovered(&crate::config::credential_values(&json));
        if serde_json::from_str::<serde_json::Value>(&json).is_err() {
            return Err(StepStop::error(format!(
                "driver config script {script_name} set DRIVER_CONFIG to invalid JSON"
            )));
        }
        let files_path = self.work_dir.join(sandbox_argv::SYSTEM_FILES_FILE);
        let files = tokio::fs::read_to_string(&files_path)
            .await
            .unwrap_or_default();
        self.system_files = sandbox_argv::system_files_path(&files)?;
        if let Some(files) = &self.system_files {
            self.say(Step::DriverConfig, &format!("CSI_SYSTEM_FILES={files}\n"));
        }
        self.backend_json = Some(json);
        Ok(Some(0))
    }

    async fn start_plugin(&mut self, backend: &BackendConfig) -> StepBody {
        let podman = &self.host.podman;
        let probe = sandbox_argv::existing_paths(&sandbox_argv::PLUGIN_HOST_MOUNTS);
        let (code, listing) = podman
            .exec_captured(&self.names.sandbox_container, &probe)
            .await?;
        if code != 0 {
            return Err(StepStop::error(format!(
                "cannot list the sandbox's host paths (exit {code})"
            )));
        }
        let host_mounts: Vec<String> = listing
            .lines()
            .filter(|line| sandbox_argv::PLUGIN_HOST_MOUNTS.contains(line))
            .map(String::from)
            .collect();
        let backend_config = self
            .backend_json
            .as_deref()
            .expect("the driver-config step ran before start-plugin");
        let launch = PluginLaunch {
            container_name: &self.names.plugin_container,
            image: &self.plugin_image,
            backend_config,
            system_files: self.system_files.as_deref(),
            host_mounts: &host_mounts,
            job_id: &self.job.id,
            settings: &backend.plugin,
        };
        let command = sandbox_argv::start_plugin(&launch);
        // Set first: a failed `podman run` may still have created the
        // container, and its log is then the best clue.
        self.plugin_started = true;
        match self.exec_logged(Step::StartPlugin, &command).await? {
            0 => Ok(Some(0)),
            code => Err(
                StepStop::failure(format!("plugin container did not start (exit {code})"))
                    .exit(code),
            ),
        }
    }

    async fn wait_plugin(&mut self) -> StepBody {
        let timeout = self.executor.config.plugin_start_timeout;
        let started = Instant::now();
        self.say(
            Step::WaitPlugin,
            &format!(
                "waiting up to {}s for the plugin to serve on {}:{}\n",
                timeout.as_secs(),
                sandbox_argv::CSI_ENDPOINT_HOST,
                sandbox_argv::CSI_ENDPOINT_PORT
            ),
        );
        let probe = sandbox_argv::probe_plugin(&self.names.plugin_container);
        loop {
            let (_, output) = self
                .host
                .podman
                .exec_captured(&self.names.sandbox_container, &probe)
                .await?;
            let stop = match sandbox_argv::parse_probe(&output) {
                PluginProbe::Serving => {
                    let waited = started.elapsed().as_secs_f32();
                    self.say(
                        Step::WaitPlugin,
                        &format!("plugin serves after {waited:.1}s\n"),
                    );
                    return Ok(None);
                }
                PluginProbe::Exited(code) => {
                    StepStop::failure(format!("plugin exited with code {code}")).exit(code)
                }
                PluginProbe::Unknown(text) => StepStop::error(format!(
                    "cannot tell whether the plugin runs: {}",
                    text.trim()
                )),
                PluginProbe::Starting if started.elapsed() >= timeout => StepStop::error(format!(
                    "plugin start timed out: not serving after {}s (PLUGIN_START_TIMEOUT)",
                    timeout.as_secs()
                )),
                PluginProbe::Starting => {
                    tokio::time::sleep(PLUGIN_PROBE_INTERVAL).await;
                    continue;
                }
            };
            self.show_plugin_log(Step::WaitPlugin).await;
            return Err(stop);
        }
    }

    /// Runs POST_RUN (if configured) with the outcome's code as `$1`.
    async fn post_run(&mut self, backend: &BackendConfig, outcome: JobOutcome) -> JobOutcome {
        let Some(script) = &backend.post_run else {
            return outcome;
        };
        self.begin(Step::PostRun);
        let body = if self.sandbox_running {
            self.run_post_run(script, outcome.exit_code()).await
        } else {
            Err(StepStop::error(
                "skipped: the job ended before its sandbox started",
            ))
        };
        match self.finish(body) {
            Err(post_run_error) if outcome == JobOutcome::Success => post_run_error,
            _ => outcome,
        }
    }

    async fn run_post_run(&mut self, script: &Script, result: i32) -> StepBody {
        let command = sandbox_argv::vendor_script(
            script,
            "post-run",
            &self.executor.config.config_dir,
            &[result.to_string()],
            self.job_env(),
        )?;
        match tokio::time::timeout(POST_RUN_TIMEOUT, self.exec_logged(Step::PostRun, &command))
            .await
        {
            Ok(Ok(0)) => Ok(Some(0)),
            Ok(Ok(code)) => {
                Err(StepStop::error(format!("post-run failed (exit {code})")).exit(code))
            }
            Ok(Err(stop)) => Err(stop),
            Err(_elapsed) => Err(StepStop::error(format!(
                "post-run timed out after {}s",
                POST_RUN_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Streams the plugin's log into `step`'s output, once per job.
    pub(super) async fn show_plugin_log(&mut self, step: Step) {
        self.plugin_log_shown = true;
        let name = &self.names.plugin_container;
        self.say(
            step,
            &format!("--- log of the plugin container {name} ---\n"),
        );
        let command = sandbox_argv::plugin_logs(name);
        match tokio::time::timeout(CLEANUP_EXEC_TIMEOUT, self.exec_logged(step, &command)).await {
            Ok(Ok(_)) => {}
            Ok(Err(stop)) => self.say(
                step,
                &format!("cannot read the plugin log: {}\n", stop.reason),
            ),
            Err(_elapsed) => self.say(step, "reading the plugin log timed out\n"),
        }
        self.say(step, "--- end of the plugin log ---\n");
    }

    /// Removes what the job created. Problems are reported in the step and
    /// the service log; they do not change the outcome (a start-up sweep
    /// catches what is left).
    async fn cleanup(&mut self) {
        self.begin(Step::Cleanup);
        let mut problems = Vec::new();
        if self.sandbox_running {
            if self.plugin_started && !self.plugin_log_shown {
                self.show_plugin_log(Step::Cleanup).await;
            }
            let command = sandbox_argv::reset_slot_store();
            match tokio::time::timeout(
                CLEANUP_EXEC_TIMEOUT,
                self.exec_logged(Step::Cleanup, &command),
            )
            .await
            {
                Ok(Ok(0)) => {}
                Ok(Ok(code)) => problems.push(format!(
                    "removing nested containers, pods and volumes failed (exit {code})"
                )),
                Ok(Err(stop)) => problems.push(stop.reason),
                Err(_elapsed) => {
                    problems.push("removing nested containers, pods and volumes timed out".into())
                }
            }
        }
        // A remote host's kernel is seen through the sandbox: before it goes.
        if self.host.is_remote() && self.sandbox_running {
            self.host_hygiene().await;
        }
        if let Err(problem) = self.remove_labelled().await {
            problems.push(problem);
        }
        match tokio::fs::remove_dir_all(&self.work_dir).await {
            Ok(()) => self.say(
                Step::Cleanup,
                &format!("removed {}\n", self.work_dir.display()),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("cannot remove {}: {e}", self.work_dir.display())),
        }
        if !self.host.is_remote() {
            self.host_hygiene().await;
        }
        for problem in &problems {
            tracing::warn!(job = %self.job.id, "cleanup: {problem}");
        }
        let body = if problems.is_empty() {
            Ok(None)
        } else {
            Err(StepStop::error(problems.join("; ")))
        };
        // Cleanup never changes the verdict.
        let _ = self.finish(body);
    }

    /// Where this job's host kernel is read and changed from.
    fn host_view(&self) -> HostView<'_> {
        if self.host.is_remote() {
            HostView::Container {
                podman: &self.host.podman,
                container: &self.names.sandbox_container,
            }
        } else {
            HostView::Local
        }
    }

    /// Removes the kernel state (loop, dm, multipath, LVM, iSCSI, mounts)
    /// the job added and lists it in the log; what stays makes the job's
    /// host unhealthy, naming the backend. With other jobs running,
    /// additions may be theirs, so they are only listed.
    async fn host_hygiene(&self) {
        let view = self.host_view();
        let added = match (&self.host_before, &HostState::read(&view).await) {
            (Ok(before), Ok(after)) => after.added_since(before),
            (Err(why), _) | (_, Err(why)) => {
                tracing::warn!(job = %self.job.id, "host hygiene not checked: {why}");
                self.say(
                    Step::Cleanup,
                    &format!("== host hygiene ==\nnot checked: {why}\n"),
                );
                return;
            }
        };
        // Only jobs on this host share its kernel.
        let others_running = self
            .executor
            .running
            .lock()
            .expect("running-jobs lock")
            .iter()
            .any(|(id, host)| id != self.job.id.as_str() && *host == self.host.name);
        let report = if others_running && !added.is_empty() {
            let why = "other jobs were running, so it may be theirs; not removed";
            HygieneReport {
                removed: Vec::new(),
                left: added
                    .into_iter()
                    .map(|item| (item, why.to_string()))
                    .collect(),
            }
        } else {
            let report = hygiene::remove(&view, added).await;
            let backend = &self.job.request.backend;
            let problems = report
                .left
                .iter()
                .map(|(item, why)| {
                    format!(
                        "{item}: {why} (left by backend {backend}, job {})",
                        self.job.id
                    )
                })
                .collect();
            self.executor.set_host_problems(&self.host.name, problems);
            report
        };
        for (item, why) in &report.left {
            tracing::warn!(job = %self.job.id, host = %self.host.name, "host hygiene: {item} left: {why}");
        }
        self.say(Step::Cleanup, &report.render());
    }

    /// Force-removes every container, pod and volume labelled with this job.
    async fn remove_labelled(&self) -> Result<(), String> {
        self.executor
            .remove_labelled(
                &self.host.podman,
                (JOB_LABEL, self.job.id.as_str()),
                |_| true,
                |kind, name| self.say(Step::Cleanup, &format!("removed {kind} {name}\n")),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The config dir as the job sees it at `/config`: the scripts and files
/// the config names, never the `config` file itself (GH_TOKEN, the webhook
/// secret, WEB_ADMIN_TOKEN: one approved PR would keep them for ever), nor
/// a state dir kept inside it (the journal, other jobs' logs). Both are
/// covered read-only by empty stand-ins.
fn config_binds(config_dir: &Path, state_dir: &Path, empty_dir: &Path) -> Vec<super::podman::Bind> {
    let inside = |path: &Path| {
        path.strip_prefix(config_dir)
            .ok()
            .filter(|rel| !rel.as_os_str().is_empty())
            .map(|rel| format!("{}/{}", sandbox_argv::SANDBOX_CONFIG_DIR, rel.display()))
    };
    let mut binds = vec![
        bind(
            config_dir.to_path_buf(),
            sandbox_argv::SANDBOX_CONFIG_DIR,
            true,
        ),
        bind(
            "/dev/null".into(),
            &format!(
                "{}/{}",
                sandbox_argv::SANDBOX_CONFIG_DIR,
                crate::config::CONFIG_FILE_NAME
            ),
            true,
        ),
    ];
    if let Some(destination) = inside(state_dir) {
        binds.push(bind(empty_dir.to_path_buf(), &destination, true));
    }
    binds
}

fn bind(source: PathBuf, destination: &str, read_only: bool) -> super::podman::Bind {
    super::podman::Bind {
        source,
        destination: destination.to_string(),
        read_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(binds: &[super::super::podman::Bind]) -> Vec<(String, String, bool)> {
        binds
            .iter()
            .map(|b| {
                (
                    b.source.display().to_string(),
                    b.destination.clone(),
                    b.read_only,
                )
            })
            .collect()
    }

    #[test]
    fn the_job_sees_the_config_dir_without_the_config_file_or_a_state_dir_inside() {
        let empty = Path::new("/var/lib/ember-ci/run/empty");
        let hidden = [
            ("/etc/ember-ci".into(), "/config".into(), true),
            ("/dev/null".into(), "/config/config".into(), true),
        ];
        assert_eq!(
            mounts(&config_binds(
                Path::new("/etc/ember-ci"),
                Path::new("/var/lib/ember-ci"),
                empty
            )),
            hidden
        );
        let mut with_state = hidden.to_vec();
        with_state.push((empty.display().to_string(), "/config/state".into(), true));
        assert_eq!(
            mounts(&config_binds(
                Path::new("/etc/ember-ci"),
                Path::new("/etc/ember-ci/state"),
                empty
            )),
            with_state
        );
    }
}
