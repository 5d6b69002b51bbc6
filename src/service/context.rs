//! The text of a job's `00-config.txt`: versions of what ran the job and
//! the effective configuration, as `ember-ci check-config` prints it (secrets
//! shown only as set / not set, driver-config credentials as `***`). Built
//! here, by the code that holds the whole config, and handed to the log
//! store as text; the job log masks it once more before it is written.

use crate::config::Config;

/// Versions and configuration for every job run with `config`.
pub fn job_context(config: &Config) -> String {
    let executor = &config.executor;
    // The sanity step replaces this line with the build that actually ran.
    let csi_sanity = match &executor.csi_sanity {
        None => "not installed (SANDBOX_SKIP_CSI_SANITY=1)".to_string(),
        Some(source) => std::iter::once(source.build())
            .chain(executor.csi_sanity_extra.iter().cloned())
            .map(|build| format!("{} (commit {})", build.version, build.commit))
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!(
        "versions\n  ember-ci         {}\n  sandbox image    {}\n  csi-sanity       {csi_sanity}\n\n{}",
        env!("CARGO_PKG_VERSION"),
        crate::executor::sandbox_image_ref(executor),
        crate::config::summary(config),
    )
}
