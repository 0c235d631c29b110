//! The Key Vault implementation of [`SecretStore`], through the official
//! `azure_security_keyvault_secrets` [`SecretClient`]: one client per configured vault, built at
//! start-up with the Key Vault challenge check left on (`verify_challenge_resource`), so the
//! token audience always follows the vault's own challenge and never an attacker's.
//!
//! It owns the mapping between Key Vault's models and the store's types (the value into
//! [`ApiKey`], the version id from the secret id, tags, attributes), paging, and the
//! classification of Key Vault's errors into [`StoreError`] — parsed from the error body itself,
//! because azure_core loses the code when the message holds a JSON escape (RBAC denials and
//! "Property has invalid value\r\n" do). It does not decide what to write (the engine does) and
//! it never logs a value: values never reach an error message, and a body that could not be
//! decoded is reported without details when it holds a value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RequestContent};
use azure_security_keyvault_secrets::models::{
    Secret, SecretAttributes, SecretClientUpdateSecretPropertiesOptions, SecretProperties,
    SetSecretParameters, UpdateSecretPropertiesParameters,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use url::Url;

use super::{LoadedSecret, NewVersion, SecretStore, SecretSummary, StoreError};
use crate::azure::arm::{error_chain, one_line, truncate};
use crate::domain::tags::Tags;
use crate::domain::{ApiKey, SecretName, SecretVersion, VaultName};

/// A listed secret's properties as the store's summary.
fn summary(
    vault: &VaultName,
    doing: &str,
    properties: SecretProperties,
) -> Result<SecretSummary, StoreError> {
    let id = properties.resource_id().map_err(|e| {
        StoreError::Permanent(format!(
            "Key Vault {vault}: {doing}: an item has no usable secret id: {}",
            error_chain(&e)
        ))
    })?;
    let name = SecretName::parse(&id.name)
        .map_err(|e| StoreError::Permanent(format!("Key Vault {vault}: {doing}: {e}")))?;
    let attributes = properties.attributes.unwrap_or_default();
    Ok(SecretSummary {
        name,
        tags: to_tags(properties.tags),
        enabled: attributes.enabled.unwrap_or(true),
        expires: attributes.expires,
        created: attributes.created,
        updated: attributes.updated,
    })
}

/// One configured vault.
struct Vault {
    url: Url,
    client: SecretClient,
}

/// Secrets in the vaults keyflip serves (KEYFLIP_VAULTS).
pub struct KeyVaultStore {
    vaults: BTreeMap<VaultName, Vault>,
}

impl fmt::Debug for KeyVaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.vaults
                    .iter()
                    .map(|(name, vault)| (name.as_str(), vault.url.as_str())),
            )
            .finish()
    }
}

impl KeyVaultStore {
    /// A client per vault (`name`, `https://<name>.vault.azure.net/`), sharing one credential
    /// and `client_options` (transport, retry).
    pub fn new(
        vaults: &[(VaultName, Url)],
        credential: Arc<dyn TokenCredential>,
        client_options: ClientOptions,
    ) -> Result<Self, StoreError> {
        let mut clients = BTreeMap::new();
        for (name, url) in vaults {
            let options = SecretClientOptions {
                client_options: client_options.clone(),
                ..Default::default()
            };
            let client = SecretClient::new(url.as_str(), credential.clone(), Some(options)).map_err(|e| {
                StoreError::Permanent(format!(
                    "KEYFLIP_VAULTS: vault {name} at {url} cannot be used: {}",
                    error_chain(&e)
                ))
            })?;
            clients.insert(
                name.clone(),
                Vault {
                    url: url.clone(),
                    client,
                },
            );
        }
        Ok(Self { vaults: clients })
    }

    fn client(&self, vault: &VaultName) -> Result<&SecretClient, StoreError> {
        self.vaults.get(vault).map(|v| &v.client).ok_or_else(|| {
            let configured: Vec<&str> = self.vaults.keys().map(VaultName::as_str).collect();
            StoreError::NotFound(format!(
                "vault {vault} is not configured: add it to KEYFLIP_VAULTS (configured: {})",
                if configured.is_empty() {
                    "none".to_string()
                } else {
                    configured.join(", ")
                }
            ))
        })
    }
}

/// Key Vault's `{"error":{"code","message","innererror":{"code"}}}`, read from the body.
#[derive(Debug, Default, PartialEq, Eq)]
struct ServiceError {
    code: Option<String>,
    inner: Option<String>,
    message: Option<String>,
}

fn service_error(body: &[u8]) -> ServiceError {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let text = one_line(&String::from_utf8_lossy(body));
        return ServiceError {
            message: (!text.is_empty()).then(|| truncate(&text, 300)),
            ..Default::default()
        };
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(one_line).filter(|s| !s.is_empty());
    let error = value.get("error");
    ServiceError {
        code: text(error.and_then(|e| e.get("code"))),
        inner: text(
            error
                .and_then(|e| e.get("innererror"))
                .and_then(|i| i.get("code")),
        ),
        message: text(error.and_then(|e| e.get("message"))),
    }
}

/// Classifies a failed SDK call; `doing` says what was attempted ("reading secret 'x'").
fn store_error(vault: &VaultName, doing: &str, error: &azure_core::Error) -> StoreError {
    let ErrorKind::HttpResponse {
        status,
        error_code,
        raw_response,
    } = error.kind()
    else {
        let detail = format!("Key Vault {vault}: {doing} failed: {}", error_chain(error));
        return match error.kind() {
            ErrorKind::Io | ErrorKind::Connection | ErrorKind::Credential => StoreError::Transient(detail),
            _ => StoreError::Permanent(detail),
        };
    };
    let status = u16::from(*status);
    let mut found = raw_response
        .as_ref()
        .map(|raw| service_error(raw.body()))
        .unwrap_or_default();
    if found.code.is_none() {
        found.code = error_code.clone().filter(|c| *c != status.to_string());
    }
    let code = match (&found.code, &found.inner) {
        (Some(code), Some(inner)) => format!(" {code}/{inner}"),
        (Some(code), None) => format!(" {code}"),
        (None, Some(inner)) => format!(" {inner}"),
        (None, None) => String::new(),
    };
    let message = found
        .message
        .clone()
        .unwrap_or_else(|| one_line(&error.to_string()));
    let detail = format!("Key Vault {vault}: {doing} failed: {status}{code}: {message}");
    let is_inner = |name: &str| {
        found
            .inner
            .as_deref()
            .is_some_and(|i| i.eq_ignore_ascii_case(name))
    };
    match status {
        404 => StoreError::NotFound(detail),
        403 if is_inner("SecretDisabled") => StoreError::Disabled(detail),
        403 if is_inner("ForbiddenByRbac") || is_inner("AccessDenied") => StoreError::Permanent(format!(
            "{detail} — grant keyflip's identity the Key Vault Secrets Officer role on vault {vault} (or get, list and set permissions on secrets)"
        )),
        408 | 429 | 500..=599 => StoreError::Transient(detail),
        _ => StoreError::Permanent(detail),
    }
}

/// A body that holds a secret value could not be decoded: no detail may be shown.
fn undecodable(vault: &VaultName, doing: &str) -> StoreError {
    StoreError::Permanent(format!(
        "Key Vault {vault}: {doing}: the answer could not be decoded (details withheld: it holds the secret value)"
    ))
}

fn to_tags(tags: Option<HashMap<String, String>>) -> Tags {
    tags.unwrap_or_default().into_iter().collect()
}

/// The version id of a secret id (`https://<vault>/secrets/<name>/<version>`).
fn version_of(
    vault: &VaultName,
    doing: &str,
    secret: &impl ResourceExt,
) -> Result<(String, SecretVersion), StoreError> {
    let bad = |why: String| StoreError::Permanent(format!("Key Vault {vault}: {doing}: {why}"));
    let id = secret
        .resource_id()
        .map_err(|e| bad(format!("the answer has no usable secret id: {}", error_chain(&e))))?;
    let version = id
        .version
        .ok_or_else(|| bad(format!("the secret id {} names no version", id.source_id)))?;
    let version = SecretVersion::parse(&version).map_err(|e| bad(e.to_string()))?;
    Ok((id.name, version))
}

#[async_trait::async_trait]
impl SecretStore for KeyVaultStore {
    async fn latest(&self, vault: &VaultName, name: &SecretName) -> Result<LoadedSecret, StoreError> {
        let doing = format!("reading secret '{name}'");
        let client = self.client(vault)?;
        let response = client
            .get_secret(name.as_str(), None)
            .await
            .map_err(|e| store_error(vault, &doing, &e))?;
        let mut secret: Secret = response.into_model().map_err(|_| undecodable(vault, &doing))?;
        let (id_name, version) = version_of(vault, &doing, &secret)?;
        let value = secret.value.take().map(ApiKey::new).ok_or_else(|| {
            StoreError::Permanent(format!("Key Vault {vault}: {doing}: the answer holds no value"))
        })?;
        let attributes = secret.attributes.take().unwrap_or_default();
        Ok(LoadedSecret {
            name: SecretName::parse(&id_name).unwrap_or_else(|_| name.clone()),
            version,
            value,
            tags: to_tags(secret.tags.take()),
            content_type: secret.content_type.take(),
            enabled: attributes.enabled.unwrap_or(true),
            created: attributes.created,
            not_before: attributes.not_before,
            expires: attributes.expires,
        })
    }

    fn list_pages<'a>(
        &'a self,
        vault: &'a VaultName,
    ) -> BoxStream<'a, Result<Vec<SecretSummary>, StoreError>> {
        const DOING: &str = "listing secrets";
        let pages = match self.client(vault).and_then(|client| {
            client
                .list_secret_properties(None)
                .map_err(|e| store_error(vault, DOING, &e))
        }) {
            Ok(pager) => pager.into_pages(),
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        pages
            .map(move |page| {
                let page = page
                    .map_err(|e| store_error(vault, DOING, &e))?
                    .into_model()
                    .map_err(|e| store_error(vault, DOING, &e))?;
                page.value
                    .into_iter()
                    .map(|properties| summary(vault, DOING, properties))
                    .collect::<Result<Vec<_>, _>>()
            })
            .boxed()
    }

    async fn publish(
        &self,
        vault: &VaultName,
        name: &SecretName,
        version: NewVersion,
    ) -> Result<SecretVersion, StoreError> {
        let doing = format!("writing a new version of secret '{name}'");
        let client = self.client(vault)?;
        let parameters = SetSecretParameters {
            value: Some(version.value.expose().to_string()),
            content_type: version.content_type,
            tags: Some(version.tags.into_iter().collect()),
            secret_attributes: Some(SecretAttributes {
                enabled: Some(true),
                not_before: Some(version.not_before),
                expires: Some(version.expires),
                ..Default::default()
            }),
        };
        let content: RequestContent<SetSecretParameters> =
            parameters.try_into().map_err(|_| undecodable(vault, &doing))?;
        let response = client
            .set_secret(name.as_str(), content, None)
            .await
            .map_err(|e| store_error(vault, &doing, &e))?;
        let secret: Secret = response.into_model().map_err(|_| undecodable(vault, &doing))?;
        let (_, version) = version_of(vault, &doing, &secret)?;
        Ok(version)
    }

    async fn set_tags(
        &self,
        vault: &VaultName,
        name: &SecretName,
        version: &SecretVersion,
        tags: Tags,
    ) -> Result<(), StoreError> {
        let doing = format!("updating the tags of secret '{name}' version {version}");
        let client = self.client(vault)?;
        let parameters = UpdateSecretPropertiesParameters {
            tags: Some(tags.into_iter().collect()),
            ..Default::default()
        };
        let content: RequestContent<UpdateSecretPropertiesParameters> = parameters
            .try_into()
            .map_err(|e| StoreError::Permanent(format!("Key Vault {vault}: {doing}: {}", error_chain(&e))))?;
        let options = SecretClientUpdateSecretPropertiesOptions {
            secret_version: Some(version.as_str().to_string()),
            ..Default::default()
        };
        client
            .update_secret_properties(name.as_str(), content, Some(options))
            .await
            .map_err(|e| store_error(vault, &doing, &e))?;
        Ok(())
    }

    async fn versions(
        &self,
        vault: &VaultName,
        name: &SecretName,
    ) -> Result<Vec<super::VersionSummary>, StoreError> {
        let doing = format!("listing the versions of secret '{name}'");
        let client = self.client(vault)?;
        let mut pager = client
            .list_secret_properties_versions(name.as_str(), None)
            .map_err(|e| store_error(vault, &doing, &e))?;
        let mut versions = Vec::new();
        while let Some(properties) = futures::TryStreamExt::try_next(&mut pager)
            .await
            .map_err(|e| store_error(vault, &doing, &e))?
        {
            let (_, version) = version_of(vault, &doing, &properties)?;
            let attributes = properties.attributes.unwrap_or_default();
            versions.push(super::VersionSummary {
                version,
                tags: to_tags(properties.tags),
                enabled: attributes.enabled.unwrap_or(true),
                created: attributes.created,
                updated: attributes.updated,
                expires: attributes.expires,
            });
        }
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;
    use crate::azure::arm::test_support::{TestAzure, start};

    const SECRET_VALUE: &str = "the-secret-value-1";

    fn vault(name: &str) -> VaultName {
        VaultName::parse(name).unwrap()
    }

    fn secret(name: &str) -> SecretName {
        SecretName::parse(name).unwrap()
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The store over vaults `names`, all at `https://<name>.vault.azure.net/`.
    fn store(azure: &TestAzure, names: &[&str]) -> KeyVaultStore {
        let vaults: Vec<(VaultName, Url)> = names
            .iter()
            .map(|n| (vault(n), format!("https://{n}.vault.azure.net/").parse().unwrap()))
            .collect();
        KeyVaultStore::new(&vaults, azure.credential(), azure.client_options()).unwrap()
    }

    async fn seeded(seed: Value) -> (TestAzure, KeyVaultStore) {
        let azure = start().await;
        azure.seed(seed).await;
        let store = store(&azure, &["kv1"]);
        (azure, store)
    }

    fn one_secret(version: Value) -> Value {
        json!({"vaults": [{"name": "kv1", "secrets": [{"name": "aoai-key", "versions": [version]}]}]})
    }

    #[tokio::test]
    async fn latest_reads_value_version_tags_and_attributes() {
        let (_azure, store) = seeded(one_secret(json!({
            "version": "0123456789ABCDEF0123456789abcdef", "value": SECRET_VALUE,
            "content_type": "text/plain", "tags": {"CredentialId": "key1", "owner": "team"},
            "nbf": 1_790_000_000, "exp": 1_796_000_000, "created": 1_789_000_000
        })))
        .await;
        let loaded = store.latest(&vault("kv1"), &secret("AOAI-KEY")).await.unwrap();
        assert_eq!(
            loaded.name.as_str(),
            "aoai-key",
            "the name as Key Vault spells it"
        );
        assert_eq!(loaded.version.as_str(), "0123456789abcdef0123456789abcdef");
        assert_eq!(loaded.value.expose(), SECRET_VALUE);
        assert_eq!(loaded.tags, tags(&[("CredentialId", "key1"), ("owner", "team")]));
        assert_eq!(loaded.content_type.as_deref(), Some("text/plain"));
        assert!(loaded.enabled);
        assert_eq!(loaded.created, Some(at(1_789_000_000)));
        assert_eq!(loaded.not_before, Some(at(1_790_000_000)));
        assert_eq!(loaded.expires, Some(at(1_796_000_000)));
        assert!(!format!("{loaded:?} {store:?}").contains(SECRET_VALUE));
    }

    #[tokio::test]
    async fn publish_then_set_tags_round_trip() {
        let (azure, store) = seeded(one_secret(
            json!({"value": "old-value", "tags": {"CredentialId": "key1"}}),
        ))
        .await;
        let (kv, name) = (vault("kv1"), secret("aoai-key"));
        let previous = store.latest(&kv, &name).await.unwrap();
        let new_tags = tags(&[
            ("CredentialId", "key2"),
            ("PreviousVersion", previous.version.as_str()),
        ]);
        let version = store
            .publish(
                &kv,
                &name,
                NewVersion {
                    value: ApiKey::new(SECRET_VALUE),
                    tags: new_tags.clone(),
                    content_type: Some("application/x-api-key".into()),
                    not_before: at(1_795_000_000),
                    expires: at(1_800_000_000),
                },
            )
            .await
            .unwrap();
        assert_ne!(version, previous.version);
        let latest = store.latest(&kv, &name).await.unwrap();
        assert_eq!(latest.version, version);
        assert_eq!(latest.value.expose(), SECRET_VALUE);
        assert_eq!(latest.tags, new_tags);
        assert_eq!(latest.content_type.as_deref(), Some("application/x-api-key"));
        assert!(latest.enabled);
        assert_eq!(
            (latest.not_before, latest.expires),
            (Some(at(1_795_000_000)), Some(at(1_800_000_000)))
        );

        // The whole tag set is replaced, on that version, without a new version.
        let marked = tags(&[("CredentialId", "key2"), ("PendingSlot", "key1")]);
        store
            .set_tags(&kv, &name, &version, marked.clone())
            .await
            .unwrap();
        let latest = store.latest(&kv, &name).await.unwrap();
        assert_eq!((latest.version.clone(), latest.tags), (version.clone(), marked));
        store
            .set_tags(&kv, &name, &previous.version, Tags::new())
            .await
            .unwrap();
        let state = azure.control.secret("kv1", "aoai-key").await.unwrap();
        assert_eq!(state["versions"].as_array().map(Vec::len), Some(2), "{state}");
        assert_eq!(
            store.latest(&kv, &name).await.unwrap().value.expose(),
            SECRET_VALUE
        );
    }

    #[tokio::test]
    async fn list_follows_every_page() {
        let secrets: Vec<Value> = (0..30)
            .map(|i| {
                json!({"name": format!("secret-{i:02}"), "versions": [{
                    "value": format!("value-{i}"), "tags": {"n": i.to_string()},
                    "enabled": i != 7, "exp": 1_796_000_000 + i
                }]})
            })
            .collect();
        let (azure, store) = seeded(json!({"vaults": [{"name": "kv1", "secrets": secrets}]})).await;
        let listed = store.list(&vault("kv1")).await.unwrap();
        let mut names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        let expected: Vec<String> = (0..30).map(|i| format!("secret-{i:02}")).collect();
        assert_eq!(names, expected);
        let seven = listed.iter().find(|s| s.name.as_str() == "secret-07").unwrap();
        assert!(!seven.enabled);
        assert_eq!(seven.tags, tags(&[("n", "7")]));
        assert_eq!(seven.expires, Some(at(1_796_000_007)));
        assert!(seven.updated.is_some());
        let pages = azure
            .calls("GetSecrets")
            .await
            .into_iter()
            .filter(|c| c.status == 200)
            .count();
        assert_eq!(pages, 2, "30 secrets come in two pages of at most 25");
    }

    #[tokio::test]
    async fn missing_secrets_and_vaults_are_not_found() {
        let (_azure, store) = seeded(one_secret(json!({"value": "v"}))).await;
        let error = store.latest(&vault("kv1"), &secret("nope")).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::NotFound(m) if m.contains("SecretNotFound")),
            "{error:?}"
        );
        let error = store.list(&vault("kv-other")).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::NotFound(m) if m.contains("KEYFLIP_VAULTS") && m.contains("kv1")),
            "{error:?}"
        );
        // Configured, but the emulator has no such vault.
        let azure = start().await;
        let error = store_for(&azure, "kv-ghost")
            .list(&vault("kv-ghost"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::NotFound(m) if m.contains("VaultNotFound")),
            "{error:?}"
        );
    }

    fn store_for(azure: &TestAzure, name: &str) -> KeyVaultStore {
        store(azure, &[name])
    }

    #[tokio::test]
    async fn a_disabled_latest_version_is_disabled() {
        let (_azure, store) = seeded(one_secret(json!({"value": SECRET_VALUE, "enabled": false}))).await;
        let error = store
            .latest(&vault("kv1"), &secret("aoai-key"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::Disabled(m) if m.contains("SecretDisabled")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_rbac_denial_is_permanent_with_its_code() {
        let (_azure, store) = seeded(
            json!({"vaults": [{"name": "kv1", "allowed_principals": ["someone-else"],
            "secrets": [{"name": "aoai-key", "versions": [{"value": SECRET_VALUE}]}]}]}),
        )
        .await;
        let error = store
            .latest(&vault("kv1"), &secret("aoai-key"))
            .await
            .unwrap_err();
        let StoreError::Permanent(message) = &error else {
            panic!("expected Permanent, got {error:?}");
        };
        assert!(message.contains("403 Forbidden/ForbiddenByRbac"), "{message}");
        assert!(message.contains("Key Vault Secrets Officer"), "{message}");
        assert!(!message.contains('\r') && !message.contains('\n'), "{message}");
        assert!(matches!(
            store.list(&vault("kv1")).await,
            Err(StoreError::Permanent(_))
        ));
    }

    #[tokio::test]
    async fn throttling_past_the_retries_is_transient() {
        let (azure, store) = seeded(one_secret(json!({"value": SECRET_VALUE}))).await;
        let (kv, name) = (vault("kv1"), secret("aoai-key"));
        let version = store.latest(&kv, &name).await.unwrap().version;
        for operation in ["GetSecret", "GetSecrets", "SetSecret", "UpdateSecret"] {
            azure
                .fault(json!({"operation": operation, "target": "kv1", "status": 429, "count": 3}))
                .await;
        }
        let latest = store.latest(&kv, &name).await.unwrap_err();
        let list = store.list(&kv).await.unwrap_err();
        let new = NewVersion {
            value: ApiKey::new("throttled-value"),
            tags: Tags::new(),
            content_type: None,
            not_before: at(1_795_000_000),
            expires: at(1_800_000_000),
        };
        let publish = store.publish(&kv, &name, new).await.unwrap_err();
        let set_tags = store
            .set_tags(&kv, &name, &version, Tags::new())
            .await
            .unwrap_err();
        for error in [latest, list, publish, set_tags] {
            assert!(
                matches!(&error, StoreError::Transient(m) if m.contains("429 Throttled")),
                "{error:?}"
            );
        }
        // A single 503 is retried away.
        azure
            .fault(json!({"operation": "GetSecret", "target": "kv1", "status": 503}))
            .await;
        assert!(store.latest(&kv, &name).await.is_ok());
    }

    #[tokio::test]
    async fn a_refused_write_is_permanent_and_never_shows_the_value() {
        let (_azure, store) = seeded(one_secret(json!({"value": "v"}))).await;
        let (kv, name) = (vault("kv1"), secret("aoai-key"));
        let new = |value: String, count: usize| NewVersion {
            value: ApiKey::new(value),
            tags: (0..count).map(|i| (format!("t{i}"), "v".to_string())).collect(),
            content_type: None,
            not_before: at(1_795_000_000),
            expires: at(1_800_000_000),
        };
        // 16 tags: Key Vault's "Property has invalid value\r\n", whose code azure_core loses.
        let error = store
            .publish(&kv, &name, new(SECRET_VALUE.into(), 16))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::Permanent(m) if m.contains("400 BadParameter")),
            "{error:?}"
        );
        let huge = format!("{SECRET_VALUE}{}", "x".repeat(26 * 1024));
        let big = store.publish(&kv, &name, new(huge.clone(), 1)).await.unwrap_err();
        assert!(matches!(&big, StoreError::Permanent(_)), "{big:?}");
        let printed = format!("{error} {error:?} {big} {big:?}");
        assert!(
            !printed.contains(SECRET_VALUE) && !printed.contains("xxxxxxxx"),
            "{printed}"
        );
    }

    /// A vault host whose 401 challenge names another resource, as a hijacked or spoofed
    /// endpoint would.
    #[derive(Debug, Default)]
    struct ForeignChallenge {
        authorized: std::sync::Mutex<u32>,
    }

    #[async_trait::async_trait]
    impl azure_core::http::HttpClient for ForeignChallenge {
        async fn execute_request(
            &self,
            request: &azure_core::http::Request,
        ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
            use azure_core::http::headers::{AUTHORIZATION, Headers, WWW_AUTHENTICATE};
            if request.headers().get_optional_str(&AUTHORIZATION).is_some() {
                *self.authorized.lock().unwrap() += 1;
            }
            let mut headers = Headers::new();
            headers.insert(
                WWW_AUTHENTICATE,
                r#"Bearer authorization="https://login.windows.net/t", resource="https://attacker.example""#,
            );
            Ok(azure_core::http::AsyncRawResponse::from_bytes(
                azure_core::http::StatusCode::Unauthorized,
                headers,
                Vec::new(),
            ))
        }
    }

    #[tokio::test]
    async fn the_challenge_check_stays_on() {
        let azure = start().await;
        let transport = Arc::new(ForeignChallenge::default());
        let options = ClientOptions {
            transport: Some(azure_core::http::Transport::new(transport.clone())),
            ..azure.client_options()
        };
        let store = KeyVaultStore::new(
            &[(vault("kv1"), "https://kv1.vault.azure.net/".parse().unwrap())],
            azure.credential(),
            options,
        )
        .unwrap();
        let error = store
            .latest(&vault("kv1"), &secret("aoai-key"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::Permanent(m) if m.contains("challenge resource")),
            "{error:?}"
        );
        assert_eq!(
            *transport.authorized.lock().unwrap(),
            0,
            "no token was sent to the foreign resource"
        );
    }

    #[test]
    fn service_errors_parse_from_the_body() {
        let body = br#"{"error":{"code":"Forbidden","message":"Caller is not authorized.\r\nVault: kv1","innererror":{"code":"ForbiddenByRbac"}}}"#;
        assert_eq!(
            service_error(body),
            ServiceError {
                code: Some("Forbidden".into()),
                inner: Some("ForbiddenByRbac".into()),
                message: Some("Caller is not authorized. Vault: kv1".into()),
            }
        );
        assert_eq!(service_error(b"").message, None);
        assert_eq!(
            service_error(b"gateway  down").message.as_deref(),
            Some("gateway down")
        );
    }

    #[tokio::test]
    async fn versions_lists_every_version_s_properties_and_no_value() {
        let secrets = json!({"vaults": [{"name": "kv1", "secrets": [{"name": "aoai-key", "versions": [
            {"version": "0123456789abcdef0123456789abcdef", "value": SECRET_VALUE,
             "tags": {"CredentialId": "key1"}, "created": 1_789_000_000, "exp": 1_796_000_000},
            {"version": "fedcba9876543210fedcba9876543210", "value": "by-hand-value-2",
             "tags": {"owner": "team"}, "created": 1_790_000_000, "enabled": false}
        ]}]}]});
        let (azure, store) = seeded(secrets).await;
        let mut versions = store.versions(&vault("kv1"), &secret("aoai-key")).await.unwrap();
        versions.sort_by_key(|v| v.created);
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].version.as_str(), "0123456789abcdef0123456789abcdef");
        assert_eq!(versions[0].tags, tags(&[("CredentialId", "key1")]));
        assert_eq!(versions[0].expires, Some(at(1_796_000_000)));
        assert!(versions[0].enabled && !versions[1].enabled);
        assert_eq!(versions[1].created, Some(at(1_790_000_000)));
        let printed = format!("{versions:?}");
        assert!(!printed.contains(SECRET_VALUE) && !printed.contains("by-hand-value-2"));
        assert!(azure.calls("GetSecret").await.is_empty(), "no value is read");
        let missing = store.versions(&vault("kv1"), &secret("nope")).await.unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
    }
}
