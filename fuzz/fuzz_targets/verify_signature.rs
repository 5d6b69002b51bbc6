//! `signature::verify` on any secret, body and header values: it never
//! panics, accepts what `sign` made, and refuses a body changed by one bit.
#![no_main]

use arbitrary::Arbitrary;
use ember_ci_core::signature::{sign, verify, SignatureError};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    secret: &'a [u8],
    body: &'a [u8],
    sha256_header: Option<&'a str>,
    sha1_header: Option<&'a str>,
}

fuzz_target!(|input: Input<'_>| {
    let Input {
        secret,
        body,
        sha256_header,
        sha1_header,
    } = input;
    let verdict = verify(secret, body, sha256_header, sha1_header);
    let signed = sign(secret, body);
    if verdict.is_ok() {
        // Only the right digest passes (hex may differ in case only).
        let accepted = sha256_header.map_or(&signed.sha1, |_| &signed.sha256);
        let header = sha256_header.or(sha1_header).expect("a header was given");
        assert!(
            header.eq_ignore_ascii_case(accepted),
            "{header} accepted for {accepted}"
        );
    }
    assert_eq!(verify(secret, body, Some(&signed.sha256), None), Ok(()));
    assert_eq!(verify(secret, body, None, Some(&signed.sha1)), Ok(()));
    // A valid SHA-1 never rescues a bad SHA-256 (no downgrade).
    if let Some(header) = sha256_header {
        if !header.eq_ignore_ascii_case(&signed.sha256) {
            assert!(verify(secret, body, Some(header), Some(&signed.sha1)).is_err());
        }
    }
    let mut tampered = body.to_vec();
    match tampered.first_mut() {
        Some(first) => *first ^= 1,
        None => tampered.push(0),
    }
    assert_eq!(
        verify(secret, &tampered, Some(&signed.sha256), None),
        Err(SignatureError::Mismatch)
    );
});
