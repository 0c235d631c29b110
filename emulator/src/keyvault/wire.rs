//! Key Vault's JSON: `SecretBundle`, `SecretItem`, `DeletedSecretBundle`, `SecretAttributes`,
//! and the request bodies of SetSecret and UpdateSecret (2025-07-01, same as 7.x).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{Deletion, SecretVersion, Vault, VersionFields};

/// `SecretAttributes` of a version as the vault reports it.
pub fn attributes(vault: &Vault, version: &SecretVersion) -> Value {
    let mut attributes = json!({ "enabled": version.enabled });
    if let Some(nbf) = version.nbf {
        attributes["nbf"] = json!(nbf);
    }
    if let Some(exp) = version.exp {
        attributes["exp"] = json!(exp);
    }
    attributes["created"] = json!(version.created);
    attributes["updated"] = json!(version.updated);
    if let Some(days) = vault.recoverable_days {
        attributes["recoverableDays"] = json!(days);
    }
    if let Some(level) = &vault.recovery_level {
        attributes["recoveryLevel"] = json!(level);
    }
    attributes
}

fn common(vault: &Vault, id: String, version: &SecretVersion) -> Value {
    let mut body = json!({ "id": id });
    if let Some(content_type) = &version.content_type {
        body["contentType"] = json!(content_type);
    }
    body["attributes"] = attributes(vault, version);
    if let Some(tags) = &version.tags {
        body["tags"] = json!(tags);
    }
    body
}

/// `SecretBundle`: the full version id, with the value when `with_value`.
pub fn bundle(vault: &Vault, base: &str, name: &str, version: &SecretVersion, with_value: bool) -> Value {
    let mut body = common(
        vault,
        format!("{base}/secrets/{name}/{}", version.version),
        version,
    );
    if with_value {
        body["value"] = json!(version.value);
    }
    body
}

/// `SecretItem` of a secrets list: the base id (no version), never a value.
pub fn item(vault: &Vault, base: &str, name: &str, version: &SecretVersion) -> Value {
    common(vault, format!("{base}/secrets/{name}"), version)
}

/// `SecretItem` of a versions list: the full id, never a value.
pub fn version_item(vault: &Vault, base: &str, name: &str, version: &SecretVersion) -> Value {
    common(
        vault,
        format!("{base}/secrets/{name}/{}", version.version),
        version,
    )
}

fn add_deletion(body: &mut Value, base: &str, name: &str, deletion: &Deletion) {
    body["recoveryId"] = json!(format!("{base}/deletedsecrets/{name}"));
    body["deletedDate"] = json!(deletion.deleted_date);
    body["scheduledPurgeDate"] = json!(deletion.scheduled_purge_date);
}

/// `DeletedSecretBundle`: a bundle without the value, plus the deletion fields.
pub fn deleted_bundle(
    vault: &Vault,
    base: &str,
    name: &str,
    version: &SecretVersion,
    deletion: &Deletion,
) -> Value {
    let mut body = bundle(vault, base, name, version, false);
    add_deletion(&mut body, base, name, deletion);
    body
}

/// `DeletedSecretItem`: the base id plus the deletion fields.
pub fn deleted_item(
    vault: &Vault,
    base: &str,
    name: &str,
    version: &SecretVersion,
    deletion: &Deletion,
) -> Value {
    let mut body = item(vault, base, name, version);
    add_deletion(&mut body, base, name, deletion);
    body
}

/// `SecretAttributes` as a request sends them (read-only fields ignored).
#[derive(Debug, Default, Deserialize)]
pub struct AttributesIn {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// `SecretSetParameters`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetSecretIn {
    pub value: Option<String>,
    pub content_type: Option<String>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// `SecretUpdateParameters`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSecretIn {
    pub content_type: Option<String>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// The settable fields of a request body.
pub fn fields(
    content_type: Option<String>,
    attributes: Option<AttributesIn>,
    tags: Option<BTreeMap<String, String>>,
) -> VersionFields {
    let attributes = attributes.unwrap_or_default();
    VersionFields {
        content_type,
        tags,
        enabled: attributes.enabled,
        nbf: attributes.nbf,
        exp: attributes.exp,
    }
}
