//! The rotation engine: DESIGN.md §3's steps for one secret, whatever the trigger — load,
//! validate, guard (stale, disabled, dwell, the pointer cross-checked against the resource),
//! lease, regenerate the idle slot (or resume a pending one), verify on the data plane, publish
//! the new version that flips the pointer, report — and the sweep over every configured vault.
//!
//! It depends only on traits ([`SecretStore`], [`KeyProvider`] through [`Providers`], [`Clock`]),
//! wired once at start-up.

pub mod claims;
pub mod decide;
pub mod log_events;
pub mod result;
mod rotate;
mod sweep;
pub use sweep::SweepOptions;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::{AllowedScopes, SecretName, SecretVersion, VaultName};
use crate::lease::{Leases, MarkKey};
use crate::providers::Providers;
use crate::store::SecretStore;
pub use result::{
    Class, FailReason, Outcome, RotationResult, SkipReason, SweepReport, SweepSummary, TriggerKind,
};

/// The engine's settings (from DESIGN.md §8's configuration).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Vaults keyflip serves (KEYFLIP_VAULTS).
    pub vaults: Vec<VaultName>,
    /// ARM scopes whose resources may be rotated, per vault (KEYFLIP_ALLOWED_SCOPES).
    pub allowed_scopes: AllowedScopes,
    /// How long before `exp` the sweep rotates (KEYFLIP_LEAD_DAYS).
    pub lead_days: u32,
    /// Minimum age of the latest version before the next rotation (KEYFLIP_DWELL_HOURS).
    pub dwell: Duration,
    /// How long a regenerated slot may stay pending before it is regenerated afresh.
    pub pending_timeout: Duration,
    /// Parallel rotations during a sweep.
    pub concurrency: usize,
    /// First pause between two checks of a new key; doubles up to `verify_max_backoff`.
    pub verify_initial_backoff: Duration,
    pub verify_max_backoff: Duration,
    /// KEYFLIP_PAUSED: every trigger answers `skipped:paused` and nothing is written.
    pub paused: bool,
    /// KEYFLIP_MAX_ROTATIONS_PER_SWEEP: at most this many rotations per sweep.
    pub max_rotations_per_sweep: Option<usize>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            vaults: Vec::new(),
            allowed_scopes: AllowedScopes::default(),
            lead_days: 30,
            dwell: Duration::from_secs(24 * 3600),
            pending_timeout: Duration::from_secs(6 * 3600),
            concurrency: 32,
            verify_initial_backoff: Duration::from_secs(2),
            verify_max_backoff: Duration::from_secs(30),
            paused: false,
            max_rotations_per_sweep: None,
        }
    }
}

/// What a trigger asks for one secret.
#[derive(Debug, Clone)]
pub struct RotationRequest {
    pub vault: VaultName,
    pub secret: SecretName,
    pub trigger: TriggerKind,
    /// For events: the version the event was raised for (a different latest version = stale).
    pub event_version: Option<SecretVersion>,
    /// Plan only: change nothing.
    pub dry_run: bool,
    /// Bypass the dwell.
    pub force: bool,
    /// A leaked key (`mode=revoke-active`): publish the idle slot, then regenerate the
    /// formerly active one at once.
    pub revoke_active: bool,
    /// Time this invocation may spend.
    pub budget: Duration,
    /// A sweep's rotation (`Some`) starts before the sweep's listing ends: it waits for the
    /// sweep's index of claims after reading the secret, before the lease, for up to this long
    /// on top of `budget` (the rest of the sweep's). `None` elsewhere.
    pub index_wait: Option<Duration>,
}

/// The rotation engine.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Arc<dyn SecretStore>,
    providers: Providers,
    clock: Arc<dyn Clock>,
    settings: Arc<EngineSettings>,
    /// The rotation lease of each secret (I3, across instances).
    leases: Arc<dyn Leases>,
    /// The key of keyflip's mark fingerprints, read from beside the leases on first need.
    mark_key: Arc<tokio::sync::OnceCell<MarkKey>>,
    /// Which managed secrets name each resource, as last listed.
    claims: claims::ClaimsCache,
}

impl Engine {
    pub fn new(
        store: Arc<dyn SecretStore>,
        providers: Providers,
        leases: Arc<dyn Leases>,
        clock: Arc<dyn Clock>,
        settings: EngineSettings,
    ) -> Self {
        Self {
            store,
            providers,
            clock,
            settings: Arc::new(settings),
            leases,
            mark_key: Arc::default(),
            claims: claims::ClaimsCache::default(),
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The store the engine reads and writes (for `crate::status`, which only lists).
    pub fn store(&self) -> Arc<dyn SecretStore> {
        self.store.clone()
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// The engine's clock (the status tells time by it too).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Whether keyflip serves this vault (KEYFLIP_VAULTS); checked before any network call.
    pub fn serves(&self, vault: &VaultName) -> bool {
        self.settings.vaults.contains(vault)
    }
}
