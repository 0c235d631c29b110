//! The Key Vault secrets data plane (`https://<vault>.vault.azure.net`), api-versions
//! 2026-04-01, 2026-03-01-preview, 2025-07-01, 2025-06-01 and 7.0–7.6.
//!
//! Routes: SetSecret, GetSecret (latest with or without trailing slash, or by version),
//! UpdateSecret, GetSecrets and GetSecretVersions (`maxresults` 1–25, `nextLink` paging),
//! DeleteSecret, GetDeletedSecrets, GetDeletedSecret, PurgeDeletedSecret, RecoverDeletedSecret.
//! A request without a token gets the 401 challenge; a token must be the emulator's, for
//! audience `https://vault.azure.net`. A vault with `enable_rbac_authorization` (the default)
//! admits the callers in `allowed_principals` (403 `ForbiddenByRbac` otherwise); a vault on
//! access policies checks the secret permission each operation needs (403 `AccessDenied`).

pub mod store;
pub mod wire;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::calls::{CallStart, Service};
use crate::error::{AzureError, json_response};
use crate::pipeline::Exchange;
use crate::request::{Bearer, Query, bearer, body_bytes, segments};
use crate::throttling::ThrottleKey;
use crate::token::{Claims, TokenError, wall_now};
use crate::world::{Ctx, World, random_guid, random_hex};
use store::{Vault, VersionFields};

/// The host suffix of every vault.
pub const HOST_SUFFIX: &str = ".vault.azure.net";
/// The token audience Key Vault accepts.
pub const AUDIENCE: &str = "https://vault.azure.net";
/// Api-versions the emulator serves. The newest official SDKs default to `2026-04-01` (GA) and
/// `2026-03-01-preview` (the Rust crate's 1.1.0-beta.1); for secrets both behave as
/// `2025-07-01` here: the changes found for them concern keys (secure key wrap) and the
/// control plane, not the secrets API.
pub const API_VERSIONS: &[&str] = &[
    "2026-04-01",
    "2026-03-01-preview",
    "2025-07-01",
    "2025-06-01",
    "7.6",
    "7.5",
    "7.4",
    "7.3",
    "7.2",
    "7.1",
    "7.0",
];
const LATEST_API_VERSION: &str = "2025-07-01";
const DEFAULT_PAGE: usize = 25;

/// A Key Vault operation, identified from method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    SetSecret(String),
    GetSecret(String, Option<String>),
    UpdateSecret(String, Option<String>),
    GetSecrets,
    GetSecretVersions(String),
    DeleteSecret(String),
    GetDeletedSecrets,
    GetDeletedSecret(String),
    PurgeDeletedSecret(String),
    RecoverDeletedSecret(String),
}

impl Op {
    fn id(&self) -> &'static str {
        match self {
            Op::SetSecret(_) => "SetSecret",
            Op::GetSecret(..) => "GetSecret",
            Op::UpdateSecret(..) => "UpdateSecret",
            Op::GetSecrets => "GetSecrets",
            Op::GetSecretVersions(_) => "GetSecretVersions",
            Op::DeleteSecret(_) => "DeleteSecret",
            Op::GetDeletedSecrets => "GetDeletedSecrets",
            Op::GetDeletedSecret(_) => "GetDeletedSecret",
            Op::PurgeDeletedSecret(_) => "PurgeDeletedSecret",
            Op::RecoverDeletedSecret(_) => "RecoverDeletedSecret",
        }
    }
}

fn route(method: &Method, path: &str) -> Result<Op, AzureError> {
    let segments = segments(path);
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let collection = parts.first().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let version = |v: &str| (!v.is_empty()).then(|| v.to_string());
    let op = match (collection.as_str(), &parts[1..], method.clone()) {
        ("secrets", [] | [""], Method::GET) => Some(Op::GetSecrets),
        ("secrets", [name], Method::PUT) => Some(Op::SetSecret(name.to_string())),
        ("secrets", [name] | [name, ""], Method::GET) => Some(Op::GetSecret(name.to_string(), None)),
        ("secrets", [name] | [name, ""], Method::PATCH) => Some(Op::UpdateSecret(name.to_string(), None)),
        ("secrets", [name], Method::DELETE) => Some(Op::DeleteSecret(name.to_string())),
        ("secrets", [name, v], Method::GET) if v.eq_ignore_ascii_case("versions") => {
            Some(Op::GetSecretVersions(name.to_string()))
        }
        ("secrets", [name, v], Method::GET) => Some(Op::GetSecret(name.to_string(), version(v))),
        ("secrets", [name, v], Method::PATCH) => Some(Op::UpdateSecret(name.to_string(), version(v))),
        ("deletedsecrets", [] | [""], Method::GET) => Some(Op::GetDeletedSecrets),
        ("deletedsecrets", [name], Method::GET) => Some(Op::GetDeletedSecret(name.to_string())),
        ("deletedsecrets", [name], Method::DELETE) => Some(Op::PurgeDeletedSecret(name.to_string())),
        ("deletedsecrets", [name, r], Method::POST) if r.eq_ignore_ascii_case("recover") => {
            Some(Op::RecoverDeletedSecret(name.to_string()))
        }
        _ => None,
    };
    op.ok_or_else(|| {
        AzureError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The emulated Key Vault has no operation {method} {path}. See emulator/README.md for what is emulated."),
        )
    })
}

/// Serves one request to the vault `vault` (lower-case name) at `base` (`https://<host>`).
pub async fn handle(ctx: Ctx, vault: String, base: String, req: Request<Body>) -> Response {
    let client_request_id = req.headers().get("x-ms-client-request-id").cloned();
    let mut response = serve(ctx, vault, base, req).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-ms-keyvault-region", HeaderValue::from_static("emulator"));
    headers.insert(
        "x-ms-keyvault-service-version",
        HeaderValue::from_static("1.9.0.0-keyflip-emulator"),
    );
    if let Ok(id) = HeaderValue::from_str(&random_guid()) {
        headers.insert("x-ms-request-id", id);
    }
    if let Some(id) = client_request_id {
        headers.insert("x-ms-client-request-id", id);
    }
    response
}

async fn serve(ctx: Ctx, vault: String, base: String, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let routed = route(&parts.method, &path);
    let operation = routed.as_ref().map(Op::id).unwrap_or("Unknown");
    let mut start = CallStart::new(Service::Keyvault, operation, &vault, parts.method.as_str(), &path);
    start.api_version = query.get("api-version").map(str::to_string);
    let mut exchange = Exchange::new(ctx.clone(), start, vec![vault.clone()]);
    exchange.set_throttle(ThrottleKey::keyvault(&vault, operation));

    let access = {
        let world = ctx.world();
        world.vaults.get(&vault).map(|v| {
            (
                v.name.clone(),
                v.location.clone(),
                v.enable_rbac_authorization,
                v.allowed_principals.clone(),
            )
        })
    };
    let Some((vault_name, location, rbac, allowed)) = access else {
        return exchange.reject(
            AzureError::new(
                StatusCode::NOT_FOUND,
                "VaultNotFound",
                format!("No vault named '{vault}' is seeded in the emulator. Seed it through the control API (POST /control/vaults)."),
            )
            .into_response(),
        );
    };
    let claims = match authenticate(&ctx, &parts.headers) {
        Ok(claims) => claims,
        Err(error) => return exchange.reject(error.into_response()),
    };
    let caller = claims.oid.clone();
    exchange.set_caller(caller.clone());
    if rbac {
        if let Some(allowed) = allowed
            && !allowed.iter().any(|p| p.eq_ignore_ascii_case(&caller))
        {
            return exchange.reject(forbidden_by_rbac(&ctx, &caller, operation, &vault).into_response());
        }
    } else if let Some(permission) = routed.as_ref().ok().map(|op| policy_permission(op.id())) {
        let granted = ctx
            .world()
            .vaults
            .get(&vault)
            .is_some_and(|v| v.policy_grants(&claims.oid, &claims.tid, permission));
        if !granted {
            return exchange
                .reject(access_denied(&ctx, &claims, permission, &vault_name, &location).into_response());
        }
    }
    let op = match routed {
        Ok(op) => op,
        Err(error) => return exchange.reject(error.into_response()),
    };
    if let Err(error) = check_api_version(query.get("api-version")) {
        return exchange.reject(error.into_response());
    }
    if let Err(response) = exchange.before().await {
        return response;
    }
    let body = body_bytes(body).await.unwrap_or_default();
    let response = {
        let mut world = ctx.world();
        match execute(&mut world, &vault, &base, &op, &query, &body) {
            Ok((status, value)) => match value {
                Some(value) => json_response(status, &value),
                None => status.into_response(),
            },
            Err(error) => error.into_response(),
        }
    };
    exchange.finish(response)
}

/// Checks the bearer token; a request without one (or with one Key Vault refuses) gets the
/// 401 challenge naming the tenant's authority and Key Vault's resource.
fn authenticate(ctx: &Ctx, headers: &axum::http::HeaderMap) -> Result<Claims, AzureError> {
    let challenge = |message: String| {
        AzureError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message).with_header(
            header::WWW_AUTHENTICATE,
            format!(
                "Bearer authorization=\"https://login.windows.net/{}\", resource=\"{AUDIENCE}\"",
                ctx.tokens.tenant_id()
            ),
        )
    };
    match bearer(headers) {
        Bearer::Missing | Bearer::Malformed => Err(challenge(
            "AKV10000: Request is missing a Bearer or PoP token.".into(),
        )),
        Bearer::Token(token) => match ctx.tokens.verify(token, &[AUDIENCE], wall_now()) {
            Ok(claims) => Ok(claims),
            Err(TokenError::WrongAudience(aud)) => Err(challenge(format!(
                "AKV10022: Invalid audience. Expected {AUDIENCE}, found: {aud}."
            ))),
            Err(other) => Err(challenge(format!("Unauthorized: {other}."))),
        },
    }
}

/// The Key Vault data action an operation needs (`Microsoft.KeyVault/vaults/secrets/...`).
fn data_action(operation: &str) -> &'static str {
    match operation {
        "GetSecret" => "getSecret/action",
        "SetSecret" => "setSecret/action",
        "UpdateSecret" => "update/action",
        "DeleteSecret" => "delete",
        "PurgeDeletedSecret" => "purge/action",
        "RecoverDeletedSecret" => "recover/action",
        _ => "readMetadata/action",
    }
}

/// The secret permission an access policy must grant for an operation, as the Key Vault REST
/// reference states for each ("This operation requires the secrets/… permission"): UpdateSecret
/// needs `set`, GetDeletedSecret `get`, GetDeletedSecrets `list`.
fn policy_permission(operation: &str) -> &'static str {
    match operation {
        "GetSecret" | "GetDeletedSecret" => "get",
        "SetSecret" | "UpdateSecret" => "set",
        "DeleteSecret" => "delete",
        "PurgeDeletedSecret" => "purge",
        "RecoverDeletedSecret" => "recover",
        _ => "list",
    }
}

/// 403 of a vault on access policies whose policies do not grant `permission` to the caller:
/// code `Forbidden`, innererror `AccessDenied`, and the message Key Vault answers (the shape
/// observed from real vaults, ../shared/reference/rest-contracts.md §A.6).
fn access_denied(ctx: &Ctx, claims: &Claims, permission: &str, vault: &str, location: &str) -> AzureError {
    AzureError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "The user, group or application 'appid={};oid={};iss={}' does not have secrets {permission} permission on key vault '{vault};location={location}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
            claims.appid,
            claims.oid,
            ctx.tokens.issuer(),
        ),
    )
    .with_inner("AccessDenied")
}

fn forbidden_by_rbac(ctx: &Ctx, caller: &str, operation: &str, vault: &str) -> AzureError {
    AzureError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: oid={caller};iss={issuer}\r\nAction: 'Microsoft.KeyVault/vaults/secrets/{action}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: {vault};location=emulator\r\n",
            issuer = ctx.tokens.issuer(),
            action = data_action(operation),
        ),
    )
    .with_inner("ForbiddenByRbac")
}

fn check_api_version(version: Option<&str>) -> Result<(), AzureError> {
    match version {
        Some(v) if API_VERSIONS.contains(&v) => Ok(()),
        Some(v) => Err(AzureError::new(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version ({LATEST_API_VERSION})."
            ),
        )),
        None => Err(AzureError::new(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The api-version query parameter is required.",
        )),
    }
}

type Outcome = Result<(StatusCode, Option<Value>), AzureError>;

fn execute(world: &mut World, vault_key: &str, base: &str, op: &Op, query: &Query, body: &[u8]) -> Outcome {
    let now = world.now();
    let vault = world
        .vaults
        .get_mut(vault_key)
        .ok_or_else(|| AzureError::new(StatusCode::NOT_FOUND, "VaultNotFound", "The vault is gone."))?;
    let ok = |value: Value| Ok((StatusCode::OK, Some(value)));
    match op {
        Op::SetSecret(name) => {
            let input: wire::SetSecretIn = parse_body(body)?;
            let value = input
                .value
                .ok_or_else(|| bad_body("The secret value is required."))?;
            let fields = wire::fields(input.content_type, input.attributes, input.tags);
            let (name, version) = vault.set(name, value, fields, random_hex(32), now, now)?;
            ok(wire::bundle(vault, base, &name, &version, true))
        }
        Op::GetSecret(name, version) => {
            let (name, version) = vault.get(name, version.as_deref())?;
            ok(wire::bundle(vault, base, &name, &version, true))
        }
        Op::UpdateSecret(name, version) => {
            let input: wire::UpdateSecretIn = parse_body(body)?;
            let fields: VersionFields = wire::fields(input.content_type, input.attributes, input.tags);
            let (name, version) = vault.update(name, version.as_deref(), fields, now)?;
            ok(wire::bundle(vault, base, &name, &version, false))
        }
        Op::GetSecrets => {
            let paging = Paging::parse(query)?;
            let (items, next) = vault.list_page(paging.after.as_deref(), paging.max);
            let items = items
                .iter()
                .map(|(name, v)| wire::item(vault, base, name, v))
                .collect();
            ok(paging.body(items, next, base, "/secrets", query))
        }
        Op::GetSecretVersions(name) => {
            let paging = Paging::parse(query)?;
            let after = match paging.after.as_deref() {
                None => None,
                Some(marker) => Some(marker.parse::<usize>().map_err(|_| bad_skiptoken())?),
            };
            let (name, versions, next) = vault.versions_page(name, after, paging.max)?;
            let items = versions
                .iter()
                .map(|v| wire::version_item(vault, base, &name, v))
                .collect();
            let next = next.map(|index| index.to_string());
            ok(paging.body(items, next, base, &format!("/secrets/{name}/versions"), query))
        }
        Op::DeleteSecret(name) => {
            let (name, version, deletion) = vault.delete(name, now)?;
            ok(wire::deleted_bundle(vault, base, &name, &version, &deletion))
        }
        Op::GetDeletedSecrets => {
            let paging = Paging::parse(query)?;
            let (items, next) = vault.list_deleted_page(paging.after.as_deref(), paging.max);
            let items = items
                .iter()
                .map(|(name, v, d)| wire::deleted_item(vault, base, name, v, d))
                .collect();
            ok(paging.body(items, next, base, "/deletedsecrets", query))
        }
        Op::GetDeletedSecret(name) => {
            let (name, version, deletion) = vault.get_deleted(name)?;
            ok(wire::deleted_bundle(vault, base, &name, &version, &deletion))
        }
        Op::PurgeDeletedSecret(name) => {
            vault.purge(name)?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        Op::RecoverDeletedSecret(name) => {
            let (name, version) = vault.recover(name)?;
            ok(wire::bundle(vault, base, &name, &version, false))
        }
    }
}

fn bad_body(message: &str) -> AzureError {
    AzureError::new(StatusCode::BAD_REQUEST, "BadParameter", message)
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AzureError> {
    if body.is_empty() {
        return Err(bad_body("The request body is required."));
    }
    serde_json::from_slice(body).map_err(|e| bad_body(&format!("The request body is not valid JSON: {e}")))
}

/// The paging parameters of a list request: `maxresults` (1–25, default 25) and where the
/// previous page ended (the `NextMarker` of its `$skiptoken`).
///
/// A page costs time proportional to the page, not the vault: the marker is the key the
/// previous page ended on (a secret's lower-case name, or a version's position), and the next
/// page starts right after it in the vault's ordered map.
#[derive(Debug)]
struct Paging {
    max: usize,
    after: Option<String>,
}

impl Paging {
    fn parse(query: &Query) -> Result<Self, AzureError> {
        let max = match query.get("maxresults") {
            None => DEFAULT_PAGE,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=25).contains(&n) => n,
                _ => {
                    return Err(AzureError::new(
                        StatusCode::BAD_REQUEST,
                        "BadParameter",
                        format!(
                            "The value of the maxresults parameter ({raw}) is invalid: it must be between 1 and 25."
                        ),
                    ));
                }
            },
        };
        let after = match query.get("$skiptoken") {
            None => None,
            Some(token) => Some(decode_skiptoken(token).ok_or_else(bad_skiptoken)?),
        };
        Ok(Self { max, after })
    }

    /// `{"value": items, "nextLink": …}`: the link (absolute, `:443`, carrying the api-version
    /// and `maxresults`, as Key Vault's) while more remain, `null` on the last page.
    fn body(&self, items: Vec<Value>, next: Option<String>, base: &str, path: &str, query: &Query) -> Value {
        let next_link = match next {
            Some(marker) => {
                let api_version = query.get("api-version").unwrap_or(LATEST_API_VERSION);
                let mut link = format!(
                    "{base}:443{path}?api-version={api_version}&$skiptoken={}",
                    encode_skiptoken(&marker)
                );
                if query.get("maxresults").is_some() {
                    link.push_str(&format!("&maxresults={}", self.max));
                }
                json!(link)
            }
            None => Value::Null,
        };
        json!({ "value": items, "nextLink": next_link })
    }
}

fn bad_skiptoken() -> AzureError {
    AzureError::new(
        StatusCode::BAD_REQUEST,
        "BadParameter",
        "The $skiptoken parameter is not valid.",
    )
}

/// Base64url of `{"NextMarker":"<marker>","TargetLocation":0}`, the shape of Key Vault's own
/// tokens (whose markers are opaque; the SDK follows `nextLink` verbatim).
fn encode_skiptoken(marker: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({ "NextMarker": marker, "TargetLocation": 0 }).to_string())
}

fn decode_skiptoken(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("NextMarker")?.as_str().map(str::to_string)
}

/// Creates the vault if it does not exist; returns it.
pub fn ensure_vault<'a>(world: &'a mut World, name: &str) -> &'a mut Vault {
    world
        .vaults
        .entry(name.to_ascii_lowercase())
        .or_insert_with(|| Vault::new(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_the_sdk_quirks() {
        assert_eq!(
            route(&Method::GET, "/secrets/a/").unwrap(),
            Op::GetSecret("a".into(), None)
        );
        assert_eq!(
            route(&Method::GET, "/secrets/a").unwrap(),
            Op::GetSecret("a".into(), None)
        );
        assert_eq!(
            route(&Method::PATCH, "/secrets/a/").unwrap(),
            Op::UpdateSecret("a".into(), None)
        );
        assert_eq!(
            route(&Method::GET, "/secrets/a/Versions").unwrap(),
            Op::GetSecretVersions("a".into())
        );
        assert_eq!(
            route(&Method::GET, "/secrets/a/abc").unwrap(),
            Op::GetSecret("a".into(), Some("abc".into()))
        );
        assert_eq!(route(&Method::GET, "/secrets").unwrap(), Op::GetSecrets);
        assert_eq!(
            route(&Method::POST, "/deletedsecrets/a/recover").unwrap(),
            Op::RecoverDeletedSecret("a".into())
        );
        assert!(route(&Method::POST, "/secrets/a").is_err());
        assert!(route(&Method::GET, "/keys/a").is_err());
    }

    /// Every name a GetSecrets walk returns, following each `nextLink`; also the page count.
    fn walk(world: &mut World, first: &str) -> (Vec<String>, usize) {
        let mut names = Vec::new();
        let mut pages = 0;
        let mut query = Query::parse(Some(first));
        loop {
            let (_, body) = execute(
                world,
                "kv",
                "https://kv.vault.azure.net",
                &Op::GetSecrets,
                &query,
                b"",
            )
            .unwrap();
            let body = body.unwrap();
            pages += 1;
            for item in body["value"].as_array().unwrap() {
                names.push(
                    item["id"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_string(),
                );
            }
            let Some(next) = body["nextLink"].as_str() else {
                break;
            };
            assert!(
                next.starts_with("https://kv.vault.azure.net:443/secrets?api-version=2025-07-01&$skiptoken=")
            );
            query = Query::parse(next.split_once('?').map(|(_, q)| q));
        }
        (names, pages)
    }

    #[test]
    fn paging_walks_every_live_secret_once_in_name_order() {
        let mut world = World::default();
        let vault = ensure_vault(&mut world, "kv");
        for i in 0..8 {
            let name = format!("s{i}");
            vault
                .set(&name, "v".into(), VersionFields::default(), format!("v{i}"), 0, 0)
                .unwrap();
        }
        vault.delete("s3", 1).unwrap();
        vault.delete("s6", 1).unwrap();
        vault.delete("s7", 1).unwrap();
        let (names, pages) = walk(&mut world, "api-version=2025-07-01&maxresults=2");
        assert_eq!(names, ["s0", "s1", "s2", "s4", "s5"]);
        assert_eq!(pages, 3, "no empty last page");
        let bad = Query::parse(Some("api-version=2025-07-01&$skiptoken=nope"));
        let err = execute(&mut world, "kv", "b", &Op::GetSecrets, &bad, b"").unwrap_err();
        assert_eq!(err.code, "BadParameter");
    }

    #[test]
    fn version_paging_walks_every_version_oldest_first() {
        let mut world = World::default();
        let vault = ensure_vault(&mut world, "kv");
        for i in 0..5 {
            vault
                .set("s", "v".into(), VersionFields::default(), format!("v{i}"), i, i)
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut query = Query::parse(Some("api-version=2025-07-01&maxresults=2"));
        loop {
            let op = Op::GetSecretVersions("s".into());
            let (_, body) =
                execute(&mut world, "kv", "https://kv.vault.azure.net", &op, &query, b"").unwrap();
            let body = body.unwrap();
            for item in body["value"].as_array().unwrap() {
                seen.push(
                    item["id"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_string(),
                );
            }
            let Some(next) = body["nextLink"].as_str() else {
                break;
            };
            query = Query::parse(next.split_once('?').map(|(_, q)| q));
        }
        assert_eq!(seen, ["v0", "v1", "v2", "v3", "v4"]);
    }

    #[test]
    fn maxresults_outside_1_to_25_is_refused() {
        for bad in ["0", "26", "x"] {
            let query = Query::parse(Some(&format!("maxresults={bad}")));
            assert_eq!(Paging::parse(&query).unwrap_err().code, "BadParameter");
        }
    }
}
