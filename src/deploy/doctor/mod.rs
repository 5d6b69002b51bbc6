//! `ember-ci doctor`: checks a host and its config before going live and
//! says what to fix. Each check yields findings; a `Block` finding means a
//! job cannot run (or cannot report) until it is fixed, and makes the
//! command exit non-zero. Host probes read /sys, /dev and `podman`;
//! GitHub probes ask the configured API with the configured token; the
//! relay probe opens the configured smee channel.

mod github;
mod host;
mod relay;

use std::fmt;
use std::path::Path;

use crate::config::Config;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Works, but something will hurt (a backend kind, disk, limits).
    Warn,
    /// No job can run or report until this is fixed.
    Block,
}

/// One result: what was checked, what was found, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub check: &'static str,
    pub detail: String,
    /// What to do; set for every Warn and Block.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            level: Level::Ok,
            check,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            level: Level::Warn,
            check,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn block(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            level: Level::Block,
            ..Finding::warn(check, detail, fix)
        }
    }
}

/// Every finding, in the order checked.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether anything keeps a job from running or reporting.
    pub fn blocks(&self) -> bool {
        self.findings.iter().any(|f| f.level == Level::Block)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            let level = match finding.level {
                Level::Ok => "ok",
                Level::Warn => "WARN",
                Level::Block => "BLOCK",
            };
            writeln!(f, "{level:<5} {:<14} {}", finding.check, finding.detail)?;
            if let Some(fix) = &finding.fix {
                writeln!(f, "{:<20} fix: {fix}", "")?;
            }
        }
        let verdict = if self.blocks() {
            "not ready: fix the BLOCK lines"
        } else {
            "ready"
        };
        writeln!(f, "{verdict}")
    }
}

/// Checks this host and the config dir `dir`.
pub async fn diagnose(dir: &Path) -> Report {
    let mut findings = host::checks();
    match Config::load(dir) {
        Err(errors) => findings.push(Finding::block(
            "config",
            format!("{} does not load:\n{errors}", dir.display()),
            format!(
                "correct the keys named above (`ember-ci check-config {}`)",
                dir.display()
            ),
        )),
        Ok(config) => {
            findings.push(Finding::ok(
                "config",
                format!(
                    "{} loads, {} backend(s)",
                    dir.display(),
                    config.backends.len()
                ),
            ));
            for warning in &config.warnings {
                findings.push(Finding::warn(
                    "config",
                    warning.clone(),
                    "edit the config file",
                ));
            }
            for key in &config.obsolete_keys {
                findings.push(Finding::warn(
                    "config",
                    format!("{key} is a key of the old CI and means nothing now"),
                    format!("delete {key}"),
                ));
            }
            findings.extend(host::disk(&config));
            findings.extend(host::podman_hosts(&config).await);
            findings.push(relay::check(&config.relay).await);
            findings.extend(github::checks(&config).await);
        }
    }
    Report { findings }
}
