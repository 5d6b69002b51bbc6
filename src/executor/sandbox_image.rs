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

const IMAGE_REPOSITORY: &str = "localhost/ember-ci-sandbox";
const TAG_HEX_DIGITS: usize = 12;

/// The files of the build context, as (name, content).
const CONTEXT_FILES: [(&str, &str); 3] = [
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
];

/// The csi-sanity release baked into the sandbox.
pub const CSI_SANITY_VERSION: &str = "v5.3.1";
/// sha256 of csi-sanity-<version>.linux.amd64.tar.gz. Left empty because it
/// could not be looked up from a host without GitHub access (nor found in
/// any stored copy of the release): until it is filled in, a build that
/// includes csi-sanity stops before it starts, naming the URL
/// (SANDBOX_SKIP_CSI_SANITY=1 builds without it). The Containerfile checks
/// the download against it too.
pub const CSI_SANITY_SHA256: &str = "";

#[derive(Debug, Error)]
pub enum SandboxImageError {
    #[error("cannot write the sandbox build context to {path}: {source}")]
    Context {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "csi-sanity {version} has no pinned sha256 (CSI_SANITY_SHA256 in src/executor/sandbox_image.rs), \
         so {url} cannot be verified; set SANDBOX_SKIP_CSI_SANITY=1 and a SANITY_COMMAND that does \
         not need it, or SANDBOX_IMAGE to an image that has it"
    )]
    CsiSanityUnpinned { version: String, url: String },
    #[error("cannot run `podman build`: {0}")]
    Spawn(#[source] std::io::Error),
    #[error(
        "building the sandbox image {tag} failed ({exit}); its output is in the sandbox step log"
    )]
    BuildFailed { tag: String, exit: String },
}

/// What the sandbox image is built from.
#[derive(Debug, Clone)]
pub struct SandboxImageRecipe {
    build_args: Vec<(&'static str, String)>,
    /// The csi-sanity download to check, when the image includes it.
    csi_sanity: Option<(String, String)>,
}

impl SandboxImageRecipe {
    pub fn new(skip_csi_sanity: bool) -> Self {
        Self::with_csi_sanity(skip_csi_sanity, CSI_SANITY_VERSION, CSI_SANITY_SHA256)
    }

    fn with_csi_sanity(skip: bool, version: &str, sha256: &str) -> Self {
        Self {
            csi_sanity: (!skip).then(|| (version.to_string(), sha256.to_string())),
            build_args: vec![
                ("CSI_SANITY_VERSION", version.to_string()),
                ("CSI_SANITY_SHA256", sha256.to_string()),
                ("SKIP_CSI_SANITY", if skip { "1" } else { "0" }.to_string()),
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
        for (name, value) in &self.build_args {
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
        if let Some((version, sha256)) = &self.csi_sanity {
            if sha256.is_empty() {
                return Err(SandboxImageError::CsiSanityUnpinned {
                    url: format!(
                        "https://github.com/kubernetes-csi/csi-test/releases/download/\
                         {version}/csi-sanity-{version}.linux.amd64.tar.gz"
                    ),
                    version: version.clone(),
                });
            }
        }
        let image = self.image_ref();
        let context = self.write_context(scratch_parent, &image).await?;
        let mut command = Command::new("podman");
        command.args([
            "build",
            "--layers",
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
        let status = run_streaming(command, on_output).await;
        let _ = tokio::fs::remove_dir_all(&context).await;
        let status = status.map_err(SandboxImageError::Spawn)?;
        if !status.success() {
            return Err(SandboxImageError::BuildFailed {
                tag: image,
                exit: describe_exit(status),
            });
        }
        Ok(image)
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

    #[test]
    fn image_ref_changes_with_build_args_and_is_stable() {
        let with = SandboxImageRecipe::new(false).image_ref();
        let without = SandboxImageRecipe::new(true).image_ref();
        assert_ne!(with, without);
        assert_eq!(without, SandboxImageRecipe::new(true).image_ref());
        let tag = without
            .strip_prefix("localhost/ember-ci-sandbox:")
            .expect("repository prefix");
        assert_eq!(tag.len(), TAG_HEX_DIGITS);
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[tokio::test]
    async fn unpinned_csi_sanity_fails_before_building() {
        let scratch = tempfile::tempdir().expect("temp dir");
        let recipe = SandboxImageRecipe::with_csi_sanity(false, "v5.3.1", "");
        let error = recipe
            .build(scratch.path(), &mut |_| panic!("podman build ran"))
            .await
            .expect_err("no checksum to verify against");
        let text = error.to_string();
        assert!(
            text.contains("csi-sanity v5.3.1 has no pinned sha256"),
            "{text}"
        );
        assert!(
            text.contains("/v5.3.1/csi-sanity-v5.3.1.linux.amd64.tar.gz"),
            "{text}"
        );
        assert!(matches!(error, SandboxImageError::CsiSanityUnpinned { .. }));
        assert!(SandboxImageRecipe::with_csi_sanity(true, "v5.3.1", "")
            .csi_sanity
            .is_none());
    }

    #[test]
    fn sandbox_storage_reads_the_host_store() {
        let (_, storage) = CONTEXT_FILES[2];
        assert!(storage.contains(r#"additionalimagestores = ["/var/lib/host-store"]"#));
        assert!(storage.contains(r#"driver = "overlay""#));
    }
}
