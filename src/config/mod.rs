//! The vendor's config dir: a bash-style `config` file plus helper scripts.

mod types;

pub use types::*;
