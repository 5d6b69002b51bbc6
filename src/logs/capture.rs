//! Capture of one job's output: a folder per job holding `00-config.txt`
//! (versions and effective configuration), one text file per step
//! (UTC-timestamped lines, masked, size-capped) and `job.json` with the
//! request, step timings and outcome. Build and test output is data, so it
//! goes here and not to tracing.
//!
//! Each job has its own masker, which grows when the executor reports
//! secrets learned at run time.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tracing::warn;

use super::mask::Masker;
use super::record::{artifact_file_name, JobRecord, StepRecord, JOB_SUMMARY_FILE};
use crate::executor::{StepObserver, StepResult};
use crate::model::{JobId, JobOutcome, JobRequest, Step, MAX_DESCRIPTION_CHARS};
use crate::sanity::SuiteResults;

/// A runaway step cannot fill the disk: past this, the middle of its output
/// is cut (marked in the file), keeping the head and the tail, where a
/// test suite prints its summary.
pub const MAX_STEP_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// An unfinished line (progress dots) is written after this long without
/// its newline, so the log and the live view show it while it grows.
pub const PARTIAL_LINE_DELAY: Duration = Duration::from_secs(1);

/// The effective configuration and versions, first in the folder.
pub const CONTEXT_FILE: &str = "00-config.txt";

struct OpenStep {
    step: Step,
    file: File,
    name: String,
    started_at: String,
    written: u64,
    dropped: u64,
    /// Bytes of an unfinished line, held so a secret split across two
    /// chunks is still masked whole, until [`PARTIAL_LINE_DELAY`] passes.
    partial: Vec<u8>,
    partial_since: Option<Instant>,
    /// File offset where the head (half the cap) ends, once reached.
    head_end: Option<u64>,
    /// The lines after the head, newest last, at most half the cap: the
    /// tail kept when the step outgrows the cap.
    tail: VecDeque<String>,
    tail_bytes: u64,
}

struct State {
    current: Option<OpenStep>,
    steps: Vec<StepRecord>,
    sanity: Option<SuiteResults>,
    artifacts: Vec<String>,
    facts: BTreeMap<String, String>,
}

/// Writes one job's logs; implements [`StepObserver`] for the executor.
///
/// Lock order: `state` before `masker`.
pub struct JobLog {
    dir: PathBuf,
    id: JobId,
    request: JobRequest,
    started_at: String,
    has_context: bool,
    /// This job's own masker: the store's secrets plus those the job
    /// discovers (a driver config made by a script).
    masker: Arc<RwLock<Masker>>,
    /// Set when secrets were learned mid-job: lines written before then are
    /// masked again when the job finishes.
    learned_secrets: AtomicBool,
    state: Mutex<State>,
}

impl JobLog {
    /// Creates `<jobs_dir>/<job id>/`, with the masked `context` (the
    /// effective configuration and versions) as [`CONTEXT_FILE`] when given.
    pub fn create(
        jobs_dir: &Path,
        id: &JobId,
        request: &JobRequest,
        masker: Masker,
        context: Option<&str>,
    ) -> io::Result<Self> {
        let dir = jobs_dir.join(id.as_str());
        fs::create_dir_all(&dir)?;
        if let Some(context) = context {
            fs::write(dir.join(CONTEXT_FILE), masker.mask(context))?;
        }
        let log = Self {
            dir,
            id: id.clone(),
            request: request.clone(),
            started_at: utc_now(),
            has_context: context.is_some(),
            masker: Arc::new(RwLock::new(masker)),
            learned_secrets: AtomicBool::new(false),
            state: Mutex::new(State {
                current: None,
                steps: Vec::new(),
                sanity: None,
                artifacts: Vec::new(),
                facts: BTreeMap::new(),
            }),
        };
        log.write_summary(None)?;
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn id(&self) -> &JobId {
        &self.id
    }

    pub fn request(&self) -> &JobRequest {
        &self.request
    }

    /// `text` with every secret this job knows masked.
    pub fn mask(&self, text: &str) -> String {
        self.read_masker().mask(text)
    }

    /// The job's masker itself, shared: the live log view masks with what
    /// the job has learned so far.
    pub(super) fn shared_masker(&self) -> Arc<RwLock<Masker>> {
        Arc::clone(&self.masker)
    }

    /// A copy of this job's masker as it is now (for the publish gate).
    pub fn masker(&self) -> Masker {
        self.read_masker().clone()
    }

    /// Closes the last step and records the outcome in `job.json`. When
    /// secrets were learned mid-job, every text file is masked again so a
    /// value printed before it was known does not survive.
    pub fn finish(&self, outcome: &JobOutcome) {
        self.close_current(None);
        if self.learned_secrets.load(Ordering::SeqCst) {
            if let Err(err) = self.remask_files() {
                warn!(job = %self.id, error = %err, "cannot mask the job's logs again");
            }
        }
        if let Err(err) = self.write_summary(Some(outcome)) {
            warn!(job = %self.id, error = %err, "cannot write the job summary");
        }
    }

    fn remask_files(&self) -> io::Result<()> {
        let masker = self.masker();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "txt") {
                let text = String::from_utf8_lossy(&fs::read(&path)?).into_owned();
                let masked = masker.mask(&text);
                if masked != text {
                    write_atomically(&path, masked.as_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// The recorded steps so far.
    pub fn steps(&self) -> Vec<StepRecord> {
        self.lock().steps.clone()
    }

    /// What the sanity suite's report said, if it wrote one.
    pub fn suite_results(&self) -> Option<SuiteResults> {
        self.lock().sanity.clone()
    }

    /// The final status's text: the outcome's, with the suite's counts
    /// when it passed.
    pub fn status_description(&self, outcome: &JobOutcome) -> String {
        status_description(outcome, self.suite_results().as_ref())
    }

    fn write_summary(&self, outcome: Option<&JobOutcome>) -> io::Result<()> {
        // One lock for the whole read: status_description() locks too.
        let (steps, sanity, artifacts, facts) = {
            let state = self.lock();
            (
                state.steps.clone(),
                state.sanity.clone(),
                state.artifacts.clone(),
                state.facts.clone(),
            )
        };
        let description = outcome.map(|o| status_description(o, sanity.as_ref()));
        let record = JobRecord {
            id: self.id.clone(),
            request: self.request.clone(),
            started_at: self.started_at.clone(),
            finished_at: outcome.map(|_| utc_now()),
            context_file: self.has_context.then(|| CONTEXT_FILE.to_string()),
            steps,
            outcome: outcome.cloned(),
            description,
            sanity,
            artifacts,
            facts,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
        let json = self.mask(&String::from_utf8_lossy(&json));
        write_atomically(&self.dir.join(JOB_SUMMARY_FILE), json.as_bytes())
    }

    fn open_step(&self, step: Step) -> io::Result<OpenStep> {
        let index = self.lock().steps.len() + 1;
        let name = format!("{index:02}-{step}.txt");
        let file = File::create(self.dir.join(&name))?;
        Ok(OpenStep {
            step,
            file,
            name,
            started_at: utc_now(),
            written: 0,
            dropped: 0,
            partial: Vec::new(),
            partial_since: None,
            head_end: None,
            tail: VecDeque::new(),
            tail_bytes: 0,
        })
    }

    fn close_current(&self, result: Option<&StepResult>) {
        let mut state = self.lock();
        let Some(mut open) = state.current.take() else {
            return;
        };
        let rest = std::mem::take(&mut open.partial);
        if !rest.is_empty() {
            self.write_line(&mut open, &rest);
        }
        if open.dropped > 0 {
            if let Err(err) = write_head_and_tail(&mut open) {
                warn!(job = %self.id, error = %err, "cannot write the step log's tail");
            }
        }
        let masker = self.read_masker();
        if let Some(result) = result {
            let footer = format!(
                "{} | [ember-ci: step {} ended, exit code {}, {:.1} s{}]\n",
                utc_now(),
                open.step,
                result
                    .exit_code
                    .map_or_else(|| "none".to_string(), |c| c.to_string()),
                result.duration.as_secs_f64(),
                result
                    .note
                    .as_deref()
                    .map(|n| format!(", {}", masker.mask(n)))
                    .unwrap_or_default(),
            );
            let _ = open.file.write_all(footer.as_bytes());
        }
        state.steps.push(StepRecord {
            step: open.step,
            file: open.name.clone(),
            started_at: open.started_at.clone(),
            exit_code: result.and_then(|r| r.exit_code),
            duration_ms: result.map_or(0, |r| r.duration.as_millis()),
            note: result.and_then(|r| r.note.as_deref().map(|n| masker.mask(n))),
            bytes: open.written,
        });
    }

    fn write_line(&self, open: &mut OpenStep, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        let masked = format!("{} | {}\n", utc_now(), self.mask(text));
        let size = masked.len() as u64;
        if open.head_end.is_some() {
            // Past the head: every line is a tail candidate.
            open.tail.push_back(masked.clone());
            open.tail_bytes += size;
            while open.tail_bytes > MAX_STEP_LOG_BYTES / 2 {
                let Some(old) = open.tail.pop_front() else {
                    break;
                };
                open.tail_bytes -= old.len() as u64;
            }
        }
        if open.written + size > MAX_STEP_LOG_BYTES {
            // The file is full; the tail is written when the step closes.
            open.dropped += size;
            return;
        }
        match open.file.write_all(masked.as_bytes()) {
            Ok(()) => open.written += size,
            Err(err) => {
                open.dropped += size;
                warn!(job = %self.id, error = %err, "cannot write step log");
            }
        }
        if open.head_end.is_none() && open.written >= MAX_STEP_LOG_BYTES / 2 {
            open.head_end = Some(open.written);
        }
    }

    /// Writes the held unfinished line of `step` when it waited longer than
    /// [`PARTIAL_LINE_DELAY`]; the rest of the line follows as a new one.
    fn write_waiting_partial_line(&self, step: Step) {
        let mut state = self.lock();
        let Some(open) = state.current.as_mut().filter(|o| o.step == step) else {
            return;
        };
        if open
            .partial_since
            .is_some_and(|since| since.elapsed() >= PARTIAL_LINE_DELAY)
        {
            let line = std::mem::take(&mut open.partial);
            open.partial_since = None;
            self.write_line(open, &line);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("job log lock poisoned")
    }

    fn read_masker(&self) -> std::sync::RwLockReadGuard<'_, Masker> {
        self.masker.read().expect("job masker lock poisoned")
    }
}

impl StepObserver for JobLog {
    fn step_started(&self, step: Step) {
        self.close_current(None);
        match self.open_step(step) {
            Ok(open) => self.lock().current = Some(open),
            Err(err) => warn!(job = %self.id, %step, error = %err, "cannot open step log"),
        }
    }

    fn output(&self, step: Step, chunk: &[u8]) {
        let mut state = self.lock();
        let Some(open) = state.current.as_mut().filter(|o| o.step == step) else {
            return;
        };
        open.partial.extend_from_slice(chunk);
        while let Some(end) = open.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = open.partial.drain(..=end).collect();
            self.write_line(open, &line);
        }
        // Bound the held partial line too: a stream without newlines is cut.
        if open.partial.len() as u64 > MAX_STEP_LOG_BYTES / 4 {
            let line = std::mem::take(&mut open.partial);
            self.write_line(open, &line);
        }
        if open.partial.is_empty() {
            open.partial_since = None;
        } else if open.partial_since.is_none() {
            open.partial_since = Some(Instant::now());
        }
    }

    fn flush_partial_line(&self, step: Step) {
        self.write_waiting_partial_line(step);
    }

    fn step_finished(&self, step: Step, result: &StepResult) {
        let is_current = self.lock().current.as_ref().is_some_and(|o| o.step == step);
        if is_current {
            self.close_current(Some(result));
        }
        if let Err(err) = self.write_summary(None) {
            warn!(job = %self.id, error = %err, "cannot update the job summary");
        }
    }

    fn artifact(&self, name: &str, content: &[u8]) {
        // A plain name only: the folder is flat and published as is.
        let safe = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !safe {
            warn!(job = %self.id, name, "artifact with an unusable name not kept");
            return;
        }
        let file = artifact_file_name(name);
        let cap = usize::try_from(MAX_STEP_LOG_BYTES).unwrap_or(usize::MAX);
        let text = String::from_utf8_lossy(&content[..content.len().min(cap)]);
        match fs::write(self.dir.join(&file), self.mask(&text)) {
            Ok(()) => self.lock().artifacts.push(file),
            Err(err) => warn!(job = %self.id, error = %err, "cannot keep artifact {name}"),
        }
    }

    fn suite_results(&self, results: &SuiteResults) {
        self.lock().sanity = Some(results.clone());
    }

    fn fact(&self, name: &str, value: &str) {
        self.lock()
            .facts
            .insert(name.to_string(), value.to_string());
        if !self.has_context {
            return;
        }
        let path = self.dir.join(CONTEXT_FILE);
        let updated = fs::read_to_string(&path)
            .map(|text| with_version_line(&text, name, value))
            .and_then(|text| fs::write(&path, self.mask(&text)));
        if let Err(err) = updated {
            warn!(job = %self.id, name, error = %err, "cannot record a version in the context file");
        }
    }

    fn secrets_discovered(&self, values: &[String]) {
        let mut masker = self.masker.write().expect("job masker lock poisoned");
        let before = masker.len();
        masker.add(values);
        if masker.len() > before {
            self.learned_secrets.store(true, Ordering::SeqCst);
        }
    }
}

fn status_description(outcome: &JobOutcome, results: Option<&SuiteResults>) -> String {
    match (outcome, results) {
        (JobOutcome::Success, Some(results)) => results.summary(MAX_DESCRIPTION_CHARS),
        _ => outcome.description(),
    }
}

/// Cuts the middle of an over-long step log: the file keeps its head, a
/// marker saying how much was cut, then the tail lines.
fn write_head_and_tail(open: &mut OpenStep) -> io::Result<()> {
    let head_end = open.head_end.unwrap_or(open.written);
    let total = open.written + open.dropped;
    let cut = total.saturating_sub(head_end + open.tail_bytes);
    open.file.set_len(head_end)?;
    open.file.seek(SeekFrom::Start(head_end))?;
    let note = format!(
        "[ember-ci: log over {MAX_STEP_LOG_BYTES} bytes; {cut} bytes cut from the middle, the head and the tail kept]\n"
    );
    open.file.write_all(note.as_bytes())?;
    for line in &open.tail {
        open.file.write_all(line.as_bytes())?;
    }
    open.written = head_end + open.tail_bytes;
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

/// Now in UTC, RFC 3339 to the second.
pub fn utc_now() -> String {
    format_utc(SystemTime::now())
}

pub fn format_utc(at: SystemTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from(at)
        .format(&format)
        .unwrap_or_else(|_| "unknown-time".to_string())
}

/// `context` with the line for `name` in its leading `versions` block set
/// to `value` (added at the block's end when it has none).
fn with_version_line(context: &str, name: &str, value: &str) -> String {
    let line = format!("  {name:<17}{value}");
    let mut lines: Vec<String> = context.lines().map(str::to_string).collect();
    if lines.first().map(String::as_str) != Some("versions") {
        return context.to_string();
    }
    let block_end = lines
        .iter()
        .position(|l| l.is_empty())
        .unwrap_or(lines.len());
    let existing = lines[1..block_end]
        .iter()
        .position(|l| l.trim_start().split("  ").next() == Some(name));
    match existing {
        Some(i) => lines[i + 1] = line,
        None => lines.insert(block_end, line),
    }
    let mut text = lines.join("\n");
    if context.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_found_while_the_job_ran_replaces_or_joins_the_versions_block() {
        let context = "versions\n  ember-ci         0.1.0\n  csi-sanity       v5.3.1 (commit a)\n\nconfig\n  csi-sanity x\n";
        let replaced = with_version_line(
            context,
            "csi-sanity",
            "v0.3.5 (commit b), for CSI spec v0.3",
        );
        assert_eq!(
            replaced,
            "versions\n  ember-ci         0.1.0\n  csi-sanity       v0.3.5 (commit b), for CSI spec v0.3\n\nconfig\n  csi-sanity x\n"
        );
        let added = with_version_line(&replaced, "iscsid", "running");
        assert!(added.contains("for CSI spec v0.3\n  iscsid           running\n\nconfig"));
        assert_eq!(with_version_line("no block\n", "x", "y"), "no block\n");
    }
}
