//! Error answers in the shapes the real services use.
//!
//! Key Vault, Resource Manager and the AI services data planes all answer
//! `{"error":{"code":…,"message":…}}`; Key Vault adds `innererror`. The managed-identity endpoint
//! answers `{"statusCode":…,"message":…}`. Each service builds an [`AzureError`] and the server
//! renders it with the headers the service sends.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One error answer: status, `error.code`, `error.message`, an optional `innererror.code` and
/// extra headers (e.g. `WWW-Authenticate`, `Retry-After`).
#[derive(Debug, Clone)]
pub struct AzureError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub inner_code: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
}

impl AzureError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            inner_code: None,
            headers: Vec::new(),
        }
    }

    pub fn with_inner(mut self, inner_code: impl Into<String>) -> Self {
        self.inner_code = Some(inner_code.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON body: `{"error":{"code","message"[,"innererror":{"code"}]}}`.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(inner) = &self.inner_code {
            error["innererror"] = json!({ "code": inner });
        }
        json!({ "error": error })
    }
}

impl IntoResponse for AzureError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self.body());
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.headers_mut().append(name.clone(), value);
            }
        }
        response
    }
}

/// A JSON answer with `Content-Type: application/json; charset=utf-8`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        body.to_string(),
    )
        .into_response()
}

/// The reason phrase used as a default error code for an injected status (`TooManyRequests`).
pub fn default_code(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("Error")
        .split_whitespace()
        .collect()
}
