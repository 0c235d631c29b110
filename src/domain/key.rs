//! An API key value. It never prints: `Debug` and `Display` are redacted, and the value is
//! reachable only through [`ApiKey::expose`], at the few places that must send or store it.

use secrecy::{ExposeSecret, SecretString};

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
    fn keys_compare_by_value() {
        assert!(ApiKey::new("a").same_as(&ApiKey::new("a")));
        assert!(!ApiKey::new("a").same_as(&ApiKey::new("b")));
        assert!(!ApiKey::new("a").same_as(&ApiKey::new("ab")));
    }
}
