//! All mutable state of one emulator: the clock, vaults, accounts, identities, role
//! definitions and assignments, Event Grid system topics, faults and the call log, behind one
//! mutex that no handler holds across an `.await`.
//!
//! The clock is wall time plus an offset the control API moves, or frozen at a time the control
//! API sets; resource state (secret `created`/`updated`, key activation, the end of a
//! long-running operation) follows it. Token lifetimes do not (see [`crate::token`]). The
//! throttling buckets follow a sub-second monotonic clock that every forward move of this one
//! moves too ([`crate::throttling::BucketClock`]).
//!
//! Every lock of the world first [settles](World::settle) the long-running operations whose end
//! has come, so whatever looks next (a poll, `listKeys`, the data plane, the control API) sees
//! them ended. Every regeneration that takes effect goes through
//! [`World::regenerate_key`], which counts the regenerations of a key some vault's latest
//! version holds (`active_regenerations`: a key consumers were told to use).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::calls::{Call, CallStart, LeaseCall};
use crate::faults::Faults;
use crate::keyvault::store::Vault;
use crate::operations::{Operation, OperationAction, OperationStatus};
use crate::providers::authorization::{RoleAssignment, RoleDefinition};
use crate::providers::cognitive_services::Account;
use crate::providers::event_grid::SystemTopic;
use crate::storage::StorageUpstream;
use crate::throttling::Throttling;
use crate::token::{TokenIssuer, wall_now};

/// A managed identity the token endpoint can issue tokens for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Application (client) id, the `client_id` of a user-assigned identity request.
    pub client_id: String,
    /// Object (principal) id: the `oid` of its tokens.
    pub principal_id: String,
}

/// The emulator's state.
#[derive(Debug, Default)]
pub struct World {
    /// Seconds added to wall time to get the emulator's clock.
    pub clock_offset: i64,
    /// When set, the clock stands still at this time (unix seconds) until unfrozen.
    pub frozen_at: Option<i64>,
    /// Vaults by lower-case name.
    pub vaults: BTreeMap<String, Vault>,
    /// AI services accounts, in seeding order.
    pub accounts: Vec<Account>,
    /// User-assigned identities (the system-assigned one lives in [`Shared`]).
    pub user_identities: Vec<Identity>,
    pub faults: Faults,
    pub calls: Vec<Call>,
    /// Long-running operations by id, ended ones included.
    pub operations: BTreeMap<String, Operation>,
    /// Ids of the operations not yet ended.
    pub running: Vec<String>,
    /// Every regeneration of a key that a vault's latest version held when it took effect.
    pub active_regenerations: Vec<ActiveRegeneration>,
    /// Items per page of Resource Manager lists; `None` is [`DEFAULT_ARM_PAGE_SIZE`].
    pub arm_page_size: Option<usize>,
    /// Seeded custom role definitions (built-in ones live in
    /// [`crate::providers::authorization::builtin`]).
    pub role_definitions: Vec<RoleDefinition>,
    pub role_assignments: Vec<RoleAssignment>,
    /// Event Grid system topics, in seeding order.
    pub system_topics: Vec<SystemTopic>,
    /// Key Vault and Resource Manager throttling (off unless configured) and its buckets.
    pub throttling: Throttling,
}

/// Items per page of a Resource Manager list unless the seed or control API says otherwise.
pub const DEFAULT_ARM_PAGE_SIZE: usize = 100;

/// A regeneration that replaced a key consumers were told to use: the slot's key just before
/// it equalled the value of the latest version of a (not deleted) secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRegeneration {
    /// The emulator's clock when it took effect (unix seconds).
    pub at: i64,
    pub vault: String,
    pub secret: String,
    /// The version whose value was the regenerated key.
    pub version: String,
    /// The account's ARM id and name.
    pub account_id: String,
    pub account: String,
    /// `key1` or `key2`.
    pub slot: String,
    /// Object id of whoever asked for the regeneration.
    pub caller: String,
    /// The long-running operation it ended, when it was one.
    pub operation_id: Option<String>,
}

impl World {
    /// The emulator's clock, in unix seconds.
    pub fn now(&self) -> i64 {
        self.frozen_at.unwrap_or_else(|| wall_now() + self.clock_offset)
    }

    /// Sets the clock to `now`, frozen or ticking as it was. A move forward refills the
    /// throttling buckets by as much.
    pub fn set_now(&mut self, now: i64) {
        self.throttling.clock.advance((now - self.now()) as f64);
        match self.frozen_at {
            Some(_) => self.frozen_at = Some(now),
            None => self.clock_offset = now - wall_now(),
        }
    }

    /// Moves the clock by `seconds` (negative moves it back).
    pub fn advance(&mut self, seconds: i64) {
        let now = self.now();
        self.set_now(now + seconds);
    }

    /// Stops the clock at its current time, or lets it tick again from there.
    pub fn freeze(&mut self, frozen: bool) {
        self.throttling.clock.freeze(frozen);
        let now = self.now();
        self.frozen_at = frozen.then_some(now);
        self.clock_offset = now - wall_now();
    }

    /// Appends a call to the log.
    pub fn record(
        &mut self,
        start: &CallStart,
        status: u16,
        caller: Option<String>,
        key_slot: Option<String>,
        faulted: bool,
        lease: Option<LeaseCall>,
    ) {
        let seq = self.calls.len() as u64 + 1;
        let at = self.now();
        self.calls.push(Call {
            seq,
            at,
            service: start.service,
            operation: start.operation.clone(),
            target: start.target.clone(),
            method: start.method.clone(),
            path: start.path.clone(),
            api_version: start.api_version.clone(),
            status,
            caller,
            key_slot,
            faulted,
            lease,
        });
    }

    /// Starts tracking a long-running operation.
    pub fn start_operation(&mut self, operation: Operation) {
        self.running.push(operation.id.clone());
        self.operations.insert(operation.id.clone(), operation);
    }

    /// Ends every running operation whose end has come on the clock: a successful one takes
    /// effect (at its end time), a failed or canceled one changes nothing.
    pub fn settle(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let now = self.now();
        let mut still_running = Vec::new();
        for id in std::mem::take(&mut self.running) {
            let Some(operation) = self.operations.get_mut(&id) else {
                continue;
            };
            // An outcome of `InProgress` is an operation that never ends.
            if operation.end_time > now || operation.outcome == OperationStatus::InProgress {
                still_running.push(id);
                continue;
            }
            operation.status = operation.outcome;
            let operation = operation.clone();
            if operation.outcome == OperationStatus::Succeeded {
                match operation.action {
                    OperationAction::RegenerateKey { slot } => {
                        let _ = self.regenerate_key(
                            &operation.resource_id,
                            slot,
                            operation.end_time,
                            &operation.caller,
                            Some(&operation.id),
                        );
                    }
                }
            }
        }
        self.running = still_running;
    }

    /// Regenerates slot `slot` (0 = key1) of the account with ARM id `account_id` as of `at`,
    /// noting an [`ActiveRegeneration`] when a vault's latest version held the replaced key.
    /// `false` when there is no such account.
    pub fn regenerate_key(
        &mut self,
        account_id: &str,
        slot: usize,
        at: i64,
        caller: &str,
        operation_id: Option<&str>,
    ) -> bool {
        let Some(account) = self.account_by_id(account_id) else {
            return false;
        };
        let before = account.key(slot).value.clone();
        let (id, name) = (account.id(), account.name.clone());
        account.regenerate(slot, at);
        let held: Vec<_> = self
            .vaults
            .values()
            .flat_map(|vault| {
                vault
                    .secrets
                    .values()
                    .filter(|s| s.deleted.is_none())
                    .filter_map(move |s| s.latest().map(|v| (vault, s, v)))
            })
            .filter(|(_, _, v)| v.value == before)
            .map(|(vault, secret, version)| ActiveRegeneration {
                at,
                vault: vault.name.clone(),
                secret: secret.name.clone(),
                version: version.version.clone(),
                account_id: id.clone(),
                account: name.clone(),
                slot: if slot == 0 { "key1" } else { "key2" }.to_string(),
                caller: caller.to_string(),
                operation_id: operation_id.map(str::to_string),
            })
            .collect();
        self.active_regenerations.extend(held);
        true
    }

    /// Items per page of Resource Manager lists.
    pub fn arm_page_size(&self) -> usize {
        self.arm_page_size.unwrap_or(DEFAULT_ARM_PAGE_SIZE).max(1)
    }

    /// Finds an account by its ARM id (case-insensitive).
    pub fn account_by_id(&mut self, id: &str) -> Option<&mut Account> {
        self.accounts.iter_mut().find(|a| a.id().eq_ignore_ascii_case(id))
    }

    /// Finds an account by name (case-insensitive).
    pub fn account_by_name(&mut self, name: &str) -> Option<&mut Account> {
        self.accounts
            .iter_mut()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Finds an account by its custom subdomain (case-insensitive).
    pub fn account_by_subdomain(&mut self, subdomain: &str) -> Option<&mut Account> {
        self.accounts.iter_mut().find(|a| {
            a.custom_subdomain
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(subdomain))
        })
    }
}

/// State shared by every connection: the world plus what is fixed at start.
#[derive(Debug)]
pub struct Shared {
    world: Mutex<World>,
    pub tokens: TokenIssuer,
    /// The secret the managed-identity endpoint expects in `X-IDENTITY-HEADER`.
    pub identity_header: String,
    /// The identity used when a token request names none.
    pub system_identity: Identity,
    /// The Azurite that `*.blob.core.windows.net` calls are forwarded to, once one is set.
    storage: Mutex<Option<StorageUpstream>>,
}

/// Handle to the shared state.
pub type Ctx = Arc<Shared>;

impl Shared {
    pub fn new(tokens: TokenIssuer, identity_header: String, system_identity: Identity) -> Self {
        Self {
            world: Mutex::new(World::default()),
            tokens,
            identity_header,
            system_identity,
            storage: Mutex::new(None),
        }
    }

    /// The storage upstream, if one was set.
    pub fn storage_upstream(&self) -> Option<StorageUpstream> {
        self.storage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sets (or, with `None`, removes) the storage upstream.
    pub fn set_storage_upstream(&self, upstream: Option<StorageUpstream>) {
        *self
            .storage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = upstream;
    }

    /// Locks the world. A panic in another handler cannot leave it half-written in a way that
    /// matters to an emulator, so a poisoned lock is taken over.
    /// Operations whose end has come are settled first.
    pub fn world(&self) -> MutexGuard<'_, World> {
        let mut world = self.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        world.settle();
        world
    }

    /// Every identity tokens can be issued for: the system-assigned one first.
    pub fn identities(&self) -> Vec<Identity> {
        let mut all = vec![self.system_identity.clone()];
        all.extend(self.world().user_identities.iter().cloned());
        all
    }
}

/// `n` random bytes from the system's secure generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    // SystemRandom only fails when the OS has no entropy source at all.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes
}

/// A random lower-case hex string of `len` characters (Key Vault version ids are 32).
pub fn random_hex(len: usize) -> String {
    random_bytes(len.div_ceil(2))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(len)
        .collect()
}

/// A random alphanumeric string of `len` characters, the alphabet of AI services keys.
pub fn random_alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes(len)
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A random GUID in the usual 8-4-4-4-12 form.
pub fn random_guid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_stands_still_and_moves_only_when_told() {
        let mut world = World::default();
        world.set_now(1_000);
        world.freeze(true);
        assert_eq!(world.now(), 1_000);
        world.advance(90);
        assert_eq!(world.now(), 1_090);
        world.set_now(5);
        assert_eq!(world.now(), 5);
        world.freeze(false);
        assert!((5..=6).contains(&world.now()));
    }
}
