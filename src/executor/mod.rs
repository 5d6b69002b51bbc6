//! One job: one PR head commit on one backend, run in a privileged Podman
//! sandbox with its own Podman inside (design.md "One job").
//!
//! The executor owns everything a job touches on the host: the git cache,
//! the sandbox image, the sandbox container, the slot's image-store volume
//! and the job's work dir. It reports steps and their output to a
//! [`StepObserver`] and returns a [`JobOutcome`]; it never talks to GitHub,
//! masks secrets or stores logs.
//!
//! Submodules, each with one job:
//! - `job`: the step sequence, who decides the outcome, cleanup on every path.
//! - `commands`: the argument lists run inside the sandbox (pure).
//! - `git`: the cached bare clone and tree export (host side).
//! - `podman`: the only podman-api user.
//! - `podman_service`: our own `podman system service` when none is given.
//! - `sandbox_image`: the embedded containers/sandbox files and their build.
//! - `process`: host child processes with streamed output.

mod commands;
mod git;
mod job;
mod observer;
mod podman;
mod podman_service;
mod process;
mod sandbox_image;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use git::{resolve_pull_head, GitError};
pub use observer::{StepObserver, StepResult};
pub use podman::PodmanError;
pub use podman_service::ServiceError as PodmanServiceError;
pub use sandbox_image::{SandboxImageError, CSI_SANITY_VERSION};

use crate::config::Config;
use crate::model::{JobId, JobOutcome, JobRequest, Step};
use podman::PodmanClient;
use podman_service::PodmanService;
use sandbox_image::SandboxImageRecipe;

/// Every container and volume a job creates carries `ember-ci.job=<job id>`.
pub const JOB_LABEL: &str = "ember-ci.job";
/// A slot's persistent image-store volume carries `ember-ci.store=<slot>`
/// (and no job label: it outlives jobs on purpose).
pub const STORE_LABEL: &str = "ember-ci.store";

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
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs jobs on one host's Podman. Shared by all worker slots.
pub struct Executor {
    config: Arc<Config>,
    podman: PodmanClient,
    git: git::GitCache,
    /// Absolute, since they become bind-mount sources.
    state_dir: PathBuf,
    config_dir: PathBuf,
    /// One sandbox image build at a time (concurrent jobs would build the
    /// same image twice).
    sandbox_image_lock: tokio::sync::Mutex<()>,
    /// Our own API service, when config.podman_socket is None; killed on drop.
    _service: Option<PodmanService>,
}

impl Executor {
    /// Connects to config.podman_socket, or starts `podman system service`
    /// on `<state_dir>/run/podman.sock` and waits (bounded) until it answers.
    pub async fn new(config: Arc<Config>) -> Result<Self, ExecutorError> {
        let state_dir = absolute(&config.state_dir)?;
        let config_dir = absolute(&config.dir)?;
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
        Ok(Self {
            git: git::GitCache::new(&state_dir, &config.gh_clone_url),
            config,
            podman,
            state_dir,
            config_dir,
            sandbox_image_lock: tokio::sync::Mutex::new(()),
            _service: service,
        })
    }

    /// Runs `job` to the end. Never fails: our own breakage is
    /// `JobOutcome::Error`. Cancelling abandons the running step, then
    /// POST_RUN and cleanup still run and the outcome is `Cancelled` (the
    /// caller knows the real reason).
    pub async fn run(
        &self,
        job: &Job,
        observer: &dyn StepObserver,
        cancel: CancellationToken,
    ) -> JobOutcome {
        job::JobRun::new(self, job, observer).run(cancel).await
    }

    /// At start-up: removes every container and volume labelled with a job
    /// id and every job work dir (a crash left them). Returns how many.
    pub async fn sweep_leftovers(&self) -> Result<usize, ExecutorError> {
        let mut removed = 0;
        for container in self.podman.containers_labelled(JOB_LABEL, None).await? {
            if self.podman.remove_container(&container).await? {
                tracing::info!(%container, "removed a leftover job container");
                removed += 1;
            }
        }
        for volume in self.podman.volumes_labelled(JOB_LABEL, None).await? {
            if self.podman.remove_volume(&volume).await? {
                tracing::info!(%volume, "removed a leftover job volume");
                removed += 1;
            }
        }
        let jobs_dir = self.jobs_dir();
        let io_error = |source| ExecutorError::Io {
            context: format!("sweeping {}", jobs_dir.display()),
            source,
        };
        let mut entries = match tokio::fs::read_dir(&jobs_dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(io_error(e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
            tokio::fs::remove_dir_all(entry.path())
                .await
                .map_err(io_error)?;
            tracing::info!(dir = %entry.path().display(), "removed a leftover job work dir");
            removed += 1;
        }
        Ok(removed)
    }

    /// At start-up after a crash: removes the containers, volumes and work
    /// dirs of the given jobs (the ones the journal says were running), and
    /// nothing else, so other ember-ci instances or tests sharing this
    /// host's Podman keep theirs. Returns how many things were removed.
    pub async fn sweep_jobs(&self, ids: &[JobId]) -> Result<usize, ExecutorError> {
        let mut removed = 0;
        for id in ids {
            for container in self
                .podman
                .containers_labelled(JOB_LABEL, Some(id.as_str()))
                .await?
            {
                if self.podman.remove_container(&container).await? {
                    tracing::info!(%container, job = %id, "removed a leftover job container");
                    removed += 1;
                }
            }
            for volume in self
                .podman
                .volumes_labelled(JOB_LABEL, Some(id.as_str()))
                .await?
            {
                if self.podman.remove_volume(&volume).await? {
                    tracing::info!(%volume, job = %id, "removed a leftover job volume");
                    removed += 1;
                }
            }
            let work_dir = self.jobs_dir().join(id.as_str());
            match tokio::fs::remove_dir_all(&work_dir).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ExecutorError::Io {
                        context: format!("sweeping {}", work_dir.display()),
                        source,
                    })
                }
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
            return if self.podman.image_exists(image).await? {
                Ok(image.clone())
            } else {
                Err(ExecutorError::SandboxImageMissing(image.clone()))
            };
        }
        let recipe = SandboxImageRecipe::new(self.config.sandbox_skip_csi_sanity);
        let image = recipe.image_ref();
        if self.podman.image_exists(&image).await? {
            return Ok(image);
        }
        on_output(
            format!("building the sandbox image {image} (first use on this host)\n").as_bytes(),
        );
        // The podman CLI builds into the local store: this assumes the API
        // socket belongs to this host's root Podman, as on our machines.
        Ok(recipe.build(&self.state_dir.join("tmp"), on_output).await?)
    }

    fn jobs_dir(&self) -> PathBuf {
        self.state_dir.join("jobs")
    }
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
        assert_send(&executor.run(job, observer, CancellationToken::new()));
        assert_send(&executor.sweep_leftovers());
        assert_send(&executor.ensure_sandbox_image(observer));
    }
}
