//! The log contract's `invocation.failed` (`keyflip::engine::log_events`): an invocation that
//! panics logs one JSON line with that event, inside the invocation's span (which names the
//! function), and never the panic's message. A test binary of its own: the JSON subscriber is
//! the process's global one, so no other test's logging can interfere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use keyflip::domain::VaultName;
use keyflip::engine::{RotationRequest, RotationResult, SweepReport};
use keyflip::server::{AppState, Budgets, router};
use keyflip::triggers::Rotator;
use serde_json::Value;
use tower::ServiceExt;

/// A writer the JSON formatter writes into, for reading the lines back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A rotator whose every call panics with a message that must never be logged.
#[derive(Debug)]
struct Panicking;

#[async_trait]
impl Rotator for Panicking {
    fn serves(&self, _: &VaultName) -> bool {
        true
    }
    async fn rotate(&self, _: RotationRequest) -> RotationResult {
        panic!("a message quoting sk-not-a-real-key")
    }
    fn vaults(&self) -> Vec<VaultName> {
        Vec::new()
    }
    async fn sweep(&self, _: Duration) -> SweepReport {
        panic!("a message quoting sk-not-a-real-key")
    }
    async fn sweep_vaults(&self, _: &[VaultName], _: Duration) -> SweepReport {
        panic!("a message quoting sk-not-a-real-key")
    }
}

#[tokio::test]
async fn a_panicking_invocation_logs_invocation_failed_in_its_function_s_span() {
    // Arrange: JSON lines as under the host
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let state = AppState::new(Arc::new(Panicking), Budgets::default());
    let body =
        std::fs::read("tests/data/events/derived/eventgrid-invocation.custom-handler.json").expect("fixture");
    let request = Request::post("/KeyVaultEvents")
        .header("host", "127.0.0.1:7071")
        .header("content-type", "application/json")
        .header(
            "X-Azure-Functions-InvocationId",
            "0c7ba2e1-7b5c-4e8f-9d0a-2f1c3b4d5e6f",
        )
        .body(Body::from(body))
        .expect("request");

    // Act
    let response = router(state).oneshot(request).await.expect("an answer");

    // Assert: a 500 for the host to retry, one contract line naming the function, no message
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).expect("utf-8");
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "invocation.failed")
        .collect();
    assert_eq!(failed.len(), 1, "{text}");
    assert_eq!(failed[0]["span"]["function"], "KeyVaultEvents", "{text}");
    assert_eq!(failed[0]["level"], "ERROR");
    assert!(keyflip::engine::log_events::EVENTS.contains(&"invocation.failed"));
    assert!(
        !text.contains("sk-not-a-real-key"),
        "the panic's message is never logged: {text}"
    );
}
