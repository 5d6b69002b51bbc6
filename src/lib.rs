//! ember-ci: a container-native third-party CI for Ember-CSI.
//!
//! A signed GitHub delivery (HTTP, smee relay or API poll) becomes one job per
//! configured backend; each job builds the PR's Ember-CSI image inside a
//! privileged Podman sandbox, starts the plugin against the vendor's array,
//! runs the CSI sanity suite and reports a commit status.
//!
//! Module map (data flows top to bottom):
//! - [`config`]: the vendor's config dir -> typed, validated [`config::Config`],
//!   by section (GitHub, relay, backends, executor, service, web, logs), from
//!   one table of keys; each part is handed its section only.
//! - [`model`]: ids, SHAs, backend names, job requests, outcomes and commit
//!   statuses; no I/O. From the core crate (`ember_ci_core`, crates/core),
//!   like [`policy`], [`commands`] and the webhook's `event` and `signature`.
//! - [`policy`]: who may trigger what; pure.
//! - [`commands`]: the PR comment-command parser (`recheck`, `/ok-to-test`, ...); pure.
//! - [`webhook`]: body cap, HMAC over the raw bytes, payload -> [`webhook::Delivery`].
//! - [`relay`]: the smee client, the saved-delivery format and the API poller,
//!   for hosts with no open port.
//! - [`send`]: replays a saved delivery (`ember-ci send`).
//! - [`dispatch`]: deliveries -> job requests (one per backend), comment commands.
//! - [`scheduler`]: queue, NUM_WORKERS slots, cancellation; `scheduler::lifecycle`
//!   is one job's life from "running" to its final status.
//! - [`journal`]: deliveries, job state changes and unsent statuses on disk,
//!   so a restart loses nothing and leaves nothing pending.
//! - [`executor`]: one job's steps in a sandbox; `executor::podman` is the
//!   only podman-api user.
//! - [`github`]: the only module that imports octocrab; the status outbox.
//! - [`logs`]: capture, masking, HTML, publishing, retention.
//! - [`web`]: the local web UI and JSON API.
//! - [`server`]: the HTTP accept loop (connection cap, header deadline).
//! - [`service`]: [`service::start`] wires the parts for `ember-ci serve`
//!   (and for in-process tests), graceful shutdown.
//! - [`run`]: `ember-ci run`, one job now.
//! - [`deploy`]: `ember-ci health` and `ember-ci quadlet`: running it as a service.

pub mod cli;
pub mod config;
pub mod deploy;
pub mod dispatch;
pub mod executor;
pub mod github;
pub mod journal;
pub mod logs;
pub mod relay;
pub mod run;
pub mod scheduler;
pub mod send;
pub mod server;
pub mod service;
pub mod web;
pub mod webhook;

pub use ember_ci_core::{commands, history, model, policy, sanity};
