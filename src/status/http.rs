//! `GET /api/status`: the function `RotationStatus` (an httpTrigger GET on route `status`,
//! function key, forwarded raw by the host), answered in the format its query asks for:
//! `format=json` (the default), `format=html` (the page, [`super::html`]) or `format=text`
//! (the CLI's table, [`super::table`]); `vault=<name>` shows one served vault. Any other query
//! parameter but the host's `code` is refused with 400, so a misspelt one is noticed; the
//! query is never logged (`code` is the function key). A vault keyflip does not serve is 404.
//! `crate::server` routes here; the collection is [`super::Collector`]'s.

use std::time::Duration;

use axum::Json;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::StatusSource;
use crate::domain::VaultName;
use crate::domain::untrusted::echo;

/// The function's name (its folder, `functions/RotationStatus`).
pub const FUNCTION: &str = "RotationStatus";

/// The formats the route renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
    Text,
}

/// What the query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    pub format: Format,
    pub vault: Option<VaultName>,
}

/// Why a query is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "query parameter '{0}' is not accepted (check its spelling); the accepted parameters are format, vault, code"
    )]
    Unknown(String),
    #[error("query parameter '{0}' is given more than once")]
    Repeated(&'static str),
    #[error("query parameter 'format' is '{0}': use json, html or text")]
    Format(String),
    #[error("query parameter 'vault': {0}")]
    Vault(String),
}

/// Reads `format` and `vault` (names ignoring case, values percent-decoded); `code` is the
/// host's and is skipped.
pub fn parse_query(query: Option<&str>) -> Result<StatusQuery, QueryError> {
    let mut format = None;
    let mut vault = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name.eq_ignore_ascii_case("code") {
            continue;
        }
        if name.eq_ignore_ascii_case("format") {
            if format.is_some() {
                return Err(QueryError::Repeated("format"));
            }
            format = Some(match value.trim().to_ascii_lowercase().as_str() {
                "json" => Format::Json,
                "html" => Format::Html,
                "text" => Format::Text,
                _ => return Err(QueryError::Format(echo(&value))),
            });
        } else if name.eq_ignore_ascii_case("vault") {
            if vault.is_some() {
                return Err(QueryError::Repeated("vault"));
            }
            vault = Some(VaultName::parse(value.trim()).map_err(|e| QueryError::Vault(e.to_string()))?);
        } else {
            return Err(QueryError::Unknown(echo(&name)));
        }
    }
    Ok(StatusQuery {
        format: format.unwrap_or(Format::Json),
        vault,
    })
}

/// The answer to one `GET /api/status`.
pub async fn answer(source: &dyn StatusSource, query: Option<&str>, budget: Duration) -> Response {
    let query = match parse_query(query) {
        Ok(query) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let report = match source.status(query.vault.as_ref(), budget).await {
        Ok(report) => report,
        Err(e) => return error(StatusCode::NOT_FOUND, &e.to_string()),
    };
    let mut response = match query.format {
        Format::Json => Json(&report).into_response(),
        Format::Html => {
            let mut response = super::html::render(&report).into_response();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            if let Ok(policy) = HeaderValue::from_str(&super::html::content_security_policy()) {
                headers.insert(CONTENT_SECURITY_POLICY, policy);
            }
            response
        }
        Format::Text => {
            let mut response = super::table::render(&report).into_response();
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The page's address carries the function key (`code`): never send it on.
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_takes_format_vault_and_the_host_s_code() {
        assert_eq!(
            parse_query(None),
            Ok(StatusQuery {
                format: Format::Json,
                vault: None
            })
        );
        let query = parse_query(Some("FORMAT=HTML&vault=kv-one&code=secret-key")).unwrap();
        assert_eq!(query.format, Format::Html);
        assert_eq!(query.vault.unwrap().as_str(), "kv-one");
        assert_eq!(parse_query(Some("format=text")).unwrap().format, Format::Text);
    }

    #[test]
    fn anything_else_is_refused_naming_it() {
        let unknown = parse_query(Some("formt=html")).unwrap_err();
        assert_eq!(unknown, QueryError::Unknown("formt".into()));
        assert!(unknown.to_string().contains("format, vault, code"));
        assert_eq!(
            parse_query(Some("format=json&format=html")),
            Err(QueryError::Repeated("format"))
        );
        assert!(matches!(parse_query(Some("format=pdf")), Err(QueryError::Format(f)) if f == "pdf"));
        assert!(matches!(
            parse_query(Some("vault=bad_name!")),
            Err(QueryError::Vault(_))
        ));
        let hostile = parse_query(Some("x%0Aforged=1")).unwrap_err().to_string();
        assert!(!hostile.contains('\n'), "{hostile}");
    }
}
