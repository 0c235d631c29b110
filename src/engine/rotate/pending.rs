//! Pending marks (DESIGN.md §3 step 5): which marks keyflip could have written, when a resumed
//! one may go on (`PendingFrom`, `PendingProof`), writing a mark, and a mark past the timeout.

use super::*;

/// A pending mark keyflip could have written: the idle slot of this resource, since a moment
/// that is not in the future. Anything else was written by someone else: a misconfiguration,
/// reported before anything is touched.
pub(super) fn check_pending(
    pending: &tags::Pending,
    provider: &dyn KeyProvider,
    active: Slot,
    now: OffsetDateTime,
) -> Result<(), Finish> {
    let fix = "remove the tags PendingSlot, PendingSince, PendingFrom and PendingProof from the latest version to start afresh";
    match provider.slot_from_tag(&pending.slot) {
        None => {
            return Err(failed(
                FailReason::Misconfigured,
                format!(
                    "tag PendingSlot is '{}', which is not a slot of this resource (use {} or {}): {fix}",
                    echo(&pending.slot),
                    provider.slot_tag(Slot::First),
                    provider.slot_tag(Slot::Second)
                ),
            ));
        }
        Some(slot) if slot == active => {
            return Err(failed(
                FailReason::Misconfigured,
                format!(
                    "tag PendingSlot names {}, the active slot: keyflip only ever marks the idle slot pending, and regenerating the active one would break every consumer; {fix}",
                    provider.slot_tag(active)
                ),
            ));
        }
        Some(_) => {}
    }
    if pending.since > now + PENDING_CLOCK_SKEW {
        return Err(failed(
            FailReason::Misconfigured,
            format!(
                "tag PendingSince is {}, in the future (keyflip's clock says {}): {fix}",
                rfc3339(pending.since),
                rfc3339(now)
            ),
        ));
    }
    Ok(())
}

/// A pending mark is resumed only when its `PendingProof` is keyflip's: keyed with the mark key
/// over this version, the active key, the mark and its purpose. Gives whether the mark is a
/// leaked-key emergency's (which the resume must finish by revoking). A mark a tag writer forged,
/// or one left from keys that changed since, is refused before anything is touched.
pub(super) fn check_proof(
    mark: &tags::Pending,
    secret: &LoadedSecret,
    plan: &Plan,
    keys: &KeyPair,
    mark_key: &MarkKey,
) -> Result<bool, Finish> {
    let proof = mark.proof.as_deref().unwrap_or_default();
    let from = mark.from.as_deref().unwrap_or_default();
    let made = |revoking| {
        mark_key.pending_proof(
            secret.version.as_str(),
            keys.get(plan.active),
            plan.idle_tag,
            mark.since,
            from,
            revoking,
        )
    };
    if mark_key.proves(proof, &made(false)) {
        return Ok(false);
    }
    if mark_key.proves(proof, &made(true)) {
        return Ok(true);
    }
    Err(failed(
        FailReason::Misconfigured,
        format!(
            "the pending mark of {} does not match this version and the resource's current keys (its PendingProof is not theirs): keyflip did not write it for them, so it will not publish {} without regenerating it; remove the tags PendingSlot, PendingSince, PendingFrom and PendingProof from the latest version to start afresh",
            plan.idle_tag, plan.idle_tag
        ),
    ))
}

impl Engine {
    /// A resumed mark with `PendingFrom`: the slot's key must differ from the one before the
    /// regeneration, or the regeneration has not taken effect yet (a long-running operation
    /// still running, or a request whose answer was lost): stay pending, never regenerate.
    pub(super) fn taken_effect(
        &self,
        mark: &tags::Pending,
        plan: &Plan,
        keys: &KeyPair,
        since: OffsetDateTime,
    ) -> Result<(), Finish> {
        let Some(from) = &mark.from else {
            return Ok(());
        };
        if !from.eq_ignore_ascii_case(&fingerprint(keys.get(plan.idle))) {
            return Ok(());
        }
        Err(pending_since(
            since,
            format!(
                "the regeneration of {} (pending since {}) has not taken effect yet: the slot still holds the key it had before; the published key is unchanged and stays valid; a later invocation checks again and never regenerates {} before the pending timeout ({} h)",
                plan.idle_tag,
                rfc3339(since),
                plan.idle_tag,
                in_hours(self.settings.pending_timeout)
            ),
        ))
    }

    /// Writes a pending mark under the lease for the idle slot, whose key before the
    /// regeneration is `before`'s, since `since`: `true` if it landed.
    pub(super) async fn mark_pending(
        &self,
        step: Step<'_>,
        before: &KeyPair,
        since: OffsetDateTime,
    ) -> Result<bool, Finish> {
        let Step {
            request,
            secret,
            plan,
            writes,
            deadline,
            ..
        } = step;
        let mark_key = self.mark_key(deadline).await?;
        let from = fingerprint(before.get(plan.idle));
        // An emergency's intent is in the mark's proof, so whichever trigger resumes the
        // rotation also revokes, and stripping tags cannot stop it.
        let proof = mark_key.pending_proof(
            secret.version.as_str(),
            before.get(plan.active),
            plan.idle_tag,
            since,
            &from,
            step.revoking,
        );
        let mark = tags::Mark {
            slot: plan.idle_tag,
            since,
            from: &from,
            proof: &proof,
        };
        let deadline = write_deadline(deadline, writes.allowed("marking the rotation pending")?);
        let marked = tags::with_pending(&secret.tags, &mark)
            .map_err(|e| failed(FailReason::Misconfigured, e.to_string()))?;
        let marking = self
            .store
            .set_tags(&request.vault, &secret.name, &secret.version, marked);
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), marking).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not mark the rotation pending");
                Ok(false)
            }
            Err(_) => {
                tracing::warn!("marking the rotation pending did not answer within the budget");
                Ok(false)
            }
        }
    }

    /// A regeneration that may still take effect: mark it pending with the old key's
    /// fingerprint, so no later invocation regenerates again while it might.
    pub(super) async fn mark_unfinished(
        &self,
        step: Step<'_>,
        before: &KeyPair,
        now: OffsetDateTime,
        why: &str,
    ) -> Finish {
        let plan = step.plan;
        match self.mark_pending(step, before, now).await {
            Ok(true) => pending_since(
                now,
                format!(
                    "{why}: marked pending; the published key is unchanged and stays valid; a later invocation checks whether {} took effect and never regenerates it again before the pending timeout ({} h)",
                    plan.idle_tag,
                    in_hours(self.settings.pending_timeout)
                ),
            ),
            Ok(false) => failed(
                FailReason::Transient,
                format!(
                    "{why}, and the pending mark could not be written: the next attempt regenerates {} again (harmless: no consumer uses it); the published key is unchanged and stays valid",
                    plan.idle_tag
                ),
            ),
            Err(stopped) => stopped,
        }
    }

    /// A pending rotation outlived the timeout: report it loudly, leave the published key as it
    /// is, and clear the mark so the next rotation regenerates afresh.
    pub(super) async fn expire_pending(
        &self,
        step: Step<'_>,
        since: OffsetDateTime,
    ) -> Result<Finish, Finish> {
        let Step {
            request,
            secret,
            plan,
            writes,
            deadline,
            ..
        } = step;
        let unrevoked = match step.revoking {
            true => format!(
                "; the leaked-key emergency did not complete: the leaked {} key is still valid, so call again with mode=revoke-active",
                plan.active_tag
            ),
            false => String::new(),
        };
        let message = format!(
            "the new {} key never passed its check since {} (KEYFLIP_PENDING_TIMEOUT_HOURS is {}); the published key is unchanged and stays valid; check the resource; the next rotation regenerates {} afresh{unrevoked}",
            plan.idle_tag,
            rfc3339(since),
            in_hours(self.settings.pending_timeout),
            plan.idle_tag
        );
        if request.dry_run {
            return Err(failed(FailReason::VerificationTimeout, message));
        }
        let deadline = write_deadline(deadline, writes.allowed("clearing the expired pending mark")?);
        let cleared: Tags = tags::without_pending(&secret.tags);
        let clearing = self
            .store
            .set_tags(&request.vault, &secret.name, &secret.version, cleared);
        if let Ok(Err(e)) = self.within(deadline, "clearing the pending mark", clearing).await {
            tracing::warn!(error = %e, "could not clear the expired pending mark");
        }
        Err(failed(FailReason::VerificationTimeout, message))
    }
}
