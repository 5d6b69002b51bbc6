//! The sanity suite's results as data: counts and failing specs read from
//! its JUnit report, and the short texts made of them (the status
//! description must fit GitHub's 140 characters). Pure: parsing the XML
//! and every file access belong to the service.

use serde::{Deserialize, Serialize};

use crate::model::truncate_chars;

/// The name the status description gives the suite.
pub const SUITE_NAME: &str = "csi-sanity";

/// How one spec ended, as Ginkgo v2's JUnit reporter spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecState {
    Failed,
    /// Stopped by SIGINT: the spec that was running when the suite timed out.
    Interrupted,
    Panicked,
    Aborted,
}

/// A spec that did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecFailure {
    /// Ginkgo's full name ("[It] Controller Service [Controller Server]
    /// CreateVolume should fail when no name is provided").
    pub name: String,
    pub state: SpecState,
    /// The failure message, first line.
    pub message: String,
}

impl SpecFailure {
    /// The name without Ginkgo's node type and container labels: the text
    /// after the last `] ` ("CreateVolume should fail when no name is
    /// provided"), which is what a reader recognises.
    pub fn short_name(&self) -> &str {
        let name = self.name.trim();
        match name.rfind("] ") {
            Some(at) if at + 2 < name.len() => &name[at + 2..],
            _ => name,
        }
    }
}

/// What the suite's report says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteResults {
    pub passed: usize,
    /// Specs that did not pass (interrupted and panicked included).
    pub failed: usize,
    /// Skipped and pending specs.
    pub skipped: usize,
    /// Every failing spec, in report order.
    pub failures: Vec<SpecFailure>,
}

impl SuiteResults {
    pub fn ran(&self) -> usize {
        self.passed + self.failed
    }

    /// The spec the suite was stopped in, when it was interrupted.
    pub fn interrupted_spec(&self) -> Option<&SpecFailure> {
        self.failures
            .iter()
            .find(|f| f.state == SpecState::Interrupted)
    }

    /// Failures first, the interrupted spec before the others.
    fn failures_for_summary(&self) -> impl Iterator<Item = &SpecFailure> {
        let interrupted = self.interrupted_spec();
        interrupted.into_iter().chain(
            self.failures
                .iter()
                .filter(move |f| Some(*f) != interrupted),
        )
    }

    /// "csi-sanity: 70 passed, 2 failed: <spec>; <spec>; …" in at most
    /// `max_chars` characters: as many failing specs as fit whole, then an
    /// ellipsis; a first spec too long for the room is cut.
    pub fn summary(&self, max_chars: usize) -> String {
        let mut head = format!("{SUITE_NAME}: {} passed", self.passed);
        if self.failed > 0 {
            head.push_str(&format!(", {} failed", self.failed));
        }
        if self.skipped > 0 && self.failed == 0 {
            head.push_str(&format!(", {} skipped", self.skipped));
        }
        let mut text = head;
        for (shown, failure) in self.failures_for_summary().enumerate() {
            let separator = if shown == 0 { ": " } else { "; " };
            let candidate = format!("{text}{separator}{}", failure.short_name());
            let more_follow = shown + 1 < self.failures.len();
            let reserve = if more_follow { 3 } else { 0 };
            if candidate.chars().count() + reserve > max_chars {
                if shown == 0 {
                    return truncate_chars(&candidate, max_chars);
                }
                text.push_str("; …");
                return truncate_chars(&text, max_chars);
            }
            text = candidate;
        }
        truncate_chars(&text, max_chars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(name: &str, state: SpecState) -> SpecFailure {
        SpecFailure {
            name: name.into(),
            state,
            message: "boom".into(),
        }
    }

    #[test]
    fn short_names_drop_ginkgo_labels() {
        let spec = failure(
            "[It] Controller Service [Controller Server] CreateVolume should fail when no name is provided",
            SpecState::Failed,
        );
        assert_eq!(
            spec.short_name(),
            "CreateVolume should fail when no name is provided"
        );
        assert_eq!(failure("plain", SpecState::Failed).short_name(), "plain");
    }

    #[test]
    fn summary_names_failures_within_the_limit() {
        let results = SuiteResults {
            passed: 70,
            failed: 2,
            skipped: 20,
            failures: vec![
                failure("[It] Controller Service [Controller Server] CreateVolume should fail when no name is provided", SpecState::Failed),
                failure("[It] Node Service NodePublishVolume should fail without id", SpecState::Failed),
            ],
        };
        assert_eq!(
            results.summary(140),
            "csi-sanity: 70 passed, 2 failed: CreateVolume should fail when no name is provided; \
             Node Service NodePublishVolume should fail without id"
        );
        let cut = results.summary(100);
        assert_eq!(
            cut,
            "csi-sanity: 70 passed, 2 failed: CreateVolume should fail when no name is provided; …"
        );
        assert!(results.summary(40).chars().count() <= 40);
    }

    #[test]
    fn interrupted_spec_comes_first_and_passes_show_skips() {
        let results = SuiteResults {
            passed: 3,
            failed: 2,
            skipped: 0,
            failures: vec![
                failure("[It] A fails", SpecState::Failed),
                failure("[It] B hangs", SpecState::Interrupted),
            ],
        };
        assert_eq!(
            results.summary(140),
            "csi-sanity: 3 passed, 2 failed: B hangs; A fails"
        );
        let passing = SuiteResults {
            passed: 72,
            skipped: 20,
            ..SuiteResults::default()
        };
        assert_eq!(passing.summary(140), "csi-sanity: 72 passed, 20 skipped");
    }
}
