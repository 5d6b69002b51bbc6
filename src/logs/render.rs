//! Static HTML for one job folder: `index.html` (what ran, the result, one
//! row per step with its duration and links) and one page per step with
//! ANSI colours kept, beside the raw `.txt` files. Pages need no JavaScript
//! and no server: they are read from a git branch served as static files.
//!
//! Rendering reads only `job.json` and the step files, which capture has
//! already masked; it adds nothing secret.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::record::{JobRecord, StepRecord};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::model::{JobOutcome, RepoName, Step};
use crate::sanity::SUITE_NAME;

/// The job's entry page inside its folder.
pub const INDEX_FILE: &str = "index.html";

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Dark page, since ansi-to-html's colours assume light text on dark.
const STYLE: &str = "body{background:#1e1e1e;color:#ddd;font-family:sans-serif;margin:1.5em}\
a{color:#6cb6ff}table{border-collapse:collapse}td,th{border:1px solid #444;padding:.3em .6em;text-align:left}\
pre{font-family:monospace;white-space:pre-wrap;word-break:break-all}\
.success{color:#5c5}.failure,.error{color:#f66}.cancelled{color:#cc5}.decided{background:#402020}";

/// Writes `index.html` and one `NN-step.html` per step into `dir`, from its
/// `job.json`. `repo` is where the PR lives, for its link.
pub fn render_job(dir: &Path, repo: Option<&RepoName>) -> Result<(), RenderError> {
    let record = JobRecord::read(dir).map_err(|source| RenderError::Read {
        path: dir.join(super::record::JOB_SUMMARY_FILE),
        source,
    })?;
    for step in &record.steps {
        let page = step_page(dir, &record, step)?;
        write(&dir.join(step_page_name(step)), &page)?;
    }
    write(&dir.join(INDEX_FILE), &index_page(&record, repo))
}

/// `NN-step.html` for `NN-step.txt`.
pub fn step_page_name(step: &StepRecord) -> String {
    Path::new(&step.file)
        .with_extension("html")
        .to_string_lossy()
        .into_owned()
}

fn index_page(record: &JobRecord, repo: Option<&RepoName>) -> String {
    let request = &record.request;
    let (result_class, result_word) = result_of(record.outcome.as_ref());
    let title = format!("PR #{} on {}: {result_word}", request.pr, request.backend);
    let mut body = format!("<h1>{}</h1>\n<table>\n", escape(&title));
    let pr = match repo {
        Some(repo) => format!(
            "<a href=\"https://github.com/{repo}/pull/{pr}\">{repo}#{pr}</a>",
            repo = escape(&repo.to_string()),
            pr = request.pr
        ),
        None => format!("#{}", request.pr),
    };
    let description = record.description.as_deref().unwrap_or("still running");
    let rows = [
        ("pull request", pr),
        (
            "head commit",
            format!("<code>{}</code>", escape(request.sha.as_str())),
        ),
        ("backend", escape(request.backend.as_str())),
        (
            "result",
            format!(
                "<span class=\"{result_class}\">{result_word}</span>: {}",
                escape(description)
            ),
        ),
        ("started (UTC)", escape(&record.started_at)),
        (
            "finished (UTC)",
            escape(record.finished_at.as_deref().unwrap_or("-")),
        ),
        ("job id", escape(record.id.as_str())),
    ];
    for (label, value) in rows {
        let _ = writeln!(body, "<tr><th>{label}</th><td>{value}</td></tr>");
    }
    body.push_str("</table>\n");
    if let Some(file) = &record.context_file {
        let _ = writeln!(
            body,
            "<p><a href=\"{0}\">Effective configuration and versions</a> ({0})</p>",
            escape(file)
        );
    }
    body.push_str(&results_section(record));
    body.push_str(
        "<h2>Steps</h2>\n<table>\n<tr><th>step</th><th>started (UTC)</th><th>duration</th>\
         <th>exit code</th><th>note</th><th>raw log</th></tr>\n",
    );
    let deciding = record.deciding_step();
    for step in &record.steps {
        let class = if Some(step.step) == deciding {
            " class=\"decided\""
        } else {
            ""
        };
        let _ = writeln!(
            body,
            "<tr{class}><td><a href=\"{page}\">{name}</a></td><td>{started}</td><td>{duration:.1} s</td>\
             <td>{exit}</td><td>{note}</td><td><a href=\"{raw}\">{raw}</a> ({size})</td></tr>",
            page = escape(&step_page_name(step)),
            name = step.step,
            started = escape(&step.started_at),
            duration = step.duration_ms as f64 / 1000.0,
            exit = step
                .exit_code
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
            note = escape(step.note.as_deref().unwrap_or("")),
            raw = escape(&step.file),
            size = human_size(step.bytes),
        );
    }
    body.push_str("</table>\n");
    page(&title, &body)
}

/// The suite's results, failures first (each linked to its text in the
/// sanity log), then the counts and the kept artifacts.
fn results_section(record: &JobRecord) -> String {
    let mut html = String::new();
    if let Some(results) = &record.sanity {
        let log_page = record
            .steps
            .iter()
            .find(|s| s.step == Step::Sanity)
            .map(step_page_name);
        let _ = writeln!(
            html,
            "<h2>{SUITE_NAME} results</h2>\n<table>\n<tr><th>spec</th><th>result</th><th>message</th></tr>"
        );
        for failure in &results.failures {
            let name = escape(&failure.name);
            let cell = match &log_page {
                // A text fragment: browsers scroll to the spec's first mention.
                Some(page) => format!(
                    "<a href=\"{}#:~:text={}\">{name}</a>",
                    escape(page),
                    utf8_percent_encode(failure.short_name(), FRAGMENT)
                ),
                None => name,
            };
            let _ = writeln!(
                html,
                "<tr class=\"decided\"><td>{cell}</td><td class=\"failure\">{state}</td><td>{message}</td></tr>",
                state = serde_json::to_value(failure.state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                message = escape(&failure.message),
            );
        }
        let _ = writeln!(
            html,
            "<tr><td>{} other specs</td><td class=\"success\">passed</td><td>{} skipped or pending</td></tr>\n</table>",
            results.passed, results.skipped
        );
    }
    if !record.artifacts.is_empty() {
        html.push_str("<p>Files the suite left in $ARTIFACTS_DIR:");
        for file in &record.artifacts {
            let _ = write!(html, " <a href=\"{0}\">{0}</a>", escape(file));
        }
        html.push_str("</p>\n");
    }
    html
}

/// What a text fragment must not contain raw.
const FRAGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b',')
    .add(b'-')
    .add(b'<')
    .add(b'>')
    .add(b'`');

fn step_page(dir: &Path, record: &JobRecord, step: &StepRecord) -> Result<String, RenderError> {
    let path = dir.join(&step.file);
    let bytes = fs::read(&path).map_err(|source| RenderError::Read { path, source })?;
    let text = String::from_utf8_lossy(&bytes);
    // A malformed escape sequence must not cost the page: show it plain.
    let html = ansi_to_html::convert(&text).unwrap_or_else(|_| escape(&text));
    let title = format!(
        "{}: PR #{} on {}",
        step.step, record.request.pr, record.request.backend
    );
    let body = format!(
        "<p><a href=\"{index}\">job index</a> | <a href=\"{raw}\">raw log</a> ({size}) | \
         exit code {exit} | {duration:.1} s</p>\n<h1>{heading}</h1>\n<pre>{html}</pre>\n",
        index = INDEX_FILE,
        raw = escape(&step.file),
        size = human_size(step.bytes),
        exit = step
            .exit_code
            .map_or_else(|| "-".to_string(), |c| c.to_string()),
        duration = step.duration_ms as f64 / 1000.0,
        heading = escape(&title),
    );
    Ok(page(&title, &body))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    )
}

fn result_of(outcome: Option<&JobOutcome>) -> (&'static str, &'static str) {
    match outcome {
        None => ("running", "running"),
        Some(JobOutcome::Success) => ("success", "success"),
        Some(JobOutcome::Failure { .. }) => ("failure", "failure"),
        Some(JobOutcome::Error { .. } | JobOutcome::TimedOut { .. }) => ("error", "error"),
        Some(JobOutcome::Cancelled { .. }) => ("cancelled", "cancelled"),
    }
}

fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let value = bytes as f64;
    if value < KIB {
        format!("{bytes} B")
    } else if value < KIB * KIB {
        format!("{:.1} KiB", value / KIB)
    } else {
        format!("{:.1} MiB", value / (KIB * KIB))
    }
}

fn write(path: &Path, text: &str) -> Result<(), RenderError> {
    fs::write(path, text).map_err(|source| RenderError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackendName, CommitSha, JobId, JobRequest, PrNumber, Step};

    fn record(outcome: JobOutcome) -> JobRecord {
        JobRecord {
            id: JobId::parse("20300101000000-abcdef").expect("id"),
            request: JobRequest {
                pr: PrNumber::new(130).expect("pr"),
                sha: CommitSha::new(&"a".repeat(40)).expect("sha"),
                backend: BackendName::new("demo").expect("backend"),
            },
            started_at: "2030-01-01T00:00:00Z".into(),
            finished_at: Some("2030-01-01T00:01:00Z".into()),
            context_file: Some("00-config.txt".into()),
            steps: vec![StepRecord {
                step: Step::WaitPlugin,
                file: "01-wait-plugin.txt".into(),
                started_at: "2030-01-01T00:00:10Z".into(),
                exit_code: Some(2),
                duration_ms: 1500,
                note: Some("plugin exited with code 2".into()),
                bytes: 2048,
            }],
            description: Some(outcome.description()),
            sanity: None,
            artifacts: Vec::new(),
            facts: Default::default(),
            outcome: Some(outcome),
        }
    }

    #[test]
    fn index_names_the_failing_step_and_links_pr_and_files() {
        let repo = RepoName::new("embercsi/ember-csi").expect("repo");
        let html = index_page(
            &record(JobOutcome::Failure {
                step: Step::WaitPlugin,
                reason: "plugin exited with code 2".into(),
            }),
            Some(&repo),
        );
        assert!(html.contains("https://github.com/embercsi/ember-csi/pull/130"));
        assert!(html.contains("failed at wait-plugin: plugin exited with code 2"));
        assert!(html
            .contains("<tr class=\"decided\"><td><a href=\"01-wait-plugin.html\">wait-plugin</a>"));
        assert!(html.contains("<a href=\"01-wait-plugin.txt\">01-wait-plugin.txt</a> (2.0 KiB)"));
        assert!(html.contains("<td>1.5 s</td>"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn step_page_keeps_colours_and_escapes_markup() {
        let dir = tempfile::tempdir().expect("temp dir");
        let record = record(JobOutcome::Success);
        fs::write(
            dir.path().join("01-wait-plugin.txt"),
            "\x1b[31mred <b>not bold</b>\x1b[0m\n",
        )
        .expect("write");
        let html = step_page(dir.path(), &record, &record.steps[0]).expect("page");
        assert!(
            html.contains(
                "<span style='color:var(--red,#a00)'>red &lt;b&gt;not bold&lt;/b&gt;</span>"
            ),
            "{html}"
        );
    }
}
