//! The chaos soak (issue 7, item 7): DESIGN.md §3's invariants I1–I7 hold across instances,
//! proved with counts.
//!
//! One in-process emulator with a real Azurite behind its storage proxy; six Azure OpenAI
//! accounts, each published by one managed secret (some keys take seconds to start working,
//! some regenerations are long-running); three `keyflip serve` processes, each under its own
//! user-assigned identity, sharing the blob lease (`KEYFLIP_LEASE=storage`). Concurrently:
//! - a consumer per secret reads the latest version (through the control API, so injected
//!   Key Vault faults do not hit it), caches it for less than the dwell and calls the data
//!   plane with it;
//! - a driver fires events (duplicated, and redelivered late for old versions), timer sweeps,
//!   manual rotations and CLI rotations at random secrets and instances (never force or
//!   revoke);
//! - a chaos monkey arms faults and latency on Resource Manager, Key Vault and Blob Storage,
//!   and SIGKILLs a serve process now and then, often right after it regenerated, restarting
//!   another (a new identity and port) in its place.
//!
//! Then the chaos stops, every secret is driven to a clean state, and the verdicts are counted
//! from what the emulator saw: rotations published, consumer calls and rejections, active
//! regenerations (I1/I2), writes outside the writer's lease window (I3), pending rotations
//! resumed with a second regeneration (I5), and a working key in every latest version (I4/I5).
//! Duplicate and late events (I6) run throughout; I7 (no key in logs) is checked on every
//! process's output at the end.
//!
//! It runs on real time, the one kind of test allowed to: Azurite's leases do. Seeded:
//! `KEYFLIP_SOAK_SEED` replays a run's choices (the seed is printed), `KEYFLIP_SOAK_SECONDS`
//! (default 50) sets how long the chaos lasts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // the soak uses the fixtures and constants only
#[path = "api/helpers.rs"]
mod helpers;

#[path = "soak/analysis.rs"]
mod analysis;
#[path = "soak/fleet.rs"]
mod fleet;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emulator::faults::{FaultRule, LatencyRule, Phase};
use emulator::{ControlClient, Emulator, EmulatorOptions};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use analysis::{MarkSeen, SecretRef};
use fleet::Fleet;
use helpers::{RESOURCE_GROUP, SUBSCRIPTION, event_envelope, fixture};

const VAULT: &str = "kv-soak";
const SERVES: usize = 3;
/// `KEYFLIP_DWELL_HOURS`: 7.2 s.
const DWELL_HOURS: &str = "0.002";
/// `KEYFLIP_PENDING_TIMEOUT_HOURS`: 36 s.
const PENDING_TIMEOUT_HOURS: &str = "0.01";
const PENDING_TIMEOUT_SECONDS: i64 = 36;
/// How long a consumer uses a value before reading the secret again (less than the dwell).
const CONSUMER_CACHE: Duration = Duration::from_millis(2500);
const DEFAULT_SECONDS: u64 = 50;
const SETTLE_BOUND: Duration = Duration::from_secs(60);

/// xorshift64*: small, seeded, replayable.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// An independent stream for one actor.
    fn fork(&self, stream: u64) -> Self {
        let mut r = Self::new(self.0 ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// Counts every actor adds to.
#[derive(Debug, Default)]
struct Counts {
    consumer_calls: AtomicU64,
    consumer_rejected: AtomicU64,
    events: AtomicU64,
    duplicates: AtomicU64,
    late_events: AtomicU64,
    sweeps: AtomicU64,
    manual: AtomicU64,
    cli: AtomicU64,
    kills: AtomicU64,
    kills_after_regenerate: AtomicU64,
    faults: AtomicU64,
    unanswered: AtomicU64,
    outcomes: Mutex<BTreeMap<String, u64>>,
    rejections: Mutex<Vec<String>>,
}

impl Counts {
    fn outcome(&self, trigger: &str, outcome: &str) {
        *self
            .outcomes
            .lock()
            .unwrap()
            .entry(format!("{trigger}:{outcome}"))
            .or_default() += 1;
    }

    fn rotated(&self) -> u64 {
        self.outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.ends_with(":rotated"))
            .map(|(_, v)| *v)
            .sum()
    }
}

/// What every actor shares.
#[derive(Debug)]
struct Soak {
    control: ControlClient,
    azure: reqwest::Client,
    http: reqwest::Client,
    fleet: Fleet,
    secrets: Vec<SecretRef>,
    counts: Counts,
    /// Set when the chaos (driver, monkeys) ends.
    chaos_over: AtomicBool,
    /// Set when everything (consumers, watcher) ends.
    over: AtomicBool,
    /// Versions an event was delivered for, per secret (for late redeliveries).
    delivered: Mutex<Vec<(String, String)>>,
    marks: Mutex<Vec<MarkSeen>>,
}

/// A secret's latest version, read through the control API.
#[derive(Debug, Clone)]
struct Latest {
    version: String,
    value: String,
    tags: Value,
}

impl Soak {
    fn stopped(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    fn chaos_stopped(&self) -> bool {
        self.chaos_over.load(Ordering::Relaxed)
    }

    async fn latest(&self, secret: &str) -> Option<Latest> {
        let body = self.control.secret(VAULT, secret).await.ok()?;
        let id = body["latest"].as_str()?.to_string();
        let version = body["versions"]
            .as_array()?
            .iter()
            .find(|v| v["version"] == id.as_str())?
            .clone();
        Some(Latest {
            version: id,
            value: version["value"].as_str()?.to_string(),
            tags: version["tags"].clone(),
        })
    }

    /// The status of a data-plane call with `key` on `account`.
    async fn data_plane(&self, account: &str, key: &str) -> Option<u16> {
        let url = format!("https://{account}.openai.azure.com/openai/models?api-version=2024-10-21");
        let response = self.azure.get(url).header("api-key", key).send().await.ok()?;
        Some(response.status().as_u16())
    }

    async fn calls_so_far(&self) -> Option<u64> {
        self.control.get("").await.ok()?["calls"].as_u64()
    }

    /// POSTs to a serve process as the Functions host would; `None` if it did not answer.
    async fn post(&self, port: u16, path: &str, body: String) -> Option<(u16, Value)> {
        let response = self
            .http
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("Content-Type", "application/json")
            .header(
                "X-Azure-Functions-InvocationId",
                "11111111-2222-4333-8444-555555555555",
            )
            .header("User-Agent", "Azure-Functions-Host/4.1037.0")
            .body(body)
            .send()
            .await;
        let Ok(response) = response else {
            self.counts.unanswered.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Some((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }
}

/// `ReturnValue` of an envelope answer (sometimes a JSON string), else the body.
fn result_of(body: &Value) -> Value {
    match body.get("ReturnValue") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => body.clone(),
    }
}

fn outcome_of(result: &Value) -> String {
    result["outcome"].as_str().unwrap_or("none").to_string()
}

// ---------------------------------------------------------------------------------------------
// Actors.

/// Reads the latest version, caches it for [`CONSUMER_CACHE`], calls the data plane with it.
async fn consumer(soak: Arc<Soak>, index: usize, mut rng: Rng) {
    let secret = &soak.secrets[index];
    let mut cached: Option<(Latest, Instant)> = None;
    while !soak.stopped() {
        if cached
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= CONSUMER_CACHE)
        {
            cached = soak.latest(&secret.name).await.map(|l| (l, Instant::now()));
        }
        if let Some((latest, _)) = &cached
            && let Some(status) = soak.data_plane(&secret.account, &latest.value).await
        {
            soak.counts.consumer_calls.fetch_add(1, Ordering::Relaxed);
            if status == 401 || status == 403 {
                soak.counts.consumer_rejected.fetch_add(1, Ordering::Relaxed);
                soak.counts.rejections.lock().unwrap().push(format!(
                    "{} version {} ({}) answered {status} at {}",
                    secret.name,
                    latest.version,
                    latest.tags["CredentialId"],
                    OffsetDateTime::now_utc().unix_timestamp()
                ));
            }
        }
        tokio::time::sleep(rng.millis(150, 350)).await;
    }
}

/// Polls every secret's latest version and records the pending marks it carries, with the
/// call log's length before and after the read.
async fn watcher(soak: Arc<Soak>) {
    while !soak.stopped() {
        for secret in &soak.secrets {
            let (Some(n0), Some(latest), Some(n1)) = (
                soak.calls_so_far().await,
                soak.latest(&secret.name).await,
                soak.calls_so_far().await,
            ) else {
                continue;
            };
            let (Some(slot), Some(since)) = (
                latest.tags["PendingSlot"].as_str(),
                latest.tags["PendingSince"].as_str(),
            ) else {
                continue;
            };
            let Ok(since) = OffsetDateTime::parse(since, &Rfc3339) else {
                continue;
            };
            soak.marks.lock().unwrap().push(MarkSeen {
                secret: secret.name.to_ascii_lowercase(),
                n0,
                n1,
                version: latest.version,
                slot: slot.to_string(),
                since: since.unix_timestamp(),
            });
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// One driver action against a random secret and live instance.
async fn drive_once(soak: Arc<Soak>, mut rng: Rng) {
    let secret = soak.secrets[rng.below(soak.secrets.len() as u64) as usize]
        .name
        .clone();
    let Some(target) = soak.fleet.pick(rng.next()) else {
        return;
    };
    let roll = rng.below(100);
    if roll < 40 {
        // An event for the latest version; 30% delivered twice (to two instances at once).
        let Some(latest) = soak.latest(&secret).await else {
            return;
        };
        let kind = match rng.chance(85) {
            true => "Microsoft.KeyVault.SecretNearExpiry",
            false => "Microsoft.KeyVault.SecretExpired",
        };
        let body = event_envelope(kind, VAULT, &secret, &latest.version).to_string();
        soak.delivered
            .lock()
            .unwrap()
            .push((secret.clone(), latest.version.clone()));
        let twice = rng.chance(30);
        let second = soak.fleet.pick(rng.next());
        let first = soak.post(target.port, "/KeyVaultEvents", body.clone());
        soak.counts.events.fetch_add(1, Ordering::Relaxed);
        let answers = match (twice, second) {
            (true, Some(other)) => {
                soak.counts.duplicates.fetch_add(1, Ordering::Relaxed);
                let (a, b) = tokio::join!(first, soak.post(other.port, "/KeyVaultEvents", body));
                vec![a, b]
            }
            _ => vec![first.await],
        };
        for (_, body) in answers.into_iter().flatten() {
            soak.counts.outcome("event", &outcome_of(&result_of(&body)));
        }
    } else if roll < 50 {
        // A late redelivery for a version that may be old by now.
        let old = {
            let delivered = soak.delivered.lock().unwrap();
            match delivered.len() {
                0 => None,
                n => Some(delivered[rng.below(n as u64) as usize].clone()),
            }
        };
        let Some((secret, version)) = old else {
            return;
        };
        let body =
            event_envelope("Microsoft.KeyVault.SecretNearExpiry", VAULT, &secret, &version).to_string();
        soak.counts.late_events.fetch_add(1, Ordering::Relaxed);
        if let Some((_, body)) = soak.post(target.port, "/KeyVaultEvents", body).await {
            soak.counts.outcome("late-event", &outcome_of(&result_of(&body)));
        }
    } else if roll < 65 {
        let body = fixture("derived/timer-invocation.custom-handler.json").to_string();
        soak.counts.sweeps.fetch_add(1, Ordering::Relaxed);
        if let Some((_, body)) = soak.post(target.port, "/RotationSweep", body).await {
            let result = result_of(&body);
            for r in result["results"].as_array().into_iter().flatten() {
                soak.counts.outcome("sweep", &outcome_of(r));
            }
        }
    } else if roll < 90 {
        soak.counts.manual.fetch_add(1, Ordering::Relaxed);
        let path = format!("/api/rotate/{VAULT}/{secret}");
        if let Some((_, body)) = soak.post(target.port, &path, String::new()).await {
            soak.counts.outcome("manual", &outcome_of(&result_of(&body)));
        }
    } else {
        soak.counts.cli.fetch_add(1, Ordering::Relaxed);
        let (code, stdout) = soak.fleet.run_cli(VAULT, &secret, Duration::from_secs(60)).await;
        let result = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .unwrap_or(Value::Null);
        let outcome = match code {
            None => "killed-at-bound".to_string(),
            Some(_) => outcome_of(&result),
        };
        soak.counts.outcome("cli", &outcome);
    }
}

/// Fires actions until stopped, at most eight in flight; waits for the last ones.
async fn driver(soak: Arc<Soak>, mut rng: Rng) {
    let permits = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    let mut stream = 0u64;
    while !soak.chaos_stopped() {
        tokio::time::sleep(rng.millis(100, 400)).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        stream += 1;
        let action_rng = rng.fork(stream);
        let soak = soak.clone();
        tasks.spawn(async move {
            drive_once(soak, action_rng).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Arms a random fault or latency rule now and then.
async fn fault_monkey(soak: Arc<Soak>, mut rng: Rng) {
    while !soak.chaos_stopped() {
        tokio::time::sleep(rng.millis(300, 1500)).await;
        let count = 1 + rng.below(3) as u32;
        let roll = rng.below(100);
        let result = if roll < 20 {
            let operation = ["Blob_AcquireLease", "Blob_RenewLease"][rng.below(2) as usize];
            soak.control
                .latency(&LatencyRule {
                    operation: operation.into(),
                    target: None,
                    delay_ms: 200 + rng.below(3800),
                    count: Some(count),
                })
                .await
        } else {
            let (operation, status, phase) = match roll {
                20..=44 => {
                    let status = [500, 503, 429][rng.below(3) as usize];
                    // Resource Manager throttles before a request reaches the resource provider:
                    // a 429 means "not done", so it never strikes after the operation ran
                    // (keyflip relies on that; a 5xx may strike either side).
                    let phase = match status {
                        429 => Phase::Before,
                        _ => [Phase::Before, Phase::After][rng.below(2) as usize],
                    };
                    (
                        ["Accounts_RegenerateKey", "Accounts_ListKeys"][rng.below(2) as usize],
                        status,
                        phase,
                    )
                }
                45..=74 => (
                    ["GetSecret", "SetSecret", "UpdateSecret"][rng.below(3) as usize],
                    [429, 503][rng.below(2) as usize],
                    // Before only: a write's effect is then known from its status alone.
                    Phase::Before,
                ),
                _ => (
                    ["Blob_AcquireLease", "Blob_RenewLease"][rng.below(2) as usize],
                    [500, 503][rng.below(2) as usize],
                    [Phase::Before, Phase::After][rng.below(2) as usize],
                ),
            };
            let retry_after_seconds = rng.chance(50).then_some(1);
            soak.control
                .fault(&FaultRule {
                    phase,
                    retry_after_seconds,
                    ..FaultRule::new(operation, status, count)
                })
                .await
        };
        if result.is_ok() {
            soak.counts.faults.fetch_add(1, Ordering::Relaxed);
        }
        if rng.chance(10) {
            let _ = soak.control.clear_faults().await;
        }
    }
}

/// SIGKILLs a serve process right after the call log shows it regenerating (sometimes), or at
/// random (rarely), at most one kill every five seconds, and restarts one in its place.
async fn kill_monkey(soak: Arc<Soak>, mut rng: Rng) {
    let mut seen = 0u64;
    let mut last_kill = Instant::now();
    while !soak.chaos_stopped() {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let regenerations = soak
            .control
            .calls(Some("Accounts_RegenerateKey"))
            .await
            .unwrap_or_default();
        let fresh: Vec<_> = regenerations.iter().filter(|c| c.seq > seen).collect();
        seen = regenerations.iter().map(|c| c.seq).max().unwrap_or(seen);
        if last_kill.elapsed() < Duration::from_secs(5) {
            continue;
        }
        let victim = fresh
            .iter()
            .filter_map(|c| c.caller.as_deref())
            .find_map(|oid| soak.fleet.by_oid(oid));
        let (victim, after_regenerate) = match victim {
            Some(v) if rng.chance(40) => (Some(v), true),
            _ if rng.chance(2) => (soak.fleet.pick(rng.next()), false),
            _ => (None, false),
        };
        let Some(victim) = victim else {
            continue;
        };
        if soak.fleet.kill_and_restart(victim.slot).await.is_some() {
            soak.counts.kills.fetch_add(1, Ordering::Relaxed);
            if after_regenerate {
                soak.counts.kills_after_regenerate.fetch_add(1, Ordering::Relaxed);
            }
            last_kill = Instant::now();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Set-up, settling, verdicts.

fn seed_document(now: i64) -> (Value, Vec<SecretRef>) {
    // (key activation delay, long-running completion) per account.
    let shapes: [(i64, Option<i64>); 6] = [
        (0, None),
        (3, None),
        (2, None),
        (0, Some(2)),
        (2, Some(3)),
        (0, Some(1)),
    ];
    let mut accounts = Vec::new();
    let mut secrets = Vec::new();
    let mut refs = Vec::new();
    for (i, (delay, long_running)) in shapes.iter().enumerate() {
        let account = format!("soakaoai{i}");
        let name = format!("Soak-Key-{i}");
        let key1 = format!("{account}-initial-key1");
        let mut item = json!({
            "subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
            "name": account, "kind": "OpenAI",
            "key1": key1, "key2": format!("{account}-initial-key2"),
            "key_activation_delay_seconds": delay,
        });
        if let Some(seconds) = long_running {
            item["long_running"] = json!({"complete_after_seconds": seconds, "retry_after_seconds": 1});
        }
        accounts.push(item);
        let created = now - 86_400;
        secrets.push(json!({"name": name, "versions": [{
            "value": key1, "content_type": "text/plain", "enabled": true,
            "nbf": created, "created": created, "exp": now + 10 * 86_400,
            "tags": {
                "CredentialId": "key1",
                "ProviderAddress": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.CognitiveServices/accounts/{account}"),
                "ValidityPeriodDays": "60",
            },
        }]}));
        refs.push(SecretRef { name, account });
    }
    (
        json!({"vaults": [{"name": VAULT, "secrets": secrets}], "accounts": accounts}),
        refs,
    )
}

/// Drives every secret until no latest version carries a pending mark (bounded): manual
/// rotations resume pending marks; an expired one is cleared.
async fn settle(soak: &Soak) -> Vec<String> {
    let started = Instant::now();
    let mut clean_rounds = 0;
    loop {
        let mut pending = Vec::new();
        for secret in &soak.secrets {
            let Some(latest) = soak.latest(&secret.name).await else {
                pending.push(format!("{}: unreadable", secret.name));
                continue;
            };
            if latest.tags.get("PendingSlot").is_some() {
                pending.push(format!("{} {}: {}", secret.name, latest.version, latest.tags));
                if let Some(target) = soak.fleet.pick(0) {
                    let path = format!("/api/rotate/{VAULT}/{}", secret.name);
                    if let Some((_, body)) = soak.post(target.port, &path, String::new()).await {
                        soak.counts.outcome("settle", &outcome_of(&result_of(&body)));
                    }
                }
            }
        }
        clean_rounds = if pending.is_empty() { clean_rounds + 1 } else { 0 };
        if clean_rounds >= 2 || started.elapsed() > SETTLE_BOUND {
            return pending;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn soak_seed() -> u64 {
    match std::env::var("KEYFLIP_SOAK_SEED") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().expect("KEYFLIP_SOAK_SEED is a u64"),
        _ => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

fn soak_seconds() -> u64 {
    match std::env::var("KEYFLIP_SOAK_SECONDS") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().expect("KEYFLIP_SOAK_SECONDS is a whole number"),
        _ => DEFAULT_SECONDS,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_soak_keeps_every_invariant_across_instances() {
    let seed = soak_seed();
    let seconds = soak_seconds();
    say(&format!(
        "soak: seed {seed}, {seconds} s of chaos (replay with KEYFLIP_SOAK_SEED={seed})"
    ));
    let rng = Rng::new(seed);

    // The emulator at wall time, Azurite behind it, the accounts and secrets.
    let emulator = Emulator::start(EmulatorOptions::default())
        .await
        .expect("emulator starts");
    let azurite = tokio::task::block_in_place(|| emulator.start_azurite(vec![])).expect("Azurite starts");
    let info = emulator.info(None);
    let control = ControlClient::new(&info.control_url);
    let now = control.now().await.expect("clock");
    let (document, secrets) = seed_document(now);
    control.seed(&document).await.expect("seeded");

    let dir = std::env::temp_dir().join(format!("keyflip-soak-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("soak dir");
    let ca_file = dir.join("emulator-ca.pem");
    std::fs::write(&ca_file, &info.ca_pem).expect("CA written");
    let env: Vec<(String, String)> = [
        ("KEYFLIP_VAULTS", VAULT.to_string()),
        ("KEYFLIP_ALLOWED_SCOPES", format!("/subscriptions/{SUBSCRIPTION}")),
        ("KEYFLIP_CA_BUNDLE", ca_file.display().to_string()),
        ("KEYFLIP_CONNECT_TO", info.connect_to.clone()),
        ("IDENTITY_ENDPOINT", info.identity_endpoint.clone()),
        ("IDENTITY_HEADER", info.identity_header.clone()),
        ("KEYFLIP_LEASE", "storage".to_string()),
        ("AzureWebJobsStorage__accountName", "devstoreaccount1".to_string()),
        ("KEYFLIP_DWELL_HOURS", DWELL_HOURS.to_string()),
        ("KEYFLIP_PENDING_TIMEOUT_HOURS", PENDING_TIMEOUT_HOURS.to_string()),
        ("KEYFLIP_EVENT_BUDGET_SECONDS", "10".to_string()),
        ("KEYFLIP_MANUAL_BUDGET_SECONDS", "15".to_string()),
        ("KEYFLIP_SWEEP_BUDGET_SECONDS", "30".to_string()),
        ("RUST_LOG", "info".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let fleet = Fleet::new(env, dir.clone(), control.clone(), seed);
    fleet.start(SERVES).await;

    let soak = Arc::new(Soak {
        control: control.clone(),
        azure: emulator::client::azure_http_client(info.address, &info.ca_pem).expect("azure client"),
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(45))
            .build()
            .expect("http"),
        fleet,
        secrets: secrets.clone(),
        counts: Counts::default(),
        chaos_over: AtomicBool::new(false),
        over: AtomicBool::new(false),
        delivered: Mutex::new(Vec::new()),
        marks: Mutex::new(Vec::new()),
    });

    // The chaos.
    let started = Instant::now();
    let mut background = Vec::new();
    for i in 0..secrets.len() {
        background.push(tokio::spawn(consumer(soak.clone(), i, rng.fork(100 + i as u64))));
    }
    background.push(tokio::spawn(watcher(soak.clone())));
    let chaos = vec![
        tokio::spawn(driver(soak.clone(), rng.fork(1))),
        tokio::spawn(fault_monkey(soak.clone(), rng.fork(2))),
        tokio::spawn(kill_monkey(soak.clone(), rng.fork(3))),
    ];
    tokio::time::sleep(Duration::from_secs(seconds)).await;

    // Stop the chaos; let the driver's last actions end; clear every fault; settle.
    soak.chaos_over.store(true, Ordering::Relaxed);
    for task in chaos {
        task.await.expect("actor");
    }
    control.clear_faults().await.expect("faults cleared");
    let still_pending = settle(&soak).await;
    soak.over.store(true, Ordering::Relaxed);
    for task in background {
        task.await.expect("actor");
    }
    let logs_tail = soak.fleet.logs_tail(30).await;
    soak.fleet.shutdown().await;
    let elapsed = started.elapsed();

    // The verdicts.
    let calls = control.calls(None).await.expect("calls");
    let active = control
        .active_regenerations()
        .await
        .expect("active regenerations");
    let label = |oid: Option<&str>| soak.fleet.label(oid);
    let marks = soak.marks.lock().unwrap().clone();
    let overlaps = analysis::overlaps(&calls, VAULT, &secrets, &label);
    let resumed =
        analysis::resumed_with_regeneration(&calls, VAULT, &secrets, &marks, PENDING_TIMEOUT_SECONDS, &label);
    let mut published = 0u64;
    let mut broken_latest = Vec::new();
    let mut leaked = Vec::new();
    let mut every_key = Vec::new();
    for secret in &secrets {
        let body = control.secret(VAULT, &secret.name).await.expect("secret");
        let versions = body["versions"].as_array().cloned().unwrap_or_default();
        published += versions.len().saturating_sub(1) as u64;
        every_key.extend(
            versions
                .iter()
                .filter_map(|v| v["value"].as_str().map(str::to_string)),
        );
        let latest = soak.latest(&secret.name).await.expect("latest");
        let status = soak.data_plane(&secret.account, &latest.value).await;
        if status != Some(200) {
            broken_latest.push(format!(
                "{} {}: data plane {status:?}",
                secret.name, latest.version
            ));
        }
    }
    for entry in std::fs::read_dir(&dir).expect("soak dir").flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for key in &every_key {
            if text.contains(key.as_str()) {
                leaked.push(format!("{} holds a key value", entry.path().display()));
                break;
            }
        }
    }
    let regenerate_calls = calls
        .iter()
        .filter(|c| c.operation == "Accounts_RegenerateKey" && c.caller.is_some())
        .count();
    let c = &soak.counts;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    say(&format!(
        "soak: seed={seed} elapsed={:.0}s published={published} rotated_outcomes={} regenerate_calls={regenerate_calls} consumer_calls={} consumer_rejected={} active_regenerations={} writes_checked={} lease_windows={} overlaps={} resumed_with_regenerate={} latest_not_working={} pending_left={} key_leaks={} | events={} duplicates={} late_events={} sweeps={} manual={} cli={} kills={} kills_after_regenerate={} faults={} unanswered={} marks_seen={} calls={}",
        elapsed.as_secs_f64(),
        c.rotated(),
        get(&c.consumer_calls),
        get(&c.consumer_rejected),
        active.count,
        overlaps.writes,
        overlaps.windows,
        overlaps.found.len(),
        resumed.len(),
        broken_latest.len(),
        still_pending.len(),
        leaked.len(),
        get(&c.events),
        get(&c.duplicates),
        get(&c.late_events),
        get(&c.sweeps),
        get(&c.manual),
        get(&c.cli),
        get(&c.kills),
        get(&c.kills_after_regenerate),
        get(&c.faults),
        get(&c.unanswered),
        marks.len(),
        calls.len(),
    ));
    say(&format!("soak: outcomes {:?}", c.outcomes.lock().unwrap()));

    let mut problems = Vec::new();
    let mut report = |what: &str, items: &[String]| {
        if !items.is_empty() {
            problems.push(format!("{what} ({}):\n  {}", items.len(), items.join("\n  ")));
        }
    };
    let rejections = c.rejections.lock().unwrap().clone();
    let active_list: Vec<String> = active
        .regenerations
        .iter()
        .map(|r| format!("{r:?} by {}", label(Some(&r.caller))))
        .collect();
    report("consumer calls rejected", &rejections);
    report("active regenerations", &active_list);
    report("writes outside the writer's lease", &overlaps.found);
    report("pending rotations resumed with a second regenerate", &resumed);
    report("latest versions whose key does not work", &broken_latest);
    report("pending marks left after settling", &still_pending);
    report("key values in process output", &leaked);
    if published == 0 {
        problems.push("no rotation published a new version".to_string());
    }
    if get(&c.consumer_calls) == 0 {
        problems.push("the consumers made no call".to_string());
    }
    drop(azurite);
    if !problems.is_empty() {
        panic!(
            "soak (seed {seed}, replay with KEYFLIP_SOAK_SEED={seed}) found:\n{}\n\nlast lines of the serve processes:\n{logs_tail}\nlogs in {}",
            problems.join("\n"),
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prints a line straight to stderr, past the test harness's capture, so that `cargo test`
/// (and CI) shows the soak's counts even when it passes.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}
