//! The `/ok-to-test` ledger: which untrusted authors' heads wait for a
//! member's ok, and which heads a member approved, kept in the journal so a
//! restart forgets nothing.
//!
//! An ok covers exactly one head, and only one pushed before the comment
//! was written: both times are signed by GitHub (the head's `opened` or
//! `synchronize` payload, the comment's `created_at`), never arrival times,
//! so a replayed or late-delivered ok cannot approve a newer push. With no
//! held head or no push time known (a PR opened before ember-ci watched it)
//! the current head is held from now on and a new ok is asked for.

use std::time::SystemTime;

use crate::journal::{Journal, JournalError};
use crate::model::{CommitSha, PrNumber};

/// What an `/ok-to-test` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// The head may run.
    Granted,
    /// The head was pushed after the ok was written: the member cannot
    /// have reviewed it.
    PushedAfterOk,
    /// The PR's head is not the one held: a push happened whose delivery has
    /// not arrived yet, so the member cannot have reviewed it either.
    HeadChanged { held: CommitSha },
    /// No record of when the head was pushed (or nothing held): it is held
    /// from now on and needs a new ok.
    Unknown,
    /// The comment carries no `created_at` to judge by.
    OkTimeUnknown,
}

/// The decision, from the records alone.
pub fn judge(
    held: Option<&CommitSha>,
    head: &CommitSha,
    pushed_at: Option<SystemTime>,
    written_at: Option<SystemTime>,
) -> Approval {
    let (Some(held), Some(pushed_at)) = (held, pushed_at) else {
        return Approval::Unknown;
    };
    if held != head {
        return Approval::HeadChanged { held: held.clone() };
    }
    match written_at {
        None => Approval::OkTimeUnknown,
        Some(written_at) if pushed_at > written_at => Approval::PushedAfterOk,
        Some(_) => Approval::Granted,
    }
}

/// The ledger over the journal.
#[derive(Debug, Clone)]
pub struct OkToTestLedger {
    journal: Journal,
}

impl OkToTestLedger {
    pub fn new(journal: Journal) -> Self {
        Self { journal }
    }

    /// Holds `sha` as the PR's head waiting for an ok. Returns the head
    /// held before if it was another SHA: it will never run now.
    pub fn hold(&self, pr: PrNumber, sha: &CommitSha) -> Result<Option<CommitSha>, JournalError> {
        self.journal.hold_head(pr, sha)
    }

    /// Forgets the PR's held head. Returns it if it was another SHA than
    /// `keep`.
    pub fn release(
        &self,
        pr: PrNumber,
        keep: Option<&CommitSha>,
    ) -> Result<Option<CommitSha>, JournalError> {
        Ok(self
            .journal
            .release_head(pr)?
            .filter(|held| Some(held) != keep))
    }

    /// Whether a member approved exactly this head. A journal that cannot
    /// be read approves nothing.
    pub fn is_approved(&self, pr: PrNumber, sha: &CommitSha) -> bool {
        self.journal
            .is_head_approved(pr, sha)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot read the ok ledger; treating the head as not approved");
                false
            })
    }

    /// A trusted user's `/ok-to-test`, written at `written_at` (the comment's
    /// signed `created_at`), for the PR whose current head (read from
    /// GitHub) is `head`.
    pub fn approve(
        &self,
        pr: PrNumber,
        head: &CommitSha,
        written_at: Option<SystemTime>,
    ) -> Result<Approval, JournalError> {
        let held = self.journal.held_head(pr)?;
        let pushed_at = self.journal.head_pushed_at(pr, head)?;
        let approval = judge(held.as_ref(), head, pushed_at, written_at);
        match approval {
            Approval::Granted => self.journal.approve_head(pr, head, SystemTime::now())?,
            Approval::Unknown => {
                // Only the API knows this head: it was pushed by now at the
                // latest, so an ok written from now on can cover it.
                if pushed_at.is_none() {
                    self.journal.record_head_push(pr, head, SystemTime::now())?;
                }
                self.journal.hold_head(pr, head)?;
            }
            _ => {}
        }
        Ok(approval)
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
    fn judging_uses_the_signed_times_and_the_held_head() {
        let a = sha('a');
        assert_eq!(
            judge(Some(&a), &a, Some(at(10)), Some(at(20))),
            Approval::Granted
        );
        assert_eq!(
            judge(Some(&a), &a, Some(at(30)), Some(at(20))),
            Approval::PushedAfterOk
        );
        assert_eq!(
            judge(Some(&a), &sha('b'), Some(at(10)), Some(at(20))),
            Approval::HeadChanged { held: a.clone() }
        );
        assert_eq!(
            judge(None, &a, Some(at(10)), Some(at(20))),
            Approval::Unknown
        );
        assert_eq!(judge(Some(&a), &a, None, Some(at(20))), Approval::Unknown);
        assert_eq!(
            judge(Some(&a), &a, Some(at(10)), None),
            Approval::OkTimeUnknown
        );
    }

    #[test]
    fn an_unknown_head_is_held_from_now_and_a_later_ok_approves_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = OkToTestLedger::new(Journal::open(dir.path()).expect("journal"));
        let old_ok = Some(SystemTime::now() - Duration::from_secs(60));
        assert_eq!(
            ledger.approve(pr(8), &sha('d'), old_ok).expect("approve"),
            Approval::Unknown
        );
        assert!(!ledger.is_approved(pr(8), &sha('d')));
        // The same old ok again (a replay) still cannot cover it.
        assert_eq!(
            ledger.approve(pr(8), &sha('d'), old_ok).expect("approve"),
            Approval::PushedAfterOk
        );
        let new_ok = Some(SystemTime::now() + Duration::from_secs(1));
        assert_eq!(
            ledger.approve(pr(8), &sha('d'), new_ok).expect("approve"),
            Approval::Granted
        );
        assert!(ledger.is_approved(pr(8), &sha('d')));
        assert!(!ledger.is_approved(pr(9), &sha('d')));
    }
}
