//! The `keyflip` binary: the composition root. It parses the command line, loads and validates
//! the configuration, starts telemetry, runs the command and maps errors to exit codes; all
//! logic lives in the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use keyflip::app::{self, AzureAccess};
use keyflip::cli::{Cli, Command};
use keyflip::clock::SystemClock;
use keyflip::config::{Settings, env_vars};
use keyflip::domain::{SecretName, VaultName};
use keyflip::engine::{Class, Engine, RotationRequest, TriggerKind};
use keyflip::server::{self, ServerLimits};
use keyflip::telemetry::{self, LogFormat, error_chain};

/// Exit code of a configuration error (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Exit code of a transient failure: retrying later can help (EX_TEMPFAIL).
const EXIT_TEMPORARY: u8 = 75;

/// Why the command failed, with the exit code to report.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keyflip: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("keyflip: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve { port } => serve(port).await,
        Command::Rotate {
            vault,
            secret,
            dry_run,
            force,
            repair,
            revoke_active,
            json,
        } => {
            let mode = RotateMode {
                dry_run,
                force,
                repair,
                revoke_active,
            };
            rotate(&vault, &secret, mode, json).await
        }
        Command::Demo { json } => demo(json).await,
    }
}

fn settings(vars: &std::collections::HashMap<String, String>) -> Result<Settings, Failure> {
    let settings = Settings::from_vars(vars)
        .map_err(|e| Failure::new(EXIT_CONFIG, format!("configuration error: {e}")))?;
    for name in Settings::unrecognized(vars) {
        tracing::warn!(setting = %name, "unknown KEYFLIP_ setting ignored: check its spelling");
    }
    Ok(settings)
}

/// The production engine: the environment's credential and the system clock.
fn engine(settings: &Settings, vars: &std::collections::HashMap<String, String>) -> Result<Engine, Failure> {
    let startup = |e: app::StartupError| Failure::new(1, error_chain(&e));
    let access = AzureAccess::new(settings).map_err(startup)?;
    let credential = access.credential(settings, vars).map_err(startup)?;
    app::engine(
        settings,
        settings.engine_settings(),
        &access,
        credential,
        Arc::new(SystemClock),
    )
    .map_err(startup)
}

fn start_telemetry(vars: &std::collections::HashMap<String, String>) -> Result<(), Failure> {
    telemetry::init(LogFormat::detect(vars))
        .map_err(|e| Failure::new(EXIT_CONFIG, format!("configuration error: {e}")))
}

async fn serve(port: Option<u16>) -> Result<(), Failure> {
    let vars = env_vars();
    start_telemetry(&vars)?;
    let settings = settings(&vars)?;
    let port = port.or(settings.port).ok_or_else(|| {
        Failure::new(
            EXIT_CONFIG,
            "configuration error: FUNCTIONS_CUSTOMHANDLER_PORT is not set (the Functions host sets it); outside the host pass --port",
        )
    })?;
    let engine = engine(&settings, &vars)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| Failure::new(1, format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let state = app::state(&settings, engine);
    server::serve(
        listener,
        state,
        server::shutdown_signal(),
        ServerLimits::default(),
    )
    .await
    .map_err(|e| Failure::new(1, format!("the server failed: {e}")))
}

/// What `keyflip rotate` was asked to do.
struct RotateMode {
    dry_run: bool,
    force: bool,
    repair: bool,
    revoke_active: bool,
}

async fn rotate(vault: &str, secret: &str, mode: RotateMode, json: bool) -> Result<(), Failure> {
    let vars = env_vars();
    start_telemetry(&vars)?;
    let vault = VaultName::parse(vault).map_err(|e| Failure::new(2, e.to_string()))?;
    let secret = SecretName::parse(secret).map_err(|e| Failure::new(2, e.to_string()))?;
    let settings = settings(&vars)?;
    let engine = engine(&settings, &vars)?;
    let request = RotationRequest {
        vault,
        secret,
        trigger: TriggerKind::Manual,
        event_version: None,
        dry_run: mode.dry_run,
        force: mode.force,
        revoke_active: mode.revoke_active,
        budget: settings.manual_budget,
    };
    let result = match mode.repair {
        true => engine.repair(request).await,
        false => engine.rotate(request).await,
    };
    if json {
        println!("{}", serde_json::to_string(&result).unwrap_or_default());
    } else {
        println!(
            "{}/{}: {}: {}",
            result.vault,
            result.secret,
            result.outcome.label(),
            result.message
        );
    }
    match result.outcome.class() {
        Class::Success => Ok(()),
        Class::Transient => Err(Failure::new(
            EXIT_TEMPORARY,
            format!("{} (retry later)", result.outcome.label()),
        )),
        Class::Permanent => Err(Failure::new(1, result.outcome.label())),
    }
}

#[cfg(feature = "demo")]
async fn demo(json: bool) -> Result<(), Failure> {
    keyflip::demo::run(json)
        .await
        .map_err(|e| Failure::new(1, format!("demo failed: {e}")))
}

#[cfg(not(feature = "demo"))]
async fn demo(_json: bool) -> Result<(), Failure> {
    Err(Failure::new(
        2,
        "this build has no demo (built without the `demo` feature)",
    ))
}
