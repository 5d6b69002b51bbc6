//! Secret masking for everything a job writes: known secret values and their
//! base64 and URL-encoded forms become `***` before a byte reaches disk.

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

fn encoded_forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    vec![
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
    ]
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
