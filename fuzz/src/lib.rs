//! The modules that read untrusted input, compiled on their own from the
//! main crate's sources (no copy): fuzz builds then skip the service's heavy
//! dependencies (octocrab, podman-api, warp, SQLite), which take minutes to
//! build with sanitizer instrumentation. The crate is named `ember_ci` and
//! mirrors the main crate's paths, so the targets read like its API.

#[path = "../../src/model.rs"]
pub mod model;

#[path = "../../src/commands.rs"]
pub mod commands;

#[path = "../../src/webhook/event.rs"]
mod webhook_event;

#[doc(hidden)]
#[path = "../../src/webhook/signature.rs"]
pub mod webhook_signature;

pub mod webhook {
    pub use crate::webhook_event::*;
    pub use crate::webhook_signature as signature;
}
