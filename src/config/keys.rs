//! The config file's vocabulary: key names, defaults, limits, and the
//! warnings about assigned names that look like mistakes. Pure data and
//! functions; the loader decides what to read.

use std::collections::{BTreeMap, HashSet};

use super::values;

/// The file inside the config dir that holds the assignments.
pub const CONFIG_FILE_NAME: &str = "config";

pub const DEFAULT_SANITY_COMMAND: &str = "csi-sanity --csi.endpoint=127.0.0.1:50051";
pub const DEFAULT_GH_API_URL: &str = "https://api.github.com";
pub const DEFAULT_GH_REPO: &str = "embercsi/ember-csi";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ember-ci";
pub const DEFAULT_BUILD_FILE: &str = "Dockerfile";
pub const DEFAULT_WEB_PORT: u16 = 8010;
pub const DEFAULT_JOB_TIMEOUT_SECS: u64 = 3600;
pub const DEFAULT_PLUGIN_START_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 600;
pub const DEFAULT_IMAGE_STORE_MAX_GB: u64 = 40;
pub const DEFAULT_LOGS_BRANCH: &str = "gh-pages";
pub const DEFAULT_LOG_RETENTION_DAYS: u32 = 30;

/// More backends than anyone runs; bounds the per-backend checks.
pub(super) const MAX_DRIVERS: usize = 100;
pub(super) const MAX_WORKERS: usize = 64;
pub(super) const MAX_IMAGE_STORE_GB: u64 = 1_000_000;
pub(super) const MAX_LOG_RETENTION_DAYS: u32 = 36_500;

/// Keys of the old system that mean nothing now; accepted, reported.
pub const OBSOLETE_KEYS: [&str; 4] = [
    "WORKER_NAME",
    "WORKER_PASSWORD",
    "BRIDGE_INTERFACE",
    "BRIDGE_NAME",
];

/// Global keys; per-backend keys are [`BACKEND_KEYS`] with an `_n` suffix.
const GLOBAL_KEYS: &[&str] = &[
    "GH_TOKEN",
    "GH_USER",
    "GH_EMBER_SECRET",
    "SMEE_ID",
    "SMEE_URL",
    "POLL_INTERVAL",
    "NUM_DRIVERS",
    "SANITY_COMMAND",
    "NUM_WORKERS",
    "WEB_ADDR",
    "WEB_PORT",
    "CI_DIR",
    "GH_API_URL",
    "GH_REPO",
    "GH_CLONE_URL",
    "BUILD_FILE",
    "JOB_TIMEOUT",
    "PLUGIN_START_TIMEOUT",
    "SHUTDOWN_GRACE",
    "PODMAN_SOCKET",
    "SANDBOX_IMAGE",
    "SANDBOX_SKIP_CSI_SANITY",
    "IMAGE_STORE_MAX_GB",
    "TRUSTED_USERS",
    "SECRETS",
    "WEB_ADMIN_TOKEN",
    "LOGS_REPO",
    "LOGS_BRANCH",
    "LOGS_URL",
    "LOG_RETENTION_DAYS",
    // The old system's single-backend spellings of the `_1` keys.
    "DRIVER_NAME",
    "DRIVER_CONFIG",
    "PRE_RUN",
    "POST_RUN",
];

const BACKEND_KEYS: [&str; 8] = [
    "DRIVER_NAME",
    "DRIVER_CONFIG",
    "PRE_RUN",
    "POST_RUN",
    "SANITY_COMMAND",
    "EXTRA_PACKAGES",
    "EXTRA_PIP",
    "EXTRA_CONTAINERFILE",
];

/// Backend keys the old system also accepted without `_1` when it had one
/// backend.
pub(super) const LEGACY_UNSUFFIXED_KEYS: [&str; 4] =
    ["DRIVER_NAME", "DRIVER_CONFIG", "PRE_RUN", "POST_RUN"];

/// Warnings about assigned names nothing read that look meant for us: a
/// backend key past NUM_DRIVERS, or a near miss of a known key. Other names
/// are the vendor's helper variables (used in `$VAR` expansions) and pass
/// silently.
pub(super) fn unused_key_warnings(
    names_in_order: &[String],
    used: &HashSet<String>,
    num_drivers: usize,
) -> Vec<String> {
    let known: Vec<String> = GLOBAL_KEYS
        .iter()
        .map(|key| key.to_string())
        .chain(
            (1..=num_drivers.max(1))
                .flat_map(|n| BACKEND_KEYS.iter().map(move |key| format!("{key}_{n}"))),
        )
        .collect();
    let mut warnings = Vec::new();
    let mut out_of_range: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    let unused = names_in_order
        .iter()
        .filter(|name| !used.contains(*name) && !OBSOLETE_KEYS.contains(&name.as_str()));
    for name in unused {
        if let Some(n) = backend_key_index(name) {
            out_of_range.entry(n).or_default().push(name);
            continue;
        }
        let nearest = known
            .iter()
            .map(|key| (values::edit_distance(name, key), key))
            .min()
            .filter(|(distance, _)| *distance <= max_typo_distance(name));
        if let Some((_, key)) = nearest {
            warnings.push(format!(
                "{name} is not a known key (did you mean {key}?); it is ignored"
            ));
        }
    }
    for (n, names) in out_of_range {
        let verb = if names.len() == 1 { "is" } else { "are" };
        warnings.push(format!(
            "{} {verb} ignored: NUM_DRIVERS is {num_drivers}, so there is no backend {n}",
            names.join(", ")
        ));
    }
    warnings
}

/// `n` when `name` is a per-backend key such as `DRIVER_NAME_3`.
fn backend_key_index(name: &str) -> Option<usize> {
    let (base, n) = name.rsplit_once('_')?;
    if !BACKEND_KEYS.contains(&base) {
        return None;
    }
    n.parse().ok()
}

/// Short names get less slack, so helper variables are not taken for typos.
fn max_typo_distance(name: &str) -> usize {
    if name.len() >= 6 {
        2
    } else {
        1
    }
}
