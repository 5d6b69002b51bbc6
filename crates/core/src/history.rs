//! A backend's history from its jobs' results: the specs that failed
//! recently, the specs that flipped on one commit (flaky), and the pass
//! rate over a window. Pure: the journal supplies the rows, the web UI and
//! the logs branch render the summary.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

/// How far back the summary looks.
pub const HISTORY_DAYS: u64 = 30;
/// The most recent jobs listed with their results.
pub const RECENT_JOBS: usize = 20;

/// One finished job of a backend, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobResult {
    pub id: String,
    pub pr: u64,
    pub sha: String,
    /// `success`, `failure` or `error`.
    pub result: String,
    pub description: String,
    /// Milliseconds since the Unix epoch.
    pub finished_at_ms: i64,
    /// The suite's counts, when it wrote a report.
    pub specs: Option<SpecCounts>,
    /// Specs that did not pass (short names), when it wrote a report.
    pub failed_specs: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpecCounts {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// A spec that failed in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailingSpec {
    pub spec: String,
    /// Jobs it failed in.
    pub failures: usize,
    /// Jobs with a report it did not fail in.
    pub passes: usize,
    pub last_failed_job: String,
    pub last_failed_at_ms: i64,
}

/// A spec that both failed and passed on one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlakySpec {
    pub spec: String,
    pub sha: String,
    pub failures: usize,
    pub passes: usize,
}

/// What the history page, `/api/backends/<name>/specs` and the logs
/// branch's summary show for one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendHistory {
    pub backend: String,
    pub window_days: u64,
    /// Jobs with a result in the window.
    pub jobs: usize,
    pub successes: usize,
    /// `successes / jobs`, None without jobs.
    pub pass_rate: Option<f64>,
    /// Newest first, at most [`RECENT_JOBS`].
    pub recent: Vec<JobResult>,
    /// Most failures first.
    pub failing: Vec<FailingSpec>,
    pub flaky: Vec<FlakySpec>,
}

impl BackendHistory {
    /// Summarises `jobs` (any order) finished at or after `since_ms`.
    pub fn summarise(backend: &str, mut jobs: Vec<JobResult>, since_ms: i64) -> Self {
        jobs.retain(|job| job.finished_at_ms >= since_ms);
        jobs.sort_by(|a, b| (b.finished_at_ms, &b.id).cmp(&(a.finished_at_ms, &a.id)));
        let successes = jobs.iter().filter(|job| job.result == "success").count();
        let reported: Vec<&JobResult> = jobs.iter().filter(|job| job.specs.is_some()).collect();

        let mut failing: BTreeMap<&str, FailingSpec> = BTreeMap::new();
        // Newest first, so the first failure seen is the last one.
        for job in &reported {
            for spec in unique(&job.failed_specs) {
                failing.entry(spec).or_insert_with(|| FailingSpec {
                    spec: spec.to_string(),
                    failures: 0,
                    passes: 0,
                    last_failed_job: job.id.clone(),
                    last_failed_at_ms: job.finished_at_ms,
                });
            }
        }
        for job in &reported {
            let failed: HashSet<&str> = unique(&job.failed_specs).collect();
            for (spec, entry) in &mut failing {
                if failed.contains(spec) {
                    entry.failures += 1;
                } else {
                    entry.passes += 1;
                }
            }
        }
        let mut failing: Vec<FailingSpec> = failing.into_values().collect();
        failing.sort_by(|a, b| {
            (b.failures, b.last_failed_at_ms).cmp(&(a.failures, a.last_failed_at_ms))
        });

        Self {
            backend: backend.to_string(),
            window_days: HISTORY_DAYS,
            jobs: jobs.len(),
            successes,
            pass_rate: (!jobs.is_empty()).then(|| successes as f64 / jobs.len() as f64),
            flaky: flaky_specs(&reported),
            recent: jobs.into_iter().take(RECENT_JOBS).collect(),
            failing,
        }
    }
}

/// Specs that failed in one report and passed in another of the same SHA.
fn flaky_specs(reported: &[&JobResult]) -> Vec<FlakySpec> {
    let mut by_sha: HashMap<&str, Vec<&JobResult>> = HashMap::new();
    for job in reported {
        by_sha.entry(job.sha.as_str()).or_default().push(job);
    }
    let mut flaky = Vec::new();
    for (sha, runs) in by_sha {
        if runs.len() < 2 {
            continue;
        }
        let specs: HashSet<&str> = runs.iter().flat_map(|r| unique(&r.failed_specs)).collect();
        for spec in specs {
            let failures = runs
                .iter()
                .filter(|r| r.failed_specs.iter().any(|s| s == spec))
                .count();
            if failures < runs.len() {
                flaky.push(FlakySpec {
                    spec: spec.to_string(),
                    sha: sha.to_string(),
                    failures,
                    passes: runs.len() - failures,
                });
            }
        }
    }
    flaky.sort_by(|a, b| (&a.spec, &a.sha).cmp(&(&b.spec, &b.sha)));
    flaky
}

fn unique(specs: &[String]) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    specs
        .iter()
        .map(String::as_str)
        .filter(move |spec| seen.insert(*spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, sha: &str, at: i64, failed: &[&str]) -> JobResult {
        JobResult {
            id: id.into(),
            pr: 1,
            sha: sha.into(),
            result: if failed.is_empty() {
                "success"
            } else {
                "failure"
            }
            .into(),
            description: String::new(),
            finished_at_ms: at,
            specs: Some(SpecCounts {
                passed: 10,
                failed: failed.len() as u64,
                skipped: 0,
            }),
            failed_specs: failed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn failing_and_flaky_specs_and_the_pass_rate_come_from_the_window() {
        let mut error = job("e", "c", 35, &[]);
        error.result = "error".into();
        error.specs = None;
        let jobs = vec![
            job("old", "z", 5, &["Old"]),
            job("a1", "a", 10, &["Create"]),
            job("a2", "a", 20, &[]),
            job("b1", "b", 30, &["Create", "Delete"]),
            error,
        ];
        let history = BackendHistory::summarise("lvm", jobs, 10);
        assert_eq!(history.jobs, 4);
        assert_eq!(history.successes, 1);
        assert_eq!(history.pass_rate, Some(0.25));
        assert_eq!(
            history
                .recent
                .iter()
                .map(|j| j.id.as_str())
                .collect::<Vec<_>>(),
            ["e", "b1", "a2", "a1"]
        );
        let failing: Vec<(&str, usize, usize, &str)> = history
            .failing
            .iter()
            .map(|f| {
                (
                    f.spec.as_str(),
                    f.failures,
                    f.passes,
                    f.last_failed_job.as_str(),
                )
            })
            .collect();
        assert_eq!(failing, [("Create", 2, 1, "b1"), ("Delete", 1, 2, "b1")]);
        assert_eq!(
            history.flaky,
            [FlakySpec {
                spec: "Create".into(),
                sha: "a".into(),
                failures: 1,
                passes: 1
            }]
        );
    }
}
