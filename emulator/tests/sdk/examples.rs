//! Every official REST example (`x-ms-examples` of Azure/azure-rest-api-specs) for the Key Vault
//! secrets and Cognitive Services account operations, replayed through the emulator on the wire.
//!
//! Each test seeds the emulator with the state the example presupposes (version ids, times,
//! content types, keys), sends the example's request with raw reqwest to the real host name
//! (`https://myvault.vault.azure.net`, `https://management.azure.com`) and compares the answer
//! with the example's response: status and JSON body exactly equal, except a version id the
//! server generates (SetSecret) and the opaque `$skiptoken` of a `nextLink`, whose shape is
//! checked and which is followed instead. The examples are copies kept in
//! `tests/data/rest-examples` (see its SOURCES.md); a file there without a test fails
//! [`every_example_file_has_a_test`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestEmulator, spawn_emulator};

const VAULT_AUDIENCE: &str = "https://vault.azure.net";
const ARM_AUDIENCE: &str = "https://management.azure.com";
const ARM_HOST: &str = "https://management.azure.com";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rest-examples")
}

/// One example file.
struct Example {
    file: &'static str,
    doc: Value,
}

impl Example {
    fn load(file: &'static str) -> Self {
        let path = examples_dir().join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
        Self { file, doc }
    }

    fn param(&self, name: &str) -> &str {
        self.doc["parameters"][name]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no string parameter '{name}'", self.file))
    }

    fn api_version(&self) -> &str {
        self.param("api-version")
    }

    /// The request body (`parameters.parameters`), if the operation takes one.
    fn body(&self) -> Option<Value> {
        self.doc["parameters"].get("parameters").cloned()
    }

    /// The statuses the example lists, e.g. `["200"]`.
    fn statuses(&self) -> Vec<&str> {
        self.doc["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: no responses", self.file))
            .keys()
            .map(String::as_str)
            .collect()
    }

    /// The body of the response with `status`, if it has one.
    fn response_body(&self, status: &str) -> Option<Value> {
        let response = self.doc["responses"]
            .get(status)
            .unwrap_or_else(|| panic!("{}: no {status} response", self.file));
        response.get("body").cloned()
    }

    /// `https://myvault.vault.azure.net/<path>?api-version=…[&extra…]`.
    fn vault_url(&self, path: &str, extra: &[(&str, &str)]) -> String {
        let base = self.param("vaultBaseUrl");
        let mut url = url::Url::parse(&format!("{base}{path}")).expect("vault url");
        url.query_pairs_mut()
            .append_pair("api-version", self.api_version());
        for (key, value) in extra {
            url.query_pairs_mut().append_pair(key, value);
        }
        url.to_string()
    }

    /// The account's ARM URL, with `/action` when given.
    fn account_url(&self, action: Option<&str>) -> String {
        let action = action.map(|a| format!("/{a}")).unwrap_or_default();
        format!(
            "{ARM_HOST}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.CognitiveServices/accounts/{}{action}?api-version={}",
            self.param("subscriptionId"),
            self.param("resourceGroupName"),
            self.param("accountName"),
            self.api_version()
        )
    }
}

/// A request to replay.
struct Call {
    method: Method,
    url: String,
    audience: &'static str,
    body: Option<Value>,
}

/// What the emulator answered: the status and the JSON body (`Null` when empty).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

async fn send(app: &TestEmulator, call: &Call, token: &str) -> Answer {
    let mut request = app
        .http
        .request(call.method.clone(), &call.url)
        .bearer_auth(token)
        .header("accept", "application/json");
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", call.method, call.url));
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("response body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{} {} answered a body that is not JSON ({e}): {}",
                call.method,
                call.url,
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Answer { status, body }
}

/// Arrange and act: a fresh emulator with `seed` applied (and its clock set to `clock` and
/// frozen, when the example shows times the server sets), then `call`.
async fn replay(seed: Value, clock: Option<i64>, call: &Call) -> (TestEmulator, Answer) {
    let app = spawn_emulator().await;
    if let Some(at) = clock {
        app.control
            .post("/clock", &json!({ "set": at, "freeze": true }))
            .await
            .expect("clock set and frozen");
    }
    app.seed(seed).await;
    let token = app.control.token(call.audience).await.expect("token");
    let answer = send(&app, call, &token).await;
    (app, answer)
}

/// Asserts the example lists exactly `statuses` (so a changed example is noticed).
fn assert_statuses(example: &Example, statuses: &[&str]) {
    assert_eq!(example.statuses(), statuses, "{}: listed responses", example.file);
}

/// Asserts the answer is the example's `status` response, body exactly equal.
fn assert_answer(example: &Example, status: &str, answer: &Answer) {
    let expected = example.response_body(status).unwrap_or(Value::Null);
    assert_eq!(
        answer.status.to_string(),
        status,
        "{}: status (body {})",
        example.file,
        answer.body
    );
    assert_eq!(answer.body, expected, "{}: body", example.file);
}

/// A vault named as the examples' `vaultBaseUrl` (`myvault`) whose attributes omit
/// `recoverableDays`, as vaults of the examples' era did.
fn vault_seed(secrets: Value) -> Value {
    json!({"vaults": [{"name": "myvault", "recoverable_days": null, "secrets": secrets}]})
}

/// The same for the 2016 list examples, recorded before Key Vault reported `recoveryLevel`.
fn pre_soft_delete_vault_seed(secrets: Value) -> Value {
    json!({"vaults": [{"name": "myvault", "recoverable_days": null, "recovery_level": null,
                       "secrets": secrets}]})
}

/// Splits a `nextLink` into the part before `?` and its query pairs, in order.
fn split_link(link: &str) -> (String, Vec<(String, String)>) {
    let (prefix, query) = link
        .split_once('?')
        .unwrap_or_else(|| panic!("nextLink without a query: {link}"));
    let pairs = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (prefix.to_string(), pairs)
}

/// Checks a `nextLink` against the example's: the same absolute
/// `https://myvault.vault.azure.net:443/…` prefix and the same parameters in the same order,
/// `maxresults` equal, a non-empty `$skiptoken` (opaque, so its value differs) and the
/// request's api-version. (The examples' links say `api-version=7.2` whatever version they were
/// filed under; they were recorded with 7.2 and copied forward. The emulator, like the service,
/// echoes the version of the request, which a client re-appends anyway.)
fn assert_next_link(example: &Example, actual: &Value, expected: &Value) {
    let actual = actual
        .as_str()
        .unwrap_or_else(|| panic!("{}: nextLink missing: {actual}", example.file));
    let expected = expected.as_str().expect("example nextLink");
    let (actual_prefix, actual_pairs) = split_link(actual);
    let (expected_prefix, expected_pairs) = split_link(expected);
    assert_eq!(
        actual_prefix, expected_prefix,
        "{}: nextLink {actual}",
        example.file
    );
    assert!(
        actual_prefix.starts_with("https://myvault.vault.azure.net:443/"),
        "{actual}"
    );
    let keys = |pairs: &[(String, String)]| pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&actual_pairs),
        keys(&expected_pairs),
        "{}: {actual}",
        example.file
    );
    let value = |pairs: &[(String, String)], key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        value(&actual_pairs, "api-version"),
        example.api_version(),
        "{actual}"
    );
    assert_eq!(value(&actual_pairs, "maxresults"), "1", "{actual}");
    assert_eq!(value(&expected_pairs, "maxresults"), "1");
    assert!(!value(&actual_pairs, "$skiptoken").is_empty(), "{actual}");
}

/// Compares a list page with the example's: the `nextLink` by shape, everything else exactly;
/// then follows the link and returns the second page.
async fn assert_first_page_and_follow(app: &TestEmulator, example: &Example, answer: &Answer) -> Value {
    let mut expected = example.response_body("200").expect("list body");
    let mut actual = answer.body.clone();
    assert_eq!(answer.status, 200, "{}: {actual}", example.file);
    let expected_link = expected["nextLink"].take();
    let actual_link = actual["nextLink"].take();
    assert_next_link(example, &actual_link, &expected_link);
    assert_eq!(actual, expected, "{}: first page", example.file);

    let link = actual_link.as_str().expect("nextLink");
    let token = app.control.token(VAULT_AUDIENCE).await.expect("token");
    let next = send(
        app,
        &Call {
            method: Method::GET,
            url: link.to_string(),
            audience: VAULT_AUDIENCE,
            body: None,
        },
        &token,
    )
    .await;
    assert_eq!(
        next.status, 200,
        "{}: following {link}: {}",
        example.file, next.body
    );
    next.body
}

// ---------------------------------------------------------------- Key Vault 2025-07-01

#[tokio::test]
async fn update_secret_2025_07_01_example_round_trips() {
    // Arrange: the version the example updates, created at the time the answer shows; the
    // clock reads that time too, since UpdateSecret moves `updated` to now.
    let example = Example::load("keyvault/2025-07-01/UpdateSecret-example.json");
    let (name, version) = (example.param("secret-name"), example.param("secret-version"));
    let seed = vault_seed(json!([{"name": name, "versions": [
        {"version": version, "value": "mysecretvalue", "created": 1_493_938_459}
    ]}]));
    let call = Call {
        method: Method::PATCH,
        url: example.vault_url(&format!("secrets/{name}/{version}"), &[]),
        audience: VAULT_AUDIENCE,
        body: example.body(),
    };

    // Act
    let (_app, answer) = replay(seed, Some(1_493_938_459), &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    assert_answer(&example, "200", &answer);
}

#[tokio::test]
async fn delete_secret_2025_07_01_example_round_trips() {
    // Arrange: deletedDate is the clock; scheduledPurgeDate is 90 days (the default retention)
    // later, as in the example.
    let example = Example::load("keyvault/2025-07-01/DeleteSecret-example.json");
    let name = example.param("secret-name");
    let seed = vault_seed(json!([{"name": name, "versions": [
        {"version": "b595353d9c39413d80626575b3b5d865", "value": "v", "created": 1_493_938_433}
    ]}]));
    let call = Call {
        method: Method::DELETE,
        url: example.vault_url(&format!("secrets/{name}"), &[]),
        audience: VAULT_AUDIENCE,
        body: None,
    };

    // Act
    let (app, answer) = replay(seed, Some(1_493_938_433), &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    assert_answer(&example, "200", &answer);
    let stored = app.control.secret("myvault", name).await.expect("secret");
    assert_eq!(stored["deleted"]["deleted_date"], 1_493_938_433);
}

#[tokio::test]
async fn get_deleted_secrets_2025_07_01_example_round_trips() {
    // Arrange: two deleted secrets, so the first page of one item has a nextLink.
    let example = Example::load("keyvault/2025-07-01/GetDeletedSecrets-example.json");
    let deleted = |name: &str, at: i64, content_type: Option<&str>| {
        json!({"name": name, "deleted_at": at, "versions": [
            {"value": "v", "content_type": content_type, "created": at}
        ]})
    };
    let seed = vault_seed(json!([
        deleted("listdeletedsecrettest0", 1_493_937_855, Some("plainText")),
        deleted("listdeletedsecrettest1", 1_493_937_856, None),
    ]));
    // The example's request carries a `$skiptoken` the real service issued, which no other
    // server can decode (the emulator refuses it with 400 BadParameter). Its response is the
    // page of one item that starts the list, so the request is replayed without it and the
    // answer compared with that first page.
    let maxresults = example.doc["parameters"]["maxresults"].to_string();
    assert!(example.doc["parameters"]["$skiptoken"].is_string());
    let call = Call {
        method: Method::GET,
        url: example.vault_url("deletedsecrets", &[("maxresults", &maxresults)]),
        audience: VAULT_AUDIENCE,
        body: None,
    };

    // Act
    let (app, answer) = replay(seed, None, &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    let second = assert_first_page_and_follow(&app, &example, &answer).await;
    assert_eq!(
        second,
        json!({"value": [{
            "recoveryId": "https://myvault.vault.azure.net/deletedsecrets/listdeletedsecrettest1",
            "deletedDate": 1_493_937_856,
            "scheduledPurgeDate": 1_493_937_856 + 90 * 86_400,
            "id": "https://myvault.vault.azure.net/secrets/listdeletedsecrettest1",
            "attributes": {"enabled": true, "created": 1_493_937_856, "updated": 1_493_937_856,
                           "recoveryLevel": "Recoverable+Purgeable"}
        }], "nextLink": null})
    );
}

#[tokio::test]
async fn purge_deleted_secret_2025_07_01_example_round_trips() {
    // Arrange
    let example = Example::load("keyvault/2025-07-01/PurgeDeletedSecret-example.json");
    let name = example.param("secret-name");
    let seed = vault_seed(json!([{"name": name, "deleted_at": 1_493_938_000, "versions": [
        {"value": "v", "created": 1_493_937_000}
    ]}]));
    let call = Call {
        method: Method::DELETE,
        url: example.vault_url(&format!("deletedsecrets/{name}"), &[]),
        audience: VAULT_AUDIENCE,
        body: None,
    };

    // Act
    let (app, answer) = replay(seed, None, &call).await;

    // Assert: 204 with no body, and the secret is gone for good.
    assert_statuses(&example, &["204"]);
    assert_answer(&example, "204", &answer);
    let gone = app.control.secret("myvault", name).await;
    assert!(
        matches!(
            gone,
            Err(emulator::client::ControlClientError::Status { status: 404, .. })
        ),
        "{gone:?}"
    );
}

#[tokio::test]
async fn get_secret_with_pem_conversion_2025_07_01_example_round_trips() {
    // Arrange: the emulator does not convert PFX to PEM (`outContentType` is accepted and the
    // value returned as stored; see the README), so the version stores the PEM the example's
    // answer shows, with its content type.
    let example = Example::load("keyvault/2025-07-01/GetSecretWithPEMConversion-example.json");
    let (name, version) = (example.param("secret-name"), example.param("secret-version"));
    let expected = example.response_body("200").expect("body");
    let seed = vault_seed(json!([{"name": name, "versions": [
        {"version": version, "value": expected["value"], "content_type": "application/x-pem-file",
         "created": 1_493_938_410}
    ]}]));
    let call = Call {
        method: Method::GET,
        url: example.vault_url(
            &format!("secrets/{name}/{version}"),
            &[("outContentType", example.param("outContentType"))],
        ),
        audience: VAULT_AUDIENCE,
        body: None,
    };

    // Act
    let (_app, answer) = replay(seed, None, &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    assert_answer(&example, "200", &answer);
}

// ---------------------------------------------------------------- Key Vault 2025-06-01

/// SetSecret: the answer equals the example's except the version id, which the server
/// generates: 32 lower-case hex characters, and the one now stored as the latest.
async fn assert_set_secret_example_round_trips(file: &'static str) {
    // Arrange: an empty vault; the clock reads the example's created/updated.
    let example = Example::load(file);
    let name = example.param("secret-name");
    let call = Call {
        method: Method::PUT,
        url: example.vault_url(&format!("secrets/{name}"), &[]),
        audience: VAULT_AUDIENCE,
        body: example.body(),
    };

    // Act
    let (app, answer) = replay(vault_seed(json!([])), Some(1_493_938_459), &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    assert_eq!(answer.status, 200, "{file}: {}", answer.body);
    let expected = example.response_body("200").expect("body");
    let id = answer.body["id"].as_str().expect("id");
    let (base, version) = id.rsplit_once('/').expect("versioned id");
    assert_eq!(version.len(), 32, "{id}");
    assert!(
        version
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    let expected_id = expected["id"].as_str().expect("example id");
    assert_eq!(base, expected_id.rsplit_once('/').expect("example id").0);
    let mut actual = answer.body.clone();
    actual["id"] = json!(expected_id);
    assert_eq!(actual, expected, "{file}: body apart from the version id");
    let stored = app.control.secret("myvault", name).await.expect("secret");
    assert_eq!(stored["latest"], version);
}

#[tokio::test]
async fn set_secret_2025_06_01_example_round_trips() {
    assert_set_secret_example_round_trips("keyvault/2025-06-01/SetSecret-example.json").await;
}

#[tokio::test]
async fn get_secret_versions_2025_06_01_example_round_trips() {
    // Arrange: two versions, so a page of one has a nextLink; the first is the example's.
    let example = Example::load("keyvault/2025-06-01/GetSecretVersions-example.json");
    let name = example.param("secret-name");
    let seed = pre_soft_delete_vault_seed(json!([{"name": name, "versions": [
        {"version": "11a536561da34d6b8b452d880df58f3a", "value": "v1", "created": 1_481_851_699},
        {"version": "22b536561da34d6b8b452d880df58f3a", "value": "v2", "created": 1_481_851_760}
    ]}]));
    let maxresults = example.doc["parameters"]["maxresults"].to_string();
    let call = Call {
        method: Method::GET,
        url: example.vault_url(
            &format!("secrets/{name}/versions"),
            &[("maxresults", &maxresults)],
        ),
        audience: VAULT_AUDIENCE,
        body: None,
    };

    // Act
    let (app, answer) = replay(seed, None, &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    let second = assert_first_page_and_follow(&app, &example, &answer).await;
    assert_eq!(
        second,
        json!({"value": [{
            "id": format!("https://myvault.vault.azure.net/secrets/{name}/22b536561da34d6b8b452d880df58f3a"),
            "attributes": {"enabled": true, "created": 1_481_851_760, "updated": 1_481_851_760}
        }], "nextLink": null})
    );
}

#[tokio::test]
async fn get_deleted_secret_2025_06_01_example_round_trips() {
    // Arrange
    let example = Example::load("keyvault/2025-06-01/GetDeletedSecret-example.json");
    let name = example.param("secret-name");
    let seed = vault_seed(json!([{"name": name, "deleted_at": 1_493_938_433, "versions": [
        {"version": "b595353d9c39413d80626575b3b5d865", "value": "v", "created": 1_493_938_433}
    ]}]));
    let call = Call {
        method: Method::GET,
        url: example.vault_url(&format!("deletedsecrets/{name}"), &[]),
        audience: VAULT_AUDIENCE,
        body: None,
    };

    // Act
    let (_app, answer) = replay(seed, None, &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    assert_answer(&example, "200", &answer);
}

// ---------------------------------------------------------------- Key Vault 7.6

#[tokio::test]
async fn set_secret_7_6_example_round_trips() {
    assert_set_secret_example_round_trips("keyvault/7.6/SetSecret-example.json").await;
}

#[tokio::test]
async fn get_secret_7_6_example_round_trips() {
    // Arrange
    let example = Example::load("keyvault/7.6/GetSecret-example.json");
    let (name, version) = (example.param("secret-name"), example.param("secret-version"));
    let seed = vault_seed(json!([{"name": name, "versions": [
        {"version": version, "value": "mysecretvalue", "created": 1_493_938_410}
    ]}]));
    let call = Call {
        method: Method::GET,
        url: example.vault_url(&format!("secrets/{name}/{version}"), &[]),
        audience: VAULT_AUDIENCE,
        body: None,
    };

    // Act
    let (_app, answer) = replay(seed, None, &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    assert_answer(&example, "200", &answer);
}

#[tokio::test]
async fn get_secrets_7_6_example_round_trips() {
    // Arrange: two secrets, so a page of one has a nextLink; the first (by name) is the
    // example's.
    let example = Example::load("keyvault/7.6/GetSecrets-example.json");
    let seed = pre_soft_delete_vault_seed(json!([
        {"name": "listsecrettest0", "versions": [
            {"value": "v0", "content_type": "plainText", "created": 1_482_189_047}]},
        {"name": "listsecrettest1", "versions": [{"value": "v1", "created": 1_482_189_050}]}
    ]));
    let maxresults = example.doc["parameters"]["maxresults"].to_string();
    let call = Call {
        method: Method::GET,
        url: example.vault_url("secrets", &[("maxresults", &maxresults)]),
        audience: VAULT_AUDIENCE,
        body: None,
    };

    // Act
    let (app, answer) = replay(seed, None, &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    let second = assert_first_page_and_follow(&app, &example, &answer).await;
    assert_eq!(
        second,
        json!({"value": [{
            "id": "https://myvault.vault.azure.net/secrets/listsecrettest1",
            "attributes": {"enabled": true, "created": 1_482_189_050, "updated": 1_482_189_050}
        }], "nextLink": null})
    );
}

#[tokio::test]
async fn recover_deleted_secret_7_6_example_round_trips() {
    // Arrange
    let example = Example::load("keyvault/7.6/RecoverDeletedSecret-example.json");
    let name = example.param("secret-name");
    let seed = vault_seed(json!([{"name": name, "deleted_at": 1_493_938_000, "versions": [
        {"version": "16f5f7feb7004280b7f3b8ac50cd01f9", "value": "v", "created": 1_493_937_960}
    ]}]));
    let call = Call {
        method: Method::POST,
        url: example.vault_url(&format!("deletedsecrets/{name}/recover"), &[]),
        audience: VAULT_AUDIENCE,
        body: None,
    };

    // Act
    let (app, answer) = replay(seed, None, &call).await;

    // Assert: the answer, and the secret is live again.
    assert_statuses(&example, &["200"]);
    assert_answer(&example, "200", &answer);
    let stored = app.control.secret("myvault", name).await.expect("secret");
    assert_eq!(stored["deleted"], Value::Null);
}

// ---------------------------------------------------------------- Cognitive Services (ARM)

/// An account at the example's ARM id with the given extra seed fields.
fn account_seed(example: &Example, fields: Value) -> Value {
    let mut account = json!({
        "subscription_id": example.param("subscriptionId"),
        "resource_group": example.param("resourceGroupName"),
        "name": example.param("accountName"),
        "kind": "OpenAI",
    });
    for (key, value) in fields.as_object().expect("fields") {
        account[key] = value.clone();
    }
    json!({"accounts": [account]})
}

/// RegenerateKey of Key2: key1 stays, key2 becomes the next key (seeded as the example's).
async fn regenerate_key2(example: &Example) -> (TestEmulator, Answer) {
    assert_eq!(
        example.body(),
        Some(json!({"keyName": "Key2"})),
        "{}",
        example.file
    );
    let seed = account_seed(
        example,
        json!({"key1": "KEY1", "key2": "key2-before-regeneration", "next_keys": ["KEY2"]}),
    );
    let call = Call {
        method: Method::POST,
        url: example.account_url(Some("regenerateKey")),
        audience: ARM_AUDIENCE,
        body: example.body(),
    };
    replay(seed, None, &call).await
}

#[tokio::test]
async fn regenerate_key_2025_06_01_example_round_trips() {
    // Arrange
    let example = Example::load("arm/cognitiveservices/2025-06-01/RegenerateKey.json");

    // Act
    let (app, answer) = regenerate_key2(&example).await;

    // Assert: this version of the example also lists a 202 with Azure-AsyncOperation, but the
    // 2025-06-01 swagger declares only 200 (no long-running operation) and the TypeSpec makes
    // regenerateKey ActionSync (shared/reference/rest-contracts.md §B.3): the emulator answers
    // 200 with the keys, which is what is asserted.
    assert_statuses(&example, &["200", "202"]);
    assert_answer(&example, "200", &answer);
    let account = app.control.account("myAccount").await.expect("account");
    assert_eq!(account["regenerations"], json!([0, 1]));
}

#[tokio::test]
async fn list_keys_2025_06_01_example_round_trips() {
    // Arrange
    let example = Example::load("arm/cognitiveservices/2025-06-01/ListKeys.json");
    let seed = account_seed(&example, json!({"key1": "KEY1", "key2": "KEY2"}));
    let call = Call {
        method: Method::POST,
        url: example.account_url(Some("listKeys")),
        audience: ARM_AUDIENCE,
        body: None,
    };

    // Act
    let (_app, answer) = replay(seed, None, &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    assert_answer(&example, "200", &answer);
}

#[tokio::test]
async fn regenerate_key_2022_12_01_example_round_trips() {
    // Arrange
    let example = Example::load("arm/cognitiveservices/2022-12-01/RegenerateKey.json");

    // Act
    let (app, answer) = regenerate_key2(&example).await;

    // Assert
    assert_statuses(&example, &["200"]);
    assert_answer(&example, "200", &answer);
    let account = app.control.account("myAccount").await.expect("account");
    assert_eq!(account["regenerations"], json!([0, 1]));
}

#[tokio::test]
async fn get_account_2025_10_01_preview_example_round_trips() {
    // Arrange: an old regional account (no custom subdomain, no disableLocalAuth) as shown.
    let example = Example::load("arm/cognitiveservices/2025-10-01-preview/GetAccount.json");
    let expected = example.response_body("200").expect("body");
    let seed = account_seed(
        &example,
        json!({
            "kind": expected["kind"], "location": expected["location"],
            "sku": expected["sku"]["name"], "tags": expected["tags"], "etag": expected["etag"],
            "endpoint": expected["properties"]["endpoint"],
            "custom_subdomain": null, "disable_local_auth": null,
        }),
    );
    let call = Call {
        method: Method::GET,
        url: example.account_url(None),
        audience: ARM_AUDIENCE,
        body: None,
    };

    // Act
    let (_app, answer) = replay(seed, None, &call).await;

    // Assert
    assert_statuses(&example, &["200"]);
    assert_answer(&example, "200", &answer);
}

// ---------------------------------------------------------------- coverage

/// Every file under `dir`, as a path relative to `root` with `/` separators.
fn files_under(root: &Path, dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files_under(root, &path, found);
        } else {
            let relative = path.strip_prefix(root).expect("under root");
            let parts: Vec<_> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            found.insert(parts.join("/"));
        }
    }
}

#[test]
fn every_example_file_has_a_test() {
    // Arrange: every file in the copied examples directory, and this module's source.
    let root = examples_dir();
    let mut files = BTreeSet::new();
    files_under(&root, &root, &mut files);
    let sources = std::fs::read_to_string(root.join("SOURCES.md")).expect("SOURCES.md");
    let this_module = include_str!("examples.rs");

    // Act: the JSON files no test loads, and those SOURCES.md does not account for.
    assert!(files.remove("SOURCES.md"), "SOURCES.md is missing");
    let untested: Vec<_> = files
        .iter()
        .filter(|f| !this_module.contains(&format!("\"{f}\"")))
        .collect();
    let undocumented: Vec<_> = files
        .iter()
        .filter(|f| !sources.contains(&format!("| {f} |")))
        .collect();

    // Assert
    assert!(untested.is_empty(), "example files without a test: {untested:?}");
    assert!(
        undocumented.is_empty(),
        "not listed in SOURCES.md: {undocumented:?}"
    );
    assert!(files.iter().all(|f| f.ends_with(".json")), "{files:?}");
    assert!(
        files.len() >= 16,
        "the 16 copied examples are not all there: {files:?}"
    );
}
