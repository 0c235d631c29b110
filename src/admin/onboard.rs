//! `keyflip onboard`: brings an existing key under management. It reads the resource's keys
//! with the caller's own credentials, checks the key on the resource's data plane, and writes
//! the secret's first managed version: the key, `CredentialId`, `ProviderAddress`,
//! `ValidityPeriodDays` and `exp`. And with `--all-in-scope`, it proposes one secret for every
//! AI services account of the vault's allowed scopes that no managed secret names yet.
//!
//! It refuses, before writing anything: a vault keyflip does not serve; a resource outside that
//! vault's scopes, of a type keyflip does not rotate, with local auth off, or already named by
//! another managed secret (rotating either would kill the other's key, I9); a secret that is
//! already managed (unless `--force`, which then takes the rotation lease, so no rotation is
//! overwritten mid-flight); an unmanaged secret whose value is neither key of the resource
//! (writing would change what its consumers read, unless `--force`); a kind without a
//! trustworthy check (unless `--no-verify`, which writes `VerifyKey=false`, I4).
//!
//! An existing secret that already holds one of the resource's keys keeps it: the new version
//! holds the same value with `CredentialId` naming that slot, so its consumers notice nothing.
//! Otherwise the new version holds `key1`. No key value is ever printed or logged (I7).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::Tools;
use super::directory::Account;
use crate::azure::arm::ArmError;
use crate::config::LeaseMode;
use crate::domain::tags::{self, RotationTags, Tags, rfc3339};
use crate::domain::untrusted::echo;
use crate::domain::{ApiKey, ArmResourceId, SecretName, Slot, VaultName};
use crate::engine::claims::Claims;
use crate::lease::{Holding, LeaseError, LeaseKey};
use crate::providers::KeyPair;
use crate::providers::cognitive_services::key_check;
use crate::providers::{KeyProvider, ProviderError, Verification};
use crate::store::{LoadedSecret, NewVersion, SecretSummary, StoreError};

/// What to onboard.
#[derive(Debug, Clone)]
pub struct OnboardRequest {
    pub vault: VaultName,
    pub secret: SecretName,
    /// The resource id as given (parsed strictly before anything is called).
    pub resource: String,
    pub validity_days: u32,
    /// Overwrite a managed secret, or an unmanaged one holding neither key.
    pub force: bool,
    /// Publish without a data-plane check (`VerifyKey=false`).
    pub no_verify: bool,
}

/// A secret brought under management.
#[derive(Debug, Clone, Serialize)]
pub struct Onboarded {
    pub vault: String,
    pub secret: String,
    pub resource: String,
    /// The slot the new version holds (`CredentialId`).
    pub slot: String,
    pub version: String,
    pub expires: String,
    pub verified: bool,
    /// The secret existed and already held this key: its consumers read the same value.
    pub kept_value: bool,
}

/// Why nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnboardError {
    /// Retrying cannot help until someone changes something.
    #[error("{0}")]
    Refused(String),
    /// Throttling, 5xx, a lease held elsewhere: retrying later can help.
    #[error("{0}")]
    Transient(String),
    /// The write was sent but not answered: it may still land (check before retrying).
    #[error("{0}")]
    Uncertain(String),
}

fn refused(message: impl Into<String>) -> OnboardError {
    OnboardError::Refused(message.into())
}

fn from_store(doing: &str, error: StoreError) -> OnboardError {
    match error {
        StoreError::Transient(m) => OnboardError::Transient(format!("{doing}: {m}")),
        other => refused(format!("{doing}: {other}")),
    }
}

fn from_provider(doing: &str, error: ProviderError) -> OnboardError {
    match error {
        ProviderError::Transient(m) => OnboardError::Transient(format!("{doing}: {m}")),
        other => refused(format!("{doing}: {other}")),
    }
}

fn from_arm(doing: &str, error: ArmError) -> OnboardError {
    match error {
        ArmError::Transient { .. } => OnboardError::Transient(format!("{doing}: {error}")),
        other => refused(format!("{doing}: {other}")),
    }
}

/// Onboards one secret.
pub async fn onboard(tools: &Tools, request: &OnboardRequest) -> Result<Onboarded, OnboardError> {
    let settings = &tools.settings;
    let (vault, secret) = (&request.vault, &request.secret);
    if settings.vault(vault).is_none() {
        return Err(refused(format!(
            "vault {vault} is not one keyflip serves: add it to KEYFLIP_VAULTS first"
        )));
    }
    let resource =
        ArmResourceId::parse(request.resource.trim()).map_err(|e| refused(format!("--resource-id: {e}")))?;
    let provider = tools
        .providers
        .for_resource(&resource)
        .map_err(|e| refused(format!("--resource-id: {e}")))?;
    if !settings.allowed_scopes.permits(vault, &resource) {
        return Err(refused(format!(
            "{resource} is outside the scopes allowed for vault {vault} ({}): add its subscription, resource group or id to KEYFLIP_ALLOWED_SCOPES (as {vault}=<scope> to allow it for this vault only)",
            settings.allowed_scopes.describe_for(vault)
        )));
    }
    // The tags the version will carry must be ones a rotation accepts.
    let first_tag = provider.slot_tag(Slot::First);
    let probe = tags::for_onboarding(
        None,
        first_tag,
        &resource.to_string(),
        request.validity_days,
        true,
    )
    .map_err(|e| refused(e.to_string()))?;
    RotationTags::parse(&probe, settings.lead_days).map_err(|e| refused(format!("--validity-days: {e}")))?;

    // The secret as it is: absent, unmanaged, or managed.
    let existing = read_latest(tools, vault, secret).await?;
    let managed = existing.as_ref().is_some_and(|s| tags::is_managed(&s.tags));
    if managed && !request.force {
        return Err(refused(format!(
            "{vault}/{secret} is already managed by keyflip (it has rotation tags): nothing written; pass --force to replace its latest version (that takes the rotation lease), or choose another secret name"
        )));
    }

    // One resource, one secret, before any Resource Manager call (checked again, with the
    // copies of its keys, just before the write).
    refuse_claimed(tools, &list_all(tools).await?, &resource, vault, secret)?;
    let first = First {
        request,
        resource: &resource,
        provider: provider.as_ref(),
    };
    if !managed {
        return first.write(tools, existing, None).await;
    }

    // Replacing a managed secret: under its rotation lease (renewed, and checked before the
    // write), then read again, since a rotation may have moved the secret and the keys while
    // the lease was being taken.
    let holding = take_lease(tools, vault, secret).await?;
    let outcome = async {
        let existing = read_latest(tools, vault, secret).await?;
        refuse_unfinished(existing.as_ref(), vault, secret)?;
        first.write(tools, existing, Some(&holding)).await
    }
    .await;
    match &outcome {
        // A write that may still land: keep others out until the lease expires by itself.
        Err(OnboardError::Uncertain(_)) => holding.abandon(),
        _ => holding.release(LEASE_RELEASE_BOUND).await,
    }
    outcome
}

/// How long releasing the lease may take (it expires by itself otherwise).
const LEASE_RELEASE_BOUND: Duration = Duration::from_secs(5);

/// What writing the first managed version needs.
struct First<'a> {
    request: &'a OnboardRequest,
    resource: &'a ArmResourceId,
    provider: &'a dyn KeyProvider,
}

/// Refuses a resource another managed secret of `listed` already names: one resource has one
/// managed secret.
fn refuse_claimed(
    tools: &Tools,
    listed: &[(VaultName, Vec<SecretSummary>)],
    resource: &ArmResourceId,
    vault: &VaultName,
    secret: &SecretName,
) -> Result<(), OnboardError> {
    let claims = Claims::from_listing(
        listed.iter().map(|(v, s)| (v, s.as_slice())),
        &tools.settings.allowed_scopes,
    );
    let others = claims.others(resource, vault, secret);
    if others.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = others.iter().map(ToString::to_string).collect();
    Err(refused(format!(
        "{resource} is already managed by {}: one resource has one managed secret (rotating either would regenerate the key the other publishes); use that secret, or remove its tags first",
        names.join(" and ")
    )))
}

/// The latest version, or `None` when the secret does not exist.
async fn read_latest(
    tools: &Tools,
    vault: &VaultName,
    secret: &SecretName,
) -> Result<Option<LoadedSecret>, OnboardError> {
    match tools.store.latest(vault, secret).await {
        Ok(found) => Ok(Some(found)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(StoreError::Disabled(_)) => Err(refused(format!(
            "the latest version of {vault}/{secret} is disabled: enable it or choose another secret name"
        ))),
        Err(e) => Err(from_store(&format!("reading {vault}/{secret}"), e)),
    }
}

/// A managed secret in the middle of a rotation or of a leaked-key revocation is not replaced:
/// `--force` would drop its marks and cancel it (a leaked key would stay valid).
fn refuse_unfinished(
    existing: Option<&LoadedSecret>,
    vault: &VaultName,
    secret: &SecretName,
) -> Result<(), OnboardError> {
    let Some(existing) = existing else {
        return Ok(());
    };
    if tags::tag(&existing.tags, tags::REVOKE_PENDING).is_some() {
        return Err(refused(format!(
            "{vault}/{secret} carries RevokePending: a leaked-key revocation is unfinished; finish it first (keyflip rotate --vault {vault} --secret {secret} --revoke-active), since replacing the version would cancel it and leave the leaked key valid"
        )));
    }
    if tags::PENDING_TAGS
        .iter()
        .any(|name| tags::tag(&existing.tags, name).is_some())
    {
        return Err(refused(format!(
            "{vault}/{secret} carries a pending mark: a rotation is waiting for its new key; let it finish (keyflip rotate --vault {vault} --secret {secret}) or remove the Pending* tags, then onboard again"
        )));
    }
    Ok(())
}

impl First<'_> {
    /// Reads the resource, picks and checks the key, and writes the first managed version
    /// (under `holding`'s lease when given).
    async fn write(
        &self,
        tools: &Tools,
        existing: Option<LoadedSecret>,
        holding: Option<&Holding>,
    ) -> Result<Onboarded, OnboardError> {
        let (request, resource, provider) = (self.request, self.resource, self.provider);
        let (vault, secret) = (&request.vault, &request.secret);
        let managed = existing.as_ref().is_some_and(|s| tags::is_managed(&s.tags));
        let info = provider
            .describe(resource)
            .await
            .map_err(|e| from_provider(&format!("reading {resource}"), e))?;
        if info.keys_disabled {
            return Err(refused(format!(
                "{resource} has key authentication switched off (disableLocalAuth=true): its keys cannot be used, so there is nothing to rotate"
            )));
        }
        if info.check.is_none() && !request.no_verify {
            return Err(refused(format!(
                "{resource} (kind {}) has no trustworthy data-plane check, so keyflip could not prove a new key works: pass --no-verify to manage it anyway (it writes VerifyKey=false, and rotations then publish unchecked keys)",
                info.kind.as_deref().map(echo).unwrap_or_else(|| "unknown".into())
            )));
        }
        let keys = provider
            .list_keys(resource)
            .await
            .map_err(|e| from_provider(&format!("listing the keys of {resource}"), e))?;
        // One resource, one secret, checked again now (not only before the lease and the
        // resource reads): no other secret of any served vault, managed for another resource
        // or not managed at all, may hold either key.
        let listed = list_all(tools).await?;
        refuse_claimed(tools, &listed, resource, vault, secret)?;
        let copies = secret_values(tools, &listed, Some((vault, secret))).await?;
        let elsewhere: Vec<String> = holders(&copies, &keys)
            .into_iter()
            .map(|c| format!("{}/{}", c.vault, c.secret))
            .collect();
        if !elsewhere.is_empty() {
            return Err(refused(format!(
                "{} already hold{} a key of {resource}: a rotation of {vault}/{secret} would regenerate a key read from there; onboard that secret instead (--vault <its vault> --secret <it>), point its consumers at one secret first, or disable or delete it if nothing reads it",
                elsewhere.join(" and "),
                if elsewhere.len() == 1 { "s" } else { "" }
            )));
        }
        let held = existing.as_ref().and_then(|s| keys.slot_of(&s.value));
        if existing.is_some() && held.is_none() && !managed && !request.force {
            return Err(refused(format!(
                "{vault}/{secret} exists and holds a value that is neither key of {resource}: writing a key would change what its consumers read; pass --force to replace it, or choose another secret name"
            )));
        }
        let slot = held.unwrap_or(Slot::First);
        let key = keys.get(slot).clone();
        let verified = match (&info.check, request.no_verify) {
            (Some(_), false) => {
                check(
                    provider.verify(&info, &key).await,
                    resource,
                    provider.slot_tag(slot),
                )?;
                true
            }
            _ => false,
        };
        let slot_tag = provider.slot_tag(slot);
        let (version, expires) = self
            .publish(tools, existing.as_ref(), slot_tag, key, verified, holding)
            .await?;
        Ok(Onboarded {
            vault: vault.to_string(),
            secret: secret.to_string(),
            resource: resource.to_string(),
            slot: slot_tag.to_string(),
            version,
            expires,
            verified,
            kept_value: held.is_some(),
        })
    }

    /// Writes the version holding `key` as `slot_tag`, if the secret is still `existing` (and,
    /// under a lease, while the lease is ours); its version id and expiry.
    async fn publish(
        &self,
        tools: &Tools,
        existing: Option<&LoadedSecret>,
        slot_tag: &str,
        key: ApiKey,
        verified: bool,
        holding: Option<&Holding>,
    ) -> Result<(String, String), OnboardError> {
        let (request, resource) = (self.request, self.resource);
        let mut written: Tags = tags::for_onboarding(
            existing.map(|s| &s.tags),
            slot_tag,
            &resource.to_string(),
            request.validity_days,
            verified || !request.no_verify,
        )
        .map_err(|e| refused(e.to_string()))?;
        if let Some(previous) = existing {
            written.insert(tags::PREVIOUS_VERSION.to_string(), previous.version.to_string());
            if written.len() > tags::MAX_TAGS {
                return Err(refused(format!(
                    "{}/{} would carry {} tags, more than Key Vault's {}: remove some of its other tags",
                    request.vault,
                    request.secret,
                    written.len(),
                    tags::MAX_TAGS
                )));
            }
        }
        let now = tools.clock.now();
        let expires = now + time::Duration::days(i64::from(request.validity_days));
        let version = NewVersion {
            value: key,
            tags: written,
            content_type: existing.and_then(|s| s.content_type.clone()),
            not_before: now,
            expires,
        };
        // The secret must still be what was decided on: someone may have written it meanwhile.
        let now_latest = read_latest(tools, &request.vault, &request.secret).await?;
        let marks = |s: &LoadedSecret| {
            tags::PENDING_TAGS
                .iter()
                .chain([&tags::REVOKE_PENDING])
                .filter(|name| tags::tag(&s.tags, name).is_some())
                .count()
        };
        let same = match (now_latest.as_ref(), existing) {
            (None, None) => true,
            (Some(now), Some(then)) => {
                now.version == then.version
                    && tags::is_managed(&now.tags) == tags::is_managed(&then.tags)
                    && marks(now) == marks(then)
            }
            _ => false,
        };
        if !same {
            return Err(OnboardError::Transient(format!(
                "{}/{} changed while it was being onboarded: nothing written; run the command again",
                request.vault, request.secret
            )));
        }
        let window = match holding {
            None => WRITE_TIMEOUT,
            Some(holding) => holding.check().map_err(|e| {
                OnboardError::Transient(format!(
                    "the rotation lease: {e}; nothing written; run the command again"
                ))
            })?,
        };
        let publishing = tools.store.publish(&request.vault, &request.secret, version);
        let published = match tokio::time::timeout(window, publishing).await {
            Ok(answer) => {
                answer.map_err(|e| from_store(&format!("writing {}/{}", request.vault, request.secret), e))?
            }
            Err(_) => {
                return Err(OnboardError::Uncertain(format!(
                    "writing {}/{} did not answer within {} s (the lease's window): it may still land; check the secret's latest version before running the command again",
                    request.vault,
                    request.secret,
                    window.as_secs()
                )));
            }
        };
        Ok((published.to_string(), rfc3339(expires)))
    }
}

fn check(verification: Verification, resource: &ArmResourceId, slot: &str) -> Result<(), OnboardError> {
    match verification {
        Verification::Accepted => Ok(()),
        Verification::Refused(why) => Err(refused(format!(
            "the data plane of {resource} refuses its own {slot} ({why}): nothing written; check the account's endpoint and network rules"
        ))),
        Verification::Inconclusive(why) => Err(OnboardError::Transient(format!(
            "checking {slot} on the data plane of {resource} was inconclusive ({why}): nothing written; try again"
        ))),
    }
}

async fn take_lease(tools: &Tools, vault: &VaultName, secret: &SecretName) -> Result<Holding, OnboardError> {
    if tools.settings.lease != LeaseMode::Storage {
        return Err(refused(
            "--force over a managed secret takes its rotation lease, and KEYFLIP_LEASE=in-process is this process's own memory, which excludes no rotation in the app: set KEYFLIP_LEASE=storage and AzureWebJobsStorage to the app's storage account",
        ));
    }
    let leases = tools.leases.as_ref().map_err(|why| {
        refused(format!(
            "--force over a managed secret takes its rotation lease, which is not available: {why}"
        ))
    })?;
    let key = LeaseKey::new(vault, secret);
    let sent = tokio::time::Instant::now();
    match leases.acquire(&key).await {
        Ok(lease) => Ok(Holding::start(key, lease, sent)),
        Err(LeaseError::Held) => Err(OnboardError::Transient(format!(
            "a rotation of {secret} is in progress (its lease is held): nothing written; retry in a minute"
        ))),
        Err(e) => Err(OnboardError::Transient(format!("taking the rotation lease: {e}"))),
    }
}

/// How long the write may take when no lease bounds it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every served vault's secrets; a vault that cannot be listed stops the command, since a
/// secret there may already name the resource (one that does not exist holds none).
async fn list_all(tools: &Tools) -> Result<Vec<(VaultName, Vec<SecretSummary>)>, OnboardError> {
    let mut listed = Vec::new();
    for vault in &tools.settings.vaults {
        let secrets = match tools.store.list(&vault.name).await {
            Ok(secrets) => secrets,
            // A vault that does not exist holds no secret that could name the resource.
            Err(StoreError::NotFound(e)) => {
                tracing::warn!(vault = %vault.name, error = %e, "a served vault does not exist; check KEYFLIP_VAULTS");
                Vec::new()
            }
            Err(e) => {
                let doing = format!(
                    "listing vault {} (to be sure no managed secret there names the resource)",
                    vault.name
                );
                return Err(from_store(&doing, e));
            }
        };
        listed.push((vault.name.clone(), secrets));
    }
    Ok(listed)
}

/// What `--all-in-scope` would do with one account.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    pub resource: String,
    pub kind: String,
    /// The secret it would be written to (the account's name).
    pub secret: Option<String>,
    /// `onboard`, or `skip`.
    pub action: &'static str,
    pub reason: String,
}

/// One proposal per AI services account within `vault`'s allowed scopes.
pub async fn propose(tools: &Tools, vault: &VaultName) -> Result<Vec<Proposal>, OnboardError> {
    if tools.settings.vault(vault).is_none() {
        return Err(refused(format!(
            "vault {vault} is not one keyflip serves: add it to KEYFLIP_VAULTS first"
        )));
    }
    let scopes: Vec<_> = tools.settings.allowed_scopes.for_vault(vault).cloned().collect();
    if scopes.is_empty() {
        return Err(refused(format!(
            "no scope of KEYFLIP_ALLOWED_SCOPES applies to vault {vault}: there is nowhere to look"
        )));
    }
    let mut seen = BTreeSet::new();
    let mut accounts: Vec<Account> = Vec::new();
    for scope in &scopes {
        let found = tools
            .directory
            .accounts_in(scope)
            .await
            .map_err(|e| from_arm(&format!("listing the AI services accounts of {scope}"), e))?;
        // What Resource Manager lists is checked like a tag: only accounts inside the
        // vault's scopes are proposed.
        for account in found {
            if tools.settings.allowed_scopes.permits(vault, &account.id) && seen.insert(account.id.key()) {
                accounts.push(account);
            }
        }
    }
    let listed = list_all(tools).await?;
    let claims = Claims::from_listing(
        listed.iter().map(|(v, s)| (v, s.as_slice())),
        &tools.settings.allowed_scopes,
    );
    let names: BTreeSet<String> = listed
        .iter()
        .filter(|(v, _)| v == vault)
        .flat_map(|(_, secrets)| secrets.iter().map(|s| s.name.as_str().to_ascii_lowercase()))
        .collect();
    let copies = secret_values(tools, &listed, None).await?;
    let mut proposals = Vec::new();
    for account in accounts {
        let name = account.id.name().to_string();
        let kind = echo(&account.kind);
        let skip = |reason: String| Proposal {
            resource: account.id.to_string(),
            kind: kind.clone(),
            secret: None,
            action: "skip",
            reason,
        };
        let managed_by = claims.on(&account.id);
        let proposal = if account.local_auth_disabled {
            skip("local auth is off (disableLocalAuth=true): its keys cannot be used".into())
        } else if !managed_by.is_empty() {
            let by: Vec<String> = managed_by.iter().map(ToString::to_string).collect();
            skip(format!("already managed by {}", by.join(" and ")))
        } else if key_check(&account.kind, &account.properties).is_none() {
            skip(format!(
                "kind {kind} has no trustworthy key check: onboard it alone with --no-verify if you accept unchecked keys"
            ))
        } else if let Some(found) = held_by(tools, &account.id, &copies, vault).await {
            match found {
                Ok((secret, slot)) => Proposal {
                    resource: account.id.to_string(),
                    kind: kind.clone(),
                    secret: Some(secret),
                    action: "onboard",
                    reason: format!(
                        "this unmanaged secret already holds its {slot}: onboarding it keeps the value its consumers read (a second secret with the same key would break them at the second rotation)"
                    ),
                },
                Err(why) => skip(why),
            }
        } else if SecretName::parse(&name).is_err() {
            skip(format!(
                "'{name}' is not a valid secret name: onboard it alone with --secret"
            ))
        } else if names.contains(&name.to_ascii_lowercase()) {
            skip(format!(
                "a secret named {name} already exists in {vault}: onboard it alone with --secret <another name>"
            ))
        } else {
            Proposal {
                resource: account.id.to_string(),
                kind: kind.clone(),
                secret: Some(name),
                action: "onboard",
                reason: String::new(),
            }
        };
        proposals.push(proposal);
    }
    Ok(proposals)
}

/// A secret's value (never printed, kept in memory only).
#[derive(Debug)]
struct Copy {
    vault: VaultName,
    secret: SecretName,
    /// It carries rotation tags (for another resource, or unusable ones).
    managed: bool,
    value: ApiKey,
}

/// The values of every enabled secret of the served vaults but `except`: a resource whose key
/// one of them holds is never onboarded beside it (a managed secret next to a copy would
/// regenerate the key the copy's readers use). Managed secrets count too: one naming another
/// resource, or a scope keyflip ignores, may still hold this resource's key.
async fn secret_values(
    tools: &Tools,
    listed: &[(VaultName, Vec<SecretSummary>)],
    except: Option<(&VaultName, &SecretName)>,
) -> Result<Vec<Copy>, OnboardError> {
    let mut values = Vec::new();
    for (vault, secrets) in listed {
        for summary in secrets.iter().filter(|s| s.enabled) {
            if except.is_some_and(|(v, s)| v == vault && s == &summary.name) {
                continue;
            }
            match tools.store.latest(vault, &summary.name).await {
                Ok(secret) => values.push(Copy {
                    vault: vault.clone(),
                    secret: summary.name.clone(),
                    managed: tags::is_managed(&secret.tags),
                    value: secret.value,
                }),
                Err(StoreError::NotFound(_) | StoreError::Disabled(_)) => {}
                Err(e) => {
                    let doing = format!(
                        "reading {vault}/{} (keyflip reads every secret of the served vaults to be sure none already holds the resource's key; grant secrets get on it, or disable it if nothing reads it)",
                        summary.name
                    );
                    return Err(from_store(&doing, e));
                }
            }
        }
    }
    Ok(values)
}

/// The copies holding either of `keys`.
fn holders<'a>(copies: &'a [Copy], keys: &KeyPair) -> Vec<&'a Copy> {
    copies
        .iter()
        .filter(|c| keys.slot_of(&c.value).is_some())
        .collect()
}

/// Which unmanaged secret already holds `resource`'s key, if any: `Ok` with that secret (in
/// `vault`) and the slot when exactly one does; `Err` with the reason to skip when keyflip
/// cannot onboard it safely (several copies, a copy in another vault, keys unreadable).
async fn held_by(
    tools: &Tools,
    resource: &ArmResourceId,
    copies: &[Copy],
    vault: &VaultName,
) -> Option<Result<(String, &'static str), String>> {
    if copies.is_empty() {
        return None;
    }
    let provider = tools.providers.for_resource(resource).ok()?;
    let keys = match provider.list_keys(resource).await {
        Ok(keys) => keys,
        Err(e) => {
            return Some(Err(format!(
                "listing its keys failed ({e}), so keyflip cannot tell whether a secret already holds one"
            )));
        }
    };
    let found = holders(copies, &keys);
    let names: Vec<String> = found
        .iter()
        .map(|c| format!("{}/{}", c.vault, c.secret))
        .collect();
    match found.as_slice() {
        [] => None,
        [one] if one.managed => Some(Err(format!(
            "{}/{} holds its key but is managed for another resource (its ProviderAddress): correct that secret's tags first",
            one.vault, one.secret
        ))),
        [one] if &one.vault == vault => {
            let slot = keys
                .slot_of(&one.value)
                .map(|s| provider.slot_tag(s))
                .unwrap_or("key");
            Some(Ok((one.secret.to_string(), slot)))
        }
        [one] => Some(Err(format!(
            "{}/{} already holds its key: onboard that secret in its own vault (keyflip onboard --vault {} --secret {} --resource-id {resource})",
            one.vault, one.secret, one.vault, one.secret
        ))),
        _ => Some(Err(format!(
            "{} secrets hold its keys ({}): one managed secret can keep only one of them valid across rotations; point their consumers at one secret, then onboard that one",
            names.len(),
            names.join(", ")
        ))),
    }
}

/// Used by the command line to print the proposal table.
pub fn table(proposals: &[Proposal]) -> String {
    let mut out = format!(
        "{:<8} {:<16} {:<28} {}\n",
        "ACTION", "KIND", "SECRET", "RESOURCE / REASON"
    );
    for p in proposals {
        let secret = p.secret.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "{:<8} {:<16} {:<28} {}\n",
            p.action, p.kind, secret, p.resource
        ));
        if !p.reason.is_empty() {
            out.push_str(&format!("{:<8} {:<16} {:<28}   {}\n", "", "", "", p.reason));
        }
    }
    out
}
