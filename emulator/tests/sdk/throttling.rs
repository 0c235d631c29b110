//! Throttling at Azure's limits, proven on the wire and through the official clients: a vault's
//! token buckets (SetSecret apart from everything else) answering Key Vault's 429 without
//! `Retry-After`; Resource Manager's per-subscription read and write buckets answering 429 with
//! `Retry-After` and the `x-ms-ratelimit-remaining-*` headers; refills by moving the frozen
//! clock, never by sleeping; the counts `GET /control/throttling` reports. And the listing of a
//! 10,000-secret vault, whose pages cost the page, not the vault.
//!
//! Raw requests (`app.http` with a control-API token) check what the SDK hides: the exact body
//! and the headers. Clients here retry nothing, so each throttled call is counted once.

use std::time::Instant;

use azure_core::http::{ClientOptions, RetryOptions};
use azure_security_keyvault_secrets::models::SetSecretParameters;
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use futures::TryStreamExt;
use serde_json::{Value, json};

use crate::helpers::{ARM, SUBSCRIPTION, TestEmulator, account_id, account_seed, http_error, spawn_emulator};

const VAULT: &str = "kv-throttled";
const VAULT_URL: &str = "https://kv-throttled.vault.azure.net";
const KV_API: &str = "2025-07-01";
const CS_API: &str = "2025-06-01";

/// A `SecretClient` that does not retry.
fn secret_client(app: &TestEmulator, vault: &str) -> SecretClient {
    let options = SecretClientOptions {
        client_options: ClientOptions {
            transport: Some(app.transport()),
            retry: RetryOptions::none(),
            ..Default::default()
        },
        ..Default::default()
    };
    SecretClient::new(
        &format!("https://{vault}.vault.azure.net/"),
        app.credential(),
        Some(options),
    )
    .unwrap()
}

async fn set(kv: &SecretClient, name: &str) -> azure_core::Result<()> {
    let parameters = SetSecretParameters {
        value: Some("value".into()),
        ..Default::default()
    };
    kv.set_secret(name, parameters.try_into()?, None)
        .await
        .map(|_| ())
}

async fn get(kv: &SecretClient, name: &str) -> azure_core::Result<()> {
    kv.get_secret(name, None).await.map(|_| ())
}

/// A raw request with a token for `audience`: status, headers and JSON body (`Null` if none).
async fn raw(
    app: &TestEmulator,
    method: reqwest::Method,
    url: &str,
    audience: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let token = app.control.token(audience).await.unwrap();
    let mut request = app.http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn throttled_calls(app: &TestEmulator) -> Vec<(String, String)> {
    app.control
        .calls(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.status == 429)
        .map(|c| (c.operation, c.target))
        .collect()
}

#[tokio::test]
async fn throttling_is_off_by_default_and_empty_settings_turn_on_azures_limits() {
    let app = spawn_emulator().await;

    let initial = app.control.get("/settings").await.unwrap();
    let on = app.control.set_throttling(Some(&json!({}))).await.unwrap();
    let off = app.control.set_throttling(None).await.unwrap();
    let refused = app
        .control
        .set_throttling(Some(&json!({"arm": {"writes": {"burst": 0}}})))
        .await;

    assert_eq!(initial["throttling"], Value::Null);
    assert_eq!(
        on["throttling"],
        json!({
            "keyvault": {"creates_per_10s": 300, "others_per_10s": 4000},
            "arm": {
                "reads": {"burst": 250, "per_second": 25.0},
                "writes": {"burst": 200, "per_second": 10.0},
                "deletes": {"burst": 200, "per_second": 10.0},
            },
        })
    );
    assert_eq!(off["throttling"], Value::Null);
    assert!(
        refused.is_err(),
        "a bucket that can never admit a call is refused"
    );
}

#[tokio::test]
async fn a_vault_over_its_limit_answers_throttled_without_retry_after_until_the_clock_refills_it() {
    // Arrange: a frozen clock, and a vault allowing 2 SetSecrets and 3 other calls per 10 s.
    let app = spawn_emulator().await;
    app.control.freeze_clock(true).await.unwrap();
    app.seed(json!({
        "vaults": [{ "name": VAULT, "secrets": [{ "name": "s", "versions": [{ "value": "v" }] }] }],
        "throttling": { "keyvault": { "creates_per_10s": 2, "others_per_10s": 3 }, "arm": null },
    }))
    .await;
    let kv = secret_client(&app, VAULT);
    let url = format!("{VAULT_URL}/secrets/s?api-version={KV_API}");

    // Act
    let mut reads = Vec::new();
    for _ in 0..3 {
        reads.push(get(&kv, "s").await.is_ok());
    }
    let (status, headers, body) =
        raw(&app, reqwest::Method::GET, &url, "https://vault.azure.net", None).await;
    let sdk_error = get(&kv, "s").await.unwrap_err();
    let writes = [set(&kv, "new-1").await.is_ok(), set(&kv, "new-2").await.is_ok()];
    let third_write = set(&kv, "new-3").await.unwrap_err();
    let view = app.control.throttling().await.unwrap();
    app.control.advance_clock(10).await.unwrap();
    let mut refilled = Vec::new();
    for _ in 0..3 {
        refilled.push(get(&kv, "s").await.is_ok());
    }
    let after_refill = get(&kv, "s").await.unwrap_err();

    // Assert
    assert_eq!(reads, [true; 3], "the first 3 reads fit the bucket");
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"error": {"code": "Throttled", "message": "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}}),
        "Key Vault's own throttling body"
    );
    assert_eq!(
        header(&headers, "retry-after"),
        None,
        "Key Vault sends no Retry-After"
    );
    assert_eq!(http_error(&sdk_error), (429, Some("Throttled".into())));
    assert_eq!(
        writes, [true; 2],
        "SetSecret draws from its own bucket, still full"
    );
    assert_eq!(http_error(&third_write), (429, Some("Throttled".into())));
    assert_eq!(view["throttled"], 3);
    assert_eq!(view["keyvault"][VAULT]["others"]["throttled"], 2);
    assert_eq!(view["keyvault"][VAULT]["others"]["remaining"], 0);
    assert_eq!(view["keyvault"][VAULT]["creates"]["throttled"], 1);
    assert_eq!(refilled, [true; 3], "10 s on the clock refill the bucket");
    assert_eq!(http_error(&after_refill).0, 429, "and only by as much");
    assert_eq!(
        throttled_calls(&app).await,
        [
            ("GetSecret".to_string(), VAULT.to_string()),
            ("GetSecret".into(), VAULT.into()),
            ("SetSecret".into(), VAULT.into()),
            ("GetSecret".into(), VAULT.into()),
        ],
        "every throttled answer is in the call log"
    );
    assert_eq!(app.control.get("").await.unwrap()["throttled"], 4);
}

#[tokio::test]
async fn resource_manager_throttles_each_subscription_with_retry_after_and_remaining_headers() {
    // Arrange: reads 2 refilling 1/s, writes 1 refilling 0.25/s, per subscription.
    let app = spawn_emulator().await;
    app.control.freeze_clock(true).await.unwrap();
    app.seed(json!({
        "accounts": [account_seed("aoai-t", "OpenAI")],
        "throttling": {
            "keyvault": null,
            "arm": { "reads": { "burst": 2, "per_second": 1 }, "writes": { "burst": 1, "per_second": 0.25 } },
        },
    }))
    .await;
    let id = account_id("aoai-t");
    let get_url = format!("{ARM}{id}?api-version={CS_API}");
    let list_keys = format!("{ARM}{id}/listKeys?api-version={CS_API}");
    let regenerate = format!("{ARM}{id}/regenerateKey?api-version={CS_API}");
    let other_subscription = format!(
        "{ARM}/subscriptions/99999999-1111-2222-3333-444444444444/providers/Microsoft.KeyVault/vaults?api-version=2026-02-01"
    );
    let arm_call = |method: reqwest::Method, url: String, body: Option<Value>| {
        let app = &app;
        async move { raw(app, method, &url, "https://management.azure.com", body).await }
    };

    // Act
    let mut reads = Vec::new();
    for _ in 0..3 {
        reads.push(arm_call(reqwest::Method::GET, get_url.clone(), None).await);
    }
    let listed = arm_call(reqwest::Method::POST, list_keys.clone(), None).await;
    let regenerate_body = Some(json!({ "keyName": "Key1" }));
    let refused = arm_call(reqwest::Method::POST, regenerate.clone(), regenerate_body.clone()).await;
    let key1_after_refusal = app.control.account("aoai-t").await.unwrap()["key1"]["value"].clone();
    let elsewhere = arm_call(reqwest::Method::GET, other_subscription, None).await;
    let view = app.control.throttling().await.unwrap();
    app.control.advance_clock(4).await.unwrap();
    let regenerated = arm_call(reqwest::Method::POST, regenerate, regenerate_body).await;

    // Assert: reads
    let statuses: Vec<u16> = reads.iter().map(|r| r.0).collect();
    let remaining: Vec<Option<&str>> = reads
        .iter()
        .map(|r| header(&r.1, "x-ms-ratelimit-remaining-subscription-reads"))
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(remaining, [Some("1"), Some("0"), Some("0")]);
    let (_, throttled_headers, throttled_body) = &reads[2];
    assert_eq!(header(throttled_headers, "retry-after"), Some("1"));
    assert_eq!(throttled_body["error"]["code"], "SubscriptionRequestsThrottled");
    let message = throttled_body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("Number of 'read' requests for subscription '{SUBSCRIPTION}' actor '"))
            && message.ends_with("exceeded. Please try again after '1' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling for additional information."),
        "{message}"
    );
    // Writes: their own bucket; listKeys is a write, as every POST action.
    assert_eq!(listed.0, 200, "reads exhausted, writes not");
    assert_eq!(
        header(&listed.1, "x-ms-ratelimit-remaining-subscription-writes"),
        Some("0")
    );
    assert_eq!(
        header(&listed.1, "x-ms-ratelimit-remaining-subscription-reads"),
        None
    );
    assert_eq!(refused.0, 429);
    assert_eq!(header(&refused.1, "retry-after"), Some("4"), "1 token at 0.25/s");
    assert_eq!(
        header(&refused.1, "x-ms-ratelimit-remaining-subscription-writes"),
        Some("0")
    );
    assert_eq!(
        key1_after_refusal, "aoai-t-key1",
        "a throttled regenerateKey changes nothing"
    );
    // Another subscription has buckets of its own.
    assert_eq!(elsewhere.0, 200);
    assert_eq!(
        header(&elsewhere.1, "x-ms-ratelimit-remaining-subscription-reads"),
        Some("1")
    );
    assert_eq!(view["arm"][SUBSCRIPTION]["reads"]["throttled"], 1);
    assert_eq!(view["arm"][SUBSCRIPTION]["writes"]["throttled"], 1);
    assert_eq!(view["throttled"], 2);
    // Refilled by the clock.
    assert_eq!(regenerated.0, 200, "{:?}", regenerated.2);
    assert_eq!(
        throttled_calls(&app).await,
        [
            ("Accounts_Get".to_string(), id.clone()),
            ("Accounts_RegenerateKey".into(), id.clone()),
        ]
    );
}

#[tokio::test]
async fn resource_manager_answers_carry_remaining_headers_when_not_throttled() {
    let app = spawn_emulator().await;
    app.seed(json!({ "accounts": [account_seed("aoai-u", "OpenAI")] }))
        .await;
    let id = account_id("aoai-u");

    let got = raw(
        &app,
        reqwest::Method::GET,
        &format!("{ARM}{id}?api-version={CS_API}"),
        "https://management.azure.com",
        None,
    )
    .await;
    let listed = raw(
        &app,
        reqwest::Method::POST,
        &format!("{ARM}{id}/listKeys?api-version={CS_API}"),
        "https://management.azure.com",
        None,
    )
    .await;
    let tenant = raw(
        &app,
        reqwest::Method::GET,
        &format!("{ARM}/subscriptions?api-version=2022-12-01"),
        "https://management.azure.com",
        None,
    )
    .await;

    assert!(header(&got.1, "x-ms-ratelimit-remaining-subscription-reads").is_some());
    assert!(header(&listed.1, "x-ms-ratelimit-remaining-subscription-writes").is_some());
    assert!(header(&tenant.1, "x-ms-ratelimit-remaining-tenant-reads").is_some());
    assert_eq!(app.control.throttling().await.unwrap()["throttled"], 0);
}

#[tokio::test]
async fn a_ten_thousand_secret_vault_lists_completely() {
    // Arrange
    let app = spawn_emulator().await;
    let secrets: Vec<Value> = (0..10_000)
        .map(|i| json!({ "name": format!("secret-{i:05}"), "versions": [{ "value": "v" }] }))
        .collect();
    app.seed(json!({ "vaults": [{ "name": VAULT, "secrets": secrets }] }))
        .await;
    let kv = secret_client(&app, VAULT);

    // Act
    let started = Instant::now();
    let listed: Vec<_> = kv
        .list_secret_properties(None)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let elapsed = started.elapsed();

    // Assert (the time is printed for the record, never asserted)
    eprintln!("listed 10,000 secrets in {elapsed:?}");
    let names: std::collections::BTreeSet<String> =
        listed.iter().map(|p| p.resource_id().unwrap().name).collect();
    assert_eq!(listed.len(), 10_000);
    assert_eq!(names.len(), 10_000, "each secret once");
    let pages = app.control.calls(Some("GetSecrets")).await.unwrap();
    assert_eq!(
        pages.iter().filter(|c| c.status == 200).count(),
        400,
        "pages of 25"
    );
}
