//! A real git server on 127.0.0.1:0 standing in for GitHub where the sandbox
//! build fetches csi-sanity: Git's own `git daemon --inetd`, one process per
//! connection, so no port is guessed. It serves our stand-in of csi-test
//! (tests/data/csi-sanity-standin, a Go module whose cmd/csi-sanity checks
//! the demo plugin) under a tag, and a copy whose tag has moved. A second
//! server, which also takes pushes, stands in for the Ember-CSI team's logs
//! repository ([`LogsRepo`], EMBER_LOGS_REPO).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::executor_env::{repo_root, run_ok};

/// The tag the stand-in is served under, as csi-test's `v5.3.1` (read as
/// that release: a Ginkgo v2 csi-sanity that writes JUnit reports).
pub const STANDIN_VERSION: &str = "v5.3.1-standin";
/// The same stand-in under a tag read as csi-test v0.3.5 (no JUnit flag
/// in the default command), for a backend's CSI_SANITY_VERSION_n.
pub const OLD_STANDIN_VERSION: &str = "v0.3.5-standin";

/// The status description of a job the stand-in passed: its JUnit report
/// holds one spec.
pub const STANDIN_PASSED: &str = "csi-sanity: 1 passed";

/// The stand-in csi-test, served for the whole test process.
#[derive(Debug)]
pub struct CsiSanityStandin {
    /// `git://127.0.0.1:PORT/csi-test.git`: the tag names [`Self::commit`].
    pub repo: String,
    /// `git://127.0.0.1:PORT/csi-test-moved.git`: the same tag, moved to a
    /// later commit.
    pub moved_repo: String,
    /// The commit the tag names in `repo`: the pin. The same on every run
    /// (fixed dates and names), so the sandbox image tag is stable.
    pub commit: String,
    /// The commit the tag names in `moved_repo`.
    pub moved_commit: String,
}

impl CsiSanityStandin {
    /// Config keys that take the default csi-sanity path (the demo config
    /// skips it; empty means default) with csi-sanity built from the
    /// stand-in: the keys a vendor's mirror of csi-test would set.
    pub fn config_keys(&self) -> String {
        format!(
            "SANITY_COMMAND_1=\"\"\nSANDBOX_SKIP_CSI_SANITY=\"\"\n\
             CSI_SANITY_REPO=\"{}\"\nCSI_SANITY_VERSION=\"{STANDIN_VERSION}\"\nCSI_SANITY_COMMIT=\"{}\"\n",
            self.repo, self.commit
        )
    }
}

/// Starts the server on first use.
pub fn csi_sanity_standin() -> &'static CsiSanityStandin {
    static STANDIN: OnceLock<CsiSanityStandin> = OnceLock::new();
    STANDIN.get_or_init(|| {
        // Kept for the process's lifetime: the server serves from it.
        let base = tempfile::tempdir().expect("temp dir").keep();
        let work = base.join("work");
        copy_tree(&repo_root().join("tests/data/csi-sanity-standin"), &work);
        let git = |args: &[&str]| {
            run_ok(
                Command::new("git")
                    .arg("-C")
                    .arg(&work)
                    .args(["-c", "user.name=ember-ci", "-c", "user.email=ci@localhost"])
                    .args(args)
                    .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
                    .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"),
            )
            .trim()
            .to_string()
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "csi-sanity stand-in"]);
        git(&["tag", STANDIN_VERSION]);
        git(&["tag", OLD_STANDIN_VERSION]);
        let commit = git(&["rev-parse", "HEAD"]);
        git(&["clone", "-q", "--bare", ".", "../csi-test.git"]);
        git(&["commit", "-q", "--allow-empty", "-m", "the tag moves here"]);
        git(&["tag", "-f", STANDIN_VERSION]);
        let moved_commit = git(&["rev-parse", "HEAD"]);
        git(&["clone", "-q", "--bare", ".", "../csi-test-moved.git"]);
        let addr = serve(&base, false);
        CsiSanityStandin {
            repo: format!("git://{addr}/csi-test.git"),
            moved_repo: format!("git://{addr}/csi-test-moved.git"),
            commit,
            moved_commit,
        }
    })
}

/// The public base URL the tests configure as EMBER_LOGS_URL: only ever
/// compared with, never fetched.
pub const LOGS_PUBLIC_URL: &str = "https://ci-logs.test";

/// An empty bare repository on the pushable git server, standing in for
/// `https://github.com/embercsi/3rd-party-ci-logs.git`.
#[derive(Debug, Clone)]
pub struct LogsRepo {
    /// `git://127.0.0.1:PORT/logs-N.git`
    pub url: String,
    pub path: PathBuf,
}

impl LogsRepo {
    pub fn create() -> LogsRepo {
        static SERVER: OnceLock<(PathBuf, SocketAddr)> = OnceLock::new();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let (base, addr) = SERVER.get_or_init(|| {
            // Kept for the process's lifetime: the server serves from it.
            let base = tempfile::tempdir().expect("temp dir").keep();
            let addr = serve(&base, true);
            (base, addr)
        });
        let name = format!("logs-{}.git", NEXT.fetch_add(1, Ordering::SeqCst));
        let path = base.join(&name);
        run_ok(
            Command::new("git")
                .args(["init", "-q", "--bare"])
                .arg(&path),
        );
        LogsRepo {
            url: format!("git://{addr}/{name}"),
            path,
        }
    }

    /// The keys that point the old CI's log place at this repository.
    pub fn config_keys(&self) -> String {
        format!(
            "EMBER_LOGS_REPO=\"{}\"\nEMBER_LOGS_URL=\"{LOGS_PUBLIC_URL}\"\n",
            self.url
        )
    }

    /// `git` in the bare repository; its stdout.
    pub fn git(&self, args: &[&str]) -> String {
        run_ok(Command::new("git").arg("-C").arg(&self.path).args(args))
    }

    /// The job folders at the tip of `branch`.
    pub fn folders(&self, branch: &str) -> Vec<String> {
        self.git(&["ls-tree", "-d", "--name-only", branch])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A file at the tip of `branch`.
    pub fn file(&self, branch: &str, path: &str) -> String {
        self.git(&["show", &format!("{branch}:{path}")])
    }
}

/// Serves every repository under `base` with `git daemon --inetd`; with
/// `writable`, pushes too. Lives for the rest of the process.
pub fn serve(base: &Path, writable: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind git server");
    let addr = listener.local_addr().expect("git server address");
    let base = base.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let Ok(input) = stream.try_clone() else {
                continue;
            };
            let child = Command::new("git")
                .arg("daemon")
                .arg("--inetd")
                .arg("--export-all")
                .arg("--informative-errors")
                .args(writable.then_some("--enable=receive-pack"))
                .arg(format!("--base-path={}", base.display()))
                .stdin(Stdio::from(OwnedFd::from(input)))
                .stdout(Stdio::from(OwnedFd::from(stream)))
                .spawn();
            // Reaped in the background so connections are served at once.
            if let Ok(mut child) = child {
                std::thread::spawn(move || child.wait());
            }
        }
    });
    addr
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read stand-in dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy stand-in file");
        }
    }
}
