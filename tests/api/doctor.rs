//! `keyflip doctor` as a child process against the emulator (and Azurite for the lease): a
//! healthy set-up passes every check without writing anything; a broken one fails exactly the
//! checks that are broken, each with its fix, and exits 1. Both for the person running it and,
//! through its role assignments and access policies, for the app's managed identity.

use serde_json::{Value, json};

use crate::helpers::{SUBSCRIPTION, SecretSpec, TestApp, VAULT, run_keyflip, spawn_app_with_storage_lease};

const APP: &str = "7e1f3c2a-0b4d-4e5f-9a6b-1c2d3e4f5a6b";
const VAULT_TWO: &str = "kv-api-two";
const SECRETS_OFFICER: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
const BLOB_DATA_OWNER: &str = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";
const ROTATOR: &str = "0d6f3a5e-3c1b-4d2a-9e8f-7a6b5c4d3e2f";

fn vault_id(vault: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-api/providers/Microsoft.KeyVault/vaults/{vault}")
}

fn function_id() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-keyflip/providers/Microsoft.Web/sites/func-keyflip/functions/KeyVaultEvents"
    )
}

fn topic(vault: &str) -> Value {
    json!({
        "subscription_id": SUBSCRIPTION, "resource_group": "rg-api", "name": format!("{vault}-events"),
        "source": vault_id(vault),
        "event_subscriptions": [{
            "name": "keyflip-secret-expiry", "endpoint_type": "AzureFunction", "resource_id": function_id(),
            "included_event_types": ["Microsoft.KeyVault.SecretNearExpiry", "Microsoft.KeyVault.SecretExpired"],
        }],
    })
}

/// Exactly the actions the deployment's custom role holds.
fn rotator_actions() -> Vec<&'static str> {
    keyflip::providers::SUPPORTED_TYPES
        .iter()
        .flat_map(|t| t.arm_actions.iter().copied())
        .collect()
}

fn policy(object_id: &str, secrets: &[&str]) -> Value {
    json!({"object_id": object_id, "secrets": secrets})
}

/// The set-up infra/ deploys: roles for the person and the app, one RBAC vault and one on
/// access policies, Event Grid on the vaults `wired`, a managed secret.
async fn healthy(app: &TestApp, wired: &[&str]) {
    let me = app.info.system_identity.principal_id.clone();
    app.seed_account("dr-acc", "OpenAI").await;
    app.seed_secret(SecretSpec::new("dr-ok", "dr-acc")).await;
    let storage = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-keyflip/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
    );
    app.control
        .seed(&json!({
            "vaults": [
                {"name": VAULT},
                {"name": VAULT_TWO, "enable_rbac_authorization": false,
                 "access_policies": [policy(&me, &["get", "list", "set"]), policy(APP, &["Get", "List", "Set"])]},
            ],
            "role_definitions": [{
                "id": ROTATOR, "role_name": "keyflip key rotator (test)",
                "actions": rotator_actions(),
                "assignable_scopes": [format!("/subscriptions/{SUBSCRIPTION}")],
            }],
            "role_assignments": [
                {"principal_id": me, "role_definition_id": SECRETS_OFFICER, "scope": vault_id(VAULT)},
                {"principal_id": APP, "role_definition_id": SECRETS_OFFICER, "scope": vault_id(VAULT)},
                {"principal_id": APP, "role_definition_id": ROTATOR, "scope": format!("/subscriptions/{SUBSCRIPTION}")},
                {"principal_id": APP, "role_definition_id": BLOB_DATA_OWNER, "scope": storage},
            ],
            "system_topics": wired.iter().map(|v| topic(v)).collect::<Vec<_>>(),
        }))
        .await
        .expect("seeded");
}

fn doctor(app: &TestApp, env: &[(&str, &str)]) -> (i32, Value, String) {
    let (code, stdout, stderr) = tokio::task::block_in_place(|| {
        run_keyflip(app, &["doctor", "--json", "--app-principal-id", APP], env)
    });
    let report = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (code, report, format!("{stdout}\n{stderr}"))
}

/// The status of the check `name` on `subject`.
fn status<'a>(report: &'a Value, subject: &str, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .and_then(|checks| {
            checks
                .iter()
                .find(|c| c["subject"] == subject && c["name"] == name)
        })
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
}

const STORAGE_ENV: [(&str, &str); 2] = [
    ("KEYFLIP_LEASE", "storage"),
    ("AzureWebJobsStorage__accountName", "devstoreaccount1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_set_up_passes_every_check_and_nothing_is_written() {
    // Arrange
    let app = spawn_app_with_storage_lease(&[]).await;
    healthy(&app, &[VAULT, VAULT_TWO]).await;

    // Act
    let (code, report, output) = doctor(&app, &STORAGE_ENV);

    // Assert: exit 0, no failure, and the checks that matter ran and passed
    assert_eq!(code, 0, "{output}");
    assert_eq!(report["ok"], true, "{output}");
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let secret = format!("{VAULT}/dr-ok");
    for (subject, name) in [
        ("Resource Manager", "acquired"),
        ("Key Vault", "acquired"),
        ("Storage", "acquired"),
        (VAULT, "access model"),
        (VAULT, "list secrets"),
        (VAULT, "secret permissions (you)"),
        (VAULT, "secret permissions (the app)"),
        (VAULT, "Event Grid subscription"),
        (VAULT_TWO, "access model"),
        (VAULT_TWO, "secret permissions (you)"),
        (VAULT_TWO, "secret permissions (the app)"),
        (VAULT_TWO, "Event Grid subscription"),
        (secret.as_str(), "tags"),
        (secret.as_str(), "resource read"),
        (secret.as_str(), "proof of possession"),
        (secret.as_str(), "data-plane check"),
        (secret.as_str(), "the app's actions"),
        ("devstoreaccount1", "the app's blob roles"),
    ] {
        assert_eq!(
            status(&report, subject, name),
            "ok",
            "{subject}: {name}\n{output}"
        );
    }
    let lease_ok = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["area"] == "lease" && c["name"] == "lease" && c["status"] == "ok");
    assert!(lease_ok, "{output}");
    assert!(
        output.contains("access policies (enableRbacAuthorization=false)"),
        "{output}"
    );
    assert!(output.contains("refuses a wrong one"), "{output}");
    assert_eq!(report["caller"], app.info.system_identity.principal_id.as_str());

    // Assert: doctor changed nothing (no regeneration, no secret write)
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
    assert!(
        !output.contains(&app.key("dr-acc", "key1").await),
        "no key in the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_set_up_fails_exactly_its_broken_checks_each_with_a_fix() {
    // Arrange: the healthy set-up without Event Grid on the second vault, then break it
    let app = spawn_app_with_storage_lease(&[]).await;
    healthy(&app, &[]).await;
    let me = app.info.system_identity.principal_id.clone();
    app.seed_account("dr-lie-acc", "OpenAI").await;
    let mut lie = SecretSpec::new("dr-lie", "dr-lie-acc");
    lie.value = Some(app.key("dr-lie-acc", "key2").await);
    app.seed_secret(lie).await;
    app.control
        .seed(
            &json!({"vaults": [{"name": VAULT_TWO, "enable_rbac_authorization": false,
            "access_policies": [policy(&me, &["get", "list", "set"]), policy(APP, &["get", "list"])]}]}),
        )
        .await
        .expect("seeded");

    // Microsoft's sample rotator left subscribed to the first vault's events, beside keyflip's
    let mut wired = topic(VAULT);
    let sample = json!({"name": "akv-rotation", "endpoint_type": "WebHook",
        "resource_id": "https://sample-rotator.azurewebsites.net/api/AKVRotation",
        "included_event_types": ["Microsoft.KeyVault.SecretNearExpiry"]});
    if let Some(subscriptions) = wired["event_subscriptions"].as_array_mut() {
        subscriptions.push(sample);
    }
    app.control
        .seed(&json!({"system_topics": [wired]}))
        .await
        .expect("seeded");

    // Act: the app's access policy without set, no Event Grid on the second vault
    let (code, report, output) = doctor(&app, &STORAGE_ENV);

    // Assert: exit 1, and the broken checks fail with a fix while the rest pass
    assert_eq!(code, 1, "{output}");
    assert_eq!(report["ok"], false);
    let lie = format!("{VAULT}/dr-lie");
    assert_eq!(status(&report, &lie, "proof of possession"), "fail", "{output}");
    assert_eq!(
        status(&report, VAULT_TWO, "secret permissions (the app)"),
        "fail",
        "{output}"
    );
    assert_eq!(
        status(&report, VAULT_TWO, "secret permissions (you)"),
        "ok",
        "{output}"
    );
    assert_eq!(
        status(&report, VAULT_TWO, "Event Grid subscription"),
        "fail",
        "{output}"
    );
    assert_eq!(
        status(&report, VAULT, "Event Grid subscription"),
        "ok",
        "{output}"
    );
    assert_eq!(status(&report, VAULT, "no other rotator"), "fail", "{output}");
    assert_eq!(
        status(&report, &format!("{VAULT}/dr-ok"), "proof of possession"),
        "ok",
        "{output}"
    );
    assert!(
        output.contains("keyflip rotate --repair --vault kv-api --secret dr-lie"),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "az keyvault set-policy --name {VAULT_TWO} --object-id {APP} --secret-permissions get list set"
        )),
        "{output}"
    );
    let failed_without_fix: Vec<&Value> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "fail" && c.get("fix").is_none())
        .collect();
    assert!(
        failed_without_fix.is_empty(),
        "every failure says how to fix it: {failed_without_fix:#?}"
    );
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);

    // Act: a configuration that does not load (the lease's storage unset)
    let (code, report, output) = doctor(&app, &[("KEYFLIP_LEASE", "storage")]);

    // Assert: one failed check naming the setting, nothing else tried
    assert_eq!(code, 1, "{output}");
    assert_eq!(status(&report, "settings", "valid"), "fail", "{output}");
    assert!(output.contains("AzureWebJobsStorage is not set"), "{output}");
    assert_eq!(report["checks"].as_array().map(Vec::len), Some(1), "{output}");
}
