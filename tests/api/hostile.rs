//! A tag writer is powerless beyond the keys they already hold (DESIGN.md I8–I10), tried as an
//! attacker would through the real triggers: a `ProviderAddress` that escapes its scope, a
//! secret pointing at another team's account, hostile `ValidityPeriodDays` and pending marks.
//! Each refused case is checked in the emulator's call log: no Resource Manager write (and,
//! where the id itself is refused, no Resource Manager call at all). Also: the sweep refuses a
//! resource named by two secrets, and a panic in one rotation stops no other (I10).

use emulator::calls::Service;
use keyflip::domain::ApiKey;
use serde_json::{Value, json};

use crate::helpers::{
    RESOURCE_GROUP, SUBSCRIPTION, SecretSpec, TestApp, VAULT, spawn_app, spawn_app_panicking_when,
    spawn_app_with,
};

const NEAR_EXPIRY: &str = "SecretNearExpiry";
const VAULT_TWO: &str = "kv-api-two";

/// Seeds an account in `group` (not the helpers' default group).
async fn seed_account_in(app: &TestApp, group: &str, name: &str) {
    app.control
        .seed(&json!({"accounts": [{
            "name": name, "kind": "OpenAI", "subscription_id": SUBSCRIPTION, "resource_group": group,
            "key1": format!("{name}-key1"), "key2": format!("{name}-key2")
        }]}))
        .await
        .unwrap();
}

/// Every Resource Manager call the emulator received, as `(operation, target)`.
async fn arm_calls(app: &TestApp) -> Vec<(String, String)> {
    app.control
        .calls(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|call| call.service == Service::Arm)
        .map(|call| (call.operation, call.target))
        .collect()
}

fn account_id(group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}"
    )
}

// ---- I9: the id that is checked is the id that is called ------------------------------------

#[tokio::test]
async fn a_backslash_traversal_out_of_the_scope_reaches_no_account() {
    // Arrange: keyflip may rotate rg-api only; the victim lives in rg-victim
    let scope = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}");
    let app = spawn_app_with(&[("KEYFLIP_ALLOWED_SCOPES", &scope)]).await;
    seed_account_in(&app, "rg-victim", "victim").await;
    let victim_before = app.control.account("victim").await.unwrap();
    let hostile = format!(
        "{}/x\\..\\..\\..\\..\\..\\rg-victim\\providers\\Microsoft.CognitiveServices\\accounts\\victim",
        account_id(RESOURCE_GROUP, "x").trim_end_matches("/x")
    );
    let mut spec = SecretSpec::new("escape", "victim").tag("ProviderAddress", &hostile);
    spec.value = Some("garbage".into());
    spec.active = "key2".into();
    app.seed_secret(spec).await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "escape").await;

    // Assert: acknowledged as misconfigured, naming the tag and the backslash; Resource
    // Manager never called; the victim's keys untouched
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.outcome(), "failed:misconfigured", "{:?}", answer.body);
    let said = answer.message();
    assert!(
        said.contains("ProviderAddress") && said.contains("backslash"),
        "{said}"
    );
    assert!(arm_calls(&app).await.is_empty(), "{:?}", arm_calls(&app).await);
    let victim_after = app.control.account("victim").await.unwrap();
    assert_eq!(victim_after["regenerations"], victim_before["regenerations"]);
    assert_eq!(victim_after["key1"]["value"], "victim-key1");
}

#[tokio::test]
async fn percent_encoded_and_dot_segment_escapes_are_refused_before_any_call() {
    // Arrange
    let scope = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}");
    let app = spawn_app_with(&[("KEYFLIP_ALLOWED_SCOPES", &scope)]).await;
    seed_account_in(&app, "rg-victim", "victim2").await;
    let base = account_id(RESOURCE_GROUP, "x");
    let cases = [
        (
            "pct",
            format!(
                "{base}%2f..%2f..%2f..%2f..%2f..%2frg-victim%2fproviders%2fMicrosoft.CognitiveServices%2faccounts%2fvictim2"
            ),
        ),
        (
            "dots",
            format!("{base}/../../../../../rg-victim/providers/Microsoft.CognitiveServices/accounts/victim2"),
        ),
        (
            "query",
            format!("{}?x=/../../rg-victim", account_id(RESOURCE_GROUP, "victim2")),
        ),
        ("space", format!("{} ", account_id(RESOURCE_GROUP, "vic tim2"))),
    ];
    for (name, address) in cases {
        let mut spec = SecretSpec::new(name, "victim2").tag("ProviderAddress", &address);
        spec.value = Some("garbage".into());
        app.seed_secret(spec).await;

        // Act
        let answer = app.deliver_for_latest(NEAR_EXPIRY, name).await;

        // Assert
        assert_eq!(
            (answer.status, answer.outcome()),
            (200, "failed:misconfigured"),
            "{name}: {:?}",
            answer.body
        );
        assert!(answer.message().contains("ProviderAddress"), "{name}");
    }
    assert!(arm_calls(&app).await.is_empty(), "{:?}", arm_calls(&app).await);
}

#[tokio::test]
async fn a_secret_of_one_vault_cannot_name_an_account_in_another_vault_s_scope() {
    // Arrange: kv-api may rotate rg-api, kv-api-two may rotate rg-team-b
    let scopes = format!(
        "{VAULT}=/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP},{VAULT_TWO}=/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-team-b"
    );
    let app = spawn_app_with(&[("KEYFLIP_ALLOWED_SCOPES", &scopes)]).await;
    seed_account_in(&app, "rg-team-b", "team-b-acc").await;
    let key1 = app.key("team-b-acc", "key1").await;
    // A writer in kv-api points a secret at team B's account (even holding its key1)
    let mut spec = SecretSpec::new("borrowed", "team-b-acc")
        .tag("ProviderAddress", &account_id("rg-team-b", "team-b-acc"));
    spec.value = Some(key1);
    app.seed_secret(spec).await;
    // Team B's own secret in kv-api-two
    let mut own = SecretSpec::new("team-b-own", "team-b-acc")
        .tag("ProviderAddress", &account_id("rg-team-b", "team-b-acc"));
    own.vault = VAULT_TWO.into();
    app.seed_secret(own).await;

    // Act: the event for kv-api's secret
    let refused = app.deliver_for_latest(NEAR_EXPIRY, "borrowed").await;

    // Assert: refused before any Resource Manager call
    assert_eq!(
        (refused.status, refused.outcome()),
        (200, "failed:not-allowed"),
        "{:?}",
        refused.body
    );
    assert!(refused.message().contains(VAULT), "{}", refused.message());
    assert!(arm_calls(&app).await.is_empty(), "{:?}", arm_calls(&app).await);

    // Act: the event for team B's own secret
    let version = app.versions(VAULT_TWO, "team-b-own").await.pop().unwrap().version;
    let allowed = app
        .deliver(
            &format!("Microsoft.KeyVault.{NEAR_EXPIRY}"),
            VAULT_TWO,
            "team-b-own",
            &version,
        )
        .await;

    // Assert: it rotates
    assert_eq!(allowed.outcome(), "rotated", "{:?}", allowed.body);
    assert_eq!(app.regenerations("team-b-acc").await, [0, 1]);
}

// ---- hostile tags and pending marks --------------------------------------------------------

#[tokio::test]
async fn a_hostile_validity_is_refused_before_any_write_and_the_sweep_goes_on() {
    // Arrange: one secret with ValidityPeriodDays=3000000, one healthy, both due
    let app = spawn_app().await;
    app.seed_account("aoai-huge", "OpenAI").await;
    app.seed_account("aoai-fine", "OpenAI").await;
    app.seed_secret(SecretSpec::new("huge", "aoai-huge").tag("ValidityPeriodDays", "3000000"))
        .await;
    app.seed_secret(SecretSpec::new("fine", "aoai-fine")).await;

    // Act: the sweep, twice, and an event for the hostile secret
    let first = app.sweep().await;
    let event = app.deliver_for_latest(NEAR_EXPIRY, "huge").await;

    // Assert: 200 each time; the hostile secret misconfigured and never regenerated; the other rotated
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.outcome_for(VAULT, "huge"), "failed:misconfigured");
    assert_eq!(first.outcome_for(VAULT, "fine"), "rotated");
    assert_eq!(event.status, 200);
    assert_eq!(event.outcome(), "failed:misconfigured");
    assert!(event.message().contains("3650"), "{}", event.message());
    assert_eq!(app.regenerations("aoai-huge").await, [0, 0]);
    assert_eq!(app.regenerations("aoai-fine").await, [0, 1]);
    let second = app.sweep().await;
    assert_eq!(second.status, 200, "{:?}", second.body);
}

#[tokio::test]
async fn pending_marks_keyflip_could_not_have_written_are_refused_before_any_write() {
    // Arrange: key1 active; each secret carries a pending mark of its own kind
    let app = spawn_app().await;
    let now = app.now().await;
    let in_an_hour = time::OffsetDateTime::from_unix_timestamp(now + 3600)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let a_minute_ago = time::OffsetDateTime::from_unix_timestamp(now - 60)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // A tag writer holds no key, so cannot compute the proof of a real mark
    let forged_proof = "0123456789abcdef";
    let cases: [(&str, &str, &str, &str, &str); 7] = [
        ("future", "key2", &in_an_hour, forged_proof, "in the future"),
        (
            "names-active",
            "key1",
            &a_minute_ago,
            forged_proof,
            "the active slot",
        ),
        ("names-nothing", "key3", &a_minute_ago, forged_proof, "not a slot"),
        ("unreadable", "key2", "yesterday", forged_proof, "RFC 3339"),
        ("no-slot", "", &a_minute_ago, forged_proof, "without PendingSlot"),
        ("no-proof", "key2", &a_minute_ago, "", "without PendingProof"),
        // The forged mark of the review: it would skip the dwell and publish key2 unregenerated
        (
            "forged",
            "key2",
            &a_minute_ago,
            forged_proof,
            "PendingProof is not theirs",
        ),
    ];
    for (name, slot, since, proof, says) in cases {
        let account = format!("aoai-pm-{name}");
        app.seed_account(&account, "OpenAI").await;
        let mut spec = SecretSpec::new(name, &account)
            .tag("PendingSlot", slot)
            .tag("PendingSince", since)
            .tag("PendingFrom", "0000000000000000")
            .tag("PendingProof", proof);
        spec.created_days_ago = 0;
        app.seed_secret(spec).await;

        // Act
        let answer = app.deliver_for_latest(NEAR_EXPIRY, name).await;

        // Assert
        assert_eq!(
            (answer.status, answer.outcome()),
            (200, "failed:misconfigured"),
            "{name}: {:?}",
            answer.body
        );
        assert!(answer.message().contains(says), "{name}: {}", answer.message());
        assert_eq!(app.regenerations(&account).await, [0, 0], "{name}");
    }
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
}

#[tokio::test]
async fn a_pending_mark_a_few_seconds_in_the_future_is_clock_skew_and_resumes() {
    // Arrange: another instance's clock is 2 minutes ahead; its regenerated key2 waits (the
    // mark is signed with the deployment's mark key, over the version, key1 and the mark)
    let app = spawn_app().await;
    app.seed_account("aoai-skew", "OpenAI").await;
    let now = app.now().await;
    let since = time::OffsetDateTime::from_unix_timestamp(now + 120).unwrap();
    let version = "0123456789abcdef0123456789abcdef";
    let from = keyflip::domain::key::fingerprint(&ApiKey::new("the key2 before"));
    let proof = app.leases.mark_key().await.unwrap().pending_proof(
        version,
        &ApiKey::new(app.key("aoai-skew", "key1").await),
        "key2",
        since,
        &from,
        false,
    );
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut spec = SecretSpec::new("skew", "aoai-skew")
        .tag("PendingSlot", "key2")
        .tag("PendingSince", &since)
        .tag("PendingFrom", &from)
        .tag("PendingProof", &proof);
    spec.version = Some(version.into());
    app.seed_secret(spec).await;

    // Act
    let answer = app.deliver_for_latest(NEAR_EXPIRY, "skew").await;

    // Assert: resumed without regenerating
    assert_eq!(answer.outcome(), "rotated", "{:?}", answer.body);
    assert_eq!(app.regenerations("aoai-skew").await, [0, 0]);
    let latest: Value = json!(app.latest("skew").await.tags);
    assert_eq!(latest["CredentialId"], "key2");
}

// ---- believing events less -----------------------------------------------------------------

/// Every call the emulator received (Key Vault included), as operation names.
async fn all_calls(app: &TestApp) -> Vec<String> {
    app.control
        .calls(None)
        .await
        .unwrap()
        .into_iter()
        .map(|call| call.operation)
        .collect()
}

#[tokio::test]
async fn events_whose_sources_disagree_or_lack_a_version_are_refused_without_a_call() {
    // Arrange: a healthy managed secret in kv-api-two, and events that lie about it
    let app = spawn_app().await;
    app.seed_account("aoai-lied-to", "OpenAI").await;
    let mut spec = SecretSpec::new("lied-to", "aoai-lied-to");
    spec.vault = VAULT_TWO.into();
    app.seed_secret(spec).await;
    let version = app.versions(VAULT_TWO, "lied-to").await.pop().unwrap().version;
    let near = format!("Microsoft.KeyVault.{NEAR_EXPIRY}");
    let other_vault = {
        let mut e = crate::helpers::event_envelope(&near, VAULT_TWO, "lied-to", &version);
        e["Data"]["event"]["data"]["VaultName"] = json!(VAULT);
        e["Data"]["event"]["topic"] = json!(format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/{VAULT}"
        ));
        e
    };
    let other_secret = {
        let mut e = crate::helpers::event_envelope(&near, VAULT_TWO, "lied-to", &version);
        e["Data"]["event"]["subject"] = json!("someone-else");
        e
    };
    let no_data = {
        let mut e = crate::helpers::event_envelope(&near, VAULT_TWO, "lied-to", &version);
        e["Data"]["event"].as_object_mut().unwrap().remove("data");
        e
    };
    let bad_version = {
        let mut e = crate::helpers::event_envelope(&near, VAULT_TWO, "lied-to", "not-a-version");
        e["Data"]["event"]["data"]["Id"] =
            json!(format!("https://{VAULT_TWO}.vault.azure.net/secrets/lied-to"));
        e
    };
    for (label, envelope, says) in [
        ("another vault in data.Id", other_vault, "disagree on the vault"),
        (
            "another secret in subject",
            other_secret,
            "disagree on the secret",
        ),
        ("no data", no_data, "no secret version"),
        ("a malformed version", bad_version, "version"),
    ] {
        // Act
        let answer = app.post("/KeyVaultEvents", envelope.to_string()).await;

        // Assert: acknowledged (retrying cannot help), refused, and the answer says which event
        // and which secret it was about
        assert_eq!(
            (answer.status, answer.outcome()),
            (200, "failed:bad-event"),
            "{label}: {:?}",
            answer.body
        );
        let said = answer.message();
        assert!(said.contains(says), "{label}: {said}");
        assert!(said.contains("lied-to"), "{label}: {said}");
        assert!(
            said.contains("00eccf70-95a7-4e7c-8299-2eb17ee9ad64"),
            "{label}: {said}"
        );
        assert!(
            !answer.result()["vault"].as_str().unwrap_or_default().is_empty(),
            "{label}"
        );
    }
    assert!(all_calls(&app).await.is_empty(), "{:?}", all_calls(&app).await);
    assert_eq!(app.regenerations("aoai-lied-to").await, [0, 0]);
}

// ---- one resource per secret, one bad secret never stops the others -------------------------

#[tokio::test]
async fn the_sweep_refuses_a_resource_named_by_two_secrets_and_says_which() {
    // Arrange: two secrets in two vaults name one account; a third secret is healthy
    let app = spawn_app().await;
    app.seed_account("aoai-shared", "OpenAI").await;
    app.seed_account("aoai-alone", "OpenAI").await;
    app.seed_secret(SecretSpec::new("shared-a", "aoai-shared")).await;
    let mut second = SecretSpec::new("shared-b", "aoai-shared");
    second.vault = VAULT_TWO.into();
    app.seed_secret(second).await;
    app.seed_secret(SecretSpec::new("alone", "aoai-alone")).await;

    // Act
    let answer = app.sweep().await;

    // Assert: both refused naming the other, reported as a problem; the third rotated
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let report = &answer.body["ReturnValue"];
    let a = answer
        .result_for(VAULT, "shared-a")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(a["outcome"], "failed:shared-resource", "{a}");
    assert!(
        a["message"].as_str().unwrap().contains("kv-api-two/shared-b"),
        "{a}"
    );
    let b = answer
        .result_for(VAULT_TWO, "shared-b")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(b["outcome"], "failed:shared-resource", "{b}");
    assert!(b["message"].as_str().unwrap().contains("kv-api/shared-a"), "{b}");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("kv-api/shared-a") && problems.contains("kv-api-two/shared-b"),
        "{problems}"
    );
    assert_eq!(answer.outcome_for(VAULT, "alone"), "rotated");
    assert_eq!(app.regenerations("aoai-shared").await, [0, 0]);
}

/// The app, with the production provider wrapped so that regenerating `account`'s key panics,
/// with a key value in the panic message (as a slicing bug over a key would).
pub async fn spawn_app_panicking_on(account: &'static str) -> TestApp {
    spawn_app_panicking_when(move |resource, _| resource.name() == account).await
}

#[tokio::test]
async fn a_panic_in_one_rotation_is_reported_for_that_secret_alone_and_the_sweep_goes_on() {
    // Arrange: three due secrets; rotating the middle one panics
    let app = spawn_app_panicking_on("aoai-boom").await;
    for account in ["aoai-before", "aoai-boom", "aoai-after"] {
        app.seed_account(account, "OpenAI").await;
        app.seed_secret(SecretSpec::new(account.trim_start_matches("aoai-"), account))
            .await;
    }
    let boom_key = app.key("aoai-boom", "key1").await;

    // Act
    let answer = app.sweep().await;

    // Assert: failed:internal for that secret alone; the others rotated; no key in the answer
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.outcome_for(VAULT, "boom"), "failed:internal");
    assert_eq!(answer.outcome_for(VAULT, "before"), "rotated");
    assert_eq!(answer.outcome_for(VAULT, "after"), "rotated");
    assert!(!answer.body.to_string().contains(&boom_key));
    assert_eq!(
        app.latest("boom").await.value,
        boom_key,
        "the published key is unchanged"
    );

    // Act: the next sweep still runs (the lock of the panicked rotation was released)
    let again = app.sweep().await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert!(again.body.to_string().contains("failed:internal"));
}

#[tokio::test]
async fn no_http_route_repairs() {
    // Arrange: a secret that only a repair could fix
    let app = spawn_app().await;
    app.seed_account("aoai-norepair", "OpenAI").await;
    let mut spec = SecretSpec::new("norepair", "aoai-norepair");
    spec.value = Some("garbage".into());
    app.seed_secret(spec).await;

    // Act: every spelling a caller might try over HTTP
    for query in [
        "?repair=true",
        "?Repair=1",
        "?mode=repair",
        "?dryRun=false&repair",
    ] {
        let answer = app.manual(VAULT, "norepair", query).await;

        // Assert: 400, naming what is accepted; nothing written
        assert_eq!(answer.status, 400, "{query}: {:?}", answer.body);
        let error = answer.body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("dryRun") || error.contains("the only mode is revoke-active"),
            "{query}: {error}"
        );
    }
    let repair = app.post("/api/repair/kv-api/norepair", "").await;
    assert_eq!(repair.status, 404, "{:?}", repair.body);
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
}
