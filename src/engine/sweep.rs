//! The sweep: lists every configured vault (properties and tags only, never values), decides
//! which managed secrets are due, and rotates those with bounded concurrency within the sweep's
//! budget. It is the safety net for every event that was missed.

use std::time::{Duration, Instant};

use futures::StreamExt;

use super::decide::{self, Due};
use super::{
    Engine, FailReason, Outcome, RotationRequest, RotationResult, SkipReason, SweepReport, TriggerKind,
};
use crate::domain::VaultName;
use crate::store::{SecretSummary, StoreError};

/// The most one rotation may spend inside a sweep.
pub const MAX_ROTATION_IN_SWEEP: Duration = Duration::from_secs(30);

/// One secret the sweep looked at, and what it decided.
enum Decision {
    Rotate(RotationRequest),
    Report(RotationResult),
}

impl Engine {
    /// Lists every configured vault and rotates the secrets that are due, within `budget`.
    pub async fn sweep(&self, budget: Duration) -> SweepReport {
        let started = Instant::now();
        let deadline = started + budget;
        let mut report = SweepReport::default();
        let mut decisions = Vec::new();
        for vault in &self.settings.vaults {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.store.list(vault)).await {
                Ok(Ok(secrets)) => {
                    report.summary.scanned += secrets.len();
                    decisions.extend(secrets.iter().filter_map(|s| self.decide(vault, s, deadline)));
                }
                Ok(Err(StoreError::Transient(e))) => report.errors.push(format!("listing vault {vault} failed: {e}")),
                Ok(Err(e)) => report.problems.push(format!(
                    "listing vault {vault} failed: {e}; check KEYFLIP_VAULTS and keyflip's access to the vault"
                )),
                Err(_) => report
                    .errors
                    .push(format!("listing vault {vault} ran out of the sweep's budget")),
            }
        }
        let mut to_rotate = Vec::new();
        for decision in decisions {
            match decision {
                Decision::Rotate(request) => to_rotate.push(request),
                Decision::Report(result) => report.results.push(result),
            }
        }
        report.summary.due = to_rotate.len();
        let rotated: Vec<RotationResult> = futures::stream::iter(to_rotate)
            .map(|request| self.rotate_within(request, deadline))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        report.results.extend(rotated);
        report
            .results
            .sort_by(|a, b| (&a.vault, &a.secret).cmp(&(&b.vault, &b.secret)));
        for result in &report.results {
            match result.outcome {
                Outcome::Rotated | Outcome::Repaired => report.summary.rotated += 1,
                Outcome::Pending => report.summary.pending += 1,
                Outcome::Skipped(_) | Outcome::Planned => report.summary.skipped += 1,
                Outcome::Failed(_) => report.summary.failed += 1,
            }
        }
        report.summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        for error in &report.errors {
            tracing::warn!("{error}");
        }
        for problem in &report.problems {
            tracing::error!("{problem}");
        }
        tracing::info!(
            scanned = report.summary.scanned,
            due = report.summary.due,
            rotated = report.summary.rotated,
            pending = report.summary.pending,
            failed = report.summary.failed,
            "sweep finished"
        );
        report
    }

    /// Rotates with what is left of the sweep's budget, at most [`MAX_ROTATION_IN_SWEEP`] (so a
    /// key slow to activate does not hold a slot for the whole sweep: it stays pending and the
    /// next sweep resumes it); a secret the budget cannot reach is reported as a transient
    /// failure for the next sweep.
    async fn rotate_within(&self, mut request: RotationRequest, deadline: Instant) -> RotationResult {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return self.report(
                &request.vault,
                request.secret.as_str(),
                Outcome::Failed(FailReason::Transient),
                "the sweep's budget ran out before this secret; the next sweep takes it",
            );
        }
        request.budget = left.min(MAX_ROTATION_IN_SWEEP);
        self.rotate(request).await
    }

    /// Whether a listed secret is rotated, reported, or (not managed) left out.
    fn decide(&self, vault: &VaultName, summary: &SecretSummary, deadline: Instant) -> Option<Decision> {
        let tags = decide::sweep_tags(&summary.tags, self.settings.lead_days)?;
        let name = summary.name.as_str();
        if !summary.enabled {
            return Some(Decision::Report(self.report(
                vault,
                name,
                Outcome::Skipped(SkipReason::Disabled),
                "the secret is disabled",
            )));
        }
        let tags = match tags {
            Ok(tags) => tags,
            Err(e) => {
                return Some(Decision::Report(self.report(
                    vault,
                    name,
                    Outcome::Failed(FailReason::Misconfigured),
                    &e.to_string(),
                )));
            }
        };
        match decide::due(&tags, summary.expires, self.clock.now(), self.settings.lead_days) {
            Due::NotDue => Some(Decision::Report(self.report(
                vault,
                name,
                Outcome::Skipped(SkipReason::NotDue),
                &format!(
                    "not due: it expires more than {} days from now",
                    self.settings.lead_days
                ),
            ))),
            _ => Some(Decision::Rotate(RotationRequest {
                vault: vault.clone(),
                secret: summary.name.clone(),
                trigger: TriggerKind::Timer,
                event_version: None,
                dry_run: false,
                force: false,
                budget: deadline.saturating_duration_since(Instant::now()),
            })),
        }
    }

    fn report(&self, vault: &VaultName, secret: &str, outcome: Outcome, message: &str) -> RotationResult {
        RotationResult::without_rotation(
            vault.as_str(),
            secret,
            TriggerKind::Timer,
            outcome,
            message.to_string(),
        )
    }
}
