//! The keyflip processes of the soak: `keyflip serve` instances, which the chaos monkey
//! SIGKILLs and restarts, and `keyflip rotate` CLI runs. Every incarnation runs under a
//! user-assigned identity of its own (added through the emulator's control API), so the caller
//! `oid` of every call in the emulator's log names the one process that made it.
//!
//! Every child is spawned with `kill_on_drop`, and [`Fleet::shutdown`] kills and reaps the
//! serve processes, so a soak that panics leaves no orphan behind.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use emulator::ControlClient;
use serde_json::json;
use tokio::process::{Child, Command};

/// One process incarnation's identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub label: String,
    pub client_id: String,
    pub oid: String,
}

/// A running `keyflip serve`.
#[derive(Debug)]
pub struct Serve {
    pub identity: Identity,
    pub port: u16,
    pub log: PathBuf,
    child: Child,
}

/// What the driver needs to reach a live serve process.
#[derive(Debug, Clone)]
pub struct Target {
    pub slot: usize,
    pub port: u16,
    pub oid: String,
}

/// The serve slots (each `None` while its process is being restarted) and every identity used.
#[derive(Debug)]
pub struct Fleet {
    env: Vec<(String, String)>,
    dir: PathBuf,
    control: ControlClient,
    http: reqwest::Client,
    seed: u64,
    next_id: AtomicU64,
    slots: tokio::sync::Mutex<Vec<Option<Serve>>>,
    live: Mutex<Vec<Option<Target>>>,
    /// Every identity ever added: oid → label.
    labels: Mutex<BTreeMap<String, String>>,
    incarnations: AtomicU64,
}

impl Fleet {
    pub fn new(env: Vec<(String, String)>, dir: PathBuf, control: ControlClient, seed: u64) -> Self {
        Self {
            env,
            dir,
            control,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("http"),
            seed,
            next_id: AtomicU64::new(1),
            slots: tokio::sync::Mutex::new(Vec::new()),
            live: Mutex::new(Vec::new()),
            labels: Mutex::new(BTreeMap::new()),
            incarnations: AtomicU64::new(0),
        }
    }

    /// A fresh user-assigned identity, added to the emulator.
    pub async fn identity(&self, label: &str) -> Identity {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tag = (self.seed ^ 0x5eed_5eed) & 0xffff_ffff;
        let identity = Identity {
            label: label.to_string(),
            client_id: format!("{tag:08x}-c11e-4000-8000-{n:012x}"),
            oid: format!("{tag:08x}-0b1d-4000-9000-{n:012x}"),
        };
        self.control
            .post(
                "/identities",
                &json!({"client_id": identity.client_id, "principal_id": identity.oid}),
            )
            .await
            .expect("identity added");
        self.labels
            .lock()
            .unwrap()
            .insert(identity.oid.clone(), identity.label.clone());
        identity
    }

    /// The label of a caller oid (the oid itself when unknown, `-` when none).
    pub fn label(&self, oid: Option<&str>) -> String {
        match oid {
            None => "-".to_string(),
            Some(oid) => self
                .labels
                .lock()
                .unwrap()
                .get(oid)
                .cloned()
                .unwrap_or_else(|| oid.to_string()),
        }
    }

    fn command(&self, identity: &Identity) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyflip"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("KEYFLIP_MANAGED_IDENTITY_CLIENT_ID", &identity.client_id)
            .env("AzureWebJobsStorage__clientId", &identity.client_id)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn spawn_serve(&self, slot: usize) -> Serve {
        let n = self.incarnations.fetch_add(1, Ordering::Relaxed);
        let identity = self.identity(&format!("serve{slot}#{n}")).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("port")
            .port();
        let log = self.dir.join(format!("{}.log", identity.label.replace('#', "-")));
        let file = std::fs::File::create(&log).expect("log file");
        let child = self
            .command(&identity)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .arg("serve")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("keyflip serve starts");
        let serve = Serve {
            identity,
            port,
            log,
            child,
        };
        for _ in 0..200 {
            let url = format!("http://127.0.0.1:{port}/");
            if self.http.get(url).send().await.is_ok() {
                return serve;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "keyflip serve did not become ready:\n{}",
            std::fs::read_to_string(&serve.log).unwrap_or_default()
        );
    }

    /// Starts `count` serve processes.
    pub async fn start(&self, count: usize) {
        let mut slots = self.slots.lock().await;
        for slot in 0..count {
            let serve = self.spawn_serve(slot).await;
            self.live.lock().unwrap().push(Some(target(slot, &serve)));
            slots.push(Some(serve));
        }
    }

    /// A live serve process, chosen by `pick` among the live ones.
    pub fn pick(&self, pick: u64) -> Option<Target> {
        let live: Vec<Target> = self.live.lock().unwrap().iter().flatten().cloned().collect();
        if live.is_empty() {
            return None;
        }
        Some(live[(pick % live.len() as u64) as usize].clone())
    }

    /// The live serve process running as `oid`, if any.
    pub fn by_oid(&self, oid: &str) -> Option<Target> {
        self.live
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .find(|t| t.oid == oid)
            .cloned()
    }

    /// SIGKILLs the process of `slot` and starts another one (a new identity and port) in its
    /// place. Returns the killed one's label.
    pub async fn kill_and_restart(&self, slot: usize) -> Option<String> {
        let mut slots = self.slots.lock().await;
        let mut old = slots.get_mut(slot)?.take()?;
        self.live.lock().unwrap()[slot] = None;
        let _ = old.child.start_kill();
        let _ = old.child.wait().await;
        let label = old.identity.label.clone();
        let serve = self.spawn_serve(slot).await;
        self.live.lock().unwrap()[slot] = Some(target(slot, &serve));
        slots[slot] = Some(serve);
        Some(label)
    }

    /// Runs `keyflip rotate --vault V --secret S --json` under a fresh identity, bounded by
    /// `timeout`; answers the exit code (None: killed at the bound) and stdout.
    pub async fn run_cli(&self, vault: &str, secret: &str, timeout: Duration) -> (Option<i32>, String) {
        let n = self.next_id.load(Ordering::Relaxed);
        let identity = self.identity(&format!("cli#{n}")).await;
        let log = self.dir.join(format!("cli-{n}.stderr"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = self
            .command(&identity)
            .args(["rotate", "--vault", vault, "--secret", secret, "--json"])
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("keyflip rotate starts");
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
            ),
            _ => (None, String::new()),
        }
    }

    /// The logs of the serve processes running now (for failure output).
    pub async fn logs_tail(&self, lines: usize) -> String {
        let slots = self.slots.lock().await;
        let mut out = String::new();
        for serve in slots.iter().flatten() {
            let text = std::fs::read_to_string(&serve.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            out.push_str(&format!(
                "--- {} ({})\n",
                serve.identity.label,
                serve.log.display()
            ));
            for line in &all[from..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Kills and reaps every serve process.
    pub async fn shutdown(&self) {
        let mut slots = self.slots.lock().await;
        for serve in slots.iter_mut().flatten() {
            let _ = serve.child.start_kill();
            let _ = serve.child.wait().await;
        }
        slots.clear();
        self.live.lock().unwrap().clear();
    }
}

fn target(slot: usize, serve: &Serve) -> Target {
    Target {
        slot,
        port: serve.port,
        oid: serve.identity.oid.clone(),
    }
}
