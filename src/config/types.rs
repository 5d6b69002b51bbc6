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
    /// SANITY_TIMEOUT[_n]: then SIGINT (Ginkgo reports the running spec
    /// and writes its report), a grace period, then SIGKILL.
    pub sanity_timeout: Duration,
    /// EXTRA_PACKAGES_n: Debian packages added on top of the PR's image.
    pub extra_packages: Vec<String>,
    /// EXTRA_PIP_n: Python packages added on top of the PR's image.
    pub extra_pip: Vec<String>,
    /// EXTRA_CONTAINERFILE_n: a file of extra Containerfile instructions.
    pub extra_containerfile: Option<PathBuf>,
    /// What the plugin container gets besides the backend JSON.
    pub plugin: PluginSettings,
    /// The csi-sanity build in the sandbox that `csi-sanity` runs for this
    /// backend; None when the sandbox has none of ours (SANDBOX_IMAGE,
    /// SANDBOX_SKIP_CSI_SANITY).
    pub csi_sanity: Option<CsiSanityBuild>,
    /// DRIVER_HOST_n: the hosts that may run this backend, preferred first
    /// (never empty; `local` by default).
    pub hosts: Vec<super::HostName>,
}

/// The plugin's settings, with the old worker's env-file as defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// CSI_SPEC_VERSION_n, passed as X_CSI_SPEC_VERSION.
    pub spec_version: String,
    /// X_CSI_EMBER_CONFIG_n (JSON object text).
    pub ember_config: String,
    /// X_CSI_PERSISTENCE_CONFIG_n (JSON object text).
    pub persistence_config: String,
    /// SANDBOX_DAEMONS_n: what runs in the sandbox before the plugin.
    pub daemons: Vec<HostDaemon>,
}

/// A daemon of the old worker VM the plugin's host tools talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDaemon {
    Iscsid,
    Multipathd,
}

impl HostDaemon {
    pub fn name(self) -> &'static str {
        match self {
            HostDaemon::Iscsid => "iscsid",
            HostDaemon::Multipathd => "multipathd",
        }
    }
}

/// One csi-sanity built into the sandbox: csi-test tag `version`, which
/// must be commit `commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsiSanityBuild {
    pub version: String,
    pub commit: String,
}

/// How deliveries reach us besides the HTTP endpoint (the relay section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// SMEE_URL, or https://smee.io/$SMEE_ID.
    pub smee_url: Option<String>,
    /// POLL_INTERVAL: list open PRs through the API this often.
    pub poll_interval: Option<Duration>,
}

/// Where job logs go and what they must not show (the logs section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// The git URL the HTML logs are pushed to (LOGS_REPO, or with GH_TOKEN
    /// and no LOGS_* key EMBER_LOGS_REPO); None keeps them local.
    pub repo: Option<String>,
    /// LOGS_BRANCH; unused with `branch_per_backend`.
    pub branch: String,
    /// Public base URL of the pushed pages (LOGS_URL, or EMBER_LOGS_URL).
    pub url: Option<String>,
    /// The old CI's layout: one branch per backend, named after it.
    pub branch_per_backend: bool,
    /// Why the logs go where they go, for check-config and doctor.
    pub reason: String,
    pub retention_days: u32,
    /// SECRETS: extra values to mask in logs.
    pub secrets: Vec<Secret>,
}

/// Talking to GitHub and judging who may trigger jobs (the GitHub section).
/// GH_TOKEN is read here only: the reporter and the log publisher get it
/// from this section, and others ask the reporter whether statuses are posted.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// GH_TOKEN: empty prints statuses instead of posting them.
    pub token: Secret,
    /// GH_USER: the bot's login (its own comments are ignored).
    pub user: String,
    /// GH_EMBER_SECRET: the webhook secret.
    pub webhook_secret: Secret,
    /// GH_API_URL, without a trailing slash.
    pub api_url: String,
    pub repo: RepoName,
    /// TRUSTED_USERS: logins whose PRs and commands run without a member's ok.
    pub trusted_users: Vec<String>,
}

/// What the executor needs to run one job (the executor section, plus the
/// paths and worker count it shares with the service).
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// The config dir (absolute); mounted read-only in every sandbox.
    pub config_dir: PathBuf,
    /// CI_DIR: the executor owns `git/`, `jobs/`, `tmp/`, `image-store/` in it.
    pub state_dir: PathBuf,
    /// NUM_WORKERS: the image-store budget is split between the slots.
    pub num_workers: usize,
    /// GH_CLONE_URL [https://github.com/$GH_REPO.git].
    pub clone_url: String,
    /// BUILD_FILE, relative to the PR's checkout.
    pub build_file: String,
    pub job_timeout: Duration,
    pub plugin_start_timeout: Duration,
    /// PODMAN_SOCKET: a Podman API socket; None starts `podman system service`.
    pub podman_socket: Option<PathBuf>,
    /// PODMAN_HOSTS: other hosts' Podman, reached over ssh.
    pub hosts: Vec<super::PodmanHost>,
    /// SANDBOX_IMAGE: use this image instead of building containers/sandbox.
    pub sandbox_image: Option<String>,
    /// SANDBOX_BASE_IMAGE: what the sandbox image is built FROM.
    pub sandbox_base_image: String,
    /// Where the sandbox's csi-sanity is built from; None when
    /// SANDBOX_SKIP_CSI_SANITY=1 (no sanity command may then need it).
    pub csi_sanity: Option<CsiSanitySource>,
    /// The other csi-sanity builds backends need (CSI_SPEC_VERSION_n 0.x,
    /// CSI_SANITY_VERSION_n), from the same repository; empty when skipped.
    pub csi_sanity_extra: Vec<CsiSanityBuild>,
    pub image_store_max_gb: u64,
}

/// CSI_SANITY_REPO, CSI_SANITY_VERSION, CSI_SANITY_COMMIT: csi-sanity is
/// built from `version` (a tag) of `repo`, which must be commit `commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsiSanitySource {
    pub repo: String,
    pub version: String,
    pub commit: String,
}

/// The service's own settings (the service section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// CI_DIR: state (clones, journal, logs).
    pub state_dir: PathBuf,
    /// NUM_WORKERS: jobs at once.
    pub num_workers: usize,
    pub shutdown_grace: Duration,
}

/// The HTTP listener and the web UI (the web section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// WEB_ADDR: all addresses by default, so a published container port reaches it.
    pub addr: IpAddr,
    pub port: u16,
    /// WEB_UI_PORT: the web UI and API listen on 127.0.0.1 only, apart
    /// from the webhook, so no proxy or tunnel for the webhook exposes them.
    pub ui_port: u16,
    /// WEB_ADMIN_TOKEN: needed for web UI actions when set.
    pub admin_token: Option<Secret>,
}

/// The whole vendor configuration, validated, by section: each part of the
/// service is handed its section only. Defaults are in `keys::KEYS`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config dir (absolute).
    pub dir: PathBuf,
    pub github: GitHubConfig,
    pub relay: RelayConfig,
    pub backends: Vec<BackendConfig>,
    pub executor: ExecutorConfig,
    pub service: ServiceConfig,
    pub web: WebConfig,
    pub logs: LogsConfig,
    /// Old keys that mean nothing now, present in the file (warned about).
    pub obsolete_keys: Vec<String>,
    /// Likely mistakes that are not errors (a mistyped key, a backend key
    /// past NUM_DRIVERS); the caller prints them.
    pub warnings: Vec<String>,
    /// The values of every key the key table marks secret.
    pub(super) secret_values: Vec<Secret>,
}

impl Config {
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        find_backend(&self.backends, name)
    }

    /// Every secret value the config knows (each key the key table marks
    /// secret; a list such as SECRETS value by value), for the log masker.
    pub fn secret_values(&self) -> Vec<String> {
        self.secret_values
            .iter()
            .map(|secret| secret.expose().to_string())
            .collect()
    }

    /// Every value logs and summaries must hide: [`Config::secret_values`]
    /// and the credential values of JSON driver configs.
    pub fn masked_values(&self) -> Vec<String> {
        let mut values = self.secret_values();
        for backend in &self.backends {
            if let DriverConfig::Json(text) = &backend.driver_config {
                values.extend(super::credential_values(text));
            }
        }
        values
    }
}

/// The backend called `name` (ignoring case).
pub fn find_backend<'a>(backends: &'a [BackendConfig], name: &str) -> Option<&'a BackendConfig> {
    backends.iter().find(|b| b.name.matches(name))
}
