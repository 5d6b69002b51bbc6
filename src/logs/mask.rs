//! Secret masking for everything a job writes: known secret values and their
//! ordinary encodings become `***` before a byte reaches disk. The forms:
//! as is, each line of a multi-line value, JSON-escaped, Python `repr`,
//! URL-encoded, and base64 at any byte offset (a secret inside an encoded
//! `user:password` starts mid-group).
//!
//! Best effort against accidents only: code that runs privileged in the
//! sandbox can always exfiltrate a secret it can read (reverse it, split
//! it, send it elsewhere). The README says so.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// Values shorter than this are not masked: masking "a" or "1" would shred
/// every log while protecting nothing.
const MIN_SECRET_LEN: usize = 4;

pub const MASK: &str = "***";

/// Replaces secret values in text. Longer needles are replaced first so a
/// secret that contains another is masked whole.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    needles: Vec<String>,
}

impl Masker {
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut masker = Self::default();
        masker.add(secrets);
        masker
    }

    /// Adds values learned later (e.g. a driver config produced by a script).
    pub fn add<I, S>(&mut self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.len() < MIN_SECRET_LEN {
                continue;
            }
            self.needles.extend(encoded_forms(secret));
        }
        self.needles.retain(|n| n.len() >= MIN_SECRET_LEN);
        self.sort_needles();
    }

    fn sort_needles(&mut self) {
        self.needles
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.needles.dedup();
    }

    /// Adds every secret `other` knows.
    pub fn extend_from(&mut self, other: &Masker) {
        self.needles.extend(other.needles.iter().cloned());
        self.sort_needles();
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// How many secret forms are searched for.
    pub fn len(&self) -> usize {
        self.needles.len()
    }

    /// The text with every known secret form replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut masked = text.to_string();
        for needle in &self.needles {
            if masked.contains(needle.as_str()) {
                masked = masked.replace(needle.as_str(), MASK);
            }
        }
        masked
    }

    /// Whether any known secret form occurs in `text` (the publish gate).
    pub fn contains_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }
}

/// Base64 of a secret met at any offset: only the groups made of secret
/// bytes alone are stable, so each offset's stable middle is a needle. Kept
/// only when at least this many bytes long, or it would match noise.
const MIN_BASE64_CORE_BYTES: usize = 6;

fn encoded_forms(secret: &str) -> Vec<String> {
    let mut forms = single_forms(secret);
    if secret.contains('\n') {
        for line in secret
            .lines()
            .map(str::trim)
            .filter(|l| l.len() >= MIN_SECRET_LEN)
        {
            forms.extend(single_forms(line));
        }
    }
    forms
}

fn single_forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut forms = vec![
        json_escaped(secret),
        python_repr_inner(secret, true),
        python_repr_inner(secret, false),
    ];
    for skip in 0..3 {
        let core = &bytes[skip.min(bytes.len())..];
        let core = &core[..core.len() / 3 * 3];
        if core.len() >= MIN_BASE64_CORE_BYTES {
            forms.push(STANDARD_NO_PAD.encode(core));
            forms.push(URL_SAFE_NO_PAD.encode(core));
        }
    }
    forms.extend([
        secret.to_string(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
        // Form encoding writes spaces as '+'.
        utf8_percent_encode(secret, NON_ALPHANUMERIC)
            .to_string()
            .replace("%20", "+"),
    ]);
    forms
}

/// The secret inside a JSON string: quotes, backslashes and control
/// characters escaped.
fn json_escaped(secret: &str) -> String {
    let quoted = serde_json::to_string(secret).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(secret)
        .to_string()
}

/// The secret inside Python's `repr` of a str, between single quotes
/// (`'` escaped) or double quotes (as Python picks when the value holds `'`).
fn python_repr_inner(secret: &str, single_quoted: bool) -> String {
    let mut out = String::with_capacity(secret.len());
    for c in secret.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\'' if single_quoted => out.push_str("\\'"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_base64_and_url_encoded_forms() {
        let masker = Masker::new(["s3cr3t p@ss/word"]);
        let b64 = STANDARD.encode("s3cr3t p@ss/word");
        let url = utf8_percent_encode("s3cr3t p@ss/word", NON_ALPHANUMERIC).to_string();
        let text = format!("plain=s3cr3t p@ss/word b64={b64} url={url}");
        assert_eq!(masker.mask(&text), "plain=*** b64=*** url=***");
    }

    #[test]
    fn masks_json_escaped_and_python_repr_forms() {
        let secret = "Sup3r\"Secret\\pw";
        let masker = Masker::new([secret]);
        let json = serde_json::json!({ "password": secret }).to_string();
        assert!(json.contains(r#"Sup3r\"Secret\\pw"#), "{json}");
        assert_eq!(masker.mask(&json), r#"{"password":"***"}"#);
        let repr = r#"{'password': 'Sup3r"Secret\\pw'}"#;
        assert_eq!(masker.mask(repr), "{'password': '***'}");
        let quoted = Masker::new(["it's-a-s3cret\\"]);
        assert_eq!(quoted.mask(r#"x='it\'s-a-s3cret\\'"#), "x='***'");
        assert_eq!(quoted.mask(r#"x="it's-a-s3cret\\""#), "x=\"***\"");
    }

    #[test]
    fn masks_base64_at_every_offset() {
        let masker = Masker::new(["array-passw0rd"]);
        for prefix in ["", "r", "ro", "root:", "admin:x"] {
            let encoded = STANDARD.encode(format!("{prefix}array-passw0rd\n"));
            let header = format!("Authorization: Basic {encoded}");
            assert!(masker.contains_secret(&header), "{prefix:?}: {header}");
            assert!(masker.mask(&header).contains(MASK), "{prefix:?}");
        }
    }

    #[test]
    fn masks_each_line_of_a_multi_line_secret() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END KEY-----";
        let masker = Masker::new([key]);
        assert_eq!(masker.mask("line: BKcwggSjAgEAAoIBAQC7"), "line: ***");
        assert!(masker.contains_secret("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"));
    }

    #[test]
    fn short_values_are_not_masked() {
        let masker = Masker::new(["ab", ""]);
        assert!(masker.is_empty());
        assert_eq!(masker.mask("abc"), "abc");
    }

    #[test]
    fn longer_secret_containing_a_shorter_one_is_masked_whole() {
        let masker = Masker::new(["token", "token-extended"]);
        assert_eq!(masker.mask("x token-extended y"), "x *** y");
    }
}
