//! The record of every call the emulator received, for tests to assert on.
//!
//! A call names its service, its operation (the REST operation id, e.g. `SetSecret`,
//! `Accounts_RegenerateKey`, `Models_List`, `GetToken`), its target (vault, account or token
//! audience), the status answered and, for data-plane calls, which key slot matched. Bodies and
//! key values are never recorded.

use serde::{Deserialize, Serialize};

/// The service a call was addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Keyvault,
    Arm,
    Dataplane,
    Identity,
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
