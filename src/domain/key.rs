//! An API key value. It never prints: `Debug` and `Display` are redacted, and the value is
//! reachable only through [`ApiKey::expose`], at the few places that must send or store it.
//! [`pair_fingerprint`] binds a pending mark to the keys it was written for, without the keys.

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

/// A short fingerprint (16 hex characters of SHA-256) of an ordered pair of keys: the active
/// key and the idle slot's regenerated key. Only someone who holds both can compute it, so a
/// pending mark carrying it proves it was written for exactly these keys. It reveals nothing
/// usable about either key (both are long random values).
pub fn pair_fingerprint(active: &ApiKey, regenerated: &ApiKey) -> String {
    let mut hash = Sha256::new();
    for key in [active, regenerated] {
        let bytes = key.expose().as_bytes();
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    }
    hash.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
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
    fn a_pair_fingerprint_is_short_ordered_and_holds_neither_key() {
        let (a, b) = (ApiKey::new("active-key-value"), ApiKey::new("new-idle-value"));
        let fingerprint = pair_fingerprint(&a, &b);
        assert_eq!(fingerprint.len(), 16);
        assert!(fingerprint.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(fingerprint, pair_fingerprint(&a, &b));
        assert_ne!(fingerprint, pair_fingerprint(&b, &a));
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            pair_fingerprint(&ApiKey::new("ab"), &ApiKey::new("c")),
            pair_fingerprint(&ApiKey::new("a"), &ApiKey::new("bc"))
        );
    }

    #[test]
    fn keys_compare_by_value() {
        assert!(ApiKey::new("a").same_as(&ApiKey::new("a")));
        assert!(!ApiKey::new("a").same_as(&ApiKey::new("b")));
        assert!(!ApiKey::new("a").same_as(&ApiKey::new("ab")));
    }
}
