//! The rotation tags of a managed secret (DESIGN.md §2), the same names as Microsoft's rotation
//! samples: `CredentialId`, `ProviderAddress`, `ValidityPeriodDays`, optional `VerifyKey`, and
//! those keyflip writes (`RotatedBy`, `RotationTrigger`, `PreviousVersion`, the pending mark
//! `PendingSlot`, `PendingSince`, `PendingFrom`, `PendingProof`). Tag names are read case-insensitively and written in this spelling; every
//! other tag is carried forward. Key Vault allows 15 tags per secret.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::arm_id::{ArmIdError, ArmResourceId};
use super::untrusted::echo;

pub const CREDENTIAL_ID: &str = "CredentialId";
pub const PROVIDER_ADDRESS: &str = "ProviderAddress";
pub const VALIDITY_PERIOD_DAYS: &str = "ValidityPeriodDays";
pub const VERIFY_KEY: &str = "VerifyKey";
/// `RotationEnabled=false`: an operator's opt-out; every trigger skips the secret.
pub const ROTATION_ENABLED: &str = "RotationEnabled";
pub const ROTATED_BY: &str = "RotatedBy";
pub const ROTATION_TRIGGER: &str = "RotationTrigger";
pub const PREVIOUS_VERSION: &str = "PreviousVersion";
pub const PENDING_SLOT: &str = "PendingSlot";
pub const PENDING_SINCE: &str = "PendingSince";
pub const PENDING_PROOF: &str = "PendingProof";
pub const PENDING_FROM: &str = "PendingFrom";
pub const REVOKE_PENDING: &str = "RevokePending";
pub const REVOKE_PROOF: &str = "RevokeProof";
/// The tags of a pending mark, as one list (written, cleared and checked together).
pub const PENDING_TAGS: [&str; 4] = [PENDING_SLOT, PENDING_SINCE, PENDING_FROM, PENDING_PROOF];
/// Key Vault's limit on tags per secret.
pub const MAX_TAGS: usize = 15;
/// Event Grid's fixed `SecretNearExpiry` lead, in days.
pub const EVENT_GRID_LEAD_DAYS: u32 = 30;
/// The longest `ValidityPeriodDays` accepted (ten years).
pub const MAX_VALIDITY_DAYS: u32 = 3650;

/// Tags as Key Vault stores them.
pub type Tags = BTreeMap<String, String>;

/// Why a secret's tags cannot drive a rotation. Each message names the tag and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag {0} is missing: add it to the latest version (see the tag contract in README.md)")]
    Missing(&'static str),
    #[error("tag ProviderAddress is invalid: {0}")]
    ProviderAddress(#[from] ArmIdError),
    #[error("tag ValidityPeriodDays is '{}': set it to a whole number of days, e.g. 60", echo(.0))]
    ValidityNotANumber(String),
    #[error(
        "tag ValidityPeriodDays is {0}, outside 1-3650: set it to a whole number of days up to ten years, e.g. 60"
    )]
    ValidityOutOfRange(u64),
    #[error(
        "tag ValidityPeriodDays is {days} but must be more than {minimum} (the lead and Event Grid's fixed 30-day warning): a shorter validity re-triggers rotation at once"
    )]
    ValidityTooShort { days: u32, minimum: u32 },
    #[error("tag VerifyKey is '{}': use true or false", echo(.0))]
    VerifyKey(String),
    #[error("tag RotationEnabled is '{}': use true or false (false stops keyflip rotating the secret)", echo(.0))]
    RotationEnabled(String),
    #[error(
        "tag PendingSince is '{}': keyflip writes it as RFC 3339; remove the tags PendingSlot, PendingSince, PendingFrom and PendingProof to start afresh",
        echo(.0)
    )]
    PendingSince(String),
    #[error(
        "tag PendingSlot is set without PendingSince: remove the tags PendingSlot, PendingFrom and PendingProof to start afresh"
    )]
    PendingWithoutSince,
    #[error(
        "tag PendingSince, PendingFrom or PendingProof is set without PendingSlot: remove them to start afresh"
    )]
    PendingWithoutSlot,
    #[error(
        "tag PendingSlot is set without PendingProof, so nothing shows that keyflip wrote it: remove the tags PendingSlot, PendingSince and PendingFrom to start afresh"
    )]
    PendingWithoutProof,
    #[error(
        "only one of the tags RevokePending and RevokeProof is set: keyflip writes them together; remove the one left"
    )]
    RevokeHalf,
    #[error(
        "the secret would carry {0} tags, over Key Vault's limit of 15: remove tags keyflip does not need"
    )]
    TooMany(usize),
    #[error(
        "tag {0} is given more than once in different letter cases: keep one spelling (keyflip reads tag names case-insensitively, so it cannot tell which one is meant)"
    )]
    Ambiguous(&'static str),
}

/// A rotation started on a slot that has not been published yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The `PendingSlot` tag as written (a provider slot name).
    pub slot: String,
    pub since: OffsetDateTime,
    /// `PendingFrom`: [`crate::domain::key::fingerprint`] of the slot's key before it was
    /// regenerated, so a resumed rotation can tell whether the regeneration took effect. Marks
    /// written by keyflip before `PendingFrom` existed carry only a proof.
    pub from: Option<String>,
    /// `PendingProof`: keyflip's keyed fingerprint ([`crate::lease::MarkKey`]) of the marked
    /// version, the active key and the mark itself, so that a mark a tag writer forged is never
    /// resumed. Marks from before `PendingFrom` existed carry the unkeyed
    /// [`crate::domain::key::mark_proof`] of the version, the active and the regenerated key.
    pub proof: Option<String>,
}

/// The parsed rotation tags of a managed secret's latest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationTags {
    /// The `CredentialId` tag as written (a provider slot name, read case-insensitively).
    pub credential_id: String,
    pub provider_address: ArmResourceId,
    pub validity_days: u32,
    pub verify_key: bool,
    /// `RotationEnabled` (default true): false opts the secret out of every trigger.
    pub rotation_enabled: bool,
    pub pending: Option<Pending>,
    pub revoke: Option<Revoke>,
}

/// A leaked-key revocation not finished yet: set on the version a `mode=revoke-active`
/// rotation published, until the formerly active slot has been regenerated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    /// `RevokePending`: the slot to regenerate (the formerly active one).
    pub slot: String,
    /// `RevokeProof`: keyflip's keyed fingerprint ([`crate::lease::MarkKey`]) of the
    /// `PreviousVersion`, the published key and the leaked key, so only keyflip's own mark, with
    /// the leaked key still in place, makes it regenerate a slot inside the dwell.
    pub proof: String,
}

/// A tag by name, ignoring case.
pub fn tag<'a>(tags: &'a Tags, name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether a secret carries any of the three required tags: a secret with none is not managed
/// by keyflip; one with some but not all is misconfigured.
pub fn is_managed(tags: &Tags) -> bool {
    [CREDENTIAL_ID, PROVIDER_ADDRESS, VALIDITY_PERIOD_DAYS]
        .iter()
        .any(|name| tag(tags, name).is_some())
}

impl RotationTags {
    /// Parses and validates the tags; `lead_days` is the sweep's lead (KEYFLIP_LEAD_DAYS).
    pub fn parse(tags: &Tags, lead_days: u32) -> Result<Self, TagError> {
        let read = [
            CREDENTIAL_ID,
            PROVIDER_ADDRESS,
            VALIDITY_PERIOD_DAYS,
            VERIFY_KEY,
            ROTATION_ENABLED,
            PENDING_SLOT,
            PENDING_SINCE,
            PENDING_FROM,
            PENDING_PROOF,
            REVOKE_PENDING,
            REVOKE_PROOF,
        ];
        if let Some(name) = read
            .into_iter()
            .find(|name| tags.keys().filter(|k| k.eq_ignore_ascii_case(name)).count() > 1)
        {
            return Err(TagError::Ambiguous(name));
        }
        let credential_id = tag(tags, CREDENTIAL_ID).ok_or(TagError::Missing(CREDENTIAL_ID))?;
        let address = tag(tags, PROVIDER_ADDRESS).ok_or(TagError::Missing(PROVIDER_ADDRESS))?;
        let provider_address = ArmResourceId::parse(address)?;
        let validity = tag(tags, VALIDITY_PERIOD_DAYS).ok_or(TagError::Missing(VALIDITY_PERIOD_DAYS))?;
        let validity_days = parse_validity(validity)?;
        let minimum = lead_days.max(EVENT_GRID_LEAD_DAYS);
        if validity_days <= minimum {
            return Err(TagError::ValidityTooShort {
                days: validity_days,
                minimum,
            });
        }
        let verify_key = match tag(tags, VERIFY_KEY) {
            None => true,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(other) => return Err(TagError::VerifyKey(other.to_string())),
        };
        let rotation_enabled = match tag(tags, ROTATION_ENABLED) {
            None => true,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(other) => return Err(TagError::RotationEnabled(other.to_string())),
        };
        let (from, proof) = (tag(tags, PENDING_FROM), tag(tags, PENDING_PROOF));
        let pending = match (tag(tags, PENDING_SLOT), tag(tags, PENDING_SINCE)) {
            (None, None) if from.is_none() && proof.is_none() => None,
            (None, _) => return Err(TagError::PendingWithoutSlot),
            (Some(_), None) => return Err(TagError::PendingWithoutSince),
            (Some(_), Some(_)) if proof.is_none() => return Err(TagError::PendingWithoutProof),
            (Some(slot), Some(since)) => Some(Pending {
                slot: slot.to_string(),
                since: OffsetDateTime::parse(since, &Rfc3339)
                    .map_err(|_| TagError::PendingSince(since.to_string()))?,
                from: from.map(str::to_string),
                proof: proof.map(str::to_string),
            }),
        };
        let revoke = match (tag(tags, REVOKE_PENDING), tag(tags, REVOKE_PROOF)) {
            (None, None) => None,
            (Some(slot), Some(proof)) => Some(Revoke {
                slot: slot.to_string(),
                proof: proof.to_string(),
            }),
            _ => return Err(TagError::RevokeHalf),
        };
        Ok(Self {
            credential_id: credential_id.to_string(),
            provider_address,
            validity_days,
            verify_key,
            rotation_enabled,
            pending,
            revoke,
        })
    }
}

/// `ValidityPeriodDays`: a whole number of days in 1-3650 (digits only: no sign, no fraction).
fn parse_validity(raw: &str) -> Result<u32, TagError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TagError::ValidityNotANumber(raw.to_string()));
    }
    // All digits: only an overflow can fail, and an overflow is out of range too.
    let days: u64 = raw.parse().unwrap_or(u64::MAX);
    match u32::try_from(days) {
        Ok(days) if (1..=MAX_VALIDITY_DAYS).contains(&days) => Ok(days),
        _ => Err(TagError::ValidityOutOfRange(days)),
    }
}

/// Sets `name` to `value`, replacing any differently-cased spelling.
fn put(tags: &mut Tags, name: &str, value: String) {
    tags.retain(|k, _| !k.eq_ignore_ascii_case(name));
    tags.insert(name.to_string(), value);
}

fn remove(tags: &mut Tags, name: &str) {
    tags.retain(|k, _| !k.eq_ignore_ascii_case(name));
}

fn checked(tags: Tags) -> Result<Tags, TagError> {
    if tags.len() > MAX_TAGS {
        return Err(TagError::TooMany(tags.len()));
    }
    Ok(tags)
}

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// The tags of a new version: the previous ones carried forward, the pointer flipped to
/// `credential_id`, keyflip's own tags set, the pending mark gone.
pub fn for_new_version(
    previous: &Tags,
    credential_id: &str,
    trigger: &str,
    previous_version: &str,
) -> Result<Tags, TagError> {
    let mut tags = previous.clone();
    put(&mut tags, CREDENTIAL_ID, credential_id.to_string());
    put(&mut tags, ROTATED_BY, format!("keyflip/{}", crate::VERSION));
    put(&mut tags, ROTATION_TRIGGER, trigger.to_string());
    put(&mut tags, PREVIOUS_VERSION, previous_version.to_string());
    for name in PENDING_TAGS.into_iter().chain([REVOKE_PENDING, REVOKE_PROOF]) {
        remove(&mut tags, name);
    }
    checked(tags)
}

/// The tags of the version `keyflip onboard` writes: `existing`'s carried forward (a secret
/// brought under management keeps its other tags), the three rotation tags set, `VerifyKey=false`
/// when the resource is published without a check, keyflip's own tags, and no leftover mark.
pub fn for_onboarding(
    existing: Option<&Tags>,
    credential_id: &str,
    provider_address: &str,
    validity_days: u32,
    verify: bool,
) -> Result<Tags, TagError> {
    let mut tags = existing.cloned().unwrap_or_default();
    put(&mut tags, CREDENTIAL_ID, credential_id.to_string());
    put(&mut tags, PROVIDER_ADDRESS, provider_address.to_string());
    put(&mut tags, VALIDITY_PERIOD_DAYS, validity_days.to_string());
    match verify {
        true => remove(&mut tags, VERIFY_KEY),
        false => put(&mut tags, VERIFY_KEY, "false".to_string()),
    }
    put(&mut tags, ROTATED_BY, format!("keyflip/{}", crate::VERSION));
    put(&mut tags, ROTATION_TRIGGER, "onboard".to_string());
    for name in PENDING_TAGS
        .into_iter()
        .chain([REVOKE_PENDING, REVOKE_PROOF, PREVIOUS_VERSION])
    {
        remove(&mut tags, name);
    }
    checked(tags)
}

/// The tags of a version published by a leaked-key emergency: `RevokePending` set until the
/// formerly active slot is regenerated.
pub fn with_revoke(tags: &Tags, slot: &str, proof: &str) -> Result<Tags, TagError> {
    let mut tags = tags.clone();
    put(&mut tags, REVOKE_PENDING, slot.to_string());
    put(&mut tags, REVOKE_PROOF, proof.to_string());
    checked(tags)
}

/// The tags with the revocation mark removed.
pub fn without_revoke(tags: &Tags) -> Tags {
    let mut tags = tags.clone();
    remove(&mut tags, REVOKE_PENDING);
    remove(&mut tags, REVOKE_PROOF);
    tags
}

/// The tags of the latest version with the pending mark removed.
pub fn without_pending(current: &Tags) -> Tags {
    let mut tags = current.clone();
    for name in PENDING_TAGS {
        remove(&mut tags, name);
    }
    tags
}

/// The pending mark keyflip writes (see [`Pending`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark<'a> {
    pub slot: &'a str,
    pub since: OffsetDateTime,
    pub from: &'a str,
    pub proof: &'a str,
}

/// The tags of the latest version with the pending mark set (a proof left from an earlier
/// mark is removed when this one has none).
pub fn with_pending(current: &Tags, mark: &Mark<'_>) -> Result<Tags, TagError> {
    let mut tags = current.clone();
    put(&mut tags, PENDING_SLOT, mark.slot.to_string());
    put(&mut tags, PENDING_SINCE, rfc3339(mark.since));
    put(&mut tags, PENDING_FROM, mark.from.to_string());
    put(&mut tags, PENDING_PROOF, mark.proof.to_string());
    checked(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a";

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn valid() -> Tags {
        tags(&[
            ("CredentialId", "key1"),
            ("ProviderAddress", ADDRESS),
            ("ValidityPeriodDays", "60"),
        ])
    }

    #[test]
    fn the_sample_tags_parse() {
        let parsed = RotationTags::parse(&valid(), 30).unwrap();
        assert_eq!(
            (parsed.credential_id.as_str(), parsed.validity_days),
            ("key1", 60)
        );
        assert!(parsed.verify_key);
        assert_eq!(parsed.pending, None);
    }

    #[test]
    fn rotation_enabled_is_true_unless_false_and_refuses_anything_else() {
        assert!(RotationTags::parse(&valid(), 30).unwrap().rotation_enabled);
        let mut t = valid();
        t.insert("rotationenabled".into(), " False ".into());
        assert!(!RotationTags::parse(&t, 30).unwrap().rotation_enabled);
        t.insert("rotationenabled".into(), "off".into());
        let e = RotationTags::parse(&t, 30).unwrap_err();
        assert_eq!(e, TagError::RotationEnabled("off".into()));
        assert!(e.to_string().contains("use true or false"), "{e}");
    }

    #[test]
    fn tag_names_are_read_case_insensitively() {
        let lower = tags(&[
            ("credentialid", "Key2"),
            ("provideraddress", ADDRESS),
            ("validityperioddays", "90"),
            ("verifykey", "FALSE"),
        ]);
        let parsed = RotationTags::parse(&lower, 30).unwrap();
        assert_eq!(parsed.credential_id, "Key2");
        assert!(!parsed.verify_key);
    }

    #[test]
    fn each_misconfiguration_names_its_tag() {
        let without = |name: &str| {
            let mut t = valid();
            t.remove(name);
            RotationTags::parse(&t, 30).unwrap_err()
        };
        assert_eq!(without("CredentialId"), TagError::Missing(CREDENTIAL_ID));
        assert_eq!(without("ProviderAddress"), TagError::Missing(PROVIDER_ADDRESS));
        let with = |name: &str, value: &str| {
            let mut t = valid();
            t.insert(name.to_string(), value.to_string());
            RotationTags::parse(&t, 30).unwrap_err().to_string()
        };
        assert!(with("ProviderAddress", "acct").contains("ProviderAddress"));
        assert!(with("ValidityPeriodDays", "sixty").contains("ValidityPeriodDays"));
        assert!(with("ValidityPeriodDays", "30").contains("more than 30"));
        assert!(with("VerifyKey", "maybe").contains("VerifyKey"));
        assert!(with("PendingSlot", "key2").contains("PendingSince"));
        assert!(with("PendingSince", "2026-01-01T00:00:00Z").contains("without PendingSlot"));
        assert_eq!(
            RotationTags::parse(&valid(), 60).unwrap_err(),
            TagError::ValidityTooShort {
                days: 60,
                minimum: 60
            }
        );
    }

    #[test]
    fn validity_is_a_whole_number_of_days_up_to_ten_years() {
        let with = |value: &str| {
            let mut t = valid();
            t.insert("ValidityPeriodDays".into(), value.into());
            RotationTags::parse(&t, 30)
        };
        assert_eq!(with("3650").unwrap().validity_days, 3650);
        assert_eq!(with("31").unwrap().validity_days, 31);
        assert_eq!(with("3651"), Err(TagError::ValidityOutOfRange(3651)));
        assert_eq!(with("3000000"), Err(TagError::ValidityOutOfRange(3_000_000)));
        assert_eq!(with("0"), Err(TagError::ValidityOutOfRange(0)));
        assert_eq!(
            with("99999999999999999999999"),
            Err(TagError::ValidityOutOfRange(u64::MAX))
        );
        for bad in ["-60", "+60", "60.0", "6e1", "sixty", "٦٠", "0x3c"] {
            assert!(matches!(with(bad), Err(TagError::ValidityNotANumber(_))), "{bad}");
        }
        let shown = with(&format!("1\n{}", "9".repeat(500))).unwrap_err().to_string();
        assert!(shown.len() < 400 && !shown.contains('\n'), "{shown}");
    }

    #[test]
    fn a_new_version_carries_other_tags_and_drops_the_pending_mark() {
        let mut previous = valid();
        previous.insert("owner".into(), "team-ai".into());
        previous.insert("pendingslot".into(), "key2".into());
        previous.insert("PendingSince".into(), "2026-01-01T00:00:00Z".into());
        previous.insert("PendingProof".into(), "0123456789abcdef".into());
        let next = for_new_version(&previous, "key2", "event", "v-old").unwrap();
        assert_eq!(next["CredentialId"], "key2");
        assert_eq!(next["owner"], "team-ai");
        assert_eq!(next["PreviousVersion"], "v-old");
        assert_eq!(next["RotationTrigger"], "event");
        assert!(next["RotatedBy"].starts_with("keyflip/"));
        assert!(tag(&next, PENDING_SLOT).is_none() && tag(&next, PENDING_SINCE).is_none());
        assert!(tag(&next, PENDING_PROOF).is_none());
    }

    #[test]
    fn the_pending_mark_round_trips_and_the_tag_limit_holds() {
        let since = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mark = Mark {
            slot: "key2",
            since,
            from: "fedcba9876543210",
            proof: "0123456789abcdef",
        };
        let marked = with_pending(&valid(), &mark).unwrap();
        let parsed = RotationTags::parse(&marked, 30).unwrap();
        assert_eq!(
            parsed.pending,
            Some(Pending {
                slot: "key2".into(),
                since,
                from: Some("fedcba9876543210".into()),
                proof: Some("0123456789abcdef".into())
            })
        );
        let cleared = without_pending(&marked);
        assert!(PENDING_TAGS.iter().all(|name| tag(&cleared, name).is_none()));
        // A mark keyflip wrote before PendingFrom existed (a proof only) still parses.
        let mut legacy = marked.clone();
        legacy.remove(PENDING_FROM);
        assert_eq!(
            RotationTags::parse(&legacy, 30).unwrap().pending.unwrap().from,
            None
        );
        // PendingFrom without a proof is not keyflip's.
        let mut unkeyed = marked.clone();
        unkeyed.remove(PENDING_PROOF);
        assert_eq!(
            RotationTags::parse(&unkeyed, 30),
            Err(TagError::PendingWithoutProof)
        );
        let mut unproven = marked.clone();
        unproven.remove(PENDING_PROOF);
        unproven.remove(PENDING_FROM);
        assert_eq!(
            RotationTags::parse(&unproven, 30),
            Err(TagError::PendingWithoutProof)
        );
        let mut crowded = valid();
        for i in 0..12 {
            crowded.insert(format!("t{i}"), "v".into());
        }
        assert_eq!(with_pending(&crowded, &mark), Err(TagError::TooMany(19)));
    }

    #[test]
    fn a_rotation_tag_spelt_twice_is_refused() {
        let mut twice = valid();
        twice.insert("CREDENTIALID".into(), "key2".into());
        assert_eq!(
            RotationTags::parse(&twice, 30),
            Err(TagError::Ambiguous(CREDENTIAL_ID))
        );
        let mut pending = valid();
        pending.insert("PendingSlot".into(), "key2".into());
        pending.insert("pendingslot".into(), "key2".into());
        pending.insert("PendingSince".into(), "2026-01-01T00:00:00Z".into());
        assert_eq!(
            RotationTags::parse(&pending, 30),
            Err(TagError::Ambiguous(PENDING_SLOT))
        );
        // Other tags may be spelt as their owners like.
        let mut other = valid();
        other.insert("owner".into(), "a".into());
        other.insert("Owner".into(), "b".into());
        assert!(RotationTags::parse(&other, 30).is_ok());
    }

    #[test]
    fn untagged_secrets_are_not_managed() {
        assert!(!is_managed(&tags(&[("owner", "x")])));
        assert!(is_managed(&tags(&[("CredentialId", "key1")])));
    }
}
