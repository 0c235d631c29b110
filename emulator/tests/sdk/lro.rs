//! Long-running regenerations (an account's `long_running` setting): the 202 with its polling
//! headers, the operation-status and Location URLs while running and at the end, completion on
//! the emulator's clock, a failed operation, and the count of regenerations of a key that a
//! vault's latest version holds (`active_regenerations`). Driven through an official
//! `azure_core` pipeline like the other ARM tests.

use azure_core::http::{Method, RawResponse};
use emulator::faults::{FaultRule, Phase};
use emulator::operations::{LongRunning, OperationStatus};
use serde_json::{Value, json};

use crate::helpers::{ARM, TestEmulator, account_id, account_seed, http_error, seed_account, spawn_emulator};

const API_VERSION: &str = "2025-06-01";

fn regenerate_path(name: &str) -> String {
    format!("{}/regenerateKey?api-version={API_VERSION}", account_id(name))
}

fn long_running(seconds: i64, outcome: OperationStatus) -> LongRunning {
    LongRunning {
        complete_after_seconds: seconds,
        retry_after_seconds: 2,
        outcome,
        poll_base: None,
    }
}

/// Seeds an account whose regenerations take `seconds` and end with `outcome`, on a frozen clock.
async fn lro_account(name: &str, seconds: i64, outcome: OperationStatus) -> TestEmulator {
    let app = spawn_emulator().await;
    let mut seed = account_seed(name, "OpenAI");
    seed["next_keys"] = json!([format!("{name}-new")]);
    seed["long_running"] = json!(long_running(seconds, outcome));
    seed_account(&app, seed).await;
    app.control.freeze_clock(true).await.unwrap();
    app
}

fn header(response: &RawResponse, name: &'static str) -> String {
    response
        .headers()
        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_string()
}

/// The path and query of an absolute polling URL on the ARM host.
fn on_arm(url: &str) -> String {
    url.strip_prefix(ARM)
        .unwrap_or_else(|| panic!("{url} is not on {ARM}"))
        .to_string()
}

async fn key(app: &TestEmulator, name: &str, slot: &str) -> String {
    app.control.account(name).await.unwrap()[slot]["value"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn start_regeneration(app: &TestEmulator, name: &str, key_name: &str) -> (String, String) {
    let response = app
        .arm(
            Method::Post,
            &regenerate_path(name),
            Some(json!({ "keyName": key_name })),
        )
        .await
        .unwrap();
    assert_eq!(u16::from(response.status()), 202);
    assert!(response.body().is_empty());
    assert_eq!(header(&response, "retry-after"), "2");
    (
        header(&response, "azure-asyncoperation"),
        header(&response, "location"),
    )
}

fn body(response: &RawResponse) -> Value {
    serde_json::from_slice(response.body()).expect("JSON body")
}

#[tokio::test]
async fn a_long_running_regeneration_answers_202_and_changes_the_key_only_when_it_ends() {
    // Arrange
    let app = lro_account("aoai-lro", 30, OperationStatus::Succeeded).await;
    let started = app.control.now().await.unwrap();

    // Act
    let (status_url, location) = start_regeneration(&app, "aoai-lro", "Key2").await;

    // Assert: the URLs follow ARM's convention; running: the key is unchanged
    let prefix = format!(
        "{ARM}/subscriptions/{}/providers/Microsoft.CognitiveServices/locations/eastus/",
        crate::helpers::SUBSCRIPTION
    );
    assert!(
        status_url.starts_with(&format!("{prefix}operationStatuses/")),
        "{status_url}"
    );
    assert!(
        location.starts_with(&format!("{prefix}operationResults/")),
        "{location}"
    );
    assert!(status_url.ends_with("?api-version=2025-06-01"), "{status_url}");
    let running = app.arm(Method::Get, &on_arm(&status_url), None).await.unwrap();
    assert_eq!(u16::from(running.status()), 200);
    assert_eq!(header(&running, "retry-after"), "2");
    let running = body(&running);
    assert_eq!(running["status"], "InProgress");
    assert!(running["startTime"].is_string() && running.get("endTime").is_none());
    assert!(
        running["id"]
            .as_str()
            .unwrap()
            .ends_with(running["name"].as_str().unwrap())
    );
    let result = app.arm(Method::Get, &on_arm(&location), None).await.unwrap();
    assert_eq!(u16::from(result.status()), 202);
    assert_eq!(header(&result, "location"), location);
    assert_eq!(key(&app, "aoai-lro", "key2").await, "aoai-lro-key2");

    // Act: one second short of the end, then the end
    app.control.advance_clock(29).await.unwrap();
    let still = body(&app.arm(Method::Get, &on_arm(&status_url), None).await.unwrap());
    app.control.advance_clock(1).await.unwrap();

    // Assert: it ended on the emulator's clock; the slot has its new key, key1 is untouched
    assert_eq!(still["status"], "InProgress");
    assert_eq!(key(&app, "aoai-lro", "key2").await, "aoai-lro-new");
    assert_eq!(key(&app, "aoai-lro", "key1").await, "aoai-lro-key1");
    let done = body(&app.arm(Method::Get, &on_arm(&status_url), None).await.unwrap());
    assert_eq!(done["status"], "Succeeded");
    assert!(done["endTime"].is_string() && done.get("error").is_none());
    let result = app.arm(Method::Get, &on_arm(&location), None).await.unwrap();
    assert_eq!(u16::from(result.status()), 200);
    assert_eq!(body(&result)["key2"], "aoai-lro-new");
    let account = app.control.account("aoai-lro").await.unwrap();
    assert_eq!(account["regenerations"], json!([0, 1]));
    assert_eq!(account["key2"]["valid_from"], json!(started + 30));
    let operations = app.control.operations().await.unwrap();
    assert_eq!(operations.len(), 1);
    assert_eq!(operations[0].status, OperationStatus::Succeeded);
    assert_eq!(operations[0].end_time, started + 30);

    // Assert: every poll is in the call log under its own operation, with the caller
    let principal = app.info.system_identity.principal_id.clone();
    for (operation, count) in [("OperationStatuses_Get", 3), ("OperationResults_Get", 2)] {
        let calls = app.control.calls(Some(operation)).await.unwrap();
        assert_eq!(calls.len(), count, "{operation}");
        assert!(
            calls
                .iter()
                .all(|c| c.caller.as_deref() == Some(principal.as_str()))
        );
        assert!(calls.iter().all(|c| c.target == account_id("aoai-lro")));
    }
}

#[tokio::test]
async fn a_new_key_from_a_long_running_regeneration_waits_for_the_activation_delay() {
    // Arrange: the operation takes 10 s, then the new key needs 60 s more
    let app = lro_account("aoai-slowkey", 10, OperationStatus::Succeeded).await;
    app.control
        .patch_account("aoai-slowkey", &json!({"key_activation_delay_seconds": 60}))
        .await
        .unwrap();
    let started = app.control.now().await.unwrap();

    // Act
    start_regeneration(&app, "aoai-slowkey", "Key1").await;
    app.control.advance_clock(10).await.unwrap();

    // Assert
    let account = app.control.account("aoai-slowkey").await.unwrap();
    assert_eq!(account["key1"]["value"], "aoai-slowkey-new");
    assert_eq!(account["key1"]["valid_from"], json!(started + 70));
}

#[tokio::test]
async fn a_failed_operation_leaves_the_key_and_says_why() {
    // Arrange
    let app = lro_account("aoai-fail", 5, OperationStatus::Failed).await;
    let (status_url, location) = start_regeneration(&app, "aoai-fail", "Key2").await;

    // Act
    app.control.advance_clock(5).await.unwrap();

    // Assert
    let done = body(&app.arm(Method::Get, &on_arm(&status_url), None).await.unwrap());
    assert_eq!(done["status"], "Failed");
    assert_eq!(done["error"]["code"], "KeyRegenerationFailed");
    assert!(done["endTime"].is_string());
    let error = app.arm(Method::Get, &on_arm(&location), None).await.unwrap_err();
    assert_eq!(http_error(&error), (400, Some("KeyRegenerationFailed".into())));
    assert_eq!(key(&app, "aoai-fail", "key2").await, "aoai-fail-key2");
    assert_eq!(
        app.control.account("aoai-fail").await.unwrap()["regenerations"],
        json!([0, 0])
    );
}

#[tokio::test]
async fn an_operation_whose_outcome_is_in_progress_never_ends() {
    let app = lro_account("aoai-stuck", 0, OperationStatus::InProgress).await;
    let (status_url, _) = start_regeneration(&app, "aoai-stuck", "Key2").await;
    app.control.advance_clock(86_400).await.unwrap();
    let polled = body(&app.arm(Method::Get, &on_arm(&status_url), None).await.unwrap());
    assert_eq!(polled["status"], "InProgress");
    assert_eq!(key(&app, "aoai-stuck", "key2").await, "aoai-stuck-key2");
}

#[tokio::test]
async fn polling_urls_need_a_token_are_faulted_by_name_and_unknown_ids_are_not_found() {
    // Arrange
    let app = lro_account("aoai-poll", 5, OperationStatus::Succeeded).await;
    let (status_url, location) = start_regeneration(&app, "aoai-poll", "Key2").await;

    // Act + Assert: no token
    let anonymous = app.http.get(&status_url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let anonymous: Value = anonymous.json().await.unwrap();
    assert_eq!(anonymous["error"]["code"], "AuthenticationFailed");

    // Act + Assert: a fault armed on the poll's operation name strikes it (no retries here)
    app.control
        .fault(&FaultRule {
            target: Some("aoai-poll".into()),
            ..FaultRule::new("OperationResults_Get", 409, 1)
        })
        .await
        .unwrap();
    let error = app.arm(Method::Get, &on_arm(&location), None).await.unwrap_err();
    assert_eq!(http_error(&error).0, 409);
    let calls = app.control.calls(Some("OperationResults_Get")).await.unwrap();
    assert!(calls.last().is_some_and(|c| c.faulted));

    // Act + Assert: an id the emulator never issued
    let unknown = status_url.replace("/operationStatuses/", "/operationStatuses/0000");
    let error = app.arm(Method::Get, &on_arm(&unknown), None).await.unwrap_err();
    assert_eq!(http_error(&error), (404, Some("OperationNotFound".into())));

    // Act + Assert: the api-version is checked like on every ARM route
    let no_version = on_arm(&status_url).replace("?api-version=2025-06-01", "");
    let error = app.arm(Method::Get, &no_version, None).await.unwrap_err();
    assert_eq!(
        http_error(&error),
        (400, Some("MissingApiVersionParameter".into()))
    );
}

#[tokio::test]
async fn long_running_is_switched_off_with_null_and_regenerations_answer_at_once_again() {
    let app = lro_account("aoai-toggle", 5, OperationStatus::Succeeded).await;
    app.control.set_long_running("aoai-toggle", None).await.unwrap();
    let response = app
        .arm(
            Method::Post,
            &regenerate_path("aoai-toggle"),
            Some(json!({"keyName": "Key1"})),
        )
        .await
        .unwrap();
    assert_eq!(u16::from(response.status()), 200);
    assert_eq!(body(&response)["key1"], "aoai-toggle-new");
    let account = app.control.account("aoai-toggle").await.unwrap();
    assert_eq!(account["long_running"], Value::Null);
}

/// A vault `kv1` whose secret `aoai-key`'s latest version holds `value`.
async fn seed_secret_holding(app: &TestEmulator, value: &str) {
    app.seed(
        json!({"vaults": [{"name": "kv1", "secrets": [{"name": "aoai-key", "versions": [
            {"value": "an-older-value"}, {"value": value, "tags": {"CredentialId": "key1"}}
        ]}]}]}),
    )
    .await;
}

#[tokio::test]
async fn regenerating_a_key_a_latest_version_holds_is_counted_with_who_did_it() {
    // Arrange: the secret's latest version holds key1
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-active", "OpenAI")).await;
    seed_secret_holding(&app, "aoai-active-key1").await;
    let secret = app.control.secret("kv1", "aoai-key").await.unwrap();
    let latest = secret["latest"].as_str().unwrap().to_string();

    // Act: the idle key2, then the active key1 (its answer lost: the change still counts)
    for key_name in ["Key2", "Key1"] {
        if key_name == "Key1" {
            app.control
                .fault(&FaultRule {
                    phase: Phase::After,
                    ..FaultRule::new("Accounts_RegenerateKey", 500, 1)
                })
                .await
                .unwrap();
        }
        let _ = app
            .arm(
                Method::Post,
                &regenerate_path("aoai-active"),
                Some(json!({ "keyName": key_name })),
            )
            .await;
    }

    // Assert
    let active = app.control.active_regenerations().await.unwrap();
    assert_eq!(active.count, 1, "{active:?}");
    let event = &active.regenerations[0];
    assert_eq!(
        (
            event.vault.as_str(),
            event.secret.as_str(),
            event.version.as_str()
        ),
        ("kv1", "aoai-key", latest.as_str())
    );
    assert_eq!(
        (event.account.as_str(), event.slot.as_str()),
        ("aoai-active", "key1")
    );
    assert_eq!(event.account_id, account_id("aoai-active"));
    assert_eq!(event.caller, app.info.system_identity.principal_id);
    assert_eq!(event.operation_id, None);
    let summary = app.control.get("").await.unwrap();
    assert_eq!(summary["active_regenerations"], 1);
    // No key value is recorded
    assert!(
        !serde_json::to_string(&active)
            .unwrap()
            .contains("aoai-active-key1")
    );
}

#[tokio::test]
async fn a_long_running_regeneration_of_the_active_key_counts_when_it_takes_effect() {
    // Arrange: the latest version holds key2; regenerations take 20 s
    let app = lro_account("aoai-lroactive", 20, OperationStatus::Succeeded).await;
    seed_secret_holding(&app, "aoai-lroactive-key2").await;
    start_regeneration(&app, "aoai-lroactive", "Key2").await;

    // Act + Assert: not while running; at the end, with the operation's id
    assert_eq!(app.control.active_regenerations().await.unwrap().count, 0);
    app.control.advance_clock(20).await.unwrap();
    let active = app.control.active_regenerations().await.unwrap();
    assert_eq!(active.count, 1);
    let operations = app.control.operations().await.unwrap();
    assert_eq!(
        active.regenerations[0].operation_id.as_deref(),
        Some(operations[0].id.as_str())
    );
    assert_eq!(active.regenerations[0].slot, "key2");
}

#[tokio::test]
async fn a_key_no_latest_version_holds_is_not_counted() {
    // Arrange: the older version held key1; a deleted secret held key2
    let app = spawn_emulator().await;
    seed_account(&app, account_seed("aoai-idle", "OpenAI")).await;
    app.seed(json!({"vaults": [{"name": "kv1", "secrets": [
        {"name": "old", "versions": [{"value": "aoai-idle-key1"}, {"value": "newer"}]},
        {"name": "gone", "deleted_at": 1, "versions": [{"value": "aoai-idle-key2"}]}
    ]}]}))
    .await;

    // Act
    for key_name in ["Key1", "Key2"] {
        app.arm(
            Method::Post,
            &regenerate_path("aoai-idle"),
            Some(json!({ "keyName": key_name })),
        )
        .await
        .unwrap();
    }

    // Assert
    assert_eq!(app.control.active_regenerations().await.unwrap().count, 0);
}
