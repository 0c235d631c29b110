//! Azurite, the Azure Storage emulator, run by the test harness: the blob service the
//! emulator's storage proxy ([`crate::storage`]) forwards to, and, when asked for
//! ([`AzuriteOptions::queue`]), its queue service (`azurite-queue`, beside `azurite-blob` in
//! the same install), which tests reach directly at [`Azurite::queue_endpoint`] to play the
//! Functions host's queue triggers.
//!
//! It owns finding the pinned `azurite-blob` (`tools/azurite/node_modules/.bin/azurite-blob`
//! under the workspace root, or `KEYFLIP_AZURITE_BIN`), installing it with `npm ci --prefix
//! tools/azurite` when it is missing (under a file lock, since several test binaries start at
//! once), and running one Azurite per [`Azurite`] handle: on a free port of `127.0.0.1`, over
//! HTTPS with the certificate the emulator's CA signed ([`crate::tls::Pki`]), with
//! `--oauth basic` (Azurite then accepts the emulator's tokens: it checks their claims, not
//! their signature), in memory, without telemetry. The storage accounts it serves are
//! `devstoreaccount1` (the well-known development account) plus the ones asked for
//! (`AZURITE_ACCOUNTS`).
//!
//! `node` runs the Azurite script directly (no shell, no npm in between), so Azurite is exactly
//! one process: dropping the handle kills and reaps it. Should the test process die without
//! dropping it, Azurite exits too: a preloaded script ends it when its standard input (a pipe
//! the handle holds) closes.
//!
//! It deliberately does not emulate anything itself and is never part of a deployment.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The version `tools/azurite/package.json` pins (the newest that runs on Node.js 20).
pub const AZURITE_VERSION: &str = "3.35.0";
/// The newest blob `x-ms-version` Azurite 3.35.0 accepts; clients must not send a newer one.
pub const BLOB_API_VERSION: &str = "2025-11-05";
/// The well-known development storage account of every storage emulator.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key (public: published in Microsoft's documentation of Azurite).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Overrides where `azurite-blob` is found.
pub const AZURITE_BIN_ENV: &str = "KEYFLIP_AZURITE_BIN";

/// How long Azurite may take to listen after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Ends Azurite when the pipe on its standard input closes (the harness died).
const EXIT_WITH_PARENT: &str = "process.stdin.on('end', () => process.exit(0)); \
     process.stdin.on('error', () => process.exit(0)); process.stdin.resume();\n";

/// A storage account Azurite serves besides `devstoreaccount1`.
#[derive(Clone, PartialEq, Eq)]
pub struct AzuriteAccount {
    pub name: String,
    /// Base64 of the account key.
    pub key: String,
}

impl std::fmt::Debug for AzuriteAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzuriteAccount")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// How to start Azurite.
#[derive(Debug, Clone)]
pub struct AzuriteOptions {
    /// PEM certificate for `127.0.0.1`/`localhost` (the emulator's [`crate::tls::Pki`] one).
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// Accounts besides `devstoreaccount1`.
    pub accounts: Vec<AzuriteAccount>,
    /// Also run the queue service (same certificate, accounts and `--oauth basic`).
    pub queue: bool,
}

impl AzuriteOptions {
    /// Azurite with the storage leaf that `pki`'s CA signed.
    pub fn from_pki(pki_cert_pem: &str, pki_key_pem: &str) -> Self {
        Self {
            cert_pem: pki_cert_pem.to_string(),
            key_pem: pki_key_pem.to_string(),
            accounts: Vec::new(),
            queue: false,
        }
    }
}

/// Why Azurite could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AzuriteError {
    #[error(
        "azurite-blob is not at {path} and `npm ci --prefix {prefix}` failed ({detail}); install Node.js 20 and npm (apt-get install nodejs npm), run that command, or set {AZURITE_BIN_ENV}"
    )]
    Install {
        path: PathBuf,
        prefix: PathBuf,
        detail: String,
    },
    #[error("{AZURITE_BIN_ENV}={0} does not exist")]
    MissingBin(PathBuf),
    #[error("cannot prepare Azurite's files in {path}: {source}")]
    Files { path: PathBuf, source: std::io::Error },
    #[error("cannot run node for Azurite (is Node.js installed?): {0}")]
    Spawn(std::io::Error),
    #[error("no free port for Azurite: {0}")]
    Port(std::io::Error),
    #[error("Azurite exited before it listened ({status}); its output:\n{output}")]
    Exited { status: String, output: String },
    #[error("Azurite did not listen on {addr} within {seconds} s; its output:\n{output}")]
    Timeout {
        addr: SocketAddr,
        seconds: u64,
        output: String,
    },
}

/// A running Azurite blob service (and queue service, if asked for); dropping it stops it.
#[derive(Debug)]
pub struct Azurite {
    blob: Service,
    queue: Option<Service>,
    dir: PathBuf,
}

/// One Azurite process (one service).
#[derive(Debug)]
struct Service {
    addr: SocketAddr,
    child: Child,
    /// Held so that Azurite's standard input closes only when the handle goes.
    _stdin: Option<ChildStdin>,
}

impl Azurite {
    /// Installs Azurite if needed, starts it over HTTPS and waits until it listens.
    pub fn start(options: &AzuriteOptions) -> Result<Self, AzuriteError> {
        let bin = azurite_bin()?;
        let dir = scratch_dir()?;
        let files = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AzuriteError::Files { path, source }
        };
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let preload = dir.join("exit-with-parent.js");
        std::fs::write(&cert, &options.cert_pem).map_err(files(&cert))?;
        std::fs::write(&key, &options.key_pem).map_err(files(&key))?;
        std::fs::write(&preload, EXIT_WITH_PARENT).map_err(files(&preload))?;
        let log = dir.join("azurite.log");

        let mut accounts = format!("{DEV_ACCOUNT}:{DEV_ACCOUNT_KEY}");
        for account in &options.accounts {
            accounts.push_str(&format!(";{}:{}", account.name, account.key));
        }

        let spawn = |bin: &Path, service: &str, log: &Path| -> Result<Service, AzuriteError> {
            let port = free_port()?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let output = std::fs::File::create(log).map_err(files(log))?;
            let errors = output.try_clone().map_err(files(log))?;
            let mut command = Command::new("node");
            command
                .arg("--require")
                .arg(&preload)
                .arg(bin)
                .arg(format!("--{service}Host"))
                .arg("127.0.0.1")
                .arg(format!("--{service}Port"))
                .arg(port.to_string())
                .arg("--cert")
                .arg(&cert)
                .arg("--key")
                .arg(&key)
                .args(["--oauth", "basic", "--inMemoryPersistence", "--disableTelemetry"])
                .env("AZURITE_ACCOUNTS", &accounts)
                .current_dir(&dir)
                .stdin(Stdio::piped())
                .stdout(output)
                .stderr(errors);
            #[cfg(unix)]
            {
                use std::os::unix::process::CommandExt as _;
                // Its own process group: a terminal's Ctrl-C reaches the harness, which reaps it.
                command.process_group(0);
            }
            let mut child = command.spawn().map_err(AzuriteError::Spawn)?;
            let stdin = child.stdin.take();
            let mut service = Service {
                addr,
                child,
                _stdin: stdin,
            };
            if let Err(error) = service.wait_until_listening(log) {
                service.stop();
                return Err(error);
            }
            Ok(service)
        };
        let blob = spawn(&bin, "blob", &log)?;
        tracing::info!(addr = %blob.addr, "Azurite listening");
        let mut azurite = Self {
            blob,
            queue: None,
            dir: dir.clone(),
        };
        if options.queue {
            let queue_bin = bin.with_file_name("azurite-queue");
            let queue = spawn(&queue_bin, "queue", &dir.join("azurite-queue.log"))?;
            tracing::info!(addr = %queue.addr, "Azurite's queue service listening");
            azurite.queue = Some(queue);
        }
        Ok(azurite)
    }

    /// Where Azurite listens (HTTPS).
    pub fn address(&self) -> SocketAddr {
        self.blob.addr
    }

    /// The path-style blob endpoint of `account`: `https://127.0.0.1:<port>/<account>`.
    pub fn blob_endpoint(&self, account: &str) -> String {
        format!("https://{}/{account}", self.blob.addr)
    }

    /// The path-style queue endpoint of `account` (`https://127.0.0.1:<port>/<account>`),
    /// when the queue service was asked for.
    pub fn queue_endpoint(&self, account: &str) -> Option<String> {
        self.queue
            .as_ref()
            .map(|q| format!("https://{}/{account}", q.addr))
    }

    /// What Azurite printed so far (its access log and errors).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("azurite.log")).unwrap_or_default()
    }
}

impl Service {
    fn wait_until_listening(&mut self, log: &Path) -> Result<(), AzuriteError> {
        let started = Instant::now();
        let output = || std::fs::read_to_string(log).unwrap_or_default();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(AzuriteError::Exited {
                    status: status.to_string(),
                    output: output(),
                });
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(AzuriteError::Timeout {
                    addr: self.addr,
                    seconds: START_TIMEOUT.as_secs(),
                    output: output(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Service {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.blob.stop();
        if let Some(queue) = &mut self.queue {
            queue.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The workspace root (the emulator crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `azurite-blob`: `KEYFLIP_AZURITE_BIN`, else the pinned install, installed first if missing.
pub fn azurite_bin() -> Result<PathBuf, AzuriteError> {
    if let Some(bin) = std::env::var_os(AZURITE_BIN_ENV).filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.exists() {
            Ok(bin)
        } else {
            Err(AzuriteError::MissingBin(bin))
        };
    }
    let prefix = workspace_root().join("tools").join("azurite");
    let bin = prefix.join("node_modules").join(".bin").join("azurite-blob");
    if bin.exists() {
        return Ok(bin);
    }
    install(&prefix, &bin)?;
    Ok(bin)
}

/// `npm ci --prefix <prefix>` under `flock` on a lock file beside it, unless another test binary
/// installed it while this one waited for the lock.
fn install(prefix: &Path, bin: &Path) -> Result<(), AzuriteError> {
    let failed = |detail: String| AzuriteError::Install {
        path: bin.to_path_buf(),
        prefix: prefix.to_path_buf(),
        detail,
    };
    let lock = prefix.join(".npm-ci.lock");
    let status = Command::new("flock")
        .arg(&lock)
        .args([
            "sh",
            "-c",
            r#"[ -e "$0" ] || npm ci --prefix "$1" --no-audit --no-fund"#,
        ])
        .arg(bin)
        .arg(prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| failed(format!("cannot run flock/npm: {e}")))?;
    if status.success() && bin.exists() {
        Ok(())
    } else {
        Err(failed(format!("npm ci ended with {status}")))
    }
}

fn free_port() -> Result<u16, AzuriteError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(AzuriteError::Port)?;
    let port = listener.local_addr().map_err(AzuriteError::Port)?.port();
    Ok(port)
}

/// A fresh directory for one Azurite's certificate, key and log.
fn scratch_dir() -> Result<PathBuf, AzuriteError> {
    let dir = std::env::temp_dir().join(format!(
        "keyflip-azurite-{}-{}",
        std::process::id(),
        crate::world::random_hex(12)
    ));
    std::fs::create_dir_all(&dir).map_err(|source| AzuriteError::Files {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}
