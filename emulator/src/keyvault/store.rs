//! Key Vault's secrets model: vaults, secrets, versions, soft delete, and the rules Key Vault
//! enforces on them (names, value size, tag count, disabled versions, deleted names).
//!
//! Pure state and decisions; the wire format lives in [`super::wire`].

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::error::AzureError;

/// Key Vault's limit on a secret value: 25 KB.
pub const MAX_VALUE_BYTES: usize = 25 * 1024;
/// Key Vault's limit on tags per secret.
pub const MAX_TAGS: usize = 15;
/// Key Vault's limit on a tag name and a tag value.
pub const MAX_TAG_CHARS: usize = 512;
/// Key Vault's limit on `contentType`.
pub const MAX_CONTENT_TYPE_CHARS: usize = 255;

/// Where a vault lives unless its seed says otherwise: the subscription and resource group
/// keyflip's API tests use (`tests/api/helpers.rs`), and Key Vault's most common region.
pub const DEFAULT_SUBSCRIPTION: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";
pub const DEFAULT_RESOURCE_GROUP: &str = "rg-api";
pub const DEFAULT_LOCATION: &str = "eastus";

/// The secret permissions an access policy can grant (Key Vault's `SecretPermissions` enum,
/// 2024-11-01 spec; `all` grants every one).
pub const SECRET_PERMISSIONS: &[&str] = &[
    "all", "get", "list", "set", "delete", "backup", "restore", "recover", "purge",
];

/// One entry of `properties.accessPolicies`: what an object may do on the vault's data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    pub object_id: String,
    /// Defaults to the emulator's tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Secret permissions (`get`, `list`, `set`, `delete`, `backup`, `restore`, `recover`,
    /// `purge`, or `all`); the only ones the emulator enforces.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Reported as given; the emulator serves no keys, certificates or storage accounts.
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub certificates: Vec<String>,
    #[serde(default)]
    pub storage: Vec<String>,
}

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersion {
    pub version: String,
    pub value: String,
    pub content_type: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

/// When a deleted secret was deleted and will be purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub deleted_date: i64,
    pub scheduled_purge_date: i64,
}

/// A secret: its name as first written, its versions (oldest first, latest last), and its
/// soft-delete state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    pub name: String,
    pub versions: Vec<SecretVersion>,
    pub deleted: Option<Deletion>,
}

impl StoredSecret {
    pub fn latest(&self) -> Option<&SecretVersion> {
        self.versions.last()
    }
}

/// What a write may set on a version.
#[derive(Debug, Clone, Default)]
pub struct VersionFields {
    pub content_type: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// A vault and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vault {
    /// Name as seeded.
    pub name: String,
    /// `attributes.recoverableDays` to report (omitted when `None`, as on vaults created before
    /// Key Vault reported it).
    pub recoverable_days: Option<u32>,
    /// Days a deleted secret is kept before purge.
    pub retention_days: u32,
    /// `attributes.recoveryLevel` to report (omitted when `None`, as on vaults created before
    /// Key Vault had soft delete).
    pub recovery_level: Option<String>,
    /// Object ids allowed to use the vault (RBAC); `None` lets every valid token in. Only an
    /// RBAC vault (`enable_rbac_authorization`) applies it.
    pub allowed_principals: Option<Vec<String>>,
    /// Where Resource Manager says the vault is (`Microsoft.KeyVault/vaults`).
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    /// `properties.enableRbacAuthorization`: `true` authorizes the data plane with RBAC
    /// (`allowed_principals`), `false` with the access policies.
    pub enable_rbac_authorization: bool,
    /// `properties.accessPolicies`, enforced by the data plane when RBAC is off.
    pub access_policies: Vec<AccessPolicy>,
    /// Secrets by lower-case name.
    pub secrets: BTreeMap<String, StoredSecret>,
}

impl Vault {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            recoverable_days: Some(90),
            retention_days: 90,
            recovery_level: Some("Recoverable+Purgeable".to_string()),
            allowed_principals: None,
            subscription_id: DEFAULT_SUBSCRIPTION.to_string(),
            resource_group: DEFAULT_RESOURCE_GROUP.to_string(),
            location: DEFAULT_LOCATION.to_string(),
            tags: BTreeMap::new(),
            enable_rbac_authorization: true,
            access_policies: Vec::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// Whether an access policy of the vault grants the secret permission `permission`
    /// (`get`, `list`, `set`, …) to the object `object_id` of tenant `tenant_id`. A policy
    /// without a tenant is the vault's own tenant, which is the only one the emulator has.
    pub fn policy_grants(&self, object_id: &str, tenant_id: &str, permission: &str) -> bool {
        self.access_policies.iter().any(|p| {
            p.object_id.eq_ignore_ascii_case(object_id)
                && p.tenant_id
                    .as_deref()
                    .is_none_or(|t| t.eq_ignore_ascii_case(tenant_id))
                && p.secrets
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(permission) || s.eq_ignore_ascii_case("all"))
        })
    }

    fn live(&self, name: &str) -> Result<&StoredSecret, AzureError> {
        match self.secrets.get(&name.to_ascii_lowercase()) {
            Some(secret) if secret.deleted.is_none() && !secret.versions.is_empty() => Ok(secret),
            _ => Err(secret_not_found(name)),
        }
    }

    fn live_mut(&mut self, name: &str) -> Result<&mut StoredSecret, AzureError> {
        match self.secrets.get_mut(&name.to_ascii_lowercase()) {
            Some(secret) if secret.deleted.is_none() && !secret.versions.is_empty() => Ok(secret),
            _ => Err(secret_not_found(name)),
        }
    }

    fn deleted(&self, name: &str) -> Result<&StoredSecret, AzureError> {
        match self.secrets.get(&name.to_ascii_lowercase()) {
            Some(secret) if secret.deleted.is_some() => Ok(secret),
            _ => Err(deleted_secret_not_found(name)),
        }
    }

    /// SetSecret: adds a version (creating the secret if needed) and returns the secret's name
    /// and the new version. `version` and the timestamps are chosen by the caller.
    pub fn set(
        &mut self,
        name: &str,
        value: String,
        fields: VersionFields,
        version: String,
        created: i64,
        updated: i64,
    ) -> Result<(String, SecretVersion), AzureError> {
        validate_name(name)?;
        validate_value(&value)?;
        validate_fields(&fields)?;
        let key = name.to_ascii_lowercase();
        if let Some(existing) = self.secrets.get(&key) {
            if existing.deleted.is_some() {
                return Err(AzureError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."
                    ),
                )
                .with_inner("ObjectIsDeletedButRecoverable"));
            }
            if existing.versions.iter().any(|v| v.version == version) {
                return Err(AzureError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("Secret {name} already has a version {version}."),
                ));
            }
        }
        let entry = self.secrets.entry(key).or_insert_with(|| StoredSecret {
            name: name.to_string(),
            versions: Vec::new(),
            deleted: None,
        });
        let new_version = SecretVersion {
            version,
            value,
            content_type: fields.content_type,
            tags: fields.tags,
            enabled: fields.enabled.unwrap_or(true),
            nbf: fields.nbf,
            exp: fields.exp,
            created,
            updated,
        };
        entry.versions.push(new_version.clone());
        Ok((entry.name.clone(), new_version))
    }

    /// GetSecret: the latest version, or the named one; refuses a disabled version.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<(String, SecretVersion), AzureError> {
        validate_name(name)?;
        let secret = self.live(name)?;
        let found = find_version(secret, name, version)?;
        if !found.enabled {
            return Err(AzureError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
            )
            .with_inner("SecretDisabled"));
        }
        Ok((secret.name.clone(), found.clone()))
    }

    /// UpdateSecret: changes the attributes, content type or (whole) tag set of a version.
    pub fn update(
        &mut self,
        name: &str,
        version: Option<&str>,
        fields: VersionFields,
        now: i64,
    ) -> Result<(String, SecretVersion), AzureError> {
        validate_name(name)?;
        validate_fields(&fields)?;
        let secret = self.live_mut(name)?;
        let index = match version {
            None => secret.versions.len() - 1,
            Some(v) => secret
                .versions
                .iter()
                .position(|x| x.version.eq_ignore_ascii_case(v))
                .ok_or_else(|| version_not_found(name, v))?,
        };
        let target = &mut secret.versions[index];
        if let Some(content_type) = fields.content_type {
            target.content_type = Some(content_type);
        }
        if let Some(tags) = fields.tags {
            target.tags = Some(tags);
        }
        if let Some(enabled) = fields.enabled {
            target.enabled = enabled;
        }
        if fields.nbf.is_some() {
            target.nbf = fields.nbf;
        }
        if fields.exp.is_some() {
            target.exp = fields.exp;
        }
        target.updated = now;
        Ok((secret.name.clone(), target.clone()))
    }

    /// GetSecrets: up to `max` live secrets with their latest versions, in (lower-case) name
    /// order, starting after the key `after`; and the key to continue after, if more remain.
    /// Costs time in the page, not in the vault.
    pub fn list_page(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> (Vec<(&str, &SecretVersion)>, Option<String>) {
        self.page_after(after, max, |s| {
            if s.deleted.is_some() {
                return None;
            }
            Some((s.name.as_str(), s.latest()?))
        })
    }

    /// GetDeletedSecrets: the same over deleted secrets, with their deletions.
    pub fn list_deleted_page(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> (Vec<(&str, &SecretVersion, Deletion)>, Option<String>) {
        self.page_after(after, max, |s| Some((s.name.as_str(), s.latest()?, s.deleted?)))
    }

    fn page_after<'a, T>(
        &'a self,
        after: Option<&str>,
        max: usize,
        pick: impl Fn(&'a StoredSecret) -> Option<T>,
    ) -> (Vec<T>, Option<String>) {
        use std::ops::Bound;
        let start = match after {
            Some(key) => Bound::Excluded(key.to_ascii_lowercase()),
            None => Bound::Unbounded,
        };
        let mut picked = self
            .secrets
            .range((start, Bound::Unbounded))
            .filter_map(|(key, secret)| pick(secret).map(|item| (key, item)));
        let mut items = Vec::with_capacity(max);
        let mut last = None;
        for (key, item) in picked.by_ref().take(max) {
            items.push(item);
            last = Some(key);
        }
        let next = match picked.next() {
            Some(_) => last.cloned(),
            None => None,
        };
        (items, next)
    }

    /// GetSecretVersions: up to `max` versions of a live secret, oldest first, starting after
    /// position `after`; and the position to continue after, if more remain.
    pub fn versions_page(
        &self,
        name: &str,
        after: Option<usize>,
        max: usize,
    ) -> Result<(String, Vec<&SecretVersion>, Option<usize>), AzureError> {
        validate_name(name)?;
        let secret = self.live(name)?;
        let start = after.map_or(0, |a| a.saturating_add(1));
        let page: Vec<&SecretVersion> = secret.versions.iter().skip(start).take(max).collect();
        let end = start + page.len();
        let next = (end < secret.versions.len() && !page.is_empty()).then(|| end - 1);
        Ok((secret.name.clone(), page, next))
    }

    /// DeleteSecret: soft-deletes the whole secret.
    pub fn delete(&mut self, name: &str, now: i64) -> Result<(String, SecretVersion, Deletion), AzureError> {
        validate_name(name)?;
        let retention = i64::from(self.retention_days) * 86_400;
        let secret = self.live_mut(name)?;
        let deletion = Deletion {
            deleted_date: now,
            scheduled_purge_date: now + retention,
        };
        secret.deleted = Some(deletion);
        let latest = secret.versions[secret.versions.len() - 1].clone();
        Ok((secret.name.clone(), latest, deletion))
    }

    /// GetDeletedSecret.
    pub fn get_deleted(&self, name: &str) -> Result<(String, SecretVersion, Deletion), AzureError> {
        validate_name(name)?;
        let secret = self.deleted(name)?;
        let latest = secret.latest().ok_or_else(|| deleted_secret_not_found(name))?;
        let deletion = secret.deleted.ok_or_else(|| deleted_secret_not_found(name))?;
        Ok((secret.name.clone(), latest.clone(), deletion))
    }

    /// PurgeDeletedSecret: forgets a deleted secret for good.
    pub fn purge(&mut self, name: &str) -> Result<(), AzureError> {
        validate_name(name)?;
        self.deleted(name)?;
        self.secrets.remove(&name.to_ascii_lowercase());
        Ok(())
    }

    /// RecoverDeletedSecret: brings a deleted secret back with all its versions.
    pub fn recover(&mut self, name: &str) -> Result<(String, SecretVersion), AzureError> {
        validate_name(name)?;
        self.deleted(name)?;
        let secret = self
            .secrets
            .get_mut(&name.to_ascii_lowercase())
            .ok_or_else(|| deleted_secret_not_found(name))?;
        secret.deleted = None;
        let latest = secret.latest().ok_or_else(|| secret_not_found(name))?;
        Ok((secret.name.clone(), latest.clone()))
    }
}

fn find_version<'a>(
    secret: &'a StoredSecret,
    name: &str,
    version: Option<&str>,
) -> Result<&'a SecretVersion, AzureError> {
    match version {
        None => secret.latest().ok_or_else(|| secret_not_found(name)),
        Some(v) => secret
            .versions
            .iter()
            .find(|x| x.version.eq_ignore_ascii_case(v))
            .ok_or_else(|| version_not_found(name, v)),
    }
}

/// A Key Vault object name: 1–127 characters of `0-9`, `a-z`, `A-Z` and `-`.
pub fn validate_name(name: &str) -> Result<(), AzureError> {
    let valid =
        (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(AzureError::new(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            format!("The request URI contains an invalid name: {name}"),
        ))
    }
}

fn property_invalid() -> AzureError {
    AzureError::new(
        StatusCode::BAD_REQUEST,
        "BadParameter",
        "Property has invalid value\r\n",
    )
}

fn validate_value(value: &str) -> Result<(), AzureError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(property_invalid());
    }
    Ok(())
}

fn validate_fields(fields: &VersionFields) -> Result<(), AzureError> {
    if let Some(tags) = &fields.tags {
        let too_long = tags
            .iter()
            .any(|(k, v)| k.chars().count() > MAX_TAG_CHARS || v.chars().count() > MAX_TAG_CHARS);
        if tags.len() > MAX_TAGS || too_long {
            return Err(property_invalid());
        }
    }
    if fields
        .content_type
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CONTENT_TYPE_CHARS)
    {
        return Err(property_invalid());
    }
    Ok(())
}

const NOT_FOUND_HELP: &str = "If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182";

pub fn secret_not_found(name: &str) -> AzureError {
    AzureError::new(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        format!("A secret with (name/id) {name} was not found in this key vault. {NOT_FOUND_HELP}"),
    )
}

fn version_not_found(name: &str, version: &str) -> AzureError {
    AzureError::new(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        format!("A secret with (name/id) {name}/{version} was not found in this key vault. {NOT_FOUND_HELP}"),
    )
}

fn deleted_secret_not_found(name: &str) -> AzureError {
    AzureError::new(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        format!("Deleted Secret not found: {name}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault_with(name: &str, value: &str) -> Vault {
        let mut vault = Vault::new("kv");
        vault
            .set(name, value.into(), VersionFields::default(), "v1".into(), 10, 10)
            .unwrap();
        vault
    }

    #[test]
    fn names_are_case_insensitive_and_keep_their_first_spelling() {
        let mut vault = vault_with("MySecret", "a");
        let (name, _) = vault
            .set(
                "mysecret",
                "b".into(),
                VersionFields::default(),
                "v2".into(),
                11,
                11,
            )
            .unwrap();
        assert_eq!(name, "MySecret");
        assert_eq!(vault.get("MYSECRET", None).unwrap().1.value, "b");
        assert_eq!(vault.get("mysecret", Some("v1")).unwrap().1.value, "a");
    }

    #[test]
    fn limits_are_enforced() {
        let mut vault = Vault::new("kv");
        let set = |vault: &mut Vault, name: &str, value: String, fields| {
            vault.set(name, value, fields, "v".into(), 0, 0).map(|_| ())
        };
        assert_eq!(
            set(&mut vault, "bad_name", "x".into(), VersionFields::default())
                .unwrap_err()
                .code,
            "BadParameter"
        );
        assert!(
            set(
                &mut vault,
                "big",
                "x".repeat(MAX_VALUE_BYTES + 1),
                VersionFields::default()
            )
            .is_err()
        );
        assert!(
            set(
                &mut vault,
                "max",
                "x".repeat(MAX_VALUE_BYTES),
                VersionFields::default()
            )
            .is_ok()
        );
        let tags = |n: usize| VersionFields {
            tags: Some((0..n).map(|i| (format!("t{i}"), "v".to_string())).collect()),
            ..Default::default()
        };
        assert!(set(&mut vault, "fifteen", "x".into(), tags(15)).is_ok());
        assert!(set(&mut vault, "sixteen", "x".into(), tags(16)).is_err());
    }

    #[test]
    fn a_disabled_version_cannot_be_read_but_can_be_re_enabled() {
        let mut vault = vault_with("s", "a");
        let disable = VersionFields {
            enabled: Some(false),
            ..Default::default()
        };
        vault.update("s", None, disable, 20).unwrap();
        let err = vault.get("s", None).unwrap_err();
        assert_eq!(
            (err.status, err.inner_code.as_deref()),
            (StatusCode::FORBIDDEN, Some("SecretDisabled"))
        );
        let enable = VersionFields {
            enabled: Some(true),
            ..Default::default()
        };
        vault.update("s", Some("v1"), enable, 21).unwrap();
        assert_eq!(vault.get("s", None).unwrap().1.updated, 21);
    }

    #[test]
    fn a_deleted_secret_is_hidden_blocks_its_name_and_can_be_recovered() {
        let mut vault = vault_with("s", "a");
        vault.delete("s", 100).unwrap();
        assert_eq!(vault.get("s", None).unwrap_err().status, StatusCode::NOT_FOUND);
        assert!(vault.list_page(None, 25).0.is_empty());
        let err = vault
            .set("s", "b".into(), VersionFields::default(), "v2".into(), 0, 0)
            .unwrap_err();
        assert_eq!(err.inner_code.as_deref(), Some("ObjectIsDeletedButRecoverable"));
        assert_eq!(
            vault.get_deleted("s").unwrap().2.scheduled_purge_date,
            100 + 90 * 86_400
        );
        vault.recover("s").unwrap();
        assert_eq!(vault.get("s", None).unwrap().1.value, "a");
    }
}
