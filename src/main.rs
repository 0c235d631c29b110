//! The `keyflip` binary: the composition root. It parses the command line, loads and validates
//! the configuration, starts telemetry, runs the command and maps errors to exit codes; all
//! logic lives in the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use keyflip::admin::Tools;
use keyflip::admin::doctor;
use keyflip::admin::onboard::{OnboardError, OnboardRequest, Onboarded};
use keyflip::app::{self, AzureAccess};
use keyflip::cli::{Cli, Command};
use keyflip::clock::SystemClock;
use keyflip::config::{Settings, env_vars};
use keyflip::domain::{SecretName, VaultName};
use keyflip::engine::{Class, Engine, RotationRequest, SweepOptions, TriggerKind};
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
    // One thread: keyflip waits on Azure, it does not compute (measured: a rotation costs
    // ~1.9 ms of CPU on one thread against 2.4-3.0 ms on a pool, whose threads wake each other
    // for every answer). Nothing in it blocks a thread but writing a log line to stdout.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
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
        Command::Sweep { vault, dry_run, json } => sweep(&vault, dry_run, json).await,
        Command::Onboard {
            vault,
            secret,
            resource_id,
            validity_days,
            force,
            no_verify,
            all_in_scope,
            yes,
            json,
        } => match (all_in_scope, secret, resource_id) {
            (true, _, _) => onboard_all(&vault, validity_days, yes, json).await,
            (false, Some(secret), Some(resource)) => {
                let one = OnboardOne {
                    secret,
                    resource,
                    validity_days,
                    force,
                    no_verify,
                };
                onboard(&vault, one, json).await
            }
            _ => Err(Failure::new(
                2,
                "onboard needs --secret and --resource-id, or --all-in-scope",
            )),
        },
        Command::Doctor {
            app_principal_id,
            json,
        } => doctor(app_principal_id, json).await,
        Command::Status { vault, json } => status(vault.as_deref(), json).await,
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
        index_wait: None,
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

async fn sweep(vaults: &[String], dry_run: bool, json: bool) -> Result<(), Failure> {
    let vars = env_vars();
    start_telemetry(&vars)?;
    let settings = settings(&vars)?;
    let vaults = match vaults.is_empty() {
        true => settings.vaults.iter().map(|v| v.name.clone()).collect(),
        false => vaults
            .iter()
            .map(|v| VaultName::parse(v).map_err(|e| Failure::new(2, e.to_string())))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let engine = engine(&settings, &vars)?;
    let options = SweepOptions {
        budget: settings.sweep_budget,
        dry_run,
    };
    let report = engine.sweep_with(&vaults, options).await;
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print!("{}", report.text());
    }
    if report.class() == Class::Transient {
        return Err(Failure::new(
            EXIT_TEMPORARY,
            "the sweep met transient failures (retry later)",
        ));
    }
    if !report.problems.is_empty() || report.summary.failed > 0 {
        return Err(Failure::new(
            1,
            "the sweep found problems or failures an operator must fix (listed above)",
        ));
    }
    Ok(())
}

/// The operator commands' tools: the settings, the environment's credential (your own sign-in
/// from a terminal), the system clock.
fn tools(vars: &std::collections::HashMap<String, String>) -> Result<Tools, Failure> {
    let settings = settings(vars)?;
    let startup = |e: app::StartupError| Failure::new(1, error_chain(&e));
    let access = AzureAccess::new(&settings).map_err(startup)?;
    let credential = access.credential(&settings, vars).map_err(startup)?;
    Tools::new(&settings, &access, credential, Arc::new(SystemClock)).map_err(startup)
}

fn onboard_failure(error: OnboardError) -> Failure {
    match error {
        OnboardError::Refused(m) => Failure::new(1, m),
        OnboardError::Transient(m) => Failure::new(EXIT_TEMPORARY, format!("{m} (retry later)")),
        OnboardError::Uncertain(m) => Failure::new(EXIT_TEMPORARY, m),
    }
}

/// One `keyflip onboard` without `--all-in-scope`.
struct OnboardOne {
    secret: String,
    resource: String,
    validity_days: u32,
    force: bool,
    no_verify: bool,
}

async fn onboard(vault: &str, one: OnboardOne, json: bool) -> Result<(), Failure> {
    let vars = env_vars();
    start_telemetry(&vars)?;
    let request = OnboardRequest {
        vault: VaultName::parse(vault).map_err(|e| Failure::new(2, e.to_string()))?,
        secret: SecretName::parse(&one.secret).map_err(|e| Failure::new(2, e.to_string()))?,
        resource: one.resource,
        validity_days: one.validity_days,
        force: one.force,
        no_verify: one.no_verify,
    };
    let tools = tools(&vars)?;
    let done = keyflip::admin::onboard::onboard(&tools, &request)
        .await
        .map_err(onboard_failure)?;
    print_onboarded(&done, json);
    Ok(())
}

fn print_onboarded(done: &Onboarded, json: bool) {
    if json {
        println!("{}", serde_json::to_string(done).unwrap_or_default());
    } else {
        let kept = match done.kept_value {
            true => " (the value it already held: consumers notice nothing)",
            false => "",
        };
        println!(
            "{}/{}: onboarded: version {} holds {} of {}{kept}, verified: {}, expires {}",
            done.vault, done.secret, done.version, done.slot, done.resource, done.verified, done.expires
        );
    }
}

async fn onboard_all(vault: &str, validity_days: u32, yes: bool, json: bool) -> Result<(), Failure> {
    let vars = env_vars();
    start_telemetry(&vars)?;
    let vault = VaultName::parse(vault).map_err(|e| Failure::new(2, e.to_string()))?;
    let tools = tools(&vars)?;
    let proposals = keyflip::admin::onboard::propose(&tools, &vault)
        .await
        .map_err(onboard_failure)?;
    if !json {
        print!("{}", keyflip::admin::onboard::table(&proposals));
    }
    let mut written = Vec::new();
    let mut failures = Vec::new();
    if yes {
        for proposal in proposals.iter().filter(|p| p.action == "onboard") {
            let Some(secret) = proposal.secret.as_deref().and_then(|s| SecretName::parse(s).ok()) else {
                continue;
            };
            let request = OnboardRequest {
                vault: vault.clone(),
                secret,
                resource: proposal.resource.clone(),
                validity_days,
                force: false,
                no_verify: false,
            };
            match keyflip::admin::onboard::onboard(&tools, &request).await {
                Ok(done) => {
                    if !json {
                        print_onboarded(&done, false);
                    }
                    written.push(done);
                }
                Err(e) => {
                    if !json {
                        println!("{}/{}: not onboarded: {e}", request.vault, request.secret);
                    }
                    failures.push(serde_json::json!({"secret": request.secret.to_string(), "resource": request.resource, "error": e.to_string()}));
                }
            }
        }
    }
    if json {
        let answer = serde_json::json!({"proposals": proposals, "onboarded": written, "failed": failures});
        println!("{answer}");
    } else if !yes {
        let count = proposals.iter().filter(|p| p.action == "onboard").count();
        println!("{count} to onboard; nothing written: run again with --yes to write them");
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(Failure::new(
            1,
            format!("{} secrets were not onboarded", failures.len()),
        )),
    }
}

async fn doctor(app_principal_id: Option<String>, json: bool) -> Result<(), Failure> {
    let vars = env_vars();
    start_telemetry(&vars)?;
    if let Some(id) = &app_principal_id
        && !doctor::is_guid(id)
    {
        return Err(Failure::new(
            2,
            "--app-principal-id must be an object id (a GUID), e.g. the deployment's output APP_PRINCIPAL_ID",
        ));
    }
    let report = match Settings::from_vars(&vars) {
        Err(e) => doctor::Report::configuration_failed(&e.to_string()),
        Ok(_) => {
            let tools = tools(&vars)?;
            let options = doctor::Options {
                app_principal_id,
                unknown_settings: Settings::unrecognized(&vars),
            };
            doctor::run(&tools, &options).await
        }
    };
    match json {
        true => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
        false => print!("{}", report.text()),
    }
    match report.ok {
        true => Ok(()),
        false => Err(Failure::new(1, "doctor found failures (see above)")),
    }
}

async fn status(vault: Option<&str>, json: bool) -> Result<(), Failure> {
    let vars = env_vars();
    start_telemetry(&vars)?;
    let only = vault
        .map(VaultName::parse)
        .transpose()
        .map_err(|e| Failure::new(2, format!("--vault: {e}")))?;
    let tools = tools(&vars)?;
    let collector = keyflip::status::Collector::new(
        tools.store.clone(),
        tools.providers.clone(),
        tools.clock.clone(),
        tools.settings.engine_settings(),
    );
    let report = collector
        .collect(only.as_ref(), tools.settings.sweep_budget)
        .await
        .map_err(|e| Failure::new(2, format!("--vault: {e}")))?;
    match json {
        true => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
        false => print!("{}", keyflip::status::table::render(&report)),
    }
    match report.vaults.iter().all(|v| v.listed) {
        true => Ok(()),
        false => Err(Failure::new(
            1,
            "some served vaults could not be listed, so the status is incomplete (see the problems above)",
        )),
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
