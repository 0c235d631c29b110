//! `POST /KeyVaultEventsQueue`: Key Vault events that Event Grid delivered to the Storage queue
//! `keyflip-events` (queue delivery, infra/eventgrid-subscription.bicep `delivery=queue`), read
//! by a `queueTrigger` (binding `message`). Event Grid writes with its topic's managed
//! identity, so the function app needs no public endpoint for events.
//!
//! One message holds one event, in Event Grid's or the CloudEvents schema, as plain JSON or
//! base64 of it (`triggers::queue` decodes both). From there it is the push path exactly: the
//! same parsing, the same guards (stale version, vault allow-list before any network call,
//! disagreeing or hostile names refused) and the same answers as `KeyVaultEvents`
//! (`keyvault_events::run`), with one difference in who retries:
//!
//! | case | status | what the host does |
//! |---|---|---|
//! | body is not an envelope | 400 | — (cannot come from the host) |
//! | message that is no event (not JSON nor base64 of JSON, no type, a batch, …) | 200, `failed:bad-event` | deletes it: retrying cannot help, so it is not spent on `maxDequeueCount` attempts |
//! | success or permanent result | 200 | deletes it |
//! | transient result (pending, lease held, throttled) | 500 | retries after `visibilityTimeout`, at most `maxDequeueCount` times, then moves it to `keyflip-events-poison`; the sweep catches the secret anyway |
//!
//! A duplicate delivery is harmless: the second finds the version stale or the rotation done.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Map, Value};

use super::Rotator;
use super::envelope::{Invocation, NotAnEnvelope, Reply};
use super::keyvault_events::{self, reply_with};
use super::queue;

/// The function's name: its folder under `functions/` and its route on the handler.
pub const FUNCTION: &str = "KeyVaultEventsQueue";

/// The invocation the push path would have had for this message: `Data.event` = the event.
fn as_event_invocation(invocation: &Invocation) -> (Invocation, queue::QueueMessage) {
    let message = queue::message(invocation);
    let mut data = Map::new();
    if message.encoding != queue::Encoding::Missing {
        data.insert(keyvault_events::BINDING.to_string(), message.payload.clone());
    }
    let event = Invocation {
        data,
        metadata: Value::Null,
    };
    (event, message)
}

/// Handles one message: decode, then the push path's decision and rotation, answer.
pub async fn handle(
    rotator: Arc<dyn Rotator>,
    budget: Duration,
    body: Bytes,
) -> Result<Reply, NotAnEnvelope> {
    let invocation = Invocation::parse(&body)?;
    let (event, message) = as_event_invocation(&invocation);
    tracing::info!(
        encoding = message.encoding.as_str(),
        dequeue_count = ?message.dequeue_count,
        message_id = message.id.as_deref().unwrap_or("-"),
        "a Key Vault event from the {} queue",
        queue::EVENTS_QUEUE
    );
    let result = keyvault_events::run(rotator, &event, budget).await;
    Ok(reply_with(
        &result,
        " (transient: the host retries the message after visibilityTimeout, up to maxDequeueCount)",
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::{FailReason, Outcome};
    use crate::triggers::keyvault_events::{Decision, decide};

    fn queue_envelope(text: &str) -> Invocation {
        // What the host sends: the text as a JSON string literal, inside a JSON string.
        let double = serde_json::to_string(text).unwrap();
        Invocation::parse(
            json!({"Data": {"message": double}, "Metadata": {"DequeueCount": "1"}})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    fn fixture(path: &str) -> String {
        let full = format!("{}/tests/data/events/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(full).unwrap()
    }

    #[test]
    fn plain_and_base64_events_decide_the_same_rotation() {
        for path in [
            "derived/keyvault-secret-near-expiry.eventgrid.json",
            "derived/keyvault-secret-expired.cloudevent.json",
        ] {
            let text = fixture(path);
            let base64 = azure_core::base64::encode(text.as_bytes());
            for raw in [text.as_str(), base64.as_str()] {
                let (event, _) = as_event_invocation(&queue_envelope(raw));
                let plan = decide(&event, Duration::from_secs(5), &|_| true);
                assert!(
                    matches!(plan.decision, Decision::Rotate(_)),
                    "{path}: {:?}",
                    plan.decision
                );
            }
        }
    }

    #[test]
    fn a_message_that_is_no_event_is_a_bad_event() {
        for raw in ["garbage", "{\"eventType\": 3}", "[{}, {}]"] {
            let (event, _) = as_event_invocation(&queue_envelope(raw));
            let plan = decide(&event, Duration::from_secs(5), &|_| true);
            let Decision::Answer(result) = plan.decision else {
                panic!("{raw}: expected an answer")
            };
            assert_eq!(result.outcome, Outcome::Failed(FailReason::BadEvent), "{raw}");
            assert_eq!(reply_with(&result, "").status, axum::http::StatusCode::OK);
        }
    }
}
