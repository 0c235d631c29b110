//! The leaked-key emergency (`mode=revoke-active`): after the usual publish of the idle slot
//! with `RevokePending`, regenerate the formerly active slot at once and clear the mark; a rerun
//! that meets the mark finishes the revocation, never a fresh rotation (DESIGN.md §2).

use super::*;

impl Engine {
    /// A rerun that finds `RevokePending` on the latest version: regenerate the leaked slot
    /// (now the idle one) if it still holds the leaked key and the mark is keyflip's, then clear
    /// the mark; never a fresh rotation.
    pub(super) async fn finish_revocation(
        &self,
        step: Step<'_>,
        revoke: &tags::Revoke,
        keys: &KeyPair,
    ) -> Result<Finish, Finish> {
        let Step {
            request,
            secret,
            plan,
            deadline,
            ..
        } = step;
        if plan.provider.slot_from_tag(&revoke.slot) != Some(plan.idle) {
            return Err(failed(
                FailReason::Misconfigured,
                format!(
                    "tag RevokePending is '{}', but only the idle slot ({}) can be the revoked one: remove the tags RevokePending and RevokeProof, then check which key leaked",
                    echo(&revoke.slot),
                    plan.idle_tag
                ),
            ));
        }
        let previous = tags::tag(&secret.tags, tags::PREVIOUS_VERSION).unwrap_or_default();
        let mark_key = self.mark_key(deadline).await?;
        let keyflips = mark_key.proves(
            &revoke.proof,
            &mark_key.revoke_proof(previous, &secret.value, plan.idle_tag, keys.get(plan.idle)),
        );
        if !keyflips {
            // Forged, or written under another mark key, or already revoked before the mark was
            // cleared: keyflip cannot tell, and clearing it could leave a leaked key valid.
            return Err(failed(
                FailReason::Misconfigured,
                format!(
                    "tag RevokePending names {idle}, but its RevokeProof is not keyflip's for {idle}'s current key: either the revocation already happened (then remove the tags RevokePending and RevokeProof), or the mark was not written by this deployment; keyflip regenerates nothing and leaves the mark; if a key leaked, check which, then call again with mode=revoke-active",
                    idle = plan.idle_tag
                ),
            ));
        }
        if request.dry_run {
            return Ok(finish(
                Outcome::Planned,
                format!("would finish the revocation of {}", plan.idle_tag),
            ));
        }
        tracing::warn!(slot = %plan.idle_tag, "finishing an interrupted leaked-key revocation");
        self.revoke_slot(
            step,
            (&secret.version, &secret.tags),
            (plan.idle, plan.idle_tag),
            "the leaked key's replacement was published earlier",
        )
        .await
    }

    /// The emergency's second regeneration: the leaked slot (idle now), at once, then the
    /// `RevokePending` mark cleared from the version that carries it.
    pub(super) async fn revoke_slot(
        &self,
        step: Step<'_>,
        (version, version_tags): (&crate::domain::SecretVersion, &Tags),
        (leaked, leaked_tag): (Slot, &str),
        done_so_far: &str,
    ) -> Result<Finish, Finish> {
        let Step {
            request,
            secret,
            plan,
            writes,
            deadline,
            ..
        } = step;
        let secret = &secret.name;
        let unfinished = |why: String| {
            failed(
                FailReason::Transient,
                format!(
                    "{done_so_far}; but the leaked {leaked_tag} key is not revoked yet ({why}): a rerun finishes the revocation (RevokePending is set), never a fresh rotation"
                ),
            )
        };
        writes.allowed("regenerating the leaked key")?;
        let regenerating = plan.provider.regenerate(&plan.tags.provider_address, leaked);
        match tokio::time::timeout(before_reserve(deadline), regenerating).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unfinished(e.to_string())),
            Err(_) => {
                return Err(unfinished(
                    "the regeneration did not finish within the budget".into(),
                ));
            }
        }
        tracing::warn!(slot = %leaked_tag, "regenerated the leaked key");
        let cleared = match writes.allowed("clearing the revocation mark") {
            Ok(window) => {
                let clearing = self.store.set_tags(
                    &request.vault,
                    secret,
                    version,
                    tags::without_revoke(version_tags),
                );
                let left = deadline.saturating_duration_since(Instant::now()).min(window);
                matches!(tokio::time::timeout(left, clearing).await, Ok(Ok(())))
            }
            Err(_) => false,
        };
        let mark = match cleared {
            true => String::new(),
            false => " (the RevokePending mark could not be cleared; the next invocation clears it without regenerating)".to_string(),
        };
        Ok(finish(
            Outcome::Revoked,
            format!(
                "{done_so_far}; the leaked {leaked_tag} key was regenerated at once (forced: inside the dwell){mark}: consumers still holding the leaked key fail until they reload the secret"
            ),
        ))
    }
}
