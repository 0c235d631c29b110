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

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use time::OffsetDateTime;

use super::claims::{Claim, Claims};
use super::decide::{self, Due};
use super::log_events;
use super::rotate::{outside_scopes, shared_message};
use super::{
    Engine, FailReason, Outcome, RotationRequest, RotationResult, SkipReason, SweepReport, TriggerKind,
};
use crate::domain::{ArmResourceId, VaultName};
use crate::providers::ProviderError;
use crate::store::{SecretSummary, StoreError};

/// The most one rotation may spend inside a sweep.
pub const MAX_ROTATION_IN_SWEEP: Duration = Duration::from_secs(30);

/// No rotation starts with less of the sweep's budget left than this (or a third of the
/// budget, if smaller): it would only leave a pending mark or fail for lack of time.
pub const MIN_ROTATION_START: Duration = Duration::from_secs(10);

/// What a sweep is asked for.
#[derive(Debug, Clone, Copy)]
pub struct SweepOptions {
    /// The whole sweep's time: no rotation starts after it; what is left goes to the next run.
    pub budget: Duration,
    /// Plan only (`keyflip sweep --dry-run`): every due secret is planned, nothing is written.
    pub dry_run: bool,
}

/// One secret the sweep looked at, and what it decided.
enum Decision {
    Rotate(RotationRequest),
    Report(RotationResult),
}

/// A due secret waiting for a rotation slot. The most urgent first: expired, then the
/// soonest `exp`, then those without one, then in the order they were listed.
struct Urgent {
    rank: (u8, i128, u64),
    request: RotationRequest,
}

impl Urgent {
    fn new(request: RotationRequest, expires: Option<OffsetDateTime>, now: OffsetDateTime, seq: u64) -> Self {
        let rank = match expires {
            Some(exp) if exp <= now => (0, exp.unix_timestamp_nanos(), seq),
            Some(exp) => (1, exp.unix_timestamp_nanos(), seq),
            None => (2, 0, seq),
        };
        Self { rank, request }
    }
}

impl Urgent {
    /// `vault/secret`, as the shared-resource check names it.
    fn key(&self) -> String {
        format!("{}/{}", self.request.vault, self.request.secret)
    }
}

impl PartialEq for Urgent {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}

impl Eq for Urgent {}

impl PartialOrd for Urgent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Urgent {
    /// Reversed, so that [`BinaryHeap`] (a max-heap) pops the most urgent.
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank.cmp(&self.rank)
    }
}

/// What the check of resources named by two secrets found: the secrets refused (by
/// `vault/secret`) with their outcome and message, and what to report.
#[derive(Default)]
struct SharedCheck {
    refused: BTreeMap<String, (Outcome, String)>,
    errors: Vec<String>,
    problems: Vec<String>,
}

/// Whether a rotation's outcome spent one of KEYFLIP_MAX_ROTATIONS_PER_SWEEP: it regenerated,
/// published or planned; a refusal or a transient failure before any of that does not.
fn did_work(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Rotated
            | Outcome::Repaired
            | Outcome::Revoked
            | Outcome::Pending
            | Outcome::Planned
            | Outcome::Failed(FailReason::VerificationTimeout)
    )
}

/// Why a vault's listing failed, for the index of claims.
enum ListingFailure {
    /// Retrying may help: the index is incomplete, rotations must list again.
    ForNow,
    /// keyflip cannot list it (access refused): its claims are unknown
    /// ([`Claims::unlisted`]).
    ForGood,
    /// It does not exist: it holds no secret to protect.
    Missing,
}

/// What the merged listings of the swept vaults yield.
enum Listed {
    Page(usize, Result<Vec<SecretSummary>, StoreError>),
    Done(usize),
}

impl Engine {
    /// Lists every configured vault and rotates the secrets that are due, within `budget`.
    pub async fn sweep(&self, budget: Duration) -> SweepReport {
        let vaults = self.settings.vaults.clone();
        self.sweep_vaults(&vaults, budget).await
    }

    /// The sweep of some of the served vaults only (one message of the fan-out queue).
    pub async fn sweep_vaults(&self, vaults: &[VaultName], budget: Duration) -> SweepReport {
        let options = SweepOptions {
            budget,
            dry_run: false,
        };
        self.sweep_with(vaults, options).await
    }

    /// The sweep: every vault of `vaults` listed at once, page by page; each due secret queued
    /// by urgency as soon as its page arrives, and rotations started from the queue while the
    /// listing goes on, most urgent first, up to KEYFLIP_CONCURRENCY at a time (with a rotation
    /// cap and no fresh index, once the listing ends). The one-resource-one-secret check (I9)
    /// needs every served vault listed: a rotation started before this sweep's index is
    /// complete reads its secret, then waits for the index before its lease and any resource
    /// call (the wait is not counted against its own budget, only the sweep's), unless a fresh
    /// index is cached; without a complete index the due secrets not started are left to the
    /// next run. No rotation starts within [`MIN_ROTATION_START`] of the budget's end, nor once
    /// KEYFLIP_MAX_ROTATIONS_PER_SWEEP rotations did something (a refusal does not count): the
    /// rest is left to the next run and counted. A vault that is not served is
    /// reported as a problem. The index is published (to the cache and to the rotations
    /// waiting for it, of this sweep and of other triggers) only by a sweep that listed every
    /// served vault completely; the resources it finds named by two secrets are checked then,
    /// and their due secrets not started yet are refused.
    pub async fn sweep_with(&self, vaults: &[VaultName], options: SweepOptions) -> SweepReport {
        let started = Instant::now();
        let listed_from = self.clock.now();
        let deadline = started + options.budget;
        let mut report = SweepReport::default();
        if self.settings.paused && !options.dry_run {
            report.paused = true;
            tracing::warn!(
                "keyflip is paused (KEYFLIP_PAUSED=true): the sweep lists, rotates and writes nothing"
            );
            return self.finish_report(report, started);
        }
        let mut served: Vec<&VaultName> = Vec::new();
        for vault in vaults {
            if !self.settings.vaults.contains(vault) {
                let problem =
                    format!("vault {vault} is not served: add it to KEYFLIP_VAULTS to let keyflip sweep it");
                log_events::sweep_problem(vault.as_str(), &problem);
                report.problem(problem);
            } else if !served.contains(&vault) {
                served.push(vault);
            }
        }
        // Without a fresh index, rotations wait for this sweep's before their lease: it then
        // lists every served vault, those it does not sweep (a sweep of one vault from the
        // fan-out queue) for the index only, and the rotations of other triggers wait for it
        // too.
        let fresh = self.claims.fresh(listed_from).await.is_some();
        // With a cap, rotations wait for the listing to end, so that the cap goes to the most
        // urgent of all due secrets, not of those listed first.
        let capped = self.settings.max_rotations_per_sweep.is_some();
        let mut may_start = fresh || !capped;
        let indexed: Vec<&VaultName> = match fresh {
            true => served.clone(),
            false => self.settings.vaults.iter().collect(),
        };
        let everything = self.settings.vaults.iter().all(|v| indexed.contains(&v));
        let mut building = match everything {
            true => Some(self.claims.begin().await),
            false => None,
        };

        let listings = indexed.iter().enumerate().map(|(i, vault)| {
            // A vault's listing ends at its first error (the next page cannot be asked for).
            let pages = self.store.list_pages(vault).scan(false, |failed, page| {
                let next = (!*failed).then(|| {
                    *failed = page.is_err();
                    page
                });
                futures::future::ready(next)
            });
            pages
                .map(move |page| Listed::Page(i, page))
                .chain(stream::once(async move { Listed::Done(i) }))
                .boxed()
        });
        let mut listing = stream::select_all(listings);
        let mut listed = vec![false; indexed.len()];
        let mut pages_listed = vec![0usize; indexed.len()];
        let mut listing_over = indexed.is_empty();
        let mut claims = Claims::default();
        let mut complete = true;
        let mut unlisted = Vec::new();

        let mut queue = BinaryHeap::new();
        let mut seq = 0u64;
        let mut running = FuturesUnordered::new();
        let mut shared_check = std::pin::pin!(futures::future::OptionFuture::from(None));
        let mut shared_pending = false;
        let mut shared_done = false;
        let mut acted = 0usize;
        let mut left_because = None;
        let concurrency = self.settings.concurrency.max(1);
        let min_start = MIN_ROTATION_START.min(options.budget / 3);
        loop {
            if listing_over && !shared_done && !shared_pending {
                let index = self
                    .publish_index(
                        &mut building,
                        std::mem::take(&mut claims),
                        complete,
                        &unlisted,
                        listed_from,
                    )
                    .await;
                // Without an index (a served vault's listing failed for now) every rotation would
                // list every vault again for the one-resource-one-secret check: the due secrets
                // not started are left to the next sweep.
                if !fresh && !complete {
                    left_because = Some("listing");
                }
                // The check of shared resources may take a quarter of what is left.
                let left = deadline.saturating_duration_since(Instant::now());
                let check_until = Instant::now() + left / 4;
                shared_check.set(Some(self.refuse_shared(index, check_until)).into());
                shared_pending = true;
            }
            while may_start && left_because.is_none() && running.len() < concurrency && !queue.is_empty() {
                let cap = self.settings.max_rotations_per_sweep;
                if Instant::now() + min_start >= deadline {
                    left_because = Some("deadline");
                } else if cap.is_some_and(|cap| acted + running.len() >= cap) {
                    // Rotations still running may end refused: wait for them before giving up.
                    if running.is_empty() {
                        left_because = Some("cap");
                    }
                    break;
                } else if let Some(next) = queue.pop() {
                    let Urgent { request, .. } = next;
                    running.push(self.rotate_within(request, deadline));
                }
            }
            let nothing_to_start = queue.is_empty() || left_because.is_some();
            if shared_done && running.is_empty() && nothing_to_start {
                break;
            }
            tokio::select! {
                Some(result) = running.next(), if !running.is_empty() => {
                    if did_work(result.outcome) {
                        acted += 1;
                    }
                    report.add(result);
                }
                Some(check) = &mut shared_check, if shared_pending => {
                    shared_pending = false;
                    shared_done = true;
                    may_start = true;
                    let SharedCheck { refused, errors, problems } = check;
                    errors.into_iter().for_each(|e| report.error(e));
                    problems.into_iter().for_each(|p| report.problem(p));
                    // A due secret of a shared resource not started yet is refused here, once;
                    // one started already refuses itself; one counted otherwise (not due,
                    // misconfigured) keeps that count, and the problem names it.
                    if !refused.is_empty() {
                        let (kept, refusing): (Vec<Urgent>, Vec<Urgent>) = std::mem::take(&mut queue)
                            .into_iter()
                            .partition(|u| !refused.contains_key(&u.key()));
                        queue = kept.into_iter().collect();
                        for urgent in refusing {
                            if let Some((outcome, message)) = refused.get(&urgent.key()) {
                                let r = &urgent.request;
                                let result = self.report(&r.vault, r.secret.as_str(), *outcome, message);
                                log_events::rotation_ended(&result, None);
                                report.add(result);
                            }
                        }
                    }
                }
                next = listing.next(), if !listing_over => {
                    match next {
                        Some(Listed::Page(i, Ok(page))) => {
                            let vault = indexed[i];
                            pages_listed[i] += 1;
                            claims.add(vault, &page, &self.settings.allowed_scopes);
                            let swept = served.contains(&vault);
                            if swept {
                                report.summary.scanned += page.len();
                            }
                            let now = self.clock.now();
                            for summary in page.iter().filter(|_| swept) {
                                match self.decide(vault, summary, deadline, options.dry_run) {
                                    None => {}
                                    Some(Decision::Report(result)) => {
                                        // What the sweep refused without rotating is an
                                        // operator's to fix: it goes to the log contract like a
                                        // rotation's failure; a skip does not (one line per
                                        // secret not due would drown the rest).
                                        if matches!(result.outcome, Outcome::Failed(_)) {
                                            log_events::rotation_ended(&result, None);
                                        }
                                        report.add(result);
                                    }
                                    Some(Decision::Rotate(request)) => {
                                        report.summary.due += 1;
                                        seq += 1;
                                        queue.push(Urgent::new(request, summary.expires, now, seq));
                                    }
                                }
                            }
                        }
                        Some(Listed::Page(i, Err(e))) => {
                            let vault = indexed[i];
                            let swept = served.contains(&vault);
                            match self.listing_failed(vault, e, pages_listed[i] > 0, swept, &mut report) {
                                ListingFailure::ForNow => complete = false,
                                ListingFailure::ForGood => unlisted.push(vault.clone()),
                                ListingFailure::Missing => {}
                            }
                        }
                        Some(Listed::Done(i)) => listed[i] = true,
                        None => {}
                    }
                    if listed.iter().all(|done| *done) {
                        listing_over = true;
                    }
                }
                () = tokio::time::sleep_until(deadline.into()), if !listing_over => {
                    let late: Vec<String> = indexed
                        .iter()
                        .zip(&listed)
                        .filter(|(_, done)| !**done)
                        .map(|(vault, _)| vault.to_string())
                        .collect();
                    report.errors.push(format!(
                        "listing vault {} ran out of the sweep's budget; the next sweep lists it again",
                        late.join(", ")
                    ));
                    complete = false;
                    listing_over = true;
                }
            }
        }
        drop(listing);
        report.summary.left_for_next_run = queue.len();
        if !queue.is_empty() {
            report.summary.left_because = left_because.or(Some("deadline"));
        }
        self.finish_report(report, started)
    }

    /// Ends the listing's part: the index of claims from every page listed, published to the
    /// cache and the waiting rotations when the sweep listed every served vault completely,
    /// stamped with the time the listing started (its oldest page).
    async fn publish_index(
        &self,
        building: &mut Option<super::claims::Building>,
        claims: Claims,
        complete: bool,
        unlisted: &[VaultName],
        listed_from: OffsetDateTime,
    ) -> Arc<Claims> {
        let index = Arc::new(claims.with_unlisted(unlisted.to_vec()));
        if let Some(building) = building.take() {
            let published = complete.then(|| index.clone());
            building.finish(listed_from, published).await;
        }
        index
    }

    /// Reports a vault whose listing failed, and says what that means for the index: a vault
    /// that answers "not found" after some pages were listed is an incomplete listing, not a
    /// vault that does not exist.
    /// A vault listed for the index only (`swept` false) that cannot be listed for good is
    /// logged, not reported: the sweep of every vault reports it.
    fn listing_failed(
        &self,
        vault: &VaultName,
        e: StoreError,
        pages_listed: bool,
        swept: bool,
        report: &mut SweepReport,
    ) -> ListingFailure {
        if let StoreError::Transient(e) = e {
            report.error(format!("listing vault {vault} failed: {e}"));
            return ListingFailure::ForNow;
        }
        let problem = format!(
            "listing vault {vault} failed: {e}; check KEYFLIP_VAULTS and keyflip's access to the vault"
        );
        if swept {
            log_events::sweep_problem(vault.as_str(), &problem);
            report.problem(problem);
        } else {
            tracing::warn!(%vault, "{problem} (listed for the index of claims only)");
        }
        match e {
            StoreError::NotFound(_) if pages_listed => ListingFailure::ForNow,
            StoreError::NotFound(_) => ListingFailure::Missing,
            _ => ListingFailure::ForGood,
        }
    }

    /// Sorts the results, stamps the time, logs the summary.
    fn finish_report(&self, mut report: SweepReport, started: Instant) -> SweepReport {
        report
            .results
            .sort_by(|a, b| (&a.vault, &a.secret).cmp(&(&b.vault, &b.secret)));
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
        // Waiting for this sweep's index (if it is still listing) may take the rest of its
        // budget: the rotation still ends by the sweep's deadline.
        request.index_wait = Some(left - request.budget);
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
    async fn refuse_shared(&self, claims: Arc<Claims>, deadline: Instant) -> SharedCheck {
        let mut check = SharedCheck::default();
        let mut refused = BTreeMap::new();
        for (resource, group) in claims.shared() {
            let names: Vec<String> = group.iter().map(ToString::to_string).collect();
            let holders = match self.holders_of(resource, group, deadline).await {
                Ok(holders) => holders,
                Err(why) => {
                    check.errors.push(format!(
                        "{} name the same resource, and checking which of them hold its keys failed: {why}; those not started yet wait for the next sweep (one started already checks for itself before any write)",
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
            check.problems.push(problem);
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
        check.refused = refused;
        check
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
        deadline: Instant,
        dry_run: bool,
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
        // An opt-out never stops an unfinished leaked-key revocation (its leaked key would stay
        // valid): the rotation finishes it.
        if !tags.rotation_enabled && tags.revoke.is_none() {
            return Some(Decision::Report(self.report(
                vault,
                name,
                Outcome::Skipped(SkipReason::OptedOut),
                "the secret's RotationEnabled tag is false",
            )));
        }
        if !self
            .settings
            .allowed_scopes
            .permits(vault, &tags.provider_address)
        {
            return Some(Decision::Report(self.report(
                vault,
                name,
                Outcome::Failed(FailReason::NotAllowed),
                &outside_scopes(&self.settings.allowed_scopes, vault, &tags.provider_address),
            )));
        }
        if let Some(expires) = summary.expires.filter(|exp| *exp <= self.clock.now()) {
            log_events::secret_expired(vault.as_str(), name, expires);
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
                dry_run,
                force: false,
                budget: deadline.saturating_duration_since(Instant::now()),
                index_wait: None,
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
