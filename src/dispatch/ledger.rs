//! The `/ok-to-test` ledger: which untrusted authors' heads wait for a
//! member's ok, and which heads a member approved. Pure bookkeeping with no
//! I/O; the dispatcher decides what to post and run from its answers.
//!
//! An ok covers exactly one head SHA: a new push from the same author is
//! held again. Held heads carry the time their delivery arrived so an ok
//! written before a push (the member never saw the new code) does not
//! approve it. The ledger lives in memory: after a restart a held PR needs
//! its ok again, which errs on the safe side.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::SystemTime;

use crate::model::{CommitSha, PrNumber};

/// Approved heads remembered, oldest dropped first; far more than there are
/// open PRs, so only long-dead heads are forgotten.
const APPROVALS_REMEMBERED: usize = 10_000;

/// A head waiting for an ok.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldHead {
    sha: CommitSha,
    /// When the delivery announcing this head arrived.
    since: SystemTime,
}

/// What an `/ok-to-test` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// The head may run.
    Granted,
    /// The head was announced after the ok was written: the member cannot
    /// have reviewed it.
    PushedAfterOk,
    /// The PR's head is not the one held: a push happened whose delivery has
    /// not arrived yet, so the member cannot have reviewed it either.
    HeadChanged { held: CommitSha },
}

#[derive(Debug, Default)]
pub struct OkToTestLedger {
    held: HashMap<PrNumber, HeldHead>,
    approved: HashSet<(PrNumber, CommitSha)>,
    approval_order: VecDeque<(PrNumber, CommitSha)>,
}

impl OkToTestLedger {
    /// Records `sha` as the PR's head waiting for an ok (announced at
    /// `since`). Returns the previously held head if it was another SHA: it
    /// will never run now.
    pub fn hold(&mut self, pr: PrNumber, sha: &CommitSha, since: SystemTime) -> Option<CommitSha> {
        // A replayed or reopened delivery for the same head keeps the first
        // arrival time: an ok given in between still counts.
        if self.held_head(pr) == Some(sha) {
            return None;
        }
        let held = HeldHead {
            sha: sha.clone(),
            since,
        };
        self.held.insert(pr, held).map(|previous| previous.sha)
    }

    /// Forgets the PR's held head (closed, or its new head may run).
    /// Returns it if it was another SHA than `keep`.
    pub fn release(&mut self, pr: PrNumber, keep: Option<&CommitSha>) -> Option<CommitSha> {
        self.held
            .remove(&pr)
            .map(|held| held.sha)
            .filter(|held| Some(held) != keep)
    }

    /// The PR's head waiting for an ok, if any.
    pub fn held_head(&self, pr: PrNumber) -> Option<&CommitSha> {
        self.held.get(&pr).map(|held| &held.sha)
    }

    pub fn is_approved(&self, pr: PrNumber, sha: &CommitSha) -> bool {
        self.approved.contains(&(pr, sha.clone()))
    }

    /// A trusted user's `/ok-to-test`, whose delivery arrived at `ok_at`,
    /// for the PR whose current head (read from GitHub) is `head`.
    pub fn approve(&mut self, pr: PrNumber, head: &CommitSha, ok_at: SystemTime) -> Approval {
        if let Some(held) = self.held.get(&pr) {
            if held.sha != *head {
                return Approval::HeadChanged {
                    held: held.sha.clone(),
                };
            }
            if held.since > ok_at {
                return Approval::PushedAfterOk;
            }
            self.held.remove(&pr);
        }
        // Without a held head (the PR was opened before ember-ci started)
        // the head GitHub reports is the best knowledge there is.
        let key = (pr, head.clone());
        if self.approved.insert(key.clone()) {
            self.approval_order.push_back(key);
            if self.approval_order.len() > APPROVALS_REMEMBERED {
                if let Some(oldest) = self.approval_order.pop_front() {
                    self.approved.remove(&oldest);
                }
            }
        }
        Approval::Granted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pr(n: u64) -> PrNumber {
        PrNumber::new(n).expect("valid PR number")
    }

    fn sha(digit: char) -> CommitSha {
        CommitSha::new(&digit.to_string().repeat(40)).expect("valid SHA")
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn an_ok_approves_the_held_head_only() {
        let mut ledger = OkToTestLedger::default();
        assert_eq!(ledger.hold(pr(7), &sha('a'), at(10)), None);
        assert_eq!(ledger.approve(pr(7), &sha('a'), at(20)), Approval::Granted);
        assert!(ledger.is_approved(pr(7), &sha('a')));
        assert_eq!(ledger.held_head(pr(7)), None);
        // The same author pushes again: held again, the old ok does not carry over.
        assert_eq!(ledger.hold(pr(7), &sha('b'), at(30)), None);
        assert!(!ledger.is_approved(pr(7), &sha('b')));
        assert_eq!(ledger.held_head(pr(7)), Some(&sha('b')));
    }

    #[test]
    fn an_ok_written_before_the_push_arrived_is_refused() {
        let mut ledger = OkToTestLedger::default();
        ledger.hold(pr(7), &sha('a'), at(10));
        assert_eq!(ledger.hold(pr(7), &sha('b'), at(30)), Some(sha('a')));
        assert_eq!(
            ledger.approve(pr(7), &sha('b'), at(20)),
            Approval::PushedAfterOk
        );
        assert!(!ledger.is_approved(pr(7), &sha('b')));
        assert_eq!(ledger.held_head(pr(7)), Some(&sha('b')));
    }

    #[test]
    fn an_ok_for_a_head_not_yet_announced_is_refused() {
        let mut ledger = OkToTestLedger::default();
        ledger.hold(pr(7), &sha('a'), at(10));
        assert_eq!(
            ledger.approve(pr(7), &sha('c'), at(20)),
            Approval::HeadChanged { held: sha('a') }
        );
        assert!(!ledger.is_approved(pr(7), &sha('c')));
    }

    #[test]
    fn an_ok_without_a_held_head_approves_the_current_head() {
        let mut ledger = OkToTestLedger::default();
        assert_eq!(ledger.approve(pr(8), &sha('d'), at(5)), Approval::Granted);
        assert!(ledger.is_approved(pr(8), &sha('d')));
        assert!(!ledger.is_approved(pr(9), &sha('d')));
    }

    #[test]
    fn release_reports_a_held_head_that_will_not_run() {
        let mut ledger = OkToTestLedger::default();
        ledger.hold(pr(7), &sha('a'), at(10));
        assert_eq!(ledger.release(pr(7), Some(&sha('a'))), None);
        ledger.hold(pr(7), &sha('a'), at(10));
        assert_eq!(ledger.release(pr(7), Some(&sha('b'))), Some(sha('a')));
        assert_eq!(ledger.release(pr(7), None), None);
    }

    #[test]
    fn a_replayed_delivery_keeps_the_first_arrival_time() {
        let mut ledger = OkToTestLedger::default();
        ledger.hold(pr(7), &sha('a'), at(10));
        assert_eq!(ledger.hold(pr(7), &sha('a'), at(30)), None);
        assert_eq!(ledger.approve(pr(7), &sha('a'), at(20)), Approval::Granted);
    }
}
