//! The read-only Resource Manager routes `keyflip onboard` and `doctor` call, through an
//! official `azure_core` pipeline with `BearerTokenAuthorizationPolicy` (TLS, the real host):
//! Cognitive Services account lists with `nextLink` paging, `Microsoft.KeyVault/vaults`,
//! `/subscriptions`, Event Grid system topics and their event subscriptions, and the ARM
//! plumbing every new route shares (api-version refusals, bearer authentication, call log,
//! faults).

use azure_core::http::{Method, RawResponse};
use emulator::faults::FaultRule;
use serde_json::{Value, json};

use crate::helpers::{
    ARM, RESOURCE_GROUP, SUBSCRIPTION, TestEmulator, account_seed, http_error, spawn_emulator,
};

const CS_API: &str = "2025-06-01";
const KV_API: &str = "2026-02-01";
const EG_API: &str = "2025-02-15";
/// The subscription and group a vault lands in unless its seed says otherwise.
const VAULT_SUBSCRIPTION: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";

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

async fn get(app: &TestEmulator, path_and_query: &str) -> Value {
    body_json(&app.arm(Method::Get, path_and_query, None).await.unwrap())
}

/// Every item of a list, following `nextLink` verbatim; also the number of pages.
async fn all_pages(app: &TestEmulator, path_and_query: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(path_and_query.to_string());
    while let Some(path) = next {
        let page = get(app, &path).await;
        pages += 1;
        items.extend(page["value"].as_array().expect("value").iter().cloned());
        next = page["nextLink"].as_str().map(|link| {
            link.strip_prefix(ARM)
                .expect("nextLink is absolute on management.azure.com")
                .to_string()
        });
    }
    (items, pages)
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Accounts_List / Accounts_ListByResourceGroup

#[tokio::test]
async fn accounts_list_pages_with_next_link_and_hides_accounts_the_caller_may_not_read() {
    // Arrange
    let app = spawn_emulator().await;
    let mut accounts: Vec<Value> = (1..=5)
        .map(|i| account_seed(&format!("acct-{i}"), "OpenAI"))
        .collect();
    accounts[4]["allowed_principals"] = json!(["00000000-0000-0000-0000-00000000beef"]);
    let mut elsewhere = account_seed("acct-other-rg", "AIServices");
    elsewhere["resource_group"] = json!("rg-other");
    accounts.push(elsewhere);
    app.seed(json!({ "accounts": accounts, "arm_page_size": 2 }))
        .await;
    let by_sub = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.CognitiveServices/accounts?api-version={CS_API}"
    );
    let by_rg = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.CognitiveServices/accounts?api-version={CS_API}"
    );

    // Act
    let (subscription_items, subscription_pages) = all_pages(&app, &by_sub).await;
    let (group_items, _) = all_pages(&app, &by_rg).await;
    let first_page = get(&app, &by_sub).await;

    // Assert
    assert_eq!(
        names(&subscription_items),
        ["acct-1", "acct-2", "acct-3", "acct-4", "acct-other-rg"]
    );
    assert_eq!(subscription_pages, 3);
    assert_eq!(names(&group_items), ["acct-1", "acct-2", "acct-3", "acct-4"]);
    let single = get(
        &app,
        &format!("{}?api-version={CS_API}", crate::helpers::account_id("acct-1")),
    )
    .await;
    assert_eq!(subscription_items[0], single, "an item is the Accounts_Get body");
    let link = first_page["nextLink"].as_str().unwrap();
    assert!(link.starts_with(&format!("{ARM}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.CognitiveServices/accounts?api-version={CS_API}&%24skiptoken=")));
    let calls = app
        .control
        .calls(Some("Accounts_ListByResourceGroup"))
        .await
        .unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].target,
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}")
    );
}

#[tokio::test]
async fn the_page_size_is_set_from_the_control_api() {
    // Arrange
    let app = spawn_emulator().await;
    let accounts: Vec<Value> = (1..=3)
        .map(|i| account_seed(&format!("paged-{i}"), "OpenAI"))
        .collect();
    app.seed(json!({ "accounts": accounts })).await;
    let path = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.CognitiveServices/accounts?api-version={CS_API}"
    );

    // Act
    let default_page = get(&app, &path).await;
    app.control.set_arm_page_size(Some(1)).await.unwrap();
    let (items, pages) = all_pages(&app, &path).await;

    // Assert
    assert_eq!(default_page["value"].as_array().unwrap().len(), 3);
    assert!(
        default_page.get("nextLink").is_none(),
        "no nextLink on the last page"
    );
    assert_eq!((items.len(), pages), (3, 3));
}

// ---------------------------------------------------------------------------------------------
// The plumbing every new route shares

#[tokio::test]
async fn a_wrong_api_version_is_refused_with_the_arm_error_of_the_route() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(json!({ "vaults": [{ "name": "kv-versions" }] })).await;
    let vault = format!(
        "/subscriptions/{VAULT_SUBSCRIPTION}/resourceGroups/rg-api/providers/Microsoft.KeyVault/vaults/kv-versions"
    );

    // Act
    let cases = [
        (
            format!(
                "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.CognitiveServices/accounts?api-version=2099-01-01"
            ),
            "NoRegisteredProviderFound",
        ),
        (
            format!("{vault}?api-version=2019-09-01"),
            "NoRegisteredProviderFound",
        ),
        (
            format!(
                "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.EventGrid/systemTopics?api-version=2022-06-15"
            ),
            "NoRegisteredProviderFound",
        ),
        (
            format!(
                "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/permissions?api-version=2015-07-01"
            ),
            "NoRegisteredProviderFound",
        ),
        (
            "/subscriptions?api-version=2099-01-01".to_string(),
            "InvalidApiVersionParameter",
        ),
        (vault.clone(), "MissingApiVersionParameter"),
    ];
    let mut answers = Vec::new();
    for (path, _) in &cases {
        answers.push(app.arm(Method::Get, path, None).await.unwrap_err());
    }

    // Assert
    for ((path, code), error) in cases.iter().zip(&answers) {
        assert_eq!(http_error(error), (400, Some(code.to_string())), "{path}");
    }
    assert!(
        error_body(&answers[1])["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2026-02-01, 2024-11-01, 2023-07-01"),
        "the message lists the supported versions"
    );
}

#[tokio::test]
async fn new_routes_need_a_resource_manager_token_and_log_their_operation_id() {
    // Arrange
    let app = spawn_emulator().await;
    let url = format!("{ARM}/subscriptions?api-version=2022-12-01");

    // Act
    let anonymous = app.http.get(&url).send().await.unwrap();
    let vault_token = app.control.token("https://vault.azure.net").await.unwrap();
    let wrong_audience = app.http.get(&url).bearer_auth(vault_token).send().await.unwrap();

    // Assert
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    assert_eq!(wrong_audience.status(), 401);
    let body: Value = wrong_audience.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationTokenAudience");
    let calls = app.control.calls(Some("Subscriptions_List")).await.unwrap();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.status == 401 && c.caller.is_none()));
}

#[tokio::test]
async fn faults_strike_the_new_routes_by_operation_id_and_target() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(json!({ "vaults": [{ "name": "kv-faulty" }] })).await;
    app.control
        .fault(&FaultRule {
            target: Some("kv-faulty".into()),
            ..FaultRule::new("Vaults_Get", 409, 1)
        })
        .await
        .unwrap();
    let path = format!(
        "/subscriptions/{VAULT_SUBSCRIPTION}/resourceGroups/rg-api/providers/Microsoft.KeyVault/vaults/kv-faulty?api-version={KV_API}"
    );

    // Act
    let faulted = app.arm(Method::Get, &path, None).await.unwrap_err();
    let next = app.arm(Method::Get, &path, None).await;

    // Assert
    assert_eq!(http_error(&faulted).0, 409);
    assert!(next.is_ok(), "the fault struck once");
    let calls = app.control.calls(Some("Vaults_Get")).await.unwrap();
    assert_eq!(
        calls.iter().map(|c| (c.status, c.faulted)).collect::<Vec<_>>(),
        [(409, true), (200, false)]
    );
}

#[tokio::test]
async fn an_unknown_path_keeps_the_helpful_404() {
    // Arrange
    let app = spawn_emulator().await;

    // Act
    let error = app
        .arm(
            Method::Get,
            &format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Web/sites?api-version=2024-04-01"),
            None,
        )
        .await
        .unwrap_err();

    // Assert
    assert_eq!(http_error(&error), (404, Some("InvalidResourceType".into())));
    assert!(
        error_body(&error)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("emulator/README.md")
    );
}

// ---------------------------------------------------------------------------------------------
// Microsoft.KeyVault/vaults and /subscriptions

#[tokio::test]
async fn vaults_get_reports_the_permission_model_and_access_policies() {
    // Arrange
    let app = spawn_emulator().await;
    let me = app.info.system_identity.principal_id.clone();
    app.seed(json!({ "vaults": [
        { "name": "kv-rbac" },
        { "name": "kv-policies", "subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
          "location": "westeurope", "enable_rbac_authorization": false, "tags": {"team": "keys"},
          "access_policies": [{ "object_id": me, "secrets": ["get", "list", "set"] }] }
    ] }))
    .await;

    // Act
    let rbac = get(
        &app,
        &format!("/subscriptions/{VAULT_SUBSCRIPTION}/resourceGroups/rg-api/providers/Microsoft.KeyVault/vaults/kv-rbac?api-version={KV_API}"),
    )
    .await;
    let policies = get(
        &app,
        &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/KV-POLICIES?api-version=2023-07-01"),
    )
    .await;
    let wrong_group = app
        .arm(
            Method::Get,
            &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-nope/providers/Microsoft.KeyVault/vaults/kv-policies?api-version={KV_API}"),
            None,
        )
        .await
        .unwrap_err();

    // Assert
    assert_eq!(rbac["type"], "Microsoft.KeyVault/vaults");
    assert_eq!(rbac["location"], "eastus");
    assert_eq!(rbac["properties"]["enableRbacAuthorization"], true);
    assert_eq!(rbac["properties"]["vaultUri"], "https://kv-rbac.vault.azure.net/");
    assert_eq!(rbac["properties"]["tenantId"], app.info.tenant_id.as_str());
    assert_eq!(
        policies["id"],
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/kv-policies"
        )
    );
    assert_eq!(policies["location"], "westeurope");
    assert_eq!(policies["tags"], json!({"team": "keys"}));
    assert_eq!(policies["properties"]["enableRbacAuthorization"], false);
    assert_eq!(
        policies["properties"]["accessPolicies"],
        json!([{ "tenantId": app.info.tenant_id, "objectId": me,
                 "permissions": { "keys": [], "secrets": ["get", "list", "set"], "certificates": [], "storage": [] } }])
    );
    assert_eq!(
        policies["properties"]["sku"],
        json!({"family": "A", "name": "standard"})
    );
    assert_eq!(http_error(&wrong_group), (404, Some("ResourceNotFound".into())));
}

#[tokio::test]
async fn vaults_are_listed_by_subscription_and_group_and_subscriptions_by_what_is_seeded() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(json!({
        "vaults": [{ "name": "kv-a" }, { "name": "kv-b" },
                   { "name": "kv-c", "subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP }],
        "accounts": [account_seed("acct-subs", "OpenAI")],
        "arm_page_size": 1
    }))
    .await;

    // Act
    let (by_sub, pages) = all_pages(
        &app,
        &format!(
            "/subscriptions/{VAULT_SUBSCRIPTION}/providers/Microsoft.KeyVault/vaults?api-version={KV_API}"
        ),
    )
    .await;
    let (by_rg, _) = all_pages(
        &app,
        &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01"),
    )
    .await;
    let (subscriptions, _) = all_pages(&app, "/subscriptions?api-version=2022-12-01").await;

    // Assert
    assert_eq!(
        (names(&by_sub), pages),
        (vec!["kv-a".to_string(), "kv-b".to_string()], 2)
    );
    assert_eq!(names(&by_rg), ["kv-c"]);
    let mut ids: Vec<&str> = subscriptions
        .iter()
        .map(|s| s["subscriptionId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![SUBSCRIPTION, VAULT_SUBSCRIPTION];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(subscriptions[0]["state"], "Enabled");
    assert_eq!(subscriptions[0]["tenantId"], app.info.tenant_id.as_str());
    assert_eq!(
        subscriptions[0]["id"],
        format!(
            "/subscriptions/{}",
            subscriptions[0]["subscriptionId"].as_str().unwrap()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Event Grid system topics

fn topic_seed() -> Value {
    let vault_id = format!(
        "/subscriptions/{VAULT_SUBSCRIPTION}/resourceGroups/rg-api/providers/Microsoft.KeyVault/vaults/kv-events"
    );
    let function = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Web/sites/keyflip-app/functions/KeyVaultEvents"
    );
    let storage = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/keyflipst"
    );
    json!({
        "vaults": [{ "name": "kv-events" }],
        "system_topics": [
            { "subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP, "name": "kv-events-topic",
              "source": vault_id, "identity_principal_id": "11111111-0000-0000-0000-000000000001",
              "event_subscriptions": [
                { "name": "keyflip-secret-expiry", "endpoint_type": "AzureFunction", "resource_id": function,
                  "included_event_types": ["Microsoft.KeyVault.SecretNearExpiry", "Microsoft.KeyVault.SecretExpired"],
                  "dead_letter": { "resource_id": storage, "container": "eventgrid-deadletter", "identity": "SystemAssigned" } },
                { "name": "legacy-webhook", "endpoint_type": "WebHook", "resource_id": "https://example.net/api/rotate",
                  "max_delivery_attempts": 5, "event_ttl_minutes": 60, "provisioning_state": "Failed",
                  "dead_letter": { "resource_id": storage, "container": "dl" } }
              ] },
            { "subscription_id": SUBSCRIPTION, "resource_group": "rg-other", "name": "storage-topic",
              "source": storage, "topic_type": "Microsoft.Storage.StorageAccounts" }
        ]
    })
}

#[tokio::test]
async fn system_topics_are_listed_and_read_with_their_source_and_identity() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(topic_seed()).await;
    let topic_path = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.EventGrid/systemTopics/kv-events-topic"
    );

    // Act
    let (by_sub, _) = all_pages(
        &app,
        &format!(
            "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.EventGrid/systemTopics?api-version={EG_API}"
        ),
    )
    .await;
    let (by_rg, _) = all_pages(
        &app,
        &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.EventGrid/systemTopics?api-version={EG_API}"),
    )
    .await;
    let topic = get(&app, &format!("{topic_path}?api-version={EG_API}")).await;
    let missing = app
        .arm(
            Method::Get,
            &format!("{topic_path}-nope?api-version={EG_API}"),
            None,
        )
        .await
        .unwrap_err();

    // Assert
    assert_eq!(names(&by_sub), ["kv-events-topic", "storage-topic"]);
    assert_eq!(names(&by_rg), ["kv-events-topic"]);
    assert_eq!(topic["id"], topic_path);
    assert_eq!(topic["type"], "Microsoft.EventGrid/systemTopics");
    assert_eq!(topic["properties"]["topicType"], "Microsoft.KeyVault.vaults");
    assert_eq!(
        topic["properties"]["source"],
        format!(
            "/subscriptions/{VAULT_SUBSCRIPTION}/resourceGroups/rg-api/providers/Microsoft.KeyVault/vaults/kv-events"
        )
    );
    assert_eq!(topic["properties"]["provisioningState"], "Succeeded");
    assert_eq!(topic["identity"]["type"], "SystemAssigned");
    assert_eq!(
        topic["identity"]["principalId"],
        "11111111-0000-0000-0000-000000000001"
    );
    assert!(
        by_sub[1].get("identity").is_none(),
        "a topic without identity has none"
    );
    assert_eq!(http_error(&missing), (404, Some("ResourceNotFound".into())));
}

#[tokio::test]
async fn event_subscriptions_answer_destination_filter_retry_and_dead_letter() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(topic_seed()).await;
    let subs = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.EventGrid/systemTopics/kv-events-topic/eventSubscriptions"
    );

    // Act
    let (listed, _) = all_pages(&app, &format!("{subs}?api-version={EG_API}")).await;
    let expiry = get(
        &app,
        &format!("{subs}/keyflip-secret-expiry?api-version={EG_API}"),
    )
    .await;
    let missing = app
        .arm(Method::Get, &format!("{subs}/nope?api-version={EG_API}"), None)
        .await
        .unwrap_err();

    // Assert
    assert_eq!(names(&listed), ["keyflip-secret-expiry", "legacy-webhook"]);
    assert_eq!(listed[0], expiry);
    assert_eq!(expiry["id"], format!("{subs}/keyflip-secret-expiry"));
    assert_eq!(
        expiry["type"],
        "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    );
    let props = &expiry["properties"];
    assert_eq!(props["provisioningState"], "Succeeded");
    assert_eq!(props["destination"]["endpointType"], "AzureFunction");
    assert!(
        props["destination"]["properties"]["resourceId"]
            .as_str()
            .unwrap()
            .ends_with("/sites/keyflip-app/functions/KeyVaultEvents")
    );
    assert_eq!(
        props["filter"]["includedEventTypes"],
        json!([
            "Microsoft.KeyVault.SecretNearExpiry",
            "Microsoft.KeyVault.SecretExpired"
        ])
    );
    assert_eq!(
        props["retryPolicy"],
        json!({"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440})
    );
    let dead_letter = &props["deadLetterWithResourceIdentity"];
    assert_eq!(dead_letter["identity"]["type"], "SystemAssigned");
    assert_eq!(
        dead_letter["deadLetterDestination"]["endpointType"],
        "StorageBlob"
    );
    assert_eq!(
        dead_letter["deadLetterDestination"]["properties"]["blobContainerName"],
        "eventgrid-deadletter"
    );
    let webhook = &listed[1]["properties"];
    assert_eq!(webhook["provisioningState"], "Failed");
    assert_eq!(
        webhook["destination"]["properties"]["endpointBaseUrl"],
        "https://example.net/api/rotate"
    );
    assert!(webhook["destination"]["properties"].get("endpointUrl").is_none());
    assert_eq!(webhook["retryPolicy"]["maxDeliveryAttempts"], 5);
    assert_eq!(
        webhook["deadLetterDestination"]["properties"]["blobContainerName"],
        "dl"
    );
    assert_eq!(http_error(&missing), (404, Some("ResourceNotFound".into())));
}

#[tokio::test]
async fn an_invalid_seed_item_is_refused_with_what_to_fix() {
    // Arrange
    let app = spawn_emulator().await;
    let mut seed = topic_seed();
    seed["system_topics"][1]["source"] = seed["system_topics"][0]["source"].clone();

    // Act
    let refused = app.control.seed(&seed).await.unwrap_err().to_string();
    let bad_permission = app
        .control
        .seed(&json!({ "vaults": [{ "name": "kv-x", "access_policies": [{ "object_id": "o", "secrets": ["read"] }] }] }))
        .await
        .unwrap_err()
        .to_string();

    // Assert
    assert!(refused.contains("one per source"), "{refused}");
    assert!(bad_permission.contains("'read'"), "{bad_permission}");
    let summary = app.control.get("").await.unwrap();
    assert_eq!(summary["system_topics"], json!([]), "all or nothing");
}
