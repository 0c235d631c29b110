//! The Azure Functions custom-handler envelope (reference/functions-and-event-grid.md §1.4,
//! §1.8): the host POSTs `{"Data":{<binding>:…},"Metadata":{…}}` to `/<FunctionName>` and reads
//! back `{"Outputs":{},"Logs":[…],"ReturnValue":…}` with a status code that decides whether the
//! invocation failed (any non-2xx does).
//!
//! This module owns only the shape: parsing a body into an [`Invocation`] (keys matched
//! case-insensitively), building an [`InvocationResponse`], and turning a [`Reply`] or a
//! [`NotAnEnvelope`] into an HTTP response. It does not log and knows no trigger; the trigger
//! modules (`keyvault_events`, `sweep`) call it. Forwarded HTTP functions (`manual`) do not use
//! it: the host forwards their raw request.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// A body that is not a custom-handler envelope (not JSON, or no `Data` object). It cannot come
/// from the Functions host, so it is the one case answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a custom-handler envelope: {0}")]
pub struct NotAnEnvelope(pub String);

impl IntoResponse for NotAnEnvelope {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// One invocation as the host sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// One entry per input binding, named as in function.json (`event`, `timer`).
    pub data: Map<String, Value>,
    /// The trigger's binding data (`sys`, `RetryContext`, …); `Null` when absent.
    pub metadata: Value,
}

impl Invocation {
    /// Parses a request body; `Data` and `Metadata` are matched case-insensitively.
    pub fn parse(body: &[u8]) -> Result<Self, NotAnEnvelope> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| NotAnEnvelope(format!("the body is not JSON ({e})")))?;
        let Value::Object(mut top) = value else {
            return Err(NotAnEnvelope("the body is not a JSON object".into()));
        };
        let data = match take(&mut top, "Data") {
            Some(Value::Object(data)) => data,
            Some(_) => return Err(NotAnEnvelope("'Data' is not a JSON object".into())),
            None => return Err(NotAnEnvelope("the body has no 'Data' object".into())),
        };
        let metadata = take(&mut top, "Metadata").unwrap_or(Value::Null);
        Ok(Self { data, metadata })
    }

    /// The value of an input binding, by name (case-insensitive).
    pub fn binding(&self, name: &str) -> Option<&Value> {
        field(&self.data, name)
    }

    /// A top-level entry of `Metadata`, by name (case-insensitive).
    pub fn metadata_field(&self, name: &str) -> Option<&Value> {
        self.metadata.as_object().and_then(|m| field(m, name))
    }
}

/// A field of a JSON object by name, ignoring case and surrounding spaces in the key; `null`
/// counts as absent.
pub fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn take(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = object
        .keys()
        .find(|k| k.trim().eq_ignore_ascii_case(name))?
        .clone();
    object.remove(&key).filter(|v| !v.is_null())
}

/// The body the handler answers for a non-HTTP invocation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvocationResponse {
    /// Output bindings; keyflip's functions have none.
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Lines the host writes to the invocation log (Application Insights).
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// The structured result.
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl InvocationResponse {
    /// A response carrying `result` as its `ReturnValue` and these log lines.
    pub fn new(result: &impl Serialize, logs: Vec<String>) -> Self {
        let return_value = serde_json::to_value(result)
            .unwrap_or_else(|e| json!({ "error": format!("the result could not be serialized: {e}") }));
        Self {
            outputs: Map::new(),
            logs,
            return_value,
        }
    }
}

/// A status code and an envelope body: what a trigger answers the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: InvocationResponse,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let full = format!("{}/tests/data/events/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap()
    }

    #[test]
    fn the_fixture_envelopes_parse() {
        for (path, binding, has_sys) in [
            ("derived/eventgrid-invocation.custom-handler.json", "event", true),
            (
                "derived/eventgrid-invocation.custom-handler.string-encoded.json",
                "event",
                true,
            ),
            ("derived/timer-invocation.custom-handler.json", "timer", true),
            (
                "derived/timer-invocation.custom-handler.no-monitor.json",
                "timer",
                true,
            ),
            (
                "derived/timer-invocation.custom-handler.retry.json",
                "timer",
                true,
            ),
            ("queue-invocation.custom-handler.docs.json", "myQueueItem", true),
            ("http-invocation.custom-handler.docs.json", "req", false),
        ] {
            let invocation = Invocation::parse(&fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(invocation.binding(binding).is_some(), "{path}");
            assert_eq!(invocation.metadata_field("sys").is_some(), has_sys, "{path}");
        }
    }

    #[test]
    fn keys_match_case_insensitively() {
        let invocation =
            Invocation::parse(br#"{"data": {"Timer": {"isPastDue": true}}, "metadata": {"SYS": {}}}"#)
                .unwrap();
        assert_eq!(invocation.binding("timer"), Some(&json!({"isPastDue": true})));
        assert!(invocation.metadata_field("sys").is_some());
        let no_metadata = Invocation::parse(br#"{"Data": {}}"#).unwrap();
        assert_eq!(no_metadata.metadata, Value::Null);
    }

    #[test]
    fn bodies_that_are_not_envelopes_say_why() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "not JSON"),
            (b"hello", "not JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"Metadata": {}}"#, "no 'Data' object"),
            (br#"{"Data": null}"#, "no 'Data' object"),
            (br#"{"Data": "x"}"#, "'Data' is not a JSON object"),
        ];
        for (body, reason) in cases {
            let error = Invocation::parse(body).unwrap_err();
            assert!(error.to_string().contains(reason), "{error}");
            assert!(error.to_string().starts_with("not a custom-handler envelope"));
        }
    }

    #[test]
    fn the_response_has_the_host_shape() {
        let body = InvocationResponse::new(&json!({"outcome": "rotated"}), vec!["done".into()]);
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"Outputs": {}, "Logs": ["done"], "ReturnValue": {"outcome": "rotated"}})
        );
    }
}
