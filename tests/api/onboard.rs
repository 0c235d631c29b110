//! `keyflip onboard` as a child process under the managed-identity credential, against the
//! emulator: one secret brought under management (then rotated, to show it is a secret keyflip
//! can rotate), every refusal with nothing written, an existing secret that keeps its value, and
//! `--all-in-scope` over a paged account list, proposing first and writing only with `--yes`.

use serde_json::{Value, json};

use crate::helpers::{
    RESOURCE_GROUP, SUBSCRIPTION, SecretSpec, TestApp, VAULT, run_keyflip, spawn_app,
    spawn_app_with_storage_lease,
};

/// The app with its served vaults in the emulator.
async fn app_with_vaults() -> TestApp {
    seed_vaults(spawn_app().await).await
}

async fn seed_vaults(app: TestApp) -> TestApp {
    app.control
        .seed(&json!({"vaults": [{"name": VAULT}, {"name": "kv-api-two"}]}))
        .await
        .expect("vaults seeded");
    app
}

fn keyflip(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    tokio::task::block_in_place(|| run_keyflip(app, args, env))
}

/// Runs `keyflip onboard --vault kv-api <args>`.
fn onboard(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["onboard", "--vault", VAULT];
    all.extend_from_slice(args);
    keyflip(app, &all, &[])
}

fn last_json(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rfind(|l| l.trim_start().starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(line).unwrap_or(Value::Null)
}

async fn set_secret_calls(app: &TestApp) -> usize {
    app.writes().await.iter().filter(|w| *w == "SetSecret").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboard_writes_key1_with_the_three_tags_and_the_secret_then_rotates() {
    // Arrange
    let app = app_with_vaults().await;
    app.seed_account("ob-new", "OpenAI").await;
    let resource = TestApp::provider_address("ob-new");
    let now = app.now().await;

    // Act
    let (code, stdout, stderr) = onboard(
        &app,
        &[
            "--secret",
            "ob-new",
            "--resource-id",
            &resource,
            "--validity-days",
            "45",
            "--json",
        ],
    );

    // Assert: the first version holds key1 with the tag contract and exp = now + 45 days
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let answer = last_json(&stdout);
    assert_eq!(answer["slot"], "key1", "{answer}");
    assert_eq!(answer["verified"], true);
    assert_eq!(answer["kept_value"], false);
    let latest = app.latest("ob-new").await;
    assert_eq!(latest.value, app.key("ob-new", "key1").await);
    assert_eq!(latest.tag("CredentialId"), Some("key1"));
    assert_eq!(latest.tag("ProviderAddress"), Some(resource.as_str()));
    assert_eq!(latest.tag("ValidityPeriodDays"), Some("45"));
    assert_eq!(latest.tag("RotationTrigger"), Some("onboard"));
    assert_eq!(latest.tag("VerifyKey"), None);
    let exp = latest.exp.expect("exp set");
    assert!((exp - (now + 45 * 86_400)).abs() < 120, "exp {exp}, now {now}");
    assert!(
        !stdout.contains(&app.key("ob-new", "key1").await),
        "no key on stdout"
    );
    assert!(
        !stderr.contains(&app.key("ob-new", "key1").await),
        "no key on stderr"
    );

    // Act: a rotation of the onboarded secret (forced: it was written a moment ago)
    let (code, stdout, stderr) = keyflip(
        &app,
        &[
            "rotate", "--vault", VAULT, "--secret", "ob-new", "--force", "--json",
        ],
        &[],
    );

    // Assert: keyflip rotates it like any managed secret
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(last_json(&stdout)["outcome"], "rotated", "{stdout}");
    assert_eq!(app.latest("ob-new").await.tag("CredentialId"), Some("key2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboard_refuses_what_would_break_a_consumer_or_a_rule_and_writes_nothing() {
    // Arrange: an account already managed, one with local auth off, one in another
    // subscription, one without a trustworthy check, and secrets already in the way
    let app = app_with_vaults().await;
    for (name, kind) in [("ob-taken", "OpenAI"), ("ob-free", "OpenAI")] {
        app.seed_account(name, kind).await;
    }
    app.seed_account_with(json!({"name": "ob-noauth", "kind": "OpenAI", "disable_local_auth": true}))
        .await;
    app.seed_account_with(json!({"name": "ob-nocheck", "kind": "TextAnalytics", "custom_subdomain": null}))
        .await;
    app.control
        .seed(&json!({"accounts": [{
            "name": "ob-elsewhere", "kind": "OpenAI",
            "subscription_id": "99999999-0000-4000-8000-000000000000", "resource_group": "rg-x",
        }]}))
        .await
        .expect("seeded");
    app.seed_secret(SecretSpec::new("ob-taken", "ob-taken")).await;
    app.control
        .seed(&json!({"vaults": [{"name": VAULT, "secrets": [{"name": "ob-plain", "versions": [{"value": "something-else"}]}]}]}))
        .await
        .expect("seeded");
    let elsewhere = "/subscriptions/99999999-0000-4000-8000-000000000000/resourceGroups/rg-x/providers/Microsoft.CognitiveServices/accounts/ob-elsewhere";
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "already managed by another secret",
            vec![
                "--secret".into(),
                "ob-second".into(),
                "--resource-id".into(),
                TestApp::provider_address("ob-taken"),
            ],
            "already managed by kv-api/ob-taken",
        ),
        (
            "the secret is managed",
            vec![
                "--secret".into(),
                "ob-taken".into(),
                "--resource-id".into(),
                TestApp::provider_address("ob-free"),
            ],
            "already managed by keyflip",
        ),
        (
            "an unmanaged secret with another value",
            vec![
                "--secret".into(),
                "ob-plain".into(),
                "--resource-id".into(),
                TestApp::provider_address("ob-free"),
            ],
            "neither key",
        ),
        (
            "outside the scopes",
            vec![
                "--secret".into(),
                "ob-x".into(),
                "--resource-id".into(),
                elsewhere.into(),
            ],
            "outside the scopes",
        ),
        (
            "local auth off",
            vec![
                "--secret".into(),
                "ob-y".into(),
                "--resource-id".into(),
                TestApp::provider_address("ob-noauth"),
            ],
            "disableLocalAuth",
        ),
        (
            "no trustworthy check",
            vec![
                "--secret".into(),
                "ob-z".into(),
                "--resource-id".into(),
                TestApp::provider_address("ob-nocheck"),
            ],
            "--no-verify",
        ),
        (
            "an unsupported type",
            vec![
                "--secret".into(),
                "ob-w".into(),
                "--resource-id".into(),
                format!(
                    "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/st"
                ),
            ],
            "does not rotate",
        ),
        (
            "a hostile id",
            vec![
                "--secret".into(),
                "ob-v".into(),
                "--resource-id".into(),
                format!(
                    "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.CognitiveServices/accounts/..%2f"
                ),
            ],
            "not an ARM resource id",
        ),
        (
            "a validity shorter than Event Grid's lead",
            vec![
                "--secret".into(),
                "ob-u".into(),
                "--resource-id".into(),
                TestApp::provider_address("ob-free"),
                "--validity-days".into(),
                "20".into(),
            ],
            "ValidityPeriodDays",
        ),
    ];
    let before = set_secret_calls(&app).await;

    for (label, args, says) in &cases {
        // Act
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = onboard(&app, &args);

        // Assert: a permanent failure naming the reason
        assert_eq!(code, 1, "{label}: {stdout}\n{stderr}");
        assert!(stderr.contains(says), "{label}: expected '{says}' in: {stderr}");
    }

    // Assert: nothing was written by any of them
    assert_eq!(set_secret_calls(&app).await, before, "{:?}", app.writes().await);
    assert_eq!(
        app.latest("ob-taken").await.tag("ProviderAddress"),
        Some(TestApp::provider_address("ob-taken").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_secret_holding_key2_keeps_its_value_and_names_key2() {
    // Arrange: the key applications already read, in a secret nobody tagged
    let app = app_with_vaults().await;
    app.seed_account("ob-kept", "OpenAI").await;
    let key2 = app.key("ob-kept", "key2").await;
    app.control
        .seed(&json!({"vaults": [{"name": VAULT, "secrets": [{"name": "ob-kept", "versions": [{"value": key2, "tags": {"team": "search"}}]}]}]}))
        .await
        .expect("seeded");
    let before = app.latest("ob-kept").await;

    // Act
    let (code, stdout, stderr) = onboard(
        &app,
        &[
            "--secret",
            "ob-kept",
            "--resource-id",
            &TestApp::provider_address("ob-kept"),
        ],
    );

    // Assert: same value, the pointer names key2, other tags carried forward
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("consumers notice nothing"), "{stdout}");
    let latest = app.latest("ob-kept").await;
    assert_eq!(latest.value, key2);
    assert_eq!(latest.tag("CredentialId"), Some("key2"));
    assert_eq!(latest.tag("team"), Some("search"));
    assert_eq!(latest.tag("PreviousVersion"), Some(before.version.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_in_scope_proposes_a_table_and_writes_only_with_yes() {
    // Arrange: three pages of accounts (page size 2): two to onboard, one managed, one with
    // local auth off, one without a check
    let app = app_with_vaults().await;
    app.control
        .seed(&json!({"arm_page_size": 2}))
        .await
        .expect("page size");
    for name in ["ob-a", "ob-b", "ob-managed"] {
        app.seed_account(name, "OpenAI").await;
    }
    app.seed_account_with(json!({"name": "ob-off", "kind": "OpenAI", "disable_local_auth": true}))
        .await;
    app.seed_account_with(json!({"name": "ob-lang", "kind": "TextAnalytics", "custom_subdomain": null}))
        .await;
    app.seed_secret(SecretSpec::new("ob-managed-key", "ob-managed"))
        .await;
    // The secret an application already reads ob-c's key from, nobody's managed secret yet
    app.seed_account("ob-c", "OpenAI").await;
    let c_key2 = app.key("ob-c", "key2").await;
    app.control
        .seed(&json!({"vaults": [{"name": VAULT, "secrets": [{"name": "legacy-c", "versions": [{"value": c_key2}]}]}]}))
        .await
        .expect("seeded");
    let before = set_secret_calls(&app).await;

    // Act: the proposal
    let (code, stdout, stderr) = onboard(&app, &["--all-in-scope"]);

    // Assert: every account is in the table, with why the others are skipped; nothing written
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for expected in [
        "ob-a",
        "ob-b",
        "legacy-c",
        "already holds its key2",
        "already managed by kv-api/ob-managed-key",
        "disableLocalAuth",
        "no trustworthy key check",
        "3 to onboard; nothing written",
    ] {
        assert!(stdout.contains(expected), "'{expected}' missing from:\n{stdout}");
    }
    assert_eq!(set_secret_calls(&app).await, before);
    let listed = app.control.calls(Some("Accounts_List")).await.expect("calls");
    assert!(
        listed.len() >= 3,
        "the list was followed over its pages: {}",
        listed.len()
    );

    // Act: the same with --yes
    let (code, stdout, stderr) = onboard(&app, &["--all-in-scope", "--yes", "--json"]);

    // Assert: exactly the two proposed secrets were written, each holding key1
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let answer = last_json(&stdout);
    assert_eq!(answer["onboarded"].as_array().map(Vec::len), Some(3), "{answer}");
    assert_eq!(set_secret_calls(&app).await, before + 3);
    let legacy = app.latest("legacy-c").await;
    assert_eq!(legacy.value, c_key2, "its consumers read the same value");
    assert_eq!(legacy.tag("CredentialId"), Some("key2"));
    assert!(
        app.control.secret(VAULT, "ob-c").await.is_err(),
        "no second secret holds ob-c's key"
    );
    for name in ["ob-a", "ob-b"] {
        let latest = app.latest(name).await;
        assert_eq!(latest.value, app.key(name, "key1").await);
        assert_eq!(
            latest.tag("ProviderAddress"),
            Some(TestApp::provider_address(name).as_str())
        );
    }

    // Act: again: nothing is left to onboard
    let (code, stdout, _) = onboard(&app, &["--all-in-scope", "--yes"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("already managed by kv-api/ob-a"), "{stdout}");
    assert!(stdout.contains("already managed by kv-api/legacy-c"), "{stdout}");
    assert_eq!(set_secret_calls(&app).await, before + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_never_cancels_a_pending_rotation_or_an_unfinished_revocation() {
    // Arrange: managed secrets in the middle of a rotation and of a leaked-key revocation
    let app = seed_vaults(spawn_app_with_storage_lease(&[]).await).await;
    app.seed_account("ob-pending", "OpenAI").await;
    app.seed_account("ob-revoking", "OpenAI").await;
    app.seed_secret(SecretSpec::new("ob-pending", "ob-pending").tag("PendingSlot", "key2"))
        .await;
    app.seed_secret(SecretSpec::new("ob-revoking", "ob-revoking").tag("RevokePending", "key2"))
        .await;
    let before = set_secret_calls(&app).await;

    for (secret, says) in [("ob-pending", "pending mark"), ("ob-revoking", "RevokePending")] {
        // Act
        let resource = TestApp::provider_address(secret);
        let args = [
            "onboard",
            "--vault",
            VAULT,
            "--secret",
            secret,
            "--resource-id",
            &resource,
            "--force",
        ];
        let (code, stdout, stderr) = keyflip(&app, &args, &STORAGE_ENV);

        // Assert: refused, naming the mark, with the rotation's way to finish it
        assert_eq!(code, 1, "{secret}: {stdout}\n{stderr}");
        assert!(
            stderr.contains(says) && stderr.contains("keyflip rotate"),
            "{secret}: {stderr}"
        );
    }
    assert_eq!(set_secret_calls(&app).await, before);
    assert_eq!(app.latest("ob-revoking").await.tag("RevokePending"), Some("key2"));
}

/// The lease in the app's storage (Azurite behind the emulator), as the deployed CLI has it.
const STORAGE_ENV: [(&str, &str); 2] = [
    ("KEYFLIP_LEASE", "storage"),
    ("AzureWebJobsStorage__accountName", "devstoreaccount1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_without_a_shared_lease_is_refused() {
    // Arrange: a managed secret, and the CLI's lease only in its own memory
    let app = app_with_vaults().await;
    app.seed_account("ob-mem", "OpenAI").await;
    app.seed_secret(SecretSpec::new("ob-mem", "ob-mem")).await;

    // Act
    let resource = TestApp::provider_address("ob-mem");
    let (code, _, stderr) = onboard(
        &app,
        &["--secret", "ob-mem", "--resource-id", &resource, "--force"],
    );

    // Assert
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("KEYFLIP_LEASE=in-process"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_an_unmanaged_secret_already_holds_is_never_onboarded_beside_it() {
    // Arrange: ob-dup's key1 in an unmanaged secret of the other vault; ob-split's two keys in
    // two unmanaged secrets (two applications, one key each)
    let app = app_with_vaults().await;
    app.seed_account("ob-dup", "OpenAI").await;
    app.seed_account("ob-split", "OpenAI").await;
    let dup_key1 = app.key("ob-dup", "key1").await;
    let (split1, split2) = (
        app.key("ob-split", "key1").await,
        app.key("ob-split", "key2").await,
    );
    app.control
        .seed(&json!({"vaults": [
            {"name": "kv-api-two", "secrets": [{"name": "legacy-dup", "versions": [{"value": dup_key1}]}]},
            {"name": VAULT, "secrets": [
                {"name": "app-a-key", "versions": [{"value": split1}]},
                {"name": "app-b-key", "versions": [{"value": split2}]},
            ]},
        ]}))
        .await
        .expect("seeded");
    let before = set_secret_calls(&app).await;

    // Act: onboard each into a new secret
    let dup = TestApp::provider_address("ob-dup");
    let (code, _, stderr) = onboard(&app, &["--secret", "ob-dup-new", "--resource-id", &dup]);

    // Assert: refused, naming the secret that holds the key
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("kv-api-two/legacy-dup") && stderr.contains("already holds a key"),
        "{stderr}"
    );
    let split = TestApp::provider_address("ob-split");
    let (code, _, stderr) = onboard(&app, &["--secret", "ob-split-new", "--resource-id", &split]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("kv-api/app-a-key") && stderr.contains("kv-api/app-b-key"),
        "{stderr}"
    );

    // Act: the proposal
    let (code, stdout, stderr) = onboard(&app, &["--all-in-scope", "--yes"]);

    // Assert: neither is onboarded, and the table says why
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("onboard that secret in its own vault"),
        "{stdout}"
    );
    assert!(stdout.contains("2 secrets hold its keys"), "{stdout}");
    assert_eq!(set_secret_calls(&app).await, before, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_secret_of_another_resource_holding_the_key_blocks_onboarding_beside_it() {
    // Arrange: ob-mis's key2 in a secret managed for another account (a wrong ProviderAddress)
    let app = app_with_vaults().await;
    app.seed_account("ob-mis", "OpenAI").await;
    app.seed_account("ob-other", "OpenAI").await;
    let mut wrong = SecretSpec::new("ob-wrong-address", "ob-other");
    wrong.value = Some(app.key("ob-mis", "key2").await);
    app.seed_secret(wrong).await;
    let before = set_secret_calls(&app).await;

    // Act
    let resource = TestApp::provider_address("ob-mis");
    let (code, _, stderr) = onboard(&app, &["--secret", "ob-mis", "--resource-id", &resource]);

    // Assert: refused, naming it: its readers would lose key2 at the first rotation
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("kv-api/ob-wrong-address"), "{stderr}");
    assert_eq!(set_secret_calls(&app).await, before);
}
