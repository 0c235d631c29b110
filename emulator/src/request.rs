//! Reading what a request carries: its host, query parameters, bearer token and body.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, header};

/// Largest request body read (Key Vault refuses values over 25 KB itself; this only bounds memory).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The host a request is addressed to, lower-cased, without port: the `:authority` of an
/// HTTP/2 request, else the `Host` header.
pub fn host<B>(req: &Request<B>) -> String {
    let raw = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    strip_port(&raw).to_ascii_lowercase()
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Decoded query parameters, in order.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Every parameter, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The last value of `name` (clients that re-append a parameter to a `nextLink` send it
    /// twice; the last one is theirs).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Bearer<'a> {
    Missing,
    /// Present but not `Bearer <token>`.
    Malformed,
    Token(&'a str),
}

pub fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Bearer::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Bearer::Malformed;
    };
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Bearer::Token(token.trim())
        }
        _ => Bearer::Malformed,
    }
}

/// Reads the whole body; `None` if it is larger than the emulator accepts or the connection broke.
pub async fn body_bytes(body: Body) -> Option<Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.ok()
}

/// Percent-decodes one path segment.
pub fn decode_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// The path's segments, decoded; a trailing slash gives a trailing empty segment.
pub fn segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(decode_segment)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_comes_from_authority_or_header_without_port() {
        let req = Request::builder()
            .uri("https://KV1.vault.azure.net:8443/x")
            .body(())
            .unwrap();
        assert_eq!(host(&req), "kv1.vault.azure.net");
        let req = Request::builder()
            .uri("/x")
            .header("host", "127.0.0.1:9")
            .body(())
            .unwrap();
        assert_eq!(host(&req), "127.0.0.1");
    }

    #[test]
    fn the_last_repeated_query_parameter_wins() {
        let q = Query::parse(Some("api-version=7.2&%24skiptoken=abc&api-version=2025-07-01"));
        assert_eq!(q.get("api-version"), Some("2025-07-01"));
        assert_eq!(q.get("$skiptoken"), Some("abc"));
    }

    #[test]
    fn segments_keep_a_trailing_empty_one() {
        assert_eq!(segments("/secrets/a%20b/"), vec!["secrets", "a b", ""]);
    }
}
