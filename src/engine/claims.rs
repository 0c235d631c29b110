//! Which managed secrets name each resource, across every served vault (DESIGN.md I9). Two
//! secrets naming one resource cannot both be rotated safely: rotating one regenerates the key
//! the other publishes. So before any regenerate (and before a repair publishes), the engine
//! asks which *other* secrets name the same resource, and refuses when one of them holds a
//! current key of it; the sweep reports every such pair as a problem.
//!
//! A secret counts as a claim when it is enabled, carries a rotation tag, and its
//! `ProviderAddress` parses and lies within its own vault's scopes — a secret keyflip would
//! refuse anyway (out of scope, unparseable address) cannot block another. Whether a claim
//! *holds* a key is decided at the moment of the rotation, from its value, so a writer who
//! holds no key cannot block the owner's rotation either.
//!
//! The index is built from vault listings (properties and tags, never values): by the sweep,
//! which lists anyway, and by a rotation when the index is older than [`MAX_AGE`]. The engine
//! keeps the last one ([`ClaimsCache`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::{Mutex, watch};

use crate::domain::tags::{self, PROVIDER_ADDRESS};
use crate::domain::{AllowedScopes, ArmResourceId, SecretName, VaultName};
use crate::store::SecretSummary;

/// How old an index a rotation may rely on before it lists the vaults again.
pub const MAX_AGE: time::Duration = time::Duration::minutes(5);

/// One managed secret naming a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub vault: VaultName,
    pub secret: SecretName,
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.vault, self.secret)
    }
}

/// The claims of every listed vault, by resource ([`ArmResourceId::key`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    by_resource: BTreeMap<String, Vec<Claim>>,
    /// Served vaults that could not be listed for good (forbidden, gone): their claims are
    /// unknown.
    unlisted: Vec<VaultName>,
}

impl Claims {
    /// The index of `listed` (each vault with its secrets), under `scopes`.
    pub fn from_listing<'a>(
        listed: impl IntoIterator<Item = (&'a VaultName, &'a [SecretSummary])>,
        scopes: &AllowedScopes,
    ) -> Self {
        let mut claims = Self::default();
        for (vault, secrets) in listed {
            claims.add(vault, secrets, scopes);
        }
        claims
    }

    /// Adds the claims among `secrets` (one page of `vault`'s listing), under `scopes`.
    pub fn add(&mut self, vault: &VaultName, secrets: &[SecretSummary], scopes: &AllowedScopes) {
        for summary in secrets.iter().filter(|s| s.enabled && tags::is_managed(&s.tags)) {
            let Some(address) = tags::tag(&summary.tags, PROVIDER_ADDRESS) else {
                continue;
            };
            let Ok(resource) = ArmResourceId::parse(address) else {
                continue;
            };
            if scopes.permits(vault, &resource) {
                self.by_resource.entry(resource.key()).or_default().push(Claim {
                    vault: vault.clone(),
                    secret: summary.name.clone(),
                });
            }
        }
    }

    /// The same index, noting the served vaults that could not be listed.
    pub fn with_unlisted(mut self, unlisted: Vec<VaultName>) -> Self {
        self.unlisted = unlisted;
        self
    }

    /// The served vaults whose claims are unknown.
    pub fn unlisted(&self) -> &[VaultName] {
        &self.unlisted
    }

    /// The claims on `resource` other than `vault`/`secret`'s own.
    pub fn others(&self, resource: &ArmResourceId, vault: &VaultName, secret: &SecretName) -> Vec<Claim> {
        self.by_resource
            .get(&resource.key())
            .map(|claims| {
                claims
                    .iter()
                    .filter(|c| !(&c.vault == vault && &c.secret == secret))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every claim on `resource`.
    pub fn on(&self, resource: &ArmResourceId) -> &[Claim] {
        self.by_resource
            .get(&resource.key())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Every resource named by more than one claim, with its claims.
    pub fn shared(&self) -> impl Iterator<Item = (&str, &[Claim])> {
        self.by_resource
            .iter()
            .filter(|(_, claims)| claims.len() > 1)
            .map(|(resource, claims)| (resource.as_str(), claims.as_slice()))
    }
}

/// An index and when it was built (on the engine's clock).
type Built = (OffsetDateTime, Arc<Claims>);

/// The engine's last index, and the one a sweep is building, if any.
#[derive(Debug, Clone, Default)]
pub struct ClaimsCache(Arc<Mutex<CacheState>>);

#[derive(Debug, Default)]
struct CacheState {
    last: Option<Built>,
    /// Set while a sweep lists every served vault: rotations that need an index wait for that
    /// one instead of listing every vault again themselves.
    building: Option<watch::Receiver<Option<Arc<Claims>>>>,
}

/// What the cache can give a rotation now.
#[derive(Debug)]
pub enum Lookup {
    /// An index at most [`MAX_AGE`] old.
    Fresh(Arc<Claims>),
    /// None fresh, but a sweep is listing every served vault: wait for it ([`Lookup::wait`]).
    Building(watch::Receiver<Option<Arc<Claims>>>),
    /// Neither: the caller now builds the index ([`ClaimsCache::lookup_or_begin`]); other
    /// rotations wait for it instead of listing every vault at the same time.
    Begun(Building),
}

impl Lookup {
    /// The index being built, once the sweep has it; `None` when the sweep ended without a
    /// complete one (a vault it could not list for now, its budget): list the vaults instead.
    pub async fn wait(receiver: &mut watch::Receiver<Option<Arc<Claims>>>) -> Option<Arc<Claims>> {
        receiver
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|claims| claims.clone())
    }
}

impl ClaimsCache {
    /// The index, if one was built at most [`MAX_AGE`] before `now` (and not after it).
    pub async fn fresh(&self, now: OffsetDateTime) -> Option<Arc<Claims>> {
        let held = self.0.lock().await;
        fresh(&held, now)
    }

    /// A fresh index, else the one being built, else the caller is made its builder
    /// (atomically: one builder at a time).
    pub async fn lookup_or_begin(&self, now: OffsetDateTime) -> Lookup {
        let mut held = self.0.lock().await;
        if let Some(claims) = fresh(&held, now) {
            return Lookup::Fresh(claims);
        }
        if let Some(receiver) = &held.building
            && receiver.has_changed().is_ok()
        {
            return Lookup::Building(receiver.clone());
        }
        let (sender, receiver) = watch::channel(None);
        held.building = Some(receiver);
        Lookup::Begun(Building {
            cache: self.clone(),
            sender,
        })
    }

    /// Keeps `claims`, built at `now`.
    pub async fn store(&self, now: OffsetDateTime, claims: Arc<Claims>) {
        self.0.lock().await.last = Some((now, claims));
    }

    /// Announces that a sweep is listing every served vault; rotations wait for
    /// [`Building::finish`] (or for the sweep to drop it).
    pub async fn begin(&self) -> Building {
        let (sender, receiver) = watch::channel(None);
        self.0.lock().await.building = Some(receiver);
        Building {
            cache: self.clone(),
            sender,
        }
    }
}

fn fresh(state: &CacheState, now: OffsetDateTime) -> Option<Arc<Claims>> {
    state
        .last
        .as_ref()
        .filter(|(built, _)| *built <= now && now - *built <= MAX_AGE)
        .map(|(_, claims)| claims.clone())
}

/// A sweep's index under construction ([`ClaimsCache::begin`]).
#[derive(Debug)]
pub struct Building {
    cache: ClaimsCache,
    sender: watch::Sender<Option<Arc<Claims>>>,
}

impl Building {
    /// Ends the build: a complete index (`Some`) is kept and handed to every waiting rotation;
    /// `None` (a vault could not be listed for now) sends them to list the vaults themselves.
    pub async fn finish(self, now: OffsetDateTime, claims: Option<Arc<Claims>>) {
        let mut held = self.cache.0.lock().await;
        if let Some(claims) = &claims {
            held.last = Some((now, claims.clone()));
        }
        if held
            .building
            .as_ref()
            .is_some_and(|receiver| receiver.same_channel(&self.sender.subscribe()))
        {
            held.building = None;
        }
        drop(held);
        if let Some(claims) = claims {
            self.sender.send_replace(Some(claims));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AllowedScope, Scope};

    const SUB: &str = "00000000-1111-2222-3333-444444444444";

    fn vault(name: &str) -> VaultName {
        VaultName::parse(name).unwrap()
    }

    fn address(group: &str, account: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{account}"
        )
    }

    fn summary(name: &str, address: &str, enabled: bool) -> SecretSummary {
        SecretSummary {
            name: SecretName::parse(name).unwrap(),
            tags: [
                ("CredentialId".to_string(), "key1".to_string()),
                ("ProviderAddress".to_string(), address.to_string()),
            ]
            .into_iter()
            .collect(),
            enabled,
            created: None,
            expires: None,
            updated: None,
        }
    }

    fn scopes(items: &[(Option<&str>, &str)]) -> AllowedScopes {
        AllowedScopes(
            items
                .iter()
                .map(|(v, group)| AllowedScope {
                    vault: v.map(vault),
                    scope: Scope::parse(&format!("/subscriptions/{SUB}/resourceGroups/{group}")).unwrap(),
                })
                .collect(),
        )
    }

    #[test]
    fn two_spellings_of_one_resource_across_vaults_are_one_shared_resource() {
        let (a, b) = (vault("kv-a"), vault("kv-b"));
        let one = [summary("s1", &address("rg", "acc"), true)];
        let two = [summary(
            "s2",
            &address("RG", "ACC").replace("resourceGroups", "resourcegroups"),
            true,
        )];
        let claims = Claims::from_listing([(&a, &one[..]), (&b, &two[..])], &scopes(&[(None, "rg")]));
        let shared: Vec<_> = claims.shared().collect();
        assert_eq!(shared.len(), 1);
        let id = ArmResourceId::parse(&address("rg", "acc")).unwrap();
        let others = claims.others(&id, &a, &SecretName::parse("S1").unwrap());
        assert_eq!(
            others.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["kv-b/s2"]
        );
    }

    #[test]
    fn disabled_unmanaged_unparseable_and_out_of_scope_secrets_claim_nothing() {
        let (a, b) = (vault("kv-a"), vault("kv-b"));
        let mut untagged = summary("plain", &address("rg-b", "acc"), true);
        untagged.tags.clear();
        let in_a = [
            summary("disabled", &address("rg-b", "acc"), false),
            summary("escape", &format!("{}\\..\\x", address("rg-b", "acc")), true),
            summary("squat", &address("rg-b", "acc"), true),
            untagged,
        ];
        let in_b = [summary("owner", &address("rg-b", "acc"), true)];
        // kv-a may name rg-a only: its squatter naming rg-b is out of its scope
        let claims = Claims::from_listing(
            [(&a, &in_a[..]), (&b, &in_b[..])],
            &scopes(&[(Some("kv-a"), "rg-a"), (Some("kv-b"), "rg-b")]),
        );
        assert_eq!(claims.shared().count(), 0);
        let id = ArmResourceId::parse(&address("rg-b", "acc")).unwrap();
        assert!(
            claims
                .others(&id, &b, &SecretName::parse("owner").unwrap())
                .is_empty()
        );
    }

    #[tokio::test]
    async fn the_cache_serves_an_index_for_five_minutes_on_the_engine_s_clock() {
        let cache = ClaimsCache::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert!(cache.fresh(t0).await.is_none());
        cache.store(t0, Arc::new(Claims::default())).await;
        assert!(cache.fresh(t0 + MAX_AGE).await.is_some());
        assert!(
            cache
                .fresh(t0 + MAX_AGE + time::Duration::seconds(1))
                .await
                .is_none()
        );
        assert!(cache.fresh(t0 - time::Duration::seconds(1)).await.is_none());
    }
}
