//! The seed document: vaults with their secrets (any attribute, `created` included) and their
//! Resource Manager settings (location, RBAC or access policies), AI services accounts,
//! user-assigned identities, role definitions and assignments, Event Grid system topics, the
//! Resource Manager page size, throttling and the clock. `keyflip-emulator --seed FILE`
//! and `POST /control/seed` take it; the control API's per-item routes take its parts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keyvault::ensure_vault;
use crate::keyvault::store::{AccessPolicy, SECRET_PERMISSIONS, VersionFields, validate_name};
use crate::providers::authorization::{RoleAssignmentSeed, RoleDefinitionSeed};
use crate::providers::cognitive_services::{Account, AccountSeed};
use crate::providers::event_grid::SystemTopicSeed;
use crate::throttling::ThrottlingSettings;
use crate::world::{Identity, World, random_hex};

/// Why a seed was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeedError {
    #[error(
        "vault name '{0}' is invalid: use 3-24 letters, digits and hyphens, starting with a letter, ending with a letter or digit, without consecutive hyphens"
    )]
    VaultName(String),
    #[error("secret '{name}' in vault '{vault}': {reason}")]
    Secret {
        vault: String,
        name: String,
        reason: String,
    },
    #[error("account '{0}' is already seeded")]
    DuplicateAccount(String),
    #[error("account subdomain '{0}' is already used by another account")]
    DuplicateSubdomain(String),
    #[error("identity with client id '{0}' is already seeded")]
    DuplicateIdentity(String),
    #[error(
        "vault '{vault}': access policy for '{object_id}' names secret permission '{permission}'; use get, list, set, delete, backup, restore, recover, purge or all"
    )]
    SecretPermission {
        vault: String,
        object_id: String,
        permission: String,
    },
    #[error("arm_page_size must be at least 1")]
    PageSize,
    #[error("{0}")]
    Throttling(String),
    #[error("role definition '{id}': {reason}")]
    RoleDefinition { id: String, reason: String },
    #[error("role assignment of '{principal_id}' at '{scope}': {reason}")]
    RoleAssignment {
        principal_id: String,
        scope: String,
        reason: String,
    },
    #[error("system topic '{name}': {reason}")]
    SystemTopic { name: String, reason: String },
}

/// A whole seed document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Sets the emulator's clock (unix seconds) before anything else is seeded.
    #[serde(default)]
    pub clock: Option<i64>,
    #[serde(default)]
    pub identities: Vec<Identity>,
    #[serde(default)]
    pub vaults: Vec<VaultSeed>,
    #[serde(default)]
    pub accounts: Vec<AccountSeed>,
    /// Items per page of every Resource Manager list the emulator serves (default 100).
    #[serde(default)]
    pub arm_page_size: Option<usize>,
    /// Custom role definitions (the built-in roles keyflip cares about need no seeding).
    #[serde(default)]
    pub role_definitions: Vec<RoleDefinitionSeed>,
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignmentSeed>,
    /// Event Grid system topics with their event subscriptions.
    #[serde(default)]
    pub system_topics: Vec<SystemTopicSeed>,
    /// Key Vault and Resource Manager throttling: `{}` turns both on at Azure's limits, `null`
    /// turns it off, absent keeps it as it is (off in a new emulator). See
    /// [`crate::throttling::ThrottlingSettings`].
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub throttling: Option<Option<ThrottlingSettings>>,
}

/// A vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSeed {
    pub name: String,
    /// `attributes.recoverableDays` to report; `null` omits it.
    #[serde(default = "ninety")]
    pub recoverable_days: Option<u32>,
    /// Days a deleted secret is kept (default 90).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// `attributes.recoveryLevel` to report; `null` omits it; absent keeps the vault's
    /// (`Recoverable+Purgeable` for a new vault).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub recovery_level: Option<Option<String>>,
    /// Object ids allowed to use the vault; absent lets every valid token in. Applies only
    /// while `enable_rbac_authorization` is on.
    #[serde(default)]
    pub allowed_principals: Option<Vec<String>>,
    /// The vault's Resource Manager coordinates; absent keeps the vault's (for a new vault:
    /// subscription `3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b`, group `rg-api`, `eastus`).
    #[serde(default)]
    pub subscription_id: Option<String>,
    #[serde(default)]
    pub resource_group: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// `properties.enableRbacAuthorization`; absent keeps the vault's (`true` for a new one).
    #[serde(default)]
    pub enable_rbac_authorization: Option<bool>,
    /// `properties.accessPolicies`; absent keeps the vault's (none for a new one).
    #[serde(default)]
    pub access_policies: Option<Vec<AccessPolicy>>,
    #[serde(default)]
    pub secrets: Vec<SecretSeed>,
}

fn ninety() -> Option<u32> {
    Some(90)
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`, via `default`).
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A secret: its versions oldest first, optionally soft-deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSeed {
    pub name: String,
    pub versions: Vec<VersionSeed>,
    /// Soft-deletes the secret at this time (unix seconds).
    #[serde(default)]
    pub deleted_at: Option<i64>,
}

/// A secret version with any attribute.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSeed {
    /// 32 hex characters (random when absent).
    #[serde(default)]
    pub version: Option<String>,
    pub value: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub exp: Option<i64>,
    /// Unix seconds (default: the emulator's clock).
    #[serde(default)]
    pub created: Option<i64>,
    /// Unix seconds (default: `created`).
    #[serde(default)]
    pub updated: Option<i64>,
}

/// Key Vault's vault-name rule.
pub fn validate_vault_name(name: &str) -> Result<(), SeedError> {
    let bytes = name.as_bytes();
    let valid = (3..=24).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(SeedError::VaultName(name.to_string()))
    }
}

impl Seed {
    /// Applies the document to the world; nothing is applied if any part is invalid.
    pub fn apply(self, world: &mut World) -> Result<(), SeedError> {
        let mut staged = World {
            clock_offset: world.clock_offset,
            frozen_at: world.frozen_at,
            vaults: world.vaults.clone(),
            accounts: world.accounts.clone(),
            user_identities: world.user_identities.clone(),
            arm_page_size: world.arm_page_size,
            role_definitions: world.role_definitions.clone(),
            role_assignments: world.role_assignments.clone(),
            system_topics: world.system_topics.clone(),
            ..World::default()
        };
        if let Some(now) = self.clock {
            staged.set_now(now);
        }
        for identity in self.identities {
            add_identity(&mut staged, identity)?;
        }
        for vault in self.vaults {
            add_vault(&mut staged, vault)?;
        }
        for account in self.accounts {
            add_account(&mut staged, account)?;
        }
        if let Some(size) = self.arm_page_size {
            if size == 0 {
                return Err(SeedError::PageSize);
            }
            staged.arm_page_size = Some(size);
        }
        for definition in self.role_definitions {
            crate::providers::authorization::add_role_definition(&mut staged, definition)?;
        }
        for assignment in self.role_assignments {
            crate::providers::authorization::add_role_assignment(&mut staged, assignment)?;
        }
        for topic in self.system_topics {
            crate::providers::event_grid::add_system_topic(&mut staged, topic)?;
        }
        if let Some(Some(settings)) = &self.throttling {
            settings.validate().map_err(SeedError::Throttling)?;
        }
        if let Some(settings) = self.throttling {
            world.throttling.configure(settings);
        }
        let moved = staged.now() - world.now();
        world.throttling.clock.advance(moved as f64);
        world.arm_page_size = staged.arm_page_size;
        world.role_definitions = staged.role_definitions;
        world.role_assignments = staged.role_assignments;
        world.system_topics = staged.system_topics;
        world.clock_offset = staged.clock_offset;
        world.frozen_at = staged.frozen_at;
        world.vaults = staged.vaults;
        world.accounts = staged.accounts;
        world.user_identities = staged.user_identities;
        Ok(())
    }
}

pub fn add_identity(world: &mut World, identity: Identity) -> Result<(), SeedError> {
    if world
        .user_identities
        .iter()
        .any(|i| i.client_id.eq_ignore_ascii_case(&identity.client_id))
    {
        return Err(SeedError::DuplicateIdentity(identity.client_id));
    }
    world.user_identities.push(identity);
    Ok(())
}

/// Creates (or updates the settings of) a vault and adds its secrets.
pub fn add_vault(world: &mut World, seed: VaultSeed) -> Result<(), SeedError> {
    validate_vault_name(&seed.name)?;
    let vault = ensure_vault(world, &seed.name);
    vault.recoverable_days = seed.recoverable_days;
    if let Some(days) = seed.retention_days {
        vault.retention_days = days;
    }
    if let Some(level) = seed.recovery_level {
        vault.recovery_level = level;
    }
    vault.allowed_principals = seed.allowed_principals;
    if let Some(v) = seed.subscription_id {
        vault.subscription_id = v;
    }
    if let Some(v) = seed.resource_group {
        vault.resource_group = v;
    }
    if let Some(v) = seed.location {
        vault.location = v;
    }
    if let Some(v) = seed.tags {
        vault.tags = v;
    }
    if let Some(v) = seed.enable_rbac_authorization {
        vault.enable_rbac_authorization = v;
    }
    if let Some(policies) = seed.access_policies {
        for policy in &policies {
            if let Some(bad) = policy
                .secrets
                .iter()
                .find(|p| !SECRET_PERMISSIONS.iter().any(|k| k.eq_ignore_ascii_case(p)))
            {
                return Err(SeedError::SecretPermission {
                    vault: seed.name.clone(),
                    object_id: policy.object_id.clone(),
                    permission: bad.clone(),
                });
            }
        }
        vault.access_policies = policies;
    }
    for secret in seed.secrets {
        let deleted_at = secret.deleted_at;
        for version in secret.versions {
            add_version(world, &seed.name, &secret.name, version)?;
        }
        if let Some(at) = deleted_at {
            let vault = ensure_vault(world, &seed.name);
            vault.delete(&secret.name, at).map_err(|e| SeedError::Secret {
                vault: seed.name.clone(),
                name: secret.name.clone(),
                reason: e.message,
            })?;
        }
    }
    Ok(())
}

/// Adds one version to a secret of an existing or new vault; returns (name, version id).
pub fn add_version(
    world: &mut World,
    vault: &str,
    name: &str,
    seed: VersionSeed,
) -> Result<(String, String), SeedError> {
    validate_vault_name(vault)?;
    let fail = |reason: String| SeedError::Secret {
        vault: vault.to_string(),
        name: name.to_string(),
        reason,
    };
    validate_name(name).map_err(|e| fail(e.message))?;
    let version = match seed.version {
        Some(v) if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) => v.to_ascii_lowercase(),
        Some(v) => return Err(fail(format!("version '{v}' is not 32 hex characters"))),
        None => random_hex(32),
    };
    let created = seed.created.unwrap_or_else(|| world.now());
    let updated = seed.updated.unwrap_or(created);
    let fields = VersionFields {
        content_type: seed.content_type,
        tags: seed.tags,
        enabled: seed.enabled,
        nbf: seed.nbf,
        exp: seed.exp,
    };
    let vault = ensure_vault(world, vault);
    let (name, stored) = vault
        .set(name, seed.value, fields, version, created, updated)
        .map_err(|e| fail(e.message))?;
    Ok((name, stored.version))
}

pub fn add_account(world: &mut World, seed: AccountSeed) -> Result<(), SeedError> {
    let account = Account::from_seed(seed, world.now());
    if world.account_by_id(&account.id()).is_some() || world.account_by_name(&account.name).is_some() {
        return Err(SeedError::DuplicateAccount(account.name));
    }
    if let Some(sub) = &account.custom_subdomain
        && world.account_by_subdomain(sub).is_some()
    {
        return Err(SeedError::DuplicateSubdomain(sub.clone()));
    }
    world.accounts.push(account);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vault_names_follow_key_vault_rules() {
        for good in ["kv1", "my-vault-01", "abcdefghijklmnopqrstuvwx"] {
            assert!(validate_vault_name(good).is_ok(), "{good}");
        }
        for bad in [
            "kv",
            "1kv",
            "kv-",
            "my--vault",
            "abcdefghijklmnopqrstuvwxy",
            "kv_1",
        ] {
            assert!(validate_vault_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_invalid_seed_changes_nothing() {
        let mut world = World::default();
        let seed: Seed = serde_json::from_value(json!({
            "vaults": [{"name": "kv1", "secrets": [{"name": "ok", "versions": [{"value": "v"}]}]},
                       {"name": "kv2", "secrets": [{"name": "bad_name", "versions": [{"value": "v"}]}]}]
        }))
        .unwrap();
        assert!(matches!(seed.apply(&mut world), Err(SeedError::Secret { .. })));
        assert!(world.vaults.is_empty());
    }

    #[test]
    fn a_null_recovery_level_is_omitted_and_an_absent_one_is_kept() {
        let mut world = World::default();
        let seed = |value: serde_json::Value| serde_json::from_value::<Seed>(value).unwrap();
        seed(json!({"vaults": [{"name": "kv1", "recovery_level": "Purgeable"}]}))
            .apply(&mut world)
            .unwrap();
        seed(json!({"vaults": [{"name": "kv1"}]}))
            .apply(&mut world)
            .unwrap();
        assert_eq!(world.vaults["kv1"].recovery_level.as_deref(), Some("Purgeable"));
        seed(json!({"vaults": [{"name": "kv1", "recovery_level": null}]}))
            .apply(&mut world)
            .unwrap();
        assert_eq!(world.vaults["kv1"].recovery_level, None);
    }

    #[test]
    fn seeded_versions_keep_their_attributes() {
        let mut world = World::default();
        let seed: Seed = serde_json::from_value(json!({
            "vaults": [{"name": "kv1", "secrets": [{"name": "s", "versions": [
                {"version": "4387E9F3D6E14C459867679A90FD0F79", "value": "v", "created": 5, "exp": 9, "enabled": false}
            ]}]}]
        }))
        .unwrap();
        seed.apply(&mut world).unwrap();
        let stored = &world.vaults["kv1"].secrets["s"].versions[0];
        assert_eq!(
            (stored.version.as_str(), stored.created, stored.updated),
            ("4387e9f3d6e14c459867679a90fd0f79", 5, 5)
        );
        assert_eq!((stored.exp, stored.enabled), (Some(9), false));
    }
}
