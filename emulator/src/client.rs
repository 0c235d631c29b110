//! Typed helpers for the emulator's users (tests, benches, `keyflip demo`): the start-up
//! information, a client for the control API, an HTTP client that trusts the emulator's CA
//! and connects every emulated host name to the emulator, so the official SDK clients can be
//! pointed at `https://<vault>.vault.azure.net` unchanged, and a token credential for
//! in-process tests that cannot use the managed-identity protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::calls::Call;
use crate::faults::{FaultRule, LatencyRule};
use crate::operations::{LongRunning, Operation};
use crate::world::{ActiveRegeneration, Identity};

/// What `keyflip-emulator` prints on start, as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorInfo {
    /// The one address every service is served on.
    pub address: SocketAddr,
    /// `IDENTITY_ENDPOINT` for the App Service managed-identity protocol.
    pub identity_endpoint: String,
    /// `IDENTITY_HEADER`.
    pub identity_header: String,
    /// Base URL of the control API.
    pub control_url: String,
    /// Where the CA certificate was written, if it was.
    pub ca_file: Option<String>,
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// The tenant every token is issued in.
    pub tenant_id: String,
    /// The system-assigned identity.
    pub system_identity: Identity,
    /// A `KEYFLIP_CONNECT_TO` value sending every emulated host to the emulator.
    pub connect_to: String,
    /// Where the certificate for the storage upstream (Azurite) was written, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_cert_file: Option<String>,
    /// Where that certificate's key was written, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_key_file: Option<String>,
}

/// `GET /control/active-regenerations`: how many regenerations replaced a key that the latest
/// version of a secret held, and each of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRegenerations {
    pub count: usize,
    pub regenerations: Vec<ActiveRegeneration>,
}

/// Failure talking to the control API.
#[derive(Debug, thiserror::Error)]
pub enum ControlClientError {
    #[error("control API request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("control API answered {status}: {body}")]
    Status { status: u16, body: String },
}

/// Host suffixes the emulator serves over TLS.
const EMULATED_SUFFIXES: &[&str] = &[
    ".vault.azure.net",
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
    ".blob.core.windows.net",
];

/// Resolves every emulated host name to the emulator's address.
#[derive(Debug)]
struct EmulatorResolver(SocketAddr);

impl reqwest::dns::Resolve for EmulatorResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let addr = self.0;
        Box::pin(async move {
            let emulated =
                host == "management.azure.com" || EMULATED_SUFFIXES.iter().any(|s| host.ends_with(s));
            if emulated {
                let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(addr));
                Ok(addrs)
            } else {
                Err(format!("{host} is not an emulated host; this client reaches only the emulator").into())
            }
        })
    }
}

/// An HTTP client for the official SDK's transport: trusts only the emulator's CA and connects
/// every emulated host name to `addr`.
pub fn azure_http_client(addr: SocketAddr, ca_pem: &str) -> Result<reqwest::Client, reqwest::Error> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())?;
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .dns_resolver(Arc::new(EmulatorResolver(addr)))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// A client for the control API.
#[derive(Debug, Clone)]
pub struct ControlClient {
    base: String,
    http: reqwest::Client,
}

impl ControlClient {
    /// `control_url` as [`EmulatorInfo::control_url`] gives it.
    pub fn new(control_url: &str) -> Self {
        Self {
            base: control_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ControlClientError> {
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            return Err(ControlClientError::Status {
                status: status.as_u16(),
                body,
            });
        }
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Result<Value, ControlClientError> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ControlClientError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, ControlClientError> {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ControlClientError> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// Sets the page size of Resource Manager lists (`None`: the default, 100).
    pub async fn set_arm_page_size(&self, size: Option<usize>) -> Result<Value, ControlClientError> {
        self.put("/settings", &json!({ "arm_page_size": size })).await
    }

    /// Turns throttling on with `settings` (`json!({})`: Azure's limits; see
    /// [`crate::throttling`]) or, with `None`, off. Every bucket starts full.
    pub async fn set_throttling(&self, settings: Option<&Value>) -> Result<Value, ControlClientError> {
        self.put("/settings", &json!({ "throttling": settings })).await
    }

    /// `GET /control/throttling`: the settings, the number of calls throttled in all
    /// (`throttled`) and per vault (`keyvault`) and subscription (`arm`) and kind.
    pub async fn throttling(&self) -> Result<Value, ControlClientError> {
        self.get("/throttling").await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ControlClientError> {
        self.send(self.http.delete(format!("{}{path}", self.base))).await
    }

    pub async fn reset(&self) -> Result<Value, ControlClientError> {
        self.post("/reset", &json!({})).await
    }

    /// Applies a seed document (see `emulator/README.md`).
    pub async fn seed(&self, seed: &Value) -> Result<Value, ControlClientError> {
        self.post("/seed", seed).await
    }

    /// Adds a version to a secret; returns `{name, version, id}`.
    pub async fn add_secret_version(
        &self,
        vault: &str,
        name: &str,
        version: &Value,
    ) -> Result<Value, ControlClientError> {
        self.post(&format!("/vaults/{vault}/secrets/{name}/versions"), version)
            .await
    }

    /// Every version of a secret, values included (oldest first), and `latest`.
    pub async fn secret(&self, vault: &str, name: &str) -> Result<Value, ControlClientError> {
        self.get(&format!("/vaults/{vault}/secrets/{name}")).await
    }

    pub async fn add_account(&self, account: &Value) -> Result<Value, ControlClientError> {
        self.post("/accounts", account).await
    }

    /// An account's state: `key1`/`key2` (`value`, `valid_from`), `regenerations`, ….
    pub async fn account(&self, name: &str) -> Result<Value, ControlClientError> {
        self.get(&format!("/accounts/{name}")).await
    }

    pub async fn patch_account(&self, name: &str, patch: &Value) -> Result<Value, ControlClientError> {
        self.patch(&format!("/accounts/{name}"), patch).await
    }

    /// Makes the account's `regenerateKey` long-running (`Some`) or synchronous again (`None`).
    pub async fn set_long_running(
        &self,
        name: &str,
        setting: Option<&LongRunning>,
    ) -> Result<Value, ControlClientError> {
        self.patch_account(name, &json!({ "long_running": setting }))
            .await
    }

    /// Every long-running operation started, ended ones included.
    pub async fn operations(&self) -> Result<Vec<Operation>, ControlClientError> {
        let value = self.get("/operations").await?;
        Ok(serde_json::from_value(value).unwrap_or_default())
    }

    /// The regenerations of a key that a vault's latest version held.
    pub async fn active_regenerations(&self) -> Result<ActiveRegenerations, ControlClientError> {
        let value = self.get("/active-regenerations").await?;
        Ok(serde_json::from_value(value).unwrap_or_default())
    }

    /// Calls received, filtered by operation id when given.
    pub async fn calls(&self, operation: Option<&str>) -> Result<Vec<Call>, ControlClientError> {
        let path = match operation {
            Some(op) => format!("/calls?operation={op}"),
            None => "/calls".to_string(),
        };
        let value = self.get(&path).await?;
        Ok(serde_json::from_value(value).unwrap_or_default())
    }

    pub async fn clear_calls(&self) -> Result<Value, ControlClientError> {
        self.delete("/calls").await
    }

    pub async fn fault(&self, rule: &FaultRule) -> Result<Value, ControlClientError> {
        self.post("/faults", &json!(rule)).await
    }

    pub async fn latency(&self, rule: &LatencyRule) -> Result<Value, ControlClientError> {
        self.post("/latency", &json!(rule)).await
    }

    pub async fn clear_faults(&self) -> Result<Value, ControlClientError> {
        self.delete("/faults").await
    }

    /// The emulator's clock (unix seconds).
    pub async fn now(&self) -> Result<i64, ControlClientError> {
        Ok(self.get("/clock").await?["now"].as_i64().unwrap_or_default())
    }

    /// Moves the emulator's clock forward (or back, with a negative value); returns the new time.
    pub async fn advance_clock(&self, seconds: i64) -> Result<i64, ControlClientError> {
        Ok(self
            .post("/clock", &json!({ "advance_seconds": seconds }))
            .await?["now"]
            .as_i64()
            .unwrap_or_default())
    }

    /// Stops the emulator's clock where it is (`true`) or lets it tick again (`false`).
    pub async fn freeze_clock(&self, frozen: bool) -> Result<i64, ControlClientError> {
        Ok(self.post("/clock", &json!({ "freeze": frozen })).await?["now"]
            .as_i64()
            .unwrap_or_default())
    }

    pub async fn set_clock(&self, now: i64) -> Result<i64, ControlClientError> {
        Ok(self.post("/clock", &json!({ "set": now })).await?["now"]
            .as_i64()
            .unwrap_or_default())
    }

    /// A token for `audience` issued to the system-assigned identity.
    pub async fn token(&self, audience: &str) -> Result<String, ControlClientError> {
        let value = self.post("/tokens", &json!({ "audience": audience })).await?;
        Ok(value["access_token"].as_str().unwrap_or_default().to_string())
    }
}

/// An `azure_core` token credential that takes tokens from the control API
/// (`POST /control/tokens`, the scope minus `/.default` as the audience), for in-process tests
/// that cannot point `ManagedIdentityCredential` at the emulator (it reads `IDENTITY_ENDPOINT`
/// from the process environment).
#[derive(Debug, Clone)]
pub struct ControlCredential(pub ControlClient);

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for ControlCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let audience = scopes
            .first()
            .copied()
            .unwrap_or_default()
            .trim_end_matches("/.default");
        let token = self.0.token(audience).await.map_err(|e| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string())
        })?;
        let expires = azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1);
        Ok(azure_core::credentials::AccessToken::new(token, expires))
    }
}
