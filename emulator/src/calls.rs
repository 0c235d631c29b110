//! The record of every call the emulator received, for tests to assert on.
//!
//! A call names its service, its operation (the REST operation id, e.g. `SetSecret`,
//! `Accounts_RegenerateKey`, `Models_List`, `GetToken`), its target (vault, account or token
//! audience), the status answered and, for data-plane calls, which key slot matched. Blob lease
//! calls also carry a [`LeaseCall`]. Bodies, key values and SAS signatures are never recorded.

use serde::{Deserialize, Serialize};

/// The service a call was addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Keyvault,
    Arm,
    Dataplane,
    Identity,
    /// Azure Blob Storage, proxied to Azurite.
    Storage,
}

/// What a blob or container lease call asked for and got, for reconstructing who held which
/// lease when (Azurite's leases run on the wall clock, so these times are wall-clock ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCall {
    /// `acquire`, `renew`, `release`, `break` or `change`.
    pub action: String,
    /// `x-ms-lease-duration`: 15-60 seconds, or -1 for infinite (acquire only).
    pub duration_seconds: Option<i64>,
    /// `x-ms-lease-break-period` (break only).
    pub break_period_seconds: Option<i64>,
    /// The lease id Azurite granted, else the one the caller proposed or presented.
    pub lease_id: Option<String>,
    /// What Azurite answered; `status` of the call differs when an injected fault replaced it,
    /// and is `None` when the call never reached Azurite.
    pub upstream_status: Option<u16>,
    /// Wall-clock milliseconds when the emulator received the call.
    pub received_ms: i64,
    /// Wall-clock milliseconds when Azurite's answer came back.
    pub answered_ms: Option<i64>,
}

/// One call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The emulator's clock when the call arrived (unix seconds).
    pub at: i64,
    pub service: Service,
    /// REST operation id; `Unauthenticated` for a request refused before it was identified.
    pub operation: String,
    /// Vault name, ARM resource id, account subdomain or token audience.
    pub target: String,
    pub method: String,
    pub path: String,
    pub api_version: Option<String>,
    pub status: u16,
    /// Object id of the caller's token, where one was presented and valid.
    pub caller: Option<String>,
    /// The key slot (`key1`/`key2`) a data-plane call authenticated with.
    pub key_slot: Option<String>,
    /// Whether an injected fault produced the answer.
    pub faulted: bool,
    /// For blob and container lease calls: what was asked and granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseCall>,
}

/// The fields of a call known before it is answered.
#[derive(Debug, Clone)]
pub struct CallStart {
    pub service: Service,
    pub operation: String,
    pub target: String,
    pub method: String,
    pub path: String,
    pub api_version: Option<String>,
}

impl CallStart {
    pub fn new(service: Service, operation: &str, target: &str, method: &str, path: &str) -> Self {
        Self {
            service,
            operation: operation.to_string(),
            target: target.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            api_version: None,
        }
    }
}
