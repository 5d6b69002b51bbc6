//! [`RelayHealth`]: the smee link's state, written by the relay task and read
//! by the web UI. Cheap to clone; every clone sees the same state.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// A reading of [`RelayHealth`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStatus {
    /// The event stream is open (HTTP 200 received, not yet dropped).
    pub is_connected: bool,
    /// When `is_connected` last changed.
    pub since: Option<SystemTime>,
    /// When the last event of any kind (ready, ping, delivery) arrived.
    pub last_event_at: Option<SystemTime>,
    /// Deliveries handed to the intake, whatever it answered.
    pub deliveries_relayed: u64,
    /// Of those, how many the intake refused (bad signature, bad payload, ...),
    /// plus messages that were not deliveries at all.
    pub deliveries_refused: u64,
    /// Why the link last dropped or failed to open.
    pub last_error: Option<String>,
}

/// Shared, lock-protected [`RelayStatus`]. The lock is only held to copy or
/// bump a few fields, never across an await.
#[derive(Debug, Clone, Default)]
pub struct RelayHealth {
    status: Arc<Mutex<RelayStatus>>,
}

impl RelayHealth {
    pub fn snapshot(&self) -> RelayStatus {
        self.lock().clone()
    }

    pub(super) fn connected(&self) {
        let mut status = self.lock();
        status.is_connected = true;
        status.since = Some(SystemTime::now());
    }

    /// Returns whether the link was up until now (a state change to log).
    pub(super) fn disconnected(&self, error: String) -> bool {
        let mut status = self.lock();
        let was_connected = status.is_connected;
        if was_connected {
            status.since = Some(SystemTime::now());
        }
        status.is_connected = false;
        status.last_error = Some(error);
        was_connected
    }

    pub(super) fn event_seen(&self) {
        self.lock().last_event_at = Some(SystemTime::now());
    }

    pub(super) fn delivery_relayed(&self, is_refused: bool) {
        let mut status = self.lock();
        status.deliveries_relayed += 1;
        if is_refused {
            status.deliveries_refused += 1;
        }
    }

    pub(super) fn message_refused(&self) {
        self.lock().deliveries_refused += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RelayStatus> {
        // The status is plain counters; a panic elsewhere leaves it usable.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
