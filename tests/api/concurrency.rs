//! Issue 7: the rotation lease seen from every trigger, and the honest pending rules of
//! DESIGN.md §3 step 5 (a mark only when the new key fails its first check, `PendingFrom`
//! checked on every resume, a failed publish re-read before it is reported).

use emulator::faults::{FaultRule, LatencyRule};
use keyflip::domain::key::{ApiKey, fingerprint};
use keyflip::domain::{SecretName, VaultName};
use keyflip::lease::LeaseKey;
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
    held_lease_stops_every_trigger(spawn_app().await).await;
}

#[tokio::test]
async fn a_blob_lease_held_by_another_instance_stops_every_trigger_before_any_resource_call() {
    held_lease_stops_every_trigger(spawn_app_with_storage_lease(&[]).await).await;
}

async fn held_lease_stops_every_trigger(app: TestApp) {
    // Arrange: another rotation (instance, trigger or CLI) holds the secret's lease
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
    assert!(
        sweep.result_for(VAULT, "held").is_none(),
        "skipped secrets are counted, not listed"
    );
    assert_eq!(
        sweep.result()["summary"]["skipped_by_reason"]["locked"],
        1,
        "{:?}",
        sweep.body
    );
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
    let since = OffsetDateTime::from_unix_timestamp(app.now().await).unwrap() - time::Duration::minutes(1);
    let from = match from {
        "current idle key" => fingerprint(&ApiKey::new(app.key(account, "key2").await)),
        other => fingerprint(&ApiKey::new(other)),
    };
    // Signed with the app's mark key, as keyflip signs the marks it writes.
    let version = "0123456789abcdef0123456789abcdef";
    let active = ApiKey::new(app.key(account, "key1").await);
    let proof = app
        .leases
        .mark_key()
        .await
        .unwrap()
        .pending_proof(version, &active, "key2", since, &from, false);
    let mut spec = SecretSpec::new(secret, account)
        .tag("PendingSlot", "key2")
        .tag("PendingSince", &since.format(&Rfc3339).unwrap())
        .tag("PendingFrom", &from)
        .tag("PendingProof", &proof);
    spec.created_days_ago = 0;
    spec.version = Some(version.to_string());
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

#[tokio::test]
async fn storage_that_cannot_lease_fails_the_rotation_transiently_and_nothing_is_touched() {
    // Arrange: every lease call fails (Storage is busy)
    let app = spawn_app_with_storage_lease(&[]).await;
    app.seed_account("aoai-nostore", "OpenAI").await;
    app.seed_secret(SecretSpec::new("nostore", "aoai-nostore")).await;
    app.control
        .fault(&FaultRule::new("Blob_AcquireLease", 503, 100))
        .await
        .unwrap();

    // Act
    let event = app.deliver_for_latest(NEAR_EXPIRY, "nostore").await;
    let manual = app.manual(VAULT, "nostore", "").await;

    // Assert: a transient failure that says keyflip never rotates without the lease
    assert_eq!(
        (event.status, event.outcome()),
        (500, "failed:transient"),
        "{:?}",
        event.body
    );
    assert!(
        event.message().contains("never rotates without it"),
        "{}",
        event.message()
    );
    assert_eq!(manual.status, 503, "{:?}", manual.body);
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
    assert_eq!(app.regenerations("aoai-nostore").await, [0, 0]);

    // Act: storage recovers
    app.control.clear_faults().await.unwrap();
    let retried = app.deliver_for_latest(NEAR_EXPIRY, "nostore").await;

    // Assert: one rotation, its lease released at the end
    assert_eq!(
        (retried.status, retried.outcome()),
        (200, "rotated"),
        "{:?}",
        retried.body
    );
    let released = app.control.calls(Some("Blob_ReleaseLease")).await.unwrap();
    assert_eq!(
        released.iter().filter(|c| c.status == 200).count(),
        1,
        "{released:?}"
    );
}

#[tokio::test]
async fn a_lease_lost_mid_rotation_stops_it_before_its_next_write() {
    // Arrange: a new key that works only after 60 s (the emulator's clock is frozen), and a
    // manual budget long enough for a renewal to run
    let app = spawn_app_with_storage_lease(&[("KEYFLIP_MANUAL_BUDGET_SECONDS", "20")]).await;
    app.seed_account_with(
        json!({"name": "aoai-lost-lease", "kind": "OpenAI", "key_activation_delay_seconds": 60}),
    )
    .await;
    app.seed_secret(SecretSpec::new("lostlease", "aoai-lost-lease"))
        .await;
    let url = format!("http://{}/api/rotate/{VAULT}/lostlease", app.address);
    let http = app.http.clone();
    let rotation = tokio::spawn(async move { http.post(url).send().await });

    // Act: once the slot is regenerated and marked, someone breaks the lease (as an operator
    // or a stuck-lease tool would); the next renewal finds it gone; then the key starts working
    let control = app.control.clone();
    wait_for(|| async { !control.calls(Some("UpdateSecret")).await.unwrap().is_empty() }).await;
    app.break_lease("lostlease").await;
    wait_for(|| async {
        control
            .calls(Some("Blob_RenewLease"))
            .await
            .unwrap()
            .iter()
            .any(|c| c.status >= 400)
    })
    .await;
    app.advance(61).await;
    let answer = rotation.await.unwrap().unwrap();

    // Assert: the rotation stopped before publishing: no new version, the mark stays for the
    // next rotation to resume
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value = answer.json().await.unwrap();
    let message = body["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("lease was lost"), "{body}");
    assert!(app.control.calls(Some("SetSecret")).await.unwrap().is_empty());
    assert_eq!(app.latest("lostlease").await.tag("PendingSlot"), Some("key2"));

    // Act: the next rotation takes the lease again and resumes
    let rerun = app.manual(VAULT, "lostlease", "").await;
    assert_eq!(
        (rerun.status, rerun.outcome()),
        (200, "rotated"),
        "{:?}",
        rerun.body
    );
    assert_eq!(app.regenerations("aoai-lost-lease").await, [0, 1]);
}

/// Polls `ready` (real time: the lease runs on storage's clock) for up to 30 s.
async fn wait_for<F, Fut>(ready: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if ready().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the condition was not reached in 30 s");
}

#[tokio::test]
async fn a_regeneration_that_outlives_the_budget_ends_pending_and_is_resumed_never_resent() {
    // Arrange: the account's regenerations are long-running and end 30 s later (emulator clock)
    let app = spawn_app().await;
    app.seed_account("aoai-lro", "OpenAI").await;
    app.seed_secret(SecretSpec::new("lro", "aoai-lro")).await;
    let old_idle = app.key("aoai-lro", "key2").await;
    let setting: emulator::operations::LongRunning =
        serde_json::from_value(json!({"complete_after_seconds": 30})).unwrap();
    app.control
        .set_long_running("aoai-lro", Some(&setting))
        .await
        .unwrap();

    // Act: the operation outlives the event's budget
    let first = app.deliver_for_latest(NEAR_EXPIRY, "lro").await;

    // Assert: pending, marked with the old key's fingerprint and no proof (no new key yet)
    assert_eq!(
        (first.status, first.outcome()),
        (500, "pending"),
        "{:?}",
        first.body
    );
    let marked = app.latest("lro").await;
    assert_eq!(
        marked.tag("PendingFrom"),
        Some(fingerprint(&ApiKey::new(old_idle.as_str())).as_str())
    );
    assert_eq!(
        marked.tag("PendingProof").map(str::len),
        Some(16),
        "keyed by keyflip"
    );

    // Act: a redelivery while it still runs, then one after it ended
    let early = app.deliver_for_latest(NEAR_EXPIRY, "lro").await;
    app.advance(31).await;
    let late = app.deliver_for_latest(NEAR_EXPIRY, "lro").await;

    // Assert: still pending, then published; regenerateKey was sent exactly once
    assert_eq!(
        (early.status, early.outcome()),
        (500, "pending"),
        "{:?}",
        early.body
    );
    assert_eq!((late.status, late.outcome()), (200, "rotated"), "{:?}", late.body);
    let sent = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(app.latest("lro").await.value, app.key("aoai-lro", "key2").await);
    assert_eq!(app.control.active_regenerations().await.unwrap().count, 0);
}

#[tokio::test]
async fn an_accepted_regeneration_that_cannot_be_followed_is_marked_and_never_resent() {
    // Arrange: the 202 points its poll URLs at another host, which keyflip never calls
    let app = spawn_app().await;
    app.seed_account("aoai-elsewhere", "OpenAI").await;
    app.seed_secret(SecretSpec::new("elsewhere", "aoai-elsewhere"))
        .await;
    let setting: emulator::operations::LongRunning = serde_json::from_value(
        json!({"complete_after_seconds": 5, "poll_base": "https://attacker.example.net"}),
    )
    .unwrap();
    app.control
        .set_long_running("aoai-elsewhere", Some(&setting))
        .await
        .unwrap();

    // Act
    let first = app.deliver_for_latest(NEAR_EXPIRY, "elsewhere").await;
    let again = app.deliver_for_latest(NEAR_EXPIRY, "elsewhere").await;

    // Assert: pending (it may still land), and the redelivery does not send it again
    assert_eq!(
        (first.status, first.outcome()),
        (500, "pending"),
        "{:?}",
        first.body
    );
    assert!(first.message().contains("did not call it"), "{}", first.message());
    assert_eq!(
        (again.status, again.outcome()),
        (500, "pending"),
        "{:?}",
        again.body
    );
    let sent = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");

    // Act: it lands; the next delivery publishes it
    app.advance(6).await;
    let late = app.deliver_for_latest(NEAR_EXPIRY, "elsewhere").await;
    assert_eq!((late.status, late.outcome()), (200, "rotated"), "{:?}", late.body);
    assert_eq!(
        app.control
            .calls(Some("Accounts_RegenerateKey"))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_mark_from_an_earlier_keyflip_is_not_stranded_the_idle_slot_is_regenerated_afresh() {
    // Arrange: an upgrade meets a mark issue 6's keyflip wrote (PendingProof over the version,
    // key1 and the regenerated key2; no PendingFrom): unkeyed, so it cannot be told from a
    // forgery by a tag writer who reads the versions
    let app = spawn_app().await;
    app.seed_account("aoai-legacy", "OpenAI").await;
    let version = "fedcba9876543210fedcba9876543210";
    let proof = keyflip::domain::key::mark_proof(
        version,
        &ApiKey::new(app.key("aoai-legacy", "key1").await),
        &ApiKey::new(app.key("aoai-legacy", "key2").await),
    );
    let since = (OffsetDateTime::from_unix_timestamp(app.now().await).unwrap() - time::Duration::minutes(10))
        .format(&Rfc3339)
        .unwrap();
    let mut spec = SecretSpec::new("legacy", "aoai-legacy")
        .tag("PendingSlot", "key2")
        .tag("PendingSince", &since)
        .tag("PendingProof", &proof);
    spec.version = Some(version.to_string());
    app.seed_secret(spec).await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "legacy").await;

    // Assert: it converges: key2 is regenerated once more (unused, so harmless) and published
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "rotated"),
        "{:?}",
        answer.body
    );
    assert_eq!(app.regenerations("aoai-legacy").await, [0, 1]);
    let latest = app.latest("legacy").await;
    assert_eq!(latest.value, app.key("aoai-legacy", "key2").await);
    assert_eq!(latest.tag("PendingSlot"), None);
}
