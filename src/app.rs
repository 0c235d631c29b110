//! Start-up wiring, in one place: validated settings → one HTTP transport → a credential →
//! the Key Vault store and the providers → the engine → the server's state. `main` and the
//! integration tests use the same functions; they differ only in the credential and the clock
//! they pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};

use crate::azure::arm::ArmClient;
use crate::azure::credential::{CredentialError, build_credential, select_credential};
use crate::azure::limits::{AzureLimits, LimitedClient};
use crate::azure::transport::{
    LazyClient, TransportError, TransportSettings, build_http_client, retry_options,
};
use crate::clock::Clock;
use crate::config::{LeaseMode, Settings};
use crate::engine::{Engine, EngineSettings};
use crate::lease::Leases;
use crate::lease::blob::BlobLeases;
use crate::lease::local::InProcessLeases;
use crate::lease::storage::{CLIENT_ID, StorageAuth};
use crate::providers::Providers;
use crate::providers::cognitive_services::CognitiveServices;
use crate::server::surface::AllowedHosts;
use crate::server::{AppState, Budgets};
use crate::store::StoreError;
use crate::store::keyvault::KeyVaultStore;

/// A start-up failure after configuration was validated.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("building the HTTP transport failed: {0}")]
    Transport(#[from] TransportError),
    #[error("building the Azure credential failed: {0}")]
    Credential(#[from] CredentialError),
    #[error("building the Key Vault clients failed: {0}")]
    Store(#[from] StoreError),
    #[error("the rotation lease: {0}")]
    Lease(String),
}

/// The shared HTTP client and the SDK client options built on it, with retries bounded so an
/// Azure call never outlives an invocation's budget.
#[derive(Debug, Clone)]
pub struct AzureAccess {
    pub http: reqwest::Client,
    /// For the data-plane checks of new keys: one host per account, so it keeps no idle
    /// connection (memory would otherwise grow with the number of accounts); built on first
    /// use, so start-up loads the trusted roots once.
    pub dataplane_http: LazyClient,
    pub client_options: ClientOptions,
    /// The client-side limits every Key Vault and Resource Manager call goes through.
    pub limits: Arc<AzureLimits>,
}

impl AzureAccess {
    pub fn new(settings: &Settings) -> Result<Self, StartupError> {
        let transport_settings = settings.transport_settings();
        let http = build_http_client(&transport_settings)?;
        let dataplane_http = LazyClient::new(TransportSettings {
            max_idle_per_host: 0,
            ..transport_settings
        });
        let limits = Arc::new(AzureLimits::new(
            settings.vaults.iter().map(|v| &v.url),
            &settings.arm_endpoint,
        ));
        let max_total = (settings.event_budget / 2).min(Duration::from_secs(10));
        let limited = LimitedClient::new(http.clone(), limits.clone());
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(limited))),
            retry: retry_options(3, Duration::from_millis(200), max_total),
            ..Default::default()
        };
        Ok(Self {
            http,
            dataplane_http,
            client_options,
            limits,
        })
    }

    /// The credential the environment selects (managed identity under the Functions host).
    pub fn credential(
        &self,
        settings: &Settings,
        vars: &HashMap<String, String>,
    ) -> Result<Arc<dyn TokenCredential>, StartupError> {
        let source = select_credential(vars, settings.managed_identity_client_id.as_deref());
        tracing::info!(credential = source.kind(), "selected the Azure credential");
        Ok(build_credential(&source, self.client_options.clone())?)
    }
}

/// Builds the engine with its production store and providers (`engine_settings` is
/// `settings.engine_settings()` in production).
pub fn engine(
    settings: &Settings,
    engine_settings: EngineSettings,
    access: &AzureAccess,
    credential: Arc<dyn TokenCredential>,
    clock: Arc<dyn Clock>,
) -> Result<Engine, StartupError> {
    let providers = providers(settings, access, credential.clone());
    let leases = leases(settings, access, credential.clone())?;
    engine_with_providers(
        settings,
        engine_settings,
        access,
        credential,
        clock,
        providers,
        leases,
    )
}

/// The production providers: one per resource type, on the shared transport.
pub fn providers(
    settings: &Settings,
    access: &AzureAccess,
    credential: Arc<dyn TokenCredential>,
) -> Providers {
    let arm = ArmClient::new(
        settings.arm_endpoint.clone(),
        credential,
        access.client_options.clone(),
    );
    Providers::new(Arc::new(CognitiveServices::new(
        arm,
        access.dataplane_http.clone(),
    )))
}

/// The engine with the production store and the given providers and leases: the one seam
/// where tests put a provider of their own (e.g. one that fails in a way no real answer can)
/// and hold a lease themselves.
pub fn engine_with_providers(
    settings: &Settings,
    engine_settings: EngineSettings,
    access: &AzureAccess,
    credential: Arc<dyn TokenCredential>,
    clock: Arc<dyn Clock>,
    providers: Providers,
    leases: Arc<dyn Leases>,
) -> Result<Engine, StartupError> {
    let vaults: Vec<_> = settings
        .vaults
        .iter()
        .map(|v| (v.name.clone(), v.url.clone()))
        .collect();
    let store = KeyVaultStore::new(&vaults, credential, access.client_options.clone())?;
    tracing::info!(lease = %leases.describe(), "rotation lease");
    Ok(Engine::new(
        Arc::new(store),
        providers,
        leases,
        clock,
        engine_settings,
    ))
}

/// The rotation lease `KEYFLIP_LEASE` asks for: blobs in the app's storage account (with
/// keyflip's own credential when identity-based), or this process's memory.
pub fn leases(
    settings: &Settings,
    access: &AzureAccess,
    credential: Arc<dyn TokenCredential>,
) -> Result<Arc<dyn Leases>, StartupError> {
    let storage = match (settings.lease, &settings.storage) {
        (LeaseMode::InProcess, _) => return Ok(Arc::new(InProcessLeases::default())),
        (LeaseMode::Storage, Some(storage)) => storage,
        (LeaseMode::Storage, None) => {
            return Err(StartupError::Lease(
                "AzureWebJobsStorage is not set: set it, or KEYFLIP_LEASE=in-process for a single process"
                    .to_string(),
            ));
        }
    };
    if let StorageAuth::Identity {
        client_id: Some(storage_client),
    } = &storage.auth
        && settings.managed_identity_client_id.as_deref() != Some(storage_client.as_str())
    {
        return Err(StartupError::Lease(format!(
            "{CLIENT_ID} is {storage_client}, but KEYFLIP_MANAGED_IDENTITY_CLIENT_ID is {}: keyflip reaches storage with its one identity; set both to the same client id (or leave {CLIENT_ID} unset)",
            settings
                .managed_identity_client_id
                .as_deref()
                .unwrap_or("not set")
        )));
    }
    // Each storage call is bounded well inside the shortest invocation budget.
    let call_timeout = (settings.event_budget / 3).min(Duration::from_secs(5));
    let leases = BlobLeases::new(storage, Some(credential), access.client_options.clone())
        .map_err(|e| StartupError::Lease(e.to_string()))?
        .with_call_timeout(call_timeout);
    Ok(Arc::new(leases))
}

/// The invocation budgets of the settings.
pub fn budgets(settings: &Settings) -> Budgets {
    Budgets {
        event: settings.event_budget,
        sweep: settings.sweep_budget,
        manual: settings.manual_budget,
    }
}

/// The host names the HTTP surface answers besides loopback: the app's own (WEBSITE_HOSTNAME)
/// and KEYFLIP_ALLOWED_HOSTS.
pub fn allowed_hosts(settings: &Settings) -> AllowedHosts {
    AllowedHosts::new(
        settings
            .website_hostname
            .iter()
            .chain(settings.allowed_hosts.iter()),
    )
}

/// The server's state for the engine: the settings' budgets, hosts and invocation bound.
pub fn state(settings: &Settings, engine: Engine) -> AppState {
    AppState::from_engine(engine, budgets(settings))
        .with_allowed_hosts(allowed_hosts(settings))
        .with_max_invocations(settings.max_invocations)
        .with_sweep_mode(settings.sweep_mode)
}
