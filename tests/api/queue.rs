//! The queue paths against Azurite's queue service, the test playing the Functions host: the
//! fan-out sweep (`RotationSweep` in queue mode → `keyflip-sweep` → `SweepVault`) and Event
//! Grid's queue delivery (`keyflip-events` → `KeyVaultEventsQueue`).
//!
//! [`QueueHost`] does what the host's queue extension does, as
//! ../shared/reference/queues-flex-and-limits.md §1 describes it: it enqueues a function's
//! `Outputs` (one message per array element, objects re-serialized indented), polls the queue
//! over Azurite's REST API (Shared Key with the well-known development account), decodes the
//! text as host.json's `messageEncoding` says, builds the queue-trigger envelope (the text
//! double-encoded, `DequeueCount` a string, `Id`/`PopReceipt` and the times with their own
//! quotes, `sys`), POSTs it to the function's route, and deletes the message on a 2xx or makes
//! it visible again otherwise. It does not reproduce the poison queue: that is the host's, and
//! host.json's settings for it are checked statically (tests/deploy/queues.rs).

use emulator::azurite::{Azurite, AzuriteOptions, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::helpers::{
    Answer, RESOURCE_GROUP, SUBSCRIPTION, SecretSpec, TestApp, VAULT, fixture, spawn_app, spawn_app_with,
};

const SWEEP_QUEUE: &str = "keyflip-sweep";
const EVENTS_QUEUE: &str = "keyflip-events";
const OTHER_VAULT: &str = "kv-api-two";

/// One message as Get Messages returns it.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    pop_receipt: String,
    text: String,
    dequeue_count: u64,
    insertion: String,
    expiration: String,
    next_visible: String,
}

/// The Functions host's queue extension, as far as keyflip's functions see it.
struct QueueHost {
    _azurite: Azurite,
    http: reqwest::Client,
    endpoint: url::Url,
    /// host.json `extensions.queues.messageEncoding`.
    encoding: String,
}

impl QueueHost {
    /// Starts Azurite's queue service (HTTPS with the emulator CA's certificate) and creates
    /// both queues.
    async fn start(app: &TestApp) -> Self {
        let mut options =
            AzuriteOptions::from_pki(app.emulator.upstream_cert_pem(), app.emulator.upstream_key_pem());
        options.queue = true;
        let azurite = tokio::task::spawn_blocking(move || Azurite::start(&options))
            .await
            .expect("Azurite task")
            .expect("Azurite with its queue service starts");
        let endpoint = azurite.queue_endpoint(DEV_ACCOUNT).expect("queue endpoint");
        let http = emulator::client::azure_http_client(app.info.address, &app.info.ca_pem).expect("client");
        let host: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/host.json")).expect("host.json"),
        )
        .expect("host.json is JSON");
        let encoding = host["extensions"]["queues"]["messageEncoding"]
            .as_str()
            .unwrap_or("base64")
            .to_string();
        let queues = Self {
            _azurite: azurite,
            http,
            endpoint: url::Url::parse(&format!("{endpoint}/")).expect("endpoint URL"),
            encoding,
        };
        for queue in [SWEEP_QUEUE, EVENTS_QUEUE] {
            let status = queues.call("PUT", queue, &[], None).await.0;
            assert_eq!(status, 201, "creating {queue}");
        }
        queues
    }

    /// One signed call (Shared Key, ../shared/reference: Azure Storage's Authorize with
    /// Shared Key); answers the status and body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> (u16, String) {
        let mut url = self.endpoint.join(path).expect("queue URL");
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let date = OffsetDateTime::now_utc()
            .format(&time::macros::format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            ))
            .expect("date");
        let version = "2021-12-02";
        let (length, content_type) = match &body {
            Some(b) if !b.is_empty() => (b.len().to_string(), "application/xml"),
            _ => (String::new(), ""),
        };
        let mut pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
            .collect();
        pairs.sort();
        let mut resource = format!("/{DEV_ACCOUNT}{}", url.path());
        for (k, v) in &pairs {
            resource.push_str(&format!("\n{k}:{v}"));
        }
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n{content_type}\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
        );
        let key = azure_core::base64::decode(DEV_ACCOUNT_KEY).expect("key");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac");
        mac.update(to_sign.as_bytes());
        let signature = azure_core::base64::encode(mac.finalize().into_bytes());
        let mut request = self
            .http
            .request(method.parse().expect("method"), url)
            .header("x-ms-date", &date)
            .header("x-ms-version", version)
            .header("Authorization", format!("SharedKey {DEV_ACCOUNT}:{signature}"));
        if let Some(body) = body {
            if !content_type.is_empty() {
                request = request.header("Content-Type", content_type);
            }
            request = request.body(body);
        }
        let response = request.send().await.expect("Azurite answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Put Message, with the text as the host's collector writes it (`messageEncoding`).
    async fn put(&self, queue: &str, text: &str) {
        let encoded = match self.encoding.as_str() {
            "base64" => azure_core::base64::encode(text.as_bytes()),
            _ => text.to_string(),
        };
        self.put_raw(queue, &encoded).await;
    }

    /// Put Message with the text exactly as given (what Event Grid writes).
    async fn put_raw(&self, queue: &str, text: &str) {
        let body = format!(
            "<QueueMessage><MessageText>{}</MessageText></QueueMessage>",
            xml_escape(text)
        );
        let (status, answer) = self
            .call("POST", &format!("{queue}/messages"), &[], Some(body))
            .await;
        assert_eq!(status, 201, "Put Message: {answer}");
    }

    /// Enqueues a function's output binding value as the host does: one message per array
    /// element, objects re-serialized (indented, as `JToken.ToString()` writes them).
    async fn enqueue_outputs(&self, queue: &str, value: &Value) -> usize {
        let items = match value {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for item in &items {
            let text = match item {
                Value::String(s) => s.clone(),
                other => serde_json::to_string_pretty(other).expect("json"),
            };
            self.put(queue, &text).await;
        }
        items.len()
    }

    /// Get Messages: one message, hidden for 30 s while it is processed.
    async fn receive(&self, queue: &str) -> Option<Message> {
        let (status, xml) = self
            .call(
                "GET",
                &format!("{queue}/messages"),
                &[("numofmessages", "1"), ("visibilitytimeout", "30")],
                None,
            )
            .await;
        assert_eq!(status, 200, "Get Messages: {xml}");
        let item = xml.split("<QueueMessage>").nth(1)?;
        Some(Message {
            id: tag(item, "MessageId")?,
            pop_receipt: tag(item, "PopReceipt")?,
            text: tag(item, "MessageText").unwrap_or_default(),
            dequeue_count: tag(item, "DequeueCount")?.parse().ok()?,
            insertion: iso(&tag(item, "InsertionTime")?),
            expiration: iso(&tag(item, "ExpirationTime")?),
            next_visible: iso(&tag(item, "TimeNextVisible")?),
        })
    }

    /// How many messages are visible now (Peek Messages).
    async fn visible(&self, queue: &str) -> usize {
        let (status, xml) = self
            .call(
                "GET",
                &format!("{queue}/messages"),
                &[("numofmessages", "32"), ("peekonly", "true")],
                None,
            )
            .await;
        assert_eq!(status, 200, "Peek Messages: {xml}");
        xml.matches("<QueueMessage>").count()
    }

    /// The queue-trigger envelope the host POSTs for a message
    /// (contracts: derived/queue-invocation.custom-handler.host-code.json).
    fn envelope(&self, function: &str, message: &Message) -> Value {
        let text = match self.encoding.as_str() {
            "base64" => {
                let bytes = azure_core::base64::decode(&message.text).expect("base64 message");
                String::from_utf8(bytes).expect("UTF-8 message")
            }
            _ => message.text.clone(),
        };
        let quoted = |s: &str| serde_json::to_string(s).expect("json");
        let mut envelope = fixture("derived/queue-invocation.custom-handler.host-code.json");
        envelope["Data"] = json!({ "message": quoted(&text) });
        let metadata = &mut envelope["Metadata"];
        metadata["DequeueCount"] = json!(message.dequeue_count.to_string());
        metadata["Id"] = json!(quoted(&message.id));
        metadata["PopReceipt"] = json!(quoted(&message.pop_receipt));
        metadata["InsertionTime"] = json!(quoted(&message.insertion));
        metadata["ExpirationTime"] = json!(quoted(&message.expiration));
        metadata["NextVisibleTime"] = json!(quoted(&message.next_visible));
        metadata["sys"]["MethodName"] = json!(function);
        envelope
    }

    /// One poll of `queue` for `function`: the answer, or `None` when the queue is empty. A
    /// 2xx deletes the message; anything else makes it visible again at once.
    async fn deliver_one(&self, app: &TestApp, function: &str, queue: &str) -> Option<Answer> {
        let message = self.receive(queue).await?;
        let answer = app
            .post(
                &format!("/{function}"),
                self.envelope(function, &message).to_string(),
            )
            .await;
        let path = format!("{queue}/messages/{}", message.id);
        if (200..300).contains(&answer.status) {
            let (status, body) = self
                .call("DELETE", &path, &[("popreceipt", &message.pop_receipt)], None)
                .await;
            assert_eq!(status, 204, "Delete Message: {body}");
        } else {
            let body = format!(
                "<QueueMessage><MessageText>{}</MessageText></QueueMessage>",
                xml_escape(&message.text)
            );
            let (status, text) = self
                .call(
                    "PUT",
                    &path,
                    &[("popreceipt", &message.pop_receipt), ("visibilitytimeout", "0")],
                    Some(body),
                )
                .await;
            assert_eq!(status, 204, "Update Message: {text}");
        }
        Some(answer)
    }

    /// Delivers until the queue is empty (at most `max` messages); the answers in order.
    async fn drain(&self, app: &TestApp, function: &str, queue: &str, max: usize) -> Vec<Answer> {
        let mut answers = Vec::new();
        while answers.len() < max {
            match self.deliver_one(app, function, queue).await {
                Some(answer) => answers.push(answer),
                None => break,
            }
        }
        answers
    }
}

/// The text of the first `<name>…</name>` element, XML entities resolved.
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// An RFC 1123 time as the host serializes a DateTimeOffset: ISO 8601 with its offset.
fn iso(rfc1123: &str) -> String {
    let parsed = OffsetDateTime::parse(&rfc1123.replace(" GMT", " +0000"), &Rfc2822).expect("RFC 1123 time");
    let text = parsed.format(&Rfc3339).expect("RFC 3339");
    match text.strip_suffix('Z') {
        Some(rest) => format!("{rest}+00:00"),
        None => text,
    }
}

/// A Key Vault event in Event Grid's schema, as Event Grid writes it into the queue.
fn event(kind: &str, vault: &str, subject: &str, secret: &str, version: &str) -> Value {
    json!({
        "id": "5b5c4e5a-7d52-4f3b-9d0c-2b1a0f6e8c11",
        "topic": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/{vault}"),
        "subject": subject,
        "eventType": format!("Microsoft.KeyVault.{kind}"),
        "eventTime": "2026-12-01T10:00:00.0000000Z",
        "data": {
            "Id": format!("https://{vault}.vault.azure.net/secrets/{secret}/{version}"),
            "VaultName": vault, "ObjectType": "Secret", "ObjectName": secret, "Version": version,
            "NBF": 1559081980, "EXP": 1559082102
        },
        "dataVersion": "1",
        "metadataVersion": "1"
    })
}

#[tokio::test]
async fn in_queue_mode_the_timer_enqueues_one_message_per_vault_and_sweep_vault_rotates_each() {
    // Arrange: one due secret in each served vault
    let app = spawn_app_with(&[("KEYFLIP_SWEEP_MODE", "queue")]).await;
    let host = QueueHost::start(&app).await;
    app.seed_account("aoai-fan-a", "OpenAI").await;
    app.seed_account("aoai-fan-b", "OpenAI").await;
    app.seed_secret(SecretSpec::new("fan-a", "aoai-fan-a")).await;
    let mut other = SecretSpec::new("fan-b", "aoai-fan-b");
    other.vault = OTHER_VAULT.into();
    app.seed_secret(other).await;

    // Act: the timer fires
    let timer = app.sweep().await;

    // Assert: one message per vault in Outputs, nothing swept by the timer itself
    assert_eq!(timer.status, 200, "{:?}", timer.body);
    let outputs = &timer.body["Outputs"]["sweep"];
    let vaults: Vec<&str> = outputs
        .as_array()
        .expect("an array of messages")
        .iter()
        .map(|m| m["vault"].as_str().expect("vault"))
        .collect();
    assert_eq!(vaults, [VAULT, OTHER_VAULT]);
    assert!(timer.result().get("summary").is_none(), "{:?}", timer.body);
    assert_eq!(
        app.versions(VAULT, "fan-a").await.len(),
        1,
        "the timer rotated nothing"
    );
    assert!(app.writes().await.is_empty(), "the timer wrote nothing");

    // Act: the host enqueues the outputs; one instance takes the first message
    assert_eq!(host.enqueue_outputs(SWEEP_QUEUE, outputs).await, 2);
    let first = host
        .deliver_one(&app, "SweepVault", SWEEP_QUEUE)
        .await
        .expect("a message");

    // Assert: that vault's due secret rotated, the other vault's not yet
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.result()["summary"]["rotated"], 1, "{:?}", first.body);
    assert_eq!(app.versions(VAULT, "fan-a").await.len(), 2);
    assert_eq!(app.versions(OTHER_VAULT, "fan-b").await.len(), 1);
    assert_eq!(
        host.visible(SWEEP_QUEUE).await,
        1,
        "the processed message was deleted"
    );

    // Act: another instance takes the second
    let rest = host.drain(&app, "SweepVault", SWEEP_QUEUE, 5).await;

    // Assert
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].status, 200, "{:?}", rest[0].body);
    assert_eq!(rest[0].outcome_for(OTHER_VAULT, "fan-b"), "rotated");
    assert_eq!(app.versions(OTHER_VAULT, "fan-b").await.len(), 2);
    assert_eq!(host.visible(SWEEP_QUEUE).await, 0);
}

#[tokio::test]
async fn a_duplicate_or_unknown_sweep_message_is_harmless_and_a_malformed_one_is_dropped() {
    // Arrange
    let app = spawn_app_with(&[("KEYFLIP_SWEEP_MODE", "queue")]).await;
    let host = QueueHost::start(&app).await;
    app.seed_account("aoai-dup", "OpenAI").await;
    app.seed_secret(SecretSpec::new("dup", "aoai-dup")).await;
    let message = json!({"vault": VAULT}).to_string();
    host.put(SWEEP_QUEUE, &message).await;
    host.put(SWEEP_QUEUE, &message).await;
    host.put(SWEEP_QUEUE, &json!({"vault": "kv-not-served"}).to_string())
        .await;
    host.put_raw(SWEEP_QUEUE, "this is not a sweep message").await;

    // Act
    let answers = host.drain(&app, "SweepVault", SWEEP_QUEUE, 10).await;

    // Assert: one rotation; the duplicate found nothing due; the others permanent, deleted
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    assert_eq!(answers[0].outcome_for(VAULT, "dup"), "rotated");
    assert_eq!(
        answers[1].result()["summary"]["rotated"],
        0,
        "{:?}",
        answers[1].body
    );
    assert_eq!(answers[2].outcome(), "failed:not-allowed");
    assert_eq!(answers[3].outcome(), "failed:bad-event");
    assert!(
        answers[3].message().contains("cannot be understood"),
        "{:?}",
        answers[3].body
    );
    assert_eq!(app.versions(VAULT, "dup").await.len(), 2, "one rotation");
    assert_eq!(host.visible(SWEEP_QUEUE).await, 0, "nothing left to retry");
}

#[tokio::test]
async fn a_queued_event_in_plain_json_or_base64_rotates_and_a_duplicate_is_stale() {
    for base64 in [false, true] {
        // Arrange
        let app = spawn_app().await;
        let host = QueueHost::start(&app).await;
        app.seed_account("aoai-q", "OpenAI").await;
        app.seed_secret(SecretSpec::new("queued", "aoai-q")).await;
        let first = app.latest("queued").await;
        let text = event("SecretNearExpiry", VAULT, "queued", "queued", &first.version).to_string();
        let written = match base64 {
            true => azure_core::base64::encode(text.as_bytes()),
            false => text,
        };
        // Event Grid delivers at least once: the same event twice.
        host.put_raw(EVENTS_QUEUE, &written).await;
        host.put_raw(EVENTS_QUEUE, &written).await;

        // Act
        let answers = host.drain(&app, "KeyVaultEventsQueue", EVENTS_QUEUE, 5).await;

        // Assert: rotated once; the duplicate's version is no longer the latest
        assert_eq!(answers.len(), 2, "base64 {base64}: {answers:?}");
        assert_eq!(answers[0].status, 200, "{:?}", answers[0].body);
        assert_eq!(
            answers[0].outcome(),
            "rotated",
            "base64 {base64}: {:?}",
            answers[0].body
        );
        assert_eq!(answers[1].status, 200);
        assert_eq!(answers[1].outcome(), "skipped:stale", "{:?}", answers[1].body);
        let versions = app.versions(VAULT, "queued").await;
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[1].tag("RotationTrigger"), Some("event"));
        assert_eq!(host.visible(EVENTS_QUEUE).await, 0);
    }
}

#[tokio::test]
async fn queued_events_meet_the_push_path_s_guards_and_bad_messages_are_not_retried() {
    // Arrange
    let app = spawn_app().await;
    let host = QueueHost::start(&app).await;
    app.seed_account("aoai-g", "OpenAI").await;
    app.seed_secret(SecretSpec::new("guarded", "aoai-g")).await;
    let latest = app.latest("guarded").await.version;
    let stale = "0123456789abcdef0123456789abcdef";
    let cases = [
        (
            event("SecretNearExpiry", VAULT, "guarded", "guarded", stale).to_string(),
            "skipped:stale",
        ),
        (
            event("SecretNearExpiry", "kv-elsewhere", "guarded", "guarded", &latest).to_string(),
            "failed:not-allowed",
        ),
        (
            event("SecretNearExpiry", VAULT, "../other-secret", "guarded", &latest).to_string(),
            "failed:bad-event",
        ),
        ("not an event at all".to_string(), "failed:bad-event"),
        (
            azure_core::base64::encode("{\"eventType\": 42}"),
            "failed:bad-event",
        ),
    ];
    for (text, _) in &cases {
        host.put_raw(EVENTS_QUEUE, text).await;
    }

    // Act
    let answers = host.drain(&app, "KeyVaultEventsQueue", EVENTS_QUEUE, 10).await;

    // Assert: each answered 200 with its guard's outcome, nothing written, nothing left
    assert_eq!(answers.len(), cases.len(), "{answers:?}");
    for ((text, outcome), answer) in cases.iter().zip(&answers) {
        assert_eq!(answer.status, 200, "{text}: {:?}", answer.body);
        assert_eq!(answer.outcome(), *outcome, "{text}: {:?}", answer.body);
    }
    assert_eq!(app.versions(VAULT, "guarded").await.len(), 1);
    assert!(app.writes().await.is_empty());
    assert_eq!(host.visible(EVENTS_QUEUE).await, 0, "no message is retried");
}

#[tokio::test]
async fn a_transient_failure_leaves_the_message_for_the_host_to_retry() {
    // Arrange: the rotation's lease is held by "another instance"
    let app = spawn_app().await;
    let host = QueueHost::start(&app).await;
    app.seed_account("aoai-t", "OpenAI").await;
    app.seed_secret(SecretSpec::new("busy", "aoai-t")).await;
    let version = app.latest("busy").await.version;
    let key = keyflip::lease::LeaseKey::new(
        &keyflip::domain::VaultName::parse(VAULT).expect("vault"),
        &keyflip::domain::SecretName::parse("busy").expect("secret"),
    );
    let holder = app.leases.acquire(&key).await.expect("lease taken");
    host.put_raw(
        EVENTS_QUEUE,
        &event("SecretExpired", VAULT, "busy", "busy", &version).to_string(),
    )
    .await;

    // Act
    let answer = host
        .deliver_one(&app, "KeyVaultEventsQueue", EVENTS_QUEUE)
        .await
        .expect("a message");

    // Assert: 500, the message visible again with its dequeue count up
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    assert_eq!(answer.outcome(), "failed:locked", "{:?}", answer.body);
    drop(holder);
    let again = host.receive(EVENTS_QUEUE).await.expect("visible again");
    assert_eq!(again.dequeue_count, 2);
}

#[tokio::test]
async fn a_vault_s_sweep_builds_the_index_of_every_vault_before_regenerating() {
    // Arrange: no index yet; a due secret in one vault, and the other served vault slow to
    // list (5 pages of 400 ms each, real time: only the outcome and the order are asserted)
    let app = spawn_app_with(&[("KEYFLIP_SWEEP_MODE", "queue")]).await;
    let host = QueueHost::start(&app).await;
    app.seed_account("aoai-idx", "OpenAI").await;
    app.seed_secret(SecretSpec::new("idx", "aoai-idx")).await;
    let plain: Vec<Value> = (0..120)
        .map(|i| json!({"name": format!("plain-{i:03}"), "versions": [{"value": "v"}]}))
        .collect();
    app.control
        .seed(&json!({"vaults": [{"name": OTHER_VAULT, "secrets": plain}]}))
        .await
        .unwrap();
    app.control
        .latency(&emulator::faults::LatencyRule {
            operation: "GetSecrets".into(),
            target: Some(OTHER_VAULT.into()),
            delay_ms: 400,
            count: None,
        })
        .await
        .unwrap();
    app.control.clear_calls().await.unwrap();
    host.put(SWEEP_QUEUE, &json!({"vault": VAULT}).to_string()).await;

    // Act
    let answers = host.drain(&app, "SweepVault", SWEEP_QUEUE, 1).await;

    // Assert: rotated; the other vault listed (for the index only: not counted as scanned)
    // before the key was regenerated (the rotation may start before: it waits for the index)
    assert_eq!(answers[0].status, 200, "{:?}", answers[0].body);
    assert_eq!(
        answers[0].outcome_for(VAULT, "idx"),
        "rotated",
        "{:?}",
        answers[0].body
    );
    assert_eq!(answers[0].result()["summary"]["scanned"], 1);
    let calls = app.control.calls(None).await.unwrap();
    let last_other_page = calls
        .iter()
        .filter(|c| c.operation == "GetSecrets" && c.target == OTHER_VAULT)
        .map(|c| c.seq)
        .max()
        .expect("the other vault was listed");
    let first_regenerate = calls
        .iter()
        .filter(|c| c.operation == "Accounts_RegenerateKey")
        .map(|c| c.seq)
        .min()
        .unwrap();
    assert!(
        first_regenerate > last_other_page,
        "regenerated before the index was complete"
    );
}
