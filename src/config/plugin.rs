//! What a backend's plugin and its test suite get, as the old CI gave them:
//! the CSI spec version and the csi-sanity able to test it, the X_CSI_*
//! settings of the old worker's env-file, the host daemons of the old VM,
//! and the old worker's csi-sanity flags translated for csi-sanity v5.
//! Pure functions over the config's text; the loader reports what they
//! refuse.

use super::types::{CsiSanityBuild, HostDaemon, PluginSettings};
use super::values::quoted;

/// The old worker's `X_CSI_EMBER_CONFIG` (worker/root/env-file of
/// embercsi/3rd-party-ci): multipath requested, debug logs on.
pub const DEFAULT_EMBER_CONFIG: &str = r#"{"project_id":"io.ember-csi","user_id":"io.ember-csi","disable_logs":false,"debug":true,"request_multipath":true}"#;
/// The old worker's `X_CSI_PERSISTENCE_CONFIG`.
pub const DEFAULT_PERSISTENCE_CONFIG: &str = r#"{"storage":"memory"}"#;
/// The later old CI's default `CSI_SPEC_VERSION`.
pub const DEFAULT_CSI_SPEC_VERSION: &str = "v1.1";
/// The old VM ran both.
pub const DEFAULT_SANDBOX_DAEMONS: &str = "iscsid multipathd";

/// The old worker's settings: what a backend gets without its keys.
impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            spec_version: DEFAULT_CSI_SPEC_VERSION.to_string(),
            ember_config: DEFAULT_EMBER_CONFIG.to_string(),
            persistence_config: DEFAULT_PERSISTENCE_CONFIG.to_string(),
            daemons: vec![HostDaemon::Iscsid, HostDaemon::Multipathd],
        }
    }
}

/// csi-test releases for CSI spec 0.x, as the old CI picked them
/// (images/scripts/centos7/base/04-add-csi-sanity-versions.sh: v0.2.0 for
/// v0.2, v0.3.5 for v0.3). csi-test's only v0.2 tag is `v0.2.0-1`. The
/// commits are what the tags name in kubernetes-csi/csi-test; both build
/// with Debian 12's Go 1.19 in GOPATH mode from their vendored sources.
/// Spec 1.x is tested by CSI_SANITY_VERSION (csi-sanity v5 speaks CSI 1.x).
const CSI_SANITY_FOR_SPEC_0: [(&str, &str, &str); 2] = [
    (
        "v0.2",
        "v0.2.0-1",
        "f8ada4fcf7755cf7a941ac49d0bda967bce403dc",
    ),
    ("v0.3", "v0.3.5", "f931472b5957142f7c348031cd3cddc26434b890"),
];

/// `v0.2`, `v0.3`, `v1`, `v1.0`, `v1.1`, ... (what Ember-CSI's
/// X_CSI_SPEC_VERSION takes).
pub fn parse_spec_version(text: &str) -> Result<String, String> {
    let text = text.trim();
    let valid = match text.strip_prefix('v').map(|rest| rest.split_once('.')) {
        Some(Some(("0", minor))) => matches!(minor, "2" | "3"),
        Some(Some(("1", minor))) => !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()),
        Some(None) => text == "v1",
        _ => false,
    };
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{} is not a CSI spec version csi-sanity can test (v0.2, v0.3, v1.0, v1.1, ...)",
            quoted(text)
        ))
    }
}

/// The csi-test build the old CI used for spec 0.x; None for 1.x (the
/// CSI_SANITY_VERSION pin tests those).
pub fn csi_sanity_for_spec(spec_version: &str) -> Option<CsiSanityBuild> {
    CSI_SANITY_FOR_SPEC_0
        .iter()
        .find(|(spec, _, _)| *spec == spec_version)
        .map(|(_, version, commit)| CsiSanityBuild {
            version: version.to_string(),
            commit: commit.to_string(),
        })
}

/// A csi-test tag as (major, minor, patch); None for a tag that is not
/// `vX.Y.Z[-suffix]` (a mirror's own naming: taken as current).
fn release_of(tag: &str) -> Option<(u32, u32, u32)> {
    let core = tag.strip_prefix('v')?.split('-').next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => Some((a, b, c)),
        _ => None,
    }
}

/// `--csi.junitfile` came with csi-test v1.1.1.
pub fn writes_junit(tag: &str) -> bool {
    release_of(tag).is_none_or(|release| release >= (1, 1, 1))
}

/// csi-test v5.0.0 moved to Ginkgo v2, which renamed or dropped Ginkgo
/// v1's camelCase flags.
fn uses_ginkgo_v2(tag: &str) -> bool {
    release_of(tag).is_none_or(|release| release >= (5, 0, 0))
}

/// The command run when neither SANITY_COMMAND nor SANITY_COMMAND_n is
/// set: csi-sanity on the plugin's endpoint, a JUnit report when the build
/// can write one, then SANITY_ARGS_n.
pub fn default_sanity_command(build: Option<&CsiSanityBuild>, args: &[String]) -> String {
    let mut command = String::from("csi-sanity --csi.endpoint=127.0.0.1:50051");
    if build.is_none_or(|build| writes_junit(&build.version)) {
        command.push_str(" --csi.junitfile=$ARTIFACTS_DIR/junit.xml");
    }
    for arg in args {
        command.push(' ');
        command.push_str(arg);
    }
    command
}

/// What one of the old worker's flags becomes for csi-sanity v5.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OldFlag {
    /// Rewritten to these words (none: dropped, it has no use any more).
    Translated { to: Vec<String>, why: &'static str },
    /// No equivalent: the vendor has to decide.
    Refused { why: &'static str },
}

/// The old worker ran `csi-sanity --test.v --test.timeout 0 --ginkgo.v
/// --ginkgo.progress`: a `go test -c` binary built with Go < 1.13. Every
/// csi-sanity built here rejects `--test.*` (exit 2): v3+ is a plain
/// binary, and older ones parse their flags in `init()`, before Go 1.13+
/// registers the test flags. Ginkgo v2 (csi-test v5+) also dropped or
/// renamed Ginkgo v1's flags. `value` is the flag's argument, if any.
fn old_flag(name: &str, value: Option<&str>, ginkgo_v2: bool) -> Option<OldFlag> {
    let to = |words: &[&str]| words.iter().map(|w| w.to_string()).collect();
    let flag = match name {
        "test.v" => OldFlag::Translated {
            to: to(&["--ginkgo.v"]),
            why: "verbose spec output",
        },
        "test.timeout" => match value {
            Some("0") | Some("0s") => OldFlag::Translated {
                to: Vec::new(),
                why: "no limit: SANITY_TIMEOUT_n bounds the suite",
            },
            Some(duration) if ginkgo_v2 => OldFlag::Translated {
                to: vec![format!("--ginkgo.timeout={duration}")],
                why: "the suite's time limit",
            },
            _ => OldFlag::Refused {
                why: "set SANITY_TIMEOUT_n instead (Ginkgo v2: --ginkgo.timeout=DURATION)",
            },
        },
        "test.parallel" => OldFlag::Refused {
            why: "csi-sanity runs specs one at a time and has no equivalent",
        },
        other if other.starts_with("test.") => OldFlag::Refused {
            why: "csi-sanity built with Go 1.13 or later has no --test.* flags",
        },
        "ginkgo.progress" if ginkgo_v2 => OldFlag::Translated {
            to: Vec::new(),
            why:
                "no effect in Ginkgo v2; --ginkgo.poll-progress-after=DURATION reports a slow spec",
        },
        "ginkgo.failFast" if ginkgo_v2 => OldFlag::Translated {
            to: to(&["--ginkgo.fail-fast"]),
            why: "Ginkgo v2's name",
        },
        "ginkgo.noColor" if ginkgo_v2 => OldFlag::Translated {
            to: to(&["--ginkgo.no-color"]),
            why: "Ginkgo v2's name",
        },
        _ => return None,
    };
    Some(flag)
}

/// Flags of `go test` that take a separate argument (`--test.timeout 0`).
fn takes_argument(name: &str) -> bool {
    matches!(name, "test.timeout" | "test.parallel")
}

/// `--name=value` or `-name` as (name, inline value); None for a non-flag.
fn split_flag(word: &str) -> Option<(&str, Option<&str>)> {
    let flag = word.strip_prefix("--").or_else(|| word.strip_prefix('-'))?;
    Some(match flag.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (flag, None),
    })
}

/// SANITY_ARGS_n for the csi-sanity build `tag`: the old worker's flags
/// rewritten (each rewrite explained in `notes`), or the flags that have
/// no equivalent.
pub struct TranslatedArgs {
    pub args: Vec<String>,
    pub notes: Vec<String>,
    pub refused: Vec<String>,
}

pub fn translate_sanity_args(text: &str, tag: &str) -> TranslatedArgs {
    let mut out = TranslatedArgs {
        args: Vec::new(),
        notes: Vec::new(),
        refused: Vec::new(),
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        i += 1;
        let Some((name, inline)) = split_flag(word) else {
            out.args.push(word.to_string());
            continue;
        };
        if out.args.iter().any(|arg| arg == word) {
            continue;
        }
        let mut value = inline;
        let mut written = word.to_string();
        if value.is_none() && takes_argument(name) && i < words.len() {
            value = Some(words[i]);
            written = format!("{word} {}", words[i]);
            i += 1;
        }
        match old_flag(name, value, uses_ginkgo_v2(tag)) {
            None => out.args.push(written),
            Some(OldFlag::Translated { to, why }) => {
                let new = if to.is_empty() {
                    "dropped".to_string()
                } else {
                    format!("runs as {}", to.join(" "))
                };
                out.notes.push(format!("{written} {new} ({why})"));
                for word in to {
                    if !out.args.contains(&word) {
                        out.args.push(word);
                    }
                }
            }
            Some(OldFlag::Refused { why }) => out.refused.push(format!("{written}: {why}")),
        }
    }
    out
}

/// The old worker's flags in a vendor's own SANITY_COMMAND that runs
/// csi-sanity `tag`: each named with its equivalent. The command is the
/// vendor's shell text, so it is not rewritten.
pub fn old_flags_in_command(command: &str, tag: &str) -> Vec<String> {
    let runs_csi_sanity = command
        .split_whitespace()
        .any(|word| word.rsplit('/').next() == Some("csi-sanity"));
    if !runs_csi_sanity {
        return Vec::new();
    }
    let ginkgo_v2 = uses_ginkgo_v2(tag);
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let Some((name, inline)) = split_flag(word) else {
            continue;
        };
        let value = inline.or_else(|| {
            takes_argument(name)
                .then(|| words.get(i + 1).copied())
                .flatten()
        });
        let advice = match old_flag(name, value, ginkgo_v2) {
            None => continue,
            Some(OldFlag::Translated { to, why }) if to.is_empty() => {
                format!("{word}: remove it ({why})")
            }
            Some(OldFlag::Translated { to, why }) => {
                format!("{word}: use {} ({why})", to.join(" "))
            }
            Some(OldFlag::Refused { why }) => format!("{word}: {why}"),
        };
        found.push(advice);
    }
    found
}

/// SANDBOX_DAEMONS_n: a space-separated subset of `iscsid multipathd`
/// (`none` or empty for neither).
pub fn parse_daemons(text: &str) -> Result<Vec<HostDaemon>, String> {
    let mut daemons = Vec::new();
    for word in text.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
        let daemon = match word {
            "iscsid" => HostDaemon::Iscsid,
            "multipathd" => HostDaemon::Multipathd,
            "none" => continue,
            other => {
                return Err(format!(
                    "{} is not a daemon the sandbox can run (iscsid, multipathd, or none)",
                    quoted(other)
                ))
            }
        };
        if !daemons.contains(&daemon) {
            daemons.push(daemon);
        }
    }
    Ok(daemons)
}

/// X_CSI_EMBER_CONFIG_n / X_CSI_PERSISTENCE_CONFIG_n: a JSON object,
/// passed on as written (compact or not, Ember-CSI parses it).
pub fn parse_json_object(text: &str) -> Result<String, String> {
    let text = text.trim();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.to_string()),
        Ok(_) => Err("is JSON but not an object".to_string()),
        Err(e) => Err(format!("is not valid JSON: {e}")),
    }
}

/// A csi-test tag: it becomes a directory name in the sandbox.
pub fn parse_tag(text: &str) -> Result<String, String> {
    let text = text.trim();
    let valid = text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{} is not a tag name (letters, digits, '.', '_', '+', '-')",
            quoted(text)
        ))
    }
}

/// A full 40-hex-digit commit id.
pub fn parse_commit(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() == 40 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(text.to_string())
    } else {
        Err(format!("{} is not a full commit id", quoted(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_versions_are_those_csi_sanity_can_test() {
        for good in ["v0.2", "v0.3", "v1", "v1.0", "v1.1", "v1.10"] {
            assert_eq!(parse_spec_version(good).as_deref(), Ok(good));
        }
        for bad in ["", "1.1", "v0.1", "v0.4", "v2.0", "v1.", "v1.x", "latest"] {
            assert!(parse_spec_version(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn spec_zero_gets_the_old_ci_csi_sanity_and_one_the_pin() {
        let v02 = csi_sanity_for_spec("v0.2").expect("v0.2 mapped");
        assert_eq!(v02.version, "v0.2.0-1");
        let v03 = csi_sanity_for_spec("v0.3").expect("v0.3 mapped");
        assert_eq!(
            (v03.version.as_str(), v03.commit.as_str()),
            ("v0.3.5", "f931472b5957142f7c348031cd3cddc26434b890")
        );
        assert_eq!(csi_sanity_for_spec("v1.1"), None);
        assert!(!writes_junit("v0.3.5") && !writes_junit("v1.1.0"));
        assert!(writes_junit("v1.1.1") && writes_junit("v5.3.1") && writes_junit("mirror-tag"));
    }

    #[test]
    fn default_command_asks_for_junit_only_where_csi_sanity_can_write_it() {
        let old = csi_sanity_for_spec("v0.3");
        assert_eq!(
            default_sanity_command(old.as_ref(), &["--ginkgo.v".into()]),
            "csi-sanity --csi.endpoint=127.0.0.1:50051 --ginkgo.v"
        );
        assert_eq!(
            default_sanity_command(None, &[]),
            super::super::keys::DEFAULT_SANITY_COMMAND
        );
    }

    #[test]
    fn the_old_worker_flags_are_translated_for_csi_sanity_v5() {
        let t = translate_sanity_args(
            "--test.v --csi.endpoint-ignored=x --test.timeout 0 --ginkgo.v --ginkgo.progress --ginkgo.failFast",
            "v5.3.1",
        );
        assert_eq!(
            t.args,
            [
                "--ginkgo.v",
                "--csi.endpoint-ignored=x",
                "--ginkgo.fail-fast"
            ]
        );
        assert_eq!(t.notes.len(), 4, "{:?}", t.notes);
        assert!(t.notes[1].starts_with("--test.timeout 0 dropped"));
        assert!(t.refused.is_empty());
        let timed = translate_sanity_args("--test.timeout=15m", "v5.3.1");
        assert_eq!(timed.args, ["--ginkgo.timeout=15m"]);
        let parallel = translate_sanity_args("--test.parallel 1", "v5.3.1");
        assert_eq!(parallel.args, Vec::<String>::new());
        assert!(parallel.refused[0].starts_with("--test.parallel 1: "));
        // Ginkgo v1 (csi-test before v5) keeps its own flags; --test.* goes
        // everywhere (Go 1.13+ builds reject it, seen on v0.3.5 here).
        let old = translate_sanity_args("--test.v --ginkgo.progress --test.timeout 15m", "v0.3.5");
        assert_eq!(old.args, ["--ginkgo.v", "--ginkgo.progress"]);
        assert_eq!(old.notes.len(), 1);
        assert!(old.refused[0].starts_with("--test.timeout 15m: set SANITY_TIMEOUT_n"));
    }

    #[test]
    fn old_flags_in_a_csi_sanity_command_are_named_with_their_equivalent() {
        let found = old_flags_in_command(
            "csi-sanity --test.v --csi.endpoint=127.0.0.1:50051 --test.timeout 0 --ginkgo.progress",
            "v5.3.1",
        );
        assert_eq!(
            found,
            [
                "--test.v: use --ginkgo.v (verbose spec output)",
                "--test.timeout: remove it (no limit: SANITY_TIMEOUT_n bounds the suite)",
                "--ginkgo.progress: remove it (no effect in Ginkgo v2; --ginkgo.poll-progress-after=DURATION reports a slow spec)",
            ]
        );
        assert!(old_flags_in_command("/config/suite.sh --test.v", "v5.3.1").is_empty());
        assert_eq!(
            old_flags_in_command("csi-sanity --test.v --ginkgo.progress", "v0.2.0-1"),
            ["--test.v: use --ginkgo.v (verbose spec output)"]
        );
    }

    #[test]
    fn daemons_json_tags_and_commits_are_checked() {
        assert_eq!(
            parse_daemons(DEFAULT_SANDBOX_DAEMONS),
            Ok(vec![HostDaemon::Iscsid, HostDaemon::Multipathd])
        );
        assert_eq!(parse_daemons("none"), Ok(vec![]));
        assert_eq!(parse_daemons("iscsid,iscsid"), Ok(vec![HostDaemon::Iscsid]));
        assert!(parse_daemons("lvmetad").is_err());
        assert!(parse_json_object(DEFAULT_EMBER_CONFIG).is_ok());
        assert!(parse_json_object(DEFAULT_PERSISTENCE_CONFIG).is_ok());
        assert!(parse_json_object("[1]").is_err());
        assert!(parse_json_object("{").is_err());
        assert!(parse_tag("v0.3.5").is_ok() && parse_tag("../x").is_err());
        assert!(parse_commit(&"a".repeat(40)).is_ok() && parse_commit("abc").is_err());
    }
}
