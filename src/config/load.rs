//! Turns a config dir into a validated [`Config`]: reads `config` with the
//! bash-compatible reader, checks every key, resolves script and file
//! names against the dir, and reports every problem at once with a fix, so
//! a vendor gets one complete list instead of one error per restart.
//!
//! Only this module reads the config dir; it does not create anything
//! (CI_DIR is created by whoever uses it).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::errors::{shell_error, ConfigError, ConfigErrors};
use super::keys::{
    unused_key_warnings, CONFIG_FILE_NAME, DEFAULT_BUILD_FILE, DEFAULT_GH_API_URL, DEFAULT_GH_REPO,
    DEFAULT_IMAGE_STORE_MAX_GB, DEFAULT_JOB_TIMEOUT_SECS, DEFAULT_LOGS_BRANCH,
    DEFAULT_LOG_RETENTION_DAYS, DEFAULT_PLUGIN_START_TIMEOUT_SECS, DEFAULT_SANITY_COMMAND,
    DEFAULT_SHUTDOWN_GRACE_SECS, DEFAULT_STATE_DIR, DEFAULT_WEB_PORT, LEGACY_UNSUFFIXED_KEYS,
    MAX_DRIVERS, MAX_IMAGE_STORE_GB, MAX_LOG_RETENTION_DAYS, MAX_WORKERS, OBSOLETE_KEYS,
};
use super::shell;
use super::types::{BackendConfig, Config, DriverConfig, LogsConfig, RelayConfig, Script, Secret};
use super::values::{self, quoted};
use crate::model::{BackendName, RepoName};

impl Config {
    /// Reads and validates `dir/config`, expanding `$VAR` from the process
    /// environment for names the file does not assign.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        // vars_os: one non-UTF-8 variable in the service's environment must
        // not stop it; such variables cannot be meant by a config file.
        let env: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Self::load_with_env(dir, &env)
    }

    /// [`Config::load`] with an explicit environment, for deterministic tests.
    pub fn load_with_env(
        dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigErrors> {
        let dir = dir.canonicalize().map_err(|e| {
            ConfigError::new(
                "config dir",
                format!("cannot open {}: {e}", dir.display()),
                "pass the directory that holds your `config` file",
            )
        })?;
        let path = dir.join(CONFIG_FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let problem = match e.kind() {
                io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
                _ => format!("cannot read {}: {e}", path.display()),
            };
            ConfigError::new(
                CONFIG_FILE_NAME,
                problem,
                "create it with your settings (the examples/ directory has complete config dirs to start from)",
            )
        })?;
        // A file that does not parse is reported alone: validating the
        // assignments that did parse would add misleading "missing" errors.
        let assignments = shell::parse_assignments(&text, env)
            .map_err(|errors| ConfigErrors(errors.iter().map(shell_error).collect()))?;
        Reader::new(dir, assignments).read_config()
    }
}

/// What a file name in the config resolved to.
enum ConfigDirFile {
    Found(PathBuf),
    Missing(PathBuf),
    NotAFile(PathBuf),
    /// Exists, but outside the config dir (directly or through a symlink).
    Outside(PathBuf),
}

/// One pass over the assignments: typed getters that record problems and
/// which keys were used.
struct Reader {
    dir: PathBuf,
    /// Last assignment wins, as in bash.
    values: HashMap<String, String>,
    /// Assigned names in first-assignment order, for warnings.
    names_in_order: Vec<String>,
    used: HashSet<String>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Reader {
    fn new(dir: PathBuf, assignments: Vec<shell::Assignment>) -> Self {
        let mut values = HashMap::new();
        let mut names_in_order = Vec::new();
        for assignment in assignments {
            if !values.contains_key(&assignment.name) {
                names_in_order.push(assignment.name.clone());
            }
            values.insert(assignment.name, assignment.value);
        }
        Self {
            dir,
            values,
            names_in_order,
            used: HashSet::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn error(&mut self, key: &str, problem: impl Into<String>, fix: &str) {
        self.errors.push(ConfigError::new(key, problem, fix));
    }

    /// The value of `key`; unset and empty are the same (bash `${KEY:-default}`).
    fn value(&mut self, key: &str) -> Option<String> {
        self.used.insert(key.to_string());
        self.values.get(key).filter(|v| !v.is_empty()).cloned()
    }

    /// A key with a default: an invalid value is reported and the default
    /// used so checking can go on.
    fn parsed_or<T>(
        &mut self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
        fix: &str,
    ) -> T {
        self.parsed(key, parse, fix).unwrap_or(default)
    }

    /// An optional key; None when unset or invalid (and then reported).
    fn parsed<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
        fix: &str,
    ) -> Option<T> {
        let value = self.value(key)?;
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(problem) => {
                self.error(key, problem, fix);
                None
            }
        }
    }

    fn duration_or(
        &mut self,
        key: &str,
        default_secs: u64,
        allow_zero: bool,
        fix: &str,
    ) -> Duration {
        let parse = |text: &str| {
            let duration = values::parse_duration(text)?;
            if duration.is_zero() && !allow_zero {
                return Err("must be longer than 0 seconds".to_string());
            }
            Ok(duration)
        };
        self.parsed_or(key, Duration::from_secs(default_secs), parse, fix)
    }

    fn resolve_file(&self, name: &str) -> ConfigDirFile {
        let path = self.dir.join(name);
        match path.canonicalize() {
            Err(_) => ConfigDirFile::Missing(path),
            Ok(real) if !real.starts_with(&self.dir) => ConfigDirFile::Outside(real),
            Ok(real) if !real.is_file() => ConfigDirFile::NotAFile(real),
            Ok(real) => ConfigDirFile::Found(real),
        }
    }

    /// Reports a resolved file that cannot be used; returns the usable path.
    fn usable_file(&mut self, key: &str, file: ConfigDirFile) -> Option<PathBuf> {
        const FIX: &str = "put the file in the config dir (the only host directory jobs can see) \
                           and give its name relative to the dir";
        match file {
            ConfigDirFile::Found(path) => return Some(path),
            ConfigDirFile::Missing(path) => {
                self.error(key, format!("{} does not exist", path.display()), FIX)
            }
            ConfigDirFile::NotAFile(path) => {
                self.error(key, format!("{} is not a file", path.display()), FIX)
            }
            ConfigDirFile::Outside(path) => self.error(
                key,
                format!("{} is outside the config dir", path.display()),
                FIX,
            ),
        }
        None
    }

    /// The key for backend `n`, falling back for backend 1 to the old
    /// unsuffixed spelling (`DRIVER_NAME` for `DRIVER_NAME_1`).
    fn backend_key(&mut self, base: &str, n: usize) -> String {
        let key = format!("{base}_{n}");
        if n != 1 || !LEGACY_UNSUFFIXED_KEYS.contains(&base) || !self.values.contains_key(base) {
            return key;
        }
        self.used.insert(base.to_string());
        if self.values.contains_key(&key) {
            self.warnings
                .push(format!("{base} is ignored because {key} is set"));
            return key;
        }
        base.to_string()
    }

    fn read_config(mut self) -> Result<Config, ConfigErrors> {
        let gh_token = Secret::new(self.value("GH_TOKEN").unwrap_or_default());
        let gh_user = self
            .parsed(
                "GH_USER",
                |v| values::check_github_login(v).map(|()| v.to_string()),
                "set it to the bot account's GitHub login",
            )
            .unwrap_or_default();
        let gh_ember_secret = match self.value("GH_EMBER_SECRET") {
            Some(secret) => Secret::new(secret),
            None => {
                self.error(
                    "GH_EMBER_SECRET",
                    "missing",
                    "set it to the webhook secret configured on GitHub",
                );
                Secret::default()
            }
        };
        let gh_api_url = self.parsed_or(
            "GH_API_URL",
            DEFAULT_GH_API_URL.to_string(),
            values::parse_http_url,
            "set it to the GitHub API base URL, e.g. https://api.github.com or https://HOST/api/v3",
        );
        let gh_repo = self.parsed_or(
            "GH_REPO",
            default_repo(),
            |v| RepoName::new(v.trim()).map_err(|e| e.to_string()),
            "set it to the watched repository as owner/name",
        );
        let gh_clone_url = self.parsed_or(
            "GH_CLONE_URL",
            format!("https://github.com/{gh_repo}.git"),
            |v| values::check_git_location(v).map(|()| v.to_string()),
            "set it to a git URL or path of the repository to clone",
        );
        let relay = self.read_relay();
        let backends = self.read_backends();
        let num_workers = self.parsed_or(
            "NUM_WORKERS",
            1,
            |v| values::parse_number(v, 1, MAX_WORKERS),
            "set it to how many jobs may run at once (1 or more)",
        );
        let web_addr = self.parsed_or(
            "WEB_ADDR",
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            |v| {
                v.trim()
                    .parse()
                    .map_err(|_| format!("{} is not an IP address", quoted(v)))
            },
            "set it to the IP address to listen on, e.g. 0.0.0.0 or 127.0.0.1",
        );
        let web_port = self.parsed_or(
            "WEB_PORT",
            DEFAULT_WEB_PORT,
            |v| values::parse_number(v, 0, u16::MAX),
            "set it to a TCP port number (0 picks a free one)",
        );
        let dir = self.dir.clone();
        let state_dir = self.parsed_or(
            "CI_DIR",
            PathBuf::from(DEFAULT_STATE_DIR),
            |v| values::check_single_argument(v).map(|()| dir.join(v)),
            "set it to the state directory (relative paths are inside the config dir)",
        );
        let build_file = self.parsed_or(
            "BUILD_FILE",
            DEFAULT_BUILD_FILE.to_string(),
            |v| values::check_checkout_path(v).map(|()| v.to_string()),
            "set it to the Containerfile's path relative to the repository root, e.g. Dockerfile",
        );
        const DURATION_FIX: &str =
            "give whole seconds, or a number with s, m or h (e.g. 90, 15m, 1h)";
        let job_timeout =
            self.duration_or("JOB_TIMEOUT", DEFAULT_JOB_TIMEOUT_SECS, false, DURATION_FIX);
        let plugin_start_timeout = self.duration_or(
            "PLUGIN_START_TIMEOUT",
            DEFAULT_PLUGIN_START_TIMEOUT_SECS,
            false,
            DURATION_FIX,
        );
        let shutdown_grace = self.duration_or(
            "SHUTDOWN_GRACE",
            DEFAULT_SHUTDOWN_GRACE_SECS,
            true,
            DURATION_FIX,
        );
        let podman_socket = self.parsed(
            "PODMAN_SOCKET",
            parse_socket_path,
            "set it to the absolute path of a Podman API socket, or leave it empty",
        );
        let sandbox_image = self.parsed(
            "SANDBOX_IMAGE",
            |v| values::check_single_argument(v).map(|()| v.to_string()),
            "set it to an image reference, or leave it empty to build the sandbox image",
        );
        let sandbox_skip_csi_sanity = self.parsed_or(
            "SANDBOX_SKIP_CSI_SANITY",
            false,
            values::parse_bool,
            "use 0 or 1",
        );
        let image_store_max_gb = self.parsed_or(
            "IMAGE_STORE_MAX_GB",
            DEFAULT_IMAGE_STORE_MAX_GB,
            |v| values::parse_number(v, 1, MAX_IMAGE_STORE_GB),
            "set it to a size in GB, 1 or more",
        );
        let trusted_users = self.read_trusted_users();
        let secrets = self
            .value("SECRETS")
            .map(|v| v.split_whitespace().map(Secret::new).collect())
            .unwrap_or_default();
        let web_admin_token = self.value("WEB_ADMIN_TOKEN").map(Secret::new);
        let logs = self.read_logs();
        let obsolete_keys = self
            .names_in_order
            .iter()
            .filter(|name| OBSOLETE_KEYS.contains(&name.as_str()))
            .cloned()
            .collect();
        // backends.len() is NUM_DRIVERS whenever the config loads, the only
        // case in which warnings are shown.
        let unused_warnings = unused_key_warnings(&self.names_in_order, &self.used, backends.len());
        self.warnings.extend(unused_warnings);

        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        Ok(Config {
            dir: self.dir,
            gh_token,
            gh_user,
            gh_ember_secret,
            gh_api_url,
            gh_repo,
            gh_clone_url,
            backends,
            num_workers,
            web_addr,
            web_port,
            state_dir,
            build_file,
            job_timeout,
            plugin_start_timeout,
            shutdown_grace,
            podman_socket,
            sandbox_image,
            sandbox_skip_csi_sanity,
            image_store_max_gb,
            trusted_users,
            secrets,
            web_admin_token,
            relay,
            logs,
            obsolete_keys,
            warnings: self.warnings,
        })
    }

    fn read_relay(&mut self) -> RelayConfig {
        let smee_id = self.parsed(
            "SMEE_ID",
            |v| values::check_smee_id(v).map(|()| v.to_string()),
            "set it to the channel id from https://smee.io/<id>",
        );
        let smee_url = self.parsed(
            "SMEE_URL",
            values::parse_http_url,
            "set it to the full channel URL, e.g. https://smee.io/<id>",
        );
        if smee_url.is_some() && smee_id.is_some() {
            self.warnings
                .push("SMEE_ID is ignored because SMEE_URL is set".to_string());
        }
        let poll_interval = self.parsed(
            "POLL_INTERVAL",
            |v| {
                let interval = values::parse_duration(v)?;
                if interval.is_zero() {
                    return Err("must be longer than 0 seconds".to_string());
                }
                Ok(interval)
            },
            "give whole seconds, or a number with s, m or h (e.g. 300, 5m)",
        );
        RelayConfig {
            smee_url: smee_url.or_else(|| smee_id.map(|id| format!("https://smee.io/{id}"))),
            poll_interval,
        }
    }

    fn read_backends(&mut self) -> Vec<BackendConfig> {
        let num_drivers = self.parsed_or(
            "NUM_DRIVERS",
            1,
            |v| values::parse_number(v, 1, MAX_DRIVERS),
            "set it to the number of backends (DRIVER_NAME_1 ... DRIVER_NAME_n)",
        );
        let default_sanity = self
            .value("SANITY_COMMAND")
            .unwrap_or_else(|| DEFAULT_SANITY_COMMAND.to_string());
        let mut names: Vec<BackendName> = Vec::new();
        let mut backends = Vec::new();
        for n in 1..=num_drivers {
            let name = self.read_backend_name(n, &names);
            if let Some(name) = &name {
                names.push(name.clone());
            }
            if let Some(backend) = self.read_backend(n, name, &default_sanity) {
                backends.push(backend);
            }
        }
        backends
    }

    /// DRIVER_NAME_n, checked against the names of earlier backends.
    fn read_backend_name(&mut self, n: usize, earlier: &[BackendName]) -> Option<BackendName> {
        let key = self.backend_key("DRIVER_NAME", n);
        let Some(value) = self.value(&key) else {
            let fix = "set it to the backend's name; its status context is 3rdparty/<name>";
            self.error(&key, "missing", fix);
            return None;
        };
        let name = match BackendName::new(value.trim()) {
            Ok(name) => name,
            Err(e) => {
                self.error(&key, e.to_string(), "use letters, digits, '.', '_' and '-'");
                return None;
            }
        };
        if let Some(i) = earlier
            .iter()
            .position(|other| other.matches(name.as_str()))
        {
            let problem = format!(
                "{} is also the name of backend {} (names are compared ignoring case)",
                quoted(name.as_str()),
                i + 1
            );
            self.error(&key, problem, "give each backend its own name");
            return None;
        }
        Some(name)
    }

    /// Backend `n`, or None when a required part is unusable (reported).
    /// The optional parts are checked even then, so all problems show.
    fn read_backend(
        &mut self,
        n: usize,
        name: Option<BackendName>,
        default_sanity: &str,
    ) -> Option<BackendConfig> {
        let config_key = self.backend_key("DRIVER_CONFIG", n);
        let driver_config = self.read_driver_config(&config_key);
        let pre_run_key = self.backend_key("PRE_RUN", n);
        let pre_run = self.read_script(&pre_run_key);
        let post_run_key = self.backend_key("POST_RUN", n);
        let post_run = self.read_script(&post_run_key);
        let sanity_command = self
            .value(&format!("SANITY_COMMAND_{n}"))
            .unwrap_or_else(|| default_sanity.to_string());
        let extra_packages =
            self.read_packages(&format!("EXTRA_PACKAGES_{n}"), values::check_debian_package);
        let extra_pip =
            self.read_packages(&format!("EXTRA_PIP_{n}"), values::check_pip_requirement);
        let containerfile_key = format!("EXTRA_CONTAINERFILE_{n}");
        let extra_containerfile = self.value(&containerfile_key).and_then(|name| {
            let file = self.resolve_file(name.trim());
            self.usable_file(&containerfile_key, file)
        });
        Some(BackendConfig {
            index: n,
            name: name?,
            driver_config: driver_config?,
            pre_run,
            post_run,
            sanity_command,
            extra_packages,
            extra_pip,
            extra_containerfile,
        })
    }

    /// JSON object text, else a script file in the config dir.
    fn read_driver_config(&mut self, key: &str) -> Option<DriverConfig> {
        let Some(value) = self.value(key) else {
            let fix =
                "set it to the Ember-CSI backend JSON, or the name of a script in the config dir \
                       that sets DRIVER_CONFIG";
            self.error(key, "missing", fix);
            return None;
        };
        let text = value.trim();
        let json_error = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => return Some(DriverConfig::Json(text.to_string())),
            Ok(_) => {
                let fix =
                    "write the backend settings as a JSON object: {\"name\": ..., \"driver\": ...}";
                self.error(key, "is JSON but not an object", fix);
                return None;
            }
            Err(e) => e,
        };
        // Only a plausible file name is echoed: the value may be broken JSON
        // full of passwords.
        let looks_like_file_name = !text.starts_with('{') && !text.chars().any(char::is_whitespace);
        if looks_like_file_name {
            match self.resolve_file(text) {
                ConfigDirFile::Found(path) => return Some(DriverConfig::Script(path)),
                ConfigDirFile::Outside(path) => {
                    let problem = format!("script {} is outside the config dir", path.display());
                    self.error(key, problem, "copy the script into the config dir");
                    return None;
                }
                ConfigDirFile::Missing(path) | ConfigDirFile::NotAFile(path) => {
                    let problem = format!(
                        "neither valid JSON ({json_error}) nor an existing file ({} not found)",
                        path.display()
                    );
                    self.error(key, problem, DRIVER_CONFIG_FIX);
                    return None;
                }
            }
        }
        let problem =
            format!("neither valid JSON ({json_error}) nor the name of a file in the config dir");
        self.error(key, problem, DRIVER_CONFIG_FIX);
        None
    }

    /// A file in the config dir when the value names one, else inline text.
    fn read_script(&mut self, key: &str) -> Option<Script> {
        let value = self.value(key)?;
        let candidate = value.trim();
        if candidate.is_empty() {
            return None;
        }
        if candidate.chars().any(char::is_whitespace) {
            return Some(Script::Inline(value));
        }
        let looks_like_path = candidate.contains('/') || candidate.ends_with(".sh");
        match self.resolve_file(candidate) {
            ConfigDirFile::Found(path) => Some(Script::File(path)),
            ConfigDirFile::Missing(_) if !looks_like_path => Some(Script::Inline(value)),
            unusable => {
                self.usable_file(key, unusable);
                None
            }
        }
    }

    fn read_packages(&mut self, key: &str, check: fn(&str) -> Result<(), String>) -> Vec<String> {
        let packages: Vec<String> = self
            .value(key)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        for package in &packages {
            if let Err(problem) = check(package) {
                self.error(key, problem, "list package names separated by spaces");
            }
        }
        packages
    }

    fn read_trusted_users(&mut self) -> Vec<String> {
        let users = self
            .value("TRUSTED_USERS")
            .map(|v| values::split_list(&v))
            .unwrap_or_default();
        for user in &users {
            if let Err(problem) = values::check_github_login(user) {
                self.error(
                    "TRUSTED_USERS",
                    problem,
                    "list GitHub logins separated by spaces or commas",
                );
            }
        }
        users
    }

    fn read_logs(&mut self) -> LogsConfig {
        let repo = self.parsed(
            "LOGS_REPO",
            |v| values::check_git_location(v).map(|()| v.to_string()),
            "set it to the git URL the logs are pushed to, or leave it empty to keep logs local",
        );
        let branch = self.parsed_or(
            "LOGS_BRANCH",
            DEFAULT_LOGS_BRANCH.to_string(),
            |v| values::check_branch_name(v).map(|()| v.to_string()),
            "set it to a branch name, e.g. gh-pages",
        );
        let url = self.parsed(
            "LOGS_URL",
            values::parse_http_url,
            "set it to the public base URL of the pushed pages, e.g. https://OWNER.github.io/REPO",
        );
        let retention_days = self.parsed_or(
            "LOG_RETENTION_DAYS",
            DEFAULT_LOG_RETENTION_DAYS,
            |v| values::parse_number(v, 1, MAX_LOG_RETENTION_DAYS),
            "set it to how many days logs are kept, 1 or more",
        );
        LogsConfig {
            repo,
            branch,
            url,
            retention_days,
        }
    }
}

const DRIVER_CONFIG_FIX: &str = "set it to the Ember-CSI backend JSON object, or to the name \
    of a script in the config dir that sets DRIVER_CONFIG";

fn default_repo() -> RepoName {
    RepoName::new(DEFAULT_GH_REPO).expect("the default repository name is valid")
}

/// `/run/podman/podman.sock` or `unix:///run/podman/podman.sock`.
fn parse_socket_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text.trim().strip_prefix("unix://").unwrap_or(text.trim()));
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", quoted(text)));
    }
    Ok(path.to_path_buf())
}
