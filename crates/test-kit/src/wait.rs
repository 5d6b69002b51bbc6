//! Waiting on a condition with a deadline: tests never sleep for a fixed
//! time to let something happen. One place for the polling loop, async
//! and blocking.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] looks.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` every 20 ms until it holds; panics naming `what` after
/// `limit`.
pub async fn wait_until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    wait_until_every(what, limit, POLL_INTERVAL, condition).await;
}

/// [`wait_until`] looking every `every` (for conditions that cost a
/// process, such as `podman ps`).
pub async fn wait_until_every(
    what: &str,
    limit: Duration,
    every: Duration,
    condition: impl Fn() -> bool,
) {
    let found = poll_until(limit, every, || {
        std::future::ready(condition().then_some(()))
    })
    .await;
    assert!(
        found.is_some(),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// Awaits `probe` every `every` until it yields a value, at most `limit`;
/// None when it never did (the caller panics with what it knows).
pub async fn poll_until<T, F>(
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> F,
) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`wait_until_every`] for tests that are not async.
pub fn wait_until_blocking(
    what: &str,
    limit: Duration,
    every: Duration,
    condition: impl Fn() -> bool,
) {
    assert!(
        poll_until_blocking(limit, every, || condition().then_some(())).is_some(),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// [`poll_until`] for tests that are not async.
pub fn poll_until_blocking<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}
