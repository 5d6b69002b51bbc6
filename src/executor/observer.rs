//! How a job's output leaves the executor: the CLI prints it, the log writer
//! stores it, the web view streams it. The executor only calls these hooks;
//! masking secrets and size caps are the receiver's business.

use std::time::Duration;

use crate::model::Step;
use crate::sanity::SuiteResults;

/// How one step ended, as far as its output is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// Exit code of the step's command, when there was exactly one that decided.
    pub exit_code: Option<i64>,
    pub duration: Duration,
    /// Why the step failed, was skipped or was abandoned; None when it passed.
    pub note: Option<String>,
}

/// Receives a job's steps and their output as they happen.
///
/// Every `step_started` is followed by exactly one `step_finished` for the
/// same step, also when the step is abandoned (timeout, cancel).
pub trait StepObserver: Send + Sync {
    fn step_started(&self, step: Step);
    /// Raw bytes as they arrive, stdout and stderr merged, not split at lines.
    fn output(&self, step: Step, chunk: &[u8]);
    fn step_finished(&self, step: Step, result: &StepResult);
    /// Credential values learned while the job runs (a driver config made by
    /// a script), so the receiver can mask them from then on. Called before
    /// anything could print them again.
    fn secrets_discovered(&self, _values: &[String]) {}
    /// Called about once a second while a long command runs: a receiver
    /// holding an unfinished line may write it now.
    fn flush_partial_line(&self, _step: Step) {}
    /// A file the sanity suite left in `$ARTIFACTS_DIR`, to keep with the logs.
    fn artifact(&self, _name: &str, _content: &[u8]) {}
    /// The counts and failing specs of the suite's report.
    fn suite_results(&self, _results: &SuiteResults) {}
    /// Something the job found it ran with (`csi-sanity`, `iscsid`, ...),
    /// for the versions block of its logs.
    fn fact(&self, _name: &str, _value: &str) {}
}

/// Several observers seen as one, called in order: the scheduler hands the
/// executor the job's log and the board's step tracker this way, `ember-ci
/// run` the log and the console.
pub struct Observers<'a>(pub Vec<&'a dyn StepObserver>);

impl StepObserver for Observers<'_> {
    fn step_started(&self, step: Step) {
        self.0.iter().for_each(|o| o.step_started(step));
    }

    fn output(&self, step: Step, chunk: &[u8]) {
        self.0.iter().for_each(|o| o.output(step, chunk));
    }

    fn step_finished(&self, step: Step, result: &StepResult) {
        self.0.iter().for_each(|o| o.step_finished(step, result));
    }

    fn secrets_discovered(&self, values: &[String]) {
        self.0.iter().for_each(|o| o.secrets_discovered(values));
    }

    fn flush_partial_line(&self, step: Step) {
        self.0.iter().for_each(|o| o.flush_partial_line(step));
    }

    fn artifact(&self, name: &str, content: &[u8]) {
        self.0.iter().for_each(|o| o.artifact(name, content));
    }

    fn suite_results(&self, results: &SuiteResults) {
        self.0.iter().for_each(|o| o.suite_results(results));
    }

    fn fact(&self, name: &str, value: &str) {
        self.0.iter().for_each(|o| o.fact(name, value));
    }
}
