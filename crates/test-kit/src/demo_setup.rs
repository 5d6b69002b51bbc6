//! The usual end-to-end setup: the demo repository, a fake GitHub, and a
//! config dir pointing at both with a private state dir. Test binaries that
//! include this also include `ci_env` and `fake_github` at their root.

use std::path::PathBuf;

use crate::ci_env::{self, DemoRepo};
use crate::fake_github::FakeGitHub;
use crate::git_server::LogsRepo;

pub struct DemoSetup {
    pub dir: tempfile::TempDir,
    pub repo: DemoRepo,
    pub github: FakeGitHub,
    pub state: PathBuf,
    /// The config dir (examples/demo plus the test's overrides and `extra`).
    pub config: PathBuf,
    /// Where the jobs' logs are pushed (EMBER_LOGS_REPO, the default place).
    pub logs: LogsRepo,
}

impl DemoSetup {
    /// `extra` is appended to the config file (later assignments win).
    pub async fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = DemoRepo::create(dir.path());
        let github = FakeGitHub::start_with(ci_env::TEST_TOKEN, "embercsi/ember-csi").await;
        let state = dir.path().join("state");
        let logs = LogsRepo::create();
        let extra = format!("{}{extra}", logs.config_keys());
        let config = ci_env::write_config(dir.path(), &repo, &github.url(), &state, &extra);
        Self {
            logs,
            dir,
            repo,
            github,
            state,
            config,
        }
    }
}
