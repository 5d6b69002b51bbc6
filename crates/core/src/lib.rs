//! ember-ci's pure core: what every other part agrees on, and the code that
//! reads untrusted input first. No async, no I/O (job ids read the clock and
//! the OS's randomness); the service crate re-exports each module under its
//! old path (`ember_ci::model`, `ember_ci::webhook::event`, ...), and the
//! fuzz targets build this crate alone.
//!
//! - [`model`]: ids, SHAs, backend names, job requests, outcomes, statuses.
//! - [`policy`]: who may trigger what.
//! - [`commands`]: the PR comment-command parser.
//! - [`event`]: a verified webhook body -> [`event::Event`].
//! - [`sanity`]: the sanity suite's results and their summary texts.
//! - [`signature`]: `X-Hub-Signature-256` / `X-Hub-Signature` signing and checking.
//! - [`relayed`]: bodies that crossed a relay (repairs of known re-serialisation
//!   changes), compact JSON, the form encoding.

pub mod commands;
pub mod event;
pub mod history;
pub mod model;
pub mod policy;
pub mod relayed;
pub mod sanity;
pub mod signature;
