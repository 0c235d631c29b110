//! Throttling at Azure's documented limits: Key Vault's per-vault limits and Resource Manager's
//! token buckets, both off until the seed or the control API turns them on.
//!
//! Key Vault (`../shared/reference/rest-contracts.md` §A.7, `queues-flex-and-limits.md` §5.2,
//! from learn.microsoft.com `key-vault/general/service-limits`): per vault, per 10 seconds,
//! **300 secret CREATE** transactions (SetSecret, which makes a version) and **4,000 of all other
//! transactions** (GetSecret, GetSecrets, GetSecretVersions, UpdateSecret, DeleteSecret, …).
//! Putting UpdateSecret (PATCH) under "all other" is the references' reading of that page. Each
//! class is a token bucket holding the 10-second figure and refilling at a tenth of it per
//! second. A throttled call answers 429 `Throttled` with the body captured from a real vault and
//! no `Retry-After` (Key Vault sends none, rest-contracts.md §A.6); it consumes no token ("Failed
//! requests that return a 429 do not count towards the throttle limits").
//!
//! Resource Manager (rest-contracts.md §D.1, queues-flex-and-limits.md §5.1, from
//! `azure-resource-manager/management/request-limits-and-throttling.md`): token buckets per
//! subscription — reads 250 refilling 25/s, writes 200 refilling 10/s, deletes 200 refilling
//! 10/s — and the same figures per tenant for calls outside a subscription (`GET
//! /subscriptions`). GETs are reads; POST actions (`listKeys`, `regenerateKey`), PUT and PATCH
//! are writes (queues-flex-and-limits.md §5.1: "POST actions count as writes"); DELETEs are
//! deletes. Azure also keys the buckets by region and service principal; the emulator has one
//! region, and keys them by subscription alone. A throttled call answers 429
//! `SubscriptionRequestsThrottled` with `Retry-After` (whole seconds until a token is there, at
//! least 1); every answer carries `x-ms-ratelimit-remaining-subscription-{reads|writes|deletes}`.
//!
//! Not modelled: Key Vault's subscription-wide limit (5× the vault's), ARM's global
//! (15×, across principals) headers and resource providers' own limits.
//!
//! The buckets run on [`BucketClock`]: monotonic time at sub-second resolution, moved forward
//! by every advance of the emulator's clock and standing still while it is frozen, so a test
//! freezes the clock, drains a bucket and refills it with `POST /control/clock` without
//! sleeping. [`crate::pipeline::Exchange`] asks [`Throttling::admit`] once per call that passed
//! authentication; the services say what a call costs ([`ThrottleKey`]) and render the 429.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a call costs: which bucket it draws from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ThrottleKey {
    pub scope: Scope,
    pub kind: Kind,
}

/// Whose bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// A vault, by lower-case name.
    Vault(String),
    /// A Resource Manager subscription, by lower-case id.
    Subscription(String),
    /// Resource Manager calls outside a subscription.
    Tenant,
}

/// Which of the scope's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Key Vault: SetSecret.
    Creates,
    /// Key Vault: every other operation.
    Others,
    /// Resource Manager: GET.
    Reads,
    /// Resource Manager: POST, PUT, PATCH.
    Writes,
    /// Resource Manager: DELETE.
    Deletes,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Creates => "creates",
            Kind::Others => "others",
            Kind::Reads => "reads",
            Kind::Writes => "writes",
            Kind::Deletes => "deletes",
        }
    }

    /// The Resource Manager bucket of an HTTP method.
    pub fn of_arm_method(method: &axum::http::Method) -> Self {
        match *method {
            axum::http::Method::GET | axum::http::Method::HEAD => Kind::Reads,
            axum::http::Method::DELETE => Kind::Deletes,
            _ => Kind::Writes,
        }
    }

    /// `read`, `write` or `delete`, as Resource Manager's throttling message names the kind.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Creates => "create",
            Kind::Others => "other",
            Kind::Reads => "read",
            Kind::Writes => "write",
            Kind::Deletes => "delete",
        }
    }
}

impl ThrottleKey {
    /// The Key Vault bucket of an operation on `vault`.
    pub fn keyvault(vault: &str, operation: &str) -> Self {
        let kind = if operation == "SetSecret" {
            Kind::Creates
        } else {
            Kind::Others
        };
        Self {
            scope: Scope::Vault(vault.to_ascii_lowercase()),
            kind,
        }
    }

    /// The Resource Manager bucket of `method` on `path`: the subscription the path names
    /// (`/subscriptions/{s}/…`), else the tenant.
    pub fn arm(method: &axum::http::Method, path: &str) -> Self {
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let scope = match (segments.next(), segments.next()) {
            (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => {
                Scope::Subscription(id.to_ascii_lowercase())
            }
            _ => Scope::Tenant,
        };
        Self {
            scope,
            kind: Kind::of_arm_method(method),
        }
    }

    /// `x-ms-ratelimit-remaining-{subscription|tenant}-{reads|writes|deletes}`.
    pub fn remaining_header(&self) -> String {
        let scope = match self.scope {
            Scope::Tenant => "tenant",
            _ => "subscription",
        };
        format!("x-ms-ratelimit-remaining-{scope}-{}", self.kind.as_str())
    }
}

/// One token bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketLimits {
    /// Tokens it holds when full.
    pub burst: u32,
    /// Tokens added per second.
    pub per_second: f64,
}

/// Key Vault's per-vault limits, per 10 seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyVaultLimits {
    /// SetSecret ("Secret CREATE"): 300.
    #[serde(default = "kv_creates")]
    pub creates_per_10s: u32,
    /// Every other operation ("All other transactions"): 4,000.
    #[serde(default = "kv_others")]
    pub others_per_10s: u32,
}

impl Default for KeyVaultLimits {
    fn default() -> Self {
        Self {
            creates_per_10s: kv_creates(),
            others_per_10s: kv_others(),
        }
    }
}

fn kv_creates() -> u32 {
    300
}

fn kv_others() -> u32 {
    4_000
}

/// A bucket as the settings give it: either field absent takes Azure's figure for that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketInput {
    burst: Option<u32>,
    per_second: Option<f64>,
}

impl BucketInput {
    fn resolve(self, default: BucketLimits) -> BucketLimits {
        BucketLimits {
            burst: self.burst.unwrap_or(default.burst),
            per_second: self.per_second.unwrap_or(default.per_second),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmInput {
    #[serde(default)]
    reads: BucketInput,
    #[serde(default)]
    writes: BucketInput,
    #[serde(default)]
    deletes: BucketInput,
}

/// Resource Manager's buckets per subscription (and per tenant).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ArmLimits {
    pub reads: BucketLimits,
    pub writes: BucketLimits,
    pub deletes: BucketLimits,
}

/// Azure's figures: reads 250 refilling 25/s, writes and deletes 200 refilling 10/s.
pub const ARM_READS: BucketLimits = BucketLimits {
    burst: 250,
    per_second: 25.0,
};
pub const ARM_WRITES: BucketLimits = BucketLimits {
    burst: 200,
    per_second: 10.0,
};
pub const ARM_DELETES: BucketLimits = BucketLimits {
    burst: 200,
    per_second: 10.0,
};

impl Default for ArmLimits {
    fn default() -> Self {
        ArmInput::default().resolve()
    }
}

impl ArmInput {
    fn resolve(self) -> ArmLimits {
        ArmLimits {
            reads: self.reads.resolve(ARM_READS),
            writes: self.writes.resolve(ARM_WRITES),
            deletes: self.deletes.resolve(ARM_DELETES),
        }
    }
}

/// Which services are throttled, and at what limits. In a document, `{}` throttles both at
/// Azure's figures; `"keyvault": null` or `"arm": null` leaves that one unthrottled; a field
/// left out of a service's object takes Azure's figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThrottlingSettings {
    pub keyvault: Option<KeyVaultLimits>,
    pub arm: Option<ArmLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsInput {
    #[serde(default = "on")]
    keyvault: Option<KeyVaultLimits>,
    #[serde(default = "on")]
    arm: Option<ArmInput>,
}

fn on<T: Default>() -> Option<T> {
    Some(T::default())
}

impl<'de> Deserialize<'de> for ThrottlingSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let input = SettingsInput::deserialize(deserializer)?;
        Ok(Self {
            keyvault: input.keyvault,
            arm: input.arm.map(ArmInput::resolve),
        })
    }
}

impl ThrottlingSettings {
    /// Refuses limits that could never admit a call.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(kv) = &self.keyvault
            && (kv.creates_per_10s == 0 || kv.others_per_10s == 0)
        {
            return Err("throttling.keyvault: creates_per_10s and others_per_10s must be at least 1".into());
        }
        if let Some(arm) = &self.arm {
            for (name, bucket) in [
                ("reads", arm.reads),
                ("writes", arm.writes),
                ("deletes", arm.deletes),
            ] {
                if bucket.burst == 0 || !(bucket.per_second.is_finite() && bucket.per_second > 0.0) {
                    return Err(format!(
                        "throttling.arm.{name}: burst must be at least 1 and per_second a number above 0"
                    ));
                }
            }
        }
        Ok(())
    }

    fn limits(&self, kind: Kind) -> Option<BucketLimits> {
        let kv = |per_10s: u32| BucketLimits {
            burst: per_10s,
            per_second: f64::from(per_10s) / 10.0,
        };
        match kind {
            Kind::Creates => self.keyvault.map(|l| kv(l.creates_per_10s)),
            Kind::Others => self.keyvault.map(|l| kv(l.others_per_10s)),
            Kind::Reads => self.arm.map(|l| l.reads),
            Kind::Writes => self.arm.map(|l| l.writes),
            Kind::Deletes => self.arm.map(|l| l.deletes),
        }
    }
}

/// The buckets' time: seconds on a monotonic clock, plus every forward move of the emulator's
/// clock; it stands still while the emulator's clock is frozen. It never goes back.
#[derive(Debug, Clone)]
pub struct BucketClock {
    start: Instant,
    offset: f64,
    frozen_at: Option<f64>,
}

impl Default for BucketClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            offset: 0.0,
            frozen_at: None,
        }
    }
}

impl BucketClock {
    pub fn now(&self) -> f64 {
        self.frozen_at
            .unwrap_or_else(|| self.start.elapsed().as_secs_f64() + self.offset)
    }

    /// Moves it forward by `seconds` (a move back is ignored: buckets never drain by it).
    pub fn advance(&mut self, seconds: f64) {
        if seconds <= 0.0 {
            return;
        }
        match self.frozen_at.as_mut() {
            Some(at) => *at += seconds,
            None => self.offset += seconds,
        }
    }

    /// Stops it where it is, or lets it run again from there.
    pub fn freeze(&mut self, frozen: bool) {
        let now = self.now();
        if frozen {
            self.frozen_at = Some(now);
        } else {
            self.frozen_at = None;
            self.offset = now - self.start.elapsed().as_secs_f64();
        }
    }
}

const EPSILON: f64 = 1e-9;

/// A token bucket.
#[derive(Debug, Clone, PartialEq)]
struct Bucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    at: f64,
}

impl Bucket {
    fn full(limits: BucketLimits, now: f64) -> Self {
        Self {
            capacity: f64::from(limits.burst),
            rate: limits.per_second,
            tokens: f64::from(limits.burst),
            at: now,
        }
    }

    fn refill(&mut self, now: f64) {
        if now > self.at {
            self.tokens = (self.tokens + (now - self.at) * self.rate).min(self.capacity);
            self.at = now;
        }
    }

    /// Takes a token: the whole tokens left, or the seconds until one is there.
    fn take(&mut self, now: f64) -> Result<u64, f64> {
        self.refill(now);
        // Tolerates the rounding of sums of seconds (a refill of exactly one token).
        if self.tokens >= 1.0 - EPSILON {
            self.tokens = (self.tokens - 1.0).max(0.0);
            Ok((self.tokens + EPSILON).floor() as u64)
        } else {
            Err((1.0 - self.tokens) / self.rate)
        }
    }

    fn remaining(&mut self, now: f64) -> u64 {
        self.refill(now);
        (self.tokens + EPSILON).floor() as u64
    }
}

/// The verdict on one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// The service is not throttled.
    Unlimited,
    /// Admitted; whole tokens left in its bucket.
    Admitted { remaining: u64 },
    /// Refused; seconds until a token is there.
    Throttled { wait_seconds: f64 },
}

/// The throttling state of one emulator.
#[derive(Debug, Clone, Default)]
pub struct Throttling {
    settings: Option<ThrottlingSettings>,
    buckets: BTreeMap<ThrottleKey, Bucket>,
    /// Calls answered 429 by throttling, per bucket.
    throttled: BTreeMap<ThrottleKey, u64>,
    pub clock: BucketClock,
}

impl Throttling {
    pub fn settings(&self) -> Option<ThrottlingSettings> {
        self.settings
    }

    /// Applies new settings (`None`: off); every bucket starts full again. Counts are kept.
    pub fn configure(&mut self, settings: Option<ThrottlingSettings>) {
        self.settings = settings;
        self.buckets.clear();
    }

    /// Refills every bucket and forgets the counts.
    pub fn restart(&mut self) {
        self.buckets.clear();
        self.throttled.clear();
    }

    /// Takes a token for a call, or counts it throttled.
    pub fn admit(&mut self, key: &ThrottleKey) -> Admission {
        let Some(limits) = self.settings.and_then(|s| s.limits(key.kind)) else {
            return Admission::Unlimited;
        };
        let now = self.clock.now();
        let bucket = self
            .buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(limits, now));
        match bucket.take(now) {
            Ok(remaining) => Admission::Admitted { remaining },
            Err(wait_seconds) => {
                *self.throttled.entry(key.clone()).or_default() += 1;
                Admission::Throttled { wait_seconds }
            }
        }
    }

    /// Whole tokens in a call's bucket without taking one; `None` when not throttled.
    pub fn remaining(&mut self, key: &ThrottleKey) -> Option<u64> {
        let limits = self.settings.and_then(|s| s.limits(key.kind))?;
        let now = self.clock.now();
        Some(
            self.buckets
                .entry(key.clone())
                .or_insert_with(|| Bucket::full(limits, now))
                .remaining(now),
        )
    }

    /// Calls answered 429 by throttling, in all.
    pub fn throttled_total(&self) -> u64 {
        self.throttled.values().sum()
    }

    /// `GET /control/throttling`: the settings, the total, and per vault / subscription and
    /// kind the calls throttled and the whole tokens left (every bucket used so far).
    pub fn view(&mut self) -> Value {
        let now = self.clock.now();
        let mut keys: Vec<ThrottleKey> = self.buckets.keys().cloned().collect();
        keys.extend(self.throttled.keys().cloned());
        keys.sort();
        keys.dedup();
        let mut keyvault = serde_json::Map::new();
        let mut arm = serde_json::Map::new();
        for key in keys {
            let remaining = self.buckets.get_mut(&key).map(|b| b.remaining(now));
            let entry = json!({
                "throttled": self.throttled.get(&key).copied().unwrap_or(0),
                "remaining": remaining,
            });
            let (map, name) = match &key.scope {
                Scope::Vault(v) => (&mut keyvault, v.clone()),
                Scope::Subscription(s) => (&mut arm, s.clone()),
                Scope::Tenant => (&mut arm, "tenant".to_string()),
            };
            if let Some(kinds) = map.entry(name).or_insert_with(|| json!({})).as_object_mut() {
                kinds.insert(key.kind.as_str().to_string(), entry);
            }
        }
        json!({
            "settings": self.settings,
            "throttled": self.throttled_total(),
            "keyvault": keyvault,
            "arm": arm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: Value) -> ThrottlingSettings {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_empty_object_throttles_both_services_at_azures_figures() {
        let all = settings(json!({}));
        assert_eq!(all.keyvault, Some(KeyVaultLimits::default()));
        assert_eq!(all.keyvault.unwrap().creates_per_10s, 300);
        assert_eq!(all.keyvault.unwrap().others_per_10s, 4_000);
        let arm = all.arm.unwrap();
        assert_eq!((arm.reads.burst, arm.reads.per_second), (250, 25.0));
        assert_eq!((arm.writes.burst, arm.writes.per_second), (200, 10.0));
        let only_arm = settings(json!({"keyvault": null, "arm": {"writes": {"per_second": 2}}}));
        assert_eq!(only_arm.keyvault, None);
        assert_eq!(only_arm.arm.unwrap().writes.burst, 200);
        assert_eq!(only_arm.arm.unwrap().writes.per_second, 2.0);
        assert!(serde_json::from_value::<ThrottlingSettings>(json!({"kv": {}})).is_err());
        assert!(
            settings(json!({"arm": {"reads": {"burst": 0}}}))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn a_bucket_drains_refills_on_its_clock_and_says_how_long_to_wait() {
        let mut throttling = Throttling::default();
        throttling.clock.freeze(true);
        throttling.configure(Some(settings(
            json!({"keyvault": null, "arm": {"writes": {"burst": 2, "per_second": 0.5}}}),
        )));
        let key = ThrottleKey::arm(&axum::http::Method::POST, "/subscriptions/S/resourceGroups/rg");
        assert_eq!(key.scope, Scope::Subscription("s".into()));
        assert_eq!(throttling.admit(&key), Admission::Admitted { remaining: 1 });
        assert_eq!(throttling.admit(&key), Admission::Admitted { remaining: 0 });
        let waits = |admission| match admission {
            Admission::Throttled { wait_seconds } => wait_seconds,
            other => panic!("not throttled: {other:?}"),
        };
        assert!((waits(throttling.admit(&key)) - 2.0).abs() < 1e-6);
        throttling.clock.advance(1.0);
        assert!((waits(throttling.admit(&key)) - 1.0).abs() < 1e-6);
        throttling.clock.advance(1.0);
        assert_eq!(throttling.admit(&key), Admission::Admitted { remaining: 0 });
        let read = ThrottleKey::arm(&axum::http::Method::GET, "/subscriptions");
        assert_eq!(read.scope, Scope::Tenant);
        assert_eq!(throttling.admit(&read), Admission::Admitted { remaining: 249 });
        assert_eq!(
            throttling.admit(&ThrottleKey::keyvault("kv", "GetSecret")),
            Admission::Unlimited
        );
        assert_eq!(throttling.throttled_total(), 2);
        throttling.clock.advance(-100.0);
        assert_eq!(throttling.remaining(&key), Some(0));
    }
}
