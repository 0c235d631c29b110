//! Per-secret locks inside one process: at most one rotation of a secret at a time here. (The
//! cross-instance lease of DESIGN.md §3 step 4 comes with the blob lease.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::domain::{SecretName, VaultName};

/// The secrets being rotated in this process.
#[derive(Debug, Default, Clone)]
pub struct SecretLocks(Arc<Mutex<HashSet<(VaultName, String)>>>);

/// Held while a rotation runs; released on drop (also on panic or cancellation).
#[derive(Debug)]
pub struct SecretLock {
    locks: SecretLocks,
    key: (VaultName, String),
}

impl SecretLocks {
    /// Takes the lock of a secret, or `None` if another rotation holds it.
    pub fn try_lock(&self, vault: &VaultName, secret: &SecretName) -> Option<SecretLock> {
        let key = (vault.clone(), secret.as_str().to_ascii_lowercase());
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(key.clone()).then(|| SecretLock {
            locks: self.clone(),
            key,
        })
    }
}

impl Drop for SecretLock {
    fn drop(&mut self) {
        let mut held = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_locked_once_and_released_on_drop() {
        let locks = SecretLocks::default();
        let vault = VaultName::parse("kv-one").unwrap();
        let lock = locks
            .try_lock(&vault, &SecretName::parse("Key").unwrap())
            .unwrap();
        assert!(
            locks
                .try_lock(&vault, &SecretName::parse("key").unwrap())
                .is_none()
        );
        assert!(
            locks
                .try_lock(&vault, &SecretName::parse("other").unwrap())
                .is_some()
        );
        drop(lock);
        assert!(
            locks
                .try_lock(&vault, &SecretName::parse("key").unwrap())
                .is_some()
        );
    }
}
