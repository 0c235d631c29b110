//! Every setting of DESIGN.md §8, parsed and validated at start-up, before any network call.
//!
//! [`Settings::from_vars`] is pure: it reads a map (the process environment in production,
//! a literal in tests), validates every setting, and reports *all* problems at once, each
//! naming the setting, the offending value and what is expected. Empty values count as unset.
//! `KEYFLIP_VAULTS` and `KEYFLIP_ALLOWED_SCOPES` are required; every other setting has a
//! default. The CA bundle is read and parsed here, so a bad file stops the process at start-up
//! rather than at the first TLS handshake. Two platform variables are read with them:
//! `FUNCTIONS_CUSTOMHANDLER_PORT` and `WEBSITE_HOSTNAME` (the app's own host name, which the HTTP
//! surface answers besides loopback and `KEYFLIP_ALLOWED_HOSTS`).
//!
//! It does not build anything: the start-up wiring turns [`Settings`] into the engine's
//! settings ([`Settings::engine_settings`]), the shared HTTP client
//! ([`Settings::transport_settings`]) and the Resource Manager pipeline
//! ([`Settings::arm_token_scope`]). Credential selection reads its own variables
//! (`crate::azure::credential`); the lease storage (`AzureWebJobsStorage`) belongs to the store.

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

pub use crate::azure::transport::{ConnectTo, HostPattern};
use crate::azure::transport::{TransportError, TransportSettings, load_ca_bundle};
use crate::domain::{AllowedScope, AllowedScopes, Scope, VaultName};
use crate::engine::EngineSettings;
use crate::lease::storage::{AZURE_WEBJOBS_STORAGE, StorageConfig, StorageConfigError};

pub const KEYFLIP_VAULTS: &str = "KEYFLIP_VAULTS";
pub const KEYFLIP_ALLOWED_SCOPES: &str = "KEYFLIP_ALLOWED_SCOPES";
pub const KEYFLIP_SWEEP_SCHEDULE: &str = "KEYFLIP_SWEEP_SCHEDULE";
pub const KEYFLIP_LEAD_DAYS: &str = "KEYFLIP_LEAD_DAYS";
pub const KEYFLIP_DWELL_HOURS: &str = "KEYFLIP_DWELL_HOURS";
pub const KEYFLIP_EVENT_BUDGET_SECONDS: &str = "KEYFLIP_EVENT_BUDGET_SECONDS";
pub const KEYFLIP_PENDING_TIMEOUT_HOURS: &str = "KEYFLIP_PENDING_TIMEOUT_HOURS";
pub const KEYFLIP_CONCURRENCY: &str = "KEYFLIP_CONCURRENCY";
pub const KEYFLIP_SWEEP_BUDGET_SECONDS: &str = "KEYFLIP_SWEEP_BUDGET_SECONDS";
pub const KEYFLIP_MANUAL_BUDGET_SECONDS: &str = "KEYFLIP_MANUAL_BUDGET_SECONDS";
pub const KEYFLIP_MANAGED_IDENTITY_CLIENT_ID: &str = "KEYFLIP_MANAGED_IDENTITY_CLIENT_ID";
pub const KEYFLIP_ARM_ENDPOINT: &str = "KEYFLIP_ARM_ENDPOINT";
pub const KEYFLIP_CA_BUNDLE: &str = "KEYFLIP_CA_BUNDLE";
pub const KEYFLIP_CONNECT_TO: &str = "KEYFLIP_CONNECT_TO";
pub const KEYFLIP_ALLOWED_HOSTS: &str = "KEYFLIP_ALLOWED_HOSTS";
pub const KEYFLIP_MAX_INVOCATIONS: &str = "KEYFLIP_MAX_INVOCATIONS";
pub const KEYFLIP_LEASE: &str = "KEYFLIP_LEASE";
pub const KEYFLIP_PAUSED: &str = "KEYFLIP_PAUSED";
pub const KEYFLIP_MAX_ROTATIONS_PER_SWEEP: &str = "KEYFLIP_MAX_ROTATIONS_PER_SWEEP";
pub const KEYFLIP_SWEEP_MODE: &str = "KEYFLIP_SWEEP_MODE";
pub const FUNCTIONS_CUSTOMHANDLER_PORT: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
/// Set by App Service: the app's default host name (`myapp.azurewebsites.net`; Core Tools sets
/// `localhost:7071`).
pub const WEBSITE_HOSTNAME: &str = "WEBSITE_HOSTNAME";

/// Every `KEYFLIP_*` setting this module reads.
pub const KEYFLIP_SETTINGS: &[&str] = &[
    KEYFLIP_VAULTS,
    KEYFLIP_ALLOWED_SCOPES,
    KEYFLIP_SWEEP_SCHEDULE,
    KEYFLIP_LEAD_DAYS,
    KEYFLIP_DWELL_HOURS,
    KEYFLIP_EVENT_BUDGET_SECONDS,
    KEYFLIP_PENDING_TIMEOUT_HOURS,
    KEYFLIP_CONCURRENCY,
    KEYFLIP_SWEEP_BUDGET_SECONDS,
    KEYFLIP_MANUAL_BUDGET_SECONDS,
    KEYFLIP_MANAGED_IDENTITY_CLIENT_ID,
    KEYFLIP_ARM_ENDPOINT,
    KEYFLIP_CA_BUNDLE,
    KEYFLIP_CONNECT_TO,
    KEYFLIP_ALLOWED_HOSTS,
    KEYFLIP_MAX_INVOCATIONS,
    KEYFLIP_LEASE,
    KEYFLIP_PAUSED,
    KEYFLIP_MAX_ROTATIONS_PER_SWEEP,
    KEYFLIP_SWEEP_MODE,
];

/// Settings for running outside Azure only, which a deployment (`infra/main.bicep`) never sets:
/// `KEYFLIP_CA_BUNDLE` (extra trusted CAs: a TLS-inspecting proxy, the local stand-in) and
/// `KEYFLIP_CONNECT_TO` (host names connected elsewhere than DNS says: the local stand-in).
/// In a function app either would point keyflip's bearer tokens somewhere other than Azure.
pub const LOCAL_ONLY_SETTINGS: &[&str] = &[KEYFLIP_CA_BUNDLE, KEYFLIP_CONNECT_TO];

/// Settings a deployment reads but `infra/main.bicep` deliberately leaves to their defaults
/// (an operator may still set them on the app):
/// - `KEYFLIP_EVENT_BUDGET_SECONDS`, `KEYFLIP_SWEEP_BUDGET_SECONDS`,
///   `KEYFLIP_MANUAL_BUDGET_SECONDS`: the defaults are sized to what the callers wait (Event
///   Grid 30 s, the Functions front end 230 s, host.json's functionTimeout);
/// - `KEYFLIP_PENDING_TIMEOUT_HOURS` (6 h): the pending alert (`pendingAlertHours`, 2 h) fires
///   well before it;
/// - `KEYFLIP_CONCURRENCY`, `KEYFLIP_MAX_INVOCATIONS`: sized with the client-side limits of
///   Resource Manager and Key Vault;
/// - `KEYFLIP_ARM_ENDPOINT`: the template targets Azure's public cloud;
/// - `KEYFLIP_ALLOWED_HOSTS`: the app's own host name (`WEBSITE_HOSTNAME`) is always
///   answered; only a custom domain needs it;
/// - `KEYFLIP_LEASE`: `storage` (the default) is the only mode for more than one process;
///   `in-process` is for the demo;
/// - `KEYFLIP_PAUSED`, `KEYFLIP_MAX_ROTATIONS_PER_SWEEP`: an operator's brakes, set on the app
///   when something looks wrong (off by default).
pub const DEFAULTED_SETTINGS: &[&str] = &[
    KEYFLIP_EVENT_BUDGET_SECONDS,
    KEYFLIP_SWEEP_BUDGET_SECONDS,
    KEYFLIP_MANUAL_BUDGET_SECONDS,
    KEYFLIP_PENDING_TIMEOUT_HOURS,
    KEYFLIP_CONCURRENCY,
    KEYFLIP_MAX_INVOCATIONS,
    KEYFLIP_ARM_ENDPOINT,
    KEYFLIP_ALLOWED_HOSTS,
    KEYFLIP_LEASE,
    KEYFLIP_PAUSED,
    KEYFLIP_MAX_ROTATIONS_PER_SWEEP,
];

pub const DEFAULT_SWEEP_SCHEDULE: &str = "0 0 * * * *";
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";
/// Default of `KEYFLIP_MAX_INVOCATIONS`.
pub const DEFAULT_MAX_INVOCATIONS: usize = 32;
const HOUR: u64 = 3600;

/// Where the rotation lease lives (`KEYFLIP_LEASE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseMode {
    /// A blob lease in the app's storage account (`AzureWebJobsStorage`): exact across
    /// instances, triggers and the CLI. The default.
    Storage,
    /// This process's memory: exact only while a single process rotates (the demo). Used only
    /// when asked for by name, never as a fallback.
    InProcess,
}

/// How the RotationSweep timer sweeps (`KEYFLIP_SWEEP_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SweepMode {
    /// The timer's own invocation sweeps every vault (the default: small fleets).
    #[default]
    Single,
    /// The timer enqueues one message per vault on the `keyflip-sweep` queue (its output
    /// binding) and the SweepVault queue trigger sweeps each, spread over the app's instances.
    Queue,
}

impl SweepMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Queue => "queue",
        }
    }
}

/// A vault keyflip serves and where its API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultEndpoint {
    pub name: VaultName,
    /// `https://<name>.vault.azure.net/` unless given as `name=url`.
    pub url: Url,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `KEYFLIP_VAULTS`: the vaults served; events for any other vault are refused.
    pub vaults: Vec<VaultEndpoint>,
    /// `KEYFLIP_ALLOWED_SCOPES`: ARM scopes whose resources may be rotated, each for every
    /// served vault or for one.
    pub allowed_scopes: AllowedScopes,
    /// `KEYFLIP_SWEEP_SCHEDULE`: NCRONTAB of the sweep, as the Functions host reads it.
    pub sweep_schedule: String,
    /// `KEYFLIP_LEAD_DAYS`: how long before `exp` the sweep rotates.
    pub lead_days: u32,
    /// `KEYFLIP_DWELL_HOURS`: minimum age of the latest version before the next rotation.
    pub dwell: Duration,
    /// `KEYFLIP_EVENT_BUDGET_SECONDS`: time one event invocation may spend.
    pub event_budget: Duration,
    /// `KEYFLIP_PENDING_TIMEOUT_HOURS`: how long a regenerated slot may stay pending.
    pub pending_timeout: Duration,
    /// `KEYFLIP_CONCURRENCY`: parallel rotations during a sweep.
    pub concurrency: usize,
    /// `KEYFLIP_SWEEP_BUDGET_SECONDS`: time a sweep may spend.
    pub sweep_budget: Duration,
    /// `KEYFLIP_MANUAL_BUDGET_SECONDS`: time a manual call may spend.
    pub manual_budget: Duration,
    /// `KEYFLIP_MANAGED_IDENTITY_CLIENT_ID`: a user-assigned identity's client id (a GUID).
    pub managed_identity_client_id: Option<String>,
    /// `KEYFLIP_ARM_ENDPOINT`: Resource Manager of the cloud keyflip runs in.
    pub arm_endpoint: Url,
    /// `KEYFLIP_CA_BUNDLE`: extra trusted CAs (checked to hold at least one certificate).
    pub ca_bundle: Option<PathBuf>,
    /// `KEYFLIP_CONNECT_TO`: where host names connect instead of where DNS says.
    pub connect_to: Vec<ConnectTo>,
    /// `KEYFLIP_ALLOWED_HOSTS`: host names the handler answers besides loopback and
    /// `WEBSITE_HOSTNAME` (lower case, no port).
    pub allowed_hosts: Vec<String>,
    /// `WEBSITE_HOSTNAME`: the app's own host name, without port (set by the platform).
    pub website_hostname: Option<String>,
    /// `KEYFLIP_MAX_INVOCATIONS`: invocations that may run at once; beyond it the handler
    /// answers at once that it is busy.
    pub max_invocations: usize,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`: the port the Functions host expects us on.
    pub port: Option<u16>,
    /// `KEYFLIP_LEASE`: `storage` (default) or `in-process`.
    pub lease: LeaseMode,
    /// `KEYFLIP_PAUSED`: every trigger answers `skipped:paused` and nothing is written.
    pub paused: bool,
    /// `KEYFLIP_MAX_ROTATIONS_PER_SWEEP`: at most this many rotations per sweep (none: no cap).
    pub max_rotations_per_sweep: Option<usize>,
    /// `KEYFLIP_SWEEP_MODE`: `single` (default) or `queue` (fan-out through `keyflip-sweep`).
    pub sweep_mode: SweepMode,
    /// `AzureWebJobsStorage` (or its identity-based `__` settings): where the leases live;
    /// always present when `lease` is [`LeaseMode::Storage`].
    pub storage: Option<StorageConfig>,
}

/// A setting that cannot be used. The value shown is the offending one (settings hold no
/// secrets; a password in a URL is masked).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting} is not set; expected {expected}")]
    Missing { setting: &'static str, expected: String },
    #[error("{setting}='{value}' is invalid: {problem}; expected {expected}")]
    Invalid {
        setting: &'static str,
        value: String,
        problem: String,
        expected: String,
    },
    #[error("{setting}='{}' cannot be used: {source}; expected a PEM file holding at least one CA certificate", path.display())]
    CaBundle {
        setting: &'static str,
        path: PathBuf,
        source: TransportError,
    },
    #[error("{0}")]
    Storage(#[from] StorageConfigError),
    #[error("{} settings are invalid:\n{}", .0.len(), bullet_list(.0))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// The setting at fault (the first one for [`ConfigError::Several`]).
    pub fn setting(&self) -> &'static str {
        match self {
            Self::Missing { setting, .. }
            | Self::Invalid { setting, .. }
            | Self::CaBundle { setting, .. } => setting,
            Self::Storage(e) => e.setting(),
            Self::Several(errors) => errors.first().map(Self::setting).unwrap_or_default(),
        }
    }

    /// Every single problem (one, or each of [`ConfigError::Several`]).
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            Self::Several(errors) => errors.iter().collect(),
            single => vec![single],
        }
    }
}

fn bullet_list(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| format!("  - {e}")).collect();
    lines.join("\n")
}

/// Builds an [`ConfigError::Invalid`].
fn invalid(
    setting: &'static str,
    value: &str,
    problem: impl fmt::Display,
    expected: impl fmt::Display,
) -> ConfigError {
    ConfigError::Invalid {
        setting,
        value: shorten(value),
        problem: problem.to_string(),
        expected: expected.to_string(),
    }
}

/// `KEYFLIP_LEASE`: where the rotation lease lives.
fn parse_lease(v: Vars<'_>) -> Result<LeaseMode, ConfigError> {
    match v.get(KEYFLIP_LEASE) {
        None => Ok(LeaseMode::Storage),
        Some(mode) if mode.eq_ignore_ascii_case("storage") => Ok(LeaseMode::Storage),
        Some(mode) if mode.eq_ignore_ascii_case("in-process") => Ok(LeaseMode::InProcess),
        Some(other) => Err(invalid(
            KEYFLIP_LEASE,
            other,
            "is not a lease mode",
            "storage (a blob lease in AzureWebJobsStorage, the default) or in-process (one process only, e.g. the demo)",
        )),
    }
}

/// `KEYFLIP_SWEEP_MODE`: whether the timer sweeps itself or fans out through the queue.
fn parse_sweep_mode(v: Vars<'_>) -> Result<SweepMode, ConfigError> {
    match v.get(KEYFLIP_SWEEP_MODE) {
        None => Ok(SweepMode::Single),
        Some(mode) if mode.eq_ignore_ascii_case("single") => Ok(SweepMode::Single),
        Some(mode) if mode.eq_ignore_ascii_case("queue") => Ok(SweepMode::Queue),
        Some(other) => Err(invalid(
            KEYFLIP_SWEEP_MODE,
            other,
            "is not a sweep mode",
            "single (the timer's invocation sweeps every vault, the default) or queue (one message per vault on the keyflip-sweep queue, swept by SweepVault)",
        )),
    }
}

/// An on/off setting: `true` or `false` (any case), unset meaning `false`.
fn parse_switch(v: Vars<'_>, setting: &'static str) -> Result<bool, ConfigError> {
    match v.get(setting) {
        None => Ok(false),
        Some(value) if value.eq_ignore_ascii_case("true") => Ok(true),
        Some(value) if value.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(invalid(
            setting,
            other,
            "is not true or false",
            "true or false (default false)",
        )),
    }
}

/// Set by App Service on every instance in Azure.
const WEBSITE_INSTANCE_ID: &str = "WEBSITE_INSTANCE_ID";

/// The lease storage, required unless `KEYFLIP_LEASE=in-process`. The local development
/// storage (Azurite) is refused in Azure: there it would mean no lease at all.
fn parse_storage(vars: &HashMap<String, String>) -> Result<StorageConfig, ConfigError> {
    let in_azure = Vars(vars).get(WEBSITE_INSTANCE_ID).is_some();
    let development = Vars(vars)
        .get(AZURE_WEBJOBS_STORAGE)
        .is_some_and(|v| v.to_ascii_lowercase().contains("usedevelopmentstorage=true"));
    if in_azure && development {
        return Err(invalid(
            AZURE_WEBJOBS_STORAGE,
            "UseDevelopmentStorage=true",
            "names the local storage emulator, but this instance runs in Azure (WEBSITE_INSTANCE_ID is set)",
            "the app's storage account (a connection string, or AzureWebJobsStorage__accountName)",
        ));
    }
    StorageConfig::from_vars(vars)?.ok_or(ConfigError::Missing {
        setting: AZURE_WEBJOBS_STORAGE,
        expected: "the app's storage account, which holds the rotation leases: a connection string with an AccountKey, UseDevelopmentStorage=true (Azurite), or identity-based AzureWebJobsStorage__accountName / AzureWebJobsStorage__blobServiceUri; or set KEYFLIP_LEASE=in-process when a single process rotates".to_string(),
    })
}

/// Long values are cut so one bad setting does not flood the log.
fn shorten(value: &str) -> String {
    const MAX: usize = 120;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

/// Reads settings from the map; empty (or blank) values count as unset.
#[derive(Debug, Clone, Copy)]
struct Vars<'a>(&'a HashMap<String, String>);

impl<'a> Vars<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str, expected: &str) -> Result<&'a str, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::Missing {
            setting: name,
            expected: expected.to_string(),
        })
    }
}

/// Collects every problem instead of stopping at the first.
#[derive(Debug, Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn check<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    fn finish(mut self) -> Result<(), ConfigError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(ConfigError::Several(self.0)),
        }
    }
}

impl Settings {
    /// Parses and validates every setting from `vars`.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let v = Vars(vars);
        let mut p = Problems::default();
        let vaults = p.check(parse_vaults(v)).unwrap_or_default();
        let allowed_scopes = p.check(parse_scopes(v, &vaults)).unwrap_or_default();
        let sweep_schedule = p.check(parse_schedule(v)).unwrap_or_default();
        let lead_days = p
            .check(number(v, KEYFLIP_LEAD_DAYS, 30, 1..=365, "days"))
            .unwrap_or_default();
        let dwell = p
            .check(hours(v, KEYFLIP_DWELL_HOURS, 24.0, 0.0..=8760.0))
            .unwrap_or_default();
        let event_budget = p
            .check(seconds(v, KEYFLIP_EVENT_BUDGET_SECONDS, 20, 1..=29))
            .unwrap_or_default();
        let pending_timeout = p
            .check(hours(v, KEYFLIP_PENDING_TIMEOUT_HOURS, 6.0, 0.001..=720.0))
            .unwrap_or_default();
        let concurrency = p
            .check(number(v, KEYFLIP_CONCURRENCY, 64, 1..=64, "rotations"))
            .unwrap_or(1);
        let sweep_budget = p
            .check(seconds(v, KEYFLIP_SWEEP_BUDGET_SECONDS, 240, 1..=3600))
            .unwrap_or_default();
        let manual_budget = p
            .check(seconds(v, KEYFLIP_MANUAL_BUDGET_SECONDS, 60, 1..=229))
            .unwrap_or_default();
        let managed_identity_client_id = p.check(parse_client_id(v)).flatten();
        let arm_endpoint = p.check(parse_arm_endpoint(v));
        let ca_bundle = p.check(parse_ca_bundle(v)).flatten();
        let connect_to = p.check(parse_connect_to(v)).unwrap_or_default();
        let allowed_hosts = p.check(parse_allowed_hosts(v)).unwrap_or_default();
        let website_hostname = p.check(parse_website_hostname(v)).flatten();
        let max_invocations = p
            .check(number(
                v,
                KEYFLIP_MAX_INVOCATIONS,
                DEFAULT_MAX_INVOCATIONS,
                1..=1024,
                "invocations",
            ))
            .unwrap_or(1);
        let port = p.check(parse_port(v)).flatten();
        let lease = p.check(parse_lease(v)).unwrap_or(LeaseMode::Storage);
        let paused = p.check(parse_switch(v, KEYFLIP_PAUSED)).unwrap_or(false);
        let max_rotations_per_sweep = match v.get(KEYFLIP_MAX_ROTATIONS_PER_SWEEP) {
            None => None,
            Some(_) => p.check(number(
                v,
                KEYFLIP_MAX_ROTATIONS_PER_SWEEP,
                1,
                1..=100_000,
                "rotations",
            )),
        };
        let sweep_mode = p.check(parse_sweep_mode(v)).unwrap_or_default();
        let storage = match lease {
            LeaseMode::Storage => p.check(parse_storage(vars)),
            LeaseMode::InProcess => None,
        };
        p.finish()?;
        // Always present once no problem was found; the branch only avoids an unwrap.
        let Some(arm_endpoint) = arm_endpoint else {
            return Err(invalid(KEYFLIP_ARM_ENDPOINT, "", "no value", "an https URL"));
        };
        Ok(Self {
            vaults,
            allowed_scopes,
            sweep_schedule,
            lead_days,
            dwell,
            event_budget,
            pending_timeout,
            concurrency,
            sweep_budget,
            manual_budget,
            managed_identity_client_id,
            arm_endpoint,
            ca_bundle,
            connect_to,
            allowed_hosts,
            website_hostname,
            max_invocations,
            port,
            lease,
            paused,
            max_rotations_per_sweep,
            sweep_mode,
            storage,
        })
    }

    /// [`Settings::from_vars`] on the process environment (values that are not UTF-8 are
    /// read lossily, so they fail validation instead of silently counting as unset).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&env_vars())
    }

    /// The rotation engine's part; the verify back-off keeps [`EngineSettings`]' defaults.
    pub fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            vaults: self.vaults.iter().map(|v| v.name.clone()).collect(),
            allowed_scopes: self.allowed_scopes.clone(),
            lead_days: self.lead_days,
            dwell: self.dwell,
            pending_timeout: self.pending_timeout,
            concurrency: self.concurrency,
            paused: self.paused,
            max_rotations_per_sweep: self.max_rotations_per_sweep,
            ..EngineSettings::default()
        }
    }

    /// The shared HTTP client's part (default timeouts).
    pub fn transport_settings(&self) -> TransportSettings {
        TransportSettings {
            ca_bundle: self.ca_bundle.clone(),
            connect_to: self.connect_to.clone(),
            ..TransportSettings::default()
        }
    }

    /// The token scope of Resource Manager: `<endpoint>/.default`.
    pub fn arm_token_scope(&self) -> String {
        format!("{}/.default", self.arm_endpoint.as_str().trim_end_matches('/'))
    }

    /// The endpoint of a served vault.
    pub fn vault(&self, name: &VaultName) -> Option<&VaultEndpoint> {
        self.vaults.iter().find(|v| &v.name == name)
    }

    /// `KEYFLIP_*` variables this version does not know (typos, retired names), sorted: worth
    /// a warning at start-up, since they are otherwise silently ignored.
    pub fn unrecognized(vars: &HashMap<String, String>) -> Vec<String> {
        let mut unknown: Vec<String> = vars
            .keys()
            .filter(|k| k.starts_with("KEYFLIP_") && !KEYFLIP_SETTINGS.contains(&k.as_str()))
            .cloned()
            .collect();
        unknown.sort();
        unknown
    }
}

/// The process environment as a map.
pub fn env_vars() -> HashMap<String, String> {
    std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect()
}

/// The non-empty items of a comma-separated list.
fn items(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|item| !item.is_empty())
}

// ---- KEYFLIP_VAULTS ----------------------------------------------------------------------

const VAULTS_EXPECTED: &str = "comma-separated vault names (kv-prod-01) or name=https://url pairs";

fn parse_vaults(v: Vars<'_>) -> Result<Vec<VaultEndpoint>, ConfigError> {
    let raw = v.required(KEYFLIP_VAULTS, VAULTS_EXPECTED)?;
    let mut vaults: Vec<VaultEndpoint> = Vec::new();
    for item in items(raw) {
        let vault = parse_vault(item)?;
        if vaults.iter().any(|known| known.name == vault.name) {
            return Err(invalid(
                KEYFLIP_VAULTS,
                item,
                format!("vault '{}' is listed twice", vault.name),
                VAULTS_EXPECTED,
            ));
        }
        // Two names for one vault would let a scope bound to one name apply to the other's
        // secrets, and make every secret a duplicate of itself.
        if let Some(known) = vaults.iter().find(|known| same_vault_url(&known.url, &vault.url)) {
            return Err(invalid(
                KEYFLIP_VAULTS,
                item,
                format!("it names the same vault URL as '{}'", known.name),
                VAULTS_EXPECTED,
            ));
        }
        vaults.push(vault);
    }
    if vaults.is_empty() {
        return Err(invalid(KEYFLIP_VAULTS, raw, "it names no vault", VAULTS_EXPECTED));
    }
    Ok(vaults)
}

/// Whether two vault URLs reach the same vault (host and path compared ignoring case and a
/// trailing `/`).
fn same_vault_url(a: &Url, b: &Url) -> bool {
    let key = |u: &Url| {
        format!(
            "{}:{}{}",
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or_default(),
            u.path().trim_end_matches('/')
        )
        .to_ascii_lowercase()
    };
    key(a) == key(b)
}

fn parse_vault(item: &str) -> Result<VaultEndpoint, ConfigError> {
    let (raw_name, url) = match item.split_once('=') {
        Some((name, url)) => (name.trim(), Some(url.trim())),
        None => (item, None),
    };
    // Only the name is quoted: the rest of the item may be a URL with credentials in it.
    let name =
        VaultName::parse(raw_name).map_err(|e| invalid(KEYFLIP_VAULTS, raw_name, e, VAULTS_EXPECTED))?;
    let url = match url {
        Some(url) => https_url(url).map_err(|e| {
            let expected = "name=https://<host>/ pairs (no path, query or credentials)";
            invalid(
                KEYFLIP_VAULTS,
                &format!("{raw_name}={}", e.shown),
                e.problem,
                expected,
            )
        })?,
        None => default_vault_url(&name)?,
    };
    Ok(VaultEndpoint { name, url })
}

fn default_vault_url(name: &VaultName) -> Result<Url, ConfigError> {
    let url = format!("https://{name}.vault.azure.net/");
    Url::parse(&url).map_err(|e| invalid(KEYFLIP_VAULTS, name.as_str(), e, VAULTS_EXPECTED))
}

/// Why a URL setting was refused, with the value as it may be shown (password masked).
#[derive(Debug)]
struct UrlProblem {
    shown: String,
    problem: String,
}

/// An `https://host[:port]/` URL: no credentials, path, query or fragment.
fn https_url(raw: &str) -> Result<Url, UrlProblem> {
    let url = Url::parse(raw).map_err(|e| UrlProblem {
        shown: raw.to_string(),
        problem: format!("not a URL ({e})"),
    })?;
    let problem = if url.scheme() != "https" {
        Some("only https is allowed (every Azure call carries a bearer token)")
    } else if url.host_str().is_none_or(str::is_empty) {
        Some("it has no host")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("credentials do not belong in the URL")
    } else if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        Some("it has a path, query or fragment")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(UrlProblem {
            shown: if url.password().is_some() {
                masked(&url)
            } else {
                raw.to_string()
            },
            problem: problem.to_string(),
        }),
        None => Ok(url),
    }
}

/// The URL as it may be shown: any password replaced.
fn masked(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

// ---- KEYFLIP_ALLOWED_SCOPES --------------------------------------------------------------

const SCOPES_EXPECTED: &str = "comma-separated ARM scopes: /subscriptions/<subscription GUID>, \
     /subscriptions/<GUID>/resourceGroups/<group>, or a resource id; an item vault=<scope> applies \
     to that vault's secrets only";

/// Every item of `KEYFLIP_ALLOWED_SCOPES`; a `vault=` must name a vault of `vaults`.
fn parse_scopes(v: Vars<'_>, vaults: &[VaultEndpoint]) -> Result<AllowedScopes, ConfigError> {
    let raw = v.required(KEYFLIP_ALLOWED_SCOPES, SCOPES_EXPECTED)?;
    let scopes = items(raw)
        .map(|item| {
            parse_allowed_scope(item, vaults)
                .map_err(|problem| invalid(KEYFLIP_ALLOWED_SCOPES, item, problem, SCOPES_EXPECTED))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if scopes.is_empty() {
        return Err(invalid(
            KEYFLIP_ALLOWED_SCOPES,
            raw,
            "it names no scope",
            SCOPES_EXPECTED,
        ));
    }
    Ok(AllowedScopes(scopes))
}

/// `scope` or `vault=scope`; the problem otherwise.
fn parse_allowed_scope(item: &str, vaults: &[VaultEndpoint]) -> Result<AllowedScope, String> {
    let (vault, scope) = match item.split_once('=') {
        Some((vault, scope)) if !vault.trim_start().starts_with('/') => (Some(vault.trim()), scope.trim()),
        _ => (None, item),
    };
    let vault = vault
        .map(|name| {
            let vault = VaultName::parse(name).map_err(|e| e.to_string())?;
            // With no valid vault list there is nothing to compare to (its own error says so).
            if !vaults.is_empty() && !vaults.iter().any(|v| v.name == vault) {
                return Err(format!(
                    "vault '{vault}' is not one of {KEYFLIP_VAULTS}: add it there or fix the name"
                ));
            }
            Ok(vault)
        })
        .transpose()?;
    Ok(AllowedScope {
        vault,
        scope: parse_scope(scope)?,
    })
}

/// One scope; the problem otherwise.
fn parse_scope(raw: &str) -> Result<Scope, String> {
    let scope = Scope::parse(raw).map_err(|e| e.reason)?;
    if !is_guid(scope.subscription_id()) {
        return Err(format!(
            "subscription id '{}' is not a GUID",
            crate::domain::untrusted::echo(scope.subscription_id())
        ));
    }
    let group = match &scope {
        Scope::Subscription(_) => None,
        Scope::ResourceGroup { resource_group, .. } => Some(resource_group.as_str()),
        Scope::Resource(id) => Some(id.resource_group()),
    };
    if group.is_some_and(|rg| !is_resource_group(rg)) {
        return Err("the resource group name is invalid".into());
    }
    Ok(scope)
}

/// Resource group names: 1-90 letters, digits, `_`, `-`, `.`, `(`, `)`; not ending with `.`.
fn is_resource_group(name: &str) -> bool {
    (1..=90).contains(&name.chars().count())
        && name.chars().all(|c| c.is_alphanumeric() || "_-.()".contains(c))
        && !name.ends_with('.')
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hexadecimal.
fn is_guid(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

// ---- KEYFLIP_SWEEP_SCHEDULE --------------------------------------------------------------

const SCHEDULE_EXPECTED: &str = "an NCRONTAB expression of 6 fields '{second} {minute} {hour} {day} {month} \
     {day-of-week}' (or 5, without seconds), e.g. '0 0 * * * *' for hourly";

/// One NCRONTAB field: its name, its range, and the names it accepts.
struct CronField {
    name: &'static str,
    range: RangeInclusive<u32>,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAYS: &[&str] = &[
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

const CRON_FIELDS: [CronField; 6] = [
    CronField {
        name: "second",
        range: 0..=59,
        names: &[],
    },
    CronField {
        name: "minute",
        range: 0..=59,
        names: &[],
    },
    CronField {
        name: "hour",
        range: 0..=23,
        names: &[],
    },
    CronField {
        name: "day",
        range: 1..=31,
        names: &[],
    },
    CronField {
        name: "month",
        range: 1..=12,
        names: MONTHS,
    },
    CronField {
        name: "day-of-week",
        range: 0..=6,
        names: DAYS,
    },
];

fn parse_schedule(v: Vars<'_>) -> Result<String, ConfigError> {
    let Some(raw) = v.get(KEYFLIP_SWEEP_SCHEDULE) else {
        return Ok(DEFAULT_SWEEP_SCHEDULE.to_string());
    };
    validate_schedule(raw)
        .map_err(|problem| invalid(KEYFLIP_SWEEP_SCHEDULE, raw, problem, SCHEDULE_EXPECTED))?;
    Ok(raw.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn validate_schedule(raw: &str) -> Result<(), String> {
    let fields: Vec<&str> = raw.split_whitespace().collect();
    let kinds = match fields.len() {
        6 => &CRON_FIELDS[..],
        5 => &CRON_FIELDS[1..],
        n => return Err(format!("it has {n} fields")),
    };
    fields
        .iter()
        .zip(kinds)
        .try_for_each(|(text, kind)| validate_cron_field(text, kind))
}

fn validate_cron_field(text: &str, field: &CronField) -> Result<(), String> {
    let bad = |why: &str| format!("{} field '{text}' {why}", field.name);
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        if step.is_some_and(|s| s.parse::<u32>().map_or(true, |s| s == 0)) {
            return Err(bad("has a step that is not a positive number"));
        }
        if range == "*" {
            continue;
        }
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let first = cron_value(first, field).ok_or_else(|| bad(&out_of_range(field)))?;
        let last = cron_value(last, field).ok_or_else(|| bad(&out_of_range(field)))?;
        if first > last {
            return Err(bad("has a range that runs backwards"));
        }
    }
    Ok(())
}

fn out_of_range(field: &CronField) -> String {
    let names = if field.names.is_empty() { "" } else { " or a name" };
    format!(
        "is not *, a number from {} to {}{names}, a range a-b or a step */n",
        field.range.start(),
        field.range.end()
    )
}

/// A number in the field's range, or a name (3 letters or more of one, any case).
fn cron_value(text: &str, field: &CronField) -> Option<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return field.range.contains(&n).then_some(n);
    }
    let text = text.to_ascii_lowercase();
    let index = field
        .names
        .iter()
        .position(|name| text.len() >= 3 && name.starts_with(&text))?;
    let index = u32::try_from(index).ok()?;
    Some(field.range.start() + index)
}

// ---- numbers, durations ------------------------------------------------------------------

/// A whole number in `range`, or `default` when unset.
fn number<T>(
    v: Vars<'_>,
    setting: &'static str,
    default: T,
    range: RangeInclusive<T>,
    unit: &str,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = v.get(setting) else {
        return Ok(default);
    };
    let expected = format!(
        "a whole number of {unit} from {} to {} (default {default})",
        range.start(),
        range.end()
    );
    let value: T = raw
        .parse()
        .map_err(|_| invalid(setting, raw, "not a whole number", &expected))?;
    if !range.contains(&value) {
        return Err(invalid(
            setting,
            raw,
            "out of range",
            with_reason(setting, &expected),
        ));
    }
    Ok(value)
}

/// Why a range is what it is, where a platform limit sets it.
fn with_reason(setting: &str, expected: &str) -> String {
    let reason = match setting {
        KEYFLIP_EVENT_BUDGET_SECONDS => "; Event Grid waits 30 s for an answer",
        KEYFLIP_MANUAL_BUDGET_SECONDS => "; the Functions front end cuts HTTP calls at 230 s",
        _ => "",
    };
    format!("{expected}{reason}")
}

fn seconds(
    v: Vars<'_>,
    setting: &'static str,
    default: u64,
    range: RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    number(v, setting, default, range, "seconds").map(Duration::from_secs)
}

/// A number of hours in `range`, fractions allowed (`0.01` is 36 s: short dwells and pending
/// timeouts for soak tests): digits with at most one `.` and up to four decimals.
fn hours(
    v: Vars<'_>,
    setting: &'static str,
    default: f64,
    range: RangeInclusive<f64>,
) -> Result<Duration, ConfigError> {
    let expected = format!(
        "a number of hours from {} to {} (default {default}), fractions allowed, e.g. 0.5",
        range.start(),
        range.end()
    );
    let Some(raw) = v.get(setting) else {
        return Ok(Duration::from_secs_f64(default * HOUR as f64));
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = match raw.split_once('.') {
        None => (1..=6).contains(&raw.len()) && digits(raw),
        Some((whole, fraction)) => {
            (1..=6).contains(&whole.len())
                && digits(whole)
                && (1..=4).contains(&fraction.len())
                && digits(fraction)
        }
    };
    let value: f64 = match raw.parse() {
        Ok(value) if well_formed => value,
        _ => return Err(invalid(setting, raw, "not a number of hours", &expected)),
    };
    if !range.contains(&value) {
        return Err(invalid(setting, raw, "out of range", &expected));
    }
    Duration::try_from_secs_f64(value * HOUR as f64)
        .map_err(|_| invalid(setting, raw, "not a duration", &expected))
}

// ---- the rest ----------------------------------------------------------------------------

fn parse_client_id(v: Vars<'_>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = v.get(KEYFLIP_MANAGED_IDENTITY_CLIENT_ID) else {
        return Ok(None);
    };
    if !is_guid(raw) {
        let expected =
            "the client id (a GUID) of the user-assigned managed identity, not its name or resource id";
        return Err(invalid(
            KEYFLIP_MANAGED_IDENTITY_CLIENT_ID,
            raw,
            "not a GUID",
            expected,
        ));
    }
    Ok(Some(raw.to_ascii_lowercase()))
}

fn parse_arm_endpoint(v: Vars<'_>) -> Result<Url, ConfigError> {
    let raw = v.get(KEYFLIP_ARM_ENDPOINT).unwrap_or(DEFAULT_ARM_ENDPOINT);
    https_url(raw).map_err(|e| {
        let expected = "the https URL of Resource Manager, e.g. https://management.usgovcloudapi.net \
                        (default https://management.azure.com)";
        invalid(KEYFLIP_ARM_ENDPOINT, &e.shown, e.problem, expected)
    })
}

fn parse_ca_bundle(v: Vars<'_>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(raw) = v.get(KEYFLIP_CA_BUNDLE) else {
        return Ok(None);
    };
    let path = PathBuf::from(raw);
    load_ca_bundle(&path).map_err(|source| ConfigError::CaBundle {
        setting: KEYFLIP_CA_BUNDLE,
        path: path.clone(),
        source,
    })?;
    Ok(Some(path))
}

fn parse_connect_to(v: Vars<'_>) -> Result<Vec<ConnectTo>, ConfigError> {
    let Some(raw) = v.get(KEYFLIP_CONNECT_TO) else {
        return Ok(Vec::new());
    };
    ConnectTo::parse_list(raw).map_err(|e| {
        let expected = "comma-separated host=ip:port pairs; host may be *.suffix for every subdomain \
                        (e.g. *.vault.azure.net=127.0.0.1:8443)";
        invalid(KEYFLIP_CONNECT_TO, raw, e, expected)
    })
}

// ---- KEYFLIP_ALLOWED_HOSTS, WEBSITE_HOSTNAME ----------------------------------------------

const HOSTS_EXPECTED: &str = "comma-separated host names without scheme, port or path \
     (e.g. keyflip.contoso.com), the names callers use to reach this app besides loopback and \
     WEBSITE_HOSTNAME";

fn parse_allowed_hosts(v: Vars<'_>) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = v.get(KEYFLIP_ALLOWED_HOSTS) else {
        return Ok(Vec::new());
    };
    items(raw)
        .map(|item| {
            host_name(item).map_err(|problem| invalid(KEYFLIP_ALLOWED_HOSTS, item, problem, HOSTS_EXPECTED))
        })
        .collect()
}

/// The platform's value may carry a port (Core Tools: `localhost:7071`); it is dropped.
fn parse_website_hostname(v: Vars<'_>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = v.get(WEBSITE_HOSTNAME) else {
        return Ok(None);
    };
    let name = match raw.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => raw,
    };
    host_name(name).map(Some).map_err(|problem| {
        invalid(
            WEBSITE_HOSTNAME,
            raw,
            problem,
            "the app's host name, as App Service sets it",
        )
    })
}

/// A DNS host name (or IPv4 address), lower-cased, one trailing dot dropped: labels of 1-63
/// ASCII letters, digits and hyphens, not starting or ending with a hyphen; 253 characters at
/// most.
fn host_name(raw: &str) -> Result<String, String> {
    if raw.contains("://") {
        return Err("it has a scheme".into());
    }
    if raw.contains(':') {
        return Err("it has a port (ports are ignored when host names are compared)".into());
    }
    if raw.contains('*') {
        return Err("wildcards are not supported: list each name".into());
    }
    let name = raw.strip_suffix('.').unwrap_or(raw);
    if name.is_empty() || name.len() > 253 {
        return Err("a host name has 1 to 253 characters".into());
    }
    for label in name.split('.') {
        if let Some(c) = label.chars().find(|c| !c.is_ascii_alphanumeric() && *c != '-') {
            return Err(format!("'{}' is not allowed in a host name", c.escape_default()));
        }
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "label '{label}' must have 1 to 63 letters, digits or hyphens, not starting or ending with a hyphen"
            ));
        }
    }
    Ok(name.to_ascii_lowercase())
}

fn parse_port(v: Vars<'_>) -> Result<Option<u16>, ConfigError> {
    if v.get(FUNCTIONS_CUSTOMHANDLER_PORT).is_none() {
        return Ok(None);
    }
    number(v, FUNCTIONS_CUSTOMHANDLER_PORT, 0, 1..=u16::MAX, "port").map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-1111-2222-3333-444444444444";

    /// The two required settings, valid.
    fn base() -> HashMap<String, String> {
        HashMap::from([
            (KEYFLIP_VAULTS.to_string(), "kv1".to_string()),
            (
                KEYFLIP_ALLOWED_SCOPES.to_string(),
                format!("/subscriptions/{SUB}"),
            ),
            (
                AZURE_WEBJOBS_STORAGE.to_string(),
                "UseDevelopmentStorage=true".to_string(),
            ),
        ])
    }

    #[test]
    fn the_sweep_mode_is_single_unless_queue_is_asked_for() {
        assert_eq!(ok(&[]).sweep_mode, SweepMode::Single);
        assert_eq!(ok(&[(KEYFLIP_SWEEP_MODE, "Queue")]).sweep_mode, SweepMode::Queue);
        assert_eq!(
            ok(&[(KEYFLIP_SWEEP_MODE, "single")]).sweep_mode,
            SweepMode::Single
        );
        let bad = err(&[(KEYFLIP_SWEEP_MODE, "fan-out")]);
        assert_eq!(bad.setting(), KEYFLIP_SWEEP_MODE, "{bad}");
        assert!(
            bad.to_string().contains("single") && bad.to_string().contains("queue"),
            "{bad}"
        );
    }

    #[test]
    fn the_lease_storage_is_required_unless_the_lease_is_in_process() {
        let mut vars = base();
        vars.remove(AZURE_WEBJOBS_STORAGE);
        let e = Settings::from_vars(&vars).unwrap_err();
        assert_eq!(e.setting(), AZURE_WEBJOBS_STORAGE, "{e}");
        assert!(e.to_string().contains("KEYFLIP_LEASE=in-process"), "{e}");
        vars.insert(KEYFLIP_LEASE.into(), "in-process".into());
        assert!(Settings::from_vars(&vars).unwrap().storage.is_none());
        let identity = ok(&[
            (AZURE_WEBJOBS_STORAGE, ""),
            ("AzureWebJobsStorage__accountName", "mystorage"),
        ]);
        assert_eq!(
            identity.storage.unwrap().blob_endpoint.as_str(),
            "https://mystorage.blob.core.windows.net/"
        );
        let bad = err(&[(AZURE_WEBJOBS_STORAGE, "AccountName=x")]);
        assert_eq!(bad.setting(), AZURE_WEBJOBS_STORAGE, "{bad}");
        let in_azure = err(&[(WEBSITE_INSTANCE_ID, "abc123")]);
        assert!(in_azure.to_string().contains("runs in Azure"), "{in_azure}");
    }

    fn with(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars = base();
        vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars
    }

    fn ok(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_vars(&with(pairs)).unwrap()
    }

    /// The single error for these settings; it must name the setting.
    fn err(pairs: &[(&str, &str)]) -> ConfigError {
        let e = Settings::from_vars(&with(pairs)).unwrap_err();
        assert_eq!(e.problems().len(), 1, "{e}");
        assert!(e.to_string().starts_with(e.setting()), "{e}");
        e
    }

    /// Every value is refused with an error naming `setting` and quoting the value.
    fn refuses(setting: &'static str, values: &[&str]) {
        for value in values {
            let e = err(&[(setting, value)]);
            assert_eq!(e.setting(), setting, "{value}: {e}");
            assert!(
                e.to_string().contains(&format!("{setting}='{}'", value.trim())),
                "{e}"
            );
            assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
        }
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "keyflip-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn defaults_apply_when_only_the_required_settings_are_given() {
        let s = ok(&[]);
        assert_eq!(s.sweep_schedule, "0 0 * * * *");
        assert_eq!(s.lead_days, 30);
        assert_eq!(s.dwell, Duration::from_secs(24 * 3600));
        assert_eq!(s.event_budget, Duration::from_secs(20));
        assert_eq!(s.pending_timeout, Duration::from_secs(6 * 3600));
        assert_eq!(s.concurrency, 64);
        assert_eq!(s.sweep_budget, Duration::from_secs(240));
        assert_eq!(s.manual_budget, Duration::from_secs(60));
        assert_eq!(s.managed_identity_client_id, None);
        assert_eq!(s.arm_endpoint.as_str(), "https://management.azure.com/");
        assert_eq!(s.arm_token_scope(), "https://management.azure.com/.default");
        assert_eq!(s.ca_bundle, None);
        assert!(s.connect_to.is_empty());
        assert_eq!(s.port, None);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let mut vars = base();
        for name in KEYFLIP_SETTINGS.iter().chain([&FUNCTIONS_CUSTOMHANDLER_PORT]) {
            if ![KEYFLIP_VAULTS, KEYFLIP_ALLOWED_SCOPES].contains(name) {
                vars.insert(name.to_string(), "  ".to_string());
            }
        }
        let s = Settings::from_vars(&vars).unwrap();
        assert_eq!((s.lead_days, s.concurrency, s.port), (30, 64, None));
        assert_eq!(s.sweep_schedule, DEFAULT_SWEEP_SCHEDULE);
    }

    #[test]
    fn local_only_and_defaulted_settings_are_read_and_disjoint() {
        for name in LOCAL_ONLY_SETTINGS.iter().chain(DEFAULTED_SETTINGS) {
            assert!(KEYFLIP_SETTINGS.contains(name), "{name} is not read by keyflip");
        }
        for name in LOCAL_ONLY_SETTINGS {
            assert!(!DEFAULTED_SETTINGS.contains(name), "{name} is on both lists");
        }
        // The two required settings can be neither.
        for name in [KEYFLIP_VAULTS, KEYFLIP_ALLOWED_SCOPES] {
            assert!(!LOCAL_ONLY_SETTINGS.contains(&name) && !DEFAULTED_SETTINGS.contains(&name));
        }
    }

    // ---- required settings ----

    #[test]
    fn both_required_settings_missing_are_named_together() {
        let e = Settings::from_vars(&HashMap::new()).unwrap_err();
        let names: Vec<_> = e.problems().iter().map(|p| p.setting()).collect();
        assert_eq!(
            names,
            [KEYFLIP_VAULTS, KEYFLIP_ALLOWED_SCOPES, AZURE_WEBJOBS_STORAGE]
        );
        let text = e.to_string();
        assert!(
            text.starts_with("3 settings are invalid:\n  - KEYFLIP_VAULTS is not set"),
            "{text}"
        );
        assert!(text.contains("\n  - KEYFLIP_ALLOWED_SCOPES is not set"), "{text}");
    }

    #[test]
    fn a_missing_or_empty_required_setting_is_named() {
        for name in [KEYFLIP_VAULTS, KEYFLIP_ALLOWED_SCOPES] {
            let mut vars = base();
            vars.remove(name);
            let e = Settings::from_vars(&vars).unwrap_err();
            assert!(
                matches!(e, ConfigError::Missing { setting, .. } if setting == name),
                "{e}"
            );
            vars.insert(name.to_string(), "".to_string());
            let e = Settings::from_vars(&vars).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("{name} is not set; expected ")),
                "{e}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = Settings::from_vars(&with(&[
            (KEYFLIP_LEAD_DAYS, "x"),
            (KEYFLIP_CONCURRENCY, "0"),
            (KEYFLIP_CONNECT_TO, "y"),
        ]))
        .unwrap_err();
        let names: Vec<_> = e.problems().iter().map(|p| p.setting()).collect();
        assert_eq!(
            names,
            [KEYFLIP_LEAD_DAYS, KEYFLIP_CONCURRENCY, KEYFLIP_CONNECT_TO]
        );
    }

    // ---- KEYFLIP_VAULTS ----

    #[test]
    fn vault_names_map_to_public_cloud_urls() {
        let s = ok(&[(KEYFLIP_VAULTS, " KV-Prod-01, kv2 ,")]);
        let urls: Vec<_> = s
            .vaults
            .iter()
            .map(|v| (v.name.as_str(), v.url.as_str()))
            .collect();
        assert_eq!(
            urls,
            [
                ("kv-prod-01", "https://kv-prod-01.vault.azure.net/"),
                ("kv2", "https://kv2.vault.azure.net/")
            ]
        );
        assert!(s.vault(&VaultName::parse("kv2").unwrap()).is_some());
        assert!(s.vault(&VaultName::parse("kv3").unwrap()).is_none());
    }

    #[test]
    fn vaults_may_name_their_url() {
        let s = ok(&[(
            KEYFLIP_VAULTS,
            "kv1=https://kv1.vault.azure.cn,kv2 = https://kv2.vault.azure.net:8443/",
        )]);
        assert_eq!(s.vaults[0].url.as_str(), "https://kv1.vault.azure.cn/");
        assert_eq!(s.vaults[1].url.as_str(), "https://kv2.vault.azure.net:8443/");
    }

    #[test]
    fn bad_vault_lists_are_refused() {
        for value in [
            ",",
            "kv",
            "kv_1",
            "1kv",
            "kv1,KV1",
            "kv1=http://kv1.vault.azure.net",
            "kv1=kv1.vault.azure.net",
        ] {
            let e = err(&[(KEYFLIP_VAULTS, value)]);
            assert_eq!(e.setting(), KEYFLIP_VAULTS, "{e}");
        }
        refuses(
            KEYFLIP_VAULTS,
            &[
                "kv1=https://kv1.vault.azure.net/secrets",
                "kv1=https://kv1.vault.azure.net/?x=1",
                "kv1=https:///",
            ],
        );
        assert!(
            err(&[(KEYFLIP_VAULTS, "kv1,kv1")])
                .to_string()
                .contains("listed twice")
        );
        assert!(
            err(&[(KEYFLIP_VAULTS, "kv1=http://kv1.vault.azure.net")])
                .to_string()
                .contains("only https")
        );
    }

    #[test]
    fn passwords_in_vault_urls_are_not_echoed() {
        let e = err(&[(KEYFLIP_VAULTS, "kv1=https://user:hunter2@kv1.vault.azure.net/")]);
        let text = format!("{e} {e:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("'kv1=https://user:***@kv1.vault.azure.net/'"),
            "{text}"
        );
        assert!(text.contains("credentials do not belong in the URL"), "{text}");
        let e = err(&[(KEYFLIP_VAULTS, "kv_1=https://user:hunter2@kv1.vault.azure.net/")]);
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
    }

    // ---- KEYFLIP_ALLOWED_SCOPES ----

    #[test]
    fn scopes_may_be_subscriptions_groups_or_resources() {
        let rg = format!("/subscriptions/{SUB}/resourceGroups/rg-ai.prod(1)/");
        let id = format!(
            "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a"
        );
        let s = ok(&[(
            KEYFLIP_ALLOWED_SCOPES,
            &format!("/subscriptions/{SUB} , {rg},{id}"),
        )]);
        let shown: Vec<String> = s.allowed_scopes.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                format!("/subscriptions/{SUB}"),
                format!("/subscriptions/{SUB}/resourceGroups/rg-ai.prod(1)"),
                id
            ]
        );
        assert!(s.allowed_scopes.0.iter().all(|item| item.vault.is_none()));
        ok(&[(
            KEYFLIP_ALLOWED_SCOPES,
            &format!("/Subscriptions/{}/resourcegroups/RG", SUB.to_uppercase()),
        )]);
    }

    #[test]
    fn bad_scopes_are_refused() {
        refuses(
            KEYFLIP_ALLOWED_SCOPES,
            &[
                SUB,
                "/subscriptions",
                "/subscriptions/my-subscription",
                "/tenants/x",
                &format!("/subscriptions/{SUB}/resourceGroups"),
                &format!("/subscriptions/{SUB}/resourceGroups/"),
                &format!("/subscriptions/{SUB}/resourceGroups/rg."),
                &format!("/subscriptions/{SUB}/providers/Microsoft.Foo"),
                &format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Foo"),
                &format!("/subscriptions/{SUB}//resourceGroups/rg"),
                &format!("/subscriptions/{SUB}/resourceGroups/r\\g"),
                &format!("/subscriptions/{SUB}/resourceGroups/rg/providers/N/t/x%2f..%2f..%2fy"),
                &format!("=/subscriptions/{SUB}"),
                &format!("not_a_vault=/subscriptions/{SUB}"),
            ],
        );
        let e = err(&[(KEYFLIP_ALLOWED_SCOPES, "/subscriptions/prod")]);
        assert!(
            e.to_string().contains("subscription id 'prod' is not a GUID"),
            "{e}"
        );
        assert_eq!(
            err(&[(KEYFLIP_ALLOWED_SCOPES, " , ")]).setting(),
            KEYFLIP_ALLOWED_SCOPES
        );
    }

    #[test]
    fn two_names_for_one_vault_url_are_refused() {
        let e = err(&[(
            KEYFLIP_VAULTS,
            "kv-team-a,alias=https://KV-TEAM-A.vault.azure.net/",
        )]);
        assert_eq!(e.setting(), KEYFLIP_VAULTS);
        assert!(e.to_string().contains("same vault URL as 'kv-team-a'"), "{e}");
    }

    #[test]
    fn a_scope_may_be_bound_to_one_served_vault() {
        let s = ok(&[
            (KEYFLIP_VAULTS, "kv-team-a,kv-team-b"),
            (
                KEYFLIP_ALLOWED_SCOPES,
                &format!(
                    "kv-team-a=/subscriptions/{SUB}/resourceGroups/rg-a, KV-Team-B = /subscriptions/{SUB}"
                ),
            ),
        ]);
        let items = &s.allowed_scopes.0;
        assert_eq!(items[0].vault.as_ref().map(|v| v.as_str()), Some("kv-team-a"));
        assert_eq!(
            items[0].scope.to_string(),
            format!("/subscriptions/{SUB}/resourceGroups/rg-a")
        );
        assert_eq!(items[1].vault.as_ref().map(|v| v.as_str()), Some("kv-team-b"));
    }

    #[test]
    fn a_vault_bound_scope_must_name_a_served_vault() {
        let e = err(&[
            (KEYFLIP_VAULTS, "kv-team-a"),
            (KEYFLIP_ALLOWED_SCOPES, &format!("kv-team-c=/subscriptions/{SUB}")),
        ]);
        assert_eq!(e.setting(), KEYFLIP_ALLOWED_SCOPES);
        let shown = e.to_string();
        assert!(
            shown.contains("kv-team-c") && shown.contains("KEYFLIP_VAULTS"),
            "{shown}"
        );
    }

    // ---- KEYFLIP_SWEEP_SCHEDULE ----

    #[test]
    fn ncrontab_schedules_of_six_or_five_fields_are_accepted() {
        for schedule in [
            "0 */5 * * * *",
            "0 30 9 * * 1-5",
            "0 0 0 1,15 * *",
            "0 0 12 * Jan-Mar mon,WED,Friday",
            "*/30 * * * * *",
            "0 0 * * *",
        ] {
            assert_eq!(ok(&[(KEYFLIP_SWEEP_SCHEDULE, schedule)]).sweep_schedule, schedule);
        }
        assert_eq!(
            ok(&[(KEYFLIP_SWEEP_SCHEDULE, "  0  0 * * * * ")]).sweep_schedule,
            "0 0 * * * *"
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        refuses(
            KEYFLIP_SWEEP_SCHEDULE,
            &[
                "hourly",
                "0 0 * * * * *",
                "00:05:00",
                "60 * * * * *",
                "0 0 24 * * *",
                "0 0 0 0 * *",
                "0 0 0 * 13 *",
                "0 0 0 * * 7",
                "0 */0 * * * *",
                "0 5-1 * * * *",
                "0 0 0 * * Mo",
                "0 0 0 * * funday",
                "0 0 0 ? * *",
                "0 0 0 * * 1;2",
            ],
        );
        let e = err(&[(KEYFLIP_SWEEP_SCHEDULE, "0 0 25 * * *")]);
        assert!(e.to_string().contains("hour field '25'"), "{e}");
        let e = err(&[(KEYFLIP_SWEEP_SCHEDULE, "0 0 *")]);
        assert!(e.to_string().contains("it has 3 fields"), "{e}");
    }

    // ---- numbers ----

    #[test]
    fn lead_dwell_and_pending_timeout_take_days_and_hours() {
        let s = ok(&[
            (KEYFLIP_LEAD_DAYS, "45"),
            (KEYFLIP_DWELL_HOURS, "0"),
            (KEYFLIP_PENDING_TIMEOUT_HOURS, "12"),
        ]);
        assert_eq!(s.lead_days, 45);
        assert_eq!(s.dwell, Duration::ZERO);
        assert_eq!(s.pending_timeout, Duration::from_secs(12 * 3600));
        refuses(KEYFLIP_LEAD_DAYS, &["0", "366", "-1", "30d", "1.5"]);
        refuses(
            KEYFLIP_DWELL_HOURS,
            &[
                "8761", "-1", "24h", "1e3", "0.00001", ".5", "5.", "NaN", "inf", "1,5", "+1",
            ],
        );
        refuses(KEYFLIP_PENDING_TIMEOUT_HOURS, &["0", "0.0001", "721", "six"]);
    }

    #[test]
    fn the_dwell_and_the_pending_timeout_take_fractions_of_an_hour() {
        let s = ok(&[
            (KEYFLIP_DWELL_HOURS, "0.01"),
            (KEYFLIP_PENDING_TIMEOUT_HOURS, "0.5"),
        ]);
        assert_eq!(s.dwell, Duration::from_secs(36));
        assert_eq!(s.pending_timeout, Duration::from_secs(1800));
        let s = ok(&[(KEYFLIP_DWELL_HOURS, "8760.0")]);
        assert_eq!(s.dwell, Duration::from_secs(8760 * 3600));
    }

    #[test]
    fn the_event_budget_stays_under_event_grid_s_30_seconds() {
        assert_eq!(
            ok(&[(KEYFLIP_EVENT_BUDGET_SECONDS, "29")]).event_budget,
            Duration::from_secs(29)
        );
        refuses(KEYFLIP_EVENT_BUDGET_SECONDS, &["30", "0", "20s"]);
        let e = err(&[(KEYFLIP_EVENT_BUDGET_SECONDS, "30")]);
        assert_eq!(
            e.to_string(),
            "KEYFLIP_EVENT_BUDGET_SECONDS='30' is invalid: out of range; expected a whole number of seconds \
             from 1 to 29 (default 20); Event Grid waits 30 s for an answer"
        );
    }

    #[test]
    fn paused_and_the_rotation_cap_are_off_unless_set() {
        let s = ok(&[]);
        assert_eq!((s.paused, s.max_rotations_per_sweep), (false, None));
        let s = ok(&[
            (KEYFLIP_PAUSED, " TRUE "),
            (KEYFLIP_MAX_ROTATIONS_PER_SWEEP, "25"),
        ]);
        assert_eq!((s.paused, s.max_rotations_per_sweep), (true, Some(25)));
        let engine = s.engine_settings();
        assert_eq!((engine.paused, engine.max_rotations_per_sweep), (true, Some(25)));
        assert!(!ok(&[(KEYFLIP_PAUSED, "false")]).paused);
        refuses(KEYFLIP_PAUSED, &["yes", "1", "paused"]);
        refuses(KEYFLIP_MAX_ROTATIONS_PER_SWEEP, &["0", "-1", "many", "100001"]);
    }

    #[test]
    fn the_manual_budget_stays_under_the_front_end_s_230_seconds() {
        assert_eq!(
            ok(&[(KEYFLIP_MANUAL_BUDGET_SECONDS, "229")]).manual_budget,
            Duration::from_secs(229)
        );
        refuses(KEYFLIP_MANUAL_BUDGET_SECONDS, &["230", "0", "one minute"]);
        assert!(
            err(&[(KEYFLIP_MANUAL_BUDGET_SECONDS, "230")])
                .to_string()
                .contains("230 s")
        );
    }

    #[test]
    fn the_sweep_budget_is_bounded() {
        assert_eq!(
            ok(&[(KEYFLIP_SWEEP_BUDGET_SECONDS, "600")]).sweep_budget,
            Duration::from_secs(600)
        );
        refuses(KEYFLIP_SWEEP_BUDGET_SECONDS, &["0", "3601", "4m"]);
    }

    #[test]
    fn concurrency_is_1_to_64() {
        assert_eq!(ok(&[(KEYFLIP_CONCURRENCY, "1")]).concurrency, 1);
        assert_eq!(ok(&[(KEYFLIP_CONCURRENCY, " 64 ")]).concurrency, 64);
        refuses(KEYFLIP_CONCURRENCY, &["0", "65", "many", "-8"]);
    }

    #[test]
    fn the_functions_port_is_a_port() {
        assert_eq!(ok(&[(FUNCTIONS_CUSTOMHANDLER_PORT, "7071")]).port, Some(7071));
        refuses(FUNCTIONS_CUSTOMHANDLER_PORT, &["0", "65536", "http"]);
    }

    // ---- the HTTP surface ----

    #[test]
    fn allowed_hosts_are_lower_cased_host_names() {
        let s = ok(&[(
            KEYFLIP_ALLOWED_HOSTS,
            " Keyflip.Contoso.com , api.internal.,10.0.0.5,",
        )]);
        assert_eq!(
            s.allowed_hosts,
            ["keyflip.contoso.com", "api.internal", "10.0.0.5"]
        );
        assert!(ok(&[]).allowed_hosts.is_empty());
        refuses(
            KEYFLIP_ALLOWED_HOSTS,
            &[
                "https://keyflip.contoso.com",
                "keyflip.contoso.com:443",
                "*.contoso.com",
                "keyflip.contoso.com/api",
                "a..b",
                "-a.com",
                "a_b.com",
                "ké.com",
                "[::1]",
            ],
        );
        let e = err(&[(KEYFLIP_ALLOWED_HOSTS, "ok.com,keyflip.contoso.com:443")]);
        assert!(e.to_string().contains("it has a port"), "{e}");
        assert!(e.to_string().contains("'keyflip.contoso.com:443'"), "{e}");
    }

    #[test]
    fn the_app_s_host_name_drops_its_port() {
        let s = ok(&[(WEBSITE_HOSTNAME, "MyApp.azurewebsites.net")]);
        assert_eq!(s.website_hostname.as_deref(), Some("myapp.azurewebsites.net"));
        let s = ok(&[(WEBSITE_HOSTNAME, "localhost:7071")]);
        assert_eq!(s.website_hostname.as_deref(), Some("localhost"));
        assert_eq!(ok(&[]).website_hostname, None);
        refuses(WEBSITE_HOSTNAME, &["my app", "https://x"]);
    }

    #[test]
    fn max_invocations_is_1_to_1024() {
        assert_eq!(ok(&[]).max_invocations, DEFAULT_MAX_INVOCATIONS);
        assert_eq!(ok(&[]).lease, LeaseMode::Storage);
        assert_eq!(ok(&[(KEYFLIP_LEASE, "In-Process")]).lease, LeaseMode::InProcess);
        assert_eq!(ok(&[(KEYFLIP_LEASE, "storage")]).lease, LeaseMode::Storage);
        refuses(KEYFLIP_LEASE, &["memory", "blob", "none"]);
        assert_eq!(ok(&[(KEYFLIP_MAX_INVOCATIONS, "1")]).max_invocations, 1);
        assert_eq!(ok(&[(KEYFLIP_MAX_INVOCATIONS, "1024")]).max_invocations, 1024);
        refuses(KEYFLIP_MAX_INVOCATIONS, &["0", "1025", "lots", "-1"]);
    }

    // ---- identity, endpoints, transport ----

    #[test]
    fn the_user_assigned_identity_is_a_client_id_guid() {
        let id = "AAAAAAAA-bbbb-cccc-dddd-eeeeeeeeeeee";
        let s = ok(&[(KEYFLIP_MANAGED_IDENTITY_CLIENT_ID, id)]);
        assert_eq!(
            s.managed_identity_client_id.as_deref(),
            Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
        );
        refuses(
            KEYFLIP_MANAGED_IDENTITY_CLIENT_ID,
            &[
                "id-keyflip",
                "aaaaaaaabbbbccccddddeeeeeeeeeeee",
                "{aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee}",
                "gggggggg-bbbb-cccc-dddd-eeeeeeeeeeee",
            ],
        );
    }

    #[test]
    fn the_arm_endpoint_follows_the_cloud_and_sets_the_token_scope() {
        let s = ok(&[(KEYFLIP_ARM_ENDPOINT, "https://management.usgovcloudapi.net/")]);
        assert_eq!(s.arm_endpoint.as_str(), "https://management.usgovcloudapi.net/");
        assert_eq!(
            s.arm_token_scope(),
            "https://management.usgovcloudapi.net/.default"
        );
        let s = ok(&[(KEYFLIP_ARM_ENDPOINT, "https://127.0.0.1:8443")]);
        assert_eq!(s.arm_token_scope(), "https://127.0.0.1:8443/.default");
        refuses(
            KEYFLIP_ARM_ENDPOINT,
            &[
                "http://management.azure.com",
                "management.azure.com",
                "https://management.azure.com/x",
                "ftp://x",
            ],
        );
    }

    #[test]
    fn the_ca_bundle_must_exist_and_hold_a_certificate() {
        let pki = emulator::tls::Pki::generate().unwrap();
        let good = temp_file("ca.pem", &pki.ca_pem);
        let s = ok(&[(KEYFLIP_CA_BUNDLE, good.to_str().unwrap())]);
        assert_eq!(s.ca_bundle.as_deref(), Some(good.as_path()));
        assert_eq!(s.transport_settings().ca_bundle, Some(good));

        let missing = std::env::temp_dir().join("keyflip-config-missing/none.pem");
        let no_pem = temp_file("none.pem", "hello\n");
        let broken = temp_file(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        for path in [missing, no_pem, broken] {
            let e = err(&[(KEYFLIP_CA_BUNDLE, path.to_str().unwrap())]);
            assert!(matches!(e, ConfigError::CaBundle { .. }), "{e}");
            let text = e.to_string();
            assert!(
                text.starts_with(&format!(
                    "KEYFLIP_CA_BUNDLE='{}' cannot be used: ",
                    path.display()
                )),
                "{text}"
            );
            assert!(
                text.ends_with("expected a PEM file holding at least one CA certificate"),
                "{text}"
            );
        }
    }

    #[test]
    fn connect_to_overrides_hosts_and_patterns() {
        let s = ok(&[(
            KEYFLIP_CONNECT_TO,
            "*.vault.azure.net=127.0.0.1:8443,management.azure.com=127.0.0.1:8443",
        )]);
        assert_eq!(s.connect_to.len(), 2);
        assert_eq!(
            s.connect_to[0].host_pattern,
            HostPattern::Subdomains("vault.azure.net".into())
        );
        assert_eq!(s.connect_to[1].addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(s.transport_settings().connect_to, s.connect_to);
        refuses(
            KEYFLIP_CONNECT_TO,
            &[
                "kv1.vault.azure.net",
                "a.net=127.0.0.1",
                "a.net=host:1",
                "*=127.0.0.1:1",
                "a.net=1.1.1.1:1,a.net=1.1.1.1:2",
            ],
        );
        let e = err(&[(KEYFLIP_CONNECT_TO, "a.net=127.0.0.1")]);
        assert!(
            e.to_string().contains("'127.0.0.1' is not an ip:port address"),
            "{e}"
        );
    }

    // ---- what the rest of keyflip gets ----

    #[test]
    fn the_engine_gets_its_settings_and_keeps_its_verify_defaults() {
        let s = ok(&[
            (KEYFLIP_VAULTS, "kv1,kv2"),
            (KEYFLIP_LEAD_DAYS, "40"),
            (KEYFLIP_DWELL_HOURS, "2"),
            (KEYFLIP_PENDING_TIMEOUT_HOURS, "3"),
            (KEYFLIP_CONCURRENCY, "4"),
        ]);
        let engine = s.engine_settings();
        let defaults = EngineSettings::default();
        let vaults: Vec<_> = engine.vaults.iter().map(VaultName::as_str).collect();
        assert_eq!(vaults, ["kv1", "kv2"]);
        assert_eq!(
            engine
                .allowed_scopes
                .0
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [format!("/subscriptions/{SUB}")]
        );
        assert_eq!(engine.lead_days, 40);
        assert_eq!(engine.dwell, Duration::from_secs(2 * 3600));
        assert_eq!(engine.pending_timeout, Duration::from_secs(3 * 3600));
        assert_eq!(engine.concurrency, 4);
        assert_eq!(engine.verify_initial_backoff, defaults.verify_initial_backoff);
        assert_eq!(engine.verify_max_backoff, defaults.verify_max_backoff);
    }

    #[test]
    fn unknown_keyflip_variables_are_listed_for_a_warning() {
        let vars = with(&[
            ("KEYFLIP_DWEL_HOURS", "1"),
            ("KEYFLIP_LEAD_DAYS", "3"),
            ("PATH", "/bin"),
        ]);
        assert_eq!(Settings::unrecognized(&vars), ["KEYFLIP_DWEL_HOURS"]);
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let long = "x".repeat(500);
        let e = err(&[(KEYFLIP_LEAD_DAYS, &long)]);
        assert!(e.to_string().len() < 300, "{e}");
    }
}
