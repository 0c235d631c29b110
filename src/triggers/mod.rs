//! The triggers: the custom-handler envelope, one module per function (Key Vault events, the
//! timer sweep, manual HTTP) that parses its payload leniently at the edge into a
//! [`RotationRequest`] and maps the engine's result to the answer the caller expects, and the
//! [`Rotator`] seam through which every trigger reaches the engine.
//!
//! The queue triggers (`SweepVault`, `KeyVaultEventsQueue`) share `queue`, which reads the
//! queue-trigger envelope (double-encoded message text, string-typed metadata) and decodes a
//! message given as plain JSON or base64.
//!
//! Adding a trigger means one module here and one route line in `crate::server`; the server
//! only routes and never imports the engine's decisions.

pub mod envelope;
pub mod event;
pub mod keyvault_events;
pub mod keyvault_events_queue;
pub mod manual;
pub mod queue;
pub mod sweep;
pub mod sweep_vault;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::VaultName;
use crate::engine::{Engine, RotationRequest, RotationResult, SweepReport};

/// What the triggers need from the engine; [`Engine`] in production, a fake in tests.
#[async_trait]
pub trait Rotator: Send + Sync + fmt::Debug {
    /// Whether keyflip serves this vault (KEYFLIP_VAULTS); no network call.
    fn serves(&self, vault: &VaultName) -> bool;
    /// Rotates one secret.
    async fn rotate(&self, request: RotationRequest) -> RotationResult;
    /// The vaults keyflip serves (KEYFLIP_VAULTS), in order; no network call.
    fn vaults(&self) -> Vec<VaultName>;
    /// Sweeps every configured vault within `budget`.
    async fn sweep(&self, budget: Duration) -> SweepReport;
    /// Sweeps only these vaults within `budget` (one message of the fan-out queue).
    async fn sweep_vaults(&self, vaults: &[VaultName], budget: Duration) -> SweepReport;
}

#[async_trait]
impl Rotator for Engine {
    fn serves(&self, vault: &VaultName) -> bool {
        Engine::serves(self, vault)
    }

    async fn rotate(&self, request: RotationRequest) -> RotationResult {
        Engine::rotate(self, request).await
    }

    fn vaults(&self) -> Vec<VaultName> {
        self.settings().vaults.clone()
    }

    async fn sweep(&self, budget: Duration) -> SweepReport {
        Engine::sweep(self, budget).await
    }

    async fn sweep_vaults(&self, vaults: &[VaultName], budget: Duration) -> SweepReport {
        Engine::sweep_vaults(self, vaults, budget).await
    }
}
