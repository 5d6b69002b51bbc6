//! Secrets at rest: the config dir holds GH_TOKEN, the webhook secret and
//! the array's passwords; the state dir holds the journal and job logs. Both
//! should be closed to other users. This only reports: a vendor may have a
//! reason (a read-only bind mount owned by someone else), so ember-ci warns
//! and starts anyway.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Permission bits that give other users access.
const OTHERS_READ: u32 = 0o004;
const OTHERS_WRITE: u32 = 0o002;

/// A path other users can read or change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    pub path: PathBuf,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// What the path holds, for the warning.
    pub holds: &'static str,
}

impl Exposure {
    pub fn is_world_writable(&self) -> bool {
        self.mode & OTHERS_WRITE != 0
    }
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = if self.is_world_writable() {
            "readable and writable"
        } else {
            "readable"
        };
        write!(
            f,
            "{} ({}) is {access} by every user (mode {:04o}); run `chmod o-rwx {}`",
            self.path.display(),
            self.holds,
            self.mode,
            self.path.display()
        )
    }
}

/// The config dir, the files directly in it, and the state dir and its
/// journal, when other users can read or write them. Paths that do not
/// exist are skipped (the state dir is created private on first start).
pub fn exposed_paths(config_dir: &Path, state_dir: &Path) -> Vec<Exposure> {
    let mut candidates = vec![(config_dir.to_path_buf(), "the config dir")];
    if let Ok(entries) = std::fs::read_dir(config_dir) {
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        candidates.extend(
            files
                .into_iter()
                .map(|path| (path, "config: tokens, passwords")),
        );
    }
    candidates.push((state_dir.to_path_buf(), "the state dir: journal, logs"));
    candidates.push((
        state_dir.join(super::JOURNAL_FILE),
        "the journal: deliveries, statuses",
    ));
    candidates
        .into_iter()
        .filter_map(|(path, holds)| {
            let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o7777;
            (mode & (OTHERS_READ | OTHERS_WRITE) != 0).then_some(Exposure { path, mode, holds })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn world_readable_config_and_state_are_reported_private_ones_are_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config-dir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&config).expect("mkdir");
        std::fs::create_dir_all(&state).expect("mkdir");
        std::fs::write(config.join("config"), "GH_TOKEN=x").expect("write");
        std::fs::write(config.join("pre.sh"), "true").expect("write");
        chmod(&config, 0o755);
        chmod(&config.join("config"), 0o644);
        chmod(&config.join("pre.sh"), 0o600);
        chmod(&state, 0o777);

        let exposed = exposed_paths(&config, &state);
        let paths: Vec<&Path> = exposed.iter().map(|e| e.path.as_path()).collect();
        assert_eq!(paths, [config.as_path(), &config.join("config"), &state]);
        assert!(exposed[2].is_world_writable());
        assert!(
            exposed[1].to_string().contains("mode 0644"),
            "{}",
            exposed[1]
        );

        chmod(&config, 0o700);
        chmod(&config.join("config"), 0o600);
        chmod(&state, 0o750);
        assert_eq!(exposed_paths(&config, &state), []);
    }
}
