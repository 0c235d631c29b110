//! What one rotation (or a sweep) reports: DESIGN.md §4's result shape, and how each outcome
//! classifies for the trigger that asked (success, transient, permanent).

use std::collections::BTreeMap;

use serde::Serialize;

/// What started a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    Event,
    Timer,
    Manual,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Event => "event",
            TriggerKind::Timer => "timer",
            TriggerKind::Manual => "manual",
        }
    }
}

/// Why nothing was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The event named a version that is no longer the latest.
    Stale,
    /// The secret is disabled.
    Disabled,
    /// The latest version is younger than the dwell.
    Dwell,
    /// The sweep found the secret not due.
    NotDue,
    /// The secret carries no rotation tags.
    NotManaged,
    /// The event type does not ask for a rotation.
    Ignored,
    /// A repair found the latest version already holding the active slot's key.
    NothingToRepair,
    /// The sweep met a secret whose lease another rotation holds: left to that one.
    Locked,
    /// KEYFLIP_PAUSED is on: nothing is rotated or written.
    Paused,
    /// The secret's `RotationEnabled` tag is `false`.
    OptedOut,
}

/// Why a rotation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// Bad or missing tags, a tag overflow, an unsupported resource type.
    Misconfigured,
    /// The vault or the resource's scope is not allowed.
    NotAllowed,
    /// The secret does not exist.
    NotFound,
    /// The `CredentialId` tag names a slot whose key is not the published one.
    PointerMismatch,
    /// The published value is neither of the resource's keys (or both keys are equal): the
    /// secret's writer has not shown that they hold a key of this resource (I8).
    UnknownKey,
    /// Key authentication is disabled on the resource.
    KeysDisabled,
    /// The resource kind has no trustworthy key check and the secret does not opt out.
    NoTrustworthyCheck,
    /// The new key never passed its check within the pending timeout.
    VerificationTimeout,
    /// Another rotation of the secret is in flight.
    Locked,
    /// Azure failed in a way retrying may fix.
    Transient,
    /// Azure refused in a way retrying will not fix.
    Azure,
    /// The event could not be understood, or its sources disagree.
    BadEvent,
    /// keyflip failed unexpectedly (a bug) while rotating this secret.
    Internal,
    /// Another managed secret names the same resource and holds a current key of it (I9).
    SharedResource,
}

/// The outcome of one rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Rotated,
    /// `keyflip rotate --repair` published the active slot's current key.
    Repaired,
    /// A leaked-key emergency (`mode=revoke-active`) regenerated the formerly active slot.
    Revoked,
    Pending,
    Planned,
    Skipped(SkipReason),
    Failed(FailReason),
}

/// How the trigger must answer an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Success,
    /// Retrying can help: the Functions host must see a failure (500).
    Transient,
    /// Retrying cannot help: acknowledge (2xx) and report.
    Permanent,
}

impl Outcome {
    /// `rotated`, `pending`, `planned`, `skipped:<reason>`, `failed:<reason>`.
    pub fn label(self) -> String {
        match self {
            Outcome::Rotated => "rotated".into(),
            Outcome::Repaired => "repaired".into(),
            Outcome::Revoked => "revoked".into(),
            Outcome::Pending => "pending".into(),
            Outcome::Planned => "planned".into(),
            Outcome::Skipped(reason) => format!("skipped:{}", skip_label(reason)),
            Outcome::Failed(reason) => format!("failed:{}", fail_label(reason)),
        }
    }

    pub fn class(self) -> Class {
        match self {
            Outcome::Rotated
            | Outcome::Repaired
            | Outcome::Revoked
            | Outcome::Planned
            | Outcome::Skipped(_) => Class::Success,
            Outcome::Pending | Outcome::Failed(FailReason::Transient | FailReason::Locked) => {
                Class::Transient
            }
            Outcome::Failed(_) => Class::Permanent,
        }
    }
}

fn skip_label(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::Stale => "stale",
        SkipReason::Disabled => "disabled",
        SkipReason::Dwell => "dwell",
        SkipReason::NotDue => "not-due",
        SkipReason::NotManaged => "not-managed",
        SkipReason::Ignored => "ignored",
        SkipReason::NothingToRepair => "nothing-to-repair",
        SkipReason::Locked => "locked",
        SkipReason::Paused => "paused",
        SkipReason::OptedOut => "opted-out",
    }
}

pub(crate) fn fail_label(reason: FailReason) -> &'static str {
    match reason {
        FailReason::Misconfigured => "misconfigured",
        FailReason::NotAllowed => "not-allowed",
        FailReason::NotFound => "not-found",
        FailReason::PointerMismatch => "pointer-mismatch",
        FailReason::UnknownKey => "unknown-key",
        FailReason::KeysDisabled => "keys-disabled",
        FailReason::NoTrustworthyCheck => "no-trustworthy-check",
        FailReason::VerificationTimeout => "verification-timeout",
        FailReason::Locked => "locked",
        FailReason::Transient => "transient",
        FailReason::Azure => "azure",
        FailReason::BadEvent => "bad-event",
        FailReason::Internal => "internal",
        FailReason::SharedResource => "shared-resource",
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.label())
    }
}

/// One rotation's result (DESIGN.md §4). Holds no key value.
#[derive(Debug, Clone, Serialize)]
pub struct RotationResult {
    pub secret: String,
    pub vault: String,
    pub provider: Option<String>,
    pub trigger: TriggerKind,
    pub outcome: Outcome,
    /// The slot that was active (its tag spelling).
    pub from: Option<String>,
    /// The slot that is active now, or would be (dry run, pending).
    pub to: Option<String>,
    /// The version published, or the latest version when nothing was published.
    pub version: Option<String>,
    /// `exp` of the version published (RFC 3339).
    pub expires: Option<String>,
    pub verified: bool,
    pub duration_ms: u64,
    /// A sentence for operators: what happened and, on failure, what to do.
    pub message: String,
}

impl RotationResult {
    /// A result decided without running a rotation (an event answered at the edge, a secret
    /// the sweep found not due): no slots, no version, nothing verified.
    pub fn without_rotation(
        vault: &str,
        secret: &str,
        trigger: TriggerKind,
        outcome: Outcome,
        message: String,
    ) -> Self {
        Self {
            secret: secret.to_string(),
            vault: vault.to_string(),
            provider: None,
            trigger,
            outcome,
            from: None,
            to: None,
            version: None,
            expires: None,
            verified: false,
            duration_ms: 0,
            message,
        }
    }
}

/// A sweep's counts: bounded whatever the fleet (skipped secrets are counted, not listed).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SweepSummary {
    /// Secrets listed (managed or not).
    pub scanned: usize,
    /// Managed secrets found due (started, or left for the next run).
    pub due: usize,
    pub rotated: usize,
    pub pending: usize,
    pub skipped: usize,
    pub failed: usize,
    /// `skipped` by reason (`not-due`, `disabled`, `locked`, `opted-out`, …).
    pub skipped_by_reason: BTreeMap<String, usize>,
    /// `failed` by reason (`misconfigured`, `transient`, …).
    pub failed_by_reason: BTreeMap<String, usize>,
    /// Due secrets this sweep did not start (its deadline, the rotation cap, or an incomplete
    /// listing): the next sweep takes them, most urgent first.
    pub left_for_next_run: usize,
    /// Why they were left: `deadline` (the sweep's budget), `cap`
    /// (KEYFLIP_MAX_ROTATIONS_PER_SWEEP) or `listing` (a served vault could not be listed
    /// completely, which the one-resource-one-secret check needs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_because: Option<&'static str>,
    pub elapsed_ms: u64,
}

impl SweepSummary {
    /// Counts one secret's result.
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Rotated | Outcome::Repaired | Outcome::Revoked => self.rotated += 1,
            Outcome::Pending => self.pending += 1,
            Outcome::Skipped(reason) => {
                self.skipped += 1;
                *self
                    .skipped_by_reason
                    .entry(skip_label(reason).to_string())
                    .or_default() += 1;
            }
            Outcome::Planned => {
                self.skipped += 1;
                *self.skipped_by_reason.entry("planned".to_string()).or_default() += 1;
            }
            Outcome::Failed(reason) => {
                self.failed += 1;
                *self
                    .failed_by_reason
                    .entry(fail_label(reason).to_string())
                    .or_default() += 1;
            }
        }
    }
}

/// At most this many problems and errors go into a sweep's answer; the rest are counted
/// (`problems_omitted`) and each is still in the log.
pub const MAX_SWEEP_PROBLEMS: usize = 100;

/// At most this many per-secret results go into a sweep's answer; the rest are counted
/// (`results_omitted`) and each is still in the log (DESIGN.md's log contract).
pub const MAX_SWEEP_RESULTS: usize = 500;

/// A sweep's answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// KEYFLIP_PAUSED was on: nothing was listed, rotated or written.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    pub summary: SweepSummary,
    /// The secrets acted on (rotated, pending, planned) or failing; never the skipped ones.
    pub results: Vec<RotationResult>,
    /// Results beyond [`MAX_SWEEP_RESULTS`], counted in the summary but not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub results_omitted: usize,
    /// Vaults that could not be listed for a reason retrying may fix (throttling, 5xx, time).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Vaults that cannot be listed for a reason retrying will not fix (not found, access
    /// refused): an operator must act; the sweep does not ask the host to retry for them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Problems and errors beyond [`MAX_SWEEP_PROBLEMS`] each, counted but not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub problems_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl SweepReport {
    /// The report for a terminal: the summary, then one aligned row per secret acted on or
    /// failing, then what could not be listed and the problems.
    pub fn text(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        if self.paused {
            out.push_str("keyflip is paused (KEYFLIP_PAUSED=true): nothing was listed or rotated\n");
        }
        let reasons = |counts: &BTreeMap<String, usize>| {
            let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            match parts.is_empty() {
                true => String::new(),
                false => format!(" ({})", parts.join(", ")),
            }
        };
        out.push_str(&format!(
            "scanned {}, due {}, rotated {}, pending {}, skipped {}{}, failed {}{}, left for the next run {}{} in {} ms\n",
            s.scanned,
            s.due,
            s.rotated,
            s.pending,
            s.skipped,
            reasons(&s.skipped_by_reason),
            s.failed,
            reasons(&s.failed_by_reason),
            s.left_for_next_run,
            s.left_because.map(|why| format!(" ({why})")).unwrap_or_default(),
            s.elapsed_ms
        ));
        if !self.results.is_empty() {
            let rows: Vec<[String; 4]> = self
                .results
                .iter()
                .map(|r| {
                    let slots = match (&r.from, &r.to) {
                        (Some(from), Some(to)) => format!("{from} -> {to}"),
                        _ => String::new(),
                    };
                    [
                        format!("{}/{}", r.vault, r.secret),
                        r.outcome.label(),
                        slots,
                        r.message.clone(),
                    ]
                })
                .collect();
            let header = ["SECRET", "OUTCOME", "SLOTS", "MESSAGE"].map(String::from);
            let width = |i: usize| {
                rows.iter()
                    .chain(std::iter::once(&header))
                    .map(|row| row[i].chars().count())
                    .max()
                    .unwrap_or(0)
            };
            let widths = [width(0), width(1), width(2)];
            for row in std::iter::once(&header).chain(&rows) {
                out.push_str(&format!(
                    "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2]
                ));
            }
        }
        if self.results_omitted > 0 {
            out.push_str(&format!("... and {} more (see the log)\n", self.results_omitted));
        }
        for line in self.errors.iter().chain(&self.problems) {
            out.push_str(line);
            out.push('\n');
        }
        if self.problems_omitted > 0 {
            out.push_str(&format!(
                "... and {} more problems or errors (see the log)\n",
                self.problems_omitted
            ));
        }
        out
    }

    /// Counts `result` and keeps it when it is worth listing (acted on or failing) and there
    /// is room.
    pub fn add(&mut self, result: RotationResult) {
        self.summary.count(result.outcome);
        if matches!(result.outcome, Outcome::Skipped(_)) {
            return;
        }
        if self.results.len() < MAX_SWEEP_RESULTS {
            self.results.push(result);
        } else {
            self.results_omitted += 1;
        }
    }

    /// Transient if any rotation was transient (counted, listed or not) or a vault could not
    /// be listed for a transient reason.
    pub fn class(&self) -> Class {
        let s = &self.summary;
        let counted = |reason: FailReason| s.failed_by_reason.get(fail_label(reason)).copied().unwrap_or(0);
        let transient = !self.errors.is_empty()
            || s.pending > 0
            || counted(FailReason::Transient) > 0
            || counted(FailReason::Locked) > 0
            || self.results.iter().any(|r| r.outcome.class() == Class::Transient);
        if transient {
            Class::Transient
        } else {
            Class::Success
        }
    }

    /// Adds a transient error, or counts it beyond [`MAX_SWEEP_PROBLEMS`].
    pub fn error(&mut self, error: String) {
        if self.errors.len() < MAX_SWEEP_PROBLEMS {
            self.errors.push(error);
        } else {
            self.problems_omitted += 1;
        }
    }

    /// Adds a problem an operator must fix, or counts it beyond [`MAX_SWEEP_PROBLEMS`].
    pub fn problem(&mut self, problem: String) {
        if self.problems.len() < MAX_SWEEP_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.problems_omitted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_classes_follow_the_design() {
        assert_eq!(Outcome::Skipped(SkipReason::Dwell).label(), "skipped:dwell");
        assert_eq!(
            Outcome::Failed(FailReason::PointerMismatch).label(),
            "failed:pointer-mismatch"
        );
        assert_eq!(Outcome::Pending.class(), Class::Transient);
        assert_eq!(Outcome::Failed(FailReason::Transient).class(), Class::Transient);
        assert_eq!(
            Outcome::Failed(FailReason::KeysDisabled).class(),
            Class::Permanent
        );
        assert_eq!(Outcome::Skipped(SkipReason::Stale).class(), Class::Success);
        assert_eq!(
            Outcome::Failed(FailReason::UnknownKey).label(),
            "failed:unknown-key"
        );
        assert_eq!(Outcome::Failed(FailReason::UnknownKey).class(), Class::Permanent);
        assert_eq!(Outcome::Failed(FailReason::Internal).label(), "failed:internal");
        assert_eq!(Outcome::Repaired.class(), Class::Success);
    }
}
