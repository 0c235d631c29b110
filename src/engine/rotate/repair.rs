//! `keyflip rotate --repair`: publish the active slot's current key for a secret whose value is
//! neither of the resource's keys, regenerating nothing (a person's act, never over HTTP).

use super::*;

impl Engine {
    /// The repair: the published value must be neither key; then the active slot's current key
    /// is published as a new version with the same pointer.
    pub(super) async fn repair_secret(&self, step: Step<'_>, facts: &mut Facts) -> Result<Finish, Finish> {
        let Step {
            request,
            secret,
            plan,
            writes,
            deadline,
            ..
        } = step;
        let resource = &plan.tags.provider_address;
        let keys = self
            .within(
                deadline,
                "listing the resource's keys",
                plan.provider.list_keys(resource),
            )
            .await?
            .map_err(|e| provider_failure(e, "listing the resource's keys"))?;
        facts.to = Some(plan.active_tag.to_string());
        if keys.first.same_as(&keys.second) {
            return Err(failed(
                FailReason::UnknownKey,
                "the resource's two keys are equal, so it cannot be told which one consumers use: regenerate the one no consumer uses by hand, then repair again",
            ));
        }
        match keys.slot_of(&secret.value) {
            Some(slot) if slot == plan.active => {
                return Ok(finish(
                    Outcome::Skipped(SkipReason::NothingToRepair),
                    format!(
                        "the latest version already holds the current {} key: nothing to repair",
                        plan.active_tag
                    ),
                ));
            }
            Some(_) => {
                return Err(failed(
                    FailReason::PointerMismatch,
                    format!(
                        "the latest version holds the current {idle} key, but its CredentialId tag says {active}: the tag lies, and publishing {active} would move consumers to a key the secret never held; set CredentialId={idle} on the latest version (a tag update) once you have checked which key is in use",
                        idle = plan.idle_tag,
                        active = plan.active_tag
                    ),
                ));
            }
            None => {}
        }
        // A repair reveals the active key to whoever reads this secret: never for a resource
        // another managed secret already publishes a key of.
        self.alone_on_the_resource(request, plan, &keys, Listing::Complete, deadline)
            .await?;
        if request.dry_run {
            return Ok(finish(
                Outcome::Planned,
                format!(
                    "would publish the current {} key as a new version (nothing regenerated)",
                    plan.active_tag
                ),
            ));
        }
        let new_tags =
            tags::for_new_version(&secret.tags, plan.active_tag, "repair", secret.version.as_str())
                .map_err(|e| failed(FailReason::Misconfigured, e.to_string()))?;
        let now = self.clock.now();
        let expires = expiry(now, plan.tags.validity_days)?;
        let version = NewVersion {
            value: keys.get(plan.active).clone(),
            tags: new_tags,
            content_type: secret.content_type.clone(),
            not_before: now,
            expires,
        };
        let deadline = write_deadline(deadline, writes.allowed("publishing the repaired version")?);
        let publishing = self.store.publish(&request.vault, &secret.name, version);
        let published = self
            .within(deadline, "publishing the repaired version", publishing)
            .await?
            .map_err(|e| store_failure(e, "publishing the repaired version (nothing changed)"))?;
        facts.version = Some(published.to_string());
        facts.expires = Some(rfc3339(expires));
        Span::current().record("version", published.as_str());
        Ok(finish(
            Outcome::Repaired,
            format!(
                "published version {published} holding the current {} key (CredentialId {}, nothing regenerated); consumers that reload the secret work again",
                plan.active_tag, plan.active_tag
            ),
        ))
    }
}
