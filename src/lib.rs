//! keyflip rotates the API keys of Azure resources with the dual-key pattern, as an Azure
//! Functions custom handler: it regenerates only the idle key, verifies the new key on the
//! resource's data plane, and publishes it as a new Key Vault secret version whose
//! `CredentialId` tag flips the active-key pointer. The design is `../shared/DESIGN.md`.
//!
//! # Layout
//! Data flows trigger → engine → provider / store:
//! - [`cli`] and `main.rs`: the command line; [`app`]: start-up wiring; [`config`]: every
//!   setting, validated up front; [`telemetry`]: logs (JSON under the Functions host).
//! - [`server`]: the axum custom handler and its HTTP-surface guards (no browsers, allowed
//!   hosts, a header-read timeout, a bound on invocations); [`triggers`]: the envelopes and the
//!   three functions (Key Vault events, the timer sweep, manual HTTP), parsed at the edge.
//! - [`engine`]: the rotation steps and invariants of DESIGN.md §3, and the sweep.
//! - [`status`]: every managed secret's state and problems (`GET /api/status`, `keyflip
//!   status`), from vault listings alone, as JSON, a text table or a self-contained page.
//! - [`providers`]: the `KeyProvider` trait, its registry and one file per resource type.
//! - [`store`]: the `SecretStore` trait and Key Vault through the official SDK.
//! - [`lease`]: the cross-instance rotation lease (Blob Storage).
//! - [`azure`]: the shared HTTP transport, credential selection, the Resource Manager client.
//! - [`domain`]: names, ARM ids, slots, key values (never printable) and rotation tags.
//! - [`clock`]: injected time. [`demo`]: `keyflip demo`, offline (feature `demo`).

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod admin;
pub mod app;
pub mod azure;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod domain;
pub mod engine;
pub mod lease;
pub mod providers;
pub mod server;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod triggers;
