//! The typed, validated view of a vendor's config dir. Produced only by
//! `Config::load`; every other module reads these fields and never the raw file.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::{BackendName, RepoName};

/// A value that must never reach logs, Debug output or web pages.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that needs it (an HTTP header, HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// A script given either inline in the config file or as a file in the
/// config dir (PRE_RUN_n, POST_RUN_n, DRIVER_CONFIG_n).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    Inline(String),
    /// Absolute path on the host (resolved against the config dir).
    File(PathBuf),
}

/// DRIVER_CONFIG_n: Ember-CSI backend JSON, or a script that sets it.
#[derive(Clone, PartialEq, Eq)]
pub enum DriverConfig {
    /// Validated JSON text (it may hold passwords: never log it unmasked).
    Json(String),
    /// A file in the config dir that, sourced, sets DRIVER_CONFIG and maybe
    /// CSI_SYSTEM_FILES.
    Script(PathBuf),
}

impl fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverConfig::Json(_) => f.write_str("Json(***)"),
            DriverConfig::Script(path) => f.debug_tuple("Script").field(path).finish(),
        }
    }
}

/// One configured backend (the `_n` keys).
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// The `n` of the `_n` keys, from 1.
    pub index: usize,
    pub name: BackendName,
    pub driver_config: DriverConfig,
    pub pre_run: Option<Script>,
    pub post_run: Option<Script>,
    /// Shell command run inside the sandbox once the plugin serves.
    pub sanity_command: String,
    /// EXTRA_PACKAGES_n: Debian packages added on top of the PR's image.
    pub extra_packages: Vec<String>,
    /// EXTRA_PIP_n: Python packages added on top of the PR's image.
    pub extra_pip: Vec<String>,
    /// EXTRA_CONTAINERFILE_n: a file of extra Containerfile instructions.
    pub extra_containerfile: Option<PathBuf>,
}

/// How deliveries reach us besides the HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// SMEE_URL, or https://smee.io/$SMEE_ID.
    pub smee_url: Option<String>,
    /// POLL_INTERVAL: list open PRs through the API this often.
    pub poll_interval: Option<Duration>,
}

/// Where job logs go (the [logs] keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// LOGS_REPO: git URL the HTML logs are pushed to; None keeps them local.
    pub repo: Option<String>,
    /// LOGS_BRANCH [gh-pages].
    pub branch: String,
    /// LOGS_URL: public base URL of the pushed pages.
    pub url: Option<String>,
    /// LOG_RETENTION_DAYS [30].
    pub retention_days: u32,
}

/// The whole vendor configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config dir (absolute); mounted read-only in every sandbox.
    pub dir: PathBuf,
    pub gh_token: Secret,
    pub gh_user: String,
    pub gh_ember_secret: Secret,
    /// GH_API_URL [https://api.github.com], without a trailing slash.
    pub gh_api_url: String,
    /// GH_REPO [embercsi/ember-csi].
    pub gh_repo: RepoName,
    /// GH_CLONE_URL [https://github.com/$GH_REPO.git].
    pub gh_clone_url: String,
    pub backends: Vec<BackendConfig>,
    /// NUM_WORKERS [1].
    pub num_workers: usize,
    /// WEB_ADDR [0.0.0.0]: all addresses, so a published container port reaches it.
    pub web_addr: IpAddr,
    /// WEB_PORT [8010].
    pub web_port: u16,
    /// CI_DIR [/var/lib/ember-ci]: state (clones, journal, logs).
    pub state_dir: PathBuf,
    /// BUILD_FILE [Dockerfile], relative to the PR's checkout.
    pub build_file: String,
    /// JOB_TIMEOUT [3600 s].
    pub job_timeout: Duration,
    /// PLUGIN_START_TIMEOUT [300 s].
    pub plugin_start_timeout: Duration,
    /// SHUTDOWN_GRACE [600 s].
    pub shutdown_grace: Duration,
    /// PODMAN_SOCKET: a Podman API socket; None starts `podman system service`.
    pub podman_socket: Option<PathBuf>,
    /// SANDBOX_IMAGE: use this image instead of building containers/sandbox.
    pub sandbox_image: Option<String>,
    /// SANDBOX_SKIP_CSI_SANITY [0]: build the sandbox without csi-sanity
    /// (hosts that cannot download it; the sanity command must not need it).
    pub sandbox_skip_csi_sanity: bool,
    /// IMAGE_STORE_MAX_GB [40].
    pub image_store_max_gb: u64,
    /// TRUSTED_USERS: logins whose PRs and commands run without a member's ok.
    pub trusted_users: Vec<String>,
    /// SECRETS: extra values to mask in logs.
    pub secrets: Vec<Secret>,
    /// WEB_ADMIN_TOKEN: needed for web UI actions when set.
    pub web_admin_token: Option<Secret>,
    pub relay: RelayConfig,
    pub logs: LogsConfig,
    /// Old keys that mean nothing now, present in the file (warned about).
    pub obsolete_keys: Vec<String>,
    /// Likely mistakes that are not errors (a mistyped key, a backend key
    /// past NUM_DRIVERS); the caller prints them.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name.matches(name))
    }

    /// Every secret value the config knows, for the log masker.
    pub fn secret_values(&self) -> Vec<String> {
        let mut values: Vec<String> = [&self.gh_token, &self.gh_ember_secret]
            .into_iter()
            .chain(self.secrets.iter())
            .chain(self.web_admin_token.iter())
            .filter(|s| !s.is_empty())
            .map(|s| s.expose().to_string())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}
