//! Where managed secrets live: the [`SecretStore`] trait the engine uses, and its Key Vault
//! implementation through the official SDK ([`keyvault`]). The engine never sees the SDK.

pub mod keyvault;

use futures::TryStreamExt;
use futures::stream::BoxStream;
use time::OffsetDateTime;

use crate::domain::tags::Tags;
use crate::domain::{ApiKey, SecretName, SecretVersion, VaultName};

/// The latest version of a secret, value included.
#[derive(Debug, Clone)]
pub struct LoadedSecret {
    /// The name as Key Vault spells it.
    pub name: SecretName,
    pub version: SecretVersion,
    pub value: ApiKey,
    pub tags: Tags,
    pub content_type: Option<String>,
    pub enabled: bool,
    pub created: Option<OffsetDateTime>,
    pub not_before: Option<OffsetDateTime>,
    pub expires: Option<OffsetDateTime>,
}

/// A secret as a list shows it: its latest version's properties, never a value.
#[derive(Debug, Clone)]
pub struct SecretSummary {
    pub name: SecretName,
    pub tags: Tags,
    pub enabled: bool,
    pub expires: Option<OffsetDateTime>,
    /// When the latest version was written (Key Vault's `created`).
    pub created: Option<OffsetDateTime>,
    pub updated: Option<OffsetDateTime>,
}

/// A version to write.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub value: ApiKey,
    pub tags: Tags,
    pub content_type: Option<String>,
    pub not_before: OffsetDateTime,
    pub expires: OffsetDateTime,
}

/// Why a store operation failed, as the caller must act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The secret (or vault) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The latest version is disabled: it cannot be read.
    #[error("{0}")]
    Disabled(String),
    /// Throttling, 5xx, a timeout, a broken connection: retrying later can help.
    #[error("{0}")]
    Transient(String),
    /// Refused for good (forbidden, bad request): an operator must act.
    #[error("{0}")]
    Permanent(String),
}

/// Access to managed secrets.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// The latest version, value included.
    async fn latest(&self, vault: &VaultName, name: &SecretName) -> Result<LoadedSecret, StoreError>;

    /// Every secret of a vault with its latest version's properties (no values).
    async fn list(&self, vault: &VaultName) -> Result<Vec<SecretSummary>, StoreError> {
        self.list_pages(vault).try_concat().await
    }

    /// The same, page by page as Key Vault answers them (each page needs the one before it),
    /// so a caller can act on the first secrets while the rest are still being listed.
    fn list_pages<'a>(
        &'a self,
        vault: &'a VaultName,
    ) -> BoxStream<'a, Result<Vec<SecretSummary>, StoreError>>;

    /// Writes a new version; returns its id.
    async fn publish(
        &self,
        vault: &VaultName,
        name: &SecretName,
        version: NewVersion,
    ) -> Result<SecretVersion, StoreError>;

    /// Replaces the whole tag set of one version (no new version).
    async fn set_tags(
        &self,
        vault: &VaultName,
        name: &SecretName,
        version: &SecretVersion,
        tags: Tags,
    ) -> Result<(), StoreError>;

    /// The properties of every version of one secret (tags, attributes, never values), in the
    /// order Key Vault lists them (no order is promised). One list call per page of 25
    /// versions; `crate::status` uses it only to tell a secret whose rotation tags were lost.
    async fn versions(&self, vault: &VaultName, name: &SecretName)
    -> Result<Vec<VersionSummary>, StoreError>;
}

/// One version of a secret as its version list shows it: properties only, never a value.
#[derive(Debug, Clone)]
pub struct VersionSummary {
    pub version: SecretVersion,
    pub tags: Tags,
    pub enabled: bool,
    pub created: Option<OffsetDateTime>,
    pub updated: Option<OffsetDateTime>,
    pub expires: Option<OffsetDateTime>,
}
