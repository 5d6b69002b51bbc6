//! The commands a job runs inside its sandbox, as argument lists: the PR
//! image build, the vendor's scripts, the plugin container, the readiness
//! probe. Pure functions over validated values, no I/O, so every command
//! line can be unit-tested; nothing here goes through a shell except the
//! vendor's own script text (bash is how vendors write them).

use std::path::{Component, Path};

use thiserror::Error;

use super::JOB_LABEL;
use crate::config::{PluginSettings, Script};
use crate::model::{JobId, JobRequest};

/// Where the config dir is mounted (read-only) inside the sandbox.
pub const SANDBOX_CONFIG_DIR: &str = "/config";
/// Where the job's work dir is mounted inside the sandbox.
pub const SANDBOX_JOB_DIR: &str = "/job";
/// The PR's checkout inside the sandbox (the build context).
pub const SANDBOX_SOURCE_DIR: &str = "/job/src";
/// The resolved backend JSON and CSI_SYSTEM_FILES path, written by the
/// driver-config step (relative to the job dir, so the host can read them).
pub const DRIVER_JSON_FILE: &str = "driver.json";
pub const SYSTEM_FILES_FILE: &str = "system-files";
/// Generated Containerfile of the vendor's extras layer (relative to the job dir).
pub const EXTRAS_CONTAINERFILE: &str = "extras.Containerfile";

/// The plugin's CSI endpoint; the sandbox has its own network namespace, so
/// every job can use the same port.
pub const CSI_ENDPOINT_HOST: &str = "127.0.0.1";
pub const CSI_ENDPOINT_PORT: u16 = 50051;

/// The old worker's env-file settings that are not per backend.
const FIXED_PLUGIN_ENV: [(&str, &str); 2] =
    [("PYTHONUNBUFFERED", "0"), ("EVENTLET_NO_GREENDNS", "yes")];

/// Host paths the plugin container gets, as the old worker mounted them.
/// `/etc/localtime` is the only read-only one.
pub const PLUGIN_HOST_MOUNTS: [&str; 11] = [
    "/dev",
    "/etc/iscsi",
    "/etc/lvm",
    "/var/lock/lvm",
    "/etc/multipath",
    "/etc/multipath.conf",
    "/lib/modules",
    "/run/udev",
    "/var/lib/iscsi",
    "/etc/localtime",
    "/tmp",
];

/// A config value that cannot be turned into a safe command.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("{path} is not inside the config dir {config_dir}")]
    OutsideConfigDir { path: String, config_dir: String },
    #[error("BUILD_FILE {0:?} must be a relative path inside the checkout")]
    BadBuildFile(String),
    #[error("{what} {value:?} is not a valid package name")]
    BadPackage { what: &'static str, value: String },
    #[error("CSI_SYSTEM_FILES {0:?} must be a path without ':' or ','")]
    BadSystemFiles(String),
}

/// One command run in the sandbox with `podman exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerCommand {
    pub argv: Vec<String>,
    /// Passed through the exec session, never shown in the trace (secrets
    /// such as the backend JSON travel here).
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
}

impl InnerCommand {
    fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            workdir: None,
        }
    }

    fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    fn workdir(mut self, dir: &str) -> Self {
        self.workdir = Some(dir.to_string());
        self
    }

    /// The command line as a log reader would type it (arguments quoted for
    /// a shell, environment left out).
    pub fn trace(&self) -> String {
        let words: Vec<String> = self.argv.iter().map(|arg| shell_quote(arg)).collect();
        format!("$ {}\n", words.join(" "))
    }
}

/// Quotes `arg` for display; plain words stay as they are.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=,@%+-".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Names that belong to one job or one worker slot.
#[derive(Debug, Clone)]
pub struct JobNames {
    pub sandbox_container: String,
    pub plugin_container: String,
    /// The PR's image, in the slot's persistent store.
    pub pr_image: String,
    /// The PR's image plus the vendor's extras.
    pub extras_image: String,
}

impl JobNames {
    pub fn new(job_id: &JobId, slot: usize) -> Self {
        Self {
            sandbox_container: format!("ember-ci-job-{job_id}"),
            plugin_container: format!("ember-csi-{job_id}"),
            pr_image: format!("localhost/ember-csi-job:slot{slot}"),
            extras_image: format!("localhost/ember-csi-job:slot{slot}-extras"),
        }
    }
}

/// The variables every vendor script and the sanity command see.
pub fn job_env(job_id: &JobId, request: &JobRequest) -> Vec<(String, String)> {
    vec![
        ("DRIVER_NAME".into(), request.backend.to_string()),
        ("PR_NUMBER".into(), request.pr.to_string()),
        ("COMMIT_SHA".into(), request.sha.to_string()),
        ("JOB_ID".into(), job_id.to_string()),
        ("SCRATCH_DIR".into(), SANDBOX_SCRATCH_DIR.into()),
        ("TMPDIR".into(), SANDBOX_SCRATCH_DIR.into()),
    ]
}

/// The sandbox path of a file in the config dir.
pub fn sandbox_config_path(config_dir: &Path, file: &Path) -> Result<String, CommandError> {
    let outside = || CommandError::OutsideConfigDir {
        path: file.display().to_string(),
        config_dir: config_dir.display().to_string(),
    };
    let relative = file.strip_prefix(config_dir).map_err(|_| outside())?;
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(outside)?),
            _ => return Err(outside()),
        }
    }
    if parts.is_empty() {
        return Err(outside());
    }
    Ok(format!("{SANDBOX_CONFIG_DIR}/{}", parts.join("/")))
}

/// Runs a script file by its `#!` line as the kernel would (interpreter
/// and at most one argument), or with bash when it has none. Written out
/// because files in the read-only config dir often lack the execute bit.
const RUN_BY_SHEBANG: &str = r#"script=$1; shift
first=; IFS= read -r first < "$script" || true
case "$first" in
  '#!'*)
    line=${first#??}; line=${line#"${line%%[![:space:]]*}"}
    interpreter=${line%%[[:space:]]*}
    arg=${line#"$interpreter"}; arg=${arg#"${arg%%[![:space:]]*}"}; arg=${arg%"${arg##*[![:space:]]}"}
    if [ -n "$arg" ]; then exec "$interpreter" "$arg" "$script" "$@"; fi
    exec "$interpreter" "$script" "$@" ;;
  *) exec bash "$script" "$@" ;;
esac"#;

/// Scratch directory of the job, writable by the vendor's scripts (the
/// config dir is read-only); also their TMPDIR.
pub const SANDBOX_SCRATCH_DIR: &str = "/job/scratch";

/// PRE_RUN / POST_RUN: a file runs by its `#!` line (bash without one),
/// inline text as `bash -c TEXT NAME ARGS`, so that `$1` is the first
/// argument either way.
pub fn vendor_script(
    script: &Script,
    script_name: &str,
    config_dir: &Path,
    args: &[String],
    env: Vec<(String, String)>,
) -> Result<InnerCommand, CommandError> {
    let mut argv = vec!["bash".to_string()];
    match script {
        Script::File(path) => argv.extend([
            "-c".to_string(),
            RUN_BY_SHEBANG.to_string(),
            script_name.to_string(),
            sandbox_config_path(config_dir, path)?,
        ]),
        Script::Inline(text) => {
            argv.extend(["-c".to_string(), text.clone(), script_name.to_string()])
        }
    }
    argv.extend(args.iter().cloned());
    Ok(InnerCommand::new(argv).env(env).workdir(SANDBOX_CONFIG_DIR))
}

/// The PR's image build by the sandbox's own Podman, reusing the slot's
/// cached layers; host networking because the sandbox has no CNI plugins.
pub fn build_pr_image(build_file: &str, tag: &str) -> Result<InnerCommand, CommandError> {
    let path = Path::new(build_file);
    let relative_inside = !build_file.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !relative_inside {
        return Err(CommandError::BadBuildFile(build_file.to_string()));
    }
    Ok(InnerCommand::new([
        "podman",
        "build",
        "--network=host",
        "--layers",
        "-f",
        build_file,
        "-t",
        tag,
        SANDBOX_SOURCE_DIR,
    ])
    .workdir(SANDBOX_SOURCE_DIR))
}

/// The vendor's extras on top of the PR's image: packages, pip packages and
/// free Containerfile text (EXTRA_*_n). None when the vendor has none.
pub fn extras_containerfile(
    base_image: &str,
    packages: &[String],
    pip: &[String],
    extra_instructions: Option<&str>,
) -> Result<Option<String>, CommandError> {
    if packages.is_empty() && pip.is_empty() && extra_instructions.is_none() {
        return Ok(None);
    }
    let mut file = format!("FROM {base_image}\n");
    if !packages.is_empty() {
        let names = quoted_list("EXTRA_PACKAGES", packages, is_system_package)?;
        // The PR decides the base distribution; support the usual managers.
        file.push_str(&format!(
            "RUN if command -v apt-get >/dev/null; then \
             apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {names} \
             && rm -rf /var/lib/apt/lists/*; \
             elif command -v dnf >/dev/null; then dnf install -y {names} && dnf clean all; \
             else yum install -y {names} && yum clean all; fi\n"
        ));
    }
    if !pip.is_empty() {
        let names = quoted_list("EXTRA_PIP", pip, is_pip_requirement)?;
        file.push_str(&format!(
            "RUN python3 -m pip install --no-cache-dir {names}\n"
        ));
    }
    if let Some(text) = extra_instructions {
        file.push_str(text);
        if !text.ends_with('\n') {
            file.push('\n');
        }
    }
    Ok(Some(file))
}

/// Single-quoted, validated names for a generated RUN line (pip specifiers
/// hold `<` and `>`, which a shell would take as redirections).
fn quoted_list(
    what: &'static str,
    names: &[String],
    valid: fn(&str) -> bool,
) -> Result<String, CommandError> {
    names
        .iter()
        .map(|name| {
            if valid(name) {
                Ok(format!("'{name}'"))
            } else {
                Err(CommandError::BadPackage {
                    what,
                    value: name.clone(),
                })
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|quoted| quoted.join(" "))
}

/// A distribution package name, optionally pinned (`name=version`).
fn is_system_package(name: &str) -> bool {
    let (package, version) = match name.split_once('=') {
        Some((package, version)) => (package, Some(version)),
        None => (name, None),
    };
    let package_ok = package.starts_with(|c: char| c.is_ascii_alphanumeric())
        && package
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".+-_".contains(&b));
    let version_ok = version.is_none_or(|v| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".+~:-_".contains(&b))
    });
    package_ok && version_ok
}

/// A pip requirement such as `purestorage>=1.19,<2` or `krest[extra]==1.3`.
fn is_pip_requirement(spec: &str) -> bool {
    spec.starts_with(|c: char| c.is_ascii_alphanumeric())
        && spec
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-[]=<>!~,".contains(&b))
}

/// Builds the extras layer written by [`extras_containerfile`]; the config
/// dir is the context so the vendor's instructions can COPY its files.
pub fn build_extras_image(tag: &str) -> InnerCommand {
    let containerfile = format!("{SANDBOX_JOB_DIR}/{EXTRAS_CONTAINERFILE}");
    InnerCommand::new([
        "podman",
        "build",
        "--network=host",
        "--layers",
        "-f",
        &containerfile,
        "-t",
        tag,
        SANDBOX_CONFIG_DIR,
    ])
}

/// Sources a DRIVER_CONFIG_n script (after PRE_RUN, in the sandbox) and
/// writes what it set into the job dir for the host to read.
pub fn resolve_driver_config(
    config_dir: &Path,
    script: &Path,
    env: Vec<(String, String)>,
) -> Result<InnerCommand, CommandError> {
    let script = sandbox_config_path(config_dir, script)?;
    let body = format!(
        r#"set -e
source "$1"
if [ -z "${{DRIVER_CONFIG:-}}" ]; then echo "$1 did not set DRIVER_CONFIG" >&2; exit 3; fi
printf %s "$DRIVER_CONFIG" > {job}/{json}
printf %s "${{CSI_SYSTEM_FILES:-}}" > {job}/{files}"#,
        job = SANDBOX_JOB_DIR,
        json = DRIVER_JSON_FILE,
        files = SYSTEM_FILES_FILE,
    );
    Ok(InnerCommand::new([
        "bash".to_string(),
        "-c".into(),
        body,
        "driver-config".into(),
        script,
    ])
    .env(env)
    .workdir(SANDBOX_CONFIG_DIR))
}

/// CSI_SYSTEM_FILES as the sandbox sees it: relative paths are taken from
/// the config dir, where the script ran. It becomes a `-v` argument, so the
/// separators of that syntax are refused.
pub fn system_files_path(value: &str) -> Result<Option<String>, CommandError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.contains([':', ',', '\n']) {
        return Err(CommandError::BadSystemFiles(value.to_string()));
    }
    if value.starts_with('/') {
        Ok(Some(value.to_string()))
    } else {
        Ok(Some(format!("{SANDBOX_CONFIG_DIR}/{value}")))
    }
}

/// Prints which of `paths` exist in the sandbox, one per line.
pub fn existing_paths(paths: &[&str]) -> InnerCommand {
    let mut argv = vec![
        "bash".to_string(),
        "-c".into(),
        r#"for p; do if [ -e "$p" ]; then printf '%s\n' "$p"; fi; done"#.into(),
        "existing-paths".into(),
    ];
    argv.extend(paths.iter().map(|p| p.to_string()));
    InnerCommand::new(argv)
}

/// What the plugin container needs besides its image.
pub struct PluginLaunch<'a> {
    pub container_name: &'a str,
    pub image: &'a str,
    /// The backend JSON (may hold passwords).
    pub backend_config: &'a str,
    pub system_files: Option<&'a str>,
    /// The subset of [`PLUGIN_HOST_MOUNTS`] present in the sandbox.
    pub host_mounts: &'a [String],
    /// Labels the nested container, like everything else the job creates.
    pub job_id: &'a JobId,
    /// X_CSI_SPEC_VERSION, X_CSI_EMBER_CONFIG, X_CSI_PERSISTENCE_CONFIG.
    pub settings: &'a PluginSettings,
}

/// Starts the plugin as the old worker did: privileged, host network and
/// IPC, the X_CSI_* settings, the host paths a storage driver touches; and
/// the sandbox's PID namespace, so Ember-CSI's `nsenter -t 1` wrappers
/// reach the sandbox's init, where iscsiadm and multipath live.
pub fn start_plugin(launch: &PluginLaunch<'_>) -> InnerCommand {
    let job_label = format!("{JOB_LABEL}={}", launch.job_id);
    let mut argv: Vec<String> = [
        "podman",
        "run",
        "-d",
        "--name",
        launch.container_name,
        "--privileged",
        "--net=host",
        "--ipc=host",
        "--pid=host",
        "--label",
        job_label.as_str(),
        // The value comes from the exec session's environment, so the
        // backend's passwords never appear in a command line or trace.
        "-e",
        "X_CSI_BACKEND_CONFIG",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let endpoint = format!("{CSI_ENDPOINT_HOST}:{CSI_ENDPOINT_PORT}");
    let plugin = launch.settings;
    let settings = [
        (
            "X_CSI_PERSISTENCE_CONFIG",
            plugin.persistence_config.as_str(),
        ),
        ("X_CSI_EMBER_CONFIG", plugin.ember_config.as_str()),
        ("X_CSI_SPEC_VERSION", plugin.spec_version.as_str()),
        ("CSI_ENDPOINT", endpoint.as_str()),
        ("CSI_MODE", "all"),
    ];
    for (name, value) in settings.into_iter().chain(FIXED_PLUGIN_ENV) {
        argv.extend(["-e".to_string(), format!("{name}={value}")]);
    }
    if let Some(files) = launch.system_files {
        argv.extend(["-e".to_string(), format!("X_CSI_SYSTEM_FILES={files}")]);
        argv.extend(["-v".to_string(), format!("{files}:{files}:ro")]);
    }
    for path in launch.host_mounts {
        let mode = if path == "/etc/localtime" { ":ro" } else { "" };
        argv.extend(["-v".to_string(), format!("{path}:{path}{mode}")]);
    }
    argv.push(launch.image.to_string());
    InnerCommand::new(argv).env([(
        "X_CSI_BACKEND_CONFIG".to_string(),
        launch.backend_config.to_string(),
    )])
}

/// What one readiness probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginProbe {
    Serving,
    Starting,
    Exited(i64),
    /// The plugin container is gone or the probe printed nonsense.
    Unknown(String),
}

/// One readiness probe: can we connect to the endpoint, and if not, is the
/// plugin container still running? One exec instead of two per second.
pub fn probe_plugin(container_name: &str) -> InnerCommand {
    let script = format!(
        "if (: </dev/tcp/{CSI_ENDPOINT_HOST}/{CSI_ENDPOINT_PORT}) 2>/dev/null; then echo serving; \
         else podman inspect --format '{{{{.State.Status}}}} {{{{.State.ExitCode}}}}' \"$1\"; fi"
    );
    InnerCommand::new([
        "bash".to_string(),
        "-c".into(),
        script,
        "probe".into(),
        container_name.into(),
    ])
}

pub fn parse_probe(output: &str) -> PluginProbe {
    let output = output.trim();
    if output == "serving" {
        return PluginProbe::Serving;
    }
    let mut words = output.split_whitespace();
    match (
        words.next(),
        words.next().map(str::parse::<i64>),
        words.next(),
    ) {
        (Some("exited" | "stopped" | "dead"), Some(Ok(code)), None) => PluginProbe::Exited(code),
        (Some("created" | "configured" | "initialized" | "running"), Some(Ok(_)), None) => {
            PluginProbe::Starting
        }
        _ => PluginProbe::Unknown(output.to_string()),
    }
}

pub fn plugin_logs(container_name: &str) -> InnerCommand {
    InnerCommand::new(["podman", "logs", container_name])
}

/// Removes every nested container, pod and volume from the slot's store,
/// and the working containers of a build that was killed (only
/// `--external` lists those). Their records live in the persistent store
/// and would otherwise outlive the sandbox. Run at a job's start (a crashed
/// job's leftovers) and at its end; a slot's store serves one job at a
/// time, so everything in it belongs to the job that runs it.
pub fn reset_slot_store() -> InnerCommand {
    InnerCommand::new([
        "bash",
        "-c",
        "set -eu\n\
         podman rm --all --force --time 0\n\
         podman pod rm --all --force\n\
         podman volume prune --force\n\
         podman ps --all --external --format '{{.ID}}' | xargs --no-run-if-empty podman rm --force",
    ])
}

/// Every image of the slot's store (the host's read-only ones included).
pub fn list_images() -> InnerCommand {
    InnerCommand::new(["podman", "images", "--all", "--format", "json"])
}

/// Removes dangling images (superseded PR builds, whose tag moved on) and,
/// repeatedly, the cache layers only they used.
pub fn prune_dangling_images() -> InnerCommand {
    InnerCommand::new(["podman", "image", "prune", "--force"])
}

/// Removes one image; never forced, so an image in use stays.
pub fn remove_image(id: &str) -> InnerCommand {
    InnerCommand::new(["podman", "rmi", id])
}

/// The sanity suite, run from the config dir (the vendor's command may use
/// helper files there).
pub fn sanity(command: &str, env: Vec<(String, String)>) -> InnerCommand {
    InnerCommand::new(["bash", "-c", command])
        .env(env)
        .workdir(SANDBOX_CONFIG_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn names() -> JobNames {
        JobNames::new(&JobId::parse("20261127-abc123").expect("valid id"), 1)
    }

    #[test]
    fn job_names_follow_the_slot_and_job() {
        let names = names();
        assert_eq!(names.sandbox_container, "ember-ci-job-20261127-abc123");
        assert_eq!(names.plugin_container, "ember-csi-20261127-abc123");
        assert_eq!(names.pr_image, "localhost/ember-csi-job:slot1");
    }

    #[test]
    fn script_files_must_live_in_the_config_dir() {
        let dir = Path::new("/etc/ember");
        assert_eq!(
            sandbox_config_path(dir, Path::new("/etc/ember/hooks/pre.sh")),
            Ok("/config/hooks/pre.sh".into())
        );
        assert!(sandbox_config_path(dir, Path::new("/etc/other/pre.sh")).is_err());
        assert!(sandbox_config_path(dir, Path::new("/etc/ember/../x.sh")).is_err());
        assert!(sandbox_config_path(dir, Path::new("/etc/ember")).is_err());
    }

    #[test]
    fn inline_and_file_scripts_both_get_the_result_as_dollar_one() {
        let dir = Path::new("/cfg");
        let inline = vendor_script(
            &Script::Inline("echo $1".into()),
            "post-run",
            dir,
            &["2".into()],
            vec![],
        )
        .expect("inline script");
        assert_eq!(inline.argv, ["bash", "-c", "echo $1", "post-run", "2"]);
        let file = vendor_script(
            &Script::File(PathBuf::from("/cfg/post.sh")),
            "post-run",
            dir,
            &["0".into()],
            vec![],
        )
        .expect("file script");
        assert_eq!(file.argv[..2], ["bash", "-c"]);
        assert_eq!(file.argv[3..], ["post-run", "/config/post.sh", "0"]);
        assert_eq!(file.workdir.as_deref(), Some("/config"));
    }

    #[test]
    fn build_file_cannot_leave_the_checkout() {
        let build =
            build_pr_image("docker/Dockerfile", "localhost/x:slot0").expect("relative build file");
        assert_eq!(
            build.trace(),
            "$ podman build --network=host --layers -f docker/Dockerfile -t localhost/x:slot0 /job/src\n"
        );
        for bad in ["", "/etc/passwd", "../Dockerfile", "a/../../b"] {
            assert!(build_pr_image(bad, "t").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn plugin_secrets_travel_in_the_environment_not_the_command_line() {
        let mounts = vec!["/dev".to_string(), "/etc/localtime".to_string()];
        let job_id = JobId::parse("20261127-abc123").expect("valid id");
        let launch = PluginLaunch {
            job_id: &job_id,
            container_name: "ember-csi-j1",
            image: "localhost/ember-csi-job:slot0",
            backend_config: r#"{"password":"hunter2"}"#,
            system_files: Some("/config/ceph.tar"),
            host_mounts: &mounts,
            settings: &PluginSettings {
                spec_version: "v0.3".into(),
                ..PluginSettings::default()
            },
        };
        let command = start_plugin(&launch);
        assert!(!command.trace().contains("hunter2"));
        assert!(command
            .argv
            .windows(2)
            .any(|w| w == ["-e", "X_CSI_BACKEND_CONFIG"]));
        assert_eq!(
            command.env,
            [(
                "X_CSI_BACKEND_CONFIG".to_string(),
                launch.backend_config.to_string()
            )]
        );
        for expected in [
            "X_CSI_SYSTEM_FILES=/config/ceph.tar",
            "/config/ceph.tar:/config/ceph.tar:ro",
            "/dev:/dev",
            "/etc/localtime:/etc/localtime:ro",
            "CSI_ENDPOINT=127.0.0.1:50051",
            "X_CSI_SPEC_VERSION=v0.3",
            "--pid=host",
            "EVENTLET_NO_GREENDNS=yes",
            r#"X_CSI_EMBER_CONFIG={"project_id":"io.ember-csi","user_id":"io.ember-csi","disable_logs":false,"debug":true,"request_multipath":true}"#,
            "ember-ci.job=20261127-abc123",
            r#"X_CSI_PERSISTENCE_CONFIG={"storage":"memory"}"#,
        ] {
            assert!(
                command.argv.iter().any(|a| a == expected),
                "missing {expected}"
            );
        }
        assert_eq!(
            command.argv.last().map(String::as_str),
            Some("localhost/ember-csi-job:slot0")
        );
    }

    #[test]
    fn system_files_paths_are_resolved_and_checked() {
        assert_eq!(system_files_path(""), Ok(None));
        assert_eq!(
            system_files_path("ceph.tar"),
            Ok(Some("/config/ceph.tar".into()))
        );
        assert_eq!(
            system_files_path("/tmp/x.tar"),
            Ok(Some("/tmp/x.tar".into()))
        );
        assert!(system_files_path("/tmp/x.tar:/etc").is_err());
    }

    #[test]
    fn probe_output_is_classified() {
        assert_eq!(parse_probe("serving\n"), PluginProbe::Serving);
        assert_eq!(parse_probe("running 0\n"), PluginProbe::Starting);
        assert_eq!(parse_probe("exited 255\n"), PluginProbe::Exited(255));
        assert!(matches!(
            parse_probe("Error: no such container x"),
            PluginProbe::Unknown(_)
        ));
    }

    #[test]
    fn extras_layer_quotes_validated_names() {
        assert_eq!(extras_containerfile("base", &[], &[], None), Ok(None));
        let file = extras_containerfile(
            "localhost/ember-csi-job:slot0",
            &["sg3-utils".into(), "libfoo=1.2-3".into()],
            &["purestorage>=1.19,<2".into()],
            Some("ENV VENDOR=1"),
        )
        .expect("valid extras")
        .expect("extras present");
        assert!(file.starts_with("FROM localhost/ember-csi-job:slot0\n"));
        assert!(file.contains("'sg3-utils' 'libfoo=1.2-3'"));
        assert!(file.contains("pip install --no-cache-dir 'purestorage>=1.19,<2'\n"));
        assert!(file.ends_with("ENV VENDOR=1\n"));
        for bad in ["x; rm -rf /", "$(id)", "-o", "a'b"] {
            assert!(
                extras_containerfile("b", &[bad.into()], &[], None).is_err(),
                "{bad:?} accepted"
            );
            assert!(
                extras_containerfile("b", &[], &[bad.into()], None).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn trace_quotes_only_what_needs_it() {
        let command = InnerCommand::new(["bash", "-c", "echo 'hi' $1", "x"]);
        assert_eq!(
            command.trace(),
            r#"$ bash -c 'echo '\''hi'\'' $1' x"#.to_string() + "\n"
        );
    }
}
