//! The sanity step's verdict: reads the suite's JUnit report (quick-junit,
//! Ginkgo v2's shape) from the artifacts directory and decides who is to
//! blame. Failing specs are the PR's (`failure`); a command that could not
//! run (not found, not executable, rejected flags) is ours (`error`); a
//! plugin that died while the suite ran is the PR's, with its last lines.
//!
//! No Podman here: the step in `job` runs the command and hands over the
//! exit code, the output's tail and the report's text.

use std::path::Path;
use std::time::{Duration, Instant};

use junit_parser::TestStatus;
use thiserror::Error;

use super::job::{JobRun, StepBody, StepStop};
use super::sandbox_argv::{self, InnerCommand, PluginProbe};
use crate::config::BackendConfig;
use crate::model::{Step, MAX_DESCRIPTION_CHARS};
use crate::sanity::{SpecFailure, SpecState, SuiteResults};

/// Where the sanity step's files go: `$ARTIFACTS_DIR` inside the sandbox,
/// under the job dir so the host reads them before cleanup.
pub const ARTIFACTS_SUBDIR: &str = "artifacts";
/// The report the default SANITY_COMMAND writes.
pub const JUNIT_FILE: &str = "junit.xml";
/// Exit codes of a shell that could not start the command.
const EXIT_NOT_FOUND: i64 = 127;
const EXIT_NOT_EXECUTABLE: i64 = 126;
/// Go's flag package exits 2 on an unknown flag, before any spec runs.
const EXIT_BAD_FLAGS: i64 = 2;
/// coreutils `timeout` exits 124 when the command ran out of time.
pub const EXIT_TIMED_OUT: i64 = 124;
/// A failure message is cut to its first line, at most this long.
const MAX_MESSAGE_CHARS: usize = 300;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a JUnit report: {source}")]
    Parse {
        path: String,
        #[source]
        source: junit_parser::Error,
    },
}

/// Reads the JUnit report at `path`; `Ok(None)` when there is none.
pub fn read_report(path: &Path) -> Result<Option<SuiteResults>, ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ReportError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    parse_report(&text)
        .map(Some)
        .map_err(|source| ReportError::Parse {
            path: path.display().to_string(),
            source,
        })
}

/// Counts and failing specs of a JUnit report as Ginkgo v2 writes it
/// (pending and skipped specs are `<skipped>`, interrupted ones a
/// `<failure type="interrupted">`, panics an `<error type="panicked">`).
pub fn parse_report(xml: &str) -> Result<SuiteResults, junit_parser::Error> {
    let report = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))?;
    let mut results = SuiteResults::default();
    let cases: Vec<_> = report.suites.iter().flat_map(all_cases).collect();
    if cases.is_empty() {
        // A report of counts only: the suites' attributes are all there is.
        for suite in &report.suites {
            let not_passed = suite.failures + suite.errors + suite.skipped;
            results.passed += to_count(suite.tests.saturating_sub(not_passed));
            results.failed += to_count(suite.failures + suite.errors);
            results.skipped += to_count(suite.skipped);
        }
        return Ok(results);
    }
    for case in cases {
        let (state, message) = match &case.status {
            TestStatus::Success => {
                results.passed += 1;
                continue;
            }
            TestStatus::Skipped(_) => {
                results.skipped += 1;
                continue;
            }
            TestStatus::Failure(failure) => {
                let state = match failure.failure_type.as_str() {
                    "interrupted" => SpecState::Interrupted,
                    "aborted" => SpecState::Aborted,
                    "panicked" => SpecState::Panicked,
                    _ => SpecState::Failed,
                };
                (state, &failure.message)
            }
            TestStatus::Error(error) => (SpecState::Panicked, &error.message),
        };
        results.failed += 1;
        results.failures.push(SpecFailure {
            name: case.original_name.clone(),
            state,
            message: first_line(message, MAX_MESSAGE_CHARS),
        });
    }
    Ok(results)
}

fn to_count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A suite's cases, those of nested suites included.
fn all_cases(suite: &junit_parser::TestSuite) -> Vec<&junit_parser::TestCase> {
    let mut cases: Vec<_> = suite.cases.iter().collect();
    cases.extend(suite.suites.iter().flat_map(all_cases));
    cases
}

/// What the suite run came to, before the plugin check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// The PR's code failed; the reason reads alone in a status.
    Failed(String),
    /// The command could not run, or ran out of time with no spec to blame.
    Broken(String),
}

/// What the sanity command left behind.
pub struct SuiteRun<'a> {
    pub exit_code: i64,
    pub results: Option<&'a SuiteResults>,
    /// The command's last output lines (for "could not run" reasons and
    /// a hung spec Ginkgo names but no report holds).
    pub output_tail: &'a str,
    /// SANITY_TIMEOUT in seconds, when it expired.
    pub timed_out_after: Option<u64>,
}

/// Decides the sanity step from its command's exit code and report.
pub fn verdict(run: &SuiteRun<'_>) -> Verdict {
    let room = MAX_DESCRIPTION_CHARS;
    if let Some(secs) = run.timed_out_after {
        let hung = run
            .results
            .and_then(SuiteResults::interrupted_spec)
            .map(|spec| spec.short_name().to_string())
            .or_else(|| hung_spec_in_output(run.output_tail));
        return match hung {
            Some(spec) => Verdict::Failed(crate::model::truncate_chars(
                &format!("csi-sanity hung in: {spec} (SANITY_TIMEOUT {secs}s)"),
                room,
            )),
            None => Verdict::Broken(format!(
                "sanity suite timed out after {secs}s (SANITY_TIMEOUT); no spec was running"
            )),
        };
    }
    match (run.exit_code, run.results) {
        (EXIT_NOT_FOUND, _) => Verdict::Broken(format!(
            "sanity command not found (exit 127): {}",
            last_line(run.output_tail)
        )),
        (EXIT_NOT_EXECUTABLE, _) => Verdict::Broken(format!(
            "sanity command not executable (exit 126): {}",
            last_line(run.output_tail)
        )),
        (_, Some(results)) if results.failed > 0 => Verdict::Failed(results.summary(room)),
        (0, _) => Verdict::Passed,
        // A report with no failure but a non-zero exit: the suite itself
        // broke after the specs (say, writing its report).
        (code, Some(results)) if results.ran() > 0 => Verdict::Broken(format!(
            "sanity command exited {code} after {} passing specs: {}",
            results.passed,
            last_line(run.output_tail)
        )),
        (code, _) if code == EXIT_BAD_FLAGS && !spec_ran(run.output_tail) => {
            Verdict::Broken(format!(
                "sanity command could not run (exit 2, bad flags?): {}",
                flag_error(run.output_tail).unwrap_or_else(|| last_line(run.output_tail))
            ))
        }
        (code, _) => Verdict::Failed(format!("sanity suite failed (exit {code})")),
    }
}

/// Ginkgo ends every run with "Ran N of M Specs"; nothing ran without it.
fn spec_ran(output: &str) -> bool {
    output
        .lines()
        .any(|line| line.contains("Ran ") && line.contains(" Specs"))
}

/// The spec Ginkgo names when interrupted without a report:
/// "Interrupted by User" is followed by the running spec's name, and its
/// summary lists it after "[INTERRUPTED]".
fn hung_spec_in_output(output: &str) -> Option<String> {
    output.lines().rev().find_map(|line| {
        let line = strip_ansi(line);
        let at = line.find("[INTERRUPTED] ")?;
        let name = line[at + "[INTERRUPTED] ".len()..].trim();
        // Summary lines end with the spec's file and line: keep the name.
        let name = name.split(" [").next().unwrap_or(name).trim();
        (!name.is_empty()).then(|| name.to_string())
    })
}

/// Go's flag package names the bad flag first, then prints the usage.
fn flag_error(output: &str) -> Option<String> {
    output
        .lines()
        .find(|l| l.contains("flag provided but not defined") || l.contains("invalid value"))
        .map(|l| first_line(&strip_ansi(l), 80))
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn last_line(output: &str) -> String {
    let line = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output");
    first_line(&strip_ansi(line), 80)
}

fn first_line(text: &str, max_chars: usize) -> String {
    crate::model::truncate_chars(text.lines().next().unwrap_or("").trim(), max_chars)
}

/// After SIGINT, how long the suite has to report before SIGKILL.
pub const SANITY_KILL_GRACE_SECS: u64 = 30;
/// The output tail kept for reasons (command not found, hung spec).
const OUTPUT_TAIL_BYTES: usize = 16 * 1024;
/// How often the log may write an unfinished line while the suite runs.
const PARTIAL_LINE_TICK: Duration = Duration::from_millis(500);
/// Plugin log lines quoted when the plugin died during the suite.
const PLUGIN_TAIL_LINES: u32 = 20;

/// Where the sandbox image keeps each csi-sanity build (`<tag>/csi-sanity`).
const CSI_SANITY_BUILDS_DIR: &str = "/usr/local/lib/csi-sanity";
/// Written by our csi-sanity wrapper: the tag and commit of each run
/// (relative to the job dir; outside the artifacts, which are published).
const CSI_SANITY_RAN_FILE: &str = "csi-sanity-ran";
/// The sandbox image's PATH, behind the backend's csi-sanity build.
const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment that makes `csi-sanity` the backend's build and has it
/// note that it ran.
fn csi_sanity_env(backend: &BackendConfig) -> Vec<(String, String)> {
    let path = match &backend.csi_sanity {
        Some(build) => format!("{CSI_SANITY_BUILDS_DIR}/{}:{SANDBOX_PATH}", build.version),
        None => SANDBOX_PATH.to_string(),
    };
    vec![
        ("PATH".into(), path),
        (
            "CSI_SANITY_RAN_FILE".into(),
            format!("{}/{CSI_SANITY_RAN_FILE}", sandbox_argv::SANDBOX_JOB_DIR),
        ),
    ]
}

/// The versions block's csi-sanity line from what the wrapper noted.
fn csi_sanity_that_ran(noted: Option<&str>, backend: &BackendConfig) -> String {
    let spec = &backend.plugin.spec_version;
    let runs: Vec<String> = noted
        .unwrap_or("")
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(tag, commit)| format!("{tag} (commit {})", commit.trim()))
        .collect();
    match runs.first() {
        None => format!(
            "none built by ember-ci ran (the sanity command ran its own, or none); CSI spec {spec}"
        ),
        Some(first) if runs.iter().all(|run| run == first) => {
            format!("{first}, for CSI spec {spec}")
        }
        Some(_) => format!("{}, for CSI spec {spec}", runs.join(", then ")),
    }
}

/// The sanity command as run: `timeout` sends SIGINT to its process group
/// on expiry (Ginkgo then names the running spec and writes its report),
/// SIGKILL after the grace; it runs in `$ARTIFACTS_DIR`.
fn timed_command(base: InnerCommand, timeout: Duration) -> InnerCommand {
    let mut argv = vec![
        "timeout".to_string(),
        "--signal=INT".into(),
        format!("--kill-after={SANITY_KILL_GRACE_SECS}"),
        timeout.as_secs().max(1).to_string(),
    ];
    argv.extend(base.argv);
    let mut env = base.env;
    env.push(("ARTIFACTS_DIR".into(), sandbox_artifacts_dir()));
    InnerCommand {
        argv,
        env,
        workdir: Some(sandbox_artifacts_dir()),
    }
}

fn sandbox_artifacts_dir() -> String {
    format!("{}/{ARTIFACTS_SUBDIR}", sandbox_argv::SANDBOX_JOB_DIR)
}

impl JobRun<'_> {
    /// Runs the suite bounded by SANITY_TIMEOUT, keeps its artifacts,
    /// reads its report, checks the plugin survived it, and decides.
    pub(super) async fn sanity(&mut self, backend: &BackendConfig) -> StepBody {
        let host_dir = self.work_dir.join(ARTIFACTS_SUBDIR);
        tokio::fs::create_dir_all(&host_dir)
            .await
            .map_err(|e| StepStop::error(format!("cannot create {}: {e}", host_dir.display())))?;
        self.push_empty_dir(ARTIFACTS_SUBDIR).await?;
        let mut env = self.job_env();
        env.extend(csi_sanity_env(backend));
        let command = timed_command(
            sandbox_argv::sanity(&backend.sanity_command, env),
            backend.sanity_timeout,
        );
        self.say(Step::Sanity, &command.trace());
        let observer = self.observer;
        let mut tail: Vec<u8> = Vec::new();
        let started = Instant::now();
        let code = {
            let mut keep_tail = |chunk: &[u8]| {
                observer.output(Step::Sanity, chunk);
                tail.extend_from_slice(chunk);
                if tail.len() > 2 * OUTPUT_TAIL_BYTES {
                    tail.drain(..tail.len() - OUTPUT_TAIL_BYTES);
                }
            };
            let exec =
                self.host
                    .podman
                    .exec(&self.names.sandbox_container, &command, &mut keep_tail);
            tokio::pin!(exec);
            // Progress dots come without a newline: let the log write them.
            let mut tick = tokio::time::interval(PARTIAL_LINE_TICK);
            loop {
                tokio::select! {
                    code = &mut exec => break code?,
                    _ = tick.tick() => observer.flush_partial_line(Step::Sanity),
                }
            }
        };
        let finished = Instant::now();
        let timed_out = (code == EXIT_TIMED_OUT || code == 128 + 9)
            && started.elapsed() >= backend.sanity_timeout;
        if let Err(stop) = self.pull_job_files(&[ARTIFACTS_SUBDIR]).await {
            self.say(
                Step::Sanity,
                &format!(
                    "ember-ci: cannot copy the artifacts back: {}\n",
                    stop.reason
                ),
            );
        }
        self.keep_artifacts(&host_dir).await;
        let noted = tokio::fs::read_to_string(self.work_dir.join(CSI_SANITY_RAN_FILE))
            .await
            .ok();
        let ran = csi_sanity_that_ran(noted.as_deref(), backend);
        self.say(Step::Sanity, &format!("ember-ci: csi-sanity: {ran}\n"));
        observer.fact("csi-sanity", &ran);
        let results = match read_report(&host_dir.join(JUNIT_FILE)) {
            Ok(results) => results,
            Err(e) => {
                self.say(Step::Sanity, &format!("ember-ci: {e}\n"));
                None
            }
        };
        if let Some(results) = &results {
            observer.suite_results(results);
        }
        let output_tail = String::from_utf8_lossy(&tail);
        let verdict = verdict(&SuiteRun {
            exit_code: code,
            results: results.as_ref(),
            output_tail: &output_tail,
            timed_out_after: timed_out.then_some(backend.sanity_timeout.as_secs()),
        });
        if let Some(died) = self.plugin_death().await? {
            return Err(StepStop::failure(died).exit(code));
        }
        self.say(
            Step::Sanity,
            &format!(
                "ember-ci: verdict {:.1}s after the suite's last output\n",
                finished.elapsed().as_secs_f64()
            ),
        );
        match verdict {
            Verdict::Passed => Ok(Some(code)),
            Verdict::Failed(reason) => Err(StepStop::failure(reason).exit(code)),
            Verdict::Broken(reason) => Err(StepStop::error(reason).exit(code)),
        }
    }

    /// Hands every file the suite left in `dir` to the observer (the job's
    /// logs keep them).
    async fn keep_artifacts(&self, dir: &Path) {
        let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().await.is_ok_and(|t| t.is_file());
            if !is_file {
                self.say(
                    Step::Sanity,
                    &format!("ember-ci: artifact {name} is not a plain file; not kept\n"),
                );
                continue;
            }
            match tokio::fs::read(entry.path()).await {
                Ok(bytes) => self.observer.artifact(&name, &bytes),
                Err(e) => self.say(
                    Step::Sanity,
                    &format!("ember-ci: cannot read artifact {name}: {e}\n"),
                ),
            }
        }
    }

    /// The reason when the plugin is no longer running after the suite,
    /// with its last log lines shown in the sanity step.
    async fn plugin_death(&mut self) -> Result<Option<String>, StepStop> {
        if !self.plugin_started() {
            return Ok(None);
        }
        let probe = sandbox_argv::probe_plugin(&self.names.plugin_container);
        let (_, output) = self
            .host
            .podman
            .exec_captured(&self.names.sandbox_container, &probe)
            .await?;
        let PluginProbe::Exited(plugin_code) = sandbox_argv::parse_probe(&output) else {
            return Ok(None);
        };
        let tail = InnerCommand {
            argv: vec![
                "podman".into(),
                "logs".into(),
                "--tail".into(),
                PLUGIN_TAIL_LINES.to_string(),
                self.names.plugin_container.clone(),
            ],
            env: Vec::new(),
            workdir: None,
        };
        let (_, log) = self
            .host
            .podman
            .exec_captured(&self.names.sandbox_container, &tail)
            .await?;
        self.show_plugin_log(Step::Sanity).await;
        Ok(Some(format!(
            "plugin died during csi-sanity (exit {plugin_code}): {}",
            last_line(&log)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ginkgo v2's JUnit shape, as csi-sanity v5 writes it (cut down).
    const REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="1" errors="0" failures="2" time="0.5">
  <testsuite name="CSI Driver Test Suite" package="/src" tests="5" disabled="1" skipped="0" errors="0" failures="2" time="0.5" timestamp="2026-12-06T01:00:00">
    <properties><property name="SuiteSucceeded" value="false"></property></properties>
    <testcase name="[BeforeSuite]" classname="CSI Driver Test Suite" status="passed" time="0.01"></testcase>
    <testcase name="[It] Node Service should work [Node Service]" classname="CSI Driver Test Suite" status="passed" time="0.01"></testcase>
    <testcase name="[It] Controller Service [Controller Server] CreateVolume should fail when no name is provided" classname="CSI Driver Test Suite" status="failed" time="0.01">
      <failure message="Expected an error with code InvalidArgument&#xA;got nil" type="failed">[FAILED] Expected an error</failure>
    </testcase>
    <testcase name="[It] Node Service NodeStageVolume should hang" classname="CSI Driver Test Suite" status="interrupted" time="3">
      <failure message="interrupted by user" type="interrupted">Interrupted by User</failure>
    </testcase>
    <testcase name="[It] ListSnapshots should work" classname="CSI Driver Test Suite" status="pending" time="0"><skipped message="pending"></skipped></testcase>
  </testsuite>
</testsuites>"#;

    #[test]
    fn ginkgo_report_gives_counts_and_failures() {
        let results = parse_report(REPORT).expect("parses");
        assert_eq!((results.passed, results.failed, results.skipped), (2, 2, 1));
        assert_eq!(results.failures[0].state, SpecState::Failed);
        assert_eq!(
            results.failures[0].message,
            "Expected an error with code InvalidArgument"
        );
        assert_eq!(
            results.interrupted_spec().map(|s| s.short_name()),
            Some("Node Service NodeStageVolume should hang")
        );
    }

    #[test]
    fn a_report_without_cases_gives_its_counts() {
        let xml = r#"<testsuite name="CSI Driver Test Suite" tests="3" failures="1"></testsuite>"#;
        let results = parse_report(xml).expect("parses");
        assert_eq!((results.passed, results.failed, results.skipped), (2, 1, 0));
    }

    #[test]
    fn blame_follows_what_ran() {
        let results = parse_report(REPORT).expect("parses");
        let run = |exit_code, results, output_tail| SuiteRun {
            exit_code,
            results,
            output_tail,
            timed_out_after: None,
        };
        assert!(matches!(
            verdict(&run(1, Some(&results), "")),
            Verdict::Failed(r) if r.starts_with("csi-sanity: 2 passed, 2 failed: ")
        ));
        assert!(matches!(
            verdict(&run(127, None, "bash: line 1: csi-sanity: command not found")),
            Verdict::Broken(r) if r.contains("not found") && r.contains("command not found")
        ));
        assert!(matches!(
            verdict(&run(2, None, "flag provided but not defined: -test.v\nUsage of csi-sanity:")),
            Verdict::Broken(r) if r.contains("-test.v")
        ));
        assert!(matches!(
            verdict(&run(1, None, "FAIL: unexpected answer")),
            Verdict::Failed(r) if r == "sanity suite failed (exit 1)"
        ));
        assert_eq!(verdict(&run(0, None, "")), Verdict::Passed);
    }

    #[test]
    fn a_timeout_names_the_hung_spec_from_the_report_or_the_output() {
        let results = parse_report(REPORT).expect("parses");
        let timed_out = |results, output_tail| SuiteRun {
            exit_code: EXIT_TIMED_OUT,
            results,
            output_tail,
            timed_out_after: Some(30),
        };
        assert_eq!(
            verdict(&timed_out(Some(&results), "")),
            Verdict::Failed(
                "csi-sanity hung in: Node Service NodeStageVolume should hang (SANITY_TIMEOUT 30s)"
                    .into()
            )
        );
        let output = "\u{1b}[38;5;214m[INTERRUPTED] Node Service NodeStageVolume should hang\u{1b}[0m [Node Service]\n";
        assert!(matches!(
            verdict(&timed_out(None, output)),
            Verdict::Failed(r) if r.contains("Node Service NodeStageVolume should hang")
        ));
        assert!(matches!(verdict(&timed_out(None, "")), Verdict::Broken(_)));
    }
}
