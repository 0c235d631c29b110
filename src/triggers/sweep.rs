//! `POST /RotationSweep`: the timer trigger (binding `timer`, schedule
//! `%KEYFLIP_SWEEP_SCHEDULE%`) that runs the engine's sweep over every configured vault.
//!
//! The timer object (`Schedule`, `ScheduleStatus`, `IsPastDue`) and `Metadata.RetryContext` are
//! read leniently and only inform the logs: whatever they say, the sweep runs. The answer's
//! `ReturnValue` is the sweep report (`{"summary": …, "results": […]}`); its status follows
//! [`SweepReport::class`]: Transient → 500 (the host records a failure and a retry policy, if
//! any, runs it again), otherwise 200 — permanent failures of single secrets are reported in
//! `Logs` and `ReturnValue`, since retrying cannot help them.
//!
//! With `KEYFLIP_SWEEP_MODE=queue` the timer does not sweep: [`fan_out`] answers one message
//! per served vault in `Outputs.sweep`, the function's queue output binding (queue
//! `keyflip-sweep`), which the host enqueues once the invocation succeeded; the `SweepVault`
//! queue trigger (`triggers::sweep_vault`) sweeps each on whichever instance takes it. The
//! output binding rather than a queue client in keyflip: the host already holds the app's
//! storage connection and identity, enqueues only for an invocation that succeeded, creates
//! the queue when missing, and keyflip needs no queue credential, client or retry of its own.
//!
//! The engine logs each rotation and the sweep's summary; this module logs the timer's state.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;

use axum::http::StatusCode;
use serde_json::Value;

use super::Rotator;
use super::envelope::{Invocation, InvocationResponse, NotAnEnvelope, Reply, field};
use super::keyvault_events::log_line;
use super::queue::SWEEP_QUEUE;
use super::sweep_vault::SweepMessage;
use crate::engine::{Class, Outcome, SweepReport};

/// The function's name: its folder under `functions/` and its route on the handler.
pub const FUNCTION: &str = "RotationSweep";

/// The trigger's binding name in `functions/RotationSweep/function.json`.
pub const BINDING: &str = "timer";

/// The queue output binding's name in `functions/RotationSweep/function.json` (queue
/// `keyflip-sweep`): filled only in queue mode.
pub const OUTPUT_BINDING: &str = "sweep";

/// At most this many per-secret lines go into `Logs`; the rest are counted.
const MAX_RESULT_LINES: usize = 50;

/// What the timer says about this run; every field is optional because it only informs logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerInfo {
    /// The run is late (the host was down or busy at the scheduled time).
    pub past_due: bool,
    /// `ScheduleStatus.Last` / `.Next` as sent (absent when schedule monitoring is off).
    pub last: Option<String>,
    pub next: Option<String>,
    /// Present when a function-level retry policy re-runs a failed sweep.
    pub retry: Option<RetryInfo>,
}

/// `Metadata.RetryContext`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryInfo {
    pub retry_count: Option<i64>,
    pub max_retry_count: Option<i64>,
}

/// Reads the timer object and the retry context; never fails.
pub fn timer_info(invocation: &Invocation) -> TimerInfo {
    let timer = invocation.binding(BINDING).and_then(Value::as_object);
    let status = timer
        .and_then(|t| field(t, "ScheduleStatus"))
        .and_then(Value::as_object);
    let retry = invocation
        .metadata_field("RetryContext")
        .and_then(Value::as_object)
        .map(|r| RetryInfo {
            retry_count: field(r, "RetryCount").and_then(integer),
            max_retry_count: field(r, "MaxRetryCount").and_then(integer),
        });
    TimerInfo {
        past_due: timer
            .and_then(|t| field(t, "IsPastDue"))
            .and_then(boolean)
            .unwrap_or(false),
        last: status.and_then(|s| field(s, "Last")).and_then(text),
        next: status.and_then(|s| field(s, "Next")).and_then(text),
        retry,
    }
}

fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Lines about the timer worth keeping in the invocation log.
fn timer_lines(timer: &TimerInfo) -> Vec<String> {
    let mut lines = Vec::new();
    if timer.past_due {
        lines.push("the timer is past due: this sweep runs late".to_string());
    }
    if let Some(retry) = &timer.retry {
        let count = retry.retry_count.map_or("?".to_string(), |c| c.to_string());
        let max = retry.max_retry_count.map_or("?".to_string(), |c| c.to_string());
        lines.push(format!("retry {count} of {max} of a failed sweep"));
    }
    lines
}

/// Maps a sweep report to the host's answer: the summary line, one line per secret that failed
/// or is pending (at most 50), one per vault that could not be listed.
pub fn reply(report: &SweepReport, timer: &TimerInfo) -> Reply {
    let status = match report.class() {
        Class::Transient => StatusCode::INTERNAL_SERVER_ERROR,
        Class::Success | Class::Permanent => StatusCode::OK,
    };
    let s = &report.summary;
    let mut logs = timer_lines(timer);
    if report.paused {
        logs.push("skipped:paused: KEYFLIP_PAUSED is true, so the sweep listed and rotated nothing".into());
    }
    logs.push(format!(
        "sweep: scanned {}, due {}, rotated {}, pending {}, skipped {}, failed {} in {} ms",
        s.scanned, s.due, s.rotated, s.pending, s.skipped, s.failed, s.elapsed_ms
    ));
    if s.left_for_next_run > 0 {
        logs.push(format!(
            "{} due secrets left for the next run ({})",
            s.left_for_next_run,
            match s.left_because {
                Some("cap") => "KEYFLIP_MAX_ROTATIONS_PER_SWEEP reached",
                Some("listing") => "a served vault could not be listed completely, which the one-resource-one-secret check needs",
                _ => "the sweep's budget ran out",
            }
        ));
    }
    logs.extend(report.errors.iter().cloned());
    logs.extend(report.problems.iter().cloned());
    let notable: Vec<_> = report
        .results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_) | Outcome::Pending))
        .collect();
    logs.extend(notable.iter().take(MAX_RESULT_LINES).map(|r| log_line(r)));
    let more = notable.len().saturating_sub(MAX_RESULT_LINES) + report.results_omitted;
    if more > 0 {
        logs.push(format!(
            "… and {more} more results (each is in the log with its event; the summary counts them)"
        ));
    }
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        logs.push("transient failures: the sweep is reported failed; the next run resumes".into());
    }
    Reply {
        status,
        body: InvocationResponse::new(report, logs),
    }
}

/// Handles one timer invocation: read the timer, sweep within `budget`, answer. Runs inside
/// the invocation's span (see `server`).
pub async fn handle(
    rotator: Arc<dyn Rotator>,
    budget: Duration,
    body: Bytes,
) -> Result<Reply, NotAnEnvelope> {
    let invocation = Invocation::parse(&body)?;
    let timer = timer_info(&invocation);
    let retry_count = timer.retry.as_ref().and_then(|r| r.retry_count);
    if timer.past_due {
        tracing::warn!(last = ?timer.last, next = ?timer.next, ?retry_count, "the sweep timer is past due");
    } else {
        tracing::info!(last = ?timer.last, next = ?timer.next, ?retry_count, "sweep starting");
    }
    let report = rotator.sweep(budget).await;
    Ok(reply(&report, &timer))
}

/// The answer of a timer run in queue mode: one message per vault in `Outputs.sweep`, no
/// sweep. `requested` (RFC 3339) goes into each message for the logs.
pub fn fan_out_reply(vaults: &[crate::domain::VaultName], requested: &str, timer: &TimerInfo) -> Reply {
    let messages: Vec<Value> = vaults
        .iter()
        .map(|vault| SweepMessage { vault: vault.clone() }.to_json(requested))
        .collect();
    let names: Vec<&str> = vaults.iter().map(|v| v.as_str()).collect();
    let mut logs = timer_lines(timer);
    logs.push(format!(
        "fan-out: {} message(s) for {SWEEP_QUEUE}, one per vault ({}); SweepVault sweeps each",
        messages.len(),
        names.join(", ")
    ));
    let mut body = InvocationResponse::new(
        &serde_json::json!({"mode": "queue", "queue": SWEEP_QUEUE, "enqueued": names}),
        logs,
    );
    body.outputs
        .insert(OUTPUT_BINDING.to_string(), Value::Array(messages));
    Reply {
        status: StatusCode::OK,
        body,
    }
}

/// Handles one timer invocation in queue mode: read the timer, enqueue one message per served
/// vault (through the answer's `Outputs`), answer. Nothing is listed or rotated here.
pub async fn fan_out(
    rotator: Arc<dyn Rotator>,
    _budget: Duration,
    body: Bytes,
) -> Result<Reply, NotAnEnvelope> {
    let invocation = Invocation::parse(&body)?;
    let timer = timer_info(&invocation);
    let vaults = rotator.vaults();
    let requested = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    tracing::info!(
        vaults = vaults.len(),
        queue = SWEEP_QUEUE,
        past_due = timer.past_due,
        "sweep fanning out: one message per vault"
    );
    Ok(fan_out_reply(&vaults, &requested, &timer))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::{FailReason, RotationResult, SkipReason, SweepSummary, TriggerKind};

    fn invocation(path: &str) -> Invocation {
        let full = format!("{}/tests/data/events/{path}", env!("CARGO_MANIFEST_DIR"));
        Invocation::parse(&std::fs::read(&full).unwrap()).unwrap()
    }

    #[test]
    fn the_timer_fixtures_are_read() {
        let monitored = timer_info(&invocation("derived/timer-invocation.custom-handler.json"));
        assert_eq!(
            monitored,
            TimerInfo {
                past_due: false,
                last: Some("2016-10-04T10:15:00+00:00".into()),
                next: Some("2016-10-04T10:20:00+00:00".into()),
                retry: None,
            }
        );
        let unmonitored = timer_info(&invocation(
            "derived/timer-invocation.custom-handler.no-monitor.json",
        ));
        assert_eq!(unmonitored, TimerInfo::default());
        let retried = timer_info(&invocation("derived/timer-invocation.custom-handler.retry.json"));
        assert!(retried.past_due);
        assert_eq!(
            retried.retry,
            Some(RetryInfo {
                retry_count: Some(1),
                max_retry_count: Some(4)
            })
        );
        assert_eq!(
            timer_lines(&retried),
            [
                "the timer is past due: this sweep runs late",
                "retry 1 of 4 of a failed sweep"
            ]
        );
    }

    #[test]
    fn odd_timer_objects_are_tolerated() {
        for data in [
            json!({}),
            json!({"timer": null}),
            json!({"timer": "x"}),
            json!({"timer": {"ScheduleStatus": "x", "IsPastDue": 3}}),
        ] {
            let body = json!({"Data": data}).to_string();
            assert_eq!(
                timer_info(&Invocation::parse(body.as_bytes()).unwrap()),
                TimerInfo::default()
            );
        }
        let camel = json!({"Data": {"timer": {"isPastDue": "True", "scheduleStatus": {"next": "n"}}},
                           "Metadata": {"retryContext": {"retryCount": "2"}}});
        let timer = timer_info(&Invocation::parse(camel.to_string().as_bytes()).unwrap());
        assert!(timer.past_due);
        assert_eq!(timer.next.as_deref(), Some("n"));
        assert_eq!(timer.retry.unwrap().retry_count, Some(2));
    }

    fn result(secret: &str, outcome: Outcome) -> RotationResult {
        RotationResult::without_rotation("kv-one", secret, TriggerKind::Timer, outcome, "why".into())
    }

    fn report(outcomes: &[Outcome], errors: &[&str]) -> SweepReport {
        SweepReport {
            summary: SweepSummary {
                scanned: outcomes.len(),
                ..SweepSummary::default()
            },
            results: outcomes
                .iter()
                .enumerate()
                .map(|(i, o)| result(&format!("s{i}"), *o))
                .collect(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
            problems: Vec::new(),
            ..SweepReport::default()
        }
    }

    #[test]
    fn status_follows_the_report_class() {
        let cases = [
            (report(&[], &[]), StatusCode::OK),
            (
                report(&[Outcome::Rotated, Outcome::Skipped(SkipReason::NotDue)], &[]),
                StatusCode::OK,
            ),
            (
                report(&[Outcome::Failed(FailReason::Misconfigured)], &[]),
                StatusCode::OK,
            ),
            (
                report(&[Outcome::Rotated, Outcome::Pending], &[]),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                report(&[Outcome::Failed(FailReason::Transient)], &[]),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                report(&[], &["listing vault kv-two failed: 503"]),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (report, status) in cases {
            let reply = reply(&report, &TimerInfo::default());
            assert_eq!(reply.status, status, "{:?}", report.results);
            let body = serde_json::to_value(&reply.body).unwrap();
            assert_eq!(body["Outputs"], json!({}));
            assert!(body["ReturnValue"]["summary"].is_object());
            assert!(body["ReturnValue"]["results"].is_array());
            assert!(
                body["Logs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l.as_str().unwrap().starts_with("sweep: "))
            );
        }
    }

    #[test]
    fn logs_name_failed_and_pending_secrets_and_vault_errors_only() {
        let report = report(
            &[
                Outcome::Rotated,
                Outcome::Failed(FailReason::KeysDisabled),
                Outcome::Pending,
            ],
            &["listing vault kv-two failed: 503"],
        );
        let logs = reply(&report, &TimerInfo::default()).body.logs;
        assert!(
            logs.contains(&"failed:keys-disabled kv-one/s1: why".to_string()),
            "{logs:?}"
        );
        assert!(logs.contains(&"pending kv-one/s2: why".to_string()));
        assert!(logs.contains(&"listing vault kv-two failed: 503".to_string()));
        assert!(!logs.iter().any(|l| l.contains("s0")));
    }

    #[test]
    fn a_fan_out_answers_one_message_per_vault_and_no_report() {
        let vaults: Vec<_> = ["kv-one", "kv-two"]
            .into_iter()
            .map(|v| crate::domain::VaultName::parse(v).unwrap())
            .collect();
        let reply = fan_out_reply(&vaults, "2026-12-01T10:00:00Z", &TimerInfo::default());
        assert_eq!(reply.status, StatusCode::OK);
        let body = serde_json::to_value(&reply.body).unwrap();
        assert_eq!(
            body["Outputs"],
            json!({"sweep": [
                {"vault": "kv-one", "requested": "2026-12-01T10:00:00Z"},
                {"vault": "kv-two", "requested": "2026-12-01T10:00:00Z"}
            ]})
        );
        assert_eq!(body["ReturnValue"]["enqueued"], json!(["kv-one", "kv-two"]));
        assert!(body["ReturnValue"].get("summary").is_none());
        assert!(
            body["Logs"][0]
                .as_str()
                .unwrap()
                .starts_with("fan-out: 2 message(s)")
        );
    }

    #[test]
    fn logs_are_bounded() {
        let many = vec![Outcome::Failed(FailReason::Misconfigured); MAX_RESULT_LINES + 7];
        let logs = reply(&report(&many, &[]), &TimerInfo::default()).body.logs;
        assert_eq!(logs.len(), 1 + MAX_RESULT_LINES + 1);
        assert!(logs.last().unwrap().contains("7 more"));
    }
}
