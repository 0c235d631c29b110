//! `POST /KeyVaultEvents`: one Key Vault event per invocation, delivered by Event Grid through
//! the Functions host's `eventGridTrigger` (binding `event`).
//!
//! `SecretNearExpiry` and `SecretExpired` become a [`RotationRequest`] for the event's vault,
//! secret and version; every other event type is acknowledged (`skipped:ignored`). Answers
//! follow DESIGN.md §4's failure semantics, because any non-2xx answer makes Event Grid redeliver
//! the event for up to 24 hours:
//!
//! | case | status | `ReturnValue.outcome` |
//! |---|---|---|
//! | body is not an envelope | 400 | — (`{"error": …}`) |
//! | event cannot be understood | 200 | `failed:bad-event` |
//! | vault not in KEYFLIP_VAULTS (checked before any network call) | 200 | `failed:not-allowed` |
//! | event type that does not rotate | 200 | `skipped:ignored` |
//! | engine result, class Success or Permanent | 200 | the engine's |
//! | engine result, class Transient | 500 (envelope still present) | the engine's |
//!
//! Parsing the event itself is `triggers::event`'s job; this module decides, calls the engine
//! through [`Rotator`] and maps the result. The engine logs the rotations it runs; this module
//! logs only what it decides itself (ignored, bad or refused events).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;

use axum::http::StatusCode;

use super::Rotator;
use super::envelope::{Invocation, InvocationResponse, NotAnEnvelope, Reply};
use super::event::{KeyVaultEvent, clues, parse_event};
use crate::domain::VaultName;
use crate::engine::log_events;
use crate::engine::{Class, FailReason, Outcome, RotationRequest, RotationResult, SkipReason, TriggerKind};

/// The function's name: its folder under `functions/` and its route on the handler.
pub const FUNCTION: &str = "KeyVaultEvents";

/// The trigger's binding name in `functions/KeyVaultEvents/function.json`.
pub const BINDING: &str = "event";

/// What one event asks for.
#[derive(Debug, Clone)]
pub enum Decision {
    /// A rotation for the engine.
    Rotate(RotationRequest),
    /// An answer given without the engine: ignored, bad or refused events.
    Answer(RotationResult),
}

/// An event understood as far as the trigger needs, with a description for logs.
#[derive(Debug, Clone)]
pub struct EventPlan {
    /// `<event type> event <id> for <vault>/<secret>`: no values, safe to log.
    pub about: String,
    pub decision: Decision,
}

/// Decides what an invocation asks for. Pure: `serves` is the vault allow-list
/// (KEYFLIP_VAULTS), consulted before anything touches the network.
pub fn decide(invocation: &Invocation, budget: Duration, serves: &dyn Fn(&VaultName) -> bool) -> EventPlan {
    let answered = |about: String, vault: &str, secret: &str, outcome, message| EventPlan {
        about,
        decision: Decision::Answer(answer(vault, secret, outcome, message)),
    };
    let bad_event = Outcome::Failed(FailReason::BadEvent);
    let Some(value) = event_value(invocation) else {
        let message =
            format!("the invocation's Data has no '{BINDING}' binding; the event cannot be understood");
        return answered(
            "an invocation without an event".into(),
            "",
            "",
            bad_event,
            message,
        );
    };
    let event = match parse_event(value) {
        Ok(event) => event,
        Err(error) => {
            let clues = clues(value);
            let about = clues.describe();
            let message = format!("the {about} cannot be understood, so keyflip does nothing: {error}");
            return answered(
                about,
                clues.vault.as_deref().unwrap_or_default(),
                clues.secret.as_deref().unwrap_or_default(),
                bad_event,
                message,
            );
        }
    };
    let about = describe(&event);
    let kind = event.kind.as_str();
    let Some(target) = event.target.as_ref() else {
        let (outcome, message) = if event.kind.rotates() {
            (bad_event, format!("the {kind} event names no secret"))
        } else {
            (Outcome::Skipped(SkipReason::Ignored), ignored(kind))
        };
        return answered(about, "", "", outcome, message);
    };
    let (vault, secret) = (target.vault.as_str(), target.secret.as_str());
    if !event.kind.rotates() {
        return answered(
            about,
            vault,
            secret,
            Outcome::Skipped(SkipReason::Ignored),
            ignored(kind),
        );
    }
    if !serves(&target.vault) {
        let message = format!(
            "vault '{vault}' is not one keyflip serves; add it to KEYFLIP_VAULTS or remove this event subscription"
        );
        return answered(
            about,
            vault,
            secret,
            Outcome::Failed(FailReason::NotAllowed),
            message,
        );
    }
    EventPlan {
        about,
        decision: Decision::Rotate(RotationRequest {
            revoke_active: false,
            vault: target.vault.clone(),
            secret: target.secret.clone(),
            trigger: TriggerKind::Event,
            event_version: target.version.clone(),
            dry_run: false,
            force: false,
            budget,
            index_wait: None,
        }),
    }
}

fn ignored(kind: &str) -> String {
    format!("{kind} events do not ask for a rotation; acknowledged")
}

/// The event value of the invocation: the `event` binding, or the only binding there is.
fn event_value(invocation: &Invocation) -> Option<&serde_json::Value> {
    invocation
        .binding(BINDING)
        .or_else(|| match invocation.data.len() {
            1 => invocation.data.values().next().filter(|v| !v.is_null()),
            _ => None,
        })
}

fn describe(event: &KeyVaultEvent) -> String {
    let id = event.id.as_deref().unwrap_or("without id");
    match &event.target {
        Some(t) => format!("{} event {id} for {}/{}", event.kind.as_str(), t.vault, t.secret),
        None => format!("{} event {id}", event.kind.as_str()),
    }
}

/// A result for an event answered without the engine.
fn answer(vault: &str, secret: &str, outcome: Outcome, message: String) -> RotationResult {
    RotationResult::without_rotation(vault, secret, TriggerKind::Event, outcome, message)
}

/// Maps a result to the host's answer by its class: Success and Permanent → 200 (retrying a
/// permanent failure cannot help), Transient → 500 so that Event Grid redelivers.
pub fn reply(result: &RotationResult) -> Reply {
    reply_with(result, " (transient: Event Grid redelivers)")
}

/// [`reply`] with the note a transient failure's log line carries (who retries).
pub(crate) fn reply_with(result: &RotationResult, transient_note: &str) -> Reply {
    let (status, note) = match result.outcome.class() {
        Class::Success => (StatusCode::OK, ""),
        Class::Permanent => (StatusCode::OK, " (permanent: acknowledged, not retried)"),
        Class::Transient => (StatusCode::INTERNAL_SERVER_ERROR, transient_note),
    };
    let line = format!("{}{note}", log_line(result));
    Reply {
        status,
        body: InvocationResponse::new(result, vec![line]),
    }
}

/// `<outcome> <vault>/<secret>: <message>`, or without the secret when the event named none.
pub(crate) fn log_line(result: &RotationResult) -> String {
    let outcome = result.outcome.label();
    if result.vault.is_empty() && result.secret.is_empty() {
        format!("{outcome}: {}", result.message)
    } else {
        format!("{outcome} {}/{}: {}", result.vault, result.secret, result.message)
    }
}

/// Handles one invocation: parse, decide, rotate if asked, answer. Runs inside the invocation's
/// span (see `server`).
pub async fn handle(
    rotator: Arc<dyn Rotator>,
    budget: Duration,
    body: Bytes,
) -> Result<Reply, NotAnEnvelope> {
    let invocation = Invocation::parse(&body)?;
    let result = run(rotator, &invocation, budget).await;
    Ok(reply(&result))
}

/// Decides what an event invocation asks for and carries it out: the one path for events
/// pushed by Event Grid and events read from the queue (`keyvault_events_queue`).
pub(crate) async fn run(
    rotator: Arc<dyn Rotator>,
    invocation: &Invocation,
    budget: Duration,
) -> RotationResult {
    let plan = decide(invocation, budget, &|vault| rotator.serves(vault));
    match plan.decision {
        Decision::Rotate(request) => {
            tracing::info!(about = %plan.about, "rotating for the event");
            rotator.rotate(request).await
        }
        Decision::Answer(result) => {
            tracing::info_span!("event", about = %plan.about)
                .in_scope(|| log_events::rotation_ended(&result, None));
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::engine::SkipReason;

    const VERSION: &str = "ee059b2bb5bc48398a53b168c6cdcb10";
    const BUDGET: Duration = Duration::from_secs(20);

    fn fixture(path: &str) -> Value {
        let full = format!("{}/tests/data/events/{path}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
    }

    fn envelope_of(event: Value) -> Invocation {
        Invocation::parse(
            json!({"Data": {"event": event}, "Metadata": {}})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    fn invocation(path: &str) -> Invocation {
        Invocation::parse(fixture(path).to_string().as_bytes()).unwrap()
    }

    fn serves_sample(vault: &VaultName) -> bool {
        vault.as_str() == "sample-kv"
    }

    fn answered(plan: EventPlan) -> RotationResult {
        match plan.decision {
            Decision::Answer(result) => result,
            Decision::Rotate(request) => panic!("expected an answer, got {request:?}"),
        }
    }

    #[test]
    fn near_expiry_envelopes_become_a_request_object_or_string() {
        for path in [
            "derived/eventgrid-invocation.custom-handler.json",
            "derived/eventgrid-invocation.custom-handler.string-encoded.json",
        ] {
            let plan = decide(&invocation(path), BUDGET, &serves_sample);
            let Decision::Rotate(request) = plan.decision else {
                panic!("{path}: {:?}", plan.decision)
            };
            assert_eq!(request.vault.as_str(), "sample-kv");
            assert_eq!(request.secret.as_str(), "newsecret");
            assert_eq!(request.trigger, TriggerKind::Event);
            assert_eq!(request.event_version.unwrap().as_str(), VERSION);
            assert_eq!(request.budget, BUDGET);
            assert!(!request.dry_run && !request.force);
            assert!(plan.about.contains("SecretNearExpiry") && plan.about.contains("sample-kv/newsecret"));
        }
    }

    #[test]
    fn expired_events_in_either_schema_or_in_an_array_rotate() {
        for path in [
            "derived/keyvault-secret-expired.eventgrid.json",
            "derived/keyvault-secret-expired.cloudevent.json",
            "derived/keyvault-secret-expired.eventgrid.webhook-body.json",
        ] {
            let plan = decide(&envelope_of(fixture(path)), BUDGET, &serves_sample);
            assert!(matches!(plan.decision, Decision::Rotate(_)), "{path}");
        }
    }

    #[test]
    fn other_event_types_are_acknowledged_as_ignored() {
        for path in [
            "keyvault-secret-new-version-created.eventgrid.json",
            "keyvault-secret-new-version-created.cloudevent.json",
            "keyvault-certificate-near-expiry.eventgrid.thirdparty-capture.json",
        ] {
            let result = answered(decide(&envelope_of(fixture(path)), BUDGET, &serves_sample));
            assert_eq!(result.outcome, Outcome::Skipped(SkipReason::Ignored), "{path}");
            assert_eq!(reply(&result).status, StatusCode::OK);
        }
        let policy = json!({"eventType": "Microsoft.KeyVault.VaultAccessPolicyChanged", "data": {}});
        let result = answered(decide(&envelope_of(policy), BUDGET, &serves_sample));
        assert_eq!(result.outcome.label(), "skipped:ignored");
        assert_eq!((result.vault.as_str(), result.secret.as_str()), ("", ""));
    }

    #[test]
    fn events_that_cannot_be_understood_fail_permanently_with_the_reason() {
        let no_type = envelope_of(json!({"data": {}}));
        let batch = envelope_of(json!([{}, {}]));
        let number = envelope_of(json!(42));
        let no_binding = Invocation::parse(br#"{"Data": {"a": {}, "b": {}}, "Metadata": {}}"#).unwrap();
        for (invocation, reason) in [
            (no_type, "no 'eventType'"),
            (batch, "array of 2 events"),
            (number, "not a JSON object"),
            (no_binding, "no 'event' binding"),
        ] {
            let result = answered(decide(&invocation, BUDGET, &serves_sample));
            assert_eq!(result.outcome, Outcome::Failed(FailReason::BadEvent));
            assert!(result.message.contains(reason), "{}", result.message);
            let reply = reply(&result);
            assert_eq!(reply.status, StatusCode::OK);
            assert!(reply.body.logs[0].contains(reason));
            assert_eq!(reply.body.return_value["outcome"], "failed:bad-event");
        }
    }

    #[test]
    fn a_lone_binding_under_another_name_is_still_read() {
        let body = fixture("derived/eventgrid-invocation.custom-handler.json");
        let renamed = json!({"Data": {"evt": body["Data"]["event"]}});
        let plan = decide(
            &Invocation::parse(renamed.to_string().as_bytes()).unwrap(),
            BUDGET,
            &serves_sample,
        );
        assert!(matches!(plan.decision, Decision::Rotate(_)));
    }

    #[test]
    fn a_vault_not_served_is_refused_before_the_engine() {
        let plan = decide(
            &invocation("derived/eventgrid-invocation.custom-handler.json"),
            BUDGET,
            &|_| false,
        );
        let result = answered(plan);
        assert_eq!(result.outcome, Outcome::Failed(FailReason::NotAllowed));
        assert!(result.message.contains("KEYFLIP_VAULTS"));
        assert_eq!(
            (result.vault.as_str(), result.secret.as_str()),
            ("sample-kv", "newsecret")
        );
        assert_eq!(reply(&result).status, StatusCode::OK);
    }

    fn engine_result(outcome: Outcome) -> RotationResult {
        RotationResult {
            version: Some(VERSION.into()),
            ..answer("sample-kv", "newsecret", outcome, "what happened".into())
        }
    }

    #[test]
    fn engine_results_map_by_class() {
        let cases = [
            (Outcome::Rotated, StatusCode::OK),
            (Outcome::Skipped(SkipReason::Stale), StatusCode::OK),
            (Outcome::Skipped(SkipReason::Dwell), StatusCode::OK),
            (Outcome::Failed(FailReason::Misconfigured), StatusCode::OK),
            (Outcome::Failed(FailReason::PointerMismatch), StatusCode::OK),
            (Outcome::Failed(FailReason::Azure), StatusCode::OK),
            (Outcome::Pending, StatusCode::INTERNAL_SERVER_ERROR),
            (
                Outcome::Failed(FailReason::Locked),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                Outcome::Failed(FailReason::Transient),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (outcome, status) in cases {
            let reply = reply(&engine_result(outcome));
            assert_eq!(reply.status, status, "{}", outcome.label());
            let body = serde_json::to_value(&reply.body).unwrap();
            assert_eq!(body["Outputs"], json!({}));
            assert_eq!(body["ReturnValue"]["outcome"], outcome.label());
            assert_eq!(body["ReturnValue"]["version"], VERSION);
            let log = body["Logs"][0].as_str().unwrap();
            assert!(log.starts_with(&format!("{} sample-kv/newsecret: what happened", outcome.label())));
        }
    }
}
