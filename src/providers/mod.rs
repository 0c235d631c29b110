//! Dual-key resource types: the [`KeyProvider`] trait and the registry that picks one by the
//! ARM resource type of `ProviderAddress` (one `match`). Adding a provider = one file here, one
//! enum variant, one match arm, one emulator module.

pub mod cognitive_services;

use std::sync::Arc;

use crate::domain::{ApiKey, ArmResourceId, Slot};

/// The two keys of a resource.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub first: ApiKey,
    pub second: ApiKey,
}

impl KeyPair {
    pub fn get(&self, slot: Slot) -> &ApiKey {
        match slot {
            Slot::First => &self.first,
            Slot::Second => &self.second,
        }
    }

    /// The slot holding `key`, if either does.
    pub fn slot_of(&self, key: &ApiKey) -> Option<Slot> {
        if self.first.same_as(key) {
            Some(Slot::First)
        } else if self.second.same_as(key) {
            Some(Slot::Second)
        } else {
            None
        }
    }
}

/// A data-plane call that succeeds with a valid key and fails with a wrong one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Built from segments on the endpoint Resource Manager reported for the resource.
    pub url: url::Url,
    /// The header the key goes in (`api-key`, `Ocp-Apim-Subscription-Key`).
    pub header: &'static str,
}

/// What a provider learned about a resource that the rotation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// The resource kind (`OpenAI`, `AIServices`, …) where the type has kinds.
    pub kind: Option<String>,
    /// Key authentication is switched off on the resource (e.g. `disableLocalAuth`).
    pub keys_disabled: bool,
    /// The trustworthy data-plane check of a new key, if the resource (kind) has one (I4).
    pub check: Option<KeyCheck>,
}

/// The result of checking a key on the resource's data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The service accepted the key.
    Accepted,
    /// The service refused the key (it may not be active yet).
    Refused(String),
    /// No answer that says anything about the key (network, 429, 5xx): retry.
    Inconclusive(String),
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("{0}")]
    NotFound(String),
    /// Throttling, 5xx, timeouts: retrying later can help.
    #[error("{0}")]
    Transient(String),
    /// Refused for good (forbidden, keys disabled, bad request): an operator must act.
    #[error("{0}")]
    Permanent(String),
    /// Only from [`KeyProvider::regenerate`]: the regeneration may or may not have taken effect
    /// (its answer was lost: an I/O error after sending, a 5xx or 408, or a long-running
    /// operation that could not be followed to its end). The slot's key must be read again
    /// before it is trusted either way.
    #[error("{0}")]
    Uncertain(String),
    /// Only from [`KeyProvider::regenerate`]: a long-running regeneration was accepted but
    /// could not be followed to its end; it may still take effect later, so the slot must not
    /// be regenerated again while it might.
    #[error("{0}")]
    Running(String),
}

/// One dual-key resource type.
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// A short name for results and logs (`cognitive-services`).
    fn name(&self) -> &'static str;

    /// The slot a `CredentialId`/`PendingSlot` tag names (read case-insensitively).
    fn slot_from_tag(&self, tag: &str) -> Option<Slot>;

    /// The canonical tag spelling of a slot (`key1`).
    fn slot_tag(&self, slot: Slot) -> &'static str;

    /// Reads what the rotation needs to know about the resource.
    async fn describe(&self, resource: &ArmResourceId) -> Result<ResourceInfo, ProviderError>;

    /// Both current keys.
    async fn list_keys(&self, resource: &ArmResourceId) -> Result<KeyPair, ProviderError>;

    /// Regenerates one slot, sending the request once (never retried: a retry would regenerate
    /// again), and follows a long-running operation to its end; returns both keys after the
    /// change. A failure that leaves the slot unchanged is `Transient`/`Permanent`/`NotFound`;
    /// one that may have changed it is `Uncertain`.
    async fn regenerate(&self, resource: &ArmResourceId, slot: Slot) -> Result<KeyPair, ProviderError>;

    /// Runs `info.check` once with `key` (the engine retries within its budget).
    async fn verify(&self, info: &ResourceInfo, key: &ApiKey) -> Verification;
}

/// A resource type keyflip rotates, as deployment and `doctor` need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedType {
    /// `Microsoft.CognitiveServices/accounts`.
    pub resource_type: &'static str,
    /// Every Resource Manager action a rotation of such a resource calls (exact strings, no
    /// wildcards): the custom role of `infra/` holds exactly the union of these.
    pub arm_actions: &'static [&'static str],
}

/// Every resource type the registry below serves, in its order.
pub const SUPPORTED_TYPES: &[SupportedType] = &[SupportedType {
    resource_type: cognitive_services::RESOURCE_TYPE,
    arm_actions: cognitive_services::ARM_ACTIONS,
}];

/// The supported type of an ARM resource type (case-insensitive).
pub fn supported_type(resource_type: &str) -> Option<&'static SupportedType> {
    SUPPORTED_TYPES
        .iter()
        .find(|t| t.resource_type.eq_ignore_ascii_case(resource_type))
}

/// The providers keyflip knows, by ARM resource type.
#[derive(Debug, Clone)]
pub struct Providers {
    cognitive_services: Arc<dyn KeyProvider>,
}

/// A `ProviderAddress` whose resource type keyflip cannot rotate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tag ProviderAddress names a {0} resource, which keyflip does not rotate (supported: Microsoft.CognitiveServices/accounts)"
)]
pub struct UnsupportedResourceType(pub String);

impl Providers {
    pub fn new(cognitive_services: Arc<dyn KeyProvider>) -> Self {
        Self { cognitive_services }
    }

    /// The provider for a resource, by its type (case-insensitive).
    pub fn for_resource(
        &self,
        resource: &ArmResourceId,
    ) -> Result<Arc<dyn KeyProvider>, UnsupportedResourceType> {
        let resource_type = resource.resource_type();
        match resource_type.to_ascii_lowercase().as_str() {
            "microsoft.cognitiveservices/accounts" => Ok(self.cognitive_services.clone()),
            _ => Err(UnsupportedResourceType(resource_type)),
        }
    }
}
