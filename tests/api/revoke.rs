//! Issue 7, item 6: the leaked-key emergency (`mode=revoke-active`, `keyflip rotate
//! --revoke-active`): publish the idle slot with `RevokePending`, regenerate the formerly active
//! slot at once, clear the mark; a crash in between is finished by the rerun, never turned into
//! a fresh rotation.

use std::sync::atomic::{AtomicBool, Ordering};

use keyflip::domain::Slot;
use keyflip::domain::key::{ApiKey, mark_proof};

use crate::helpers::*;

/// Inside the dwell: only the emergency may regenerate anything here.
fn fresh_secret(name: &str, account: &str) -> SecretSpec {
    let mut spec = SecretSpec::new(name, account);
    spec.created_days_ago = 0;
    spec
}

#[tokio::test]
async fn revoke_active_publishes_the_idle_slot_then_kills_the_leaked_key_at_once() {
    // Arrange: key1 leaked; the latest version is an hour old (inside the dwell)
    let app = spawn_app().await;
    app.seed_account("aoai-leak", "OpenAI").await;
    app.seed_secret(fresh_secret("leak", "aoai-leak")).await;
    let leaked = app.latest("leak").await.value;

    // Act
    let answer = app.manual(VAULT, "leak", "?mode=revoke-active").await;

    // Assert: revoked; key2 published and working; the leaked key dead; the mark cleared
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, "revoked"),
        "{:?}",
        answer.body
    );
    assert!(
        answer.message().contains("fail until they reload"),
        "{}",
        answer.message()
    );
    assert_eq!(app.regenerations("aoai-leak").await, [1, 1]);
    let latest = app.latest("leak").await;
    assert_eq!(latest.tag("CredentialId"), Some("key2"));
    assert_eq!(latest.value, app.key("aoai-leak", "key2").await);
    assert!(app.key_works("aoai-leak", &latest.value).await);
    assert!(!app.key_works("aoai-leak", &leaked).await);
    assert_eq!(latest.tag("RevokePending"), None);
    assert_eq!(latest.tag("RevokeProof"), None);
    assert!(!answer.body.to_string().contains(&leaked));
}

#[tokio::test]
async fn an_unknown_mode_is_refused_before_anything_runs() {
    let app = spawn_app().await;
    app.seed_account("aoai-mode", "OpenAI").await;
    app.seed_secret(fresh_secret("mode", "aoai-mode")).await;

    let answer = app.manual(VAULT, "mode", "?mode=revoke").await;

    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(app.writes().await.is_empty());
}

#[tokio::test]
async fn a_crash_between_the_publish_and_the_second_regenerate_is_finished_by_any_rerun() {
    // Arrange: the first regeneration of key1 (the leaked slot) crashes the rotation, as a kill
    // between the publish and the second regenerate would
    let crashed = AtomicBool::new(false);
    let app =
        spawn_app_panicking_when(move |_, slot| slot == Slot::First && !crashed.swap(true, Ordering::SeqCst))
            .await;
    app.seed_account("aoai-crash", "OpenAI").await;
    app.seed_secret(fresh_secret("crash", "aoai-crash")).await;
    let leaked = app.latest("crash").await.value;

    // Act: the emergency crashes after publishing key2
    let crashed = app.manual(VAULT, "crash", "?mode=revoke-active").await;

    // Assert: key2 is published with RevokePending=key1; the leaked key still works
    assert_eq!(crashed.status, 500, "{:?}", crashed.body);
    let marked = app.latest("crash").await;
    assert_eq!(marked.tag("CredentialId"), Some("key2"));
    assert_eq!(marked.tag("RevokePending"), Some("key1"));
    assert_eq!(app.regenerations("aoai-crash").await, [0, 1]);
    assert!(app.key_works("aoai-crash", &leaked).await);

    // Act: the next sweep (any trigger would do) meets the mark inside the dwell
    let sweep = app.sweep().await;

    // Assert: the revocation is finished, not a fresh rotation (key2 is not regenerated)
    assert_eq!(sweep.outcome_for(VAULT, "crash"), "revoked", "{:?}", sweep.body);
    assert_eq!(app.regenerations("aoai-crash").await, [1, 1]);
    assert!(!app.key_works("aoai-crash", &leaked).await);
    let latest = app.latest("crash").await;
    assert_eq!(latest.version, marked.version, "no new version");
    assert_eq!(latest.tag("RevokePending"), None);
    assert!(app.key_works("aoai-crash", &latest.value).await);
}

#[tokio::test]
async fn a_revoke_mark_keyflip_did_not_write_regenerates_nothing_and_is_reported() {
    // Arrange: a tag writer adds RevokePending=key2 to a fresh version to get the idle slot
    // regenerated inside the dwell (an I2 weapon if it were obeyed)
    let app = spawn_app().await;
    app.seed_account("aoai-forged", "OpenAI").await;
    let other = ApiKey::new("some-key-the-writer-made-up");
    let forged = mark_proof("v0", &other, &other);
    app.seed_secret(
        fresh_secret("forged", "aoai-forged")
            .tag("RevokePending", "key2")
            .tag("RevokeProof", &forged),
    )
    .await;

    // Act
    let answer = app.manual(VAULT, "forged", "").await;

    // Assert: refused loudly (keyflip cannot tell a forgery from a revocation that already
    // happened, and clearing it could leave a leaked key valid); nothing regenerated or cleared
    assert_eq!(
        (answer.status, answer.outcome()),
        (422, "failed:misconfigured"),
        "{:?}",
        answer.body
    );
    assert!(answer.message().contains("not keyflip's"), "{}", answer.message());
    assert_eq!(app.regenerations("aoai-forged").await, [0, 0]);
    assert_eq!(app.latest("forged").await.tag("RevokePending"), Some("key2"));
}
