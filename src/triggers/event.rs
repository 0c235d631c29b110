//! Key Vault events from Event Grid, in either schema (Event Grid or CloudEvents 1.0), parsed
//! leniently: keys matched case-insensitively and trimmed (`"ObjectName "`), values trimmed
//! (`" ee05…"`), `NBF`/`EXP` as numbers or numeric strings, the event given as an object, a
//! JSON string holding one, or a one-element array. What the event says is only a hint: the
//! engine trusts a fresh read from Key Vault.

use serde_json::{Map, Value};

use crate::domain::names::NameError;
use crate::domain::{SecretName, SecretVersion, VaultName};

/// The Key Vault event types keyflip distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    SecretNearExpiry,
    SecretExpired,
    SecretNewVersionCreated,
    /// Any other type (certificates, keys, access policy changes, …): acknowledged, not acted on.
    Other(String),
}

impl EventKind {
    fn parse(raw: &str) -> Self {
        match raw.trim() {
            t if t.eq_ignore_ascii_case("Microsoft.KeyVault.SecretNearExpiry") => Self::SecretNearExpiry,
            t if t.eq_ignore_ascii_case("Microsoft.KeyVault.SecretExpired") => Self::SecretExpired,
            t if t.eq_ignore_ascii_case("Microsoft.KeyVault.SecretNewVersionCreated") => {
                Self::SecretNewVersionCreated
            }
            other => Self::Other(other.to_string()),
        }
    }

    /// Whether this event asks for a rotation.
    pub fn rotates(&self) -> bool {
        matches!(self, Self::SecretNearExpiry | Self::SecretExpired)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::SecretNearExpiry => "Microsoft.KeyVault.SecretNearExpiry",
            Self::SecretExpired => "Microsoft.KeyVault.SecretExpired",
            Self::SecretNewVersionCreated => "Microsoft.KeyVault.SecretNewVersionCreated",
            Self::Other(t) => t,
        }
    }
}

/// A Key Vault event, as far as keyflip reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultEvent {
    /// The event id, for logs.
    pub id: Option<String>,
    pub kind: EventKind,
    /// The vault and secret; `None` only for events of other types that name none.
    pub target: Option<EventTarget>,
    /// `NBF`/`EXP` (unix seconds) as the event states them.
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// The secret an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTarget {
    pub vault: VaultName,
    pub secret: SecretName,
    /// The version the event was raised for.
    pub version: Option<SecretVersion>,
}

/// Why an event could not be understood (a permanent failure: retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event is not a JSON object (got {0})")]
    NotAnObject(&'static str),
    #[error("the event is an array of {0} events; one event per invocation was expected")]
    Batch(usize),
    #[error("the event has no 'eventType' (Event Grid schema) or 'type' (CloudEvents)")]
    NoType,
    #[error("the {kind} event names no vault (data.VaultName, topic or source)")]
    NoVault { kind: String },
    #[error("the {kind} event names no secret (data.ObjectName or subject)")]
    NoSecret { kind: String },
    #[error("the {kind} event is about a {object_type}, not a secret")]
    NotASecret { kind: String, object_type: String },
    #[error("the event's {field} is invalid: {source}")]
    Name { field: &'static str, source: NameError },
    #[error("the event's {field} is not a number of seconds: {value}")]
    Timestamp { field: &'static str, value: String },
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field of an object by name, ignoring case and surrounding spaces in the key.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn text<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    field(object, name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn seconds(object: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, EventError> {
    let Some(value) = field(object, name) else {
        return Ok(None);
    };
    let bad = || EventError::Timestamp {
        field: name,
        value: value.to_string(),
    };
    let number = match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f as i64))
        }
        _ => None,
    };
    number.map(Some).ok_or_else(bad)
}

/// The last path segment of a resource id or URL-like string.
fn last_segment(s: &str) -> Option<&str> {
    s.trim()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|x| !x.is_empty())
}

/// Unwraps a JSON string holding JSON (at most twice) and a one-element array.
fn unwrap_event(value: &Value) -> Result<Value, EventError> {
    let mut current = value.clone();
    for _ in 0..3 {
        match current {
            Value::String(ref s) => match serde_json::from_str::<Value>(s) {
                Ok(inner) => current = inner,
                Err(_) => return Err(EventError::NotAnObject("a string that is not JSON")),
            },
            Value::Array(ref items) if items.len() == 1 => current = items[0].clone(),
            Value::Array(ref items) => return Err(EventError::Batch(items.len())),
            Value::Object(_) => return Ok(current),
            ref other => return Err(EventError::NotAnObject(kind_of(other))),
        }
    }
    Err(EventError::NotAnObject(kind_of(&current)))
}

/// Parses one Key Vault event.
pub fn parse_event(value: &Value) -> Result<KeyVaultEvent, EventError> {
    let event = unwrap_event(value)?;
    let Value::Object(object) = &event else {
        return Err(EventError::NotAnObject(kind_of(&event)));
    };
    let kind = text(object, "eventType")
        .or_else(|| text(object, "type"))
        .map(EventKind::parse)
        .ok_or(EventError::NoType)?;
    let empty = Map::new();
    let data = field(object, "data").and_then(Value::as_object).unwrap_or(&empty);
    let nbf = seconds(data, "NBF")?;
    let exp = seconds(data, "EXP")?;
    let id = text(object, "id").map(str::to_string);

    let object_type = text(data, "ObjectType");
    let target = match target(object, data, &kind) {
        Ok(target) => Some(target),
        Err(error) if kind.rotates() || kind == EventKind::SecretNewVersionCreated => return Err(error),
        Err(_) => None,
    };
    if let Some(object_type) = object_type
        && kind.rotates()
        && !object_type.eq_ignore_ascii_case("Secret")
    {
        return Err(EventError::NotASecret {
            kind: kind.as_str().to_string(),
            object_type: object_type.to_string(),
        });
    }
    Ok(KeyVaultEvent {
        id,
        kind,
        target,
        nbf,
        exp,
    })
}

fn target(
    object: &Map<String, Value>,
    data: &Map<String, Value>,
    kind: &EventKind,
) -> Result<EventTarget, EventError> {
    let kind_text = || kind.as_str().to_string();
    let object_id = text(data, "Id");
    let vault = text(data, "VaultName")
        .or_else(|| text(object, "topic").and_then(last_segment))
        .or_else(|| text(object, "source").and_then(last_segment))
        .or_else(|| object_id.and_then(|id| id.split("//").nth(1)?.split('.').next()))
        .ok_or_else(|| EventError::NoVault { kind: kind_text() })?;
    let secret = text(data, "ObjectName")
        .or_else(|| text(object, "subject"))
        .ok_or_else(|| EventError::NoSecret { kind: kind_text() })?;
    let version = text(data, "Version").or_else(|| {
        let id = object_id?;
        let segments: Vec<&str> = id.trim_end_matches('/').rsplit('/').collect();
        (segments.len() >= 3).then(|| segments[0])
    });
    Ok(EventTarget {
        vault: VaultName::parse(vault).map_err(|source| EventError::Name {
            field: "vault name",
            source,
        })?,
        secret: SecretName::parse(secret).map_err(|source| EventError::Name {
            field: "secret name",
            source,
        })?,
        version: version
            .map(SecretVersion::parse)
            .transpose()
            .map_err(|source| EventError::Name {
                field: "version",
                source,
            })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(path: &str) -> Value {
        let full = format!("{}/tests/data/events/{path}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
    }

    fn sample_target() -> EventTarget {
        EventTarget {
            vault: VaultName::parse("sample-kv").unwrap(),
            secret: SecretName::parse("newsecret").unwrap(),
            version: Some(SecretVersion::parse("ee059b2bb5bc48398a53b168c6cdcb10").unwrap()),
        }
    }

    #[test]
    fn every_secret_event_fixture_parses_to_the_same_target() {
        let cases = [
            (
                "keyvault-secret-new-version-created.eventgrid.json",
                EventKind::SecretNewVersionCreated,
            ),
            (
                "keyvault-secret-new-version-created.cloudevent.json",
                EventKind::SecretNewVersionCreated,
            ),
            (
                "keyvault-secret-new-version-created.eventgrid.docs-array-with-typos.json",
                EventKind::SecretNewVersionCreated,
            ),
            (
                "keyvault-secret-new-version-created.cloudevent.docs-array-with-typos.json",
                EventKind::SecretNewVersionCreated,
            ),
            (
                "derived/keyvault-secret-near-expiry.eventgrid.json",
                EventKind::SecretNearExpiry,
            ),
            (
                "derived/keyvault-secret-near-expiry.cloudevent.json",
                EventKind::SecretNearExpiry,
            ),
            (
                "derived/keyvault-secret-near-expiry.eventgrid.numeric-nbf-exp.json",
                EventKind::SecretNearExpiry,
            ),
            (
                "derived/keyvault-secret-near-expiry.eventgrid.webhook-body.json",
                EventKind::SecretNearExpiry,
            ),
            (
                "derived/keyvault-secret-expired.eventgrid.json",
                EventKind::SecretExpired,
            ),
            (
                "derived/keyvault-secret-expired.cloudevent.json",
                EventKind::SecretExpired,
            ),
            (
                "derived/keyvault-secret-expired.eventgrid.webhook-body.json",
                EventKind::SecretExpired,
            ),
        ];
        for (path, kind) in cases {
            let event = parse_event(&fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(event.kind, kind, "{path}");
            assert_eq!(event.target, Some(sample_target()), "{path}");
            assert_eq!(
                (event.nbf, event.exp),
                (Some(1559081980), Some(1559082102)),
                "{path}"
            );
        }
    }

    #[test]
    fn the_invocation_envelopes_carry_the_event_as_object_or_string() {
        for path in [
            "derived/eventgrid-invocation.custom-handler.json",
            "derived/eventgrid-invocation.custom-handler.string-encoded.json",
        ] {
            let envelope = fixture(path);
            let event = parse_event(&envelope["Data"]["event"]).unwrap();
            assert_eq!(event.kind, EventKind::SecretNearExpiry, "{path}");
            assert_eq!(event.target, Some(sample_target()), "{path}");
        }
    }

    #[test]
    fn a_certificate_event_is_understood_and_does_not_rotate() {
        let event = parse_event(&fixture(
            "keyvault-certificate-near-expiry.eventgrid.thirdparty-capture.json",
        ))
        .unwrap();
        assert_eq!(
            event.kind,
            EventKind::Other("Microsoft.KeyVault.CertificateNearExpiry".into())
        );
        assert!(!event.kind.rotates());
        assert_eq!((event.nbf, event.exp), (Some(1700753990), Some(1701185990)));
    }

    #[test]
    fn camel_case_keys_and_fallbacks_work() {
        let event = parse_event(&json!({
            "eventtype": "microsoft.keyvault.secretnearexpiry",
            "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one",
            "subject": "api-key",
            "data": {"id": "https://kv-one.vault.azure.net/secrets/api-key/0123456789abcdef0123456789abcdef", "nbf": 1.5e9}
        }))
        .unwrap();
        assert_eq!(event.kind, EventKind::SecretNearExpiry);
        let target = event.target.unwrap();
        assert_eq!(
            (target.vault.as_str(), target.secret.as_str()),
            ("kv-one", "api-key")
        );
        assert_eq!(
            target.version.unwrap().as_str(),
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(event.nbf, Some(1_500_000_000));
    }

    #[test]
    fn events_that_cannot_be_understood_say_why() {
        let near = "Microsoft.KeyVault.SecretNearExpiry";
        assert_eq!(parse_event(&json!(42)), Err(EventError::NotAnObject("a number")));
        assert_eq!(
            parse_event(&json!("not json")),
            Err(EventError::NotAnObject("a string that is not JSON"))
        );
        assert_eq!(parse_event(&json!([{}, {}])), Err(EventError::Batch(2)));
        assert_eq!(parse_event(&json!({"data": {}})), Err(EventError::NoType));
        assert!(matches!(
            parse_event(&json!({"eventType": near, "subject": "s"})),
            Err(EventError::NoVault { .. })
        ));
        assert!(matches!(
            parse_event(&json!({"eventType": near, "subject": "bad_name", "data": {"VaultName": "kv-one"}})),
            Err(EventError::Name {
                field: "secret name",
                ..
            })
        ));
        assert!(matches!(
            parse_event(
                &json!({"eventType": near, "subject": "s", "data": {"VaultName": "kv-one", "EXP": "soon"}})
            ),
            Err(EventError::Timestamp { field: "EXP", .. })
        ));
        assert!(matches!(
            parse_event(
                &json!({"eventType": near, "subject": "s", "data": {"VaultName": "kv-one", "ObjectType": "Key"}})
            ),
            Err(EventError::NotASecret { .. })
        ));
    }

    #[test]
    fn other_event_types_without_a_target_are_still_understood() {
        let event =
            parse_event(&json!({"eventType": "Microsoft.KeyVault.VaultAccessPolicyChanged", "data": {}}))
                .unwrap();
        assert_eq!(event.target, None);
    }
}
