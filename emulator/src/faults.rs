//! Fault and latency injection, armed through the control API.
//!
//! A fault makes the next `count` calls of an operation (optionally only on one target) answer
//! an error status, with or without `Retry-After`. By default it answers *instead of* the
//! operation; with `phase: "after"` the operation runs first and its answer is replaced, which
//! models a response lost on the way back. A latency rule delays calls before they run.

use serde::{Deserialize, Serialize};

/// When a fault strikes relative to the operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The operation does not run.
    #[default]
    Before,
    /// The operation runs; its answer is replaced by the fault.
    After,
}

/// A fault rule, as the control API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Operation id (`SetSecret`, `Accounts_ListKeys`, …) or `*` for every operation.
    pub operation: String,
    /// Only calls on this target (vault name, account name or subdomain, audience).
    #[serde(default)]
    pub target: Option<String>,
    /// HTTP status to answer.
    pub status: u16,
    /// How many calls to fail (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// `Retry-After` header value, in seconds.
    #[serde(default)]
    pub retry_after_seconds: Option<u32>,
    #[serde(default)]
    pub phase: Phase,
    /// `error.code` (default: the service's own code for that status).
    #[serde(default)]
    pub code: Option<String>,
    /// `error.message` (default: the service's own message for that status).
    #[serde(default)]
    pub message: Option<String>,
}

fn one() -> u32 {
    1
}

impl FaultRule {
    /// Fails the next `count` calls of `operation` (on any target) with `status`, before the
    /// operation runs, with the service's own error body and no Retry-After.
    pub fn new(operation: &str, status: u16, count: u32) -> Self {
        Self {
            operation: operation.to_string(),
            target: None,
            status,
            count,
            retry_after_seconds: None,
            phase: Phase::Before,
            code: None,
            message: None,
        }
    }
}

/// A latency rule: delay calls of an operation by `delay_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyRule {
    pub operation: String,
    #[serde(default)]
    pub target: Option<String>,
    pub delay_ms: u64,
    /// How many calls to delay; absent means every call until cleared.
    #[serde(default)]
    pub count: Option<u32>,
}

fn matches(rule_operation: &str, rule_target: &Option<String>, operation: &str, targets: &[&str]) -> bool {
    (rule_operation == "*" || rule_operation.eq_ignore_ascii_case(operation))
        && rule_target
            .as_ref()
            .is_none_or(|t| targets.iter().any(|x| x.eq_ignore_ascii_case(t)))
}

/// The armed fault and latency rules.
#[derive(Debug, Default)]
pub struct Faults {
    faults: Vec<FaultRule>,
    latencies: Vec<LatencyRule>,
}

impl Faults {
    pub fn add_fault(&mut self, rule: FaultRule) {
        self.faults.push(rule);
    }

    pub fn add_latency(&mut self, rule: LatencyRule) {
        self.latencies.push(rule);
    }

    pub fn clear(&mut self) {
        self.faults.clear();
        self.latencies.clear();
    }

    pub fn list(&self) -> (Vec<FaultRule>, Vec<LatencyRule>) {
        (self.faults.clone(), self.latencies.clone())
    }

    /// Takes one strike of the first fault matching the call in this phase.
    pub fn take_fault(&mut self, operation: &str, targets: &[&str], phase: Phase) -> Option<FaultRule> {
        let index = self.faults.iter().position(|f| {
            f.phase == phase && f.count > 0 && matches(&f.operation, &f.target, operation, targets)
        })?;
        let rule = &mut self.faults[index];
        rule.count -= 1;
        let taken = rule.clone();
        if rule.count == 0 {
            self.faults.remove(index);
        }
        Some(taken)
    }

    /// Takes one use of the first latency rule matching the call; returns its delay.
    pub fn take_latency(&mut self, operation: &str, targets: &[&str]) -> Option<u64> {
        let index = self
            .latencies
            .iter()
            .position(|l| matches(&l.operation, &l.target, operation, targets))?;
        let rule = &mut self.latencies[index];
        let delay = rule.delay_ms;
        if let Some(count) = rule.count.as_mut() {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.latencies.remove(index);
            }
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(operation: &str, target: Option<&str>, count: u32) -> FaultRule {
        FaultRule {
            target: target.map(Into::into),
            ..FaultRule::new(operation, 429, count)
        }
    }

    #[test]
    fn a_fault_strikes_count_times_then_disarms() {
        let mut faults = Faults::default();
        faults.add_fault(fault("SetSecret", None, 2));
        assert!(faults.take_fault("GetSecret", &["kv"], Phase::Before).is_none());
        assert!(faults.take_fault("setsecret", &["kv"], Phase::Before).is_some());
        assert!(faults.take_fault("SetSecret", &["kv"], Phase::After).is_none());
        assert!(faults.take_fault("SetSecret", &["kv"], Phase::Before).is_some());
        assert!(faults.take_fault("SetSecret", &["kv"], Phase::Before).is_none());
    }

    #[test]
    fn a_targeted_fault_spares_other_targets_and_star_matches_all() {
        let mut faults = Faults::default();
        faults.add_fault(fault("*", Some("kv2"), 1));
        assert!(faults.take_fault("GetSecret", &["kv1"], Phase::Before).is_none());
        assert!(faults.take_fault("GetSecret", &["KV2"], Phase::Before).is_some());
    }

    #[test]
    fn latency_without_count_stays_armed() {
        let mut faults = Faults::default();
        faults.add_latency(LatencyRule {
            operation: "*".into(),
            target: None,
            delay_ms: 5,
            count: None,
        });
        faults.add_latency(LatencyRule {
            operation: "GetToken".into(),
            target: None,
            delay_ms: 9,
            count: Some(1),
        });
        assert_eq!(faults.take_latency("GetSecret", &[]), Some(5));
        assert_eq!(faults.take_latency("GetSecret", &[]), Some(5));
    }
}
