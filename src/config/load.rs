//! Turns a config dir into a validated [`Config`]: reads `config` with the
//! bash-compatible reader, checks every key, resolves script and file
//! names against the dir, and reports every problem at once with a fix, so
//! a vendor gets one complete list instead of one error per restart.
//!
//! Only this module reads the config dir; it does not create anything
//! (CI_DIR is created by whoever uses it).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::errors::{shell_error, ConfigError, ConfigErrors};
use super::hosts::{self, HostName, PodmanHost};
use super::keys::{
    self, backend_key, key, unused_key_warnings, Scope, Secrecy, CONFIG_FILE_NAME, KEYS,
    MAX_DRIVERS, MAX_IMAGE_STORE_GB, MAX_LOG_RETENTION_DAYS, MAX_WORKERS, OBSOLETE_KEYS,
};
use super::plugin;
use super::shell;
use super::types::{
    BackendConfig, Config, CsiSanityBuild, CsiSanitySource, DriverConfig, ExecutorConfig,
    GitHubConfig, LogsConfig, PluginSettings, RelayConfig, Script, Secret, ServiceConfig,
    WebConfig,
};
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

    /// A key with a default in the key table: an invalid value is reported
    /// (with the table's fix) and the default used so checking can go on.
    /// The default goes through the same parser as a written value.
    fn parsed_or_default<T>(&mut self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> T {
        let row = key(name);
        let default = row
            .default_text()
            .unwrap_or_else(|| panic!("{name} has no default in the key table"));
        self.parsed_or_default_text(name, default, parse)
    }

    /// [`Reader::parsed_or_default`] with the default's text given (a
    /// default that names another key's value).
    fn parsed_or_default_text<T>(
        &mut self,
        name: &str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match self.parsed(name, &parse) {
            Some(value) => value,
            None => parse(default)
                .unwrap_or_else(|problem| panic!("the default of {name} is invalid: {problem}")),
        }
    }

    /// An optional key; None when unset or invalid (and then reported with
    /// the key table's fix).
    fn parsed<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let fix = self.fix(name);
        let value = self.value(name)?;
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(problem) => {
                self.error(name, problem, fix);
                None
            }
        }
    }

    /// The fix the key table gives for `name` (`DRIVER_NAME_2` finds the
    /// per-backend row, `DRIVER_NAME` the global one or its unsuffixed form).
    fn fix(&self, name: &str) -> &'static str {
        let per_backend = name
            .rsplit_once('_')
            .filter(|(_, n)| n.parse::<usize>().is_ok())
            .and_then(|(base, _)| {
                KEYS.iter()
                    .find(|row| row.name == base && row.scope == Scope::PerBackend)
            });
        per_backend
            .or_else(|| KEYS.iter().find(|row| row.name == name))
            .map_or("", |row| row.fix)
    }

    /// The values of every key the table marks secret, as the masker needs
    /// them: a list key value by value.
    fn secret_values(&self) -> Vec<Secret> {
        let mut secrets: Vec<String> = KEYS
            .iter()
            .filter(|row| row.is_secret())
            .filter_map(|row| Some((row.secrecy, self.values.get(row.name)?)))
            .flat_map(|(secrecy, value)| match secrecy {
                Secrecy::List => value.split_whitespace().map(str::to_string).collect(),
                _ => vec![value.clone()],
            })
            .filter(|value| !value.is_empty())
            .collect();
        secrets.sort();
        secrets.dedup();
        secrets.into_iter().map(Secret::new).collect()
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
    fn key_for_backend(&mut self, base: &str, n: usize) -> String {
        let key = backend_key(base).name_for_backend(n);
        if n != 1 || !backend_key(base).has_unsuffixed_form || !self.values.contains_key(base) {
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

    /// Reads every key, in the order problems are reported (the README's
    /// order, mostly), and hands each section its keys.
    fn read_config(mut self) -> Result<Config, ConfigErrors> {
        let token = Secret::new(self.value("GH_TOKEN").unwrap_or_default());
        let user = self
            .parsed("GH_USER", |v| {
                values::check_github_login(v).map(|()| v.to_string())
            })
            .unwrap_or_default();
        let webhook_secret = match self.value("GH_EMBER_SECRET") {
            Some(secret) => Secret::new(secret),
            None => {
                let fix = self.fix("GH_EMBER_SECRET");
                self.error("GH_EMBER_SECRET", "missing", fix);
                Secret::default()
            }
        };
        let api_url = self.parsed_or_default("GH_API_URL", values::parse_http_url);
        let repo = self.parsed_or_default("GH_REPO", |v| {
            RepoName::new(v.trim()).map_err(|e| e.to_string())
        });
        let clone_url_default = key("GH_CLONE_URL")
            .default_text()
            .expect("GH_CLONE_URL has a default")
            .replace("$GH_REPO", &repo.to_string());
        let clone_url = self.parsed_or_default_text("GH_CLONE_URL", &clone_url_default, |v| {
            values::check_git_location(v).map(|()| v.to_string())
        });
        let relay = self.read_relay();
        let hosts = self.read_hosts();
        let pin = self.read_csi_sanity_pin();
        let mut backends = self.read_backends(&pin, &hosts);
        let num_workers =
            self.parsed_or_default("NUM_WORKERS", |v| values::parse_number(v, 1, MAX_WORKERS));
        let web_addr = self.parsed_or_default("WEB_ADDR", |v| {
            v.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("{} is not an IP address", quoted(v)))
        });
        let web_port = self.parsed_or_default("WEB_PORT", |v| values::parse_number(v, 0, u16::MAX));
        let ui_port =
            self.parsed_or_default("WEB_UI_PORT", |v| values::parse_number(v, 0, u16::MAX));
        let dir = self.dir.clone();
        let state_dir = self.parsed_or_default("CI_DIR", |v| {
            values::check_single_argument(v).map(|()| dir.join(v))
        });
        let build_file = self.parsed_or_default("BUILD_FILE", |v| {
            values::check_checkout_path(v).map(|()| v.to_string())
        });
        let job_timeout = self.parsed_or_default("JOB_TIMEOUT", parse_positive_duration);
        let plugin_start_timeout =
            self.parsed_or_default("PLUGIN_START_TIMEOUT", parse_positive_duration);
        let shutdown_grace = self.parsed_or_default("SHUTDOWN_GRACE", values::parse_duration);
        let podman_socket = self.parsed("PODMAN_SOCKET", parse_socket_path);
        let sandbox_image = self.parsed("SANDBOX_IMAGE", |v| {
            values::check_single_argument(v).map(|()| v.to_string())
        });
        let sandbox_base_image = self.parsed_or_default("SANDBOX_BASE_IMAGE", |v| {
            values::check_single_argument(v).map(|()| v.to_string())
        });
        let (csi_sanity, csi_sanity_extra) =
            self.finish_csi_sanity(pin, &mut backends, sandbox_image.is_some());
        let image_store_max_gb = self.parsed_or_default("IMAGE_STORE_MAX_GB", |v| {
            values::parse_number(v, 1, MAX_IMAGE_STORE_GB)
        });
        let trusted_users = self.read_trusted_users();
        let secrets = self
            .value("SECRETS")
            .map(|v| v.split_whitespace().map(Secret::new).collect())
            .unwrap_or_default();
        let admin_token = self.value("WEB_ADMIN_TOKEN").map(Secret::new);
        let logs = self.read_logs(secrets, !token.is_empty());
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
        let secret_values = self.secret_values();
        Ok(Config {
            github: GitHubConfig {
                token,
                user,
                webhook_secret,
                api_url,
                repo,
                trusted_users,
            },
            relay,
            backends,
            executor: ExecutorConfig {
                config_dir: self.dir.clone(),
                state_dir: state_dir.clone(),
                num_workers,
                clone_url,
                build_file,
                job_timeout,
                plugin_start_timeout,
                podman_socket,
                hosts,
                sandbox_image,
                sandbox_base_image,
                csi_sanity,
                csi_sanity_extra,
                image_store_max_gb,
            },
            service: ServiceConfig {
                state_dir,
                num_workers,
                shutdown_grace,
            },
            web: WebConfig {
                addr: web_addr,
                port: web_port,
                ui_port,
                admin_token,
            },
            logs,
            dir: self.dir,
            obsolete_keys,
            warnings: self.warnings,
            secret_values,
        })
    }

    /// CSI_SANITY_REPO/VERSION/COMMIT (the build for CSI spec 1.x) and
    /// whether the sandbox is built without csi-sanity.
    fn read_csi_sanity_pin(&mut self) -> CsiSanityPin {
        let skip = self.parsed_or_default("SANDBOX_SKIP_CSI_SANITY", values::parse_bool);
        let repo = self.parsed_or_default("CSI_SANITY_REPO", |v| {
            values::check_git_location(v).map(|()| v.to_string())
        });
        let version = self.parsed_or_default("CSI_SANITY_VERSION", plugin::parse_tag);
        let commit = self.parsed_or_default("CSI_SANITY_COMMIT", plugin::parse_commit);
        let version_changed = version != keys::CSI_SANITY_VERSION;
        if version_changed && commit == keys::CSI_SANITY_COMMIT {
            self.error(
                "CSI_SANITY_COMMIT",
                format!("CSI_SANITY_VERSION is {version}, but the commit is still the one pinned for {}", keys::CSI_SANITY_VERSION),
                "set CSI_SANITY_COMMIT to the commit id the tag names",
            );
        }
        CsiSanityPin {
            skip,
            source: CsiSanitySource {
                repo,
                version,
                commit,
            },
        }
    }

    /// The csi-sanity source and the other builds backends need, or None
    /// when skipped. Skipping while a backend's sanity command runs
    /// csi-sanity (in a sandbox we build) is a config error: every job
    /// would end `failure` (exit 127), blaming the PR.
    fn finish_csi_sanity(
        &mut self,
        pin: CsiSanityPin,
        backends: &mut [BackendConfig],
        own_sandbox_image: bool,
    ) -> (Option<CsiSanitySource>, Vec<CsiSanityBuild>) {
        if !pin.skip && !own_sandbox_image {
            let default = pin.source.build();
            let mut extra: Vec<CsiSanityBuild> = Vec::new();
            for backend in backends.iter_mut() {
                let build = backend.csi_sanity.get_or_insert_with(|| default.clone());
                let known = std::iter::once(&default).chain(&extra);
                let clash = known
                    .filter(|other| other.version == build.version)
                    .find(|other| other.commit != build.commit);
                if let Some(other) = clash {
                    self.error(
                        &backend_key("CSI_SANITY_COMMIT").name_for_backend(backend.index),
                        format!(
                            "csi-sanity {} is pinned to two commits: {} and {}",
                            build.version, other.commit, build.commit
                        ),
                        "give every use of a tag the same commit id",
                    );
                } else if *build != default && !extra.contains(build) {
                    extra.push(build.clone());
                }
            }
            return (Some(pin.source), extra);
        }
        for backend in backends.iter_mut() {
            backend.csi_sanity = None;
        }
        // SANDBOX_IMAGE: the vendor's image may well have csi-sanity.
        let checked = if own_sandbox_image || !pin.skip {
            &[][..]
        } else {
            &*backends
        };
        for backend in checked {
            let needs_it = backend
                .sanity_command
                .split_whitespace()
                .any(|word| word.rsplit('/').next() == Some("csi-sanity"));
            if needs_it {
                self.error(
                    "SANDBOX_SKIP_CSI_SANITY",
                    format!(
                        "the sandbox is built without csi-sanity, but backend {}'s sanity command runs it ({})",
                        backend.name, backend.sanity_command
                    ),
                    "remove SANDBOX_SKIP_CSI_SANITY, or set SANITY_COMMAND to a command that does not need csi-sanity",
                );
            }
        }
        (None, Vec::new())
    }

    fn read_relay(&mut self) -> RelayConfig {
        let smee_id = self.parsed("SMEE_ID", |v| {
            values::check_smee_id(v).map(|()| v.to_string())
        });
        let smee_url = self.parsed("SMEE_URL", values::parse_http_url);
        if smee_url.is_some() && smee_id.is_some() {
            self.warnings
                .push("SMEE_ID is ignored because SMEE_URL is set".to_string());
        }
        let poll_interval = self.parsed("POLL_INTERVAL", parse_positive_duration);
        RelayConfig {
            smee_url: smee_url.or_else(|| smee_id.map(|id| format!("https://smee.io/{id}"))),
            poll_interval,
        }
    }

    /// PODMAN_HOSTS; identity files must be in the config dir.
    fn read_hosts(&mut self) -> Vec<PodmanHost> {
        let Some(text) = self.value("PODMAN_HOSTS") else {
            return Vec::new();
        };
        let parsed = hosts::parse_podman_hosts(&text, |name| match self.resolve_file(name) {
            ConfigDirFile::Found(path) => Ok(path),
            ConfigDirFile::Missing(path) => {
                Err(format!("identity {} does not exist", path.display()))
            }
            ConfigDirFile::NotAFile(path) => {
                Err(format!("identity {} is not a file", path.display()))
            }
            ConfigDirFile::Outside(path) => Err(format!(
                "identity {} is outside the config dir",
                path.display()
            )),
        });
        match parsed {
            Ok(hosts) => hosts,
            Err(problem) => {
                let fix = self.fix("PODMAN_HOSTS");
                self.error("PODMAN_HOSTS", problem, fix);
                Vec::new()
            }
        }
    }

    fn read_backends(&mut self, pin: &CsiSanityPin, hosts: &[PodmanHost]) -> Vec<BackendConfig> {
        let num_drivers =
            self.parsed_or_default("NUM_DRIVERS", |v| values::parse_number(v, 1, MAX_DRIVERS));
        let default_sanity = self.value("SANITY_COMMAND");
        let default_timeout = self.parsed_or_default("SANITY_TIMEOUT", parse_positive_duration);
        let mut names: Vec<BackendName> = Vec::new();
        let mut backends = Vec::new();
        for n in 1..=num_drivers {
            let name = self.read_backend_name(n, &names);
            if let Some(name) = &name {
                names.push(name.clone());
            }
            let host_key = backend_key("DRIVER_HOST").name_for_backend(n);
            let backend_hosts = self
                .parsed(&host_key, |v| hosts::parse_driver_hosts(v, hosts))
                .unwrap_or_else(|| vec![HostName::local()]);
            let defaults = BackendDefaults {
                sanity_command: default_sanity.as_deref(),
                sanity_timeout: default_timeout,
                pin,
            };
            if let Some(mut backend) = self.read_backend(n, name, &defaults) {
                backend.hosts = backend_hosts;
                backends.push(backend);
            }
        }
        backends
    }

    /// DRIVER_NAME_n, checked against the names of earlier backends.
    fn read_backend_name(&mut self, n: usize, earlier: &[BackendName]) -> Option<BackendName> {
        let key = self.key_for_backend("DRIVER_NAME", n);
        let Some(value) = self.value(&key) else {
            self.error(&key, "missing", backend_key("DRIVER_NAME").fix);
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
        defaults: &BackendDefaults<'_>,
    ) -> Option<BackendConfig> {
        let config_key = self.key_for_backend("DRIVER_CONFIG", n);
        let driver_config = self.read_driver_config(&config_key);
        let pre_run_key = self.key_for_backend("PRE_RUN", n);
        let pre_run = self.read_script(&pre_run_key);
        let post_run_key = self.key_for_backend("POST_RUN", n);
        let post_run = self.read_script(&post_run_key);
        let plugin = self.read_plugin_settings(n);
        let csi_sanity = self.read_csi_sanity_pick(n, &plugin.spec_version);
        let sanity_command = self.read_sanity_command(n, defaults, csi_sanity.as_ref());
        let sanity_timeout = self
            .parsed(
                &backend_key("SANITY_TIMEOUT").name_for_backend(n),
                parse_positive_duration,
            )
            .unwrap_or(defaults.sanity_timeout);
        let extra_packages = self.read_packages(
            &backend_key("EXTRA_PACKAGES").name_for_backend(n),
            values::check_debian_package,
        );
        let extra_pip = self.read_packages(
            &backend_key("EXTRA_PIP").name_for_backend(n),
            values::check_pip_requirement,
        );
        let containerfile_key = backend_key("EXTRA_CONTAINERFILE").name_for_backend(n);
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
            sanity_timeout,
            extra_packages,
            extra_pip,
            extra_containerfile,
            plugin,
            csi_sanity,
            hosts: vec![HostName::local()],
        })
    }

    /// A per-backend key with a default in the key table.
    fn backend_parsed_or_default<T>(
        &mut self,
        base: &str,
        n: usize,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        let row = backend_key(base);
        let default = row
            .default_text()
            .unwrap_or_else(|| panic!("{base}_n has no default in the key table"));
        self.parsed_or_default_text(&row.name_for_backend(n), default, parse)
    }

    /// CSI_SPEC_VERSION_n, X_CSI_EMBER_CONFIG_n, X_CSI_PERSISTENCE_CONFIG_n,
    /// SANDBOX_DAEMONS_n.
    fn read_plugin_settings(&mut self, n: usize) -> PluginSettings {
        let daemons_key = backend_key("SANDBOX_DAEMONS").name_for_backend(n);
        // Empty means none here: `${KEY:-default}` would bring both back.
        let daemons = match self.values.get(&daemons_key) {
            Some(text) if text.trim().is_empty() => {
                self.used.insert(daemons_key);
                Vec::new()
            }
            _ => self.backend_parsed_or_default("SANDBOX_DAEMONS", n, plugin::parse_daemons),
        };
        PluginSettings {
            spec_version: self.backend_parsed_or_default(
                "CSI_SPEC_VERSION",
                n,
                plugin::parse_spec_version,
            ),
            ember_config: self.backend_parsed_or_default(
                "X_CSI_EMBER_CONFIG",
                n,
                plugin::parse_json_object,
            ),
            persistence_config: self.backend_parsed_or_default(
                "X_CSI_PERSISTENCE_CONFIG",
                n,
                plugin::parse_json_object,
            ),
            daemons,
        }
    }

    /// CSI_SANITY_VERSION_n/COMMIT_n, else the old CI's csi-sanity for a
    /// spec 0.x; None means the CSI_SANITY_VERSION pin.
    fn read_csi_sanity_pick(&mut self, n: usize, spec_version: &str) -> Option<CsiSanityBuild> {
        let version_key = backend_key("CSI_SANITY_VERSION").name_for_backend(n);
        let commit_key = backend_key("CSI_SANITY_COMMIT").name_for_backend(n);
        let version = self.parsed(&version_key, plugin::parse_tag);
        let commit = self.parsed(&commit_key, plugin::parse_commit);
        match (version, commit) {
            (Some(version), Some(commit)) => Some(CsiSanityBuild { version, commit }),
            (Some(_), None) => {
                let fix = self.fix(&commit_key);
                self.error(&commit_key, format!("missing: {version_key} is set"), fix);
                None
            }
            (None, Some(_)) => {
                let fix = self.fix(&version_key);
                self.error(&version_key, format!("missing: {commit_key} is set"), fix);
                None
            }
            (None, None) => plugin::csi_sanity_for_spec(spec_version),
        }
    }

    /// SANITY_COMMAND_n, SANITY_COMMAND, else the default command for the
    /// backend's csi-sanity with SANITY_ARGS_n; the old worker's flags are
    /// translated in SANITY_ARGS_n and refused in a csi-sanity command.
    fn read_sanity_command(
        &mut self,
        n: usize,
        defaults: &BackendDefaults<'_>,
        pick: Option<&CsiSanityBuild>,
    ) -> String {
        let command_key = backend_key("SANITY_COMMAND").name_for_backend(n);
        let args_key = backend_key("SANITY_ARGS").name_for_backend(n);
        let own = self.value(&command_key);
        let args = self.value(&args_key);
        let tag = pick.map_or(defaults.pin.source.version.as_str(), |b| &b.version);
        let (explicit_key, explicit) = match (own, defaults.sanity_command) {
            (Some(command), _) => (command_key, command),
            (None, Some(command)) => ("SANITY_COMMAND".to_string(), command.to_string()),
            (None, None) => {
                let translated = plugin::translate_sanity_args(args.as_deref().unwrap_or(""), tag);
                for note in &translated.notes {
                    self.warnings.push(format!("{args_key}: {note}"));
                }
                if !translated.refused.is_empty() {
                    self.error(
                        &args_key,
                        format!(
                            "csi-sanity {tag} has no equivalent of {}",
                            translated.refused.join("; ")
                        ),
                        "remove them",
                    );
                }
                let build = pick.cloned().unwrap_or_else(|| defaults.pin.source.build());
                return plugin::default_sanity_command(Some(&build), &translated.args);
            }
        };
        if args.is_some() {
            self.error(
                &args_key,
                format!("extends the default sanity command only, and {explicit_key} is set"),
                "put the flags into the sanity command, or leave the command unset",
            );
        }
        let old_flags = plugin::old_flags_in_command(&explicit, tag);
        if !old_flags.is_empty() {
            self.error(
                &explicit_key,
                format!(
                    "runs csi-sanity {tag} (backend {n}) with the old worker's flags: {}",
                    old_flags.join("; ")
                ),
                "change them as named, or leave the command unset and give the flags in SANITY_ARGS_n, where they are translated",
            );
        }
        explicit
    }

    /// JSON object text, else a script file in the config dir.
    fn read_driver_config(&mut self, key: &str) -> Option<DriverConfig> {
        let Some(value) = self.value(key) else {
            self.error(key, "missing", backend_key("DRIVER_CONFIG").fix);
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
                    self.error(key, problem, backend_key("DRIVER_CONFIG").fix);
                    return None;
                }
            }
        }
        let problem =
            format!("neither valid JSON ({json_error}) nor the name of a file in the config dir");
        self.error(key, problem, backend_key("DRIVER_CONFIG").fix);
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
                let fix = self.fix(key);
                self.error(key, problem, fix);
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
                self.error("TRUSTED_USERS", problem, key("TRUSTED_USERS").fix);
            }
        }
        users
    }

    /// Where logs go: LOGS_REPO when set; with GH_TOKEN and no LOGS_* key
    /// assigned at all, the old CI's place (EMBER_LOGS_REPO, one branch per
    /// backend, EMBER_LOGS_URL); otherwise the state dir only.
    fn read_logs(&mut self, secrets: Vec<Secret>, has_token: bool) -> LogsConfig {
        // Assigned, even empty (`LOGS_REPO=""` keeps logs local).
        let explicit: Vec<&str> = ["LOGS_REPO", "LOGS_BRANCH", "LOGS_URL"]
            .into_iter()
            .filter(|name| self.values.contains_key(*name))
            .collect();
        let repo = self.parsed("LOGS_REPO", |v| {
            values::check_git_location(v).map(|()| v.to_string())
        });
        let branch = self.parsed_or_default("LOGS_BRANCH", |v| {
            values::check_branch_name(v).map(|()| v.to_string())
        });
        let url = self.parsed("LOGS_URL", values::parse_http_url);
        let ember_repo_off = self
            .values
            .get("EMBER_LOGS_REPO")
            .is_some_and(String::is_empty);
        let ember_repo = self.parsed_or_default("EMBER_LOGS_REPO", |v| {
            values::check_git_location(v).map(|()| v.to_string())
        });
        let ember_url = self.parsed_or_default("EMBER_LOGS_URL", values::parse_http_url);
        let retention_days = self.parsed_or_default("LOG_RETENTION_DAYS", |v| {
            values::parse_number(v, 1, MAX_LOG_RETENTION_DAYS)
        });
        let local = |reason: String| (None, None, false, reason);
        let (repo, url, branch_per_backend, reason) = if let Some(repo) = repo {
            (Some(repo), url, false, "LOGS_REPO is set".to_string())
        } else if !explicit.is_empty() {
            if explicit != ["LOGS_REPO"] {
                self.warnings.push(format!(
                    "{} set without LOGS_REPO: logs stay on this host",
                    explicit.join(", ")
                ));
            }
            local(format!("{} set, LOGS_REPO empty", explicit.join(", ")))
        } else if !has_token {
            local("no GH_TOKEN to push with".to_string())
        } else if ember_repo_off {
            local("EMBER_LOGS_REPO is empty".to_string())
        } else {
            (
                Some(ember_repo),
                Some(ember_url),
                true,
                "the old CI's place: GH_TOKEN is set and no LOGS_* key".to_string(),
            )
        };
        LogsConfig {
            repo,
            branch,
            url,
            branch_per_backend,
            reason,
            retention_days,
            secrets,
        }
    }
}

/// A duration that must not be zero (a timeout, an interval).
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = values::parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be longer than 0 seconds".to_string());
    }
    Ok(duration)
}

/// `/run/podman/podman.sock` or `unix:///run/podman/podman.sock`.
fn parse_socket_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text.trim().strip_prefix("unix://").unwrap_or(text.trim()));
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", quoted(text)));
    }
    Ok(path.to_path_buf())
}

/// CSI_SANITY_* as read, before the backends say which builds they need.
struct CsiSanityPin {
    skip: bool,
    source: CsiSanitySource,
}

impl CsiSanitySource {
    /// The pinned tag and commit, as a build.
    pub fn build(&self) -> CsiSanityBuild {
        CsiSanityBuild {
            version: self.version.clone(),
            commit: self.commit.clone(),
        }
    }
}

/// What a backend takes from the global keys.
struct BackendDefaults<'a> {
    /// SANITY_COMMAND, when set.
    sanity_command: Option<&'a str>,
    sanity_timeout: Duration,
    pin: &'a CsiSanityPin,
}
