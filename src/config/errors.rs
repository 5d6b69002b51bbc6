//! The loader's error type: one problem per key, worded for the vendor who
//! must fix it, and the mapping of config file syntax errors onto it.

use std::fmt;

use thiserror::Error;

use super::keys::CONFIG_FILE_NAME;
use super::shell::{ShellError, ShellErrorKind};

/// One problem with the config, worded for the vendor who must fix it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {problem} — {fix}")]
pub struct ConfigError {
    /// The config key (or `config` for the file itself).
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    pub(super) fn new(
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Every problem found, in the order the keys are checked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// Whether any problem concerns `key`.
    pub fn mentions(&self, key: &str) -> bool {
        self.0.iter().any(|error| error.key == key)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

/// A syntax error in the `config` file, with the fix for its kind.
pub(super) fn shell_error(error: &ShellError) -> ConfigError {
    let fix = match &error.kind {
        ShellErrorKind::NotAnAssignment { .. } => {
            "the config file may only assign variables (KEY=value); move commands into a PRE_RUN script"
        }
        ShellErrorKind::InvalidName { .. } => "use letters, digits and '_' in key names",
        ShellErrorKind::SpaceBeforeEquals { .. } | ShellErrorKind::SpaceAfterEquals { .. } => {
            "write KEY=value with no spaces around '='"
        }
        ShellErrorKind::CommandAfterAssignment { .. } => "quote the value: KEY=\"value with spaces\"",
        ShellErrorKind::UnterminatedQuote { .. } => "close the quote",
        ShellErrorKind::UnterminatedExpansion | ShellErrorKind::BadSubstitution { .. } => {
            "write ${NAME}, ${NAME:-default} or ${NAME-default}"
        }
        ShellErrorKind::Unsupported { .. } => {
            "put literal values in the file, or move the logic into a PRE_RUN or DRIVER_CONFIG script"
        }
        ShellErrorKind::SpecialParameter { .. } => {
            "to pass it to a script, single-quote the value: POST_RUN_1='echo result $1'"
        }
    };
    ConfigError::new(CONFIG_FILE_NAME, error.to_string(), fix)
}
