//! How fast keyflip rotates, measured against the local stand-in of Azure with the production
//! wiring (the shared TLS transport, the Key Vault SDK client, the ARM pipeline, the engine).
//! Prints numbers; asserts nothing. Run: `cargo bench --bench rotation [-- <secrets>]`.
//!
//! What it measures: one sweep over N due secrets (each of its own AI services account) at
//! KEYFLIP_CONCURRENCY 1, 8 and 32 — wall time, rotations per second, and the spread of one
//! rotation's duration. The emulator answers at once, so this is keyflip's own cost plus TLS
//! and HTTP on loopback, not Azure's latency.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emulator::client::ControlCredential;
use emulator::{ControlClient, Emulator, EmulatorOptions};
use keyflip::app::{self, AzureAccess};
use keyflip::clock::SystemClock;
use keyflip::config::Settings;
use serde_json::json;

const SUBSCRIPTION: &str = "7d2c1b0a-9e8f-4a6b-8c5d-3e2f1a0b9c8d";
const VAULT: &str = "kv-bench";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secrets: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    println!("keyflip rotation bench: {secrets} due secrets per sweep, against the in-process emulator");
    println!(
        "{:>11} {:>10} {:>14} {:>8} {:>8} {:>8}",
        "concurrency", "sweep ms", "rotations/s", "p50 ms", "p95 ms", "max ms"
    );
    for concurrency in [1usize, 8, 32] {
        let (elapsed, durations, rotated) = sweep_once(secrets, concurrency).await?;
        let per_second = rotated as f64 / elapsed.as_secs_f64();
        println!(
            "{concurrency:>11} {:>10} {per_second:>14.1} {:>8} {:>8} {:>8}",
            elapsed.as_millis(),
            percentile(&durations, 0.50),
            percentile(&durations, 0.95),
            durations.last().copied().unwrap_or_default()
        );
        if rotated != secrets {
            println!("  warning: only {rotated} of {secrets} rotated");
        }
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn sweep_once(
    secrets: usize,
    concurrency: usize,
) -> Result<(Duration, Vec<u64>, usize), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(EmulatorOptions::default()).await?;
    let info = emulator.info(None);
    let control = ControlClient::new(&info.control_url);
    let now = control.now().await?;
    let mut accounts = Vec::new();
    let mut versions = Vec::new();
    for i in 0..secrets {
        let name = format!("bench-{i}");
        let key1 = format!("{name}-key1");
        accounts.push(
            json!({"subscription_id": SUBSCRIPTION, "resource_group": "rg", "name": name,
                             "kind": "OpenAI", "key1": key1, "key2": format!("{name}-key2")}),
        );
        let address = format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/{name}"
        );
        versions.push(json!({"name": name, "versions": [{"value": key1, "created": now - 50 * 86_400, "exp": now + 86_400,
            "tags": {"CredentialId": "key1", "ProviderAddress": address, "ValidityPeriodDays": "60"}}]}));
    }
    control
        .seed(&json!({"accounts": accounts, "vaults": [{"name": VAULT, "secrets": versions}]}))
        .await?;

    let dir = std::env::temp_dir().join(format!("keyflip-bench-{}-{concurrency}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &info.ca_pem)?;
    let vars = HashMap::from([
        ("KEYFLIP_VAULTS".to_string(), VAULT.to_string()),
        ("KEYFLIP_LEASE".to_string(), "in-process".to_string()),
        (
            "KEYFLIP_ALLOWED_SCOPES".to_string(),
            format!("/subscriptions/{SUBSCRIPTION}"),
        ),
        ("KEYFLIP_CA_BUNDLE".to_string(), ca.display().to_string()),
        ("KEYFLIP_CONNECT_TO".to_string(), info.connect_to.clone()),
        ("KEYFLIP_CONCURRENCY".to_string(), concurrency.to_string()),
        ("KEYFLIP_SWEEP_BUDGET_SECONDS".to_string(), "3600".to_string()),
    ]);
    let settings = Settings::from_vars(&vars)?;
    let access = AzureAccess::new(&settings)?;
    let credential = Arc::new(ControlCredential(control.clone()));
    let engine = app::engine(
        &settings,
        settings.engine_settings(),
        &access,
        credential,
        Arc::new(SystemClock),
    )?;

    let started = Instant::now();
    let report = engine.sweep(settings.sweep_budget).await;
    let elapsed = started.elapsed();
    let mut durations: Vec<u64> = report.results.iter().map(|r| r.duration_ms).collect();
    durations.sort_unstable();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((elapsed, durations, report.summary.rotated))
}
