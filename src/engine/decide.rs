//! The engine's pure decisions, each unit-tested: is a secret due for the sweep, has the latest
//! version outlived the dwell, and what to make of a pending mark.

use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::tags::{Pending, RotationTags, TagError};

/// Why the sweep does or does not rotate a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// No expiry: rotate (a managed secret must expire).
    NoExpiry,
    /// Expired already.
    Expired,
    /// Expires within the lead.
    WithinLead,
    /// A rotation is pending: resume it.
    PendingRotation,
    NotDue,
}

impl Due {
    pub fn is_due(&self) -> bool {
        !matches!(self, Due::NotDue)
    }
}

/// The sweep's rule: enabled, tags valid (checked by the caller), and `exp` absent, past, or
/// within `lead_days`; a pending rotation is always due.
pub fn due(tags: &RotationTags, expires: Option<OffsetDateTime>, now: OffsetDateTime, lead_days: u32) -> Due {
    if tags.pending.is_some() || tags.revoke.is_some() {
        return Due::PendingRotation;
    }
    match expires {
        None => Due::NoExpiry,
        Some(exp) if exp <= now => Due::Expired,
        Some(exp) if exp - now <= time::Duration::days(i64::from(lead_days)) => Due::WithinLead,
        Some(_) => Due::NotDue,
    }
}

/// Whether the latest version, created at `created`, is older than the dwell. A version whose
/// creation time is unknown counts as old enough.
pub fn outlived_dwell(created: Option<OffsetDateTime>, now: OffsetDateTime, dwell: Duration) -> bool {
    match created {
        None => true,
        Some(created) => now - created >= dwell,
    }
}

/// What a pending mark means for this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingState {
    /// No pending rotation of the idle slot.
    None,
    /// A regenerated idle slot waits to be verified and published: resume, do not regenerate.
    Resume { since: OffsetDateTime },
    /// The pending rotation outlived the timeout: fail loudly and clear the mark, so the next
    /// rotation regenerates afresh.
    Expired { since: OffsetDateTime },
}

/// Interprets a pending mark already checked to name the idle slot (the engine refuses any
/// other as a misconfiguration before this).
pub fn pending_state(pending: Option<&Pending>, now: OffsetDateTime, timeout: Duration) -> PendingState {
    match pending {
        Some(p) if now - p.since > timeout => PendingState::Expired { since: p.since },
        Some(p) => PendingState::Resume { since: p.since },
        None => PendingState::None,
    }
}

/// The tags of a secret the sweep lists, parsed; `None` when the secret is not managed.
pub fn sweep_tags(
    tags: &crate::domain::tags::Tags,
    lead_days: u32,
) -> Option<Result<RotationTags, TagError>> {
    crate::domain::tags::is_managed(tags).then(|| RotationTags::parse(tags, lead_days))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ArmResourceId;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    fn tags(pending: Option<Pending>) -> RotationTags {
        RotationTags {
            credential_id: "key1".into(),
            provider_address: ArmResourceId::parse("/subscriptions/s/resourceGroups/r/providers/A.B/c/d")
                .unwrap(),
            validity_days: 60,
            verify_key: true,
            rotation_enabled: true,
            pending,
            revoke: None,
        }
    }

    const DAY: i64 = 86_400;

    #[test]
    fn due_follows_expiry_and_the_lead() {
        let t = tags(None);
        assert_eq!(due(&t, None, at(0), 30), Due::NoExpiry);
        assert_eq!(due(&t, Some(at(-1)), at(0), 30), Due::Expired);
        assert_eq!(due(&t, Some(at(0)), at(0), 30), Due::Expired);
        assert_eq!(due(&t, Some(at(30 * DAY)), at(0), 30), Due::WithinLead);
        assert_eq!(due(&t, Some(at(30 * DAY + 1)), at(0), 30), Due::NotDue);
        assert!(!Due::NotDue.is_due());
    }

    #[test]
    fn a_pending_rotation_is_always_due() {
        let t = tags(Some(Pending {
            slot: "key2".into(),
            since: at(0),
            from: Some("fedcba9876543210".into()),
            proof: Some("0123456789abcdef".into()),
        }));
        assert_eq!(due(&t, Some(at(300 * DAY)), at(0), 30), Due::PendingRotation);
    }

    #[test]
    fn the_dwell_counts_from_the_latest_version() {
        let dwell = Duration::from_secs(24 * 3600);
        assert!(!outlived_dwell(Some(at(0)), at(DAY - 1), dwell));
        assert!(outlived_dwell(Some(at(0)), at(DAY), dwell));
        assert!(outlived_dwell(None, at(0), dwell));
    }

    #[test]
    fn pending_marks_resume_or_expire() {
        let timeout = Duration::from_secs(6 * 3600);
        let mark = Pending {
            slot: "key2".into(),
            since: at(0),
            from: Some("fedcba9876543210".into()),
            proof: Some("0123456789abcdef".into()),
        };
        assert_eq!(
            pending_state(Some(&mark), at(6 * 3600), timeout),
            PendingState::Resume { since: at(0) }
        );
        assert_eq!(
            pending_state(Some(&mark), at(6 * 3600 + 1), timeout),
            PendingState::Expired { since: at(0) }
        );
        assert_eq!(pending_state(None, at(1), timeout), PendingState::None);
    }
}
