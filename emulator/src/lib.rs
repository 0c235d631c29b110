//! A local stand-in of the Azure services keyflip talks to, faithful on the wire.
//!
//! One listener serves everything. A connection that opens with a TLS handshake is served over
//! TLS with a certificate the emulator's own CA signed for the real host names, and routed by
//! `Host`: `<vault>.vault.azure.net` (Key Vault secrets), `management.azure.com` (Resource
//! Manager), `<account>.openai.azure.com`, `<account>.cognitiveservices.azure.com` and
//! `<account>.services.ai.azure.com` (AI services data planes) and `<account>.blob.core.windows.net`
//! (Blob Storage, proxied to a real Azurite). A plain-HTTP connection to
//! `127.0.0.1`/`localhost` reaches the managed-identity endpoint (`/msi/token`, the App Service
//! protocol) and the control API (`/control/...`).
//!
//! It is used by keyflip's tests, benches and `keyflip demo`; it is never part of a deployment.
//! What it deliberately does not emulate is listed in `emulator/README.md`.
//!
//! # Layout
//! - [`server`]: the listener, TLS sniffing, dispatch by host, and the [`Emulator`] handle.
//! - [`tls`]: the generated certificate authority and server certificate.
//! - [`world`]: all mutable state (vaults, accounts, identities, clock, faults, call log).
//! - [`keyvault`]: the Key Vault secrets data plane.
//! - [`arm`]: Resource Manager plumbing (paths, api-version, auth, error bodies, the polling
//!   URLs of long-running operations); it hands a resource to its provider.
//! - [`operations`]: long-running (202) operations and their status bodies.
//! - [`providers`]: one module per emulated resource type (ARM operations and data plane).
//! - [`identity`]: the managed-identity token endpoint; [`token`] issues and checks the JWTs.
//! - [`storage`]: Blob Storage by proxy to Azurite; [`azurite`]: finds, installs and runs the
//!   pinned Azurite for tests.
//! - [`faults`]: fault and latency injection; [`calls`]: the record of every call received.
//! - [`throttling`]: Key Vault's and Resource Manager's limits as token buckets (off by default).
//! - [`control`]: the control API; [`seed`]: the seed document it and `--seed` accept.
//! - [`client`]: typed helpers for tests: a control-API client and an HTTP client that trusts
//!   the CA and connects every emulated host name to the emulator.

pub mod arm;
pub mod azurite;
pub mod calls;
pub mod client;
pub mod control;
pub mod error;
pub mod faults;
pub mod identity;
pub mod keyvault;
pub mod operations;
pub mod pipeline;
pub mod providers;
pub mod request;
pub mod seed;
pub mod server;
pub mod storage;
pub mod throttling;
pub mod tls;
pub mod token;
pub mod world;

pub use client::{ControlClient, EmulatorInfo};
pub use server::{Emulator, EmulatorOptions};
