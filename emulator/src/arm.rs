//! Resource Manager (`https://management.azure.com`): resource paths, api-version, bearer
//! authentication, authorization and ARM error bodies. The resource itself is served by its
//! provider (see [`crate::providers`]).
//!
//! It also serves the polling URLs of long-running operations ([`crate::operations`]):
//! `GET /subscriptions/{s}/providers/{ns}/locations/{loc}/operationStatuses/{id}`
//! (`OperationStatuses_Get`, the `Azure-AsyncOperation` URL: 200 with the status body) and
//! `…/operationResults/{id}` (`OperationResults_Get`, the `Location` URL: 202 while running,
//! then the provider's final answer). Both need an ARM token and read access to the resource,
//! and go through fault and latency injection and the call log like every other call.
//!
//! The read-only routes outside one resource's operations — collection lists, Key Vault and
//! Event Grid resources, `Microsoft.Authorization` at a scope and `/subscriptions` — are
//! identified by [`ArmRead`] and served by [`serve_read`] through the same steps: bearer
//! authentication, api-version check, faults and latency, call log. Every list is paged the
//! way Resource Manager pages: `{"value":[…],"nextLink":"<absolute URL>"}` with `nextLink` only
//! while more remain ([`page`]).
//!
//! Every call draws from its subscription's read, write or delete bucket
//! ([`crate::throttling`]; unlimited unless throttling is on) and every answer carries the
//! `x-ms-ratelimit-remaining-*` header of that bucket.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::calls::{CallStart, Service};
use crate::error::{AzureError, json_response};
use crate::operations::{Operation, OperationPath};
use crate::pipeline::Exchange;
use crate::providers::{ArmRead, ArmResourceType};
use crate::request::{Bearer, Query, bearer, body_bytes, segments};
use crate::throttling::ThrottleKey;
use crate::token::{TokenError, wall_now};
use crate::world::{Ctx, random_guid};

/// The Resource Manager host.
pub const HOST: &str = "management.azure.com";
/// Token audiences Resource Manager accepts.
pub const AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
];

/// A resource addressed by an ARM path, with the action that follows it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub subscription_id: String,
    pub resource_group: String,
    pub namespace: String,
    pub resource_type: String,
    pub name: String,
    /// The segment after the resource name (`listKeys`, `regenerateKey`).
    pub action: Option<String>,
}

impl ResourcePath {
    /// Parses `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{action}]`,
    /// matching the fixed segments case-insensitively as ARM does.
    pub fn parse(path: &str) -> Option<Self> {
        let parts = segments(path);
        let fixed = |i: usize, word: &str| parts.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));
        if !(fixed(0, "subscriptions") && fixed(2, "resourceGroups") && fixed(4, "providers")) {
            return None;
        }
        let action = match parts.len() {
            8 => None,
            9 if !parts[8].is_empty() => Some(parts[8].clone()),
            _ => return None,
        };
        if parts[1..8].iter().any(String::is_empty) {
            return None;
        }
        Some(Self {
            subscription_id: parts[1].clone(),
            resource_group: parts[3].clone(),
            namespace: parts[5].clone(),
            resource_type: parts[6].clone(),
            name: parts[7].clone(),
            action,
        })
    }

    /// The resource id as the request spelled it, without the action.
    pub fn resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}/{}",
            self.subscription_id, self.resource_group, self.namespace, self.resource_type, self.name
        )
    }
}

/// Who called and with which api-version: what an operation needs beyond its resource and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmCall {
    /// The token's `oid`.
    pub caller: String,
    pub api_version: String,
}

/// An ARM error (`{"error":{"code","message"}}`).
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> AzureError {
    AzureError::new(status, code, message)
}

/// Serves one request to Resource Manager.
pub async fn handle(ctx: Ctx, req: Request<Body>) -> Response {
    let mut response = serve(ctx, req).await;
    let headers = response.headers_mut();
    for name in ["x-ms-request-id", "x-ms-correlation-request-id"] {
        if let Ok(id) = HeaderValue::from_str(&random_guid()) {
            headers.insert(name, id);
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn serve(ctx: Ctx, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    if let Some(operation_path) = OperationPath::parse(&segments(&path)) {
        return serve_operation(ctx, &parts, &path, &query, operation_path).await;
    }
    if let Some(read) = ArmRead::parse(&path) {
        return serve_read(ctx, &parts, &path, &query, read).await;
    }
    let resource = ResourcePath::parse(&path);
    let resource_type = resource
        .as_ref()
        .and_then(|r| ArmResourceType::resolve(&r.namespace, &r.resource_type));
    let operation = match (&resource, resource_type) {
        (Some(r), Some(t)) => t.operation(&parts.method, r.action.as_deref()),
        _ => None,
    };
    let target = resource
        .as_ref()
        .map(ResourcePath::resource_id)
        .unwrap_or_else(|| path.clone());
    let mut start = CallStart::new(
        Service::Arm,
        operation.unwrap_or("Unknown"),
        &target,
        parts.method.as_str(),
        &path,
    );
    start.api_version = query.get("api-version").map(str::to_string);
    let targets = vec![
        target.clone(),
        resource.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
    ];
    let mut exchange = Exchange::new(ctx.clone(), start, targets);
    exchange.set_throttle(ThrottleKey::arm(&parts.method, &path));

    let caller = match authenticate(&ctx, &parts.headers) {
        Ok(oid) => oid,
        Err(e) => return exchange.reject(e.into_response()),
    };
    exchange.set_caller(caller.clone());
    let (Some(resource), Some(resource_type)) = (resource, resource_type) else {
        return exchange.reject(
            error(
                StatusCode::NOT_FOUND,
                "InvalidResourceType",
                format!("The emulated Resource Manager serves no resource type at '{path}'. See emulator/README.md for what is emulated."),
            )
            .into_response(),
        );
    };
    let Some(operation) = operation else {
        return exchange.reject(
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "The requested resource does not support http method '{}'.",
                    parts.method
                ),
            )
            .into_response(),
        );
    };
    if let Err(e) = check_api_version(resource_type, &resource, query.get("api-version")) {
        return exchange.reject(e.into_response());
    }
    if let Err(e) = resource_type.authorize(&ctx, &resource, &caller, operation) {
        return exchange.reject(e.into_response());
    }
    if let Err(response) = exchange.before().await {
        return response;
    }
    let body = body_bytes(body).await.unwrap_or_default();
    let call = ArmCall {
        caller,
        api_version: query.get("api-version").unwrap_or_default().to_string(),
    };
    let response = resource_type.execute(&ctx, &resource, operation, &call, &body);
    exchange.finish(response)
}

/// The operation a polling path names, if the emulator started it.
fn find_operation(ctx: &Ctx, path: &OperationPath) -> Option<Operation> {
    ctx.world().operations.values().find(|o| path.names(o)).cloned()
}

/// Serves `GET …/operationStatuses/{id}` and `GET …/operationResults/{id}`.
async fn serve_operation(
    ctx: Ctx,
    parts: &axum::http::request::Parts,
    path: &str,
    query: &Query,
    operation_path: OperationPath,
) -> Response {
    let name = if operation_path.status {
        "OperationStatuses_Get"
    } else {
        "OperationResults_Get"
    };
    let found = find_operation(&ctx, &operation_path);
    let resource = found.as_ref().and_then(|o| ResourcePath::parse(&o.resource_id));
    let target = found
        .as_ref()
        .map(|o| o.resource_id.clone())
        .unwrap_or_else(|| path.to_string());
    let mut start = CallStart::new(Service::Arm, name, &target, parts.method.as_str(), path);
    start.api_version = query.get("api-version").map(str::to_string);
    let targets = vec![
        target,
        resource.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
        operation_path.id.clone(),
    ];
    let mut exchange = Exchange::new(ctx.clone(), start, targets);
    exchange.set_throttle(ThrottleKey::arm(&parts.method, path));
    let caller = match authenticate(&ctx, &parts.headers) {
        Ok(oid) => oid,
        Err(e) => return exchange.reject(e.into_response()),
    };
    exchange.set_caller(caller.clone());
    if parts.method != Method::GET {
        return exchange.reject(
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "The requested resource does not support http method '{}'.",
                    parts.method
                ),
            )
            .into_response(),
        );
    }
    let resource_type = resource
        .as_ref()
        .and_then(|r| ArmResourceType::resolve(&r.namespace, &r.resource_type));
    let (Some(resource), Some(resource_type)) = (resource, resource_type) else {
        return exchange.reject(
            error(
                StatusCode::NOT_FOUND,
                "OperationNotFound",
                format!("The operation '{}' was not found.", operation_path.id),
            )
            .into_response(),
        );
    };
    if let Err(e) = check_api_version(resource_type, &resource, query.get("api-version")) {
        return exchange.reject(e.into_response());
    }
    if let Err(e) = resource_type.authorize(&ctx, &resource, &caller, "Accounts_Get") {
        return exchange.reject(e.into_response());
    }
    if let Err(response) = exchange.before().await {
        return response;
    }
    let response = {
        let world = ctx.world();
        match world.operations.values().find(|o| operation_path.names(o)) {
            None => error(
                StatusCode::NOT_FOUND,
                "OperationNotFound",
                format!("The operation '{}' was not found.", operation_path.id),
            )
            .into_response(),
            Some(operation) if operation_path.status => {
                let mut response = json_response(StatusCode::OK, &operation.status_body());
                if !operation.ended()
                    && let Ok(value) = HeaderValue::from_str(&operation.retry_after_seconds.to_string())
                {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            Some(operation) => resource_type.operation_result(&world, operation),
        }
    };
    exchange.finish(response)
}

/// Serves one of the read-only routes of [`ArmRead`] (GET only).
async fn serve_read(
    ctx: Ctx,
    parts: &axum::http::request::Parts,
    path: &str,
    query: &Query,
    read: ArmRead,
) -> Response {
    let target = read.target();
    let mut start = CallStart::new(
        Service::Arm,
        read.operation(),
        &target,
        parts.method.as_str(),
        path,
    );
    start.api_version = query.get("api-version").map(str::to_string);
    let targets = vec![target, read.name()];
    let mut exchange = Exchange::new(ctx.clone(), start, targets);
    exchange.set_throttle(ThrottleKey::arm(&parts.method, path));
    let caller = match authenticate(&ctx, &parts.headers) {
        Ok(oid) => oid,
        Err(e) => return exchange.reject(e.into_response()),
    };
    exchange.set_caller(caller.clone());
    if parts.method != Method::GET {
        return exchange.reject(
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "The requested resource does not support http method '{}'. The emulator serves only GET here.",
                    parts.method
                ),
            )
            .into_response(),
        );
    }
    if let Err(e) = check_versions(
        read.api_versions(),
        read.type_name(),
        read.invalid_version_code(),
        query.get("api-version"),
    ) {
        return exchange.reject(e.into_response());
    }
    if let Err(response) = exchange.before().await {
        return response;
    }
    let call = ArmCall {
        caller,
        api_version: query.get("api-version").unwrap_or_default().to_string(),
    };
    let response = match read.execute(&ctx, &call, path, query) {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => e.into_response(),
    };
    exchange.finish(response)
}

/// One page of a Resource Manager list: `page_size` items from the `$skiptoken` offset, and a
/// `nextLink` (absolute, the request's path and query with a new `$skiptoken`) while more
/// remain. The token is opaque to clients, as ARM's are; a client follows `nextLink` verbatim.
pub fn page(
    items: Vec<serde_json::Value>,
    path: &str,
    query: &Query,
    page_size: usize,
) -> Result<serde_json::Value, AzureError> {
    let offset = match query.get("$skiptoken") {
        None => 0,
        Some(token) => decode_skiptoken(token).ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "InvalidSkipToken",
                "The $skiptoken query parameter is not one this list issued: follow nextLink as given.",
            )
        })?,
    };
    let total = items.len();
    let value: Vec<serde_json::Value> = items.into_iter().skip(offset).take(page_size).collect();
    let mut body = serde_json::json!({ "value": value });
    let next = offset.saturating_add(page_size);
    if next < total {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in query.pairs() {
            if !k.eq_ignore_ascii_case("$skiptoken") {
                serializer.append_pair(k, v);
            }
        }
        serializer.append_pair("$skiptoken", &encode_skiptoken(next));
        body["nextLink"] = serde_json::json!(format!("https://{HOST}{path}?{}", serializer.finish()));
    }
    Ok(body)
}

fn encode_skiptoken(offset: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("emulator-offset:{offset}"))
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("emulator-offset:")?
        .parse()
        .ok()
}

fn authenticate(ctx: &Ctx, headers: &axum::http::HeaderMap) -> Result<String, AzureError> {
    let unauthorized = |code: &str, message: String, description: &str| {
        error(StatusCode::UNAUTHORIZED, code, message).with_header(
            header::WWW_AUTHENTICATE,
            format!(
                "Bearer authorization_uri=\"https://login.windows.net/{}\", error=\"invalid_token\", error_description=\"{description}\"",
                ctx.tokens.tenant_id()
            ),
        )
    };
    match bearer(headers) {
        Bearer::Missing => Err(unauthorized(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".into(),
            "The authentication failed because of missing 'Authorization' header.",
        )),
        Bearer::Malformed => Err(unauthorized(
            "AuthenticationFailedInvalidHeader",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.".into(),
            "The authentication scheme of Bearer is required.",
        )),
        Bearer::Token(token) => match ctx.tokens.verify(token, AUDIENCES, wall_now()) {
            Ok(claims) => Ok(claims.oid),
            Err(TokenError::WrongAudience(aud)) => Err(unauthorized(
                "InvalidAuthenticationTokenAudience",
                format!(
                    "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."
                ),
                "The access token has been obtained for wrong audience or resource.",
            )),
            Err(TokenError::Expired(exp)) => Err(unauthorized(
                "ExpiredAuthenticationToken",
                format!(
                    "The access token expiry UTC time '{exp}' is earlier than current UTC time '{}'.",
                    wall_now()
                ),
                "The access token is expired.",
            )),
            Err(other) => Err(unauthorized(
                "InvalidAuthenticationToken",
                format!("The access token is invalid: {other}."),
                "The access token is invalid.",
            )),
        },
    }
}

fn check_api_version(
    resource_type: ArmResourceType,
    resource: &ResourcePath,
    version: Option<&str>,
) -> Result<(), AzureError> {
    check_versions(
        resource_type.api_versions(),
        &resource.resource_type,
        "NoRegisteredProviderFound",
        version,
    )
}

/// Checks `api-version` against `supported`. A resource provider's type answers an unknown
/// version with `NoRegisteredProviderFound`; Resource Manager's own routes (`/subscriptions`)
/// with `InvalidApiVersionParameter`.
fn check_versions(
    supported: &[&str],
    type_name: &str,
    code: &str,
    version: Option<&str>,
) -> Result<(), AzureError> {
    let Some(version) = version else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if supported.contains(&version) {
        return Ok(());
    }
    let message = if code == "InvalidApiVersionParameter" {
        format!(
            "The api-version '{version}' is invalid. The supported versions are '{}'. Please see https://aka.ms/arm-api-versions for more details.",
            supported.join(",")
        )
    } else {
        format!(
            "No registered resource provider found for location 'emulator' and API version '{version}' for type '{type_name}'. The supported api-versions are '{}'.",
            supported.join(", ")
        )
    };
    Err(error(StatusCode::BAD_REQUEST, code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_walks_every_item_once_and_keeps_the_query() {
        let items: Vec<serde_json::Value> = (0..7).map(|i| serde_json::json!(i)).collect();
        let mut seen = Vec::new();
        let mut query = Query::parse(Some("api-version=2022-04-01&%24filter=atScope()"));
        loop {
            let page = page(items.clone(), "/subscriptions/s/x", &query, 3).unwrap();
            seen.extend(page["value"].as_array().unwrap().iter().cloned());
            let Some(next) = page["nextLink"].as_str() else {
                assert!(page.get("nextLink").is_none());
                break;
            };
            assert!(next.starts_with("https://management.azure.com/subscriptions/s/x?api-version=2022-04-01&%24filter=atScope%28%29&%24skiptoken="));
            query = Query::parse(next.split_once('?').map(|(_, q)| q));
            assert_eq!(query.get("$filter"), Some("atScope()"));
        }
        assert_eq!(seen, items);
        let bad = Query::parse(Some("$skiptoken=nope"));
        assert_eq!(page(vec![], "/p", &bad, 3).unwrap_err().code, "InvalidSkipToken");
    }

    #[test]
    fn resource_paths_parse_case_insensitively_with_an_optional_action() {
        let p = ResourcePath::parse(
            "/SUBSCRIPTIONS/s/resourcegroups/rg/Providers/Microsoft.CognitiveServices/accounts/a/listKeys",
        )
        .unwrap();
        assert_eq!((p.name.as_str(), p.action.as_deref()), ("a", Some("listKeys")));
        assert_eq!(
            p.resource_id(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a"
        );
        assert!(ResourcePath::parse("/subscriptions/s/resourceGroups/rg").is_none());
        assert!(ResourcePath::parse("/subscriptions/s/resourceGroups/rg/providers/X/y/a/b/c").is_none());
    }
}
