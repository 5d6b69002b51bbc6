//! A job's sandbox on another host. The steps are the same as here; what
//! differs is that this host's directories cannot be bind-mounted there:
//!
//! - the work dir (`/job`: the PR's tree, scratch, artifacts) and the
//!   config dir (`/config`, without the `config` file and a state dir
//!   inside it) are copied into the sandbox over the API, in the ssh
//!   session, and the files ember-ci reads back (the driver config a
//!   script made, the suite's artifacts) are copied out the same way;
//! - the slot's layer cache is a named volume on that host, one per slot
//!   (`ember-ci-<instance>-slot-<n>`), so each host and slot warms its own;
//! - the sandbox image is copied there when missing.
//!
//! Locally written job files are written on both sides by
//! [`JobRun::put_job_file`], so the step code does not branch.

use std::path::{Path, PathBuf};

use super::job::{JobRun, StepBody, StepStop};
use super::podman::{Bind, SandboxSpec};
use super::sandbox_argv;
use super::{copy_image_to, INSTANCE_LABEL, JOB_LABEL};
use crate::config::CONFIG_FILE_NAME;
use crate::model::Step;

const SANDBOX_HOST_STORE: &str = "/var/lib/host-store";
const SANDBOX_INNER_STORE: &str = "/var/lib/containers";
const KERNEL_MODULES: &str = "/lib/modules";

impl JobRun<'_> {
    pub(super) async fn start_remote_sandbox(&mut self, image: &str) -> StepBody {
        let host = self.host;
        self.say(
            Step::Sandbox,
            &format!(
                "host {}: making sure it has the sandbox image {image}\n",
                host.name
            ),
        );
        copy_image_to(host, image).await?;
        let volume = slot_volume(&self.executor.instance_id, self.job.slot);
        let spec = SandboxSpec {
            name: self.names.sandbox_container.clone(),
            image: image.to_string(),
            labels: vec![
                (JOB_LABEL.to_string(), self.job.id.to_string()),
                (
                    INSTANCE_LABEL.to_string(),
                    self.executor.instance_id.clone(),
                ),
            ],
            binds: vec![
                Bind {
                    source: PathBuf::from(host.graph_root()),
                    destination: SANDBOX_HOST_STORE.into(),
                    read_only: true,
                },
                Bind {
                    source: KERNEL_MODULES.into(),
                    destination: KERNEL_MODULES.into(),
                    read_only: true,
                },
            ],
            volumes: vec![(volume.clone(), SANDBOX_INNER_STORE.into())],
        };
        self.say(
            Step::Sandbox,
            &format!(
                "starting sandbox {} on host {} from {image} (image store: volume {volume})\n",
                spec.name, host.name
            ),
        );
        let mut spec = spec;
        if let Err(error) = host.podman.start_sandbox(&spec).await {
            // As here, a host without kernel modules runs sandboxes without
            // them; only Podman can tell us that of another host.
            if !error.to_string().contains(KERNEL_MODULES) {
                return Err(error.into());
            }
            self.say(
                Step::Sandbox,
                &format!(
                    "host {} has no {KERNEL_MODULES}; the sandbox runs without it\n",
                    host.name
                ),
            );
            spec.binds.retain(|bind| bind.destination != KERNEL_MODULES);
            host.podman.start_sandbox(&spec).await?;
        }
        self.sandbox_running = true;
        self.upload_job_and_config().await?;
        self.reset_slot_store().await
    }

    /// Copies the work dir to `/job` and the config dir (minus the config
    /// file and a state dir kept inside it) to `/config`.
    async fn upload_job_and_config(&self) -> Result<(), StepStop> {
        let work_dir = self.work_dir.clone();
        let config_dir = self.executor.config_dir.clone();
        let state_dir = self.executor.state_dir.clone();
        let tar = tokio::task::spawn_blocking(move || {
            let mut builder = tar::Builder::new(Vec::new());
            builder.follow_symlinks(false);
            append_dir(&mut builder, &work_dir, job_dir_name(), |_| true)?;
            append_dir(&mut builder, &config_dir, config_dir_name(), |path| {
                path.file_name().is_none_or(|n| n != CONFIG_FILE_NAME)
                    && !state_dir.starts_with(path)
            })?;
            builder.into_inner()
        })
        .await
        .map_err(|e| StepStop::error(format!("packing the job's files: {e}")))?
        .map_err(|e| StepStop::error(format!("packing the job's files: {e}")))?;
        self.say(
            Step::Sandbox,
            &format!(
                "copied the job's files and the config dir to host {} ({} KiB)\n",
                self.host.name,
                tar.len() / 1024
            ),
        );
        Ok(self
            .host
            .podman
            .copy_into(&self.names.sandbox_container, "/", tar)
            .await?)
    }

    /// Writes `name` into the work dir, and into the sandbox's `/job` when
    /// it runs on another host.
    pub(super) async fn put_job_file(&self, name: &str, contents: &[u8]) -> Result<(), StepStop> {
        let path = self.work_dir.join(name);
        tokio::fs::write(&path, contents)
            .await
            .map_err(|e| StepStop::error(format!("cannot write {}: {e}", path.display())))?;
        if !self.host.is_remote() {
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o600);
        self.copy_entry_into_job_dir(header, name, contents).await
    }

    /// Copies `/job/<name>` (file or directory) of a remote sandbox into the
    /// work dir; one that does not exist is skipped. Nothing to do here.
    pub(super) async fn pull_job_files(&self, names: &[&str]) -> Result<(), StepStop> {
        if !self.host.is_remote() {
            return Ok(());
        }
        for name in names {
            let path = format!("{}/{name}", sandbox_argv::SANDBOX_JOB_DIR);
            let tar = match self
                .host
                .podman
                .copy_out(&self.names.sandbox_container, &path)
                .await
            {
                Ok(tar) => tar,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let work_dir = self.work_dir.clone();
            tokio::task::spawn_blocking(move || tar::Archive::new(&tar[..]).unpack(&work_dir))
                .await
                .map_err(|e| StepStop::error(format!("unpacking {path}: {e}")))?
                .map_err(|e| StepStop::error(format!("unpacking {path}: {e}")))?;
        }
        Ok(())
    }

    /// Creates `/job/<name>` as an empty directory in a remote sandbox.
    pub(super) async fn push_empty_dir(&self, name: &str) -> Result<(), StepStop> {
        if !self.host.is_remote() {
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o777);
        self.copy_entry_into_job_dir(header, name, std::io::empty())
            .await
    }

    /// Copies one tar entry (`header` for `name`, then `data`) into the
    /// remote sandbox's `/job`.
    async fn copy_entry_into_job_dir(
        &self,
        mut header: tar::Header,
        name: &str,
        data: impl std::io::Read,
    ) -> Result<(), StepStop> {
        let packing = |e: std::io::Error| StepStop::error(format!("packing {name}: {e}"));
        let mut builder = tar::Builder::new(Vec::new());
        header.set_cksum();
        builder
            .append_data(&mut header, name, data)
            .map_err(packing)?;
        let tar = builder.into_inner().map_err(packing)?;
        Ok(self
            .host
            .podman
            .copy_into(
                &self.names.sandbox_container,
                sandbox_argv::SANDBOX_JOB_DIR,
                tar,
            )
            .await?)
    }
}

/// The slot's persistent layer cache on another host.
pub(super) fn slot_volume(instance_id: &str, slot: usize) -> String {
    format!("ember-ci-{instance_id}-slot-{slot}")
}

fn job_dir_name() -> &'static str {
    sandbox_argv::SANDBOX_JOB_DIR.trim_start_matches('/')
}

fn config_dir_name() -> &'static str {
    sandbox_argv::SANDBOX_CONFIG_DIR.trim_start_matches('/')
}

/// Appends `dir`'s entries under `prefix`, top-level entries filtered by `keep`.
fn append_dir(
    builder: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    prefix: &str,
    keep: impl Fn(&Path) -> bool,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_cksum();
    builder.append_data(&mut header, prefix, std::io::empty())?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if !keep(&path) {
            continue;
        }
        let name = Path::new(prefix).join(entry.file_name());
        if entry.file_type()?.is_dir() {
            builder.append_dir_all(&name, &path)?;
        } else {
            builder.append_path_with_name(&path, &name)?;
        }
    }
    Ok(())
}
