//! The shortest path through every service: if this fails, start here.

use azure_core::http::Method;
use azure_security_keyvault_secrets::models::SetSecretParameters;
use serde_json::json;

use crate::helpers::{RESOURCE_GROUP, SUBSCRIPTION, account_id, spawn_emulator};

#[tokio::test]
async fn the_official_clients_reach_every_emulated_service() {
    let app = spawn_emulator().await;
    app.seed(json!({
        "vaults": [{"name": "kv-smoke"}],
        "accounts": [{"subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
                      "name": "smoke", "kind": "OpenAI", "key1": "k1", "key2": "k2"}]
    }))
    .await;

    let kv = app.secret_client("kv-smoke");
    let params = SetSecretParameters {
        value: Some("v1".into()),
        ..Default::default()
    };
    kv.set_secret("s", params.try_into().unwrap(), None)
        .await
        .unwrap();
    let got = kv.get_secret("s", None).await.unwrap().into_model().unwrap();
    assert_eq!(got.value.as_deref(), Some("v1"));

    let keys = app
        .arm(
            Method::Post,
            &format!("{}/listKeys?api-version=2025-06-01", account_id("smoke")),
            None,
        )
        .await
        .unwrap();
    let keys: serde_json::Value = serde_json::from_slice(keys.body()).unwrap();
    assert_eq!(keys, json!({"key1": "k1", "key2": "k2"}));

    let models = app
        .http
        .get("https://smoke.openai.azure.com/openai/models?api-version=2024-10-21")
        .header("api-key", "k2")
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
}
