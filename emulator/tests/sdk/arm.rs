//! Resource Manager for `Microsoft.CognitiveServices/accounts`, driven through an official
//! `azure_core` pipeline with `BearerTokenAuthorizationPolicy`: Accounts_Get, listKeys,
//! regenerateKey, ARM's error contract, and how the pipeline's retries meet injected faults.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{Context, Method, RawResponse, Request, Url};
use azure_core::time::OffsetDateTime;
use emulator::ControlClient;
use emulator::faults::{FaultRule, LatencyRule, Phase};
use serde_json::{Value, json};

use crate::helpers::{
    ARM, RESOURCE_GROUP, SUBSCRIPTION, TestEmulator, account_id, account_seed, http_error, seed_account,
    spawn_emulator,
};

const API_VERSION: &str = "2025-06-01";

fn get_path(name: &str) -> String {
    format!("{}?api-version={API_VERSION}", account_id(name))
}

fn list_keys_path(name: &str) -> String {
    format!("{}/listKeys?api-version={API_VERSION}", account_id(name))
}

fn regenerate_path(name: &str) -> String {
    format!("{}/regenerateKey?api-version={API_VERSION}", account_id(name))
}

fn body_json(response: &RawResponse) -> Value {
    serde_json::from_slice(response.body()).expect("JSON body")
}

/// The JSON error body of a failed SDK call.
fn error_body(error: &azure_core::Error) -> Value {
    match error.kind() {
        azure_core::error::ErrorKind::HttpResponse {
            raw_response: Some(raw),
            ..
        } => serde_json::from_slice(raw.body()).expect("JSON error body"),
        other => panic!("expected an HTTP error with a body, got {other:?}: {error}"),
    }
}

/// `(key1, key2)` as the emulator holds them.
async fn stored_keys(app: &TestEmulator, name: &str) -> (String, String) {
    let account = app.control.account(name).await.unwrap();
    (
        account["key1"]["value"].as_str().unwrap().to_string(),
        account["key2"]["value"].as_str().unwrap().to_string(),
    )
}

async fn regenerations(app: &TestEmulator, name: &str) -> (u64, u64) {
    let account = app.control.account(name).await.unwrap();
    (
        account["regenerations"][0].as_u64().unwrap(),
        account["regenerations"][1].as_u64().unwrap(),
    )
}

fn fault(operation: &str, target: &str, status: u16) -> FaultRule {
    FaultRule {
        target: Some(target.into()),
        ..FaultRule::new(operation, status, 1)
    }
}

/// A credential that always asks the control API for a token of one fixed audience, whatever
/// scope the policy requests: a client configured for the wrong service.
#[derive(Debug)]
struct FixedAudienceCredential {
    control: ControlClient,
    audience: &'static str,
}

#[async_trait::async_trait]
impl TokenCredential for FixedAudienceCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let token = self.control.token(self.audience).await.map_err(|e| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string())
        })?;
        Ok(AccessToken::new(
            token,
            OffsetDateTime::now_utc() + Duration::from_secs(3600),
        ))
    }
}

/// Sends an ARM request through a pipeline whose credential gets tokens for `audience`.
async fn arm_with_audience(
    app: &TestEmulator,
    audience: &'static str,
    method: Method,
    path_and_query: &str,
) -> azure_core::Result<RawResponse> {
    let credential: Arc<dyn TokenCredential> = Arc::new(FixedAudienceCredential {
        control: app.control.clone(),
        audience,
    });
    let pipeline = crate::helpers::arm_pipeline(credential, app.client_options());
    let mut request = Request::new(Url::parse(&format!("{ARM}{path_and_query}")).unwrap(), method);
    request.insert_header("accept", "application/json");
    pipeline.send(&Context::new(), &mut request, None).await
}

// ---------------------------------------------------------------------------------------------
// Accounts_Get

#[tokio::test]
async fn accounts_get_describes_an_openai_account_with_its_openai_endpoint() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-get", "OpenAI")).await;

    // Act
    let response = app.arm(Method::Get, &get_path("aoai-get"), None).await.unwrap();

    // Assert
    let account = body_json(&response);
    assert_eq!(account["id"], json!(account_id("aoai-get")));
    assert_eq!(account["type"], "Microsoft.CognitiveServices/accounts");
    assert_eq!(account["kind"], "OpenAI");
    assert_eq!(
        account["properties"]["endpoint"],
        "https://aoai-get.openai.azure.com/"
    );
    assert_eq!(
        account["properties"]["endpoints"]["OpenAI Language Model Instance API"],
        "https://aoai-get.openai.azure.com/"
    );
    assert_eq!(account["properties"]["disableLocalAuth"], false);
}

#[tokio::test]
async fn accounts_get_describes_an_ai_services_account_on_its_custom_subdomain() {
    // Arrange
    let app = spawn_emulator().await;
    let mut seed = account_seed("foundry-get", "AIServices");
    seed["custom_subdomain"] = json!("contoso-foundry");
    seed["disable_local_auth"] = json!(true);
    seed_account(&app, seed).await;

    // Act
    let response = app
        .arm(Method::Get, &get_path("foundry-get"), None)
        .await
        .unwrap();

    // Assert
    let account = body_json(&response);
    assert_eq!(account["id"], json!(account_id("foundry-get")));
    assert_eq!(account["type"], "Microsoft.CognitiveServices/accounts");
    assert_eq!(account["kind"], "AIServices");
    assert_eq!(
        account["properties"]["endpoint"],
        "https://contoso-foundry.cognitiveservices.azure.com/"
    );
    assert_eq!(
        account["properties"]["endpoints"]["OpenAI Language Model Instance API"],
        "https://contoso-foundry.openai.azure.com/"
    );
    assert_eq!(account["properties"]["customSubDomainName"], "contoso-foundry");
    assert_eq!(account["properties"]["disableLocalAuth"], true);
}

// ---------------------------------------------------------------------------------------------
// listKeys and regenerateKey

#[tokio::test]
async fn list_keys_answers_both_current_keys() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-list", "OpenAI")).await;

    // Act
    let response = app
        .arm(Method::Post, &list_keys_path("aoai-list"), None)
        .await
        .unwrap();

    // Assert
    assert_eq!(
        body_json(&response),
        json!({"key1": "aoai-list-key1", "key2": "aoai-list-key2"})
    );
}

#[tokio::test]
async fn regenerate_key1_replaces_key1_with_the_next_seeded_value_and_keeps_key2() {
    // Arrange
    let app = spawn_emulator().await;
    let mut seed = account_seed("aoai-regen1", "OpenAI");
    seed["next_keys"] = json!(["deterministic-new-key1"]);
    seed_account(&app, seed).await;

    // Act
    let response = app
        .arm(
            Method::Post,
            &regenerate_path("aoai-regen1"),
            Some(json!({"keyName": "Key1"})),
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(
        body_json(&response),
        json!({"key1": "deterministic-new-key1", "key2": "aoai-regen1-key2"})
    );
    assert_eq!(
        stored_keys(&app, "aoai-regen1").await,
        (
            "deterministic-new-key1".to_string(),
            "aoai-regen1-key2".to_string()
        )
    );
    assert_eq!(regenerations(&app, "aoai-regen1").await, (1, 0));
    let listed = app
        .arm(Method::Post, &list_keys_path("aoai-regen1"), None)
        .await
        .unwrap();
    assert_eq!(body_json(&listed), body_json(&response));
}

#[tokio::test]
async fn regenerate_key2_replaces_key2_with_a_fresh_key_and_keeps_key1() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-regen2", "OpenAI")).await;

    // Act
    let response = app
        .arm(
            Method::Post,
            &regenerate_path("aoai-regen2"),
            Some(json!({"keyName": "Key2"})),
        )
        .await
        .unwrap();

    // Assert
    let keys = body_json(&response);
    assert_eq!(keys["key1"], "aoai-regen2-key1");
    let new_key2 = keys["key2"].as_str().unwrap();
    assert_ne!(new_key2, "aoai-regen2-key2");
    assert!(!new_key2.is_empty());
    assert_eq!(
        stored_keys(&app, "aoai-regen2").await,
        ("aoai-regen2-key1".to_string(), new_key2.to_string())
    );
    assert_eq!(regenerations(&app, "aoai-regen2").await, (0, 1));
}

// ---------------------------------------------------------------------------------------------
// Errors

#[tokio::test]
async fn a_request_without_a_token_is_refused_with_authentication_failed_and_a_challenge() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-anon", "OpenAI")).await;

    // Act
    let response = app
        .http
        .post(format!("{ARM}{}", list_keys_path("aoai-anon")))
        .body("")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 401);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("WWW-Authenticate present")
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_with_invalid_authentication_token_audience() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-aud", "OpenAI")).await;

    // Act
    let error = arm_with_audience(
        &app,
        "https://vault.azure.net",
        Method::Post,
        &list_keys_path("aoai-aud"),
    )
    .await
    .unwrap_err();

    // Assert
    assert_eq!(
        http_error(&error),
        (401, Some("InvalidAuthenticationTokenAudience".into()))
    );
}

#[tokio::test]
async fn an_unknown_account_is_resource_not_found() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-known", "OpenAI")).await;

    // Act
    let error = app
        .arm(Method::Get, &get_path("aoai-unknown"), None)
        .await
        .unwrap_err();

    // Assert
    assert_eq!(http_error(&error), (404, Some("ResourceNotFound".into())));
}

#[tokio::test]
async fn a_request_without_api_version_is_refused_with_missing_api_version_parameter() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-nover", "OpenAI")).await;

    // Act
    let error = app
        .arm(
            Method::Post,
            &format!("{}/listKeys", account_id("aoai-nover")),
            None,
        )
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        http_error(&error),
        (400, Some("MissingApiVersionParameter".into()))
    );
}

#[tokio::test]
async fn an_unknown_api_version_is_refused_with_no_registered_provider_found() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-oldver", "OpenAI")).await;

    // Act
    let error = app
        .arm(
            Method::Post,
            &format!("{}/listKeys?api-version=1999-01-01", account_id("aoai-oldver")),
            None,
        )
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        http_error(&error),
        (400, Some("NoRegisteredProviderFound".into()))
    );
}

#[tokio::test]
async fn regenerate_key_refuses_an_unknown_key_name_and_a_missing_body_and_keeps_the_keys() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-badbody", "OpenAI")).await;

    // Act
    let unknown_name = app
        .arm(
            Method::Post,
            &regenerate_path("aoai-badbody"),
            Some(json!({"keyName": "key3"})),
        )
        .await
        .unwrap_err();
    let missing_body = app
        .arm(Method::Post, &regenerate_path("aoai-badbody"), None)
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        http_error(&unknown_name),
        (400, Some("InvalidRequestContent".into()))
    );
    assert_eq!(
        http_error(&missing_body),
        (400, Some("InvalidRequestContent".into()))
    );
    assert_eq!(
        stored_keys(&app, "aoai-badbody").await,
        ("aoai-badbody-key1".to_string(), "aoai-badbody-key2".to_string())
    );
    assert_eq!(regenerations(&app, "aoai-badbody").await, (0, 0));
}

#[tokio::test]
async fn a_caller_outside_allowed_principals_is_refused_with_authorization_failed() {
    // Arrange
    let app = spawn_emulator().await;
    let mut seed = account_seed("aoai-rbac", "OpenAI");
    seed["allowed_principals"] = json!(["11111111-2222-3333-4444-555555555555"]);
    seed_account(&app, seed).await;

    // Act
    let error = app
        .arm(Method::Post, &list_keys_path("aoai-rbac"), None)
        .await
        .unwrap_err();

    // Assert
    assert_eq!(http_error(&error), (403, Some("AuthorizationFailed".into())));
    let message = error_body(&error)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&app.info.system_identity.principal_id),
        "the message names the caller: {message}"
    );
}

#[tokio::test]
async fn a_caller_listed_in_allowed_principals_may_list_keys() {
    // Arrange
    let app = spawn_emulator().await;
    let mut seed = account_seed("aoai-rbac-ok", "OpenAI");
    seed["allowed_principals"] = json!([app.info.system_identity.principal_id]);
    seed_account(&app, seed).await;

    // Act
    let response = app
        .arm(Method::Post, &list_keys_path("aoai-rbac-ok"), None)
        .await
        .unwrap();

    // Assert
    assert_eq!(body_json(&response)["key1"], "aoai-rbac-ok-key1");
}

#[tokio::test]
async fn disable_local_auth_refuses_list_keys_and_regenerate_key_and_keeps_the_keys() {
    // Arrange
    let app = spawn_emulator().await;
    let mut seed = account_seed("aoai-nolocal", "OpenAI");
    seed["disable_local_auth"] = json!(true);
    seed_account(&app, seed).await;

    // Act
    let list = app
        .arm(Method::Post, &list_keys_path("aoai-nolocal"), None)
        .await
        .unwrap_err();
    let regenerate = app
        .arm(
            Method::Post,
            &regenerate_path("aoai-nolocal"),
            Some(json!({"keyName": "Key1"})),
        )
        .await
        .unwrap_err();

    // Assert
    assert_eq!(http_error(&list), (400, Some("BadRequest".into())));
    assert_eq!(
        error_body(&list)["error"]["message"],
        "Failed to list key. disableLocalAuth is set to be true"
    );
    assert_eq!(http_error(&regenerate), (400, Some("BadRequest".into())));
    assert_eq!(
        stored_keys(&app, "aoai-nolocal").await,
        ("aoai-nolocal-key1".to_string(), "aoai-nolocal-key2".to_string())
    );
    assert_eq!(regenerations(&app, "aoai-nolocal").await, (0, 0));
}

#[tokio::test]
async fn paths_and_namespaces_are_matched_case_insensitively() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-case", "OpenAI")).await;
    let shouted = format!(
        "/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/{}/providers/microsoft.cognitiveservices/ACCOUNTS/AOAI-CASE",
        RESOURCE_GROUP.to_uppercase()
    );

    // Act
    let keys = app
        .arm(
            Method::Post,
            &format!("{shouted}/LISTKEYS?api-version={API_VERSION}"),
            None,
        )
        .await
        .unwrap();
    let account = app
        .arm(Method::Get, &format!("{shouted}?api-version={API_VERSION}"), None)
        .await
        .unwrap();

    // Assert
    assert_eq!(
        body_json(&keys),
        json!({"key1": "aoai-case-key1", "key2": "aoai-case-key2"})
    );
    assert_eq!(body_json(&account)["id"], json!(account_id("aoai-case")));
    let calls = app.control.calls(Some("Accounts_ListKeys")).await.unwrap();
    assert_eq!(calls.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Faults, retries and latency

#[tokio::test]
async fn a_500_on_regenerate_key_is_retried_by_the_pipeline_and_succeeds() {
    // Arrange
    let app = spawn_emulator().await;
    let mut seed = account_seed("aoai-500", "OpenAI");
    seed["next_keys"] = json!(["after-retry-key1"]);
    seed_account(&app, seed).await;
    app.control
        .fault(&fault("Accounts_RegenerateKey", "aoai-500", 500))
        .await
        .unwrap();

    // Act
    let response = app
        .arm(
            Method::Post,
            &regenerate_path("aoai-500"),
            Some(json!({"keyName": "Key1"})),
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(body_json(&response)["key1"], "after-retry-key1");
    let calls = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    let outcomes: Vec<_> = calls.iter().map(|c| (c.status, c.faulted)).collect();
    assert_eq!(outcomes, vec![(500, true), (200, false)]);
    assert_eq!(regenerations(&app, "aoai-500").await, (1, 0));
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_the_call_succeeds() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-429", "OpenAI")).await;
    app.control
        .fault(&FaultRule {
            retry_after_seconds: Some(1),
            ..fault("Accounts_RegenerateKey", "aoai-429", 429)
        })
        .await
        .unwrap();

    // Act
    let response = app
        .arm(
            Method::Post,
            &regenerate_path("aoai-429"),
            Some(json!({"keyName": "Key2"})),
        )
        .await
        .unwrap();

    // Assert
    let (key1, key2) = stored_keys(&app, "aoai-429").await;
    assert_eq!(body_json(&response), json!({"key1": key1, "key2": key2}));
    let calls = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    let outcomes: Vec<_> = calls.iter().map(|c| (c.status, c.faulted)).collect();
    assert_eq!(outcomes, vec![(429, true), (200, false)]);
}

#[tokio::test]
async fn a_503_that_outlasts_the_retries_surfaces_as_an_error_and_changes_nothing() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-503", "OpenAI")).await;
    app.control
        .fault(&FaultRule {
            count: 10,
            ..fault("Accounts_RegenerateKey", "aoai-503", 503)
        })
        .await
        .unwrap();

    // Act
    let error = app
        .arm(
            Method::Post,
            &regenerate_path("aoai-503"),
            Some(json!({"keyName": "Key1"})),
        )
        .await
        .unwrap_err();

    // Assert
    assert_eq!(http_error(&error).0, 503);
    let calls = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    // One try plus the three retries of `fast_retry`, all answered by the fault.
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.status == 503 && c.faulted));
    assert_eq!(
        stored_keys(&app, "aoai-503").await,
        ("aoai-503-key1".to_string(), "aoai-503-key2".to_string())
    );
}

/// The retry gotcha: a regenerateKey whose response is lost is re-sent by the pipeline and
/// regenerates the slot a second time, so only the final response (or listKeys) holds the key.
#[tokio::test]
async fn a_lost_regenerate_response_is_retried_and_regenerates_the_slot_twice() {
    // Arrange
    let app = spawn_emulator().await;
    let mut seed = account_seed("aoai-lost", "OpenAI");
    seed["next_keys"] = json!(["lost-key1", "final-key1"]);
    seed_account(&app, seed).await;
    app.control
        .fault(&FaultRule {
            phase: Phase::After,
            ..fault("Accounts_RegenerateKey", "aoai-lost", 500)
        })
        .await
        .unwrap();

    // Act
    let response = app
        .arm(
            Method::Post,
            &regenerate_path("aoai-lost"),
            Some(json!({"keyName": "Key1"})),
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(regenerations(&app, "aoai-lost").await, (2, 0));
    assert_eq!(
        body_json(&response),
        json!({"key1": "final-key1", "key2": "aoai-lost-key2"})
    );
    assert_eq!(
        stored_keys(&app, "aoai-lost").await,
        ("final-key1".to_string(), "aoai-lost-key2".to_string())
    );
    let listed = app
        .arm(Method::Post, &list_keys_path("aoai-lost"), None)
        .await
        .unwrap();
    assert_eq!(body_json(&listed)["key1"], "final-key1");
    let calls = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    let outcomes: Vec<_> = calls.iter().map(|c| (c.status, c.faulted)).collect();
    assert_eq!(outcomes, vec![(500, true), (200, false)]);
}

#[tokio::test]
async fn injected_latency_delays_a_call_that_still_completes_and_is_logged() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-slow", "OpenAI")).await;
    app.control
        .latency(&LatencyRule {
            operation: "Accounts_ListKeys".into(),
            target: Some("aoai-slow".into()),
            delay_ms: 300,
            count: Some(1),
        })
        .await
        .unwrap();

    // Act
    let response = app
        .arm(Method::Post, &list_keys_path("aoai-slow"), None)
        .await
        .unwrap();

    // Assert
    assert_eq!(body_json(&response)["key1"], "aoai-slow-key1");
    let calls = app.control.calls(Some("Accounts_ListKeys")).await.unwrap();
    let outcomes: Vec<_> = calls.iter().map(|c| (c.status, c.faulted)).collect();
    assert_eq!(outcomes, vec![(200, false)]);
    let armed = app.control.get("/faults").await.unwrap();
    assert_eq!(armed["latency"], json!([]), "a one-shot latency rule is used up");
}
