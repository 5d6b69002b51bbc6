//! `ember-ci send URL FILE`: replays a delivery saved in smee.io's JSON form
//! (lower-case headers beside `body`), the replacement for `pysmee send`.
//!
//! Owns turning a saved delivery back into a request: which saved headers
//! are real GitHub headers, the body bytes, and optional re-signing. The
//! smee relay reuses [`prepare_saved_delivery`] for the same translation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use thiserror::Error;

use crate::webhook::signature;

/// How long a replay waits for the CI's answer; the intake answers at once,
/// so this only bounds a hung server.
const SEND_TIMEOUT_SECS: u64 = 30;

/// Saved keys that are not GitHub's headers: hop-by-hop and proxy headers
/// smee.io's front end added or that the HTTP client must compute itself,
/// plus smee's own metadata (`query`, `timestamp`).
const SKIPPED_KEYS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "accept-encoding",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "via",
    "connect-time",
    "x-request-start",
    "total-route-time",
    "query",
    "timestamp",
];
const SKIPPED_PREFIXES: &[&str] = &["x-forwarded-"];

const SIGNATURE_256: &str = "x-hub-signature-256";
const SIGNATURE_SHA1: &str = "x-hub-signature";

/// A saved delivery ready to be posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDelivery {
    /// Lower-case names, in the saved order.
    pub headers: Vec<(String, String)>,
    /// `body` as compact JSON, keys in their saved order: the bytes GitHub signed.
    pub body: Vec<u8>,
}

/// The CI's answer to a replayed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub status: u16,
    pub response: String,
}

#[derive(Debug, Error)]
pub enum SendError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not JSON: {source}", path.display())]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("not a saved smee delivery: {0}")]
    NotADelivery(&'static str),
    #[error("saved header {name:?} cannot be sent: {reason}")]
    BadHeader { name: String, reason: String },
    #[error("posting the delivery to {url}: {source}")]
    Post { url: String, source: reqwest::Error },
}

/// Reads a smee-form delivery from `file` and POSTs it to `url`; with
/// `secret`, re-signs it so a CI with that webhook secret accepts it.
pub async fn send_saved_delivery(
    url: &str,
    file: &Path,
    secret: Option<&str>,
) -> Result<SendReport, SendError> {
    let text = tokio::fs::read(file)
        .await
        .map_err(|source| SendError::Read {
            path: file.to_path_buf(),
            source,
        })?;
    let saved: serde_json::Value =
        serde_json::from_slice(&text).map_err(|source| SendError::NotJson {
            path: file.to_path_buf(),
            source,
        })?;
    let prepared = prepare_saved_delivery(&saved, secret)?;

    let post_error = |source| SendError::Post {
        url: url.to_string(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(SEND_TIMEOUT_SECS))
        .build()
        .map_err(post_error)?;
    let mut request = client.post(url).body(prepared.body);
    for (name, value) in prepared.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(post_error)?;
    let status = response.status().as_u16();
    let response = response.text().await.map_err(post_error)?;
    Ok(SendReport { status, response })
}

/// Turns a smee-form delivery into the headers and body to post.
///
/// Without `secret` the saved signatures are kept, so the body must be the
/// exact bytes GitHub signed: `body` is re-serialised compact with its key
/// order kept (GitHub sends compact JSON; serde_json's `preserve_order` keeps
/// the order). With `secret` both signature headers are replaced.
pub fn prepare_saved_delivery(
    saved: &serde_json::Value,
    secret: Option<&str>,
) -> Result<PreparedDelivery, SendError> {
    let fields = saved.as_object().ok_or(SendError::NotADelivery(
        "the top level is not a JSON object",
    ))?;
    let body = fields
        .get("body")
        .ok_or(SendError::NotADelivery("there is no `body` field"))?;
    let body = serde_json::to_vec(body).expect("a serde_json::Value always serialises");

    let mut headers = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let name = name.to_ascii_lowercase();
        let is_replaced_signature =
            secret.is_some() && (name == SIGNATURE_256 || name == SIGNATURE_SHA1);
        if name == "body" || is_replaced_signature || is_skipped(&name) {
            continue;
        }
        let value = value.as_str().ok_or_else(|| SendError::BadHeader {
            name: name.clone(),
            reason: format!("its value is not a string but {value}"),
        })?;
        check_header(&name, value)?;
        headers.push((name, value.to_string()));
    }
    if let Some(secret) = secret {
        let signatures = signature::sign(secret.as_bytes(), &body);
        headers.push((SIGNATURE_256.to_string(), signatures.sha256));
        headers.push((SIGNATURE_SHA1.to_string(), signatures.sha1));
    }
    Ok(PreparedDelivery { headers, body })
}

fn is_skipped(name: &str) -> bool {
    SKIPPED_KEYS.contains(&name)
        || SKIPPED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// Refuses here what the HTTP client would refuse later with a vaguer error.
fn check_header(name: &str, value: &str) -> Result<(), SendError> {
    let bad = |reason: String| SendError::BadHeader {
        name: name.to_string(),
        reason,
    };
    HeaderName::from_bytes(name.as_bytes()).map_err(|error| bad(error.to_string()))?;
    HeaderValue::from_str(value).map_err(|error| bad(error.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The secret tests/data/github/README.md says the trimmed fixtures were signed with.
    const FIXTURE_SECRET: &[u8] = b"ember-ci-fixture-secret";

    fn load(file: &str) -> serde_json::Value {
        let path = format!("{}/tests/data/github/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("fixture is readable");
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    fn header<'a>(prepared: &'a PreparedDelivery, name: &str) -> Option<&'a str> {
        prepared
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn compact_body_is_exactly_content_length_bytes() {
        for file in ["test-ok.json", "test-broken.json"] {
            let saved = load(file);
            let prepared = prepare_saved_delivery(&saved, None).expect("fixture prepares");
            let content_length: usize = saved["content-length"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .expect("fixture has content-length");
            assert_eq!(prepared.body.len(), content_length, "{file}");
        }
    }

    #[test]
    fn without_secret_the_saved_signatures_still_match_the_body() {
        // The trimmed fixtures were signed over the bytes GitHub would send, so
        // a valid saved signature proves the replayed body is byte-identical.
        for file in [
            "pull_request-synchronize.json",
            "pull_request-closed.json",
            "issue_comment-created.json",
            "ping.json",
        ] {
            let prepared = prepare_saved_delivery(&load(file), None).expect("fixture prepares");
            let verified = signature::verify(
                FIXTURE_SECRET,
                &prepared.body,
                header(&prepared, SIGNATURE_256),
                header(&prepared, SIGNATURE_SHA1),
            );
            assert_eq!(verified, Ok(()), "{file}");
            // The legacy header alone must match too.
            let sha1_only = signature::verify(
                FIXTURE_SECRET,
                &prepared.body,
                None,
                header(&prepared, SIGNATURE_SHA1),
            );
            assert_eq!(sha1_only, Ok(()), "{file}");
        }
    }

    #[test]
    fn keeps_github_headers_and_drops_transport_and_smee_metadata() {
        let prepared =
            prepare_saved_delivery(&load("test-ok.json"), None).expect("fixture prepares");
        let names: Vec<&str> = prepared.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "accept",
                "user-agent",
                "x-github-event",
                "x-github-delivery",
                "content-type",
                "x-hub-signature",
                "x-request-id",
            ]
        );
        assert_eq!(
            header(&prepared, SIGNATURE_SHA1),
            Some("sha1=eb30f485ef028686a45bdc0d9c519480d4180543")
        );
    }

    #[test]
    fn secret_replaces_both_signatures() {
        let prepared = prepare_saved_delivery(&load("ping.json"), Some("new-secret"))
            .expect("fixture prepares");
        let signatures = signature::sign(b"new-secret", &prepared.body);
        let signature_headers: Vec<_> = prepared
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-hub-signature"))
            .collect();
        assert_eq!(
            signature_headers,
            [
                &(SIGNATURE_256.to_string(), signatures.sha256),
                &(SIGNATURE_SHA1.to_string(), signatures.sha1)
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_a_saved_delivery() {
        assert!(matches!(
            prepare_saved_delivery(&json!([1, 2]), None),
            Err(SendError::NotADelivery(_))
        ));
        assert!(matches!(
            prepare_saved_delivery(&json!({"x-github-event": "ping"}), None),
            Err(SendError::NotADelivery(_))
        ));
        let bad = prepare_saved_delivery(&json!({"x-github-event": 3, "body": {}}), None);
        assert!(
            matches!(bad, Err(SendError::BadHeader { ref name, .. }) if name == "x-github-event")
        );
        let bad = prepare_saved_delivery(&json!({"x-evil": "a\nb", "body": {}}), None);
        assert!(matches!(bad, Err(SendError::BadHeader { ref name, .. }) if name == "x-evil"));
    }
}
