//! The operator's commands, run from a terminal under the caller's own credentials (never by
//! the Functions host): `keyflip onboard` brings existing keys under management, `keyflip
//! doctor` checks a set-up without changing anything it relies on. Both read Resource Manager
//! through [`directory`] and judge permissions with [`access`].

pub mod access;
pub mod directory;
pub mod doctor;
pub mod onboard;

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

use crate::app::{self, AzureAccess, StartupError};
use crate::azure::arm::ArmClient;
use crate::clock::Clock;
use crate::config::Settings;
use crate::lease::Leases;
use crate::providers::Providers;
use crate::store::SecretStore;
use crate::store::keyvault::KeyVaultStore;
use directory::Directory;

/// What the operator commands work with: the production store, providers and Resource Manager
/// reads on one credential, and the lease when its storage is configured.
#[derive(Debug, Clone)]
pub struct Tools {
    pub settings: Settings,
    pub store: Arc<dyn SecretStore>,
    pub providers: Providers,
    pub directory: Directory,
    pub credential: Arc<dyn TokenCredential>,
    /// The rotation lease, or why it cannot be used (e.g. `AzureWebJobsStorage` unset).
    pub leases: Result<Arc<dyn Leases>, String>,
    pub clock: Arc<dyn Clock>,
}

impl Tools {
    /// The production wiring of `settings` on `credential`.
    pub fn new(
        settings: &Settings,
        access: &AzureAccess,
        credential: Arc<dyn TokenCredential>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let vaults: Vec<_> = settings
            .vaults
            .iter()
            .map(|v| (v.name.clone(), v.url.clone()))
            .collect();
        let store = KeyVaultStore::new(&vaults, credential.clone(), access.client_options.clone())?;
        let arm = ArmClient::new(
            settings.arm_endpoint.clone(),
            credential.clone(),
            access.client_options.clone(),
        );
        Ok(Self {
            settings: settings.clone(),
            store: Arc::new(store),
            providers: app::providers(settings, access, credential.clone()),
            directory: Directory::new(arm),
            leases: app::leases(settings, access, credential.clone()).map_err(|e| e.to_string()),
            credential,
            clock,
        })
    }
}
