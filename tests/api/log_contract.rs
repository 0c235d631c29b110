//! The log contract (`keyflip::engine::log_events`, README "Logs and alerts"): the real
//! `keyflip serve` under the host's environment writes JSON lines whose top-level `event`,
//! `vault` and `secret` are what the deployed alerts query — a rotation, a refused one, a sweep
//! and a managed secret found past its expiry.

use serde_json::Value;

use crate::helpers::{SecretSpec, VAULT, event_envelope, fixture, host_post, serve_process, spawn_app};

/// The JSON lines of `output` whose `event` is `event`.
fn lines_of<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

#[tokio::test]
async fn rotations_and_sweeps_log_the_events_the_alerts_query() {
    // Arrange: a secret to rotate by event, one whose pointer lies, one past its expiry
    let app = spawn_app().await;
    for account in ["lc-event-acc", "lc-mismatch-acc", "lc-expired-acc"] {
        app.seed_account(account, "OpenAI").await;
    }
    app.seed_secret(SecretSpec::new("lc-event", "lc-event-acc")).await;
    let mut mismatch = SecretSpec::new("lc-mismatch", "lc-mismatch-acc");
    mismatch.value = Some(app.key("lc-mismatch-acc", "key2").await);
    app.seed_secret(mismatch).await;
    let mut expired = SecretSpec::new("lc-expired", "lc-expired-acc");
    expired.expires_in_days = Some(-2);
    app.seed_secret(expired).await;
    let process = serve_process(&app, &[]).await;
    let event = |secret: &str, version: &str| {
        event_envelope("Microsoft.KeyVault.SecretNearExpiry", VAULT, secret, version).to_string()
    };

    // Act: two events and a sweep, as the host sends them
    let version = app.latest("lc-event").await.version;
    let (rotated, _) = host_post(&app, process.url("/KeyVaultEvents"), event("lc-event", &version)).await;
    let version = app.latest("lc-mismatch").await.version;
    let (refused, _) = host_post(
        &app,
        process.url("/KeyVaultEvents"),
        event("lc-mismatch", &version),
    )
    .await;
    let timer = fixture("derived/timer-invocation.custom-handler.json").to_string();
    let (swept, _) = host_post(&app, process.url("/RotationSweep"), timer).await;
    let output = process.output();
    let lines: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();

    // Assert: each call answered as the host expects
    assert_eq!((rotated, refused, swept), (200, 200, 200), "{output}");

    // Assert: the rotation is one rotation.completed line with its facts at the top level
    let completed = lines_of(&lines, "rotation.completed");
    let by_event: Vec<_> = completed.iter().filter(|l| l["secret"] == "lc-event").collect();
    assert_eq!(by_event.len(), 1, "{output}");
    let line = by_event[0];
    assert_eq!(line["vault"], VAULT);
    assert_eq!(line["trigger"], "event");
    assert_eq!(line["outcome"], "rotated");
    assert_eq!(
        (line["from"].as_str(), line["to"].as_str()),
        (Some("key1"), Some("key2"))
    );
    assert_eq!(line["version"], app.latest("lc-event").await.version.as_str());
    assert_eq!(line["level"], "INFO");

    // Assert: the lying pointer is a rotation.failed line with its reason, at error level
    let failed = lines_of(&lines, "rotation.failed");
    let mismatch: Vec<_> = failed.iter().filter(|l| l["secret"] == "lc-mismatch").collect();
    assert!(!mismatch.is_empty(), "{output}");
    assert_eq!(mismatch[0]["reason"], "pointer-mismatch");
    assert_eq!(mismatch[0]["outcome"], "failed:pointer-mismatch");
    assert_eq!(mismatch[0]["level"], "ERROR");

    // Assert: the sweep saw the expired secret, rotated it, and logged its counts once
    let expired = lines_of(&lines, "secret.expired");
    assert_eq!(expired.len(), 1, "{output}");
    assert_eq!(
        (expired[0]["vault"].as_str(), expired[0]["secret"].as_str()),
        (Some(VAULT), Some("lc-expired"))
    );
    assert!(
        expired[0]["expires"].as_str().is_some_and(|e| e.ends_with('Z')),
        "{}",
        expired[0]
    );
    assert!(
        completed
            .iter()
            .any(|l| l["secret"] == "lc-expired" && l["trigger"] == "timer"),
        "{output}"
    );
    let sweeps = lines_of(&lines, "sweep.completed");
    assert_eq!(sweeps.len(), 1, "{output}");
    assert_eq!(sweeps[0]["scanned"], 3);
    assert_eq!(sweeps[0]["rotated"], 1, "{}", sweeps[0]);

    // Assert: every contract line names a known event
    for line in lines.iter().filter(|l| l.get("event").is_some()) {
        let name = line["event"].as_str().unwrap_or_default();
        assert!(keyflip::engine::log_events::EVENTS.contains(&name), "{line}");
    }
}
