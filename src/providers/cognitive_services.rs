//! Azure AI services accounts (`Microsoft.CognitiveServices/accounts`, every kind, OpenAI and
//! AIServices included): slots `key1`/`key2`, the account's kind and `disableLocalAuth`, its keys
//! through Resource Manager (`listKeys`, `regenerateKey`, api-version 2025-06-01), and the
//! data-plane check of a key per kind (`reference/key-verification.md` §3.1).
//!
//! `regenerateKey` is sent once ([`ArmClient::post_once`]); a 202 is followed to its end
//! ([`ArmClient::wait`]) and the keys are then read with `listKeys`. A regeneration whose
//! outcome is unknown (its answer lost, its operation not followed to the end) is
//! [`ProviderError::Uncertain`] (or, for an accepted operation that cannot be followed, [`ProviderError::Running`]); one that ended `Failed`/`Canceled` left the key as it was and
//! is `Transient`.
//!
//! A check exists only where one is documented and trustworthy: `OpenAI` and `AIServices` list
//! models with `api-key`; `FormRecognizer`, `ContentSafety`, `TextAnalytics` and
//! `ComputerVision` make their cheapest authenticated read on the account's custom-subdomain
//! endpoint with `Ocp-Apim-Subscription-Key`. Every other kind (or an account without such an
//! endpoint) has none, and the engine refuses to rotate it unless the secret opts out (I4).
//!
//! It does not decide anything about a rotation (the engine does), retry a check (the engine
//! does, within its budget) or log. Key values go only into the check's request header, marked
//! sensitive; no error or reason ever holds one. Built at start-up from an [`ArmClient`] and the
//! shared `reqwest` client; the registry in [`super`] hands it to the engine.

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use url::Url;

use super::{KeyCheck, KeyPair, KeyProvider, ProviderError, ResourceInfo, Verification};
use crate::azure::arm::{
    ActionAnswer, ArmClient, ArmError, OperationError, error_body, error_chain, one_line, truncate,
};
use crate::azure::transport::LazyClient;
use crate::azure::urls::with_segments;
use crate::domain::{ApiKey, ArmResourceId, Slot};

/// The Resource Manager api-version of every account call.
pub const API_VERSION: &str = "2025-06-01";
/// The ARM resource type this provider rotates.
pub const RESOURCE_TYPE: &str = "Microsoft.CognitiveServices/accounts";
/// Every Resource Manager action a rotation of an account calls: the least-privilege custom
/// role of `infra/` grants exactly these (tests/deploy compares them). The last one covers
/// following a long-running `regenerateKey` ([`ArmClient::wait`] polls
/// `…/providers/Microsoft.CognitiveServices/locations/{location}/operationResults|operationStatuses/{id}`):
/// the provider's published operations list (MicrosoftDocs azure-docs,
/// `role-based-access-control/permissions/ai-machine-learning.md`) has
/// `Microsoft.CognitiveServices/locations/operationresults/read` ("Read the status of an
/// asynchronous operation") and no `operationStatuses` action, so that is the one listed.
pub const ARM_ACTIONS: &[&str] = &[
    "Microsoft.CognitiveServices/accounts/read",
    "Microsoft.CognitiveServices/accounts/listKeys/action",
    "Microsoft.CognitiveServices/accounts/regenerateKey/action",
    "Microsoft.CognitiveServices/locations/operationresults/read",
];
/// The GA data-plane api-version of the OpenAI model list.
pub const OPENAI_MODELS_API_VERSION: &str = "2024-10-21";
/// `properties.endpoints` entry of the OpenAI surface.
const OPENAI_ENDPOINT_NAME: &str = "OpenAI Language Model Instance API";
const API_KEY: &str = "api-key";
const SUBSCRIPTION_KEY: &str = "Ocp-Apim-Subscription-Key";
/// How long one data-plane check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A data-plane path after `{endpoint}`: its segments and its query.
type CheckPath = (&'static [&'static str], &'static [(&'static str, &'static str)]);

/// The OpenAI model list, after the OpenAI endpoint.
const OPENAI_MODELS: CheckPath = (
    &["openai", "models"],
    &[("api-version", OPENAI_MODELS_API_VERSION)],
);

/// The documented checks of single-service kinds on their custom subdomain.
const SUBDOMAIN_CHECKS: &[(&str, CheckPath)] = &[
    (
        "FormRecognizer",
        (
            &["documentintelligence", "info"],
            &[("api-version", "2024-11-30")],
        ),
    ),
    (
        "ContentSafety",
        (
            &["contentsafety", "text", "blocklists"],
            &[("api-version", "2024-09-01")],
        ),
    ),
    (
        "TextAnalytics",
        (
            &["language", "authoring", "analyze-text", "projects"],
            &[("api-version", "2023-04-01"), ("top", "1")],
        ),
    ),
    ("ComputerVision", (&["vision", "v3.2", "models"], &[])),
];

/// The Azure AI services provider.
#[derive(Debug, Clone)]
pub struct CognitiveServices {
    arm: ArmClient,
    http: LazyClient,
}

impl CognitiveServices {
    /// `http` sends the data-plane checks (a client that keeps no idle connection, built on
    /// first use, or any client given ready-made).
    pub fn new(arm: ArmClient, http: impl Into<LazyClient>) -> Self {
        Self {
            arm,
            http: http.into(),
        }
    }
}

/// ARM's `keyName` for a slot.
fn key_name(slot: Slot) -> &'static str {
    match slot {
        Slot::First => "Key1",
        Slot::Second => "Key2",
    }
}

/// Both keys of an `ApiKeys` answer, when it holds both.
fn key_pair(answer: &Value) -> Option<KeyPair> {
    let key = |name: &str| {
        answer
            .get(name)
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(ApiKey::new)
    };
    Some(KeyPair {
        first: key("key1")?,
        second: key("key2")?,
    })
}

/// The `Account` fields the rotation needs.
fn resource_info(account: &Value) -> ResourceInfo {
    let kind = account.get("kind").and_then(Value::as_str).map(str::to_string);
    let properties = account.get("properties").unwrap_or(&Value::Null);
    let keys_disabled = properties
        .get("disableLocalAuth")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let check = kind.as_deref().and_then(|k| key_check(k, properties));
    ResourceInfo {
        kind,
        keys_disabled,
        check,
    }
}

/// The trustworthy data-plane check of an account of `kind`, if one is documented.
pub fn key_check(kind: &str, properties: &Value) -> Option<KeyCheck> {
    let is = |name: &str| kind.eq_ignore_ascii_case(name);
    if is("OpenAI") || is("AIServices") {
        let listed = properties
            .get("endpoints")
            .and_then(|e| e.get(OPENAI_ENDPOINT_NAME))
            .and_then(Value::as_str);
        let endpoint = match listed {
            Some(endpoint) => endpoint,
            None if is("OpenAI") => properties.get("endpoint").and_then(Value::as_str)?,
            None => return None,
        };
        let (segments, query) = OPENAI_MODELS;
        return Some(KeyCheck {
            method: "GET",
            url: with_segments(&https_base(endpoint)?, segments, query)?,
            header: API_KEY,
        });
    }
    let (_, (segments, query)) = SUBDOMAIN_CHECKS.iter().find(|(k, _)| is(k))?;
    Some(KeyCheck {
        method: "GET",
        url: with_segments(&custom_subdomain_endpoint(properties)?, segments, query)?,
        header: SUBSCRIPTION_KEY,
    })
}

/// `properties.endpoint` when it is the account's custom subdomain (its first host label is
/// `customSubDomainName`), not a regional endpoint shared by many accounts.
fn custom_subdomain_endpoint(properties: &Value) -> Option<Url> {
    let subdomain = properties
        .get("customSubDomainName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    let endpoint = https_base(properties.get("endpoint").and_then(Value::as_str)?)?;
    let first_label = endpoint.host_str()?.split('.').next()?;
    first_label.eq_ignore_ascii_case(subdomain).then_some(endpoint)
}

/// An https endpoint as a base URL ending in `/`, without query or fragment; a key is never
/// sent over anything else.
fn https_base(endpoint: &str) -> Option<Url> {
    let mut url = Url::parse(endpoint.trim()).ok()?;
    if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Some(url)
}

/// The message of every refusal caused by `disableLocalAuth`.
fn keys_disabled(resource: &ArmResourceId) -> String {
    format!(
        "key authentication is disabled on the resource (properties.disableLocalAuth is true), so it has no keys to use or rotate: \
         enable it with `az resource update --ids {resource} --set properties.disableLocalAuth=false`, \
         or remove the rotation tags from this secret if the resource is meant to use Microsoft Entra ID only"
    )
}

/// A provider error with what was being done, and the fix where one is known.
fn provider_error(doing: &str, resource: &ArmResourceId, error: ArmError) -> ProviderError {
    match &error {
        ArmError::NotFound { .. } => {
            ProviderError::NotFound(format!("{doing} {resource}: {error} (check tag ProviderAddress)"))
        }
        ArmError::Transient { .. } => ProviderError::Transient(format!("{doing} {resource}: {error}")),
        ArmError::Lost { .. } => ProviderError::Uncertain(format!(
            "{doing} {resource}: {error}; the regeneration may or may not have taken effect"
        )),
        ArmError::Permanent { status, message, .. }
            if *status == Some(400) && message.to_ascii_lowercase().contains("disablelocalauth") =>
        {
            ProviderError::Permanent(format!("{doing} {resource}: {}", keys_disabled(resource)))
        }
        ArmError::Permanent { code, .. }
            if code.eq_ignore_ascii_case("AuthorizationFailed")
                || code.eq_ignore_ascii_case("LinkedAuthorizationFailed") =>
        {
            ProviderError::Permanent(format!(
                "{doing} {resource}: {error}; grant keyflip's identity the Cognitive Services Contributor role on the account \
                 (or a role with Microsoft.CognitiveServices/accounts/read, listKeys/action and regenerateKey/action)"
            ))
        }
        ArmError::Permanent { .. } => ProviderError::Permanent(format!("{doing} {resource}: {error}")),
    }
}

/// `text` with every occurrence of the key replaced (a service may echo what it was sent).
fn redact(text: &str, key: &ApiKey) -> String {
    let value = key.expose();
    if value.is_empty() {
        text.to_string()
    } else {
        text.replace(value, "<redacted>")
    }
}

#[async_trait::async_trait]
impl KeyProvider for CognitiveServices {
    fn name(&self) -> &'static str {
        "cognitive-services"
    }

    fn slot_from_tag(&self, tag: &str) -> Option<Slot> {
        let tag = tag.trim();
        if tag.eq_ignore_ascii_case("key1") {
            Some(Slot::First)
        } else if tag.eq_ignore_ascii_case("key2") {
            Some(Slot::Second)
        } else {
            None
        }
    }

    fn slot_tag(&self, slot: Slot) -> &'static str {
        match slot {
            Slot::First => "key1",
            Slot::Second => "key2",
        }
    }

    async fn describe(&self, resource: &ArmResourceId) -> Result<ResourceInfo, ProviderError> {
        let account = self
            .arm
            .get(resource, API_VERSION)
            .await
            .map_err(|e| provider_error("reading the account", resource, e))?;
        Ok(resource_info(&account))
    }

    async fn list_keys(&self, resource: &ArmResourceId) -> Result<KeyPair, ProviderError> {
        let doing = "listing the keys of";
        let answer = self
            .arm
            .post(resource, "listKeys", API_VERSION, None)
            .await
            .map_err(|e| provider_error(doing, resource, e))?;
        key_pair(&answer).ok_or_else(|| {
            ProviderError::Permanent(format!(
                "{doing} {resource}: Resource Manager answered without key1 and key2"
            ))
        })
    }

    async fn regenerate(&self, resource: &ArmResourceId, slot: Slot) -> Result<KeyPair, ProviderError> {
        let doing = format!("regenerating {} of", self.slot_tag(slot));
        let body = json!({ "keyName": key_name(slot) });
        let answer = self
            .arm
            .post_once(resource, "regenerateKey", API_VERSION, Some(body))
            .await
            .map_err(|e| provider_error(&doing, resource, e))?;
        // The 2025-06-01 contract answers 200 with both keys; a 202 or an empty body means the
        // keys must be read afterwards.
        match answer {
            ActionAnswer::Done(answer) => {
                if let Some(pair) = key_pair(&answer) {
                    return Ok(pair);
                }
            }
            ActionAnswer::Accepted(accepted) => {
                self.arm.wait(&accepted).await.map_err(|e| match e {
                    OperationError::Ended { .. } => ProviderError::Transient(format!(
                        "{doing} {resource}: the regeneration failed ({e}); the key is unchanged, and retrying is safe"
                    )),
                    OperationError::Unfollowable(m) => ProviderError::Running(format!(
                        "{doing} {resource}: the regeneration was accepted but could not be followed to its end ({m}); it may or may not take effect"
                    )),
                })?;
            }
        }
        // The slot changed (or may have): a listKeys that fails for now leaves the new key
        // unknown, which only a later read can settle.
        self.list_keys(resource).await.map_err(|e| match e {
            ProviderError::Transient(m) => ProviderError::Uncertain(format!(
                "{m}; the regeneration ran, so the new key is read again later"
            )),
            other => other,
        })
    }

    async fn verify(&self, info: &ResourceInfo, key: &ApiKey) -> Verification {
        let Some(check) = &info.check else {
            return Verification::Inconclusive("the resource has no trustworthy data-plane check".into());
        };
        let host = check
            .url
            .host_str()
            .map(str::to_string)
            .unwrap_or_else(|| "the data plane".into());
        let Ok(method) = reqwest::Method::from_bytes(check.method.as_bytes()) else {
            return Verification::Inconclusive(format!("the check's method '{}' is not HTTP", check.method));
        };
        let Ok(mut value) = HeaderValue::from_str(key.expose()) else {
            return Verification::Refused("the key holds characters an HTTP header cannot carry".into());
        };
        value.set_sensitive(true);
        let http = match self.http.get() {
            Ok(http) => http,
            Err(e) => return Verification::Inconclusive(format!("no HTTP client for the check: {e}")),
        };
        let mut request = http
            .request(method.clone(), check.url.clone())
            .header(check.header, value)
            .timeout(CHECK_TIMEOUT);
        if method == reqwest::Method::POST {
            request = request.body(Vec::new());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let cause = redact(&error_chain(&e.without_url()), key);
                return Verification::Inconclusive(format!("the check on {host} got no answer: {cause}"));
            }
        };
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Verification::Accepted;
        }
        let body = response.bytes().await.unwrap_or_default();
        let (code, message) = error_body(status, &body);
        let said = truncate(&redact(&one_line(&format!("{code}: {message}")), key), 300);
        match status {
            401 | 403 => Verification::Refused(format!("{host} answered {status} ({said})")),
            _ => Verification::Inconclusive(format!("{host} answered {status} ({said})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::azure::arm::test_support::{TestAzure, account_id, account_seed, start};

    const NEXT: [&str; 3] = ["next-value-one", "next-value-two", "next-value-three"];

    async fn with_account(
        name: &str,
        kind: &str,
        extra: Value,
    ) -> (TestAzure, CognitiveServices, ArmResourceId) {
        let azure = start().await;
        azure
            .seed(json!({ "accounts": [account_seed(name, kind, extra)] }))
            .await;
        let provider = CognitiveServices::new(azure.arm(), azure.http.clone());
        let id = ArmResourceId::parse(&account_id(name)).unwrap();
        (azure, provider, id)
    }

    /// The emulator's current value of a slot (`key1`/`key2`).
    async fn current(azure: &TestAzure, account: &str, slot: &str) -> String {
        let state = azure.control.account(account).await.unwrap();
        state[slot]["value"].as_str().unwrap().to_string()
    }

    #[test]
    fn slots_read_case_insensitively_and_write_canonically() {
        let provider = CognitiveServices::new(
            ArmClient::new(
                "https://management.azure.com".parse().unwrap(),
                std::sync::Arc::new(crate::azure::arm::test_support::ControlCredential(
                    emulator::ControlClient::new("http://127.0.0.1:9/control"),
                )),
                Default::default(),
            ),
            reqwest::Client::new(),
        );
        assert_eq!(provider.slot_from_tag("key1"), Some(Slot::First));
        assert_eq!(provider.slot_from_tag(" KEY2 "), Some(Slot::Second));
        assert_eq!(provider.slot_from_tag("Key2"), Some(Slot::Second));
        assert_eq!(provider.slot_from_tag("primary"), None);
        assert_eq!(provider.slot_tag(Slot::First), "key1");
        assert_eq!(provider.slot_tag(Slot::Second), "key2");
        assert_eq!((key_name(Slot::First), key_name(Slot::Second)), ("Key1", "Key2"));
        assert_eq!(provider.name(), "cognitive-services");
    }

    #[test]
    fn checks_exist_only_where_documented() {
        let sub =
            json!({"customSubDomainName": "acct", "endpoint": "https://acct.cognitiveservices.azure.com/"});
        let check = |kind: &str, props: &Value| key_check(kind, props).map(|c| (c.url.to_string(), c.header));
        assert_eq!(
            check("FormRecognizer", &sub),
            Some((
                "https://acct.cognitiveservices.azure.com/documentintelligence/info?api-version=2024-11-30"
                    .into(),
                SUBSCRIPTION_KEY
            ))
        );
        assert_eq!(
            check("contentsafety", &sub).unwrap().0,
            "https://acct.cognitiveservices.azure.com/contentsafety/text/blocklists?api-version=2024-09-01"
        );
        assert_eq!(
            check("TextAnalytics", &sub).unwrap().0,
            "https://acct.cognitiveservices.azure.com/language/authoring/analyze-text/projects?api-version=2023-04-01&top=1"
        );
        assert_eq!(
            check("ComputerVision", &sub).unwrap().0,
            "https://acct.cognitiveservices.azure.com/vision/v3.2/models"
        );
        for kind in [
            "SpeechServices",
            "Emotion",
            "CognitiveServices",
            "TextTranslation",
            "Face",
        ] {
            assert_eq!(check(kind, &sub), None, "{kind}");
        }
        // A regional endpoint is no custom subdomain; plain http never carries a key.
        let regional = json!({"endpoint": "https://westus.api.cognitive.microsoft.com/"});
        assert_eq!(check("FormRecognizer", &regional), None);
        let other =
            json!({"customSubDomainName": "acct", "endpoint": "https://westus.api.cognitive.microsoft.com/"});
        assert_eq!(check("FormRecognizer", &other), None);
        let http =
            json!({"customSubDomainName": "acct", "endpoint": "http://acct.cognitiveservices.azure.com/"});
        assert_eq!(check("FormRecognizer", &http), None);
        // OpenAI falls back to properties.endpoint; AIServices needs the OpenAI entry.
        let openai = json!({"endpoint": "https://acct.openai.azure.com"});
        assert_eq!(
            check("openai", &openai),
            Some((
                "https://acct.openai.azure.com/openai/models?api-version=2024-10-21".to_string(),
                API_KEY
            ))
        );
        let services = json!({"endpoint": "https://acct.cognitiveservices.azure.com/"});
        assert_eq!(check("AIServices", &services), None);
    }

    #[tokio::test]
    async fn describe_openai_lists_models_with_api_key() {
        let (_azure, provider, id) = with_account("aoai", "OpenAI", json!({})).await;
        let info = provider.describe(&id).await.unwrap();
        assert_eq!(
            info,
            ResourceInfo {
                kind: Some("OpenAI".into()),
                keys_disabled: false,
                check: Some(KeyCheck {
                    method: "GET",
                    url: "https://aoai.openai.azure.com/openai/models?api-version=2024-10-21"
                        .parse()
                        .unwrap(),
                    header: "api-key",
                }),
            }
        );
    }

    #[tokio::test]
    async fn describe_ai_services_uses_the_openai_endpoint() {
        let (_azure, provider, id) = with_account("foundry", "AIServices", json!({})).await;
        let info = provider.describe(&id).await.unwrap();
        assert_eq!(info.kind.as_deref(), Some("AIServices"));
        let check = info.check.unwrap();
        assert_eq!(
            check.url.as_str(),
            "https://foundry.openai.azure.com/openai/models?api-version=2024-10-21"
        );
        assert_eq!(check.header, "api-key");
    }

    #[tokio::test]
    async fn describe_other_kinds_checks_only_documented_ones() {
        for (kind, expected) in [
            ("Emotion", None),
            ("SpeechServices", None),
            (
                "FormRecognizer",
                Some(
                    "https://acct.cognitiveservices.azure.com/documentintelligence/info?api-version=2024-11-30",
                ),
            ),
        ] {
            let (_azure, provider, id) = with_account("acct", kind, json!({})).await;
            let info = provider.describe(&id).await.unwrap();
            assert_eq!(info.kind.as_deref(), Some(kind));
            assert_eq!(
                info.check.map(|c| c.url.to_string()).as_deref(),
                expected,
                "{kind}"
            );
        }
        // Without a custom subdomain there is no endpoint of the account's own.
        let (_azure, provider, id) =
            with_account("regional", "FormRecognizer", json!({"custom_subdomain": null})).await;
        assert_eq!(provider.describe(&id).await.unwrap().check, None);
    }

    #[tokio::test]
    async fn disable_local_auth_is_reported_and_refused_with_the_fix() {
        let (azure, provider, id) =
            with_account("locked", "OpenAI", json!({"disable_local_auth": true})).await;
        assert!(provider.describe(&id).await.unwrap().keys_disabled);
        let list = provider.list_keys(&id).await.unwrap_err();
        let regenerate = provider.regenerate(&id, Slot::Second).await.unwrap_err();
        for error in [&list, &regenerate] {
            let ProviderError::Permanent(message) = error else {
                panic!("expected Permanent, got {error:?}");
            };
            assert!(
                message.contains("key authentication is disabled on the resource"),
                "{message}"
            );
            assert!(message.contains("disableLocalAuth=false"), "{message}");
            assert!(message.contains(&account_id("locked")), "{message}");
        }
        assert_eq!(current(&azure, "locked", "key2").await, "locked-key2-value");
    }

    #[tokio::test]
    async fn list_keys_reads_both_slots() {
        let (_azure, provider, id) = with_account("aoai", "OpenAI", json!({})).await;
        let keys = provider.list_keys(&id).await.unwrap();
        assert_eq!(keys.first.expose(), "aoai-key1-value");
        assert_eq!(keys.second.expose(), "aoai-key2-value");
        assert_eq!(keys.slot_of(&ApiKey::new("aoai-key2-value")), Some(Slot::Second));
    }

    #[tokio::test]
    async fn regenerate_changes_only_the_slot_asked() {
        let (azure, provider, id) = with_account("aoai", "OpenAI", json!({"next_keys": NEXT})).await;
        let keys = provider.regenerate(&id, Slot::Second).await.unwrap();
        assert_eq!(keys.second.expose(), NEXT[0]);
        assert_eq!(keys.first.expose(), "aoai-key1-value");
        let keys = provider.regenerate(&id, Slot::First).await.unwrap();
        assert_eq!((keys.first.expose(), keys.second.expose()), (NEXT[1], NEXT[0]));
        let state = azure.control.account("aoai").await.unwrap();
        assert_eq!(state["regenerations"], json!([1, 1]));
        let bodies: Vec<_> = azure
            .calls("Accounts_RegenerateKey")
            .await
            .iter()
            .map(|c| (c.status, c.api_version.clone()))
            .collect();
        assert_eq!(
            bodies,
            [(200, Some(API_VERSION.into())), (200, Some(API_VERSION.into()))]
        );
    }

    /// The statuses of the `regenerateKey` calls the emulator received.
    async fn regenerate_statuses(azure: &TestAzure) -> Vec<u16> {
        azure
            .calls("Accounts_RegenerateKey")
            .await
            .iter()
            .map(|c| c.status)
            .collect()
    }

    #[tokio::test]
    async fn a_500_on_regenerate_is_sent_once_and_is_uncertain() {
        // Arrange: Resource Manager fails the call before running it
        let (azure, provider, id) = with_account("aoai", "OpenAI", json!({"next_keys": NEXT})).await;
        azure
            .fault(json!({"operation": "Accounts_RegenerateKey", "status": 500, "count": 3}))
            .await;

        // Act
        let error = provider.regenerate(&id, Slot::First).await.unwrap_err();

        // Assert: not retried by the pipeline; keyflip cannot know it did not run
        assert!(
            matches!(&error, ProviderError::Uncertain(m) if m.contains("may or may not") && m.contains("500")),
            "{error:?}"
        );
        assert_eq!(regenerate_statuses(&azure).await, [500]);
        assert_eq!(current(&azure, "aoai", "key1").await, "aoai-key1-value");
    }

    #[tokio::test]
    async fn a_lost_regenerate_answer_is_uncertain_and_the_key_did_change() {
        // Arrange: the regeneration runs, then its answer is replaced by a 500
        let (azure, provider, id) = with_account("aoai", "OpenAI", json!({"next_keys": NEXT})).await;
        azure
            .fault(json!({"operation": "Accounts_RegenerateKey", "status": 500, "phase": "after"}))
            .await;

        // Act
        let error = provider.regenerate(&id, Slot::First).await.unwrap_err();

        // Assert: sent once, so regenerated once
        assert!(matches!(&error, ProviderError::Uncertain(_)), "{error:?}");
        assert_eq!(regenerate_statuses(&azure).await, [500]);
        assert_eq!(current(&azure, "aoai", "key1").await, NEXT[0]);
        assert_eq!(
            azure.control.account("aoai").await.unwrap()["regenerations"],
            json!([1, 0])
        );
        assert!(!format!("{error} {error:?}").contains(NEXT[0]));
    }

    #[tokio::test]
    async fn a_throttled_or_refused_regenerate_did_not_run_and_is_not_uncertain() {
        let (azure, provider, id) = with_account("aoai", "OpenAI", json!({})).await;
        azure
            .fault(json!({"operation": "Accounts_RegenerateKey", "status": 429, "retry_after_seconds": 1}))
            .await;
        let throttled = provider.regenerate(&id, Slot::First).await.unwrap_err();
        assert!(
            matches!(&throttled, ProviderError::Transient(m) if m.contains("429")),
            "{throttled:?}"
        );
        azure
            .fault(json!({"operation": "Accounts_RegenerateKey", "status": 409, "code": "Conflict"}))
            .await;
        let refused = provider.regenerate(&id, Slot::First).await.unwrap_err();
        assert!(
            matches!(&refused, ProviderError::Permanent(m) if m.contains("Conflict")),
            "{refused:?}"
        );
        assert_eq!(regenerate_statuses(&azure).await, [429, 409]);
        assert_eq!(current(&azure, "aoai", "key1").await, "aoai-key1-value");
    }

    /// `long_running` settings of an account: ends after `seconds`, polled every second.
    fn long_running(seconds: i64, outcome: &str) -> Value {
        json!({"complete_after_seconds": seconds, "retry_after_seconds": 1, "outcome": outcome})
    }

    #[tokio::test]
    async fn a_long_running_regeneration_is_followed_until_it_ends_on_the_emulators_clock() {
        // Arrange: the regeneration takes 30 s of the emulator's (frozen) clock
        let (azure, provider, id) = with_account(
            "aoai",
            "OpenAI",
            json!({"next_keys": NEXT, "long_running": long_running(30, "Succeeded")}),
        )
        .await;
        azure.control.freeze_clock(true).await.unwrap();

        // Act: start it, and once keyflip has seen it running, move the clock past its end
        let regenerating = tokio::spawn({
            let provider = provider.clone();
            let id = id.clone();
            async move { provider.regenerate(&id, Slot::Second).await }
        });
        while azure.calls("OperationStatuses_Get").await.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(current(&azure, "aoai", "key2").await, "aoai-key2-value");
        azure.control.advance_clock(30).await.unwrap();
        let keys = regenerating.await.unwrap().unwrap();

        // Assert: the new key came from listKeys after the operation succeeded
        assert_eq!(keys.second.expose(), NEXT[0]);
        assert_eq!(keys.first.expose(), "aoai-key1-value");
        assert_eq!(regenerate_statuses(&azure).await, [202]);
        let polls = azure.calls("OperationStatuses_Get").await;
        assert!(
            polls.len() >= 2 && polls.iter().all(|c| c.status == 200),
            "{polls:?}"
        );
        assert!(
            azure.calls("OperationResults_Get").await.is_empty(),
            "Azure-AsyncOperation is preferred"
        );
        let list = azure.calls("Accounts_ListKeys").await;
        assert_eq!(list.len(), 1);
        assert!(list[0].seq > polls.last().unwrap().seq);
    }

    #[tokio::test]
    async fn a_failed_long_running_regeneration_says_the_key_is_unchanged() {
        let (azure, provider, id) = with_account(
            "aoai",
            "OpenAI",
            json!({"next_keys": NEXT, "long_running": long_running(0, "Failed")}),
        )
        .await;
        let error = provider.regenerate(&id, Slot::Second).await.unwrap_err();
        let ProviderError::Transient(message) = &error else {
            panic!("expected Transient, got {error:?}");
        };
        assert!(
            message.contains("the regeneration failed")
                && message.contains("KeyRegenerationFailed")
                && message.contains("the key is unchanged")
                && message.contains("retrying is safe"),
            "{message}"
        );
        assert_eq!(current(&azure, "aoai", "key2").await, "aoai-key2-value");
        assert_eq!(regenerate_statuses(&azure).await, [202]);
        assert!(azure.calls("Accounts_ListKeys").await.is_empty());
    }

    #[tokio::test]
    async fn a_polling_url_on_another_host_or_over_http_is_never_called() {
        for base in ["https://attacker.example.net", "http://management.azure.com"] {
            // Arrange: a resource provider whose 202 points elsewhere
            let (azure, provider, id) = with_account(
                "aoai",
                "OpenAI",
                json!({"long_running": {"complete_after_seconds": 0, "poll_base": base}}),
            )
            .await;

            // Act
            let error = provider.regenerate(&id, Slot::Second).await.unwrap_err();

            // Assert: refused before any poll; the regeneration may still happen
            let ProviderError::Running(message) = &error else {
                panic!("{base}: expected Running, got {error:?}");
            };
            assert!(
                message.contains("Azure-AsyncOperation")
                    && message.contains("did not call")
                    && message.contains("https://management.azure.com"),
                "{message}"
            );
            assert!(azure.calls("OperationStatuses_Get").await.is_empty());
            assert!(azure.calls("OperationResults_Get").await.is_empty());
            assert_eq!(regenerate_statuses(&azure).await, [202]);
        }
    }

    /// Resource Manager answering `regenerateKey` with 202 and no body (the 2025-06-01 example's
    /// variant, which the emulator does not serve), and `listKeys` with the keys.
    #[derive(Debug, Default)]
    struct AcceptingArm {
        seen: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl azure_core::http::HttpClient for AcceptingArm {
        async fn execute_request(
            &self,
            request: &azure_core::http::Request,
        ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
            use azure_core::http::StatusCode;
            let path = request.url().path().to_string();
            self.seen.lock().unwrap().push(path.clone());
            let (status, body): (StatusCode, &[u8]) = if path.ends_with("/regenerateKey") {
                (StatusCode::Accepted, b"")
            } else {
                (StatusCode::Ok, br#"{"key1":"listed-one","key2":"listed-two"}"#)
            };
            Ok(azure_core::http::AsyncRawResponse::from_bytes(
                status,
                azure_core::http::headers::Headers::new(),
                body.to_vec(),
            ))
        }
    }

    #[derive(Debug)]
    struct StaticCredential;

    #[async_trait::async_trait]
    impl azure_core::credentials::TokenCredential for StaticCredential {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Ok(azure_core::credentials::AccessToken::new(
                "token",
                azure_core::time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(3600),
            ))
        }
    }

    #[tokio::test]
    async fn an_accepted_regeneration_reads_the_keys_with_list_keys() {
        let arm_http = std::sync::Arc::new(AcceptingArm::default());
        let options = azure_core::http::ClientOptions {
            transport: Some(azure_core::http::Transport::new(arm_http.clone())),
            ..Default::default()
        };
        let arm = ArmClient::new(
            "https://management.azure.com".parse().unwrap(),
            std::sync::Arc::new(StaticCredential),
            options,
        );
        let provider = CognitiveServices::new(arm, reqwest::Client::new());
        let id = ArmResourceId::parse(&account_id("aoai")).unwrap();
        let keys = provider.regenerate(&id, Slot::Second).await.unwrap();
        assert_eq!(
            (keys.first.expose(), keys.second.expose()),
            ("listed-one", "listed-two")
        );
        let seen = arm_http.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                format!("{}/regenerateKey", account_id("aoai")),
                format!("{}/listKeys", account_id("aoai"))
            ]
        );
    }

    #[tokio::test]
    async fn arm_500_then_success_is_retried() {
        let (azure, provider, id) = with_account("aoai", "OpenAI", json!({})).await;
        azure
            .fault(json!({"operation": "Accounts_ListKeys", "status": 500}))
            .await;
        let keys = provider.list_keys(&id).await.unwrap();
        assert_eq!(keys.first.expose(), "aoai-key1-value");
        assert_eq!(azure.calls("Accounts_ListKeys").await.len(), 2);
    }

    #[tokio::test]
    async fn arm_failures_classify() {
        let (azure, provider, id) = with_account("aoai", "OpenAI", json!({})).await;
        let missing = ArmResourceId::parse(&account_id("gone")).unwrap();
        assert!(
            matches!(provider.describe(&missing).await, Err(ProviderError::NotFound(m)) if m.contains("ProviderAddress"))
        );
        azure
            .fault(json!({"operation": "Accounts_ListKeys", "status": 503, "count": 3}))
            .await;
        assert!(matches!(
            provider.list_keys(&id).await,
            Err(ProviderError::Transient(_))
        ));
        let (_azure, provider, id) =
            with_account("rbac", "OpenAI", json!({"allowed_principals": ["someone-else"]})).await;
        let error = provider.regenerate(&id, Slot::First).await.unwrap_err();
        assert!(
            matches!(&error, ProviderError::Permanent(m) if m.contains("AuthorizationFailed") && m.contains("Cognitive Services Contributor")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn verify_accepts_current_keys_and_refuses_a_regenerated_one() {
        let (_azure, provider, id) = with_account("aoai", "OpenAI", json!({"next_keys": NEXT})).await;
        let info = provider.describe(&id).await.unwrap();
        let before = provider.list_keys(&id).await.unwrap();
        assert_eq!(
            provider.verify(&info, &before.second).await,
            Verification::Accepted
        );
        let after = provider.regenerate(&id, Slot::Second).await.unwrap();
        assert_eq!(
            provider.verify(&info, &after.second).await,
            Verification::Accepted
        );
        assert_eq!(provider.verify(&info, &after.first).await, Verification::Accepted);
        let refused = provider.verify(&info, &before.second).await;
        let Verification::Refused(reason) = &refused else {
            panic!("expected Refused, got {refused:?}");
        };
        assert!(
            reason.contains("401") && reason.contains("aoai.openai.azure.com"),
            "{reason}"
        );
        assert!(!reason.contains("aoai-key2-value"), "{reason}");
    }

    #[tokio::test]
    async fn verify_on_ai_services_uses_its_openai_host() {
        let (azure, provider, id) = with_account("foundry", "AIServices", json!({})).await;
        let info = provider.describe(&id).await.unwrap();
        let keys = provider.list_keys(&id).await.unwrap();
        assert_eq!(provider.verify(&info, &keys.first).await, Verification::Accepted);
        let calls = azure.calls("Models_List").await;
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].key_slot.as_deref(), Some("key1"));
    }

    #[tokio::test]
    async fn a_new_key_is_refused_until_its_activation_delay_passes() {
        let (azure, provider, id) = with_account(
            "slow",
            "OpenAI",
            json!({"next_keys": NEXT, "key_activation_delay_seconds": 90}),
        )
        .await;
        azure.control.freeze_clock(true).await.unwrap();
        let info = provider.describe(&id).await.unwrap();
        let keys = provider.regenerate(&id, Slot::Second).await.unwrap();
        assert!(matches!(
            provider.verify(&info, &keys.second).await,
            Verification::Refused(_)
        ));
        assert_eq!(provider.verify(&info, &keys.first).await, Verification::Accepted);
        azure.control.advance_clock(89).await.unwrap();
        assert!(matches!(
            provider.verify(&info, &keys.second).await,
            Verification::Refused(_)
        ));
        azure.control.advance_clock(1).await.unwrap();
        assert_eq!(provider.verify(&info, &keys.second).await, Verification::Accepted);
    }

    #[tokio::test]
    async fn verify_is_inconclusive_when_the_answer_says_nothing_about_the_key() {
        let (azure, provider, id) = with_account("aoai", "OpenAI", json!({})).await;
        let info = provider.describe(&id).await.unwrap();
        let key = provider.list_keys(&id).await.unwrap().first;
        azure
            .fault(json!({"operation": "Models_List", "status": 503}))
            .await;
        assert!(
            matches!(provider.verify(&info, &key).await, Verification::Inconclusive(r) if r.contains("503"))
        );
        azure
            .fault(json!({"operation": "Models_List", "status": 429}))
            .await;
        assert!(matches!(
            provider.verify(&info, &key).await,
            Verification::Inconclusive(_)
        ));
        // One request each: the engine owns the retries.
        assert_eq!(azure.calls("Models_List").await.len(), 2);
        let unreachable = ResourceInfo {
            check: Some(KeyCheck {
                method: "GET",
                url: "https://acct.openai.example.invalid/openai/models"
                    .parse()
                    .unwrap(),
                header: API_KEY,
            }),
            ..info.clone()
        };
        assert!(
            matches!(provider.verify(&unreachable, &key).await, Verification::Inconclusive(r) if r.contains("no answer"))
        );
        let none = ResourceInfo { check: None, ..info };
        assert!(matches!(
            provider.verify(&none, &key).await,
            Verification::Inconclusive(_)
        ));
    }

    #[tokio::test]
    async fn no_key_value_reaches_an_error_a_reason_or_debug() {
        let (azure, provider, id) = with_account("aoai", "OpenAI", json!({"next_keys": NEXT})).await;
        let info = provider.describe(&id).await.unwrap();
        let old = provider.list_keys(&id).await.unwrap();
        let new = provider.regenerate(&id, Slot::Second).await.unwrap();
        // A service that echoes the key it was sent.
        azure
            .fault(json!({"operation": "Models_List", "status": 401, "message": format!("bad key {}", new.first.expose())}))
            .await;
        let echoed = provider.verify(&info, &new.first).await;
        let refused = provider.verify(&info, &old.second).await;
        azure
            .control
            .patch_account("aoai", &json!({"disable_local_auth": true}))
            .await
            .unwrap();
        let disabled = provider.verify(&info, &new.first).await;
        let list_error = provider.list_keys(&id).await.unwrap_err();
        let regenerate_error = provider.regenerate(&id, Slot::First).await.unwrap_err();
        let invalid = provider.verify(&info, &ApiKey::new("bad\nkey-value")).await;
        assert!(
            matches!(&echoed, Verification::Refused(r) if r.contains("<redacted>")),
            "{echoed:?}"
        );
        assert!(
            matches!(&disabled, Verification::Refused(r) if r.contains("403")),
            "{disabled:?}"
        );
        let printed = format!(
            "{echoed:?} {refused:?} {disabled:?} {invalid:?} {list_error} {list_error:?} {regenerate_error} {regenerate_error:?} {old:?} {new:?} {provider:?} {info:?}"
        );
        for value in [
            "aoai-key1-value",
            "aoai-key2-value",
            NEXT[0],
            old.first.expose(),
            new.first.expose(),
            "key-value",
        ] {
            assert!(!printed.contains(value), "{value} printed in {printed}");
        }
    }
}
