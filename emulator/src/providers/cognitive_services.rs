//! Azure AI services accounts (`Microsoft.CognitiveServices/accounts`, every kind).
//!
//! Resource Manager: `Accounts_List` and `Accounts_ListByResourceGroup` (the Accounts_Get
//! body of each account the caller may read, paged), `Accounts_Get`, `Accounts_ListKeys`, `Accounts_RegenerateKey`
//! (`{"keyName":"Key1"|"Key2"}`, answered synchronously with both keys, as the 2025-06-01
//! contract says). `disableLocalAuth=true` refuses both key operations with 400. An account
//! whose `long_running` setting is on answers `regenerateKey` with 202, `Azure-AsyncOperation`,
//! `Location` and `Retry-After` instead (the variant of the 2025-06-01 example), and the slot
//! changes only when the operation ends on the emulator's clock (see [`crate::operations`]).
//!
//! Data plane, on the account's custom subdomain: `GET /openai/models?api-version=…` and
//! `GET /openai/v1/models` for the `OpenAI` and `AIServices` kinds (`<sub>.openai.azure.com`,
//! `<sub>.cognitiveservices.azure.com`, `<sub>.services.ai.azure.com`), and
//! `POST /sts/v1.0/issueToken` on `<sub>.cognitiveservices.azure.com` for every kind. A key is
//! accepted in `api-key` or `Ocp-Apim-Subscription-Key` only while it is the slot's current
//! value and the emulator's clock has reached the moment it became valid: a regenerated key dies
//! at once, and a new one can be set to start working after a delay.

use std::collections::{BTreeMap, VecDeque};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::arm::{ArmCall, ResourcePath, error};
use crate::calls::{CallStart, Service};
use crate::error::{AzureError, json_response};
use crate::operations::{LongRunning, Operation, OperationAction, OperationStatus};
use crate::pipeline::Exchange;
use crate::providers::ListScope;
use crate::request::{Query, segments};
use crate::token::wall_now;
use crate::world::{Ctx, World, random_alphanumeric, random_guid};

/// ARM api-versions served for accounts.
pub const ARM_API_VERSIONS: &[&str] = &[
    "2017-04-18",
    "2021-04-30",
    "2021-10-01",
    "2022-03-01",
    "2022-10-01",
    "2022-12-01",
    "2023-05-01",
    "2023-10-01-preview",
    "2024-04-01-preview",
    "2024-06-01-preview",
    "2024-10-01",
    "2025-04-01-preview",
    "2025-06-01",
    "2025-07-01-preview",
    "2025-09-01",
    "2025-10-01-preview",
    "2025-12-01",
    "2026-03-01",
    "2026-05-01",
];

/// Data-plane api-versions served for `GET /openai/models`.
pub const OPENAI_API_VERSIONS: &[&str] = &[
    "2022-12-01",
    "2023-05-15",
    "2024-02-01",
    "2024-06-01",
    "2024-10-21",
    "2024-12-01-preview",
    "2025-01-01-preview",
    "2025-03-01-preview",
    "2025-04-01-preview",
];

/// Length of a generated key (the current AI services key format).
const KEY_LENGTH: usize = 84;

/// One key slot: its value and the emulator time from which it is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySlot {
    pub value: String,
    pub valid_from: i64,
}

/// An account as seeded through the control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSeed {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    /// `OpenAI`, `AIServices`, `TextAnalytics`, …
    pub kind: String,
    #[serde(default = "default_location")]
    pub location: String,
    #[serde(default = "default_sku")]
    pub sku: String,
    /// Custom subdomain serving the data plane (default: the account name, lower-cased).
    /// `null` gives a regional endpoint and no data plane.
    #[serde(default = "some_empty")]
    pub custom_subdomain: Option<String>,
    /// `properties.disableLocalAuth` (`null` omits the property).
    #[serde(default = "some_false")]
    pub disable_local_auth: Option<bool>,
    /// Overrides `properties.endpoint`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub etag: Option<String>,
    /// Object ids allowed to call ARM on the account; `None` allows every valid token.
    #[serde(default)]
    pub allowed_principals: Option<Vec<String>>,
    /// Initial keys (random when absent).
    #[serde(default)]
    pub key1: Option<String>,
    #[serde(default)]
    pub key2: Option<String>,
    /// Seconds after a regeneration before the new key is accepted by the data plane.
    #[serde(default)]
    pub key_activation_delay_seconds: i64,
    /// Values the next regenerations will produce, in order (random once exhausted).
    #[serde(default)]
    pub next_keys: Vec<String>,
    /// Makes `regenerateKey` long-running (202); `null` (the default) answers it at once.
    #[serde(default)]
    pub long_running: Option<LongRunning>,
}

fn default_location() -> String {
    "eastus".to_string()
}
fn default_sku() -> String {
    "S0".to_string()
}
fn some_empty() -> Option<String> {
    Some(String::new())
}
fn some_false() -> Option<bool> {
    Some(false)
}

/// An emulated account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub kind: String,
    pub location: String,
    pub sku: String,
    pub custom_subdomain: Option<String>,
    pub disable_local_auth: Option<bool>,
    pub endpoint: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub etag: Option<String>,
    pub allowed_principals: Option<Vec<String>>,
    pub key1: KeySlot,
    pub key2: KeySlot,
    pub key_activation_delay_seconds: i64,
    pub next_keys: VecDeque<String>,
    /// Regenerations so far, per slot.
    pub regenerations: [u32; 2],
    pub long_running: Option<LongRunning>,
}

/// The changes `PATCH /control/accounts/{name}` accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    pub disable_local_auth: Option<bool>,
    pub key_activation_delay_seconds: Option<i64>,
    pub next_keys: Option<Vec<String>>,
    pub allowed_principals: Option<Option<Vec<String>>>,
    /// `null` turns long-running regenerations off again.
    #[serde(default, deserialize_with = "crate::seed::present")]
    pub long_running: Option<Option<LongRunning>>,
}

impl Account {
    pub fn from_seed(seed: AccountSeed, now: i64) -> Self {
        let subdomain = match seed.custom_subdomain {
            Some(s) if s.is_empty() => Some(seed.name.to_ascii_lowercase()),
            other => other,
        };
        let key = |k: Option<String>| KeySlot {
            value: k.unwrap_or_else(|| random_alphanumeric(KEY_LENGTH)),
            valid_from: now,
        };
        Self {
            subscription_id: seed.subscription_id,
            resource_group: seed.resource_group,
            name: seed.name,
            kind: seed.kind,
            location: seed.location,
            sku: seed.sku,
            custom_subdomain: subdomain,
            disable_local_auth: seed.disable_local_auth,
            endpoint: seed.endpoint,
            tags: seed.tags,
            etag: seed.etag,
            allowed_principals: seed.allowed_principals,
            key1: key(seed.key1),
            key2: key(seed.key2),
            key_activation_delay_seconds: seed.key_activation_delay_seconds,
            next_keys: seed.next_keys.into(),
            regenerations: [0, 0],
            long_running: seed.long_running,
        }
    }

    pub fn apply(&mut self, patch: AccountPatch) {
        if let Some(v) = patch.disable_local_auth {
            self.disable_local_auth = Some(v);
        }
        if let Some(v) = patch.key_activation_delay_seconds {
            self.key_activation_delay_seconds = v;
        }
        if let Some(v) = patch.next_keys {
            self.next_keys = v.into();
        }
        if let Some(v) = patch.allowed_principals {
            self.allowed_principals = v;
        }
        if let Some(v) = patch.long_running {
            self.long_running = v;
        }
    }

    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.CognitiveServices/accounts/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }

    fn local_auth_disabled(&self) -> bool {
        self.disable_local_auth == Some(true)
    }

    fn serves_openai(&self) -> bool {
        self.kind.eq_ignore_ascii_case("OpenAI") || self.kind.eq_ignore_ascii_case("AIServices")
    }

    /// `properties.endpoint`: the kind's host on the custom subdomain, else the regional one.
    pub fn endpoint(&self) -> String {
        if let Some(endpoint) = &self.endpoint {
            return endpoint.clone();
        }
        match &self.custom_subdomain {
            Some(sub) if self.kind.eq_ignore_ascii_case("OpenAI") => {
                format!("https://{sub}.openai.azure.com/")
            }
            Some(sub) => format!("https://{sub}.cognitiveservices.azure.com/"),
            None => format!("https://{}.api.cognitive.microsoft.com/", self.location),
        }
    }

    /// `properties.endpoints`, for accounts with a custom subdomain.
    pub fn endpoints(&self) -> Option<BTreeMap<String, String>> {
        let sub = self.custom_subdomain.as_ref()?;
        let openai = format!("https://{sub}.openai.azure.com/");
        let cognitive = format!("https://{sub}.cognitiveservices.azure.com/");
        let services = format!("https://{sub}.services.ai.azure.com/");
        let mut map = BTreeMap::new();
        if self.kind.eq_ignore_ascii_case("OpenAI") {
            map.insert("OpenAI Language Model Instance API".into(), openai.clone());
            map.insert("OpenAI Dall-E API".into(), openai.clone());
            map.insert("OpenAI Realtime API".into(), openai);
        } else if self.kind.eq_ignore_ascii_case("AIServices") {
            map.insert("OpenAI Language Model Instance API".into(), openai);
            map.insert("AI Foundry API".into(), services.clone());
            map.insert("Azure AI Model Inference API".into(), services);
            map.insert("Speech Services Speech to Text".into(), cognitive.clone());
            map.insert("Token Service API".into(), format!("{cognitive}sts/v1.0/"));
        } else {
            map.insert(format!("{} API", self.kind), cognitive);
        }
        Some(map)
    }

    /// The `Account` resource body.
    pub fn resource(&self) -> Value {
        let mut properties = json!({ "endpoint": self.endpoint(), "provisioningState": "Succeeded" });
        if let Some(endpoints) = self.endpoints() {
            properties["endpoints"] = json!(endpoints);
        }
        if let Some(sub) = &self.custom_subdomain {
            properties["customSubDomainName"] = json!(sub);
        }
        if let Some(disabled) = self.disable_local_auth {
            properties["disableLocalAuth"] = json!(disabled);
        }
        let mut body = json!({
            "id": self.id(),
            "name": self.name,
            "type": "Microsoft.CognitiveServices/accounts",
            "kind": self.kind,
            "location": self.location,
            "sku": { "name": self.sku },
            "properties": properties,
        });
        if let Some(etag) = &self.etag {
            body["etag"] = json!(etag);
        }
        if let Some(tags) = &self.tags {
            body["tags"] = json!(tags);
        }
        body
    }

    /// `ApiKeys`.
    pub fn keys(&self) -> Value {
        json!({ "key1": self.key1.value, "key2": self.key2.value })
    }

    /// Slot `slot` (0 = key1, else key2).
    pub fn key(&self, slot: usize) -> &KeySlot {
        match slot {
            0 => &self.key1,
            _ => &self.key2,
        }
    }

    /// Replaces a slot's key; the new one is accepted after the activation delay. Called
    /// through [`World::regenerate_key`], which also counts active regenerations.
    pub fn regenerate(&mut self, slot: usize, now: i64) {
        let value = self
            .next_keys
            .pop_front()
            .unwrap_or_else(|| random_alphanumeric(KEY_LENGTH));
        let key = KeySlot {
            value,
            valid_from: now + self.key_activation_delay_seconds,
        };
        match slot {
            0 => self.key1 = key,
            _ => self.key2 = key,
        }
        self.regenerations[slot.min(1)] += 1;
    }

    /// The slot (`key1`/`key2`) a presented key authenticates with at `now`.
    pub fn slot_accepting(&self, presented: &str, now: i64) -> Option<&'static str> {
        let matches = |slot: &KeySlot| {
            constant_time_eq(slot.value.as_bytes(), presented.as_bytes()) && now >= slot.valid_from
        };
        if matches(&self.key1) {
            Some("key1")
        } else if matches(&self.key2) {
            Some("key2")
        } else {
            None
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The ARM operation for a method and action.
pub fn arm_operation(method: &Method, action: Option<&str>) -> Option<&'static str> {
    match (method, action.map(str::to_ascii_lowercase).as_deref()) {
        (&Method::GET, None) => Some("Accounts_Get"),
        (&Method::POST, Some("listkeys")) => Some("Accounts_ListKeys"),
        (&Method::POST, Some("regeneratekey")) => Some("Accounts_RegenerateKey"),
        _ => None,
    }
}

fn action_name(operation: &str) -> &'static str {
    match operation {
        "Accounts_ListKeys" => "listKeys/action",
        "Accounts_RegenerateKey" => "regenerateKey/action",
        _ => "read",
    }
}

/// Whether `caller` may read the account (the same rule as [`authorize`]).
fn readable_by(account: &Account, caller: &str) -> bool {
    account
        .allowed_principals
        .as_ref()
        .is_none_or(|allowed| allowed.iter().any(|p| p.eq_ignore_ascii_case(caller)))
}

/// `Accounts_List` / `Accounts_ListByResourceGroup`: the Accounts_Get body of every account in
/// the scope, in seeding order, leaving out those the caller may not read (Resource Manager
/// filters a list by the caller's read permission rather than refusing it).
pub fn list(world: &World, scope: &ListScope, caller: &str) -> Vec<Value> {
    world
        .accounts
        .iter()
        .filter(|a| scope.contains(&a.subscription_id, &a.resource_group))
        .filter(|a| readable_by(a, caller))
        .map(Account::resource)
        .collect()
}

/// RBAC on the account: refuses callers outside `allowed_principals` with `AuthorizationFailed`.
pub fn authorize(
    ctx: &Ctx,
    resource: &ResourcePath,
    caller: &str,
    operation: &str,
) -> Result<(), AzureError> {
    let mut world = ctx.world();
    let Some(account) = world.account_by_id(&resource.resource_id()) else {
        return Ok(());
    };
    match &account.allowed_principals {
        Some(allowed) if !allowed.iter().any(|p| p.eq_ignore_ascii_case(caller)) => Err(error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            format!(
                "The client '{caller}' with object id '{caller}' does not have authorization to perform action 'Microsoft.CognitiveServices/accounts/{}' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                action_name(operation),
                account.id()
            ),
        )),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegenerateKeyParameters {
    key_name: String,
}

/// What an operation answers: a JSON body, or an accepted long-running operation.
enum Answer {
    Done(Value),
    Accepted(Operation),
}

/// Runs an ARM operation on an account.
pub fn execute(ctx: &Ctx, resource: &ResourcePath, operation: &str, call: &ArmCall, body: &[u8]) -> Response {
    let mut world = ctx.world();
    match run(&mut world, resource, operation, call, body) {
        Ok(Answer::Done(value)) => json_response(StatusCode::OK, &value),
        Ok(Answer::Accepted(operation)) => {
            let response = accepted(&operation);
            world.start_operation(operation);
            response
        }
        Err(e) => e.into_response(),
    }
}

/// 202 with the polling headers and no body.
fn accepted(operation: &Operation) -> Response {
    (
        StatusCode::ACCEPTED,
        [
            ("azure-asyncoperation", operation.status_url()),
            (header::LOCATION.as_str(), operation.result_url()),
            (
                header::RETRY_AFTER.as_str(),
                operation.retry_after_seconds.to_string(),
            ),
        ],
    )
        .into_response()
}

/// What the `Location` URL of an account's operation answers: 202 while it runs, 200 with the
/// keys once it succeeded, 400 with its error once it failed or was canceled.
pub fn operation_result(world: &World, operation: &Operation) -> Response {
    if !operation.ended() {
        return accepted(operation);
    }
    if let Some((code, message)) = operation.error() {
        return error(StatusCode::BAD_REQUEST, code, message).into_response();
    }
    match world
        .accounts
        .iter()
        .find(|a| a.id().eq_ignore_ascii_case(&operation.resource_id))
    {
        Some(account) => json_response(StatusCode::OK, &account.keys()),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

fn run(
    world: &mut World,
    resource: &ResourcePath,
    operation: &str,
    call: &ArmCall,
    body: &[u8],
) -> Result<Answer, AzureError> {
    let now = world.now();
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.CognitiveServices/accounts/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                resource.name, resource.resource_group
            ),
        )
    };
    let account = world
        .account_by_id(&resource.resource_id())
        .ok_or_else(not_found)?;
    match operation {
        "Accounts_Get" => Ok(Answer::Done(account.resource())),
        "Accounts_ListKeys" => {
            if account.local_auth_disabled() {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Failed to list key. disableLocalAuth is set to be true",
                ));
            }
            Ok(Answer::Done(account.keys()))
        }
        "Accounts_RegenerateKey" => {
            let slot = parse_key_name(body)?;
            if account.local_auth_disabled() {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Failed to regenerate key. disableLocalAuth is set to be true",
                ));
            }
            let id = account.id();
            if let Some(long_running) = account.long_running.clone() {
                return Ok(Answer::Accepted(Operation {
                    id: random_guid(),
                    subscription_id: account.subscription_id.clone(),
                    namespace: "Microsoft.CognitiveServices".into(),
                    location: account.location.clone(),
                    resource_id: id,
                    action: OperationAction::RegenerateKey { slot },
                    api_version: call.api_version.clone(),
                    caller: call.caller.clone(),
                    start_time: now,
                    end_time: now + long_running.complete_after_seconds.max(0),
                    outcome: long_running.outcome,
                    status: OperationStatus::InProgress,
                    retry_after_seconds: long_running.retry_after_seconds,
                    poll_base: long_running
                        .poll_base
                        .unwrap_or_else(|| format!("https://{}", crate::arm::HOST)),
                }));
            }
            world.regenerate_key(&id, slot, now, &call.caller, None);
            let account = world.account_by_id(&id).ok_or_else(not_found)?;
            Ok(Answer::Done(account.keys()))
        }
        other => Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("Unsupported operation {other}."),
        )),
    }
}

fn parse_key_name(body: &[u8]) -> Result<usize, AzureError> {
    let invalid = |detail: String| {
        error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: {detail}"),
        )
    };
    if body.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            // No double quotes: azure_core reads `error.code` and `error.message` as borrowed
            // `&str`s, so an escaped character in the message loses the code (it reports "400").
            "The request content is required: an object with 'keyName' set to 'Key1' or 'Key2'.",
        ));
    }
    let input: RegenerateKeyParameters = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    match input.key_name.as_str() {
        "Key1" => Ok(0),
        "Key2" => Ok(1),
        other => Err(invalid(format!(
            "keyName '{other}' is not one of 'Key1', 'Key2'."
        ))),
    }
}

/// The data-plane host families of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPlaneHost {
    /// `<sub>.openai.azure.com`
    OpenAi,
    /// `<sub>.cognitiveservices.azure.com`
    CognitiveServices,
    /// `<sub>.services.ai.azure.com`
    AiServices,
}

impl DataPlaneHost {
    /// Splits a host name into its family and the account subdomain.
    pub fn classify(host: &str) -> Option<(Self, String)> {
        let families = [
            (".openai.azure.com", Self::OpenAi),
            (".cognitiveservices.azure.com", Self::CognitiveServices),
            (".services.ai.azure.com", Self::AiServices),
        ];
        families.iter().find_map(|(suffix, family)| {
            let sub = host.strip_suffix(suffix)?;
            (!sub.is_empty() && !sub.contains('.')).then(|| (*family, sub.to_string()))
        })
    }
}

fn data_plane_error(status: StatusCode, message: &str) -> Response {
    AzureError::new(status, status.as_u16().to_string(), message).into_response()
}

fn presented_key(headers: &HeaderMap, allow_bearer: bool) -> Option<String> {
    let header_value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    header_value("api-key")
        .or_else(|| header_value("ocp-apim-subscription-key"))
        .or_else(|| {
            let auth = header_value(header::AUTHORIZATION.as_str())?;
            let (scheme, key) = auth.split_once(' ')?;
            (allow_bearer && scheme.eq_ignore_ascii_case("bearer")).then(|| key.trim().to_string())
        })
}

/// Serves one data-plane request to the account on `subdomain`.
pub async fn handle_data_plane(
    ctx: Ctx,
    family: DataPlaneHost,
    subdomain: String,
    req: Request<Body>,
) -> Response {
    let (parts, _body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let segs = segments(&path);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (operation, is_v1) = match (&parts.method, segs.as_slice()) {
        (&Method::GET, ["openai", "models"]) => (Some("Models_List"), false),
        (&Method::GET, ["openai", "v1", "models"]) => (Some("Models_List"), true),
        (&Method::POST, ["sts", "v1.0", t]) if t.eq_ignore_ascii_case("issueToken") => {
            (Some("IssueToken"), false)
        }
        _ => (None, false),
    };
    let mut start = CallStart::new(
        Service::Dataplane,
        operation.unwrap_or("Unknown"),
        &subdomain,
        parts.method.as_str(),
        &path,
    );
    start.api_version = query.get("api-version").map(str::to_string);
    let mut exchange = Exchange::new(ctx.clone(), start, vec![subdomain.clone()]);

    let account = ctx.world().account_by_subdomain(&subdomain).cloned();
    let Some(account) = account else {
        return exchange.reject(data_plane_error(StatusCode::NOT_FOUND, "Resource not found"));
    };
    let served = match operation {
        Some("Models_List") => {
            (account.serves_openai() && family != DataPlaneHost::AiServices)
                || account.kind.eq_ignore_ascii_case("AIServices")
        }
        Some("IssueToken") => family == DataPlaneHost::CognitiveServices,
        _ => false,
    };
    let Some(operation) = operation.filter(|_| served) else {
        return exchange.reject(data_plane_error(StatusCode::NOT_FOUND, "Resource not found"));
    };
    let Some(presented) = presented_key(&parts.headers, is_v1) else {
        return exchange.reject(data_plane_error(
            StatusCode::UNAUTHORIZED,
            "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
        ));
    };
    if account.local_auth_disabled() {
        return exchange.reject(
            AzureError::new(
                StatusCode::FORBIDDEN,
                "AuthenticationTypeDisabled",
                "Key based authentication is disabled for this resource.",
            )
            .into_response(),
        );
    }
    let now = ctx.world().now();
    let Some(slot) = account.slot_accepting(&presented, now) else {
        return exchange.reject(data_plane_error(
            StatusCode::UNAUTHORIZED,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        ));
    };
    exchange.set_key_slot(slot);
    if operation == "Models_List" && !is_v1 {
        match query.get("api-version") {
            Some(v) if OPENAI_API_VERSIONS.contains(&v) => {}
            Some(_) => {
                return exchange.reject(data_plane_error(
                    StatusCode::NOT_FOUND,
                    "API version not supported",
                ));
            }
            None => return exchange.reject(data_plane_error(StatusCode::NOT_FOUND, "Resource not found")),
        }
    }
    if let Err(response) = exchange.before().await {
        return response;
    }
    let response = match operation {
        "IssueToken" => {
            let (token, _) = ctx.tokens.issue(
                "https://cognitiveservices.azure.com",
                &account.id(),
                &account.name,
                wall_now(),
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                token,
            )
                .into_response()
        }
        _ => json_response(StatusCode::OK, &models_list()),
    };
    exchange.finish(response)
}

fn models_list() -> Value {
    let model = |id: &str, chat: bool, embeddings: bool| {
        json!({
            "id": id,
            "status": "succeeded",
            "created_at": 1_723_075_200,
            "capabilities": {
                "fine_tune": false, "inference": true, "completion": false,
                "chat_completion": chat, "embeddings": embeddings
            },
            "lifecycle_status": "generally-available",
            "deprecation": { "inference": 1_782_864_000 },
            "object": "model"
        })
    };
    json!({
        "data": [
            model("gpt-4o-2024-08-06", true, false),
            model("gpt-4o-mini-2024-07-18", true, false),
            model("text-embedding-3-small", false, true)
        ],
        "object": "list"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(delay: i64) -> Account {
        let seed: AccountSeed = serde_json::from_value(json!({
            "subscription_id": "s", "resource_group": "rg", "name": "Acct", "kind": "OpenAI",
            "key1": "k1", "key2": "k2", "key_activation_delay_seconds": delay, "next_keys": ["n2"]
        }))
        .unwrap();
        Account::from_seed(seed, 100)
    }

    #[test]
    fn a_regenerated_key_dies_at_once_and_the_new_one_waits_for_its_delay() {
        let mut acct = account(90);
        assert_eq!(acct.slot_accepting("k2", 100), Some("key2"));
        acct.regenerate(1, 100);
        assert_eq!(acct.slot_accepting("k2", 100), None);
        assert_eq!(acct.slot_accepting("n2", 189), None);
        assert_eq!(acct.slot_accepting("n2", 190), Some("key2"));
        assert_eq!(acct.slot_accepting("k1", 190), Some("key1"));
    }

    #[test]
    fn endpoints_follow_the_kind_and_subdomain() {
        let acct = account(0);
        assert_eq!(acct.endpoint(), "https://acct.openai.azure.com/");
        assert_eq!(
            DataPlaneHost::classify("acct.openai.azure.com"),
            Some((DataPlaneHost::OpenAi, "acct".into()))
        );
        assert_eq!(DataPlaneHost::classify("a.b.openai.azure.com"), None);
    }

    #[test]
    fn key_names_are_the_closed_enum() {
        assert_eq!(parse_key_name(br#"{"keyName":"Key2"}"#).unwrap(), 1);
        assert!(parse_key_name(br#"{"keyName":"key2"}"#).is_err());
        assert!(parse_key_name(b"").is_err());
    }
}
