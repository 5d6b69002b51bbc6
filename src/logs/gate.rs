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
            let text = String::from_utf8_lossy(&bytes);
            // Also as a reader sees it: colour codes can split a secret,
            // and HTML pages hold it entity-escaped.
            if secrets.contains_secret(&text) || secrets.contains_secret(&plain_text(&text)) {
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

/// `text` without ANSI escape sequences and with HTML entities decoded.
fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // CSI: ESC [ parameters intermediates final (0x40..=0x7e).
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // Any other escape: ESC and the one character after it.
            '\u{1b}' => {
                chars.next();
            }
            '&' => {
                let rest: String = chars.clone().take(12).collect();
                match rest
                    .find(';')
                    .and_then(|end| Some((end, entity(&rest[..end])?)))
                {
                    Some((end, decoded)) => {
                        out.push(decoded);
                        for _ in 0..=end {
                            chars.next();
                        }
                    }
                    None => out.push('&'),
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// An HTML entity's character (`amp`, `#39`, `#x27`, ...).
fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
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

    #[test]
    fn finds_a_secret_split_by_colour_codes_or_escaped_as_html() {
        let masker = Masker::new(["p<ss&w0rd"]);
        for (file, text) in [
            ("ansi.txt", "pw: p<ss\u{1b}[1;31m&w0rd\u{1b}[0m"),
            ("page.html", "<pre>p&lt;ss&amp;w0rd</pre>"),
            ("numeric.html", "p&#60;ss&#x26;w0rd"),
        ] {
            let dir = tempfile::tempdir().expect("temp dir");
            fs::write(dir.path().join(file), text).expect("write");
            assert!(check_folder(dir.path(), &masker).is_err(), "{file}");
        }
        assert_eq!(
            plain_text("a &amp b &unknown; c\u{1b}[0m"),
            "a &amp b &unknown; c"
        );
    }
}
