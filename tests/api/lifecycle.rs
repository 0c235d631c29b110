//! `keyflip serve` as the Functions host runs it: start-up validation and SIGTERM.

use std::time::Duration;

use crate::helpers::{run_keyflip, serve_process, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_cleanly_on_sigterm() {
    // Arrange
    let app = spawn_app().await;
    let mut process = serve_process(&app, &[]).await;
    let pid = process.child.id().to_string();

    // Act: what the Functions host and container platforms send
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut status = None;
    for _ in 0..200 {
        status = process.child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert: it exits 0 after saying it received SIGTERM
    let status = status.expect("keyflip serve exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", process.output());
    assert!(
        process.output().contains("SIGTERM received"),
        "{}",
        process.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_without_its_required_settings_and_names_them() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let (code, _stdout, stderr) = tokio::task::block_in_place(|| {
        run_keyflip(
            &app,
            &["serve", "--port", "1"],
            &[
                ("KEYFLIP_VAULTS", ""),
                ("KEYFLIP_ALLOWED_SCOPES", ""),
                ("KEYFLIP_LEAD_DAYS", "soon"),
            ],
        )
    });

    // Assert: exit 78 (configuration), every problem named at once, before any network call
    assert_eq!(code, 78, "{stderr}");
    for setting in ["KEYFLIP_VAULTS", "KEYFLIP_ALLOWED_SCOPES", "KEYFLIP_LEAD_DAYS"] {
        assert!(stderr.contains(setting), "{setting} not named in: {stderr}");
    }
    assert!(app.control.calls(None).await.unwrap().is_empty());
}
