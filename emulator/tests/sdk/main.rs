//! Proof that the emulator behaves like Azure on the wire: the official Azure SDK for Rust
//! clients, unmodified, run against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access_policies;
mod arm;
mod arm_reads;
mod authorization;
mod dataplane;
mod examples;
#[allow(dead_code)] // each helper serves some of the modules
mod helpers;
mod identity;
mod keyvault;
mod lro;
mod smoke;
mod storage;
mod throttling;
