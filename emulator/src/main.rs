//! `keyflip-emulator`: starts the local stand-in of Azure, writes its CA (and the certificate
//! and key it signed for the storage upstream), optionally starts Azurite behind its Blob
//! Storage proxy, prints one JSON line with everything a client needs, and runs until killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use emulator::seed::Seed;
use emulator::{Emulator, EmulatorOptions};

/// A local stand-in of Azure Key Vault, Resource Manager, AI services and managed identity.
#[derive(Debug, Parser)]
#[command(name = "keyflip-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory to write the CA certificate into (keyflip-emulator-ca.pem), with the
    /// certificate and key for the storage upstream beside it
    /// (keyflip-emulator-upstream-cert.pem, keyflip-emulator-upstream-key.pem).
    #[arg(long)]
    ca_out: PathBuf,
    /// Start the pinned Azurite (tools/azurite) and serve *.blob.core.windows.net through it.
    #[arg(long)]
    azurite: bool,
    /// A seed document (JSON) to load at start; see emulator/README.md.
    #[arg(long)]
    seed: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keyflip-emulator: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let seed = match &args.seed {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the seed file {}: {e}", path.display()))?;
            let seed: Seed = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "the seed file {} is not a valid seed document: {e}",
                    path.display()
                )
            })?;
            Some(seed)
        }
    };
    std::fs::create_dir_all(&args.ca_out).map_err(|e| {
        format!(
            "cannot create the --ca-out directory {}: {e}",
            args.ca_out.display()
        )
    })?;
    let emulator = Emulator::start(EmulatorOptions {
        listen: args.listen,
        seed,
    })
    .await
    .map_err(|e| e.to_string())?;
    let ca_file = args.ca_out.join("keyflip-emulator-ca.pem");
    std::fs::write(&ca_file, emulator.ca_pem())
        .map_err(|e| format!("cannot write the CA to {}: {e}", ca_file.display()))?;
    let cert_file = args.ca_out.join("keyflip-emulator-upstream-cert.pem");
    let key_file = args.ca_out.join("keyflip-emulator-upstream-key.pem");
    std::fs::write(&cert_file, emulator.upstream_cert_pem()).map_err(|e| {
        format!(
            "cannot write the upstream certificate to {}: {e}",
            cert_file.display()
        )
    })?;
    std::fs::write(&key_file, emulator.upstream_key_pem())
        .map_err(|e| format!("cannot write the upstream key to {}: {e}", key_file.display()))?;
    let _azurite = if args.azurite {
        Some(emulator.start_azurite(Vec::new()).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut info = emulator.info(Some(ca_file.display().to_string()));
    info.upstream_cert_file = Some(cert_file.display().to_string());
    info.upstream_key_file = Some(key_file.display().to_string());
    let line = serde_json::to_string(&info).map_err(|e| e.to_string())?;
    println!("{line}");
    wait_for_termination().await;
    emulator.stop();
    Ok(())
}

async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
