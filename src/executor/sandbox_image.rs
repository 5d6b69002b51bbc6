//! The job sandbox image (containers/sandbox/): its files are compiled into
//! the binary and the image is built on the host by the `podman` CLI (the
//! API's build cannot use the layer cache on Podman 4.3.1). The tag is a
//! hash of the files and build arguments, so a changed Containerfile or
//! setting gets a new image instead of a stale one.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::process::Command;

use super::process::{describe_exit, run_streaming};
use crate::config::{CsiSanityBuild, CsiSanitySource};

const IMAGE_REPOSITORY: &str = "localhost/ember-ci-sandbox";
const TAG_HEX_DIGITS: usize = 12;

/// The files of the build context, as (name, content).
const CONTEXT_FILES: [(&str, &str); 5] = [
    (
        "Containerfile",
        include_str!("../../containers/sandbox/Containerfile"),
    ),
    (
        "containers.conf",
        include_str!("../../containers/sandbox/containers.conf"),
    ),
    (
        "storage.conf",
        include_str!("../../containers/sandbox/storage.conf"),
    ),
    (
        "short-names.conf",
        include_str!("../../containers/sandbox/short-names.conf"),
    ),
    (
        "csi-sanity-wrapper",
        include_str!("../../containers/sandbox/csi-sanity-wrapper"),
    ),
];

/// The Containerfile's words for a csi-sanity tag that is not the pinned
/// commit; the build's output line with them becomes the error.
const PIN_MISMATCH_MARK: &str = ", expected ";
/// How much of the build's output is kept to find that line.
const OUTPUT_TAIL_BYTES: usize = 8 * 1024;

#[derive(Debug, Error)]
pub enum SandboxImageError {
    #[error("cannot write the sandbox build context to {path}: {source}")]
    Context {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run `podman build`: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("building the sandbox image {tag} failed: {reason}")]
    CsiSanityNotPinned { tag: String, reason: String },
    #[error(
        "building the sandbox image {tag} failed ({exit}); its output is in the sandbox step log"
    )]
    BuildFailed { tag: String, exit: String },
}

/// What the sandbox image is built from.
#[derive(Debug, Clone)]
pub struct SandboxImageRecipe {
    build_args: Vec<(&'static str, String)>,
}

impl SandboxImageRecipe {
    /// FROM `base_image`, with csi-sanity built from `csi_sanity` (None:
    /// without) and the `extra` builds backends need from the same repository.
    pub fn new(
        base_image: &str,
        csi_sanity: Option<&CsiSanitySource>,
        extra: &[CsiSanityBuild],
    ) -> Self {
        let (skip, repo, builds) = match csi_sanity {
            Some(source) => {
                let builds: Vec<String> = std::iter::once(source.build())
                    .chain(extra.iter().cloned())
                    .map(|build| format!("{}={}", build.version, build.commit))
                    .collect();
                ("0", &*source.repo, builds.join(" "))
            }
            None => ("1", "", String::new()),
        };
        Self {
            build_args: vec![
                ("SANDBOX_BASE_IMAGE", base_image.to_string()),
                ("SKIP_CSI_SANITY", skip.to_string()),
                ("CSI_SANITY_REPO", repo.to_string()),
                ("CSI_SANITY_BUILDS", builds),
            ],
        }
    }

    /// `localhost/ember-ci-sandbox:<hash of files and build args>`.
    pub fn image_ref(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, content) in CONTEXT_FILES {
            hash_field(&mut hasher, name.as_bytes());
            hash_field(&mut hasher, content.as_bytes());
        }
        // Not the repository: where the pinned commit was fetched from
        // cannot change what is built (a mirror serving another commit
        // fails the build), and a test's git server has a new port each run.
        let hashed = self
            .build_args
            .iter()
            .filter(|(name, _)| *name != "CSI_SANITY_REPO");
        for (name, value) in hashed {
            hash_field(&mut hasher, name.as_bytes());
            hash_field(&mut hasher, value.as_bytes());
        }
        let digest = hex::encode(hasher.finalize());
        format!("{IMAGE_REPOSITORY}:{}", &digest[..TAG_HEX_DIGITS])
    }

    /// Builds the image in a scratch dir under `scratch_parent`, streaming
    /// the build output.
    pub async fn build(
        &self,
        scratch_parent: &Path,
        on_output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<String, SandboxImageError> {
        let image = self.image_ref();
        let context = self.write_context(scratch_parent, &image).await?;
        let mut command = Command::new("podman");
        // --pull=missing: the base image is pulled when this host lacks it.
        command.args([
            "build",
            "--layers",
            "--pull=missing",
            "--network=host",
            "-f",
            "Containerfile",
            "-t",
            &image,
        ]);
        for (name, value) in &self.build_args {
            command.arg("--build-arg").arg(format!("{name}={value}"));
        }
        command.arg(&context).current_dir(&context);
        let mut tail: Vec<u8> = Vec::new();
        let status = run_streaming(command, &mut |chunk: &[u8]| {
            tail.extend_from_slice(chunk);
            let excess = tail.len().saturating_sub(OUTPUT_TAIL_BYTES);
            tail.drain(..excess);
            on_output(chunk);
        })
        .await;
        let _ = tokio::fs::remove_dir_all(&context).await;
        let status = status.map_err(SandboxImageError::Spawn)?;
        if status.success() {
            return Ok(image);
        }
        let tail = String::from_utf8_lossy(&tail);
        let mismatch = tail
            .lines()
            .find(|line| line.starts_with("csi-sanity ") && line.contains(PIN_MISMATCH_MARK));
        Err(match mismatch {
            Some(line) => SandboxImageError::CsiSanityNotPinned {
                tag: image,
                reason: line.trim().to_string(),
            },
            None => SandboxImageError::BuildFailed {
                tag: image,
                exit: describe_exit(status),
            },
        })
    }

    async fn write_context(
        &self,
        scratch_parent: &Path,
        image: &str,
    ) -> Result<PathBuf, SandboxImageError> {
        let tag = image.rsplit(':').next().unwrap_or(image);
        let dir = scratch_parent.join(format!("sandbox-image-{tag}-{}", std::process::id()));
        let context_error = |source| SandboxImageError::Context {
            path: dir.display().to_string(),
            source,
        };
        // A crashed earlier build may have left the same dir behind.
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(context_error)?;
        for (name, content) in CONTEXT_FILES {
            tokio::fs::write(dir.join(name), content)
                .await
                .map_err(context_error)?;
        }
        Ok(dir)
    }
}

/// Length-prefixed, so ("ab","c") and ("a","bc") hash differently.
fn hash_field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned() -> CsiSanitySource {
        CsiSanitySource {
            repo: crate::config::CSI_SANITY_REPO.to_string(),
            version: crate::config::CSI_SANITY_VERSION.to_string(),
            commit: crate::config::CSI_SANITY_COMMIT.to_string(),
        }
    }

    #[test]
    fn image_ref_changes_with_build_args_and_is_stable() {
        let base = crate::config::DEFAULT_SANDBOX_BASE_IMAGE;
        let with = SandboxImageRecipe::new(base, Some(&pinned()), &[]).image_ref();
        let without = SandboxImageRecipe::new(base, None, &[]).image_ref();
        let other_pin = CsiSanitySource {
            commit: "0".repeat(40),
            ..pinned()
        };
        assert_ne!(with, without);
        assert_ne!(
            with,
            SandboxImageRecipe::new(base, Some(&other_pin), &[]).image_ref()
        );
        assert_ne!(
            with,
            SandboxImageRecipe::new("x/y:z", Some(&pinned()), &[]).image_ref()
        );
        let mirror = CsiSanitySource {
            repo: "git://127.0.0.1:9418/csi-test.git".to_string(),
            ..pinned()
        };
        assert_eq!(
            with,
            SandboxImageRecipe::new(base, Some(&mirror), &[]).image_ref()
        );
        assert_eq!(
            without,
            SandboxImageRecipe::new(base, None, &[]).image_ref()
        );
        let old_spec = CsiSanityBuild {
            version: "v0.3.5".into(),
            commit: "f931472b5957142f7c348031cd3cddc26434b890".into(),
        };
        assert_ne!(
            with,
            SandboxImageRecipe::new(base, Some(&pinned()), &[old_spec]).image_ref()
        );
        let tag = without
            .strip_prefix("localhost/ember-ci-sandbox:")
            .expect("repository prefix");
        assert_eq!(tag.len(), TAG_HEX_DIGITS);
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn the_containerfile_checks_the_pin_in_the_words_the_error_looks_for() {
        let (_, containerfile) = CONTEXT_FILES[0];
        assert!(containerfile.contains(&format!(
            "is commit $found{PIN_MISMATCH_MARK}$CSI_SANITY_COMMIT"
        )));
        assert!(containerfile.contains("FROM ${SANDBOX_BASE_IMAGE}"));
        assert!(!containerfile.contains("localhost/"));
    }

    #[test]
    fn sandbox_storage_reads_the_host_store() {
        let (_, storage) = CONTEXT_FILES[2];
        assert!(storage.contains(r#"additionalimagestores = ["/var/lib/host-store"]"#));
        assert!(storage.contains(r#"driver = "overlay""#));
    }
}
