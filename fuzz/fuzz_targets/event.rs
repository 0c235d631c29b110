//! The Key Vault event parser (`triggers::event::parse_event`), in either schema, with its
//! lenient quirks (case, trimmed keys and values, numeric or string `NBF`/`EXP`, a JSON string
//! holding the event, a one-element array).
//!
//! Input: JSON text (anything else is skipped: the envelope target covers bodies that are not
//! JSON). Invariants: nothing panics; the vault, secret and version of a parsed target satisfy
//! their own parsers again, unchanged.

#![no_main]

use keyflip::domain::{SecretName, SecretVersion, VaultName};
use keyflip::triggers::event::{EventTarget, parse_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(event) = parse_event(&value) else {
        return;
    };
    if let Some(target) = &event.target {
        assert_names_parse_again(target);
    }
    if event.kind.rotates() {
        assert!(
            event.target.is_some(),
            "a {} event without a target was accepted",
            event.kind.as_str()
        );
    }
});

/// A parsed name is a fixed point of its parser: what the engine is handed is already valid.
fn assert_names_parse_again(target: &EventTarget) {
    assert_eq!(
        VaultName::parse(target.vault.as_str()).as_ref(),
        Ok(&target.vault)
    );
    assert_eq!(
        SecretName::parse(target.secret.as_str()).as_ref(),
        Ok(&target.secret)
    );
    assert_eq!(
        SecretName::parse(target.secret.as_str()).map(|s| s.as_str().to_string()),
        Ok(target.secret.as_str().to_string()),
        "the secret name is not kept as written"
    );
    if let Some(version) = &target.version {
        assert_eq!(SecretVersion::parse(version.as_str()).as_ref(), Ok(version));
    }
}
