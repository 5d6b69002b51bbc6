//! Bodies that reached us through a relay (smee) instead of from GitHub
//! directly, and the two body encodings GitHub uses.
//!
//! smee parses GitHub's JSON and prints it again with `JSON.stringify`: the
//! text keeps its numbers and key order, but escapes can change. GitHub
//! writes control characters with upper-case hex (`\u001B`) where
//! JavaScript writes `\u001b`, and some senders escape every non-ASCII
//! character where JavaScript writes UTF-8. [`Repair`] undoes each of these
//! known changes so the signature can be checked over GitHub's bytes again;
//! a repair only ever rewrites escapes, never what the JSON means, and the
//! signature must still match afterwards, so it cannot let a forged body in.
//!
//! Also: [`compact_json`] (a saved, pretty-printed delivery back to the
//! compact text GitHub sent, numbers and escapes untouched) and the
//! `application/x-www-form-urlencoded` form (`payload=<JSON>`), GitHub's
//! default content type for a new webhook.
//!
//! Pure: no I/O.

use std::borrow::Cow;

use thiserror::Error;

/// The content type of form-encoded deliveries.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// One known change a relay makes to GitHub's text, and its undoing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// `\u001b` -> `\u001B`: GitHub writes `\u` escapes with upper-case hex.
    UpperCaseUnicodeEscapes,
    /// Every non-ASCII character as `\uXXXX` (UTF-16 units).
    AsciiEscaped,
    /// Both: non-ASCII escaped, every escape's hex upper-case.
    Both,
}

impl Repair {
    /// In the order they are tried.
    pub const ALL: [Repair; 3] = [
        Repair::UpperCaseUnicodeEscapes,
        Repair::AsciiEscaped,
        Repair::Both,
    ];

    /// The name logged when the repair is tried.
    pub fn name(self) -> &'static str {
        match self {
            Repair::UpperCaseUnicodeEscapes => "upper-case \\u hex",
            Repair::AsciiEscaped => "ASCII-escaped",
            Repair::Both => "ASCII-escaped with upper-case \\u hex",
        }
    }

    /// The repaired body, or None when the repair would change nothing
    /// (so it is not worth a signature check).
    pub fn apply(self, body: &[u8]) -> Option<Vec<u8>> {
        let repaired = match self {
            Repair::UpperCaseUnicodeEscapes => upper_case_unicode_escapes(body),
            Repair::AsciiEscaped => escape_non_ascii(body)?,
            Repair::Both => upper_case_unicode_escapes(&escape_non_ascii(body)?),
        };
        (repaired != body).then_some(repaired)
    }
}

/// Upper-cases the hex digits of every `\uXXXX` escape. Backslashes occur in
/// JSON only inside strings, each starting an escape, so a scan that skips
/// whole escapes (`\\u` is an escaped backslash, then a `u`) is exact.
fn upper_case_unicode_escapes(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let mut i = 0;
    while i < out.len() {
        if out[i] != b'\\' {
            i += 1;
            continue;
        }
        if out.get(i + 1) == Some(&b'u') {
            let end = (i + 6).min(out.len());
            out[i + 2..end].make_ascii_uppercase();
            i = end;
        } else {
            i += 2;
        }
    }
    out
}

/// Every non-ASCII character as `\uXXXX`; None when the body is not UTF-8.
/// Non-ASCII bytes occur in JSON only inside strings, where an escape means
/// the same character.
fn escape_non_ascii(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = String::with_capacity(body.len() + body.len() / 4);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    Some(out.into_bytes())
}

/// `json` without the whitespace between tokens; strings, numbers and
/// escapes are kept byte for byte (re-printing a parsed value would turn
/// `0.000001` into `1e-6`). The input must be valid JSON.
pub fn compact_json(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        return Cow::Borrowed(json);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            match b {
                b'\\' => {
                    if let Some(&next) = bytes.get(i + 1) {
                        out.push(next);
                        i += 1;
                    }
                }
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            out.push(b);
        }
        i += 1;
    }
    // Only ASCII whitespace was removed, outside strings: still UTF-8.
    Cow::Owned(String::from_utf8(out).expect("removing ASCII bytes keeps UTF-8 valid"))
}

/// Why a form-encoded body holds no delivery.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormError {
    #[error(
        "form-encoded body has no `payload` field (GitHub sends the JSON there; \
         or set the webhook's content type to application/json)"
    )]
    NoPayload,
}

/// Whether a `Content-Type` value is the form encoding (parameters ignored).
pub fn is_form_content_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE))
}

/// The JSON of a form-encoded delivery: its `payload` field, decoded.
pub fn form_payload(body: &[u8]) -> Result<Vec<u8>, FormError> {
    form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| value.into_owned().into_bytes())
        .ok_or(FormError::NoPayload)
}

/// `payload=<json>`, encoded as GitHub encodes it (spaces as `+`, every byte
/// but `*-._` and alphanumerics as upper-case `%XX`).
pub fn form_body(json: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", json)
        .finish()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(repair: Repair, body: &str) -> Option<String> {
        repair
            .apply(body.as_bytes())
            .map(|b| String::from_utf8(b).expect("UTF-8"))
    }

    #[test]
    fn upper_cases_only_unicode_escape_hex() {
        let smee = r#"{"t":"a\u001b[0m \\u00ff \n\u00e9"}"#;
        assert_eq!(
            apply(Repair::UpperCaseUnicodeEscapes, smee).as_deref(),
            Some(r#"{"t":"a\u001B[0m \\u00ff \n\u00E9"}"#)
        );
        assert_eq!(
            apply(Repair::UpperCaseUnicodeEscapes, r#"{"t":"\u001B"}"#),
            None
        );
    }

    #[test]
    fn ascii_escapes_non_ascii_with_surrogate_pairs() {
        assert_eq!(
            apply(
                Repair::AsciiEscaped,
                "{\"t\":\"caf\u{e9} \u{2615}\u{1F600}\"}"
            )
            .as_deref(),
            Some(r#"{"t":"caf\u00e9 \u2615\ud83d\ude00"}"#)
        );
        assert_eq!(
            apply(Repair::Both, "{\"t\":\"\u{1F600}\\u001b\"}").as_deref(),
            Some(r#"{"t":"\uD83D\uDE00\u001B"}"#)
        );
        assert_eq!(apply(Repair::AsciiEscaped, r#"{"t":"plain"}"#), None);
    }

    #[test]
    fn repairs_keep_the_json_value() {
        let body = "{\"t\":\"\u{e9}\\u001b\\\\u0041\",\"n\":0.000001}";
        let original: serde_json::Value = serde_json::from_str(body).expect("JSON");
        for repair in Repair::ALL {
            let repaired = repair.apply(body.as_bytes()).expect("something to repair");
            let value: serde_json::Value = serde_json::from_slice(&repaired).expect("JSON");
            assert_eq!(value, original, "{}", repair.name());
        }
    }

    #[test]
    fn compacting_keeps_numbers_strings_and_escapes() {
        let pretty = "{\n  \"n\": 0.000001,\n  \"big\": 18446744073709552000,\n  \"s\": \"a \\\" b\\u001B\",\n  \"l\": [ 1, 2 ]\n}";
        assert_eq!(
            compact_json(pretty),
            r#"{"n":0.000001,"big":18446744073709552000,"s":"a \" b\u001B","l":[1,2]}"#
        );
        assert!(matches!(compact_json(r#"{"a":1}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn form_bodies_round_trip_and_name_a_missing_payload() {
        let json = "{\"t\":\"a b+c&d=\u{e9}\u{1b}\"}";
        let body = form_body(json);
        assert_eq!(
            String::from_utf8(body.clone()).expect("ASCII"),
            "payload=%7B%22t%22%3A%22a+b%2Bc%26d%3D%C3%A9%1B%22%7D"
        );
        assert_eq!(form_payload(&body).expect("payload"), json.as_bytes());
        assert_eq!(form_payload(b"other=1"), Err(FormError::NoPayload));
        assert!(is_form_content_type(
            "Application/X-WWW-Form-Urlencoded; charset=utf-8"
        ));
        assert!(!is_form_content_type("application/json"));
    }
}
