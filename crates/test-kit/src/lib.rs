//! Test support for ember-ci's integration tests (tests/all), as a library
//! instead of files pulled into each test with `#[path]`:
//!
//! - [`fake_github`]: a GitHub REST API on 127.0.0.1:0 keeping statuses,
//!   comments, reactions and pull requests (`server`, `state`, `payloads`).
//! - [`fake_smee`]: a smee.io channel (server-sent events) on 127.0.0.1:0.
//! - [`outage_drill`]: a smee outage staged against the real relay, for
//!   the outage test and `examples/relay_outage.rs`.
//! - [`wait`]: [`wait::wait_until`], waiting on a condition with a deadline.
//! - [`ci_env`]: the demo repository, a vendor config dir for it, and
//!   `ember-ci serve` as a child process.
//! - [`demo_setup`]: the usual end-to-end setup in one value.
//! - [`executor_env`]: the executor's environment on real Podman.
//! - [`git_server`]: `git daemon` on 127.0.0.1 serving a csi-sanity stand-in.
//! - [`second_host`]: a second Podman host (netns, sshd, podman service).
//! - [`podman_lock`]: one real-Podman test at a time.

pub mod ci_env;
pub mod demo_setup;
pub mod executor_env;
pub mod fake_github;
pub mod fake_smee;
pub mod git_server;
pub mod outage_drill;
pub mod second_host;
pub mod wait;

/// Tests that run real jobs on Podman take this lock: on two cores, two
/// sandbox builds or plugin starts at once only time each other out. (They
/// were serialised by running as separate test binaries before.)
pub async fn podman_lock() -> tokio::sync::MutexGuard<'static, ()> {
    PODMAN.lock().await
}

/// [`podman_lock`] for tests that are not async.
pub fn podman_lock_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    PODMAN.blocking_lock()
}

static PODMAN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
