//! The vendor's config dir: a bash-style `config` file plus helper scripts,
//! read once at start-up into a typed, validated [`Config`].
//!
//! - `shell`: the bash-compatible reader of `KEY=value` lines (pure).
//! - `load`: [`Config::load`], key by key checks, every problem reported at once.
//! - `errors`: [`ConfigError`] (key, problem, fix) and [`ConfigErrors`].
//! - `keys`: key names, defaults, limits; warnings about likely typos.
//! - `values`: parsers for single values (durations, URLs, package names).
//! - `credentials`: which driver-config JSON keys hold secrets; shared with
//!   the log masker.
//! - `summary`: the human summary printed by `ember-ci check-config`.
//!
//! Nothing outside this module reads the config dir's `config` file.

mod credentials;
mod errors;
mod keys;
mod load;
pub mod shell;
mod summary;
mod types;
mod values;

#[cfg(test)]
mod tests;

pub use credentials::{credential_values, is_credential_key, mask_driver_config_json, MASK};
pub use errors::{ConfigError, ConfigErrors};
pub use keys::{
    CONFIG_FILE_NAME, DEFAULT_GH_API_URL, DEFAULT_GH_REPO, DEFAULT_SANITY_COMMAND, OBSOLETE_KEYS,
};
pub use summary::summary;
pub use types::*;
