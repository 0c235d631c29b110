//! `keyflip demo`: the whole product, offline. Starts the local stand-in of Azure in-process,
//! seeds an Azure OpenAI account and a managed secret 10 days from expiry (its version created
//! 50 days ago), starts `keyflip serve` as a child process with the environment the Functions
//! host would give it (pointing at the stand-in), and drives it as the host would: a
//! SecretNearExpiry event, the same event again, a timer sweep, a manual dry run.
//!
//! Only built with the `demo` feature (default); a deployment build leaves the emulator out.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use emulator::client::azure_http_client;
use emulator::{ControlClient, Emulator, EmulatorInfo, EmulatorOptions};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const VAULT: &str = "kv-keyflip-demo";
const SECRET: &str = "aoai-key";
const ACCOUNT: &str = "keyflip-demo-aoai";
const SUBSCRIPTION: &str = "6b1c9f3e-2d4a-4e7b-9c1d-0f5e8a7b3c21";
const RESOURCE_GROUP: &str = "rg-keyflip-demo";
const DAY: i64 = 86_400;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the emulator did not start: {0}")]
    Emulator(String),
    #[error("{doing} failed: {cause}")]
    Step { doing: String, cause: String },
    #[error("keyflip serve did not become ready within 30 s; its log ({log}):\n{tail}")]
    NotReady { log: String, tail: String },
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: String, got: String },
}

fn step(doing: &str) -> impl FnOnce(String) -> DemoError + '_ {
    move |cause| DemoError::Step {
        doing: doing.to_string(),
        cause,
    }
}

fn check(ok: bool, expected: &str, got: impl Into<String>) -> Result<(), DemoError> {
    if ok {
        Ok(())
    } else {
        Err(DemoError::Unexpected {
            expected: expected.to_string(),
            got: got.into(),
        })
    }
}

/// The secret as the vault holds it.
struct Published {
    version: String,
    active: String,
    expires: i64,
    value: String,
}

/// Runs the demo; prints a short account (or one JSON object with `--json`).
pub async fn run(as_json: bool) -> Result<(), DemoError> {
    let emulator = Emulator::start(EmulatorOptions::default())
        .await
        .map_err(|e| DemoError::Emulator(e.to_string()))?;
    let info = emulator.info(None);
    let control = ControlClient::new(&info.control_url);
    let workdir = std::env::temp_dir().join(format!("keyflip-demo-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).map_err(|e| step("creating a work directory")(e.to_string()))?;
    let outcome = drive(&info, &control, &workdir, as_json).await;
    let _ = std::fs::remove_dir_all(&workdir);
    outcome
}

async fn drive(
    info: &EmulatorInfo,
    control: &ControlClient,
    workdir: &Path,
    as_json: bool,
) -> Result<(), DemoError> {
    let say = |line: String| {
        if !as_json {
            println!("{line}");
        }
    };
    seed(control).await?;
    let http = plain_client()?;
    let azure = azure_http_client(info.address, &info.ca_pem)
        .map_err(|e| step("building the Azure client")(e.to_string()))?;
    let (mut child, port, log) = start_serve(info, workdir).await?;
    let base = format!("http://127.0.0.1:{port}");
    say("keyflip demo: everything runs locally, against the Azure stand-in (no Azure account needed)".into());
    say(format!(
        "  stand-in on {}; `keyflip serve` on 127.0.0.1:{port}, started as the Functions host starts it",
        info.address
    ));
    say("  lease: in-process (KEYFLIP_LEASE=in-process): exact here, where a single process rotates; a deployment leases each secret in its storage account".into());

    let result = async {
        let before = published(control).await?;
        say(format!(
            "  seeded: Azure OpenAI account {ACCOUNT}; secret {VAULT}/{SECRET}: {} active, version {} (created 50 days ago), expires {}",
            before.active,
            short(&before.version),
            date(before.expires)
        ));

        // 1. The event Key Vault sends 30 days before expiry (here: 10).
        let event = near_expiry_event(&before.version);
        let first = invoke(&http, &base, "KeyVaultEvents", &event).await?;
        let rotated = &first["ReturnValue"];
        check(rotated["outcome"] == "rotated", "the event to rotate the key", rotated.to_string())?;
        let after = published(control).await?;
        let old_works = key_works(&azure, &before.value).await?;
        let new_works = key_works(&azure, &after.value).await?;
        check(old_works && new_works, "the old and the new key to work", format!("old {old_works}, new {new_works}"))?;
        say(format!("\n1. SecretNearExpiry event       -> {}", outcome_line(rotated)));
        say(format!("   before: {} active, version {}, expires {}", before.active, short(&before.version), date(before.expires)));
        say(format!("   after:  {} active, version {}, expires {}", after.active, short(&after.version), date(after.expires)));
        say(format!(
            "   the old key ({}) still works: {}; the new key ({}) works: {}",
            before.active,
            yes(old_works),
            after.active,
            yes(new_works)
        ));

        // 2. Event Grid delivers at least once: the same event again.
        let second = invoke(&http, &base, "KeyVaultEvents", &event).await?;
        let stale = &second["ReturnValue"];
        check(stale["outcome"] == "skipped:stale", "the redelivered event to be stale", stale.to_string())?;
        check(published(control).await?.version == after.version, "no new version", "a new version")?;
        say(format!("2. same event delivered again   -> {} (nothing changed)", stale["outcome"].as_str().unwrap_or_default()));

        // 3. The timer sweep: nothing is due.
        let timer = json!({
            "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
            "Metadata": {"sys": {"MethodName": "RotationSweep", "UtcNow": "", "RandGuid": ""}}
        });
        let sweep = invoke(&http, &base, "RotationSweep", &timer).await?;
        let summary = &sweep["ReturnValue"]["summary"];
        check(summary["rotated"] == 0, "the sweep to rotate nothing", summary.to_string())?;
        say(format!(
            "3. timer sweep                  -> scanned {}, due {}, rotated {}",
            summary["scanned"], summary["due"], summary["rotated"]
        ));

        // 4. A manual dry run (forced past the dwell, so it plans a rotation).
        let url = format!("{base}/api/rotate/{VAULT}/{SECRET}?dryRun=true&force=true");
        let response = http.post(&url).send().await.map_err(|e| step("the manual dry run")(e.to_string()))?;
        let status = response.status().as_u16();
        let planned: Value = response.json().await.map_err(|e| step("reading the dry run's answer")(e.to_string()))?;
        check(status == 200 && planned["outcome"] == "planned", "a planned dry run", format!("{status} {planned}"))?;
        check(published(control).await?.version == after.version, "the dry run to change nothing", "a new version")?;
        say(format!("4. manual dry run (forced)     -> {} (nothing changed)", outcome_line(&planned)));

        if as_json {
            let object = json!({
                "results": [rotated, stale, sweep["ReturnValue"], planned],
                "before": {"active": before.active, "version": before.version, "expires": before.expires},
                "after": {"active": after.active, "version": after.version, "expires": after.expires,
                          "old_key_works": old_works, "new_key_works": new_works},
            });
            println!("{object}");
        }
        Ok(())
    }
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    if result.is_err() {
        eprintln!("keyflip serve's log is at {}", log.display());
        eprintln!("{}", tail(&log));
    }
    result
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

fn short(version: &str) -> String {
    format!("{}…", &version[..version.len().min(8)])
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| unix.to_string())
}

fn outcome_line(result: &Value) -> String {
    let text = |k: &str| result[k].as_str().unwrap_or("-").to_string();
    let verified = if result["verified"] == true {
        ", verified"
    } else {
        ""
    };
    format!("{} {} -> {}{verified}", text("outcome"), text("from"), text("to"))
}

fn plain_client() -> Result<reqwest::Client, DemoError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| step("building an HTTP client")(e.to_string()))
}

async fn seed(control: &ControlClient) -> Result<(), DemoError> {
    let now = control
        .now()
        .await
        .map_err(|e| step("reading the stand-in's clock")(e.to_string()))?;
    let provider = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.CognitiveServices/accounts/{ACCOUNT}"
    );
    let account = json!({"subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP, "name": ACCOUNT, "kind": "OpenAI"});
    control
        .seed(&json!({"accounts": [account]}))
        .await
        .map_err(|e| step("seeding the account")(e.to_string()))?;
    let state = control
        .account(ACCOUNT)
        .await
        .map_err(|e| step("reading the account")(e.to_string()))?;
    let key1 = state["key1"]["value"].as_str().unwrap_or_default().to_string();
    let created = now - 50 * DAY;
    let secret = json!({"name": SECRET, "versions": [{
        "value": key1, "content_type": "text/plain",
        "tags": {"CredentialId": "key1", "ProviderAddress": provider, "ValidityPeriodDays": "60", "owner": "team-ai"},
        "nbf": created, "exp": now + 10 * DAY, "created": created
    }]});
    control
        .seed(&json!({"vaults": [{"name": VAULT, "secrets": [secret]}]}))
        .await
        .map_err(|e| step("seeding the secret")(e.to_string()))?;
    Ok(())
}

async fn published(control: &ControlClient) -> Result<Published, DemoError> {
    let secret = control
        .secret(VAULT, SECRET)
        .await
        .map_err(|e| step("reading the secret")(e.to_string()))?;
    let latest = secret["versions"]
        .as_array()
        .and_then(|v| v.last())
        .cloned()
        .unwrap_or_default();
    Ok(Published {
        version: latest["version"].as_str().unwrap_or_default().to_string(),
        active: latest["tags"]["CredentialId"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        expires: latest["exp"].as_i64().unwrap_or_default(),
        value: latest["value"].as_str().unwrap_or_default().to_string(),
    })
}

async fn key_works(azure: &reqwest::Client, key: &str) -> Result<bool, DemoError> {
    let url = format!("https://{ACCOUNT}.openai.azure.com/openai/models?api-version=2024-10-21");
    let response = azure
        .get(url)
        .header("api-key", key)
        .send()
        .await
        .map_err(|e| step("calling the account's data plane")(e.to_string()))?;
    Ok(response.status().is_success())
}

fn near_expiry_event(version: &str) -> Value {
    let data = json!({
        "Id": format!("https://{VAULT}.vault.azure.net/secrets/{SECRET}/{version}"),
        "VaultName": VAULT, "ObjectType": "Secret", "ObjectName": SECRET, "Version": version,
        "NBF": null, "EXP": null
    });
    json!({
        "Data": {"event": {
            "id": "8d0b6a7e-1c3f-4d8e-9a57-3f2b1c0d9e8f",
            "topic": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/{VAULT}"),
            "subject": SECRET,
            "eventType": "Microsoft.KeyVault.SecretNearExpiry",
            "eventTime": "2026-11-24T00:00:00.0000000Z",
            "data": data.clone(), "dataVersion": "1", "metadataVersion": "1"
        }},
        "Metadata": {"data": data, "sys": {"MethodName": "KeyVaultEvents", "UtcNow": "", "RandGuid": ""}}
    })
}

/// POSTs an invocation envelope as the Functions host does.
async fn invoke(
    http: &reqwest::Client,
    base: &str,
    function: &str,
    envelope: &Value,
) -> Result<Value, DemoError> {
    let response = http
        .post(format!("{base}/{function}"))
        .header(
            "X-Azure-Functions-InvocationId",
            "00000000-0000-4000-8000-000000000001",
        )
        .header("User-Agent", "Azure-Functions-Host/4 (keyflip demo)")
        .json(envelope)
        .send()
        .await
        .map_err(|e| step(&format!("invoking {function}"))(e.to_string()))?;
    let status = response.status().as_u16();
    let body: Value = response
        .json()
        .await
        .map_err(|e| step(&format!("reading {function}'s answer"))(e.to_string()))?;
    check(
        (200..300).contains(&status),
        &format!("{function} to succeed"),
        format!("{status} {body}"),
    )?;
    Ok(body)
}

/// Starts `keyflip serve` with the environment the Functions host would give it.
async fn start_serve(info: &EmulatorInfo, workdir: &Path) -> Result<(Child, u16, PathBuf), DemoError> {
    let ca_file = workdir.join("emulator-ca.pem");
    std::fs::write(&ca_file, &info.ca_pem).map_err(|e| step("writing the stand-in's CA")(e.to_string()))?;
    let port = free_port()?;
    let log = workdir.join("keyflip-serve.log");
    let log_file = std::fs::File::create(&log).map_err(|e| step("creating the log file")(e.to_string()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| step("creating the log file")(e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| step("finding the keyflip binary")(e.to_string()))?;
    let child = Command::new(exe)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "keyflip-demo")
        .env("IDENTITY_ENDPOINT", &info.identity_endpoint)
        .env("IDENTITY_HEADER", &info.identity_header)
        .env("KEYFLIP_VAULTS", VAULT)
        // One process rotates, so the in-process lease is exact; a deployment uses storage.
        .env("KEYFLIP_LEASE", "in-process")
        .env("KEYFLIP_ALLOWED_SCOPES", format!("/subscriptions/{SUBSCRIPTION}"))
        .env("KEYFLIP_CA_BUNDLE", &ca_file)
        .env("KEYFLIP_CONNECT_TO", &info.connect_to)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| step("starting keyflip serve")(e.to_string()))?;
    let http = plain_client()?;
    for _ in 0..300 {
        if http.get(format!("http://127.0.0.1:{port}/")).send().await.is_ok() {
            return Ok((child, port, log));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(DemoError::NotReady {
        log: log.display().to_string(),
        tail: tail(&log),
    })
}

fn free_port() -> Result<u16, DemoError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| step("finding a free port")(e.to_string()))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| step("finding a free port")(e.to_string()))
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
