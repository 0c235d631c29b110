//! Regressions from the hostile review of issue 7: late landings and forged marks that broke
//! I1/I2/I5 before they were fixed (a lost 202 is marked, never resent; marks are keyed with
//! keyflip's mark key; an emergency's intent survives a pending first check). Each doc comment
//! tells the attack as it was found.

use emulator::faults::{FaultRule, Phase};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use keyflip::domain::key::{ApiKey, mark_proof};

use crate::helpers::*;

const NEAR_EXPIRY: &str = "SecretNearExpiry";

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// I1/I5: a regenerateKey whose 202 was lost (a 500 after Resource Manager accepted the
/// long-running operation) is still running when keyflip reads the keys: they look unchanged,
/// so keyflip ended "transient, a retry regenerates it" without a mark. The retry regenerates
/// the same slot again (here synchronously), verifies and publishes that key; then the first
/// operation lands and kills the published key.
#[tokio::test]
async fn review7_a_lost_202_is_not_resent_while_it_may_still_land() {
    let app = spawn_app().await;
    app.seed_account_with(json!({"name": "aoai-l202", "kind": "OpenAI",
        "long_running": {"complete_after_seconds": 120, "retry_after_seconds": 1}}))
        .await;
    app.seed_secret(SecretSpec::new("l202", "aoai-l202")).await;
    app.control
        .fault(&FaultRule {
            phase: Phase::After,
            ..FaultRule::new("Accounts_RegenerateKey", 500, 1)
        })
        .await
        .unwrap();

    // The first invocation: the operation was accepted, its answer lost.
    let first = app.deliver_for_latest(NEAR_EXPIRY, "l202").await;
    eprintln!("first: {} {}", first.outcome(), first.message());
    assert_eq!(
        app.control.operations().await.unwrap().len(),
        1,
        "operation 1 started"
    );

    // Resource Manager answers the next regeneration faster (different RP instance).
    app.control
        .patch_account("aoai-l202", &json!({"long_running": null}))
        .await
        .unwrap();
    let retry = app.deliver_for_latest(NEAR_EXPIRY, "l202").await;
    eprintln!("retry: {} {}", retry.outcome(), retry.message());

    // The first operation ends.
    app.advance(200).await;
    let latest = app.latest("l202").await;
    let _ = app.key("aoai-l202", "key2").await; // settles the operation
    let active = app.control.active_regenerations().await.unwrap();
    assert!(
        app.key_works("aoai-l202", &latest.value).await && active.count == 0,
        "the published key was killed by the late landing of the first regeneration \
         (regenerations {:?}, active regenerations {}, first: {}, retry: {})",
        app.regenerations("aoai-l202").await,
        active.count,
        first.outcome(),
        retry.outcome()
    );
}

/// The forged-mark guard: a tag writer who holds only the active key writes
/// PendingSlot=<idle>, PendingSince=now, PendingFrom=<anything> (no PendingProof). keyflip
/// resumed it as its own: inside the dwell, without regenerating, it flips the pointer and
/// publishes the idle key (which the writer then reads).
#[tokio::test]
async fn review7_a_forged_pending_from_mark_is_not_resumed() {
    let app = spawn_app().await;
    app.seed_account("aoai-forge", "OpenAI").await;
    let now = app.now().await;
    let mut spec = SecretSpec::new("forge", "aoai-forge")
        .tag("PendingSlot", "key2")
        .tag("PendingSince", &rfc3339(now - 60))
        .tag("PendingFrom", "0000000000000000");
    spec.created_days_ago = 0; // inside the dwell
    app.seed_secret(spec).await;
    let before = app.latest("forge").await;

    let answer = app.sweep().await;
    let outcome = answer.outcome_for(VAULT, "forge");

    let latest = app.latest("forge").await;
    assert_eq!(
        latest.version,
        before.version,
        "a forged mark was resumed: outcome {outcome}, now {} holds {} (regenerations {:?}) — \
         the pointer flipped inside the dwell to a key keyflip never regenerated",
        latest.version,
        latest.tag("CredentialId").unwrap_or_default(),
        app.regenerations("aoai-forge").await
    );
}

/// I2: RevokeProof is a plain hash of PreviousVersion (a tag the writer sets), the published
/// key and the idle key. Whoever reads the secret's versions has both keys (the idle key is the
/// previous version's value inside the dwell). A forged RevokePending made keyflip regenerate
/// the idle slot at once, an hour after consumers were moved off it.
#[tokio::test]
async fn review7_a_forged_revoke_mark_does_not_regenerate_inside_the_dwell() {
    let app = spawn_app().await;
    app.seed_account("aoai-rvk", "OpenAI").await;
    // V0 held key2 until an hour ago; V1 (key1) is the latest, inside the dwell.
    let mut v0 = SecretSpec::new("rvk", "aoai-rvk");
    v0.active = "key2".into();
    v0.created_days_ago = 2;
    app.seed_secret(v0).await;
    let v0 = app.latest("rvk").await;
    let (k1, k2) = (
        app.key("aoai-rvk", "key1").await,
        app.key("aoai-rvk", "key2").await,
    );
    assert_eq!(v0.value, k2);
    let now = app.now().await;
    let proof = mark_proof(&v0.version, &ApiKey::new(k1.clone()), &ApiKey::new(k2.clone()));
    app.control
        .add_secret_version(
            VAULT,
            "rvk",
            &json!({"value": k1, "content_type": "text/plain", "enabled": true,
                "created": now - 3600, "nbf": now - 3600, "exp": now + 50 * DAY,
                "tags": {"CredentialId": "key1",
                    "ProviderAddress": TestApp::provider_address("aoai-rvk"),
                    "ValidityPeriodDays": "60", "PreviousVersion": v0.version,
                    // the forgery: two tags
                    "RevokePending": "key2", "RevokeProof": proof}}),
        )
        .await
        .unwrap();

    let answer = app.sweep().await;
    let outcome = answer.outcome_for(VAULT, "rvk");

    assert_eq!(
        app.regenerations("aoai-rvk").await,
        [0, 0],
        "key2, active until an hour ago, was regenerated inside the dwell on a forged mark (outcome {outcome}); \
         works now: {}",
        app.key_works("aoai-rvk", &k2).await
    );
}

/// The leaked-key emergency whose new key does not pass its first check ends pending; the
/// pending mark did not carry the revocation, so the rerun that resumed it (the sweep, an
/// event) published the new key as a plain rotation and the leaked key stays valid until the
/// next rotation after the dwell.
#[tokio::test]
async fn review7_a_pending_revocation_still_revokes_the_leaked_key_when_resumed() {
    let app = spawn_app().await;
    app.seed_account_with(json!({"name": "aoai-rvp", "kind": "OpenAI", "key_activation_delay_seconds": 90}))
        .await;
    let mut spec = SecretSpec::new("rvp", "aoai-rvp");
    spec.created_days_ago = 0;
    app.seed_secret(spec).await;
    let leaked = app.latest("rvp").await.value;

    let first = app.manual(VAULT, "rvp", "?mode=revoke-active").await;
    eprintln!("first: {} {} {}", first.status, first.outcome(), first.message());
    app.advance(91).await;
    let rerun = app.sweep().await;
    let outcome = rerun.outcome_for(VAULT, "rvp");
    let latest = app.latest("rvp").await;
    assert!(
        !app.key_works("aoai-rvp", &leaked).await || latest.tag("RevokePending").is_some(),
        "the leaked key still works and nothing records the revocation: first {}, rerun {outcome}, regenerations {:?}",
        first.outcome(),
        app.regenerations("aoai-rvp").await
    );
}
