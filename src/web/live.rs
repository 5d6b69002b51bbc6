//! `GET /jobs/<id>/live`: a job's step logs as server-sent events, read
//! from the step files while `logs::JobLog` writes them (already masked;
//! masked again here, as everything the UI shows).
//!
//! Events: `step` (`{"step", "file"}`) when a step's log begins, `log`
//! (lines of text) as they are written, `done` (`{"result",
//! "description"}`) once the job has a result, after its last line. The
//! stream starts at the newest step file (its last part only), so a page
//! opened mid-job shows the running step, not the whole history.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use warp::http::StatusCode;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use super::api::json_error;
use super::view::{job_detail, ShownState};
use super::Web;
use crate::model::{JobId, Step};

/// How often the files are looked at. Polling keeps this portable (no
/// inotify); a quarter second is live enough for a person reading along.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// At most this much of a step file is sent per tick, so one huge burst
/// does not become one huge event.
const MAX_READ_PER_TICK: u64 = 256 * 1024;
/// How much of the newest file a new stream starts with.
const FIRST_TAIL_BYTES: u64 = 64 * 1024;
/// Events buffered for a slow client before the reader waits.
const EVENT_BUFFER: usize = 16;
/// Open streams at once: each holds a socket and a polling task for as
/// long as its job runs.
pub const MAX_LIVE_STREAMS: usize = 32;

pub fn routes(web: Arc<Web>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let streams = Arc::new(tokio::sync::Semaphore::new(MAX_LIVE_STREAMS));
    warp::path!("jobs" / String / "live").and(warp::get()).map(
        move |id: String| match JobId::parse(&id)
            .ok()
            .filter(|id| job_detail(&web, id).is_some())
        {
            Some(id) => {
                let Ok(permit) = streams.clone().try_acquire_owned() else {
                    return json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many live log streams open; try again later",
                    );
                };
                let events = stream_job(web.clone(), id, permit);
                warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response()
            }
            None => json_error(StatusCode::NOT_FOUND, "no such job"),
        },
    )
}

/// The last `max_bytes` of a file (from a line start), for the page itself.
pub fn tail_of_file(path: &Path, max_bytes: u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = length.saturating_sub(max_bytes);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let from = if start > 0 {
        bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1)
    } else {
        0
    };
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

/// The permit is held by the following task: the stream counts until it ends.
fn stream_job(
    web: Arc<Web>,
    id: JobId,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> ReceiverStream<Result<Event, Infallible>> {
    let (sender, receiver) = mpsc::channel(EVENT_BUFFER);
    tokio::spawn(async move {
        follow_job(web, id, sender).await;
        drop(permit);
    });
    ReceiverStream::new(receiver)
}

#[derive(Serialize)]
struct StepBegan<'a> {
    step: &'a str,
    file: &'a str,
}

#[derive(Serialize)]
struct JobDone {
    result: String,
    description: Option<String>,
}

/// The step file being followed and how far it was sent.
struct Following {
    name: String,
    offset: u64,
}

/// Ends when the job has a result, the client went away, or the service
/// stops (an open stream would otherwise hold up its graceful shutdown).
async fn follow_job(web: Arc<Web>, id: JobId, sender: mpsc::Sender<Result<Event, Infallible>>) {
    let dir = web.job_dir(&id);
    let mut following: Option<Following> = None;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = web.context.shutdown.cancelled() => return,
            _ = sender.closed() => return,
            _ = ticker.tick() => {}
        }
        // The state is read before the files: once the job has a result its
        // logs are complete, so this round's reads get every last line.
        let done = finished(&web, &id);
        // The job's own masker: it knows the secrets the job reported so far.
        let masker = web.context.logs.job_masker(&id);
        let mut events = read_new_output(&masker, &dir, &mut following, done.is_some());
        // `done` only after the last line (a long tail takes several rounds).
        let done = done.filter(|_| is_read_through(&dir, &following));
        let is_done = done.is_some();
        events.extend(done.map(done_event));
        for event in events {
            // A client that stops reading must not hold the task past shutdown.
            tokio::select! {
                sent = sender.send(Ok(event)) => if sent.is_err() { return },
                _ = web.context.shutdown.cancelled() => return,
            }
        }
        if is_done {
            return;
        }
    }
}

/// The job's result once it has one (`interrupted` for a job left without).
fn finished(web: &Web, id: &JobId) -> Option<JobDone> {
    let job = job_detail(web, id)?.job;
    match job.state {
        ShownState::Queued | ShownState::Running => None,
        ShownState::Finished | ShownState::Interrupted => Some(JobDone {
            result: job.result.unwrap_or(job.state.as_str()).to_string(),
            description: job.description,
        }),
    }
}

/// True when nothing more is left to send (all files read to their end).
fn is_read_through(dir: &Path, following: &Option<Following>) -> bool {
    let files = step_files(dir);
    match following {
        None => files.is_empty(),
        Some(f) => {
            files.last() == Some(&f.name)
                && std::fs::metadata(dir.join(&f.name)).map_or(true, |m| m.len() <= f.offset)
        }
    }
}

fn done_event(done: JobDone) -> Event {
    Event::default()
        .event("done")
        .json_data(&done)
        .unwrap_or_else(|_| Event::default().event("done").data("{}"))
}

/// Events for what was written since the last call: `step` when a newer
/// file is taken up, `log` for complete lines. With `flush`, partial last
/// lines are sent too and every newer file is read through.
fn read_new_output(
    masker: &crate::logs::Masker,
    dir: &Path,
    following: &mut Option<Following>,
    flush: bool,
) -> Vec<Event> {
    let files = step_files(dir);
    let mut events = Vec::new();
    if following.is_none() {
        let Some(newest) = files.last() else {
            return events;
        };
        let length = std::fs::metadata(dir.join(newest)).map_or(0, |m| m.len());
        let start =
            line_start_at_or_after(&dir.join(newest), length.saturating_sub(FIRST_TAIL_BYTES));
        events.push(step_event(newest));
        *following = Some(Following {
            name: newest.clone(),
            offset: start,
        });
    }
    loop {
        let Some(current) = following.as_mut() else {
            return events;
        };
        let next = files.iter().find(|name| **name > current.name).cloned();
        // A later file exists: this one is closed, so its tail is complete.
        let is_closed = flush || next.is_some();
        let (text, read_to) = read_lines(&dir.join(&current.name), current.offset, is_closed);
        if !text.is_empty() {
            events.push(
                Event::default()
                    .event("log")
                    .data(masker.mask(&text).replace('\r', "\n")),
            );
        }
        let reached_end =
            std::fs::metadata(dir.join(&current.name)).map_or(true, |m| m.len() <= read_to);
        current.offset = read_to;
        match next {
            Some(next) if reached_end => {
                events.push(step_event(&next));
                *following = Some(Following {
                    name: next,
                    offset: 0,
                });
            }
            _ => return events,
        }
    }
}

fn step_event(file: &str) -> Event {
    let step = step_of_file(file);
    Event::default()
        .event("step")
        .json_data(StepBegan { step, file })
        .unwrap_or_else(|_| Event::default().event("step").data("{}"))
}

/// `03-pre-run.txt` -> `pre-run`.
fn step_of_file(file: &str) -> &str {
    let stem = file.strip_suffix(".txt").unwrap_or(file);
    stem.split_once('-').map_or(stem, |(_, step)| step)
}

/// The job's step logs (`NN-<step>.txt`), in the order they were opened.
fn step_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_step_file(name))
        .collect();
    names.sort();
    names
}

/// `NN-<step>.txt` for a real step (not `00-config.txt`, the job's context).
fn is_step_file(name: &str) -> bool {
    let bytes = name.as_bytes();
    name.ends_with(".txt")
        && bytes.len() > 7
        && bytes[..2].iter().all(u8::is_ascii_digit)
        && bytes[2] == b'-'
        && Step::ALL
            .iter()
            .any(|step| step.name() == step_of_file(name))
}

/// Text from `offset`: whole lines only unless `take_partial` (at most
/// [`MAX_READ_PER_TICK`] bytes), without the last newline; and the offset
/// after what was taken.
fn read_lines(path: &Path, offset: u64, take_partial: bool) -> (String, u64) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return (String::new(), offset);
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err()
        || file
            .by_ref()
            .take(MAX_READ_PER_TICK)
            .read_to_end(&mut bytes)
            .is_err()
    {
        return (String::new(), offset);
    }
    // A line longer than one read is sent in parts rather than never.
    let is_full_read = bytes.len() as u64 == MAX_READ_PER_TICK;
    let taken = match bytes.iter().rposition(|b| *b == b'\n') {
        _ if take_partial || is_full_read => bytes.len(),
        Some(last_newline) => last_newline + 1,
        None => 0,
    };
    let text = String::from_utf8_lossy(&bytes[..taken]);
    (
        text.strip_suffix('\n').unwrap_or(&text).to_string(),
        offset + taken as u64,
    )
}

/// The first line start at or after `offset` (0 stays 0), so a stream
/// that starts mid-file does not begin with half a line.
fn line_start_at_or_after(path: &Path, offset: u64) -> u64 {
    if offset == 0 {
        return 0;
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return offset;
    };
    // Read from the byte before `offset`: if it is a newline, `offset` is
    // already a line start.
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(offset - 1)).is_err()
        || file
            .take(MAX_READ_PER_TICK)
            .read_to_end(&mut bytes)
            .is_err()
    {
        return offset;
    }
    let skip = bytes
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    offset - 1 + skip as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_come_from_log_file_names() {
        assert_eq!(step_of_file("03-pre-run.txt"), "pre-run");
        assert!(is_step_file("10-cleanup.txt"));
        assert!(!is_step_file("job.json"));
        assert!(!is_step_file("x1-fetch.txt"));
        assert!(!is_step_file("00-config.txt"));
    }

    #[test]
    fn only_whole_lines_are_taken_unless_flushing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("01-fetch.txt");
        std::fs::write(&path, "one\ntwo\nthr").expect("writing");
        assert_eq!(read_lines(&path, 0, false), ("one\ntwo".to_string(), 8));
        assert_eq!(read_lines(&path, 8, false), (String::new(), 8));
        assert_eq!(read_lines(&path, 8, true), ("thr".to_string(), 11));
        assert_eq!(line_start_at_or_after(&path, 5), 8);
        assert_eq!(line_start_at_or_after(&path, 4), 4);
        assert_eq!(tail_of_file(&path, 6), "thr");
    }
}
