//! The human summary of a loaded config, printed by `ember-ci check-config`
//! so a vendor can see what the CI understood from their files.
//!
//! It must be safe to paste into an issue: secrets show only as "set" or
//! "not set", credential values in driver configs as `***` (URLs cannot
//! hold passwords: the loader rejects them), and any known secret value
//! that turns up elsewhere (an inline script, a sanity command) is masked
//! by a final pass.

use std::net::SocketAddr;
use std::time::Duration;

use super::credentials::{mask_driver_config_json, MASK};
use super::types::{BackendConfig, Config, DriverConfig, Script, Secret};

/// Label widths, so each part of the summary reads as a table.
const FIELD_LABEL_WIDTH: usize = 18;
const BACKEND_LABEL_WIDTH: usize = 21;

/// Secret values shorter than this are not searched for in the text: a
/// one-character "secret" would turn every matching digit into `***`.
const MIN_MASKED_SECRET_CHARS: usize = 4;

/// The summary of `config`, one setting per line, ending with a newline.
pub fn summary(config: &Config) -> String {
    let mut out = Summary::default();
    out.heading(&format!(
        "ember-ci configuration from {}",
        config.dir.display()
    ));
    out.field("repository", &config.github.repo.to_string());
    out.field("GitHub API", &config.github.api_url);
    out.field("clone URL", &config.executor.clone_url);
    out.field(
        "GitHub user",
        if config.github.user.is_empty() {
            "not set"
        } else {
            &config.github.user
        },
    );
    out.field("GitHub token", &token_state(&config.github.token));
    out.field(
        "webhook secret",
        secret_state(&config.github.webhook_secret),
    );
    out.field(
        "signatures",
        "X-Hub-Signature-256; SHA-1 (X-Hub-Signature) alone still accepted for old saved deliveries, with a warning",
    );
    out.field("deliveries", &deliveries(config));
    let web = SocketAddr::new(config.web.addr, config.web.port);
    let admin = config
        .web
        .admin_token
        .as_ref()
        .map_or("not set", secret_state);
    out.field(
        "web",
        &format!(
            "webhook http://{web}, UI http://127.0.0.1:{} (admin token {admin}; actions {})",
            config.web.ui_port,
            if config.web.admin_token.is_some() {
                "enabled"
            } else {
                "disabled"
            }
        ),
    );
    out.field("workers", &config.service.num_workers.to_string());
    out.field("state dir", &config.service.state_dir.display().to_string());
    out.field("build file", &config.executor.build_file);
    out.field(
        "timeouts",
        &format!(
            "job {}, plugin start {}, shutdown grace {}",
            human_duration(config.executor.job_timeout),
            human_duration(config.executor.plugin_start_timeout),
            human_duration(config.service.shutdown_grace)
        ),
    );
    out.field("podman", &podman(config));
    for host in &config.executor.hosts {
        let target = match &host.target {
            crate::config::HostTarget::Ssh { target, identity } => match identity {
                Some(file) => format!("{target} (identity {})", file.display()),
                None => target.to_string(),
            },
            crate::config::HostTarget::Connection(name) => format!("podman connection {name}"),
        };
        out.field(
            &format!("host {}", host.name),
            &format!("{target}, {} slot(s)", host.slots),
        );
    }
    out.field("sandbox image", &sandbox_image(config));
    out.field("csi-sanity", &csi_sanity(config));
    out.field(
        "image store max",
        &format!("{} GB", config.executor.image_store_max_gb),
    );
    out.field("trusted users", &list_or_none(&config.github.trusted_users));
    out.field("extra secrets", &count_of_values(config.logs.secrets.len()));
    out.field("logs", &logs(config));
    out.heading(&format!("backends ({})", config.backends.len()));
    for backend in &config.backends {
        backend_section(&mut out, backend);
    }
    if !config.obsolete_keys.is_empty() {
        out.heading(&format!(
            "obsolete keys, ignored: {}",
            config.obsolete_keys.join(", ")
        ));
    }
    if !config.warnings.is_empty() {
        out.heading("warnings");
        for warning in &config.warnings {
            out.line(&format!("  - {warning}"));
        }
    }
    mask_secret_values(out.text, &config.masked_values())
}

#[derive(Default)]
struct Summary {
    text: String,
}

impl Summary {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn heading(&mut self, heading: &str) {
        self.line(heading);
    }

    fn field(&mut self, label: &str, value: &str) {
        self.labelled("  ", FIELD_LABEL_WIDTH, label, value);
    }

    /// `indent label value`, with later lines of a multi-line value
    /// aligned under its first line.
    fn labelled(&mut self, indent: &str, width: usize, label: &str, value: &str) {
        let width = width.max(label.len() + 1);
        let mut lines = value.lines();
        let first = lines.next().unwrap_or_default();
        self.line(format!("{indent}{label:<width$}{first}").trim_end());
        let continuation = " ".repeat(indent.len() + width);
        for line in lines {
            self.line(format!("{continuation}{line}").trim_end());
        }
    }
}

fn backend_section(out: &mut Summary, backend: &BackendConfig) {
    out.line(&format!(
        "  [{}] {} (status context {})",
        backend.index,
        backend.name,
        backend.name.status_context()
    ));
    let driver_config = match &backend.driver_config {
        DriverConfig::Json(text) => mask_driver_config_json(text),
        DriverConfig::Script(path) => {
            format!("script {} (sourced, sets DRIVER_CONFIG)", path.display())
        }
    };
    let containerfile = backend
        .extra_containerfile
        .as_deref()
        .map_or("none".to_string(), |path| path.display().to_string());
    let fields = [
        ("driver config", driver_config),
        ("pre-run", script(backend.pre_run.as_ref())),
        ("post-run", script(backend.post_run.as_ref())),
        ("sanity command", backend.sanity_command.clone()),
        (
            "sanity timeout",
            format!("{}s", backend.sanity_timeout.as_secs()),
        ),
        ("extra packages", list_or_none(&backend.extra_packages)),
        ("extra pip", list_or_none(&backend.extra_pip)),
        ("extra containerfile", containerfile),
        ("CSI spec version", backend.plugin.spec_version.clone()),
        (
            "csi-sanity",
            backend.csi_sanity.as_ref().map_or_else(
                || "the sandbox's own".to_string(),
                |build| format!("{} (commit {})", build.version, build.commit),
            ),
        ),
        ("ember config", backend.plugin.ember_config.clone()),
        (
            "persistence config",
            backend.plugin.persistence_config.clone(),
        ),
        (
            "sandbox daemons",
            if backend.plugin.daemons.is_empty() {
                "none".to_string()
            } else {
                let names: Vec<&str> = backend.plugin.daemons.iter().map(|d| d.name()).collect();
                names.join(" ")
            },
        ),
    ];
    for (label, value) in fields {
        out.labelled("      ", BACKEND_LABEL_WIDTH, label, &value);
    }
    if backend.hosts.iter().any(|host| !host.is_local()) {
        let hosts: Vec<&str> = backend.hosts.iter().map(|h| h.as_str()).collect();
        out.labelled("      ", BACKEND_LABEL_WIDTH, "hosts", &hosts.join(", "));
    }
}

fn script(script: Option<&Script>) -> String {
    match script {
        None => "none".to_string(),
        Some(Script::File(path)) => format!("file {}", path.display()),
        Some(Script::Inline(text)) => format!("inline:\n{}", text.trim_matches('\n')),
    }
}

fn secret_state(secret: &Secret) -> &'static str {
    if secret.is_empty() {
        "not set"
    } else {
        "set"
    }
}

fn token_state(token: &Secret) -> String {
    if token.is_empty() {
        "not set (statuses are printed, not posted)".to_string()
    } else {
        "set".to_string()
    }
}

fn deliveries(config: &Config) -> String {
    let mut ways = vec!["HTTP endpoint".to_string()];
    // The channel is a secret: whoever follows it collects signed bodies.
    if config.relay.smee_url.is_some() {
        ways.push("smee relay (channel set)".to_string());
    }
    if let Some(interval) = config.relay.poll_interval {
        ways.push(format!("API poll every {}", human_duration(interval)));
    }
    ways.join(", ")
}

fn podman(config: &Config) -> String {
    match &config.executor.podman_socket {
        Some(socket) => format!("socket {}", socket.display()),
        None => "own `podman system service`".to_string(),
    }
}

fn sandbox_image(config: &Config) -> String {
    let executor = &config.executor;
    match &executor.sandbox_image {
        Some(image) => image.clone(),
        None => format!("built locally FROM {}", executor.sandbox_base_image),
    }
}

/// Where csi-sanity comes from and how it is checked.
fn csi_sanity(config: &Config) -> String {
    match (&config.executor.sandbox_image, &config.executor.csi_sanity) {
        (Some(_), _) => "whatever SANDBOX_IMAGE holds (not built, not verified)".to_string(),
        (None, None) => "not installed (SANDBOX_SKIP_CSI_SANITY=1)".to_string(),
        (None, Some(source)) => {
            let mut text = format!(
                "built from source: {} tag {}, verified to be commit {} before building",
                source.repo, source.version, source.commit
            );
            for build in &config.executor.csi_sanity_extra {
                text.push_str(&format!(
                    "\nand tag {}, verified to be commit {}",
                    build.version, build.commit
                ));
            }
            text
        }
    }
}

fn logs(config: &Config) -> String {
    let logs = &config.logs;
    let branch = if logs.branch_per_backend {
        "one branch per backend".to_string()
    } else {
        format!("branch {}", logs.branch)
    };
    let place = match (&logs.repo, &logs.url) {
        (None, _) => "kept locally, not pushed".to_string(),
        (Some(repo), None) => format!("pushed to {repo} {branch}"),
        (Some(repo), Some(url)) => format!("pushed to {repo} {branch}, published at {url}"),
    };
    format!(
        "{place} ({}); kept {} days",
        logs.reason, logs.retention_days
    )
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(" ")
    }
}

fn count_of_values(count: usize) -> String {
    match count {
        0 => "none".to_string(),
        1 => "1 value, masked in logs".to_string(),
        n => format!("{n} values, masked in logs"),
    }
}

/// `1h`, `5m`, `1m30s`, `0s`.
fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut text = String::new();
    for (amount, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s")] {
        if amount > 0 {
            text.push_str(&format!("{amount}{unit}"));
        }
    }
    if text.is_empty() {
        text.push_str("0s");
    }
    text
}

/// Replaces every occurrence of the given secrets, longest first so a
/// secret containing another is masked whole.
fn mask_secret_values(mut text: String, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets
        .iter()
        .filter(|secret| secret.chars().count() >= MIN_MASKED_SECRET_CHARS)
        .collect();
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    for secret in secrets {
        text = text.replace(secret.as_str(), MASK);
    }
    text
}
