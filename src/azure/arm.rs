//! The Resource Manager client: an `azure_core` [`Pipeline`] with the bearer-token policy for
//! `<arm_endpoint>/.default` (token caching and refresh, retries with `Retry-After`, user agent,
//! client request ids), and the calls on it — [`ArmClient::get`] a resource and
//! [`ArmClient::post`] an idempotent action (`listKeys`) — answering JSON or an [`ArmError`]
//! that says whether retrying can help.
//!
//! # Actions that must not run twice
//! The pipeline's retry policy re-sends any request, POST included, after 408, 429, 5xx or an
//! I/O error (`reference/rust-azure-sdk.md` §5, §7). [`ArmClient::post_once`] sends an action
//! that is not idempotent (`regenerateKey`) through a second pipeline that shares the token
//! policy but never retries, and says honestly what an answer that never came means: an I/O
//! error after sending, a 408 or a 5xx are [`ArmError::Lost`] (it may or may not have run); a
//! connection that never opened, a missing token or a 429 are [`ArmError::Transient`] (it did
//! not run).
//!
//! # Long-running operations
//! An action answered 201/202 with `Azure-AsyncOperation` or `Location` is followed by
//! [`ArmClient::wait`] (`reference/rest-contracts.md` D.2): it polls `Azure-AsyncOperation` if
//! given, else `Location`, with the bounded-retry pipeline (polls are GETs), waiting
//! `Retry-After` between polls but never less than [`MIN_POLL_INTERVAL`] nor more than
//! [`MAX_POLL_INTERVAL`] ([`DEFAULT_POLL_INTERVAL`] without one), until the operation succeeds,
//! fails or is canceled. Throttled or failing polls are polled again; it never gives up on its
//! own: the caller bounds it (the engine wraps every provider call in its invocation's budget).
//! A polling URL is checked before it is called: https, and the scheme, host and port of the
//! configured endpoint, so no answer can send keyflip's Resource Manager token elsewhere.
//!
//! It owns the wire: URL building, the api-version, the status and the ARM error body
//! (`{"error":{"code","message"}}`), which it parses itself — azure_core's own parsing loses the
//! code when a message holds a JSON escape. It does not know any resource type (providers do),
//! and it never logs: callers add context and log once. Nothing it sends is secret; the keys that
//! `listKeys`/`regenerateKey` answer go back to the caller in the JSON value and never into an
//! error. Providers (`crate::providers`) call it; the transport and credential come from
//! start-up wiring.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::headers::{HeaderName, Headers, RETRY_AFTER};
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, RawResponse, Request, RetryOptions,
};
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
    /// Only from [`ArmClient::post_once`]: the request may have reached Resource Manager, but
    /// its answer was lost (an I/O error after sending, 408 or 5xx); the action may or may not
    /// have run.
    #[error("Resource Manager's answer was lost, so whether the action ran is unknown: {message}")]
    Lost {
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

/// The most pages [`ArmClient::list`] follows.
pub const MAX_LIST_PAGES: usize = 200;

/// The shortest wait between two polls of a long-running operation, whatever `Retry-After` says.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between two polls, whatever `Retry-After` says: a budget of seconds must
/// not sleep through an operation that ended.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// The wait between two polls when the answer has no (readable) `Retry-After`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

const AZURE_ASYNC_OPERATION: HeaderName = HeaderName::from_static("azure-asyncoperation");
const LOCATION: HeaderName = HeaderName::from_static("location");

/// What an action sent once answered. Its `Debug` never shows the body (it may hold keys).
#[derive(Clone, PartialEq)]
pub enum ActionAnswer {
    /// 200/204 (or a 201/202 without a polling URL): the JSON answer, `Null` for an empty or
    /// unreadable body (the action ran; its result must be read another way).
    Done(Value),
    /// 201/202 with a polling URL: a long-running operation to follow with [`ArmClient::wait`].
    Accepted(Accepted),
}

impl std::fmt::Debug for ActionAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Done(Value::Null) => f.write_str("Done(null)"),
            Self::Done(_) => f.write_str("Done(<body redacted>)"),
            Self::Accepted(accepted) => f.debug_tuple("Accepted").field(accepted).finish(),
        }
    }
}

/// How to follow an accepted long-running operation: its headers, unchecked until
/// [`ArmClient::wait`] checks the one it polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub async_operation: Option<String>,
    pub location: Option<String>,
    /// `Retry-After` of the 202, when readable.
    pub retry_after: Option<Duration>,
}

/// Why a long-running operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationError {
    /// It ended `Failed` or `Canceled` (or its `Location` answered a final error): whatever it
    /// was to change is unchanged.
    #[error("the operation ended {status}: {code}: {message}")]
    Ended {
        status: String,
        code: String,
        message: String,
    },
    /// It could not be followed to its end (a polling URL keyflip refuses to call, an answer it
    /// cannot read, a refusal of the poll itself): it may still end either way.
    #[error("{0}")]
    Unfollowable(String),
}

/// A Resource Manager client for one cloud.
#[derive(Debug, Clone)]
pub struct ArmClient {
    endpoint: Url,
    /// Bounded retries (the `client_options` given): reads, idempotent actions, polls.
    pipeline: Pipeline,
    /// The same policies without retries: actions that must be sent once.
    once: Pipeline,
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
        let build = |options: ClientOptions| {
            Pipeline::new(
                Some("keyflip"),
                Some(crate::VERSION),
                options,
                Vec::new(),
                vec![auth.clone()],
                None,
            )
        };
        let once = build(ClientOptions {
            retry: RetryOptions::none(),
            ..client_options.clone()
        });
        Self {
            endpoint: arm_endpoint,
            pipeline: build(client_options),
            once,
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

    /// `GET <endpoint>/<segments>?<query>&api-version=<api_version>`: a read of anything
    /// Resource Manager serves (a collection, a scope's permissions, a role definition). The
    /// URL is built from the segments (each one is encoded, never reinterpreted).
    pub async fn get_at(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        api_version: &str,
    ) -> Result<Value, ArmError> {
        let url = self.url_at(segments, query, api_version)?;
        self.get_url(url).await
    }

    /// Every item of a collection: `value` of each page, following `nextLink` (only to this
    /// endpoint: keyflip's token goes nowhere else) for at most [`MAX_LIST_PAGES`] pages.
    pub async fn list(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        api_version: &str,
    ) -> Result<Vec<Value>, ArmError> {
        let mut url = self.url_at(segments, query, api_version)?;
        let mut items = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let page = self.get_url(url).await?;
            if let Some(values) = page.get("value").and_then(Value::as_array) {
                items.extend(values.iter().cloned());
            }
            match page
                .get("nextLink")
                .and_then(Value::as_str)
                .filter(|l| !l.trim().is_empty())
            {
                None => return Ok(items),
                Some(next) => {
                    url = self.poll_url(next, "nextLink").map_err(|e| ArmError::Permanent {
                        status: None,
                        code: "UnfollowableNextLink".into(),
                        message: e.to_string(),
                    })?;
                }
            }
        }
        Err(ArmError::Permanent {
            status: None,
            code: "TooManyPages".into(),
            message: format!(
                "the list under /{} has more than {MAX_LIST_PAGES} pages; keyflip stops there",
                truncate(&segments.join("/"), 200)
            ),
        })
    }

    fn url_at(&self, segments: &[&str], query: &[(&str, &str)], api_version: &str) -> Result<Url, ArmError> {
        let mut pairs = query.to_vec();
        pairs.push(("api-version", api_version));
        with_segments(&self.endpoint, segments, &pairs).ok_or_else(|| ArmError::Permanent {
            status: None,
            code: "InvalidResourcePath".into(),
            message: format!(
                "the URL of /{} under {} would not name exactly that path; keyflip refuses to call it",
                truncate(&segments.join("/"), 200),
                self.endpoint
            ),
        })
    }

    async fn get_url(&self, url: Url) -> Result<Value, ArmError> {
        let mut request = Request::new(url, Method::Get);
        request.insert_header("accept", "application/json");
        self.answer(&mut request).await
    }

    /// `POST <endpoint>/<resource>/<action>?api-version=<api_version>` (`listKeys`,
    /// `regenerateKey`), with an optional JSON body. The JSON answer; `Null` for an empty body
    /// or an accepted long-running operation (202), whose result the caller must read another
    /// way.
    ///
    /// The pipeline retries a POST like any request (408, 429, 5xx, I/O): only for actions that
    /// may run twice. Send the others with [`ArmClient::post_once`].
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

    /// `POST <endpoint>/<resource>/<action>?api-version=…` sent exactly once (`regenerateKey`):
    /// never retried by the pipeline, so it runs at most once. A lost answer (I/O error after
    /// sending, 408, 5xx) is [`ArmError::Lost`]; a 201/202 with a polling URL is
    /// [`ActionAnswer::Accepted`].
    pub async fn post_once(
        &self,
        resource: &ArmResourceId,
        action: &str,
        api_version: &str,
        body: Option<Value>,
    ) -> Result<ActionAnswer, ArmError> {
        let mut request = self.request(Method::Post, resource, Some(action), api_version, body)?;
        let response = match self
            .once
            .send(&Context::new(), &mut request, Some(no_checks()))
            .await
        {
            Ok(response) => response,
            // The request may have been written before the connection broke.
            Err(e) if matches!(e.kind(), ErrorKind::Io) => {
                return Err(ArmError::Lost {
                    status: None,
                    message: error_chain(&e),
                });
            }
            Err(e) => return Err(classify_sdk_error(&e)),
        };
        let status = u16::from(response.status());
        let accepted = Accepted {
            async_operation: header(response.headers(), &AZURE_ASYNC_OPERATION),
            location: header(response.headers(), &LOCATION),
            retry_after: retry_after(response.headers()),
        };
        if matches!(status, 201 | 202) && (accepted.async_operation.is_some() || accepted.location.is_some())
        {
            return Ok(ActionAnswer::Accepted(accepted));
        }
        match read_answer(&response) {
            Ok(value) => Ok(ActionAnswer::Done(value)),
            // It ran; an unreadable body only means its result must be read another way.
            Err(_) if (200..300).contains(&status) => Ok(ActionAnswer::Done(Value::Null)),
            Err(ArmError::Transient {
                status: Some(status),
                message,
            }) if status != 429 => Err(ArmError::Lost {
                status: Some(status),
                message,
            }),
            Err(other) => Err(other),
        }
    }

    /// Follows an accepted long-running operation until it succeeds (`Ok`), ends otherwise
    /// ([`OperationError::Ended`]) or cannot be followed ([`OperationError::Unfollowable`]).
    /// It polls for as long as it takes; bound it with a timeout.
    pub async fn wait(&self, accepted: &Accepted) -> Result<(), OperationError> {
        let (url, by_status) = match (&accepted.async_operation, &accepted.location) {
            (Some(url), _) => (self.poll_url(url, "Azure-AsyncOperation")?, true),
            (None, Some(url)) => (self.poll_url(url, "Location")?, false),
            (None, None) => {
                return Err(OperationError::Unfollowable(
                    "Resource Manager accepted the operation without a URL to follow it".into(),
                ));
            }
        };
        let shown = format!(
            "{}{}",
            url.host_str().unwrap_or_default(),
            truncate(url.path(), 200)
        );
        let mut wait = poll_interval(accepted.retry_after);
        loop {
            tokio::time::sleep(wait).await;
            let mut request = Request::new(url.clone(), Method::Get);
            request.insert_header("accept", "application/json");
            let response = match self
                .pipeline
                .send(&Context::new(), &mut request, Some(no_checks()))
                .await
            {
                Ok(response) => response,
                Err(e) => match classify_sdk_error(&e) {
                    // The pipeline's own retries are spent; poll again at the next interval.
                    ArmError::Transient { .. } => {
                        wait = DEFAULT_POLL_INTERVAL;
                        continue;
                    }
                    other => {
                        return Err(OperationError::Unfollowable(format!(
                            "polling {shown} failed: {other}"
                        )));
                    }
                },
            };
            wait = poll_interval(retry_after(response.headers()));
            let status = u16::from(response.status());
            if matches!(status, 408 | 429 | 500..=599) {
                continue;
            }
            let ended = if by_status {
                status_poll(&response, &shown)?
            } else {
                location_poll(&response, &shown)?
            };
            if ended {
                return Ok(());
            }
        }
    }

    /// A polling URL an answer gave, if keyflip may send its token there: https, and the
    /// scheme, host and port of the configured endpoint.
    fn poll_url(&self, raw: &str, header: &str) -> Result<Url, OperationError> {
        let refuse = |why: String| {
            OperationError::Unfollowable(format!(
                "Resource Manager answered with a {header} URL {why}; keyflip follows only https URLs on {}, so it did not call it (its Resource Manager token goes nowhere else)",
                self.endpoint.origin().ascii_serialization()
            ))
        };
        let url = Url::parse(raw.trim()).map_err(|e| refuse(format!("that is not an absolute URL ({e})")))?;
        if url.scheme() != "https" {
            return Err(refuse(format!("with scheme '{}'", truncate(url.scheme(), 20))));
        }
        let same_host = url
            .host_str()
            .zip(self.endpoint.host_str())
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b));
        if !same_host || url.port_or_known_default() != self.endpoint.port_or_known_default() {
            return Err(refuse(format!(
                "on host '{}'",
                truncate(&url.host_str().map(one_line).unwrap_or_default(), 100)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("holding credentials".into()));
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        resource: &ArmResourceId,
        action: Option<&str>,
        api_version: &str,
        body: Option<Value>,
    ) -> Result<Value, ArmError> {
        let mut request = self.request(method, resource, action, api_version, body)?;
        self.answer(&mut request).await
    }

    /// Sends `request` through the retrying pipeline and reads its JSON answer. Statuses are
    /// classified here, from the body itself: azure_core's own check loses the error code when
    /// the message holds a JSON escape.
    async fn answer(&self, request: &mut Request) -> Result<Value, ArmError> {
        let response = self
            .pipeline
            .send(&Context::new(), request, Some(no_checks()))
            .await
            .map_err(|e| classify_sdk_error(&e))?;
        read_answer(&response)
    }

    fn request(
        &self,
        method: Method,
        resource: &ArmResourceId,
        action: Option<&str>,
        api_version: &str,
        body: Option<Value>,
    ) -> Result<Request, ArmError> {
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
        Ok(request)
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

/// Send options that leave every status to this module.
fn no_checks() -> PipelineSendOptions {
    PipelineSendOptions {
        skip_checks: true,
        ..Default::default()
    }
}

fn header(headers: &Headers, name: &HeaderName) -> Option<String> {
    headers
        .get_optional_str(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// `Retry-After` in seconds (ARM sends seconds; an HTTP date is ignored).
fn retry_after(headers: &Headers) -> Option<Duration> {
    header(headers, &RETRY_AFTER)?
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The wait before the next poll: `Retry-After` within the bounds.
fn poll_interval(retry_after: Option<Duration>) -> Duration {
    retry_after
        .unwrap_or(DEFAULT_POLL_INTERVAL)
        .clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL)
}

/// One answer of the `Azure-AsyncOperation` URL (not 408/429/5xx): `true` once `Succeeded`.
fn status_poll(response: &RawResponse, shown: &str) -> Result<bool, OperationError> {
    let status = u16::from(response.status());
    if !(200..300).contains(&status) {
        let (code, message) = error_body(status, response.body());
        return Err(OperationError::Unfollowable(format!(
            "polling {shown} was refused ({status} {code}: {message})"
        )));
    }
    let body: Option<Value> = serde_json::from_slice(response.body()).ok();
    let Some(state) = body
        .as_ref()
        .and_then(|b| b.get("status"))
        .and_then(Value::as_str)
    else {
        return Err(OperationError::Unfollowable(format!(
            "polling {shown} answered {status} without an operation status"
        )));
    };
    if state.eq_ignore_ascii_case("Succeeded") {
        return Ok(true);
    }
    if state.eq_ignore_ascii_case("Failed") || state.eq_ignore_ascii_case("Canceled") {
        let error = body.as_ref().and_then(|b| b.get("error"));
        let field = |name: &str| {
            error
                .and_then(|e| e.get(name))
                .and_then(Value::as_str)
                .map(|s| truncate(&one_line(s), 300))
                .unwrap_or_default()
        };
        return Err(OperationError::Ended {
            status: truncate(&one_line(state), 20),
            code: field("code"),
            message: field("message"),
        });
    }
    Ok(false)
}

/// One answer of the `Location` URL (not 408/429/5xx): `false` while 202, `true` on another 2xx
/// (its body is not read), an error otherwise.
fn location_poll(response: &RawResponse, shown: &str) -> Result<bool, OperationError> {
    let status = u16::from(response.status());
    match status {
        202 => Ok(false),
        200..=299 => Ok(true),
        401 | 403 | 404 => {
            let (code, message) = error_body(status, response.body());
            Err(OperationError::Unfollowable(format!(
                "polling {shown} was refused ({status} {code}: {message})"
            )))
        }
        _ => {
            let (code, message) = error_body(status, response.body());
            Err(OperationError::Ended {
                status: format!("Failed ({status})"),
                code,
                message,
            })
        }
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

    #[test]
    fn poll_intervals_follow_retry_after_within_bounds() {
        let secs = Duration::from_secs;
        assert_eq!(poll_interval(None), DEFAULT_POLL_INTERVAL);
        assert_eq!(poll_interval(Some(secs(0))), MIN_POLL_INTERVAL);
        assert_eq!(poll_interval(Some(secs(4))), secs(4));
        assert_eq!(poll_interval(Some(secs(3600))), MAX_POLL_INTERVAL);
        let mut headers = Headers::new();
        headers.insert(RETRY_AFTER, "7");
        assert_eq!(retry_after(&headers), Some(secs(7)));
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2026 07:28:00 GMT");
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn only_https_urls_on_the_endpoints_host_are_polled() {
        let arm = ArmClient::new(
            "https://management.azure.com".parse().unwrap(),
            Arc::new(NoCredential),
            ClientOptions::default(),
        );
        let ok = "https://Management.Azure.com/subscriptions/s/providers/P/locations/l/operationStatuses/1?api-version=1";
        assert_eq!(
            arm.poll_url(ok, "Azure-AsyncOperation").unwrap().host_str(),
            Some("management.azure.com")
        );
        assert!(
            arm.poll_url("https://management.azure.com:443/x", "Location")
                .is_ok()
        );
        for bad in [
            "http://management.azure.com/x",
            "https://management.azure.com.attacker.net/x",
            "https://attacker.net/x",
            "https://management.azure.com:8443/x",
            "https://user:pass@management.azure.com/x",
            "/subscriptions/s/providers/P/locations/l/operationResults/1",
            "",
        ] {
            let error = arm.poll_url(bad, "Location").unwrap_err();
            let OperationError::Unfollowable(message) = &error else {
                panic!("{bad}: {error:?}");
            };
            assert!(
                message.contains("https://management.azure.com") && message.contains("did not call"),
                "{message}"
            );
        }
    }

    /// A transport that answers from a script, in order, and notes what it was sent.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: std::sync::Mutex<std::collections::VecDeque<ScriptedAnswer>>,
        seen: std::sync::Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(answers: Vec<ScriptedAnswer>) -> Arc<Self> {
            Arc::new(Self {
                answers: std::sync::Mutex::new(answers.into()),
                seen: Default::default(),
            })
        }

        fn client(self: &Arc<Self>) -> ArmClient {
            let options = ClientOptions {
                transport: Some(azure_core::http::Transport::new(self.clone())),
                retry: azure_core::http::RetryOptions::exponential(
                    azure_core::http::ExponentialRetryOptions {
                        max_retries: 2,
                        initial_delay: azure_core::time::Duration::milliseconds(10),
                        ..Default::default()
                    },
                ),
                ..Default::default()
            };
            ArmClient::new(
                "https://management.azure.com".parse().unwrap(),
                Arc::new(StaticCredential),
                options,
            )
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl azure_core::http::HttpClient for Scripted {
        async fn execute_request(
            &self,
            request: &azure_core::http::Request,
        ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
            self.seen
                .lock()
                .unwrap()
                .push(format!("{} {}", request.method(), request.url().path()));
            let next = self.answers.lock().unwrap().pop_front();
            let (status, headers, body) = next.unwrap_or(Ok((500, vec![], "")))?;
            let mut map = Headers::new();
            for (name, value) in headers {
                map.insert(name, value);
            }
            Ok(azure_core::http::AsyncRawResponse::from_bytes(
                azure_core::http::StatusCode::from(status),
                map,
                body.as_bytes().to_vec(),
            ))
        }
    }

    fn io_error(kind: ErrorKind) -> azure_core::Error {
        azure_core::Error::with_message(kind, "connection reset")
    }

    type ScriptedAnswer = azure_core::Result<(u16, Vec<(&'static str, &'static str)>, &'static str)>;

    /// `regenerateKey` sent once against a transport answering `answer`.
    async fn once(answer: ScriptedAnswer) -> Result<ActionAnswer, ArmError> {
        let script = Scripted::new(vec![answer]);
        let result = script
            .client()
            .post_once(&acct(), "regenerateKey", API, Some(json!({"keyName": "Key1"})))
            .await;
        assert_eq!(script.seen().len(), 1, "sent once: {:?}", script.seen());
        result
    }

    #[tokio::test]
    async fn an_action_sent_once_says_whether_it_may_have_run() {
        for (answer, lost) in [
            (Err(io_error(ErrorKind::Io)), true),
            (Ok((500, vec![], "")), true),
            (Ok((503, vec![("retry-after", "1")], "")), true),
            (Ok((408, vec![], "")), true),
            (Err(io_error(ErrorKind::Connection)), false),
            (Ok((429, vec![("retry-after", "1")], "")), false),
        ] {
            let error = once(answer).await.unwrap_err();
            assert_eq!(matches!(error, ArmError::Lost { .. }), lost, "{error:?}");
            if !lost {
                assert!(matches!(error, ArmError::Transient { .. }), "{error:?}");
            }
        }
        let refused = once(Ok((
            409,
            vec![],
            r#"{"error":{"code":"Conflict","message":"busy"}}"#,
        )))
        .await
        .unwrap_err();
        assert!(
            matches!(
                refused,
                ArmError::Permanent {
                    status: Some(409),
                    ..
                }
            ),
            "{refused:?}"
        );
        let unreadable = once(Ok((200, vec![], "{not json"))).await.unwrap();
        assert_eq!(unreadable, ActionAnswer::Done(Value::Null));
        let accepted = once(Ok((
            202,
            vec![
                ("location", "https://management.azure.com/op"),
                ("retry-after", "3"),
            ],
            "",
        )))
        .await
        .unwrap();
        assert_eq!(
            accepted,
            ActionAnswer::Accepted(Accepted {
                async_operation: None,
                location: Some("https://management.azure.com/op".into()),
                retry_after: Some(Duration::from_secs(3)),
            })
        );
        let bare = once(Ok((202, vec![], ""))).await.unwrap();
        assert_eq!(bare, ActionAnswer::Done(Value::Null));
        let keys = once(Ok((200, vec![], r#"{"key1":"leaked-key-value","key2":"b"}"#)))
            .await
            .unwrap();
        assert_eq!(
            keys,
            ActionAnswer::Done(json!({"key1": "leaked-key-value", "key2": "b"}))
        );
        assert!(!format!("{keys:?}").contains("leaked-key-value"));
    }

    #[tokio::test]
    async fn a_location_is_polled_until_it_stops_answering_202() {
        let script = Scripted::new(vec![
            Ok((202, vec![("location", "https://management.azure.com/op/1")], "")),
            Ok((202, vec![("retry-after", "0")], "")),
            Ok((200, vec![], r#"{"key1":"a","key2":"b"}"#)),
        ]);
        let arm = script.client();
        let ActionAnswer::Accepted(accepted) =
            arm.post_once(&acct(), "regenerateKey", API, None).await.unwrap()
        else {
            panic!("expected Accepted");
        };
        let started = Instant::now();
        arm.wait(&Accepted {
            retry_after: Some(Duration::ZERO),
            ..accepted
        })
        .await
        .unwrap();
        assert!(started.elapsed() >= 2 * MIN_POLL_INTERVAL);
        assert_eq!(script.seen()[1..], ["GET /op/1", "GET /op/1"]);
    }

    #[tokio::test]
    async fn a_final_location_error_ends_the_operation_and_a_refused_poll_is_unfollowable() {
        let location = Accepted {
            async_operation: None,
            location: Some("https://management.azure.com/op/1".into()),
            retry_after: Some(Duration::ZERO),
        };
        let script = Scripted::new(vec![Ok((
            400,
            vec![],
            r#"{"error":{"code":"KeyRegenerationFailed","message":"no"}}"#,
        ))]);
        let error = script.client().wait(&location).await.unwrap_err();
        assert!(
            matches!(&error, OperationError::Ended { code, .. } if code == "KeyRegenerationFailed"),
            "{error:?}"
        );
        let script = Scripted::new(vec![Ok((
            403,
            vec![],
            r#"{"error":{"code":"AuthorizationFailed","message":"no"}}"#,
        ))]);
        let error = script.client().wait(&location).await.unwrap_err();
        assert!(
            matches!(&error, OperationError::Unfollowable(m) if m.contains("403")),
            "{error:?}"
        );
        let status = Accepted {
            async_operation: Some("https://management.azure.com/op/1".into()),
            ..location
        };
        let script = Scripted::new(vec![Ok((200, vec![], r#"{"status":"Canceled"}"#))]);
        let error = script.client().wait(&status).await.unwrap_err();
        assert!(
            matches!(&error, OperationError::Ended { status, .. } if status == "Canceled"),
            "{error:?}"
        );
        let script = Scripted::new(vec![Ok((200, vec![], "{}"))]);
        assert!(matches!(
            script.client().wait(&status).await,
            Err(OperationError::Unfollowable(_))
        ));
    }

    #[derive(Debug)]
    struct StaticCredential;

    #[async_trait::async_trait]
    impl TokenCredential for StaticCredential {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Ok(azure_core::credentials::AccessToken::new(
                "token",
                azure_core::time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(3600),
            ))
        }
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
