//! Managed identity, the `keyflip-emulator` binary and the control API.
//!
//! - The real `azure_identity::ManagedIdentityCredential` (App Service source) drives the
//!   official `SecretClient` and an ARM pipeline. It reads `IDENTITY_ENDPOINT` from the process
//!   environment when it is built, so it runs in a child process: this test binary, re-executed
//!   with the environment set, running only the ignored test [`managed_identity_child`].
//! - The App Service token protocol itself, raw over plain HTTP.
//! - The binary: its one JSON line, its CA file, its seed file, its refusal of bad seeds.
//! - The control API: reset, all-or-nothing seeding, the clock.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Context, Method, Request, Transport, Url};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use azure_security_keyvault_secrets::models::SetSecretParameters;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use emulator::calls::{Call, Service};
use emulator::client::{ControlClientError, azure_http_client};
use emulator::faults::{FaultRule, Phase};
use emulator::{ControlClient, EmulatorInfo};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{
    ARM, ControlCredential, RESOURCE_GROUP, SUBSCRIPTION, TestEmulator, account_id, fast_retry,
    spawn_emulator,
};

const VAULT_AUDIENCE: &str = "https://vault.azure.net";
const ARM_AUDIENCE: &str = "https://management.azure.com";

// ---------------------------------------------------------------- the real credential

/// Set (to `1`) only in the child process; without it the child test does nothing.
const CHILD_MARKER: &str = "KEYFLIP_TEST_MI_CHILD";
/// The emulator's address, for the child's transport.
const CHILD_ADDRESS: &str = "KEYFLIP_TEST_MI_ADDRESS";
/// The emulator's CA (PEM), for the child's transport.
const CHILD_CA_PEM: &str = "KEYFLIP_TEST_MI_CA_PEM";
/// The test path of the child test, the same in every test binary that has this module.
const CHILD_TEST: &str = "identity::managed_identity_child";

const MI_VAULT: &str = "kv-mi";
const MI_ACCOUNT: &str = "mi-account";
const USER_CLIENT_ID: &str = "7f0c2a3e-0000-4000-8000-00000000c11e";
const USER_PRINCIPAL_ID: &str = "7f0c2a3e-0000-4000-8000-0000000001d0";
/// The secret each identity writes and reads: (user-assigned client id, secret name).
const MI_RUNS: [(Option<&str>, &str); 2] = [(None, "mi-system"), (Some(USER_CLIENT_ID), "mi-user")];

/// `Display` of an azure_core error shows only its outer context; this walks the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(" <- ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Runs in the child process (see
/// [`managed_identity_credential_in_a_child_process_reaches_key_vault_and_arm`]): with the
/// real `ManagedIdentityCredential`, once system-assigned and once user-assigned, sets and gets
/// a secret through the official `SecretClient` (challenge verification on) and lists the
/// account's keys through an ARM pipeline.
#[tokio::test]
#[ignore = "the child half of managed_identity_credential_in_a_child_process_reaches_key_vault_and_arm"]
async fn managed_identity_child() {
    if std::env::var(CHILD_MARKER).as_deref() != Ok("1") {
        return;
    }
    let address = std::env::var(CHILD_ADDRESS)
        .expect("address")
        .parse()
        .expect("socket address");
    let ca_pem = std::env::var(CHILD_CA_PEM).expect("CA");
    let http = azure_http_client(address, &ca_pem).expect("http client");
    let transport = Transport::new(Arc::new(http));
    let client_options = ClientOptions {
        transport: Some(transport),
        retry: fast_retry(),
        ..Default::default()
    };

    for (client_id, secret) in MI_RUNS {
        let credential: Arc<dyn TokenCredential> =
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_string())),
                client_options: ClientOptions {
                    retry: fast_retry(),
                    ..Default::default()
                },
            }))
            .unwrap_or_else(|e| panic!("credential: {}", error_chain(&e)));

        let kv = SecretClient::new(
            &format!("https://{MI_VAULT}.vault.azure.net/"),
            credential.clone(),
            Some(SecretClientOptions {
                client_options: client_options.clone(),
                verify_challenge_resource: Some(true),
                ..Default::default()
            }),
        )
        .expect("secret client");
        let value = format!("{secret}-value");
        let params = SetSecretParameters {
            value: Some(value.clone()),
            ..Default::default()
        };
        kv.set_secret(secret, params.try_into().expect("body"), None)
            .await
            .unwrap_or_else(|e| panic!("set_secret as {client_id:?}: {}", error_chain(&e)));
        let got = kv
            .get_secret(secret, None)
            .await
            .unwrap_or_else(|e| panic!("get_secret as {client_id:?}: {}", error_chain(&e)))
            .into_model()
            .expect("secret");
        assert_eq!(got.value.as_deref(), Some(value.as_str()));

        let pipeline = crate::helpers::arm_pipeline(credential, client_options.clone());
        let url = format!("{ARM}{}/listKeys?api-version=2025-06-01", account_id(MI_ACCOUNT));
        let mut request = Request::new(Url::parse(&url).expect("url"), Method::Post);
        request.insert_header("accept", "application/json");
        let response = pipeline
            .send(&Context::new(), &mut request, None)
            .await
            .unwrap_or_else(|e| panic!("listKeys as {client_id:?}: {}", error_chain(&e)));
        let keys: Value = serde_json::from_slice(response.body()).expect("keys");
        assert_eq!(keys, json!({"key1": "mi-key1", "key2": "mi-key2"}));
    }
}

/// The callers of the successful calls of `operation` on `target` (any target when `None`).
fn callers(calls: &[Call], operation: &str, target: Option<&str>) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.operation == operation && c.status == 200)
        .filter(|c| target.is_none_or(|t| c.target == t))
        .map(|c| c.caller.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn managed_identity_credential_in_a_child_process_reaches_key_vault_and_arm() {
    // Arrange: a vault, an account and a user-assigned identity; the child gets the App
    // Service variables and the emulator's address and CA in its environment.
    let app = spawn_emulator().await;
    app.seed(json!({
        "identities": [{"client_id": USER_CLIENT_ID, "principal_id": USER_PRINCIPAL_ID}],
        "vaults": [{"name": MI_VAULT}],
        "accounts": [{"subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
                      "name": MI_ACCOUNT, "kind": "OpenAI", "key1": "mi-key1", "key2": "mi-key2"}]
    }))
    .await;
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
        .env("IDENTITY_ENDPOINT", &app.info.identity_endpoint)
        .env("IDENTITY_HEADER", &app.info.identity_header)
        .env(CHILD_MARKER, "1")
        .env(CHILD_ADDRESS, app.info.address.to_string())
        .env(CHILD_CA_PEM, &app.info.ca_pem)
        // Other managed-identity sources, and proxies, must not take over.
        .env_remove("IDENTITY_SERVER_THUMBPRINT")
        .env_remove("MSI_ENDPOINT")
        .env_remove("MSI_SECRET")
        .env_remove("IMDS_ENDPOINT")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .kill_on_drop(true);

    // Act
    let output = tokio::time::timeout(Duration::from_secs(120), child.output())
        .await
        .expect("the child finishes within 120 s")
        .expect("the child runs");

    // Assert: the child ran its one test and passed.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(&format!("test {CHILD_TEST} ... ok")) && stdout.contains("1 passed"),
        "the child did not run {CHILD_TEST}:\n{stdout}"
    );

    // Assert: tokens for both audiences went to both identities, and each identity's Key Vault
    // and ARM calls carry its object id.
    let calls = app.control.calls(None).await.expect("calls");
    let system = app.info.system_identity.principal_id.clone();
    let both: BTreeSet<String> = [system.clone(), USER_PRINCIPAL_ID.to_string()].into();
    for audience in [VAULT_AUDIENCE, ARM_AUDIENCE] {
        let token_callers: BTreeSet<String> =
            callers(&calls, "GetToken", Some(audience)).into_iter().collect();
        assert_eq!(token_callers, both, "GetToken for {audience}");
    }
    for ((client_id, secret), oid) in MI_RUNS.into_iter().zip([system.as_str(), USER_PRINCIPAL_ID]) {
        for operation in ["SetSecret", "GetSecret"] {
            let on_secret: Vec<&Call> = calls
                .iter()
                .filter(|c| c.service == Service::Keyvault && c.operation == operation && c.status == 200)
                .filter(|c| c.path.trim_end_matches('/') == format!("/secrets/{secret}"))
                .collect();
            assert_eq!(on_secret.len(), 1, "{operation} {secret}: {on_secret:?}");
            assert_eq!(
                on_secret[0].caller.as_deref(),
                Some(oid),
                "{operation} as {client_id:?}"
            );
        }
        let stored = app.control.secret(MI_VAULT, secret).await.expect("secret");
        assert_eq!(stored["versions"][0]["value"], format!("{secret}-value"));
    }
    let mut list_keys = callers(&calls, "Accounts_ListKeys", None);
    list_keys.sort();
    let mut expected: Vec<String> = both.into_iter().collect();
    expected.sort();
    assert_eq!(list_keys, expected, "Accounts_ListKeys callers");
}

// ---------------------------------------------------------------- the token protocol, raw

/// A plain-HTTP client for the token endpoint.
fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("plain http client")
}

/// `{IDENTITY_ENDPOINT}?query`.
fn token_url(app: &TestEmulator, query: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&app.info.identity_endpoint).expect("identity endpoint");
    url.query_pairs_mut().extend_pairs(query);
    url.to_string()
}

/// `GET {IDENTITY_ENDPOINT}?query` with `X-IDENTITY-HEADER: header` when given.
async fn get_token(app: &TestEmulator, query: &[(&str, &str)], header: Option<&str>) -> (u16, Value) {
    let mut request = plain_http().get(token_url(app, query));
    if let Some(header) = header {
        request = request.header("X-IDENTITY-HEADER", header);
    }
    let response = request.send().await.expect("token endpoint reachable");
    let status = response.status().as_u16();
    let body = response.json().await.expect("JSON body");
    (status, body)
}

fn jwt_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url payload");
    serde_json::from_slice(&payload).expect("JSON claims")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

#[tokio::test]
async fn the_token_endpoint_answers_the_app_service_shape_with_a_jwt_for_the_resource() {
    // Arrange
    let app = spawn_emulator().await;
    let header = app.info.identity_header.clone();

    // Act
    let (status, body) = get_token(
        &app,
        &[("api-version", "2019-08-01"), ("resource", VAULT_AUDIENCE)],
        Some(&header),
    )
    .await;

    // Assert: the App Service answer, expires_on a string of unix seconds.
    assert_eq!(status, 200, "{body}");
    let expires_on: i64 = body["expires_on"]
        .as_str()
        .unwrap_or_else(|| panic!("expires_on must be a JSON string: {body}"))
        .parse()
        .expect("unix seconds");
    assert_eq!(body["resource"], VAULT_AUDIENCE);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["client_id"], app.info.system_identity.client_id.as_str());
    let claims = jwt_claims(body["access_token"].as_str().expect("access_token"));
    assert_eq!(claims["aud"], VAULT_AUDIENCE);
    assert_eq!(
        claims["iss"],
        format!("https://sts.windows.net/{}/", app.info.tenant_id)
    );
    assert_eq!(claims["oid"], app.info.system_identity.principal_id.as_str());
    let (nbf, exp) = (
        claims["nbf"].as_i64().expect("nbf"),
        claims["exp"].as_i64().expect("exp"),
    );
    let now = unix_now();
    assert!(nbf <= now && now < exp, "nbf {nbf} now {now} exp {exp}");
    assert_eq!(exp, expires_on);
}

#[tokio::test]
async fn the_token_endpoint_gives_a_user_assigned_identity_its_own_oid() {
    // Arrange
    let app = spawn_emulator().await;
    app.seed(json!({"identities": [{"client_id": USER_CLIENT_ID, "principal_id": USER_PRINCIPAL_ID}]}))
        .await;
    let header = app.info.identity_header.clone();

    // Act
    let (status, body) = get_token(
        &app,
        &[
            ("api-version", "2019-08-01"),
            ("resource", ARM_AUDIENCE),
            ("client_id", USER_CLIENT_ID),
        ],
        Some(&header),
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["client_id"], USER_CLIENT_ID);
    let claims = jwt_claims(body["access_token"].as_str().expect("access_token"));
    assert_eq!(
        (&claims["oid"], &claims["aud"]),
        (&json!(USER_PRINCIPAL_ID), &json!(ARM_AUDIENCE))
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_wrong_or_missing_identity_header_with_401() {
    // Arrange
    let app = spawn_emulator().await;
    let query = [("api-version", "2019-08-01"), ("resource", VAULT_AUDIENCE)];

    // Act
    let (wrong, wrong_body) = get_token(&app, &query, Some("not-the-identity-header")).await;
    let (missing, missing_body) = get_token(&app, &query, None).await;

    // Assert
    assert_eq!(wrong, 401, "{wrong_body}");
    assert_eq!(missing, 401, "{missing_body}");
    assert_eq!(wrong_body["statusCode"], 401);
    assert!(wrong_body["message"].is_string(), "{wrong_body}");
}

#[tokio::test]
async fn the_token_endpoint_requires_a_resource() {
    // Arrange
    let app = spawn_emulator().await;
    let header = app.info.identity_header.clone();

    // Act
    let (status, body) = get_token(&app, &[("api-version", "2019-08-01")], Some(&header)).await;

    // Assert
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["statusCode"], 400);
}

#[tokio::test]
async fn the_token_endpoint_refuses_an_unknown_client_id_with_400() {
    // Arrange
    let app = spawn_emulator().await;
    let header = app.info.identity_header.clone();

    // Act
    let (status, body) = get_token(
        &app,
        &[
            ("api-version", "2019-08-01"),
            ("resource", VAULT_AUDIENCE),
            ("client_id", "00000000-0000-0000-0000-00000000dead"),
        ],
        Some(&header),
    )
    .await;

    // Assert
    assert_eq!(
        (status, body),
        (
            400,
            json!({"statusCode": 400, "message": "Unable to load the proper Managed Identity."})
        )
    );
}

#[tokio::test]
async fn an_injected_get_token_fault_is_answered_in_the_managed_identity_error_shape() {
    // Arrange: one 503 on tokens for Key Vault.
    let app = spawn_emulator().await;
    app.control
        .fault(&FaultRule {
            operation: "GetToken".into(),
            target: Some(VAULT_AUDIENCE.into()),
            status: 503,
            count: 1,
            retry_after_seconds: Some(2),
            phase: Phase::Before,
            code: None,
            message: None,
        })
        .await
        .expect("fault armed");
    let header = app.info.identity_header.clone();
    let query = [("api-version", "2019-08-01"), ("resource", VAULT_AUDIENCE)];

    // Act
    let response = plain_http()
        .get(token_url(&app, &query))
        .header("X-IDENTITY-HEADER", &header)
        .send()
        .await
        .expect("token endpoint reachable");
    let retry_after = response.headers().get("retry-after").cloned();
    let faulted_status = response.status().as_u16();
    let faulted: Value = response.json().await.expect("JSON body");
    let (next, _) = get_token(&app, &query, Some(&header)).await;

    // Assert: `{statusCode, message}` as the token endpoint's own errors, not an Azure
    // `{"error": …}` body; the fault strikes once.
    assert_eq!(faulted_status, 503, "{faulted}");
    let keys: BTreeSet<&str> = faulted
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["message", "statusCode"]), "{faulted}");
    assert_eq!(faulted["statusCode"], 503);
    assert_eq!(retry_after.as_ref().and_then(|v| v.to_str().ok()), Some("2"));
    assert_eq!(next, 200);
    let calls = app.control.calls(Some("GetToken")).await.expect("calls");
    let faulted_flags: Vec<(u16, bool)> = calls.iter().map(|c| (c.status, c.faulted)).collect();
    assert_eq!(faulted_flags, vec![(503, true), (200, false)]);
}

// ---------------------------------------------------------------- the binary

/// A unique directory under the system's temp dir, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "keyflip-emulator-test-{label}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn emulator_command(ca_out: &Path, seed: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyflip-emulator"));
    command
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--ca-out")
        .arg(ca_out)
        .arg("--seed")
        .arg(seed)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn the_emulator_binary_prints_one_info_line_writes_its_ca_and_serves_its_seed_file() {
    // Arrange: a seed file with a clock, a vault and an account.
    let dir = TempDir::new("bin");
    let seed_file = dir.path().join("seed.json");
    let seed = json!({
        "clock": 1_795_000_000,
        "vaults": [{"name": "kv-bin", "secrets": [
            {"name": "seeded", "versions": [{"value": "from-the-seed-file"}]}]}],
        "accounts": [{"subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
                      "name": "binacct", "kind": "OpenAI", "key1": "bin-key1", "key2": "bin-key2"}]
    });
    std::fs::write(&seed_file, seed.to_string()).expect("seed file");
    let ca_out = dir.path().join("ca");
    let mut process = emulator_command(&ca_out, &seed_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("emulator starts");
    let mut lines = BufReader::new(process.stdout.take().expect("stdout")).lines();

    // Act: its first stdout line (bounded wait), then the control API and one Key Vault call.
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the info line within 60 s")
        .expect("stdout readable")
        .expect("a line before stdout closes");
    let info: EmulatorInfo = serde_json::from_str(&line).expect("the line is EmulatorInfo");
    let control = ControlClient::new(&info.control_url);
    let summary = control.get("").await.expect("summary");
    let vault = control.get("/vaults/kv-bin").await.expect("vault");
    let account = control.account("binacct").await.expect("account");
    let http = azure_http_client(info.address, &info.ca_pem).expect("http client");
    let kv = SecretClient::new(
        "https://kv-bin.vault.azure.net/",
        Arc::new(ControlCredential(control.clone())),
        Some(SecretClientOptions {
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(http))),
                retry: fast_retry(),
                ..Default::default()
            },
            ..Default::default()
        }),
    )
    .expect("secret client");
    let secret = kv
        .get_secret("seeded", None)
        .await
        .unwrap_or_else(|e| panic!("get_secret: {}", error_chain(&e)))
        .into_model()
        .expect("secret");
    process.kill().await.expect("emulator killed");
    let after_kill = lines.next_line().await.expect("stdout readable");

    // Assert: the CA file is where the line says and holds ca_pem.
    let ca_file = ca_out.join("keyflip-emulator-ca.pem");
    assert_eq!(
        info.ca_file.as_deref(),
        Some(ca_file.display().to_string().as_str())
    );
    assert_eq!(std::fs::read_to_string(&ca_file).expect("CA file"), info.ca_pem);
    assert!(info.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        info.identity_endpoint,
        format!("http://{}/msi/token", info.address)
    );
    // Assert: the seeded state, the seeded clock (it keeps running), the Key Vault call.
    assert_eq!(
        vault["secrets"],
        json!([{"name": "seeded", "versions": 1, "deleted": null}])
    );
    assert_eq!(account["key1"]["value"], "bin-key1");
    assert_eq!(account["id"], account_id("binacct"));
    let now = summary["now"].as_i64().expect("now");
    assert!((1_795_000_000..1_795_000_060).contains(&now), "clock {now}");
    assert_eq!(secret.value.as_deref(), Some("from-the-seed-file"));
    // Assert: nothing but the one line was printed.
    assert_eq!(after_kill, None);
}

async fn run_emulator_with_seed(seed_text: &str) -> (Output, TempDir) {
    let dir = TempDir::new("bad-seed");
    let seed_file = dir.path().join("seed.json");
    std::fs::write(&seed_file, seed_text).expect("seed file");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        emulator_command(&dir.path().join("ca"), &seed_file).output(),
    )
    .await
    .expect("the emulator exits within 60 s")
    .expect("the emulator runs");
    (output, dir)
}

#[tokio::test]
async fn the_emulator_binary_exits_non_zero_naming_an_invalid_secret_name_in_its_seed() {
    // Arrange
    let seed = json!({"vaults": [{"name": "kv1", "secrets": [
        {"name": "bad_name", "versions": [{"value": "v"}]}]}]});

    // Act
    let (output, dir) = run_emulator_with_seed(&seed.to_string()).await;

    // Assert: a failure status, the reason on stderr, no info line and no CA written.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", output.status);
    assert!(
        stderr.contains("seed") && stderr.contains("'bad_name'") && stderr.contains("invalid name"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!dir.path().join("ca/keyflip-emulator-ca.pem").exists());
}

#[tokio::test]
async fn the_emulator_binary_exits_non_zero_naming_an_unknown_field_in_its_seed() {
    // Arrange
    let seed = json!({"vaultz": []});

    // Act
    let (output, _dir) = run_emulator_with_seed(&seed.to_string()).await;

    // Assert
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", output.status);
    assert!(
        stderr.contains("not a valid seed document") && stderr.contains("vaultz"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

// ---------------------------------------------------------------- the control API

fn status_of(result: &Result<Value, ControlClientError>) -> Option<u16> {
    match result {
        Err(ControlClientError::Status { status, .. }) => Some(*status),
        _ => None,
    }
}

#[tokio::test]
async fn reset_forgets_vaults_accounts_identities_faults_calls_and_the_clock() {
    // Arrange: state of every kind, a fault, a recorded call, a moved clock.
    let app = spawn_emulator().await;
    app.seed(json!({
        "identities": [{"client_id": USER_CLIENT_ID, "principal_id": USER_PRINCIPAL_ID}],
        "vaults": [{"name": "kv-reset", "secrets": [{"name": "s", "versions": [{"value": "v"}]}]}],
        "accounts": [{"subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
                      "name": "resetacct", "kind": "OpenAI"}]
    }))
    .await;
    app.control
        .fault(&FaultRule {
            operation: "*".into(),
            target: None,
            status: 500,
            count: 10,
            retry_after_seconds: None,
            phase: Phase::Before,
            code: None,
            message: None,
        })
        .await
        .expect("fault armed");
    app.control.advance_clock(30 * 86_400).await.expect("clock");
    let token = app.control.token(VAULT_AUDIENCE).await.expect("token");
    let url = "https://kv-reset.vault.azure.net/secrets/s?api-version=2025-07-01";
    let before = app.http.get(url).bearer_auth(&token).send().await.expect("call");
    assert_eq!(before.status(), 500);

    // Act
    app.control.reset().await.expect("reset");

    // Assert
    let summary = app.control.get("").await.expect("summary");
    assert_eq!(
        (&summary["vaults"], &summary["accounts"], &summary["calls"]),
        (&json!([]), &json!([]), &json!(0))
    );
    let now = summary["now"].as_i64().expect("now");
    assert!((now - unix_now()).abs() <= 5, "clock {now} is not wall time");
    let identities = app.control.get("/identities").await.expect("identities");
    assert_eq!(identities["user_assigned"], json!([]));
    let faults = app.control.get("/faults").await.expect("faults");
    assert_eq!(faults, json!({"faults": [], "latency": []}));
    assert_eq!(status_of(&app.control.get("/vaults/kv-reset").await), Some(404));
    let after = app.http.get(url).bearer_auth(&token).send().await.expect("call");
    assert_eq!(after.status(), 404);
    let body: Value = after.json().await.expect("body");
    assert_eq!(body["error"]["code"], "VaultNotFound");
}

#[tokio::test]
async fn a_bad_seed_is_refused_with_400_and_changes_nothing() {
    // Arrange: a vault with one secret.
    let app = spawn_emulator().await;
    app.seed(json!({"vaults": [{"name": "kv-good", "secrets": [
        {"name": "kept", "versions": [{"value": "v"}]}]}]}))
        .await;

    // Act: a seed whose valid parts come before an invalid secret name.
    let refused = app
        .control
        .seed(&json!({
            "clock": 1_000,
            "identities": [{"client_id": USER_CLIENT_ID, "principal_id": USER_PRINCIPAL_ID}],
            "vaults": [
                {"name": "kv-good", "secrets": [{"name": "added", "versions": [{"value": "v"}]}]},
                {"name": "kv-new", "secrets": [{"name": "bad_name", "versions": [{"value": "v"}]}]}
            ],
            "accounts": [{"subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
                          "name": "never", "kind": "OpenAI"}]
        }))
        .await;

    // Assert: 400 naming the problem; vaults, secrets, identities, accounts and clock as before.
    match &refused {
        Err(ControlClientError::Status { status: 400, body }) => {
            assert!(body.contains("bad_name"), "{body}");
        }
        other => panic!("expected 400, got {other:?}"),
    }
    let summary = app.control.get("").await.expect("summary");
    assert_eq!(summary["vaults"], json!(["kv-good"]));
    assert_eq!(summary["accounts"], json!([]));
    assert!((summary["now"].as_i64().expect("now") - unix_now()).abs() <= 5);
    let vault = app.control.get("/vaults/kv-good").await.expect("vault");
    assert_eq!(
        vault["secrets"],
        json!([{"name": "kept", "versions": 1, "deleted": null}])
    );
    let identities = app.control.get("/identities").await.expect("identities");
    assert_eq!(identities["user_assigned"], json!([]));
}

#[tokio::test]
async fn the_clock_can_be_set_advanced_and_frozen_and_resource_times_follow_it() {
    // Arrange
    let app = spawn_emulator().await;
    let token = app.control.token(VAULT_AUDIENCE).await.expect("token");
    app.seed(json!({"vaults": [{"name": "kv-clock"}]})).await;

    // Act
    let frozen = app
        .control
        .post("/clock", &json!({"set": 1_800_000_000, "freeze": true}))
        .await
        .expect("set");
    let advanced = app.control.advance_clock(3 * 86_400).await.expect("advance");
    let read = app.control.now().await.expect("now");
    let added = app
        .control
        .add_secret_version("kv-clock", "s", &json!({"value": "v"}))
        .await
        .expect("version");
    let rewound = app.control.advance_clock(-86_400).await.expect("rewind");
    let both = app
        .control
        .post("/clock", &json!({"advance_seconds": 1, "set": 2}))
        .await;
    let nothing = app.control.post("/clock", &json!({})).await;
    let response = app
        .http
        .get("https://kv-clock.vault.azure.net/secrets/s?api-version=2025-07-01")
        .bearer_auth(&token)
        .send()
        .await
        .expect("call");
    let thawed = app.control.freeze_clock(false).await.expect("thaw");

    // Assert: a frozen clock lands exactly where asked; a version created without `created`
    // takes the emulator's time; a token issued before the moves still works (token lifetimes
    // follow the wall clock); a move naming both modes, or nothing, is refused; a thawed clock
    // ticks on from where it stood.
    assert_eq!(
        (frozen["now"].as_i64(), frozen["frozen"].as_bool()),
        (Some(1_800_000_000), Some(true))
    );
    assert_eq!(advanced, 1_800_000_000 + 3 * 86_400);
    assert_eq!(read, advanced);
    assert_eq!(rewound, read - 86_400);
    let stored = app.control.secret("kv-clock", "s").await.expect("secret");
    let created = stored["versions"][0]["created"].as_i64().expect("created");
    assert_eq!(created, read);
    assert_eq!(stored["latest"], added["version"]);
    assert_eq!(status_of(&both), Some(400));
    assert_eq!(status_of(&nothing), Some(400));
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("body");
    assert_eq!(body["attributes"]["created"], created);
    assert!((rewound..=rewound + 5).contains(&thawed), "thawed at {thawed}");
    let clock = app.control.get("/clock").await.expect("clock");
    assert_eq!(clock["frozen"], false);
}
