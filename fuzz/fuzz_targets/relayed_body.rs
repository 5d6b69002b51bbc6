//! What the smee relay does to a body before the signature check, on any
//! bytes: each `Repair` may decline, never panic; on JSON it changes only
//! escapes (the repaired text means the same value), and a repaired body
//! needs no second repair. `compact_json` keeps the value too, and the form
//! encoding round-trips any text.
#![no_main]

use ember_ci_core::relayed::{compact_json, form_body, form_payload, Repair};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let value = serde_json::from_slice::<serde_json::Value>(data).ok();
    for repair in Repair::ALL {
        let Some(repaired) = repair.apply(data) else {
            continue;
        };
        assert_eq!(repair.apply(&repaired), None, "{} twice", repair.name());
        if let Some(value) = &value {
            let again: serde_json::Value =
                serde_json::from_slice(&repaired).expect("a repaired JSON body is JSON");
            assert_eq!(&again, value, "{} changed the value", repair.name());
        }
    }
    if let (Some(value), Ok(text)) = (&value, std::str::from_utf8(data)) {
        let compact: serde_json::Value =
            serde_json::from_str(&compact_json(text)).expect("compacted JSON is JSON");
        assert_eq!(&compact, value);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(form_payload(&form_body(text)).as_deref(), Ok(data));
    }
});
