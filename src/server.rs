//! The custom handler's HTTP server (axum): it routes what the Functions host calls to the
//! trigger modules, through the [`Rotator`] seam the triggers own, and shuts down gracefully,
//! letting in-flight rotations finish within a bound. It decides nothing about rotations.
//!
//! | route | caller | handled by |
//! |---|---|---|
//! | `GET /` | the host's readiness probe: answered at once | here |
//! | `POST /KeyVaultEvents` | eventGridTrigger envelope | `triggers::keyvault_events` |
//! | `POST /RotationSweep` | timerTrigger envelope | `triggers::sweep` |
//! | `POST /api/rotate/{vault}/{secret}` | forwarded httpTrigger request | `triggers::manual` |
//! | anything else | — | JSON 404 (405 for a known path with another method) |
//!
//! Each invocation runs in its own spawned task inside a span carrying the function name and
//! the host's `X-Azure-Functions-InvocationId`, so a caller that hangs up does not cancel a
//! rotation midway, and shutdown waits for such orphaned work too. Request bodies and query
//! strings are never logged (a query carries the function key in `code`). This module decides
//! no status code: the trigger modules map results to answers. `main` (or the CLI's `serve`
//! command) builds the [`AppState`], binds the listener and calls [`serve`].

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{Instrument, Span};

use crate::engine::Engine;
use crate::triggers::envelope::{InvocationResponse, NotAnEnvelope, Reply};
use crate::triggers::{Rotator, keyvault_events, manual, sweep};

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

/// What every route shares.
#[derive(Debug, Clone)]
pub struct AppState {
    rotator: Arc<dyn Rotator>,
    budgets: Budgets,
    in_flight: InFlight,
}

impl AppState {
    pub fn new(rotator: Arc<dyn Rotator>, budgets: Budgets) -> Self {
        Self {
            rotator,
            budgets,
            in_flight: InFlight::default(),
        }
    }

    /// The production wiring: the engine behind the routes.
    pub fn from_engine(engine: Engine, budgets: Budgets) -> Self {
        Self::new(Arc::new(engine), budgets)
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

/// The handler's routes.
pub fn router(state: AppState) -> Router {
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
            envelope_route(
                sweep::FUNCTION,
                |b| b.sweep,
                |r, t, body| Box::pin(sweep::handle(r, t, body)),
            ),
        )
        .route("/api/rotate/{vault}/{secret}", post(rotate_secret))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn ready() -> &'static str {
    "keyflip ready"
}

/// One span per invocation: the function and the host's invocation id (a GUID; bounded).
fn invocation_span(function: &'static str, headers: &HeaderMap) -> Span {
    let id: Option<String> = headers
        .get(INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect());
    tracing::info_span!(
        "invocation",
        function = function,
        invocation_id = id.as_deref().unwrap_or("-")
    )
}

/// Runs an invocation's work in its own task, so that a dropped connection does not cancel
/// it; `None` if the task panicked.
async fn spawned<T: Send + 'static>(
    state: &AppState,
    span: Span,
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let guard = state.in_flight.enter();
    let task = tokio::spawn(
        async move {
            let _guard = guard;
            work.await
        }
        .instrument(span.clone()),
    );
    match task.await {
        Ok(value) => Some(value),
        Err(error) => {
            span.in_scope(|| tracing::error!("the invocation failed unexpectedly: {error}"));
            None
        }
    }
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

fn envelope_answer(answer: Option<Result<Reply, NotAnEnvelope>>) -> Response {
    match answer {
        Some(Ok(reply)) => reply.into_response(),
        Some(Err(not_an_envelope)) => not_an_envelope.into_response(),
        None => crashed_envelope(),
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
            envelope_answer(spawned(&state, span, work).await)
        },
    )
}

async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let span = invocation_span(manual::FUNCTION, &headers);
    let Ok(Path((vault, secret))) = path else {
        return error(
            StatusCode::BAD_REQUEST,
            "the path must be /api/rotate/{vault}/{secret}",
        );
    };
    let rotator = state.rotator.clone();
    let budget = state.budgets.manual;
    let work =
        async move { manual::handle(rotator.as_ref(), budget, &vault, &secret, query.as_deref()).await };
    match spawned(&state, span, work).await {
        Some(reply) => reply.into_response(),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "keyflip failed unexpectedly"),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{} does not accept {method}", uri.path()),
    )
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight invocations finish
/// for at most `drain`, and returns (abandoning whatever is still running after that).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> io::Result<()> {
    let address = listener.local_addr()?;
    let in_flight = state.in_flight.clone();
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopping.send(());
    };
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(signal);
    let waiting = in_flight.clone();
    let finished = async move {
        server.await?;
        waiting.idle().await;
        Ok::<(), io::Error>(())
    };
    tokio::pin!(finished);
    tracing::info!(%address, "keyflip listening");
    tokio::select! {
        result = &mut finished => return result,
        _ = stopped => {}
    }
    tracing::info!(
        in_flight = in_flight.count(),
        drain_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
        "shutting down: letting in-flight invocations finish"
    );
    match tokio::time::timeout(drain, finished).await {
        Ok(result) => {
            tracing::info!("stopped");
            result
        }
        Err(_) => {
            tracing::warn!(
                abandoned = in_flight.count(),
                "the drain bound was reached; stopping with invocations still running"
            );
            Ok(())
        }
    }
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

        async fn sweep(&self, budget: Duration) -> SweepReport {
            self.sweeps.lock().unwrap().push(budget);
            self.wait().await;
            self.report.clone()
        }
    }

    fn app(fake: &Arc<Fake>) -> Router {
        router(AppState::new(fake.clone(), BUDGETS))
    }

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/data/events/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
        Request::post(uri)
            .header("content-type", "application/json")
            .header(
                "X-Azure-Functions-InvocationId",
                "0c7ba2e1-7b5c-4e8f-9d0a-2f1c3b4d5e6f",
            )
            .body(body.into())
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
        let (status, body) = call(app(&fake), Request::get("/").body(Body::empty()).unwrap()).await;
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
        let get = Request::get("/KeyVaultEvents").body(Body::empty()).unwrap();
        let (status, body) = call(app(&fake), get).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body["error"].is_string());
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

        async fn sweep(&self, _: Duration) -> SweepReport {
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
            Duration::from_secs(10),
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
            Duration::from_millis(200),
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
        assert_eq!(sweep["bindings"].as_array().unwrap().len(), 1);
        assert_eq!(timer["type"], "timerTrigger");
        assert_eq!(timer["direction"], "in");
        assert_eq!(timer["name"], sweep::BINDING);
        assert_eq!(timer["schedule"], "%KEYFLIP_SWEEP_SCHEDULE%");
        assert_eq!(timer["useMonitor"], true);
        assert_eq!(timer["runOnStartup"], false);

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
            ("KEYFLIP_CONCURRENCY", "8"),
            ("KEYFLIP_SWEEP_BUDGET_SECONDS", "240"),
            ("KEYFLIP_MANUAL_BUDGET_SECONDS", "60"),
            ("KEYFLIP_ARM_ENDPOINT", "https://management.azure.com"),
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
        ] {
            assert!(values[name].is_string(), "{name}");
        }
        assert!(values.values().all(Value::is_string), "app settings are strings");
    }
}
