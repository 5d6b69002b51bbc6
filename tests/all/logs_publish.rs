//! Job logs published to a git branch, with real git and a local bare repo
//! as LOGS_REPO: the demo jobs end to end (the service in process, the real
//! executor on real Podman, fake GitHub for statuses), secret masking checked over every
//! object of the branch's history, the publish gate, push retries, and
//! rotation with a shifted clock.
//!
//! The end-to-end case needs root Podman with runc and
//! docker.io/library/debian:bookworm (through scripts/local-registry.sh).

use ember_ci_test_kit::executor_env;
use ember_ci_test_kit::fake_github;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ember_ci::config::{Config, Secret};
use ember_ci::executor::{CancelSignal, Executor, Job, StepObserver, StepResult};
use ember_ci::github::Reporter;
use ember_ci::logs::{
    JobLog, LogStore, Masker, Publication, PublishTarget, Publisher, PushRetry, RetentionPolicy,
};
use ember_ci::model::{
    BackendName, CommitSha, JobId, JobOutcome, JobRequest, PrNumber, RepoName, Step,
};
use ember_ci::scheduler::{Enqueued, JobRunner};
use ember_ci::service::Parts;
use executor_env::{replace_dockerfile_cmd, run_ok, start_executor, DemoEnv, GENEROUS};
use fake_github::FakeGitHub;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokio_util::sync::CancellationToken;

const BRANCH: &str = "gh-pages";
const LOGS_URL: &str = "https://logs.example/ember-ci";
const LOCAL_URL: &str = "http://127.0.0.1:8010";

/// Secrets of the end-to-end case. The password and API token exist only in
/// a driver-config script (learned at run time); the label is an ordinary
/// driver-config value listed in SECRETS.
const PASSWORD: &str = "runtime p@ss/word+1";
const API_TOKEN: &str = "tok-9f8e7d6c5b4a";
const LABEL_SECRET: &str = "label-secret-77&x";
/// A demo plugin that prints its backend config's values before serving.
const LEAKY_PR: u64 = 132;
/// This test's own worker slot: its own image-store volume and image tag,
/// so jobs of other test files on this host never share them.
const E2E_SLOT: usize = 941;

fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(Command::new("git").arg("-C").arg(dir).args(args))
}

fn bare_repo(parent: &Path, name: &str) -> PathBuf {
    let path = parent.join(name);
    run_ok(
        Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&path),
    );
    path
}

/// Job folders (`backend/folder`) at the branch tip.
fn branch_folders(bare: &Path) -> BTreeSet<String> {
    git(bare, &["ls-tree", "-r", "-d", "--name-only", BRANCH])
        .lines()
        .filter(|path| path.matches('/').count() == 1)
        .map(str::to_string)
        .collect()
}

fn branch_file(bare: &Path, path: &str) -> String {
    git(bare, &["show", &format!("{BRANCH}:{path}")])
}

fn branch_has(bare: &Path, path: &str) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["cat-file", "-e", &format!("{BRANCH}:{path}")])
        .status()
        .expect("running git cat-file")
        .success()
}

fn commit_count(bare: &Path) -> usize {
    git(bare, &["rev-list", "--count", BRANCH])
        .trim()
        .parse()
        .expect("a count")
}

/// The content of every blob reachable from any ref, all history included.
fn every_blob(bare: &Path) -> Vec<Vec<u8>> {
    let objects = git(bare, &["rev-list", "--all", "--objects"]);
    let ids: String = objects
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|id| format!("{id}\n"))
        .collect();
    let mut child = Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running git cat-file --batch");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(ids.as_bytes()));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut out)
        .expect("reading objects");
    writer.join().expect("writer thread").expect("writing ids");
    assert!(child.wait().expect("git exits").success());
    let mut blobs = Vec::new();
    let mut rest = out.as_slice();
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let header = String::from_utf8_lossy(&rest[..end]).into_owned();
        let fields: Vec<&str> = header.split_whitespace().collect();
        let size: usize = fields[2].parse().expect("object size");
        let body = &rest[end + 1..end + 1 + size];
        if fields[1] == "blob" {
            blobs.push(body.to_vec());
        }
        rest = &rest[end + 1 + size + 1..];
    }
    assert!(!blobs.is_empty(), "no blobs found in {}", bare.display());
    blobs
}

/// A secret as plain text, base64, URL-encoded and HTML-escaped.
fn forms_of(secret: &str) -> Vec<String> {
    vec![
        secret.to_string(),
        STANDARD.encode(secret),
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
        secret.replace('&', "&amp;"),
    ]
}

fn assert_no_blob_contains(bare: &Path, secrets: &[&str]) {
    let blobs = every_blob(bare);
    for secret in secrets {
        for form in forms_of(secret) {
            let hits = blobs
                .iter()
                .filter(|blob| String::from_utf8_lossy(blob).contains(&form))
                .count();
            assert_eq!(hits, 0, "{hits} blobs contain a form of a secret: {form:?}");
        }
    }
}

/// Every relative link of `page` (a file on the branch) names a file that
/// exists on the branch.
fn assert_links_resolve(bare: &Path, folder: &str, page: &str) -> Vec<String> {
    let html = branch_file(bare, &format!("{folder}/{page}"));
    let links: Vec<String> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|link| !link.starts_with("https://"))
        .map(str::to_string)
        .collect();
    for link in &links {
        assert!(
            branch_has(bare, &format!("{folder}/{link}")),
            "{folder}/{page} links to {link}, which is not on the branch"
        );
    }
    links
}

/// The real executor, always in this test's own slot.
struct OwnSlotExecutor(Executor);

#[async_trait]
impl JobRunner for OwnSlotExecutor {
    async fn run(
        &self,
        job: &Job,
        observer: &dyn StepObserver,
        cancel: CancelSignal,
    ) -> JobOutcome {
        let job = Job {
            slot: E2E_SLOT,
            ..job.clone()
        };
        self.0.run(&job, observer, cancel).await
    }
}

/// Pushes refs/pull/132/head: the demo plugin started through a script that
/// prints every value of its backend config plain, base64 and URL-encoded.
fn push_leaky_pr(env: &mut DemoEnv) -> CommitSha {
    env.push_pr(LEAKY_PR, "Plugin that prints its secrets", |work| {
        std::fs::write(work.join("leak.sh"), LEAK_SCRIPT).expect("write leak.sh");
        replace_dockerfile_cmd(
            work,
            "COPY leak.sh /usr/local/bin/leak.sh\nCMD [\"bash\", \"/usr/local/bin/leak.sh\"]",
        );
    })
}

/// Prints the password, API token and label of the backend config, each
/// plain, base64 and URL-encoded, then starts the demo plugin.
const LEAK_SCRIPT: &str = r#"#!/bin/bash
value() { printf %s "$X_CSI_BACKEND_CONFIG" | sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p"; }
urlencode() {
  local s=$1 out= c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in [a-zA-Z0-9]) out+=$c ;; *) printf -v c '%%%02X' "'$c"; out+=$c ;; esac
  done
  printf %s "$out"
}
for key in password api_token array_label; do
  v=$(value "$key")
  echo "leak $key plain: $v"
  echo "leak $key base64: $(printf %s "$v" | base64 -w0)"
  echo "leak $key url: $(urlencode "$v")"
done
exec perl /usr/local/bin/ember-csi-demo
"#;

fn request(pr: u64, sha: &CommitSha) -> JobRequest {
    JobRequest {
        pr: PrNumber::new(pr).expect("PR number"),
        sha: sha.clone(),
        backend: BackendName::new("demo").expect("backend name"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_jobs_publish_masked_logs_with_working_links_to_the_branch() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let mut env = DemoEnv::new();
    let leaky_sha = push_leaky_pr(&mut env);
    let github = FakeGitHub::start().await;
    let logs_repo = bare_repo(env.dir.path(), "logs.git");
    std::fs::write(
        env.config_dir.join("driver-config.sh"),
        format!(
            "DRIVER_CONFIG='{{\"name\": \"demo\", \"driver\": \"DemoDriver\", \"password\": \"{PASSWORD}\", \
             \"api_token\": \"{API_TOKEN}\", \"array_label\": \"{LABEL_SECRET}\"}}'\n"
        ),
    )
    .expect("write driver-config.sh");
    env.config(GENEROUS);
    let config_file = env.config_dir.join("config");
    let mut text = std::fs::read_to_string(&config_file).expect("config");
    text.push_str(&format!(
        "GH_TOKEN=\"{token}\"\nGH_API_URL=\"{api}\"\nGH_REPO=\"{repo}\"\n\
         DRIVER_CONFIG_1=\"driver-config.sh\"\nSECRETS=\"{LABEL_SECRET}\"\n\
         PRE_RUN_1='echo \"pre-run signs in with {token}\"'\n\
         LOGS_REPO=\"{logs}\"\nLOGS_BRANCH=\"{BRANCH}\"\nLOGS_URL=\"{LOGS_URL}\"\n",
        token = github.token(),
        api = github.url(),
        repo = github.repo(),
        logs = logs_repo.display(),
    ));
    std::fs::write(&config_file, text).expect("write config");
    let config = Arc::new(
        Config::load_with_env(&env.config_dir, &Default::default())
            .unwrap_or_else(|errors| panic!("test config is invalid:\n{errors}")),
    );

    // The whole service in process, with the real executor in this test's slot.
    let parts = Parts {
        ui_listener: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the UI's 127.0.0.1:0"),
        runner: Arc::new(OwnSlotExecutor(start_executor(config.clone()).await)),
        reporter: Arc::new(Reporter::from_config(&config.github).expect("reporter")),
        listener: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0"),
    };
    let shutdown = CancellationToken::new();
    let service = ember_ci::service::start((*config).clone(), parts, shutdown.clone())
        .await
        .expect("the service starts");
    let scheduler = service.scheduler().clone();
    let jobs = [
        (129, env.head(129)),
        (130, env.head(130)),
        (LEAKY_PR, leaky_sha),
    ];
    let mut ids = Vec::new();
    for (pr, sha) in &jobs {
        match scheduler.enqueue(request(*pr, sha)) {
            Enqueued::Queued(id) => ids.push(id),
            other => panic!("PR {pr} not queued: {other:?}"),
        }
    }
    let is_final = |state: &str| matches!(state, "success" | "failure" | "error");
    let shas: Vec<String> = jobs.iter().map(|(_, sha)| sha.to_string()).collect();
    github
        .wait_for(
            |state| {
                shas.iter()
                    .all(|sha| state.statuses_for(sha).iter().any(|s| is_final(&s.state)))
            },
            Duration::from_secs(1500),
        )
        .await
        .expect("three final statuses");
    shutdown.cancel();
    service.stopped().await.expect("the service stops");

    let mut folders = Vec::new();
    for ((pr, sha), id) in jobs.iter().zip(&ids) {
        let last = github.statuses_for(sha.as_str()).pop().expect("a status");
        let folder = format!("demo/{pr}-{}-{id}", sha.short());
        assert_eq!(
            last.target_url.as_deref(),
            Some(format!("{LOGS_URL}/{folder}/index.html").as_str()),
            "PR {pr}: {last:?}"
        );
        let expected = if *pr == 130 { "failure" } else { "success" };
        assert_eq!(last.state, expected, "PR {pr}: {last:?}");
        folders.push(folder);
    }
    assert_eq!(
        branch_folders(&logs_repo),
        folders.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(commit_count(&logs_repo), 3, "one commit per job");

    for folder in &folders {
        let links = assert_links_resolve(&logs_repo, folder, "index.html");
        assert!(links.iter().any(|l| l == "00-config.txt"), "{links:?}");
        for page in links.iter().filter(|l| l.ends_with(".html")) {
            assert_links_resolve(&logs_repo, folder, page);
        }
        let context = branch_file(&logs_repo, &format!("{folder}/00-config.txt"));
        assert!(context.contains("csi-sanity"), "{context}");
        assert!(context.contains(env!("CARGO_PKG_VERSION")), "{context}");
    }

    let ok_index = branch_file(&logs_repo, &format!("{}/index.html", folders[0]));
    assert!(ok_index.contains(&format!("https://github.com/{}/pull/129", github.repo())));
    assert!(ok_index.contains(jobs[0].1.as_str()), "full head SHA shown");
    let broken_index = branch_file(&logs_repo, &format!("{}/index.html", folders[1]));
    let failing_row = broken_index
        .lines()
        .find(|line| line.contains("class=\"decided\""))
        .unwrap_or_else(|| panic!("no failing step marked:\n{broken_index}"));
    assert!(
        failing_row.contains(">wait-plugin<") || failing_row.contains(">start-plugin<"),
        "{failing_row}"
    );
    assert!(broken_index.contains("failed at "), "{broken_index}");

    // The plugin really printed its secrets, so the scan below can fail.
    let leaky_cleanup = branch_file(&logs_repo, &format!("{}/10-cleanup.txt", folders[2]));
    for key in ["password", "api_token", "array_label"] {
        for form in ["plain", "base64", "url"] {
            assert!(
                leaky_cleanup.contains(&format!("leak {key} {form}: ***")),
                "{key} {form} not printed masked:\n{leaky_cleanup}"
            );
        }
    }
    // The command trace is kept, with the token masked.
    let pre_run = branch_file(&logs_repo, &format!("{}/03-pre-run.txt", folders[0]));
    assert!(pre_run.contains("| $ "), "{pre_run}");
    assert!(pre_run.contains("pre-run signs in with ***"), "{pre_run}");

    assert_no_blob_contains(
        &logs_repo,
        &[PASSWORD, API_TOKEN, LABEL_SECRET, github.token()],
    );

    // The slot's image store was made by this test.
    let _ = Command::new("podman")
        .args(["volume", "rm", "-f", &format!("ember-ci-store-{E2E_SLOT}")])
        .output();
}

/// Runs one synthetic step through a job log, like the executor does.
fn write_job(log: &JobLog, lines: &[&str]) {
    log.step_started(Step::Sanity);
    for line in lines {
        log.output(Step::Sanity, format!("{line}\n").as_bytes());
    }
    log.step_finished(
        Step::Sanity,
        &StepResult {
            exit_code: Some(0),
            duration: Duration::from_millis(1200),
            note: None,
        },
    );
}

fn sha_for(pr: u64) -> CommitSha {
    CommitSha::new(&format!("{pr:0>40}")).expect("SHA")
}

struct Branch {
    dir: tempfile::TempDir,
    bare: PathBuf,
}

impl Branch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bare = bare_repo(dir.path(), "logs.git");
        Self { dir, bare }
    }

    fn publisher(&self, gate_secrets: &[&str]) -> Publisher {
        self.publisher_with(
            ember_ci::logs::BranchLayout::Shared(BRANCH.into()),
            gate_secrets,
        )
    }

    fn publisher_with(
        &self,
        layout: ember_ci::logs::BranchLayout,
        gate_secrets: &[&str],
    ) -> Publisher {
        Publisher::new(
            PublishTarget {
                repo_url: self.bare.display().to_string(),
                layout,
                public_url: Some(LOGS_URL.into()),
            },
            &self.dir.path().join("clone"),
            "ember-ci",
            &Secret::default(),
            Masker::new(gate_secrets),
        )
        .with_retry(PushRetry {
            attempts: 3,
            first_backoff: Duration::from_millis(50),
        })
    }

    fn store(&self, known_secrets: &[&str], publisher: Publisher) -> LogStore {
        LogStore::new(
            self.dir.path().join("state/logs"),
            Some(format!("{LOCAL_URL}/jobs")),
            Masker::new(known_secrets),
        )
        .with_repo(RepoName::new("embercsi/ember-csi").expect("repo"))
        .with_publisher(publisher)
    }

    /// Fails every push, or only the first when `once`.
    fn reject_pushes(&self, once: bool) {
        let hook = self.bare.join("hooks/pre-receive");
        let script = if once {
            "#!/bin/sh\nif [ ! -e rejected-once ]; then touch rejected-once; echo 'remote hiccup' >&2; exit 1; fi\n"
        } else {
            "#!/bin/sh\necho 'remote down' >&2\nexit 1\n"
        };
        std::fs::write(&hook, script).expect("write hook");
        run_ok(Command::new("chmod").arg("+x").arg(&hook));
    }
}

async fn run_job(
    store: &LogStore,
    id: &str,
    pr: u64,
    lines: &[&str],
) -> ember_ci::logs::FinishedLogs {
    let id = JobId::parse(id).expect("job id");
    let log = store
        .open_job(&id, &request(pr, &sha_for(pr)))
        .expect("job log");
    write_job(&log, lines);
    store.finish_job(&log, &JobOutcome::Success).await
}

#[tokio::test]
async fn publish_gate_withholds_a_job_whose_secret_the_masker_was_not_told() {
    let branch = Branch::new();
    let late = "late-secret-5678";
    let store = branch.store(&["known-secret-1234"], branch.publisher(&[late]));

    let plain = run_job(
        &store,
        "20300101000000-aaaaa1",
        201,
        &["plugin says known-secret-1234 and late-secret-5678"],
    )
    .await;
    let encoded = run_job(
        &store,
        "20300101000001-aaaaa2",
        202,
        &[&format!("plugin says {}", STANDARD.encode(late))],
    )
    .await;
    for (finished, id) in [
        (&plain, "20300101000000-aaaaa1"),
        (&encoded, "20300101000001-aaaaa2"),
    ] {
        assert!(
            matches!(&finished.publication, Publication::Withheld(reason) if reason.ends_with("in 01-sanity.html")),
            "{finished:?}"
        );
        assert_eq!(
            finished.description,
            "CSI sanity passed; logs withheld (secret found)"
        );
        // Marked, so the web UI does not serve them either.
        assert!(
            store
                .jobs_dir
                .join(id)
                .join(ember_ci::logs::WITHHELD_MARKER)
                .exists(),
            "{id}"
        );
        // No link a reviewer could not open (the loopback UI).
        assert_eq!(finished.target_url, None);
    }
    assert_eq!(
        git(&branch.bare, &["for-each-ref"]).trim(),
        "",
        "something was pushed"
    );

    let clean = run_job(&store, "20300101000002-aaaaa3", 203, &["nothing secret"]).await;
    assert_eq!(
        clean.target_url.as_deref(),
        Some(format!("{LOGS_URL}/demo/203-0000000-20300101000002-aaaaa3/index.html").as_str())
    );
    assert_no_blob_contains(&branch.bare, &[late, "known-secret-1234"]);
}

#[tokio::test]
async fn a_failed_push_is_retried_and_a_lasting_failure_says_logs_are_local() {
    let branch = Branch::new();
    let store = branch.store(&[], branch.publisher(&[]));
    branch.reject_pushes(true);
    let retried = run_job(&store, "20300101000000-bbbbb1", 301, &["first"]).await;
    assert_eq!(
        retried.publication,
        Publication::Published(Some(format!(
            "{LOGS_URL}/demo/301-0000000-20300101000000-bbbbb1/index.html"
        )))
    );
    assert!(
        branch.bare.join("rejected-once").exists(),
        "the hook never rejected"
    );

    // Someone else moves the branch: the next job still lands on top.
    let other = branch.dir.path().join("other");
    run_ok(
        Command::new("git")
            .args(["clone", "-q", "--branch", BRANCH])
            .arg(&branch.bare)
            .arg(&other),
    );
    std::fs::write(other.join("README.md"), "logs\n").expect("write");
    git(&other, &["add", "-A"]);
    git(
        &other,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@l",
            "commit",
            "-q",
            "-m",
            "readme",
        ],
    );
    git(&other, &["push", "-q", "origin", BRANCH]);
    let stacked = run_job(&store, "20300101000001-bbbbb2", 302, &["second"]).await;
    assert!(matches!(
        stacked.publication,
        Publication::Published(Some(_))
    ));
    assert!(branch_has(&branch.bare, "README.md"));
    assert_eq!(branch_folders(&branch.bare).len(), 2);

    branch.reject_pushes(false);
    let failed = run_job(&store, "20300101000002-bbbbb3", 303, &["third"]).await;
    assert!(
        matches!(failed.publication, Publication::Failed(_)),
        "{failed:?}"
    );
    assert_eq!(
        failed.description,
        "CSI sanity passed; logs not published (push failed)"
    );
    assert_eq!(failed.target_url, None);
    assert!(store
        .jobs_dir
        .join("20300101000002-bbbbb3/index.html")
        .exists());
}

#[tokio::test]
async fn jobs_finishing_together_are_published_one_after_the_other() {
    let branch = Branch::new();
    let store = branch.store(&[], branch.publisher(&[]));
    let (a, b) = tokio::join!(
        run_job(&store, "20300101000000-ccccc1", 401, &["a"]),
        run_job(&store, "20300101000000-ccccc2", 402, &["b"]),
    );
    assert!(
        matches!(a.publication, Publication::Published(Some(_))),
        "{a:?}"
    );
    assert!(
        matches!(b.publication, Publication::Published(Some(_))),
        "{b:?}"
    );
    assert_eq!(branch_folders(&branch.bare).len(), 2);
    assert_eq!(commit_count(&branch.bare), 2);
}

fn at(year: i32, month: time::Month, day: u8) -> SystemTime {
    let date = time::Date::from_calendar_date(year, month, day).expect("date");
    SystemTime::from(date.midnight().assume_utc())
}

#[tokio::test]
async fn rotation_removes_old_jobs_here_and_on_the_branch_and_bounds_history() {
    use time::Month::{June, March};
    let branch = Branch::new();
    let store = branch.store(&[], branch.publisher(&[]));
    let policy = RetentionPolicy {
        max_age: Duration::from_secs(30 * 24 * 60 * 60),
        max_branch_commits: 3,
    };
    let jobs = [
        ("20300110120000-0d0001", 501),
        ("20300115120000-0d0002", 502),
        ("20300220120000-0e0003", 503),
        ("20300228120000-0e0004", 504),
    ];
    for (id, pr) in jobs {
        let marker = format!("unique output of job {id}");
        let finished = run_job(&store, id, pr, &[&marker]).await;
        assert!(matches!(finished.publication, Publication::Published(_)));
    }
    assert_eq!(commit_count(&branch.bare), 4);

    let now = at(2030, March, 1);
    let report = store.prune(policy, now).await.expect("prune");
    assert_eq!(
        report.local,
        ["20300110120000-0d0001", "20300115120000-0d0002"]
    );
    assert_eq!(
        report.branch,
        [
            "demo/501-0000000-20300110120000-0d0001",
            "demo/502-0000000-20300115120000-0d0002"
        ]
    );
    assert!(report.squashed, "5 commits > 3 must squash");
    assert_eq!(
        branch_folders(&branch.bare),
        BTreeSet::from([
            "demo/503-0000000-20300220120000-0e0003".to_string(),
            "demo/504-0000000-20300228120000-0e0004".to_string()
        ])
    );
    let mut left: Vec<String> = std::fs::read_dir(&store.jobs_dir)
        .expect("logs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["20300220120000-0e0003", "20300228120000-0e0004"]);
    assert_eq!(commit_count(&branch.bare), 1);
    assert_no_blob_contains(
        &branch.bare,
        &["unique output of job 20300110120000-0d0001"],
    );

    // Later jobs publish on top of the squashed history; every pruning pass
    // keeps the commit count within the bound.
    for (offset, day) in [(0u8, 2u8), (1, 3), (2, 4), (3, 5), (4, 6)] {
        let id = format!("203003{day:02}120000-0f000{offset}");
        run_job(&store, &id, 600 + u64::from(offset), &["later"]).await;
        store
            .prune(policy, at(2030, March, day + 1))
            .await
            .expect("prune");
        assert!(commit_count(&branch.bare) <= policy.max_branch_commits);
    }
    // Shift the clock past every job: nothing is left anywhere.
    store.prune(policy, at(2030, June, 1)).await.expect("prune");
    assert!(branch_folders(&branch.bare).is_empty());
    assert_eq!(std::fs::read_dir(&store.jobs_dir).expect("dir").count(), 0);
}

#[tokio::test]
async fn rotation_never_prunes_the_ember_csi_teams_repository() {
    use time::Month::June;
    let branch = Branch::new();
    let layout = ember_ci::logs::BranchLayout::PerBackend(vec![
        BackendName::new("demo").expect("backend name")
    ]);
    let store = branch.store(&[], branch.publisher_with(layout, &[]));
    let policy = RetentionPolicy {
        max_age: Duration::from_secs(24 * 60 * 60),
        max_branch_commits: 1,
    };
    for (id, pr) in [
        ("20300110120000-0d0001", 501),
        ("20300115120000-0d0002", 502),
    ] {
        let finished = run_job(&store, id, pr, &["output"]).await;
        assert!(matches!(finished.publication, Publication::Published(_)));
    }
    let before = git(&branch.bare, &["rev-parse", "demo"]);

    let report = store.prune(policy, at(2030, June, 1)).await.expect("prune");
    assert_eq!(report.local.len(), 2, "local copies still rotate");
    assert!(report.branch.is_empty() && !report.squashed, "{report:?}");
    assert_eq!(git(&branch.bare, &["rev-parse", "demo"]), before);
}
