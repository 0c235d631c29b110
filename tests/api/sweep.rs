//! `POST /RotationSweep`: the timer sweep over every vault in KEYFLIP_VAULTS.

use std::collections::BTreeSet;

use serde_json::json;

use crate::helpers::{DAY, SecretSpec, TestApp, VAULT, spawn_app};

const VAULT_TWO: &str = "kv-api-two";

/// What the sweep should make of a managed secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Rotated,
    NotDue,
    Disabled,
    Misconfigured,
}

/// A managed secret of its own account (`acc-<name>`), `expires_in_days` from now (`None`: no
/// expiry), created 50 days ago.
fn managed(vault: &str, name: &str, expires_in_days: Option<i64>) -> SecretSpec {
    let mut spec = SecretSpec::new(name, &format!("acc-{name}"));
    spec.vault = vault.to_string();
    spec.expires_in_days = expires_in_days;
    spec
}

/// Seeds the account of `spec` and then the secret.
async fn seed_managed(app: &TestApp, spec: SecretSpec) {
    app.seed_account(&spec.account, "OpenAI").await;
    app.seed_secret(spec).await;
}

/// Seeds a plain secret: no rotation tags at all.
async fn seed_plain(app: &TestApp, vault: &str, name: &str) {
    app.control
        .add_secret_version(vault, name, &json!({"value": format!("plain-value-of-{name}")}))
        .await
        .expect("plain secret seeded");
}

/// `(vault, secret)` of every GetSecret call (the only call that reads a value).
async fn secrets_read(app: &TestApp) -> BTreeSet<(String, String)> {
    app.control
        .calls(Some("GetSecret"))
        .await
        .expect("calls")
        .into_iter()
        .filter(|c| c.status == 200)
        .map(|c| {
            let name = c
                .path
                .trim_start_matches("/secrets/")
                .trim_end_matches('/')
                .to_string();
            (c.target, name)
        })
        .collect()
}

#[tokio::test]
async fn a_sweep_over_two_vaults_rotates_exactly_the_due_secrets_and_reports_the_rest() {
    // Arrange: 32 secrets in kv-api (more than one page of 25) and 3 in kv-api-two
    let app = spawn_app().await;
    let mut expected: Vec<(&str, String, Expect)> = Vec::new();
    for i in 1..=4 {
        let name = format!("due-soon-{i:02}");
        seed_managed(&app, managed(VAULT, &name, Some(10 + i))).await;
        expected.push((VAULT, name, Expect::Rotated));
    }
    seed_managed(&app, managed(VAULT, "due-expired", Some(-3))).await;
    expected.push((VAULT, "due-expired".into(), Expect::Rotated));
    seed_managed(&app, managed(VAULT, "due-no-expiry", None)).await;
    expected.push((VAULT, "due-no-expiry".into(), Expect::Rotated));
    for i in 1..=10 {
        let name = format!("later-{i:02}");
        seed_managed(&app, managed(VAULT, &name, Some(90))).await;
        expected.push((VAULT, name, Expect::NotDue));
    }
    let mut disabled = managed(VAULT, "disabled", Some(5));
    disabled.enabled = false;
    seed_managed(&app, disabled).await;
    expected.push((VAULT, "disabled".into(), Expect::Disabled));
    let mut misconfigured = managed(VAULT, "misconfigured", Some(5));
    misconfigured.validity_days = "20".into();
    seed_managed(&app, misconfigured).await;
    expected.push((VAULT, "misconfigured".into(), Expect::Misconfigured));
    let plain: Vec<(&str, String)> = (1..=14)
        .map(|i| (VAULT, format!("plain-{i:02}")))
        .chain([(VAULT_TWO, "two-plain".to_string())])
        .collect();
    for (vault, name) in &plain {
        seed_plain(&app, vault, name).await;
    }
    let mut two_due = managed(VAULT_TWO, "two-due", Some(5));
    two_due.active = "key2".into();
    seed_managed(&app, two_due).await;
    expected.push((VAULT_TWO, "two-due".into(), Expect::Rotated));
    seed_managed(&app, managed(VAULT_TWO, "two-later", Some(90))).await;
    expected.push((VAULT_TWO, "two-later".into(), Expect::NotDue));
    let originals = {
        let mut originals = Vec::new();
        for (vault, name, _) in &expected {
            originals.push(app.versions(vault, name).await.pop().expect("seeded"));
        }
        originals
    };
    app.control.clear_calls().await.unwrap();

    // Act
    let answer = app.sweep().await;

    // Assert: 200, and the counts
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let summary = &answer.result()["summary"];
    let count = |e: Expect| expected.iter().filter(|(_, _, x)| *x == e).count();
    assert_eq!(summary["scanned"], expected.len() + plain.len(), "{summary}");
    assert_eq!(summary["due"], count(Expect::Rotated), "{summary}");
    assert_eq!(summary["rotated"], count(Expect::Rotated), "{summary}");
    assert_eq!(summary["pending"], 0, "{summary}");
    assert_eq!(
        summary["skipped"],
        count(Expect::NotDue) + count(Expect::Disabled),
        "{summary}"
    );
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(
        summary["skipped_by_reason"]["not-due"],
        count(Expect::NotDue),
        "{summary}"
    );
    assert_eq!(
        summary["skipped_by_reason"]["disabled"],
        count(Expect::Disabled),
        "{summary}"
    );
    assert_eq!(summary["failed_by_reason"]["misconfigured"], 1, "{summary}");
    assert_eq!(summary["left_for_next_run"], 0, "{summary}");

    // Assert: one result per secret acted on or failing; skipped ones and plain ones are
    // counted, not listed
    let results = answer.result()["results"].as_array().unwrap();
    assert_eq!(results.len(), count(Expect::Rotated) + 1);
    for (vault, name) in &plain {
        assert!(answer.result_for(vault, name).is_none(), "{vault}/{name}");
    }
    let misconfigured = answer.result_for(VAULT, "misconfigured").unwrap();
    assert_eq!(misconfigured["outcome"], "failed:misconfigured");
    assert!(
        misconfigured["message"]
            .as_str()
            .unwrap()
            .contains("ValidityPeriodDays"),
        "{misconfigured}"
    );
    assert!(answer.result_for(VAULT, "disabled").is_none());

    // Assert: each secret's latest version and account
    for ((vault, name, expect), original) in expected.iter().zip(&originals) {
        let listed = answer.result_for(vault, name);
        assert_eq!(
            listed.is_some(),
            matches!(expect, Expect::Rotated | Expect::Misconfigured),
            "{vault}/{name}"
        );
        let result = listed.cloned().unwrap_or_default();
        let versions = app.versions(vault, name).await;
        let latest = versions.last().unwrap();
        let account = format!("acc-{name}");
        let regenerations = app.regenerations(&account).await;
        match expect {
            Expect::Rotated => {
                assert_eq!(result["outcome"], "rotated", "{vault}/{name}: {result}");
                assert_eq!(result["trigger"], "timer");
                assert_eq!(result["verified"], true);
                let (from, to, idle_index) = match original.tag("CredentialId") {
                    Some("key1") => ("key1", "key2", 1),
                    _ => ("key2", "key1", 0),
                };
                assert_eq!(versions.len(), 2, "{vault}/{name}");
                assert_eq!(latest.tag("CredentialId"), Some(to), "{vault}/{name}");
                assert_eq!(latest.tag("RotationTrigger"), Some("timer"));
                assert_eq!(latest.value, app.key(&account, to).await, "{vault}/{name}");
                assert_eq!(app.key(&account, from).await, original.value);
                let mut once = [0, 0];
                once[idle_index] = 1;
                assert_eq!(regenerations, once, "{vault}/{name}");
                assert!(latest.exp.unwrap() > app.now().await + 30 * DAY);
            }
            other => {
                if *other == Expect::Misconfigured {
                    assert_eq!(result["outcome"], "failed:misconfigured", "{vault}/{name}");
                }
                assert_eq!(versions.len(), 1, "{vault}/{name}");
                assert_eq!(latest.version, original.version);
                assert_eq!(regenerations, [0, 0], "{vault}/{name}");
            }
        }
    }

    // Assert: the listing read no value; only the due secrets were read (GetSecret)
    let due: BTreeSet<(String, String)> = expected
        .iter()
        .filter(|(_, _, e)| *e == Expect::Rotated)
        .map(|(v, n, _)| (v.to_string(), n.clone()))
        .collect();
    assert_eq!(secrets_read(&app).await, due);
    let pages = app
        .control
        .calls(Some("GetSecrets"))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.target == VAULT && c.status == 200)
        .count();
    assert!(pages >= 2, "kv-api was listed in {pages} page(s)");
}

#[tokio::test]
async fn a_sweep_with_a_transient_failure_answers_500_with_the_report() {
    // Arrange: two due secrets; Resource Manager fails every regeneration of one account
    let app = spawn_app().await;
    seed_managed(&app, managed(VAULT, "flaky", Some(10))).await;
    seed_managed(&app, managed(VAULT_TWO, "steady", Some(10))).await;
    let flaky = app.latest("flaky").await;
    app.control
        .fault(&emulator::faults::FaultRule {
            operation: "Accounts_RegenerateKey".into(),
            target: Some("acc-flaky".into()),
            status: 500,
            count: 20,
            retry_after_seconds: None,
            phase: emulator::faults::Phase::Before,
            code: None,
            message: None,
        })
        .await
        .unwrap();

    // Act
    let answer = app.sweep().await;

    // Assert: 500 so the host records a failure, and the whole report with it
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    let summary = &answer.result()["summary"];
    assert_eq!(
        (
            summary["scanned"].as_u64(),
            summary["due"].as_u64(),
            summary["rotated"].as_u64(),
            summary["failed"].as_u64()
        ),
        (Some(2), Some(2), Some(1), Some(0)),
        "{summary}"
    );
    assert_eq!(summary["pending"].as_u64(), Some(1), "{summary}");
    // A 500 leaves open whether the regeneration will land: marked pending, never resent.
    let flaky_result = answer.result_for(VAULT, "flaky").unwrap();
    assert_eq!(flaky_result["outcome"], "pending", "{flaky_result}");
    assert_eq!(
        answer.result_for(VAULT_TWO, "steady").unwrap()["outcome"],
        "rotated"
    );
    assert!(
        answer.body["Logs"].to_string().contains("pending kv-api/flaky"),
        "{:?}",
        answer.body["Logs"]
    );

    // Assert: the failing secret keeps its key, which still works, and carries the mark
    assert_eq!(app.versions(VAULT, "flaky").await.len(), 1);
    let latest = app.latest("flaky").await;
    assert_eq!(latest.value, flaky.value);
    assert_eq!(latest.tag("PendingSlot"), Some("key2"));
    assert_eq!(app.regenerations("acc-flaky").await, [0, 0]);
    assert!(app.key_works("acc-flaky", &latest.value).await);
}

#[tokio::test]
async fn a_sweep_right_after_a_sweep_rotates_nothing() {
    // Arrange: due secrets in both vaults, swept once
    let app = spawn_app().await;
    seed_managed(&app, managed(VAULT, "again-soon", Some(10))).await;
    seed_managed(&app, managed(VAULT, "again-expired", Some(-1))).await;
    seed_managed(&app, managed(VAULT, "again-no-expiry", None)).await;
    seed_managed(&app, managed(VAULT_TWO, "again-two", Some(3))).await;
    let first = app.sweep().await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.result()["summary"]["rotated"], 4);
    let accounts = [
        "acc-again-soon",
        "acc-again-expired",
        "acc-again-no-expiry",
        "acc-again-two",
    ];
    let mut regenerated = Vec::new();
    for account in accounts {
        regenerated.push(app.regenerations(account).await);
    }
    app.control.clear_calls().await.unwrap();

    // Act
    let second = app.sweep().await;

    // Assert: nothing due, nothing regenerated or written, no value read
    assert_eq!(second.status, 200, "{:?}", second.body);
    let summary = &second.result()["summary"];
    assert_eq!(
        (
            summary["scanned"].as_u64(),
            summary["due"].as_u64(),
            summary["rotated"].as_u64(),
            summary["skipped"].as_u64(),
            summary["failed"].as_u64()
        ),
        (Some(4), Some(0), Some(0), Some(4), Some(0)),
        "{summary}"
    );
    for result in second.result()["results"].as_array().unwrap() {
        assert_eq!(result["outcome"], "skipped:not-due", "{result}");
    }
    for (account, before) in accounts.iter().zip(&regenerated) {
        assert_eq!(app.regenerations(account).await, *before, "{account}");
    }
    for (vault, name) in [
        (VAULT, "again-soon"),
        (VAULT, "again-expired"),
        (VAULT, "again-no-expiry"),
        (VAULT_TWO, "again-two"),
    ] {
        assert_eq!(app.versions(vault, name).await.len(), 2, "{vault}/{name}");
    }
    assert!(secrets_read(&app).await.is_empty());
    assert!(app.control.calls(Some("SetSecret")).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_configured_vault_that_does_not_exist_is_a_problem_not_a_retry() {
    // Arrange: kv-api-two is configured but never created; kv-api has a due secret
    let app = spawn_app().await;
    seed_managed(&app, managed(VAULT, "due-one", Some(3))).await;

    // Act
    let answer = app.sweep().await;

    // Assert: 200 (retrying cannot create the vault), the due secret rotated, the vault named
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let report = answer.result();
    assert_eq!(report["summary"]["rotated"], 1);
    let problems = report["problems"].to_string();
    assert!(
        problems.contains(VAULT_TWO) && problems.contains("KEYFLIP_VAULTS"),
        "{problems}"
    );
    assert!(answer.body["Logs"].to_string().contains(VAULT_TWO));
}
