//! Key Vault events from Event Grid, in either schema (Event Grid or CloudEvents 1.0), parsed
//! leniently: keys matched case-insensitively and trimmed (`"ObjectName "`), values trimmed
//! (`" ee05…"`), `NBF`/`EXP` as numbers or numeric strings, the event given as an object, a
//! JSON string holding one, or a one-element array. What the event says is only a hint: the
//! engine trusts a fresh read from Key Vault.
//!
//! Leniency is about spelling, never about meaning. An event that asks for a rotation is
//! refused when the places that name its vault (`data.VaultName`, the host of `data.Id`, the
//! vault segment of `topic`/`source`) or its secret (`data.ObjectName`, the path of `data.Id`,
//! `subject`) disagree, compared case-insensitively, and when no secret version can be read
//! from it (`data.Version` or `data.Id`): without a version, keyflip could not tell a stale
//! redelivery from a fresh event. [`clues`] reads what it can of a refused event, so its answer
//! still says which event and which secret it was about.

use serde_json::{Map, Value};

use crate::domain::names::NameError;
use crate::domain::untrusted::echo;
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
    #[error("the event's {field} is not a number of seconds: {}", echo(value))]
    Timestamp { field: &'static str, value: String },
    #[error("the event's sources disagree on the {what}: {}", echo(sources))]
    Disagree { what: &'static str, sources: String },
    #[error(
        "the {kind} event names no secret version (data.Version or the version in data.Id): keyflip cannot tell a stale redelivery from a fresh event without it"
    )]
    NoVersion { kind: String },
    #[error("the event's data.Id '{}' is not a Key Vault secret URL (https://<vault>.vault.azure.net/secrets/<name>/<version>)", echo(.0))]
    BadId(String),
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

/// The vault, secret and version `data.Id` names (`https://<vault>.<suffix>/secrets/<name>[/<version>]`).
#[derive(Debug, Default)]
struct SecretId<'a> {
    vault: Option<&'a str>,
    name: Option<&'a str>,
    version: Option<&'a str>,
}

fn parse_secret_id(raw: &str) -> Option<SecretId<'_>> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("HTTPS://"))?;
    let (host, path) = rest.split_once('/')?;
    let vault = host.split('.').next().filter(|v| !v.is_empty())?;
    let mut segments = path.trim_end_matches('/').split('/');
    if !segments.next()?.eq_ignore_ascii_case("secrets") {
        return None;
    }
    let name = segments.next().filter(|n| !n.is_empty())?;
    let version = segments.next().filter(|v| !v.is_empty());
    segments.next().is_none().then_some(SecretId {
        vault: Some(vault),
        name: Some(name),
        version,
    })
}

/// The vault a Key Vault topic or CloudEvents source names: `…/providers/Microsoft.KeyVault/vaults/<name>`.
fn topic_vault(topic: &str) -> Option<&str> {
    let mut segments = topic.trim_end_matches('/').rsplit('/');
    let name = segments.next().filter(|n| !n.is_empty())?;
    segments
        .next()
        .is_some_and(|s| s.eq_ignore_ascii_case("vaults"))
        .then_some(name)
}

/// The one value every source that states one agrees on (case-insensitively), if any states one.
fn agree<'a>(what: &'static str, sources: &[(&str, Option<&'a str>)]) -> Result<Option<&'a str>, EventError> {
    let stated: Vec<(&str, &str)> = sources
        .iter()
        .filter_map(|(source, value)| value.map(|v| (*source, v.trim())))
        .collect();
    let Some((_, first)) = stated.first() else {
        return Ok(None);
    };
    if stated.iter().all(|(_, v)| v.eq_ignore_ascii_case(first)) {
        return Ok(Some(first));
    }
    let listed: Vec<String> = stated.iter().map(|(s, v)| format!("{s} says '{v}'")).collect();
    Err(EventError::Disagree {
        what,
        sources: listed.join(", "),
    })
}

fn target(
    object: &Map<String, Value>,
    data: &Map<String, Value>,
    kind: &EventKind,
) -> Result<EventTarget, EventError> {
    let kind_text = || kind.as_str().to_string();
    let id = match text(data, "Id") {
        Some(raw) => parse_secret_id(raw).ok_or_else(|| EventError::BadId(raw.to_string()))?,
        None => SecretId::default(),
    };
    let vault = agree(
        "vault",
        &[
            ("data.VaultName", text(data, "VaultName")),
            ("data.Id", id.vault),
            ("topic", text(object, "topic").and_then(topic_vault)),
            ("source", text(object, "source").and_then(topic_vault)),
        ],
    )?
    .ok_or_else(|| EventError::NoVault { kind: kind_text() })?;
    let secret = agree(
        "secret",
        &[
            ("data.ObjectName", text(data, "ObjectName")),
            ("data.Id", id.name),
            ("subject", text(object, "subject")),
        ],
    )?
    .ok_or_else(|| EventError::NoSecret { kind: kind_text() })?;
    let version = agree(
        "version",
        &[("data.Version", text(data, "Version")), ("data.Id", id.version)],
    )?;
    let vault = VaultName::parse(vault).map_err(|source| EventError::Name {
        field: "vault name",
        source,
    })?;
    let secret = SecretName::parse(secret).map_err(|source| EventError::Name {
        field: "secret name",
        source,
    })?;
    if version.is_none() && kind.rotates() {
        return Err(EventError::NoVersion { kind: kind_text() });
    }
    Ok(EventTarget {
        vault,
        secret,
        version: version
            .map(SecretVersion::parse)
            .transpose()
            .map_err(|source| EventError::Name {
                field: "version",
                source,
            })?,
    })
}

/// What could be read of an event, whatever else is wrong with it: for the answer and the log
/// line of a refused event. Every value is echoed safely (cut, control characters escaped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventClues {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub vault: Option<String>,
    pub secret: Option<String>,
}

impl EventClues {
    /// `<type> event <id> for <vault>/<secret>`, with what is known (`event` at the least).
    pub fn describe(&self) -> String {
        let mut about = match &self.kind {
            Some(kind) => format!("{kind} event"),
            None => "event".to_string(),
        };
        if let Some(id) = &self.id {
            about.push_str(&format!(" {id}"));
        }
        match (&self.vault, &self.secret) {
            (Some(v), Some(s)) => about.push_str(&format!(" for {v}/{s}")),
            (Some(v), None) => about.push_str(&format!(" for vault {v}")),
            (None, Some(s)) => about.push_str(&format!(" for secret {s}")),
            (None, None) => {}
        }
        about
    }
}

/// Reads the id, type, vault and secret of an event as far as they can be read.
pub fn clues(value: &Value) -> EventClues {
    let Ok(Value::Object(object)) = unwrap_event(value) else {
        return EventClues::default();
    };
    let empty = Map::new();
    let data = field(&object, "data")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let id = text(data, "Id").and_then(parse_secret_id).unwrap_or_default();
    let shown = |v: Option<&str>| v.map(echo);
    EventClues {
        id: shown(text(&object, "id")),
        kind: shown(text(&object, "eventType").or_else(|| text(&object, "type"))),
        vault: shown(
            text(data, "VaultName")
                .or(id.vault)
                .or_else(|| text(&object, "topic").and_then(topic_vault))
                .or_else(|| text(&object, "source").and_then(topic_vault)),
        ),
        secret: shown(
            text(data, "ObjectName")
                .or(id.name)
                .or_else(|| text(&object, "subject")),
        ),
    }
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
                &json!({"eventType": near, "subject": "s", "data": {"VaultName": "kv-one", "ObjectType": "Key", "Version": V}})
            ),
            Err(EventError::NotASecret { .. })
        ));
    }

    const V: &str = "0123456789abcdef0123456789abcdef";

    /// A SecretNearExpiry event whose every source agrees: kv-one/api-key, version [`V`].
    fn agreeing() -> Value {
        json!({
            "id": "evt-1",
            "eventType": "Microsoft.KeyVault.SecretNearExpiry",
            "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one",
            "subject": "api-key",
            "data": {
                "Id": format!("https://kv-one.vault.azure.net/secrets/api-key/{V}"),
                "VaultName": "kv-one", "ObjectType": "Secret", "ObjectName": "api-key", "Version": V
            }
        })
    }

    fn with(mut event: Value, pointer: &str, value: Value) -> Value {
        *event.pointer_mut(pointer).unwrap() = value;
        event
    }

    #[test]
    fn sources_that_agree_in_any_case_are_believed() {
        let event = with(agreeing(), "/data/VaultName", json!("KV-One"));
        let event = with(event, "/subject", json!("API-KEY"));
        let target = parse_event(&event).unwrap().target.unwrap();
        assert_eq!(
            (target.vault.as_str(), target.secret.as_str()),
            ("kv-one", "api-key")
        );
        assert_eq!(target.version.unwrap().as_str(), V);
    }

    #[test]
    fn an_event_whose_vault_sources_disagree_is_refused() {
        let other_id = json!(format!("https://kv-other.vault.azure.net/secrets/api-key/{V}"));
        let other_topic =
            json!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-other");
        for (pointer, value) in [
            ("/data/Id", other_id),
            ("/data/VaultName", json!("kv-other")),
            ("/topic", other_topic),
        ] {
            let error = parse_event(&with(agreeing(), pointer, value)).unwrap_err();
            assert!(
                matches!(error, EventError::Disagree { what: "vault", .. }),
                "{pointer}: {error}"
            );
            assert!(error.to_string().contains("kv-other"), "{error}");
        }
        let cloud = json!({
            "id": "evt-2", "type": "Microsoft.KeyVault.SecretExpired", "subject": "api-key",
            "source": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-other",
            "data": {"VaultName": "kv-one", "ObjectName": "api-key", "Version": V}
        });
        assert!(matches!(
            parse_event(&cloud),
            Err(EventError::Disagree { what: "vault", .. })
        ));
    }

    #[test]
    fn an_event_whose_secret_or_version_sources_disagree_is_refused() {
        let other_id = json!(format!("https://kv-one.vault.azure.net/secrets/other-key/{V}"));
        for (pointer, value) in [
            ("/data/Id", other_id),
            ("/data/ObjectName", json!("other-key")),
            ("/subject", json!("other-key")),
        ] {
            let error = parse_event(&with(agreeing(), pointer, value)).unwrap_err();
            assert!(
                matches!(error, EventError::Disagree { what: "secret", .. }),
                "{pointer}: {error}"
            );
        }
        let error = parse_event(&with(
            agreeing(),
            "/data/Version",
            json!("ffffffffffffffffffffffffffffffff"),
        ))
        .unwrap_err();
        assert!(
            matches!(error, EventError::Disagree { what: "version", .. }),
            "{error}"
        );
    }

    #[test]
    fn an_event_from_which_no_version_can_be_read_is_refused() {
        let mut event = agreeing();
        event.as_object_mut().unwrap().remove("data");
        assert!(matches!(parse_event(&event), Err(EventError::NoVersion { .. })));
        let event = with(
            agreeing(),
            "/data",
            json!({"VaultName": "kv-one", "ObjectName": "api-key"}),
        );
        assert!(matches!(parse_event(&event), Err(EventError::NoVersion { .. })));
        // The version in data.Id alone is enough.
        let event = with(
            agreeing(),
            "/data",
            json!({"Id": format!("https://kv-one.vault.azure.net/secrets/api-key/{V}")}),
        );
        assert_eq!(
            parse_event(&event)
                .unwrap()
                .target
                .unwrap()
                .version
                .unwrap()
                .as_str(),
            V
        );
        // An event that does not rotate needs none.
        let event = json!({"eventType": "Microsoft.KeyVault.SecretNewVersionCreated", "subject": "api-key",
            "data": {"VaultName": "kv-one"}});
        assert!(parse_event(&event).unwrap().target.unwrap().version.is_none());
    }

    #[test]
    fn a_data_id_that_is_not_a_secret_url_is_refused() {
        for id in [
            "kv-one",
            "https://kv-one.vault.azure.net/keys/api-key/v",
            "https://kv-one.vault.azure.net/secrets/api-key/v/extra",
            "http://kv-one.vault.azure.net/secrets/api-key",
        ] {
            let error = parse_event(&with(agreeing(), "/data/Id", json!(id))).unwrap_err();
            assert!(matches!(error, EventError::BadId(_)), "{id}: {error}");
        }
    }

    #[test]
    fn a_refused_event_still_says_which_event_and_secret_it_was_about() {
        let event = with(agreeing(), "/data/Version", json!("not-a-version"));
        let event = with(
            event,
            "/data/Id",
            json!("https://kv-one.vault.azure.net/secrets/api-key"),
        );
        assert!(parse_event(&event).is_err());
        assert_eq!(
            clues(&event).describe(),
            "Microsoft.KeyVault.SecretNearExpiry event evt-1 for kv-one/api-key"
        );
        let hostile = json!({"id": format!("x\n{}", "y".repeat(1000)), "eventType": 7});
        let shown = clues(&hostile).describe();
        assert!(!shown.contains('\n') && shown.len() < 300, "{shown}");
        assert_eq!(clues(&json!(42)).describe(), "event");
    }

    #[test]
    fn other_event_types_without_a_target_are_still_understood() {
        let event =
            parse_event(&json!({"eventType": "Microsoft.KeyVault.VaultAccessPolicyChanged", "data": {}}))
                .unwrap();
        assert_eq!(event.target, None);
    }
}
