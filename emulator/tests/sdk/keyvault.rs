//! Key Vault secrets, proven with the official `SecretClient` (unmodified, challenge
//! verification on) against `https://<vault>.vault.azure.net/`: writes and reads, property
//! updates, case-insensitive names, paging, the 401 challenge, every error Key Vault answers,
//! soft delete, and how the SDK's retries meet injected faults.
//!
//! Raw requests (`app.http` with a control-API token) appear only where the SDK cannot express
//! the check: the exact challenge header, a token for another audience, list bodies on the wire,
//! `maxresults` and api-version refusals as the service words them.
//!
//! SDK quirk pinned here: azure_core 1.1 (and 1.2.0-beta.1) parses an error body into borrowed
//! `&str`s (`ErrorDetailsInternal { code: Option<&str>, message: Option<&str> }`), which fails
//! when a string holds a JSON escape. Key Vault's RBAC denial and its "Property has invalid
//! value\r\n" both hold `\r\n`, so for them the SDK's `error_code` is the status ("403",
//! "400"), not `Forbidden`/`BadParameter`. Code that must tell these errors apart has to read
//! the body the error carries ([`service_codes`]), as these tests do.

use std::collections::{BTreeSet, HashMap};

use azure_core::error::ErrorKind;
use azure_core::http::{Pager, RequestContent};
use azure_core::time::OffsetDateTime;
use azure_security_keyvault_secrets::models::{
    DeletionRecoveryLevel, ListSecretPropertiesResult, Secret, SecretAttributes,
    SecretClientGetSecretOptions, SecretClientListSecretPropertiesOptions,
    SecretClientListSecretPropertiesVersionsOptions, SecretClientUpdateSecretPropertiesOptions,
    SecretProperties, SetSecretParameters, UpdateSecretPropertiesParameters,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use emulator::calls::Call;
use emulator::faults::{FaultRule, Phase};
use futures::TryStreamExt;
use serde_json::{Value, json};

use crate::helpers::{TestEmulator, http_error, spawn_emulator};

const VAULT: &str = "kv-test";
const VAULT_URL: &str = "https://kv-test.vault.azure.net";
const VAULT_AUDIENCE: &str = "https://vault.azure.net";
const API_VERSION: &str = "2025-07-01";

// ---------------------------------------------------------------------------------------------
// Helpers local to this module.
// ---------------------------------------------------------------------------------------------

/// An emulator with one empty vault, and a fresh `SecretClient` on it.
async fn vault_app() -> (TestEmulator, SecretClient) {
    let app = spawn_emulator().await;
    app.seed(json!({ "vaults": [{ "name": VAULT }] })).await;
    let kv = app.secret_client(VAULT);
    (app, kv)
}

fn value_only(value: &str) -> RequestContent<SetSecretParameters> {
    SetSecretParameters {
        value: Some(value.into()),
        ..Default::default()
    }
    .try_into()
    .unwrap()
}

/// SetSecret with only a value; panics on failure.
async fn set(kv: &SecretClient, name: &str, value: &str) -> Secret {
    kv.set_secret(name, value_only(value), None)
        .await
        .unwrap()
        .into_model()
        .unwrap()
}

/// GetSecret of one version (`None`: the latest).
async fn get(kv: &SecretClient, name: &str, version: Option<&str>) -> azure_core::Result<Secret> {
    let options = SecretClientGetSecretOptions {
        secret_version: version.map(str::to_string),
        ..Default::default()
    };
    kv.get_secret(name, Some(options)).await?.into_model()
}

fn version_of(secret: &Secret) -> String {
    secret.resource_id().unwrap().version.expect("a versioned id")
}

fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn numbered_tags(n: usize) -> HashMap<String, String> {
    (0..n).map(|i| (format!("tag{i}"), format!("v{i}"))).collect()
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn unix(time: Option<OffsetDateTime>) -> i64 {
    time.expect("a timestamp").unix_timestamp()
}

/// `(error.code, error.innererror.code)` as the service wrote them, read from the response body
/// a failed SDK call carries.
fn service_codes(error: &azure_core::Error) -> (Option<String>, Option<String>) {
    let ErrorKind::HttpResponse {
        raw_response: Some(raw),
        ..
    } = error.kind()
    else {
        panic!("expected an HTTP error with its response, got {error:?}");
    };
    let body: Value = raw.body().json().expect("a JSON error body");
    let code = |v: &Value| v["code"].as_str().map(str::to_string);
    (code(&body["error"]), code(&body["error"]["innererror"]))
}

fn some(code: &str) -> Option<String> {
    Some(code.to_string())
}

/// Every item of a pager, following `nextLink` to the end.
async fn all_items(pager: Pager<ListSecretPropertiesResult>) -> Vec<SecretProperties> {
    pager.try_collect().await.unwrap()
}

fn names_of(items: &[SecretProperties]) -> Vec<String> {
    items.iter().map(|p| p.resource_id().unwrap().name).collect()
}

/// Calls of `operation` that the emulator answered 200.
async fn ok_calls(app: &TestEmulator, operation: &str) -> Vec<Call> {
    app.control
        .calls(Some(operation))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.status == 200)
        .collect()
}

/// Sends one request through the client so its challenge is behind it, then clears the call
/// log: afterwards the log holds only what the test itself causes.
async fn past_the_challenge(app: &TestEmulator, kv: &SecretClient) {
    let error = get(kv, "warm-up", None).await.unwrap_err();
    assert_eq!(http_error(&error).0, 404);
    app.control.clear_calls().await.unwrap();
}

/// A raw GET on the vault (`path_and_query` after the host) with `token`, if any.
async fn raw_get(app: &TestEmulator, path_and_query: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(format!("{VAULT_URL}{path_and_query}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn vault_token(app: &TestEmulator) -> String {
    app.control.token(VAULT_AUDIENCE).await.unwrap()
}

fn fault(operation: &str, status: u16, count: u32) -> FaultRule {
    FaultRule {
        target: Some(VAULT.into()),
        ..FaultRule::new(operation, status, count)
    }
}

// ---------------------------------------------------------------------------------------------
// Set, get, update, names.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn set_secret_stores_value_tags_content_type_and_attributes_and_get_returns_the_latest() {
    // Arrange
    let (app, kv) = vault_app().await;
    let now = app.control.now().await.unwrap();
    let first = set(&kv, "aoai-key", "old-value").await;
    let params = SetSecretParameters {
        value: Some("new-value".into()),
        content_type: Some("text/plain".into()),
        tags: Some(tags(&[("CredentialId", "key1"), ("rotatedBy", "keyflip")])),
        secret_attributes: Some(SecretAttributes {
            enabled: Some(true),
            // Not yet valid: Key Vault still serves it (only keys enforce nbf/exp).
            not_before: Some(at(now + 3_600)),
            expires: Some(at(now + 90 * 86_400)),
            ..Default::default()
        }),
    };

    // Act
    let written = kv
        .set_secret("aoai-key", params.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let latest = get(&kv, "aoai-key", None).await.unwrap();

    // Assert
    assert_ne!(version_of(&first), version_of(&written));
    assert_eq!(latest.id, written.id);
    let id = latest.resource_id().unwrap();
    assert_eq!(id.vault_url, VAULT_URL);
    assert_eq!(id.name, "aoai-key");
    let version = id.version.unwrap();
    assert_eq!(version.len(), 32);
    assert!(version.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(latest.value.as_deref(), Some("new-value"));
    assert_eq!(latest.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        latest.tags,
        Some(tags(&[("CredentialId", "key1"), ("rotatedBy", "keyflip")]))
    );
    let attributes = latest.attributes.unwrap();
    assert_eq!(attributes.enabled, Some(true));
    assert_eq!(unix(attributes.not_before), now + 3_600);
    assert_eq!(unix(attributes.expires), now + 90 * 86_400);
    let created = unix(attributes.created);
    assert!(
        (now..now + 10).contains(&created),
        "created {created} is the emulator's clock {now}"
    );
    assert_eq!(unix(attributes.updated), created);
    assert_eq!(attributes.recoverable_days, Some(90));
    assert_eq!(
        attributes.recovery_level,
        Some(DeletionRecoveryLevel::RecoverablePurgeable)
    );
}

#[tokio::test]
async fn get_secret_by_version_returns_that_version_and_not_the_latest() {
    // Arrange
    let (_app, kv) = vault_app().await;
    let first = set(&kv, "db-password", "one").await;
    let second = set(&kv, "db-password", "two").await;

    // Act
    let old = get(&kv, "db-password", Some(&version_of(&first))).await.unwrap();
    let latest = get(&kv, "db-password", None).await.unwrap();

    // Assert
    assert_eq!(old.id, first.id);
    assert_eq!(old.value.as_deref(), Some("one"));
    assert_eq!(latest.id, second.id);
    assert_eq!(latest.value.as_deref(), Some("two"));
}

#[tokio::test]
async fn update_properties_of_the_latest_replaces_tags_keeps_unspecified_attributes_and_moves_updated() {
    // Arrange
    let (app, kv) = vault_app().await;
    let now = app.control.now().await.unwrap();
    let params = SetSecretParameters {
        value: Some("v".into()),
        content_type: Some("text/plain".into()),
        tags: Some(tags(&[("a", "1"), ("b", "2")])),
        secret_attributes: Some(SecretAttributes {
            not_before: Some(at(now - 60)),
            expires: Some(at(now + 86_400)),
            ..Default::default()
        }),
    };
    let written = kv
        .set_secret("s", params.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let created = unix(written.attributes.as_ref().unwrap().created);
    app.control.advance_clock(120).await.unwrap();
    let only_tags = UpdateSecretPropertiesParameters {
        tags: Some(tags(&[("c", "3")])),
        ..Default::default()
    };

    // Act
    let updated = kv
        .update_secret_properties("s", only_tags.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    app.control.advance_clock(60).await.unwrap();
    let only_expiry = UpdateSecretPropertiesParameters {
        secret_attributes: Some(SecretAttributes {
            expires: Some(at(now + 2 * 86_400)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let updated_again = kv
        .update_secret_properties("s", only_expiry.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let read_back = get(&kv, "s", None).await.unwrap();

    // Assert: the first update replaced the whole tag set and kept everything else.
    assert_eq!(updated.id, written.id);
    assert_eq!(updated.value, None, "UpdateSecret answers without the value");
    assert_eq!(updated.tags, Some(tags(&[("c", "3")])));
    assert_eq!(updated.content_type.as_deref(), Some("text/plain"));
    let attributes = updated.attributes.unwrap();
    assert_eq!(attributes.enabled, Some(true));
    assert_eq!(unix(attributes.not_before), now - 60);
    assert_eq!(unix(attributes.expires), now + 86_400);
    assert_eq!(unix(attributes.created), created);
    assert!(unix(attributes.updated) >= created + 120);
    // The second one changed only the expiry: the tags it did not send are kept.
    assert_eq!(updated_again.tags, Some(tags(&[("c", "3")])));
    let attributes_again = updated_again.attributes.unwrap();
    assert_eq!(unix(attributes_again.expires), now + 2 * 86_400);
    assert_eq!(unix(attributes_again.not_before), now - 60);
    assert!(unix(attributes_again.updated) >= unix(attributes.updated) + 60);
    // The value and the new properties are what a later read sees.
    assert_eq!(read_back.id, written.id);
    assert_eq!(read_back.value.as_deref(), Some("v"));
    assert_eq!(read_back.tags, Some(tags(&[("c", "3")])));
    assert_eq!(
        unix(read_back.attributes.unwrap().updated),
        unix(attributes_again.updated)
    );
}

#[tokio::test]
async fn update_properties_of_a_named_version_changes_only_that_version() {
    // Arrange
    let (app, kv) = vault_app().await;
    let first = set(&kv, "s", "one").await;
    let params = SetSecretParameters {
        value: Some("two".into()),
        tags: Some(tags(&[("generation", "2")])),
        ..Default::default()
    };
    let second = kv
        .set_secret("s", params.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let second_updated = unix(second.attributes.as_ref().unwrap().updated);
    app.control.advance_clock(300).await.unwrap();
    let retire = UpdateSecretPropertiesParameters {
        tags: Some(tags(&[("state", "retired")])),
        ..Default::default()
    };
    let options = SecretClientUpdateSecretPropertiesOptions {
        secret_version: Some(version_of(&first)),
        ..Default::default()
    };

    // Act
    let updated = kv
        .update_secret_properties("s", retire.try_into().unwrap(), Some(options))
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let first_now = get(&kv, "s", Some(&version_of(&first))).await.unwrap();
    let latest_now = get(&kv, "s", None).await.unwrap();

    // Assert
    assert_eq!(updated.id, first.id);
    assert_eq!(first_now.tags, Some(tags(&[("state", "retired")])));
    assert_eq!(first_now.value.as_deref(), Some("one"));
    assert!(unix(first_now.attributes.unwrap().updated) >= unix(first.attributes.unwrap().updated) + 300);
    assert_eq!(latest_now.id, second.id);
    assert_eq!(latest_now.tags, Some(tags(&[("generation", "2")])));
    assert_eq!(unix(latest_now.attributes.unwrap().updated), second_updated);
}

#[tokio::test]
async fn secret_names_are_case_insensitive_and_keep_their_first_spelling() {
    // Arrange
    let (_app, kv) = vault_app().await;
    let created = set(&kv, "MySecret", "a").await;

    // Act
    let read = get(&kv, "mysecret", None).await.unwrap();
    let rewritten = set(&kv, "MYSECRET", "b").await;
    let versions = all_items(kv.list_secret_properties_versions("mysecret", None).unwrap()).await;
    let listed = all_items(kv.list_secret_properties(None).unwrap()).await;

    // Assert
    assert_eq!(read.id, created.id);
    assert_eq!(read.value.as_deref(), Some("a"));
    assert!(read.id.as_deref().unwrap().contains("/secrets/MySecret/"));
    assert_eq!(read.resource_id().unwrap().name, "MySecret");
    assert_eq!(rewritten.resource_id().unwrap().name, "MySecret");
    assert_eq!(versions.len(), 2, "MYSECRET added a version to MySecret");
    assert_eq!(names_of(&listed), vec!["MySecret".to_string()]);
}

// ---------------------------------------------------------------------------------------------
// Lists and paging.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_secret_properties_pages_through_every_live_secret_exactly_once() {
    // Arrange: 30 secrets (two default pages of 25), plus a deleted one that must not show.
    let app = spawn_emulator().await;
    let expected: Vec<String> = (0..30).map(|i| format!("secret-{i:02}")).collect();
    let mut secrets: Vec<Value> = expected
        .iter()
        .map(|name| json!({ "name": name, "versions": [{ "value": format!("value of {name}") }] }))
        .collect();
    secrets.push(json!({ "name": "gone", "deleted_at": 1_790_000_000, "versions": [{ "value": "x" }] }));
    app.seed(json!({ "vaults": [{ "name": VAULT, "secrets": secrets }] }))
        .await;
    let kv = app.secret_client(VAULT);

    // Act
    let default_pages = all_items(kv.list_secret_properties(None).unwrap()).await;
    let default_calls = ok_calls(&app, "GetSecrets").await;
    app.control.clear_calls().await.unwrap();
    let options = SecretClientListSecretPropertiesOptions {
        maxresults: Some(5),
        ..Default::default()
    };
    let small_pages = all_items(kv.list_secret_properties(Some(options)).unwrap()).await;
    let small_calls = ok_calls(&app, "GetSecrets").await;

    // Assert
    for items in [&default_pages, &small_pages] {
        let names = names_of(items);
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(names.len(), 30, "every secret exactly once");
        assert_eq!(unique.into_iter().cloned().collect::<Vec<_>>(), expected);
        assert!(
            items.iter().all(|p| p.resource_id().unwrap().version.is_none()),
            "GetSecrets lists base ids, without versions"
        );
    }
    assert_eq!(default_calls.len(), 2, "30 secrets are 2 pages of 25");
    assert_eq!(small_calls.len(), 6, "30 secrets are 6 pages of 5");
    assert!(
        small_calls
            .iter()
            .all(|c| c.api_version.as_deref() == Some(API_VERSION)),
        "the SDK follows nextLink with the api-version"
    );
}

#[tokio::test]
async fn list_secret_properties_versions_pages_through_every_version_exactly_once() {
    // Arrange: one secret with 30 versions.
    let app = spawn_emulator().await;
    let versions: Vec<Value> = (0..30)
        .map(|i| json!({ "value": format!("v{i}"), "created": 1_790_000_000 + i }))
        .collect();
    app.seed(
        json!({ "vaults": [{ "name": VAULT, "secrets": [{ "name": "rotated", "versions": versions }] }] }),
    )
    .await;
    let stored = app.control.secret(VAULT, "rotated").await.unwrap();
    let expected: BTreeSet<String> = stored["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_string())
        .collect();
    let kv = app.secret_client(VAULT);

    // Act
    let default_pages = all_items(kv.list_secret_properties_versions("rotated", None).unwrap()).await;
    let default_calls = ok_calls(&app, "GetSecretVersions").await;
    app.control.clear_calls().await.unwrap();
    let options = SecretClientListSecretPropertiesVersionsOptions {
        maxresults: Some(4),
        ..Default::default()
    };
    let small_pages = all_items(
        kv.list_secret_properties_versions("rotated", Some(options))
            .unwrap(),
    )
    .await;
    let small_calls = ok_calls(&app, "GetSecretVersions").await;

    // Assert
    assert_eq!(expected.len(), 30);
    for items in [&default_pages, &small_pages] {
        let listed: Vec<String> = items
            .iter()
            .map(|p| p.resource_id().unwrap().version.expect("a full id"))
            .collect();
        assert_eq!(listed.len(), 30, "every version exactly once");
        assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), expected);
        assert!(items.iter().all(|p| p.resource_id().unwrap().name == "rotated"));
    }
    assert_eq!(default_calls.len(), 2, "30 versions are 2 pages of 25");
    assert_eq!(small_calls.len(), 8, "30 versions are 8 pages of 4");
}

#[tokio::test]
async fn list_pages_on_the_wire_carry_no_values_and_an_absolute_next_link() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(json!({ "vaults": [{ "name": VAULT, "secrets": [
        { "name": "a", "versions": [{ "value": "va1" }, { "value": "va2" }, { "value": "va3" }] },
        { "name": "b", "versions": [{ "value": "vb" }] },
        { "name": "c", "versions": [{ "value": "vc" }] },
        { "name": "d", "deleted_at": 1_790_000_000, "versions": [{ "value": "vd" }] },
    ] }] }))
    .await;
    let token = vault_token(&app).await;
    let lists = [
        format!("/secrets?api-version={API_VERSION}&maxresults=2"),
        format!("/secrets/a/versions?api-version={API_VERSION}&maxresults=2"),
        format!("/deletedsecrets?api-version={API_VERSION}&maxresults=2"),
    ];

    for first in lists {
        // Act: walk the list by hand, following nextLink as given.
        let mut items = Vec::new();
        let mut pages = 0;
        let mut url = format!("{VAULT_URL}{first}");
        loop {
            let response = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
            let page: Value = response.json().await.unwrap();
            pages += 1;
            items.extend(page["value"].as_array().unwrap().iter().cloned());
            match page["nextLink"].as_str() {
                Some(next) => {
                    assert!(
                        next.starts_with(&format!("{VAULT_URL}:443/")),
                        "nextLink is absolute, with :443: {next}"
                    );
                    assert!(next.contains(&format!("api-version={API_VERSION}")));
                    assert!(next.contains("$skiptoken="));
                    url = next.to_string();
                }
                None => break,
            }
        }

        // Assert
        assert!(!items.is_empty(), "{first}");
        assert_eq!(pages, items.len().div_ceil(2), "{first}");
        for item in &items {
            assert!(item.get("value").is_none(), "no value in a list item: {item}");
            assert!(item["id"].as_str().unwrap().starts_with(VAULT_URL));
            assert!(item["attributes"]["enabled"].is_boolean());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication: the challenge, foreign tokens, RBAC.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_fresh_client_is_challenged_once_then_sends_its_token_up_front() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(json!({ "vaults": [{ "name": VAULT, "secrets": [{ "name": "s", "versions": [{ "value": "v" }] }] }] }))
        .await;
    let kv = app.secret_client(VAULT);

    // Act
    let first = get(&kv, "s", None).await.unwrap();
    let second = get(&kv, "s", None).await.unwrap();

    // Assert
    assert_eq!(first.value.as_deref(), Some("v"));
    assert_eq!(second.value.as_deref(), Some("v"));
    let calls = app.control.calls(Some("GetSecret")).await.unwrap();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![401, 200, 200],
        "one challenge, then authorised requests"
    );
    let principal = &app.info.system_identity.principal_id;
    assert_eq!(calls[0].caller, None, "the first request carries no token");
    assert_eq!(calls[1].caller.as_ref(), Some(principal));
    assert_eq!(calls[2].caller.as_ref(), Some(principal));
}

#[tokio::test]
async fn a_request_without_a_token_gets_key_vaults_exact_challenge() {
    // Arrange
    let (app, _kv) = vault_app().await;

    // Act
    let response = raw_get(&app, &format!("/secrets/s?api-version={API_VERSION}"), None).await;

    // Assert
    assert_eq!(response.status(), 401);
    let challenges: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let expected = format!(
        "Bearer authorization=\"https://login.windows.net/{}\", resource=\"https://vault.azure.net\"",
        app.info.tenant_id
    );
    assert_eq!(challenges, vec![expected.as_str()]);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_with_401() {
    // Arrange
    let (app, _kv) = vault_app().await;
    let arm_token = app.control.token("https://management.azure.com").await.unwrap();
    let path = format!("/secrets?api-version={API_VERSION}");

    // Act
    let refused = raw_get(&app, &path, Some(&arm_token)).await;
    let accepted = raw_get(&app, &path, Some(&vault_token(&app).await)).await;

    // Assert
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers().contains_key("www-authenticate"),
        "Key Vault challenges again"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");
    assert_eq!(
        accepted.status(),
        200,
        "the same request with a vault token passes"
    );
}

#[tokio::test]
async fn a_caller_outside_the_vaults_allowed_principals_gets_403_forbidden_by_rbac() {
    // Arrange
    let app = spawn_emulator().await;
    let caller = app.info.system_identity.principal_id.clone();
    app.seed(json!({ "vaults": [
        { "name": "kv-locked", "allowed_principals": ["00000000-0000-0000-0000-00000000beef"],
          "secrets": [{ "name": "s", "versions": [{ "value": "v" }] }] },
        { "name": "kv-open", "allowed_principals": [caller] },
    ] }))
    .await;
    let locked = app.secret_client("kv-locked");
    let open = app.secret_client("kv-open");

    // Act
    let read = get(&locked, "s", None).await.unwrap_err();
    let write = locked.set_secret("s", value_only("w"), None).await.unwrap_err();
    let allowed = open.set_secret("s", value_only("w"), None).await;

    // Assert
    for error in [&read, &write] {
        // The RBAC message holds `\r\n`: the SDK reports the status as the code (module doc).
        assert_eq!(http_error(error), (403, some("403")));
        assert_eq!(service_codes(error), (some("Forbidden"), some("ForbiddenByRbac")));
    }
    assert!(allowed.is_ok(), "a listed principal is let in: {allowed:?}");
    let refused: Vec<Call> = app
        .control
        .calls(Some("GetSecret"))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.status == 403)
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0].caller.as_ref(),
        Some(&caller),
        "refused after authentication"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors as the SDK surfaces them.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_secret_or_version_is_404_secret_not_found() {
    // Arrange
    let (_app, kv) = vault_app().await;
    set(&kv, "present", "v").await;
    let no_such_version = "0123456789abcdef0123456789abcdef";
    let retag = || -> RequestContent<UpdateSecretPropertiesParameters> {
        UpdateSecretPropertiesParameters {
            tags: Some(tags(&[("a", "b")])),
            ..Default::default()
        }
        .try_into()
        .unwrap()
    };

    // Act
    let missing_secret = get(&kv, "absent", None).await.unwrap_err();
    let missing_version = get(&kv, "present", Some(no_such_version)).await.unwrap_err();
    let update_missing = kv
        .update_secret_properties("absent", retag(), None)
        .await
        .unwrap_err();
    let versions_of_missing = kv
        .list_secret_properties_versions("absent", None)
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    let not_deleted = kv.get_deleted_secret("present", None).await.unwrap_err();

    // Assert
    for error in [
        &missing_secret,
        &missing_version,
        &update_missing,
        &versions_of_missing,
        &not_deleted,
    ] {
        assert_eq!(http_error(error), (404, Some("SecretNotFound".into())), "{error}");
    }
}

#[tokio::test]
async fn reading_a_disabled_version_is_403_forbidden_with_secret_disabled() {
    // Arrange
    let (app, kv) = vault_app().await;
    let first = set(&kv, "s", "one").await;
    let second = set(&kv, "s", "two").await;
    let disable = UpdateSecretPropertiesParameters {
        secret_attributes: Some(SecretAttributes {
            enabled: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = SecretClientUpdateSecretPropertiesOptions {
        secret_version: Some(version_of(&first)),
        ..Default::default()
    };
    kv.update_secret_properties("s", disable.try_into().unwrap(), Some(options))
        .await
        .unwrap();
    app.control
        .add_secret_version(VAULT, "off", &json!({ "value": "x", "enabled": false }))
        .await
        .unwrap();

    // Act
    let disabled_version = get(&kv, "s", Some(&version_of(&first))).await.unwrap_err();
    let disabled_latest = get(&kv, "off", None).await.unwrap_err();
    let latest = get(&kv, "s", None).await.unwrap();
    let versions = all_items(kv.list_secret_properties_versions("s", None).unwrap()).await;

    // Assert
    for error in [&disabled_version, &disabled_latest] {
        assert_eq!(http_error(error), (403, some("Forbidden")));
        assert_eq!(service_codes(error), (some("Forbidden"), some("SecretDisabled")));
    }
    assert_eq!(latest.id, second.id, "the enabled latest version is still served");
    let disabled: Vec<String> = versions
        .iter()
        .filter(|p| p.attributes.as_ref().unwrap().enabled == Some(false))
        .map(|p| p.resource_id().unwrap().version.unwrap())
        .collect();
    assert_eq!(
        disabled,
        vec![version_of(&first)],
        "listing shows a disabled version"
    );
}

#[tokio::test]
async fn an_invalid_secret_name_is_400_bad_parameter() {
    // Arrange
    let (_app, kv) = vault_app().await;
    let longest = "n".repeat(127);

    // Act
    let underscore = kv
        .set_secret("bad_name", value_only("v"), None)
        .await
        .unwrap_err();
    let read_underscore = get(&kv, "bad_name", None).await.unwrap_err();
    let too_long = kv
        .set_secret(&"n".repeat(128), value_only("v"), None)
        .await
        .unwrap_err();
    let at_limit = kv.set_secret(&longest, value_only("v"), None).await;

    // Assert
    for error in [&underscore, &read_underscore, &too_long] {
        assert_eq!(http_error(error), (400, Some("BadParameter".into())));
    }
    assert!(at_limit.is_ok(), "127 characters are allowed: {at_limit:?}");
}

#[tokio::test]
async fn a_value_over_25_kb_is_400_bad_parameter_and_exactly_25_kb_is_accepted() {
    // Arrange
    let (_app, kv) = vault_app().await;
    let limit = "x".repeat(25 * 1024);
    let over = "x".repeat(25 * 1024 + 1);

    // Act
    let refused = kv.set_secret("big", value_only(&over), None).await.unwrap_err();
    set(&kv, "big", &limit).await;
    let read = get(&kv, "big", None).await.unwrap();

    // Assert
    // "Property has invalid value\r\n": the SDK reports the status as the code (module doc).
    assert_eq!(http_error(&refused), (400, some("400")));
    assert_eq!(service_codes(&refused), (some("BadParameter"), None));
    assert_eq!(read.value.map(|v| v.len()), Some(25 * 1024));
}

#[tokio::test]
async fn sixteen_tags_are_400_bad_parameter_and_fifteen_are_accepted() {
    // Arrange
    let (_app, kv) = vault_app().await;
    let with_tags = |n: usize| -> RequestContent<SetSecretParameters> {
        SetSecretParameters {
            value: Some("v".into()),
            tags: Some(numbered_tags(n)),
            ..Default::default()
        }
        .try_into()
        .unwrap()
    };
    let retag = UpdateSecretPropertiesParameters {
        tags: Some(numbered_tags(16)),
        ..Default::default()
    };

    // Act
    let sixteen = kv.set_secret("tagged", with_tags(16), None).await.unwrap_err();
    let fifteen = kv
        .set_secret("tagged", with_tags(15), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let update_to_sixteen = kv
        .update_secret_properties("tagged", retag.try_into().unwrap(), None)
        .await
        .unwrap_err();

    // Assert
    // "Property has invalid value\r\n": the SDK reports the status as the code (module doc).
    for error in [&sixteen, &update_to_sixteen] {
        assert_eq!(http_error(error), (400, some("400")));
        assert_eq!(service_codes(error), (some("BadParameter"), None));
    }
    assert_eq!(fifteen.tags.map(|t| t.len()), Some(15));
}

#[tokio::test]
async fn setting_a_soft_deleted_name_is_409_object_is_deleted_but_recoverable() {
    // Arrange
    let (_app, kv) = vault_app().await;
    set(&kv, "s", "v").await;
    kv.delete_secret("s", None).await.unwrap();

    // Act
    let error = kv.set_secret("s", value_only("again"), None).await.unwrap_err();

    // Assert
    assert_eq!(http_error(&error), (409, some("Conflict")));
    assert_eq!(
        service_codes(&error),
        (some("Conflict"), some("ObjectIsDeletedButRecoverable"))
    );
}

#[tokio::test]
async fn maxresults_outside_1_to_25_is_400_bad_parameter() {
    // Arrange
    let (app, kv) = vault_app().await;
    set(&kv, "s", "v").await;
    let token = vault_token(&app).await;
    let with_max = |max: &str| format!("/secrets?api-version={API_VERSION}&maxresults={max}");

    // Act
    let mut statuses = Vec::new();
    for max in ["0", "26", "1", "25"] {
        let response = raw_get(&app, &with_max(max), Some(&token)).await;
        let status = response.status().as_u16();
        let code = response.json::<Value>().await.unwrap()["error"]["code"]
            .as_str()
            .map(str::to_string);
        statuses.push((max, status, code));
    }
    let through_sdk = kv
        .list_secret_properties(Some(SecretClientListSecretPropertiesOptions {
            maxresults: Some(26),
            ..Default::default()
        }))
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();

    // Assert
    let bad = Some("BadParameter".to_string());
    assert_eq!(
        statuses,
        vec![
            ("0", 400, bad.clone()),
            ("26", 400, bad.clone()),
            ("1", 200, None),
            ("25", 200, None)
        ]
    );
    assert_eq!(http_error(&through_sdk), (400, bad));
}

#[tokio::test]
async fn an_unknown_api_version_is_400_bad_parameter_and_7_6_is_accepted() {
    // Arrange
    let (app, _kv) = vault_app().await;
    let old = app.secret_client_with(
        VAULT,
        SecretClientOptions {
            api_version: "1.0".into(),
            ..Default::default()
        },
    );
    let v7_6 = app.secret_client_with(
        VAULT,
        SecretClientOptions {
            api_version: "7.6".into(),
            ..Default::default()
        },
    );
    let token = vault_token(&app).await;

    // Act
    let refused = old.set_secret("s", value_only("v"), None).await.unwrap_err();
    set(&v7_6, "s", "v").await;
    let read = get(&v7_6, "s", None).await.unwrap();
    let without_version = raw_get(&app, "/secrets", Some(&token)).await;

    // Assert
    assert_eq!(http_error(&refused), (400, Some("BadParameter".into())));
    assert_eq!(read.value.as_deref(), Some("v"));
    let served: Vec<Option<String>> = ok_calls(&app, "SetSecret")
        .await
        .into_iter()
        .map(|c| c.api_version)
        .collect();
    assert_eq!(served, vec![Some("7.6".to_string())]);
    assert_eq!(without_version.status(), 400, "api-version is required");
    let body: Value = without_version.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BadParameter");
}

#[tokio::test]
async fn the_newest_sdk_defaults_2026_04_01_and_2026_03_01_preview_are_served_as_2025_07_01() {
    // Arrange
    let (app, _kv) = vault_app().await;
    for version in ["2026-04-01", "2026-03-01-preview"] {
        let client = app.secret_client_with(
            VAULT,
            SecretClientOptions {
                api_version: version.into(),
                ..Default::default()
            },
        );
        let name = format!("s-{}", version.replace('.', "-"));

        // Act
        set(&client, &name, "v1").await;
        set(&client, &name, "v2").await;
        let read = get(&client, &name, None).await.unwrap();

        // Assert: the same answers as 2025-07-01, and the calls carry the version asked for
        assert_eq!(read.value.as_deref(), Some("v2"), "{version}");
    }
    let served: Vec<String> = ok_calls(&app, "SetSecret")
        .await
        .into_iter()
        .filter_map(|c| c.api_version)
        .collect();
    assert_eq!(
        served,
        [
            "2026-04-01",
            "2026-04-01",
            "2026-03-01-preview",
            "2026-03-01-preview"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Soft delete, recover, purge.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_deleted_secret_is_hidden_listed_as_deleted_and_recovered_with_all_its_versions() {
    // Arrange
    let (app, kv) = vault_app().await;
    set(&kv, "s", "one").await;
    let latest = set(&kv, "s", "two").await;
    set(&kv, "keep", "k").await;
    let now = app.control.now().await.unwrap();

    // Act: delete.
    let deleted = kv.delete_secret("s", None).await.unwrap().into_model().unwrap();
    let read_deleted = get(&kv, "s", None).await.unwrap_err();
    let live_after_delete = names_of(&all_items(kv.list_secret_properties(None).unwrap()).await);
    let deleted_view = kv
        .get_deleted_secret("s", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let deleted_list: Vec<_> = kv
        .list_deleted_secret_properties(None)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    // Act: recover.
    let recovered = kv
        .recover_deleted_secret("s", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let read_recovered = get(&kv, "s", None).await.unwrap();
    let versions = all_items(kv.list_secret_properties_versions("s", None).unwrap()).await;
    let deleted_after_recover: Vec<_> = kv
        .list_deleted_secret_properties(None)
        .unwrap()
        .try_collect()
        .await
        .unwrap();

    // Assert: the deletion.
    assert_eq!(deleted.id, latest.id);
    assert_eq!(deleted.value, None);
    let recovery_id = format!("{VAULT_URL}/deletedsecrets/s");
    assert_eq!(deleted.recovery_id.as_deref(), Some(recovery_id.as_str()));
    let deleted_date = unix(deleted.deleted_date);
    assert!((now..now + 10).contains(&deleted_date));
    assert_eq!(unix(deleted.scheduled_purge_date), deleted_date + 90 * 86_400);
    assert_eq!(http_error(&read_deleted), (404, Some("SecretNotFound".into())));
    assert_eq!(live_after_delete, vec!["keep".to_string()]);
    assert_eq!(deleted_view.recovery_id.as_deref(), Some(recovery_id.as_str()));
    assert_eq!(deleted_view.id, latest.id);
    assert_eq!(deleted_list.len(), 1);
    assert_eq!(deleted_list[0].recovery_id.as_deref(), Some(recovery_id.as_str()));
    assert_eq!(
        deleted_list[0].id.as_deref(),
        Some(format!("{VAULT_URL}/secrets/s").as_str())
    );
    // Assert: the recovery.
    assert_eq!(recovered.id, latest.id);
    assert_eq!(read_recovered.value.as_deref(), Some("two"));
    assert_eq!(versions.len(), 2, "every version comes back");
    assert!(deleted_after_recover.is_empty());
}

#[tokio::test]
async fn a_purged_secret_is_gone_for_good_and_its_name_is_free_again() {
    // Arrange
    let (app, kv) = vault_app().await;
    set(&kv, "s", "one").await;
    set(&kv, "s", "two").await;
    set(&kv, "live", "l").await;
    kv.delete_secret("s", None).await.unwrap();

    // Act
    let purged = kv.purge_deleted_secret("s", None).await.unwrap();
    let deleted_view = kv.get_deleted_secret("s", None).await.unwrap_err();
    let deleted_list: Vec<_> = kv
        .list_deleted_secret_properties(None)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let purge_live = kv.purge_deleted_secret("live", None).await.unwrap_err();
    let reborn = set(&kv, "s", "fresh").await;

    // Assert
    assert_eq!(u16::from(purged.status()), 204);
    assert_eq!(http_error(&deleted_view), (404, Some("SecretNotFound".into())));
    assert!(deleted_list.is_empty());
    assert_eq!(
        http_error(&purge_live),
        (404, Some("SecretNotFound".into())),
        "only a deleted secret can be purged"
    );
    assert_eq!(get(&kv, "s", None).await.unwrap().value.as_deref(), Some("fresh"));
    let stored = app.control.secret(VAULT, "s").await.unwrap();
    assert_eq!(stored["versions"].as_array().unwrap().len(), 1);
    assert_eq!(stored["latest"], json!(version_of(&reborn)));
}

// ---------------------------------------------------------------------------------------------
// Injected faults meet the SDK's retry policy (helpers::fast_retry: 3 retries from 10 ms).
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_the_set_succeeds() {
    // Arrange
    let (app, kv) = vault_app().await;
    past_the_challenge(&app, &kv).await;
    app.control
        .fault(&FaultRule {
            retry_after_seconds: Some(1),
            ..fault("SetSecret", 429, 1)
        })
        .await
        .unwrap();

    // Act
    let written = set(&kv, "s", "v").await;

    // Assert
    assert_eq!(get(&kv, "s", None).await.unwrap().id, written.id);
    let calls = app.control.calls(Some("SetSecret")).await.unwrap();
    let outcome: Vec<(u16, bool)> = calls.iter().map(|c| (c.status, c.faulted)).collect();
    assert_eq!(outcome, vec![(429, true), (200, false)]);
}

#[tokio::test]
async fn an_injected_429_carries_throttled_and_retry_after_only_when_armed_with_one() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(json!({"vaults": [{"name": VAULT}]})).await;
    let token = app.control.token(VAULT_AUDIENCE).await.unwrap();
    app.control
        .fault(&FaultRule {
            retry_after_seconds: Some(7),
            ..fault("GetSecrets", 429, 1)
        })
        .await
        .unwrap();
    app.control.fault(&fault("GetSecrets", 429, 1)).await.unwrap();
    let list = || {
        app.http
            .get(format!("{VAULT_URL}/secrets?api-version={API_VERSION}"))
            .bearer_auth(&token)
            .send()
    };

    // Act
    let with_header = list().await.unwrap();
    let without_header = list().await.unwrap();

    // Assert: Key Vault's throttling body; Retry-After only where armed (real Key Vault omits it).
    assert_eq!(with_header.status(), 429);
    assert_eq!(with_header.headers()["retry-after"], "7");
    assert_eq!(without_header.status(), 429);
    assert!(without_header.headers().get("retry-after").is_none());
    let body: Value = without_header.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Throttled");
}

#[tokio::test]
async fn two_500s_without_retry_after_are_retried_and_the_third_attempt_succeeds() {
    // Arrange
    let (app, kv) = vault_app().await;
    past_the_challenge(&app, &kv).await;
    app.control.fault(&fault("SetSecret", 500, 2)).await.unwrap();

    // Act
    let written = set(&kv, "s", "v").await;

    // Assert
    assert_eq!(get(&kv, "s", None).await.unwrap().id, written.id);
    let calls = app.control.calls(Some("SetSecret")).await.unwrap();
    let outcome: Vec<(u16, bool)> = calls.iter().map(|c| (c.status, c.faulted)).collect();
    assert_eq!(outcome, vec![(500, true), (500, true), (200, false)]);
}

#[tokio::test]
async fn throttling_beyond_the_retry_budget_surfaces_429_throttled() {
    // Arrange: one attempt plus three retries, all throttled (no Retry-After, as Key Vault).
    let (app, kv) = vault_app().await;
    past_the_challenge(&app, &kv).await;
    app.control.fault(&fault("SetSecret", 429, 4)).await.unwrap();

    // Act
    let error = kv.set_secret("s", value_only("v"), None).await.unwrap_err();

    // Assert
    assert_eq!(http_error(&error), (429, Some("Throttled".into())));
    let calls = app.control.calls(Some("SetSecret")).await.unwrap();
    assert_eq!(calls.len(), 4, "1 attempt + 3 retries");
    assert!(calls.iter().all(|c| c.status == 429 && c.faulted));
    assert!(
        app.control.secret(VAULT, "s").await.is_err(),
        "nothing was written"
    );
}

#[tokio::test]
async fn a_lost_set_response_is_retried_and_leaves_two_versions() {
    // Arrange: the first SetSecret runs but its answer is replaced by a 500 (a lost response).
    let (app, kv) = vault_app().await;
    past_the_challenge(&app, &kv).await;
    app.control
        .fault(&FaultRule {
            phase: Phase::After,
            ..fault("SetSecret", 500, 1)
        })
        .await
        .unwrap();

    // Act
    let written = set(&kv, "s", "v").await;

    // Assert: the SDK saw a 500, retried the PUT and succeeded, so the caller sees one success
    // while the vault holds two versions. SetSecret is not idempotent: a caller whose write
    // failed (or was retried) must re-read the secret before concluding what the vault holds.
    let calls = app.control.calls(Some("SetSecret")).await.unwrap();
    let outcome: Vec<(u16, bool)> = calls.iter().map(|c| (c.status, c.faulted)).collect();
    assert_eq!(outcome, vec![(500, true), (200, false)]);
    let stored = app.control.secret(VAULT, "s").await.unwrap();
    let versions = stored["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().all(|v| v["value"] == "v"));
    assert_eq!(stored["latest"], json!(version_of(&written)));
}
