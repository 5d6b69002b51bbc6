//! GitHub's webhook HMAC: `X-Hub-Signature-256` (`sha256=<hex>`) and the
//! legacy `X-Hub-Signature` (`sha1=<hex>`), computed over the raw body bytes.
//!
//! Owns signing (for `ember-ci send` and tests) and checking. It never looks
//! inside the body: the check must happen before anything parses it.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use thiserror::Error;

const SHA256_PREFIX: &str = "sha256=";
const SHA1_PREFIX: &str = "sha1=";

/// Both header values GitHub sends for one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// The `X-Hub-Signature-256` value: `sha256=<hex>`.
    pub sha256: String,
    /// The `X-Hub-Signature` value: `sha1=<hex>`.
    pub sha1: String,
}

/// Why a delivery's signature was refused. Every variant means "401, nothing queued".
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature missing: no X-Hub-Signature-256 or X-Hub-Signature header")]
    Missing,
    #[error("signature malformed: {0}")]
    Malformed(&'static str),
    #[error("signature mismatch: the body was not signed with our webhook secret")]
    Mismatch,
}

/// Signs `body` the way GitHub does.
pub fn sign(secret: &[u8], body: &[u8]) -> Signatures {
    let sha256 = hmac_sha256(secret, body).finalize().into_bytes();
    let sha1 = hmac_sha1(secret, body).finalize().into_bytes();
    Signatures {
        sha256: format!("{SHA256_PREFIX}{}", hex::encode(sha256)),
        sha1: format!("{SHA1_PREFIX}{}", hex::encode(sha1)),
    }
}

/// Checks a delivery's signature over its raw body.
///
/// The SHA-256 header wins whenever present: falling back to SHA-1 after a
/// bad SHA-256 value would let an attacker pick the weaker algorithm.
pub fn verify(
    secret: &[u8],
    body: &[u8],
    sha256_header: Option<&str>,
    sha1_header: Option<&str>,
) -> Result<(), SignatureError> {
    match (sha256_header, sha1_header) {
        (Some(header), _) => {
            let tag = decode_tag(header, SHA256_PREFIX)?;
            hmac_sha256(secret, body)
                .verify_slice(&tag)
                .map_err(|_| SignatureError::Mismatch)
        }
        (None, Some(header)) => {
            let tag = decode_tag(header, SHA1_PREFIX)?;
            hmac_sha1(secret, body)
                .verify_slice(&tag)
                .map_err(|_| SignatureError::Mismatch)
        }
        (None, None) => Err(SignatureError::Missing),
    }
}

fn decode_tag(header: &str, prefix: &str) -> Result<Vec<u8>, SignatureError> {
    let hex_digits = header
        .strip_prefix(prefix)
        .ok_or(SignatureError::Malformed(
            "expected `sha256=<hex>` or `sha1=<hex>`",
        ))?;
    // A wrong length is left to verify_slice, which reports it as a mismatch.
    hex::decode(hex_digits).map_err(|_| SignatureError::Malformed("the digest is not hex"))
}

fn hmac_sha256(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}

fn hmac_sha1(secret: &[u8], body: &[u8]) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";

    #[test]
    fn signs_like_githubs_documented_example() {
        // The example from GitHub's "Validating webhook deliveries" page.
        let signatures = sign(SECRET, BODY);
        assert_eq!(
            signatures.sha256,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(signatures.sha1.starts_with("sha1=") && signatures.sha1.len() == 5 + 40);
    }

    #[test]
    fn accepts_valid_sha256() {
        let signatures = sign(SECRET, BODY);
        assert_eq!(verify(SECRET, BODY, Some(&signatures.sha256), None), Ok(()));
    }

    #[test]
    fn accepts_valid_legacy_sha1_when_no_sha256_header() {
        let signatures = sign(SECRET, BODY);
        assert_eq!(verify(SECRET, BODY, None, Some(&signatures.sha1)), Ok(()));
    }

    #[test]
    fn bad_sha256_is_not_rescued_by_a_valid_sha1() {
        let signatures = sign(SECRET, BODY);
        let wrong = sign(b"other", BODY);
        assert_eq!(
            verify(SECRET, BODY, Some(&wrong.sha256), Some(&signatures.sha1)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rejects_wrong_secret() {
        let signatures = sign(b"not the secret", BODY);
        assert_eq!(
            verify(SECRET, BODY, Some(&signatures.sha256), None),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, BODY, None, Some(&signatures.sha1)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rejects_missing_headers() {
        assert_eq!(
            verify(SECRET, BODY, None, None),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn rejects_tampered_body() {
        let signatures = sign(SECRET, BODY);
        assert_eq!(
            verify(SECRET, b"Hello, World?", Some(&signatures.sha256), None),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        let signatures = sign(SECRET, BODY);
        let not_hex = format!("sha256=zz{}", &signatures.sha256[9..]);
        assert!(matches!(
            verify(SECRET, BODY, Some(&not_hex), None),
            Err(SignatureError::Malformed(_))
        ));
        // A SHA-1 value in the SHA-256 header has the wrong prefix.
        assert!(matches!(
            verify(SECRET, BODY, Some(&signatures.sha1), None),
            Err(SignatureError::Malformed(_))
        ));
        let bare_hex = signatures.sha256.trim_start_matches("sha256=");
        assert!(matches!(
            verify(SECRET, BODY, Some(bare_hex), None),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_digest_is_a_mismatch() {
        let signatures = sign(SECRET, BODY);
        let truncated = &signatures.sha256[..signatures.sha256.len() - 2];
        assert_eq!(
            verify(SECRET, BODY, Some(truncated), None),
            Err(SignatureError::Mismatch)
        );
    }
}
