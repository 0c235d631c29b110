//! What keyflip does when Azure is slow, flaky or loses answers: a new key that is not valid
//! yet (pending, resumed without regenerating), one that never becomes valid (the pending
//! timeout), retried throttling and server errors, a regenerate that is never resent, a failed
//! write after the regenerate, a lost answer, a long-running (202) regeneration, and a budget
//! that runs out.

use emulator::faults::{FaultRule, LatencyRule, Phase};
use serde_json::json;

use crate::helpers::{DAY, SecretSpec, VAULT, spawn_app, spawn_app_with};

const NEAR_EXPIRY: &str = "SecretNearExpiry";

/// A fault on `operation` that answers `status` `count` times before the operation runs.
fn fault(operation: &str, status: u16, count: u32) -> FaultRule {
    FaultRule::new(operation, status, count)
}

#[tokio::test]
async fn a_key_that_works_only_after_the_budget_stays_pending_then_is_published_without_regenerating() {
    // Arrange: new keys of this account start working 90 s after their regeneration
    let app = spawn_app().await;
    app.seed_account_with(json!({"name": "aoai-slow", "kind": "OpenAI", "key_activation_delay_seconds": 90}))
        .await;
    app.seed_secret(SecretSpec::new("slow", "aoai-slow")).await;
    let original = app.latest("slow").await;

    // Act: the event's invocation cannot wait 90 s
    let first = app.deliver_for_latest(NEAR_EXPIRY, "slow").await;

    // Assert: 500 (Event Grid redelivers), pending; the mark is a tag update on the same version
    assert_eq!(
        (first.status, first.outcome()),
        (500, "pending"),
        "{:?}",
        first.body
    );
    assert_eq!(first.result()["verified"], false);
    let marked = app.latest("slow").await;
    assert_eq!(
        marked.version, original.version,
        "a tag update creates no version"
    );
    assert_eq!(app.versions(VAULT, "slow").await.len(), 1);
    assert_eq!(marked.value, original.value);
    assert_eq!(marked.tag("CredentialId"), Some("key1"));
    assert_eq!(marked.tag("PendingSlot"), Some("key2"));
    let since = marked.tag("PendingSince").expect("PendingSince");
    let since = time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
        .expect("PendingSince is RFC 3339");
    assert_eq!(since.unix_timestamp(), app.now().await);
    assert_eq!(app.regenerations("aoai-slow").await, [0, 1]);
    assert!(
        app.key_works("aoai-slow", &original.value).await,
        "the old key still works"
    );
    let new_key = app.key("aoai-slow", "key2").await;
    assert!(!app.key_works("aoai-slow", &new_key).await);

    // Act: a manual call while pending
    let manual = app.manual(VAULT, "slow", "").await;

    // Assert: 202 pending, still no second regeneration
    assert_eq!(
        (manual.status, manual.outcome()),
        (202, "pending"),
        "{:?}",
        manual.body
    );
    assert_eq!(app.regenerations("aoai-slow").await, [0, 1]);

    // Act: 90 s later Event Grid redelivers the same event (same version)
    app.advance(90).await;
    let redelivered = app
        .deliver(
            "Microsoft.KeyVault.SecretNearExpiry",
            VAULT,
            "slow",
            &original.version,
        )
        .await;

    // Assert: the pending key2 is published, verified, and was regenerated only once
    assert_eq!(
        (redelivered.status, redelivered.outcome()),
        (200, "rotated"),
        "{:?}",
        redelivered.body
    );
    assert_eq!(redelivered.result()["verified"], true);
    assert_eq!(app.regenerations("aoai-slow").await, [0, 1]);
    let published = app.latest("slow").await;
    assert_eq!(published.value, new_key);
    assert_eq!(published.tag("CredentialId"), Some("key2"));
    assert_eq!(published.tag("PendingSlot"), None);
    assert_eq!(published.tag("PendingSince"), None);
    assert_eq!(published.tag("PreviousVersion"), Some(original.version.as_str()));
    assert!(app.key_works("aoai-slow", &published.value).await);
    assert!(app.key_works("aoai-slow", &original.value).await);
}

#[tokio::test]
async fn a_key_that_never_works_times_out_loudly_and_the_next_rotation_regenerates_afresh() {
    // Arrange: new keys of this account start working in ten years
    let app = spawn_app().await;
    let ten_years = 10 * 365 * DAY;
    app.seed_account_with(
        json!({"name": "aoai-never", "kind": "OpenAI", "key_activation_delay_seconds": ten_years}),
    )
    .await;
    app.seed_secret(SecretSpec::new("never", "aoai-never")).await;
    let original = app.latest("never").await;

    // Act: the event, then its redelivery
    let first = app.deliver_for_latest(NEAR_EXPIRY, "never").await;
    let again = app.deliver_for_latest(NEAR_EXPIRY, "never").await;

    // Assert: pending both times, regenerated once
    for answer in [&first, &again] {
        assert_eq!(
            (answer.status, answer.outcome()),
            (500, "pending"),
            "{:?}",
            answer.body
        );
    }
    assert_eq!(app.regenerations("aoai-never").await, [0, 1]);
    let stuck_key = app.key("aoai-never", "key2").await;

    // Act: past KEYFLIP_PENDING_TIMEOUT_HOURS (6 by default)
    app.advance(6 * 3600 + 1).await;
    let timed_out = app.deliver_for_latest(NEAR_EXPIRY, "never").await;

    // Assert: a permanent failure (200), pointer and value unchanged, the mark cleared
    assert_eq!(
        (timed_out.status, timed_out.outcome()),
        (200, "failed:verification-timeout"),
        "{:?}",
        timed_out.body
    );
    let cleared = app.latest("never").await;
    assert_eq!(cleared.version, original.version);
    assert_eq!(cleared.value, original.value);
    assert_eq!(cleared.tag("CredentialId"), Some("key1"));
    assert_eq!(cleared.tag("PendingSlot"), None);
    assert_eq!(cleared.tag("PendingSince"), None);
    assert_eq!(app.regenerations("aoai-never").await, [0, 1]);
    assert!(app.key_works("aoai-never", &original.value).await);

    // Act: the resource is fixed; the next rotation
    app.control
        .patch_account("aoai-never", &json!({"key_activation_delay_seconds": 0}))
        .await
        .unwrap();
    let next = app.deliver_for_latest(NEAR_EXPIRY, "never").await;

    // Assert: key2 regenerated afresh (not the stuck key) and published
    assert_eq!((next.status, next.outcome()), (200, "rotated"), "{:?}", next.body);
    assert_eq!(app.regenerations("aoai-never").await, [0, 2]);
    let published = app.latest("never").await;
    assert_ne!(published.value, stuck_key);
    assert_eq!(published.value, app.key("aoai-never", "key2").await);
    assert_eq!(published.tag("CredentialId"), Some("key2"));
    assert!(app.key_works("aoai-never", &published.value).await);
}

#[tokio::test]
async fn an_arm_500_on_regenerate_is_never_resent_before_the_pending_timeout() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-arm500", "OpenAI").await;
    app.seed_secret(SecretSpec::new("arm500", "aoai-arm500")).await;
    let original = app.latest("arm500").await;
    app.control
        .fault(&fault("Accounts_RegenerateKey", 500, 1))
        .await
        .unwrap();

    // Act
    let first = app.deliver_for_latest(NEAR_EXPIRY, "arm500").await;

    // Assert: regenerateKey is sent once; keyflip cannot tell whether it will still land (a
    // lost 202 looks the same), so it marks the slot pending; nothing was published
    assert_eq!(
        (first.status, first.outcome()),
        (500, "pending"),
        "{:?}",
        first.body
    );
    assert!(first.message().contains("may or may not"), "{:?}", first.body);
    let calls = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    let statuses: Vec<(u16, bool)> = calls.iter().map(|c| (c.status, c.faulted)).collect();
    assert_eq!(statuses, [(500, true)]);
    let marked = app.latest("arm500").await;
    assert_eq!(marked.value, original.value);
    assert_eq!(marked.tag("PendingSlot"), Some("key2"));

    // Act: Event Grid redelivers
    let rerun = app.deliver_for_latest(NEAR_EXPIRY, "arm500").await;

    // Assert: still pending, never resent
    assert_eq!(
        (rerun.status, rerun.outcome()),
        (500, "pending"),
        "{:?}",
        rerun.body
    );
    assert_eq!(
        app.control
            .calls(Some("Accounts_RegenerateKey"))
            .await
            .unwrap()
            .len(),
        1
    );

    // Act: past the pending timeout it fails loudly, then the next rotation starts afresh
    app.advance(6 * 3600 + 1).await;
    let expired = app.deliver_for_latest(NEAR_EXPIRY, "arm500").await;
    let fresh = app.deliver_for_latest(NEAR_EXPIRY, "arm500").await;

    // Assert
    assert_eq!(
        expired.outcome(),
        "failed:verification-timeout",
        "{:?}",
        expired.body
    );
    assert_eq!(
        (fresh.status, fresh.outcome()),
        (200, "rotated"),
        "{:?}",
        fresh.body
    );
    assert_eq!(app.regenerations("aoai-arm500").await, [0, 1]);
    let latest = app.latest("arm500").await;
    assert_eq!(latest.value, app.key("aoai-arm500", "key2").await);
}

#[tokio::test]
async fn a_throttled_list_keys_with_retry_after_is_retried_and_the_rotation_succeeds() {
    // Arrange: the first listKeys is throttled with Retry-After: 1
    let app = spawn_app().await;
    app.seed_account("aoai-throttled", "OpenAI").await;
    app.seed_secret(SecretSpec::new("throttled", "aoai-throttled"))
        .await;
    app.control
        .fault(&FaultRule {
            retry_after_seconds: Some(1),
            ..fault("Accounts_ListKeys", 429, 1)
        })
        .await
        .unwrap();

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "throttled").await;

    // Assert
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "rotated"),
        "{:?}",
        answer.body
    );
    assert_eq!(app.regenerations("aoai-throttled").await, [0, 1]);
    let calls = app.control.calls(Some("Accounts_ListKeys")).await.unwrap();
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>()[..2],
        [429, 200]
    );
    assert_eq!(
        app.latest("throttled").await.value,
        app.key("aoai-throttled", "key2").await
    );
}

#[tokio::test]
async fn a_key_vault_write_failure_after_the_regenerate_keeps_the_old_key_and_a_rerun_converges() {
    // A new key that passes its first check needs no pending mark (one write per rotation); a
    // publish that does not land is re-read, then marked, so the rerun publishes that key.
    // Arrange: every SetSecret fails, more times than the retries allow
    let app = spawn_app().await;
    app.seed_account("aoai-write", "OpenAI").await;
    app.seed_secret(SecretSpec::new("write", "aoai-write")).await;
    let original = app.latest("write").await;
    app.control.fault(&fault("SetSecret", 500, 50)).await.unwrap();

    // Act
    let failed = app.deliver_for_latest(NEAR_EXPIRY, "write").await;

    // Assert: transient (500); the old key is still published and works; the mark is set
    assert_eq!(
        (failed.status, failed.outcome()),
        (500, "failed:transient"),
        "{:?}",
        failed.body
    );
    let marked = app.latest("write").await;
    assert_eq!(app.versions(VAULT, "write").await.len(), 1);
    assert_eq!(marked.value, original.value);
    assert_eq!(marked.tag("CredentialId"), Some("key1"));
    assert!(app.key_works("aoai-write", &marked.value).await);
    assert_eq!(marked.tag("PendingSlot"), Some("key2"));
    assert_eq!(marked.tag("PendingFrom").map(str::len), Some(16));
    assert_eq!(marked.tag("PendingProof").map(str::len), Some(16));
    assert_eq!(marked.version, original.version);
    assert_eq!(app.regenerations("aoai-write").await, [0, 1]);
    let said = failed.message();
    assert!(
        said.contains("did not land") && said.contains("publishes it without regenerating"),
        "{said}"
    );
    let new_key = app.key("aoai-write", "key2").await;

    // Act: Key Vault recovers; Event Grid redelivers
    app.control.clear_faults().await.unwrap();
    let rerun = app.deliver_for_latest(NEAR_EXPIRY, "write").await;

    // Assert: the pending key2 is published, not regenerated again
    assert_eq!(
        (rerun.status, rerun.outcome()),
        (200, "rotated"),
        "{:?}",
        rerun.body
    );
    assert_eq!(app.regenerations("aoai-write").await, [0, 1]);
    let published = app.latest("write").await;
    assert_eq!(published.value, new_key);
    assert_eq!(published.tag("CredentialId"), Some("key2"));
    assert_eq!(published.tag("PendingSlot"), None);
    assert!(app.key_works("aoai-write", &published.value).await);
}

#[tokio::test]
async fn a_lost_regenerate_answer_still_converges_to_a_consistent_secret() {
    // Arrange: the first regeneration runs, but its answer is lost (500 after the fact)
    let app = spawn_app().await;
    app.seed_account("aoai-lost", "OpenAI").await;
    app.seed_secret(SecretSpec::new("lost", "aoai-lost")).await;
    let original = app.latest("lost").await;
    app.control
        .fault(&FaultRule {
            phase: Phase::After,
            ..fault("Accounts_RegenerateKey", 500, 1)
        })
        .await
        .unwrap();

    // Act
    let first = app.deliver_for_latest(NEAR_EXPIRY, "lost").await;

    // Assert: not resent, so regenerated once; the keys read afterwards show that it took
    // effect, so keyflip goes on with the new key and publishes it
    assert_eq!(
        (first.status, first.outcome()),
        (200, "rotated"),
        "{:?}",
        first.body
    );
    assert_eq!(app.regenerations("aoai-lost").await, [0, 1]);
    let calls = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    assert_eq!(calls.len(), 1, "sent once: {calls:?}");

    // Act: Event Grid redelivers (a duplicate)
    let rerun = app.deliver_for_latest(NEAR_EXPIRY, "lost").await;

    // Assert: nothing more happens; the secret holds the slot's current key, and the old key
    // still works
    assert_eq!(
        (rerun.status, rerun.outcome()),
        (200, "skipped:dwell"),
        "{:?}",
        rerun.body
    );
    assert_eq!(app.regenerations("aoai-lost").await, [0, 1]);
    let published = app.latest("lost").await;
    assert_eq!(published.tag("CredentialId"), Some("key2"));
    assert_eq!(published.value, app.key("aoai-lost", "key2").await);
    assert!(app.key_works("aoai-lost", &published.value).await);
    assert_eq!(app.key("aoai-lost", "key1").await, original.value);
    assert!(app.key_works("aoai-lost", &original.value).await);
    assert_eq!(app.control.active_regenerations().await.unwrap().count, 0);
}

#[tokio::test]
async fn a_throttling_storm_on_reading_the_secret_fails_transiently_without_regenerating() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-storm", "OpenAI").await;
    app.seed_secret(SecretSpec::new("storm", "aoai-storm")).await;
    let original = app.latest("storm").await;
    app.control.fault(&fault("GetSecret", 429, 50)).await.unwrap();

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "storm").await;

    // Assert
    assert_eq!(
        (answer.status, answer.outcome()),
        (500, "failed:transient"),
        "{:?}",
        answer.body
    );
    assert_eq!(app.regenerations("aoai-storm").await, [0, 0]);
    assert!(
        app.control
            .calls(Some("Accounts_RegenerateKey"))
            .await
            .unwrap()
            .is_empty()
    );
    let latest = app.latest("storm").await;
    assert_eq!(latest.version, original.version);
    assert_eq!(latest.tag("PendingSlot"), None);
}

#[tokio::test]
async fn an_invocation_whose_budget_runs_out_during_latency_fails_transiently_without_regenerating() {
    // Arrange: listKeys takes 3 s; the event's budget is 2 s
    let app = spawn_app_with(&[("KEYFLIP_EVENT_BUDGET_SECONDS", "2")]).await;
    app.seed_account("aoai-latency", "OpenAI").await;
    app.seed_secret(SecretSpec::new("latency", "aoai-latency")).await;
    let original = app.latest("latency").await;
    app.control
        .latency(&LatencyRule {
            operation: "Accounts_ListKeys".into(),
            target: None,
            delay_ms: 3000,
            count: None,
        })
        .await
        .unwrap();

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "latency").await;

    // Assert
    assert_eq!(
        (answer.status, answer.outcome()),
        (500, "failed:transient"),
        "{:?}",
        answer.body
    );
    assert!(
        answer.result()["message"].as_str().unwrap().contains("budget"),
        "{:?}",
        answer.body
    );
    assert_eq!(app.regenerations("aoai-latency").await, [0, 0]);
    let latest = app.latest("latency").await;
    assert_eq!(latest.version, original.version);
    assert_eq!(latest.tag("PendingSlot"), None);
}

#[tokio::test]
async fn a_pending_rotation_is_resumed_by_the_next_sweep_even_when_not_due_by_expiry() {
    // Arrange: a forced manual rotation left key2 pending on a secret that expires in 90 days
    let app = spawn_app_with(&[("KEYFLIP_VAULTS", VAULT)]).await;
    app.seed_account_with(
        json!({"name": "aoai-resume", "kind": "OpenAI", "key_activation_delay_seconds": 90}),
    )
    .await;
    let mut spec = SecretSpec::new("resume", "aoai-resume");
    spec.expires_in_days = Some(90);
    app.seed_secret(spec).await;
    let manual = app.manual(VAULT, "resume", "?force=true").await;
    assert_eq!(
        (manual.status, manual.outcome()),
        (202, "pending"),
        "{:?}",
        manual.body
    );
    let new_key = app.key("aoai-resume", "key2").await;
    app.advance(90).await;

    // Act
    let sweep = app.sweep().await;

    // Assert: the sweep took the pending secret as due and published key2 without regenerating
    assert_eq!(sweep.status, 200, "{:?}", sweep.body);
    let summary = &sweep.result()["summary"];
    assert_eq!(
        (summary["due"].as_u64(), summary["rotated"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );
    assert_eq!(app.regenerations("aoai-resume").await, [0, 1]);
    let published = app.latest("resume").await;
    assert_eq!(published.value, new_key);
    assert_eq!(published.tag("CredentialId"), Some("key2"));
    assert_eq!(published.tag("RotationTrigger"), Some("timer"));
    assert_eq!(published.tag("PendingSlot"), None);
}

#[tokio::test]
async fn a_publish_whose_answer_is_lost_is_recognised_as_landed() {
    // Arrange: every SetSecret answer is lost after the write lands
    let app = spawn_app().await;
    app.seed_account("aoai-landed", "OpenAI").await;
    app.seed_secret(SecretSpec::new("landed", "aoai-landed")).await;
    app.control
        .fault(&FaultRule {
            phase: Phase::After,
            ..fault("SetSecret", 500, 50)
        })
        .await
        .unwrap();

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "landed").await;

    // Assert: keyflip re-reads, sees its own version published, and reports the rotation
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "rotated"),
        "{:?}",
        answer.body
    );
    let latest = app.latest("landed").await;
    assert_eq!(latest.tag("CredentialId"), Some("key2"));
    assert_eq!(latest.value, app.key("aoai-landed", "key2").await);
    assert_eq!(answer.result()["version"].as_str(), Some(latest.version.as_str()));
    assert!(app.key_works("aoai-landed", &latest.value).await);
    assert_eq!(app.regenerations("aoai-landed").await, [0, 1]);
}

#[tokio::test]
async fn a_long_running_regeneration_is_followed_to_its_end_and_its_key_published() {
    // Arrange: regenerateKey answers 202; the operation ends at once on the emulator's clock
    let app = spawn_app().await;
    app.seed_account_with(json!({"name": "aoai-lro", "kind": "OpenAI",
        "long_running": {"complete_after_seconds": 0, "retry_after_seconds": 1}}))
        .await;
    app.seed_secret(SecretSpec::new("lro", "aoai-lro")).await;
    let original = app.latest("lro").await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "lro").await;

    // Assert: polled to Succeeded, the new key read with listKeys, verified and published
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "rotated"),
        "{:?}",
        answer.body
    );
    let calls = app.control.calls(Some("Accounts_RegenerateKey")).await.unwrap();
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), [202]);
    assert!(
        !app.control
            .calls(Some("OperationStatuses_Get"))
            .await
            .unwrap()
            .is_empty()
    );
    let published = app.latest("lro").await;
    assert_eq!(published.tag("CredentialId"), Some("key2"));
    assert_eq!(published.value, app.key("aoai-lro", "key2").await);
    assert_ne!(published.value, original.value);
    assert!(app.key_works("aoai-lro", &published.value).await);
    assert!(app.key_works("aoai-lro", &original.value).await);
    assert_eq!(app.control.active_regenerations().await.unwrap().count, 0);
}
