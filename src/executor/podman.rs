//! The only user of podman-api: the host Podman's view of a job (the
//! sandbox container, exec sessions, sweeping containers, pods and volumes
//! by label). podman-api types stop here; callers see names, exit codes and
//! [`PodmanError`].
//!
//! Two crate pitfalls shape this module: `wait()` reports no exit code, and
//! an exec's exit code is only in the exec session's inspect output; the
//! stop timeout is ignored, so containers are deleted with force.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use podman_api::models::ContainerMount;
use podman_api::opts::{
    ContainerCreateOpts, ContainerDeleteOpts, ContainerListFilter, ContainerListOpts,
    ExecCreateOpts, PodListFilter, PodListOpts, VolumeListFilter, VolumeListOpts,
};
use podman_api::Podman;
use thiserror::Error;

use super::sandbox_argv::InnerCommand;

/// How long an exec session may still report "running" after its output
/// stream closed (Podman records the exit code just after).
const EXEC_EXIT_SETTLE: Duration = Duration::from_secs(10);
const EXEC_EXIT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
#[error("podman: {action}: {message}")]
pub struct PodmanError {
    action: String,
    message: String,
    not_found: bool,
}

impl PodmanError {
    fn api(action: impl Into<String>, error: podman_api::Error) -> Self {
        let not_found = matches!(
            &error,
            podman_api::Error::Fault { code, .. } if code.as_u16() == 404
        );
        Self {
            action: action.into(),
            message: error.to_string(),
            not_found,
        }
    }

    fn other(action: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            message: message.into(),
            not_found: false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.not_found
    }
}

/// A host directory bind-mounted into the sandbox.
#[derive(Debug, Clone)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Everything the sandbox container is created with.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub name: String,
    pub image: String,
    pub labels: Vec<(String, String)>,
    pub binds: Vec<Bind>,
    /// Named volumes (name, destination), created by Podman when missing.
    pub volumes: Vec<(String, String)>,
}

/// What `doctor` and the sandbox need to know of a host's Podman.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub version: String,
    pub runtime: String,
    /// The root Podman's image store (shared read-only with sandboxes).
    pub graph_root: String,
    pub disk_free_bytes: Option<u64>,
}

/// A container, pod or volume found by label, with all its labels.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// A connection to one Podman API socket.
#[derive(Debug, Clone)]
pub struct PodmanClient {
    api: Podman,
}

impl PodmanClient {
    pub fn unix(socket: &Path) -> Self {
        Self {
            api: Podman::unix(socket),
        }
    }

    pub async fn ping(&self) -> Result<(), PodmanError> {
        self.api
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| PodmanError::api("ping", e))
    }

    pub async fn facts(&self) -> Result<HostFacts, PodmanError> {
        let info = self
            .api
            .info()
            .await
            .map_err(|e| PodmanError::api("reading podman info", e))?;
        let store = info.store.as_ref();
        let free = store.and_then(|s| {
            Some(
                s.graph_root_allocated?
                    .saturating_sub(s.graph_root_used.unwrap_or(0)),
            )
        });
        Ok(HostFacts {
            version: info
                .version
                .and_then(|v| v.version)
                .unwrap_or_else(|| "unknown".into()),
            runtime: info
                .host
                .and_then(|h| h.oci_runtime)
                .and_then(|r| r.name)
                .unwrap_or_else(|| "unknown".into()),
            graph_root: store
                .and_then(|s| s.graph_root.clone())
                .unwrap_or_else(|| "/var/lib/containers/storage".into()),
            disk_free_bytes: free,
        })
    }

    /// Unpacks the tar archive `tar` into `dir` of a running container
    /// (through the API, so the bytes travel in its transport).
    pub async fn copy_into(
        &self,
        container: &str,
        dir: &str,
        tar: Vec<u8>,
    ) -> Result<(), PodmanError> {
        self.api
            .containers()
            .get(container)
            .copy_to(dir, tar.into())
            .await
            .map_err(|e| PodmanError::api(format!("copying files into {container}:{dir}"), e))
    }

    /// `path` of a container as a tar archive (a directory under its own name).
    pub async fn copy_out(&self, container: &str, path: &str) -> Result<Vec<u8>, PodmanError> {
        let action = || format!("copying {container}:{path} out");
        let containers = self.api.containers();
        let container = containers.get(container);
        let stream = container.copy_from(path);
        tokio::pin!(stream);
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            tar.extend(chunk.map_err(|e| PodmanError::api(action(), e))?);
        }
        Ok(tar)
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, PodmanError> {
        self.api
            .images()
            .get(image)
            .exists()
            .await
            .map_err(|e| PodmanError::api(format!("checking image {image}"), e))
    }

    /// Creates and starts a privileged sandbox that idles until removed.
    pub async fn start_sandbox(&self, spec: &SandboxSpec) -> Result<(), PodmanError> {
        let mounts: Vec<ContainerMount> = spec
            .binds
            .iter()
            .map(|bind| ContainerMount {
                destination: Some(bind.destination.clone()),
                source: Some(bind.source.display().to_string()),
                _type: Some("bind".to_string()),
                options: Some(vec![
                    "rbind".to_string(),
                    if bind.read_only { "ro" } else { "rw" }.to_string(),
                ]),
                uid_mappings: None,
                gid_mappings: None,
            })
            .collect();
        let opts = ContainerCreateOpts::builder()
            .name(&spec.name)
            .image(&spec.image)
            .command(["sleep", "infinity"])
            .privileged(true)
            .labels(spec.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .mounts(mounts)
            .volumes(
                spec.volumes
                    .iter()
                    .map(|(name, dest)| podman_api::models::NamedVolume {
                        name: Some(name.clone()),
                        dest: Some(dest.clone()),
                        is_anonymous: None,
                        options: None,
                    }),
            )
            .build();
        self.api
            .containers()
            .create(&opts)
            .await
            .map_err(|e| PodmanError::api(format!("creating container {}", spec.name), e))?;
        self.api
            .containers()
            .get(&spec.name)
            .start(None)
            .await
            .map_err(|e| PodmanError::api(format!("starting container {}", spec.name), e))
    }

    /// Runs `command` in `container`, passing its merged output to
    /// `on_output` as it arrives, and returns its exit code. Dropping the
    /// future detaches from the session; the process ends with the container.
    pub async fn exec(
        &self,
        container: &str,
        command: &InnerCommand,
        on_output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<i64, PodmanError> {
        let action = || {
            format!(
                "exec {} in {container}",
                command.argv.first().map_or("", String::as_str)
            )
        };
        let mut opts = ExecCreateOpts::builder()
            .command(command.argv.iter().map(String::as_str))
            .attach_stdout(true)
            .attach_stderr(true)
            .env(command.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(dir) = &command.workdir {
            opts = opts.working_dir(dir);
        }
        let exec = self
            .api
            .containers()
            .get(container)
            .create_exec(&opts.build())
            .await
            .map_err(|e| PodmanError::api(action(), e))?;
        let mut stream = exec
            .start(&Default::default())
            .await
            .map_err(|e| PodmanError::api(action(), e))?
            .ok_or_else(|| PodmanError::other(action(), "exec started detached"))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| PodmanError::api(action(), e.into()))?;
            on_output(&Vec::<u8>::from(chunk));
        }
        drop(stream);

        let deadline = tokio::time::Instant::now() + EXEC_EXIT_SETTLE;
        loop {
            let info = exec
                .inspect()
                .await
                .map_err(|e| PodmanError::api(action(), e))?;
            let running = info
                .get("Running")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if !running {
                return info
                    .get("ExitCode")
                    .and_then(|v| v.as_i64())
                    .ok_or_else(|| {
                        PodmanError::other(action(), "exec session reported no exit code")
                    });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PodmanError::other(
                    action(),
                    "exec session still running after its output closed",
                ));
            }
            tokio::time::sleep(EXEC_EXIT_POLL).await;
        }
    }

    /// Runs `command` and returns its exit code and output as text.
    pub async fn exec_captured(
        &self,
        container: &str,
        command: &InnerCommand,
    ) -> Result<(i64, String), PodmanError> {
        let mut output = Vec::new();
        let code = self
            .exec(container, command, &mut |chunk| {
                output.extend_from_slice(chunk)
            })
            .await?;
        Ok((code, String::from_utf8_lossy(&output).into_owned()))
    }

    /// Every container (any state) carrying `key=value`.
    pub async fn containers_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<Labelled>, PodmanError> {
        let opts = ContainerListOpts::builder()
            .all(true)
            .filter([ContainerListFilter::LabelKeyVal(key.into(), value.into())])
            .build();
        let containers = self
            .api
            .containers()
            .list(&opts)
            .await
            .map_err(|e| PodmanError::api(format!("listing containers labelled {key}"), e))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .and_then(|names| names.into_iter().next())
                    .or(c.id)?;
                Some(Labelled {
                    name,
                    labels: c.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Every pod carrying `key=value`.
    pub async fn pods_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<Labelled>, PodmanError> {
        let opts = PodListOpts::builder()
            .filter([PodListFilter::LabelKeyVal(key.into(), value.into())])
            .build();
        let pods = self
            .api
            .pods()
            .list(&opts)
            .await
            .map_err(|e| PodmanError::api(format!("listing pods labelled {key}"), e))?;
        Ok(pods
            .into_iter()
            .filter_map(|p| {
                Some(Labelled {
                    name: p.name.or(p.id)?,
                    labels: p.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Every volume carrying `key=value`.
    pub async fn volumes_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<Labelled>, PodmanError> {
        let opts = VolumeListOpts::builder()
            .filter([VolumeListFilter::LabelKeyVal(key.into(), value.into())])
            .build();
        let volumes = self
            .api
            .volumes()
            .list(&opts)
            .await
            .map_err(|e| PodmanError::api(format!("listing volumes labelled {key}"), e))?;
        Ok(volumes
            .into_iter()
            .map(|v| Labelled {
                name: v.name,
                labels: v.labels,
            })
            .collect())
    }

    /// Kills and deletes a container with its anonymous volumes; a missing
    /// container is not an error (returns false). No stop grace period: the
    /// sandbox's `sleep` ignores SIGTERM and would cost 10 s per job.
    pub async fn remove_container(&self, name: &str) -> Result<bool, PodmanError> {
        let opts = ContainerDeleteOpts::builder()
            .force(true)
            .volumes(true)
            .timeout(0)
            .build();
        match self.api.containers().get(name).delete(&opts).await {
            Ok(()) => Ok(true),
            Err(e) => {
                let error = PodmanError::api(format!("removing container {name}"), e);
                if error.is_not_found() {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Force-removes a pod and its containers; a missing pod is not an error.
    pub async fn remove_pod(&self, name: &str) -> Result<bool, PodmanError> {
        match self.api.pods().get(name).remove().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let error = PodmanError::api(format!("removing pod {name}"), e);
                if error.is_not_found() {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }

    pub async fn remove_volume(&self, name: &str) -> Result<bool, PodmanError> {
        match self.api.volumes().get(name).remove().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let error = PodmanError::api(format!("removing volume {name}"), e);
                if error.is_not_found() {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }
}
