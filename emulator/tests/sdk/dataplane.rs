//! The AI services data planes, called on the real host names over TLS with raw HTTP: which keys
//! and headers each route accepts, the services' refusal bodies, and how a regeneration through
//! Resource Manager (the official pipeline) and the emulator's clock decide which key works.

use azure_core::http::Method;
use serde_json::{Value, json};

use crate::helpers::{TestEmulator, account_id, account_seed, seed_account, spawn_emulator};

const MODELS_API_VERSION: &str = "2024-10-21";
const ARM_API_VERSION: &str = "2025-06-01";
const INVALID_KEY_MESSAGE: &str = "Access denied due to invalid subscription key or wrong API endpoint";

fn models_url(host: &str) -> String {
    format!("https://{host}/openai/models?api-version={MODELS_API_VERSION}")
}

/// `GET /openai/models` on `host` with `api-key: <key>`.
async fn list_models(app: &TestEmulator, host: &str, key: &str) -> reqwest::Response {
    app.http
        .get(models_url(host))
        .header("api-key", key)
        .send()
        .await
        .unwrap()
}

async fn json_body(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

fn assert_model_list(body: &Value) {
    assert_eq!(body["object"], "list", "{body}");
    let data = body["data"].as_array().expect("data is an array");
    assert!(!data.is_empty(), "{body}");
    assert!(data.iter().all(|m| m["object"] == "model" && m["id"].is_string()));
}

/// The key slots of the `Models_List` calls logged so far, oldest first.
async fn models_key_slots(app: &TestEmulator) -> Vec<Option<String>> {
    app.control
        .calls(Some("Models_List"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.key_slot)
        .collect()
}

async fn regenerate(app: &TestEmulator, name: &str, key_name: &str) -> Value {
    let response = app
        .arm(
            Method::Post,
            &format!("{}/regenerateKey?api-version={ARM_API_VERSION}", account_id(name)),
            Some(json!({ "keyName": key_name })),
        )
        .await
        .unwrap();
    serde_json::from_slice(response.body()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Accepted calls

#[tokio::test]
async fn an_openai_account_lists_models_with_key1_in_api_key_and_key2_in_ocp_apim_subscription_key() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-models", "OpenAI")).await;

    // Act
    let with_api_key = list_models(&app, "aoai-models.openai.azure.com", "aoai-models-key1").await;
    let with_subscription_key = app
        .http
        .get(models_url("aoai-models.openai.azure.com"))
        .header("Ocp-Apim-Subscription-Key", "aoai-models-key2")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(with_api_key.status(), 200);
    assert_model_list(&json_body(with_api_key).await);
    assert_eq!(with_subscription_key.status(), 200);
    assert_model_list(&json_body(with_subscription_key).await);
    assert_eq!(
        models_key_slots(&app).await,
        vec![Some("key1".to_string()), Some("key2".to_string())]
    );
}

#[tokio::test]
async fn the_v1_models_route_accepts_the_key_as_a_bearer_token() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-v1", "OpenAI")).await;

    // Act
    let response = app
        .http
        .get("https://aoai-v1.openai.azure.com/openai/v1/models")
        .header("Authorization", "Bearer aoai-v1-key2")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 200);
    assert_model_list(&json_body(response).await);
    assert_eq!(models_key_slots(&app).await, vec![Some("key2".to_string())]);
}

#[tokio::test]
async fn an_ai_services_account_lists_models_on_its_cognitive_services_and_openai_hosts() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("foundry-models", "AIServices")).await;

    // Act
    let on_cognitive = list_models(
        &app,
        "foundry-models.cognitiveservices.azure.com",
        "foundry-models-key1",
    )
    .await;
    let on_openai = list_models(&app, "foundry-models.openai.azure.com", "foundry-models-key2").await;
    let v1_on_openai = app
        .http
        .get("https://foundry-models.openai.azure.com/openai/v1/models")
        .header("api-key", "foundry-models-key1")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(on_cognitive.status(), 200);
    assert_model_list(&json_body(on_cognitive).await);
    assert_eq!(on_openai.status(), 200);
    assert_model_list(&json_body(on_openai).await);
    assert_eq!(v1_on_openai.status(), 200);
    assert_model_list(&json_body(v1_on_openai).await);
    assert_eq!(
        models_key_slots(&app).await,
        vec![
            Some("key1".to_string()),
            Some("key2".to_string()),
            Some("key1".to_string())
        ]
    );
}

#[tokio::test]
async fn issue_token_on_the_cognitive_services_host_answers_a_token_as_text() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("foundry-sts", "AIServices")).await;

    // Act
    let response = app
        .http
        .post("https://foundry-sts.cognitiveservices.azure.com/sts/v1.0/issueToken")
        .header("Ocp-Apim-Subscription-Key", "foundry-sts-key1")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let token = response.text().await.unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let calls = app.control.calls(Some("IssueToken")).await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].key_slot.as_deref(), Some("key1"));
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn a_wrong_key_is_refused_with_the_access_denied_body() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-wrong", "OpenAI")).await;

    // Act
    let response = list_models(&app, "aoai-wrong.openai.azure.com", "not-a-key-of-this-account").await;

    // Assert
    assert_eq!(response.status(), 401);
    let body = json_body(response).await;
    assert_eq!(body["error"]["code"], "401");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(INVALID_KEY_MESSAGE), "{message}");
    assert_eq!(models_key_slots(&app).await, vec![None]);
}

#[tokio::test]
async fn a_request_without_a_key_is_refused_as_missing_subscription_key() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-nokey", "OpenAI")).await;

    // Act
    let response = app
        .http
        .get(models_url("aoai-nokey.openai.azure.com"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 401);
    let body = json_body(response).await;
    assert_eq!(body["error"]["code"], "401");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("missing subscription key"), "{message}");
}

#[tokio::test]
async fn disabling_local_auth_refuses_a_valid_key_with_authentication_type_disabled() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-entra-only", "OpenAI")).await;
    app.control
        .patch_account("aoai-entra-only", &json!({"disable_local_auth": true}))
        .await
        .unwrap();

    // Act
    let response = list_models(&app, "aoai-entra-only.openai.azure.com", "aoai-entra-only-key1").await;

    // Assert
    assert_eq!(response.status(), 403);
    let body = json_body(response).await;
    assert_eq!(body["error"]["code"], "AuthenticationTypeDisabled");
}

#[tokio::test]
async fn a_models_request_without_api_version_is_not_found() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-nover", "OpenAI")).await;

    // Act
    let response = app
        .http
        .get("https://aoai-nover.openai.azure.com/openai/models")
        .header("api-key", "aoai-nover-key1")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 404);
    assert_eq!(json_body(response).await["error"]["code"], "404");
}

#[tokio::test]
async fn an_unknown_subdomain_is_not_found() {
    // Arrange
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-real", "OpenAI")).await;

    // Act
    let response = list_models(&app, "aoai-imaginary.openai.azure.com", "aoai-real-key1").await;

    // Assert
    assert_eq!(response.status(), 404);
    assert_eq!(json_body(response).await["error"]["code"], "404");
}

// ---------------------------------------------------------------------------------------------
// Regeneration through Resource Manager

#[tokio::test]
async fn a_key_regenerated_through_arm_is_refused_at_once_while_the_new_and_other_keys_work() {
    // Arrange
    let app = spawn_emulator().await;
    let mut seed = account_seed("aoai-rotate", "OpenAI");
    seed["next_keys"] = json!(["aoai-rotate-new-key1"]);
    seed_account(&app, seed).await;
    let host = "aoai-rotate.openai.azure.com";

    // Act
    let keys = regenerate(&app, "aoai-rotate", "Key1").await;
    let old_key1 = list_models(&app, host, "aoai-rotate-key1").await.status();
    let new_key1 = list_models(&app, host, "aoai-rotate-new-key1").await.status();
    let untouched_key2 = list_models(&app, host, "aoai-rotate-key2").await.status();

    // Assert
    assert_eq!(
        keys,
        json!({"key1": "aoai-rotate-new-key1", "key2": "aoai-rotate-key2"})
    );
    assert_eq!(old_key1, 401);
    assert_eq!(new_key1, 200);
    assert_eq!(untouched_key2, 200);
    assert_eq!(
        models_key_slots(&app).await,
        vec![None, Some("key1".to_string()), Some("key2".to_string())]
    );
}

#[tokio::test]
async fn a_new_key_is_refused_until_the_activation_delay_has_passed_on_the_emulator_clock() {
    // Arrange
    let app = spawn_emulator().await;
    app.control.freeze_clock(true).await.unwrap();
    let mut seed = account_seed("aoai-delay", "OpenAI");
    seed["key_activation_delay_seconds"] = json!(90);
    seed["next_keys"] = json!(["aoai-delay-new-key2"]);
    seed_account(&app, seed).await;
    let host = "aoai-delay.openai.azure.com";
    let keys = regenerate(&app, "aoai-delay", "Key2").await;
    assert_eq!(keys["key2"], "aoai-delay-new-key2");
    let valid_from = app.control.account("aoai-delay").await.unwrap()["key2"]["valid_from"]
        .as_i64()
        .unwrap();

    // Act and assert: refused right after the regeneration
    let at_once = list_models(&app, host, "aoai-delay-new-key2").await.status();
    assert_eq!(at_once, 401);

    // Act and assert: still refused 89 seconds later
    app.control.advance_clock(89).await.unwrap();
    let almost = list_models(&app, host, "aoai-delay-new-key2").await.status();
    assert_eq!(almost, 401, "refused one second before the key activates");
    assert_eq!(app.control.now().await.unwrap(), valid_from - 1);

    // Act and assert: accepted once the 90th second is reached
    app.control.advance_clock(1).await.unwrap();
    let activated = list_models(&app, host, "aoai-delay-new-key2").await.status();
    assert_eq!(activated, 200);
    let untouched_key1 = list_models(&app, host, "aoai-delay-key1").await.status();
    assert_eq!(untouched_key1, 200);
}
