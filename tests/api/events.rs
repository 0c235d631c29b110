//! `POST /KeyVaultEvents`: Key Vault's events through the custom-handler envelope.

use serde_json::json;

use crate::helpers::{DAY, SecretSpec, VAULT, spawn_app};

const NEAR_EXPIRY: &str = "SecretNearExpiry";

#[tokio::test]
async fn a_near_expiry_event_rotates_key1_to_key2_and_the_next_cycle_key2_to_key1() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-cycle", "OpenAI").await;
    app.seed_secret(SecretSpec::new("cycle", "aoai-cycle").tag("owner", "team-ai"))
        .await;
    let first = app.latest("cycle").await;

    // Act: the first cycle
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "cycle").await;

    // Assert: key2 published, verified, tags carried forward and written by keyflip
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let result = answer.result();
    assert_eq!(
        (
            result["outcome"].as_str(),
            result["from"].as_str(),
            result["to"].as_str()
        ),
        (Some("rotated"), Some("key1"), Some("key2"))
    );
    assert_eq!(result["verified"], true);
    let second = app.latest("cycle").await;
    assert_eq!(second.value, app.key("aoai-cycle", "key2").await);
    assert_ne!(second.value, "aoai-cycle-key2", "key2 was regenerated");
    assert_eq!(
        app.key("aoai-cycle", "key1").await,
        first.value,
        "the active key1 was not touched"
    );
    assert_eq!(second.tag("CredentialId"), Some("key2"));
    assert_eq!(second.tag("owner"), Some("team-ai"));
    assert_eq!(second.tag("RotationTrigger"), Some("event"));
    assert_eq!(second.tag("PreviousVersion"), Some(first.version.as_str()));
    assert!(second.tag("RotatedBy").unwrap().starts_with("keyflip/"));
    assert_eq!(second.content_type.as_deref(), Some("text/plain"));
    let now = app.now().await;
    assert_eq!((second.nbf, second.exp), (Some(now), Some(now + 60 * DAY)));
    assert_eq!(result["version"].as_str(), Some(second.version.as_str()));
    assert!(
        app.key_works("aoai-cycle", &first.value).await,
        "the old key still works"
    );
    assert!(app.key_works("aoai-cycle", &second.value).await);

    // Act: the next cycle, 50 days later
    app.advance(50 * DAY).await;
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "cycle").await;

    // Assert: key1 regenerated and published; key2 untouched
    let result = answer.result();
    assert_eq!(
        (
            result["outcome"].as_str(),
            result["from"].as_str(),
            result["to"].as_str()
        ),
        (Some("rotated"), Some("key2"), Some("key1"))
    );
    let third = app.latest("cycle").await;
    assert_eq!(third.tag("CredentialId"), Some("key1"));
    assert_eq!(third.value, app.key("aoai-cycle", "key1").await);
    assert_ne!(third.value, first.value);
    assert_eq!(app.key("aoai-cycle", "key2").await, second.value);
    assert_eq!(app.regenerations("aoai-cycle").await, [1, 1]);
}

#[tokio::test]
async fn the_active_key_is_never_regenerated() {
    // Arrange: key2 active
    let app = spawn_app().await;
    app.seed_account("aoai-active", "OpenAI").await;
    let mut spec = SecretSpec::new("active", "aoai-active");
    spec.active = "key2".into();
    app.seed_secret(spec).await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "active").await;

    // Assert: only key1 (idle) was regenerated; the RegenerateKey call named Key1
    assert_eq!(answer.outcome(), "rotated");
    assert_eq!(app.regenerations("aoai-active").await, [1, 0]);
    assert_eq!(app.key("aoai-active", "key2").await, "aoai-active-key2");
    let regenerations = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    assert_eq!(regenerations.len(), 1);
}

#[tokio::test]
async fn stale_and_duplicated_events_do_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-dup", "OpenAI").await;
    app.seed_secret(SecretSpec::new("dup", "aoai-dup")).await;
    let original = app.latest("dup").await;
    let first = app.deliver_for_latest(NEAR_EXPIRY, "dup").await;
    assert_eq!(first.outcome(), "rotated");
    let rotated = app.latest("dup").await;

    // Act: the same event again (Event Grid delivers at least once), and an older one late
    let duplicate = app
        .deliver(
            "Microsoft.KeyVault.SecretNearExpiry",
            VAULT,
            "dup",
            &original.version,
        )
        .await;
    let expired_late = app
        .deliver(
            "Microsoft.KeyVault.SecretExpired",
            VAULT,
            "dup",
            &original.version,
        )
        .await;

    // Assert: acknowledged as stale, nothing regenerated or written
    for answer in [&duplicate, &expired_late] {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.outcome(), "skipped:stale");
    }
    assert_eq!(app.regenerations("aoai-dup").await, [0, 1]);
    assert_eq!(app.versions(VAULT, "dup").await.len(), 2);
    assert_eq!(app.latest("dup").await.version, rotated.version);
}

#[tokio::test]
async fn an_expired_event_rotates() {
    // Arrange: the secret expired yesterday
    let app = spawn_app().await;
    app.seed_account("aoai-expired", "OpenAI").await;
    let mut spec = SecretSpec::new("expired", "aoai-expired");
    spec.expires_in_days = Some(-1);
    app.seed_secret(spec).await;

    // Act
    let answer = app.deliver_for_latest("SecretExpired", "expired").await;

    // Assert
    assert_eq!((answer.status, answer.outcome()), (200, "rotated"));
    assert_eq!(app.latest("expired").await.tag("CredentialId"), Some("key2"));
}

#[tokio::test]
async fn secret_new_version_created_is_acknowledged_without_rotating() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-new", "OpenAI").await;
    app.seed_secret(SecretSpec::new("new", "aoai-new")).await;
    app.control.clear_calls().await.unwrap();

    // Act
    let answer = app.deliver_for_latest("SecretNewVersionCreated", "new").await;

    // Assert: 200, ignored, no call to Azure at all
    assert_eq!((answer.status, answer.outcome()), (200, "skipped:ignored"));
    assert!(app.control.calls(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_event_fixtures_in_both_schemas_and_string_encoded_are_understood() {
    // Arrange: the fixtures name sample-kv, a vault keyflip serves here
    let app = crate::helpers::spawn_app_with(&[("KEYFLIP_VAULTS", "sample-kv")]).await;
    app.seed_account("aoai-fixture", "OpenAI").await;
    let mut spec = SecretSpec::new("newsecret", "aoai-fixture");
    spec.vault = "sample-kv".into();
    app.seed_secret(spec).await;
    let fixtures = [
        "derived/eventgrid-invocation.custom-handler.json",
        "derived/eventgrid-invocation.custom-handler.string-encoded.json",
    ];

    for path in fixtures {
        // Act: the fixture's version is not the latest one
        let answer = app
            .post("/KeyVaultEvents", crate::helpers::fixture(path).to_string())
            .await;

        // Assert: understood, and stale, so nothing happens
        assert_eq!(
            (answer.status, answer.outcome()),
            (200, "skipped:stale"),
            "{path}: {:?}",
            answer.body
        );
        assert!(
            answer.body["Logs"].is_array() && answer.body.get("Outputs").is_some(),
            "{path}"
        );
    }
    assert_eq!(app.regenerations("aoai-fixture").await, [0, 0]);
}

#[tokio::test]
async fn an_event_for_a_vault_not_served_is_refused_before_any_network_call() {
    // Arrange
    let app = spawn_app().await;
    app.control.clear_calls().await.unwrap();

    // Act
    let answer = app
        .deliver(
            "Microsoft.KeyVault.SecretNearExpiry",
            "kv-elsewhere",
            "s",
            "0123456789abcdef0123456789abcdef",
        )
        .await;

    // Assert: permanent (2xx so Event Grid stops), the reason in Logs, and no call to Azure
    assert_eq!((answer.status, answer.outcome()), (200, "failed:not-allowed"));
    let logs = answer.body["Logs"].to_string();
    assert!(logs.contains("KEYFLIP_VAULTS"), "{logs}");
    assert!(app.control.calls(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_event_that_cannot_be_understood_is_a_permanent_failure() {
    // Arrange
    let app = spawn_app().await;
    let envelope = json!({"Data": {"event": {"eventType": "Microsoft.KeyVault.SecretNearExpiry", "data": {}}}, "Metadata": {}});

    // Act
    let answer = app.post("/KeyVaultEvents", envelope.to_string()).await;

    // Assert: 200 (retrying cannot help), failed:bad-event, the reason in Logs and ReturnValue
    assert_eq!((answer.status, answer.outcome()), (200, "failed:bad-event"));
    assert!(
        answer.body["Logs"].to_string().contains("vault"),
        "{:?}",
        answer.body
    );
}

#[tokio::test]
async fn a_request_that_is_not_an_envelope_gets_400_with_a_message() {
    // Arrange
    let app = spawn_app().await;

    for body in ["not json", "{\"event\": {}}", "[1,2]"] {
        // Act
        let answer = app.post("/KeyVaultEvents", body).await;

        // Assert
        assert_eq!(answer.status, 400, "{body}");
        assert!(
            answer.body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("envelope"),
            "{body}: {:?}",
            answer.body
        );
    }
    let sweep = app.post("/RotationSweep", "nope").await;
    assert_eq!(sweep.status, 400);
}

#[tokio::test]
async fn an_event_for_a_secret_keyflip_does_not_manage_is_skipped_but_a_manual_call_is_refused() {
    // Arrange: a secret with none of the rotation tags
    let app = spawn_app().await;
    app.control
        .add_secret_version(VAULT, "plain", &json!({"value": "not-a-managed-key"}))
        .await
        .unwrap();

    // Act
    let event = app.deliver_for_latest("SecretNearExpiry", "plain").await;
    let manual = app.manual(VAULT, "plain", "").await;

    // Assert: an event meets every secret of a vault, so this is no error; asked by name, it is
    assert_eq!((event.status, event.outcome()), (200, "skipped:not-managed"));
    assert_eq!((manual.status, manual.outcome()), (422, "failed:misconfigured"));
    assert!(
        manual.result()["message"]
            .as_str()
            .unwrap()
            .contains("CredentialId")
    );
}

#[tokio::test]
async fn the_readiness_probe_answers_at_once() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("http://{}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
