//! The log contract: the stable `event` names (and their fields) that alerts, dashboards and
//! later work query in Log Analytics. Every line here carries a string field `event` and, when
//! it is about one secret, `vault` and `secret`; the JSON formatter puts them at the top level
//! of the line (see `telemetry`). README.md "Logs and alerts" documents the table; renaming an
//! event or a field breaks the deployed alerts of `infra/`, so add, never rename.
//!
//! | event | when |
//! |---|---|
//! | `rotation.completed` | a rotation ended `rotated`, `repaired` or `revoked` |
//! | `rotation.pending` | a rotation ended `pending` (`pending_since` when known) |
//! | `rotation.failed` | a rotation ended `failed:<reason>` (`reason`) |
//! | `rotation.skipped` | a rotation ended `skipped:<reason>` or `planned` |
//! | `sweep.completed` | a sweep ended, with its counts |
//! | `sweep.problem` | a sweep found something only an operator can fix |
//! | `secret.expired` | a sweep found a managed secret past its `exp` |
//! | `invocation.failed` | an invocation panicked (a bug): its span names the function |
//!
//! Nothing here logs a value: results and problems never hold one (DESIGN.md I7).

use time::OffsetDateTime;

use super::result::{Outcome, RotationResult, SweepReport, fail_label};
use crate::domain::tags::rfc3339;

pub const ROTATION_COMPLETED: &str = "rotation.completed";
pub const ROTATION_PENDING: &str = "rotation.pending";
pub const ROTATION_FAILED: &str = "rotation.failed";
pub const ROTATION_SKIPPED: &str = "rotation.skipped";
pub const SWEEP_COMPLETED: &str = "sweep.completed";
pub const SWEEP_PROBLEM: &str = "sweep.problem";
pub const SECRET_EXPIRED: &str = "secret.expired";
pub const INVOCATION_FAILED: &str = "invocation.failed";

/// Every event name of the contract.
pub const EVENTS: &[&str] = &[
    ROTATION_COMPLETED,
    ROTATION_PENDING,
    ROTATION_FAILED,
    ROTATION_SKIPPED,
    SWEEP_COMPLETED,
    SWEEP_PROBLEM,
    SECRET_EXPIRED,
    INVOCATION_FAILED,
];

/// The event a rotation's outcome is reported as.
pub fn rotation_event(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Rotated | Outcome::Repaired | Outcome::Revoked => ROTATION_COMPLETED,
        Outcome::Pending => ROTATION_PENDING,
        Outcome::Failed(_) => ROTATION_FAILED,
        Outcome::Skipped(_) | Outcome::Planned => ROTATION_SKIPPED,
    }
}

/// Logs how one rotation ended: info for a success or a skip, warn for what a retry resumes
/// (pending, transient), error for what an operator must fix.
pub fn rotation_ended(result: &RotationResult, pending_since: Option<OffsetDateTime>) {
    let event = rotation_event(result.outcome);
    let outcome = result.outcome.label();
    let trigger = result.trigger.as_str();
    let (vault, secret) = (result.vault.as_str(), result.secret.as_str());
    let message = result.message.as_str();
    match result.outcome {
        Outcome::Rotated | Outcome::Repaired | Outcome::Revoked => tracing::info!(
            event,
            vault,
            secret,
            trigger,
            outcome,
            provider = result.provider.as_deref().unwrap_or(""),
            from = result.from.as_deref().unwrap_or(""),
            to = result.to.as_deref().unwrap_or(""),
            version = result.version.as_deref().unwrap_or(""),
            expires = result.expires.as_deref().unwrap_or(""),
            "{message}"
        ),
        Outcome::Pending => {
            let since = pending_since.map(rfc3339).unwrap_or_default();
            tracing::warn!(event, vault, secret, trigger, outcome, pending_since = %since, "{message}")
        }
        Outcome::Failed(reason) => {
            let reason = fail_label(reason);
            match result.outcome.class() {
                super::Class::Transient => {
                    tracing::warn!(event, vault, secret, trigger, outcome, reason, "{message}")
                }
                _ => tracing::error!(event, vault, secret, trigger, outcome, reason, "{message}"),
            }
        }
        Outcome::Skipped(_) | Outcome::Planned => {
            tracing::info!(event, vault, secret, trigger, outcome, "{message}")
        }
    }
}

/// Logs a sweep's counts once it ended.
pub fn sweep_completed(report: &SweepReport) {
    let summary = &report.summary;
    tracing::info!(
        event = SWEEP_COMPLETED,
        scanned = summary.scanned,
        due = summary.due,
        rotated = summary.rotated,
        pending = summary.pending,
        skipped = summary.skipped,
        failed = summary.failed,
        left_for_next_run = summary.left_for_next_run,
        left_because = summary.left_because.unwrap_or(""),
        paused = report.paused,
        problems = report.problems.len(),
        errors = report.errors.len(),
        elapsed_ms = summary.elapsed_ms,
        "sweep finished"
    );
}

/// Logs a problem only an operator can fix (`vault` empty when it is about several).
pub fn sweep_problem(vault: &str, problem: &str) {
    tracing::error!(event = SWEEP_PROBLEM, vault, problem, "{problem}");
}

/// Logs a managed secret the sweep found past its expiry: a rotation was missed.
pub fn secret_expired(vault: &str, secret: &str, expires: OffsetDateTime) {
    tracing::warn!(
        event = SECRET_EXPIRED,
        vault,
        secret,
        expires = %rfc3339(expires),
        "the managed secret {vault}/{secret} expired at {} without being rotated in time; it is rotated now if nothing stops it",
        rfc3339(expires)
    );
}

/// Logs an invocation that ended without an answer of its own (`what` happened: it panicked,
/// or was cancelled); the invocation's span names the function. Never the panic's message: it
/// could quote anything the panicking code held.
pub fn invocation_failed(what: &str) {
    tracing::error!(
        event = INVOCATION_FAILED,
        "the invocation failed unexpectedly: it {what}"
    );
}
