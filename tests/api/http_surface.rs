//! The HTTP surface of `keyflip serve`, from outside: a misspelt query parameter, a browser, a
//! foreign `Host` (DNS rebinding), the bound on concurrent invocations and the header-read
//! timeout. Every refused case shows in the emulator's call log that nothing was written.

use std::time::Duration;

use emulator::faults::LatencyRule;
use keyflip::server::ServerLimits;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    SecretSpec, TestApp, VAULT, event_envelope, spawn_app, spawn_app_with, spawn_app_with_limits,
};

/// An account and a managed secret of it, due for rotation.
async fn seeded(app: &TestApp, secret: &str) {
    let account = format!("aoai-{secret}");
    app.seed_account(&account, "OpenAI").await;
    app.seed_secret(SecretSpec::new(secret, &account)).await;
}

/// Sends `head` (and nothing more) on a fresh connection and reads until the server closes it.
async fn raw(app: &TestApp, head: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A body-less manual call with this `Host`, as raw HTTP/1.1.
fn manual_with_host(secret: &str, host: &str) -> String {
    format!(
        "POST /api/rotate/{VAULT}/{secret} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn a_misspelt_dry_run_is_refused_and_nothing_is_written() {
    // Arrange: a secret that a real rotation would rotate
    let app = spawn_app().await;
    seeded(&app, "typo").await;
    let before = app.latest("typo").await;

    // Act
    let misspelt = app.manual(VAULT, "typo", "?dry_run=true").await;
    let spelt = app.manual(VAULT, "typo", "?dryRun=true&code=function-key").await;

    // Assert: 400 naming the parameter and the accepted ones; the correct spelling plans only
    assert_eq!(misspelt.status, 400, "{:?}", misspelt.body);
    let error = misspelt.body["error"].as_str().unwrap();
    assert!(error.contains("'dry_run' is not accepted"), "{error}");
    assert!(error.contains("dryRun, force, mode, code"), "{error}");
    assert_eq!((spelt.status, spelt.outcome()), (200, "planned"));
    assert!(app.writes().await.is_empty(), "{:?}", app.writes().await);
    assert_eq!(app.regenerations("aoai-typo").await, [0, 0]);
    assert_eq!(app.latest("typo").await.version, before.version);
}

#[tokio::test]
async fn a_browser_is_refused_and_nothing_is_called() {
    // Arrange
    let app = spawn_app().await;
    seeded(&app, "browsed").await;
    app.control.clear_calls().await.unwrap();
    let url = format!("http://{}/api/rotate/{VAULT}/browsed", app.address);

    // Act: what a web page's fetch() sends, cross-site and same-site
    let cross = app
        .http
        .post(&url)
        .header("Origin", "https://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    let same_site = app
        .http
        .post(&url)
        .header("Sec-Fetch-Site", "same-site")
        .send()
        .await
        .unwrap();
    let envelope = event_envelope(
        "Microsoft.KeyVault.SecretNearExpiry",
        VAULT,
        "browsed",
        &app.latest("browsed").await.version,
    );
    let event = app
        .http
        .post(format!("http://{}/KeyVaultEvents", app.address))
        .header("Origin", "null")
        .body(envelope.to_string())
        .send()
        .await
        .unwrap();

    // Assert: 403 with the reason; not one call reached Azure
    for response in [cross, same_site, event] {
        assert_eq!(response.status().as_u16(), 403);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("browser"), "{body}");
    }
    assert!(app.control.calls(None).await.unwrap().is_empty());
    assert_eq!(app.regenerations("aoai-browsed").await, [0, 0]);
}

#[tokio::test]
async fn a_foreign_host_is_misdirected_and_the_app_s_own_names_are_answered() {
    // Arrange: the platform's name and one custom domain
    let app = spawn_app_with(&[
        ("WEBSITE_HOSTNAME", "myapp.azurewebsites.net"),
        ("KEYFLIP_ALLOWED_HOSTS", "keyflip.contoso.com"),
    ])
    .await;
    seeded(&app, "rebound").await;
    app.control.clear_calls().await.unwrap();

    // Act: a DNS-rebound name (no Origin, as a same-origin GET after rebinding would be)
    let foreign = raw(&app, &manual_with_host("rebound", "attacker.example:7071")).await;
    let no_host = raw(
        &app,
        &format!("POST /api/rotate/{VAULT}/rebound HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;

    // Assert: 421 naming the setting; nothing called
    assert!(foreign.starts_with("HTTP/1.1 421"), "{foreign}");
    assert!(foreign.contains("KEYFLIP_ALLOWED_HOSTS"), "{foreign}");
    assert!(no_host.starts_with("HTTP/1.0 421"), "{no_host}");
    assert!(app.control.calls(None).await.unwrap().is_empty());

    // And the names the app is reached by are answered (dry runs: nothing written)
    for host in [
        "MyApp.azurewebsites.net",
        "keyflip.contoso.com:443",
        "localhost:7071",
        "127.0.0.1",
    ] {
        let head = format!(
            "POST /api/rotate/{VAULT}/rebound?dryRun=true HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let answer = raw(&app, &head).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
        assert!(answer.contains("\"planned\""), "{host}: {answer}");
    }
    assert!(app.writes().await.is_empty());
}

#[tokio::test]
async fn beyond_the_invocation_bound_manual_is_503_and_an_event_is_500_for_a_retry() {
    // Arrange: one invocation at a time; the first one's secret read takes 3 s
    let app = spawn_app_with(&[
        ("KEYFLIP_MAX_INVOCATIONS", "1"),
        ("KEYFLIP_MANUAL_BUDGET_SECONDS", "20"),
    ])
    .await;
    seeded(&app, "held").await;
    seeded(&app, "crowded").await;
    app.control
        .latency(&LatencyRule {
            operation: "GetSecret".into(),
            target: None,
            delay_ms: 3000,
            count: Some(1),
        })
        .await
        .unwrap();
    let crowded_version = app.latest("crowded").await.version;
    let held = {
        let http = app.http.clone();
        let url = format!("http://{}/api/rotate/{VAULT}/held", app.address);
        tokio::spawn(async move { http.post(url).send().await.unwrap() })
    };
    // The latency rule is used up once the held invocation's read is in the emulator.
    let mut waited = 0;
    while !app.control.get("/faults").await.unwrap()["latency"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(waited < 500, "the held invocation never reached Key Vault");
        waited += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.control.clear_calls().await.unwrap();

    // Act
    let manual = app
        .http
        .post(format!("http://{}/api/rotate/{VAULT}/crowded", app.address))
        .send()
        .await
        .unwrap();
    let event = app
        .deliver(
            "Microsoft.KeyVault.SecretNearExpiry",
            VAULT,
            "crowded",
            &crowded_version,
        )
        .await;
    let sweep = app.sweep().await;
    let ready = app
        .http
        .get(format!("http://{}/", app.address))
        .send()
        .await
        .unwrap();

    // Assert: refused at once, each in its caller's terms; readiness is never refused
    assert_eq!(manual.status().as_u16(), 503);
    assert_eq!(manual.headers()["retry-after"], "5");
    let body: Value = manual.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("KEYFLIP_MAX_INVOCATIONS"),
        "{body}"
    );
    for answer in [&event, &sweep] {
        assert_eq!(answer.status, 500, "{:?}", answer.body);
        assert_eq!(answer.body["Outputs"], serde_json::json!({}));
        assert!(
            answer.body["Logs"][0]
                .as_str()
                .unwrap()
                .contains("KEYFLIP_MAX_INVOCATIONS")
        );
        assert!(answer.body.get("ReturnValue").is_some());
    }
    assert_eq!(ready.status().as_u16(), 200);
    // The held rotation goes on calling Azure; the refused ones (about `crowded`, or a sweep's
    // listing) never did.
    let calls = app.control.calls(None).await.unwrap();
    let refused_reached: Vec<_> = calls
        .iter()
        .filter(|c| c.path.contains("crowded") || c.target.contains("crowded") || c.operation == "GetSecrets")
        .collect();
    assert!(refused_reached.is_empty(), "{refused_reached:?}");

    // The held invocation completes; then the bound admits the next one
    let held = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.status().as_u16(), 200);
    let retried = app.deliver_for_latest("SecretNearExpiry", "crowded").await;
    assert_eq!(
        (retried.status, retried.outcome()),
        (200, "rotated"),
        "{:?}",
        retried.body
    );
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    // Arrange: a 300 ms header-read timeout
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        drain: Duration::from_secs(5),
    };
    let app = spawn_app_with_limits(&[], limits).await;
    seeded(&app, "slowloris").await;

    // Act: half a request head, then silence
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream
        .write_all(format!("POST /api/rotate/{VAULT}/slowloris HTTP/1.1\r\nHost: loc").as_bytes())
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;

    // Assert: the server closed the connection (a generous bound); nothing ran; the handler
    // still answers a client that sends its request at once
    assert!(closed.is_ok(), "the connection was still open after 10 s");
    assert!(app.writes().await.is_empty());
    let answer = raw(&app, &manual_with_host("slowloris", "127.0.0.1")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
