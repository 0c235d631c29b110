//! Issue 7: the rotation lease seen from every trigger, and the honest pending rules of
//! DESIGN.md §3 step 5 (a mark only when the new key fails its first check, `PendingFrom`
//! checked on every resume, a failed publish re-read before it is reported).

use emulator::faults::{FaultRule, LatencyRule, Phase};
use keyflip::domain::key::{ApiKey, fingerprint};
use keyflip::domain::{SecretName, VaultName};
use keyflip::lease::{LeaseKey, Leases};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::*;

const NEAR_EXPIRY: &str = "SecretNearExpiry";

fn lease_key(secret: &str) -> LeaseKey {
    LeaseKey::new(
        &VaultName::parse(VAULT).unwrap(),
        &SecretName::parse(secret).unwrap(),
    )
}

#[tokio::test]
async fn a_lease_held_elsewhere_stops_every_trigger_before_any_resource_call() {
    // Arrange: another rotation (instance, trigger or CLI) holds the secret's lease
    let app = spawn_app().await;
    app.seed_account("aoai-held", "OpenAI").await;
    app.seed_secret(SecretSpec::new("held", "aoai-held")).await;
    let held = app.leases.acquire(&lease_key("HELD")).await.unwrap();

    // Act
    let event = app.deliver_for_latest(NEAR_EXPIRY, "held").await;
    let sweep = app.sweep().await;
    let manual = app.manual(VAULT, "held", "").await;

    // Assert: the event fails so Event Grid retries; the sweep leaves it to the holder and
    // succeeds; the manual call answers 409 naming the secret; nothing was touched
    assert_eq!(
        (event.status, event.outcome()),
        (500, "failed:locked"),
        "{:?}",
        event.body
    );
    assert_eq!(sweep.status, 200, "{:?}", sweep.body);
    assert_eq!(sweep.outcome_for(VAULT, "held"), "skipped:locked");
    assert_eq!(manual.status, 409, "{:?}", manual.body);
    assert!(
        manual.message().contains("a rotation of held is in progress"),
        "{}",
        manual.message()
    );
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
    let list_keys = app.control.calls(Some("Accounts_ListKeys")).await.unwrap();
    assert!(list_keys.is_empty(), "{list_keys:?}");

    // Act: the holder ends; Event Grid redelivers
    held.release().await.unwrap();
    let retried = app.deliver_for_latest(NEAR_EXPIRY, "held").await;

    // Assert
    assert_eq!(
        (retried.status, retried.outcome()),
        (200, "rotated"),
        "{:?}",
        retried.body
    );
    assert_eq!(app.regenerations("aoai-held").await, [0, 1]);
}

#[tokio::test]
async fn a_key_that_passes_at_once_costs_one_key_vault_write_and_one_list_keys() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-once", "OpenAI").await;
    app.seed_secret(SecretSpec::new("once", "aoai-once")).await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "once").await;

    // Assert: no pending mark was written; the lease came before the only listKeys
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "rotated"),
        "{:?}",
        answer.body
    );
    assert_eq!(app.writes().await, ["Accounts_RegenerateKey", "SetSecret"]);
    let list_keys = app.control.calls(Some("Accounts_ListKeys")).await.unwrap();
    assert_eq!(list_keys.len(), 1, "{list_keys:?}");
    assert!(app.latest("once").await.tag("PendingSlot").is_none());
}

#[tokio::test]
async fn a_key_that_fails_its_first_check_is_marked_with_pending_from_and_resumed_without_regenerating() {
    // Arrange: new keys work only 90 s after they are made
    let app = spawn_app().await;
    app.seed_account_with(json!({"name": "aoai-slow", "kind": "OpenAI", "key_activation_delay_seconds": 90}))
        .await;
    app.seed_secret(SecretSpec::new("slow", "aoai-slow")).await;
    let old_idle = app.key("aoai-slow", "key2").await;

    // Act
    let first = app.deliver_for_latest(NEAR_EXPIRY, "slow").await;

    // Assert: pending with a mark whose PendingFrom is the old idle key's fingerprint, and the
    // result promises a resume because the mark landed
    assert_eq!(
        (first.status, first.outcome()),
        (500, "pending"),
        "{:?}",
        first.body
    );
    let marked = app.latest("slow").await;
    assert_eq!(marked.tag("PendingSlot"), Some("key2"));
    assert_eq!(
        marked.tag("PendingFrom"),
        Some(fingerprint(&ApiKey::new(old_idle.as_str())).as_str())
    );
    assert!(
        first.message().contains("resumes without regenerating"),
        "{}",
        first.message()
    );

    // Act: the key starts working; Event Grid redelivers
    app.advance(91).await;
    let rerun = app.deliver_for_latest(NEAR_EXPIRY, "slow").await;

    // Assert
    assert_eq!(
        (rerun.status, rerun.outcome()),
        (200, "rotated"),
        "{:?}",
        rerun.body
    );
    assert_eq!(app.regenerations("aoai-slow").await, [0, 1]);
}

/// A mark as keyflip writes it when a regeneration outlived the budget (PendingFrom only).
async fn seed_running_mark(app: &TestApp, secret: &str, account: &str, from: &str) {
    app.seed_account(account, "OpenAI").await;
    let since = (OffsetDateTime::from_unix_timestamp(app.now().await).unwrap() - time::Duration::minutes(1))
        .format(&Rfc3339)
        .unwrap();
    let from = match from {
        "current idle key" => fingerprint(&ApiKey::new(app.key(account, "key2").await)),
        other => fingerprint(&ApiKey::new(other)),
    };
    let mut spec = SecretSpec::new(secret, account)
        .tag("PendingSlot", "key2")
        .tag("PendingSince", &since)
        .tag("PendingFrom", &from);
    spec.created_days_ago = 0;
    app.seed_secret(spec).await;
}

#[tokio::test]
async fn a_mark_whose_regeneration_has_not_taken_effect_stays_pending_and_never_regenerates() {
    // Arrange: PendingFrom is the fingerprint of the slot's current key: not landed yet
    let app = spawn_app().await;
    seed_running_mark(&app, "running", "aoai-running", "current idle key").await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "running").await;

    // Assert: pending, nothing regenerated or written
    assert_eq!(
        (answer.status, answer.outcome()),
        (500, "pending"),
        "{:?}",
        answer.body
    );
    assert!(
        answer.message().contains("has not taken effect yet"),
        "{}",
        answer.message()
    );
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
}

#[tokio::test]
async fn a_mark_whose_regeneration_took_effect_is_published_without_regenerating() {
    // Arrange: PendingFrom is the fingerprint of a key the slot no longer holds
    let app = spawn_app().await;
    seed_running_mark(&app, "landed", "aoai-landed", "the key before").await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "landed").await;

    // Assert: the current key2 is verified and published; keyflip regenerated nothing
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "rotated"),
        "{:?}",
        answer.body
    );
    assert_eq!(
        app.latest("landed").await.value,
        app.key("aoai-landed", "key2").await
    );
    assert_eq!(app.writes().await, ["SetSecret"]);
}

#[tokio::test]
async fn a_publish_whose_answer_is_lost_is_re_read_and_reported_rotated() {
    // Arrange: the new version is written, but its answer is lost
    let app = spawn_app().await;
    app.seed_account("aoai-lostpub", "OpenAI").await;
    app.seed_secret(SecretSpec::new("lostpub", "aoai-lostpub")).await;
    app.control
        .fault(&FaultRule {
            phase: Phase::After,
            ..FaultRule::new("SetSecret", 500, 10)
        })
        .await
        .unwrap();

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "lostpub").await;

    // Assert: the re-read saw the flip, so the result is the truth: rotated
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "rotated"),
        "{:?}",
        answer.body
    );
    let latest = app.latest("lostpub").await;
    assert_eq!(latest.tag("CredentialId"), Some("key2"));
    assert_eq!(latest.value, app.key("aoai-lostpub", "key2").await);
}

#[tokio::test]
async fn a_publish_that_times_out_is_re_read_marked_and_resumed_without_regenerating() {
    // Arrange: Key Vault's writes of new versions hang past the event budget (2 s here)
    let app = spawn_app().await;
    app.seed_account("aoai-slowkv", "OpenAI").await;
    app.seed_secret(SecretSpec::new("slowkv", "aoai-slowkv")).await;
    app.control
        .latency(&LatencyRule {
            operation: "SetSecret".into(),
            target: None,
            delay_ms: 10_000,
            count: Some(1),
        })
        .await
        .unwrap();

    // Act
    let first = app.deliver_for_latest(NEAR_EXPIRY, "slowkv").await;

    // Assert: a transient failure within the budget, the slot marked, the key unchanged
    assert_eq!(first.status, 500, "{:?}", first.body);
    let said = first.message();
    assert!(
        said.contains("re-read") && said.contains("without regenerating"),
        "{said}"
    );
    assert_eq!(app.latest("slowkv").await.tag("PendingSlot"), Some("key2"));

    // Act: Key Vault recovers
    let rerun = app.deliver_for_latest(NEAR_EXPIRY, "slowkv").await;

    // Assert: published, never regenerated twice
    assert_eq!(
        (rerun.status, rerun.outcome()),
        (200, "rotated"),
        "{:?}",
        rerun.body
    );
    assert_eq!(app.regenerations("aoai-slowkv").await, [0, 1]);
    assert_eq!(
        app.latest("slowkv").await.value,
        app.key("aoai-slowkv", "key2").await
    );
}
