//! The sweep: lists every configured vault (properties and tags only, never values), decides
//! which managed secrets are due, and rotates those with bounded concurrency within the sweep's
//! budget. It is the safety net for every event that was missed.
//!
//! It is also the one place that sees every served vault at once, so it refuses a resource
//! named by two enabled managed secrets (rotating one would regenerate the key the other
//! publishes, DESIGN.md I9) and reports the pair as a problem. And one bad secret never stops
//! the others (I10): each rotation runs isolated, a panic in it becomes `failed:internal` for
//! that secret alone, and the sweep goes on.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};

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
        let mut listed: Vec<(&VaultName, Vec<SecretSummary>)> = Vec::new();
        for vault in &self.settings.vaults {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.store.list(vault)).await {
                Ok(Ok(secrets)) => {
                    report.summary.scanned += secrets.len();
                    listed.push((vault, secrets));
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
        let shared = self.shared_resources(&listed);
        for (first, second) in shared
            .values()
            .flat_map(|names| names.iter().zip(names.iter().skip(1)))
        {
            report.problems.push(format!(
                "{first} and {second} name the same resource in their ProviderAddress tag: rotating one would regenerate the key the other publishes, so keyflip rotates neither; give each resource one managed secret"
            ));
        }
        let decisions = listed.iter().flat_map(|(vault, secrets)| {
            secrets
                .iter()
                .filter_map(|s| self.decide(vault, s, &shared, deadline))
        });
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
        let (vault, secret) = (request.vault.clone(), request.secret.clone());
        match AssertUnwindSafe(self.rotate(request)).catch_unwind().await {
            Ok(result) => result,
            Err(_) => {
                // The panic's payload is not shown: it could quote anything the code held.
                tracing::error!(%vault, %secret, "the rotation failed unexpectedly (a panic); the sweep goes on");
                self.report(
                    &vault,
                    secret.as_str(),
                    Outcome::Failed(FailReason::Internal),
                    "keyflip failed unexpectedly while rotating this secret (a bug: please report it with the logs); the latest version still holds a valid key and the next sweep tries again; the other secrets were not affected",
                )
            }
        }
    }

    /// The resources named by more than one enabled managed secret, each with those secrets
    /// (`vault/secret`), across every listed vault.
    fn shared_resources(&self, listed: &[(&VaultName, Vec<SecretSummary>)]) -> BTreeMap<String, Vec<String>> {
        let mut by_resource: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (vault, secrets) in listed {
            for summary in secrets.iter().filter(|s| s.enabled) {
                if let Some(Ok(tags)) = decide::sweep_tags(&summary.tags, self.settings.lead_days) {
                    by_resource
                        .entry(tags.provider_address.key())
                        .or_default()
                        .push(format!("{vault}/{}", summary.name));
                }
            }
        }
        by_resource.retain(|_, names| names.len() > 1);
        by_resource
    }

    /// Whether a listed secret is rotated, reported, or (not managed) left out.
    fn decide(
        &self,
        vault: &VaultName,
        summary: &SecretSummary,
        shared: &BTreeMap<String, Vec<String>>,
        deadline: Instant,
    ) -> Option<Decision> {
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
        if let Some(names) = shared.get(&tags.provider_address.key()) {
            let me = format!("{vault}/{name}");
            let others: Vec<&str> = names.iter().map(String::as_str).filter(|n| *n != me).collect();
            return Some(Decision::Report(self.report(
                vault,
                name,
                Outcome::Failed(FailReason::Misconfigured),
                &format!(
                    "tag ProviderAddress names {}, which {} names too: rotating one secret would regenerate the key the other publishes, so keyflip rotates neither; give each resource one managed secret",
                    tags.provider_address,
                    others.join(" and ")
                ),
            )));
        }
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
