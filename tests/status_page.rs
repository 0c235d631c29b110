//! The status page in a real browser (issue 9, item 4): the handler and the emulator started as
//! in tests/api, `GET /api/status?format=html` opened by headless Chromium (Debian's `chromium`,
//! installed by `.ci/run`) the way a person typing the address would (`Sec-Fetch-Site: none`),
//! once for a screenshot and once for the DOM. The screenshot must not be blank (decoded, and
//! its pixels varied); the DOM, after the browser parsed it with scripts forbidden by the page's
//! policy, must name every secret and hold no script. An ignored test writes the README's
//! screenshot, docs/status-page.png (`cargo test --test status_page -- --ignored`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/helpers.rs"]
#[allow(dead_code)] // the helpers serve tests/api too
mod helpers;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use helpers::{SecretSpec, TestApp, spawn_app, spawn_app_with, test_dir};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs Chromium headless on `url` with `mode` (`--screenshot=<file>` or `--dump-dom`) in a
/// fresh profile; its stdout. Fails the test when Chromium is missing or hangs.
fn chromium(url: &str, mode: &str, profile: &Path) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is not installed: the status page is tested in a real browser; run `apt-get install chromium` (CI's .ci/run installs it)"
    );
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1280,2000")
        .arg(mode)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("chromium runs").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().expect("chromium output");
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Seeds one managed secret naming an account of its own; its name.
async fn add(app: &TestApp, mut spec: SecretSpec, expires: Option<i64>, created_days_ago: i64) -> String {
    app.seed_account(&spec.account, "OpenAI").await;
    spec.expires_in_days = expires;
    spec.created_days_ago = created_days_ago;
    let name = spec.name.clone();
    app.seed_secret(spec).await;
    name
}

/// Seeds a small fleet: healthy, due, pending, opted out, a few problems and a tag holding
/// markup; returns the names of the managed secrets.
async fn seed(app: &TestApp) -> Vec<String> {
    app.control
        .seed(&json!({"vaults": [{"name": "kv-api-two", "secrets": []}]}))
        .await
        .unwrap();
    let now = app.now().await;
    let since = (time::OffsetDateTime::from_unix_timestamp(now - 1800).unwrap())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    vec![
        add(app, SecretSpec::new("openai-prod", "aoai-prod"), Some(48), 12).await,
        add(
            app,
            SecretSpec::new("openai-staging", "aoai-staging"),
            Some(21),
            39,
        )
        .await,
        add(app, SecretSpec::new("speech-eu", "speech-eu"), Some(-3), 63).await,
        add(
            app,
            SecretSpec::new("vision-batch", "vision-batch").tag("ValidityPeriodDays", "14"),
            Some(9),
            5,
        )
        .await,
        add(
            app,
            SecretSpec::new("translator", "translator").tag("RotationEnabled", "false"),
            Some(33),
            27,
        )
        .await,
        add(app, SecretSpec::new("language-ci", "language-ci"), None, 70).await,
        add(
            app,
            SecretSpec::new("openai-batch", "aoai-batch")
                .tag("PendingSlot", "key2")
                .tag("PendingSince", &since)
                .tag("PendingFrom", "0123456789abcdef")
                .tag("PendingProof", "fedcba9876543210"),
            Some(55),
            31,
        )
        .await,
        add(
            app,
            SecretSpec::new("hostile-tag", "aoai-hostile")
                .tag("CredentialId", "<script>document.title='owned'</script>"),
            Some(40),
            20,
        )
        .await,
    ]
}

/// Whether the PNG at `path` shows something: decoded, sized as asked, with enough colours and
/// enough pixels off the background.
fn assert_not_blank(path: &Path) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    assert!(
        info.width >= 1000 && info.height >= 1000,
        "{}x{}",
        info.width,
        info.height
    );
    let channels = info.color_type.samples();
    assert!(channels >= 3, "a colour screenshot: {:?}", info.color_type);
    let rgb: Vec<[u8; 3]> = pixels[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let colours: HashSet<[u8; 3]> = rgb.iter().copied().collect();
    assert!(
        colours.len() > 50,
        "only {} colours: a blank page?",
        colours.len()
    );
    let background = rgb[0];
    let off = rgb.iter().filter(|p| **p != background).count();
    assert!(
        off * 100 > rgb.len(),
        "{off} of {} pixels differ from the background: a blank page?",
        rgb.len()
    );
    // The status colours are there: some red (problems), some green (healthy timelines).
    let red = rgb.iter().any(|p| p[0] > 180 && p[1] < 80 && p[2] < 80);
    let green = rgb.iter().any(|p| p[1] > 130 && p[0] < 90 && p[2] < 110);
    assert!(red && green, "red: {red}, green: {green}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_chromium_and_names_every_secret() {
    // Arrange
    let app = spawn_app().await;
    let names = seed(&app).await;
    let url = format!("http://127.0.0.1:{}/api/status?format=html", app.address.port());
    let dir = test_dir("chromium");
    let shot = dir.join("status.png");

    // Act
    let dom = {
        let (url, dir, shot) = (url.clone(), dir.clone(), shot.clone());
        tokio::task::spawn_blocking(move || {
            chromium(
                &url,
                &format!("--screenshot={}", shot.display()),
                &dir.join("profile-1"),
            );
            chromium(&url, "--dump-dom", &dir.join("profile-2"))
        })
        .await
        .unwrap()
    };

    // Assert
    assert_not_blank(&shot);
    assert!(
        dom.contains("<h1>keyflip status</h1>"),
        "the page, not an error: {dom}"
    );
    for name in &names {
        assert!(
            dom.contains(&format!("id=\"secret-kv-api-{name}\"")),
            "the DOM lists {name}"
        );
    }
    assert!(!dom.contains("<script"), "no script in the DOM");
    assert!(
        dom.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"),
        "the tag as text"
    );
    assert!(
        dom.contains("<title>keyflip status</title>"),
        "no script retitled the page"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes docs/status-page.png, the README's screenshot, and prints the same status as text
/// (run by hand with `--nocapture` after changing the page or the table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/status-page.png; run with --ignored after changing the page"]
async fn write_the_readme_screenshot() {
    let app = spawn_app_with(&[]).await;
    seed(&app).await;
    let url = format!("http://127.0.0.1:{}/api/status?format=html", app.address.port());
    let dir = test_dir("readme-shot");
    let target: PathBuf = [env!("CARGO_MANIFEST_DIR"), "docs", "status-page.png"]
        .iter()
        .collect();
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    // The same status as `keyflip status` prints it, for the README's example.
    let table = app
        .http
        .get(format!("http://{}/api/status?format=text", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    println!("{table}");
    let arg = format!("--screenshot={}", target.display());
    tokio::task::spawn_blocking(move || {
        chromium(&url, &arg, &dir.join("profile"));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
    assert_not_blank(&target);
}
