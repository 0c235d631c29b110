//! An API key value. It never prints: `Debug` and `Display` are redacted, and the value is
//! reachable only through [`ApiKey::expose`], at the few places that must send or store it.
//! [`mark_proof`] binds a pending mark to the version and the keys it was written for, without
//! the keys.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A key value (a resource's key, or a secret version's value).
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The value, for the request or write that needs it. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Constant-time comparison of two key values.
    pub fn same_as(&self, other: &ApiKey) -> bool {
        let (a, b) = (self.expose().as_bytes(), other.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// A short fingerprint (16 hex characters of SHA-256) of the secret version a pending mark is
/// written on, the active key and the idle slot's regenerated key. Only someone who holds both
/// keys can compute it, and a mark copied onto another version does not match, so a mark
/// carrying it proves it was written for exactly this version and these keys. It reveals
/// nothing usable about either key (both are long random values).
pub fn mark_proof(version: &str, active: &ApiKey, regenerated: &ApiKey) -> String {
    let mut hash = Sha256::new();
    for part in [version, active.expose(), regenerated.expose()] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    short_hex(&hash.finalize())
}

/// A short fingerprint (16 hex characters of SHA-256) of one key: `PendingFrom`, the idle
/// slot's key before a regeneration, so a later invocation can tell whether the regeneration
/// took effect without keeping the key. It reveals nothing usable about a long random key.
pub fn fingerprint(key: &ApiKey) -> String {
    short_hex(&Sha256::digest(key.expose().as_bytes()))
}

fn short_hex(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_prints() {
        let key = ApiKey::new("super-secret-value");
        assert!(!format!("{key:?} {key} {:?}", Some(&key)).contains("super-secret"));
        assert_eq!(key.expose(), "super-secret-value");
    }

    #[test]
    fn a_mark_proof_is_short_bound_to_version_and_order_and_holds_neither_key() {
        let (a, b) = (ApiKey::new("active-key-value"), ApiKey::new("new-idle-value"));
        let proof = mark_proof("v1", &a, &b);
        assert_eq!(proof.len(), 16);
        assert!(proof.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(!proof.contains("active") && !proof.contains("idle"));
        assert_eq!(proof, mark_proof("v1", &a, &b));
        assert_ne!(proof, mark_proof("v1", &b, &a));
        assert_ne!(proof, mark_proof("v2", &a, &b));
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            mark_proof("v", &ApiKey::new("ab"), &ApiKey::new("c")),
            mark_proof("v", &ApiKey::new("a"), &ApiKey::new("bc"))
        );
    }

    #[test]
    fn a_fingerprint_is_short_stable_and_differs_between_keys() {
        let (a, b) = (
            ApiKey::new("old-idle-key-value"),
            ApiKey::new("new-idle-key-value"),
        );
        assert_eq!(fingerprint(&a).len(), 16);
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert!(!fingerprint(&a).contains("idle"));
    }

    #[test]
    fn keys_compare_by_value() {
        assert!(ApiKey::new("a").same_as(&ApiKey::new("a")));
        assert!(!ApiKey::new("a").same_as(&ApiKey::new("b")));
        assert!(!ApiKey::new("a").same_as(&ApiKey::new("ab")));
    }
}
