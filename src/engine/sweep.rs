//! The sweep: lists every configured vault (properties and tags only, never values), decides
//! which managed secrets are due, and rotates those with bounded concurrency within the sweep's
//! budget. It is the safety net for every event that was missed.
//!
//! It is also the one place that sees every served vault at once: it rebuilds the engine's
//! index of which secrets name each resource (`claims`), refuses every secret of a resource
//! that two or more secrets name *and* hold a current key of (rotating one would regenerate
//! the key another publishes, DESIGN.md I9), and reports them as a problem. And one bad secret never stops
//! the others (I10): each rotation runs isolated, a panic in it becomes `failed:internal` for
//! that secret alone, and the sweep goes on.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};

use super::claims::{Claim, Claims};
use super::decide::{self, Due};
use super::log_events;
use super::rotate::shared_message;
use super::{
    Engine, FailReason, Outcome, RotationRequest, RotationResult, SkipReason, SweepReport, TriggerKind,
};
use crate::domain::{ArmResourceId, VaultName};
use crate::providers::ProviderError;
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
        let vaults = self.settings.vaults.clone();
        self.sweep_vaults(&vaults, budget).await
    }

    /// The sweep of some of the served vaults only (one message of the fan-out queue): a
    /// vault that is not served is reported as a problem. The index of claims is replaced
    /// only by a sweep that listed every served vault.
    pub async fn sweep_vaults(&self, vaults: &[VaultName], budget: Duration) -> SweepReport {
        let started = Instant::now();
        let deadline = started + budget;
        let mut report = SweepReport::default();
        let mut listed: Vec<(&VaultName, Vec<SecretSummary>)> = Vec::new();
        let mut unlisted = Vec::new();
        let mut complete = true;
        for vault in vaults {
            if !self.settings.vaults.contains(vault) {
                let problem =
                    format!("vault {vault} is not served: add it to KEYFLIP_VAULTS to let keyflip sweep it");
                log_events::sweep_problem(vault.as_str(), &problem);
                report.problems.push(problem);
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.store.list(vault)).await {
                Ok(Ok(secrets)) => {
                    report.summary.scanned += secrets.len();
                    listed.push((vault, secrets));
                }
                Ok(Err(StoreError::Transient(e))) => {
                    complete = false;
                    report.errors.push(format!("listing vault {vault} failed: {e}"));
                }
                Ok(Err(e)) => {
                    if !matches!(e, StoreError::NotFound(_)) {
                        unlisted.push(vault.clone());
                    }
                    let problem = format!(
                        "listing vault {vault} failed: {e}; check KEYFLIP_VAULTS and keyflip's access to the vault"
                    );
                    log_events::sweep_problem(vault.as_str(), &problem);
                    report.problems.push(problem);
                }
                Err(_) => {
                    complete = false;
                    report
                        .errors
                        .push(format!("listing vault {vault} ran out of the sweep's budget"));
                }
            }
        }
        let claims = Arc::new(
            Claims::from_listing(
                listed.iter().map(|(vault, secrets)| (*vault, secrets.as_slice())),
                &self.settings.allowed_scopes,
            )
            .with_unlisted(unlisted),
        );
        // A vault that could not be listed for now leaves the index incomplete: rotations must
        // not rely on it (each lists the vaults again instead).
        let everything = self.settings.vaults.iter().all(|v| vaults.contains(v));
        if complete && everything {
            self.claims.store(self.clock.now(), claims.clone()).await;
        }
        // The check of shared resources may take a quarter of what is left, never the rotations'
        // whole budget.
        let left = deadline.saturating_duration_since(Instant::now());
        let refused = self
            .refuse_shared(&claims, &mut report, Instant::now() + left / 4)
            .await;
        let decisions = listed.iter().flat_map(|(vault, secrets)| {
            secrets
                .iter()
                .filter_map(|s| self.decide(vault, s, &refused, deadline))
        });
        let mut to_rotate = Vec::new();
        for decision in decisions {
            match decision {
                Decision::Rotate(request) => to_rotate.push(request),
                Decision::Report(result) => {
                    // What the sweep refused without rotating is an operator's to fix: it goes
                    // to the log contract like a rotation's failure; a skip does not (one line
                    // per secret not due would drown the rest).
                    if matches!(result.outcome, Outcome::Failed(_)) {
                        log_events::rotation_ended(&result, None);
                    }
                    report.results.push(result);
                }
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
                Outcome::Rotated | Outcome::Repaired | Outcome::Revoked => report.summary.rotated += 1,
                Outcome::Pending => report.summary.pending += 1,
                Outcome::Skipped(_) | Outcome::Planned => report.summary.skipped += 1,
                Outcome::Failed(_) => report.summary.failed += 1,
            }
        }
        report.summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        for error in &report.errors {
            tracing::warn!("{error}");
        }
        log_events::sweep_completed(&report);
        report
    }

    /// Rotates with what is left of the sweep's budget, at most [`MAX_ROTATION_IN_SWEEP`] (so a
    /// key slow to activate does not hold a slot for the whole sweep: it stays pending and the
    /// next sweep resumes it); a secret the budget cannot reach is reported as a transient
    /// failure for the next sweep.
    async fn rotate_within(&self, mut request: RotationRequest, deadline: Instant) -> RotationResult {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let result = self.report(
                &request.vault,
                request.secret.as_str(),
                Outcome::Failed(FailReason::Transient),
                "the sweep's budget ran out before this secret; the next sweep takes it",
            );
            log_events::rotation_ended(&result, None);
            return result;
        }
        request.budget = left.min(MAX_ROTATION_IN_SWEEP);
        let (vault, secret) = (request.vault.clone(), request.secret.clone());
        match AssertUnwindSafe(self.rotate(request)).catch_unwind().await {
            Ok(result) => result,
            Err(_) => {
                // The panic's payload is not shown: it could quote anything the code held.
                let result = self.report(
                    &vault,
                    secret.as_str(),
                    Outcome::Failed(FailReason::Internal),
                    "keyflip failed unexpectedly while rotating this secret (a panic: a bug, please report it with the logs); the latest version still holds a valid key and the next sweep tries again; the other secrets were not affected",
                );
                log_events::rotation_ended(&result, None);
                result
            }
        }
    }

    /// The secrets the sweep must not rotate because another secret names the same resource
    /// and both hold a current key of it, each with its outcome and message; every such
    /// resource is reported under `problems`.
    async fn refuse_shared(
        &self,
        claims: &Claims,
        report: &mut SweepReport,
        deadline: Instant,
    ) -> BTreeMap<String, (Outcome, String)> {
        let mut refused = BTreeMap::new();
        for (resource, group) in claims.shared() {
            let names: Vec<String> = group.iter().map(ToString::to_string).collect();
            let holders = match self.holders_of(resource, group, deadline).await {
                Ok(holders) => holders,
                Err(why) => {
                    report.errors.push(format!(
                        "{} name the same resource, and checking which of them hold its keys failed: {why}; none is rotated until the next sweep",
                        names.join(" and ")
                    ));
                    for name in names {
                        let message = format!("{why}; the next sweep checks again");
                        refused.insert(name, (Outcome::Failed(FailReason::Transient), message));
                    }
                    continue;
                }
            };
            if holders.len() < 2 {
                continue;
            }
            let holding: Vec<String> = holders.iter().map(ToString::to_string).collect();
            let problem = format!(
                "{} name the same resource in their ProviderAddress tag and hold its keys: rotating one would regenerate the key another publishes, so keyflip rotates none of them; give each resource one managed secret",
                holding.join(" and ")
            );
            log_events::sweep_problem("", &problem);
            report.problems.push(problem);
            for holder in &holding {
                let others: Vec<&str> = holding
                    .iter()
                    .filter(|h| *h != holder)
                    .map(String::as_str)
                    .collect();
                let message = shared_message(resource, &others);
                refused.insert(
                    holder.clone(),
                    (Outcome::Failed(FailReason::SharedResource), message),
                );
            }
        }
        refused
    }

    /// Which of `group` hold a current key of `resource` (its lower-cased id).
    async fn holders_of(
        &self,
        resource: &str,
        group: &[Claim],
        deadline: Instant,
    ) -> Result<Vec<Claim>, String> {
        // A resource keyflip cannot read the keys of for good holds nothing to break: each of
        // its secrets fails on its own when rotated (unsupported type, gone, refused).
        let Ok(id) = ArmResourceId::parse(resource) else {
            return Ok(Vec::new());
        };
        let Ok(provider) = self.providers.for_resource(&id) else {
            return Ok(Vec::new());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let keys = match tokio::time::timeout(left, provider.list_keys(&id)).await {
            Err(_) => return Err("the time for checking shared resources ran out".to_string()),
            Ok(Err(ProviderError::Transient(e))) => return Err(format!("listing the keys of {id}: {e}")),
            Ok(Err(_)) => return Ok(Vec::new()),
            Ok(Ok(keys)) => keys,
        };
        self.holders(group, &keys, deadline).await.map_err(|f| f.message)
    }

    /// Whether a listed secret is rotated, reported, or (not managed) left out.
    fn decide(
        &self,
        vault: &VaultName,
        summary: &SecretSummary,
        refused: &BTreeMap<String, (Outcome, String)>,
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
        if let Some(expires) = summary.expires.filter(|exp| *exp <= self.clock.now()) {
            log_events::secret_expired(vault.as_str(), name, expires);
        }
        if let Some((outcome, message)) = refused.get(&format!("{vault}/{name}")) {
            return Some(Decision::Report(self.report(vault, name, *outcome, message)));
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
                revoke_active: false,
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
