//! One job: one PR head commit on one backend, run in a privileged Podman
//! sandbox with its own Podman inside (docs/ARCHITECTURE.md "One job").
//!
//! The executor owns everything a job touches on the host: the git cache,
//! the sandbox image, the sandbox container, the slot's image store (the
//! layer cache, kept within IMAGE_STORE_MAX_GB) and the job's work dir. It reports steps and their output to a
//! [`StepObserver`] and returns a [`JobOutcome`]; it never talks to GitHub,
//! masks secrets or stores logs.
//!
//! Submodules, each with one job:
//! - `cancel`: [`CancelSignal`], cancellation with its reason.
//! - `job`: the step sequence, who decides the outcome, cleanup on every path.
//! - `sandbox_argv`: the argument lists run inside the sandbox (pure).
//! - `git`: the cached bare clone and tree export (host side).
//! - `hygiene`: kernel state a job leaves on the host (loop, dm, LVM,
//!   iSCSI, mounts), diffed before/after and removed.
//! - `podman`: the only podman-api user.
//! - `hosts`, `ssh_link`: the hosts jobs run on (this one and PODMAN_HOSTS,
//!   reached through an ssh-forwarded API socket) and whether they answer.
//! - `podman_service`: our own `podman system service` when none is given.
//! - `sandbox_image`: the embedded containers/sandbox files and their build.
//! - `store`: a slot's persistent image store on the host, its size and
//!   last-use record (and why there is one store per slot).
//! - `eviction`: which image goes next when a store is over its budget.
//! - `store_budget`: the budget policy applied after each build (prune,
//!   then evict), apart from the step sequence.
//! - `process`: host child processes with streamed output.
//! - `sanity`: the sanity step's JUnit report and verdict (who is to blame).
//! - `sandbox_host`: the old VM's host for the plugin: iscsid, multipathd,
//!   the slot's own iSCSI initiator name.

mod cancel;
mod eviction;
mod git;
mod hosts;
mod hygiene;
mod job;
mod observer;
mod podman;
mod podman_conf;
mod podman_service;
mod process;
mod remote_job;
mod sandbox_argv;
mod sandbox_host;
mod sandbox_image;
mod sanity;
mod ssh_link;
mod store;
mod store_budget;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use thiserror::Error;

pub use cancel::CancelSignal;
pub use git::{resolve_pull_head, GitError};
pub use observer::{Observers, StepObserver, StepResult};
pub use podman::PodmanError;
pub use podman_service::ServiceError as PodmanServiceError;
pub use sandbox_image::SandboxImageError;

use crate::config::{BackendConfig, ExecutorConfig, HostName};
use crate::model::{JobId, JobOutcome, JobRequest, Step};
pub use hosts::probe as probe_hosts;
use hosts::JobHost;
pub use podman::HostFacts;
use podman::PodmanClient;
/// The containers.conf (and its variable) a Podman API service should run
/// with: this host's settings, exec sessions' conmons bounded. Another
/// host's service needs the same `[engine] exit_command_delay`.
pub use podman_conf::{write as write_service_conf, CONTAINERS_CONF};
use podman_service::PodmanService;
use sandbox_image::SandboxImageRecipe;

/// Every container, pod and volume a job creates carries
/// `ember-ci.job=<job id>` (nested ones too, in the slot's store)...
pub const JOB_LABEL: &str = "ember-ci.job";
/// ...and the host's ones `ember-ci.instance=<hash of the state dir>`, so
/// two ember-ci instances (or parallel tests) on one host never sweep each
/// other's containers.
pub const INSTANCE_LABEL: &str = "ember-ci.instance";
const INSTANCE_ID_HEX_DIGITS: usize = 12;
const BYTES_PER_GB: u64 = 1_000_000_000;

/// How long our own `podman system service` may take to answer.
const PODMAN_SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One unit of work for the executor.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub request: JobRequest,
    /// Worker slot, 0..NUM_WORKERS: picks the persistent image-store volume.
    /// The scheduler runs at most one job per slot at a time.
    pub slot: usize,
    /// The host it runs on (`local`, or a PODMAN_HOSTS name); slots count
    /// per host.
    pub host: HostName,
}

/// A host as the web UI and `doctor` see it.
#[derive(Debug, Clone)]
pub struct HostStatus {
    pub name: HostName,
    pub is_reachable: bool,
    /// Why not, when unreachable.
    pub problem: Option<String>,
    /// Kernel state a job left there that hygiene could not remove, each
    /// naming the job's backend; non-empty: the host is unhealthy.
    pub left_behind: Vec<String>,
}

/// Failures outside a job: start-up, the sandbox image, the sweep.
#[derive(Debug, Error)]
pub enum ExecutorError {
    #[error(transparent)]
    PodmanService(#[from] PodmanServiceError),
    #[error(transparent)]
    Podman(#[from] PodmanError),
    #[error(transparent)]
    SandboxImage(#[from] SandboxImageError),
    #[error("SANDBOX_IMAGE {0} does not exist in the host's image store")]
    SandboxImageMissing(String),
    #[error(transparent)]
    Link(#[from] ssh_link::LinkError),
    #[error("copying the sandbox image {image} to host {host}: {problem}")]
    ImageCopy {
        image: String,
        host: HostName,
        problem: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs jobs on one host's Podman. Shared by all worker slots.
pub struct Executor {
    config: ExecutorConfig,
    /// The configured backends; a job names one.
    backends: Vec<BackendConfig>,
    /// `local` first, then PODMAN_HOSTS in their order.
    hosts: std::sync::Arc<Vec<JobHost>>,
    git: git::GitCache,
    /// Absolute, since they become bind-mount sources.
    state_dir: PathBuf,
    config_dir: PathBuf,
    /// Value of [`INSTANCE_LABEL`] on everything this instance creates.
    instance_id: String,
    /// Ids of the jobs running now (which a sweep must not touch), with
    /// their hosts.
    running: Mutex<HashMap<String, HostName>>,
    /// Per host, what the last job's host hygiene there could not remove
    /// (none: healthy).
    host_problems: Mutex<BTreeMap<HostName, Vec<String>>>,
    /// Disk budget of each slot's store: IMAGE_STORE_MAX_GB split evenly
    /// between the NUM_WORKERS slots.
    store_budget_bytes: u64,
    /// One sandbox image build at a time (concurrent jobs would build the
    /// same image twice); a sweep of the scratch dir holds it too.
    sandbox_image_lock: tokio::sync::Mutex<()>,
    /// Our own API service, when config.podman_socket is None; killed on drop.
    _service: Option<PodmanService>,
}

impl Executor {
    /// Connects to config.podman_socket, or starts `podman system service`
    /// on `<state_dir>/run/podman.sock` and waits (bounded) until it answers.
    pub async fn new(
        config: ExecutorConfig,
        backends: Vec<BackendConfig>,
    ) -> Result<Self, ExecutorError> {
        let state_dir = absolute(&config.state_dir)?;
        let config_dir = absolute(&config.config_dir)?;
        let (podman, service) = match &config.podman_socket {
            Some(socket) => {
                let client = PodmanClient::unix(socket);
                client.ping().await?;
                (client, None)
            }
            None => {
                let socket = state_dir.join("run").join("podman.sock");
                let service = PodmanService::start(&socket, PODMAN_SERVICE_READY_TIMEOUT).await?;
                (PodmanClient::unix(service.socket()), Some(service))
            }
        };
        let slots = u64::try_from(config.num_workers.max(1)).unwrap_or(u64::MAX);
        let mut all_hosts = vec![JobHost::local(podman)];
        all_hosts.extend(hosts::remote_hosts(&config.hosts, &state_dir)?);
        let all_hosts = std::sync::Arc::new(all_hosts);
        hosts::connect_all(&all_hosts).await;
        hosts::spawn_rechecks(std::sync::Arc::downgrade(&all_hosts));
        Ok(Self {
            git: git::GitCache::new(&state_dir, &config.clone_url),
            instance_id: instance_id(&state_dir),
            running: Mutex::default(),
            host_problems: Mutex::default(),
            store_budget_bytes: config.image_store_max_gb.saturating_mul(BYTES_PER_GB) / slots,
            config,
            backends,
            hosts: all_hosts,
            state_dir,
            config_dir,
            sandbox_image_lock: tokio::sync::Mutex::new(()),
            _service: service,
        })
    }

    /// Kernel state a job left that host hygiene could not remove; while
    /// non-empty the host is unhealthy (the next job may trip over it).
    pub fn host_problems(&self) -> Vec<String> {
        let problems = self.host_problems.lock().expect("host-problems lock");
        problems
            .iter()
            .flat_map(|(host, list)| list.iter().map(move |p| format!("host {host}: {p}")))
            .collect()
    }

    /// Records what a job's hygiene left on `host` (empty: clean again).
    pub(crate) fn set_host_problems(&self, host: &HostName, problems: Vec<String>) {
        let mut all = self.host_problems.lock().expect("host-problems lock");
        if problems.is_empty() {
            all.remove(host);
        } else {
            all.insert(host.clone(), problems);
        }
    }

    /// Sets each slot store's budget in bytes, overriding the share of
    /// IMAGE_STORE_MAX_GB (whose GB granularity is too coarse for tests).
    pub fn with_store_budget_bytes(mut self, bytes_per_slot: u64) -> Self {
        self.store_budget_bytes = bytes_per_slot;
        self
    }

    /// Every host with whether it answers now.
    pub fn host_statuses(&self) -> Vec<HostStatus> {
        let problems = self.host_problems.lock().expect("host-problems lock");
        self.hosts
            .iter()
            .map(|host| HostStatus {
                name: host.name.clone(),
                is_reachable: host.is_reachable(),
                problem: (!host.is_reachable()).then(|| host.problem()),
                left_behind: problems.get(&host.name).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// Whether `host` is known and answered last time it was asked.
    pub fn is_host_reachable(&self, host: &HostName) -> bool {
        self.job_host(host).is_some_and(JobHost::is_reachable)
    }

    /// Pings `host` now (reopening its ssh forward when it died) and
    /// returns its facts: Podman version, runtime, store, free disk.
    pub async fn check_host(&self, host: &HostName) -> Result<HostFacts, String> {
        let Some(job_host) = self.job_host(host) else {
            return Err(format!("host {host} is not configured"));
        };
        if !job_host.check().await {
            return Err(format!("host {host} unreachable: {}", job_host.problem()));
        }
        job_host.facts().await.map_err(|e| e.to_string())
    }

    fn job_host(&self, name: &HostName) -> Option<&JobHost> {
        self.hosts.iter().find(|h| &h.name == name)
    }

    fn local_podman(&self) -> &PodmanClient {
        &self.hosts[0].podman
    }

    /// The value of [`INSTANCE_LABEL`] on this instance's containers.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Runs `job` to the end. Never fails: our own breakage is
    /// `JobOutcome::Error`. Cancelling abandons the running step, then
    /// POST_RUN and cleanup still run and the outcome is `Cancelled` with
    /// the signal's reason.
    pub async fn run(
        &self,
        job: &Job,
        observer: &dyn StepObserver,
        cancel: CancelSignal,
    ) -> JobOutcome {
        let _running = RunningJob::register(&self.running, job.id.as_str(), &job.host);
        let Some(host) = self.job_host(&job.host) else {
            return JobOutcome::Error {
                step: Step::Fetch,
                reason: format!("host {} is not configured", job.host),
            };
        };
        if host.take_sweep() {
            // What jobs lost with the host left there, before a new one runs.
            if let Err(error) = self.sweep_host(host).await {
                tracing::warn!(host = %host.name, %error, "cannot sweep a host that answers again");
            }
        }
        let outcome = job::JobRun::new(self, host, job, observer)
            .run(cancel)
            .await;
        // Our breakage on another host may be the host itself going away.
        match outcome {
            JobOutcome::Error { step, .. } | JobOutcome::TimedOut { step, .. }
                if host.is_remote() && !host.check().await =>
            {
                host.mark_unreachable();
                JobOutcome::Error {
                    step,
                    reason: format!("host {} unreachable", host.name),
                }
            }
            outcome => outcome,
        }
    }

    /// Removes what a crash left: this instance's job-labelled containers,
    /// pods and volumes, job work dirs and scratch dirs, skipping the jobs
    /// running now (so it is also safe while jobs run). Nested containers
    /// in a slot's store are reset by the next job of that slot. Returns
    /// how many things it removed.
    pub async fn sweep_leftovers(&self) -> Result<usize, ExecutorError> {
        let running = self.running.lock().expect("running-jobs lock").clone();
        let mut removed = 0;
        for host in self.hosts.iter().filter(|h| h.is_reachable()) {
            removed += self.sweep_host(host).await?;
        }
        removed += remove_entries(&self.jobs_dir(), |name| !running.contains_key(name)).await?;
        let _no_sandbox_build = self.sandbox_image_lock.lock().await;
        removed += remove_entries(&self.scratch_dir(), |_| true).await?;
        Ok(removed)
    }

    /// This instance's containers, pods and volumes on `host` of jobs not
    /// running now.
    async fn sweep_host(&self, host: &JobHost) -> Result<usize, PodmanError> {
        let running = self.running.lock().expect("running-jobs lock").clone();
        let is_leftover = |item: &podman::Labelled| {
            item.labels
                .get(JOB_LABEL)
                .is_some_and(|job| !running.contains_key(job))
        };
        self.remove_labelled(
            &host.podman,
            (INSTANCE_LABEL, &self.instance_id),
            is_leftover,
            |kind, name| tracing::info!(%kind, name, host = %host.name, "removed a leftover job {kind}"),
        )
        .await
    }

    /// Force-removes the containers, pods and volumes carrying `label`
    /// (key, value) that `should_remove` accepts, telling `on_removed`
    /// about each; returns how many it removed. Serves the start-up sweep
    /// and a job's cleanup alike.
    async fn remove_labelled(
        &self,
        podman: &PodmanClient,
        (key, value): (&str, &str),
        should_remove: impl Fn(&podman::Labelled) -> bool,
        mut on_removed: impl FnMut(LabelledKind, &str),
    ) -> Result<usize, PodmanError> {
        let mut removed = 0;
        for container in podman.containers_labelled(key, value).await? {
            if should_remove(&container) && podman.remove_container(&container.name).await? {
                on_removed(LabelledKind::Container, &container.name);
                removed += 1;
            }
        }
        for pod in podman.pods_labelled(key, value).await? {
            if should_remove(&pod) && podman.remove_pod(&pod.name).await? {
                on_removed(LabelledKind::Pod, &pod.name);
                removed += 1;
            }
        }
        for volume in podman.volumes_labelled(key, value).await? {
            if should_remove(&volume) && podman.remove_volume(&volume.name).await? {
                on_removed(LabelledKind::Volume, &volume.name);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Makes sure the sandbox image exists (building it when needed) and
    /// returns its reference; the build output goes to the Sandbox step.
    pub async fn ensure_sandbox_image(
        &self,
        observer: &dyn StepObserver,
    ) -> Result<String, ExecutorError> {
        let started = std::time::Instant::now();
        observer.step_started(Step::Sandbox);
        let result = self
            .sandbox_image(&mut |chunk| observer.output(Step::Sandbox, chunk))
            .await;
        let note = result.as_ref().err().map(ToString::to_string);
        observer.step_finished(
            Step::Sandbox,
            &StepResult {
                exit_code: None,
                duration: started.elapsed(),
                note,
            },
        );
        result
    }

    async fn sandbox_image(
        &self,
        on_output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<String, ExecutorError> {
        let _one_build_at_a_time = self.sandbox_image_lock.lock().await;
        if let Some(image) = &self.config.sandbox_image {
            return if self.local_podman().image_exists(image).await? {
                Ok(image.clone())
            } else {
                Err(ExecutorError::SandboxImageMissing(image.clone()))
            };
        }
        let recipe = recipe_of(&self.config);
        let image = recipe.image_ref();
        if self.local_podman().image_exists(&image).await? {
            return Ok(image);
        }
        on_output(
            format!("building the sandbox image {image} (first use on this host)\n").as_bytes(),
        );
        // The podman CLI builds into the local store: this assumes the API
        // socket belongs to this host's root Podman, as on our machines.
        Ok(recipe.build(&self.scratch_dir(), on_output).await?)
    }

    fn jobs_dir(&self) -> PathBuf {
        self.state_dir.join("jobs")
    }

    fn scratch_dir(&self) -> PathBuf {
        self.state_dir.join("tmp")
    }

    fn slot_store(&self, slot: usize) -> store::SlotStore {
        store::SlotStore::new(&self.state_dir, slot)
    }
}

/// What [`Executor::remove_labelled`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelledKind {
    Container,
    Pod,
    Volume,
}

impl std::fmt::Display for LabelledKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LabelledKind::Container => "container",
            LabelledKind::Pod => "pod",
            LabelledKind::Volume => "volume",
        })
    }
}

/// Marks a job as running for as long as its `run` future lives (a
/// dropped future deregisters too).
struct RunningJob<'a> {
    running: &'a Mutex<HashMap<String, HostName>>,
    id: String,
}

impl<'a> RunningJob<'a> {
    fn register(running: &'a Mutex<HashMap<String, HostName>>, id: &str, host: &HostName) -> Self {
        running
            .lock()
            .expect("running-jobs lock")
            .insert(id.to_string(), host.clone());
        Self {
            running,
            id: id.to_string(),
        }
    }
}

impl Drop for RunningJob<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&self.id);
        }
    }
}

/// Short hash of the absolute state dir: one instance, one state dir.
/// Gives `host` the sandbox image: `podman save` here piped into `podman
/// load` there through the host's forwarded API socket (the image crosses
/// in the ssh session; the remote host needs no registry).
async fn copy_image_to(host: &JobHost, image: &str) -> Result<(), ExecutorError> {
    if host.podman.image_exists(image).await? {
        return Ok(());
    }
    let copy_error = |problem: String| ExecutorError::ImageCopy {
        image: image.to_string(),
        host: host.name.clone(),
        problem,
    };
    let socket = host
        .forwarded_socket()
        .ok_or_else(|| copy_error("the host has no API socket of its own".into()))?;
    let script = "set -o pipefail; podman save \"$1\" | podman --url \"unix://$2\" load";
    let output = tokio::process::Command::new("bash")
        .args(["-c", script, "copy-image", image])
        .arg(socket)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| copy_error(e.to_string()))?;
    if !output.status.success() {
        return Err(copy_error(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

fn instance_id(state_dir: &Path) -> String {
    let digest = hex::encode(Sha256::digest(state_dir.as_os_str().as_encoded_bytes()));
    digest[..INSTANCE_ID_HEX_DIGITS].to_string()
}

/// Removes the entries of `dir` whose names `is_leftover` accepts; a
/// missing `dir` has none.
async fn remove_entries(
    dir: &Path,
    is_leftover: impl Fn(&str) -> bool,
) -> Result<usize, ExecutorError> {
    let io_error = |source| ExecutorError::Io {
        context: format!("sweeping {}", dir.display()),
        source,
    };
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(e)),
    };
    let mut removed = 0;
    while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
        if !is_leftover(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type().await.map_err(io_error)?.is_dir() {
            tokio::fs::remove_dir_all(&path).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        result.map_err(io_error)?;
        tracing::info!(path = %path.display(), "removed a leftover job file");
        removed += 1;
    }
    Ok(removed)
}

/// The sandbox image a job on this config runs in: SANDBOX_IMAGE, or the
/// tag of the built-in recipe (for the versions written into job logs).
pub fn sandbox_image_ref(config: &ExecutorConfig) -> String {
    match &config.sandbox_image {
        Some(image) => image.clone(),
        None => recipe_of(config).image_ref(),
    }
}

fn recipe_of(config: &ExecutorConfig) -> SandboxImageRecipe {
    SandboxImageRecipe::new(
        &config.sandbox_base_image,
        config.csi_sanity.as_ref(),
        &config.csi_sanity_extra,
    )
}

fn absolute(path: &Path) -> Result<PathBuf, ExecutorError> {
    std::path::absolute(path).map_err(|source| ExecutorError::Io {
        context: format!("resolving {}", path.display()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The scheduler spawns `run` on the runtime, so its future must be Send.
    #[allow(dead_code)]
    fn run_future_is_send(executor: &Executor, job: &Job, observer: &dyn StepObserver) {
        assert_send(&executor.run(job, observer, CancelSignal::new()));
        assert_send(&executor.sweep_leftovers());
        assert_send(&executor.ensure_sandbox_image(observer));
    }
}
