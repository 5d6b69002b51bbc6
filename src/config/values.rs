//! Parsers for single config values (durations, booleans, counts, URLs,
//! names handed to other programs). Each returns the problem as text for a
//! `ConfigError`; the loader adds the key and the fix. No I/O.
//!
//! Values that end up as arguments of apt-get, pip, git or podman are held
//! to conservative character sets and may not start with '-', so a config
//! value can never be read as an option by those programs.

use std::path::{Component, Path};
use std::time::Duration;

/// Longest value quoted back in a problem text.
const QUOTED_VALUE_MAX_CHARS: usize = 60;

/// `value` quoted for a problem text, cut short so a pasted blob stays readable.
pub(super) fn quoted(value: &str) -> String {
    let mut short: String = value.chars().take(QUOTED_VALUE_MAX_CHARS).collect();
    if short.len() < value.len() {
        short.push('…');
    }
    format!("{short:?}")
}

/// Integer seconds, or a number with an `s`, `m` or `h` suffix.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit_secs) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 60),
        Some((i, 'h')) => (&text[..i], 3600),
        _ => (text, 1),
    };
    let not_a_duration = || format!("{} is not a duration", quoted(text));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_duration());
    }
    let count: u64 = digits.parse().map_err(|_| not_a_duration())?;
    let secs = count
        .checked_mul(unit_secs)
        .ok_or_else(|| format!("{} is too long", quoted(text)))?;
    Ok(Duration::from_secs(secs))
}

/// `0/1`, `true/false`, `yes/no` (any case).
pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(format!("{} is not a yes/no value", quoted(text))),
    }
}

/// A whole number within `min..=max`.
pub(super) fn parse_number<T>(text: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let out_of_range = || format!("{} is not a whole number from {min} to {max}", quoted(text));
    let number: T = text.trim().parse().map_err(|_| out_of_range())?;
    if number < min || number > max {
        return Err(out_of_range());
    }
    Ok(number)
}

/// Items separated by whitespace and/or commas.
pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// A Debian package, optionally with `=version` or `:arch`.
pub(super) fn check_debian_package(name: &str) -> Result<(), String> {
    check_argument_word(name, "Debian package", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_' | ':' | '=' | '~')
    })
}

/// A pip requirement such as `requests`, `foo[bar]>=1.2,<2` or `pkg==1.0`.
pub(super) fn check_pip_requirement(name: &str) -> Result<(), String> {
    check_argument_word(name, "pip requirement", |c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '.' | '-' | '_' | '=' | '<' | '>' | '!' | '~' | '[' | ']' | ','
            )
    })
}

fn check_argument_word(
    word: &str,
    what: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), String> {
    if !word.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{} is not a {what}: it must start with a letter or digit",
            quoted(word)
        ));
    }
    if let Some(bad) = word.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{} is not a {what}: {bad:?} is not allowed",
            quoted(word)
        ));
    }
    Ok(())
}

/// A GitHub login (bots end in `[bot]`).
pub(super) fn check_github_login(login: &str) -> Result<(), String> {
    let base = login.strip_suffix("[bot]").unwrap_or(login);
    let is_valid = !base.is_empty()
        && base.len() <= 39
        && !base.starts_with('-')
        && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if is_valid {
        Ok(())
    } else {
        Err(format!("{} is not a GitHub login", quoted(login)))
    }
}

/// A value handed to git or podman as one argument: a URL, path or image
/// reference. No whitespace or control characters, no leading '-'.
pub(super) fn check_single_argument(value: &str) -> Result<(), String> {
    if value.starts_with('-') {
        return Err(format!(
            "{} starts with '-' and would be read as an option",
            quoted(value)
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{} contains whitespace", quoted(value)));
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host, returned without trailing '/'.
pub(super) fn parse_http_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{} is not an http(s) URL", quoted(text)));
    }
    reject_url_password(&url)?;
    Ok(text.trim_end_matches('/').to_string())
}

/// A git repository URL or path (GH_CLONE_URL, LOGS_REPO).
pub(super) fn check_git_location(text: &str) -> Result<(), String> {
    check_single_argument(text)?;
    // scp-like `git@host:path` and plain paths are not URLs; nothing to check.
    match reqwest::Url::parse(text) {
        Ok(url) => reject_url_password(&url),
        Err(_) => Ok(()),
    }
}

/// Credentials in a URL would reach Debug output, logs and the summary;
/// GitHub access goes through GH_TOKEN instead. The URL is not echoed.
fn reject_url_password(url: &reqwest::Url) -> Result<(), String> {
    if url.password().is_some() {
        return Err("the URL contains a password or token".to_string());
    }
    Ok(())
}

/// A path inside the PR's checkout: relative, never climbing out of it.
pub(super) fn check_checkout_path(path: &str) -> Result<(), String> {
    check_single_argument(path)?;
    let is_inside = Path::new(path)
        .components()
        .all(|part| matches!(part, Component::Normal(_) | Component::CurDir));
    if path.is_empty() || !is_inside {
        return Err(format!(
            "{} is not a relative path inside the checkout",
            quoted(path)
        ));
    }
    Ok(())
}

/// A git branch name (`git check-ref-format --branch` rules that matter here).
pub(super) fn check_branch_name(name: &str) -> Result<(), String> {
    check_single_argument(name)?;
    let has_bad_char = name
        .chars()
        .any(|c| matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\'));
    let is_bad = name.is_empty()
        || has_bad_char
        || name.contains("..")
        || name.contains("@{")
        || name.contains("//")
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with('.')
        || name.ends_with(".lock")
        || name.split('/').any(|part| part.starts_with('.'));
    if is_bad {
        return Err(format!("{} is not a valid git branch name", quoted(name)));
    }
    Ok(())
}

/// A smee.io channel id.
pub(super) fn check_smee_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(format!("{} is not a smee.io channel id", quoted(id)));
    }
    Ok(())
}

/// Edit distance, to spot mistyped keys (GH_TOKNE).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}
