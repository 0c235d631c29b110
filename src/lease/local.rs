//! The in-process lease: exact when one process does every rotation (the demo, a single CLI
//! run against a vault no deployment serves). Never a silent fallback: it is used only when
//! `KEYFLIP_LEASE=in-process` says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::{HeldLease, LeaseError, LeaseKey, Leases, MarkKey};

/// The secrets whose lease this process holds, each with the id of the lease that holds it,
/// and this process's mark key (made on first use; marks do not outlive the process's key).
#[derive(Debug, Default, Clone)]
pub struct InProcessLeases {
    held: Arc<Mutex<HashMap<String, u64>>>,
    next_id: Arc<AtomicU64>,
    mark_key: Arc<OnceLock<MarkKey>>,
}

/// One lease of [`InProcessLeases`]; given up on release or drop.
#[derive(Debug)]
struct InProcessLease {
    leases: InProcessLeases,
    blob: String,
    id: u64,
}

impl InProcessLeases {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Leases for InProcessLeases {
    async fn acquire(&self, key: &LeaseKey) -> Result<Box<dyn HeldLease>, LeaseError> {
        let blob = key.blob_name();
        let mut held = self.held();
        if held.contains_key(&blob) {
            return Err(LeaseError::Held);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        held.insert(blob.clone(), id);
        Ok(Box::new(InProcessLease {
            leases: self.clone(),
            blob,
            id,
        }))
    }

    fn describe(&self) -> String {
        "in-process (KEYFLIP_LEASE=in-process: exact only while a single process rotates)".to_string()
    }

    async fn mark_key(&self) -> Result<MarkKey, LeaseError> {
        if let Some(key) = self.mark_key.get() {
            return Ok(key.clone());
        }
        let made = MarkKey::random()
            .map_err(|e| LeaseError::Permanent(format!("the system random generator failed: {e}")))?;
        Ok(self.mark_key.get_or_init(|| made).clone())
    }
}

#[async_trait::async_trait]
impl HeldLease for InProcessLease {
    async fn renew(&self) -> Result<(), LeaseError> {
        match self.leases.held().get(&self.blob) == Some(&self.id) {
            true => Ok(()),
            false => Err(LeaseError::Lost("it was released".to_string())),
        }
    }

    async fn release(&self) -> Result<(), LeaseError> {
        self.give_up();
        Ok(())
    }
}

impl InProcessLease {
    /// Frees the secret if this lease still holds it (never another lease taken since).
    fn give_up(&self) {
        let mut held = self.leases.held();
        if held.get(&self.blob) == Some(&self.id) {
            held.remove(&self.blob);
        }
    }
}

impl Drop for InProcessLease {
    fn drop(&mut self) {
        self.give_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SecretName, VaultName};

    fn key(secret: &str) -> LeaseKey {
        LeaseKey::new(
            &VaultName::parse("kv-one").unwrap(),
            &SecretName::parse(secret).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_secret_is_leased_once_case_insensitively_and_free_again_after_release() {
        let leases = InProcessLeases::default();
        let held = leases.acquire(&key("Key")).await.unwrap();
        assert_eq!(leases.acquire(&key("key")).await.unwrap_err(), LeaseError::Held);
        assert!(leases.acquire(&key("other")).await.is_ok());
        held.renew().await.unwrap();
        held.release().await.unwrap();
        assert!(held.renew().await.is_err());
        let again = leases.acquire(&key("key")).await.unwrap();
        // The first lease, dropped late, does not free the second.
        drop(held);
        assert_eq!(leases.acquire(&key("key")).await.unwrap_err(), LeaseError::Held);
        again.renew().await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_lease_is_free_again() {
        let leases = InProcessLeases::default();
        drop(leases.acquire(&key("key")).await.unwrap());
        assert!(leases.acquire(&key("key")).await.is_ok());
    }
}
