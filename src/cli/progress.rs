//! The quiet console of `ember-ci run`: one line per step with a live
//! timer while it runs, its last output line as the hint of what it is
//! doing (an image build, a pull), under a long step its first line (which
//! says what one-time work it did: "building the sandbox image …"), and on
//! a failed step the tail of its output and the step's log file. The full output is in the job's log
//! either way; `--verbose` streams it instead (`run::ConsoleObserver`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::executor::{StepObserver, StepResult};
use crate::logs::Masker;
use crate::model::Step;

/// Lines of a failed step's output shown on the console.
const FAILURE_TAIL_LINES: usize = 20;
const TICK: Duration = Duration::from_millis(120);
/// The hint is one terminal line; longer output lines are cut.
const HINT_CHARS: usize = 70;
/// A step this long gets its first output line shown under it.
const LONG_STEP: Duration = Duration::from_secs(10);

/// The step running now.
struct Current {
    bar: ProgressBar,
    /// Its last lines of output (masked), for the hint and a failure.
    tail: VecDeque<String>,
    /// An unfinished last line.
    partial: String,
    /// Its first line of output.
    first: Option<String>,
}

pub struct ProgressObserver {
    masker: RwLock<Masker>,
    job_dir: PathBuf,
    current: Mutex<Option<Current>>,
}

impl ProgressObserver {
    /// `job_dir` is the job's log folder, where each step has its file.
    pub fn new(masker: Masker, job_dir: &Path) -> Self {
        Self {
            masker: RwLock::new(masker),
            job_dir: job_dir.to_path_buf(),
            current: Mutex::new(None),
        }
    }

    /// Prints `line` above the running step's bar (or plainly).
    pub fn println(&self, line: &str) {
        match self.lock().as_ref() {
            Some(current) => current.bar.println(line),
            None => println!("{line}"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The step's own log file, `NN-<step>.txt` in the job's folder.
    fn step_log(&self, step: Step) -> Option<PathBuf> {
        let suffix = format!("-{step}.txt");
        std::fs::read_dir(&self.job_dir)
            .ok()?
            .flatten()
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().ends_with(&suffix))
            })
    }
}

fn hint(line: &str) -> String {
    let line = line.trim();
    match line.char_indices().nth(HINT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

impl StepObserver for ProgressObserver {
    fn step_started(&self, step: Step) {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<14} {elapsed:>4} {wide_msg:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(step.to_string());
        bar.enable_steady_tick(TICK);
        *self.lock() = Some(Current {
            bar,
            tail: VecDeque::new(),
            partial: String::new(),
            first: None,
        });
    }

    fn output(&self, _step: Step, chunk: &[u8]) {
        let text = self
            .masker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .mask(&String::from_utf8_lossy(chunk));
        let mut guard = self.lock();
        let Some(current) = guard.as_mut() else {
            return;
        };
        current.partial.push_str(&text);
        while let Some(end) = current.partial.find(['\n', '\r']) {
            let line: String = current.partial.drain(..=end).collect();
            let line = line.trim_end();
            if line.trim().is_empty() {
                continue;
            }
            current.bar.set_message(hint(line));
            if current.first.is_none() {
                current.first = Some(hint(line));
            }
            if current.tail.len() == FAILURE_TAIL_LINES {
                current.tail.pop_front();
            }
            current.tail.push_back(line.to_string());
        }
    }

    fn secrets_discovered(&self, values: &[String]) {
        self.masker
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(values.to_vec());
    }

    fn step_finished(&self, step: Step, result: &StepResult) {
        let Some(mut current) = self.lock().take() else {
            return;
        };
        current.bar.finish_and_clear();
        let failed = result.exit_code.is_some_and(|code| code != 0);
        let mark = if failed { "✗" } else { "✓" };
        let code = match result.exit_code {
            Some(code) if code != 0 => format!("  exit {code}"),
            _ => String::new(),
        };
        println!(
            "{mark} {:<14} {:>6.1} s{code}",
            step.to_string(),
            result.duration.as_secs_f64()
        );
        if let Some(first) = current
            .first
            .as_ref()
            .filter(|_| result.duration >= LONG_STEP)
        {
            println!("    {first}");
        }
        if failed {
            if !current.partial.trim().is_empty() {
                current.tail.push_back(std::mem::take(&mut current.partial));
            }
            for line in &current.tail {
                println!("    {line}");
            }
            if let Some(log) = self.step_log(step) {
                println!("    full output: {}", log.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_one_short_line() {
        assert_eq!(
            hint("  STEP 2/5: RUN apt-get update  "),
            "STEP 2/5: RUN apt-get update"
        );
        let long = "x".repeat(200);
        assert_eq!(hint(&long).chars().count(), HINT_CHARS + 1);
        assert_eq!(
            hint("é".repeat(71).as_str()).chars().count(),
            HINT_CHARS + 1
        );
    }

    #[test]
    fn output_is_masked_and_kept_as_the_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let observer = ProgressObserver::new(Masker::default(), dir.path());
        observer.secrets_discovered(&["hunter2".to_string()]);
        observer.step_started(Step::Build);
        observer.output(Step::Build, b"one\npassword hunter2\npart");
        let guard = observer.lock();
        let current = guard.as_ref().expect("a running step");
        assert_eq!(current.tail.len(), 2);
        assert!(!current.tail[1].contains("hunter2"), "{:?}", current.tail);
        assert_eq!(current.partial, "part");
        assert_eq!(current.first.as_deref(), Some("one"));
    }
}
