//! Waiting on a condition with a deadline (tests never sleep for a fixed
//! time to let something happen).

use std::time::Duration;

/// Polls `condition` every 20 ms until it holds; panics naming `what` after
/// `limit`.
pub async fn wait_until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
