//! What every emulated Azure call goes through around its operation: injected latency, injected
//! faults (before or after the operation runs), throttling ([`crate::throttling`]) and the call
//! record.
//!
//! A service handler identifies the operation and its target, says which throttling bucket it
//! draws from ([`Exchange::set_throttle`]), authenticates the caller, then runs the operation
//! between [`Exchange::before`] and [`Exchange::finish`]. Latency delays only what reaches
//! `before`: an answer refused earlier (authentication, validation) is immediate. Every
//! Resource Manager answer carries its bucket's `x-ms-ratelimit-remaining-*` header.

use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::calls::{CallStart, LeaseCall, Service};
use crate::error::{AzureError, default_code};
use crate::faults::{FaultRule, Phase};
use crate::throttling::{Admission, Scope, ThrottleKey};
use crate::world::Ctx;

/// What `x-ms-ratelimit-remaining-*` says while Resource Manager is not throttled.
const UNTHROTTLED_REMAINING: u64 = 11_999;

/// One call in flight.
#[derive(Debug)]
pub struct Exchange {
    ctx: Ctx,
    start: CallStart,
    /// Names a fault or latency rule's `target` may use for this call.
    targets: Vec<String>,
    caller: Option<String>,
    key_slot: Option<String>,
    lease: Option<LeaseCall>,
    throttle: Option<ThrottleKey>,
    /// Tokens left in the bucket after this call was admitted.
    remaining: Option<u64>,
}

impl Exchange {
    pub fn new(ctx: Ctx, start: CallStart, targets: Vec<String>) -> Self {
        Self {
            ctx,
            start,
            targets,
            caller: None,
            key_slot: None,
            lease: None,
            throttle: None,
            remaining: None,
        }
    }

    /// Notes the throttling bucket the call draws from (Key Vault and Resource Manager).
    pub fn set_throttle(&mut self, key: ThrottleKey) {
        self.throttle = Some(key);
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Notes who called (the token's `oid`).
    pub fn set_caller(&mut self, oid: String) {
        self.caller = Some(oid);
    }

    /// Notes which key slot a data-plane call authenticated with.
    pub fn set_key_slot(&mut self, slot: &str) {
        self.key_slot = Some(slot.to_string());
    }

    /// Notes what a lease call asked for.
    pub fn set_lease(&mut self, lease: LeaseCall) {
        self.lease = Some(lease);
    }

    /// Notes what the upstream answered a lease call (before any `after`-phase fault).
    pub fn lease_answered(&mut self, status: u16, granted_lease_id: Option<String>, at_ms: i64) {
        if let Some(lease) = self.lease.as_mut() {
            lease.upstream_status = Some(status);
            lease.answered_ms = Some(at_ms);
            if granted_lease_id.is_some() {
                lease.lease_id = granted_lease_id;
            }
        }
    }

    fn target_refs(&self) -> Vec<&str> {
        self.targets.iter().map(String::as_str).collect()
    }

    /// Applies injected latency, then an injected fault of the `before` phase, if armed, then
    /// throttling: a call its bucket refuses answers 429 (and is counted).
    pub async fn before(&mut self) -> Result<(), Response> {
        let delay = self
            .ctx
            .world()
            .faults
            .take_latency(&self.start.operation, &self.target_refs());
        if let Some(ms) = delay {
            wait_precisely(Duration::from_millis(ms)).await;
        }
        let fault =
            self.ctx
                .world()
                .faults
                .take_fault(&self.start.operation, &self.target_refs(), Phase::Before);
        if let Some(rule) = fault {
            return Err(self.record(render_fault(self.start.service, &rule), true));
        }
        let Some(key) = self.throttle.clone() else {
            return Ok(());
        };
        let admission = self.ctx.world().throttling.admit(&key);
        match admission {
            Admission::Unlimited => Ok(()),
            Admission::Admitted { remaining } => {
                self.remaining = Some(remaining);
                Ok(())
            }
            Admission::Throttled { wait_seconds } => {
                self.remaining = Some(0);
                let response = render_throttled(
                    self.start.service,
                    &key,
                    wait_seconds,
                    self.caller.as_deref().unwrap_or(""),
                );
                Err(self.record(response, false))
            }
        }
    }

    /// Records the answer (replaced by an `after`-phase fault if one is armed) and returns it.
    pub fn finish(self, response: Response) -> Response {
        let fault =
            self.ctx
                .world()
                .faults
                .take_fault(&self.start.operation, &self.target_refs(), Phase::After);
        match fault {
            Some(rule) => self.record(render_fault(self.start.service, &rule), true),
            None => self.record(response, false),
        }
    }

    /// Records an answer given before the operation could run (authentication, validation).
    pub fn reject(self, response: Response) -> Response {
        self.record(response, false)
    }

    fn record(&self, mut response: Response, faulted: bool) -> Response {
        if self.start.service == Service::Arm
            && let Some(key) = &self.throttle
        {
            let remaining = match self.remaining {
                Some(n) => Some(n),
                None => self.ctx.world().throttling.remaining(key),
            };
            let value = remaining.unwrap_or(UNTHROTTLED_REMAINING).to_string();
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(key.remaining_header()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        self.ctx.world().record(
            &self.start,
            response.status().as_u16(),
            self.caller.clone(),
            self.key_slot.clone(),
            faulted,
            self.lease.clone(),
        );
        response
    }
}

/// The answer to a call its throttling bucket refused.
///
/// Key Vault: 429 `Throttled` with the message captured from a real vault
/// (`../shared/reference/rest-contracts.md` §A.6, vcsjones/AzureSignTool#219) and no
/// `Retry-After`, which Key Vault does not send. Resource Manager: 429
/// `SubscriptionRequestsThrottled` with the message captured from ARM (velero-io/velero#9171),
/// and `Retry-After`: the whole seconds until a token is there, at least 1. For calls outside
/// a subscription the code and message say tenant instead (a paraphrase; no capture was found).
pub fn render_throttled(service: Service, key: &ThrottleKey, wait_seconds: f64, caller: &str) -> Response {
    match service {
        Service::Keyvault => {
            AzureError::new(StatusCode::TOO_MANY_REQUESTS, "Throttled", KEYVAULT_THROTTLED).into_response()
        }
        _ => {
            let seconds = (wait_seconds.ceil() as u64).max(1);
            let (code, whose) = match &key.scope {
                Scope::Subscription(s) | Scope::Vault(s) => {
                    ("SubscriptionRequestsThrottled", format!("subscription '{s}'"))
                }
                Scope::Tenant => ("TenantRequestsThrottled", "tenant".to_string()),
            };
            let message = format!(
                "Number of '{}' requests for {whose} actor '{caller}' exceeded. Please try again after '{seconds}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling for additional information.",
                key.kind.singular()
            );
            let mut response = AzureError::new(StatusCode::TOO_MANY_REQUESTS, code, message).into_response();
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
    }
}

/// Key Vault's throttling message, as a real vault answers it.
pub const KEYVAULT_THROTTLED: &str =
    "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached";

/// The answer of an injected fault, in the service's own error shape.
pub fn render_fault(service: Service, rule: &FaultRule) -> Response {
    let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, message) = default_fault_text(service, status);
    let code = rule.code.clone().unwrap_or(code);
    let message = rule.message.clone().unwrap_or(message);
    let mut response = match service {
        Service::Identity => crate::error::json_response(
            status,
            &serde_json::json!({ "statusCode": status.as_u16(), "message": message }),
        ),
        Service::Storage => crate::storage::storage_error(status, &code, &message),
        _ => AzureError::new(status, code, message).into_response(),
    };
    if let Some(seconds) = rule.retry_after_seconds
        && let Ok(value) = seconds.to_string().parse()
    {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

fn default_fault_text(service: Service, status: StatusCode) -> (String, String) {
    match (service, status.as_u16()) {
        (Service::Keyvault, 429) => ("Throttled".into(), KEYVAULT_THROTTLED.into()),
        (Service::Arm, 429) => (
            "TooManyRequests".into(),
            "The request is being throttled as the limit has been reached for operation type. Please retry after the time in the Retry-After header.".into(),
        ),
        (Service::Storage, 503) => (
            "ServerBusy".into(),
            "The server is currently unable to receive requests. Please retry your request.".into(),
        ),
        (Service::Storage, 500) => (
            "InternalError".into(),
            "The server encountered an internal error. Please retry the request.".into(),
        ),
        (Service::Dataplane, code) => (
            code.to_string(),
            format!("Injected fault: {}", status.canonical_reason().unwrap_or("error")),
        ),
        _ => (
            default_code(status),
            format!(
                "Injected fault: the service answered {} {}.",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
        ),
    }
}

/// Injected latency, to within a fraction of a millisecond: tokio's timer fires on the
/// millisecond tick after its deadline (often 1–2 ms late), which over hundreds of sequential
/// list pages would measure the stand-in rather than the client. Tokio's timer takes all but
/// the last [`PRECISE_TAIL`] (so a dropped request stops waiting, as a long injected hang must),
/// and a thread of the blocking pool sleeps the rest with the kernel's high-resolution timer.
async fn wait_precisely(delay: Duration) {
    let until = std::time::Instant::now() + delay;
    if let Some(coarse) = delay.checked_sub(PRECISE_TAIL) {
        tokio::time::sleep(coarse).await;
    }
    let rest = until.saturating_duration_since(std::time::Instant::now());
    if rest.is_zero() {
        return;
    }
    let slept = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    if slept.is_err() {
        // The pool is shutting down: the emulator is stopping anyway.
        tokio::time::sleep(rest).await;
    }
}

/// The end of an injected latency slept precisely (see [`wait_precisely`]): more than tokio's
/// timer is late.
const PRECISE_TAIL: Duration = Duration::from_millis(3);
