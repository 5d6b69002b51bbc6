//! The vendor's config dir: a bash-style `config` file plus helper scripts,
//! read once at start-up into a typed, validated [`Config`].
//!
//! - `shell`: the bash-compatible reader of `KEY=value` lines (pure).
//! - `load`: [`Config::load`], key by key checks, every problem reported at once.
//! - `errors`: [`ConfigError`] (key, problem, fix) and [`ConfigErrors`].
//! - `keys`: the one table of keys (name, section, default, fix, secret);
//!   warnings about likely typos.
//! - `values`: parsers for single values (durations, URLs, package names).
//! - `credentials`: which driver-config JSON keys hold secrets; shared with
//!   the log masker.
//! - `plugin`: the plugin's per-backend settings (spec version and its
//!   csi-sanity, X_CSI_*, sandbox daemons, the old worker's flags).
//! - `summary`: the human summary printed by `ember-ci check-config`.
//!
//! Nothing outside this module reads the config dir's `config` file.

mod credentials;
mod errors;
mod hosts;
mod keys;
mod load;
mod plugin;
pub mod shell;
mod summary;
mod types;
mod values;

#[cfg(test)]
mod tests;

pub use credentials::{credential_values, is_credential_key, mask_driver_config_json, MASK};
pub use errors::{ConfigError, ConfigErrors};
pub use hosts::{HostName, HostTarget, PodmanHost, SshTarget, LOCAL_HOST};
pub use keys::{
    Key, Need, Scope, Secrecy, Section, CONFIG_FILE_NAME, CSI_SANITY_COMMIT, CSI_SANITY_REPO,
    CSI_SANITY_VERSION, DEFAULT_SANDBOX_BASE_IMAGE, DEFAULT_SANITY_COMMAND, KEYS, OBSOLETE_KEYS,
};
pub use plugin::{DEFAULT_EMBER_CONFIG, DEFAULT_PERSISTENCE_CONFIG};
pub use summary::summary;
pub use types::*;
