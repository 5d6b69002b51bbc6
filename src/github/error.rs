//! Sorts every way a GitHub call can fail into "try again later" or "give up",
//! because callers branch on exactly that: a status post that failed on a 502
//! is retried, one rejected with 422 never will succeed.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GitHubError {
    /// GitHub or the network had a problem (5xx, connection, timeout), or we
    /// were rate limited; the same request may succeed later.
    #[error("{action}: {detail}")]
    Retryable {
        action: String,
        status: Option<u16>,
        detail: String,
        /// How long GitHub asked us to wait (Retry-After or X-RateLimit-Reset).
        retry_after: Option<Duration>,
    },
    /// Repeating the request cannot help: bad token, unknown PR, data GitHub
    /// rejected, an answer we could not understand, or a broken setup.
    #[error("{action}: {detail}")]
    Fatal {
        action: String,
        status: Option<u16>,
        detail: String,
    },
}

impl GitHubError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, GitHubError::Retryable { .. })
    }

    /// The wait GitHub asked for, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GitHubError::Retryable { retry_after, .. } => *retry_after,
            GitHubError::Fatal { .. } => None,
        }
    }

    /// The HTTP status GitHub answered with, if it answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Retryable { status, .. } | GitHubError::Fatal { status, .. } => *status,
        }
    }

    /// A failure on our side of the wire: setup, or data we cannot use.
    pub(crate) fn fatal(action: impl Into<String>, detail: impl Into<String>) -> Self {
        GitHubError::Fatal {
            action: action.into(),
            status: None,
            detail: detail.into(),
        }
    }

    pub(crate) fn from_octocrab(action: impl Into<String>, error: octocrab::Error) -> Self {
        let action = action.into();
        match error {
            octocrab::Error::GitHub { source, .. } => {
                let status = source.status_code.as_u16();
                let limits = source
                    .headers
                    .as_ref()
                    .map(RateLimitHeaders::read)
                    .unwrap_or_default();
                let detail = describe_http_error(status, &source.message, source.errors.as_deref());
                match judge_status(status, &limits, unix_now_secs()) {
                    Verdict::Retry { wait } => GitHubError::Retryable {
                        action,
                        status: Some(status),
                        detail,
                        retry_after: wait,
                    },
                    Verdict::GiveUp => GitHubError::Fatal {
                        action,
                        status: Some(status),
                        detail,
                    },
                }
            }
            // The request never got an HTTP answer: connection refused or
            // reset, timeout, TLS trouble. All of these pass.
            error @ (octocrab::Error::Service { .. } | octocrab::Error::Hyper { .. }) => {
                GitHubError::Retryable {
                    action,
                    status: None,
                    detail: error_chain(&error),
                    retry_after: None,
                }
            }
            error @ (octocrab::Error::Json { .. } | octocrab::Error::Serde { .. }) => {
                GitHubError::fatal(
                    action,
                    format!("unexpected answer from GitHub: {}", error_chain(&error)),
                )
            }
            other => GitHubError::fatal(action, error_chain(&other)),
        }
    }
}

/// The rate-limit headers GitHub sends with 403/429 answers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimitHeaders {
    pub retry_after_secs: Option<u64>,
    pub remaining: Option<u64>,
    /// Unix time (seconds) at which the quota refills.
    pub reset_epoch_secs: Option<u64>,
}

impl RateLimitHeaders {
    fn read(headers: &reqwest::header::HeaderMap) -> Self {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
        };
        Self {
            retry_after_secs: number("retry-after"),
            remaining: number("x-ratelimit-remaining"),
            reset_epoch_secs: number("x-ratelimit-reset"),
        }
    }

    fn is_rate_limited(&self) -> bool {
        self.retry_after_secs.is_some() || self.remaining == Some(0)
    }

    fn wait(&self, now_epoch_secs: u64) -> Option<Duration> {
        if let Some(secs) = self.retry_after_secs {
            return Some(Duration::from_secs(secs));
        }
        match (self.remaining, self.reset_epoch_secs) {
            (Some(0), Some(reset)) => {
                Some(Duration::from_secs(reset.saturating_sub(now_epoch_secs)))
            }
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Retry { wait: Option<Duration> },
    GiveUp,
}

/// What an HTTP error status means for retrying. GitHub answers an exhausted
/// quota with 403 (primary limit, `x-ratelimit-remaining: 0`) or 403/429 with
/// `retry-after` (secondary limit); a 403 without those is a real refusal.
pub(crate) fn judge_status(status: u16, limits: &RateLimitHeaders, now_epoch_secs: u64) -> Verdict {
    let wait = limits.wait(now_epoch_secs);
    match status {
        403 | 429 if limits.is_rate_limited() => Verdict::Retry { wait },
        429 => Verdict::Retry { wait: None },
        408 | 500..=599 => Verdict::Retry { wait },
        _ => Verdict::GiveUp,
    }
}

fn describe_http_error(status: u16, message: &str, errors: Option<&[serde_json::Value]>) -> String {
    let mut detail = format!("HTTP {status}: {message}");
    // GitHub puts the useful part of a 422 ("description is too long") here.
    for error in errors.unwrap_or_default() {
        let _ = write!(detail, "; {error}");
    }
    detail
}

/// The error and its causes on one line: octocrab's top-level messages
/// ("Service Error") say little without them.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let _ = write!(text, ": {inner}");
        cause = inner.source();
    }
    text
}

fn unix_now_secs() -> u64 {
    // A clock before 1970 only makes us wait the full reset window.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn limits(
        retry_after: Option<u64>,
        remaining: Option<u64>,
        reset: Option<u64>,
    ) -> RateLimitHeaders {
        RateLimitHeaders {
            retry_after_secs: retry_after,
            remaining,
            reset_epoch_secs: reset,
        }
    }

    #[test]
    fn server_errors_and_timeouts_are_retried() {
        for status in [500, 502, 503, 504, 408] {
            assert_eq!(
                judge_status(status, &RateLimitHeaders::default(), NOW),
                Verdict::Retry { wait: None }
            );
        }
    }

    #[test]
    fn client_errors_are_fatal() {
        for status in [400, 401, 404, 422] {
            assert_eq!(
                judge_status(status, &RateLimitHeaders::default(), NOW),
                Verdict::GiveUp
            );
        }
    }

    #[test]
    fn forbidden_without_rate_limit_headers_is_a_real_refusal() {
        let quota_left = limits(None, Some(4999), Some(NOW + 3600));
        assert_eq!(judge_status(403, &quota_left, NOW), Verdict::GiveUp);
    }

    #[test]
    fn exhausted_quota_waits_until_reset() {
        let exhausted = limits(None, Some(0), Some(NOW + 42));
        assert_eq!(
            judge_status(403, &exhausted, NOW),
            Verdict::Retry {
                wait: Some(Duration::from_secs(42))
            }
        );
    }

    #[test]
    fn retry_after_wins_over_reset_time() {
        let secondary = limits(Some(7), Some(0), Some(NOW + 42));
        assert_eq!(
            judge_status(429, &secondary, NOW),
            Verdict::Retry {
                wait: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn bare_too_many_requests_is_retried_without_a_hint() {
        assert_eq!(
            judge_status(429, &RateLimitHeaders::default(), NOW),
            Verdict::Retry { wait: None }
        );
    }

    #[test]
    fn reset_in_the_past_means_no_wait() {
        let stale = limits(None, Some(0), Some(NOW - 5));
        assert_eq!(
            judge_status(403, &stale, NOW),
            Verdict::Retry {
                wait: Some(Duration::ZERO)
            }
        );
    }

    #[test]
    fn validation_errors_are_spelled_out() {
        let errors = [
            serde_json::json!({"resource": "Status", "code": "custom", "message": "description is too long"}),
        ];
        let detail = describe_http_error(422, "Validation Failed", Some(&errors));
        assert!(
            detail.starts_with("HTTP 422: Validation Failed; "),
            "{detail}"
        );
        assert!(detail.contains("description is too long"), "{detail}");
    }
}
