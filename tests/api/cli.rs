//! `keyflip rotate` as a child process: the same engine from a terminal, authenticated with the
//! real managed-identity credential against the emulator's token endpoint, reaching the emulated
//! hosts through KEYFLIP_CA_BUNDLE and KEYFLIP_CONNECT_TO. Its clock is the system clock, and
//! `spawn_app` froze the emulator's at wall time: secrets are seeded relative to it and no test
//! moves it.

use serde_json::Value;

use crate::helpers::{SecretSpec, TestApp, VAULT, run_keyflip, spawn_app};

/// Runs `keyflip <args>` to completion without blocking the runtime that serves the emulator.
fn keyflip(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    tokio::task::block_in_place(|| run_keyflip(app, args, env))
}

/// The one JSON result `--json` prints on stdout.
fn json_result(stdout: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {stdout}");
    serde_json::from_str(lines[0]).expect("a JSON result")
}

fn flip(result: &Value) -> (&str, &str, &str) {
    (
        result["outcome"].as_str().unwrap_or_default(),
        result["from"].as_str().unwrap_or_default(),
        result["to"].as_str().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_json_prints_one_result_exits_0_and_flips_the_pointer() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-cli", "OpenAI").await;
    app.seed_secret(SecretSpec::new("cli", "aoai-cli")).await;
    let before = app.latest("cli").await;

    // Act
    let (code, stdout, stderr) = keyflip(
        &app,
        &["rotate", "--vault", VAULT, "--secret", "cli", "--json"],
        &[],
    );

    // Assert: exit 0, one RotationResult, and the vault's latest version is key2's new key
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let result = json_result(&stdout);
    assert_eq!(flip(&result), ("rotated", "key1", "key2"), "{result}");
    assert_eq!(
        (
            result["trigger"].as_str(),
            result["vault"].as_str(),
            result["secret"].as_str()
        ),
        (Some("manual"), Some(VAULT), Some("cli"))
    );
    assert_eq!(result["verified"], true);
    let latest = app.latest("cli").await;
    assert_ne!(latest.version, before.version);
    assert_eq!(result["version"].as_str(), Some(latest.version.as_str()));
    assert_eq!(latest.tag("CredentialId"), Some("key2"));
    assert_eq!(latest.tag("RotationTrigger"), Some("manual"));
    assert_eq!(latest.tag("PreviousVersion"), Some(before.version.as_str()));
    assert_eq!(latest.value, app.key("aoai-cli", "key2").await);
    assert_eq!(app.key("aoai-cli", "key1").await, before.value);
    assert_eq!(app.regenerations("aoai-cli").await, [0, 1]);
    for key in [&before.value, &latest.value] {
        assert!(
            !stdout.contains(key.as_str()) && !stderr.contains(key.as_str()),
            "no key value in the output (I7)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_authenticates_with_the_system_assigned_managed_identity() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-mi", "OpenAI").await;
    app.seed_secret(SecretSpec::new("mi", "aoai-mi")).await;
    app.control.clear_calls().await.unwrap();

    // Act
    let (code, stdout, stderr) = keyflip(&app, &["rotate", "--vault", VAULT, "--secret", "mi"], &[]);

    // Assert: tokens came from the managed-identity endpoint, and every Key Vault and Resource
    // Manager call carried the system-assigned identity's token
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("rotated"), "{stdout}");
    let calls = app.control.calls(None).await.unwrap();
    let token_audiences: Vec<&str> = calls
        .iter()
        .filter(|c| c.operation == "GetToken" && c.status == 200)
        .map(|c| c.target.as_str())
        .collect();
    assert!(
        token_audiences.iter().any(|a| a.contains("vault.azure.net"))
            && token_audiences.iter().any(|a| a.contains("management")),
        "{token_audiences:?}"
    );
    let principal = app.info.system_identity.principal_id.as_str();
    let authenticated: Vec<_> = calls
        .iter()
        .filter(|c| {
            matches!(
                c.operation.as_str(),
                "GetSecret"
                    | "SetSecret"
                    | "UpdateSecret"
                    | "Accounts_Get"
                    | "Accounts_ListKeys"
                    | "Accounts_RegenerateKey"
            ) && c.status < 300
        })
        .collect();
    for operation in ["GetSecret", "SetSecret", "Accounts_RegenerateKey"] {
        assert!(
            authenticated.iter().any(|c| c.operation == operation),
            "{operation} in {calls:?}"
        );
    }
    for call in authenticated {
        assert_eq!(call.caller.as_deref(), Some(principal), "{call:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_dry_run_prints_planned_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-clidry", "OpenAI").await;
    app.seed_secret(SecretSpec::new("clidry", "aoai-clidry")).await;
    let before = app.latest("clidry").await;

    // Act
    let (code, stdout, stderr) = keyflip(
        &app,
        &[
            "rotate",
            "--vault",
            VAULT,
            "--secret",
            "clidry",
            "--dry-run",
            "--json",
        ],
        &[],
    );

    // Assert
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        flip(&json_result(&stdout)),
        ("planned", "key1", "key2"),
        "{stdout}"
    );
    assert_eq!(app.versions(VAULT, "clidry").await.len(), 1);
    let after = app.latest("clidry").await;
    assert_eq!((after.version, after.tags), (before.version, before.tags));
    assert_eq!(app.regenerations("aoai-clidry").await, [0, 0]);
    for operation in ["Accounts_RegenerateKey", "SetSecret", "UpdateSecret"] {
        assert!(
            app.control.calls(Some(operation)).await.unwrap().is_empty(),
            "{operation}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rotate_right_after_is_skipped_by_the_dwell_and_force_rotates() {
    // Arrange: a first rotation, key1 → key2
    let app = spawn_app().await;
    app.seed_account("aoai-clidwell", "OpenAI").await;
    app.seed_secret(SecretSpec::new("clidwell", "aoai-clidwell"))
        .await;
    let rotate = ["rotate", "--vault", VAULT, "--secret", "clidwell", "--json"];
    let (code, stdout, _) = keyflip(&app, &rotate, &[]);
    assert_eq!((code, flip(&json_result(&stdout)).0), (0, "rotated"));

    // Act: again at once
    let (code, stdout, stderr) = keyflip(&app, &rotate, &[]);

    // Assert: skipped (a success: exit 0), nothing regenerated
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(json_result(&stdout)["outcome"], "skipped:dwell");
    assert_eq!(app.regenerations("aoai-clidwell").await, [0, 1]);

    // Act: forced
    let forced: Vec<&str> = rotate.iter().copied().chain(["--force"]).collect();
    let (code, stdout, stderr) = keyflip(&app, &forced, &[]);

    // Assert: key2 → key1
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(flip(&json_result(&stdout)), ("rotated", "key2", "key1"));
    assert_eq!(app.regenerations("aoai-clidwell").await, [1, 1]);
    assert_eq!(app.latest("clidwell").await.tag("CredentialId"), Some("key1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_publishes_the_active_key_without_regenerating_then_rotation_resumes() {
    // Arrange: a secret whose value is neither key (refused with failed:unknown-key)
    let app = spawn_app().await;
    app.seed_account("aoai-clirepair", "OpenAI").await;
    let mut spec = SecretSpec::new("clirepair", "aoai-clirepair");
    spec.value = Some("a-key-regenerated-long-ago".into());
    app.seed_secret(spec).await;
    let broken = app.latest("clirepair").await;
    let repair = [
        "rotate",
        "--vault",
        VAULT,
        "--secret",
        "clirepair",
        "--repair",
        "--json",
    ];

    // Act: a dry run, then the repair
    let (code, stdout, stderr) = keyflip(&app, &[&repair[..], &["--dry-run"]].concat(), &[]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(json_result(&stdout)["outcome"], "planned");
    assert_eq!(app.latest("clirepair").await.version, broken.version);
    let (code, stdout, stderr) = keyflip(&app, &repair, &[]);

    // Assert: the current key1 published as a new version, pointer unchanged, nothing regenerated
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let result = json_result(&stdout);
    assert_eq!(result["outcome"], "repaired", "{result}");
    let repaired = app.latest("clirepair").await;
    assert_ne!(repaired.version, broken.version);
    assert_eq!(repaired.value, app.key("aoai-clirepair", "key1").await);
    assert_eq!(repaired.tag("CredentialId"), Some("key1"));
    assert_eq!(repaired.tag("RotationTrigger"), Some("repair"));
    assert_eq!(repaired.tag("PreviousVersion"), Some(broken.version.as_str()));
    assert!(repaired.exp.is_some());
    assert_eq!(app.regenerations("aoai-clirepair").await, [0, 0]);

    // Act: repair again, then a rotation (forced: the repaired version is inside the dwell,
    // and the child process runs on the wall clock)
    let (code, stdout, _) = keyflip(&app, &repair, &[]);
    assert_eq!(code, 0);
    assert_eq!(json_result(&stdout)["outcome"], "skipped:nothing-to-repair");
    let rotate = [
        "rotate",
        "--vault",
        VAULT,
        "--secret",
        "clirepair",
        "--json",
        "--force",
    ];
    let (code, stdout, stderr) = keyflip(&app, &rotate, &[]);

    // Assert: the secret rotates normally again
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(flip(&json_result(&stdout)), ("rotated", "key1", "key2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_refuses_when_the_tag_lies_and_writes_nothing() {
    // Arrange: the value is the current key2, the tag says key1
    let app = spawn_app().await;
    app.seed_account("aoai-clilies", "OpenAI").await;
    let mut spec = SecretSpec::new("clilies", "aoai-clilies");
    spec.value = Some(app.key("aoai-clilies", "key2").await);
    app.seed_secret(spec).await;
    let before = app.latest("clilies").await;

    // Act
    let (code, stdout, stderr) = keyflip(
        &app,
        &[
            "rotate", "--vault", VAULT, "--secret", "clilies", "--repair", "--json",
        ],
        &[],
    );

    // Assert: a permanent failure, nothing published
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(json_result(&stdout)["outcome"], "failed:pointer-mismatch");
    assert_eq!(app.latest("clilies").await.version, before.version);
    assert_eq!(app.regenerations("aoai-clilies").await, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_and_force_cannot_be_combined() {
    let app = spawn_app().await;
    let (code, _, stderr) = keyflip(
        &app,
        &["rotate", "--vault", VAULT, "--secret", "x", "--repair", "--force"],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_secret_exits_1_with_the_outcome_on_stderr() {
    // Arrange
    let app = spawn_app().await;
    app.seed_account("aoai-clibad", "OpenAI").await;
    app.seed_secret(SecretSpec::new("clibad", "aoai-clibad").tag("ValidityPeriodDays", "30"))
        .await;

    // Act
    let (code, stdout, stderr) = keyflip(&app, &["rotate", "--vault", VAULT, "--secret", "clibad"], &[]);

    // Assert: permanent failure, the outcome on stderr, the reason (naming the tag) on stdout
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("failed:misconfigured"), "{stderr}");
    assert!(stdout.contains("ValidityPeriodDays"), "{stdout}");
    assert_eq!(app.regenerations("aoai-clibad").await, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_keyflip_vaults_exits_78_naming_the_setting() {
    // Arrange
    let app = spawn_app().await;
    app.control.clear_calls().await.unwrap();

    // Act
    let (code, stdout, stderr) = keyflip(
        &app,
        &["rotate", "--vault", VAULT, "--secret", "any"],
        &[("KEYFLIP_VAULTS", "")],
    );

    // Assert: a configuration error before any network call
    assert_eq!(code, 78, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("KEYFLIP_VAULTS"), "{stderr}");
    assert!(app.control.calls(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_prints_the_version_and_an_unknown_subcommand_prints_usage() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let (version_code, version, _) = keyflip(&app, &["--version"], &[]);
    let (unknown_code, unknown_out, unknown_err) = keyflip(&app, &["rotat"], &[]);

    // Assert
    assert_eq!(version_code, 0);
    assert_eq!(version.trim(), format!("keyflip {}", env!("CARGO_PKG_VERSION")));
    assert_ne!(unknown_code, 0);
    assert!(
        unknown_err.contains("Usage"),
        "stdout: {unknown_out}\nstderr: {unknown_err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_revoke_active_kills_the_leaked_key_inside_the_dwell() {
    // Arrange: the latest version was published today
    let app = spawn_app().await;
    app.seed_account("aoai-cli-leak", "OpenAI").await;
    let mut spec = SecretSpec::new("cli-leak", "aoai-cli-leak");
    spec.created_days_ago = 0;
    app.seed_secret(spec).await;
    let leaked = app.latest("cli-leak").await.value;

    // Act
    let (code, stdout, stderr) = keyflip(
        &app,
        &[
            "rotate",
            "--vault",
            VAULT,
            "--secret",
            "cli-leak",
            "--revoke-active",
            "--json",
        ],
        &[],
    );

    // Assert
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(json_result(&stdout)["outcome"], "revoked");
    assert_eq!(app.regenerations("aoai-cli-leak").await, [1, 1]);
    assert!(!app.key_works("aoai-cli-leak", &leaked).await);
    assert!(!stdout.contains(&leaked) && !stderr.contains(&leaked));
}
