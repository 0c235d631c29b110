//! Shared set-up for the SDK proof tests: an emulator on port 0 and the official clients
//! pointed at it through a transport that trusts its CA and connects the real host names to it.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, ExponentialRetryOptions, Method, Pipeline, RawResponse, Request, RetryOptions,
    Transport, Url,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
pub use emulator::client::ControlCredential;
use emulator::client::azure_http_client;
use emulator::{ControlClient, Emulator, EmulatorInfo, EmulatorOptions};
use serde_json::Value;

pub const SUBSCRIPTION: &str = "00000000-1111-2222-3333-444444444444";
pub const RESOURCE_GROUP: &str = "rg-keys";
pub const ARM: &str = "https://management.azure.com";

/// A running emulator and the clients the tests drive it with.
#[derive(Debug)]
pub struct TestEmulator {
    pub emulator: Emulator,
    pub info: EmulatorInfo,
    pub control: ControlClient,
    /// Plain reqwest client for the emulated hosts (raw wire checks, data plane).
    pub http: reqwest::Client,
}

pub async fn spawn_emulator() -> TestEmulator {
    let emulator = Emulator::start(EmulatorOptions::default())
        .await
        .expect("emulator starts");
    let info = emulator.info(None);
    let control = ControlClient::new(&info.control_url);
    let http = azure_http_client(info.address, &info.ca_pem).expect("http client");
    TestEmulator {
        emulator,
        info,
        control,
        http,
    }
}

/// Retries that give up fast: three retries from 10 ms.
pub fn fast_retry() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(10),
        max_retries: 3,
        max_total_elapsed: azure_core::time::Duration::seconds(20),
        max_delay: azure_core::time::Duration::seconds(2),
    })
}

impl TestEmulator {
    pub fn transport(&self) -> Transport {
        Transport::new(Arc::new(self.http.clone()))
    }

    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        Arc::new(ControlCredential(self.control.clone()))
    }

    /// Client options with the emulator transport and fast retries.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(self.transport()),
            retry: fast_retry(),
            ..Default::default()
        }
    }

    /// A `SecretClient` for `https://<vault>.vault.azure.net/`, challenge verification on.
    pub fn secret_client(&self, vault: &str) -> SecretClient {
        self.secret_client_with(vault, SecretClientOptions::default())
    }

    pub fn secret_client_with(&self, vault: &str, mut options: SecretClientOptions) -> SecretClient {
        options.client_options = self.client_options();
        SecretClient::new(
            &format!("https://{vault}.vault.azure.net/"),
            self.credential(),
            Some(options),
        )
        .expect("secret client")
    }

    /// An `azure_core` pipeline with the bearer policy for Resource Manager.
    pub fn arm_pipeline(&self) -> Pipeline {
        arm_pipeline(self.credential(), self.client_options())
    }

    /// Sends an ARM request through the pipeline: `path_and_query` is appended to the ARM host.
    pub async fn arm(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> azure_core::Result<RawResponse> {
        let url = Url::parse(&format!("{ARM}{path_and_query}")).expect("url");
        let mut request = Request::new(url, method);
        request.insert_header("accept", "application/json");
        if let Some(body) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(serde_json::to_vec(&body).expect("json"));
        }
        self.arm_pipeline()
            .send(&Context::new(), &mut request, None)
            .await
    }

    pub async fn seed(&self, seed: Value) {
        self.control.seed(&seed).await.expect("seed accepted");
    }
}

/// An `azure_core` pipeline with the bearer policy for Resource Manager, as keyflip builds
/// one: `credential` for the tokens, `client_options` for the transport and retries.
pub fn arm_pipeline(credential: Arc<dyn TokenCredential>, client_options: ClientOptions) -> Pipeline {
    let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(
        credential,
        ["https://management.azure.com/.default"],
    ));
    Pipeline::new(
        Some("keyflip-emulator-tests"),
        Some("0.1.0"),
        client_options,
        Vec::new(),
        vec![auth],
        None,
    )
}

/// The ARM id of an AI services account in the test subscription.
pub fn account_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.CognitiveServices/accounts/{name}"
    )
}

/// The `(status, error code)` of a failed SDK call.
pub fn http_error(error: &azure_core::Error) -> (u16, Option<String>) {
    match error.kind() {
        azure_core::error::ErrorKind::HttpResponse {
            status, error_code, ..
        } => (u16::from(*status), error_code.clone()),
        other => panic!("expected an HTTP error, got {other:?}: {error}"),
    }
}

/// An `accounts[]` seed item in the test subscription with keys `<name>-key1`/`<name>-key2`.
pub fn account_seed(name: &str, kind: &str) -> Value {
    serde_json::json!({
        "subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
        "name": name, "kind": kind, "key1": format!("{name}-key1"), "key2": format!("{name}-key2")
    })
}

/// Seeds one account.
pub async fn seed_account(app: &TestEmulator, account: Value) {
    app.seed(serde_json::json!({ "accounts": [account] })).await;
}
