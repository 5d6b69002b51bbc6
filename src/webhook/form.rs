//! The JSON of a delivery whatever its encoding: GitHub sends either
//! `application/json` or, the default for a new webhook,
//! `application/x-www-form-urlencoded` with the JSON in the `payload` field.
//! The signature covers the raw form body, so this runs after the check.

use std::borrow::Cow;

use super::relayed::{self, FormError};

/// The delivery's JSON: `body` itself, or its `payload` field when
/// `content_type` is the form encoding.
pub(super) fn json_body<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
) -> Result<Cow<'a, [u8]>, FormError> {
    match content_type {
        Some(content_type) if relayed::is_form_content_type(content_type) => {
            relayed::form_payload(body).map(Cow::Owned)
        }
        _ => Ok(Cow::Borrowed(body)),
    }
}

/// A hint for a JSON parse error on a body that looks form-encoded but was
/// not labelled so.
pub(super) fn hint_for(body: &[u8]) -> &'static str {
    if body.starts_with(b"payload=") {
        " (the body looks form-encoded: send it with Content-Type \
         application/x-www-form-urlencoded, or set the webhook's content type to application/json)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_yield_their_payload_and_json_passes_through() {
        let form = relayed::form_body(r#"{"zen":"x"}"#);
        let json = json_body(Some("application/x-www-form-urlencoded"), &form).expect("payload");
        assert_eq!(&*json, br#"{"zen":"x"}"#);
        assert_eq!(
            &*json_body(Some("application/json"), b"{}").expect("json"),
            b"{}"
        );
        assert_eq!(&*json_body(None, b"{}").expect("json"), b"{}");
        assert_eq!(
            json_body(Some("application/x-www-form-urlencoded"), b"x=1"),
            Err(FormError::NoPayload)
        );
        assert!(!hint_for(b"payload=%7B").is_empty());
        assert!(hint_for(b"{}").is_empty());
    }
}
