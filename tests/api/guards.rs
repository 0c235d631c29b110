//! The guards of DESIGN.md §3 step 3 and the refusals of step 2, through events and the manual
//! HTTP route: the dwell and `force`, dry runs, the pointer cross-check, a dead published key,
//! `disableLocalAuth`, misconfigured tags, kinds without a trustworthy check, disabled and
//! missing secrets, and the manual route's own refusals.

use serde_json::json;

use crate::helpers::{Answer, DAY, SUBSCRIPTION, SecretSpec, TestApp, VAULT, spawn_app};

const NEAR_EXPIRY: &str = "SecretNearExpiry";
/// `(outcome, from, to)` of an answer's result.
fn flip(answer: &Answer) -> (&str, &str, &str) {
    let result = answer.result();
    (
        answer.outcome(),
        result["from"].as_str().unwrap_or_default(),
        result["to"].as_str().unwrap_or_default(),
    )
}

/// The result's message for operators.
fn message(answer: &Answer) -> &str {
    answer.result()["message"].as_str().unwrap_or_default()
}

/// How many `regenerateKey` calls reached Resource Manager so far.
async fn regenerate_calls(app: &TestApp) -> usize {
    app.control
        .calls(Some("Accounts_RegenerateKey"))
        .await
        .unwrap()
        .len()
}

// ---- (a) the dwell -----------------------------------------------------------------------

#[tokio::test]
async fn the_dwell_blocks_a_second_rotation_unless_forced_and_lifts_after_24_hours() {
    // Arrange: one rotation (key1 → key2) just happened
    let app = spawn_app().await;
    app.seed_account("aoai-dwell", "OpenAI").await;
    app.seed_secret(SecretSpec::new("dwell", "aoai-dwell")).await;
    let first = app.deliver_for_latest(NEAR_EXPIRY, "dwell").await;
    assert_eq!(flip(&first), ("rotated", "key1", "key2"), "{:?}", first.body);
    let rotated = app.latest("dwell").await;

    // Act: a manual call right after, without force
    let blocked = app.manual(VAULT, "dwell", "").await;

    // Assert: 409 skipped:dwell with a hint to force; key1 (active until a moment ago) untouched
    assert_eq!(
        (blocked.status, blocked.outcome()),
        (409, "skipped:dwell"),
        "{:?}",
        blocked.body
    );
    assert!(
        blocked.body["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("force=true"),
        "{:?}",
        blocked.body
    );
    assert_eq!(app.regenerations("aoai-dwell").await, [0, 1]);
    assert_eq!(app.latest("dwell").await.version, rotated.version);

    // Act: the same call forced
    let forced = app.manual(VAULT, "dwell", "?force=true").await;

    // Assert: 200 rotated key2 → key1, key1 regenerated once
    assert_eq!(forced.status, 200, "{:?}", forced.body);
    assert_eq!(flip(&forced), ("rotated", "key2", "key1"));
    assert_eq!(app.regenerations("aoai-dwell").await, [1, 1]);
    let after_force = app.latest("dwell").await;
    assert_eq!(after_force.tag("CredentialId"), Some("key1"));
    assert_eq!(after_force.tag("RotationTrigger"), Some("manual"));
    assert_eq!(after_force.value, app.key("aoai-dwell", "key1").await);

    // Act: 25 hours later, an event without force
    app.advance(25 * 3600).await;
    let later = app.deliver_for_latest(NEAR_EXPIRY, "dwell").await;

    // Assert: the dwell has passed: key1 → key2 again
    assert_eq!(later.status, 200, "{:?}", later.body);
    assert_eq!(flip(&later), ("rotated", "key1", "key2"));
    assert_eq!(app.regenerations("aoai-dwell").await, [1, 2]);
    assert_eq!(app.latest("dwell").await.tag("CredentialId"), Some("key2"));
}

#[tokio::test]
async fn an_event_inside_the_dwell_is_acknowledged_as_skipped_without_regenerating() {
    // Arrange: the latest version is an hour old
    let app = spawn_app().await;
    app.seed_account("aoai-young", "OpenAI").await;
    let mut spec = SecretSpec::new("young", "aoai-young");
    spec.created_days_ago = 0;
    app.seed_secret(spec).await;
    app.advance(3600).await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "young").await;

    // Assert: 2xx (nothing to retry), skipped:dwell, nothing written
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "skipped:dwell"),
        "{:?}",
        answer.body
    );
    assert_eq!(app.regenerations("aoai-young").await, [0, 0]);
    assert!(app.writes().await.is_empty());
}

#[tokio::test]
async fn the_dwell_ends_exactly_24_hours_after_the_latest_version_was_written() {
    // Arrange: the latest version was written just now
    let app = spawn_app().await;
    app.seed_account("aoai-edge", "OpenAI").await;
    let mut spec = SecretSpec::new("edge", "aoai-edge");
    spec.created_days_ago = 0;
    app.seed_secret(spec).await;

    // Act: one second before the dwell ends, then at its end
    app.advance(DAY - 1).await;
    let early = app.deliver_for_latest(NEAR_EXPIRY, "edge").await;
    app.advance(1).await;
    let on_time = app.deliver_for_latest(NEAR_EXPIRY, "edge").await;

    // Assert
    assert_eq!(early.outcome(), "skipped:dwell", "{:?}", early.body);
    assert_eq!(on_time.outcome(), "rotated", "{:?}", on_time.body);
    assert_eq!(app.regenerations("aoai-edge").await, [0, 1]);
}

// ---- (b) dry runs ------------------------------------------------------------------------

#[tokio::test]
async fn a_dry_run_plans_the_flip_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-dry", "OpenAI").await;
    app.seed_secret(SecretSpec::new("dry", "aoai-dry").tag("owner", "team-ai"))
        .await;
    let before = app.versions(VAULT, "dry").await;
    let keys = (
        app.key("aoai-dry", "key1").await,
        app.key("aoai-dry", "key2").await,
    );
    app.control.clear_calls().await.unwrap();

    // Act
    let answer = app.manual(VAULT, "dry", "?dryRun=true").await;

    // Assert: 200 planned key1 → key2, and no write of any kind
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(flip(&answer), ("planned", "key1", "key2"));
    assert_eq!(
        answer.result()["version"].as_str(),
        Some(before[0].version.as_str())
    );
    assert!(answer.result()["expires"].is_null());
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
    let after = app.versions(VAULT, "dry").await;
    assert_eq!(after.len(), 1, "no new version");
    assert_eq!(after[0].version, before[0].version);
    assert_eq!(after[0].tags, before[0].tags, "no tag change (no pending mark)");
    assert_eq!(app.regenerations("aoai-dry").await, [0, 0]);
    assert_eq!(
        (
            app.key("aoai-dry", "key1").await,
            app.key("aoai-dry", "key2").await
        ),
        keys
    );
}

#[tokio::test]
async fn a_dry_run_respects_the_dwell_and_plans_with_force_still_changing_nothing() {
    // Arrange: the latest version was written today
    let app = spawn_app().await;
    app.seed_account("aoai-dryforce", "OpenAI").await;
    let mut spec = SecretSpec::new("dryforce", "aoai-dryforce");
    spec.created_days_ago = 0;
    app.seed_secret(spec).await;
    let before = app.latest("dryforce").await;
    app.control.clear_calls().await.unwrap();

    // Act
    let plain = app.manual(VAULT, "dryforce", "?dryRun=true").await;
    let forced = app.manual(VAULT, "dryforce", "?dryRun=true&force=true").await;

    // Assert: without force the dwell answers; with force the plan; never a write
    assert_eq!(
        (plain.status, plain.outcome()),
        (409, "skipped:dwell"),
        "{:?}",
        plain.body
    );
    assert_eq!(forced.status, 200, "{:?}", forced.body);
    assert_eq!(flip(&forced), ("planned", "key1", "key2"));
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
    assert_eq!(app.versions(VAULT, "dryforce").await.len(), 1);
    let after = app.latest("dryforce").await;
    assert_eq!((after.version, after.tags), (before.version, before.tags));
    assert_eq!(app.regenerations("aoai-dryforce").await, [0, 0]);
}

// ---- (c) the pointer cross-check -----------------------------------------------------------

#[tokio::test]
async fn a_credential_id_that_lies_is_refused_permanently_without_regenerating() {
    // Arrange: CredentialId says key1, but the value is the current key2 (the idle slot's key)
    let app = spawn_app().await;
    app.seed_account("aoai-liar", "OpenAI").await;
    let key1 = app.key("aoai-liar", "key1").await;
    let key2 = app.key("aoai-liar", "key2").await;
    let mut spec = SecretSpec::new("liar", "aoai-liar");
    spec.value = Some(key2.clone());
    app.seed_secret(spec).await;
    let before = app.latest("liar").await;

    // Act
    let event = app.deliver_for_latest(NEAR_EXPIRY, "liar").await;
    let manual = app.manual(VAULT, "liar", "?force=true").await;

    // Assert: permanent (event 200, manual 422), both slots named, nothing regenerated or written
    assert_eq!(
        (event.status, event.outcome()),
        (200, "failed:pointer-mismatch"),
        "{:?}",
        event.body
    );
    assert_eq!(
        (manual.status, manual.outcome()),
        (422, "failed:pointer-mismatch"),
        "{:?}",
        manual.body
    );
    for answer in [&event, &manual] {
        let message = message(answer);
        assert!(message.contains("key1") && message.contains("key2"), "{message}");
        let body = answer.body.to_string();
        assert!(
            !body.contains(&key1) && !body.contains(&key2),
            "no key value in an answer (I7): {body}"
        );
    }
    assert!(
        event.body["Logs"].to_string().contains("pointer-mismatch"),
        "{:?}",
        event.body
    );
    assert_eq!(app.regenerations("aoai-liar").await, [0, 0]);
    assert_eq!(regenerate_calls(&app).await, 0);
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
    let after = app.latest("liar").await;
    assert_eq!((after.version, after.tags), (before.version, before.tags));
    assert_eq!(
        (
            app.key("aoai-liar", "key1").await,
            app.key("aoai-liar", "key2").await
        ),
        (key1, key2)
    );
}

// ---- (d) proof of possession (I8) ------------------------------------------------------------

/// The answer refused the secret as `failed:unknown-key`, pointing at `--repair`, and nothing
/// was regenerated or written.
async fn assert_unknown_key_refused(app: &TestApp, answer: &Answer, account: &str) {
    assert_eq!(answer.outcome(), "failed:unknown-key", "{:?}", answer.body);
    assert!(message(answer).contains("--repair"), "{}", message(answer));
    assert_eq!(app.regenerations(account).await, [0, 0]);
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
}

#[tokio::test]
async fn a_published_value_that_is_neither_key_is_refused_and_nothing_changes() {
    // Arrange: a secret pointing at an account whose keys its writer does not hold
    let app = spawn_app().await;
    app.seed_account("aoai-notmine", "OpenAI").await;
    let mut spec = SecretSpec::new("notmine", "aoai-notmine");
    spec.value = Some("garbage".into());
    spec.active = "key2".into();
    app.seed_secret(spec).await;
    let before = app.latest("notmine").await;

    // Act: an event, then a forced manual call
    let event = app.deliver_for_latest(NEAR_EXPIRY, "notmine").await;
    let manual = app.manual(VAULT, "notmine", "?force=true").await;

    // Assert: acknowledged (2xx, retrying cannot help) and 422; nothing regenerated or written
    assert_eq!(event.status, 200, "{:?}", event.body);
    assert_unknown_key_refused(&app, &event, "aoai-notmine").await;
    assert_eq!(manual.status, 422, "{:?}", manual.body);
    assert_unknown_key_refused(&app, &manual, "aoai-notmine").await;
    let after = app.latest("notmine").await;
    assert_eq!((after.version, after.tags), (before.version, before.tags));
}

#[tokio::test]
async fn a_value_with_a_trailing_newline_does_not_match_and_the_message_says_why() {
    // Arrange: the active key with a newline, as `az keyvault secret set --file` may write it
    let app = spawn_app().await;
    app.seed_account("aoai-newline", "OpenAI").await;
    let key1 = app.key("aoai-newline", "key1").await;
    let mut spec = SecretSpec::new("newline", "aoai-newline");
    spec.value = Some(format!("{key1}\n"));
    app.seed_secret(spec).await;

    // Act
    let answer = app.manual(VAULT, "newline", "").await;

    // Assert: refused, the message names key1 and whitespace, and holds neither key
    assert_eq!(answer.status, 422, "{:?}", answer.body);
    assert_unknown_key_refused(&app, &answer, "aoai-newline").await;
    assert!(
        message(&answer).contains("differs from key1 only by surrounding whitespace"),
        "{}",
        message(&answer)
    );
    let body = answer.body.to_string();
    assert!(!body.contains(&key1), "{body}");
    assert!(!body.contains(&app.key("aoai-newline", "key2").await), "{body}");
}

#[tokio::test]
async fn a_resource_whose_two_keys_are_equal_is_refused() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account_with(
        json!({"name": "aoai-twins", "kind": "OpenAI", "key1": "twin-key-value", "key2": "twin-key-value"}),
    )
    .await;
    app.seed_secret(SecretSpec::new("twins", "aoai-twins")).await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "twins").await;

    // Assert
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_unknown_key_refused(&app, &answer, "aoai-twins").await;
    assert!(
        message(&answer).contains("two keys are equal"),
        "{}",
        message(&answer)
    );
}

// ---- (e) disableLocalAuth ------------------------------------------------------------------

#[tokio::test]
async fn an_account_with_local_auth_disabled_is_refused_permanently() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account_with(json!({"name": "aoai-entra", "kind": "OpenAI", "disable_local_auth": true}))
        .await;
    app.seed_secret(SecretSpec::new("entra", "aoai-entra")).await;
    let before = app.latest("entra").await;

    // Act
    let event = app.deliver_for_latest(NEAR_EXPIRY, "entra").await;
    let manual = app.manual(VAULT, "entra", "?force=true").await;

    // Assert
    assert_eq!(
        (event.status, event.outcome()),
        (200, "failed:keys-disabled"),
        "{:?}",
        event.body
    );
    assert_eq!(
        (manual.status, manual.outcome()),
        (422, "failed:keys-disabled"),
        "{:?}",
        manual.body
    );
    for answer in [&event, &manual] {
        assert!(
            message(answer).contains("key authentication is disabled"),
            "{}",
            message(answer)
        );
    }
    assert_eq!(app.regenerations("aoai-entra").await, [0, 0]);
    assert_eq!(regenerate_calls(&app).await, 0);
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
    assert_eq!(app.latest("entra").await.version, before.version);
}

// ---- (f) misconfigured tags ----------------------------------------------------------------

#[tokio::test]
async fn misconfigured_tags_are_refused_permanently_naming_the_tag() {
    // Arrange: one secret per misconfiguration, all on one account
    let app = spawn_app().await;
    app.seed_account("aoai-tags", "OpenAI").await;
    let other_subscription = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a";
    let outside = format!(
        "/subscriptions/{other_subscription}/resourceGroups/rg-api/providers/Microsoft.CognitiveServices/accounts/aoai-tags"
    );
    let storage = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-api/providers/Microsoft.Storage/storageAccounts/stkeys"
    );
    // (secret, tag, value, outcome, words the message must hold)
    let cases: [(&str, &str, &str, &str, &[&str]); 6] = [
        (
            "no-address",
            "ProviderAddress",
            "",
            "failed:misconfigured",
            &["ProviderAddress", "missing"],
        ),
        (
            "short-validity",
            "ValidityPeriodDays",
            "30",
            "failed:misconfigured",
            &["ValidityPeriodDays", "30"],
        ),
        (
            "bad-address",
            "ProviderAddress",
            "aoai-tags",
            "failed:misconfigured",
            &["ProviderAddress"],
        ),
        (
            "storage-address",
            "ProviderAddress",
            &storage,
            "failed:misconfigured",
            &["ProviderAddress", "Microsoft.Storage/storageAccounts"],
        ),
        (
            "primary-slot",
            "CredentialId",
            "primary",
            "failed:misconfigured",
            &["CredentialId", "primary", "key1", "key2"],
        ),
        (
            "outside-scope",
            "ProviderAddress",
            &outside,
            "failed:not-allowed",
            &["KEYFLIP_ALLOWED_SCOPES", other_subscription],
        ),
    ];
    for (secret, tag, value, _, _) in &cases {
        app.seed_secret(SecretSpec::new(secret, "aoai-tags").tag(tag, value))
            .await;
    }

    for (secret, _, _, outcome, words) in cases {
        // Act
        let event = app.deliver_for_latest(NEAR_EXPIRY, secret).await;
        let manual = app.manual(VAULT, secret, "?force=true").await;

        // Assert: event 200 and manual 422, the same outcome, a message naming the tag
        assert_eq!(
            (event.status, event.outcome()),
            (200, outcome),
            "{secret}: {:?}",
            event.body
        );
        assert_eq!(
            (manual.status, manual.outcome()),
            (422, outcome),
            "{secret}: {:?}",
            manual.body
        );
        for answer in [&event, &manual] {
            let message = message(answer);
            for word in words {
                assert!(message.contains(word), "{secret}: '{word}' not in: {message}");
            }
        }
        assert!(
            event.body["Logs"].to_string().contains(outcome),
            "{secret}: {:?}",
            event.body
        );
        assert_eq!(app.versions(VAULT, secret).await.len(), 1, "{secret}");
    }
    assert_eq!(app.regenerations("aoai-tags").await, [0, 0]);
    assert_eq!(regenerate_calls(&app).await, 0);
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
}

// ---- (g) kinds without a trustworthy check -------------------------------------------------

#[tokio::test]
async fn a_kind_without_a_trustworthy_check_is_refused_unless_the_secret_opts_out() {
    // Arrange: a Speech and an Emotion account, each with a secret that does not opt out
    let app = spawn_app().await;
    for kind in ["SpeechServices", "Emotion"] {
        let account = format!("acct-{}", kind.to_ascii_lowercase());
        app.seed_account(&account, kind).await;
        app.seed_secret(SecretSpec::new(
            &format!("check-{}", kind.to_ascii_lowercase()),
            &account,
        ))
        .await;
    }

    for (secret, kind) in [
        ("check-speechservices", "SpeechServices"),
        ("check-emotion", "Emotion"),
    ] {
        // Act
        let event = app.deliver_for_latest(NEAR_EXPIRY, secret).await;
        let manual = app.manual(VAULT, secret, "").await;

        // Assert: permanent, the message names the kind and the opt-out
        assert_eq!(
            (event.status, event.outcome()),
            (200, "failed:no-trustworthy-check"),
            "{secret}: {:?}",
            event.body
        );
        assert_eq!(
            (manual.status, manual.outcome()),
            (422, "failed:no-trustworthy-check"),
            "{secret}: {:?}",
            manual.body
        );
        let message = message(&manual);
        assert!(
            message.contains(kind) && message.contains("VerifyKey=false"),
            "{secret}: {message}"
        );
    }
    assert_eq!(app.regenerations("acct-speechservices").await, [0, 0]);
    assert_eq!(app.regenerations("acct-emotion").await, [0, 0]);
    assert_eq!(regenerate_calls(&app).await, 0);
}

#[tokio::test]
async fn a_kind_without_a_trustworthy_check_rotates_unverified_with_verify_key_false() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("acct-speech", "SpeechServices").await;
    app.seed_secret(SecretSpec::new("speech", "acct-speech").tag("VerifyKey", "false"))
        .await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "speech").await;

    // Assert: rotated and says it was not verified; the tag is carried forward
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(flip(&answer), ("rotated", "key1", "key2"));
    assert_eq!(answer.result()["verified"], false);
    assert_eq!(app.regenerations("acct-speech").await, [0, 1]);
    let latest = app.latest("speech").await;
    assert_eq!(latest.value, app.key("acct-speech", "key2").await);
    assert_eq!(latest.tag("CredentialId"), Some("key2"));
    assert_eq!(latest.tag("VerifyKey"), Some("false"));
}

// ---- (h) disabled secrets ------------------------------------------------------------------

#[tokio::test]
async fn a_disabled_secret_is_skipped() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-off", "OpenAI").await;
    let mut spec = SecretSpec::new("off", "aoai-off");
    spec.enabled = false;
    app.seed_secret(spec).await;

    // Act
    let event = app.deliver_for_latest(NEAR_EXPIRY, "off").await;
    let manual = app.manual(VAULT, "off", "").await;
    let forced = app.manual(VAULT, "off", "?force=true").await;

    // Assert: event acknowledged (200), manual 409 even forced, nothing written
    assert_eq!(
        (event.status, event.outcome()),
        (200, "skipped:disabled"),
        "{:?}",
        event.body
    );
    for answer in [&manual, &forced] {
        assert_eq!(
            (answer.status, answer.outcome()),
            (409, "skipped:disabled"),
            "{:?}",
            answer.body
        );
    }
    assert_eq!(app.regenerations("aoai-off").await, [0, 0]);
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
    assert_eq!(app.versions(VAULT, "off").await.len(), 1);
}

// ---- (i) what the manual route refuses -----------------------------------------------------

#[tokio::test]
async fn a_secret_that_does_not_exist_answers_404_not_found() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let answer = app.manual(VAULT, "no-such-secret", "").await;

    // Assert
    assert_eq!(
        (answer.status, answer.outcome()),
        (404, "failed:not-found"),
        "{:?}",
        answer.body
    );
    assert_eq!(answer.result()["secret"], "no-such-secret");
}

#[tokio::test]
async fn a_vault_not_served_answers_404_naming_keyflip_vaults_without_calling_azure() {
    // Arrange
    let app = spawn_app().await;
    app.control.clear_calls().await.unwrap();

    // Act
    let answer = app.manual("kv-elsewhere", "api-key", "").await;

    // Assert
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    let error = answer.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("KEYFLIP_VAULTS") && error.contains("kv-elsewhere"),
        "{error}"
    );
    assert!(app.control.calls(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_bad_secret_name_or_flag_answers_400_without_calling_azure() {
    // Arrange
    let app = spawn_app().await;
    app.control.clear_calls().await.unwrap();

    // Act
    let bad_name = app.manual(VAULT, "bad_name", "").await;
    let bad_flag = app.manual(VAULT, "api-key", "?dryRun=maybe").await;

    // Assert: 400, the message says what is wrong
    assert_eq!(bad_name.status, 400, "{:?}", bad_name.body);
    let error = bad_name.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("secret"), "{error}");
    assert_eq!(bad_flag.status, 400, "{:?}", bad_flag.body);
    let error = bad_flag.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("dryRun") && error.contains("maybe"), "{error}");
    assert!(app.control.calls(None).await.unwrap().is_empty());
}
