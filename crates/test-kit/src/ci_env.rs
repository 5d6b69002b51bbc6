//! A CI environment for end-to-end tests: the demo repository as a local
//! bare git repo standing in for embercsi/ember-csi, a vendor config dir
//! pointing at it and at a local GitHub API, fixture deliveries re-targeted
//! at the local commits, and `ember-ci serve` as a real child process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const TEST_SECRET: &str = "test-webhook-secret";
pub const TEST_TOKEN: &str = "test-github-token";

/// The repository's root (this crate lives in crates/test-kit).
pub fn project_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.canonicalize().unwrap_or(dir)
}

/// The `ember-ci` binary Cargo built for the integration tests: beside the
/// test executable's `deps` dir, wherever the target dir is.
pub fn ember_ci_bin() -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test executable's path");
    let dir = test_exe.parent().expect("the test executable's dir");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("the target profile dir")
    } else {
        dir
    };
    dir.join("ember-ci")
}

/// The demo plugin repository with PR refs 129 (works) and 130 (broken).
pub struct DemoRepo {
    pub path: PathBuf,
    pub ok_sha: String,
    pub broken_sha: String,
}

impl DemoRepo {
    pub fn create(dir: &Path) -> DemoRepo {
        let path = dir.join("ember-csi.git");
        let output = Command::new("bash")
            .arg(project_dir().join("scripts/make-demo-repo.sh"))
            .arg(&path)
            .output()
            .expect("running scripts/make-demo-repo.sh");
        assert!(
            output.status.success(),
            "make-demo-repo.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let refs: BTreeMap<String, String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(pr, sha)| (pr.to_string(), sha.to_string()))
            })
            .collect();
        DemoRepo {
            path,
            ok_sha: refs["129"].clone(),
            broken_sha: refs["130"].clone(),
        }
    }

    /// Commits `files` on top of `base_sha` and points `refs/pull/<pr>/head`
    /// at it; returns the new SHA.
    pub fn push_pull_request(
        &self,
        pr: u64,
        base_sha: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        let work = tempfile::tempdir().expect("temp dir");
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(work.path())
                .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
                .args(args)
                .output()
                .expect("running git");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["init", "-q"]);
        git(&[
            "fetch",
            "-q",
            self.path.to_str().expect("utf-8 path"),
            base_sha,
        ]);
        git(&["checkout", "-q", "FETCH_HEAD"]);
        for (name, content) in files {
            std::fs::write(work.path().join(name), content).expect("writing file");
        }
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", message]);
        let sha = git(&["rev-parse", "HEAD"]);
        git(&[
            "push",
            "-q",
            "-f",
            self.path.to_str().expect("utf-8 path"),
            &format!("HEAD:refs/pull/{pr}/head"),
        ]);
        sha
    }
}

/// Writes a config dir based on examples/demo, pointed at the local repo,
/// the local GitHub API, a private state dir and a fresh stand-in of the
/// Ember-CSI team's logs repository (GH_TOKEN is set, so logs go there by
/// default). `extra` lines are appended (later assignments win, as in bash).
pub fn write_config(
    dir: &Path,
    repo: &DemoRepo,
    github_url: &str,
    state_dir: &Path,
    extra: &str,
) -> PathBuf {
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir).expect("creating config dir");
    let demo = project_dir().join("examples/demo");
    std::fs::copy(demo.join("sanity.sh"), config_dir.join("sanity.sh")).expect("copying sanity.sh");
    let base = std::fs::read_to_string(demo.join("config")).expect("reading the demo config");
    let config = format!(
        "{base}\n# test overrides\nGH_TOKEN=\"{TEST_TOKEN}\"\nGH_API_URL=\"{github_url}\"\nGH_EMBER_SECRET=\"{TEST_SECRET}\"\n\
         GH_CLONE_URL=\"{}\"\nCI_DIR=\"{}\"\nWEB_ADDR=127.0.0.1\nWEB_PORT=0\nWEB_UI_PORT=0\nPLUGIN_START_TIMEOUT=120\nSHUTDOWN_GRACE=60\n{}{}{extra}\n",
        repo.path.display(),
        state_dir.display(),
        crate::git_server::csi_sanity_standin().config_keys(),
        crate::git_server::LogsRepo::create().config_keys(),
    );
    crate::executor_env::ensure_local_registry();
    std::fs::write(config_dir.join("config"), config).expect("writing config");
    config_dir
}

/// A fixture delivery (smee form) with its PR's head SHA replaced, saved to
/// `dir`; returns the file's path.
pub fn delivery_for(fixture: &str, head_sha: &str, dir: &Path) -> PathBuf {
    let path = Path::new("/work/shared/fixtures/github").join(fixture);
    let path = if path.exists() {
        path
    } else {
        project_dir().join("tests/data").join(fixture)
    };
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut delivery: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    delivery["body"]["pull_request"]["head"]["sha"] =
        serde_json::Value::String(head_sha.to_string());
    let out = dir.join(format!("{head_sha}-{fixture}"));
    std::fs::write(&out, serde_json::to_vec(&delivery).expect("serialising"))
        .expect("writing delivery");
    out
}

/// Runs `ember-ci send URL FILE` with the secret in EMBER_CI_SEND_SECRET
/// (never in argv); returns (exit code, stdout).
pub fn send(url: &str, file: &Path, secret: &str) -> (i32, String) {
    let output = Command::new(ember_ci_bin())
        .args(["send", url])
        .arg(file)
        .env("EMBER_CI_SEND_SECRET", secret)
        .output()
        .expect("running ember-ci send");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `ember-ci serve` as a child process; sent SIGTERM and reaped on drop.
pub struct Service {
    child: Child,
    /// The webhook's base URL.
    pub url: String,
    /// The web UI's base URL (loopback).
    pub ui_url: String,
    pub stderr_log: PathBuf,
}

impl Service {
    pub fn start(config_dir: &Path, log_dir: &Path) -> Service {
        Self::start_logging(config_dir, log_dir, "info,ember_ci=debug")
    }

    /// Starts with RUST_LOG set to `filter`.
    pub fn start_logging(config_dir: &Path, log_dir: &Path, filter: &str) -> Service {
        let stderr_log = log_dir.join("serve.log");
        let stderr = std::fs::File::create(&stderr_log).expect("creating serve.log");
        let mut child = Command::new(ember_ci_bin())
            .args(["serve", "--config"])
            .arg(config_dir)
            .env("RUST_LOG", filter)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting ember-ci serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut webhook = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("ember-ci listening on ") {
                    webhook = Some(url.to_string());
                }
                if let Some(ui) = line.strip_prefix("ember-ci web UI on ") {
                    let _ = tx.send((webhook.take().unwrap_or_default(), ui.to_string()));
                }
            }
        });
        let (url, ui_url) = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(urls) => urls,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "ember-ci serve did not start; its log:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        Service {
            child,
            url,
            ui_url,
            stderr_log,
        }
    }

    pub fn hook_url(&self) -> String {
        format!("{}/change_hook/github", self.url)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait (bounded); returns the exit code.
    pub fn stop(&mut self, limit: Duration) -> Option<i32> {
        self.terminate();
        self.wait_exit(limit)
    }

    /// Sends SIGTERM and returns at once.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// SIGKILL, as a crash would end it; returns once it is reaped. The
    /// processes it started are left running, as after a real crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) for the process to exit; returns its exit code, or
    /// None when it had to be killed.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let exited = crate::wait::poll_until_blocking(limit, Duration::from_millis(100), || {
            self.child.try_wait().ok().flatten()
        });
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        exited.and_then(|status| status.code())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop(Duration::from_secs(60));
        }
    }
}

/// Names of containers (running or not) whose labels match `label=value`.
pub fn containers_with_label(label: &str) -> Vec<String> {
    podman_lines(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.Names}}",
    ])
}

/// Names of volumes whose labels match `label=value`.
pub fn volumes_with_label(label: &str) -> Vec<String> {
    podman_lines(&[
        "volume",
        "ls",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.Name}}",
    ])
}

fn podman_lines(args: &[&str]) -> Vec<String> {
    let output = Command::new("podman")
        .args(args)
        .output()
        .expect("running podman");
    assert!(
        output.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The ids of the jobs the service ran for `sha`, oldest first: the job
/// folders under `<state_dir>/logs` (statuses carry no local link).
pub fn job_ids_for(state_dir: &Path, sha: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("logs")) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let record = ember_ci::logs::JobRecord::read(&entry.path()).ok()?;
            (record.request.sha.as_str() == sha).then(|| record.id.to_string())
        })
        .collect();
    ids.sort();
    ids
}
