//! Long-running Resource Manager operations: what an accepted (202) action left running, when
//! it ends on the emulator's clock, and how it ended.
//!
//! A provider starts one (today only a `regenerateKey` of an account whose `long_running`
//! setting is on) and answers 202 with the URLs [`Operation::status_url`] and
//! [`Operation::result_url`]; [`crate::arm`] serves those URLs; [`crate::world::World::settle`]
//! makes an operation take effect the first time the world is looked at on or after its end, so
//! moving the clock through the control API is enough to finish it (nothing sleeps).
//!
//! It does not know what the action does to its resource (the provider does, in
//! [`crate::providers::cognitive_services::Account::regenerate`]).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The per-account setting that makes `regenerateKey` long-running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongRunning {
    /// Seconds on the emulator's clock from the 202 until the operation ends.
    pub complete_after_seconds: i64,
    /// The `Retry-After` (seconds) of the 202 and of every answer while it runs (default 1).
    #[serde(default = "one")]
    pub retry_after_seconds: u32,
    /// How the operation ends (default `Succeeded`; `Failed` and `Canceled` leave the key as it
    /// was).
    #[serde(default)]
    pub outcome: OperationStatus,
    /// Scheme and host of the polling URLs (default `https://management.azure.com`): a
    /// misbehaving resource provider pointing its client elsewhere. The emulator itself serves
    /// them only on `management.azure.com`.
    #[serde(default)]
    pub poll_base: Option<String>,
}

fn one() -> u32 {
    1
}

/// `status` of an operation, as Resource Manager spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationStatus {
    InProgress,
    #[default]
    Succeeded,
    Failed,
    Canceled,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
        }
    }
}

/// What the operation does to its resource when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum OperationAction {
    /// Regenerates key slot `slot` (0 = key1, 1 = key2) of an account.
    RegenerateKey { slot: usize },
}

/// One long-running operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// A GUID: the last segment of its URLs and its `name`.
    pub id: String,
    pub subscription_id: String,
    /// `Microsoft.CognitiveServices`.
    pub namespace: String,
    pub location: String,
    /// The ARM id of the resource it acts on.
    pub resource_id: String,
    #[serde(flatten)]
    pub action: OperationAction,
    /// The api-version of the request that started it (its URLs carry it).
    pub api_version: String,
    /// Who started it (the token's `oid`).
    pub caller: String,
    /// When it was accepted and when it ends (emulator clock, unix seconds).
    pub start_time: i64,
    pub end_time: i64,
    /// How it ends.
    pub outcome: OperationStatus,
    /// `InProgress` until it has ended, then `outcome`.
    pub status: OperationStatus,
    pub retry_after_seconds: u32,
    pub poll_base: String,
}

impl Operation {
    /// `<base>/subscriptions/{s}/providers/{ns}/locations/{loc}/operationStatuses/{id}?api-version=…`,
    /// the `Azure-AsyncOperation` URL.
    pub fn status_url(&self) -> String {
        self.url("operationStatuses")
    }

    /// The same with `operationResults`: the `Location` URL.
    pub fn result_url(&self) -> String {
        self.url("operationResults")
    }

    fn path(&self, kind: &str) -> String {
        format!(
            "/subscriptions/{}/providers/{}/locations/{}/{kind}/{}",
            self.subscription_id, self.namespace, self.location, self.id
        )
    }

    fn url(&self, kind: &str) -> String {
        format!(
            "{}{}?api-version={}",
            self.poll_base.trim_end_matches('/'),
            self.path(kind),
            self.api_version
        )
    }

    /// Whether it has ended.
    pub fn ended(&self) -> bool {
        self.status != OperationStatus::InProgress
    }

    /// The `error` of an operation that did not succeed.
    pub fn error(&self) -> Option<(&'static str, &'static str)> {
        match self.status {
            OperationStatus::Failed => Some((
                "KeyRegenerationFailed",
                "The key regeneration failed; the key is unchanged.",
            )),
            OperationStatus::Canceled => Some((
                "OperationCanceled",
                "The key regeneration was canceled; the key is unchanged.",
            )),
            _ => None,
        }
    }

    /// The operation-status body (`OperationStatusResult` of the ARM common types).
    pub fn status_body(&self) -> Value {
        let mut body = json!({
            "id": self.path("operationStatuses"),
            "name": self.id,
            "status": self.status.as_str(),
            "startTime": rfc3339(self.start_time),
        });
        if self.ended() {
            body["endTime"] = json!(rfc3339(self.end_time));
        }
        if let Some((code, message)) = self.error() {
            body["error"] = json!({ "code": code, "message": message });
        }
        body
    }
}

/// Parsed `/subscriptions/{s}/providers/{ns}/locations/{loc}/{operationStatuses|operationResults}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationPath {
    pub subscription_id: String,
    pub namespace: String,
    pub location: String,
    /// `true` for `operationStatuses` (Azure-AsyncOperation), `false` for `operationResults`
    /// (Location).
    pub status: bool,
    pub id: String,
}

impl OperationPath {
    /// Matches the fixed segments case-insensitively, as ARM does.
    pub fn parse(segments: &[String]) -> Option<Self> {
        let fixed = |i: usize, word: &str| segments.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));
        if segments.len() != 8
            || !(fixed(0, "subscriptions") && fixed(2, "providers") && fixed(4, "locations"))
            || segments.iter().any(String::is_empty)
        {
            return None;
        }
        let status = if fixed(6, "operationStatuses") {
            true
        } else if fixed(6, "operationResults") {
            false
        } else {
            return None;
        };
        Some(Self {
            subscription_id: segments[1].clone(),
            namespace: segments[3].clone(),
            location: segments[5].clone(),
            status,
            id: segments[7].clone(),
        })
    }

    /// Whether `operation` is the one this path names (ids and names compared as ARM does).
    pub fn names(&self, operation: &Operation) -> bool {
        self.id.eq_ignore_ascii_case(&operation.id)
            && self
                .subscription_id
                .eq_ignore_ascii_case(&operation.subscription_id)
            && self.namespace.eq_ignore_ascii_case(&operation.namespace)
            && self.location.eq_ignore_ascii_case(&operation.location)
    }
}

pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::segments;

    fn operation(status: OperationStatus) -> Operation {
        Operation {
            id: "op1".into(),
            subscription_id: "s".into(),
            namespace: "Microsoft.CognitiveServices".into(),
            location: "eastus".into(),
            resource_id:
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a".into(),
            action: OperationAction::RegenerateKey { slot: 1 },
            api_version: "2025-06-01".into(),
            caller: "oid".into(),
            start_time: 1_800_000_000,
            end_time: 1_800_000_030,
            outcome: OperationStatus::Failed,
            status,
            retry_after_seconds: 1,
            poll_base: "https://management.azure.com".into(),
        }
    }

    #[test]
    fn urls_parse_back_to_their_operation() {
        let op = operation(OperationStatus::InProgress);
        assert_eq!(
            op.status_url(),
            "https://management.azure.com/subscriptions/s/providers/Microsoft.CognitiveServices/locations/eastus/operationStatuses/op1?api-version=2025-06-01"
        );
        let url = url::Url::parse(&op.result_url()).unwrap();
        let path = OperationPath::parse(&segments(url.path())).unwrap();
        assert!(!path.status);
        assert!(path.names(&op));
        assert!(
            OperationPath::parse(&segments("/subscriptions/s/providers/x/locations/l/other/op1")).is_none()
        );
    }

    #[test]
    fn the_status_body_has_the_arm_shape() {
        let running = operation(OperationStatus::InProgress).status_body();
        assert_eq!(running["status"], "InProgress");
        assert_eq!(running["name"], "op1");
        assert_eq!(running["startTime"], "2027-01-15T08:00:00Z");
        assert!(running.get("endTime").is_none() && running.get("error").is_none());
        let failed = operation(OperationStatus::Failed).status_body();
        assert_eq!(failed["endTime"], "2027-01-15T08:00:30Z");
        assert_eq!(failed["error"]["code"], "KeyRegenerationFailed");
    }
}
