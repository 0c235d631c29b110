//! The queue-trigger side of the custom-handler envelope (reference/queues-flex-and-limits.md
//! §1.2), shared by `SweepVault` and `KeyVaultEventsQueue`, and the queue names and binding
//! names their `function.json` files use.
//!
//! What the host sends for a `queueTrigger` binding `message`: `Data.message` is a JSON string
//! holding a JSON string literal (double-encoded: a message `{"a":1}` arrives as
//! `"\"{\\\"a\\\":1}\""`; the docs' older sample is single-encoded, and both are read), and the
//! metadata (`DequeueCount`, `Id`, `InsertionTime`, …) are strings, some with their own quotes.
//! host.json sets `messageEncoding: none`, so the text reaches the handler as it was enqueued:
//! a message written as base64 (Event Grid's Storage-queue delivery writes base64 today; it
//! wrote plain JSON before) is decoded here when it is not JSON but base64 of JSON. With the
//! host's default `base64` a plain-JSON message from Event Grid would fail binding on every
//! dequeue and land in the poison queue without reaching keyflip.
//!
//! This module only reads: it does not log and decides nothing. An unreadable message is
//! still returned (as the text it is) so that the trigger can answer it as a permanent
//! failure, naming what was wrong.

use serde_json::Value;

use super::envelope::Invocation;

/// The queue-trigger binding name in both queue functions' `function.json`.
pub const BINDING: &str = "message";

/// The queue the timer fans out to (its output binding) and SweepVault reads.
pub const SWEEP_QUEUE: &str = "keyflip-sweep";

/// The queue Event Grid delivers Key Vault events to (queue delivery) and KeyVaultEventsQueue
/// reads.
pub const EVENTS_QUEUE: &str = "keyflip-events";

/// The largest message text read (Storage's limit is 64 KiB per message).
const MAX_TEXT: usize = 64 * 1024;

/// One queue message as the host delivered it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    /// The message's content: a JSON value when the text (or its base64 decoding) is JSON,
    /// else the text itself as a JSON string.
    pub payload: Value,
    /// How the text was encoded.
    pub encoding: Encoding,
    /// `Metadata.DequeueCount`: 1 on the first delivery.
    pub dequeue_count: Option<u64>,
    /// `Metadata.Id`, unquoted: for logs.
    pub id: Option<String>,
}

/// How a message's text was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON as it is.
    Json,
    /// Base64 of JSON.
    Base64,
    /// Neither: `payload` is the text as a string.
    Unreadable,
    /// The invocation had no message at all (`payload` is null).
    Missing,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Base64 => "base64",
            Self::Unreadable => "unreadable",
            Self::Missing => "missing",
        }
    }
}

/// Reads the queue message of an invocation: the `message` binding, or the only binding
/// there is.
pub fn message(invocation: &Invocation) -> QueueMessage {
    let value = invocation
        .binding(BINDING)
        .or_else(|| match invocation.data.len() {
            1 => invocation.data.values().next().filter(|v| !v.is_null()),
            _ => None,
        });
    let (payload, encoding) = match value {
        None => (Value::Null, Encoding::Missing),
        Some(Value::String(raw)) => decode_text(&host_text(raw)),
        // Not what the host sends for a queueTrigger, but an object is a message already.
        Some(other) => (other.clone(), Encoding::Json),
    };
    QueueMessage {
        payload,
        encoding,
        dequeue_count: invocation.metadata_field("DequeueCount").and_then(count),
        id: invocation
            .metadata_field("Id")
            .and_then(Value::as_str)
            .map(|s| unquote(s).chars().take(64).collect()),
    }
}

/// Undoes the host's own string encoding: a string that is a JSON string literal is the
/// message text serialized once more (`JsonConvert.SerializeObject`).
fn host_text(raw: &str) -> String {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(inner)) => inner,
        _ => raw.to_string(),
    }
}

/// The message text as JSON, or base64 of JSON, or neither.
pub fn decode_text(text: &str) -> (Value, Encoding) {
    let trimmed = text.trim();
    if trimmed.len() > MAX_TEXT {
        return (
            Value::String(format!("a message of {} bytes", trimmed.len())),
            Encoding::Unreadable,
        );
    }
    if let Ok(value) = serde_json::from_str::<Value>(trimmed)
        && !value.is_string()
    {
        return (value, Encoding::Json);
    }
    if let Ok(bytes) = azure_core::base64::decode(trimmed)
        && let Ok(decoded) = String::from_utf8(bytes)
        && let Ok(value) = serde_json::from_str::<Value>(decoded.trim())
    {
        // Base64 of a JSON string literal is read as that string's content again, once.
        return match value {
            Value::String(inner) => match serde_json::from_str::<Value>(&inner) {
                Ok(value) if !value.is_string() => (value, Encoding::Base64),
                _ => (Value::String(inner), Encoding::Unreadable),
            },
            value => (value, Encoding::Base64),
        };
    }
    (Value::String(trimmed.to_string()), Encoding::Unreadable)
}

/// A count given as a number or a numeric string (with or without its own quotes).
fn count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => unquote(s).trim().parse().ok(),
        _ => None,
    }
}

/// A string without one level of JSON string quoting (`"\"800ae…\""` → `800ae…`).
fn unquote(s: &str) -> String {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::String(inner)) => inner,
        _ => s.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fixture(path: &str) -> Invocation {
        let full = format!("{}/tests/data/events/{path}", env!("CARGO_MANIFEST_DIR"));
        Invocation::parse(&std::fs::read(&full).unwrap()).unwrap()
    }

    fn envelope(data: Value, metadata: Value) -> Invocation {
        Invocation::parse(
            json!({"Data": {"message": data}, "Metadata": metadata})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn the_host_code_fixture_is_read_double_encoded_with_string_metadata() {
        let message = message(&fixture("derived/queue-invocation.custom-handler.host-code.json"));
        assert_eq!(
            message.payload,
            json!({"vault": "kv-team-a", "secret": "aoai-key"})
        );
        assert_eq!(message.encoding, Encoding::Json);
        assert_eq!(message.dequeue_count, Some(1));
        assert_eq!(
            message.id.as_deref(),
            Some("800ae4b3-bdd2-4c08-badd-f08e5a34b865")
        );
    }

    #[test]
    fn the_docs_fixture_is_read_single_encoded_with_numbers() {
        // `{ message: "Message sent" }` is not JSON: read as unreadable text, metadata intact.
        let message = message(&fixture("queue-invocation.custom-handler.docs.json"));
        assert_eq!(message.encoding, Encoding::Unreadable);
        assert_eq!(message.dequeue_count, Some(1));
        assert_eq!(
            message.id.as_deref(),
            Some("800ae4b3-bdd2-4c08-badd-f08e5a34b865")
        );
    }

    #[test]
    fn plain_and_base64_json_decode_to_the_same_payload() {
        let event = json!({"eventType": "Microsoft.KeyVault.SecretNearExpiry", "data": {"VaultName": "kv"}});
        let text = event.to_string();
        let base64 = azure_core::base64::encode(text.as_bytes());
        for raw in [
            text.clone(),
            serde_json::to_string(&text).unwrap(),
            base64.clone(),
            serde_json::to_string(&base64).unwrap(),
        ] {
            let read = message(&envelope(Value::String(raw.clone()), json!({})));
            assert_eq!(read.payload, event, "{raw}");
        }
        assert_eq!(decode_text(&base64).1, Encoding::Base64);
        assert_eq!(decode_text(&text).1, Encoding::Json);
    }

    #[test]
    fn what_is_neither_stays_text() {
        for raw in ["hello", "", "aGVsbG8=", "\"just a string\"", "{not json"] {
            let (payload, encoding) = decode_text(raw);
            assert_eq!(encoding, Encoding::Unreadable, "{raw}");
            assert!(payload.is_string(), "{raw}");
        }
        let huge = "x".repeat(MAX_TEXT + 1);
        assert_eq!(decode_text(&huge).1, Encoding::Unreadable);
        let none = Invocation::parse(br#"{"Data": {}}"#).unwrap();
        assert_eq!(message(&none).encoding, Encoding::Missing);
    }

    #[test]
    fn metadata_counts_are_numbers_or_strings() {
        for (value, expected) in [
            (json!(3), Some(3)),
            (json!("4"), Some(4)),
            (json!("\"5\""), Some(5)),
            (json!("x"), None),
        ] {
            let read = message(&envelope(json!("{}"), json!({"DequeueCount": value})));
            assert_eq!(read.dequeue_count, expected, "{value}");
        }
    }
}
