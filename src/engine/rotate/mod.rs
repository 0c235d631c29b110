//! One rotation: DESIGN.md §3 steps 1–8 for one secret, whatever the trigger.
//!
//! Invariants kept here: the key of the latest version is never regenerated, checked against
//! the resource and not only the tag (I1); the idle slot is not regenerated before the dwell
//! unless forced (I2); one rotation per secret at a time across instances, triggers and the CLI,
//! under the secret's lease, checked before every write (I3); only a key that passed its
//! data-plane check is published (I4); a failure at any step leaves the latest version holding
//! a valid key, and a rerun resumes a pending slot without regenerating it again (I5); stale and
//! duplicate events do nothing (I6); no key value is logged or reported (I7).
//!
//! The pending rules (step 5): a key that passes its first check is published with no mark (one
//! Key Vault write); one that does not, or a regeneration that outlives the budget or whose
//! answer leaves open whether it took effect, is marked `PendingSlot`/`PendingSince`/
//! `PendingFrom` (the old key's fingerprint), and the result promises a resume only when the
//! mark landed. A publish that fails is re-read before it is reported.

mod alone;
mod pending;
mod repair;
mod revoke;

use pending::{check_pending, check_proof};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{Instrument, Span, field};

use super::claims::{Claim, Claims};
use super::decide::{self, PendingState};
use super::{Engine, FailReason, Outcome, RotationRequest, RotationResult, SkipReason, TriggerKind};
use crate::domain::key::fingerprint;
use crate::domain::tags::{self, RotationTags, Tags};
use crate::domain::untrusted::echo;
use crate::domain::{ApiKey, ArmResourceId, Slot};
use crate::lease::MarkKey;
use crate::lease::{Holding, LeaseError, LeaseKey};
use crate::providers::{KeyPair, KeyProvider, ProviderError, ResourceInfo, Verification};
use crate::store::{LoadedSecret, NewVersion, StoreError};

/// How a rotation ended: the outcome and a sentence for operators.
#[derive(Debug)]
pub(super) struct Finish {
    outcome: Outcome,
    pub(super) message: String,
    /// When the rotation became pending, for a `pending` outcome (the log contract's
    /// `pending_since`).
    pending_since: Option<OffsetDateTime>,
}

fn finish(outcome: Outcome, message: impl Into<String>) -> Finish {
    Finish {
        outcome,
        message: message.into(),
        pending_since: None,
    }
}

/// A `pending` outcome, pending since `since`.
fn pending_since(since: OffsetDateTime, message: impl Into<String>) -> Finish {
    Finish {
        pending_since: Some(since),
        ..finish(Outcome::Pending, message)
    }
}

fn failed(reason: FailReason, message: impl Into<String>) -> Finish {
    finish(Outcome::Failed(reason), message)
}

/// What the rotation learned, for the result.
#[derive(Debug, Default)]
struct Facts {
    provider: Option<String>,
    from: Option<String>,
    to: Option<String>,
    version: Option<String>,
    expires: Option<String>,
    verified: bool,
}

fn store_failure(error: StoreError, doing: &str) -> Finish {
    match error {
        StoreError::NotFound(m) => failed(FailReason::NotFound, format!("{doing}: {m}")),
        StoreError::Disabled(m) => finish(Outcome::Skipped(SkipReason::Disabled), format!("{doing}: {m}")),
        StoreError::Transient(m) => failed(
            FailReason::Transient,
            format!("{doing}: {m}; a retry will resume"),
        ),
        StoreError::Permanent(m) => failed(FailReason::Azure, format!("{doing}: {m}")),
    }
}

fn provider_failure(error: ProviderError, doing: &str) -> Finish {
    match error {
        ProviderError::NotFound(m) => failed(
            FailReason::Misconfigured,
            format!("{doing}: {m}; check the secret's ProviderAddress tag"),
        ),
        ProviderError::Transient(m) | ProviderError::Uncertain(m) | ProviderError::Running(m) => failed(
            FailReason::Transient,
            format!("{doing}: {m}; a retry will resume"),
        ),
        ProviderError::Permanent(m) => failed(FailReason::Azure, format!("{doing}: {m}")),
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// A duration in hours for messages: `24`, `0.01`.
fn in_hours(duration: Duration) -> String {
    let hours = format!("{:.4}", duration.as_secs_f64() / 3600.0);
    hours.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// How far ahead of keyflip's clock a `PendingSince` may be (clock skew between instances).
const PENDING_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// `exp` of a version published at `now`: `now + days`, checked (never panics).
fn expiry(now: OffsetDateTime, days: u32) -> Result<OffsetDateTime, Finish> {
    now.checked_add(time::Duration::days(i64::from(days))).ok_or_else(|| {
        failed(
            FailReason::Misconfigured,
            format!("tag ValidityPeriodDays is {days}, which puts the expiry past the year 9999: use fewer days"),
        )
    })
}

/// The refusal of a secret whose resource `others` name too and hold a key of.
pub(super) fn shared_message(resource: &str, others: &[&str]) -> String {
    format!(
        "tag ProviderAddress names {resource}, which {} names too and holds a current key of: rotating one secret would regenerate the key the other publishes, so keyflip rotates neither; give each resource one managed secret (remove the tags from the one that should not be managed)",
        others.join(" and ")
    )
}

/// How to repair a secret whose value is not the active slot's key: a person's act.
fn repair_hint(secret: &crate::domain::SecretName, plan: &Plan) -> String {
    format!(
        "first check who wrote the latest version (Key Vault's logs): if it is not the resource's owner, delete it; otherwise, to repair, run `keyflip rotate --repair --vault <vault> --secret {secret}` from a terminal under your own credentials: it publishes the current {} key as a new version and regenerates nothing",
        plan.active_tag
    )
}

/// The refusal of a published value that is neither of the resource's keys (I8). Says whether
/// the value differs from a key only by surrounding whitespace, without printing either.
fn unknown_key_message(secret: &LoadedSecret, plan: &Plan, keys: &KeyPair) -> String {
    let trimmed = ApiKey::new(secret.value.expose().trim());
    let near = keys
        .slot_of(&trimmed)
        .map(|slot| {
            format!(
                " (it differs from {} only by surrounding whitespace: whoever wrote it added a newline or spaces)",
                plan.provider.slot_tag(slot)
            )
        })
        .unwrap_or_default();
    format!(
        "the latest version's value is neither of the resource's keys{near}: keyflip cannot tell which key consumers use, and the secret's writer has not shown that they hold a key of this resource, so it changes nothing; {}",
        repair_hint(&secret.name, plan)
    )
}

impl Engine {
    /// Rotates one secret as the request asks. Never panics on Azure's answers; always reports.
    pub async fn rotate(&self, request: RotationRequest) -> RotationResult {
        self.execute(request, Work::Rotate).await
    }

    /// `keyflip rotate --repair` (a person's act, from a terminal, never over HTTP): publishes
    /// the active slot's current key as a new version of a secret whose value is neither of the
    /// resource's keys, regenerating nothing. Refuses when the value is the idle slot's key
    /// (the tag lies) or both keys are equal; does nothing when the value is already right.
    pub async fn repair(&self, request: RotationRequest) -> RotationResult {
        self.execute(request, Work::Repair).await
    }

    async fn execute(&self, request: RotationRequest, work: Work) -> RotationResult {
        let started = Instant::now();
        let span = tracing::info_span!(
            "rotation",
            vault = %request.vault,
            secret = %request.secret,
            trigger = request.trigger.as_str(),
            provider = field::Empty,
            from = field::Empty,
            to = field::Empty,
            version = field::Empty,
        );
        let mut facts = Facts::default();
        let ended = self
            .run(&request, work, &mut facts, started)
            .instrument(span.clone())
            .await;
        let Finish {
            outcome,
            message,
            pending_since,
        } = match ended {
            Ok(done) | Err(done) => done,
        };
        let result = RotationResult {
            secret: request.secret.to_string(),
            vault: request.vault.to_string(),
            provider: facts.provider,
            trigger: request.trigger,
            outcome,
            from: facts.from,
            to: facts.to,
            version: facts.version,
            expires: facts.expires,
            verified: facts.verified,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            message,
        };
        span.in_scope(|| super::log_events::rotation_ended(&result, pending_since));
        result
    }

    /// The key of keyflip's mark fingerprints, read once from beside the leases.
    async fn mark_key(&self, deadline: Instant) -> Result<MarkKey, Finish> {
        if let Some(key) = self.mark_key.get() {
            return Ok(key.clone());
        }
        let reading = self.leases.mark_key();
        match self.within(deadline, "reading the mark key", reading).await? {
            Ok(key) => Ok(self.mark_key.get_or_init(|| async { key }).await.clone()),
            Err(LeaseError::Permanent(e)) => Err(failed(
                FailReason::Azure,
                format!("reading the mark key ({}): {e}", self.leases.describe()),
            )),
            Err(e) => Err(failed(
                FailReason::Transient,
                format!(
                    "reading the mark key ({}): {e}; a retry will resume",
                    self.leases.describe()
                ),
            )),
        }
    }

    /// Runs `work` within what is left of the invocation's budget.
    async fn within<T>(
        &self,
        deadline: Instant,
        doing: &str,
        work: impl Future<Output = T>,
    ) -> Result<T, Finish> {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, work).await.map_err(|_| {
            failed(
                FailReason::Transient,
                format!("{doing}: the invocation's time budget ran out; a retry will resume"),
            )
        })
    }

    async fn run(
        &self,
        request: &RotationRequest,
        work: Work,
        facts: &mut Facts,
        started: Instant,
    ) -> Result<Finish, Finish> {
        let deadline = started + request.budget;
        if self.settings.paused && !request.dry_run {
            return Err(finish(
                Outcome::Skipped(SkipReason::Paused),
                "keyflip is paused (KEYFLIP_PAUSED=true): nothing is rotated or written until the setting is removed",
            ));
        }
        if !self.serves(&request.vault) {
            return Err(failed(
                FailReason::NotAllowed,
                format!(
                    "vault {} is not served: add it to KEYFLIP_VAULTS to let keyflip rotate its secrets",
                    request.vault
                ),
            ));
        }
        // Steps 1–3 without a resource call, so that a secret with nothing to do costs no lease.
        let ready = self.prepare(request, work, facts, deadline).await?;
        let deadline = deadline + self.wait_for_sweep_index(request, deadline).await?;
        if request.dry_run {
            return self.proceed(request, work, ready, None, facts, deadline).await;
        }
        // 4. The lease, then load and check again: the world may have moved while we waited.
        let holding = self.take_lease(request, deadline).await?;
        let ended = async {
            let ready = self.prepare(request, work, facts, deadline).await?;
            self.proceed(request, work, ready, Some(&holding), facts, deadline)
                .await
        }
        .await;
        holding.release(LEASE_RELEASE_BOUND).await;
        ended
    }

    /// A sweep's rotation that starts before the sweep's index of claims is complete (the
    /// one-resource-one-secret check, I9, needs every served vault) waits for it here: after
    /// the unleased read of the secret, before the lease and any resource call, so that nothing
    /// it acts on was read before the wait and no lease is held while waiting. The wait is the
    /// sweep's time, not the rotation's ([`RotationRequest::index_wait`]): the deadline moves
    /// by it.
    async fn wait_for_sweep_index(
        &self,
        request: &RotationRequest,
        deadline: Instant,
    ) -> Result<Duration, Finish> {
        let Some(index_wait) = request.index_wait else {
            return Ok(Duration::ZERO);
        };
        let (_, waited) = self.claims_now(Listing::Cached, deadline, index_wait).await?;
        // A listing that ended close to the sweep's deadline leaves too little to rotate in: no
        // lease is taken and nothing is called, as for a rotation the sweep could not start.
        let left = (deadline + waited).saturating_duration_since(Instant::now());
        if !waited.is_zero() && left < super::sweep::MIN_ROTATION_START.min(request.budget / 3) {
            return Err(failed(
                FailReason::Transient,
                format!(
                    "the listing of the served vaults, which the one-resource-one-secret check waits for, ended {} ms before the sweep's deadline: too little to rotate {} in; the next sweep takes it",
                    left.as_millis(),
                    request.secret
                ),
            ));
        }
        Ok(waited)
    }

    /// Step 4: the secret's lease across every trigger, instance and the CLI. Held elsewhere:
    /// the sweep leaves the secret to that rotation, the others answer that one is in progress.
    async fn take_lease(&self, request: &RotationRequest, deadline: Instant) -> Result<Holding, Finish> {
        let key = LeaseKey::new(&request.vault, &request.secret);
        let sent = tokio::time::Instant::now();
        let taking = self.leases.acquire(&key);
        let taken = self.within(deadline, "taking the rotation lease", taking).await?;
        match taken {
            Ok(lease) => Ok(Holding::start(key, lease, sent)),
            Err(LeaseError::Held) => Err(match request.trigger {
                TriggerKind::Timer => finish(
                    Outcome::Skipped(SkipReason::Locked),
                    format!(
                        "a rotation of {} is in progress elsewhere (another instance, trigger or the CLI holds its lease): this sweep leaves it to that one",
                        request.secret
                    ),
                ),
                _ => failed(
                    FailReason::Locked,
                    format!(
                        "a rotation of {} is in progress (another instance, trigger or the CLI holds its lease); retry in a minute",
                        request.secret
                    ),
                ),
            }),
            Err(LeaseError::Permanent(e)) => Err(failed(
                FailReason::Azure,
                format!(
                    "taking the rotation lease ({}): {e}; keyflip never rotates without it",
                    self.leases.describe()
                ),
            )),
            Err(e) => Err(failed(
                FailReason::Transient,
                format!(
                    "taking the rotation lease ({}): {e}; keyflip never rotates without it; a retry will resume",
                    self.leases.describe()
                ),
            )),
        }
    }

    /// Steps 1–3 that need no resource call: load, the guards on the version, validate, the
    /// dwell. Ends the rotation (`Err`) when there is nothing to do or the secret is refused.
    async fn prepare(
        &self,
        request: &RotationRequest,
        work: Work,
        facts: &mut Facts,
        deadline: Instant,
    ) -> Result<Ready, Finish> {
        // 1. Load.
        let secret = self
            .within(
                deadline,
                "reading the secret",
                self.store.latest(&request.vault, &request.secret),
            )
            .await?
            .map_err(|e| store_failure(e, "reading the secret"))?;
        facts.version = Some(secret.version.to_string());
        Span::current().record("version", secret.version.as_str());

        // 3a. Guards that need no Azure call.
        if let Some(event_version) = &request.event_version
            && event_version != &secret.version
        {
            return Err(finish(
                Outcome::Skipped(SkipReason::Stale),
                format!(
                    "the event is for version {event_version}, but the latest version is {}: nothing to do",
                    secret.version
                ),
            ));
        }
        if !secret.enabled {
            return Err(finish(
                Outcome::Skipped(SkipReason::Disabled),
                "the secret is disabled: nothing to do",
            ));
        }

        // 2. Validate.
        let plan = self.validate(request, &secret, facts)?;
        // The opt-out, read from the parsed tags (an ambiguous tag is refused by validation).
        // It never stops an unfinished leaked-key revocation or an emergency asked for now:
        // the leaked key would stay valid.
        if !plan.tags.rotation_enabled && plan.tags.revoke.is_none() && !request.revoke_active {
            return Err(finish(
                Outcome::Skipped(SkipReason::OptedOut),
                "the secret's RotationEnabled tag is false: keyflip leaves it alone; remove the tag (or set it to true) to rotate it again",
            ));
        }
        let now = self.clock.now();
        let pending = decide::pending_state(plan.tags.pending.as_ref(), now, self.settings.pending_timeout);
        if work == Work::Rotate
            && pending == PendingState::None
            && plan.tags.revoke.is_none()
            && !request.force
            && !request.revoke_active
            && !decide::outlived_dwell(secret.created, now, self.settings.dwell)
        {
            return Err(finish(
                Outcome::Skipped(SkipReason::Dwell),
                format!(
                    "the latest version is younger than the dwell ({} h): {} was the active key until then; use force to rotate anyway",
                    in_hours(self.settings.dwell),
                    plan.idle_tag
                ),
            ));
        }
        Ok(Ready {
            secret,
            plan,
            pending,
        })
    }

    /// Steps 3b and 5–7 (under the lease unless a dry run).
    async fn proceed(
        &self,
        request: &RotationRequest,
        work: Work,
        ready: Ready,
        holding: Option<&Holding>,
        facts: &mut Facts,
        deadline: Instant,
    ) -> Result<Finish, Finish> {
        let Ready {
            secret,
            plan,
            pending,
        } = ready;
        let writes = Writes { holding };
        let step = Step {
            request,
            secret: &secret,
            plan: &plan,
            writes,
            deadline,
            revoking: request.revoke_active,
        };
        if work == Work::Repair {
            return self.repair_secret(step, facts).await;
        }

        // 3b. The resource: key authentication on, a trustworthy check, the pointer true.
        let resource = &plan.tags.provider_address;
        let provider = plan.provider.as_ref();
        // The resource and its keys are read at once (two independent reads); what the resource
        // says is judged first, as if it had been read alone. The price: a resource refused for
        // what it says (keys disabled, no check) also had its keys listed, in memory only.
        let (info, keys) = futures::join!(
            self.within(deadline, "reading the resource", provider.describe(resource)),
            self.within(
                deadline,
                "listing the resource's keys",
                provider.list_keys(resource),
            ),
        );
        let info = info?.map_err(|e| provider_failure(e, "reading the resource"))?;
        if info.keys_disabled {
            return Err(failed(
                FailReason::KeysDisabled,
                format!(
                    "key authentication is disabled on {resource} (disableLocalAuth is true): its keys cannot be used, so keyflip will not rotate them; remove the rotation tags, or enable local auth on the resource"
                ),
            ));
        }
        if plan.tags.verify_key && info.check.is_none() {
            return Err(failed(
                FailReason::NoTrustworthyCheck,
                format!(
                    "keyflip has no trustworthy data-plane check for this resource{}: it will not publish an unverified key; set the tag VerifyKey=false on the secret to rotate it without a check",
                    info.kind
                        .as_deref()
                        .map(|k| format!(" (kind {k})"))
                        .unwrap_or_default()
                ),
            ));
        }
        let keys = keys?.map_err(|e| provider_failure(e, "listing the resource's keys"))?;
        self.cross_check(&plan, &secret, &keys)?;
        // Read before any resource write: a mark must be writable if a regeneration outlives
        // the budget (a dry run reads it only to check a mark).
        let mark_key = match (&plan.tags.pending, request.dry_run) {
            (None, true) => None,
            _ => Some(self.mark_key(deadline).await?),
        };
        let mut step = step;
        if let (Some(mark), Some(mark_key)) = (&plan.tags.pending, &mark_key) {
            // An emergency whose new key had not passed its check yet: resumed, it still revokes.
            step.revoking |= check_proof(mark, &secret, &plan, &keys, mark_key)?;
        }

        // 3c. An unfinished revocation; an expired pending mark; no other secret on this resource.
        if let (Some(revoke), None) = (&plan.tags.revoke, &plan.tags.pending) {
            return self.finish_revocation(step, revoke, &keys).await;
        }
        if let PendingState::Expired { since } = pending {
            return self.expire_pending(step, since).await;
        }
        self.alone_on_the_resource(request, &plan, &keys, Listing::Cached, deadline)
            .await?;
        let resuming = matches!(pending, PendingState::Resume { .. });
        if request.dry_run {
            let action = if resuming {
                "resume the pending"
            } else {
                "regenerate"
            };
            return Ok(finish(
                Outcome::Planned,
                format!(
                    "would {action} {}, verify it and publish it as the active key",
                    plan.idle_tag
                ),
            ));
        }

        // 5. Regenerate the idle slot, or resume the pending one (never regenerated again).
        let now = self.clock.now();
        let (new_key, mut marked, since) = match (&plan.tags.pending, pending) {
            (Some(mark), PendingState::Resume { since }) => {
                self.taken_effect(mark, &plan, &keys, since)?;
                tracing::info!(slot = %plan.idle_tag, "resuming a pending rotation without regenerating");
                (keys.get(plan.idle).clone(), true, since)
            }
            _ => {
                let new_key = self.regenerate(step, &keys, now).await?;
                (new_key, false, now)
            }
        };

        // 6. Verify: a key that passes at once needs no mark; otherwise mark, then keep trying.
        facts.verified = match plan.tags.verify_key {
            false => false,
            true => {
                let mut passed = self.check_key(provider, &info, &new_key, deadline).await;
                if !passed && !marked {
                    marked = self.mark_pending(step, &keys, now).await?;
                }
                if !passed {
                    passed = self.verify(provider, &info, &new_key, deadline).await;
                }
                if !passed {
                    let next_time = match marked {
                        true => "a later invocation resumes without regenerating".to_string(),
                        false => format!(
                            "the pending mark could not be written, so the next attempt regenerates {} again (harmless: no consumer uses it)",
                            plan.idle_tag
                        ),
                    };
                    return Err(pending_since(
                        since,
                        format!(
                            "the new {} key does not pass its check yet (pending since {}); the published key is unchanged and stays valid; {next_time}",
                            plan.idle_tag,
                            rfc3339(since)
                        ),
                    ));
                }
                true
            }
        };

        // 7. Publish: the one write that flips the pointer.
        let mut new_tags = tags::for_new_version(
            &secret.tags,
            plan.idle_tag,
            request.trigger.as_str(),
            secret.version.as_str(),
        )
        .map_err(|e| failed(FailReason::Misconfigured, e.to_string()))?;
        if step.revoking {
            // Written with the flip, so a crash before the leaked slot is regenerated leaves a
            // mark the rerun finishes.
            let mark_key = self.mark_key(deadline).await?;
            let proof = mark_key.revoke_proof(
                secret.version.as_str(),
                &new_key,
                plan.active_tag,
                keys.get(plan.active),
            );
            new_tags = tags::with_revoke(&new_tags, plan.active_tag, &proof)
                .map_err(|e| failed(FailReason::Misconfigured, e.to_string()))?;
        }
        let now = self.clock.now();
        let expires = expiry(now, plan.tags.validity_days)?;
        let written_tags = new_tags.clone();
        let version = NewVersion {
            value: new_key,
            tags: new_tags,
            content_type: secret.content_type.clone(),
            not_before: now,
            expires,
        };
        let unmarked = (!marked).then_some((&keys, now));
        let published = self.publish_checked(step, version, unmarked).await?;
        facts.version = Some(published.to_string());
        facts.expires = Some(rfc3339(expires));
        Span::current().record("version", published.as_str());
        let verified = if facts.verified {
            "verified"
        } else {
            "not verified (VerifyKey=false)"
        };
        if step.revoking {
            let published_now = format!(
                "published version {published}: {} is now the active key ({verified})",
                plan.idle_tag
            );
            return self
                .revoke_slot(
                    step,
                    (&published, &written_tags),
                    (plan.active, plan.active_tag),
                    &published_now,
                )
                .await;
        }
        let message = format!(
            "published version {published}: {} is now the active key ({verified}); {} stays valid until the next rotation",
            plan.idle_tag, plan.active_tag
        );
        Ok(finish(Outcome::Rotated, message))
    }

    /// Step 7's write, under the lease; a publish whose answer failed or timed out is re-read
    /// before it is reported, since it may have landed (then the pointer already flipped, and
    /// a forced retry would regenerate the slot that just became active). One that did not
    /// land (or may land late) is marked pending (`unmarked`: the keys before and the moment) if
    /// no mark exists yet, so the
    /// rerun publishes this key instead of regenerating it.
    async fn publish_checked(
        &self,
        step: Step<'_>,
        version: NewVersion,
        unmarked: Option<(&KeyPair, OffsetDateTime)>,
    ) -> Result<crate::domain::SecretVersion, Finish> {
        let Step {
            request,
            secret,
            plan,
            writes,
            deadline,
            ..
        } = step;
        let window = writes.allowed("publishing the new version")?;
        let new_key = version.value.clone();
        let publishing = self.store.publish(&request.vault, &secret.name, version);
        let error = match tokio::time::timeout(before_reserve(deadline).min(window), publishing).await {
            Ok(Ok(published)) => return Ok(published),
            Ok(Err(error)) => error,
            Err(_) => StoreError::Transient("the write did not answer within the invocation's budget".into()),
        };
        let landed = self
            .landed_anyway(request, &new_key, plan.idle_tag, deadline)
            .await;
        if let Landed::Yes(published) = landed {
            return Ok(published);
        }
        let marked = match unmarked {
            None => true,
            Some((before, since)) => self.mark_pending(step, before, since).await.unwrap_or(false),
        };
        let next = match marked {
            true => "a rerun publishes it without regenerating".to_string(),
            false => format!(
                "the pending mark could not be written, so a rerun regenerates {} again (harmless: no consumer uses it)",
                plan.idle_tag
            ),
        };
        Err(store_failure(
            error,
            &match landed {
                Landed::Unknown => format!(
                    "publishing the new {idle} key: the write failed and the secret could not be re-read, so it may have landed; do not force a retry (if it landed, {idle} is now the active key); {next}",
                    idle = plan.idle_tag
                ),
                _ => format!(
                    "publishing the new {} key (re-read: it did not land; the published key is unchanged and stays valid; {next})",
                    plan.idle_tag
                ),
            },
        ))
    }

    /// After a failed or timed-out publish: whether the write landed anyway (its answer lost on the way
    /// back), in which case the latest version already holds the new key and flips the pointer.
    async fn landed_anyway(
        &self,
        request: &RotationRequest,
        new_key: &ApiKey,
        idle_tag: &str,
        deadline: Instant,
    ) -> Landed {
        let reading = self.store.latest(&request.vault, &request.secret);
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(latest)) = tokio::time::timeout(left, reading).await else {
            return Landed::Unknown;
        };
        let flipped =
            tags::tag(&latest.tags, tags::CREDENTIAL_ID).is_some_and(|t| t.eq_ignore_ascii_case(idle_tag));
        match latest.value.same_as(new_key) && flipped {
            true => {
                tracing::warn!(version = %latest.version, "the publish answered an error, but the new version landed");
                Landed::Yes(latest.version)
            }
            false => Landed::No,
        }
    }

    /// Step 2: tags, provider, scope allow-list, slots.
    fn validate(
        &self,
        request: &RotationRequest,
        secret: &LoadedSecret,
        facts: &mut Facts,
    ) -> Result<Plan, Finish> {
        if !tags::is_managed(&secret.tags) {
            let fix = "add the tags CredentialId, ProviderAddress and ValidityPeriodDays to its latest version to let keyflip rotate it";
            // An event or the sweep meets every secret of a vault: one keyflip does not manage
            // is not an error. Asked by name, it is.
            return Err(match request.trigger {
                TriggerKind::Manual => failed(
                    FailReason::Misconfigured,
                    format!("the secret is not managed by keyflip: {fix}"),
                ),
                _ => finish(
                    Outcome::Skipped(SkipReason::NotManaged),
                    format!("not managed by keyflip: {fix}"),
                ),
            });
        }
        let mut parsed = RotationTags::parse(&secret.tags, self.settings.lead_days)
            .map_err(|e| failed(FailReason::Misconfigured, e.to_string()))?;
        let provider = self
            .providers
            .for_resource(&parsed.provider_address)
            .map_err(|e| failed(FailReason::Misconfigured, e.to_string()))?;
        facts.provider = Some(provider.name().to_string());
        Span::current().record("provider", provider.name());
        let resource: &ArmResourceId = &parsed.provider_address;
        if !self.settings.allowed_scopes.permits(&request.vault, resource) {
            return Err(failed(
                FailReason::NotAllowed,
                outside_scopes(&self.settings.allowed_scopes, &request.vault, resource),
            ));
        }
        let active = provider.slot_from_tag(&parsed.credential_id).ok_or_else(|| {
            failed(
                FailReason::Misconfigured,
                format!(
                    "tag CredentialId is '{}', which is not a slot of this resource: use {} or {}",
                    echo(&parsed.credential_id),
                    provider.slot_tag(Slot::First),
                    provider.slot_tag(Slot::Second)
                ),
            )
        })?;
        let idle = active.other();
        let (active_tag, idle_tag) = (provider.slot_tag(active), provider.slot_tag(idle));
        facts.from = Some(active_tag.to_string());
        facts.to = Some(idle_tag.to_string());
        Span::current().record("from", active_tag).record("to", idle_tag);
        // Both writes this rotation may make must fit Key Vault's tag limit: check before
        // touching anything.
        tags::with_pending(
            &secret.tags,
            &tags::Mark {
                slot: idle_tag,
                since: OffsetDateTime::UNIX_EPOCH,
                from: "0000000000000000",
                proof: "0000000000000000",
            },
        )
        .and_then(|marked| tags::with_revoke(&marked, active_tag, "0000000000000000"))
        .and_then(|_| tags::for_new_version(&secret.tags, idle_tag, "manual", secret.version.as_str()))
        .and_then(|next| tags::with_revoke(&next, active_tag, "0000000000000000"))
        .map_err(|e| failed(FailReason::Misconfigured, e.to_string()))?;
        let now = self.clock.now();
        if let Some(pending) = &parsed.pending {
            check_pending(pending, provider.as_ref(), active, now)?;
        }
        // A mark an earlier keyflip wrote (no PendingFrom, an unkeyed proof) cannot be told
        // from a forgery, so it is not resumed: the idle slot is regenerated afresh, which no
        // consumer notices (I5), and the dwell applies as if there were no mark.
        if parsed.pending.as_ref().is_some_and(|p| p.from.is_none()) {
            tracing::warn!(
                "a pending mark from an earlier keyflip (no PendingFrom) is not resumed; the idle slot is regenerated afresh"
            );
            parsed.pending = None;
        }
        expiry(now, parsed.validity_days)?;
        Ok(Plan {
            tags: parsed,
            provider,
            active,
            idle,
            active_tag,
            idle_tag,
        })
    }

    /// Step 3: the published value must be the active slot's current key (I1, I8).
    fn cross_check(&self, plan: &Plan, secret: &LoadedSecret, keys: &KeyPair) -> Result<(), Finish> {
        if keys.first.same_as(&keys.second) {
            return Err(failed(
                FailReason::UnknownKey,
                format!(
                    "the resource's two keys are equal, so keyflip cannot tell which one consumers use: regenerate one of them by hand (the one no consumer uses), then {}",
                    repair_hint(&secret.name, plan)
                ),
            ));
        }
        match keys.slot_of(&secret.value) {
            Some(slot) if slot == plan.active => Ok(()),
            Some(_) => Err(failed(
                FailReason::PointerMismatch,
                format!(
                    "the latest version holds the current {idle} key, but its CredentialId tag says {active}: regenerating {idle} would break every consumer of the published key, so keyflip refuses; set CredentialId={idle} on the latest version (a tag update) once you have checked which key is in use",
                    idle = plan.idle_tag,
                    active = plan.active_tag
                ),
            )),
            None => Err(failed(
                FailReason::UnknownKey,
                unknown_key_message(secret, plan, keys),
            )),
        }
    }

    /// Step 5: regenerate the idle slot (sent once; a long-running operation followed) and
    /// check the answer. Past the budget, or with an answer that leaves open whether it took
    /// effect, the rotation is marked pending with `PendingFrom` and ends: a later invocation
    /// checks the slot's key and never regenerates again before the pending timeout.
    async fn regenerate(
        &self,
        step: Step<'_>,
        before: &KeyPair,
        now: OffsetDateTime,
    ) -> Result<ApiKey, Finish> {
        let Step {
            plan,
            writes,
            deadline,
            ..
        } = step;
        let window = writes.allowed("regenerating the idle key")?;
        let resource = &plan.tags.provider_address;
        let regenerating = plan.provider.regenerate(resource, plan.idle);
        let answer = tokio::time::timeout(before_reserve(deadline).min(window), regenerating).await;
        let after = match answer {
            Ok(Ok(after)) => after,
            // The answer was lost: the keys say whether it took effect (never sent again).
            Ok(Err(ProviderError::Uncertain(why))) => {
                let reading = plan.provider.list_keys(resource);
                match tokio::time::timeout(before_reserve(deadline), reading).await {
                    Ok(Ok(now)) if !now.get(plan.idle).same_as(before.get(plan.idle)) => {
                        tracing::warn!(slot = %plan.idle_tag, "the regeneration's answer was lost, but it took effect");
                        now
                    }
                    // Unchanged proves nothing: a long-running operation whose 202 was lost
                    // may still land, and regenerating again would let it kill the key the
                    // retry publishes. Mark it and never resend before the pending timeout.
                    _ => {
                        return Err(self.mark_unfinished(step, before, now, &why).await);
                    }
                }
            }
            // Accepted, and it may still land: never regenerate again while it might.
            Ok(Err(ProviderError::Running(why))) => {
                return Err(self.mark_unfinished(step, before, now, &why).await);
            }
            Ok(Err(e)) => return Err(provider_failure(e, &format!("regenerating {}", plan.idle_tag))),
            Err(_) => {
                let why = "the regeneration did not finish within the invocation's budget";
                return Err(self.mark_unfinished(step, before, now, why).await);
            }
        };
        if !after.get(plan.active).same_as(before.get(plan.active)) {
            return Err(failed(
                FailReason::Azure,
                format!(
                    "after regenerating {}, the resource reports a different {} key too: check the resource's keys and the secret now",
                    plan.idle_tag, plan.active_tag
                ),
            ));
        }
        if after.get(plan.idle).same_as(before.get(plan.idle)) {
            let why = "the resource answered the regeneration with the slot's old key";
            return Err(self.mark_unfinished(step, before, now, why).await);
        }
        tracing::info!(slot = %plan.idle_tag, "regenerated the idle key");
        Ok(after.get(plan.idle).clone())
    }

    /// One data-plane check of the new key, within the budget less a reserve for publishing.
    async fn check_key(
        &self,
        provider: &dyn KeyProvider,
        info: &ResourceInfo,
        key: &ApiKey,
        deadline: Instant,
    ) -> bool {
        let left = before_reserve(deadline);
        match tokio::time::timeout(left, provider.verify(info, key)).await {
            Ok(Verification::Accepted) => true,
            Ok(Verification::Refused(why)) => {
                tracing::info!(reason = %why, "the new key is refused so far");
                false
            }
            Ok(Verification::Inconclusive(why)) => {
                tracing::warn!(reason = %why, "the key check was inconclusive");
                false
            }
            Err(_) => false,
        }
    }

    /// Step 6 after a failed first check: checks the new key again with backoff until it passes
    /// or the budget (less a reserve for publishing) runs out.
    async fn verify(
        &self,
        provider: &dyn KeyProvider,
        info: &ResourceInfo,
        key: &ApiKey,
        deadline: Instant,
    ) -> bool {
        let mut backoff = self.settings.verify_initial_backoff;
        loop {
            if backoff >= before_reserve(deadline) {
                return false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.settings.verify_max_backoff);
            if self.check_key(provider, info, key, deadline).await {
                return true;
            }
        }
    }
}

/// Whether the one-resource-per-secret check may use the engine's cached index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// An index at most `claims::MAX_AGE` old will do (rotations).
    Cached,
    /// List every served vault now, and refuse if one cannot be listed (a repair).
    Complete,
}

/// What an invocation of the engine does with one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Rotate,
    Repair,
}

/// What a re-read after a failed publish showed.
enum Landed {
    Yes(crate::domain::SecretVersion),
    No,
    Unknown,
}

/// What every step after validation works with: the request, the secret as loaded under the
/// lease, the plan, whether it may write, and the invocation's deadline.
#[derive(Clone, Copy)]
struct Step<'a> {
    request: &'a RotationRequest,
    secret: &'a LoadedSecret,
    plan: &'a Plan,
    writes: Writes<'a>,
    deadline: Instant,
    /// A leaked-key emergency (asked now, or resumed from a pending mark that carries it).
    revoking: bool,
}

/// Steps 1–3a's findings, for the rest of the rotation.
struct Ready {
    secret: LoadedSecret,
    plan: Plan,
    pending: PendingState,
}

/// Whether the rotation may still write: under its lease (none in a dry run, which writes
/// nothing).
#[derive(Clone, Copy)]
struct Writes<'a> {
    holding: Option<&'a Holding>,
}

impl Writes<'_> {
    /// Before each write: the lease must still be held, or the rotation stops here. Gives how
    /// long the write may take: it must end before the lease could expire.
    fn allowed(&self, doing: &str) -> Result<Duration, Finish> {
        let Some(holding) = self.holding else {
            return Err(failed(
                FailReason::Internal,
                format!("{doing}: a write without the lease was attempted (a bug); nothing was written"),
            ));
        };
        holding.check().map_err(|e| {
            failed(
                FailReason::Transient,
                format!("{doing}: {e}; the rotation stopped before this write; the published key is unchanged; a retry will resume"),
            )
        })
    }
}

/// The deadline of a write the lease allows for `window`: the invocation's, or sooner.
fn write_deadline(deadline: Instant, window: Duration) -> Instant {
    deadline.min(Instant::now() + window)
}

/// Why a resource outside the vault's KEYFLIP_ALLOWED_SCOPES is refused, and how to allow it.
pub(in crate::engine) fn outside_scopes(
    scopes: &crate::domain::AllowedScopes,
    vault: &crate::domain::VaultName,
    resource: &ArmResourceId,
) -> String {
    format!(
        "tag ProviderAddress names {resource}, which is outside the KEYFLIP_ALLOWED_SCOPES of vault {vault} ({}): add its subscription or resource group to that setting (as {vault}=<scope> to allow it for this vault only) to rotate it",
        scopes.describe_for(vault)
    )
}

/// How long releasing the lease may take at the end of a rotation.
const LEASE_RELEASE_BOUND: Duration = Duration::from_secs(2);

/// What is left of the budget less a reserve for the write (or re-read) that must follow.
fn before_reserve(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    left.saturating_sub(Duration::from_secs(3).min(left / 4))
}

/// What validation established for the rest of the rotation.
struct Plan {
    tags: RotationTags,
    provider: std::sync::Arc<dyn KeyProvider>,
    active: Slot,
    idle: Slot,
    active_tag: &'static str,
    idle_tag: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_hours_with_their_fraction() {
        assert_eq!(in_hours(Duration::from_secs(24 * 3600)), "24");
        assert_eq!(in_hours(Duration::from_secs(36)), "0.01");
        assert_eq!(in_hours(Duration::from_secs(5400)), "1.5");
        assert_eq!(in_hours(Duration::ZERO), "0");
    }
}
