//! Loading real config dirs: defaults, every documented error, warnings,
//! the shipped examples, and that secrets stay out of Debug and the summary.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ember_ci::config::{
    summary, Config, ConfigErrors, CsiSanitySource, DriverConfig, Need, Scope, Script,
    DEFAULT_SANITY_COMMAND, KEYS, OBSOLETE_KEYS,
};

/// The smallest valid config: the one required key and one backend.
const MINIMAL: &str = r#"GH_EMBER_SECRET="webhook-s3cret"
DRIVER_NAME_1=lvm
DRIVER_CONFIG_1='{"name":"lvm","driver":"LVMVolume"}'
"#;

/// A config dir in a temporary directory, removed when dropped.
struct ConfigDir {
    temp: tempfile::TempDir,
}

impl ConfigDir {
    fn new(config: &str) -> Self {
        let temp = tempfile::tempdir().expect("creating a temporary config dir");
        std::fs::write(temp.path().join("config"), config).expect("writing config");
        Self { temp }
    }

    fn with_file(self, name: &str, contents: &str) -> Self {
        let path = self.temp.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating a subdirectory");
        }
        std::fs::write(path, contents).expect("writing a config dir file");
        self
    }

    /// The dir's real path (the loader canonicalizes; /tmp may be a link).
    fn path(&self) -> PathBuf {
        self.temp.path().canonicalize().expect("canonical temp dir")
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        Config::load_with_env(self.temp.path(), &HashMap::new())
    }

    fn config(&self) -> Config {
        self.load()
            .unwrap_or_else(|errors| panic!("config should load, got:\n{errors}"))
    }

    fn errors(&self) -> ConfigErrors {
        match self.load() {
            Ok(config) => panic!("config should be rejected, loaded {config:#?}"),
            Err(errors) => errors,
        }
    }
}

/// MINIMAL plus `extra` lines.
fn minimal_with(extra: &str) -> ConfigDir {
    ConfigDir::new(&format!("{MINIMAL}{extra}\n"))
}

fn keys(errors: &ConfigErrors) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn load_example(name: &str) -> Config {
    // An empty environment: the examples' ${EMBER_CI_*:-default} fallbacks apply.
    Config::load_with_env(&example_dir(name), &HashMap::new())
        .unwrap_or_else(|errors| panic!("examples/{name} should load, got:\n{errors}"))
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let dir = minimal_with("");
    let config = dir.config();
    assert_eq!(config.dir, dir.path());
    assert!(config.github.token.is_empty());
    assert_eq!(config.github.user, "");
    assert_eq!(config.github.webhook_secret.expose(), "webhook-s3cret");
    assert_eq!(config.github.api_url, "https://api.github.com");
    assert_eq!(config.github.repo.to_string(), "embercsi/ember-csi");
    assert_eq!(
        config.executor.clone_url,
        "https://github.com/embercsi/ember-csi.git"
    );
    assert_eq!(config.service.num_workers, 1);
    assert_eq!(config.web.addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(config.web.port, 8010);
    assert_eq!(config.service.state_dir, PathBuf::from("/var/lib/ember-ci"));
    assert_eq!(config.executor.build_file, "Dockerfile");
    assert_eq!(config.executor.job_timeout, Duration::from_secs(3600));
    assert_eq!(
        config.executor.plugin_start_timeout,
        Duration::from_secs(300)
    );
    assert_eq!(config.service.shutdown_grace, Duration::from_secs(600));
    assert_eq!(config.executor.podman_socket, None);
    assert_eq!(config.executor.sandbox_image, None);
    assert!(config.executor.csi_sanity.is_some());
    assert_eq!(config.executor.image_store_max_gb, 40);
    assert!(config.github.trusted_users.is_empty());
    assert!(config.logs.secrets.is_empty());
    assert!(config.web.admin_token.is_none());
    assert_eq!(config.relay.smee_url, None);
    assert_eq!(config.relay.poll_interval, None);
    assert_eq!(config.logs.repo, None);
    assert_eq!(config.logs.branch, "gh-pages");
    assert_eq!(config.logs.url, None);
    assert_eq!(config.logs.retention_days, 30);
    assert!(config.obsolete_keys.is_empty());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    let [backend] = config.backends.as_slice() else {
        panic!("one backend expected: {:?}", config.backends);
    };
    assert_eq!(backend.index, 1);
    assert_eq!(backend.name.as_str(), "lvm");
    assert_eq!(
        backend.driver_config,
        DriverConfig::Json(r#"{"name":"lvm","driver":"LVMVolume"}"#.to_string())
    );
    assert_eq!(backend.pre_run, None);
    assert_eq!(backend.post_run, None);
    assert_eq!(backend.sanity_command, DEFAULT_SANITY_COMMAND);
    assert!(backend.extra_packages.is_empty() && backend.extra_pip.is_empty());
    assert_eq!(backend.extra_containerfile, None);
}

#[test]
fn every_key_is_read_into_its_field() {
    let dir = ConfigDir::new(
        r#"
GH_TOKEN=ghp_token123
GH_USER=ember-bot
GH_EMBER_SECRET=hook
SMEE_ID=abcDEF123
POLL_INTERVAL=5m
NUM_DRIVERS=2
SANITY_COMMAND="csi-sanity --csi.endpoint=127.0.0.1:50051 --ginkgo.skip=Snapshot"
DRIVER_NAME_1=purestorage
DRIVER_CONFIG_1='{"name":"pure","driver":"PureISCSI","san_ip":"192.0.2.5","pure_api_token":"tok-abc"}'
EXTRA_PACKAGES_1="sg3-utils multipath-tools"
EXTRA_PIP_1="purestorage==1.19 requests"
EXTRA_CONTAINERFILE_1=extra.containerfile
DRIVER_NAME_2=pure-fc
DRIVER_CONFIG_2=driver.sh
SANITY_COMMAND_2="/config/my-sanity.sh"
NUM_WORKERS=2
WEB_ADDR=127.0.0.1
WEB_PORT=9000
CI_DIR=state
GH_API_URL=https://ghe.example.com/api/v3/
GH_REPO=vendor/ember-csi-fork
BUILD_FILE=images/Dockerfile.ci
JOB_TIMEOUT=2h
PLUGIN_START_TIMEOUT=90
SHUTDOWN_GRACE=0
PODMAN_SOCKET=unix:///run/podman/podman.sock
SANDBOX_IMAGE=localhost/ember-ci-sandbox:latest
SANDBOX_SKIP_CSI_SANITY=yes
IMAGE_STORE_MAX_GB=100
TRUSTED_USERS="alice, bob
carol"
SECRETS="array-pass other-secret"
WEB_ADMIN_TOKEN=admin-tok
LOGS_REPO=git@github.com:vendor/ci-logs.git
LOGS_BRANCH=logs
LOGS_URL=https://vendor.github.io/ci-logs/
LOG_RETENTION_DAYS=7
"#,
    )
    .with_file("extra.containerfile", "RUN true\n")
    .with_file("driver.sh", "DRIVER_CONFIG='{}'\n");
    let config = dir.config();
    let root = dir.path();
    assert_eq!(config.github.token.expose(), "ghp_token123");
    assert_eq!(config.github.user, "ember-bot");
    assert_eq!(
        config.relay.smee_url.as_deref(),
        Some("https://smee.io/abcDEF123")
    );
    assert_eq!(config.relay.poll_interval, Some(Duration::from_secs(300)));
    assert_eq!(config.service.num_workers, 2);
    assert_eq!(config.web.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(config.web.port, 9000);
    assert_eq!(config.service.state_dir, root.join("state"));
    assert_eq!(config.github.api_url, "https://ghe.example.com/api/v3");
    assert_eq!(config.github.repo.to_string(), "vendor/ember-csi-fork");
    assert_eq!(
        config.executor.clone_url,
        "https://github.com/vendor/ember-csi-fork.git"
    );
    assert_eq!(config.executor.build_file, "images/Dockerfile.ci");
    assert_eq!(config.executor.job_timeout, Duration::from_secs(7200));
    assert_eq!(
        config.executor.plugin_start_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(config.service.shutdown_grace, Duration::ZERO);
    assert_eq!(
        config.executor.podman_socket,
        Some(PathBuf::from("/run/podman/podman.sock"))
    );
    assert_eq!(
        config.executor.sandbox_image.as_deref(),
        Some("localhost/ember-ci-sandbox:latest")
    );
    assert!(config.executor.csi_sanity.is_none());
    assert_eq!(config.executor.image_store_max_gb, 100);
    assert_eq!(config.github.trusted_users, ["alice", "bob", "carol"]);
    let secrets: Vec<&str> = config.logs.secrets.iter().map(|s| s.expose()).collect();
    assert_eq!(secrets, ["array-pass", "other-secret"]);
    assert_eq!(
        config.web.admin_token.as_ref().map(|t| t.expose()),
        Some("admin-tok")
    );
    assert_eq!(
        config.logs.repo.as_deref(),
        Some("git@github.com:vendor/ci-logs.git")
    );
    assert_eq!(config.logs.branch, "logs");
    assert_eq!(
        config.logs.url.as_deref(),
        Some("https://vendor.github.io/ci-logs")
    );
    assert_eq!(config.logs.retention_days, 7);
    assert_eq!(
        config.secret_values(),
        [
            "abcDEF123",
            "admin-tok",
            "array-pass",
            "ghp_token123",
            "hook",
            "other-secret"
        ]
    );

    let [first, second] = config.backends.as_slice() else {
        panic!("two backends expected: {:?}", config.backends);
    };
    assert_eq!(
        first.sanity_command,
        "csi-sanity --csi.endpoint=127.0.0.1:50051 --ginkgo.skip=Snapshot"
    );
    assert_eq!(first.extra_packages, ["sg3-utils", "multipath-tools"]);
    assert_eq!(first.extra_pip, ["purestorage==1.19", "requests"]);
    assert_eq!(
        first.extra_containerfile,
        Some(root.join("extra.containerfile"))
    );
    assert_eq!((second.index, second.name.as_str()), (2, "pure-fc"));
    assert_eq!(
        second.driver_config,
        DriverConfig::Script(root.join("driver.sh"))
    );
    assert_eq!(second.sanity_command, "/config/my-sanity.sh");
    assert!(config.backend("PURE-FC").is_some());
}

#[test]
fn missing_config_file_is_reported_with_its_path() {
    let temp = tempfile::tempdir().expect("temp dir");
    let errors = Config::load_with_env(temp.path(), &HashMap::new()).expect_err("no config file");
    let message = errors.to_string();
    let expected_path = temp
        .path()
        .canonicalize()
        .expect("canonical")
        .join("config");
    assert_eq!(keys(&errors), ["config"]);
    assert!(
        message.contains(&format!("{} does not exist", expected_path.display())),
        "{message}"
    );
}

#[test]
fn missing_config_dir_is_reported() {
    let errors = Config::load_with_env(Path::new("/nonexistent/ember-ci-config"), &HashMap::new())
        .expect_err("no dir");
    assert!(
        errors.to_string().contains("/nonexistent/ember-ci-config"),
        "{errors}"
    );
}

#[test]
fn missing_webhook_secret_is_an_error_with_a_fix() {
    let errors = ConfigDir::new("DRIVER_NAME_1=lvm\nDRIVER_CONFIG_1='{}'\n").errors();
    assert_eq!(
        errors.to_string(),
        "GH_EMBER_SECRET: missing — set it to the webhook secret configured on GitHub"
    );
    let empty =
        ConfigDir::new("GH_EMBER_SECRET=\nDRIVER_NAME_1=lvm\nDRIVER_CONFIG_1='{}'\n").errors();
    assert_eq!(keys(&empty), ["GH_EMBER_SECRET"]);
}

#[test]
fn each_configured_backend_needs_a_name_and_driver_config() {
    let errors = minimal_with("NUM_DRIVERS=2").errors();
    assert_eq!(keys(&errors), ["DRIVER_NAME_2", "DRIVER_CONFIG_2"]);
    assert!(
        errors.to_string().contains("DRIVER_NAME_2: missing"),
        "{errors}"
    );
}

#[test]
fn backend_names_must_be_valid_and_unique_ignoring_case() {
    let errors = minimal_with(
        "NUM_DRIVERS=3\nDRIVER_NAME_2=LVM\nDRIVER_CONFIG_2='{}'\nDRIVER_NAME_3='bad name'\nDRIVER_CONFIG_3='{}'",
    )
    .errors();
    assert_eq!(keys(&errors), ["DRIVER_NAME_2", "DRIVER_NAME_3"]);
    let message = errors.to_string();
    assert!(
        message.contains("\"LVM\" is also the name of backend 1"),
        "{message}"
    );
}

#[test]
fn script_keys_name_files_in_the_config_dir_or_hold_inline_text() {
    let dir = minimal_with(
        "NUM_DRIVERS=2\nPRE_RUN_1=pre-run.sh\nPOST_RUN_1='echo \"done: $1\"'\n\
         DRIVER_NAME_2=other\nDRIVER_CONFIG_2='{}'\nPRE_RUN_2=scripts/setup\nPOST_RUN_2=true",
    )
    .with_file("pre-run.sh", "echo pre\n")
    .with_file("scripts/setup", "echo setup\n");
    let config = dir.config();
    let root = dir.path();
    assert_eq!(
        config.backends[0].pre_run,
        Some(Script::File(root.join("pre-run.sh")))
    );
    assert_eq!(
        config.backends[0].post_run,
        Some(Script::Inline("echo \"done: $1\"".to_string()))
    );
    assert_eq!(
        config.backends[1].pre_run,
        Some(Script::File(root.join("scripts/setup")))
    );
    // One word naming no file and not looking like a path: a command.
    assert_eq!(
        config.backends[1].post_run,
        Some(Script::Inline("true".to_string()))
    );
}

#[test]
fn pre_run_naming_a_missing_file_is_an_error_naming_key_and_path() {
    let dir = minimal_with("PRE_RUN_1=create-lvm.sh\nPOST_RUN_1=scripts/cleanup");
    let errors = dir.errors();
    assert_eq!(keys(&errors), ["PRE_RUN_1", "POST_RUN_1"]);
    let message = errors.to_string();
    let missing = dir.path().join("create-lvm.sh");
    assert!(
        message.contains(&format!("PRE_RUN_1: {} does not exist", missing.display())),
        "{message}"
    );
}

#[test]
fn files_outside_the_config_dir_are_rejected() {
    let outside = tempfile::tempdir().expect("temp dir");
    let script = outside.path().join("outside.sh");
    std::fs::write(&script, "echo hi\n").expect("writing script");
    let dir = minimal_with(&format!("PRE_RUN_1={}", script.display()));
    let errors = dir.errors();
    assert_eq!(keys(&errors), ["PRE_RUN_1"]);
    assert!(
        errors.to_string().contains("is outside the config dir"),
        "{errors}"
    );

    let via_link = minimal_with("POST_RUN_1=link.sh");
    std::os::unix::fs::symlink(&script, via_link.temp.path().join("link.sh")).expect("symlink");
    assert_eq!(keys(&via_link.errors()), ["POST_RUN_1"]);
}

#[test]
fn driver_config_must_be_json_or_an_existing_file() {
    let broken_json = ConfigDir::new(
        "GH_EMBER_SECRET=x\nDRIVER_NAME_1=a\nDRIVER_CONFIG_1='{\"name\": \"a\", \"san_password\": \"hunter2\"'\n",
    );
    let message = broken_json.errors().to_string();
    assert!(
        message.starts_with("DRIVER_CONFIG_1: neither valid JSON ("),
        "{message}"
    );
    assert!(
        message.contains("EOF while parsing an object"),
        "serde's message: {message}"
    );
    assert!(
        !message.contains("hunter2"),
        "the value must not be echoed: {message}"
    );

    let missing_script =
        ConfigDir::new("GH_EMBER_SECRET=x\nDRIVER_NAME_1=a\nDRIVER_CONFIG_1=ceph-cfg.sh\n");
    let message = missing_script.errors().to_string();
    assert!(message.contains("neither valid JSON"), "{message}");
    let path = missing_script.path().join("ceph-cfg.sh");
    assert!(
        message.contains(&format!("{} not found", path.display())),
        "{message}"
    );

    let not_an_object =
        ConfigDir::new("GH_EMBER_SECRET=x\nDRIVER_NAME_1=a\nDRIVER_CONFIG_1='[1, 2]'\n");
    assert!(not_an_object.errors().to_string().contains("not an object"));
}

#[test]
fn bad_numbers_are_rejected() {
    for (line, key) in [
        ("NUM_WORKERS=0", "NUM_WORKERS"),
        ("NUM_WORKERS=two", "NUM_WORKERS"),
        ("NUM_WORKERS=-1", "NUM_WORKERS"),
        ("WEB_PORT=70000", "WEB_PORT"),
        ("WEB_PORT=http", "WEB_PORT"),
        ("NUM_DRIVERS=0", "NUM_DRIVERS"),
        ("IMAGE_STORE_MAX_GB=0", "IMAGE_STORE_MAX_GB"),
        ("LOG_RETENTION_DAYS=forever", "LOG_RETENTION_DAYS"),
        ("WEB_ADDR=localhost", "WEB_ADDR"),
        ("SANDBOX_SKIP_CSI_SANITY=maybe", "SANDBOX_SKIP_CSI_SANITY"),
    ] {
        assert_eq!(keys(&minimal_with(line).errors()), [key], "{line}");
    }
}

#[test]
fn csi_sanity_is_built_from_the_pinned_commit_and_skipping_it_needs_another_suite() {
    let config = minimal_with("").config();
    assert_eq!(
        config.executor.csi_sanity,
        Some(CsiSanitySource {
            repo: "https://github.com/kubernetes-csi/csi-test.git".into(),
            version: "v5.3.1".into(),
            commit: "12190f51faa0cd8105b39615399fa29a6f8cf83a".into(),
        })
    );
    assert_eq!(
        config.executor.sandbox_base_image,
        "docker.io/library/debian:bookworm"
    );
    let summary = ember_ci::config::summary(&config);
    assert!(
        summary.contains(
            "built from source: https://github.com/kubernetes-csi/csi-test.git tag v5.3.1, \
             verified to be commit 12190f51faa0cd8105b39615399fa29a6f8cf83a before building"
        ),
        "{summary}"
    );

    // Skipped while the default suite needs it: every job would end
    // `failure` (exit 127), blaming the PR.
    let errors = minimal_with("SANDBOX_SKIP_CSI_SANITY=1").errors();
    assert_eq!(keys(&errors), ["SANDBOX_SKIP_CSI_SANITY"]);
    assert!(
        errors
            .to_string()
            .contains("runs it (csi-sanity --csi.endpoint=127.0.0.1:50051 --csi.junitfile="),
        "{errors}"
    );
    let other_suite = minimal_with("SANDBOX_SKIP_CSI_SANITY=1\nSANITY_COMMAND=/config/suite.sh");
    assert_eq!(other_suite.config().executor.csi_sanity, None);
    // A vendor's own image decides for itself.
    let own_image = minimal_with("SANDBOX_SKIP_CSI_SANITY=1\nSANDBOX_IMAGE=vendor/sandbox:1");
    assert_eq!(own_image.config().executor.csi_sanity, None);

    // A new version needs its own pin.
    for line in ["CSI_SANITY_VERSION=v5.4.0", "CSI_SANITY_COMMIT=12190f5"] {
        assert_eq!(
            keys(&minimal_with(line).errors()),
            ["CSI_SANITY_COMMIT"],
            "{line}"
        );
    }
}

#[test]
fn bad_durations_are_rejected() {
    for line in [
        "JOB_TIMEOUT=1d",
        "JOB_TIMEOUT=0",
        "PLUGIN_START_TIMEOUT=five",
        "SHUTDOWN_GRACE=-1",
        "POLL_INTERVAL=0s",
    ] {
        let key = line.split('=').next().unwrap_or_default();
        assert_eq!(keys(&minimal_with(line).errors()), [key], "{line}");
    }
}

#[test]
fn build_file_must_stay_inside_the_checkout() {
    for line in [
        "BUILD_FILE=/etc/passwd",
        "BUILD_FILE=../Dockerfile",
        "BUILD_FILE=a/../../b",
    ] {
        assert_eq!(keys(&minimal_with(line).errors()), ["BUILD_FILE"], "{line}");
    }
}

#[test]
fn values_passed_to_other_programs_cannot_be_options() {
    let errors = minimal_with(
        "EXTRA_PACKAGES_1='sg3-utils -oDebug::pkgProblemResolver=1'\nEXTRA_PIP_1='--index-url=http://evil x'\n\
         GH_CLONE_URL=--upload-pack=evil\nLOGS_REPO='-c core.sshCommand=evil'\nSANDBOX_IMAGE=--privileged\n\
         EXTRA_CONTAINERFILE_1=missing.containerfile",
    )
    .errors();
    assert_eq!(
        keys(&errors),
        [
            "GH_CLONE_URL",
            "EXTRA_PACKAGES_1",
            "EXTRA_PIP_1",
            "EXTRA_CONTAINERFILE_1",
            "SANDBOX_IMAGE",
            "LOGS_REPO"
        ]
    );
}

#[test]
fn urls_and_names_are_validated() {
    for (line, key) in [
        ("GH_API_URL=api.github.com", "GH_API_URL"),
        ("GH_REPO=ember-csi", "GH_REPO"),
        ("SMEE_URL=smee.io/abc", "SMEE_URL"),
        ("SMEE_ID='a/b'", "SMEE_ID"),
        ("LOGS_URL=ftp://logs", "LOGS_URL"),
        ("LOGS_BRANCH='a..b'", "LOGS_BRANCH"),
        ("TRUSTED_USERS='alice bad;user'", "TRUSTED_USERS"),
        ("GH_USER='two words'", "GH_USER"),
        ("PODMAN_SOCKET=podman.sock", "PODMAN_SOCKET"),
        (
            "LOGS_REPO=https://bot:ghp_x@github.com/v/logs.git",
            "LOGS_REPO",
        ),
        (
            "GH_CLONE_URL=https://u:pw@git.example.com/e.git",
            "GH_CLONE_URL",
        ),
        ("LOGS_URL=https://u:pw@logs.example.com", "LOGS_URL"),
    ] {
        assert_eq!(keys(&minimal_with(line).errors()), [key], "{line}");
    }
}

#[test]
fn all_problems_are_reported_together() {
    let dir = ConfigDir::new(
        "NUM_DRIVERS=2\nDRIVER_NAME_1=lvm\nDRIVER_CONFIG_1='{'\nPRE_RUN_1=missing.sh\n\
         DRIVER_NAME_2=LVM\nDRIVER_CONFIG_2='{}'\nNUM_WORKERS=0\nWEB_PORT=99999\n\
         BUILD_FILE=/Dockerfile\nJOB_TIMEOUT=soon\n",
    );
    let errors = dir.errors();
    assert_eq!(
        keys(&errors),
        [
            "GH_EMBER_SECRET",
            "DRIVER_CONFIG_1",
            "PRE_RUN_1",
            "DRIVER_NAME_2",
            "NUM_WORKERS",
            "WEB_PORT",
            "BUILD_FILE",
            "JOB_TIMEOUT"
        ]
    );
    let message = errors.to_string();
    assert_eq!(
        message.lines().count(),
        8,
        "one problem per line:\n{message}"
    );
    assert!(
        message.lines().all(|line| line.contains(" — ")),
        "{message}"
    );
}

#[test]
fn config_file_syntax_errors_name_their_lines() {
    let errors = ConfigDir::new("GH_EMBER_SECRET=x\nsudo modprobe rbd\nGH_TOKEN = abc\n").errors();
    assert_eq!(keys(&errors), ["config", "config"]);
    let message = errors.to_string();
    assert!(
        message.contains("config: line 2: `sudo` is a command"),
        "{message}"
    );
    assert!(
        message.contains("config: line 3: spaces around '='"),
        "{message}"
    );
}

#[test]
fn expansion_uses_earlier_keys_then_the_environment() {
    let dir = ConfigDir::new(
        "ARRAY_IP=192.0.2.7\nGH_EMBER_SECRET=\"${WEBHOOK_SECRET:-fallback}\"\nDRIVER_NAME_1=lvm\n\
         DRIVER_CONFIG_1=\"{\\\"san_ip\\\": \\\"$ARRAY_IP\\\"}\"\n",
    );
    let env = HashMap::from([("WEBHOOK_SECRET".to_string(), "from-env".to_string())]);
    let config = Config::load_with_env(dir.temp.path(), &env).expect("loads");
    assert_eq!(config.github.webhook_secret.expose(), "from-env");
    assert_eq!(
        config.backends[0].driver_config,
        DriverConfig::Json(r#"{"san_ip": "192.0.2.7"}"#.to_string())
    );
    assert_eq!(dir.config().github.webhook_secret.expose(), "fallback");
    // A helper variable is not a typo of a known key: no warning.
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn smee_url_wins_over_smee_id() {
    let config = minimal_with("SMEE_ID=abc\nSMEE_URL=https://smee.example.com/xyz/").config();
    assert_eq!(
        config.relay.smee_url.as_deref(),
        Some("https://smee.example.com/xyz")
    );
    assert_eq!(
        config.warnings,
        ["SMEE_ID is ignored because SMEE_URL is set"]
    );
}

#[test]
fn clone_url_follows_the_repository_unless_set() {
    let config = minimal_with("GH_REPO=vendor/fork").config();
    assert_eq!(
        config.executor.clone_url,
        "https://github.com/vendor/fork.git"
    );
    let config = minimal_with("GH_CLONE_URL=/srv/git/ember-csi.git").config();
    assert_eq!(config.executor.clone_url, "/srv/git/ember-csi.git");
}

#[test]
fn obsolete_keys_are_accepted_and_listed() {
    let config = minimal_with("WORKER_NAME=worker1\nWORKER_PASSWORD=pw\nBRIDGE_NAME=br0").config();
    assert_eq!(
        config.obsolete_keys,
        ["WORKER_NAME", "WORKER_PASSWORD", "BRIDGE_NAME"]
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn likely_mistakes_are_warnings_not_errors() {
    let config = minimal_with(
        "GH_TOKNE=abc\nNUM_WORKER=2\nDRIVER_NAME_3=extra\nPRE_RUN_3=true\nlocal_helper=1",
    )
    .config();
    assert_eq!(
        config.warnings,
        [
            "GH_TOKNE is not a known key (did you mean GH_TOKEN?); it is ignored",
            "NUM_WORKER is not a known key (did you mean NUM_WORKERS?); it is ignored",
            "DRIVER_NAME_3, PRE_RUN_3 are ignored: NUM_DRIVERS is 1, so there is no backend 3",
        ]
    );
}

#[test]
fn old_unsuffixed_backend_keys_still_work() {
    let dir = ConfigDir::new(
        "GH_EMBER_SECRET=x\nDRIVER_NAME=LVM\nDRIVER_CONFIG='{\"driver\":\"lvmvolume\"}'\nPRE_RUN=create-lvm.sh\n",
    )
    .with_file("create-lvm.sh", "vgcreate ...\n");
    let config = dir.config();
    assert_eq!(config.backends[0].name.as_str(), "LVM");
    assert_eq!(
        config.backends[0].pre_run,
        Some(Script::File(dir.path().join("create-lvm.sh")))
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    let both = minimal_with("DRIVER_NAME=old").config();
    assert_eq!(both.backends[0].name.as_str(), "lvm");
    assert_eq!(
        both.warnings,
        ["DRIVER_NAME is ignored because DRIVER_NAME_1 is set"]
    );
}

#[test]
fn demo_example_loads_without_its_environment() {
    let config = load_example("demo");
    assert_eq!(config.github.webhook_secret.expose(), "demo-webhook-secret");
    assert_eq!(
        config.executor.clone_url,
        "/var/lib/ember-ci/demo/ember-csi.git"
    );
    assert!(config.github.token.is_empty());
    assert!(config.executor.csi_sanity.is_none());
    let backend = &config.backends[0];
    assert_eq!(backend.name.as_str(), "demo");
    assert!(matches!(backend.pre_run, Some(Script::Inline(_))));
    assert_eq!(backend.sanity_command, "/config/sanity.sh 127.0.0.1:50051");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn lvm_example_loads() {
    let config = load_example("lvm");
    let backend = &config.backends[0];
    assert_eq!(backend.name.as_str(), "lvm");
    assert!(
        matches!(&backend.driver_config, DriverConfig::Json(json) if json.contains("LVMVolume"))
    );
    assert_eq!(
        backend.pre_run,
        Some(Script::File(config.dir.join("pre-run.sh")))
    );
    assert!(matches!(&backend.post_run, Some(Script::Inline(text)) if text.contains("vgremove")));
    assert_eq!(
        config.relay.smee_url.as_deref(),
        Some("https://smee.io/replace-with-your-smee-channel")
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn ceph_example_loads() {
    let config = load_example("ceph");
    let backend = &config.backends[0];
    assert_eq!(backend.name.as_str(), "ceph");
    assert_eq!(
        backend.driver_config,
        DriverConfig::Script(config.dir.join("ceph-driver.sh"))
    );
    assert_eq!(config.executor.job_timeout, Duration::from_secs(90 * 60));
    assert_eq!(config.logs.secrets.len(), 1);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn debug_output_never_shows_secret_values() {
    let config = minimal_with(
        "GH_TOKEN=ghp_topsecrettoken\nSECRETS='array-passw0rd'\nWEB_ADMIN_TOKEN=admin-t0ken\n\
         DRIVER_CONFIG_1='{\"driver\":\"LVMVolume\",\"san_password\":\"json-passw0rd\"}'",
    )
    .config();
    let debug = format!("{config:?} {config:#?}");
    for secret in [
        "ghp_topsecrettoken",
        "webhook-s3cret",
        "array-passw0rd",
        "admin-t0ken",
        "json-passw0rd",
    ] {
        assert!(!debug.contains(secret), "{secret} in Debug output");
    }
}

/// The summary with the machine-specific config dir replaced.
fn portable_summary(config: &Config) -> String {
    summary(config).replace(&config.dir.display().to_string(), "[CONFIG_DIR]")
}

#[test]
fn summary_masks_credentials_and_shows_secrets_only_as_set() {
    let dir = ConfigDir::new(
        r#"GH_TOKEN=ghp_topsecrettoken
GH_USER=vendor-bot
GH_EMBER_SECRET=webhook-s3cret
SMEE_ID=channel123
POLL_INTERVAL=10m
NUM_DRIVERS=2
DRIVER_NAME_1=pure
DRIVER_CONFIG_1='{"name":"pure","driver":"PureISCSI","san_ip":"192.0.2.5","pure_api_token":"tok-abc123","nested":{"chap_secret":"chap-s3cret"}}'
PRE_RUN_1='echo "creating pool with tok-abc123"
echo second line'
POST_RUN_1=post-run.sh
EXTRA_PACKAGES_1="sg3-utils multipath-tools"
DRIVER_NAME_2=ceph
DRIVER_CONFIG_2=ceph-driver.sh
SANITY_COMMAND_2="/config/sanity.sh --password array-passw0rd"
EXTRA_PIP_2="rbd-extras==1.0"
SECRETS="array-passw0rd"
WEB_ADMIN_TOKEN=admin-t0ken
TRUSTED_USERS="alice bob"
LOGS_REPO="https://github.com/vendor/logs.git"
LOGS_URL=https://vendor.github.io/logs
WORKER_NAME=old
GH_TOKNE=typo
"#,
    )
    .with_file("post-run.sh", "echo post\n")
    .with_file("ceph-driver.sh", "DRIVER_CONFIG='{}'\n");
    let config = dir.config();
    let text = portable_summary(&config);
    for secret in [
        "ghp_topsecrettoken",
        "webhook-s3cret",
        "tok-abc123",
        "chap-s3cret",
        "array-passw0rd",
        "admin-t0ken",
        // Whoever follows the smee channel collects signed bodies to replay.
        "channel123",
    ] {
        assert!(!text.contains(secret), "{secret} in summary:\n{text}");
    }
    assert!(
        config.masked_values().iter().any(|s| s == "channel123"),
        "the smee channel is not masked in logs"
    );
    insta::assert_snapshot!(text);
}

#[test]
fn summary_of_the_lvm_example() {
    insta::assert_snapshot!(portable_summary(&load_example("lvm")));
}

/// The README's config table, row by row: the key names of the first
/// column (`DRIVER_NAME_n` as written) and the whole row's text.
fn readme_config_rows() -> Vec<(Vec<String>, String)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("reading README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a Configuration section");
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let first_column = line.split('|').nth(1).unwrap_or_default();
            let names = first_column
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            (names, line.to_string())
        })
        .collect()
}

#[test]
fn readme_config_table_lists_every_key_with_its_default_and_no_other() {
    let rows = readme_config_rows();
    let row_of = |name: &str| {
        rows.iter()
            .find(|(names, _)| names.iter().any(|n| n == name))
    };
    let mut documented: Vec<&str> = rows
        .iter()
        .flat_map(|(names, _)| names.iter().map(String::as_str))
        .collect();
    for key in KEYS {
        let name = match key.scope {
            Scope::Global => key.name.to_string(),
            Scope::PerBackend => format!("{}_n", key.name),
        };
        let Some((_, row)) = row_of(&name) else {
            panic!("README's config table has no row for {name}");
        };
        let default_column = row.split('|').nth(2).unwrap_or_default();
        match key.need {
            Need::DefaultTo(text) => assert!(
                default_column.contains(&format!("`{text}`")),
                "README gives {name} no default `{text}`: {row}"
            ),
            Need::Required => assert!(
                default_column.contains("required"),
                "README does not say {name} is required: {row}"
            ),
            Need::Optional => {}
        }
        documented.retain(|documented| *documented != name);
    }
    assert!(
        documented.is_empty(),
        "README documents keys the key table does not have: {documented:?}"
    );
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("reading README.md");
    for obsolete in OBSOLETE_KEYS {
        assert!(
            readme.contains(&format!("`{obsolete}`")),
            "README does not name the obsolete key {obsolete}"
        );
    }
}

#[test]
fn every_global_key_with_a_default_loads_it_from_the_table() {
    // The defaults come from the table's text through the key's parser, so
    // a default that does not parse would panic here.
    let config = minimal_with("").config();
    assert_eq!(
        config.executor.clone_url,
        "https://github.com/embercsi/ember-csi.git"
    );
    let secret_keys: Vec<&str> = KEYS
        .iter()
        .filter(|key| key.is_secret())
        .map(|key| key.name)
        .collect();
    assert_eq!(
        secret_keys,
        [
            "GH_TOKEN",
            "GH_EMBER_SECRET",
            "SMEE_ID",
            "SMEE_URL",
            "SECRETS",
            "WEB_ADMIN_TOKEN"
        ]
    );
}

#[test]
fn plugin_settings_default_to_the_old_worker_env_file() {
    let config = minimal_with("").config();
    let backend = &config.backends[0];
    assert_eq!(backend.plugin.spec_version, "v1.1");
    assert!(backend
        .plugin
        .ember_config
        .contains(r#""request_multipath":true"#));
    assert_eq!(backend.plugin.persistence_config, r#"{"storage":"memory"}"#);
    let daemons: Vec<&str> = backend.plugin.daemons.iter().map(|d| d.name()).collect();
    assert_eq!(daemons, ["iscsid", "multipathd"]);
    assert_eq!(backend.sanity_command, DEFAULT_SANITY_COMMAND);
    assert_eq!(
        backend.csi_sanity.as_ref().map(|b| b.version.as_str()),
        Some("v5.3.1")
    );
    assert!(config.executor.csi_sanity_extra.is_empty());
    let off =
        minimal_with("SANDBOX_DAEMONS_1=\"\"\nX_CSI_EMBER_CONFIG_1='{\"debug\":false}'").config();
    assert!(off.backends[0].plugin.daemons.is_empty());
    assert_eq!(off.backends[0].plugin.ember_config, r#"{"debug":false}"#);
}

#[test]
fn spec_version_picks_the_csi_sanity_able_to_test_it() {
    let config = minimal_with(
        "NUM_DRIVERS=3\nDRIVER_NAME_2=old\nDRIVER_CONFIG_2='{}'\nCSI_SPEC_VERSION_2=v0.3\n\
         SANITY_ARGS_2='--ginkgo.v'\nDRIVER_NAME_3=pinned\nDRIVER_CONFIG_3='{}'\n\
         CSI_SANITY_VERSION_3=v2.2.0\nCSI_SANITY_COMMIT_3=82b05190c167c52bb6d5aaf2e1d7c833fa539783",
    )
    .config();
    let old = &config.backends[1];
    assert_eq!(old.plugin.spec_version, "v0.3");
    let build = old.csi_sanity.as_ref().expect("a csi-sanity build");
    assert_eq!(
        (build.version.as_str(), build.commit.as_str()),
        ("v0.3.5", "f931472b5957142f7c348031cd3cddc26434b890")
    );
    // csi-sanity v0.3.5 cannot write a JUnit report.
    assert_eq!(
        old.sanity_command,
        "csi-sanity --csi.endpoint=127.0.0.1:50051 --ginkgo.v"
    );
    let versions: Vec<&str> = config
        .executor
        .csi_sanity_extra
        .iter()
        .map(|b| b.version.as_str())
        .collect();
    assert_eq!(versions, ["v0.3.5", "v2.2.0"]);
    assert!(summary(&config).contains("and tag v0.3.5, verified to be commit f931472b"));

    let errors = minimal_with("CSI_SPEC_VERSION_1=v2.0\nCSI_SANITY_VERSION_1=v2.2.0").errors();
    assert_eq!(keys(&errors), ["CSI_SPEC_VERSION_1", "CSI_SANITY_COMMIT_1"]);
}

#[test]
fn the_old_worker_flags_are_translated_in_sanity_args_and_refused_in_a_command() {
    let config =
        minimal_with("SANITY_ARGS_1='--test.v --test.timeout 0 --ginkgo.progress'").config();
    assert_eq!(
        config.backends[0].sanity_command,
        format!("{DEFAULT_SANITY_COMMAND} --ginkgo.v")
    );
    assert_eq!(config.warnings.len(), 3, "{:?}", config.warnings);
    assert!(config.warnings[0].starts_with("SANITY_ARGS_1: --test.v runs as --ginkgo.v"));

    let errors = minimal_with(
        "SANITY_COMMAND_1='csi-sanity --test.v --csi.endpoint=127.0.0.1:50051 --test.timeout 0 --ginkgo.progress'",
    )
    .errors();
    assert_eq!(keys(&errors), ["SANITY_COMMAND_1"]);
    let problem = &errors.iter().next().expect("one error").problem;
    assert!(problem.contains("--test.v: use --ginkgo.v"), "{problem}");
    assert!(
        problem.contains("--ginkgo.progress: remove it"),
        "{problem}"
    );

    let errors =
        minimal_with("SANITY_COMMAND='/config/suite'\nSANITY_ARGS_1='--ginkgo.v'").errors();
    assert_eq!(keys(&errors), ["SANITY_ARGS_1"]);
    let errors = minimal_with("SANITY_ARGS_1='--test.parallel 2'").errors();
    assert_eq!(keys(&errors), ["SANITY_ARGS_1"]);
}

#[test]
fn podman_hosts_load_with_identity_in_the_config_dir_and_pin_backends() {
    let dir = minimal_with(
        "PODMAN_HOSTS=\"lab=ssh://root@10.0.0.2/run/podman/podman.sock,identity=keys/lab,slots=2\"\n\
         DRIVER_HOST_1=\"lab local\"",
    )
    .with_file("keys/lab", "key");
    let config = dir.config();
    let host = &config.executor.hosts[0];
    assert_eq!((host.name.as_str(), host.slots), ("lab", 2));
    assert_eq!(
        host.target,
        ember_ci::config::HostTarget::Ssh {
            target: ember_ci::config::SshTarget::parse(
                "ssh://root@10.0.0.2/run/podman/podman.sock"
            )
            .expect("valid"),
            identity: Some(dir.path().join("keys/lab")),
        }
    );
    let hosts: Vec<&str> = config.backends[0]
        .hosts
        .iter()
        .map(|h| h.as_str())
        .collect();
    assert_eq!(hosts, ["lab", "local"]);
    assert!(ember_ci::config::summary(&config).contains("host lab"));
}

#[test]
fn unknown_driver_hosts_and_missing_identities_are_config_errors() {
    let errors = minimal_with(
        "PODMAN_HOSTS=\"lab=ssh://root@10.0.0.2/run/podman/podman.sock,identity=nokey\"\n\
         DRIVER_HOST_1=\"elsewhere\"",
    )
    .errors();
    assert_eq!(keys(&errors), ["PODMAN_HOSTS", "DRIVER_HOST_1"]);
    let text = errors.to_string();
    assert!(text.contains("nokey does not exist"), "{text}");
    assert!(text.contains("elsewhere is not in PODMAN_HOSTS"), "{text}");
}
