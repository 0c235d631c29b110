//! `POST /SweepVault`: the queue trigger (binding `message`, queue `keyflip-sweep`) of the
//! fan-out sweep. With `KEYFLIP_SWEEP_MODE=queue` the RotationSweep timer enqueues one
//! [`SweepMessage`] per served vault through its queue output binding (`triggers::sweep`), and
//! the Functions platform spreads these invocations over the app's instances; each sweeps its
//! one vault with the engine's `sweep_vaults`, within the sweep budget.
//!
//! | case | status | what the host does |
//! |---|---|---|
//! | body is not an envelope | 400 | — (cannot come from the host) |
//! | message that cannot be understood (not JSON or base64 JSON, no `vault`, a bad name) | 200, `failed:bad-event` | deletes it: retrying cannot help, and a 500 would only spend `maxDequeueCount` attempts before the poison queue |
//! | vault not in KEYFLIP_VAULTS | 200, `failed:not-allowed` | deletes it |
//! | sweep report of class Success or Permanent | 200 | deletes it |
//! | sweep report whose only transient results are pending rotations | 200 | deletes it: the next timer run's message resumes them |
//! | sweep report of class Transient (a vault not listed, a rotation failed transiently or locked) | 500 | makes it visible again after host.json's `visibilityTimeout`; after `maxDequeueCount` dequeues it moves to `keyflip-sweep-poison`, and the next timer run enqueues the vault afresh |
//!
//! A duplicate message (the queue delivers at least once) sweeps the vault twice: harmless,
//! since every rotation holds the lease and re-checks what it found (I3, I6).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Rotator;
use super::envelope::{Invocation, InvocationResponse, NotAnEnvelope, Reply, field};
use super::keyvault_events::log_line;
use super::queue::{self, Encoding, QueueMessage};
use super::sweep::{TimerInfo, reply as sweep_reply};
use crate::domain::VaultName;
use crate::domain::untrusted::echo;
use crate::engine::log_events;
use crate::engine::{FailReason, Outcome, RotationResult, TriggerKind};

/// The function's name: its folder under `functions/` and its route on the handler.
pub const FUNCTION: &str = "SweepVault";

/// One message of the `keyflip-sweep` queue: sweep this vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepMessage {
    pub vault: VaultName,
}

impl SweepMessage {
    /// The message as the timer enqueues it: a JSON object (never a bare string, which the
    /// host's output conversion would try as base64), `requested` for the logs only.
    pub fn to_json(&self, requested: &str) -> Value {
        json!({ "vault": self.vault.as_str(), "requested": requested })
    }

    /// Reads a message's payload; the error says what is wrong, safe to log.
    pub fn parse(message: &QueueMessage) -> Result<Self, String> {
        let Value::Object(object) = &message.payload else {
            return Err(match message.encoding {
                Encoding::Missing => format!("the invocation has no '{}' binding", queue::BINDING),
                _ => format!(
                    "the message is not a JSON object (nor base64 of one): {}",
                    echo(&preview(&message.payload))
                ),
            });
        };
        let raw = field(object, "vault")
            .ok_or("the message names no 'vault'")?
            .as_str()
            .ok_or("the message's 'vault' is not a string")?;
        let vault = VaultName::parse(raw.trim())
            .map_err(|e| format!("the message's vault '{}' is invalid: {e}", echo(raw)))?;
        Ok(Self { vault })
    }
}

fn preview(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.chars().take(80).collect()
}

/// A message answered without sweeping: a permanent failure, acknowledged so that the host
/// deletes it.
fn refused(vault: &str, outcome: Outcome, message: String) -> Reply {
    let result = RotationResult::without_rotation(vault, "", TriggerKind::Timer, outcome, message);
    tracing::info_span!("sweep_message", vault = %echo(vault))
        .in_scope(|| log_events::rotation_ended(&result, None));
    let line = format!(
        "{} (permanent: the message is acknowledged and deleted, not retried)",
        log_line(&result)
    );
    Reply {
        status: StatusCode::OK,
        body: InvocationResponse::new(&result, vec![line]),
    }
}

/// Handles one message: read it, sweep its vault within `budget`, answer. Runs inside the
/// invocation's span (see `server`).
pub async fn handle(
    rotator: Arc<dyn Rotator>,
    budget: Duration,
    body: Bytes,
) -> Result<Reply, NotAnEnvelope> {
    let invocation = Invocation::parse(&body)?;
    let message = queue::message(&invocation);
    let request = match SweepMessage::parse(&message) {
        Ok(request) => request,
        Err(problem) => {
            return Ok(refused(
                "",
                Outcome::Failed(FailReason::BadEvent),
                format!(
                    "the {} message cannot be understood: {problem}",
                    queue::SWEEP_QUEUE
                ),
            ));
        }
    };
    let vault = request.vault;
    if !rotator.serves(&vault) {
        return Ok(refused(
            vault.as_str(),
            Outcome::Failed(FailReason::NotAllowed),
            format!(
                "vault '{vault}' is not one keyflip serves; add it to KEYFLIP_VAULTS (the message is dropped)"
            ),
        ));
    }
    tracing::info!(
        %vault,
        dequeue_count = ?message.dequeue_count,
        message_id = message.id.as_deref().unwrap_or("-"),
        "sweeping one vault for the fan-out queue"
    );
    let report = rotator.sweep_vaults(std::slice::from_ref(&vault), budget).await;
    let mut reply = sweep_reply(&report, &TimerInfo::default());
    let attempt = message
        .dequeue_count
        .map_or(String::new(), |n| format!(", dequeue {n}"));
    reply
        .body
        .logs
        .insert(0, format!("{FUNCTION}: vault {vault}{attempt}"));
    // A rotation left pending is resumed by the next timer run's message: re-sweeping the whole
    // vault every visibilityTimeout until the message is poisoned would not make a slow key
    // activate sooner. Only what a retry can fix now (a vault not listed, a transient failure,
    // a lease held) asks the host for one.
    if reply.status == StatusCode::INTERNAL_SERVER_ERROR && only_pending(&report) {
        reply.status = StatusCode::OK;
        reply
            .body
            .logs
            .push("pending rotations only: the message is done; the next timer run resumes them".into());
    }
    if reply.status == StatusCode::INTERNAL_SERVER_ERROR {
        reply.body.logs.push(
            "the host makes the message visible again after host.json's visibilityTimeout; after maxDequeueCount attempts it moves to keyflip-sweep-poison".into(),
        );
    }
    Ok(reply)
}

/// Whether the report is transient only because rotations are pending.
fn only_pending(report: &crate::engine::SweepReport) -> bool {
    let s = &report.summary;
    report.errors.is_empty()
        && s.pending > 0
        && !s.failed_by_reason.contains_key("transient")
        && !s.failed_by_reason.contains_key("locked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::queue::decode_text;

    fn message_of(text: &str) -> QueueMessage {
        let (payload, encoding) = decode_text(text);
        QueueMessage {
            payload,
            encoding,
            dequeue_count: Some(1),
            id: None,
        }
    }

    #[test]
    fn the_message_round_trips() {
        let message = SweepMessage {
            vault: VaultName::parse("kv-one").unwrap(),
        };
        let json = message.to_json("2026-12-01T10:00:00Z");
        assert_eq!(json["vault"], "kv-one");
        // The host re-serializes objects indented: still the same message.
        let indented = serde_json::to_string_pretty(&json).unwrap();
        assert_eq!(SweepMessage::parse(&message_of(&indented)), Ok(message.clone()));
        let base64 = azure_core::base64::encode(json.to_string());
        assert_eq!(SweepMessage::parse(&message_of(&base64)), Ok(message));
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        for (text, reason) in [
            ("hello", "not a JSON object"),
            ("[1]", "not a JSON object"),
            ("{}", "names no 'vault'"),
            (r#"{"vault": 3}"#, "not a string"),
            (r#"{"vault": "no/such vault"}"#, "is invalid"),
        ] {
            let error = SweepMessage::parse(&message_of(text)).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
