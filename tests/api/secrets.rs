//! I7: no key value in any log line or answer — checked on the real `keyflip serve` under the
//! managed identity, at DEBUG and at TRACE for every crate (a rotation, a pending one and a
//! failed publish), in a panic's output — and `keyflip demo --json` end to end.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{
    SecretSpec, TestApp, VAULT, event_envelope, fixture, host_post as post, serve_process, spawn_app,
};

const VAULT_TWO: &str = "kv-api-two";

/// Accounts with their initial keys: long, distinctive values a substring search cannot
/// confuse with anything else.
const ACCOUNTS: [(&str, &str, &str); 4] = [
    (
        "i7-event-acc",
        "Ev3ntK1yQ9x7Lm2Pz8Rt4Wb6Nc1Hd5Fg",
        "Ev3ntK2yJ4s8Vq1Xk7Yt3Mb9Lp6Zr2Dc",
    ),
    (
        "i7-mismatch-acc",
        "M1smK1yB5n7Qw2Er4Ty6Ui8Op0As3Df",
        "M1smK2yG7h9Jk1Lz3Xc5Vb7Nm9Qw2Er",
    ),
    (
        "i7-manual-acc",
        "M4nK1yT6y8Ui0Op2As4Df6Gh8Jk1Lz3",
        "M4nK2yX5c7Vb9Nm1Qw3Er5Ty7Ui9Op2",
    ),
    (
        "i7-sweep-acc",
        "Sw3pK1yA2s4Df6Gh8Jk0Lz1Xc3Vb5Nm",
        "Sw3pK2yQ8w6Er4Ty2Ui0Op9As7Df5Gh",
    ),
];

/// The managed secrets: (vault, secret, account).
const SECRETS: [(&str, &str, &str); 4] = [
    (VAULT, "i7-event", "i7-event-acc"),
    (VAULT, "i7-mismatch", "i7-mismatch-acc"),
    (VAULT, "i7-manual", "i7-manual-acc"),
    (VAULT_TWO, "i7-sweep", "i7-sweep-acc"),
];

fn outcome(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let result = value.get("ReturnValue").unwrap_or(&value);
    result["outcome"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn no_key_value_appears_in_the_logs_or_answers_of_keyflip_serve() {
    // Arrange: four accounts and secrets; one secret's CredentialId lies (it holds key2)
    let app = spawn_app().await;
    for (name, key1, key2) in ACCOUNTS {
        app.seed_account_with(json!({"name": name, "kind": "OpenAI", "key1": key1, "key2": key2}))
            .await;
    }
    for (vault, secret, account) in SECRETS {
        let mut spec = SecretSpec::new(secret, account);
        spec.vault = vault.to_string();
        if secret == "i7-mismatch" {
            spec.value = Some(app.key(account, "key2").await);
        }
        app.seed_secret(spec).await;
    }
    let mut process = serve_process(&app, &[]).await;
    let event = event_envelope(
        "Microsoft.KeyVault.SecretNearExpiry",
        VAULT,
        "i7-event",
        &app.latest("i7-event").await.version,
    );
    let mismatch = event_envelope(
        "Microsoft.KeyVault.SecretNearExpiry",
        VAULT,
        "i7-mismatch",
        &app.latest("i7-mismatch").await.version,
    );

    // Act: drive every path through the child, as the host would
    let mut answers: Vec<(&str, u16, String)> = Vec::new();
    let url = |path: &str| process.url(path);
    for (label, path, body) in [
        ("event", "/KeyVaultEvents", event.to_string()),
        ("redelivery", "/KeyVaultEvents", event.to_string()),
        ("mismatch", "/KeyVaultEvents", mismatch.to_string()),
        ("bad envelope", "/KeyVaultEvents", "not json".to_string()),
        (
            "dry run",
            "/api/rotate/kv-api/i7-manual?dryRun=true",
            String::new(),
        ),
        ("manual", "/api/rotate/kv-api/i7-manual", String::new()),
        (
            "sweep",
            "/RotationSweep",
            fixture("derived/timer-invocation.custom-handler.json").to_string(),
        ),
    ] {
        let (status, text) = post(&app, url(path), body).await;
        answers.push((label, status, text));
    }
    let _ = process.child.kill();
    let _ = process.child.wait();
    let output = process.output();

    // Assert: each path did what it should (so the search below is not vacuous)
    let got: Vec<(&str, u16, String)> = answers
        .iter()
        .map(|(label, status, text)| (*label, *status, outcome(text)))
        .collect();
    let expected = [
        ("event", 200, "rotated"),
        ("redelivery", 200, "skipped:stale"),
        ("mismatch", 200, "failed:pointer-mismatch"),
        ("bad envelope", 400, ""),
        ("dry run", 200, "planned"),
        ("manual", 200, "rotated"),
        ("sweep", 200, ""),
    ];
    assert_eq!(
        got,
        expected
            .iter()
            .map(|(l, s, o)| (*l, *s, o.to_string()))
            .collect::<Vec<_>>(),
        "{answers:#?}\n{output}"
    );
    let sweep: Value = serde_json::from_str(&answers[6].2).unwrap();
    assert_eq!(sweep["ReturnValue"]["summary"]["rotated"], 1, "{sweep}");

    // Arrange: every key value that ever existed — initial keys, current keys (each slot was
    // regenerated at most once, so nothing in between), every version's value
    let secrets = SECRETS.map(|(vault, secret, _)| (vault, secret));
    let keys = every_key(&app, &ACCOUNTS, &secrets).await;
    assert_eq!(keys.len(), 8 + 3, "three slots were regenerated: {}", keys.len());
    assert!(keys.iter().all(|k| k.len() >= 16));

    // Assert: none in the captured output, none in any answer
    for key in &keys {
        let line = output.lines().find(|l| l.contains(key.as_str()));
        assert!(line.is_none(), "a key value is in the log: {line:?}");
        for (label, _, text) in &answers {
            assert!(
                !text.contains(key.as_str()),
                "a key value is in the {label} answer"
            );
        }
    }

    // Assert: the log is JSON lines (debug on), and the rotation span names vault and secret
    let lines: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect();
    assert!(lines.len() >= 10, "too few JSON log lines:\n{output}");
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "no debug line:\n{output}"
    );
    for (vault, secret) in [(VAULT, "i7-event"), (VAULT, "i7-manual"), (VAULT_TWO, "i7-sweep")] {
        assert!(
            lines.iter().any(|l| l["span"]["name"] == "rotation"
                && l["span"]["vault"] == vault
                && l["span"]["secret"] == secret),
            "no rotation span for {vault}/{secret}:\n{output}"
        );
    }
}

#[test]
fn keyflip_demo_json_prints_one_object_with_the_four_results_in_order() {
    // Act
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyflip"))
        .args(["demo", "--json"])
        .output()
        .expect("keyflip demo runs");

    // Assert
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let object: Value = serde_json::from_str(lines[0]).expect("one JSON object");
    let results = object["results"].as_array().expect("results");
    assert_eq!(results.len(), 4, "{object}");
    assert_eq!(results[0]["outcome"], "rotated");
    assert_eq!(results[0]["verified"], true);
    assert_eq!(results[1]["outcome"], "skipped:stale");
    assert!(results[2]["summary"].is_object(), "{}", results[2]);
    assert_eq!(results[2]["summary"]["rotated"], 0);
    assert_eq!(results[3]["outcome"], "planned");
}

/// Accounts of the TRACE test: (name, key1, key2), distinctive values.
const TRACE_ACCOUNTS: [(&str, &str, &str); 3] = [
    (
        "tr-rotate-acc",
        "Tr4ceRotK1yQ9x7Lm2Pz8Rt4Wb6Nc1Hd",
        "Tr4ceRotK2yJ4s8Vq1Xk7Yt3Mb9Lp6Zr",
    ),
    (
        "tr-pending-acc",
        "Tr4cePndK1yB5n7Qw2Er4Ty6Ui8Op0As",
        "Tr4cePndK2yG7h9Jk1Lz3Xc5Vb7Nm9Qw",
    ),
    (
        "tr-publish-acc",
        "Tr4cePubK1yT6y8Ui0Op2As4Df6Gh8Jk",
        "Tr4cePubK2yX5c7Vb9Nm1Qw3Er5Ty7Ui",
    ),
];

/// Every key value `accounts` and their `(vault, secret)`s ever held (no slot is regenerated
/// more than once in these tests, so initial + current + published cover them all).
async fn every_key(
    app: &TestApp,
    accounts: &[(&str, &str, &str)],
    secrets: &[(&str, &str)],
) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (name, key1, key2) in accounts {
        keys.insert(key1.to_string());
        keys.insert(key2.to_string());
        let regenerations = app.regenerations(name).await;
        assert!(regenerations.iter().all(|n| *n <= 1), "{name}: {regenerations:?}");
        keys.insert(app.key(name, "key1").await);
        keys.insert(app.key(name, "key2").await);
    }
    for (vault, secret) in secrets {
        for version in app.versions(vault, secret).await {
            keys.insert(version.value);
        }
    }
    keys
}

#[tokio::test]
async fn no_key_value_appears_at_trace_level_for_every_crate() {
    // Arrange: a rotation, a key slow to activate (pending) and a publish that keeps failing
    let app = spawn_app().await;
    for (name, key1, key2) in TRACE_ACCOUNTS {
        let mut account = json!({"name": name, "kind": "OpenAI", "key1": key1, "key2": key2});
        if name == "tr-pending-acc" {
            account["key_activation_delay_seconds"] = json!(3600);
        }
        app.seed_account_with(account).await;
        app.seed_secret(SecretSpec::new(name.trim_end_matches("-acc"), name))
            .await;
    }
    // RUST_LOG=trace: every crate (reqwest, hyper, rustls, h2, azure_core, azure_identity, …)
    let mut process = serve_process(&app, &[("RUST_LOG", "trace")]).await;
    let event = event_envelope(
        "Microsoft.KeyVault.SecretNearExpiry",
        VAULT,
        "tr-rotate",
        &app.latest("tr-rotate").await.version,
    );

    // Act
    let mut answers = Vec::new();
    answers.push(post(&app, process.url("/KeyVaultEvents"), event.to_string()).await);
    answers.push(post(&app, process.url("/api/rotate/kv-api/tr-pending"), String::new()).await);
    app.control
        .fault(&emulator::faults::FaultRule::new("SetSecret", 500, 100))
        .await
        .unwrap();
    answers.push(post(&app, process.url("/api/rotate/kv-api/tr-publish"), String::new()).await);
    let _ = process.child.kill();
    let _ = process.child.wait();
    let output = process.output();

    // Assert: each path did what it should, and TRACE was really on for the dependencies
    let got: Vec<(u16, String)> = answers.iter().map(|(s, t)| (*s, outcome(t))).collect();
    assert_eq!(got[0], (200, "rotated".to_string()), "{answers:?}");
    assert_eq!(got[1], (202, "pending".to_string()), "{answers:?}");
    assert_eq!(got[2].0, 503, "{answers:?}");
    assert_eq!(got[2].1, "failed:transient", "{answers:?}");
    let targets: BTreeSet<&str> = output
        .lines()
        .filter_map(|l| l.split("\"target\":\"").nth(1)?.split(['"', ':']).next())
        .collect();
    // azure_core logs through its foundation crate, typespec_client_core.
    for wanted in [
        "hyper_util",
        "rustls",
        "reqwest",
        "h2",
        "typespec_client_core",
        "azure_identity",
    ] {
        assert!(
            targets.contains(wanted),
            "no TRACE line from {wanted} (only {targets:?}): is the filter on?"
        );
    }
    let secrets = [(VAULT, "tr-rotate"), (VAULT, "tr-pending"), (VAULT, "tr-publish")];
    let keys = every_key(&app, &TRACE_ACCOUNTS, &secrets).await;
    assert!(keys.len() >= 6 + 2, "{}", keys.len());

    // Assert: no key value, old, new or idle, in stdout/stderr or any answer
    for key in &keys {
        let line = output.lines().find(|l| l.contains(key.as_str()));
        assert!(line.is_none(), "a key value is in the TRACE log: {line:?}");
        for (_, text) in &answers {
            assert!(!text.contains(key.as_str()), "a key value is in an answer");
        }
    }
}

const PANIC_KEY1: &str = "Pan1cK1yQ9x7Lm2Pz8Rt4Wb6Nc1Hd5Fg";
const PANIC_KEY2: &str = "Pan1cK2yJ4s8Vq1Xk7Yt3Mb9Lp6Zr2Dc";

/// The child of [`a_panic_during_a_rotation_prints_no_key`]: keyflip's own telemetry (JSON,
/// TRACE) and panic hook, a sweep over a secret whose rotation panics with a key value in
/// its message, the answer on stdout.
#[tokio::test]
#[ignore = "run as a child process by a_panic_during_a_rotation_prints_no_key"]
async fn panic_child() {
    keyflip::telemetry::init(keyflip::telemetry::LogFormat::Json).unwrap();
    let app = crate::hostile::spawn_app_panicking_on("panic-acc").await;
    app.seed_account_with(
        json!({"name": "panic-acc", "kind": "OpenAI", "key1": PANIC_KEY1, "key2": PANIC_KEY2}),
    )
    .await;
    app.seed_secret(SecretSpec::new("panics", "panic-acc")).await;
    let answer = app.sweep().await;
    println!("ANSWER {}", answer.body);
}

#[test]
fn a_panic_during_a_rotation_prints_no_key() {
    // Act: the child test, in a process of its own (its panic hook and subscriber are global)
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "secrets::panic_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUST_LOG", "trace")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    // Assert: the rotation panicked and was reported (not vacuous), the hook logged where, and
    // neither the answer nor any output line holds the key the panic message quoted
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("failed:internal"), "{stdout}\n{stderr}");
    assert!(stdout.contains("keyflip panicked"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("tests/api/helpers.rs"),
        "the location is logged: {stdout}"
    );
    for key in [PANIC_KEY1, PANIC_KEY2] {
        assert!(!stdout.contains(key), "a key value is in stdout");
        assert!(!stderr.contains(key), "a key value is in stderr");
    }
}
