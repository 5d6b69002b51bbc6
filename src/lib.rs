//! ember-ci: a container-native third-party CI for Ember-CSI.
//!
//! A signed GitHub delivery (HTTP, smee relay or API poll) becomes one job per
//! configured backend; each job builds the PR's Ember-CSI image inside a
//! privileged Podman sandbox, starts the plugin against the vendor's array,
//! runs the CSI sanity suite and reports a commit status.
//!
//! Module map (data flows top to bottom):
//! - [`config`]: the vendor's config dir -> typed, validated [`config::Config`].
//! - [`model`]: ids, SHAs, backend names, job requests and outcomes; no I/O.
//! - [`webhook`]: body cap, HMAC over the raw bytes, payload -> [`webhook::Delivery`].
//! - [`send`]: replays a saved smee-format delivery (`ember-ci send`).
//! - [`relay`]: the smee client and the API poller, for hosts with no open port.
//! - [`dispatch`]: deliveries -> job requests (one per backend).
//! - [`scheduler`]: queue, NUM_WORKERS slots, statuses at start and end.
//! - [`journal`]: deliveries, job state changes and unsent statuses on disk,
//!   so a restart loses nothing and leaves nothing pending.
//! - [`executor`]: one job's steps in a sandbox; `executor::podman` is the
//!   only podman-api user.
//! - [`github`]: the only module that imports octocrab.
//! - [`service`]: wires the parts for `ember-ci serve`, graceful shutdown.

pub mod commands;
pub mod config;
pub mod dispatch;
pub mod executor;
pub mod github;
pub mod journal;
pub mod logs;
pub mod model;
pub mod policy;
pub mod relay;
pub mod run;
pub mod scheduler;
pub mod send;
pub mod service;
pub mod web;
pub mod webhook;
