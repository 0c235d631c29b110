//! The custom handler's HTTP server (axum on hyper's HTTP/1 connection): it routes what the
//! Functions host calls to the trigger modules, through the [`Rotator`] seam the triggers own,
//! guards the HTTP surface, bounds the work it takes on, and shuts down gracefully, letting
//! in-flight rotations finish within a bound. It decides nothing about rotations.
//!
//! | route | caller | handled by |
//! |---|---|---|
//! | `GET /` | the host's readiness probe: answered at once | here |
//! | `POST /KeyVaultEvents` | eventGridTrigger envelope | `triggers::keyvault_events` |
//! | `POST /RotationSweep` | timerTrigger envelope | `triggers::sweep` (`handle`, or `fan_out` with `KEYFLIP_SWEEP_MODE=queue`) |
//! | `POST /SweepVault` | queueTrigger envelope (`keyflip-sweep`) | `triggers::sweep_vault` |
//! | `POST /KeyVaultEventsQueue` | queueTrigger envelope (`keyflip-events`) | `triggers::keyvault_events_queue` |
//! | `POST /api/rotate/{vault}/{secret}` | forwarded httpTrigger request | `triggers::manual` |
//! | `GET /api/status` | forwarded httpTrigger request (`RotationStatus`) | `status::http` |
//! | anything else | — | JSON 404 (405 for a known path with another method) |
//!
//! Before any route, a layer applies [`surface`]'s refusals to every request: a browser's
//! (`Origin`, `Sec-Fetch-Site`: 403) and a `Host` that is not loopback, `WEBSITE_HOSTNAME` or in
//! `KEYFLIP_ALLOWED_HOSTS` (421). A client gets [`ServerLimits::header_read_timeout`] to send
//! each request's headers, then the connection is closed.
//!
//! Each invocation runs in its own spawned task inside a span carrying the function name and
//! the host's `X-Azure-Functions-InvocationId`, so a caller that hangs up does not cancel a
//! rotation midway, and shutdown waits for such orphaned work too. At most
//! `KEYFLIP_MAX_INVOCATIONS` such tasks run at once (orphans included); beyond it an invocation
//! is answered at once: 503 with `Retry-After` on the manual route, 500 with an envelope on the
//! host-driven ones so that the host or Event Grid retries. `GET /` is never refused by it.
//! Request bodies and query strings are never logged (a query carries the function key in
//! `code`); values echoed from a request go through [`echo`]. The trigger modules map results
//! to answers; this module answers only what happens before or around a trigger (refusals,
//! busy, a crashed task, no route). `main` (or the CLI's `serve` command) builds the
//! [`AppState`] (`crate::app::state`), binds the listener and calls [`serve`].

pub mod surface;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tracing::{Instrument, Span};

use crate::config::{DEFAULT_MAX_INVOCATIONS, KEYFLIP_MAX_INVOCATIONS, SweepMode};
use crate::domain::untrusted::echo;
use crate::engine::Engine;
use crate::status::StatusSource;
use crate::triggers::envelope::{InvocationResponse, NotAnEnvelope, Reply};
use crate::triggers::manual::ManualCall;
use crate::triggers::{Rotator, keyvault_events, keyvault_events_queue, manual, sweep, sweep_vault};
use surface::AllowedHosts;

/// The header in which the host names the invocation.
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";

/// Time each kind of invocation may spend (KEYFLIP_EVENT_BUDGET_SECONDS,
/// KEYFLIP_SWEEP_BUDGET_SECONDS, KEYFLIP_MANUAL_BUDGET_SECONDS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    pub event: Duration,
    pub sweep: Duration,
    pub manual: Duration,
}

impl Default for Budgets {
    /// DESIGN.md §8's defaults: 20 s, 240 s, 60 s.
    fn default() -> Self {
        Self {
            event: Duration::from_secs(20),
            sweep: Duration::from_secs(240),
            manual: Duration::from_secs(60),
        }
    }
}

/// What [`serve`] bounds besides the routes' own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a client may take to send a request's headers, counted from the connection's
    /// start or from the end of the previous answer (so an idle kept-alive connection is closed
    /// after it too); then the connection is closed.
    pub header_read_timeout: Duration,
    /// How long shutdown lets in-flight invocations finish.
    pub drain: Duration,
}

impl Default for ServerLimits {
    /// 10 s for headers (the host sends them at once, over loopback); a 25 s drain after
    /// SIGTERM.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(25),
        }
    }
}

/// What a busy manual call is told to wait before retrying (`Retry-After`, seconds).
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// What every route shares.
#[derive(Debug, Clone)]
pub struct AppState {
    rotator: Arc<dyn Rotator>,
    budgets: Budgets,
    in_flight: InFlight,
    hosts: Arc<AllowedHosts>,
    invocations: Arc<Semaphore>,
    max_invocations: usize,
    sweep_mode: SweepMode,
    /// What `GET /api/status` reports from; `None` answers 503.
    status: Option<Arc<dyn StatusSource>>,
}

impl AppState {
    /// Loopback hosts only and [`DEFAULT_MAX_INVOCATIONS`]; see the `with_` methods.
    pub fn new(rotator: Arc<dyn Rotator>, budgets: Budgets) -> Self {
        Self {
            rotator,
            budgets,
            in_flight: InFlight::default(),
            hosts: Arc::new(AllowedHosts::loopback_only()),
            invocations: Arc::new(Semaphore::new(DEFAULT_MAX_INVOCATIONS)),
            max_invocations: DEFAULT_MAX_INVOCATIONS,
            sweep_mode: SweepMode::Single,
            status: None,
        }
    }

    /// Whether the timer sweeps itself or fans out through the queue (KEYFLIP_SWEEP_MODE).
    pub fn with_sweep_mode(mut self, mode: SweepMode) -> Self {
        self.sweep_mode = mode;
        self
    }

    /// Where `GET /api/status` reads from.
    pub fn with_status(mut self, status: Arc<dyn StatusSource>) -> Self {
        self.status = Some(status);
        self
    }

    /// The host names answered besides loopback (WEBSITE_HOSTNAME, KEYFLIP_ALLOWED_HOSTS).
    pub fn with_allowed_hosts(mut self, hosts: AllowedHosts) -> Self {
        self.hosts = Arc::new(hosts);
        self
    }

    /// How many invocations may run at once (KEYFLIP_MAX_INVOCATIONS; at least 1).
    pub fn with_max_invocations(mut self, max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        self.invocations = Arc::new(Semaphore::new(max));
        self.max_invocations = max;
        self
    }

    /// The production wiring: the engine behind the routes.
    pub fn from_engine(engine: Engine, budgets: Budgets) -> Self {
        let status = Arc::new(crate::status::Collector::from_engine(&engine));
        Self::new(Arc::new(engine), budgets).with_status(status)
    }

    pub fn budgets(&self) -> Budgets {
        self.budgets
    }

    /// How many invocations are still running, including those whose caller hung up.
    pub fn in_flight(&self) -> usize {
        self.in_flight.count()
    }
}

/// Counts the spawned invocation tasks, so shutdown can wait for them.
#[derive(Debug, Clone, Default)]
struct InFlight(Arc<InFlightInner>);

#[derive(Debug, Default)]
struct InFlightInner {
    count: AtomicUsize,
    idle: Notify,
}

/// Held by one running invocation task.
#[derive(Debug)]
struct InFlightGuard(InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.0.count.load(Ordering::SeqCst)
    }

    /// Resolves once no invocation task is running.
    async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

/// The handler's routes, behind the [`surface`] checks.
pub fn router(state: AppState) -> Router {
    let hosts = state.hosts.clone();
    let timer: EnvelopeHandler = match state.sweep_mode {
        SweepMode::Single => |r, t, body| Box::pin(sweep::handle(r, t, body)),
        SweepMode::Queue => |r, t, body| Box::pin(sweep::fan_out(r, t, body)),
    };
    Router::new()
        .route("/", get(ready))
        .route(
            &format!("/{}", keyvault_events::FUNCTION),
            envelope_route(
                keyvault_events::FUNCTION,
                |b| b.event,
                |r, t, body| Box::pin(keyvault_events::handle(r, t, body)),
            ),
        )
        .route(
            &format!("/{}", sweep::FUNCTION),
            envelope_route(sweep::FUNCTION, |b| b.sweep, timer),
        )
        .route(
            &format!("/{}", sweep_vault::FUNCTION),
            envelope_route(
                sweep_vault::FUNCTION,
                |b| b.sweep,
                |r, t, body| Box::pin(sweep_vault::handle(r, t, body)),
            ),
        )
        .route(
            &format!("/{}", keyvault_events_queue::FUNCTION),
            envelope_route(
                keyvault_events_queue::FUNCTION,
                |b| b.event,
                |r, t, body| Box::pin(keyvault_events_queue::handle(r, t, body)),
            ),
        )
        .route("/api/rotate/{vault}/{secret}", post(rotate_secret))
        .route("/api/status", get(rotation_status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn_with_state(hosts, guard_surface))
}

/// Refuses what [`surface::check`] refuses, before any route (and the 404 fallback) runs.
async fn guard_surface(State(hosts): State<Arc<AllowedHosts>>, request: Request, next: Next) -> Response {
    match surface::check(request.headers(), request.uri(), &hosts) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(
                method = %echo(request.method().as_str()),
                path = %echo(request.uri().path()),
                "request refused: {refusal}"
            );
            refusal.into_response()
        }
    }
}

async fn ready() -> &'static str {
    "keyflip ready"
}

/// One span per invocation: the function and the host's invocation id (a GUID; bounded).
fn invocation_span(function: &'static str, headers: &HeaderMap) -> Span {
    let id: Option<String> = headers
        .get(INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| echo(&v.chars().take(64).collect::<String>()));
    tracing::info_span!(
        "invocation",
        function = function,
        invocation_id = id.as_deref().unwrap_or("-")
    )
}

/// How a spawned invocation ended.
#[derive(Debug)]
enum Ran<T> {
    Answered(T),
    /// Refused before it started: KEYFLIP_MAX_INVOCATIONS were running.
    Busy,
    Panicked,
}

/// Runs an invocation's work in its own task, so that a dropped connection does not cancel
/// it, if fewer than the bound of invocations are running (the task holds its permit until it
/// ends, whether or not its caller is still there).
async fn spawned<T: Send + 'static>(
    state: &AppState,
    span: Span,
    work: impl Future<Output = T> + Send + 'static,
) -> Ran<T> {
    let Ok(permit) = state.invocations.clone().try_acquire_owned() else {
        span.in_scope(|| {
            tracing::warn!(
                max_invocations = state.max_invocations,
                "invocation refused: the bound of concurrent invocations is reached"
            );
        });
        return Ran::Busy;
    };
    let guard = state.in_flight.enter();
    let task = tokio::spawn(
        async move {
            let _permit = permit;
            let _guard = guard;
            work.await
        }
        .instrument(span.clone()),
    );
    match task.await {
        Ok(value) => Ran::Answered(value),
        Err(error) => {
            // Never the JoinError's text: for a panic it quotes the panic's message, which can
            // hold anything the panicking code held, a key included (I7).
            let what = match error.is_panic() {
                true => "panicked (the panic's message is not shown: it could quote a key)",
                false => "was cancelled",
            };
            span.in_scope(|| crate::engine::log_events::invocation_failed(what));
            Ran::Panicked
        }
    }
}

fn busy_message(max: usize) -> String {
    format!(
        "keyflip is already running its bound of {max} concurrent invocations ({KEYFLIP_MAX_INVOCATIONS}); retry shortly"
    )
}

/// The answer to an envelope invocation refused as busy: 500, so that the host (and Event
/// Grid) retries.
fn busy_envelope(max: usize) -> Response {
    let message = busy_message(max);
    Reply {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: InvocationResponse::new(&json!({ "error": message }), vec![message.clone()]),
    }
    .into_response()
}

/// The answer to a manual call refused as busy: 503 with `Retry-After`.
fn busy_manual(max: usize) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, &busy_message(max));
    response
        .headers_mut()
        .insert(RETRY_AFTER, RETRY_AFTER_SECONDS.into());
    response
}

/// The answer to an envelope invocation whose task panicked: 500, so that the host retries.
fn crashed_envelope() -> Response {
    Reply {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: InvocationResponse::new(
            &Value::Null,
            vec!["keyflip failed unexpectedly; the invocation is reported failed".into()],
        ),
    }
    .into_response()
}

fn envelope_answer(answer: Ran<Result<Reply, NotAnEnvelope>>, max_invocations: usize) -> Response {
    match answer {
        Ran::Answered(Ok(reply)) => reply.into_response(),
        Ran::Answered(Err(not_an_envelope)) => not_an_envelope.into_response(),
        Ran::Busy => busy_envelope(max_invocations),
        Ran::Panicked => crashed_envelope(),
    }
}

fn warn_not_an_envelope(answer: &Result<Reply, NotAnEnvelope>) {
    if let Err(error) = answer {
        tracing::warn!("{error}");
    }
}

/// A trigger module's handler of an envelope function (one the host invokes with a
/// custom-handler envelope): the rotator, the function's budget and the request body.
type EnvelopeHandler = fn(Arc<dyn Rotator>, Duration, Bytes) -> BoxFuture<Result<Reply, NotAnEnvelope>>;
type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// The route of an envelope function: each invocation runs in its own task inside its span.
fn envelope_route(
    function: &'static str,
    budget: fn(&Budgets) -> Duration,
    handle: EnvelopeHandler,
) -> axum::routing::MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>, headers: HeaderMap, body: Bytes| async move {
            let span = invocation_span(function, &headers);
            let work = handle(state.rotator.clone(), budget(&state.budgets), body);
            let work = async move {
                let answer = work.await;
                warn_not_an_envelope(&answer);
                answer
            };
            envelope_answer(spawned(&state, span, work).await, state.max_invocations)
        },
    )
}

async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let span = invocation_span(manual::FUNCTION, &headers);
    let Ok(Path((vault, secret))) = path else {
        return error(
            StatusCode::BAD_REQUEST,
            "the path must be /api/rotate/{vault}/{secret}",
        );
    };
    let call = ManualCall {
        vault,
        secret,
        query,
        content_type: headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        body,
    };
    let rotator = state.rotator.clone();
    let budget = state.budgets.manual;
    let work = async move { manual::handle(rotator.as_ref(), budget, call).await };
    match spawned(&state, span, work).await {
        Ran::Answered(reply) => reply.into_response(),
        Ran::Busy => busy_manual(state.max_invocations),
        Ran::Panicked => error(StatusCode::INTERNAL_SERVER_ERROR, "keyflip failed unexpectedly"),
    }
}

/// `GET /api/status`: in its own task and span like every invocation, within the manual
/// budget; it changes nothing.
async fn rotation_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let span = invocation_span(crate::status::http::FUNCTION, &headers);
    let Some(source) = state.status.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the status is not wired in this server",
        );
    };
    let budget = state.budgets.manual;
    let work = async move { crate::status::http::answer(source.as_ref(), query.as_deref(), budget).await };
    match spawned(&state, span, work).await {
        Ran::Answered(response) => response,
        Ran::Busy => busy_manual(state.max_invocations),
        Ran::Panicked => error(StatusCode::INTERNAL_SERVER_ERROR, "keyflip failed unexpectedly"),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no route for {} {}", echo(method.as_str()), echo(uri.path())),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{} does not accept {}", echo(uri.path()), echo(method.as_str())),
    )
}

/// Serves HTTP/1 until `shutdown` resolves, then stops accepting, lets in-flight invocations
/// finish for at most `limits.drain`, and returns (abandoning whatever is still running after
/// that). Each connection gets `limits.header_read_timeout` to send each request's headers.
pub async fn serve(
    mut listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> io::Result<()> {
    let address = listener.local_addr()?;
    let in_flight = state.in_flight.clone();
    let service = TowerToHyperService::new(router(state));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    tracing::info!(%address, "keyflip listening");
    loop {
        tokio::select! {
            // axum's accept loop: it retries on a connection error and backs off on others.
            (stream, _peer) = axum::serve::Listener::accept(&mut listener) => {
                let connection = http.serve_connection(TokioIo::new(stream), service.clone());
                let connection = connections.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!("connection closed: {error}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        in_flight = in_flight.count(),
        drain_ms = u64::try_from(limits.drain.as_millis()).unwrap_or(u64::MAX),
        "shutting down: letting in-flight invocations finish"
    );
    let waiting = in_flight.clone();
    let finished = async move {
        // Idle connections close at once; busy ones after their answer.
        connections.shutdown().await;
        waiting.idle().await;
    };
    match tokio::time::timeout(limits.drain, finished).await {
        Ok(()) => tracing::info!("stopped"),
        Err(_) => tracing::warn!(
            abandoned = in_flight.count(),
            "the drain bound was reached; stopping with invocations still running"
        ),
    }
    Ok(())
}

/// Resolves on SIGTERM (what the Functions host and container platforms send) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {error}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!("cannot listen for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use axum::body::Body;
    use axum::http::Request;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    use async_trait::async_trait;

    use super::*;
    use crate::domain::VaultName;
    use crate::engine::{
        Class, FailReason, Outcome, RotationRequest, RotationResult, SkipReason, SweepReport, SweepSummary,
        TriggerKind,
    };

    const BUDGETS: Budgets = Budgets {
        event: Duration::from_secs(11),
        sweep: Duration::from_secs(22),
        manual: Duration::from_secs(33),
    };

    /// A rotator that answers canned outcomes and records what it was asked.
    #[derive(Debug)]
    struct Fake {
        vaults: Vec<&'static str>,
        outcome: Outcome,
        report: SweepReport,
        /// When set, `rotate` and `sweep` wait for it before answering.
        gate: Option<Arc<Notify>>,
        started: Notify,
        finished: AtomicUsize,
        requests: Mutex<Vec<RotationRequest>>,
        sweeps: Mutex<Vec<Duration>>,
    }

    impl Fake {
        fn new(outcome: Outcome) -> Self {
            Self {
                vaults: vec!["sample-kv", "kv-one"],
                outcome,
                report: SweepReport::default(),
                gate: None,
                started: Notify::new(),
                finished: AtomicUsize::new(0),
                requests: Mutex::new(Vec::new()),
                sweeps: Mutex::new(Vec::new()),
            }
        }

        fn sweeping(report: SweepReport) -> Self {
            Self {
                report,
                ..Self::new(Outcome::Rotated)
            }
        }

        fn gated(outcome: Outcome) -> (Self, Arc<Notify>) {
            let gate = Arc::new(Notify::new());
            let fake = Self {
                gate: Some(gate.clone()),
                ..Self::new(outcome)
            };
            (fake, gate)
        }

        fn requests(&self) -> Vec<RotationRequest> {
            self.requests.lock().unwrap().clone()
        }

        async fn wait(&self) {
            self.started.notify_one();
            if let Some(gate) = &self.gate {
                gate.notified().await;
            }
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Rotator for Fake {
        fn serves(&self, vault: &VaultName) -> bool {
            self.vaults.contains(&vault.as_str())
        }

        async fn rotate(&self, request: RotationRequest) -> RotationResult {
            self.requests.lock().unwrap().push(request.clone());
            self.wait().await;
            RotationResult {
                secret: request.secret.to_string(),
                vault: request.vault.to_string(),
                provider: Some("Microsoft.CognitiveServices/accounts".into()),
                trigger: request.trigger,
                outcome: self.outcome,
                from: Some("key1".into()),
                to: Some("key2".into()),
                version: Some("0123456789abcdef0123456789abcdef".into()),
                expires: None,
                verified: true,
                duration_ms: 1,
                message: "canned".into(),
            }
        }

        fn vaults(&self) -> Vec<VaultName> {
            self.vaults.iter().map(|v| VaultName::parse(v).unwrap()).collect()
        }

        async fn sweep(&self, budget: Duration) -> SweepReport {
            self.sweeps.lock().unwrap().push(budget);
            self.wait().await;
            self.report.clone()
        }

        async fn sweep_vaults(&self, vaults: &[VaultName], budget: Duration) -> SweepReport {
            self.requests
                .lock()
                .unwrap()
                .extend(vaults.iter().map(|v| RotationRequest {
                    vault: v.clone(),
                    ..sweep_marker(budget)
                }));
            self.sweep(budget).await
        }
    }

    /// What a `sweep_vaults` call is recorded as among the requests (its vault and budget).
    fn sweep_marker(budget: Duration) -> RotationRequest {
        RotationRequest {
            revoke_active: false,
            vault: VaultName::parse("marker").unwrap(),
            secret: crate::domain::SecretName::parse("sweep-vaults").unwrap(),
            trigger: TriggerKind::Timer,
            event_version: None,
            dry_run: false,
            force: false,
            budget,
            index_wait: None,
        }
    }

    fn app(fake: &Arc<Fake>) -> Router {
        router(AppState::new(fake.clone(), BUDGETS).with_status(Arc::new(FakeStatus::default())))
    }

    /// A status source that answers an empty report and records what it was asked.
    #[derive(Debug, Default)]
    struct FakeStatus {
        asked: Mutex<Vec<(Option<String>, Duration)>>,
    }

    #[async_trait]
    impl StatusSource for FakeStatus {
        async fn status(
            &self,
            only: Option<&VaultName>,
            budget: Duration,
        ) -> Result<crate::status::StatusReport, crate::status::NotServed> {
            self.asked
                .lock()
                .unwrap()
                .push((only.map(ToString::to_string), budget));
            if only.is_some_and(|v| v.as_str() != "kv-one") {
                return Err(crate::status::NotServed {
                    vault: only.map(ToString::to_string).unwrap_or_default(),
                    served: "kv-one".into(),
                });
            }
            Ok(crate::status::StatusReport {
                generated_at: time::OffsetDateTime::UNIX_EPOCH,
                paused: true,
                lead_days: 30,
                dwell_hours: 24,
                max_rotations_per_sweep: None,
                summary: crate::status::StatusSummary::default(),
                vaults: Vec::new(),
                problems: Vec::new(),
                secrets: Vec::new(),
            })
        }
    }

    #[tokio::test]
    async fn the_status_answers_json_html_and_text_in_the_manual_budget() {
        let fake = Arc::new(Fake::new(Outcome::Rotated));
        let status = Arc::new(FakeStatus::default());
        let app = || router(AppState::new(fake.clone(), BUDGETS).with_status(status.clone()));
        let (code, body) = call(app(), get("/api/status?code=function-key")).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["paused"], true, "{body}");
        for (query, content_type) in [
            ("format=html", "text/html; charset=utf-8"),
            ("format=text", "text/plain; charset=utf-8"),
            ("format=json&vault=kv-one", "application/json"),
        ] {
            let response = app().oneshot(get(&format!("/api/status?{query}"))).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            let headers = response.headers();
            assert_eq!(headers[CONTENT_TYPE], content_type, "{query}");
            assert_eq!(headers["cache-control"], "no-store");
            assert_eq!(headers["referrer-policy"], "no-referrer");
            if query == "format=html" {
                let policy = headers["content-security-policy"].to_str().unwrap();
                assert!(policy.contains("script-src 'none'"), "{policy}");
            }
        }
        let asked = status.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 4);
        assert!(asked.iter().all(|(_, budget)| *budget == BUDGETS.manual));
        assert_eq!(asked[3].0.as_deref(), Some("kv-one"));
        // Refusals: a misspelt parameter, a vault not served, another method.
        let (code, body) = call(app(), get("/api/status?fromat=html")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("fromat"), "{body}");
        let (code, body) = call(app(), get("/api/status?vault=kv-other")).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(
            body["error"].as_str().unwrap().contains("KEYFLIP_VAULTS"),
            "{body}"
        );
        let (code, _) = call(app(), post("/api/status", Body::empty())).await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(status.asked.lock().unwrap().len(), 5);
        assert!(fake.requests().is_empty(), "the status rotates nothing");
        // Without a source the route says so.
        let bare = router(AppState::new(fake.clone(), BUDGETS));
        let (code, _) = call(bare, get("/api/status")).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    }

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/data/events/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
        Request::post(uri)
            .header("host", "127.0.0.1:7071")
            .header("content-type", "application/json")
            .header(
                "X-Azure-Functions-InvocationId",
                "0c7ba2e1-7b5c-4e8f-9d0a-2f1c3b4d5e6f",
            )
            .body(body.into())
            .unwrap()
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri)
            .header("host", "localhost:7071")
            .body(Body::empty())
            .unwrap()
    }

    async fn call(app: Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&bytes)));
        (status, body)
    }

    fn assert_envelope(body: &Value) {
        assert_eq!(body["Outputs"], json!({}), "{body}");
        assert!(!body["Logs"].as_array().unwrap().is_empty(), "{body}");
        assert!(body["ReturnValue"].is_object(), "{body}");
    }

    #[tokio::test]
    async fn the_readiness_probe_is_answered_at_once() {
        let fake = Arc::new(Fake::new(Outcome::Rotated));
        let (status, body) = call(app(&fake), get("/")).await;
        assert_eq!((status, body), (StatusCode::OK, Value::from("keyflip ready")));
    }

    #[tokio::test]
    async fn an_event_envelope_rotates_with_the_event_budget_and_version() {
        for path in [
            "derived/eventgrid-invocation.custom-handler.json",
            "derived/eventgrid-invocation.custom-handler.string-encoded.json",
        ] {
            let fake = Arc::new(Fake::new(Outcome::Rotated));
            let (status, body) = call(app(&fake), post("/KeyVaultEvents", fixture(path))).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            assert_envelope(&body);
            assert_eq!(body["ReturnValue"]["outcome"], "rotated");
            assert_eq!(body["ReturnValue"]["trigger"], "event");
            let requests = fake.requests();
            assert_eq!(requests.len(), 1);
            assert_eq!(requests[0].budget, BUDGETS.event);
            assert_eq!(requests[0].trigger, TriggerKind::Event);
            assert_eq!(
                requests[0].event_version.as_ref().unwrap().as_str(),
                "ee059b2bb5bc48398a53b168c6cdcb10"
            );
        }
    }

    #[tokio::test]
    async fn event_results_answer_by_class() {
        let cases = [
            (Outcome::Skipped(SkipReason::Stale), StatusCode::OK),
            (Outcome::Failed(FailReason::Misconfigured), StatusCode::OK),
            (Outcome::Pending, StatusCode::INTERNAL_SERVER_ERROR),
            (
                Outcome::Failed(FailReason::Locked),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (outcome, expected) in cases {
            let fake = Arc::new(Fake::new(outcome));
            let body = fixture("derived/eventgrid-invocation.custom-handler.json");
            let (status, body) = call(app(&fake), post("/KeyVaultEvents", body)).await;
            assert_eq!(status, expected, "{}", outcome.label());
            assert_envelope(&body);
            assert_eq!(body["ReturnValue"]["outcome"], outcome.label());
            if outcome.class() == Class::Permanent {
                assert!(body["Logs"][0].as_str().unwrap().contains("canned"));
            }
        }
    }

    #[tokio::test]
    async fn events_answered_without_the_engine_never_reach_it() {
        let ignored = json!({"Data": {"event": serde_json::from_slice::<Value>(
            &fixture("keyvault-secret-new-version-created.eventgrid.json")).unwrap()}});
        let bad = json!({"Data": {"event": {"data": {}}}});
        let cases = [
            (ignored, "skipped:ignored", vec!["sample-kv", "kv-one"]),
            (bad, "failed:bad-event", vec!["sample-kv"]),
            (
                serde_json::from_slice(&fixture("derived/eventgrid-invocation.custom-handler.json")).unwrap(),
                "failed:not-allowed",
                vec!["kv-one"],
            ),
        ];
        for (envelope, outcome, vaults) in cases {
            let fake = Arc::new(Fake {
                vaults,
                ..Fake::new(Outcome::Rotated)
            });
            let (status, body) = call(app(&fake), post("/KeyVaultEvents", envelope.to_string())).await;
            assert_eq!(status, StatusCode::OK, "{outcome}");
            assert_envelope(&body);
            assert_eq!(body["ReturnValue"]["outcome"], outcome);
            assert!(fake.requests().is_empty(), "{outcome}");
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_envelope_is_a_400_on_both_envelope_routes() {
        for route in ["/KeyVaultEvents", "/RotationSweep"] {
            for body in ["not json", r#"{"Metadata": {}}"#, r#"{"Data": []}"#] {
                let fake = Arc::new(Fake::new(Outcome::Rotated));
                let (status, answer) = call(app(&fake), post(route, body)).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{route} {body}");
                assert!(
                    answer["error"]
                        .as_str()
                        .unwrap()
                        .contains("not a custom-handler envelope")
                );
                assert!(fake.requests().is_empty() && fake.sweeps.lock().unwrap().is_empty());
            }
        }
    }

    fn sweep_report(outcomes: &[Outcome]) -> SweepReport {
        let results = outcomes
            .iter()
            .map(|outcome| {
                RotationResult::without_rotation(
                    "kv-one",
                    "api-key",
                    TriggerKind::Timer,
                    *outcome,
                    "canned".into(),
                )
            })
            .collect();
        SweepReport {
            summary: SweepSummary {
                scanned: outcomes.len(),
                ..SweepSummary::default()
            },
            results,
            errors: Vec::new(),
            problems: Vec::new(),
            ..SweepReport::default()
        }
    }

    #[tokio::test]
    async fn every_timer_envelope_runs_the_sweep_with_the_sweep_budget() {
        for path in [
            "derived/timer-invocation.custom-handler.json",
            "derived/timer-invocation.custom-handler.no-monitor.json",
            "derived/timer-invocation.custom-handler.retry.json",
        ] {
            let fake = Arc::new(Fake::sweeping(sweep_report(&[Outcome::Rotated])));
            let (status, body) = call(app(&fake), post("/RotationSweep", fixture(path))).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            assert_envelope(&body);
            assert_eq!(body["ReturnValue"]["summary"]["scanned"], 1);
            assert_eq!(body["ReturnValue"]["results"][0]["outcome"], "rotated");
            assert_eq!(*fake.sweeps.lock().unwrap(), vec![BUDGETS.sweep]);
        }
    }

    #[tokio::test]
    async fn a_transient_sweep_is_a_500_with_its_report() {
        let fake = Arc::new(Fake::sweeping(sweep_report(&[
            Outcome::Rotated,
            Outcome::Pending,
        ])));
        let body = fixture("derived/timer-invocation.custom-handler.json");
        let (status, body) = call(app(&fake), post("/RotationSweep", body)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_envelope(&body);
        assert_eq!(body["ReturnValue"]["results"][1]["outcome"], "pending");
    }

    fn queue_envelope(text: &str) -> String {
        json!({"Data": {"message": serde_json::to_string(text).unwrap()},
               "Metadata": {"DequeueCount": "1", "Id": "\"0b1c\""}})
        .to_string()
    }

    #[tokio::test]
    async fn in_queue_mode_the_timer_answers_one_message_per_vault_and_does_not_sweep() {
        let fake = Arc::new(Fake::sweeping(sweep_report(&[Outcome::Rotated])));
        let app = router(AppState::new(fake.clone(), BUDGETS).with_sweep_mode(SweepMode::Queue));
        let (status, body) = call(
            app,
            post(
                "/RotationSweep",
                fixture("derived/timer-invocation.custom-handler.json"),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let messages = body["Outputs"]["sweep"].as_array().unwrap();
        let vaults: Vec<&str> = messages.iter().map(|m| m["vault"].as_str().unwrap()).collect();
        assert_eq!(vaults, ["sample-kv", "kv-one"]);
        assert!(
            fake.sweeps.lock().unwrap().is_empty(),
            "no sweep in the timer itself"
        );
    }

    #[tokio::test]
    async fn a_sweep_vault_message_sweeps_its_vault_with_the_sweep_budget() {
        let fake = Arc::new(Fake::sweeping(sweep_report(&[Outcome::Rotated])));
        let (status, body) = call(
            app(&fake),
            post("/SweepVault", queue_envelope(r#"{"vault": "kv-one"}"#)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["ReturnValue"]["summary"].is_object(), "{body}");
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].vault.as_str(), "kv-one");
        assert_eq!(*fake.sweeps.lock().unwrap(), [BUDGETS.sweep]);

        // Transient: 500 so that the host retries the message.
        let pending = Arc::new(Fake::sweeping(sweep_report(&[Outcome::Pending])));
        let (status, _) = call(
            app(&pending),
            post("/SweepVault", queue_envelope(r#"{"vault": "kv-one"}"#)),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn bad_or_foreign_sweep_messages_are_acknowledged_without_sweeping() {
        for (text, outcome) in [
            ("not json", "failed:bad-event"),
            (r#"{"vault": "kv-unknown"}"#, "failed:not-allowed"),
        ] {
            let fake = Arc::new(Fake::new(Outcome::Rotated));
            let (status, body) = call(app(&fake), post("/SweepVault", queue_envelope(text))).await;
            assert_eq!(status, StatusCode::OK, "{text}: {body}");
            assert_eq!(body["ReturnValue"]["outcome"], outcome, "{body}");
            assert!(fake.sweeps.lock().unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_queued_event_rotates_with_the_event_budget_like_a_pushed_one() {
        let event = std::fs::read_to_string(format!(
            "{}/tests/data/events/derived/keyvault-secret-near-expiry.eventgrid.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        for text in [event.clone(), azure_core::base64::encode(event.as_bytes())] {
            let fake = Arc::new(Fake::new(Outcome::Rotated));
            let (status, body) = call(app(&fake), post("/KeyVaultEventsQueue", queue_envelope(&text))).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let requests = fake.requests();
            assert_eq!(requests.len(), 1, "{body}");
            assert_eq!(requests[0].budget, BUDGETS.event);
            assert_eq!(requests[0].trigger, TriggerKind::Event);
        }
        let pending = Arc::new(Fake::new(Outcome::Pending));
        let (status, body) = call(
            app(&pending),
            post("/KeyVaultEventsQueue", queue_envelope(&event)),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            body["Logs"][0]
                .as_str()
                .unwrap()
                .contains("the host retries the message"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_manual_call_answers_plain_http() {
        let cases = [
            (Outcome::Rotated, "", StatusCode::OK),
            (Outcome::Planned, "?dryRun=true&code=function-key", StatusCode::OK),
            (Outcome::Pending, "", StatusCode::ACCEPTED),
            (Outcome::Skipped(SkipReason::Dwell), "", StatusCode::CONFLICT),
            (Outcome::Failed(FailReason::NotFound), "", StatusCode::NOT_FOUND),
            (
                Outcome::Failed(FailReason::PointerMismatch),
                "",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (Outcome::Failed(FailReason::Azure), "", StatusCode::BAD_GATEWAY),
            (
                Outcome::Failed(FailReason::Transient),
                "",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (outcome, query, expected) in cases {
            let fake = Arc::new(Fake::new(outcome));
            let uri = format!("/api/rotate/kv-one/api-key{query}");
            let (status, body) = call(app(&fake), post(&uri, Body::empty())).await;
            assert_eq!(status, expected, "{}", outcome.label());
            assert_eq!(body["outcome"], outcome.label());
            assert_eq!(body["trigger"], "manual");
            assert!(body.get("Outputs").is_none());
            let request = &fake.requests()[0];
            assert_eq!(request.budget, BUDGETS.manual);
            assert_eq!(request.dry_run, query.contains("dryRun"));
        }
    }

    #[tokio::test]
    async fn manual_calls_refused_before_the_engine() {
        let cases = [
            (
                "/api/rotate/k/api-key",
                StatusCode::BAD_REQUEST,
                "vault in the path",
            ),
            (
                "/api/rotate/kv-one/api_key",
                StatusCode::BAD_REQUEST,
                "secret in the path",
            ),
            (
                "/api/rotate/kv-one/api-key?force=maybe",
                StatusCode::BAD_REQUEST,
                "'force'",
            ),
            (
                "/api/rotate/kv-other/api-key",
                StatusCode::NOT_FOUND,
                "KEYFLIP_VAULTS",
            ),
        ];
        for (uri, expected, says) in cases {
            let fake = Arc::new(Fake::new(Outcome::Rotated));
            let (status, body) = call(app(&fake), post(uri, Body::empty())).await;
            assert_eq!(status, expected, "{uri}");
            assert!(body["error"].as_str().unwrap().contains(says), "{uri}: {body}");
            assert!(fake.requests().is_empty());
        }
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_json() {
        let fake = Arc::new(Fake::new(Outcome::Rotated));
        let (status, body) = call(app(&fake), post("/Nope", Body::empty())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no route for POST /Nope");
        let (status, body) = call(app(&fake), get("/KeyVaultEvents")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body["error"].is_string());
    }

    /// One request of each route (and the fallback), with these extra headers.
    fn every_route(extra: &[(&str, &str)]) -> Vec<Request<Body>> {
        let event = fixture("derived/eventgrid-invocation.custom-handler.json");
        let timer = fixture("derived/timer-invocation.custom-handler.json");
        let mut requests = vec![
            get("/"),
            post("/KeyVaultEvents", event),
            post("/RotationSweep", timer),
            post("/api/rotate/kv-one/api-key", Body::empty()),
            get("/api/status"),
            post("/Nope", Body::empty()),
        ];
        for request in &mut requests {
            for (name, value) in extra {
                let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
                request.headers_mut().insert(name, value.parse().unwrap());
            }
        }
        requests
    }

    #[tokio::test]
    async fn a_browser_is_refused_on_every_route() {
        for header in [
            ("origin", "http://localhost:3000"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-origin"),
        ] {
            for request in every_route(&[header]) {
                let fake = Arc::new(Fake::new(Outcome::Rotated));
                let path = request.uri().path().to_string();
                let (status, body) = call(app(&fake), request).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{header:?} {path}");
                assert!(body["error"].as_str().unwrap().contains("browser"), "{body}");
                assert!(fake.requests().is_empty() && fake.sweeps.lock().unwrap().is_empty());
            }
        }
    }

    #[tokio::test]
    async fn what_the_host_curl_and_the_sdks_send_is_answered() {
        // No Origin, or Sec-Fetch-Site: none (a user typing the address), on every route.
        for extra in [
            &[][..],
            &[("sec-fetch-site", "none")],
            &[("user-agent", "curl/8.5.0")],
        ] {
            for request in every_route(extra) {
                let fake = Arc::new(Fake::sweeping(sweep_report(&[Outcome::Rotated])));
                let path = request.uri().path().to_string();
                let (status, _) = call(app(&fake), request).await;
                let expected = if path == "/Nope" {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                };
                assert_eq!(status, expected, "{extra:?} {path}");
            }
        }
    }

    #[tokio::test]
    async fn a_foreign_host_is_misdirected_on_every_route() {
        for host in [
            "evil.example",
            "evil.example:7071",
            "127.0.0.1.nip.io",
            "10.1.2.3",
        ] {
            for request in every_route(&[("host", host)]) {
                let fake = Arc::new(Fake::new(Outcome::Rotated));
                let path = request.uri().path().to_string();
                let (status, body) = call(app(&fake), request).await;
                assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host} {path}");
                assert!(
                    body["error"].as_str().unwrap().contains("KEYFLIP_ALLOWED_HOSTS"),
                    "{body}"
                );
                assert!(fake.requests().is_empty() && fake.sweeps.lock().unwrap().is_empty());
            }
        }
        let mut no_host = post("/api/rotate/kv-one/api-key", Body::empty());
        no_host.headers_mut().remove("host");
        let fake = Arc::new(Fake::new(Outcome::Rotated));
        let (status, body) = call(app(&fake), no_host).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        assert!(
            body["error"].as_str().unwrap().contains("names no Host"),
            "{body}"
        );
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn loopback_the_app_s_own_name_and_listed_hosts_are_answered() {
        let hosts = AllowedHosts::new(["myapp.azurewebsites.net", "keyflip.contoso.com"]);
        for host in [
            "localhost:7071",
            "127.0.0.1:49152",
            "[::1]:80",
            "MyApp.AzureWebsites.net",
            "keyflip.contoso.com:443",
        ] {
            let fake = Arc::new(Fake::new(Outcome::Rotated));
            let state = AppState::new(fake.clone(), BUDGETS).with_allowed_hosts(hosts.clone());
            let mut request = post("/api/rotate/kv-one/api-key", Body::empty());
            request.headers_mut().insert("host", host.parse().unwrap());
            let (status, body) = call(router(state), request).await;
            assert_eq!(status, StatusCode::OK, "{host}: {body}");
            assert_eq!(fake.requests().len(), 1);
        }
        // Not listed: not answered.
        let fake = Arc::new(Fake::new(Outcome::Rotated));
        let mut request = post("/api/rotate/kv-one/api-key", Body::empty());
        request
            .headers_mut()
            .insert("host", "myapp.azurewebsites.net".parse().unwrap());
        let (status, _) = call(app(&fake), request).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    }

    #[tokio::test]
    async fn an_unknown_query_parameter_is_refused_before_the_engine() {
        for query in ["dry_run=true", "dryRun=true&DRY-RUN=1", "code=k&foo=bar"] {
            let fake = Arc::new(Fake::new(Outcome::Rotated));
            let uri = format!("/api/rotate/kv-one/api-key?{query}");
            let (status, body) = call(app(&fake), post(&uri, Body::empty())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            let error = body["error"].as_str().unwrap();
            assert!(
                error.contains("is not accepted") && error.contains("dryRun, force, mode, code"),
                "{error}"
            );
            assert!(fake.requests().is_empty(), "{query}");
        }
    }

    #[tokio::test]
    async fn a_manual_body_is_optional_and_must_be_json() {
        let body_less = Request::post("/api/rotate/kv-one/api-key")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap();
        let curl_d = Request::post("/api/rotate/kv-one/api-key")
            .header("host", "localhost")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::empty())
            .unwrap();
        let json_body = post("/api/rotate/kv-one/api-key", r#"{"reason": "routine"}"#);
        for request in [body_less, curl_d, json_body] {
            let fake = Arc::new(Fake::new(Outcome::Rotated));
            let (status, body) = call(app(&fake), request).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(fake.requests().len(), 1);
        }
        let not_json = post("/api/rotate/kv-one/api-key", "dryRun=true");
        let form = Request::post("/api/rotate/kv-one/api-key")
            .header("host", "localhost")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("dryRun=true"))
            .unwrap();
        for (request, expected) in [
            (not_json, StatusCode::BAD_REQUEST),
            (form, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ] {
            let fake = Arc::new(Fake::new(Outcome::Rotated));
            let (status, body) = call(app(&fake), request).await;
            assert_eq!(status, expected, "{body}");
            assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");
            assert!(fake.requests().is_empty());
        }
    }

    #[tokio::test]
    async fn echoed_paths_are_cut_and_escaped() {
        let fake = Arc::new(Fake::new(Outcome::Rotated));
        let long = format!("/{}", "a".repeat(5000));
        let (status, body) = call(app(&fake), post(&long, Body::empty())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().unwrap().chars().count() < 250, "{body}");
        let (status, body) = call(app(&fake), post("/api/rotate/kv%0Aone/api-key", Body::empty())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("kv\\none"), "{body}");
    }

    #[tokio::test]
    async fn beyond_the_invocation_bound_manual_is_503_and_envelopes_500_but_readiness_answers() {
        let (fake, gate) = Fake::gated(Outcome::Rotated);
        let fake = Arc::new(fake);
        let state = AppState::new(fake.clone(), BUDGETS).with_max_invocations(1);
        let held =
            tokio::spawn(router(state.clone()).oneshot(post("/api/rotate/kv-one/api-key", Body::empty())));
        fake.started.notified().await;

        let response = router(state.clone())
            .oneshot(post("/api/rotate/kv-one/api-key", Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[RETRY_AFTER],
            RETRY_AFTER_SECONDS.to_string().as_str()
        );
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("KEYFLIP_MAX_INVOCATIONS"),
            "{body}"
        );
        for (path, envelope) in [
            (
                "/KeyVaultEvents",
                "derived/eventgrid-invocation.custom-handler.json",
            ),
            ("/RotationSweep", "derived/timer-invocation.custom-handler.json"),
        ] {
            let (status, body) = call(router(state.clone()), post(path, fixture(envelope))).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert_eq!(body["Outputs"], json!({}), "{body}");
            assert!(
                body["Logs"][0]
                    .as_str()
                    .unwrap()
                    .contains("KEYFLIP_MAX_INVOCATIONS"),
                "{body}"
            );
            assert!(body["ReturnValue"]["error"].is_string(), "{body}");
        }
        let (status, _) = call(router(state.clone()), get("/")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            fake.requests().len(),
            1,
            "only the held rotation reached the engine"
        );
        assert!(fake.sweeps.lock().unwrap().is_empty());

        gate.notify_one();
        let first = tokio::time::timeout(Duration::from_secs(5), held)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        // The permit is back: the next call runs (the gate lets it through at once).
        gate.notify_one();
        let (status, _) = call(router(state), post("/api/rotate/kv-one/api-key", Body::empty())).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn an_orphaned_invocation_keeps_its_place_in_the_bound() {
        let (fake, gate) = Fake::gated(Outcome::Rotated);
        let fake = Arc::new(fake);
        let state = AppState::new(fake.clone(), BUDGETS).with_max_invocations(1);
        let call_ = router(state.clone()).oneshot(post("/api/rotate/kv-one/api-key", Body::empty()));
        tokio::select! {
            _ = call_ => panic!("the gated rotation answered"),
            () = fake.started.notified() => {}
        }
        // The caller hung up; its rotation still runs and still counts.
        let (status, _) = call(
            router(state.clone()),
            post("/api/rotate/kv-one/api-key", Body::empty()),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        gate.notify_one();
        tokio::time::timeout(Duration::from_secs(5), state.in_flight.idle())
            .await
            .unwrap();
        gate.notify_one();
        let (status, _) = call(router(state), post("/api/rotate/kv-one/api-key", Body::empty())).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_dropped_connection_does_not_cancel_the_rotation() {
        let (fake, gate) = Fake::gated(Outcome::Rotated);
        let fake = Arc::new(fake);
        let state = AppState::new(fake.clone(), BUDGETS);
        let call = router(state.clone()).oneshot(post("/api/rotate/kv-one/api-key", Body::empty()));
        tokio::select! {
            _ = call => panic!("the gated rotation answered"),
            () = fake.started.notified() => {}
        }
        // The caller's future is dropped here; the rotation goes on.
        assert_eq!(state.in_flight(), 1);
        gate.notify_one();
        tokio::time::timeout(Duration::from_secs(5), state.in_flight.idle())
            .await
            .unwrap();
        assert_eq!(fake.finished.load(Ordering::SeqCst), 1);
    }

    /// A rotator whose every call panics, as an unfinished engine does.
    #[derive(Debug)]
    struct Panicking;

    #[async_trait]
    impl Rotator for Panicking {
        fn serves(&self, _: &VaultName) -> bool {
            true
        }

        async fn rotate(&self, _: RotationRequest) -> RotationResult {
            panic!("not written yet")
        }

        fn vaults(&self) -> Vec<VaultName> {
            Vec::new()
        }

        async fn sweep(&self, _: Duration) -> SweepReport {
            panic!("not written yet")
        }

        async fn sweep_vaults(&self, _: &[VaultName], _: Duration) -> SweepReport {
            panic!("not written yet")
        }
    }

    #[tokio::test]
    async fn a_panicking_engine_is_a_500_and_the_server_goes_on() {
        let state = AppState::new(Arc::new(Panicking), BUDGETS);
        let event = post(
            "/KeyVaultEvents",
            fixture("derived/eventgrid-invocation.custom-handler.json"),
        );
        let (status, body) = call(router(state.clone()), event).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["Outputs"], json!({}));
        assert!(body["Logs"][0].as_str().unwrap().contains("failed unexpectedly"));
        let (status, body) = call(
            router(state.clone()),
            post("/api/rotate/kv-one/api-key", Body::empty()),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body["error"].is_string());
        assert_eq!(state.in_flight(), 0);
    }

    async fn raw_post(address: std::net::SocketAddr, path: &str, body: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn shutdown_lets_an_in_flight_sweep_finish() {
        let (fake, gate) = Fake::gated(Outcome::Rotated);
        let fake = Arc::new(fake);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(fake.clone(), BUDGETS);
        let server = tokio::spawn(serve(
            listener,
            state,
            async move {
                let _ = stopped.await;
            },
            ServerLimits {
                drain: Duration::from_secs(10),
                ..ServerLimits::default()
            },
        ));
        let body = fixture("derived/timer-invocation.custom-handler.json");
        let client = tokio::spawn(async move { raw_post(address, "/RotationSweep", &body).await });
        fake.started.notified().await;
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !server.is_finished(),
            "the server stopped before the sweep finished"
        );
        gate.notify_one();
        let response = tokio::time::timeout(Duration::from_secs(5), client)
            .await
            .unwrap()
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"ReturnValue\""));
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_drain_bound() {
        let (fake, _gate) = Fake::gated(Outcome::Rotated);
        let fake = Arc::new(fake);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            AppState::new(fake.clone(), BUDGETS),
            async move {
                let _ = stopped.await;
            },
            ServerLimits {
                drain: Duration::from_millis(200),
                ..ServerLimits::default()
            },
        ));
        let body = fixture("derived/eventgrid-invocation.custom-handler.json");
        let _client = tokio::spawn(async move { raw_post(address, "/KeyVaultEvents", &body).await });
        fake.started.notified().await;
        let asked = Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let took = asked.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(fake.finished.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_is_cut_off() {
        let fake = Arc::new(Fake::new(Outcome::Rotated));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        tokio::spawn(serve(
            listener,
            AppState::new(fake.clone(), BUDGETS),
            async move {
                let _ = stopped.await;
            },
            limits,
        ));
        // Half a request head, then nothing; and a connection that sends nothing at all.
        for partial in [
            &b"POST /api/rotate/kv-one/api-key HTTP/1.1\r\nHost: local"[..],
            b"",
        ] {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            stream.write_all(partial).await.unwrap();
            let mut rest = Vec::new();
            // Generous: the server closes after 300 ms; EOF or a reset both mean closed.
            let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "the connection stayed open");
        }
        assert!(fake.requests().is_empty());
        // A client that sends its request at once is answered as before.
        let response = raw_post(address, "/api/rotate/kv-one/api-key", b"").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    fn json_file(path: &str) -> Value {
        let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    #[test]
    fn host_json_runs_keyflip_serve_with_forwarding() {
        let host = json_file("host.json");
        assert_eq!(host["version"], "2.0");
        let handler = &host["customHandler"];
        assert_eq!(handler["description"]["defaultExecutablePath"], "keyflip");
        assert_eq!(handler["description"]["arguments"], json!(["serve"]));
        assert_eq!(handler["enableForwardingHttpRequest"], true);
        assert_eq!(
            host["extensionBundle"]["id"],
            "Microsoft.Azure.Functions.ExtensionBundle"
        );
        assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
        // Longer than the default sweep budget, within the Consumption plan's 10-minute limit.
        let timeout = host["functionTimeout"].as_str().unwrap();
        let parts: Vec<u64> = timeout.split(':').map(|p| p.parse().unwrap()).collect();
        let seconds = parts[0] * 3600 + parts[1] * 60 + parts[2];
        assert!(
            seconds > Budgets::default().sweep.as_secs() && seconds <= 600,
            "{timeout}"
        );
        assert!(host["logging"]["logLevel"]["default"].is_string());
    }

    #[test]
    fn the_function_folders_match_the_routes() {
        let events = json_file("functions/KeyVaultEvents/function.json");
        assert_eq!(
            events["bindings"],
            json!([{"type": "eventGridTrigger", "direction": "in", "name": keyvault_events::BINDING}])
        );

        let sweep = json_file("functions/RotationSweep/function.json");
        let timer = &sweep["bindings"][0];
        assert_eq!(sweep["bindings"].as_array().unwrap().len(), 2);
        // The fan-out's queue output binding, filled only with KEYFLIP_SWEEP_MODE=queue.
        assert_eq!(
            sweep["bindings"][1],
            json!({"type": "queue", "direction": "out", "name": sweep::OUTPUT_BINDING,
                   "queueName": crate::triggers::queue::SWEEP_QUEUE, "connection": "AzureWebJobsStorage"})
        );
        assert_eq!(timer["type"], "timerTrigger");
        assert_eq!(timer["direction"], "in");
        assert_eq!(timer["name"], sweep::BINDING);
        assert_eq!(timer["schedule"], "%KEYFLIP_SWEEP_SCHEDULE%");
        assert_eq!(timer["useMonitor"], true);
        assert_eq!(timer["runOnStartup"], false);

        for (function, queue) in [
            (sweep_vault::FUNCTION, crate::triggers::queue::SWEEP_QUEUE),
            (
                keyvault_events_queue::FUNCTION,
                crate::triggers::queue::EVENTS_QUEUE,
            ),
        ] {
            let json = json_file(&format!("functions/{function}/function.json"));
            assert_eq!(
                json["bindings"],
                json!([{"type": "queueTrigger", "direction": "in", "name": crate::triggers::queue::BINDING,
                        "queueName": queue, "connection": "AzureWebJobsStorage"}]),
                "{function}"
            );
        }

        // Exactly one httpTrigger in and one http out, so the host forwards the raw request.
        let rotate = json_file("functions/RotateSecret/function.json");
        assert_eq!(
            rotate["bindings"],
            json!([
                {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function",
                 "methods": ["post"], "route": "rotate/{vault}/{secret}"},
                {"type": "http", "direction": "out", "name": "res"}
            ])
        );

        // The status: a GET on route `status`, forwarded the same way.
        let status = json_file("functions/RotationStatus/function.json");
        assert_eq!(
            status["bindings"],
            json!([
                {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function",
                 "methods": ["get"], "route": "status"},
                {"type": "http", "direction": "out", "name": "res"}
            ])
        );
    }

    #[test]
    fn the_sample_settings_name_every_setting() {
        let settings = json_file("local.settings.sample.json");
        assert_eq!(settings["IsEncrypted"], false);
        let values = settings["Values"].as_object().unwrap();
        assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
        assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
        assert_eq!(values["KEYFLIP_SWEEP_SCHEDULE"], "0 0 * * * *");
        let defaults = [
            ("KEYFLIP_LEAD_DAYS", "30"),
            ("KEYFLIP_DWELL_HOURS", "24"),
            ("KEYFLIP_EVENT_BUDGET_SECONDS", "20"),
            ("KEYFLIP_PENDING_TIMEOUT_HOURS", "6"),
            ("KEYFLIP_CONCURRENCY", "64"),
            ("KEYFLIP_SWEEP_BUDGET_SECONDS", "240"),
            ("KEYFLIP_MANUAL_BUDGET_SECONDS", "60"),
            ("KEYFLIP_ARM_ENDPOINT", "https://management.azure.com"),
            ("KEYFLIP_MAX_INVOCATIONS", "32"),
            ("KEYFLIP_LEASE", "storage"),
            ("KEYFLIP_SWEEP_MODE", "single"),
        ];
        for (name, value) in defaults {
            assert_eq!(values[name], value, "{name}");
        }
        for name in [
            "KEYFLIP_VAULTS",
            "KEYFLIP_ALLOWED_SCOPES",
            "KEYFLIP_MANAGED_IDENTITY_CLIENT_ID",
            "KEYFLIP_CA_BUNDLE",
            "KEYFLIP_CONNECT_TO",
            "KEYFLIP_ALLOWED_HOSTS",
        ] {
            assert!(values[name].is_string(), "{name}");
        }
        for name in crate::config::KEYFLIP_SETTINGS {
            assert!(values.contains_key(*name), "{name} is missing from the sample");
        }
        assert!(values.values().all(Value::is_string), "app settings are strings");
    }
}
