//! One resource, one secret (I9): before a regenerate or a repair, no other managed secret that
//! holds a current key of the resource may name it. The index of which secrets name which
//! resource, listed across every served vault, and the reads of the other claimants.

use super::*;
use crate::engine::claims::Lookup;

impl Engine {
    /// The index of which secrets name each resource: the last one if fresh (and `listing`
    /// allows a cached one), or the one a sweep or another rotation is building (waited for),
    /// else every served vault listed again, concurrently — by one rotation at a time, the
    /// others waiting for its index (a failed listing drops it, and one of them lists next). A
    /// vault that cannot be listed for now fails the rotation (a retry will resume); one keyflip
    /// cannot list for good is left out with a warning and named in [`Claims::unlisted`].
    ///
    /// Also gives how long it waited for an index someone else was building, up to
    /// `index_wait` of it on top of `deadline` ([`RotationRequest::index_wait`]): the caller's
    /// deadline moves by that much.
    pub(super) async fn claims_now(
        &self,
        listing: Listing,
        deadline: Instant,
        index_wait: Duration,
    ) -> Result<(Arc<Claims>, Duration), Finish> {
        let now = self.clock.now();
        let mut building = None;
        let mut waited = Duration::ZERO;
        // A builder whose listing failed hands over to one of its waiters, once: when that one
        // fails too, the others give up instead of all listing every vault at once.
        let mut failed_listings = 0;
        if listing == Listing::Cached {
            loop {
                match self.claims.lookup_or_begin(now).await {
                    Lookup::Fresh(claims) => return Ok((claims, waited)),
                    Lookup::Building(mut receiver) => {
                        let began = Instant::now();
                        let waiting = Lookup::wait(&mut receiver);
                        let built = self
                            .within(
                                deadline + index_wait,
                                "waiting for another listing of the served vaults",
                                waiting,
                            )
                            .await;
                        waited = (waited + began.elapsed()).min(index_wait);
                        if let Some(claims) = built? {
                            return Ok((claims, waited));
                        }
                        failed_listings += 1;
                        if failed_listings == 2 {
                            return Err(failed(
                                FailReason::Transient,
                                "the listings of the served vaults that the one-resource-one-secret check waited for failed (see the sweep's or the other rotations' errors); a retry will resume",
                            ));
                        }
                    }
                    Lookup::Begun(ours) => {
                        building = Some(ours);
                        break;
                    }
                }
            }
        }
        let deadline = deadline + waited;
        let lists = self.settings.vaults.iter().map(|vault| async move {
            let listing = self.within(deadline, "listing the served vaults", self.store.list(vault));
            (vault, listing.await)
        });
        let mut listed = Vec::new();
        let mut unlisted = Vec::new();
        for (vault, answer) in futures::future::join_all(lists).await {
            match answer? {
                Ok(secrets) => listed.push((vault, secrets)),
                Err(StoreError::Transient(e)) => {
                    return Err(failed(
                        FailReason::Transient,
                        format!(
                            "listing vault {vault} to check that no other secret names this resource: {e}; a retry will resume"
                        ),
                    ));
                }
                // A vault that does not exist holds no secret to protect.
                Err(StoreError::NotFound(e)) => {
                    tracing::warn!(%vault, error = %e, "a served vault does not exist; check KEYFLIP_VAULTS");
                }
                Err(e) => {
                    tracing::warn!(%vault, error = %e, "cannot list a served vault; its secrets are left out of the one-resource-per-secret check");
                    unlisted.push(vault.clone());
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
        match building {
            // Published to every rotation waiting for it, and kept.
            Some(building) => building.finish(now, Some(claims.clone())).await,
            None => self.claims.store(now, claims.clone()).await,
        }
        Ok((claims, waited))
    }

    /// Which of `group` hold a current key of the resource whose keys are `keys` (read fresh,
    /// a few at a time). A claimant that cannot be read for good (gone, disabled, refused) holds
    /// nothing keyflip could break; one that cannot be read for now fails the check (retry).
    pub(in crate::engine) async fn holders(
        &self,
        group: &[Claim],
        keys: &KeyPair,
        deadline: Instant,
    ) -> Result<Vec<Claim>, Finish> {
        let mut answers = Vec::new();
        for chunk in group.chunks(8) {
            let reads = chunk.iter().map(|claim| self.read_claim(claim, deadline));
            answers.extend(futures::future::join_all(reads).await);
        }
        let mut holders = Vec::new();
        for (claim, answer) in answers {
            match answer? {
                Ok(other) if other.enabled && keys.slot_of(&other.value).is_some() => {
                    holders.push(claim.clone())
                }
                Ok(_) | Err(StoreError::NotFound(_) | StoreError::Disabled(_)) => {}
                Err(StoreError::Transient(e)) => {
                    return Err(failed(
                        FailReason::Transient,
                        format!("reading {claim}, which names this resource too: {e}; a retry will resume"),
                    ));
                }
                Err(StoreError::Permanent(e)) => {
                    tracing::warn!(%claim, error = %e, "cannot read another secret naming this resource; it counts as holding no key");
                }
            }
        }
        Ok(holders)
    }

    /// The latest version of another claimant, within the budget.
    pub(super) async fn read_claim<'a>(
        &self,
        claim: &'a Claim,
        deadline: Instant,
    ) -> (&'a Claim, Result<Result<LoadedSecret, StoreError>, Finish>) {
        let reading = self.store.latest(&claim.vault, &claim.secret);
        let answer = self
            .within(deadline, "reading another secret naming this resource", reading)
            .await;
        (claim, answer)
    }

    /// I9: no other managed secret that holds a current key of this resource may name it, or
    /// rotating (or repairing) this one would regenerate (or reveal) the key that one publishes.
    /// With [`Listing::Complete`] (a repair, which reveals a key) every served vault must be
    /// listed afresh and listable.
    pub(super) async fn alone_on_the_resource(
        &self,
        request: &RotationRequest,
        plan: &Plan,
        keys: &KeyPair,
        listing: Listing,
        deadline: Instant,
    ) -> Result<(), Finish> {
        let resource = &plan.tags.provider_address;
        // A sweep's rotation waited for the sweep's index before its lease: the index is cached.
        let (claims, _) = self.claims_now(listing, deadline, Duration::ZERO).await?;
        if listing == Listing::Complete && !claims.unlisted().is_empty() {
            let unlisted: Vec<String> = claims.unlisted().iter().map(ToString::to_string).collect();
            return Err(failed(
                FailReason::NotAllowed,
                format!(
                    "keyflip cannot list vault {} with these credentials, so it cannot check that no secret there publishes a key of {resource}; a repair reveals the active key, so it refuses: repair with credentials that can list every vault of KEYFLIP_VAULTS",
                    unlisted.join(", ")
                ),
            ));
        }
        let others = claims.others(resource, &request.vault, &request.secret);
        if others.is_empty() {
            return Ok(());
        }
        let holders = self.holders(&others, keys, deadline).await?;
        if holders.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = holders.iter().map(ToString::to_string).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Err(failed(
            FailReason::SharedResource,
            shared_message(&resource.to_string(), &names),
        ))
    }
}
