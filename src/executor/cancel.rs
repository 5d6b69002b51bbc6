//! The cancel signal a job's runner receives: a token that fires, and the
//! reason it was fired for, set together, so the runner's outcome carries
//! the real reason and nobody patches it in afterwards.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::model::JobOutcome;

/// Why a job was stopped before its result, when no reason was given.
const UNSPECIFIED_REASON: &str = "cancelled";

/// Cancels one job with a reason. Cheap to clone; clones share the signal.
#[derive(Debug, Clone, Default)]
pub struct CancelSignal {
    token: CancellationToken,
    /// The latest reason given (a shutdown after a supersede says so).
    reason: Arc<Mutex<Option<String>>>,
}

impl CancelSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `reason`, then fires the signal.
    pub fn cancel(&self, reason: impl Into<String>) {
        *self.reason.lock().expect("cancel reason lock poisoned") = Some(reason.into());
        self.token.cancel();
    }

    /// Completes once the job is cancelled.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The reason the job was cancelled for.
    pub fn reason(&self) -> String {
        self.reason
            .lock()
            .expect("cancel reason lock poisoned")
            .clone()
            .unwrap_or_else(|| UNSPECIFIED_REASON.to_string())
    }

    /// The outcome of a job ended by this signal.
    pub fn outcome(&self) -> JobOutcome {
        JobOutcome::Cancelled {
            reason: self.reason(),
        }
    }
}
