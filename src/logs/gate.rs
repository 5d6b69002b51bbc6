//! The publish gate: the last check before a job folder leaves the host.
//! Every file is read back and searched for every known secret form; one
//! hit and nothing is published. Masking bugs, secrets added to SECRETS
//! after a job started, or a file written around the masker all end here.

use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::mask::Masker;

#[derive(Debug, Error)]
pub enum GateError {
    /// Names the file, never the secret.
    #[error("a known secret survived masking in {file}")]
    SecretFound { file: String },
    #[error("cannot scan {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Checks every file under `dir` (recursively) against `secrets`.
pub fn check_folder(dir: &Path, secrets: &Masker) -> Result<(), GateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GateError::Io { path, source }
    };
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let mut paths = fs::read_dir(&current)
            .map_err(io(&current))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io(&current))?;
        // Sorted, so the reported file is the same on every run.
        paths.sort();
        for path in paths {
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes = fs::read(&path).map_err(io(&path))?;
            if secrets.contains_secret(&String::from_utf8_lossy(&bytes)) {
                let file = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                return Err(GateError::SecretFound { file });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_base64_form_in_a_nested_file_and_names_only_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        fs::write(dir.path().join("a.txt"), "nothing here").expect("write");
        fs::write(dir.path().join("sub/b.html"), "token=aHVudGVyMjIyMg==").expect("write");
        let err = check_folder(dir.path(), &Masker::new(["hunter2222"])).expect_err("leak");
        assert_eq!(
            err.to_string(),
            "a known secret survived masking in sub/b.html"
        );
        assert!(check_folder(dir.path(), &Masker::new(["other-secret"])).is_ok());
    }
}
