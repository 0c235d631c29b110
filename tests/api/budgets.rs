//! Issue 7, item 5: every invocation ends within its budget (2 s for events here) as a clean
//! transient failure, whichever service hangs: Key Vault, Resource Manager, the data plane,
//! storage, the token endpoint. These run on real time (latency is real); the bound asserted is
//! generous, and what is checked is the outcome and that nothing half-done was left.

use std::time::{Duration, Instant};

use emulator::faults::LatencyRule;

use crate::helpers::*;

const NEAR_EXPIRY: &str = "SecretNearExpiry";

fn hang(operation: &str) -> LatencyRule {
    LatencyRule {
        operation: operation.into(),
        target: None,
        delay_ms: 60_000,
        count: None,
    }
}

/// The budget plus a generous allowance for a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(2 + 8);

#[tokio::test]
async fn an_event_ends_within_its_budget_whichever_service_hangs() {
    for (operation, storage, expected) in [
        ("GetSecret", false, "failed:transient"),
        ("Accounts_Get", false, "failed:transient"),
        ("Accounts_ListKeys", false, "failed:transient"),
        ("Accounts_RegenerateKey", false, "pending"),
        ("Models_List", false, "pending"),
        ("SetSecret", false, "failed:transient"),
        ("Blob_AcquireLease", true, "failed:transient"),
    ] {
        // Arrange
        let app = match storage {
            true => spawn_app_with_storage_lease(&[]).await,
            false => spawn_app().await,
        };
        app.seed_account("aoai-hang", "OpenAI").await;
        app.seed_secret(SecretSpec::new("hang", "aoai-hang")).await;
        let before = app.latest("hang").await;
        app.control.latency(&hang(operation)).await.unwrap();

        // Act
        let started = Instant::now();
        let answer = app.deliver_for_latest(NEAR_EXPIRY, "hang").await;
        let took = started.elapsed();

        // Assert: a retryable answer in time; the published key unchanged and working
        assert_eq!(
            (answer.status, answer.outcome()),
            (500, expected),
            "{operation}: {:?}",
            answer.body
        );
        assert!(took < BOUND, "{operation}: took {took:?}");
        app.control.clear_faults().await.unwrap();
        let after = app.latest("hang").await;
        assert_eq!(after.value, before.value, "{operation}");
        assert!(app.key_works("aoai-hang", &after.value).await, "{operation}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_ends_within_its_budget_when_the_token_endpoint_hangs() {
    // Arrange: the managed-identity endpoint never answers in time
    let app = spawn_app().await;
    app.seed_account("aoai-token", "OpenAI").await;
    app.seed_secret(SecretSpec::new("token", "aoai-token")).await;
    app.control.latency(&hang("GetToken")).await.unwrap();

    // Act
    let started = Instant::now();
    let (code, stdout, stderr) = tokio::task::block_in_place(|| {
        run_keyflip(
            &app,
            &["rotate", "--vault", VAULT, "--secret", "token", "--json"],
            &[],
        )
    });
    let took = started.elapsed();

    // Assert: the temporary-failure exit, within the manual budget (2 s here) and the bound
    assert_ne!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("failed:transient"), "{stdout}\n{stderr}");
    assert!(took < BOUND, "took {took:?}");
    assert!(app.writes().await.is_empty());
}
