//! What one client can hold of the webhook port, without a key: the
//! deadlines and caps that keep the endpoint answering GitHub while
//! someone opens idle sockets, trickles headers or stalls huge bodies.
//!
//! - Connections: at most [`MAX_CONNECTIONS`] open at once (more are closed
//!   at accept); each must finish its request headers within
//!   [`HEADER_DEADLINE`] (the server's job, `crate::server`).
//! - Bodies: each within [`BODY_DEADLINE`]. The first [`SMALL_BODY_BYTES`]
//!   of a body (a whole ordinary delivery) are always allowed, so stalled
//!   bodies cannot keep ordinary deliveries out; beyond that a body needs one
//!   of [`MAX_LARGE_DELIVERIES`] slots and bytes of the shared
//!   [`MAX_BUFFERED_BYTES`] ([`BodyLimits`]), or it gets a 503. Memory held
//!   by bodies is so bounded by connections × small + the shared budget.
//! - [`raise_open_files_limit`]: the soft `RLIMIT_NOFILE` up to the hard one
//!   at start, so the caps above bind before the process runs out of files.
//!
//! GitHub gives up on a delivery after 10 s; nothing legitimate needs more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Time to send the request line and headers, from the connection's start.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(10);
/// Time to send the whole body once the headers are in.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Open connections at once, idle ones included.
pub const MAX_CONNECTIONS: usize = 512;
/// What any body may buffer without the shared budget: GitHub's pull
/// request and comment payloads are 10-40 KiB.
pub const SMALL_BODY_BYTES: u64 = 64 * 1024;
/// Bodies larger than [`SMALL_BODY_BYTES`] being read at once.
pub const MAX_LARGE_DELIVERIES: usize = 4;
/// Bytes beyond [`SMALL_BODY_BYTES`] buffered at once, all requests
/// together: one of GitHub's largest payloads.
pub const MAX_BUFFERED_BYTES: u64 = super::MAX_BODY_BYTES;

/// What all deliveries being read share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    small: u64,
    large_slots: Arc<tokio::sync::Semaphore>,
    budget: BodyBudget,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self::new(SMALL_BODY_BYTES, MAX_LARGE_DELIVERIES, MAX_BUFFERED_BYTES)
    }
}

impl BodyLimits {
    pub fn new(small: u64, large_at_once: usize, budget: u64) -> Self {
        Self {
            small,
            large_slots: Arc::new(tokio::sync::Semaphore::new(large_at_once)),
            budget: BodyBudget::new(budget),
        }
    }

    /// The allowance of one body being read.
    pub fn allowance(&self) -> Allowance {
        Allowance {
            limits: self.clone(),
            read: 0,
            slot: None,
            reservation: self.budget.reservation(),
        }
    }

    pub fn budget(&self) -> &BodyBudget {
        &self.budget
    }
}

/// One body's share of [`BodyLimits`]; given back on drop.
#[derive(Debug)]
pub struct Allowance {
    limits: BodyLimits,
    read: u64,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    reservation: Reservation,
}

impl Allowance {
    /// Accounts for `bytes` more of the body; false (nothing taken) when
    /// they cannot be held now.
    pub fn take(&mut self, bytes: u64) -> bool {
        let small = self.limits.small;
        let total = self.read.saturating_add(bytes);
        let beyond = total.saturating_sub(small) - self.read.saturating_sub(small);
        if beyond > 0 {
            if self.slot.is_none() {
                match self.limits.large_slots.clone().try_acquire_owned() {
                    Ok(slot) => self.slot = Some(slot),
                    Err(_) => return false,
                }
            }
            if !self.reservation.grow(beyond) {
                return false;
            }
        }
        self.read = total;
        true
    }
}

/// The shared allowance of buffered body bytes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    free: Arc<AtomicU64>,
}

impl BodyBudget {
    pub fn new(total: u64) -> Self {
        Self {
            free: Arc::new(AtomicU64::new(total)),
        }
    }

    /// An empty reservation to grow while a body is read.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            held: 0,
        }
    }

    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: u64) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(bytes)
            })
            .is_ok()
    }
}

/// Bytes held of a [`BodyBudget`]; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: BodyBudget,
    held: u64,
}

impl Reservation {
    /// Takes `bytes` more; false (nothing taken) when the budget is spent.
    pub fn grow(&mut self, bytes: u64) -> bool {
        let taken = self.budget.take(bytes);
        if taken {
            self.held += bytes;
        }
        taken
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.free.fetch_add(self.held, Ordering::AcqRel);
    }
}

/// How many connections [`MAX_CONNECTIONS`] allows under the process's
/// open-files limit: half of it, the rest for the journal, logs and Podman.
pub fn connection_cap() -> usize {
    let soft = open_files_limit().unwrap_or(1024);
    MAX_CONNECTIONS
        .min(usize::try_from(soft / 2).unwrap_or(usize::MAX))
        .max(1)
}

fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

/// Raises the soft open-files limit to the hard one. Returns the limits
/// before and after, for the log.
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let budget = BodyBudget::new(10);
        let mut first = budget.reservation();
        assert!(first.grow(6));
        let mut second = budget.reservation();
        assert!(!second.grow(5), "over the shared budget");
        assert!(second.grow(4));
        assert_eq!(budget.free(), 0);
        drop(first);
        assert_eq!(budget.free(), 6);
        drop(second);
        assert_eq!(budget.free(), 10);
    }

    #[test]
    fn small_bodies_need_no_slot_nor_budget_large_ones_need_both() {
        let limits = BodyLimits::new(10, 1, 20);
        let mut first_large = limits.allowance();
        assert!(first_large.take(25), "10 free + 15 of the budget");
        let mut second_large = limits.allowance();
        assert!(second_large.take(10), "the small part needs nothing");
        assert!(!second_large.take(1), "no large slot left");
        let mut small = limits.allowance();
        assert!(small.take(10));
        drop(first_large);
        assert_eq!(limits.budget().free(), 20);
        assert!(second_large.take(20), "slot and budget free again");
        assert!(!second_large.take(1), "budget spent");
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let (before, after) = raise_open_files_limit().expect("rlimit");
        assert!(after >= before);
    }
}
