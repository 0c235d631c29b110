//! Key Vault names: a vault (3–24 characters), a secret (1–127) and a version id (32 hex).
//! Secret names compare case-insensitively, as Key Vault does.

use std::fmt;

use super::untrusted::echo;

/// Why a name was refused; the name is quoted as [`echo`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "vault name '{0}' is invalid: use 3-24 letters, digits and hyphens, starting with a letter, ending with a letter or digit, without consecutive hyphens"
    )]
    Vault(String),
    #[error("secret name '{0}' is invalid: use 1-127 letters, digits and hyphens")]
    Secret(String),
    #[error("secret version '{0}' is invalid: a version id is 32 hexadecimal characters")]
    Version(String),
}

/// A Key Vault name (`kv-prod-01`), lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VaultName(String);

impl VaultName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let name = raw.trim();
        let bytes = name.as_bytes();
        let valid = (3..=24).contains(&bytes.len())
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0].is_ascii_alphabetic()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && !name.contains("--");
        if valid {
            Ok(Self(name.to_ascii_lowercase()))
        } else {
            Err(NameError::Vault(echo(raw)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VaultName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret name as written; equality ignores case.
#[derive(Debug, Clone, Eq)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let name = raw.trim();
        let valid =
            (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if valid {
            Ok(Self(name.to_string()))
        } else {
            Err(NameError::Secret(echo(raw)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for SecretName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl std::hash::Hash for SecretName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_ascii_lowercase().hash(state);
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret version id (32 hex characters), lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretVersion(String);

impl SecretVersion {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let version = raw.trim();
        if version.len() == 32 && version.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(version.to_ascii_lowercase()))
        } else {
            Err(NameError::Version(echo(raw)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_follow_key_vault_rules() {
        assert_eq!(VaultName::parse("KV-Prod-01").unwrap().as_str(), "kv-prod-01");
        for bad in ["kv", "1kv", "kv-", "k--v", "kv_1", "abcdefghijklmnopqrstuvwxy"] {
            assert!(VaultName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_names_compare_case_insensitively() {
        assert_eq!(
            SecretName::parse("MyKey").unwrap(),
            SecretName::parse("mykey").unwrap()
        );
        assert!(SecretName::parse("my_key").is_err());
        assert!(SecretName::parse(&"a".repeat(128)).is_err());
    }

    #[test]
    fn versions_are_32_hex_and_tolerate_surrounding_spaces() {
        let v = SecretVersion::parse(" EE059B2BB5BC48398A53B168C6CDCB10").unwrap();
        assert_eq!(v.as_str(), "ee059b2bb5bc48398a53b168c6cdcb10");
        assert!(SecretVersion::parse("abc").is_err());
    }

    #[test]
    fn refused_names_are_quoted_cut_and_escaped() {
        let error = VaultName::parse("kv\nforged: ERROR").unwrap_err();
        assert_eq!(error, NameError::Vault("kv\\nforged: ERROR".into()));
        let error = SecretName::parse(&"x_".repeat(5000)).unwrap_err();
        assert!(error.to_string().chars().count() < 300, "{error}");
    }
}
