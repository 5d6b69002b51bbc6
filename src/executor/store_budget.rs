//! The slot store's disk budget (IMAGE_STORE_MAX_GB split between the
//! slots), applied after each build inside the job's sandbox: dangling
//! images first, then the least recently used (`eviction` picks), never the
//! job's own images and their cache layers, never the host's. The policy
//! lives here beside `store` (the store on disk) and `eviction` (the
//! choice); the step sequence in `job` only calls it.
//!
//! Housekeeping: a problem is reported in the build log and never fails
//! the job.

use super::eviction;
use super::job::JobRun;
use super::sandbox_argv::{self, InnerCommand};
use crate::model::Step;

impl JobRun<'_> {
    /// Brings the slot's store back within its budget (the build may have
    /// grown it): dangling images first, then the least recently used,
    /// never this job's images or their cache layers. Records this job's
    /// use of its images for the next eviction. Housekeeping: a problem is
    /// reported in the build log and never fails the job.
    pub(super) async fn keep_store_within_budget(&self) {
        if self.host.is_remote() {
            // The store is a volume there, measured by nothing of ours yet.
            self.say(
                Step::Build,
                &format!(
                    "image store: IMAGE_STORE_MAX_GB is not applied on host {}\n",
                    self.host.name
                ),
            );
            return;
        }
        if let Err(problem) = self.try_keep_store_within_budget().await {
            tracing::warn!(job = %self.job.id, "image store: {problem}");
            self.say(Step::Build, &format!("image store: {problem}\n"));
        }
    }

    async fn try_keep_store_within_budget(&self) -> Result<(), String> {
        let store = self.executor.slot_store(self.job.slot);
        let budget = self.executor.store_budget_bytes;
        let in_use = [self.names.pr_image.as_str(), self.plugin_image.as_str()];
        let images = self.stored_images().await?;
        let protected = eviction::in_use_with_ancestors(&images, &in_use);
        let present: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
        store
            .record_use(&protected, &present)
            .await
            .map_err(|e| format!("cannot record image use: {e}"))?;

        let usage = || async {
            store
                .usage_bytes()
                .await
                .map_err(|e| format!("cannot measure {}: {e}", store.containers_dir().display()))
        };
        let mut used = usage().await?;
        self.say(
            Step::Build,
            &format!(
                "image store: {} of {} budget used\n",
                human_bytes(used),
                human_bytes(budget)
            ),
        );
        if used <= budget {
            return Ok(());
        }
        self.say(
            Step::Build,
            "image store over budget: removing dangling images of superseded builds\n",
        );
        self.run_store_command(&sandbox_argv::prune_dangling_images())
            .await?;
        used = usage().await?;
        let last_used = store.last_used().await;
        while used > budget {
            let images = self.stored_images().await?;
            let Some(next) = eviction::next_to_evict(&images, &protected, &last_used) else {
                let left: Vec<String> = images
                    .iter()
                    .filter(|image| !image.read_only)
                    .map(eviction::StoredImage::label)
                    .collect();
                self.say(
                    Step::Build,
                    &format!(
                        "image store still over budget at {}: every image left is in use ({})\n",
                        human_bytes(used),
                        left.join(", ")
                    ),
                );
                return Ok(());
            };
            self.say(
                Step::Build,
                &format!("evicting least recently used image {}\n", next.label()),
            );
            self.run_store_command(&sandbox_argv::remove_image(&next.id))
                .await?;
            used = usage().await?;
        }
        self.say(
            Step::Build,
            &format!("image store now at {}\n", human_bytes(used)),
        );
        Ok(())
    }

    async fn stored_images(&self) -> Result<Vec<eviction::StoredImage>, String> {
        let (code, output) = self
            .host
            .podman
            .exec_captured(&self.names.sandbox_container, &sandbox_argv::list_images())
            .await
            .map_err(|e| e.to_string())?;
        if code != 0 {
            return Err(format!(
                "listing images failed (exit {code}): {}",
                output.trim()
            ));
        }
        eviction::parse_image_list(&output).map_err(|e| e.to_string())
    }

    async fn run_store_command(&self, command: &InnerCommand) -> Result<(), String> {
        match self.exec_logged(Step::Build, command).await {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("{} failed (exit {code})", command.trace().trim())),
            Err(stop) => Err(stop.reason),
        }
    }
}

/// Bytes for a log reader, in the decimal units of IMAGE_STORE_MAX_GB.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = next;
    }
    if unit == "B" {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {unit}")
    }
}
