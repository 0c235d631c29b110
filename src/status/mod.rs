//! The status of every managed secret (`GET /api/status`, `keyflip status`): for each its
//! provider, resource, active slot, version age, expiry, next due time, pending state, and the
//! problems an operator must fix — so a person sees at a glance what keyflip will do and what
//! stops it. This module owns the model ([`StatusReport`]) and its collection ([`Collector`]);
//! [`table`] renders the CLI's aligned table, [`html`] the self-contained page and [`http`] the
//! route's answer. It changes nothing and never reads a secret value: it works from vault
//! listings (properties and tags) alone.
//!
//! It re-implements none of the engine's decisions: tags are parsed by
//! [`decide::sweep_tags`] (so `is_managed` and `RotationTags::parse` say what a problem is),
//! dueness is [`decide::due`], a pending mark is [`decide::pending_state`], the dwell is
//! [`decide::outlived_dwell`], scopes are [`AllowedScopes::permits`], shared resources are
//! [`Claims::from_listing`]'s, and the provider is the registry's ([`Providers::for_resource`]).
//!
//! # Cost
//! One listing of every served vault (all at once, each paged by Key Vault 25 secrets at a
//! time: 400 sequential `GetSecrets` pages for a vault of 10,000 secrets), even with a vault
//! filter, because a resource named by two secrets is a problem across vaults. Then one
//! `GetSecretVersions` call (per page of 25 versions) for each *enabled secret that carries no
//! rotation tag*, to tell one whose tags were lost to a hand-written version: at most
//! [`VERSION_READS_AT_ONCE`] at once and at most [`MAX_VERSION_READS`] per status, within its
//! budget; those left unchecked are counted in the summary and named as a problem. A fleet of
//! managed secrets costs its listing and nothing more. No Resource Manager call, no lease.
//!
//! Version age is measured from the listing's `created` time of the latest version (when it was
//! written; a pending mark changes only `updated`), as the engine's dwell is.

pub mod html;
pub mod http;
pub mod table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::domain::tags::{self, PROVIDER_ADDRESS, RotationTags, TagError};
use crate::domain::untrusted::echo;
use crate::domain::{AllowedScopes, ArmResourceId, Slot, VaultName};
use crate::engine::claims::Claims;
use crate::engine::decide::{self, Due, PendingState};
use crate::engine::{Engine, EngineSettings};
use crate::providers::Providers;
use crate::store::{SecretStore, SecretSummary, StoreError};

/// Version lists read at once to find lost tags.
pub const VERSION_READS_AT_ONCE: usize = 8;
/// Version lists read by one status at most.
pub const MAX_VERSION_READS: usize = 1000;

/// What is wrong with a secret (or with the status itself), as a stable kebab-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A required rotation tag is missing.
    MissingTag,
    /// A rotation tag cannot be used (unparseable, unknown slot, unsupported resource type).
    InvalidTag,
    /// `ValidityPeriodDays` is not longer than the lead (and Event Grid's 30 days).
    ValidityTooShort,
    /// The latest version has no `exp`.
    NoExpiry,
    /// The latest version is disabled.
    Disabled,
    /// `ProviderAddress` is outside the vault's `KEYFLIP_ALLOWED_SCOPES`.
    ScopeNotAllowed,
    /// Another managed secret names the same resource.
    SharedResource,
    /// `exp` is past.
    Overdue,
    /// A pending rotation outlived `KEYFLIP_PENDING_TIMEOUT_HOURS`.
    PendingExpired,
    /// The latest version has no rotation tags while an older one has.
    TagsLost,
    /// A served vault could not be listed (status-wide).
    VaultUnlisted,
    /// Some secrets could not be checked for lost tags (status-wide).
    LostTagsUnchecked,
}

impl ProblemKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::MissingTag => "missing-tag",
            Self::InvalidTag => "invalid-tag",
            Self::ValidityTooShort => "validity-too-short",
            Self::NoExpiry => "no-expiry",
            Self::Disabled => "disabled",
            Self::ScopeNotAllowed => "scope-not-allowed",
            Self::SharedResource => "shared-resource",
            Self::Overdue => "overdue",
            Self::PendingExpired => "pending-expired",
            Self::TagsLost => "tags-lost",
            Self::VaultUnlisted => "vault-unlisted",
            Self::LostTagsUnchecked => "lost-tags-unchecked",
        }
    }
}

/// One problem: its kind and a sentence saying what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

impl Problem {
    fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// A status-wide problem, with the vault it concerns when it concerns one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportProblem {
    pub kind: ProblemKind,
    pub vault: Option<String>,
    pub message: String,
}

/// What keyflip will do with a secret, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Not due: the sweep leaves it until `due`.
    Ok,
    /// The next sweep rotates it.
    Due,
    /// A rotation is under way (a pending slot or an unfinished revocation): the next sweep
    /// resumes it.
    Pending,
    /// `RotationEnabled=false`: every trigger skips it.
    OptedOut,
    /// The latest version is disabled: every trigger skips it.
    Disabled,
    /// Its tags cannot drive a rotation: every trigger refuses it until they are fixed.
    Misconfigured,
    /// Its rotation tags are on an older version only: keyflip no longer manages it.
    TagsLost,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Due => "due",
            Self::Pending => "pending",
            Self::OptedOut => "opted-out",
            Self::Disabled => "disabled",
            Self::Misconfigured => "misconfigured",
            Self::TagsLost => "tags-lost",
        }
    }
}

/// A pending rotation of the idle slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingStatus {
    /// `PendingSlot` as written (echoed).
    pub slot: String,
    #[serde(with = "rfc3339")]
    pub since: OffsetDateTime,
    /// `resume` (the next sweep verifies and publishes it) or `expired` (past the pending
    /// timeout: the next rotation fails it loudly and starts afresh).
    pub state: &'static str,
}

/// One managed secret.
#[derive(Debug, Clone, Serialize)]
pub struct SecretStatus {
    pub vault: String,
    pub secret: String,
    pub state: State,
    pub enabled: bool,
    /// `RotationEnabled` (true unless the tag says false).
    pub rotation_enabled: bool,
    /// The provider's name (`cognitive-services`), when the resource type is supported.
    pub provider: Option<String>,
    /// `ProviderAddress`, as parsed (the tag as written when it does not parse).
    pub resource: Option<String>,
    /// The slot `CredentialId` names, in the provider's spelling (as written otherwise).
    pub active_slot: Option<String>,
    /// When the latest version was last written (Key Vault's `updated`).
    #[serde(with = "rfc3339_option")]
    pub updated: Option<OffsetDateTime>,
    /// When the latest version was written (Key Vault's `created`).
    #[serde(with = "rfc3339_option")]
    pub created: Option<OffsetDateTime>,
    /// Seconds since `created` (`updated` if Key Vault gave no `created`).
    pub version_age_seconds: Option<i64>,
    /// Whether the latest version is younger than the dwell (measured from `created`): a
    /// manual rotation now needs `force=true`.
    pub inside_dwell: bool,
    #[serde(with = "rfc3339_option")]
    pub expires: Option<OffsetDateTime>,
    /// When the sweep starts rotating it: `expires` minus the lead.
    #[serde(with = "rfc3339_option")]
    pub due: Option<OffsetDateTime>,
    /// Whether the next sweep rotates (or resumes) it.
    pub due_now: bool,
    /// Why it is or is not due: `not-due`, `within-lead`, `expired`, `no-expiry`, `pending`;
    /// absent when its tags cannot be used.
    pub due_reason: Option<&'static str>,
    pub pending: Option<PendingStatus>,
    /// `RevokePending`: the formerly active slot a leaked-key revocation still has to
    /// regenerate (echoed).
    pub revoke_pending: Option<String>,
    pub problems: Vec<Problem>,
}

impl SecretStatus {
    /// What the listing alone says of a secret, in `state`, without problems yet: the version's
    /// age from `created` (`updated` if Key Vault gave none), as the engine's dwell counts it.
    fn listed(
        vault: &VaultName,
        summary: &SecretSummary,
        state: State,
        now: OffsetDateTime,
        dwell: std::time::Duration,
    ) -> Self {
        let written = summary.created.or(summary.updated);
        Self {
            vault: vault.to_string(),
            secret: summary.name.to_string(),
            state,
            enabled: summary.enabled,
            rotation_enabled: true,
            provider: None,
            resource: None,
            active_slot: None,
            updated: summary.updated,
            created: summary.created,
            version_age_seconds: written.map(|c| (now - c).whole_seconds()),
            inside_dwell: !decide::outlived_dwell(written, now, dwell),
            expires: summary.expires,
            due: None,
            due_now: false,
            due_reason: None,
            pending: None,
            revoke_pending: None,
            problems: Vec::new(),
        }
    }
}

/// One served vault's listing.
#[derive(Debug, Clone, Serialize)]
pub struct VaultStatus {
    pub vault: String,
    pub listed: bool,
    /// Secrets listed (managed or not).
    pub secrets: usize,
    pub error: Option<String>,
}

/// The counts of a status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusSummary {
    /// Managed secrets shown (those whose tags were lost included).
    pub secrets: usize,
    pub with_problems: usize,
    pub due: usize,
    pub pending: usize,
    pub opted_out: usize,
    pub disabled: usize,
    /// Every problem kind found, with how many secrets have it.
    pub problems: BTreeMap<&'static str, usize>,
    /// Enabled unmanaged secrets whose versions were read to look for lost tags.
    pub lost_tags_checked: usize,
    /// Those left unchecked (over [`MAX_VERSION_READS`], the budget, or a failed read).
    pub lost_tags_unchecked: usize,
}

/// The status of every managed secret of the served vaults (or of one).
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    #[serde(with = "rfc3339")]
    pub generated_at: OffsetDateTime,
    /// `KEYFLIP_PAUSED`: no trigger rotates anything.
    pub paused: bool,
    pub lead_days: u32,
    pub dwell_hours: u64,
    pub max_rotations_per_sweep: Option<usize>,
    pub summary: StatusSummary,
    pub vaults: Vec<VaultStatus>,
    /// Status-wide problems (a vault not listed, secrets not checked for lost tags).
    pub problems: Vec<ReportProblem>,
    /// Secrets with problems first, then by due time.
    pub secrets: Vec<SecretStatus>,
}

/// A status asked of a vault keyflip does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vault {vault} is not served: the served vaults (KEYFLIP_VAULTS) are {served}")]
pub struct NotServed {
    pub vault: String,
    pub served: String,
}

/// Where the status reads from: the engine's store, providers, clock and settings.
#[derive(Debug, Clone)]
pub struct Collector {
    store: Arc<dyn SecretStore>,
    providers: Providers,
    clock: Arc<dyn Clock>,
    settings: Arc<EngineSettings>,
}

/// What the HTTP route needs: the production [`Collector`], a fake in the server's tests.
#[async_trait::async_trait]
pub trait StatusSource: Send + Sync + std::fmt::Debug {
    /// The status of every served vault, or of `only`, within `budget`.
    async fn status(&self, only: Option<&VaultName>, budget: Duration) -> Result<StatusReport, NotServed>;
}

#[async_trait::async_trait]
impl StatusSource for Collector {
    async fn status(&self, only: Option<&VaultName>, budget: Duration) -> Result<StatusReport, NotServed> {
        self.collect(only, budget).await
    }
}

/// A listed secret, with its vault.
struct Listed<'a> {
    vault: &'a VaultName,
    summary: &'a SecretSummary,
}

impl Collector {
    pub fn new(
        store: Arc<dyn SecretStore>,
        providers: Providers,
        clock: Arc<dyn Clock>,
        settings: EngineSettings,
    ) -> Self {
        Self {
            store,
            providers,
            clock,
            settings: Arc::new(settings),
        }
    }

    /// The engine's own store, providers, clock and settings.
    pub fn from_engine(engine: &Engine) -> Self {
        Self {
            store: engine.store(),
            providers: engine.providers().clone(),
            clock: engine.clock(),
            settings: Arc::new(engine.settings().clone()),
        }
    }

    /// Lists every served vault and reports every managed secret (of `only`, if given).
    pub async fn collect(
        &self,
        only: Option<&VaultName>,
        budget: Duration,
    ) -> Result<StatusReport, NotServed> {
        let settings = &self.settings;
        if let Some(vault) = only
            && !settings.vaults.contains(vault)
        {
            let served: Vec<&str> = settings.vaults.iter().map(VaultName::as_str).collect();
            return Err(NotServed {
                vault: vault.to_string(),
                served: match served.is_empty() {
                    true => "none".into(),
                    false => served.join(", "),
                },
            });
        }
        let deadline = Instant::now() + budget;
        let listings = futures::future::join_all(settings.vaults.iter().map(|vault| async move {
            let left = deadline.saturating_duration_since(Instant::now());
            let listed = match tokio::time::timeout(left, self.store.list(vault)).await {
                Ok(Ok(secrets)) => Ok(secrets),
                Ok(Err(e)) => Err(listing_error(vault, &e)),
                Err(_) => Err(format!(
                    "listing vault {vault} did not finish within the status's budget; try again, or ask for one vault"
                )),
            };
            (vault, listed)
        }))
        .await;
        let now = self.clock.now();
        let mut report = StatusReport {
            generated_at: now,
            paused: settings.paused,
            lead_days: settings.lead_days,
            dwell_hours: settings.dwell.as_secs() / 3600,
            max_rotations_per_sweep: settings.max_rotations_per_sweep,
            summary: StatusSummary::default(),
            vaults: Vec::new(),
            problems: Vec::new(),
            secrets: Vec::new(),
        };
        let mut listed: Vec<(&VaultName, &[SecretSummary])> = Vec::new();
        for (vault, listing) in &listings {
            let shown = only.is_none_or(|o| o == *vault);
            match listing {
                Ok(secrets) => {
                    listed.push((vault, secrets.as_slice()));
                    if shown {
                        report.vaults.push(VaultStatus {
                            vault: vault.to_string(),
                            listed: true,
                            secrets: secrets.len(),
                            error: None,
                        });
                    }
                }
                Err(message) => {
                    // A vault not listed hides its own secrets and, for every other vault, the
                    // claims its secrets make on shared resources.
                    report.vaults.push(VaultStatus {
                        vault: vault.to_string(),
                        listed: false,
                        secrets: 0,
                        error: Some(message.clone()),
                    });
                    report.problems.push(ReportProblem {
                        kind: ProblemKind::VaultUnlisted,
                        vault: Some(vault.to_string()),
                        message: message.clone(),
                    });
                }
            }
        }
        let claims = Claims::from_listing(listed.iter().copied(), &settings.allowed_scopes);
        let shown: Vec<Listed<'_>> = listed
            .iter()
            .filter(|(vault, _)| only.is_none_or(|o| o == *vault))
            .flat_map(|(vault, secrets)| secrets.iter().map(move |summary| Listed { vault, summary }))
            .collect();
        for item in shown.iter().filter(|s| tags::is_managed(&s.summary.tags)) {
            report.secrets.push(self.managed(item, &claims, now));
        }
        let unmanaged: Vec<&Listed<'_>> = shown
            .iter()
            .filter(|s| s.summary.enabled && !tags::is_managed(&s.summary.tags))
            .collect();
        let (lost, checked, unchecked) = self.lost_tags(&unmanaged, deadline, now).await;
        report.secrets.extend(lost);
        report.summary.lost_tags_checked = checked;
        report.summary.lost_tags_unchecked = unchecked;
        if unchecked > 0 {
            report.problems.push(ReportProblem {
                kind: ProblemKind::LostTagsUnchecked,
                vault: None,
                message: format!(
                    "{unchecked} enabled secrets without rotation tags were not checked for tags lost to a hand-written version (at most {MAX_VERSION_READS} are checked per status, within its budget): ask for one vault at a time (?vault= or --vault) to check them"
                ),
            });
        }
        report.secrets.sort_by(|a, b| {
            (a.problems.is_empty(), a.due.is_none(), a.due, &a.vault, &a.secret).cmp(&(
                b.problems.is_empty(),
                b.due.is_none(),
                b.due,
                &b.vault,
                &b.secret,
            ))
        });
        report.summary = summarize(&report.secrets, checked, unchecked);
        Ok(report)
    }

    /// The status of one managed secret (its latest version carries a rotation tag).
    fn managed(&self, item: &Listed<'_>, claims: &Claims, now: OffsetDateTime) -> SecretStatus {
        let settings = &self.settings;
        let (vault, summary) = (item.vault, item.summary);
        let mut status = SecretStatus::listed(vault, summary, State::Ok, now, settings.dwell);
        let parsed = decide::sweep_tags(&summary.tags, settings.lead_days);
        if !summary.enabled {
            status.problems.push(Problem::new(
                ProblemKind::Disabled,
                "the latest version is disabled, so keyflip skips the secret: enable it (az keyvault secret set-attributes --enabled true), or remove its rotation tags if it is retired",
            ));
        }
        match summary.expires {
            None => status.problems.push(Problem::new(
                ProblemKind::NoExpiry,
                "the latest version has no expiry date (exp), so Event Grid never warns about it: the next sweep rotates it and sets one; if it is disabled, opted out or misconfigured, set exp by hand",
            )),
            Some(exp) if exp <= now => status.problems.push(Problem::new(
                ProblemKind::Overdue,
                format!(
                    "the latest version expired at {}: consumers that honour exp may refuse it; rotate it now (POST /api/rotate/{vault}/{} or keyflip rotate), after fixing any other problem listed",
                    tags::rfc3339(exp),
                    summary.name
                ),
            )),
            Some(_) => {}
        }
        let tags = match parsed {
            Some(Ok(tags)) => tags,
            other => {
                let error = match other {
                    Some(Err(e)) => e,
                    _ => TagError::Missing(tags::CREDENTIAL_ID),
                };
                status.problems.push(tag_problem(&error));
                status.state = State::Misconfigured;
                self.describe_raw(&mut status, &summary.tags);
                if !summary.enabled {
                    status.state = State::Disabled;
                }
                return status;
            }
        };
        status.rotation_enabled = tags.rotation_enabled;
        status.resource = Some(tags.provider_address.to_string());
        let mut misconfigured = false;
        match self.providers.for_resource(&tags.provider_address) {
            Ok(provider) => {
                status.provider = Some(provider.name().to_string());
                match provider.slot_from_tag(&tags.credential_id) {
                    Some(slot) => status.active_slot = Some(provider.slot_tag(slot).to_string()),
                    None => {
                        misconfigured = true;
                        status.active_slot = Some(echo(&tags.credential_id));
                        status.problems.push(Problem::new(
                            ProblemKind::InvalidTag,
                            format!(
                                "tag CredentialId is '{}', which is not a slot of this resource: use {} or {}, naming the slot whose key the latest version holds",
                                echo(&tags.credential_id),
                                provider.slot_tag(Slot::First),
                                provider.slot_tag(Slot::Second)
                            ),
                        ));
                    }
                }
            }
            Err(e) => {
                misconfigured = true;
                status.active_slot = Some(echo(&tags.credential_id));
                status
                    .problems
                    .push(Problem::new(ProblemKind::InvalidTag, e.to_string()));
            }
        }
        if !settings.allowed_scopes.permits(vault, &tags.provider_address) {
            misconfigured = true;
            status.problems.push(scope_problem(
                &settings.allowed_scopes,
                vault,
                &tags.provider_address,
            ));
        }
        let others = claims.others(&tags.provider_address, vault, &summary.name);
        if !others.is_empty() && summary.enabled {
            let names: Vec<String> = others.iter().map(ToString::to_string).collect();
            status.problems.push(Problem::new(
                ProblemKind::SharedResource,
                format!(
                    "{} names the same resource in its ProviderAddress tag: rotating one would regenerate the key another publishes, so the sweep rotates neither while both hold its keys; give each resource one managed secret (remove the rotation tags of the copy no one reads, or disable it)",
                    names.join(" and ")
                ),
            ));
        }
        self.timing(&mut status, &tags, summary.expires, now);
        status.state = match () {
            _ if !summary.enabled => State::Disabled,
            _ if misconfigured => State::Misconfigured,
            _ if !tags.rotation_enabled => State::OptedOut,
            _ if status.pending.is_some() || status.revoke_pending.is_some() => State::Pending,
            _ if status.due_now => State::Due,
            _ => State::Ok,
        };
        if matches!(
            status.state,
            State::Disabled | State::Misconfigured | State::OptedOut
        ) {
            // No trigger rotates it: it is not due, whatever its expiry says.
            status.due_now = false;
        }
        status
    }

    /// Due time, dueness and the pending state of a secret whose tags parse.
    fn timing(
        &self,
        status: &mut SecretStatus,
        tags: &RotationTags,
        expires: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) {
        let settings = &self.settings;
        let lead = time::Duration::days(i64::from(settings.lead_days));
        status.due = expires.map(|exp| exp - lead);
        let due = decide::due(tags, expires, now, settings.lead_days);
        status.due_now = due.is_due();
        status.due_reason = Some(match due {
            Due::NoExpiry => "no-expiry",
            Due::Expired => "expired",
            Due::WithinLead => "within-lead",
            Due::PendingRotation => "pending",
            Due::NotDue => "not-due",
        });
        match decide::pending_state(tags.pending.as_ref(), now, settings.pending_timeout) {
            PendingState::None => {}
            PendingState::Resume { since } => {
                status.pending = tags.pending.as_ref().map(|p| PendingStatus {
                    slot: echo(&p.slot),
                    since,
                    state: "resume",
                });
            }
            PendingState::Expired { since } => {
                status.pending = tags.pending.as_ref().map(|p| PendingStatus {
                    slot: echo(&p.slot),
                    since,
                    state: "expired",
                });
                status.problems.push(Problem::new(
                    ProblemKind::PendingExpired,
                    format!(
                        "a rotation has been pending since {} (longer than KEYFLIP_PENDING_TIMEOUT_HOURS): the new key never passed its check; the next rotation reports it failed and starts afresh — look at the resource's data plane and keyflip's logs for why",
                        tags::rfc3339(since)
                    ),
                ));
            }
        }
        status.revoke_pending = tags.revoke.as_ref().map(|r| echo(&r.slot));
    }

    /// What can be shown of tags that do not parse: the resource and slot as written.
    fn describe_raw(&self, status: &mut SecretStatus, raw: &tags::Tags) {
        status.active_slot = tags::tag(raw, tags::CREDENTIAL_ID).map(echo);
        status.resource =
            tags::tag(raw, PROVIDER_ADDRESS).map(|address| match ArmResourceId::parse(address) {
                Ok(id) => {
                    status.provider = self
                        .providers
                        .for_resource(&id)
                        .ok()
                        .map(|p| p.name().to_string());
                    id.to_string()
                }
                Err(_) => echo(address),
            });
        status.rotation_enabled =
            !tags::tag(raw, tags::ROTATION_ENABLED).is_some_and(|v| v.eq_ignore_ascii_case("false"));
    }

    /// Which of `candidates` (enabled, no rotation tag on the latest version) carry rotation
    /// tags on an older version; with how many were checked and how many were not.
    async fn lost_tags(
        &self,
        candidates: &[&Listed<'_>],
        deadline: Instant,
        now: OffsetDateTime,
    ) -> (Vec<SecretStatus>, usize, usize) {
        let reads = candidates.len().min(MAX_VERSION_READS);
        // Indexes, not references, go through the stream: a closure taking a borrowed item
        // is not general enough for the Send check of the async trait.
        let results: Vec<Option<Option<SecretStatus>>> = futures::stream::iter(0..reads)
            .map(|i| {
                let item = candidates[i];
                async move {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                match tokio::time::timeout(left, self.store.versions(item.vault, &item.summary.name)).await {
                    Ok(Ok(versions)) => Some(self.lost(item, &versions, now)),
                    Ok(Err(StoreError::NotFound(_))) => Some(None),
                    Ok(Err(e)) => {
                        tracing::warn!(vault = %item.vault, secret = %item.summary.name, "status could not list the versions of a secret: {e}");
                        None
                    }
                    Err(_) => None,
                }
                }
            })
            .buffer_unordered(VERSION_READS_AT_ONCE)
            .collect()
            .await;
        let checked = results.iter().filter(|r| r.is_some()).count();
        let unchecked = candidates.len() - checked;
        let lost = results.into_iter().flatten().flatten().collect();
        (lost, checked, unchecked)
    }

    /// The status of a secret whose latest version has no rotation tag, if an older version
    /// has: its tags were lost.
    fn lost(
        &self,
        item: &Listed<'_>,
        versions: &[crate::store::VersionSummary],
        now: OffsetDateTime,
    ) -> Option<SecretStatus> {
        let tagged = versions
            .iter()
            .filter(|v| tags::is_managed(&v.tags))
            .max_by_key(|v| v.created)?;
        let summary = item.summary;
        let mut status = SecretStatus::listed(item.vault, summary, State::TagsLost, now, self.settings.dwell);
        status.problems = vec![Problem::new(
            ProblemKind::TagsLost,
            format!(
                "the latest version has no rotation tags, but version {} has: someone wrote a new version by hand, so keyflip no longer rotates this secret and its consumers get a key keyflip does not track; if the new value is a key of the resource, copy CredentialId (naming the slot it holds), ProviderAddress and ValidityPeriodDays from that version onto the latest one (az keyvault secret set-attributes --tags ...), then run keyflip doctor",
                tagged.version
            ),
        )];
        // Show what the older version's tags said, to help put them back.
        self.describe_raw(&mut status, &tagged.tags);
        status.rotation_enabled = true;
        Some(status)
    }
}

fn listing_error(vault: &VaultName, error: &StoreError) -> String {
    match error {
        StoreError::Transient(e) => format!("listing vault {vault} failed for now: {e}; try again"),
        e => format!(
            "listing vault {vault} failed: {e}; check KEYFLIP_VAULTS and that keyflip's identity may list secrets in it"
        ),
    }
}

fn tag_problem(error: &TagError) -> Problem {
    let kind = match error {
        TagError::Missing(_) => ProblemKind::MissingTag,
        TagError::ValidityTooShort { .. } => ProblemKind::ValidityTooShort,
        _ => ProblemKind::InvalidTag,
    };
    Problem::new(kind, error.to_string())
}

fn scope_problem(scopes: &AllowedScopes, vault: &VaultName, resource: &ArmResourceId) -> Problem {
    Problem::new(
        ProblemKind::ScopeNotAllowed,
        format!(
            "tag ProviderAddress names {resource}, which is outside the KEYFLIP_ALLOWED_SCOPES of vault {vault} ({}): add its subscription or resource group to that setting (as {vault}=<scope> to allow it for this vault only), or fix the tag",
            scopes.describe_for(vault)
        ),
    )
}

fn summarize(secrets: &[SecretStatus], checked: usize, unchecked: usize) -> StatusSummary {
    let mut summary = StatusSummary {
        secrets: secrets.len(),
        lost_tags_checked: checked,
        lost_tags_unchecked: unchecked,
        ..StatusSummary::default()
    };
    for secret in secrets {
        summary.with_problems += usize::from(!secret.problems.is_empty());
        summary.due += usize::from(secret.state == State::Due);
        summary.pending += usize::from(secret.state == State::Pending);
        summary.opted_out += usize::from(secret.state == State::OptedOut);
        summary.disabled += usize::from(secret.state == State::Disabled);
        let mut kinds: Vec<ProblemKind> = secret.problems.iter().map(|p| p.kind).collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            *summary.problems.entry(kind.label()).or_default() += 1;
        }
    }
    summary
}

/// A short human duration: `3d`, `5h`, `12m`, `40s` (the largest unit that fits), `-` for
/// none; negative ones are prefixed with `-`.
pub fn short_duration(seconds: Option<i64>) -> String {
    let Some(seconds) = seconds else {
        return "-".into();
    };
    let (sign, s) = match seconds < 0 {
        true => ("-", seconds.unsigned_abs()),
        false => ("", seconds.unsigned_abs()),
    };
    let shown = match s {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    format!("{sign}{shown}")
}

/// A time as `2026-05-01 12:00Z` (minutes, UTC), `-` for none.
pub fn short_time(at: Option<OffsetDateTime>) -> String {
    match at {
        None => "-".into(),
        Some(at) => {
            let at = at.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}Z",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute()
            )
        }
    }
}

mod rfc3339 {
    use time::OffsetDateTime;

    pub fn serialize<S: serde::Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::domain::tags::rfc3339(*at))
    }
}

mod rfc3339_option {
    use time::OffsetDateTime;

    pub fn serialize<S: serde::Serializer>(
        at: &Option<OffsetDateTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serializer.serialize_str(&crate::domain::tags::rfc3339(*at)),
            None => serializer.serialize_none(),
        }
    }
}
