//! The config file's vocabulary: ONE table of keys ([`KEYS`]: name, section,
//! default, fix, secret or not) that drives the loader's defaults and
//! fixes, the warnings about unknown and obsolete keys, which values the
//! summary and the log masker hide, and the test that the README's config
//! table lists every key. Pure data and functions; the loader decides what
//! to read.
//!
//! Adding a key: one row here, its typed field in its section (`types`),
//! and one line in the loader reading it through this row.

use std::collections::{BTreeMap, HashSet};

use super::plugin;
use super::values;

/// The file inside the config dir that holds the assignments.
pub const CONFIG_FILE_NAME: &str = "config";

/// More backends than anyone runs; bounds the per-backend checks.
pub(super) const MAX_DRIVERS: usize = 100;
pub(super) const MAX_WORKERS: usize = 64;
pub(super) const MAX_IMAGE_STORE_GB: u64 = 1_000_000;
pub(super) const MAX_LOG_RETENTION_DAYS: u32 = 36_500;

/// Keys of the old system that mean nothing now; accepted, reported.
pub const OBSOLETE_KEYS: [&str; 4] = [
    "WORKER_NAME",
    "WORKER_PASSWORD",
    "BRIDGE_INTERFACE",
    "BRIDGE_NAME",
];

/// The part of the service a key configures; each part gets only its
/// section of the [`super::Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    GitHub,
    Relay,
    Backends,
    Executor,
    Service,
    Web,
    Logs,
}

/// Whether a key must be set, and the value used when it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
    /// The value as it would be written in the config file, parsed by the
    /// same parser as a written value. `$GH_REPO` stands for that key.
    DefaultTo(&'static str),
}

/// Whether a key's value is a credential, and how it is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    Public,
    /// The whole value is one secret.
    Whole,
    /// A whitespace-separated list of secrets.
    List,
}

/// Whether a key is set once, or once per backend with an `_n` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    PerBackend,
}

/// One row of the key table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The name; per-backend keys without their `_n`.
    pub name: &'static str,
    pub section: Section,
    pub scope: Scope,
    pub need: Need,
    /// What to set it to: the fix shown with a problem about it.
    pub fix: &'static str,
    /// Whether its value is a credential: shown only as set / not set,
    /// masked in logs and in the summary.
    pub secrecy: Secrecy,
    /// A per-backend key the old system also accepted without `_1`.
    pub has_unsuffixed_form: bool,
}

impl Key {
    const fn new(name: &'static str, section: Section, need: Need, fix: &'static str) -> Self {
        Key {
            name,
            section,
            scope: Scope::Global,
            need,
            fix,
            secrecy: Secrecy::Public,
            has_unsuffixed_form: false,
        }
    }

    const fn secret(mut self) -> Self {
        self.secrecy = Secrecy::Whole;
        self
    }

    const fn secret_list(mut self) -> Self {
        self.secrecy = Secrecy::List;
        self
    }

    pub fn is_secret(&self) -> bool {
        self.secrecy != Secrecy::Public
    }

    const fn per_backend(mut self) -> Self {
        self.scope = Scope::PerBackend;
        self
    }

    const fn also_unsuffixed(mut self) -> Self {
        self.has_unsuffixed_form = true;
        self
    }

    /// The default value's text, if the key has one.
    pub fn default_text(&self) -> Option<&'static str> {
        match self.need {
            Need::DefaultTo(text) => Some(text),
            Need::Required | Need::Optional => None,
        }
    }

    /// The name as written in the config: `DRIVER_NAME_3` for backend 3.
    pub fn name_for_backend(&self, n: usize) -> String {
        match self.scope {
            Scope::Global => self.name.to_string(),
            Scope::PerBackend => format!("{}_{n}", self.name),
        }
    }
}

const DURATION_FIX: &str = "give whole seconds, or a number with s, m or h (e.g. 90, 15m, 1h)";

use Need::{DefaultTo, Optional, Required};
use Section::{Backends, Executor, GitHub, Logs, Relay, Service, Web};

/// Every key ember-ci reads, in the order the README lists them.
pub const KEYS: &[Key] = &[
    Key::new("GH_TOKEN", GitHub, Optional, "set it to a token with repo:status and public_repo, or leave it empty to print statuses").secret(),
    Key::new("GH_USER", GitHub, Optional, "set it to the bot account's GitHub login"),
    Key::new("GH_EMBER_SECRET", GitHub, Required, "set it to the webhook secret configured on GitHub").secret(),
    Key::new("GH_API_URL", GitHub, DefaultTo("https://api.github.com"), "set it to the GitHub API base URL, e.g. https://api.github.com or https://HOST/api/v3"),
    Key::new("GH_REPO", GitHub, DefaultTo("embercsi/ember-csi"), "set it to the watched repository as owner/name"),
    Key::new("GH_CLONE_URL", Executor, DefaultTo("https://github.com/$GH_REPO.git"), "set it to a git URL or path of the repository to clone"),
    // Secret: anyone who follows the channel collects signed bodies.
    Key::new("SMEE_ID", Relay, Optional, "set it to the channel id from https://smee.io/<id>").secret(),
    Key::new("SMEE_URL", Relay, Optional, "set it to the full channel URL, e.g. https://smee.io/<id>").secret(),
    Key::new("POLL_INTERVAL", Relay, Optional, "give whole seconds, or a number with s, m or h (e.g. 300, 5m)"),
    Key::new("NUM_DRIVERS", Backends, DefaultTo("1"), "set it to the number of backends (DRIVER_NAME_1 ... DRIVER_NAME_n)"),
    Key::new("DRIVER_NAME", Backends, Required, "set it to the backend's name; its status context is 3rdparty/<name>").per_backend().also_unsuffixed(),
    Key::new("DRIVER_CONFIG", Backends, Required, "set it to the Ember-CSI backend JSON object, or to the name of a script in the config dir that sets DRIVER_CONFIG").per_backend().also_unsuffixed(),
    Key::new("PRE_RUN", Backends, Optional, "put the file in the config dir (the only host directory jobs can see) and give its name relative to the dir").per_backend().also_unsuffixed(),
    Key::new("POST_RUN", Backends, Optional, "put the file in the config dir (the only host directory jobs can see) and give its name relative to the dir").per_backend().also_unsuffixed(),
    Key::new("SANITY_COMMAND", Backends, DefaultTo(DEFAULT_SANITY_COMMAND), "set it to the command that runs the test suite"),
    Key::new("SANITY_COMMAND", Backends, Optional, "set it to the command that runs this backend's test suite").per_backend(),
    Key::new("SANITY_TIMEOUT", Backends, DefaultTo("1800"), DURATION_FIX),
    Key::new("SANITY_TIMEOUT", Backends, Optional, DURATION_FIX).per_backend(),
    Key::new("SANITY_ARGS", Backends, Optional, "list csi-sanity flags separated by spaces, e.g. --ginkgo.v --ginkgo.skip=Snapshot").per_backend(),
    Key::new("CSI_SPEC_VERSION", Backends, DefaultTo(plugin::DEFAULT_CSI_SPEC_VERSION), "use v0.2, v0.3, v1.0, v1.1, ...").per_backend(),
    Key::new("X_CSI_EMBER_CONFIG", Backends, DefaultTo(plugin::DEFAULT_EMBER_CONFIG), "write Ember-CSI's settings as a JSON object in single quotes").per_backend(),
    Key::new("X_CSI_PERSISTENCE_CONFIG", Backends, DefaultTo(plugin::DEFAULT_PERSISTENCE_CONFIG), "write Ember-CSI's persistence settings as a JSON object in single quotes").per_backend(),
    Key::new("SANDBOX_DAEMONS", Backends, DefaultTo(plugin::DEFAULT_SANDBOX_DAEMONS), "list iscsid and/or multipathd, or none").per_backend(),
    Key::new("BUILD_FILE", Executor, DefaultTo("Dockerfile"), "set it to the Containerfile's path relative to the repository root, e.g. Dockerfile"),
    Key::new("EXTRA_PACKAGES", Backends, Optional, "list package names separated by spaces").per_backend(),
    Key::new("EXTRA_PIP", Backends, Optional, "list package names separated by spaces").per_backend(),
    Key::new("EXTRA_CONTAINERFILE", Backends, Optional, "put the file in the config dir (the only host directory jobs can see) and give its name relative to the dir").per_backend(),
    Key::new("NUM_WORKERS", Service, DefaultTo("1"), "set it to how many jobs may run at once (1 or more)"),
    Key::new("WEB_ADDR", Web, DefaultTo("0.0.0.0"), "set it to the IP address to listen on, e.g. 0.0.0.0 or 127.0.0.1"),
    Key::new("WEB_PORT", Web, DefaultTo("8010"), "set it to a TCP port number (0 picks a free one)"),
    Key::new("WEB_UI_PORT", Web, DefaultTo("8011"), "set it to a TCP port number on 127.0.0.1 for the web UI (0 picks a free one)"),
    Key::new("CI_DIR", Service, DefaultTo("/var/lib/ember-ci"), "set it to the state directory (relative paths are inside the config dir)"),
    Key::new("JOB_TIMEOUT", Executor, DefaultTo("3600"), DURATION_FIX),
    Key::new("PLUGIN_START_TIMEOUT", Executor, DefaultTo("300"), DURATION_FIX),
    Key::new("SHUTDOWN_GRACE", Service, DefaultTo("600"), DURATION_FIX),
    Key::new("PODMAN_SOCKET", Executor, Optional, "set it to the absolute path of a Podman API socket, or leave it empty"),
    Key::new("PODMAN_HOSTS", Executor, Optional, "list NAME=ssh://user@host[:port]/run/podman/podman.sock[,identity=FILE][,slots=N] or NAME=CONNECTION[,slots=N], separated by spaces"),
    Key::new("DRIVER_HOST", Backends, DefaultTo("local"), "list host names from PODMAN_HOSTS (or local), preferred first, separated by spaces").per_backend(),
    Key::new("SANDBOX_IMAGE", Executor, Optional, "set it to an image reference, or leave it empty to build the sandbox image"),
    Key::new("SANDBOX_BASE_IMAGE", Executor, DefaultTo(DEFAULT_SANDBOX_BASE_IMAGE), "set it to a fully qualified Debian image, e.g. docker.io/library/debian:bookworm"),
    Key::new("SANDBOX_SKIP_CSI_SANITY", Executor, DefaultTo("0"), "use 0 or 1"),
    Key::new("CSI_SANITY_REPO", Executor, DefaultTo(CSI_SANITY_REPO), "set it to the git URL of kubernetes-csi/csi-test or a mirror of it"),
    Key::new("CSI_SANITY_VERSION", Executor, DefaultTo(CSI_SANITY_VERSION), "set it to a csi-test tag, e.g. v5.3.1, together with its CSI_SANITY_COMMIT"),
    Key::new("CSI_SANITY_COMMIT", Executor, DefaultTo(CSI_SANITY_COMMIT), "set it to the 40-hex-digit commit id CSI_SANITY_VERSION names"),
    Key::new("CSI_SANITY_VERSION", Backends, Optional, "set it to a csi-test tag, e.g. v2.2.0, together with its CSI_SANITY_COMMIT_n").per_backend(),
    Key::new("CSI_SANITY_COMMIT", Backends, Optional, "set it to the 40-hex-digit commit id CSI_SANITY_VERSION_n names").per_backend(),
    Key::new("IMAGE_STORE_MAX_GB", Executor, DefaultTo("40"), "set it to a size in GB, 1 or more"),
    Key::new("TRUSTED_USERS", GitHub, Optional, "list GitHub logins or numeric user ids separated by spaces or commas"),
    Key::new("SECRETS", Logs, Optional, "list the values to mask, separated by spaces").secret_list(),
    Key::new("WEB_ADMIN_TOKEN", Web, Optional, "set it to a token for web UI actions, or leave it empty").secret(),
    Key::new("LOGS_REPO", Logs, Optional, "set it to the git URL the logs are pushed to, or leave it empty to keep logs local"),
    Key::new("LOGS_BRANCH", Logs, DefaultTo("gh-pages"), "set it to a branch name, e.g. gh-pages"),
    Key::new("LOGS_URL", Logs, Optional, "set it to the public base URL of the pushed pages, e.g. https://OWNER.github.io/REPO"),
    Key::new("EMBER_LOGS_REPO", Logs, DefaultTo(EMBER_LOGS_REPO), "set it to the git URL of the Ember-CSI team's logs repository, or to \"\" to keep logs local"),
    Key::new("EMBER_LOGS_URL", Logs, DefaultTo(EMBER_LOGS_URL), "set it to the public base URL of EMBER_LOGS_REPO's branches"),
    Key::new("LOG_RETENTION_DAYS", Logs, DefaultTo("30"), "set it to how many days logs are kept, 1 or more"),
];

/// The row of a global key. Panics on a name not in the table: every
/// caller names a row, and loading any config reaches every caller.
pub fn key(name: &str) -> &'static Key {
    find(name, Scope::Global).unwrap_or_else(|| panic!("{name} is not in the key table"))
}

/// The row of a per-backend key (`DRIVER_NAME` for `DRIVER_NAME_n`).
pub fn backend_key(name: &str) -> &'static Key {
    find(name, Scope::PerBackend).unwrap_or_else(|| panic!("{name}_n is not in the key table"))
}

fn find(name: &str, scope: Scope) -> Option<&'static Key> {
    KEYS.iter()
        .find(|key| key.name == name && key.scope == scope)
}

/// Where the old CI pushed every job's logs (one branch per backend, one
/// folder `<sha>-<start epoch>` per job) and where they were read: used
/// with GH_TOKEN set and no LOGS_* key, as a carried-over config expects.
pub const EMBER_LOGS_REPO: &str = "https://github.com/embercsi/3rd-party-ci-logs.git";
pub const EMBER_LOGS_URL: &str = "https://ci-logs.ember-csi.io";

/// The default of `SANDBOX_BASE_IMAGE`: fully qualified, so it resolves the
/// same on every host whatever its registries.conf.
pub const DEFAULT_SANDBOX_BASE_IMAGE: &str = "docker.io/library/debian:bookworm";

/// Where csi-sanity comes from by default: csi-test's repository, a tag, and
/// the commit that tag named when we pinned it. The sandbox build refuses a
/// fetched tag that names any other commit (a moved tag, a wrong mirror).
pub const CSI_SANITY_REPO: &str = "https://github.com/kubernetes-csi/csi-test.git";
pub const CSI_SANITY_VERSION: &str = "v5.3.1";
pub const CSI_SANITY_COMMIT: &str = "12190f51faa0cd8105b39615399fa29a6f8cf83a";

/// The default of `SANITY_COMMAND`.
/// `$ARTIFACTS_DIR` is expanded by the shell that runs it in the sandbox.
pub const DEFAULT_SANITY_COMMAND: &str =
    "csi-sanity --csi.endpoint=127.0.0.1:50051 --csi.junitfile=$ARTIFACTS_DIR/junit.xml";

/// Names a config may assign for us with `num_drivers` backends: every
/// global key, the unsuffixed forms, and each per-backend key for 1..=n.
fn known_names(num_drivers: usize) -> Vec<String> {
    let global = KEYS
        .iter()
        .filter(|key| key.scope == Scope::Global || key.has_unsuffixed_form)
        .map(|key| key.name.to_string());
    let per_backend = (1..=num_drivers.max(1)).flat_map(|n| {
        KEYS.iter()
            .filter(|key| key.scope == Scope::PerBackend)
            .map(move |key| key.name_for_backend(n))
    });
    global.chain(per_backend).collect()
}

/// Warnings about assigned names nothing read that look meant for us: a
/// backend key past NUM_DRIVERS, or a near miss of a known key. Other names
/// are the vendor's helper variables (used in `$VAR` expansions) and pass
/// silently.
pub(super) fn unused_key_warnings(
    names_in_order: &[String],
    used: &HashSet<String>,
    num_drivers: usize,
) -> Vec<String> {
    let known = known_names(num_drivers);
    let mut warnings = Vec::new();
    let mut out_of_range: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    let unused = names_in_order
        .iter()
        .filter(|name| !used.contains(*name) && !OBSOLETE_KEYS.contains(&name.as_str()));
    for name in unused {
        if let Some(n) = backend_key_index(name) {
            out_of_range.entry(n).or_default().push(name);
            continue;
        }
        let nearest = known
            .iter()
            .map(|key| (values::edit_distance(name, key), key))
            .min()
            .filter(|(distance, _)| *distance <= max_typo_distance(name));
        if let Some((_, key)) = nearest {
            warnings.push(format!(
                "{name} is not a known key (did you mean {key}?); it is ignored"
            ));
        }
    }
    for (n, names) in out_of_range {
        let verb = if names.len() == 1 { "is" } else { "are" };
        warnings.push(format!(
            "{} {verb} ignored: NUM_DRIVERS is {num_drivers}, so there is no backend {n}",
            names.join(", ")
        ));
    }
    warnings
}

/// `n` when `name` is a per-backend key such as `DRIVER_NAME_3`.
fn backend_key_index(name: &str) -> Option<usize> {
    let (base, n) = name.rsplit_once('_')?;
    find(base, Scope::PerBackend)?;
    n.parse().ok()
}

/// Short names get less slack, so helper variables are not taken for typos.
fn max_typo_distance(name: &str) -> usize {
    if name.len() >= 6 {
        2
    } else {
        1
    }
}
