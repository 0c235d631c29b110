//! `spawn_app()`: the emulator and keyflip's handler, both on port 0, wired exactly as in
//! production (settings from variables, the shared transport with KEYFLIP_CA_BUNDLE and
//! KEYFLIP_CONNECT_TO, the Key Vault challenge check on) except for two injections: a token
//! credential that takes tokens from the emulator's control API (the managed-identity path runs
//! in a child process, see `serve_process`), and a manual clock kept in step with the
//! emulator's frozen clock. Plus typed helpers to seed, invoke and inspect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use emulator::client::{ControlCredential, azure_http_client};
use emulator::{ControlClient, Emulator, EmulatorInfo, EmulatorOptions};
use keyflip::app::{self, AzureAccess};
use keyflip::clock::ManualClock;
use keyflip::config::Settings;
use keyflip::domain::key::ApiKey;
use keyflip::domain::{ArmResourceId, Slot};
use keyflip::lease::Leases;
use keyflip::lease::local::InProcessLeases;
use keyflip::providers::{KeyPair, KeyProvider, ProviderError, Providers, ResourceInfo, Verification};
use keyflip::server::{self, ServerLimits};
use serde_json::{Value, json};
use time::OffsetDateTime;

pub const SUBSCRIPTION: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";
pub const RESOURCE_GROUP: &str = "rg-api";
pub const VAULT: &str = "kv-api";
pub const DAY: i64 = 86_400;

/// An answer from keyflip's handler.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// `ReturnValue` of an envelope answer, or the body of a plain one.
    pub fn result(&self) -> &Value {
        self.body.get("ReturnValue").unwrap_or(&self.body)
    }

    pub fn outcome(&self) -> &str {
        self.result()["outcome"].as_str().unwrap_or_default()
    }

    /// A sweep's result for one secret, if it reported one.
    pub fn result_for(&self, vault: &str, secret: &str) -> Option<&Value> {
        self.result()["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["vault"] == vault && r["secret"] == secret)
    }

    /// A sweep's outcome for one secret (empty if it reported none).
    pub fn outcome_for(&self, vault: &str, secret: &str) -> String {
        self.result_for(vault, secret)
            .and_then(|r| r["outcome"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// The result's sentence for operators.
    pub fn message(&self) -> String {
        self.result()["message"].as_str().unwrap_or_default().to_string()
    }
}

/// One version of a secret as the vault holds it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub version: String,
    pub value: String,
    pub tags: Value,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub created: i64,
    pub content_type: Option<String>,
}

impl Stored {
    fn from(v: &Value) -> Self {
        Self {
            version: v["version"].as_str().unwrap_or_default().to_string(),
            value: v["value"].as_str().unwrap_or_default().to_string(),
            tags: v["tags"].clone(),
            exp: v["exp"].as_i64(),
            nbf: v["nbf"].as_i64(),
            created: v["created"].as_i64().unwrap_or_default(),
            content_type: v["content_type"].as_str().map(str::to_string),
        }
    }

    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags[name].as_str()
    }
}

/// A managed secret to seed.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    pub vault: String,
    pub name: String,
    pub account: String,
    /// `CredentialId`.
    pub active: String,
    /// The value; default: the active slot's current key.
    pub value: Option<String>,
    pub validity_days: String,
    pub created_days_ago: i64,
    /// `exp` from now, in days; `None` for no expiry.
    pub expires_in_days: Option<i64>,
    pub enabled: bool,
    /// Extra tags (or overrides, or an empty value to drop a rotation tag).
    pub tags: Vec<(String, String)>,
    /// The version id (32 hex); default: one the emulator makes up.
    pub version: Option<String>,
}

impl SecretSpec {
    /// A secret of `account` in [`VAULT`], key1 active, 10 days from expiry, created 50 days ago.
    pub fn new(name: &str, account: &str) -> Self {
        Self {
            vault: VAULT.to_string(),
            name: name.to_string(),
            account: account.to_string(),
            active: "key1".to_string(),
            value: None,
            validity_days: "60".to_string(),
            created_days_ago: 50,
            expires_in_days: Some(10),
            enabled: true,
            tags: Vec::new(),
            version: None,
        }
    }

    pub fn tag(mut self, name: &str, value: &str) -> Self {
        self.tags.push((name.to_string(), value.to_string()));
        self
    }
}

/// The emulator and keyflip, running.
#[derive(Debug)]
pub struct TestApp {
    pub address: SocketAddr,
    pub emulator: Emulator,
    pub info: EmulatorInfo,
    pub control: ControlClient,
    pub clock: Arc<ManualClock>,
    /// Plain HTTP to keyflip.
    pub http: reqwest::Client,
    /// HTTPS to the emulated Azure hosts.
    pub azure: reqwest::Client,
    pub dir: PathBuf,
    /// The app's rotation leases as another instance sees them: a test takes one to be
    /// "another rotation".
    pub leases: Arc<dyn Leases>,
    /// The Azurite behind the emulator's storage proxy, when the app leases in storage.
    pub azurite: Option<emulator::azurite::Azurite>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory for one test's files.
pub fn test_dir(label: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("keyflip-api-{label}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// The settings keyflip gets in tests, before `overrides`.
pub fn base_vars(info: &EmulatorInfo, ca_file: &std::path::Path) -> HashMap<String, String> {
    HashMap::from([
        ("KEYFLIP_VAULTS".to_string(), format!("{VAULT},kv-api-two")),
        ("KEYFLIP_LEASE".to_string(), "in-process".to_string()),
        (
            "KEYFLIP_ALLOWED_SCOPES".to_string(),
            format!("/subscriptions/{SUBSCRIPTION}"),
        ),
        ("KEYFLIP_CA_BUNDLE".to_string(), ca_file.display().to_string()),
        ("KEYFLIP_CONNECT_TO".to_string(), info.connect_to.clone()),
        ("KEYFLIP_EVENT_BUDGET_SECONDS".to_string(), "2".to_string()),
        ("KEYFLIP_MANUAL_BUDGET_SECONDS".to_string(), "2".to_string()),
        ("KEYFLIP_SWEEP_BUDGET_SECONDS".to_string(), "20".to_string()),
    ])
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the emulator (clock frozen) and keyflip with `overrides` on top of [`base_vars`].
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let limits = ServerLimits {
        drain: Duration::from_secs(5),
        ..ServerLimits::default()
    };
    spawn_app_with_limits(overrides, limits).await
}

/// [`spawn_app_with`], the server bounded by `limits`.
pub async fn spawn_app_with_limits(overrides: &[(&str, &str)], limits: ServerLimits) -> TestApp {
    spawn(overrides, limits, Box::new(|providers| providers), false).await
}

/// The app with the production lease: blobs in a real Azurite behind the emulator's storage
/// proxy (`AzureWebJobsStorage__accountName`, tokens from keyflip's credential).
pub async fn spawn_app_with_storage_lease(overrides: &[(&str, &str)]) -> TestApp {
    let limits = ServerLimits {
        drain: Duration::from_secs(5),
        ..ServerLimits::default()
    };
    spawn(overrides, limits, Box::new(|providers| providers), true).await
}

/// Starts the app with its providers wrapped by `wrap` (the production ones are passed in).
pub async fn spawn_app_with_providers(
    overrides: &[(&str, &str)],
    wrap: Box<dyn FnOnce(Providers) -> Providers>,
) -> TestApp {
    let limits = ServerLimits {
        drain: Duration::from_secs(5),
        ..ServerLimits::default()
    };
    spawn(overrides, limits, wrap, false).await
}

async fn spawn(
    overrides: &[(&str, &str)],
    limits: ServerLimits,
    wrap: Box<dyn FnOnce(Providers) -> Providers>,
    storage: bool,
) -> TestApp {
    let emulator = Emulator::start(EmulatorOptions::default())
        .await
        .expect("emulator starts");
    let azurite = storage.then(|| emulator.start_azurite(Vec::new()).expect("Azurite starts"));
    let info = emulator.info(None);
    let control = ControlClient::new(&info.control_url);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    control
        .post("/clock", &json!({"set": now, "freeze": true}))
        .await
        .expect("clock frozen");
    let clock = Arc::new(ManualClock::new(
        OffsetDateTime::from_unix_timestamp(now).expect("now"),
    ));

    let dir = test_dir("app");
    let ca_file = dir.join("emulator-ca.pem");
    std::fs::write(&ca_file, &info.ca_pem).expect("CA written");
    let mut vars = base_vars(&info, &ca_file);
    if storage {
        vars.insert("KEYFLIP_LEASE".into(), "storage".into());
        vars.insert(
            "AzureWebJobsStorage__accountName".into(),
            "devstoreaccount1".into(),
        );
    }
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::from_vars(&vars).expect("valid settings");
    let mut engine_settings = settings.engine_settings();
    engine_settings.verify_initial_backoff = Duration::from_millis(20);
    engine_settings.verify_max_backoff = Duration::from_millis(200);
    let access = AzureAccess::new(&settings).expect("transport");
    let credential: Arc<dyn TokenCredential> = Arc::new(ControlCredential(control.clone()));
    let providers = wrap(app::providers(&settings, &access, credential.clone()));
    let leases: Arc<dyn Leases> = match storage {
        true => app::leases(&settings, &access, credential.clone()).expect("blob leases"),
        false => Arc::new(InProcessLeases::default()),
    };
    // Another instance's view of the same leases (for storage: its own client).
    let other_instance: Arc<dyn Leases> = match storage {
        true => app::leases(&settings, &access, credential.clone()).expect("blob leases"),
        false => leases.clone(),
    };
    let engine = app::engine_with_providers(
        &settings,
        engine_settings,
        &access,
        credential,
        clock.clone(),
        providers,
        leases,
    )
    .expect("engine");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = app::state(&settings, engine);
    tokio::spawn(server::serve(
        listener,
        state,
        async move {
            let _ = stopped.await;
        },
        limits,
    ));
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let azure = azure_http_client(info.address, &info.ca_pem).expect("azure client");
    TestApp {
        address,
        emulator,
        info,
        control,
        clock,
        http,
        azure,
        dir,
        leases: other_instance,
        azurite,
        _stop: stop,
    }
}

impl TestApp {
    /// Breaks the lease of a secret in [`VAULT`] at once, as an operator with the SDK would.
    pub async fn break_lease(&self, secret: &str) {
        use azure_storage_blob::models::BlobClientBreakLeaseOptions;
        use azure_storage_blob::{BlobClient, BlobClientOptions};
        let url = format!(
            "https://devstoreaccount1.blob.core.windows.net/keyflip-locks/{VAULT}/{}",
            secret.to_ascii_lowercase()
        );
        let settings =
            Settings::from_vars(&base_vars(&self.info, &self.dir.join("emulator-ca.pem"))).expect("settings");
        let access = AzureAccess::new(&settings).expect("transport");
        let client = BlobClient::new(
            url.parse().expect("url"),
            Some(Arc::new(ControlCredential(self.control.clone()))),
            Some(BlobClientOptions {
                client_options: access.client_options.clone(),
                version: keyflip::lease::blob::BLOB_API_VERSION.into(),
            }),
        )
        .expect("blob client");
        client
            .break_lease(Some(BlobClientBreakLeaseOptions {
                break_period: Some(0),
                ..Default::default()
            }))
            .await
            .expect("lease broken");
    }
}

/// The production provider, except that a regeneration `panics_when` says so panics (with a key
/// value in its message, as a slicing bug over a key would): a crash at that exact point.
pub struct PanicsWhen<F> {
    pub real: Arc<dyn KeyProvider>,
    pub panics_when: F,
}

impl<F> std::fmt::Debug for PanicsWhen<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PanicsWhen")
    }
}

#[async_trait::async_trait]
impl<F> KeyProvider for PanicsWhen<F>
where
    F: Fn(&ArmResourceId, Slot) -> bool + Send + Sync,
{
    fn name(&self) -> &'static str {
        self.real.name()
    }
    fn slot_from_tag(&self, tag: &str) -> Option<Slot> {
        self.real.slot_from_tag(tag)
    }
    fn slot_tag(&self, slot: Slot) -> &'static str {
        self.real.slot_tag(slot)
    }
    async fn describe(&self, resource: &ArmResourceId) -> Result<ResourceInfo, ProviderError> {
        self.real.describe(resource).await
    }
    async fn list_keys(&self, resource: &ArmResourceId) -> Result<KeyPair, ProviderError> {
        self.real.list_keys(resource).await
    }
    async fn regenerate(&self, resource: &ArmResourceId, slot: Slot) -> Result<KeyPair, ProviderError> {
        if (self.panics_when)(resource, slot) {
            let keys = self.real.list_keys(resource).await?;
            panic!("index out of range in key {}", keys.first.expose());
        }
        self.real.regenerate(resource, slot).await
    }
    async fn verify(&self, info: &ResourceInfo, key: &ApiKey) -> Verification {
        self.real.verify(info, key).await
    }
}

/// The app, its provider wrapped in [`PanicsWhen`].
pub async fn spawn_app_panicking_when<F>(panics_when: F) -> TestApp
where
    F: Fn(&ArmResourceId, Slot) -> bool + Send + Sync + 'static,
{
    spawn_app_with_providers(
        &[],
        Box::new(move |providers| {
            let id = ArmResourceId::parse(&TestApp::provider_address("any")).unwrap();
            let real = providers.for_resource(&id).unwrap();
            Providers::new(Arc::new(PanicsWhen { real, panics_when }))
        }),
    )
    .await
}

/// The operations that change a key or a secret.
pub const WRITES: [&str; 3] = ["Accounts_RegenerateKey", "SetSecret", "UpdateSecret"];

impl TestApp {
    /// The operations among [`WRITES`] that reached the emulator so far.
    pub async fn writes(&self) -> Vec<String> {
        self.control
            .calls(None)
            .await
            .expect("calls")
            .into_iter()
            .filter(|call| WRITES.contains(&call.operation.as_str()))
            .map(|call| call.operation)
            .collect()
    }

    /// Moves both clocks (keyflip's and the emulator's) forward.
    pub async fn advance(&self, seconds: i64) {
        self.clock.advance(time::Duration::seconds(seconds));
        self.control.advance_clock(seconds).await.expect("clock moved");
    }

    pub async fn now(&self) -> i64 {
        self.control.now().await.expect("clock")
    }

    /// Seeds an account with keys `<name>-key1`/`<name>-key2` (and `next_keys` if given).
    pub async fn seed_account(&self, name: &str, kind: &str) {
        self.seed_account_with(json!({"name": name, "kind": kind})).await;
    }

    /// Seeds an account from a partial seed item (`name` and `kind` at least).
    pub async fn seed_account_with(&self, mut item: Value) {
        let name = item["name"].as_str().expect("name").to_string();
        item["subscription_id"] = json!(SUBSCRIPTION);
        item["resource_group"] = json!(RESOURCE_GROUP);
        if item.get("key1").is_none() {
            item["key1"] = json!(format!("{name}-key1"));
        }
        if item.get("key2").is_none() {
            item["key2"] = json!(format!("{name}-key2"));
        }
        self.control
            .seed(&json!({"accounts": [item]}))
            .await
            .expect("account seeded");
    }

    pub fn provider_address(account: &str) -> String {
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.CognitiveServices/accounts/{account}"
        )
    }

    /// The current value of an account's slot (`key1`/`key2`).
    pub async fn key(&self, account: &str, slot: &str) -> String {
        let state = self.control.account(account).await.expect("account");
        state[slot]["value"].as_str().expect("key").to_string()
    }

    /// Regenerations so far per slot.
    pub async fn regenerations(&self, account: &str) -> [u64; 2] {
        let state = self.control.account(account).await.expect("account");
        [
            state["regenerations"][0].as_u64().unwrap_or(0),
            state["regenerations"][1].as_u64().unwrap_or(0),
        ]
    }

    /// Seeds a managed secret as `spec` says.
    pub async fn seed_secret(&self, spec: SecretSpec) {
        let now = self.now().await;
        let value = match &spec.value {
            Some(v) => v.clone(),
            None => self.key(&spec.account, &spec.active.to_ascii_lowercase()).await,
        };
        let mut tags = serde_json::Map::new();
        tags.insert("CredentialId".into(), json!(spec.active));
        tags.insert(
            "ProviderAddress".into(),
            json!(Self::provider_address(&spec.account)),
        );
        tags.insert("ValidityPeriodDays".into(), json!(spec.validity_days));
        for (k, v) in &spec.tags {
            if v.is_empty() {
                tags.remove(k);
            } else {
                tags.insert(k.clone(), json!(v));
            }
        }
        let created = now - spec.created_days_ago * DAY;
        let mut version = json!({
            "value": value, "content_type": "text/plain", "tags": tags,
            "enabled": spec.enabled, "nbf": created, "created": created
        });
        if let Some(days) = spec.expires_in_days {
            version["exp"] = json!(now + days * DAY);
        }
        if let Some(id) = &spec.version {
            version["version"] = json!(id);
        }
        self.control
            .seed(&json!({"vaults": [{"name": spec.vault, "secrets": [{"name": spec.name, "versions": [version]}]}]}))
            .await
            .expect("secret seeded");
    }

    /// Every version of a secret, oldest first.
    pub async fn versions(&self, vault: &str, name: &str) -> Vec<Stored> {
        let secret = self.control.secret(vault, name).await.expect("secret");
        secret["versions"]
            .as_array()
            .map(|v| v.iter().map(Stored::from).collect())
            .unwrap_or_default()
    }

    /// The latest version of a secret in [`VAULT`].
    pub async fn latest(&self, name: &str) -> Stored {
        self.versions(VAULT, name).await.pop().expect("a version")
    }

    /// Whether `key` works on the account's data plane now.
    pub async fn key_works(&self, account: &str, key: &str) -> bool {
        let url = format!("https://{account}.openai.azure.com/openai/models?api-version=2024-10-21");
        let response = self
            .azure
            .get(url)
            .header("api-key", key)
            .send()
            .await
            .expect("data plane");
        response.status().is_success()
    }

    /// POSTs a body to keyflip as the Functions host would.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        let response = self
            .http
            .post(format!("http://{}{path}", self.address))
            .header("Content-Type", "application/json")
            .header(
                "X-Azure-Functions-InvocationId",
                "11111111-2222-4333-8444-555555555555",
            )
            .header("User-Agent", "Azure-Functions-Host/4.1037.0")
            .body(body)
            .send()
            .await
            .expect("keyflip answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    /// Delivers an event envelope (the derived fixture with this event's type, vault, secret
    /// and version) to `POST /KeyVaultEvents`.
    pub async fn deliver(&self, event_type: &str, vault: &str, secret: &str, version: &str) -> Answer {
        let envelope = event_envelope(event_type, vault, secret, version);
        self.post("/KeyVaultEvents", envelope.to_string()).await
    }

    /// Delivers `Microsoft.KeyVault.<kind>` for the latest version of a secret in [`VAULT`].
    pub async fn deliver_for_latest(&self, kind: &str, secret: &str) -> Answer {
        let version = self.latest(secret).await.version;
        self.deliver(&format!("Microsoft.KeyVault.{kind}"), VAULT, secret, &version)
            .await
    }

    /// Runs the timer sweep with the fixture envelope.
    pub async fn sweep(&self) -> Answer {
        self.post(
            "/RotationSweep",
            fixture("derived/timer-invocation.custom-handler.json").to_string(),
        )
        .await
    }

    /// `POST /api/rotate/{vault}/{secret}{query}` (forwarded HTTP, not an envelope).
    pub async fn manual(&self, vault: &str, secret: &str, query: &str) -> Answer {
        self.post(&format!("/api/rotate/{vault}/{secret}{query}"), "")
            .await
    }
}

/// A fixture from tests/data/events.
pub fn fixture(path: &str) -> Value {
    let full = format!("{}/tests/data/events/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&full).expect("fixture")).expect("fixture json")
}

/// The derived Event Grid invocation envelope for another event.
pub fn event_envelope(event_type: &str, vault: &str, secret: &str, version: &str) -> Value {
    let mut envelope = fixture("derived/eventgrid-invocation.custom-handler.json");
    let data = json!({
        "Id": format!("https://{vault}.vault.azure.net/secrets/{secret}/{version}"),
        "VaultName": vault, "ObjectType": "Secret", "ObjectName": secret, "Version": version,
        "NBF": "1559081980", "EXP": "1559082102"
    });
    let event = &mut envelope["Data"]["event"];
    event["eventType"] = json!(event_type);
    event["subject"] = json!(secret);
    event["topic"] = json!(format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/{vault}"
    ));
    event["data"] = data.clone();
    envelope["Metadata"]["data"] = data;
    envelope
}

/// `keyflip serve` as a child process with the environment the Functions host gives it
/// (managed identity through the emulator's endpoint, FUNCTIONS_CUSTOMHANDLER_PORT), its
/// stdout and stderr captured to a file.
#[derive(Debug)]
pub struct ServeProcess {
    pub port: u16,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProcess {
    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The environment of a keyflip child process pointed at `app`'s emulator.
pub fn child_env(app: &TestApp) -> Vec<(String, String)> {
    let ca_file = app.dir.join("child-ca.pem");
    std::fs::write(&ca_file, &app.info.ca_pem).expect("CA written");
    let mut env: Vec<(String, String)> = base_vars(&app.info, &ca_file).into_iter().collect();
    env.push(("IDENTITY_ENDPOINT".into(), app.info.identity_endpoint.clone()));
    env.push(("IDENTITY_HEADER".into(), app.info.identity_header.clone()));
    env.push(("RUST_LOG".into(), "debug".into()));
    env
}

fn keyflip_command(env: &[(String, String)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyflip"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// Starts `keyflip serve` against `app`'s emulator (its clock is the system clock, so seed
/// relative to the emulator's clock, which `spawn_app` froze at wall time) and waits until
/// `GET /` answers.
pub async fn serve_process(app: &TestApp, extra_env: &[(&str, &str)]) -> ServeProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("port")
        .port();
    let mut env = child_env(app);
    env.push(("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string()));
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let log = app.dir.join(format!("serve-{port}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = keyflip_command(&env)
        .arg("serve")
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("keyflip serve starts");
    let process = ServeProcess { port, child, log };
    for _ in 0..200 {
        if app.http.get(process.url("/")).send().await.is_ok() {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("keyflip serve did not become ready:\n{}", process.output());
}

/// Runs `keyflip <args>` to completion against `app`'s emulator; returns (exit code, stdout, stderr).
pub fn run_keyflip(app: &TestApp, args: &[&str], extra_env: &[(&str, &str)]) -> (i32, String, String) {
    let mut env = child_env(app);
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let output = keyflip_command(&env).args(args).output().expect("keyflip runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// POSTs `body` to the child process as the Functions host would; the raw answer.
pub async fn host_post(app: &TestApp, url: String, body: String) -> (u16, String) {
    let response = app
        .http
        .post(url)
        .header("Content-Type", "application/json")
        .header(
            "X-Azure-Functions-InvocationId",
            "22222222-3333-4444-8555-666666666666",
        )
        .header("User-Agent", "Azure-Functions-Host/4.1037.0")
        .body(body)
        .send()
        .await
        .expect("keyflip serve answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}
