//! The key of keyflip's mark fingerprints (`PendingProof`, `RevokeProof`): 32 random bytes kept
//! beside the leases, where only the storage account's data roles can read them (keyflip's
//! identity, and the operators who run its CLI against the deployment: `infra/` grants them the
//! `keyflip-locks` container; not the vault's tag writers). Whoever can write a served vault's
//! tags, and read its versions, but not the lease storage,
//! still cannot compute a fingerprint keyflip accepts, so a forged pending or revocation mark
//! is never acted on. It reveals nothing about the keys it fingerprints.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::domain::ApiKey;

/// How many bytes a mark key holds.
const KEY_BYTES: usize = 32;

/// The mark key. `Debug` never shows it.
#[derive(Clone)]
pub struct MarkKey(Arc<[u8; KEY_BYTES]>);

impl fmt::Debug for MarkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MarkKey(<redacted>)")
    }
}

/// Why stored bytes are not a mark key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the stored mark key is not {KEY_BYTES} bytes of base64; delete the blob to have keyflip make a new one (pending marks written with the old key are then refused and must be removed)"
)]
pub struct BadMarkKey;

impl MarkKey {
    /// A new random key (from the operating system's generator).
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::getrandom(&mut bytes)?;
        Ok(Self(Arc::new(bytes)))
    }

    /// The key as it is stored (base64).
    pub fn to_stored(&self) -> String {
        azure_core::base64::encode(self.0.as_slice())
    }

    /// A key read back from storage.
    pub fn from_stored(stored: &[u8]) -> Result<Self, BadMarkKey> {
        let text = std::str::from_utf8(stored).map_err(|_| BadMarkKey)?;
        let bytes = azure_core::base64::decode(text.trim()).map_err(|_| BadMarkKey)?;
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| BadMarkKey)?;
        Ok(Self(Arc::new(bytes)))
    }

    /// `PendingProof`: the version a pending mark is written on, the active key, the mark
    /// itself (its slot, `PendingSince` in whole seconds, `PendingFrom`) and its purpose (a
    /// rotation, or a leaked-key emergency that must revoke once published), so that stripping
    /// or adding tags cannot change what a resume does.
    pub fn pending_proof(
        &self,
        version: &str,
        active: &ApiKey,
        slot: &str,
        since: OffsetDateTime,
        from: &str,
        revoking: bool,
    ) -> String {
        let since = since.unix_timestamp().to_string();
        let purpose = if revoking { "revoke-active" } else { "rotate" };
        self.proof(&["pending", version, active.expose(), slot, &since, from, purpose])
    }

    /// `RevokeProof`: the version the emergency replaced, the key it published, and the leaked
    /// slot with its key still in place.
    pub fn revoke_proof(
        &self,
        previous: &str,
        published: &ApiKey,
        leaked_slot: &str,
        leaked: &ApiKey,
    ) -> String {
        self.proof(&[
            "revoke",
            previous,
            published.expose(),
            leaked_slot,
            leaked.expose(),
        ])
    }

    /// A short fingerprint (16 hex characters of HMAC-SHA256) of `parts`, each length-prefixed
    /// so that no two different lists give the same input.
    pub fn proof(&self, parts: &[&str]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.as_slice()) else {
            // HMAC takes a key of any length: unreachable, and a proof no mark matches.
            return String::new();
        };
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `claimed` is `expected`, a proof this key made (compared in constant time).
    pub fn proves(&self, claimed: &str, expected: &str) -> bool {
        let (a, b) = (expected.as_bytes(), claimed.to_ascii_lowercase().into_bytes());
        !expected.is_empty()
            && a.len() == b.len()
            && a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_needs_the_key_and_binds_every_part_in_order() {
        let key = MarkKey::random().unwrap();
        let other = MarkKey::random().unwrap();
        let proof = key.proof(&["v1", "active-key", "key2"]);
        assert_eq!(proof.len(), 16);
        assert!(key.proves(&proof, &key.proof(&["v1", "active-key", "key2"])));
        assert!(key.proves(&proof.to_ascii_uppercase(), &proof));
        assert!(!key.proves(&proof, &other.proof(&["v1", "active-key", "key2"])));
        assert!(!key.proves(&proof, &key.proof(&["v1", "key2", "active-key"])));
        assert!(!key.proves(&proof, &key.proof(&["v1a", "ctive-key", "key2"])));
        assert!(!key.proves("", ""));
        let active = ApiKey::new("active-key-value");
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let from = "fedcba9876543210";
        let pending = key.pending_proof("v1", &active, "key2", at, from, false);
        assert!(!pending.contains("active"));
        assert_ne!(pending, key.pending_proof("v2", &active, "key2", at, from, false));
        assert_ne!(pending, key.pending_proof("v1", &active, "key1", at, from, false));
        assert_ne!(
            pending,
            key.pending_proof("v1", &active, "key2", at, from, true),
            "purpose"
        );
        let later = at + time::Duration::milliseconds(300);
        assert_eq!(
            pending,
            key.pending_proof("v1", &active, "key2", later, from, false),
            "whole seconds"
        );
    }

    #[test]
    fn a_key_round_trips_through_storage_and_never_prints() {
        let key = MarkKey::random().unwrap();
        let stored = key.to_stored();
        let back = MarkKey::from_stored(stored.as_bytes()).unwrap();
        assert_eq!(back.proof(&["x"]), key.proof(&["x"]));
        assert!(!format!("{key:?}").contains(&stored));
        assert!(MarkKey::from_stored(b"c2hvcnQ=").is_err());
        assert!(MarkKey::from_stored(b"not base64 at all!").is_err());
    }
}
