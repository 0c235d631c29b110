//! keyflip as the Functions host runs it — `keyflip serve` as a child process — against the
//! local stand-in of Azure, next to a baseline written with the official Python SDK
//! (`benches/python/baseline.py`) against the same emulator in the same run. Prints one table
//! (markdown) and the floors behind it; asserts nothing.
//!
//! Run: `cargo bench --bench sweep [-- --quick] [-- --no-python] [-- --concurrency N]
//! [-- --only cold|single|sweep|due] [-- --keep] [-- --rotations N]` (`--keep` leaves the logs of
//! `keyflip serve`; `--rotations` sets how many one-at-a-time rotations are measured).
//!
//! Rows:
//! - **cold start**: process start to the first answered `GET /` (the host's readiness probe);
//!   Python: interpreter start to the script's `ready` line (imports done, clients built).
//!   Median of 20.
//! - **one rotation**, no injected latency: the manual route (`POST /api/rotate/…`), one at a
//!   time, after one warm-up rotation (TLS connections and tokens in place, the claims index
//!   built); wall median, CPU of the process per rotation, Azure calls and Key Vault writes
//!   per rotation (from the emulator's call log). Python: the script at concurrency 1 over the
//!   same secrets (its listing excluded).
//! - **sweep**: 10,000 managed secrets (1% due, each due one naming its own account) across 2
//!   vaults, and 1,000 due secrets in one vault; 20 ms injected on every call and Azure's
//!   documented Key Vault and Resource Manager limits enforced by the emulator. keyflip is
//!   driven as the host drives it: the timer's custom-handler envelope to `/RotationSweep`.
//!
//! The floor of a sweep is computed from the work each side actually did (counted in the call
//! log: calls that took a throttling token, i.e. not the 401 challenge and not 429s) and the
//! documented limits — Key Vault per vault, a bucket of 300 secret creations and one of 4,000
//! other transactions, each refilled over 10 s; Resource Manager per subscription, reads 250
//! refilled at 25/s and writes (listKeys and regenerateKey are POST actions) 200 at 10/s: a
//! bucket of `burst` refilled at `rate` needs `(n - burst) / rate` seconds for `n` calls — and
//! the sequential-paging bound (list pages of a vault × the injected latency, since each page's
//! link comes from the one before). The floor is the largest; each side is held to its own.
//!
//! keyflip runs with `KEYFLIP_LEASE=in-process` (no Azurite: the storage lease would add two
//! blob calls per rotation) and its default `KEYFLIP_CONCURRENCY` of 64; the Python baseline
//! uses a thread pool of the same size.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emulator::calls::{Call, Service};
use emulator::faults::LatencyRule;
use emulator::{ControlClient, Emulator, EmulatorInfo, EmulatorOptions};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

const SUBSCRIPTION: &str = "7d2c1b0a-9e8f-4a6b-8c5d-3e2f1a0b9c8d";
const LATENCY_MS: u64 = 20;
/// Secrets per `POST /control/seed` (the control API takes bodies up to 4 MB).
const SEED_BATCH: usize = 1000;
const DAY: i64 = 86_400;

/// Azure's documented limits (the emulator's defaults with `{"throttling": {}}`).
const KV_CREATES: (f64, f64) = (300.0, 30.0);
const KV_OTHERS: (f64, f64) = (4000.0, 400.0);
const ARM_READS: (f64, f64) = (250.0, 25.0);
const ARM_WRITES: (f64, f64) = (200.0, 10.0);

/// Targets of issue 9 item 6.
const TARGET_COLD_START_MS: f64 = 10.0;
const TARGET_CPU_PER_ROTATION_MS: f64 = 1.0;
const TARGET_FLOOR_RATIO: f64 = 1.2;
const TARGET_RSS_MB: f64 = 64.0;

#[derive(Debug, Clone)]
struct Sizes {
    cold_starts: usize,
    single_rotations: usize,
    sweep_secrets: usize,
    sweep_due_every: usize,
    due_sweep: usize,
    python: bool,
    concurrency: usize,
    /// `--only cold|single|sweep|due`: run that row alone.
    only: Option<String>,
    /// `--keep`: leave the logs of `keyflip serve` in the bench's directory and print it.
    keep: bool,
}

impl Sizes {
    fn from_args() -> Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let mut sizes = if quick {
            Sizes {
                cold_starts: 5,
                single_rotations: 10,
                sweep_secrets: 1_000,
                sweep_due_every: 100,
                due_sweep: 100,
                python: true,
                concurrency: 64,
                only: None,
                keep: false,
            }
        } else {
            Sizes {
                cold_starts: 20,
                single_rotations: 50,
                sweep_secrets: 10_000,
                sweep_due_every: 100,
                due_sweep: 1_000,
                python: true,
                concurrency: 64,
                only: None,
                keep: false,
            }
        };
        sizes.keep = args.iter().any(|a| a == "--keep");
        if let Some(i) = args.iter().position(|a| a == "--rotations") {
            sizes.single_rotations = args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .ok_or("--rotations takes a number (at least 1)")?;
        }
        if let Some(i) = args.iter().position(|a| a == "--only") {
            let row = args
                .get(i + 1)
                .filter(|v| ["cold", "single", "sweep", "due"].contains(&v.as_str()))
                .ok_or("--only takes one of cold, single, sweep, due")?;
            sizes.only = Some(row.clone());
        }
        sizes.python = !args.iter().any(|a| a == "--no-python");
        if let Some(i) = args.iter().position(|a| a == "--concurrency") {
            sizes.concurrency = args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .ok_or("--concurrency takes a number (1-64)")?;
        }
        Ok(sizes)
    }
}

/// One vault of a fleet: its name, how many secrets, and every how many one is due.
#[derive(Debug, Clone)]
struct VaultFleet {
    name: String,
    secrets: usize,
    due_every: usize,
}

impl VaultFleet {
    fn due(&self) -> usize {
        self.secrets.div_ceil(self.due_every)
    }
}

/// What one side did in one run, as it and the emulator saw it.
#[derive(Debug, Default)]
struct Run {
    wall: Duration,
    due: usize,
    rotated: usize,
    failed: usize,
    /// CPU of the process over the measured work.
    cpu: Duration,
    rss_kb: u64,
    calls: Vec<Call>,
    throttled: u64,
    /// Regenerations of a key a secret's latest version held (the emulator's safety check).
    active_regenerations: u64,
    /// Python: the time its listing took, before its rotations.
    listing: Option<Duration>,
    note: String,
}

struct Bench {
    _emulator: Emulator,
    info: EmulatorInfo,
    control: ControlClient,
    dir: PathBuf,
    ca: PathBuf,
    http: reqwest::Client,
    python: Option<PathBuf>,
    clock_ticks: f64,
    sizes: Sizes,
}

#[tokio::main]
async fn main() -> Result<()> {
    let sizes = Sizes::from_args()?;
    let emulator = Emulator::start(EmulatorOptions::default()).await?;
    let info = emulator.info(None);
    let dir = std::env::temp_dir().join(format!("keyflip-bench-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &info.ca_pem)?;
    let python = if sizes.python {
        Some(tokio::task::spawn_blocking(python_venv).await??)
    } else {
        None
    };
    let bench = Bench {
        control: ControlClient::new(&info.control_url),
        _emulator: emulator,
        info,
        dir,
        ca,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(3600))
            .build()?,
        python,
        clock_ticks: clock_ticks(),
        sizes,
    };
    let outcome = bench.run().await;
    if bench.sizes.keep {
        eprintln!("logs kept in {}", bench.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&bench.dir);
    }
    outcome
}

impl Bench {
    async fn run(&self) -> Result<()> {
        let s = &self.sizes;
        eprintln!("keyflip sweep bench: {s:?}");
        let mut table = Table::default();
        let mut checks = Vec::new();

        if self.wants("cold") {
            // Cold start.
            eprintln!("cold starts…");
            let kf_cold = self.keyflip_cold_starts().await?;
            let py_cold = match &self.python {
                Some(python) => Some(self.python_cold_starts(python).await?),
                None => None,
            };
            let kf_ms = ms(kf_cold);
            checks.push(check(
                format!("cold start {kf_ms:.1} ms ≤ {TARGET_COLD_START_MS} ms"),
                kf_ms <= TARGET_COLD_START_MS,
            ));
            table.row(vec![
                format!("cold start (median of {})", s.cold_starts),
                format!("{kf_ms:.1} ms"),
                dash(),
                dash(),
                py_cold.map_or_else(dash, |d| format!("{:.0} ms", ms(d))),
                dash(),
                dash(),
                py_cold.map_or_else(dash, |d| format!("{:.3}", kf_ms / ms(d))),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
            ]);
        }

        if self.wants("single") {
            // One rotation, no latency.
            let single = VaultFleet {
                name: "kv-one".into(),
                secrets: s.single_rotations + 1,
                due_every: 1,
            };
            eprintln!("one rotation at a time…");
            let (kf_single, kf_median) = self.keyflip_single(&single).await?;
            let py_single = match &self.python {
                Some(python) => Some(
                    self.python_run(python, std::slice::from_ref(&single), false, 1)
                        .await?,
                ),
                None => None,
            };
            let kf_cpu = cpu_per_rotation(&kf_single);
            checks.push(check(
                format!("CPU per rotation {kf_cpu:.2} ms ≤ {TARGET_CPU_PER_ROTATION_MS} ms"),
                kf_cpu <= TARGET_CPU_PER_ROTATION_MS,
            ));
            checks.push(check(
                format!(
                    "one rotation: {} of {} rotated, 0 failed",
                    kf_single.rotated, kf_single.due
                ),
                kf_single.failed == 0 && kf_single.rotated == kf_single.due,
            ));
            let py_median = py_single.as_ref().map(|r| parse_note_median(&r.note));
            table.row(vec![
                format!("one rotation, no latency (median of {})", s.single_rotations),
                format!("{:.1} ms", ms(kf_median)),
                dash(),
                dash(),
                py_median
                    .flatten()
                    .map_or_else(dash, |d| format!("{:.1} ms", ms(d))),
                dash(),
                dash(),
                py_median
                    .flatten()
                    .map_or_else(dash, |d| format!("{:.2}", ms(kf_median) / ms(d))),
                both(&kf_single, py_single.as_ref(), |r| {
                    format!("{:.1}", per_rotation(r, azure_calls(&r.calls)))
                }),
                both(&kf_single, py_single.as_ref(), |r| {
                    format!("{:.1}", per_rotation(r, vault_writes(&r.calls)))
                }),
                both(&kf_single, py_single.as_ref(), |r| r.throttled.to_string()),
                both(&kf_single, py_single.as_ref(), |r| {
                    format!("{:.0} MB", mb(r.rss_kb))
                }),
                both(&kf_single, py_single.as_ref(), |r| {
                    format!("{:.2} ms", cpu_per_rotation(r))
                }),
            ]);
        }

        // The sweeps.
        let half = s.sweep_secrets / 2;
        let fleets = [
            (
                "sweep",
                format!(
                    "sweep {} secrets ({}% due), 2 vaults",
                    s.sweep_secrets,
                    100 / s.sweep_due_every
                ),
                vec![
                    VaultFleet {
                        name: "kv-sweep-a".into(),
                        secrets: half,
                        due_every: s.sweep_due_every,
                    },
                    VaultFleet {
                        name: "kv-sweep-b".into(),
                        secrets: s.sweep_secrets - half,
                        due_every: s.sweep_due_every,
                    },
                ],
            ),
            (
                "due",
                format!("{} due rotations, 1 vault", s.due_sweep),
                vec![VaultFleet {
                    name: "kv-due".into(),
                    secrets: s.due_sweep,
                    due_every: 1,
                }],
            ),
        ];
        let mut floors = Vec::new();
        for (row, label, fleet) in &fleets {
            if !self.wants(row) {
                continue;
            }
            eprintln!("{label}: keyflip…");
            let kf = self.keyflip_sweep(fleet).await?;
            eprintln!("{label}: python…");
            let py = match &self.python {
                Some(python) => Some(self.python_run(python, fleet, true, s.concurrency).await?),
                None => None,
            };
            let kf_floor = Floor::of(&kf.calls);
            let py_floor = py.as_ref().map(|r| Floor::of(&r.calls));
            let kf_ratio = kf.wall.as_secs_f64() / kf_floor.max();
            checks.push(check(
                format!(
                    "{label}: keyflip {:.2} s = {kf_ratio:.2} × its floor ({}), {} of {} rotated, {} failed",
                    kf.wall.as_secs_f64(),
                    kf_floor.binding(),
                    kf.rotated,
                    kf.due,
                    kf.failed
                ),
                kf_ratio <= TARGET_FLOOR_RATIO && kf.failed == 0 && kf.rotated == kf.due,
            ));
            checks.push(check(
                format!(
                    "{label}: keyflip peak RSS {:.1} MB ≤ {TARGET_RSS_MB} MB",
                    mb(kf.rss_kb)
                ),
                mb(kf.rss_kb) <= TARGET_RSS_MB,
            ));
            checks.push(check(
                format!("{label}: no key a secret held was regenerated (keyflip)"),
                kf.active_regenerations == 0,
            ));
            if let (Some(py), Some(py_floor)) = (&py, &py_floor) {
                if kf_floor.binding() == "paging" {
                    checks.push(check(
                        format!(
                            "{label} (latency-bound): keyflip {:.2} s ahead of Python {:.2} s",
                            kf.wall.as_secs_f64(),
                            py.wall.as_secs_f64()
                        ),
                        kf.wall < py.wall,
                    ));
                } else {
                    checks.push(format!(
                        "info   {label} (throttling-bound, {}): Python {:.2} s = {:.2} × its own floor, {} of {} failed",
                        py_floor.binding(),
                        py.wall.as_secs_f64(),
                        py.wall.as_secs_f64() / py_floor.max(),
                        py.failed,
                        py.due
                    ));
                }
            }
            table.row(vec![
                format!("{label}, {LATENCY_MS} ms latency, limits on"),
                format!("{:.2} s", kf.wall.as_secs_f64()),
                format!("{:.2} s", kf_floor.max()),
                format!("{kf_ratio:.2}"),
                py.as_ref()
                    .map_or_else(dash, |r| format!("{:.2} s", r.wall.as_secs_f64())),
                py_floor
                    .as_ref()
                    .map_or_else(dash, |f| format!("{:.2} s", f.max())),
                match (&py, &py_floor) {
                    (Some(r), Some(f)) => format!("{:.2}", r.wall.as_secs_f64() / f.max()),
                    _ => dash(),
                },
                py.as_ref().map_or_else(dash, |r| {
                    format!("{:.2}", kf.wall.as_secs_f64() / r.wall.as_secs_f64())
                }),
                both(&kf, py.as_ref(), |r| {
                    format!("{:.1}", per_rotation(r, azure_calls(&r.calls)))
                }),
                both(&kf, py.as_ref(), |r| {
                    format!("{:.1}", per_rotation(r, vault_writes(&r.calls)))
                }),
                both(&kf, py.as_ref(), |r| r.throttled.to_string()),
                both(&kf, py.as_ref(), |r| format!("{:.0} MB", mb(r.rss_kb))),
                both(&kf, py.as_ref(), |r| format!("{:.2} ms", cpu_per_rotation(r))),
            ]);
            floors.push(format!("{label}\n  keyflip: {}", kf_floor.describe()));
            if let (Some(f), Some(r)) = (&py_floor, &py) {
                floors.push(format!(
                    "  python:  {} (its listing alone took {:.2} s)",
                    f.describe(),
                    r.listing.unwrap_or_default().as_secs_f64()
                ));
            }
            for r in std::iter::once(&kf).chain(py.as_ref()) {
                if !r.note.is_empty() && r.failed > 0 {
                    floors.push(format!("  failures: {}", r.note));
                }
            }
        }

        println!();
        println!(
            "keyflip {} vs Python (azure-keyvault-secrets, azure-identity, azure-mgmt-cognitiveservices), concurrency {}, {} CPUs",
            env!("CARGO_PKG_VERSION"),
            s.concurrency,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!();
        table.print();
        println!();
        println!(
            "floors (bucket of burst b refilled at r/s: (n - b) / r for n calls; paging: list pages of a vault × {LATENCY_MS} ms):"
        );
        for line in floors {
            println!("{line}");
        }
        println!();
        println!("targets:");
        for line in checks {
            println!("  {line}");
        }
        Ok(())
    }

    /// Whether `--only` leaves this row in.
    fn wants(&self, row: &str) -> bool {
        self.sizes.only.as_deref().is_none_or(|only| only == row)
    }

    /// The environment `keyflip serve` gets from the Functions host, pointed at the emulator.
    fn keyflip_env(&self, vaults: &[VaultFleet], port: u16) -> Vec<(String, String)> {
        let names: Vec<&str> = vaults.iter().map(|v| v.name.as_str()).collect();
        vec![
            ("KEYFLIP_VAULTS".into(), names.join(",")),
            ("KEYFLIP_LEASE".into(), "in-process".into()),
            (
                "KEYFLIP_ALLOWED_SCOPES".into(),
                format!("/subscriptions/{SUBSCRIPTION}"),
            ),
            ("KEYFLIP_CA_BUNDLE".into(), self.ca.display().to_string()),
            ("KEYFLIP_CONNECT_TO".into(), self.info.connect_to.clone()),
            ("KEYFLIP_SWEEP_BUDGET_SECONDS".into(), "3600".into()),
            ("KEYFLIP_CONCURRENCY".into(), self.sizes.concurrency.to_string()),
            ("IDENTITY_ENDPOINT".into(), self.info.identity_endpoint.clone()),
            ("IDENTITY_HEADER".into(), self.info.identity_header.clone()),
            ("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string()),
        ]
    }

    fn keyflip_command(&self, vaults: &[VaultFleet], port: u16, log: &Path) -> Result<Command> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyflip"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.keyflip_env(vaults, port))
            .stdin(Stdio::null());
        let file = std::fs::File::create(log)?;
        command.stdout(file.try_clone()?).stderr(file);
        Ok(command)
    }

    async fn keyflip_cold_starts(&self) -> Result<Duration> {
        let mut times = Vec::new();
        let vaults = [VaultFleet {
            name: "kv-one".into(),
            secrets: 0,
            due_every: 1,
        }];
        for i in 0..self.sizes.cold_starts {
            let port = free_port()?;
            let command = self.keyflip_command(&vaults, port, &self.dir.join(format!("cold-{i}.log")))?;
            times.push(tokio::task::spawn_blocking(move || cold_start(command, port)).await??);
        }
        Ok(median(&mut times))
    }

    async fn python_cold_starts(&self, python: &Path) -> Result<Duration> {
        let mut times = Vec::new();
        for _ in 0..self.sizes.cold_starts {
            let mut command = self.python_command(python, &["kv-one".to_string()], 1);
            command.arg("--ready-only");
            times.push(
                tokio::task::spawn_blocking(move || -> Result<Duration> {
                    let started = Instant::now();
                    let mut child = command.stdout(Stdio::piped()).spawn()?;
                    let stdout = child.stdout.take().ok_or("no stdout")?;
                    let mut line = String::new();
                    BufReader::new(stdout).read_line(&mut line)?;
                    let elapsed = started.elapsed();
                    let _ = child.wait();
                    if line.trim() != "ready" {
                        return Err(format!("python baseline printed {line:?} instead of ready").into());
                    }
                    Ok(elapsed)
                })
                .await??,
            );
        }
        Ok(median(&mut times))
    }

    /// A fresh emulator state: `fleet` seeded, the call log empty; with `loaded`, 20 ms on
    /// every call and Azure's limits enforced with full buckets.
    async fn prepare(&self, fleet: &[VaultFleet], loaded: bool) -> Result<()> {
        self.control.reset().await?;
        self.control.set_throttling(None).await?;
        let now = self.control.now().await?;
        for vault in fleet {
            let mut start = 0;
            loop {
                let end = (start + SEED_BATCH).min(vault.secrets);
                let mut secrets = Vec::new();
                let mut accounts = Vec::new();
                for i in start..end {
                    let name = format!("s{i:05}");
                    let account = format!("{}-a{i:05}", vault.name);
                    let address = format!(
                        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-bench/providers/Microsoft.CognitiveServices/accounts/{account}"
                    );
                    let due = i % vault.due_every == 0;
                    let key1 = format!("{account}-key1");
                    if due {
                        accounts.push(json!({"subscription_id": SUBSCRIPTION, "resource_group": "rg-bench",
                            "name": account, "kind": "OpenAI", "key1": key1, "key2": format!("{account}-key2")}));
                    }
                    let exp = if due { now + DAY } else { now + 60 * DAY };
                    secrets.push(
                        json!({"name": name, "versions": [{"value": key1, "created": now - 50 * DAY,
                        "exp": exp, "tags": {"CredentialId": "key1", "ProviderAddress": address,
                        "ValidityPeriodDays": "60"}}]}),
                    );
                }
                self.control
                    .seed(
                        &json!({"accounts": accounts, "vaults": [{"name": vault.name, "secrets": secrets}]}),
                    )
                    .await?;
                start = end;
                if start >= vault.secrets {
                    break;
                }
            }
        }
        if loaded {
            self.control.set_throttling(Some(&json!({}))).await?;
            self.control.delete("/throttling").await?;
            self.control
                .latency(&LatencyRule {
                    operation: "*".into(),
                    target: None,
                    delay_ms: LATENCY_MS,
                    count: None,
                })
                .await?;
        }
        self.control.clear_calls().await?;
        Ok(())
    }

    async fn start_serve(&self, fleet: &[VaultFleet], label: &str) -> Result<(Child, u16)> {
        let port = free_port()?;
        let mut child = self
            .keyflip_command(fleet, port, &self.dir.join(format!("serve-{label}.log")))?
            .spawn()?;
        let started = Instant::now();
        loop {
            if self
                .http
                .get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await
                .is_ok()
            {
                return Ok((child, port));
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                return Err(format!("keyflip serve did not become ready on port {port}").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn finish(&self, run: &mut Run) -> Result<()> {
        run.calls = serde_json::from_value(self.control.get("/calls").await?)?;
        run.throttled = self.control.throttling().await?["throttled"]
            .as_u64()
            .unwrap_or_default();
        run.active_regenerations = self.control.get("/active-regenerations").await?["count"]
            .as_u64()
            .unwrap_or_default();
        Ok(())
    }

    /// Rotations one at a time through the manual route, after one to warm up.
    async fn keyflip_single(&self, fleet: &VaultFleet) -> Result<(Run, Duration)> {
        let fleets = [fleet.clone()];
        self.prepare(&fleets, false).await?;
        let (mut child, port) = self.start_serve(&fleets, "single").await?;
        let rotate = |i: usize| {
            let url = format!("http://127.0.0.1:{port}/api/rotate/{}/s{i:05}", fleet.name);
            let http = self.http.clone();
            async move {
                let response = http.post(url).send().await?;
                let status = response.status().as_u16();
                let body: Value = response.json().await?;
                Ok::<_, Error>((status, body))
            }
        };
        rotate(0).await?;
        self.control.clear_calls().await?;
        let pid = child.id();
        let cpu_before = process_cpu(pid, self.clock_ticks)?;
        let mut run = Run {
            due: fleet.secrets - 1,
            ..Run::default()
        };
        let mut times = Vec::new();
        for i in 1..fleet.secrets {
            let started = Instant::now();
            let (status, body) = rotate(i).await?;
            times.push(started.elapsed());
            if status == 200 && body["outcome"] == "rotated" {
                run.rotated += 1;
            } else {
                run.failed += 1;
                run.note = format!("{status} {body}");
            }
        }
        run.cpu = process_cpu(pid, self.clock_ticks)? - cpu_before;
        run.rss_kb = peak_rss_kb(pid)?;
        run.wall = times.iter().sum();
        let _ = child.kill();
        let _ = child.wait();
        self.finish(&mut run).await?;
        Ok((run, median(&mut times)))
    }

    /// One sweep as the Functions host runs the timer trigger.
    async fn keyflip_sweep(&self, fleet: &[VaultFleet]) -> Result<Run> {
        self.prepare(fleet, true).await?;
        let (mut child, port) = self.start_serve(fleet, "sweep").await?;
        let pid = child.id();
        let envelope = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/events/derived/timer-invocation.custom-handler.json"
        ))?;
        let cpu_before = process_cpu(pid, self.clock_ticks)?;
        let started = Instant::now();
        let response = self
            .http
            .post(format!("http://127.0.0.1:{port}/RotationSweep"))
            .header("Content-Type", "application/json")
            .header(
                "X-Azure-Functions-InvocationId",
                "22222222-3333-4444-8555-666666666666",
            )
            .header("User-Agent", "Azure-Functions-Host/4.1037.0")
            .body(envelope)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        let wall = started.elapsed();
        let cpu = process_cpu(pid, self.clock_ticks)? - cpu_before;
        let rss_kb = peak_rss_kb(pid)?;
        let _ = child.kill();
        let _ = child.wait();
        let summary = &body["ReturnValue"]["summary"];
        let count = |field: &str| summary[field].as_u64().unwrap_or_default() as usize;
        let mut run = Run {
            wall,
            due: fleet.iter().map(VaultFleet::due).sum(),
            rotated: count("rotated"),
            failed: count("failed") + count("pending") + count("left_for_next_run"),
            cpu,
            rss_kb,
            note: if status == 200 {
                summary.to_string()
            } else {
                format!("{status} {body}")
            },
            ..Run::default()
        };
        if count("due") != run.due {
            run.note = format!("found {} due of {}: {}", count("due"), run.due, run.note);
            run.failed += run.due.saturating_sub(count("due"));
        }
        self.finish(&mut run).await?;
        Ok(run)
    }

    fn python_command(&self, python: &Path, vaults: &[String], concurrency: usize) -> Command {
        let mut command = Command::new(python);
        command
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/baseline.py"))
            .args(["--emulator", &self.info.address.to_string()])
            .args(["--vaults", &vaults.join(",")])
            .args(["--subscription", SUBSCRIPTION])
            .args(["--concurrency", &concurrency.to_string()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("REQUESTS_CA_BUNDLE", &self.ca)
            .env("SSL_CERT_FILE", &self.ca)
            .env("IDENTITY_ENDPOINT", &self.info.identity_endpoint)
            .env("IDENTITY_HEADER", &self.info.identity_header)
            .stdin(Stdio::null());
        command
    }

    /// The Python baseline over `fleet`; `loaded` as in [`Bench::prepare`].
    async fn python_run(
        &self,
        python: &Path,
        fleet: &[VaultFleet],
        loaded: bool,
        concurrency: usize,
    ) -> Result<Run> {
        self.prepare(fleet, loaded).await?;
        let names: Vec<String> = fleet.iter().map(|v| v.name.clone()).collect();
        let mut command = self.python_command(python, &names, concurrency);
        let stderr_log = self.dir.join("python.log");
        command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log)?);
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let report: Value = serde_json::from_str(last).map_err(|e| {
            format!(
                "python baseline: {e}; stdout {stdout:?}; stderr {}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            )
        })?;
        let secs = |field: &str| Duration::from_secs_f64(report[field].as_f64().unwrap_or_default());
        let count = |field: &str| report[field].as_u64().unwrap_or_default() as usize;
        let mut run = Run {
            wall: secs("work_s"),
            due: fleet.iter().map(VaultFleet::due).sum(),
            rotated: count("rotated"),
            failed: count("failed"),
            cpu: if loaded {
                secs("cpu_s")
            } else {
                secs("cpu_rotations_s")
            },
            listing: Some(secs("list_s")),
            rss_kb: report["maxrss_kb"].as_u64().unwrap_or_default(),
            note: format!(
                "median {} errors {}",
                report["rotation_median_s"].as_f64().unwrap_or_default(),
                report["errors"]
            ),
            ..Run::default()
        };
        if count("due") != run.due {
            run.failed += run.due.saturating_sub(count("due"));
        }
        self.finish(&mut run).await?;
        if !loaded {
            // The one-rotation row counts the rotations, not the listing before them.
            run.calls.retain(|c| c.operation != "GetSecrets");
        }
        Ok(run)
    }
}

/// The lower bounds of a run's wall time, in seconds.
#[derive(Debug, Default)]
struct Floor {
    /// (bound in seconds, what it counts) per kind, the worst vault or subscription.
    bounds: BTreeMap<&'static str, (f64, String)>,
}

impl Floor {
    fn of(calls: &[Call]) -> Self {
        let mut creates: HashMap<&str, f64> = HashMap::new();
        let mut others: HashMap<&str, f64> = HashMap::new();
        let mut pages: HashMap<&str, f64> = HashMap::new();
        let mut reads: HashMap<String, f64> = HashMap::new();
        let mut writes: HashMap<String, f64> = HashMap::new();
        for call in calls.iter().filter(|c| takes_token(c)) {
            match call.service {
                Service::Keyvault => {
                    if call.operation == "SetSecret" {
                        *creates.entry(&call.target).or_default() += 1.0;
                    } else {
                        *others.entry(&call.target).or_default() += 1.0;
                    }
                    if call.operation == "GetSecrets" {
                        *pages.entry(&call.target).or_default() += 1.0;
                    }
                }
                Service::Arm => {
                    let subscription = call
                        .path
                        .split('/')
                        .skip_while(|s| !s.eq_ignore_ascii_case("subscriptions"))
                        .nth(1)
                        .unwrap_or("tenant")
                        .to_string();
                    if call.method.eq_ignore_ascii_case("GET") {
                        *reads.entry(subscription).or_default() += 1.0;
                    } else {
                        *writes.entry(subscription).or_default() += 1.0;
                    }
                }
                _ => {}
            }
        }
        let mut floor = Floor::default();
        let mut bucket = |kind: &'static str, counts: Vec<(String, f64)>, (burst, rate): (f64, f64)| {
            let worst = counts
                .into_iter()
                .map(|(target, n)| ((n - burst).max(0.0) / rate, format!("{n:.0} on {target}")))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap_or((0.0, "none".into()));
            floor.bounds.insert(kind, worst);
        };
        let owned = |m: HashMap<&str, f64>| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        bucket("Key Vault creates", owned(creates), KV_CREATES);
        bucket("Key Vault others", owned(others), KV_OTHERS);
        bucket("ARM reads", reads.into_iter().collect(), ARM_READS);
        bucket("ARM writes", writes.into_iter().collect(), ARM_WRITES);
        let paging = pages
            .into_iter()
            .map(|(v, n)| (n * LATENCY_MS as f64 / 1000.0, format!("{n:.0} pages of {v}")))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((0.0, "none".into()));
        floor.bounds.insert("paging", paging);
        floor
    }

    fn max(&self) -> f64 {
        self.bounds
            .values()
            .map(|b| b.0)
            .fold(0.0, f64::max)
            .max(f64::EPSILON)
    }

    fn binding(&self) -> &'static str {
        self.bounds
            .iter()
            .max_by(|a, b| a.1.0.total_cmp(&b.1.0))
            .map_or("none", |(k, _)| *k)
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .bounds
            .iter()
            .map(|(kind, (s, what))| format!("{kind} {s:.2} s ({what})"))
            .collect();
        format!(
            "{} → floor {:.2} s ({})",
            parts.join(", "),
            self.max(),
            self.binding()
        )
    }
}

/// A call that took a throttling token: not the 401 challenge, not a 429.
fn takes_token(call: &Call) -> bool {
    call.status != 401 && call.status != 429
}

/// Key Vault, Resource Manager and data-plane calls that did work (no list pages, challenges,
/// 429s or token requests).
fn azure_calls(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| {
            matches!(c.service, Service::Keyvault | Service::Arm | Service::Dataplane)
                && takes_token(c)
                && c.operation != "GetSecrets"
        })
        .count()
}

/// Key Vault writes that took effect: new versions and tag updates.
fn vault_writes(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| {
            matches!(c.service, Service::Keyvault)
                && (c.operation == "SetSecret" || c.operation == "UpdateSecret")
                && (200..300).contains(&c.status)
        })
        .count()
}

fn per_rotation(run: &Run, n: usize) -> f64 {
    n as f64 / run.rotated.max(1) as f64
}

fn cpu_per_rotation(run: &Run) -> f64 {
    ms(run.cpu) / run.rotated.max(1) as f64
}

fn parse_note_median(note: &str) -> Option<Duration> {
    note.strip_prefix("median ")?
        .split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
}

/// Spawns `command` and times it to its first answered `GET /`, polled every 100 µs.
fn cold_start(mut command: Command, port: u16) -> Result<Duration> {
    let started = Instant::now();
    let mut child = command.spawn()?;
    let answer = loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head)?;
            break (started.elapsed(), head);
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err("keyflip serve did not listen within 10 s".into());
        }
        std::thread::sleep(Duration::from_micros(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    if !answer.1.starts_with(b"HTTP/1.1 200") {
        return Err(format!("GET / answered {:?}", String::from_utf8_lossy(&answer.1)).into());
    }
    Ok(answer.0)
}

/// utime + stime of a live process.
fn process_cpu(pid: u32, clock_ticks: f64) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).ok_or("no utime")?.parse::<f64>()?
        + fields.get(12).ok_or("no stime")?.parse::<f64>()?;
    Ok(Duration::from_secs_f64(ticks / clock_ticks))
}

/// VmHWM of a live process, in kB.
fn peak_rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmHWM")?.parse()?)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The baseline's virtual environment under the target directory, made (and the pinned
/// requirements installed) when missing or when the requirements changed.
fn python_venv() -> Result<PathBuf> {
    let requirements = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/python/requirements.txt"
    ));
    let target = Path::new(env!("CARGO_BIN_EXE_keyflip"))
        .parent()
        .and_then(Path::parent)
        .ok_or("no target directory")?;
    let venv = target.join("bench-python-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(requirements)?;
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    eprintln!("installing the Python baseline into {}", venv.display());
    let made = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()?;
    if !made.success() {
        return Err(
            "python3 -m venv failed (Debian: apt-get install python3-venv), or run with --no-python".into(),
        );
    }
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(requirements)
        .status()?;
    if !installed.success() {
        return Err("pip install -r benches/python/requirements.txt failed".into());
    }
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn dash() -> String {
    "–".into()
}

fn both(kf: &Run, py: Option<&Run>, f: impl Fn(&Run) -> String) -> String {
    match py {
        Some(py) => format!("{} · {}", f(kf), f(py)),
        None => f(kf),
    }
}

fn check(line: String, met: bool) -> String {
    format!("{} {line}", if met { "met   " } else { "MISSED" })
}

#[derive(Debug, Default)]
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    const HEADER: [&'static str; 13] = [
        "row",
        "keyflip",
        "floor",
        "keyflip/floor",
        "python",
        "python floor",
        "python/floor",
        "keyflip/python",
        "calls/rotation (kf · py)",
        "KV writes/rotation (kf · py)",
        "429s (kf · py)",
        "peak RSS (kf · py)",
        "CPU/rotation (kf · py)",
    ];

    fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn print(&self) {
        let header: Vec<String> = Self::HEADER.iter().map(|h| h.to_string()).collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                std::iter::once(&header)
                    .chain(&self.rows)
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |r: &Vec<String>| {
            let cells: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let c = r.get(i).map_or("", String::as_str);
                    format!("{c}{}", " ".repeat(w - c.chars().count()))
                })
                .collect();
            println!("| {} |", cells.join(" | "));
        };
        line(&header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for r in &self.rows {
            line(r);
        }
    }
}
