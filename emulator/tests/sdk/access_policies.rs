//! A vault on access policies (`enable_rbac_authorization: false`), proven with the official
//! `SecretClient`: each operation needs its secret permission, and a missing one answers 403
//! with Key Vault's body (`Forbidden` / innererror `AccessDenied`, "… does not have secrets
//! {permission} permission on key vault '{vault};location={location}' …").

use azure_core::error::ErrorKind;
use azure_core::http::RequestContent;
use azure_security_keyvault_secrets::models::{SecretClientGetSecretOptions, SetSecretParameters};
use futures::TryStreamExt;
use serde_json::{Value, json};

use crate::helpers::{http_error, spawn_emulator};

fn value_only(value: &str) -> RequestContent<SetSecretParameters> {
    SetSecretParameters {
        value: Some(value.into()),
        ..Default::default()
    }
    .try_into()
    .unwrap()
}

/// The JSON error body a failed SDK call carries.
fn error_body(error: &azure_core::Error) -> Value {
    let ErrorKind::HttpResponse {
        raw_response: Some(raw),
        ..
    } = error.kind()
    else {
        panic!("expected an HTTP error with its response, got {error:?}");
    };
    raw.body().json().expect("a JSON error body")
}

#[tokio::test]
async fn each_operation_needs_its_secret_permission_and_a_missing_one_is_403_access_denied() {
    // Arrange
    let app = spawn_emulator().await;
    let me = app.info.system_identity.principal_id.clone();
    app.seed(json!({ "vaults": [{
        "name": "kv-policies", "location": "westeurope", "enable_rbac_authorization": false,
        "allowed_principals": ["00000000-0000-0000-0000-00000000beef"],
        "access_policies": [
            { "object_id": "00000000-0000-0000-0000-00000000cafe", "secrets": ["all"] },
            { "object_id": me.to_uppercase(), "secrets": ["Get", "list"] }
        ],
        "secrets": [{ "name": "s", "versions": [{ "value": "v1" }] }]
    }] }))
    .await;
    let kv = app.secret_client("kv-policies");

    // Act
    let read = kv
        .get_secret("s", Some(SecretClientGetSecretOptions::default()))
        .await;
    let listed: azure_core::Result<Vec<_>> = kv.list_secret_properties(None).unwrap().try_collect().await;
    let write = kv.set_secret("s", value_only("v2"), None).await.unwrap_err();
    let delete = kv.delete_secret("s", None).await.unwrap_err();

    // Assert
    assert!(
        read.is_ok(),
        "get is granted (case-insensitively), allowed_principals ignored: {read:?}"
    );
    assert_eq!(listed.unwrap().len(), 1, "list is granted");
    for (error, permission) in [(&write, "set"), (&delete, "delete")] {
        assert_eq!(http_error(error), (403, Some("Forbidden".into())));
        let body = error_body(error);
        assert_eq!(body["error"]["innererror"]["code"], "AccessDenied");
        let message = body["error"]["message"].as_str().unwrap();
        assert_eq!(
            message,
            format!(
                "The user, group or application 'appid={};oid={me};iss=https://sts.windows.net/{}/' does not have secrets {permission} permission on key vault 'kv-policies;location=westeurope'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                app.info.system_identity.client_id, app.info.tenant_id
            )
        );
    }
    let stored = app.control.secret("kv-policies", "s").await.unwrap();
    assert_eq!(
        stored["versions"].as_array().unwrap().len(),
        1,
        "nothing was written"
    );
    assert_eq!(stored["deleted"], Value::Null);
}

#[tokio::test]
async fn a_caller_without_any_policy_is_refused_and_a_policy_of_another_tenant_grants_nothing() {
    // Arrange
    let app = spawn_emulator().await;
    let me = app.info.system_identity.principal_id.clone();
    app.seed(json!({ "vaults": [
        { "name": "kv-none", "enable_rbac_authorization": false,
          "secrets": [{ "name": "s", "versions": [{ "value": "v" }] }] },
        { "name": "kv-foreign", "enable_rbac_authorization": false,
          "access_policies": [{ "object_id": me, "tenant_id": "99999999-9999-9999-9999-999999999999", "secrets": ["get"] }],
          "secrets": [{ "name": "s", "versions": [{ "value": "v" }] }] }
    ] }))
    .await;

    // Act
    let none = app
        .secret_client("kv-none")
        .get_secret("s", None)
        .await
        .unwrap_err();
    let foreign = app
        .secret_client("kv-foreign")
        .get_secret("s", None)
        .await
        .unwrap_err();

    // Assert
    for error in [&none, &foreign] {
        assert_eq!(http_error(error), (403, Some("Forbidden".into())));
        let body = error_body(error);
        assert_eq!(body["error"]["innererror"]["code"], "AccessDenied");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not have secrets get permission")
        );
    }
    let refused: Vec<_> = app
        .control
        .calls(Some("GetSecret"))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.status != 401) // the SDK's first, token-less request meets the challenge
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(
        refused
            .iter()
            .all(|c| c.status == 403 && c.caller.as_deref() == Some(me.as_str()))
    );
}

#[tokio::test]
async fn switching_a_vault_to_rbac_brings_back_allowed_principals() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(
        json!({ "vaults": [{ "name": "kv-switch", "enable_rbac_authorization": false,
        "secrets": [{ "name": "s", "versions": [{ "value": "v" }] }] }] }),
    )
    .await;
    let kv = app.secret_client("kv-switch");
    let before = kv.get_secret("s", None).await.unwrap_err();

    // Act
    app.seed(json!({ "vaults": [{ "name": "kv-switch", "enable_rbac_authorization": true }] }))
        .await;
    let after = kv.get_secret("s", None).await;

    // Assert
    assert_eq!(error_body(&before)["error"]["innererror"]["code"], "AccessDenied");
    assert!(
        after.is_ok(),
        "an RBAC vault without allowed_principals lets every token in"
    );
}
