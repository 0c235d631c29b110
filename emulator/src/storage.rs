//! Azure Blob Storage (`<account>.blob.core.windows.net`), served by proxy to a real Azurite.
//!
//! The emulator does not reimplement blob semantics (leases above all): it forwards each call,
//! path-style (`https://127.0.0.1:<port>/<account>/<container>/<blob>?…`), to the Azurite it was
//! given ([`crate::azurite`], [`crate::server::Emulator::set_storage_upstream`]) and hands back
//! Azurite's answer. Around the forwarding it does what it does for every other service
//! ([`crate::pipeline`]): latency and faults by operation name (`Container_Create`,
//! `Blob_Upload`, `Blob_AcquireLease`, `Blob_RenewLease`, `Blob_ReleaseLease`,
//! `Blob_BreakLease`, …) and target (the account, the container, or `container/blob`), where a
//! `phase: after` fault lets Azurite act and then answers the fault; and one entry per call in
//! the call log, with the caller's `oid` when a bearer token was presented and, for lease calls,
//! a [`LeaseCall`]: action, duration, lease id, Azurite's own status and wall-clock times, from
//! which a test can reconstruct who held which blob's lease when.
//!
//! A bearer token must be one the emulator issued (signature, issuer, lifetime) for
//! `https://storage.azure.com` or the account's blob endpoint; otherwise the proxy answers 401
//! as Storage does. Requests without a token (account SAS, anonymous) are judged by Azurite.
//! Errors the proxy itself produces use Storage's XML shape and `x-ms-error-code`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;

use crate::calls::{CallStart, LeaseCall, Service};
use crate::pipeline::Exchange;
use crate::request::{Bearer, Query, bearer, body_bytes, decode_segment};
use crate::token::wall_now;
use crate::world::Ctx;

/// Host suffix of the blob service.
pub const HOST_SUFFIX: &str = ".blob.core.windows.net";
/// The audience of Storage tokens (`https://storage.azure.com/.default` without `/.default`).
pub const AUDIENCE: &str = "https://storage.azure.com";

/// Headers that belong to one hop and are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// The Azurite calls are forwarded to, and the client that trusts its certificate.
#[derive(Debug, Clone)]
pub struct StorageUpstream {
    pub addr: SocketAddr,
    client: reqwest::Client,
}

impl StorageUpstream {
    /// An upstream at `addr` whose certificate the CA `ca_pem` signed.
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self, reqwest::Error> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())?;
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { addr, client })
    }
}

/// The storage account a blob host name is for (`acct.blob.core.windows.net` → `acct`).
pub fn account_of(host: &str) -> Option<String> {
    host.strip_suffix(HOST_SUFFIX)
        .filter(|a| !a.is_empty() && !a.contains('.'))
        .map(str::to_string)
}

/// What a request addresses: its operation name, container and blob (decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    pub operation: String,
    pub container: Option<String>,
    pub blob: Option<String>,
    /// `acquire`, `renew`, `release`, `break` or `change` for lease calls.
    pub lease_action: Option<String>,
}

/// Names a blob-service request the way the Storage REST API names its operations.
pub fn classify(method: &Method, path: &str, query: &Query, headers: &HeaderMap) -> Addressed {
    let trimmed = path.trim_start_matches('/');
    let (container, blob) = match trimmed.split_once('/') {
        Some((c, b)) if !b.is_empty() => (decode_segment(c), Some(decode_segment(b))),
        Some((c, _)) => (decode_segment(c), None),
        None => (decode_segment(trimmed), None),
    };
    let container = Some(container).filter(|c| !c.is_empty());
    let comp = query.get("comp").map(str::to_ascii_lowercase);
    let lease_action = (comp.as_deref() == Some("lease"))
        .then(|| header(headers, "x-ms-lease-action").map(|a| a.to_ascii_lowercase()))
        .flatten();
    let lease_operation = |scope: &str| {
        let action = lease_action.as_deref().unwrap_or("unknown");
        let mut capital = action.to_string();
        if let Some(first) = capital.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        format!("{scope}_{capital}Lease")
    };
    let container_level = query
        .get("restype")
        .is_some_and(|r| r.eq_ignore_ascii_case("container"));
    let operation = match (&container, &blob, comp.as_deref()) {
        (None, _, Some("list")) => "Service_ListContainers".to_string(),
        (None, _, Some("properties")) if *method == Method::GET => "Service_GetProperties".into(),
        (None, _, _) => "Service_Other".to_string(),
        (Some(_), None, Some("lease")) if container_level => lease_operation("Container"),
        (Some(_), None, Some("list")) => "Container_ListBlobs".to_string(),
        (Some(_), None, None) if container_level => match *method {
            Method::PUT => "Container_Create".to_string(),
            Method::DELETE => "Container_Delete".to_string(),
            _ => "Container_GetProperties".to_string(),
        },
        (Some(_), None, _) if container_level => "Container_Other".to_string(),
        (Some(_), _, Some("lease")) => lease_operation("Blob"),
        (Some(_), _, None) => match *method {
            Method::PUT => "Blob_Upload".to_string(),
            Method::GET => "Blob_Download".to_string(),
            Method::HEAD => "Blob_GetProperties".to_string(),
            Method::DELETE => "Blob_Delete".to_string(),
            _ => "Blob_Other".to_string(),
        },
        (Some(_), _, Some("metadata")) => "Blob_SetMetadata".to_string(),
        (Some(_), _, _) => "Blob_Other".to_string(),
    };
    Addressed {
        operation,
        container,
        blob,
        lease_action,
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An error answer in Storage's shape: XML body and `x-ms-error-code`.
pub fn storage_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
        xml_escape(code),
        xml_escape(message)
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(value) = HeaderValue::from_str(code) {
        headers.insert(HeaderName::from_static("x-ms-error-code"), value);
    }
    response
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Serves one blob-service request for `account`.
pub async fn handle(ctx: Ctx, account: String, req: Request) -> Response {
    let received_ms = wall_ms();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let addressed = classify(&parts.method, &path, &query, &parts.headers);
    let target = match (&addressed.container, &addressed.blob) {
        (Some(c), Some(b)) => format!("{c}/{b}"),
        (Some(c), None) => c.clone(),
        (None, _) => account.clone(),
    };
    let mut start = CallStart::new(
        Service::Storage,
        &addressed.operation,
        &target,
        parts.method.as_str(),
        &path,
    );
    start.api_version = header(&parts.headers, "x-ms-version").map(str::to_string);
    let mut targets = vec![account.clone(), target.clone()];
    targets.extend(addressed.container.clone());
    let mut exchange = Exchange::new(ctx.clone(), start, targets);
    if let Some(action) = &addressed.lease_action {
        let seconds = |name| header(&parts.headers, name).and_then(|v| v.trim().parse().ok());
        exchange.set_lease(LeaseCall {
            action: action.clone(),
            duration_seconds: seconds("x-ms-lease-duration"),
            break_period_seconds: seconds("x-ms-lease-break-period"),
            lease_id: header(&parts.headers, "x-ms-proposed-lease-id")
                .or_else(|| header(&parts.headers, "x-ms-lease-id"))
                .map(str::to_string),
            upstream_status: None,
            received_ms,
            answered_ms: None,
        });
    }

    let audiences = [AUDIENCE.to_string(), format!("https://{account}{HOST_SUFFIX}")];
    let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
    match bearer(&parts.headers) {
        Bearer::Missing => {}
        Bearer::Malformed => {
            return exchange.reject(unauthorized(
                &ctx,
                "The Authorization header is not 'Bearer <token>'.",
            ));
        }
        Bearer::Token(token) => match ctx.tokens.verify(token, &audiences, wall_now()) {
            Ok(claims) => exchange.set_caller(claims.oid),
            Err(e) => {
                return exchange.reject(unauthorized(
                    &ctx,
                    &format!("Server failed to authenticate the request: {e}."),
                ));
            }
        },
    }
    let Some(upstream) = ctx.storage_upstream() else {
        return exchange.reject(storage_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServerBusy",
            "The emulator has no storage upstream: start it with an Azurite (emulator::azurite, keyflip-emulator --azurite) to serve *.blob.core.windows.net.",
        ));
    };
    if let Err(response) = exchange.before().await {
        return response;
    }
    let Some(body) = body_bytes(body).await else {
        return exchange.reject(storage_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            "The request body is too large for the emulator's storage proxy.",
        ));
    };
    let mut url = format!("https://{}/{account}{path}", upstream.addr);
    if let Some(raw) = parts.uri.query() {
        url.push('?');
        url.push_str(raw);
    }
    let mut forward = upstream.client.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            forward = forward.header(name, value);
        }
    }
    // Storage wants a Content-Length even on an empty PUT, which hyper leaves out otherwise.
    forward = forward.header(axum::http::header::CONTENT_LENGTH, body.len());
    let answer = match forward.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return exchange.reject(storage_error(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                &format!("The emulator could not reach Azurite at {}: {e}", upstream.addr),
            ));
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => {
            return exchange.reject(storage_error(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                &format!("Azurite's answer broke off: {e}"),
            ));
        }
    };
    let granted = header(&headers, "x-ms-lease-id").map(str::to_string);
    exchange.lease_answered(status.as_u16(), granted, wall_ms());
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    exchange.finish(response)
}

fn unauthorized(ctx: &Ctx, message: &str) -> Response {
    let mut response = storage_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationInfo", message);
    let challenge = format!(
        "Bearer authorization_uri=https://login.microsoftonline.com/{}/oauth2/authorize resource_id={AUDIENCE}",
        ctx.tokens.tenant_id()
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(axum::http::header::WWW_AUTHENTICATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(method: Method, path: &str, query: &str, action: Option<&str>) -> Addressed {
        let mut headers = HeaderMap::new();
        if let Some(action) = action {
            headers.insert("x-ms-lease-action", HeaderValue::from_str(action).unwrap());
        }
        classify(&method, path, &Query::parse(Some(query)), &headers)
    }

    #[test]
    fn blob_hosts_name_their_account() {
        assert_eq!(account_of("acct.blob.core.windows.net"), Some("acct".into()));
        assert_eq!(account_of("a.b.blob.core.windows.net"), None);
        assert_eq!(account_of(".blob.core.windows.net"), None);
        assert_eq!(account_of("acct.queue.core.windows.net"), None);
    }

    #[test]
    fn requests_are_named_like_the_rest_operations() {
        let op = |m, p, q, a| named(m, p, q, a).operation;
        assert_eq!(
            op(Method::PUT, "/locks", "restype=container", None),
            "Container_Create"
        );
        assert_eq!(op(Method::PUT, "/locks/kv1/s", "", None), "Blob_Upload");
        assert_eq!(
            op(Method::PUT, "/locks/kv1/s", "comp=lease", Some("acquire")),
            "Blob_AcquireLease"
        );
        assert_eq!(
            op(Method::PUT, "/locks/kv1/s", "comp=lease", Some("Renew")),
            "Blob_RenewLease"
        );
        assert_eq!(
            op(Method::PUT, "/locks/kv1/s", "comp=lease", Some("release")),
            "Blob_ReleaseLease"
        );
        assert_eq!(
            op(Method::PUT, "/locks/kv1/s", "comp=lease", Some("break")),
            "Blob_BreakLease"
        );
        assert_eq!(
            op(
                Method::PUT,
                "/locks",
                "restype=container&comp=lease",
                Some("acquire")
            ),
            "Container_AcquireLease"
        );
        assert_eq!(op(Method::HEAD, "/locks/b", "", None), "Blob_GetProperties");
        assert_eq!(op(Method::GET, "/", "comp=list", None), "Service_ListContainers");
        let a = named(
            Method::PUT,
            "/locks/kv1/my%20secret",
            "comp=lease",
            Some("acquire"),
        );
        assert_eq!(a.container.as_deref(), Some("locks"));
        assert_eq!(a.blob.as_deref(), Some("kv1/my secret"));
        assert_eq!(a.lease_action.as_deref(), Some("acquire"));
    }

    #[test]
    fn proxy_errors_have_storage_shape() {
        let response = storage_error(StatusCode::SERVICE_UNAVAILABLE, "ServerBusy", "a < b");
        assert_eq!(response.headers()["x-ms-error-code"], "ServerBusy");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
