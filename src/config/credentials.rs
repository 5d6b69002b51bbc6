//! Which parts of an Ember-CSI driver config are credentials: one rule,
//! shared by the config summary (which masks them) and the log masker
//! (which removes their values from published logs).
//!
//! Driver configs are vendor JSON with no fixed schema (`san_password`,
//! `rbd_keyring_conf`, `chap_secret`, `api_token`, ...), so the rule is by
//! key name and errs on the side of hiding: a masked harmless value costs
//! nothing, a leaked password costs a rotation.

use serde_json::Value;

/// Shown in place of a masked value.
pub const MASK: &str = "***";

/// Key fragments that mark a credential, matched case-insensitively anywhere
/// in the key ("pass" also covers `san_password`, `passwd`, `passphrase`).
const CREDENTIAL_KEY_FRAGMENTS: [&str; 8] = [
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "credential",
    "auth",
    "cert",
];

/// Whether a JSON key names a credential (password, secret, token, key, ...).
pub fn is_credential_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    CREDENTIAL_KEY_FRAGMENTS
        .iter()
        .any(|fragment| key.contains(fragment))
}

/// The driver config JSON with every credential value replaced by `***`
/// (a credential key holding an object or list is masked whole). Text that
/// is not JSON is masked whole: its secrets cannot be located.
pub fn mask_driver_config_json(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut value) => {
            mask_credentials(&mut value);
            value.to_string()
        }
        Err(_) => MASK.to_string(),
    }
}

/// Every credential value in the driver config JSON, found recursively, as
/// text: strings as they are, numbers in their JSON form, and the leaves of
/// objects or lists held under a credential key. Booleans and nulls are
/// left out: masking every "true" in a log would hide nothing secret.
pub fn credential_values(json_text: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(value) = serde_json::from_str::<Value>(json_text) {
        collect_credentials(&value, false, &mut found);
    }
    found.sort();
    found.dedup();
    found
}

fn mask_credentials(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if is_credential_key(key) {
                    *inner = Value::String(MASK.to_string());
                } else {
                    mask_credentials(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_credentials),
        _ => {}
    }
}

fn collect_credentials(value: &Value, under_credential_key: bool, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                collect_credentials(inner, under_credential_key || is_credential_key(key), found);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_credentials(item, under_credential_key, found);
            }
        }
        Value::String(text) if under_credential_key && !text.is_empty() => found.push(text.clone()),
        Value::Number(number) if under_credential_key => found.push(number.to_string()),
        _ => {}
    }
}
