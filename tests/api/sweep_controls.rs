//! Issue 9, item 1: the sweep at scale and the operator's controls — KEYFLIP_PAUSED, the
//! `RotationEnabled=false` tag, KEYFLIP_MAX_ROTATIONS_PER_SWEEP, the bounded answer, urgency
//! order, rotations starting while the listing goes on, the deadline, and `keyflip sweep`.

use emulator::faults::LatencyRule;
use serde_json::{Value, json};

use crate::helpers::{SecretSpec, TestApp, VAULT, run_keyflip, spawn_app, spawn_app_with};

/// A managed secret of its own account (`acc-<name>`), expiring in `days` (negative: expired).
async fn seed_due(app: &TestApp, name: &str, days: i64) -> SecretSpec {
    let mut spec = SecretSpec::new(name, &format!("acc-{name}"));
    spec.expires_in_days = Some(days);
    app.seed_account(&spec.account, "OpenAI").await;
    app.seed_secret(spec.clone()).await;
    spec
}

/// The resource ids regenerated, in the order the emulator received the calls.
async fn regenerated_accounts(app: &TestApp) -> Vec<String> {
    app.control
        .calls(Some("Accounts_RegenerateKey"))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.status == 200 || c.status == 202)
        .map(|c| c.target.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_answers_skipped_paused_on_every_trigger_and_writes_nothing() {
    // Arrange: a due secret, keyflip paused
    let app = spawn_app_with(&[("KEYFLIP_PAUSED", "true")]).await;
    seed_due(&app, "due", 5).await;
    app.control.clear_calls().await.unwrap();

    // Act
    let sweep = app.sweep().await;
    let event = app.deliver_for_latest("SecretNearExpiry", "due").await;
    let manual = app.manual(VAULT, "due", "").await;

    // Assert: the sweep says it is paused and listed nothing; each trigger skipped
    assert_eq!(sweep.status, 200, "{:?}", sweep.body);
    assert_eq!(sweep.result()["paused"], true, "{:?}", sweep.body);
    assert_eq!(sweep.result()["summary"]["scanned"], 0);
    assert!(app.control.calls(Some("GetSecrets")).await.unwrap().is_empty());
    assert_eq!(event.outcome(), "skipped:paused", "{:?}", event.body);
    assert_eq!((manual.status, manual.outcome()), (409, "skipped:paused"));
    assert!(
        manual.message().contains("KEYFLIP_PAUSED"),
        "{}",
        manual.message()
    );

    // Assert: nothing written, nothing regenerated
    assert!(app.writes().await.is_empty());
    assert_eq!(app.regenerations("acc-due").await, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_enabled_false_opts_a_secret_out_of_every_trigger() {
    // Arrange: two due secrets, one opted out
    let app = spawn_app().await;
    seed_due(&app, "rotates", 5).await;
    let mut out = SecretSpec::new("opted-out", "acc-opted-out").tag("RotationEnabled", "false");
    out.expires_in_days = Some(5);
    app.seed_account("acc-opted-out", "OpenAI").await;
    app.seed_secret(out).await;

    // Act
    let sweep = app.sweep().await;
    let event = app.deliver_for_latest("SecretNearExpiry", "opted-out").await;
    let manual = app.manual(VAULT, "opted-out", "?force=true").await;

    // Assert: counted under opted-out, not listed, never regenerated
    let summary = &sweep.result()["summary"];
    assert_eq!(summary["rotated"], 1, "{summary}");
    assert_eq!(summary["skipped_by_reason"]["opted-out"], 1, "{summary}");
    assert!(sweep.result_for(VAULT, "opted-out").is_none());
    assert_eq!(event.outcome(), "skipped:opted-out", "{:?}", event.body);
    assert_eq!((manual.status, manual.outcome()), (409, "skipped:opted-out"));
    assert!(
        manual.message().contains("RotationEnabled"),
        "{}",
        manual.message()
    );
    assert_eq!(app.regenerations("acc-opted-out").await, [0, 0]);
    assert_eq!(app.versions(VAULT, "opted-out").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_cap_takes_the_most_urgent_first_and_leaves_the_rest_counted() {
    // Arrange: five due secrets of different urgency; one rotation at a time, at most two
    let app = spawn_app_with(&[
        ("KEYFLIP_MAX_ROTATIONS_PER_SWEEP", "2"),
        ("KEYFLIP_CONCURRENCY", "1"),
    ])
    .await;
    for (name, days) in [
        ("in-20", 20),
        ("expired", -1),
        ("in-3", 3),
        ("in-9", 9),
        ("in-1", 1),
    ] {
        seed_due(&app, name, days).await;
    }
    app.control.clear_calls().await.unwrap();

    // Act
    let first = app.sweep().await;

    // Assert: the expired one, then the soonest; three left for the next run, because of the cap
    let summary = &first.result()["summary"];
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(summary["due"], 5, "{summary}");
    assert_eq!(summary["rotated"], 2, "{summary}");
    assert_eq!(summary["left_for_next_run"], 3, "{summary}");
    assert_eq!(summary["left_because"], "cap", "{summary}");
    assert_eq!(regenerated_accounts(&app).await, ["acc-expired", "acc-in-1"]);

    // Act: the next sweep takes the next two
    app.control.clear_calls().await.unwrap();
    let second = app.sweep().await;

    // Assert
    assert_eq!(second.result()["summary"]["rotated"], 2, "{:?}", second.body);
    assert_eq!(regenerated_accounts(&app).await, ["acc-in-3", "acc-in-9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_lists_at_most_500_results_and_counts_the_rest() {
    // Arrange: 501 misconfigured secrets (a CredentialId tag alone) and 300 plain ones
    let app = spawn_app().await;
    let mut secrets = Vec::new();
    for i in 0..801 {
        let tags = match i < 501 {
            true => json!({"CredentialId": "key1"}),
            false => json!({}),
        };
        secrets.push(json!({"name": format!("s{i:04}"), "versions": [{"value": "v", "tags": tags}]}));
    }
    app.control
        .seed(&json!({"vaults": [{"name": VAULT, "secrets": secrets}]}))
        .await
        .unwrap();

    // Act
    let answer = app.sweep().await;

    // Assert: every secret scanned, every failure counted by reason, 500 listed
    let report = answer.result();
    assert_eq!(report["summary"]["scanned"], 801, "{}", report["summary"]);
    assert_eq!(report["summary"]["failed"], 501);
    assert_eq!(report["summary"]["failed_by_reason"]["misconfigured"], 501);
    assert_eq!(report["results"].as_array().unwrap().len(), 500);
    assert_eq!(report["results_omitted"], 1);
    assert!(
        answer.body.to_string().len() < 400_000,
        "the answer stays bounded"
    );
}

/// 99 plain secrets in [`VAULT`] (4 pages with one more), each page of the listing slowed by
/// 150 ms of real time (the order of the calls is asserted, never a duration).
async fn slow_listing(app: &TestApp) {
    let mut secrets = Vec::new();
    for i in 0..99 {
        secrets.push(json!({"name": format!("z-plain-{i:03}"), "versions": [{"value": "v"}]}));
    }
    app.control
        .seed(&json!({"vaults": [{"name": VAULT, "secrets": secrets}]}))
        .await
        .unwrap();
    app.control
        .latency(&LatencyRule {
            operation: "GetSecrets".into(),
            target: None,
            delay_ms: 150,
            count: None,
        })
        .await
        .unwrap();
}

/// The seq of the last listing page of [`VAULT`] and of the first value read.
async fn last_page_and_first_read(app: &TestApp) -> (u64, u64, Vec<emulator::calls::Call>) {
    let calls = app.control.calls(None).await.unwrap();
    let pages = || calls.iter().filter(|c| c.operation == "GetSecrets");
    assert!(
        pages().filter(|c| c.target == VAULT).count() >= 4,
        "100 secrets take 4 pages"
    );
    let last_page = pages()
        .filter(|c| c.target == VAULT)
        .map(|c| c.seq)
        .max()
        .unwrap();
    let first_read = calls
        .iter()
        .filter(|c| c.operation == "GetSecret")
        .map(|c| c.seq)
        .min()
        .unwrap();
    (last_page, first_read, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fresh_index_rotations_start_while_the_vaults_are_still_being_listed() {
    // Arrange: a first sweep leaves a fresh index of claims; then a due secret on the first
    // page of a slow listing
    let app = spawn_app().await;
    slow_listing(&app).await;
    app.sweep().await;
    seed_due(&app, "a-due", 5).await;
    app.control.clear_calls().await.unwrap();

    // Act
    let answer = app.sweep().await;

    // Assert: rotated, and read before the listing's last page was asked for; both vaults'
    // listings were under way at once
    assert_eq!(answer.outcome_for(VAULT, "a-due"), "rotated", "{:?}", answer.body);
    let (last_page, first_read, calls) = last_page_and_first_read(&app).await;
    assert!(
        first_read < last_page,
        "the due secret was read only after the whole listing"
    );
    let other_first = calls
        .iter()
        .filter(|c| c.operation == "GetSecrets" && c.target != VAULT)
        .map(|c| c.seq)
        .min()
        .unwrap();
    assert!(
        other_first < last_page,
        "the vaults were listed one after the other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_index_rotations_start_while_listing_but_regenerate_only_after_it_most_urgent_first() {
    // Arrange: no index yet; on the first page a due secret and a more urgent (expired) one,
    // and one more due on the last page; one rotation at a time
    let app = spawn_app_with(&[("KEYFLIP_CONCURRENCY", "1")]).await;
    slow_listing(&app).await;
    seed_due(&app, "b-later", 20).await;
    seed_due(&app, "a-expired", -2).await;
    seed_due(&app, "zz-last", 10).await;
    app.control.clear_calls().await.unwrap();

    // Act
    let answer = app.sweep().await;

    // Assert: a value was read before the listing's last page was asked for, yet no resource
    // was called (so nothing regenerated on what was read before the wait) before the listing
    // ended (I9 needs the whole index); the expired one first, then in order of urgency; all
    // rotated
    assert_eq!(answer.result()["summary"]["rotated"], 3, "{:?}", answer.body);
    let (last_page, first_read, calls) = last_page_and_first_read(&app).await;
    assert!(
        first_read < last_page,
        "the first rotation waited for the whole listing to start"
    );
    let first_resource_call = calls
        .iter()
        .filter(|c| c.operation.starts_with("Accounts_"))
        .map(|c| c.seq)
        .min()
        .unwrap();
    assert!(
        first_resource_call > last_page,
        "a resource was called before the index of every served vault was complete"
    );
    assert_eq!(
        regenerated_accounts(&app).await,
        ["acc-a-expired", "acc-zz-last", "acc-b-later"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_secrets_do_not_use_up_the_rotation_cap() {
    // Arrange: a cap of one; the most urgent secret (expired) names an account outside the
    // vault's scopes, as a hostile tag writer could
    let app = spawn_app_with(&[("KEYFLIP_MAX_ROTATIONS_PER_SWEEP", "1")]).await;
    seed_due(&app, "healthy", 5).await;
    let mut hostile = SecretSpec::new("hostile", "acc-hostile").tag(
        "ProviderAddress",
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/elsewhere/providers/Microsoft.CognitiveServices/accounts/acc-hostile",
    );
    hostile.expires_in_days = Some(-3650);
    hostile.value = Some("not-a-key".into());
    app.seed_secret(hostile).await;

    // Act
    let answer = app.sweep().await;

    // Assert: the hostile one refused, the healthy one rotated anyway
    assert_eq!(
        answer.outcome_for(VAULT, "hostile"),
        "failed:not-allowed",
        "{:?}",
        answer.body
    );
    assert_eq!(
        answer.outcome_for(VAULT, "healthy"),
        "rotated",
        "{:?}",
        answer.body
    );
    assert_eq!(answer.result()["summary"]["left_for_next_run"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_beyond_the_listed_results_still_asks_the_host_to_retry() {
    // Arrange: 500 misconfigured secrets fill the listed results; then a due secret whose
    // account answers 503 to every listKeys
    let app = spawn_app().await;
    let secrets: Vec<_> = (0..500)
        .map(|i| json!({"name": format!("a-bad-{i:03}"), "versions": [{"value": "v", "tags": {"CredentialId": "key1"}}]}))
        .collect();
    app.control
        .seed(&json!({"vaults": [{"name": VAULT, "secrets": secrets}]}))
        .await
        .unwrap();
    seed_due(&app, "z-due", 5).await;
    app.control
        .fault(&emulator::faults::FaultRule {
            operation: "Accounts_ListKeys".into(),
            target: None,
            status: 503,
            count: 100,
            retry_after_seconds: None,
            phase: Default::default(),
            code: None,
            message: None,
        })
        .await
        .unwrap();

    // Act
    let answer = app.sweep().await;

    // Assert: 500, the failure counted though not listed
    let report = answer.result();
    assert_eq!(
        report["summary"]["failed_by_reason"]["transient"], 1,
        "{}",
        report["summary"]
    );
    assert_eq!(report["results_omitted"], 1);
    assert_eq!(answer.status, 500, "{}", report["summary"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_resource_is_reported_once_per_secret() {
    // Arrange: two secrets, not due, both holding the same account's key
    let app = spawn_app().await;
    app.seed_account("acc-shared", "OpenAI").await;
    for name in ["shared-one", "shared-two"] {
        let mut spec = SecretSpec::new(name, "acc-shared");
        spec.validity_days = "365".into();
        spec.expires_in_days = Some(200);
        app.seed_secret(spec).await;
    }

    // Act
    let answer = app.sweep().await;

    // Assert: each counted once, as not due, and the problem names both
    let report = answer.result();
    assert_eq!(report["summary"]["skipped"], 2, "{}", report["summary"]);
    assert_eq!(report["summary"]["failed"], 0, "{}", report["summary"]);
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("shared-one") && problems.contains("shared-two"),
        "{problems}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_leaves_what_it_cannot_start_to_the_next_run() {
    // Arrange: three due secrets, one at a time, each regeneration hanging (real time) and a
    // sweep budget of 4 s: the first rotation uses most of it (it ends pending), and no
    // rotation starts with less than a third of the budget left
    let app = spawn_app_with(&[
        ("KEYFLIP_SWEEP_BUDGET_SECONDS", "4"),
        ("KEYFLIP_CONCURRENCY", "1"),
    ])
    .await;
    for (name, days) in [("one", 1), ("two", 2), ("three", 3)] {
        seed_due(&app, name, days).await;
    }
    app.control
        .latency(&LatencyRule {
            operation: "Accounts_RegenerateKey".into(),
            target: None,
            delay_ms: 10_000,
            count: None,
        })
        .await
        .unwrap();

    // Act
    let answer = app.sweep().await;

    // Assert: the most urgent is pending, the other two left for the next run because of the
    // deadline, and none of them was touched
    let s = &answer.result()["summary"];
    assert_eq!(answer.outcome_for(VAULT, "one"), "pending", "{:?}", answer.body);
    assert_eq!(s["left_for_next_run"], 2, "{s}");
    assert_eq!(s["left_because"], "deadline", "{s}");
    assert_eq!(app.regenerations("acc-two").await, [0, 0]);
    assert_eq!(app.regenerations("acc-three").await, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyflip_sweep_plans_with_dry_run_and_rotates_without_it() {
    // Arrange
    let app = spawn_app().await;
    seed_due(&app, "cli-due", 5).await;
    let mut later = SecretSpec::new("cli-later", "acc-cli-later");
    later.expires_in_days = Some(200);
    later.validity_days = "365".into();
    app.seed_account("acc-cli-later", "OpenAI").await;
    app.seed_secret(later).await;

    // Act: a dry run as JSON, then a real sweep as a table
    let (code, stdout, stderr) = tokio::task::block_in_place(|| {
        run_keyflip(&app, &["sweep", "--vault", VAULT, "--dry-run", "--json"], &[])
    });

    // Assert: planned, counted, nothing written
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    assert_eq!(report["summary"]["due"], 1, "{report}");
    assert_eq!(report["summary"]["skipped_by_reason"]["planned"], 1, "{report}");
    assert_eq!(report["results"][0]["outcome"], "planned", "{report}");
    assert!(app.writes().await.is_empty());

    // Act
    let (code, stdout, stderr) =
        tokio::task::block_in_place(|| run_keyflip(&app, &["sweep", "--vault", VAULT], &[]));

    // Assert: the summary line, then the aligned table with the rotated secret
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("scanned 2, due 1, rotated 1"), "{stdout}");
    assert!(lines[1].starts_with("SECRET"), "{stdout}");
    let row = lines.iter().find(|l| l.contains("cli-due")).expect("a row");
    assert_eq!(row.find("rotated"), lines[1].find("OUTCOME"), "aligned: {stdout}");
    assert!(row.contains("key1 -> key2"), "{stdout}");
    assert_eq!(app.versions(VAULT, "cli-due").await.len(), 2);
    let key = app.key("acc-cli-due", "key2").await;
    assert!(
        !stdout.contains(&key) && !stderr.contains(&key),
        "no key value printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_beyond_resource_manager_s_write_burst_paces_itself_and_is_never_throttled() {
    // Arrange: Azure's documented limits on, the emulator's clock ticking (its buckets refill
    // with it; real time), and 130 due secrets: two Resource Manager writes each (listKeys,
    // regenerateKey) are more than the 200-token write burst and what refills in the seconds
    // the work takes unpaced (checked: with neither the client-side bucket nor Azure's remaining
    // count believed, 19 of the 130 fail transient here)
    let app = spawn_app().await;
    app.control.freeze_clock(false).await.unwrap();
    app.control.set_throttling(Some(&json!({}))).await.unwrap();
    for i in 0..130 {
        seed_due(&app, &format!("burst-{i:03}"), 5).await;
    }

    // Act
    let answer = app.sweep().await;

    // Assert: every one rotated, none failed, and Azure never had to say 429
    let summary = &answer.result()["summary"];
    assert_eq!(answer.status, 200, "{summary} {}", answer.body);
    assert_eq!(summary["rotated"], 130, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    let throttling = app.control.throttling().await.unwrap();
    assert_eq!(throttling["throttled"], 0, "{throttling}");
    let writes = app
        .control
        .calls(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.service == emulator::calls::Service::Arm && c.method == "POST")
        .count();
    assert!(
        writes >= 260,
        "the sweep needed more than the burst and what refills meanwhile: {writes} writes"
    );
}
