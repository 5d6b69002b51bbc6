//! The saved-delivery format smee.io uses (and `pysmee`, and the
//! Ember-CSI team's saved test deliveries): one JSON object holding the
//! request's lower-case headers beside the parsed `body`. Owns turning one
//! back into a request: which saved headers are real GitHub headers, the
//! body bytes, and optional re-signing. The smee relay and `ember-ci send`
//! both use it. Pure: no I/O.

use reqwest::header::{HeaderName, HeaderValue};
use thiserror::Error;

use crate::webhook::signature;

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

/// Why a saved delivery cannot be turned back into a request.
#[derive(Debug, Error)]
pub enum SavedDeliveryError {
    #[error("not a saved smee delivery: {0}")]
    NotADelivery(&'static str),
    #[error("saved header {name:?} cannot be sent: {reason}")]
    BadHeader { name: String, reason: String },
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
) -> Result<PreparedDelivery, SavedDeliveryError> {
    let fields = saved.as_object().ok_or(SavedDeliveryError::NotADelivery(
        "the top level is not a JSON object",
    ))?;
    let body = fields
        .get("body")
        .ok_or(SavedDeliveryError::NotADelivery("there is no `body` field"))?;
    let body = serde_json::to_vec(body).expect("a serde_json::Value always serialises");

    let mut headers = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let name = name.to_ascii_lowercase();
        let is_replaced_signature =
            secret.is_some() && (name == SIGNATURE_256 || name == SIGNATURE_SHA1);
        if name == "body" || is_replaced_signature || is_skipped(&name) {
            continue;
        }
        let value = value
            .as_str()
            .ok_or_else(|| SavedDeliveryError::BadHeader {
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
fn check_header(name: &str, value: &str) -> Result<(), SavedDeliveryError> {
    let bad = |reason: String| SavedDeliveryError::BadHeader {
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
            Err(SavedDeliveryError::NotADelivery(_))
        ));
        assert!(matches!(
            prepare_saved_delivery(&json!({"x-github-event": "ping"}), None),
            Err(SavedDeliveryError::NotADelivery(_))
        ));
        let bad = prepare_saved_delivery(&json!({"x-github-event": 3, "body": {}}), None);
        assert!(
            matches!(bad, Err(SavedDeliveryError::BadHeader { ref name, .. }) if name == "x-github-event")
        );
        let bad = prepare_saved_delivery(&json!({"x-evil": "a\nb", "body": {}}), None);
        assert!(
            matches!(bad, Err(SavedDeliveryError::BadHeader { ref name, .. }) if name == "x-evil")
        );
    }
}
