//! `config/config`, the annotated template a vendor starts from, against
//! the key table, the README's config table and the loader: every key in
//! table order with its default and secrecy, secrets as placeholders, no
//! other key, and the file loads as `check-config` loads it. A failure
//! lists every line to change.

use std::path::{Path, PathBuf};
use std::process::Command;

use ember_ci::config::{Config, Key, Need, Scope, KEYS, OBSOLETE_KEYS};
use ember_ci_test_kit::ci_env::{ember_ci_bin, project_dir};

fn template_dir() -> PathBuf {
    project_dir().join("config")
}

/// One `# ==== NAME ==== [tags]` block of the template.
#[derive(Debug, Default)]
struct Block {
    name: String,
    tags: String,
    default: Option<String>,
    /// The value assigned (in the active or commented-out line).
    value: Option<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("# ==== ") {
            let (name, tags) = header.split_once(" ====").unwrap_or((header, ""));
            blocks.push(Block {
                name: name.to_string(),
                tags: tags.trim().to_string(),
                ..Block::default()
            });
        } else if let Some(block) = blocks.last_mut() {
            if let Some(default) = line.strip_prefix("#   default: ") {
                block.default = Some(default.to_string());
            } else if let Some((name, value)) = assignment(line) {
                if name == written_name(&block.name) {
                    block.value = Some(value.to_string());
                }
            }
        }
    }
    blocks
}

/// `NAME=value` or `#NAME=value` (a commented-out example).
fn assignment(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.trim_start_matches('#').split_once('=')?;
    let is_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    is_name.then_some((name, value))
}

/// How the template heads a key: `DRIVER_NAME_n` for per-backend ones.
fn header_name(key: &Key) -> String {
    match key.scope {
        Scope::Global => key.name.to_string(),
        Scope::PerBackend => format!("{}_n", key.name),
    }
}

/// How the template assigns it: backend 1.
fn written_name(header: &str) -> String {
    header
        .strip_suffix("_n")
        .map_or_else(|| header.to_string(), |base| format!("{base}_1"))
}

fn expected_default(key: &Key) -> String {
    match key.need {
        Need::Required => "required".into(),
        Need::Optional => "empty".into(),
        Need::DefaultTo(text) => text.to_string(),
    }
}

fn readme_config_section() -> String {
    let readme =
        std::fs::read_to_string(project_dir().join("README.md")).expect("reading README.md");
    readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a Configuration section")
        .to_string()
}

#[test]
fn template_lists_every_key_of_the_table_with_its_default_and_secrecy() {
    let text = std::fs::read_to_string(template_dir().join("config")).expect("config/config");
    let found = blocks(&text);
    let readme = readme_config_section();
    let mut problems = Vec::new();
    let found_names: Vec<&str> = found
        .iter()
        .map(|block| block.name.as_str())
        .filter(|name| !name.starts_with("Keys of the old CI"))
        .collect();
    let expected_names: Vec<String> = KEYS.iter().map(header_name).collect();
    if found_names != expected_names {
        problems.push(format!(
            "keys in the template:\n  {found_names:?}\nkey table order:\n  {expected_names:?}"
        ));
    }
    for key in KEYS {
        let name = header_name(key);
        let Some(block) = found.iter().find(|block| block.name == name) else {
            continue;
        };
        let default = expected_default(key);
        if block.default.as_deref() != Some(default.as_str()) {
            problems.push(format!(
                "{name}: want `#   default: {default}`, found {:?}",
                block.default
            ));
        }
        if block.tags.contains("[secret]") != key.is_secret() {
            problems.push(format!(
                "{name}: [secret] tag must be {} (tags: {:?})",
                key.is_secret(),
                block.tags
            ));
        }
        match &block.value {
            None => problems.push(format!(
                "{name}: no `{}=` line (active or #-commented example)",
                written_name(&name)
            )),
            Some(value) if key.is_secret() && !value.contains('<') => problems.push(format!(
                "{name}: a secret's example must be a <placeholder>, found {value}"
            )),
            Some(_) => {}
        }
        if !readme.contains(&format!("`{name}`")) {
            problems.push(format!("{name}: not in the README's config table"));
        }
    }
    let known: Vec<String> = expected_names.iter().map(|n| written_name(n)).collect();
    for line in text.lines() {
        if let Some((name, _)) = assignment(line) {
            if !known.iter().any(|known| known == name) {
                problems.push(format!("assigns {name}, which is not in the key table"));
            }
        }
    }
    for obsolete in OBSOLETE_KEYS {
        if !text.contains(obsolete) {
            problems.push(format!("does not mark the old key {obsolete}"));
        }
    }
    assert!(
        problems.is_empty(),
        "config/config is out of step with src/config/keys.rs:\n{}",
        problems.join("\n")
    );
}

#[test]
fn template_loads_without_warnings_and_passes_check_config() {
    let dir = template_dir();
    let config = Config::load(&dir).unwrap_or_else(|errors| panic!("config/config: {errors}"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(
        config.obsolete_keys.is_empty(),
        "{:?}",
        config.obsolete_keys
    );
    assert_eq!(config.backends.len(), 1);
    let output = check_config(&dir);
    assert!(output.status.success(), "{output:?}");
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        !summary.contains("<array password>") && !summary.contains("<webhook secret"),
        "check-config shows a secret placeholder:\n{summary}"
    );
}

fn check_config(dir: &Path) -> std::process::Output {
    Command::new(ember_ci_bin())
        .arg("check-config")
        .arg(dir)
        .output()
        .expect("running ember-ci check-config")
}
