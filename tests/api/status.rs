//! The status (issue 9, item 4): `GET /api/status` as JSON, the page and the text table, and
//! `keyflip status` as a child process — every problem kind with its fix, the pause, an
//! opt-out, the clock moved instead of waiting, tag values rendered as text, and never a key
//! value nor a value read (no `GetSecret` call at all).

use serde_json::{Value, json};

use crate::helpers::{DAY, SecretSpec, TestApp, VAULT, run_keyflip, spawn_app, spawn_app_with};

const TWO: &str = "kv-api-two";

/// A unix time as RFC 3339, as the status writes it.
fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// `GET /api/status{query}` as the host forwards it: (status, content type, CSP, body).
async fn get(app: &TestApp, query: &str) -> (u16, String, Option<String>, String) {
    let response = app
        .http
        .get(format!("http://{}/api/status{query}", app.address))
        .header("User-Agent", "Azure-Functions-Host/4.1037.0")
        .send()
        .await
        .expect("keyflip answers");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let content_type = header("content-type").unwrap_or_default();
    let policy = header("content-security-policy");
    (status, content_type, policy, response.text().await.expect("body"))
}

async fn status_json(app: &TestApp, query: &str) -> Value {
    let (status, content_type, _, body) = get(app, query).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json");
    serde_json::from_str(&body).expect("JSON")
}

fn secret<'a>(report: &'a Value, vault: &str, name: &str) -> &'a Value {
    report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["vault"] == vault && s["secret"] == name)
        .unwrap_or_else(|| panic!("{vault}/{name} is not in the status: {report:#}"))
}

fn kinds(secret: &Value) -> Vec<String> {
    secret["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}

/// An empty second vault, so that both served vaults list.
async fn seed_second_vault(app: &TestApp) {
    app.control
        .seed(&json!({"vaults": [{"name": TWO, "secrets": []}]}))
        .await
        .expect("vault seeded");
}

/// A secret whose latest version someone wrote by hand, without the rotation tags the older
/// version carries.
async fn seed_lost_tags(app: &TestApp, name: &str, account: &str) {
    let now = app.now().await;
    let tagged = json!({
        "value": app.key(account, "key1").await, "created": now - 40 * DAY, "exp": now + 20 * DAY,
        "tags": {"CredentialId": "key1", "ProviderAddress": TestApp::provider_address(account), "ValidityPeriodDays": "60"}
    });
    let by_hand =
        json!({"value": "pasted-by-hand-value-1234", "created": now - DAY, "tags": {"owner": "team-a"}});
    app.control
        .seed(
            &json!({"vaults": [{"name": VAULT, "secrets": [{"name": name, "versions": [tagged, by_hand]}]}]}),
        )
        .await
        .expect("secret seeded");
}

/// Every key value the accounts hold now, and the values seeded by hand.
async fn key_values(app: &TestApp, accounts: &[String]) -> Vec<String> {
    let mut values = vec![
        "pasted-by-hand-value-1234".to_string(),
        "plain-value-98765".to_string(),
    ];
    for account in accounts {
        for slot in ["key1", "key2"] {
            values.push(app.key(account, slot).await);
        }
    }
    values
}

fn assert_no_value(values: &[String], output: &str, what: &str) {
    for value in values {
        assert!(!output.contains(value.as_str()), "{what} shows a key value (I7)");
    }
}

/// The secrets of [`seed_fleet`] that each name an account of their own.
const OWN_ACCOUNT: [&str; 11] = [
    "healthy",
    "due-soon",
    "missing",
    "bad-slot",
    "short",
    "no-exp",
    "off",
    "outside",
    "late",
    "stuck",
    "opted-out",
];

/// Every account [`seed_fleet`] seeds.
fn accounts() -> Vec<String> {
    let mut all: Vec<String> = OWN_ACCOUNT.iter().map(|n| format!("acct-{n}")).collect();
    all.extend(["aoai-twin".to_string(), "aoai-lost".to_string()]);
    all
}

/// Seeds one secret of every kind the status tells apart, each naming its own account but
/// the two twins.
async fn seed_fleet(app: &TestApp) {
    for account in accounts() {
        app.seed_account(&account, "OpenAI").await;
    }
    seed_second_vault(app).await;
    let now = app.now().await;
    let spec = |name: &str| SecretSpec::new(name, &format!("acct-{name}"));
    let mut healthy = spec("healthy");
    healthy.expires_in_days = Some(50);
    app.seed_secret(healthy).await;
    app.seed_secret(spec("due-soon")).await; // 10 days from expiry: inside the 30-day lead
    app.seed_secret(spec("missing").tag("ValidityPeriodDays", ""))
        .await;
    app.seed_secret(spec("bad-slot").tag("CredentialId", "key9"))
        .await;
    let mut short = spec("short").tag("ValidityPeriodDays", "30");
    short.expires_in_days = Some(50);
    app.seed_secret(short).await;
    let mut no_exp = spec("no-exp");
    no_exp.expires_in_days = None;
    app.seed_secret(no_exp).await;
    let mut off = spec("off");
    off.enabled = false;
    off.expires_in_days = Some(50);
    app.seed_secret(off).await;
    let foreign = "/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/rg-x/providers/Microsoft.CognitiveServices/accounts/elsewhere";
    let mut outside = spec("outside").tag("ProviderAddress", foreign);
    outside.expires_in_days = Some(50);
    app.seed_secret(outside).await;
    let mut twin_a = SecretSpec::new("twin-a", "aoai-twin");
    twin_a.expires_in_days = Some(50);
    app.seed_secret(twin_a).await;
    let mut twin_b = SecretSpec::new("twin-b", "aoai-twin");
    twin_b.vault = TWO.into();
    twin_b.expires_in_days = Some(50);
    app.seed_secret(twin_b).await;
    let mut late = spec("late");
    late.expires_in_days = Some(-2);
    app.seed_secret(late).await;
    let since = rfc3339(time::OffsetDateTime::from_unix_timestamp(now - 7 * 3600).unwrap());
    let mut stuck = spec("stuck")
        .tag("PendingSlot", "key2")
        .tag("PendingSince", &since)
        .tag("PendingFrom", "0123456789abcdef")
        .tag("PendingProof", "fedcba9876543210");
    stuck.expires_in_days = Some(50);
    app.seed_secret(stuck).await;
    let mut opted_out = spec("opted-out").tag("RotationEnabled", "false");
    opted_out.expires_in_days = Some(20);
    app.seed_secret(opted_out).await;
    seed_lost_tags(app, "lost", "aoai-lost").await;
    app.control
        .seed(&json!({"vaults": [{"name": VAULT, "secrets": [{"name": "plain", "versions": [{"value": "plain-value-98765"}]}]}]}))
        .await
        .expect("plain secret seeded");
}

#[tokio::test]
async fn every_problem_kind_is_reported_with_its_fix_from_listings_alone() {
    // Arrange
    let app = spawn_app().await;
    seed_fleet(&app).await;
    let values = key_values(&app, &accounts()).await;

    // Act
    let report = status_json(&app, "").await;

    // Assert: each secret's problems, state and timing
    let expect = [
        ("healthy", "ok", vec![]),
        ("due-soon", "due", vec![]),
        ("missing", "misconfigured", vec!["missing-tag"]),
        ("bad-slot", "misconfigured", vec!["invalid-tag"]),
        ("short", "misconfigured", vec!["validity-too-short"]),
        ("no-exp", "due", vec!["no-expiry"]),
        ("off", "disabled", vec!["disabled"]),
        ("outside", "misconfigured", vec!["scope-not-allowed"]),
        ("twin-a", "ok", vec!["shared-resource"]),
        ("late", "due", vec!["overdue"]),
        ("stuck", "pending", vec!["pending-expired"]),
        ("opted-out", "opted-out", vec![]),
        ("lost", "tags-lost", vec!["tags-lost"]),
    ];
    for (name, state, problems) in &expect {
        let s = secret(&report, VAULT, name);
        assert_eq!(s["state"], *state, "{name}: {s:#}");
        assert_eq!(kinds(s), *problems, "{name}: {s:#}");
        for problem in s["problems"].as_array().unwrap() {
            assert!(
                problem["message"].as_str().unwrap().len() > 40,
                "{name}: a message says how to fix it"
            );
        }
    }
    let twin_b = secret(&report, TWO, "twin-b");
    assert_eq!(kinds(twin_b), ["shared-resource"]);
    assert!(
        twin_b["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("kv-api/twin-a"),
        "{twin_b}"
    );
    assert_eq!(
        report["secrets"].as_array().unwrap().len(),
        expect.len() + 1,
        "the unmanaged secret is not shown"
    );
    // The fields of a healthy secret.
    let healthy = secret(&report, VAULT, "healthy");
    assert_eq!(healthy["provider"], "cognitive-services");
    assert_eq!(healthy["resource"], TestApp::provider_address("acct-healthy"));
    assert_eq!(healthy["active_slot"], "key1");
    assert_eq!(healthy["version_age_seconds"], 50 * DAY);
    assert_eq!(healthy["inside_dwell"], false);
    assert_eq!(healthy["due_now"], false);
    assert_eq!(healthy["due_reason"], "not-due");
    assert_eq!(healthy["rotation_enabled"], true);
    let now = app.now().await;
    let at = |days: i64| rfc3339(time::OffsetDateTime::from_unix_timestamp(now + days * DAY).unwrap());
    assert_eq!(healthy["expires"], at(50));
    assert_eq!(healthy["due"], at(20), "due = expiry minus the 30-day lead");
    assert_eq!(secret(&report, VAULT, "due-soon")["due_now"], true);
    let stuck = secret(&report, VAULT, "stuck");
    assert_eq!(stuck["pending"]["slot"], "key2");
    assert_eq!(stuck["pending"]["state"], "expired");
    let opted_out = secret(&report, VAULT, "opted-out");
    assert_eq!(
        (
            opted_out["rotation_enabled"].clone(),
            opted_out["due_now"].clone()
        ),
        (json!(false), json!(false))
    );
    let lost = secret(&report, VAULT, "lost");
    assert_eq!(
        lost["resource"],
        TestApp::provider_address("aoai-lost"),
        "what the older version named"
    );
    // Problems first, then by due time.
    let order: Vec<bool> = report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["problems"].as_array().unwrap().is_empty())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "problems first: {order:?}"
    );
    // The summary.
    let summary = &report["summary"];
    assert_eq!(summary["secrets"], 14);
    assert_eq!(summary["with_problems"], 11);
    assert_eq!(summary["opted_out"], 1);
    assert_eq!(summary["disabled"], 1);
    assert_eq!(summary["pending"], 1);
    assert_eq!(summary["problems"]["shared-resource"], 2);
    assert_eq!(
        summary["lost_tags_checked"], 2,
        "lost and plain: the enabled unmanaged secrets"
    );
    assert_eq!(summary["lost_tags_unchecked"], 0);
    assert_eq!(report["paused"], false);
    assert_eq!(report["problems"], json!([]));
    // Cost: one listing per vault, one version list per unmanaged secret, no value read.
    let calls = app.control.calls(None).await.unwrap();
    // Answered calls only: the first call to each vault meets the 401 challenge.
    let count = |op: &str| {
        calls
            .iter()
            .filter(|c| c.operation == op && c.status == 200)
            .count()
    };
    assert!(
        !calls.iter().any(|c| c.operation == "GetSecret"),
        "the status reads no value"
    );
    assert_eq!(count("GetSecretVersions"), 2);
    assert_eq!(count("GetSecrets"), 2, "one page per vault");
    assert!(app.writes().await.is_empty(), "the status changes nothing");
    assert_no_value(&values, &report.to_string(), "the JSON");
}

#[tokio::test]
async fn the_text_and_the_page_show_every_secret_without_a_value() {
    // Arrange
    let app = spawn_app().await;
    seed_fleet(&app).await;
    let values = key_values(&app, &accounts()).await;
    let report = status_json(&app, "").await;
    let names: Vec<String> = report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["secret"].as_str().unwrap().to_string())
        .collect();

    // Act
    let (status, content_type, policy, page) = get(&app, "?format=html&code=the-function-key").await;
    let (text_status, text_type, _, text) = get(&app, "?format=text").await;

    // Assert: the page
    assert_eq!((status, content_type.as_str()), (200, "text/html; charset=utf-8"));
    let policy = policy.expect("a Content-Security-Policy");
    assert!(
        policy.contains("script-src 'none'") && policy.starts_with("default-src 'none'"),
        "{policy}"
    );
    assert!(!page.contains("<script"), "no script");
    let without_namespace = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for external in ["http://", "https://", " src=", " href="] {
        assert!(
            !without_namespace.contains(external),
            "no external asset: {external}"
        );
    }
    assert!(
        !page.contains("the-function-key"),
        "the function key is not echoed"
    );
    for name in &names {
        assert!(page.contains(&format!("/{name}</td>")), "the page names {name}");
    }
    let problems_at = page.find("id=\"problems\"").unwrap();
    let secrets_at = page.find("id=\"secrets\"").unwrap();
    assert!(problems_at < secrets_at, "problems come first");
    assert!(page.contains("<svg"), "a timeline per secret");
    assert_no_value(&values, &page, "the page");
    // The text table: every secret, aligned, then the problems.
    assert_eq!(
        (text_status, text_type.as_str()),
        (200, "text/plain; charset=utf-8")
    );
    assert_aligned(&text);
    for name in &names {
        assert!(text.contains(name.as_str()), "the table names {name}");
    }
    assert!(text.contains("Problems:\n"), "{text}");
    assert!(text.contains("kv-api/late: overdue: "), "{text}");
    assert_no_value(&values, &text, "the table");
}

/// Every row of the table starts each column where its header does.
fn assert_aligned(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("STATE"))
        .expect("a header row");
    let columns: Vec<usize> = [
        "VAULT", "SECRET", "PROVIDER", "RESOURCE", "SLOT", "AGE", "EXPIRES", "DUE",
    ]
    .iter()
    .map(|h| lines[header].find(h).unwrap())
    .collect();
    for line in lines[header + 1..].iter().take_while(|l| !l.is_empty()) {
        for &column in &columns {
            let before = line.as_bytes()[column - 1];
            let at = line.as_bytes()[column];
            assert!(
                before == b' ' && at != b' ',
                "column {column} of '{line}' in:\n{text}"
            );
        }
    }
}

#[tokio::test]
async fn a_hostile_tag_renders_as_text_on_a_page_that_runs_no_script() {
    // Arrange: a tag writer puts markup in CredentialId and an extra tag
    let app = spawn_app().await;
    app.seed_account("aoai-xss", "OpenAI").await;
    seed_second_vault(&app).await;
    app.seed_secret(SecretSpec::new("xss", "aoai-xss").tag("CredentialId", "<script>alert(1)</script>"))
        .await;
    app.seed_secret(SecretSpec::new("xss-address", "aoai-xss").tag(
        "ProviderAddress",
        "/subscriptions/\"><img src=x onerror=alert(2)>",
    ))
    .await;

    // Act
    let (_, _, _, page) = get(&app, "?format=html").await;
    let (_, _, _, text) = get(&app, "?format=text").await;

    // Assert
    assert!(!page.contains("<script"), "the tag is not markup");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "it is shown as text"
    );
    assert!(!page.contains("<img"), "an attribute cannot be closed either");
    assert!(
        page.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{page}"
    );
    assert!(
        text.contains("'<script>alert(1)</script>'"),
        "the table's problems quote it as written: {text}"
    );
}

#[tokio::test]
async fn the_pause_an_unlisted_vault_and_the_clock_are_shown() {
    // Arrange: paused, the second vault does not exist
    let app = spawn_app_with(&[("KEYFLIP_PAUSED", "true")]).await;
    app.seed_account("aoai-p", "OpenAI").await;
    let mut spec = SecretSpec::new("later", "aoai-p");
    spec.expires_in_days = Some(35);
    app.seed_secret(spec).await;

    // Act
    let before = status_json(&app, "").await;
    app.advance(6 * DAY).await;
    let after = status_json(&app, "").await;
    let (_, _, _, page) = get(&app, "?format=html").await;
    let (_, _, _, text) = get(&app, "?format=text").await;

    // Assert
    assert_eq!(before["paused"], true);
    assert!(page.contains("id=\"paused\""), "the page says so");
    assert!(text.contains("PAUSED: KEYFLIP_PAUSED"), "{text}");
    assert_eq!(secret(&before, VAULT, "later")["state"], "ok");
    assert_eq!(
        secret(&after, VAULT, "later")["state"],
        "due",
        "the moved clock makes it due"
    );
    assert_eq!(
        before["problems"][0]["kind"], "vault-unlisted",
        "{:#}",
        before["problems"]
    );
    assert_eq!(before["problems"][0]["vault"], TWO);
    let vaults = before["vaults"].as_array().unwrap();
    assert!(vaults.iter().any(|v| v["vault"] == TWO && v["listed"] == false));
}

#[tokio::test]
async fn a_vault_filter_shows_one_vault_and_refuses_others() {
    // Arrange
    let app = spawn_app().await;
    seed_fleet(&app).await;

    // Act
    let two = status_json(&app, &format!("?vault={TWO}")).await;
    let (status, _, _, body) = get(&app, "?vault=kv-nowhere").await;
    let (bad, _, _, misspelt) = get(&app, "?fromat=html").await;

    // Assert: the other vault's twin is still seen
    let names: Vec<&str> = two["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["secret"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["twin-b"]);
    assert_eq!(kinds(secret(&two, TWO, "twin-b")), ["shared-resource"]);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("KEYFLIP_VAULTS"), "{body}");
    assert_eq!(bad, 400);
    assert!(misspelt.contains("fromat"), "{misspelt}");
}

#[tokio::test]
async fn a_browser_page_typed_in_the_address_bar_is_answered_but_a_cross_site_one_is_not() {
    let app = spawn_app().await;
    seed_second_vault(&app).await;
    let url = format!("http://{}/api/status?format=html", app.address);
    let typed = app
        .http
        .get(&url)
        .header("Sec-Fetch-Site", "none")
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status(), 200);
    let linked = app
        .http
        .get(&url)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(linked.status(), 403);
}

/// Runs `keyflip <args>` to completion without blocking the runtime that serves the emulator.
fn keyflip(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    tokio::task::block_in_place(|| run_keyflip(app, args, &[]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyflip_status_prints_an_aligned_table_and_json_for_scripts() {
    // Arrange (the child's clock is the system clock: nothing here moves the emulator's)
    let app = spawn_app().await;
    seed_fleet(&app).await;
    let values = key_values(&app, &accounts()).await;

    // Act
    let (code, table, table_err) = keyflip(&app, &["status"]);
    let (json_code, json_out, json_err) = keyflip(&app, &["status", "--json"]);
    let (one_code, one_out, _) = keyflip(&app, &["status", "--vault", TWO, "--json"]);
    let (bad_code, _, bad_err) = keyflip(&app, &["status", "--vault", "kv-nowhere"]);

    // Assert
    assert_eq!(code, 0, "{table}\n{table_err}");
    assert_aligned(&table);
    assert!(table.starts_with("keyflip status at "), "{table}");
    assert!(
        table.contains("14 managed secrets in 2 vaults, 11 with problems"),
        "{table}"
    );
    assert!(table.contains("kv-api/lost: tags-lost: "), "{table}");
    assert_eq!(json_code, 0, "{json_err}");
    let lines: Vec<&str> = json_out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON document on one line");
    let report: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(report["summary"]["secrets"], 14);
    assert_eq!(kinds(secret(&report, VAULT, "late")), ["overdue"]);
    assert_eq!(
        secret(&report, VAULT, "healthy")["provider"],
        "cognitive-services"
    );
    assert_eq!(one_code, 0);
    let one: Value = serde_json::from_str(one_out.trim()).unwrap();
    assert_eq!(one["secrets"].as_array().unwrap().len(), 1);
    assert_eq!(bad_code, 2);
    assert!(
        bad_err.contains("kv-nowhere") && bad_err.contains("KEYFLIP_VAULTS"),
        "{bad_err}"
    );
    for output in [&table, &table_err, &json_out, &json_err] {
        assert_no_value(&values, output, "keyflip status");
    }
}
