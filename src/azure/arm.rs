//! The Resource Manager client: one `azure_core` [`Pipeline`] with the bearer-token policy for
//! `<arm_endpoint>/.default` (token caching and refresh, retries with `Retry-After`, user agent,
//! client request ids), and two calls on it — [`ArmClient::get`] a resource and
//! [`ArmClient::post`] an action — answering JSON or an [`ArmError`] that says whether retrying
//! can help.
//!
//! It owns the wire: URL building, the api-version, the status and the ARM error body
//! (`{"error":{"code","message"}}`), which it parses itself — azure_core's own parsing loses the
//! code when a message holds a JSON escape. It does not know any resource type (providers do),
//! and it never logs: callers add context and log once. Nothing it sends is secret; the keys that
//! `listKeys`/`regenerateKey` answer go back to the caller in the JSON value and never into an
//! error. Providers (`crate::providers`) call it; the transport and credential come from
//! start-up wiring.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{ClientOptions, Context, Method, Pipeline, PipelineSendOptions, RawResponse, Request};
use serde_json::Value;
use url::Url;

use super::urls::with_segments;
use crate::domain::ArmResourceId;

/// Why a Resource Manager call failed, as the caller must act on it. No variant ever holds a
/// response body of a successful call, so no key can reach one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArmError {
    /// 404: the resource (or action) does not exist.
    #[error("Resource Manager answered 404 {code}: {message}")]
    NotFound { code: String, message: String },
    /// 408, 429, 5xx (after the pipeline's own retries), an I/O or connection failure, or no
    /// token for now: retrying later can help.
    #[error("Resource Manager is unavailable for now: {message}")]
    Transient {
        /// The HTTP status, when an answer came back.
        status: Option<u16>,
        message: String,
    },
    /// Refused for good (401, 403, 400, 409, …, or an answer keyflip cannot read): an operator
    /// must act. `status` is `None` when no HTTP answer is involved (a request that could not
    /// be built or sent, e.g. a non-https endpoint).
    #[error("Resource Manager refused the request ({}{code}): {message}", status_prefix(*.status))]
    Permanent {
        status: Option<u16>,
        code: String,
        message: String,
    },
}

fn status_prefix(status: Option<u16>) -> String {
    status.map(|s| format!("{s} ")).unwrap_or_default()
}

/// A Resource Manager client for one cloud.
#[derive(Debug, Clone)]
pub struct ArmClient {
    endpoint: Url,
    pipeline: Pipeline,
}

impl ArmClient {
    /// A client for `arm_endpoint` (`https://management.azure.com`, or another cloud's), whose
    /// tokens are requested for `<arm_endpoint>/.default`. `client_options` carries the
    /// transport and the retry policy.
    pub fn new(
        arm_endpoint: Url,
        credential: Arc<dyn TokenCredential>,
        client_options: ClientOptions,
    ) -> Self {
        let scope = format!("{}/.default", arm_endpoint.as_str().trim_end_matches('/'));
        let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(credential, [scope]));
        let pipeline = Pipeline::new(
            Some("keyflip"),
            Some(crate::VERSION),
            client_options,
            Vec::new(),
            vec![auth],
            None,
        );
        Self {
            endpoint: arm_endpoint,
            pipeline,
        }
    }

    /// The Resource Manager endpoint this client calls.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// `GET <endpoint>/<resource>?api-version=<api_version>`; the JSON answer (`Null` for an
    /// empty body).
    pub async fn get(&self, resource: &ArmResourceId, api_version: &str) -> Result<Value, ArmError> {
        self.send(Method::Get, resource, None, api_version, None).await
    }

    /// `POST <endpoint>/<resource>/<action>?api-version=<api_version>` (`listKeys`,
    /// `regenerateKey`), with an optional JSON body. The JSON answer; `Null` for an empty body
    /// or an accepted long-running operation (202), whose result the caller must read another
    /// way.
    ///
    /// The pipeline retries a POST like any request (408, 429, 5xx, I/O): an action that is not
    /// idempotent, such as `regenerateKey`, may run twice; the answer reflects the last run.
    pub async fn post(
        &self,
        resource: &ArmResourceId,
        action: &str,
        api_version: &str,
        body: Option<Value>,
    ) -> Result<Value, ArmError> {
        self.send(Method::Post, resource, Some(action), api_version, body)
            .await
    }

    async fn send(
        &self,
        method: Method,
        resource: &ArmResourceId,
        action: Option<&str>,
        api_version: &str,
        body: Option<Value>,
    ) -> Result<Value, ArmError> {
        let url = self.url(resource, action, api_version)?;
        let mut request = Request::new(url, method);
        request.insert_header("accept", "application/json");
        if let Some(body) = body {
            let bytes = serde_json::to_vec(&body).map_err(|e| ArmError::Permanent {
                status: None,
                code: "InvalidRequestBody".into(),
                message: format!("the request body could not be serialised: {e}"),
            })?;
            request.insert_header("content-type", "application/json");
            request.set_body(bytes);
        }
        // Statuses are classified here, from the body itself: azure_core's own check loses the
        // error code when the message holds a JSON escape.
        let options = PipelineSendOptions {
            skip_checks: true,
            ..Default::default()
        };
        let response = self
            .pipeline
            .send(&Context::new(), &mut request, Some(options))
            .await
            .map_err(|e| classify_sdk_error(&e))?;
        read_answer(&response)
    }

    /// The URL of `resource` (and `action`), built from its parsed segments and checked after
    /// building: the id that was checked is the id that is called.
    fn url(
        &self,
        resource: &ArmResourceId,
        action: Option<&str>,
        api_version: &str,
    ) -> Result<Url, ArmError> {
        let mut segments = resource.segments();
        segments.extend(action);
        with_segments(&self.endpoint, &segments, &[("api-version", api_version)]).ok_or_else(|| {
            ArmError::Permanent {
                status: None,
                code: "InvalidResourcePath".into(),
                message: format!(
                    "the URL of {resource} under {} would not name exactly that resource; keyflip refuses to call it",
                    self.endpoint
                ),
            }
        })
    }
}

/// The JSON of a 2xx answer, or the error a non-2xx answer means.
fn read_answer(response: &RawResponse) -> Result<Value, ArmError> {
    let status = u16::from(response.status());
    let body: &[u8] = response.body();
    if (200..300).contains(&status) {
        if status == 202 || body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        // serde_json's syntax errors name a position, never the content.
        return serde_json::from_slice(body).map_err(|e| ArmError::Permanent {
            status: Some(status),
            code: "InvalidResponseBody".into(),
            message: format!("the answer is not JSON: {e}"),
        });
    }
    let (code, message) = error_body(status, body);
    Err(classify_status(status, code, message))
}

/// The classification of a non-2xx status.
pub(crate) fn classify_status(status: u16, code: String, message: String) -> ArmError {
    match status {
        404 => ArmError::NotFound { code, message },
        408 | 429 | 500..=599 => ArmError::Transient {
            status: Some(status),
            message: format!("{status} {code}: {message}"),
        },
        _ => ArmError::Permanent {
            status: Some(status),
            code,
            message,
        },
    }
}

/// `(code, message)` of an ARM error body: `{"error":{"code","message"}}`, or the same fields at
/// the top level as some resource providers answer. Without a readable body, the status's
/// reason and a short, single-line excerpt of the body.
pub(crate) fn error_body(status: u16, body: &[u8]) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().map(|v| match v.get("error") {
        Some(inner) if inner.is_object() => inner,
        _ => v,
    });
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(|c| match c {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .map(|s| one_line(&s))
            .filter(|s| !s.is_empty())
    };
    let reason = reason_phrase(status);
    let code = field("code").unwrap_or_else(|| reason.replace(' ', ""));
    let message = field("message").unwrap_or_else(|| {
        let text = one_line(&String::from_utf8_lossy(body));
        if text.is_empty() {
            reason.to_string()
        } else {
            truncate(&text, 300)
        }
    });
    (code, message)
}

/// Classifies an error the pipeline raised before any answer could be read.
fn classify_sdk_error(error: &azure_core::Error) -> ArmError {
    let message = error_chain(error);
    match error.kind() {
        ErrorKind::Io | ErrorKind::Connection => ArmError::Transient {
            status: None,
            message,
        },
        // A token could not be obtained: usually the identity endpoint is briefly unavailable;
        // a wrong audience shows up as a 401 from Resource Manager instead.
        ErrorKind::Credential => ArmError::Transient {
            status: None,
            message: format!("no token for Resource Manager: {message}"),
        },
        ErrorKind::HttpResponse { status, .. } => {
            let status = u16::from(*status);
            classify_status(status, reason_phrase(status).replace(' ', ""), message)
        }
        _ => ArmError::Permanent {
            status: None,
            code: "RequestFailed".into(),
            message,
        },
    }
}

/// An error and its `source()` chain on one line (azure_core's outer message alone hides the
/// cause).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = one_line(&error.to_string());
    let mut source = error.source();
    while let Some(cause) = source {
        let line = one_line(&cause.to_string());
        if !text.contains(&line) {
            text.push_str(" <- ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Collapses every run of whitespace (Key Vault and ARM messages hold `\r\n`) to one space.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "HTTP error",
    }
}

/// Shared set-up for the tests of the Azure clients (this module, the Key Vault store and the
/// providers): an in-process emulator, the official clients pointed at it through its transport,
/// a credential that takes tokens from its control API, and fast retries.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use azure_core::credentials::TokenCredential;
    use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
    use emulator::{ControlClient, Emulator, EmulatorOptions};
    use serde_json::Value;

    use super::ArmClient;

    pub const SUBSCRIPTION: &str = "00000000-1111-2222-3333-444444444444";
    pub const RESOURCE_GROUP: &str = "rg-keys";
    pub const ARM_ENDPOINT: &str = "https://management.azure.com";

    pub use emulator::client::ControlCredential;

    /// A running emulator and what a test needs to reach it.
    #[derive(Debug)]
    pub struct TestAzure {
        /// Kept alive: dropping it stops the emulator.
        _emulator: Emulator,
        pub control: ControlClient,
        /// Trusts the emulator's CA and connects every emulated host name to it.
        pub http: reqwest::Client,
    }

    pub async fn start() -> TestAzure {
        let emulator = Emulator::start(EmulatorOptions::default())
            .await
            .expect("emulator starts");
        let info = emulator.info(None);
        let control = ControlClient::new(&info.control_url);
        let http = emulator::client::azure_http_client(info.address, &info.ca_pem).expect("http client");
        TestAzure {
            _emulator: emulator,
            control,
            http,
        }
    }

    impl TestAzure {
        pub fn credential(&self) -> Arc<dyn TokenCredential> {
            Arc::new(ControlCredential(self.control.clone()))
        }

        /// The emulator transport and two retries from 10 ms.
        pub fn client_options(&self) -> ClientOptions {
            ClientOptions {
                transport: Some(Transport::new(Arc::new(self.http.clone()))),
                retry: RetryOptions::exponential(ExponentialRetryOptions {
                    max_retries: 2,
                    initial_delay: azure_core::time::Duration::milliseconds(10),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }

        pub fn arm(&self) -> ArmClient {
            ArmClient::new(
                ARM_ENDPOINT.parse().expect("url"),
                self.credential(),
                self.client_options(),
            )
        }

        pub async fn seed(&self, seed: Value) {
            self.control.seed(&seed).await.expect("seed accepted");
        }

        /// Arms a fault (`POST /control/faults`).
        pub async fn fault(&self, rule: Value) {
            self.control.post("/faults", &rule).await.expect("fault armed");
        }

        /// Calls of one operation the emulator received.
        pub async fn calls(&self, operation: &str) -> Vec<emulator::calls::Call> {
            self.control.calls(Some(operation)).await.expect("calls")
        }
    }

    /// The ARM id of an AI services account in the test subscription.
    pub fn account_id(name: &str) -> String {
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.CognitiveServices/accounts/{name}"
        )
    }

    /// An `accounts[]` seed item with keys `<name>-key1`/`<name>-key2` (more fields merged in).
    pub fn account_seed(name: &str, kind: &str, extra: Value) -> Value {
        let mut seed = serde_json::json!({
            "subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
            "name": name, "kind": kind,
            "key1": format!("{name}-key1-value"), "key2": format!("{name}-key2-value")
        });
        if let (Some(seed), Value::Object(extra)) = (seed.as_object_mut(), extra) {
            seed.extend(extra);
        }
        seed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::test_support::{TestAzure, account_id, account_seed, start};
    use super::*;

    const API: &str = "2025-06-01";

    fn acct() -> ArmResourceId {
        ArmResourceId::parse(&account_id("acct")).unwrap()
    }

    async fn with_account(kind: &str, extra: Value) -> TestAzure {
        let azure = start().await;
        azure
            .seed(json!({ "accounts": [account_seed("acct", kind, extra)] }))
            .await;
        azure
    }

    #[tokio::test]
    async fn get_and_post_answer_json() {
        let azure = with_account("OpenAI", json!({})).await;
        let arm = azure.arm();
        let account = arm.get(&acct(), API).await.unwrap();
        assert_eq!(account["kind"], "OpenAI");
        let keys = arm.post(&acct(), "listKeys", API, None).await.unwrap();
        assert_eq!(keys["key1"], "acct-key1-value");
        let regenerated = arm
            .post(&acct(), "regenerateKey", API, Some(json!({"keyName": "Key2"})))
            .await
            .unwrap();
        assert_ne!(regenerated["key2"], "acct-key2-value");
        // The token was asked for the ARM audience: the emulator accepted it.
        let calls = azure.calls("Accounts_RegenerateKey").await;
        assert_eq!(calls.last().map(|c| c.status), Some(200));
    }

    #[tokio::test]
    async fn a_missing_resource_is_not_found() {
        let azure = with_account("OpenAI", json!({})).await;
        let error = azure
            .arm()
            .get(&ArmResourceId::parse(&account_id("nope")).unwrap(), API)
            .await
            .unwrap_err();
        let ArmError::NotFound { code, message } = &error else {
            panic!("expected NotFound, got {error:?}");
        };
        assert_eq!(code, "ResourceNotFound");
        assert!(message.contains("nope"), "{message}");
    }

    #[tokio::test]
    async fn refusals_are_permanent_with_the_service_code() {
        let azure = with_account("OpenAI", json!({"allowed_principals": ["someone-else"]})).await;
        let error = azure
            .arm()
            .post(&acct(), "listKeys", API, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ArmError::Permanent { status: Some(403), code, .. } if code == "AuthorizationFailed"),
            "{error:?}"
        );
        assert!(error.to_string().contains("listKeys/action"), "{error}");

        let error = azure.arm().get(&acct(), "1999-01-01").await.unwrap_err();
        assert!(
            matches!(&error, ArmError::Permanent { status: Some(400), code, .. } if code == "NoRegisteredProviderFound"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn the_code_survives_json_escapes_in_the_message() {
        let azure = with_account("OpenAI", json!({})).await;
        azure
            .fault(
                json!({"operation": "Accounts_Get", "status": 409, "code": "Conflict",
                          "message": "first line\r\nsecond \"quoted\" line"}),
            )
            .await;
        let error = azure.arm().get(&acct(), API).await.unwrap_err();
        assert_eq!(
            error,
            ArmError::Permanent {
                status: Some(409),
                code: "Conflict".into(),
                message: "first line second \"quoted\" line".into()
            }
        );
    }

    #[tokio::test]
    async fn a_500_then_success_is_retried_by_the_pipeline() {
        let azure = with_account("OpenAI", json!({})).await;
        azure
            .fault(json!({"operation": "Accounts_ListKeys", "status": 500, "count": 1}))
            .await;
        let keys = azure.arm().post(&acct(), "listKeys", API, None).await.unwrap();
        assert_eq!(keys["key2"], "acct-key2-value");
        let statuses: Vec<u16> = azure
            .calls("Accounts_ListKeys")
            .await
            .iter()
            .map(|c| c.status)
            .collect();
        assert_eq!(statuses, [500, 200]);
    }

    #[tokio::test]
    async fn throttling_past_the_retries_is_transient() {
        let azure = with_account("OpenAI", json!({})).await;
        azure
            .fault(json!({"operation": "Accounts_Get", "status": 429, "count": 5}))
            .await;
        let started = Instant::now();
        let error = azure.arm().get(&acct(), API).await.unwrap_err();
        assert!(
            matches!(
                error,
                ArmError::Transient {
                    status: Some(429),
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            azure.calls("Accounts_Get").await.len(),
            3,
            "one try and two retries"
        );
        assert!(started.elapsed().as_secs() < 5);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_transient() {
        let azure = start().await;
        // The emulator's resolver refuses every host it does not emulate.
        let arm = ArmClient::new(
            "https://management.example.invalid".parse().unwrap(),
            azure.credential(),
            azure.client_options(),
        );
        let error = arm.get(&acct(), API).await.unwrap_err();
        assert!(
            matches!(error, ArmError::Transient { status: None, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("not an emulated host"), "{error}");
    }

    #[tokio::test]
    async fn a_plain_http_endpoint_is_refused_for_good() {
        let azure = start().await;
        let arm = ArmClient::new(
            "http://management.azure.com".parse().unwrap(),
            azure.credential(),
            azure.client_options(),
        );
        let error = arm.get(&acct(), API).await.unwrap_err();
        assert!(
            matches!(error, ArmError::Permanent { status: None, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("non-TLS"), "{error}");
    }

    #[test]
    fn error_bodies_parse_in_both_shapes_and_without_json() {
        assert_eq!(
            error_body(400, br#"{"error":{"code":"BadRequest","message":"a\r\nb"}}"#),
            ("BadRequest".to_string(), "a b".to_string())
        );
        assert_eq!(
            error_body(409, br#"{"code":"Conflict","message":"busy"}"#),
            ("Conflict".to_string(), "busy".to_string())
        );
        assert_eq!(
            error_body(502, b"<html>bad   gateway</html>"),
            ("BadGateway".to_string(), "<html>bad gateway</html>".to_string())
        );
        assert_eq!(
            error_body(503, b""),
            (
                "ServiceUnavailable".to_string(),
                "Service Unavailable".to_string()
            )
        );
    }

    #[test]
    fn success_bodies_are_json_null_or_a_content_free_error() {
        use azure_core::http::StatusCode;
        use azure_core::http::headers::Headers;
        let answer = |status: StatusCode, body: &'static [u8]| {
            read_answer(&RawResponse::from_bytes(status, Headers::new(), body))
        };
        assert_eq!(answer(StatusCode::Ok, b"").unwrap(), Value::Null);
        assert_eq!(answer(StatusCode::NoContent, b"").unwrap(), Value::Null);
        assert_eq!(
            answer(StatusCode::Accepted, br#"{"status":"InProgress"}"#).unwrap(),
            Value::Null
        );
        assert_eq!(
            answer(StatusCode::Ok, br#"{"key1":"a"}"#).unwrap(),
            json!({"key1": "a"})
        );
        let error = answer(StatusCode::Ok, br#"{"key1":"leaked-key-value","key2":"#).unwrap_err();
        assert!(
            matches!(&error, ArmError::Permanent { status: Some(200), code, .. } if code == "InvalidResponseBody"),
            "{error:?}"
        );
        assert!(!format!("{error} {error:?}").contains("leaked-key-value"));
        let error = answer(StatusCode::Ok, br#"{"key1":"leaked-key-value"}}"#).unwrap_err();
        assert!(!format!("{error} {error:?}").contains("leaked-key-value"));
    }

    #[test]
    fn statuses_classify() {
        let c = |s| classify_status(s, "C".into(), "m".into());
        assert!(matches!(c(404), ArmError::NotFound { .. }));
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(c(s), ArmError::Transient { .. }), "{s}");
        }
        for s in [400, 401, 403, 409, 412] {
            assert!(matches!(c(s), ArmError::Permanent { .. }), "{s}");
        }
    }

    #[test]
    fn urls_carry_the_api_version_under_the_endpoint() {
        let arm = ArmClient::new(
            "https://management.azure.com/".parse().unwrap(),
            Arc::new(NoCredential),
            ClientOptions::default(),
        );
        let id = ArmResourceId::parse("/subscriptions/s/resourceGroups/rg/providers/P/t/n").unwrap();
        assert_eq!(
            arm.url(&id, Some("listKeys"), API).unwrap().as_str(),
            "https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/P/t/n/listKeys?api-version=2025-06-01"
        );
        assert_eq!(
            arm.url(&id, None, API).unwrap().as_str(),
            "https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/P/t/n?api-version=2025-06-01"
        );
        // An action that is not one segment is refused rather than reinterpreted.
        assert!(arm.url(&id, Some("../../x"), API).is_err());
        assert!(arm.url(&id, Some(".."), API).is_err());
    }

    #[derive(Debug)]
    struct NoCredential;

    #[async_trait::async_trait]
    impl TokenCredential for NoCredential {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::with_message(ErrorKind::Credential, "none"))
        }
    }
}
