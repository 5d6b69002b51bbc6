//! How often and how patiently we retry a GitHub call that failed in a way
//! worth retrying. Octocrab's own retry layer is switched off (see
//! `client.rs`), so every attempt made is one counted here.

use std::future::Future;
use std::time::Duration;

use super::GitHubError;

/// Never sleep longer than GitHub's primary rate-limit window on one hint,
/// whatever a (buggy or hostile) `retry-after` header says.
const MAX_HONOURED_WAIT: Duration = Duration::from_secs(3600);

/// Exponential backoff for retryable GitHub failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first one included (0 behaves like 1).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub first_delay: Duration,
    /// Ceiling for the doubling (a server-requested wait may exceed it).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 1 s doubling to 60 s over 8 attempts: about two minutes of GitHub
    /// trouble is ridden out before a status is given up on.
    fn default() -> Self {
        Self {
            attempts: 8,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before try number `failures + 1`, after `failures` failed
    /// ones (`failures` >= 1) ending in `error`. A wait GitHub asked for is
    /// honoured even when longer than our own backoff: retrying sooner would
    /// only be refused again and burn an attempt.
    pub fn delay_after(&self, failures: u32, error: &GitHubError) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let backoff = self
            .first_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay);
        match error.retry_after() {
            Some(hint) => hint.min(MAX_HONOURED_WAIT).max(backoff),
            None => backoff,
        }
    }
}

/// Runs `call` until it succeeds, fails fatally, or `policy` runs out of
/// attempts; returns the last error then. `what` names the call in the
/// warning logged before each retry (the final error is the caller's to log).
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut call: F,
) -> Result<T, GitHubError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, GitHubError>>,
{
    let attempts = policy.attempts.max(1);
    let mut failures = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() && failures + 1 < attempts => {
                failures += 1;
                let delay = policy.delay_after(failures, &error);
                tracing::warn!(
                    %error,
                    attempt = failures,
                    of = attempts,
                    delay_ms = delay.as_millis() as u64,
                    "{what} failed, retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(retry_after: Option<Duration>) -> GitHubError {
        GitHubError::Retryable {
            action: "posting status".into(),
            status: Some(502),
            detail: "HTTP 502".into(),
            retry_after,
        }
    }

    #[test]
    fn default_backoff_doubles_from_one_second_up_to_a_minute() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..policy.attempts)
            .map(|failures| policy.delay_after(failures, &server_error(None)).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60]);
    }

    #[test]
    fn server_hint_longer_than_backoff_is_honoured() {
        let policy = RetryPolicy::default();
        let delay = policy.delay_after(1, &server_error(Some(Duration::from_secs(90))));
        assert_eq!(delay, Duration::from_secs(90));
    }

    #[test]
    fn server_hint_shorter_than_backoff_keeps_the_backoff() {
        let policy = RetryPolicy::default();
        let delay = policy.delay_after(4, &server_error(Some(Duration::from_secs(1))));
        assert_eq!(delay, Duration::from_secs(8));
    }

    #[test]
    fn absurd_server_hint_is_capped() {
        let policy = RetryPolicy::default();
        let delay = policy.delay_after(1, &server_error(Some(Duration::from_secs(10_000_000))));
        assert_eq!(delay, MAX_HONOURED_WAIT);
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay_after(u32::MAX, &server_error(None)),
            Duration::from_secs(60)
        );
    }

    #[tokio::test]
    async fn fatal_errors_are_not_retried() {
        let mut calls = 0;
        let result: Result<(), _> = retry(&RetryPolicy::default(), "posting status", || {
            calls += 1;
            async { Err(GitHubError::fatal("posting status", "HTTP 422")) }
        })
        .await;
        assert!(result.is_err_and(|error| !error.is_retryable()));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn retryable_errors_stop_after_the_last_attempt() {
        let mut calls = 0;
        let policy = RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let result: Result<(), _> = retry(&policy, "posting status", || {
            calls += 1;
            async { Err(server_error(None)) }
        })
        .await;
        assert!(result.is_err_and(|error| error.is_retryable()));
        assert_eq!(calls, 3);
    }
}
