//! The rotation lease (DESIGN.md §3 step 4): at most one rotation of a secret at a time across
//! every trigger, every instance and the CLI (I3).
//!
//! A [`Leases`] backend takes the lease of one secret for [`LEASE_SECONDS`]; the rotation keeps
//! it while it renews it in the background. Backends: Azure Blob Storage ([`blob`], the storage
//! account every Functions app has, configured by [`storage`] from `AzureWebJobsStorage`).
//! (On this branch the file holds only the traits the blob backend implements; the lead's
//! `Holding` and in-process backend arrive with the merge of main.)

pub mod blob;
pub mod storage;

use std::fmt;

use crate::domain::{SecretName, VaultName};

/// How long one lease lasts unless renewed (Blob Storage allows 15–60 s).
pub const LEASE_SECONDS: u32 = 20;

/// Which secret a lease is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    pub vault: VaultName,
    pub secret: SecretName,
}

impl LeaseKey {
    pub fn new(vault: &VaultName, secret: &SecretName) -> Self {
        Self {
            vault: vault.clone(),
            secret: secret.clone(),
        }
    }

    /// The blob of this secret's lease: `<vault>/<secret>` in lower case (Key Vault's secret
    /// names are case-insensitive, so `Key` and `key` share one lease).
    pub fn blob_name(&self) -> String {
        format!("{}/{}", self.vault, self.secret.as_str().to_ascii_lowercase())
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.vault, self.secret)
    }
}

/// Why a lease could not be taken or kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Another rotation holds it.
    #[error("another rotation holds the lease")]
    Held,
    /// It was held and is not any more (renewal refused, or not confirmed in time).
    #[error("the lease was lost: {0}")]
    Lost(String),
    /// Storage cannot answer for now; a retry can help.
    #[error("{0}")]
    Transient(String),
    /// Storage refuses for good (no access, bad configuration).
    #[error("{0}")]
    Permanent(String),
}

/// A backend that takes leases.
#[async_trait::async_trait]
pub trait Leases: Send + Sync + fmt::Debug {
    /// Takes the lease of one secret for [`LEASE_SECONDS`], or [`LeaseError::Held`].
    async fn acquire(&self, key: &LeaseKey) -> Result<Box<dyn HeldLease>, LeaseError>;

    /// Where the leases live, for logs and status: `in-process`, `blob https://…`.
    fn describe(&self) -> String;
}

/// One lease a backend gave.
#[async_trait::async_trait]
pub trait HeldLease: Send + Sync + fmt::Debug {
    /// Extends it by [`LEASE_SECONDS`]; [`LeaseError::Lost`] when it is gone or not ours.
    async fn renew(&self) -> Result<(), LeaseError>;

    /// Gives it up.
    async fn release(&self) -> Result<(), LeaseError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blob_of_a_secret_is_its_vault_and_lower_case_name() {
        let key = LeaseKey::new(
            &VaultName::parse("kv-one").unwrap(),
            &SecretName::parse("OpenAI-Key").unwrap(),
        );
        assert_eq!(key.blob_name(), "kv-one/openai-key");
    }
}
