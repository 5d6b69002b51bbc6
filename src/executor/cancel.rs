//! The cancel signal a job's runner receives: a token that fires, and the
//! reason it was fired for, set together, so the runner's outcome carries
//! the real reason and nobody patches it in afterwards.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::model::{CancelReason, JobOutcome};

/// Cancels one job with a reason. Cheap to clone; clones share the signal.
#[derive(Debug, Clone, Default)]
pub struct CancelSignal {
    token: CancellationToken,
    /// The latest reason given (a shutdown after a supersede says so).
    reason: Arc<Mutex<Option<CancelReason>>>,
}

impl CancelSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `reason`, then fires the signal.
    pub fn cancel(&self, reason: CancelReason) {
        *self.reason.lock().expect("cancel reason lock poisoned") = Some(reason);
        self.token.cancel();
    }

    /// Completes once the job is cancelled.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The reason the job was cancelled for, once it was.
    pub fn reason(&self) -> Option<CancelReason> {
        self.reason
            .lock()
            .expect("cancel reason lock poisoned")
            .clone()
    }

    /// The outcome of a job ended by this signal.
    pub fn outcome(&self) -> JobOutcome {
        match self.reason() {
            Some(reason) => JobOutcome::from(&reason),
            // Unreachable through `cancel`, which sets the reason first.
            None => JobOutcome::Cancelled {
                reason: "cancelled".to_string(),
            },
        }
    }
}
