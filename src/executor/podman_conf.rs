//! The containers.conf our own `podman system service` runs with: the
//! host's settings, with `[engine] exit_command_delay` bounded.
//!
//! Podman's API keeps the conmon of every finished exec session alive for
//! that delay (default 300 s) so a client can still read the exit code. A
//! job runs dozens of short execs, so hundreds of conmon processes piled up
//! on a busy host. We read the code within milliseconds of the output
//! closing; a delay of 0 races that read (the session is gone first,
//! measured on Podman 4.3.1), so a few seconds bound the pile safely.
//!
//! Podman 4.3 has no `CONTAINERS_CONF_OVERRIDE`, only `CONTAINERS_CONF`,
//! which replaces every other file: hence the merge of what Podman would
//! have read.

use std::path::{Path, PathBuf};

/// Seconds a finished exec session's conmon stays, at most.
pub const EXIT_COMMAND_DELAY_SECS: i64 = 5;

/// The variable that points Podman at the written file.
pub const CONTAINERS_CONF: &str = "CONTAINERS_CONF";

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The files Podman reads, in order (containers.conf(5)); a set
/// `CONTAINERS_CONF` replaces them all.
fn sources() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os(CONTAINERS_CONF) {
        return vec![PathBuf::from(path)];
    }
    let mut dirs = vec![
        PathBuf::from("/usr/share/containers"),
        PathBuf::from("/etc/containers"),
    ];
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
        dirs.extend(config_home.map(|d| d.join("containers")));
    }
    let mut files = Vec::new();
    for dir in dirs {
        files.push(dir.join("containers.conf"));
        let mut drop_ins: Vec<PathBuf> = std::fs::read_dir(dir.join("containers.conf.d"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "conf"))
            .collect();
        drop_ins.sort();
        files.extend(drop_ins);
    }
    files
}

/// Later tables add to and override earlier ones, key by key, as Podman does.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new)) => merge(old, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// The merged settings with the delay bounded (a smaller one is kept).
fn bounded(files: &[PathBuf]) -> Result<toml::Table, ConfError> {
    let mut merged = toml::Table::new();
    for path in files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ConfError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let table = text
            .parse::<toml::Table>()
            .map_err(|source| ConfError::Parse {
                path: path.display().to_string(),
                source,
            })?;
        merge(&mut merged, table);
    }
    let engine = merged
        .entry("engine")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(engine) = engine {
        let delay = engine
            .get("exit_command_delay")
            .and_then(toml::Value::as_integer)
            .map_or(EXIT_COMMAND_DELAY_SECS, |d| {
                d.clamp(1, EXIT_COMMAND_DELAY_SECS)
            });
        engine.insert("exit_command_delay".into(), delay.into());
    }
    Ok(merged)
}

/// Writes the bounded containers.conf to `dest`; the service gets it as
/// `CONTAINERS_CONF`.
pub fn write(dest: &Path) -> Result<(), ConfError> {
    let merged = bounded(&sources())?;
    std::fs::write(dest, merged.to_string()).map_err(|source| ConfError::Write {
        path: dest.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("writing a conf");
        path
    }

    #[test]
    fn host_settings_are_kept_and_the_delay_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = [
            conf(dir.path(), "a.conf", "[engine]\nruntime = \"crun\"\nexit_command_delay = 300\n[containers]\npids_limit = 10\n"),
            conf(dir.path(), "b.conf", "[engine]\nruntime = \"runc\"\n"),
            dir.path().join("missing.conf"),
        ];
        let merged = bounded(&files).expect("merged");
        assert_eq!(merged["engine"]["runtime"].as_str(), Some("runc"));
        assert_eq!(merged["containers"]["pids_limit"].as_integer(), Some(10));
        assert_eq!(
            merged["engine"]["exit_command_delay"].as_integer(),
            Some(EXIT_COMMAND_DELAY_SECS)
        );
    }

    #[test]
    fn a_shorter_delay_is_kept_but_never_zero() {
        let dir = tempfile::tempdir().expect("temp dir");
        let two = conf(dir.path(), "two.conf", "[engine]\nexit_command_delay = 2\n");
        let zero = conf(
            dir.path(),
            "zero.conf",
            "[engine]\nexit_command_delay = 0\n",
        );
        let delay = |files: &[PathBuf]| {
            bounded(files).expect("merged")["engine"]["exit_command_delay"].as_integer()
        };
        assert_eq!(delay(&[two]), Some(2));
        assert_eq!(delay(&[zero]), Some(1));
    }

    #[test]
    fn broken_toml_names_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bad = conf(dir.path(), "bad.conf", "[engine\n");
        let error = bounded(&[bad]).expect_err("broken TOML").to_string();
        assert!(error.contains("bad.conf"), "{error}");
    }
}
