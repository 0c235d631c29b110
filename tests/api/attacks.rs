//! The attacks a security review found against issue 6's first fixes, kept as regression tests:
//! each asserts what the design asks for. A second secret naming an account (holding the old
//! idle key, or no key at all), a forged pending mark, a panic outside the sweep, a pending
//! result whose mark did not land, a hostile `CredentialId`.

use emulator::faults::FaultRule;
use serde_json::json;

use crate::helpers::{
    RESOURCE_GROUP, SUBSCRIPTION, SecretSpec, VAULT, run_keyflip, spawn_app, spawn_app_with,
};

const NEAR_EXPIRY: &str = "SecretNearExpiry";

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn a_forged_pending_mark_neither_skips_the_dwell_nor_publishes_an_unregenerated_key() {
    // Arrange: key1 published an hour ago; a tag writer (no key) adds a pending mark for key2
    let app = spawn_app().await;
    app.seed_account("aoai-forged", "OpenAI").await;
    let now = app.now().await;
    let mut spec = SecretSpec::new("forged", "aoai-forged")
        .tag("PendingSlot", "key2")
        .tag("PendingSince", &rfc3339(now))
        .tag("PendingProof", "ffffffffffffffff");
    spec.created_days_ago = 0;
    app.seed_secret(spec).await;
    let before = app.latest("forged").await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "forged").await;

    // Assert: a mark in the form of an earlier keyflip's (no PendingFrom) is never resumed, so
    // the dwell applies; nothing regenerated, nothing published
    assert_eq!(answer.outcome(), "skipped:dwell", "{:?}", answer.body);
    assert_eq!(app.regenerations("aoai-forged").await, [0, 0]);
    assert_eq!(app.latest("forged").await.version, before.version);
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
}

#[tokio::test]
async fn a_second_secret_holding_the_old_idle_key_cannot_kill_the_first_secret_s_key() {
    // Arrange: the owners' secret publishes key1; an attacker, holding the old key2, writes a
    // second secret naming the account with CredentialId=key2, past the dwell
    let app = spawn_app().await;
    app.seed_account("aoai-dup", "OpenAI").await;
    app.seed_secret(SecretSpec::new("owners", "aoai-dup")).await;
    let consumers_key = app.latest("owners").await.value;
    let mut evil = SecretSpec::new("second", "aoai-dup");
    evil.active = "key2".into();
    evil.created_days_ago = 2;
    app.seed_secret(evil).await;

    // Act: an event for the attacker's secret, and one for the owners'
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "second").await;
    let owners = app.deliver_for_latest(NEAR_EXPIRY, "owners").await;

    // Assert: both refused as a shared resource naming the other; nothing regenerated
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "failed:shared-resource"),
        "{:?}",
        answer.body
    );
    assert!(answer.message().contains("kv-api/owners"), "{}", answer.message());
    assert_eq!(owners.outcome(), "failed:shared-resource", "{:?}", owners.body);
    assert!(owners.message().contains("kv-api/second"), "{}", owners.message());
    assert_eq!(app.regenerations("aoai-dup").await, [0, 0]);
    assert!(app.key_works("aoai-dup", &consumers_key).await);
}

#[tokio::test]
async fn a_second_secret_seen_after_the_index_was_built_is_still_caught_within_its_age() {
    // Arrange: the index is built by a first rotation; the attacker's secret comes later
    let app = spawn_app().await;
    app.seed_account("aoai-later", "OpenAI").await;
    app.seed_account("aoai-other", "OpenAI").await;
    app.seed_secret(SecretSpec::new("owners-later", "aoai-later"))
        .await;
    app.seed_secret(SecretSpec::new("unrelated", "aoai-other")).await;
    let first = app.deliver_for_latest(NEAR_EXPIRY, "unrelated").await;
    assert_eq!(first.outcome(), "rotated");
    let mut evil = SecretSpec::new("later", "aoai-later");
    evil.active = "key2".into();
    app.seed_secret(evil).await;

    // Act: the attacker's event (the index does not know the attacker's secret, but knows
    // the owners')
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "later").await;

    // Assert
    assert_eq!(answer.outcome(), "failed:shared-resource", "{:?}", answer.body);
    assert_eq!(app.regenerations("aoai-later").await, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_refuses_to_publish_a_key_another_secret_already_publishes() {
    // Arrange: a garbage secret names an account the owners' secret manages
    let app = spawn_app().await;
    app.seed_account("aoai-lure", "OpenAI").await;
    app.seed_secret(SecretSpec::new("owners-lure", "aoai-lure")).await;
    let mut lure = SecretSpec::new("lure", "aoai-lure");
    lure.value = Some("garbage".into());
    app.seed_secret(lure).await;
    let refused = app.deliver_for_latest(NEAR_EXPIRY, "lure").await;
    assert_eq!(refused.outcome(), "failed:unknown-key");
    assert!(
        refused.message().contains("who wrote the latest version"),
        "{}",
        refused.message()
    );

    // Act: an operator runs the repair anyway
    let args = [
        "rotate", "--vault", VAULT, "--secret", "lure", "--repair", "--json",
    ];
    let (code, stdout, stderr) = tokio::task::block_in_place(|| run_keyflip(&app, &args, &[]));

    // Assert: refused naming the owners' secret; the active key not revealed
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("failed:shared-resource") && stdout.contains("kv-api/owners-lure"),
        "{stdout}"
    );
    assert_ne!(app.latest("lure").await.value, app.key("aoai-lure", "key1").await);
}

#[tokio::test]
async fn a_keyless_secret_in_another_vault_cannot_stop_the_owner_s_rotation() {
    // Arrange: kv-api may name rg-api only; kv-api-two may name rg-team-b. A writer in kv-api
    // names team B's account with a garbage value (out of its vault's scope), and one in
    // kv-api-two does the same inside the scope.
    let scopes = format!(
        "{VAULT}=/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP},kv-api-two=/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-team-b"
    );
    let app = spawn_app_with(&[("KEYFLIP_ALLOWED_SCOPES", &scopes)]).await;
    app.control
        .seed(&json!({"accounts": [{
            "name": "team-b-acc", "kind": "OpenAI", "subscription_id": SUBSCRIPTION,
            "resource_group": "rg-team-b", "key1": "team-b-acc-key1", "key2": "team-b-acc-key2"
        }]}))
        .await
        .unwrap();
    let team_b = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-team-b/providers/Microsoft.CognitiveServices/accounts/team-b-acc"
    );
    let mut own = SecretSpec::new("team-b-own", "team-b-acc").tag("ProviderAddress", &team_b);
    own.vault = "kv-api-two".into();
    app.seed_secret(own).await;
    let mut squat = SecretSpec::new("squat", "team-b-acc").tag("ProviderAddress", &team_b);
    squat.value = Some("garbage".into());
    app.seed_secret(squat).await;
    let mut squat_in_scope = SecretSpec::new("squat-two", "team-b-acc").tag("ProviderAddress", &team_b);
    squat_in_scope.vault = "kv-api-two".into();
    squat_in_scope.value = Some("garbage".into());
    app.seed_secret(squat_in_scope).await;

    // Act
    let answer = app.sweep().await;

    // Assert: team B's own secret rotates; the squatters are refused for their own reasons
    assert_eq!(
        answer.outcome_for("kv-api-two", "team-b-own"),
        "rotated",
        "{:?}",
        answer.body
    );
    assert_eq!(answer.outcome_for(VAULT, "squat"), "failed:not-allowed");
    assert_eq!(
        answer.outcome_for("kv-api-two", "squat-two"),
        "failed:unknown-key"
    );
    assert!(
        answer.body["ReturnValue"]["problems"].is_null(),
        "{:?}",
        answer.body
    );
}

#[tokio::test]
async fn a_pending_result_whose_mark_did_not_land_says_the_next_attempt_may_regenerate_again() {
    // Arrange: new keys work only after 90 s; every tag update fails
    let app = spawn_app().await;
    app.seed_account_with(
        json!({"name": "aoai-nomark", "kind": "OpenAI", "key_activation_delay_seconds": 90}),
    )
    .await;
    app.seed_secret(SecretSpec::new("nomark", "aoai-nomark")).await;
    app.control
        .fault(&FaultRule::new("UpdateSecret", 500, 50))
        .await
        .unwrap();

    // Act
    let first = app.deliver_for_latest(NEAR_EXPIRY, "nomark").await;

    // Assert: pending, and the result says what will happen
    assert_eq!(first.outcome(), "pending", "{:?}", first.body);
    assert!(app.latest("nomark").await.tag("PendingSlot").is_none());
    let said = first.message();
    assert!(!said.contains("resumes without regenerating"), "{said}");
    assert!(said.contains("the next attempt regenerates key2 again"), "{said}");
}

#[tokio::test]
async fn a_hostile_credential_id_is_echoed_cut_and_escaped() {
    // Arrange: a CredentialId with a newline, an ANSI escape and 240 more characters
    let app = spawn_app().await;
    app.seed_account("aoai-echo", "OpenAI").await;
    let hostile = format!("key3\n\u{1b}[2Jforged log line {}", "x".repeat(240));
    let mut spec = SecretSpec::new("echo", "aoai-echo");
    spec.active = hostile;
    spec.value = Some("whatever".into());
    app.seed_secret(spec).await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "echo").await;

    // Assert
    assert_eq!(answer.outcome(), "failed:misconfigured", "{:?}", answer.body);
    let said = answer.message();
    assert!(said.contains("CredentialId"), "{said}");
    assert!(!said.chars().any(char::is_control), "{said:?}");
    assert!(!said.contains(&"x".repeat(201)), "not cut to 200 characters");
}

const PANIC_KEY1: &str = "Rev1ewK1yQ9x7Lm2Pz8Rt4Wb6Nc1Hd5Fg";
const PANIC_KEY2: &str = "Rev1ewK2yJ4s8Vq1Xk7Yt3Mb9Lp6Zr2Dc";

/// The child of [`a_panic_during_an_event_or_manual_rotation_prints_no_key`]: keyflip's
/// telemetry and panic hook, an event and a manual call whose rotation panics with a key.
#[tokio::test]
#[ignore = "run as a child process by a_panic_during_an_event_or_manual_rotation_prints_no_key"]
async fn event_panic_child() {
    keyflip::telemetry::init(keyflip::telemetry::LogFormat::Json).unwrap();
    let app = crate::hostile::spawn_app_panicking_on("review-panic-acc").await;
    app.seed_account_with(
        json!({"name": "review-panic-acc", "kind": "OpenAI", "key1": PANIC_KEY1, "key2": PANIC_KEY2}),
    )
    .await;
    app.seed_secret(SecretSpec::new("review-panics", "review-panic-acc"))
        .await;
    let event = app.deliver_for_latest(NEAR_EXPIRY, "review-panics").await;
    println!("EVENT {} {}", event.status, event.body);
    let manual = app.manual(VAULT, "review-panics", "").await;
    println!("MANUAL {} {}", manual.status, manual.body);
}

#[test]
fn a_panic_during_an_event_or_manual_rotation_prints_no_key() {
    // Act
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "attacks::event_panic_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUST_LOG", "info")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    // Assert: both invocations panicked and answered 500 (not vacuous); no key in any output
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("EVENT 500"), "{stdout}");
    assert!(stdout.contains("MANUAL 500"), "{stdout}");
    assert!(
        stdout.contains("panicked (the panic's message is not shown"),
        "{stdout}"
    );
    for key in [PANIC_KEY1, PANIC_KEY2] {
        let line = stdout.lines().chain(stderr.lines()).find(|l| l.contains(key));
        assert!(line.is_none(), "a key value is in the output: {line:?}");
    }
}

#[tokio::test]
async fn a_sweep_that_could_not_list_every_vault_leaves_no_index_for_rotations_to_trust() {
    // Arrange: the owners' secret lives in kv-api-two; an attacker's, holding the old key2, in
    // kv-api; the sweep's listing of kv-api-two fails (throttled) once past its retries
    let app = spawn_app().await;
    app.seed_account("aoai-partial", "OpenAI").await;
    let mut owners = SecretSpec::new("owners-partial", "aoai-partial");
    owners.vault = "kv-api-two".into();
    owners.expires_in_days = Some(200);
    app.seed_secret(owners).await;
    let mut evil = SecretSpec::new("partial", "aoai-partial");
    evil.active = "key2".into();
    evil.expires_in_days = Some(200);
    app.seed_secret(evil).await;
    let mut fault = FaultRule::new("GetSecrets", 503, 4);
    fault.target = Some("kv-api-two".into());
    app.control.fault(&fault).await.unwrap();
    let sweep = app.sweep().await;
    assert_eq!(
        sweep.status, 500,
        "the sweep reports the listing failure: {:?}",
        sweep.body
    );

    // Act: the attacker's event right after the sweep
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "partial").await;

    // Assert: the rotation listed the vaults again and found the owners' secret
    assert_eq!(answer.outcome(), "failed:shared-resource", "{:?}", answer.body);
    assert!(
        answer.message().contains("kv-api-two/owners-partial"),
        "{}",
        answer.message()
    );
    assert_eq!(app.regenerations("aoai-partial").await, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_refuses_when_a_served_vault_cannot_be_listed() {
    // Arrange: a broken secret; kv-api-two refuses the caller (only someone else may use it)
    let app = spawn_app().await;
    app.control
        .seed(&json!({"vaults": [{"name": "kv-api-two", "allowed_principals": ["00000000-0000-0000-0000-000000000000"]}]}))
        .await
        .unwrap();
    app.seed_account("aoai-blind", "OpenAI").await;
    let mut broken = SecretSpec::new("blind", "aoai-blind");
    broken.value = Some("garbage".into());
    app.seed_secret(broken).await;

    // Act
    let args = [
        "rotate", "--vault", VAULT, "--secret", "blind", "--repair", "--json",
    ];
    let (code, stdout, stderr) = tokio::task::block_in_place(|| run_keyflip(&app, &args, &[]));

    // Assert: refused naming the vault it could not check; nothing published
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("failed:not-allowed") && stdout.contains("kv-api-two"),
        "{stdout}"
    );
    assert_eq!(app.latest("blind").await.value, "garbage");
}
