//! The saved-delivery format smee.io uses (and `pysmee`, and the
//! Ember-CSI team's saved test deliveries): one JSON object holding the
//! request's lower-case headers beside the parsed `body`. Owns turning one
//! back into a request: which saved headers are real GitHub headers, the
//! body bytes, and optional re-signing. The smee relay and `ember-ci send`
//! both use it. Pure: no I/O.

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::webhook::{relayed, signature};

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
const CONTENT_TYPE: &str = "content-type";

/// A saved delivery ready to be posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDelivery {
    /// Lower-case names, in the saved order.
    pub headers: Vec<(String, String)>,
    /// The bytes GitHub signed: `body`'s text, compact, numbers and escapes
    /// as saved; for a form-encoded delivery, `payload=<JSON>`.
    pub body: Vec<u8>,
}

/// How to encode the body that is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyEncoding {
    /// As the saved `content-type` says (GitHub's choice when it sent it).
    #[default]
    AsSaved,
    /// `application/x-www-form-urlencoded` (`payload=<JSON>`); changes the
    /// body, so it needs a secret to sign it again.
    Form,
}

/// Why a saved delivery cannot be turned back into a request.
#[derive(Debug, Error)]
pub enum SavedDeliveryError {
    #[error("not a saved smee delivery: {0}")]
    NotADelivery(&'static str),
    #[error("not a saved smee delivery: {0}")]
    NotJson(serde_json::Error),
    #[error("saved header {name:?} cannot be sent: {reason}")]
    BadHeader { name: String, reason: String },
    #[error("a form-encoded delivery's `body` must be an object with a string `payload` field")]
    BadFormBody,
    #[error("form encoding changes the body, so it must be signed again: give a secret")]
    FormNeedsSecret,
}

/// [`prepare_saved_text`] for a delivery already parsed; its body is printed
/// compact, so numbers that JSON values cannot hold exactly may change:
/// prefer the text form.
pub fn prepare_saved_delivery(
    saved: &serde_json::Value,
    secret: Option<&str>,
) -> Result<PreparedDelivery, SavedDeliveryError> {
    prepare_saved_text(&saved.to_string(), secret, BodyEncoding::AsSaved)
}

/// Turns a smee-form delivery (its JSON text) into the headers and body to
/// post.
///
/// `body` is taken as text (serde_json's raw values), never re-printed, so
/// `0.000001`, 20-digit integers, escapes and deep nesting stay as GitHub
/// sent them; only whitespace between tokens is dropped (GitHub sends
/// compact JSON; saved files may be pretty-printed). A form-encoded
/// delivery (smee keeps the parsed form, `{"payload": "<JSON>"}`) becomes
/// `payload=<JSON>` again. Without `secret` the saved signatures are kept;
/// with it both signature headers are replaced.
pub fn prepare_saved_text(
    text: &str,
    secret: Option<&str>,
    encoding: BodyEncoding,
) -> Result<PreparedDelivery, SavedDeliveryError> {
    let fields: SavedFields = serde_json::from_str(text).map_err(SavedDeliveryError::NotJson)?;
    let mut body = None;
    let mut headers = Vec::with_capacity(fields.0.len());
    let mut is_saved_as_form = false;
    let is_resigned = secret.is_some();
    for (name, value) in fields.0 {
        let name = name.to_ascii_lowercase();
        if name == "body" {
            body = Some(value);
            continue;
        }
        let is_replaced_signature =
            is_resigned && (name == SIGNATURE_256 || name == SIGNATURE_SHA1);
        let is_replaced_type = encoding == BodyEncoding::Form && name == CONTENT_TYPE;
        if is_replaced_signature || is_replaced_type || is_skipped(&name) {
            continue;
        }
        let value: String =
            serde_json::from_str(value.get()).map_err(|_| SavedDeliveryError::BadHeader {
                name: name.clone(),
                reason: format!("its value is not a string but {}", value.get()),
            })?;
        check_header(&name, &value)?;
        if name == CONTENT_TYPE && relayed::is_form_content_type(&value) {
            is_saved_as_form = true;
        }
        headers.push((name, value));
    }
    let body = body.ok_or(SavedDeliveryError::NotADelivery("there is no `body` field"))?;
    let body = if is_saved_as_form {
        let form: FormFields =
            serde_json::from_str(body.get()).map_err(|_| SavedDeliveryError::BadFormBody)?;
        relayed::form_body(&form.payload)
    } else {
        let json = relayed::compact_json(body.get());
        match encoding {
            BodyEncoding::Form => relayed::form_body(&json),
            BodyEncoding::AsSaved => json.into_owned().into_bytes(),
        }
    };
    if encoding == BodyEncoding::Form {
        if !is_resigned {
            return Err(SavedDeliveryError::FormNeedsSecret);
        }
        headers.push((
            CONTENT_TYPE.to_string(),
            relayed::FORM_CONTENT_TYPE.to_string(),
        ));
    }
    if let Some(secret) = secret {
        let signatures = signature::sign(secret.as_bytes(), &body);
        headers.push((SIGNATURE_256.to_string(), signatures.sha256));
        headers.push((SIGNATURE_SHA1.to_string(), signatures.sha1));
    }
    Ok(PreparedDelivery { headers, body })
}

/// The top-level fields of a saved delivery in their saved order, each
/// value as its raw text.
struct SavedFields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for SavedFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = SavedFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of headers beside `body`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SavedFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(SavedFields(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// smee's view of a form-encoded body.
#[derive(Deserialize)]
struct FormFields {
    payload: String,
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
            Err(SavedDeliveryError::NotJson(_))
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

    #[test]
    fn the_body_text_is_kept_byte_for_byte() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let body =
            format!(r#"{{"t":"\u001B[31m","f":0.000001,"i":18446744073709552000,"d":{deep}}}"#);
        let saved = format!("{{\"x-github-event\": \"ping\",\n \"body\": {body}}}");
        let prepared = prepare_saved_text(&saved, None, BodyEncoding::AsSaved).expect("prepares");
        assert_eq!(String::from_utf8(prepared.body).expect("UTF-8"), body);
    }

    #[test]
    fn form_deliveries_are_posted_form_encoded() {
        let saved = r#"{"content-type":"application/x-www-form-urlencoded","body":{"payload":"{\"zen\":\"a b\"}"}}"#;
        let prepared = prepare_saved_text(saved, None, BodyEncoding::AsSaved).expect("prepares");
        assert_eq!(prepared.body, b"payload=%7B%22zen%22%3A%22a+b%22%7D");

        let json = r#"{"content-type":"application/json","body":{"zen":"a b"}}"#;
        assert!(matches!(
            prepare_saved_text(json, None, BodyEncoding::Form),
            Err(SavedDeliveryError::FormNeedsSecret)
        ));
        let form = prepare_saved_text(json, Some("s"), BodyEncoding::Form).expect("prepares");
        assert_eq!(form.body, prepared.body);
        assert_eq!(
            header(&form, CONTENT_TYPE),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            form.headers
                .iter()
                .filter(|(n, _)| n == CONTENT_TYPE)
                .count(),
            1
        );
    }
}
