//! The soak's verdicts computed from the emulator's call log: overlapping rotations (I3) and
//! pending rotations resumed with a second regeneration (I5). Pure functions of the log, the
//! pending marks the watcher saw and the secrets' names, so a failure prints exactly the calls
//! that broke the rule.
//!
//! Every rule flags only what is certain from the log: lease windows are reconstructed from
//! what Azurite answered (`upstream_status`, not what a fault made the caller see), a lease is
//! taken to expire `duration` seconds after Azurite's *latest* possible renewal, and a write
//! counts as "after expiry" only when its whole second on the emulator's clock lies after it.

use std::collections::HashMap;

use emulator::calls::{Call, Service};

/// A managed secret of the soak and the account it publishes.
#[derive(Debug, Clone)]
pub struct SecretRef {
    pub name: String,
    pub account: String,
}

/// A pending mark the watcher saw on a secret's latest version, while the call log held
/// between `n0` and `n1` calls.
#[derive(Debug, Clone)]
pub struct MarkSeen {
    pub secret: String,
    pub n0: u64,
    pub n1: u64,
    pub version: String,
    pub slot: String,
    /// `PendingSince`, unix seconds.
    pub since: i64,
}

/// The operations that change a key or a secret.
pub const WRITES: [&str; 3] = ["Accounts_RegenerateKey", "SetSecret", "UpdateSecret"];

/// A one-line account of a call for failure output.
pub fn describe(call: &Call, label: &dyn Fn(Option<&str>) -> String) -> String {
    let lease = call
        .lease
        .as_ref()
        .map(|l| {
            format!(
                " lease={}:{:?}@{}..{:?}",
                l.action, l.upstream_status, l.received_ms, l.answered_ms
            )
        })
        .unwrap_or_default();
    format!(
        "#{} at={} {} {} {} -> {}{} by {}{}",
        call.seq,
        call.at,
        call.operation,
        call.method,
        call.path,
        call.status,
        if call.faulted { " (faulted)" } else { "" },
        label(call.caller.as_deref()),
        lease
    )
}

/// The secret (lower case) a Key Vault write addresses in `vault`.
fn kv_secret(call: &Call, vault: &str) -> Option<String> {
    if call.service != Service::Keyvault || !call.target.eq_ignore_ascii_case(vault) {
        return None;
    }
    let path = call.path.split('?').next().unwrap_or_default();
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("secrets"), Some(name)) if !name.is_empty() => Some(name.to_ascii_lowercase()),
        _ => None,
    }
}

/// The secret (lower case) whose account a Resource Manager call addresses.
fn arm_secret(call: &Call, secrets: &[SecretRef]) -> Option<String> {
    if call.service != Service::Arm {
        return None;
    }
    let account = call.target.rsplit('/').next().unwrap_or_default();
    secrets
        .iter()
        .find(|s| s.account.eq_ignore_ascii_case(account))
        .map(|s| s.name.to_ascii_lowercase())
}

/// The secret a mutating call (regenerate, set, update) changes, if it is one by a caller.
pub fn write_target(call: &Call, vault: &str, secrets: &[SecretRef]) -> Option<String> {
    if !WRITES.contains(&call.operation.as_str()) || call.caller.is_none() {
        return None;
    }
    match call.operation.as_str() {
        "Accounts_RegenerateKey" => arm_secret(call, secrets),
        _ => kv_secret(call, vault),
    }
}

fn kv_write_on(call: &Call, vault: &str, secret: &str) -> bool {
    matches!(call.operation.as_str(), "SetSecret" | "UpdateSecret")
        && kv_secret(call, vault).as_deref() == Some(secret)
}

#[derive(Debug, Clone)]
struct Holder {
    caller: String,
    duration_ms: i64,
    expires_ms: i64,
    acquired_seq: u64,
}

/// What the lease analysis looked at and found.
#[derive(Debug, Default)]
pub struct Overlaps {
    /// Mutating calls checked against the lease windows.
    pub writes: usize,
    /// Lease windows opened (acquires Azurite granted).
    pub windows: usize,
    /// The offending calls, described.
    pub found: Vec<String>,
}

/// Every mutating call on a secret by a caller that did not hold that secret's lease blob
/// (`keyflip-locks/<vault>/<secret lower case>`) at that moment: held by nobody, by another
/// caller, or expired.
pub fn overlaps(
    calls: &[Call],
    vault: &str,
    secrets: &[SecretRef],
    label: &dyn Fn(Option<&str>) -> String,
) -> Overlaps {
    let mut result = Overlaps::default();
    let prefix = format!("keyflip-locks/{}/", vault.to_ascii_lowercase());
    let mut holders: HashMap<String, Holder> = HashMap::new();
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_by_key(|c| c.seq);
    for call in sorted {
        if call.service == Service::Storage {
            let (Some(lease), Some(secret)) = (&call.lease, call.target.strip_prefix(&prefix)) else {
                continue;
            };
            let secret = secret.to_ascii_lowercase();
            let caller = call.caller.clone().unwrap_or_else(|| "<no token>".to_string());
            let answered = lease.answered_ms.unwrap_or(lease.received_ms);
            match (lease.action.as_str(), lease.upstream_status) {
                ("acquire", Some(201)) => {
                    result.windows += 1;
                    let duration_ms = lease.duration_seconds.unwrap_or(60).max(0) * 1000;
                    holders.insert(
                        secret,
                        Holder {
                            caller,
                            duration_ms,
                            expires_ms: answered + duration_ms,
                            acquired_seq: call.seq,
                        },
                    );
                }
                ("renew", Some(200)) => {
                    if let Some(h) = holders.get_mut(&secret)
                        && h.caller == caller
                    {
                        h.expires_ms = answered + h.duration_ms;
                    }
                }
                ("release", Some(200)) | ("break", Some(202)) => {
                    holders.remove(&secret);
                }
                _ => {}
            }
            continue;
        }
        let Some(secret) = write_target(call, vault, secrets) else {
            continue;
        };
        result.writes += 1;
        let caller = call.caller.clone().unwrap_or_default();
        let why = match holders.get(&secret) {
            None => Some("while nobody held the secret's lease".to_string()),
            Some(h) if h.caller != caller => Some(format!(
                "inside {}'s lease (acquired at #{})",
                label(Some(&h.caller)),
                h.acquired_seq
            )),
            Some(h) if call.at * 1000 >= h.expires_ms => Some(format!(
                "after its own lease (acquired at #{}) expired at {} ms",
                h.acquired_seq, h.expires_ms
            )),
            Some(_) => None,
        };
        if let Some(why) = why {
            result
                .found
                .push(format!("{secret}: {} {why}", describe(call, label)));
        }
    }
    result
}

/// Every regeneration of a secret's account while the watcher had seen that secret's latest
/// version carry a pending mark younger than `timeout_seconds`, and no Key Vault write on the
/// secret came between that sighting and the regeneration: the mark was still there, so the
/// rotation should have resumed instead of regenerating again.
pub fn resumed_with_regeneration(
    calls: &[Call],
    vault: &str,
    secrets: &[SecretRef],
    marks: &[MarkSeen],
    timeout_seconds: i64,
    label: &dyn Fn(Option<&str>) -> String,
) -> Vec<String> {
    let mut found = Vec::new();
    for r in calls.iter().filter(|c| c.operation == "Accounts_RegenerateKey") {
        let Some(secret) = write_target(r, vault, secrets) else {
            continue;
        };
        let Some(seen) = marks
            .iter()
            .filter(|m| m.secret == secret && m.n1 < r.seq)
            .max_by_key(|m| m.n1)
        else {
            continue;
        };
        let changed = calls
            .iter()
            .any(|c| c.seq > seen.n0 && c.seq < r.seq && kv_write_on(c, vault, &secret));
        // Two seconds of margin: PendingSince and the log both count whole seconds.
        if !changed && r.at < seen.since + timeout_seconds - 2 {
            found.push(format!(
                "{secret}: {} while version {} was marked PendingSlot={} since {} (seen with the log at #{}..#{})",
                describe(r, label),
                seen.version,
                seen.slot,
                seen.since,
                seen.n0,
                seen.n1
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use emulator::calls::LeaseCall;

    use super::*;

    const A: &str = "oid-a";
    const B: &str = "oid-b";

    fn secrets() -> Vec<SecretRef> {
        vec![SecretRef {
            name: "Soak-Key-0".into(),
            account: "soakaoai0".into(),
        }]
    }

    fn call(
        seq: u64,
        at: i64,
        service: Service,
        operation: &str,
        target: &str,
        path: &str,
        caller: &str,
    ) -> Call {
        Call {
            seq,
            at,
            service,
            operation: operation.into(),
            target: target.into(),
            method: "POST".into(),
            path: path.into(),
            api_version: None,
            status: 200,
            caller: Some(caller.into()),
            key_slot: None,
            faulted: false,
            lease: None,
        }
    }

    fn lease(seq: u64, action: &str, upstream: u16, ms: i64, caller: &str) -> Call {
        let mut c = call(
            seq,
            ms / 1000,
            Service::Storage,
            "Blob_Lease",
            "keyflip-locks/kv-soak/soak-key-0",
            "/",
            caller,
        );
        c.lease = Some(LeaseCall {
            action: action.into(),
            duration_seconds: (action == "acquire").then_some(20),
            break_period_seconds: None,
            lease_id: None,
            upstream_status: Some(upstream),
            received_ms: ms,
            answered_ms: Some(ms + 5),
        });
        c
    }

    fn regenerate(seq: u64, at: i64, caller: &str) -> Call {
        call(
            seq,
            at,
            Service::Arm,
            "Accounts_RegenerateKey",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/soakaoai0",
            "/regenerateKey",
            caller,
        )
    }

    fn publish(seq: u64, at: i64, caller: &str) -> Call {
        call(
            seq,
            at,
            Service::Keyvault,
            "SetSecret",
            "kv-soak",
            "/secrets/Soak-Key-0",
            caller,
        )
    }

    fn label(oid: Option<&str>) -> String {
        oid.unwrap_or("-").to_string()
    }

    #[test]
    fn writes_inside_the_writers_own_lease_are_fine() {
        let log = vec![
            lease(1, "acquire", 201, 1_000_000, A),
            regenerate(2, 1_001, A),
            lease(3, "renew", 200, 1_015_000, A),
            publish(4, 1_030, A),
            lease(5, "release", 200, 1_030_500, A),
        ];
        let result = overlaps(&log, "kv-soak", &secrets(), &label);
        assert_eq!((result.writes, result.windows), (2, 1));
        assert!(result.found.is_empty(), "{:?}", result.found);
    }

    #[test]
    fn writes_without_the_lease_inside_another_or_after_expiry_are_overlaps() {
        let log = vec![
            regenerate(1, 999, A),
            lease(2, "acquire", 201, 1_000_000, A),
            publish(3, 1_001, B),
            lease(4, "acquire", 409, 1_001_000, B),
            publish(5, 1_021, A),
            lease(6, "acquire", 201, 1_030_000, B),
            lease(7, "release", 200, 1_031_000, B),
            publish(8, 1_032, B),
        ];
        let result = overlaps(&log, "kv-soak", &secrets(), &label);
        let seqs: Vec<&str> = result
            .found
            .iter()
            .map(|f| f.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(seqs, vec!["#1", "#3", "#5", "#8"], "{:?}", result.found);
        assert!(
            result.found[1].contains("inside oid-a's lease"),
            "{}",
            result.found[1]
        );
        assert!(result.found[2].contains("expired"), "{}", result.found[2]);
    }

    fn mark(n0: u64, n1: u64, since: i64) -> MarkSeen {
        MarkSeen {
            secret: "soak-key-0".into(),
            n0,
            n1,
            version: "v1".into(),
            slot: "key2".into(),
            since,
        }
    }

    #[test]
    fn a_regeneration_while_a_live_mark_stands_is_a_resume_that_regenerated() {
        let log = vec![regenerate(1, 1_000, A), regenerate(5, 1_010, B)];
        let found = resumed_with_regeneration(&log, "kv-soak", &secrets(), &[mark(2, 3, 1_000)], 36, &label);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("#5"), "{}", found[0]);
    }

    #[test]
    fn a_regeneration_after_a_publish_or_past_the_timeout_is_a_new_rotation() {
        let published = vec![
            regenerate(1, 1_000, A),
            publish(4, 1_005, A),
            regenerate(5, 1_013, B),
        ];
        let marks = [mark(2, 3, 1_000)];
        assert!(resumed_with_regeneration(&published, "kv-soak", &secrets(), &marks, 36, &label).is_empty());
        let late = vec![regenerate(1, 1_000, A), regenerate(5, 1_040, B)];
        assert!(resumed_with_regeneration(&late, "kv-soak", &secrets(), &marks, 36, &label).is_empty());
    }
}
