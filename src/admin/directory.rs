//! The Resource Manager reads `onboard` and `doctor` make, on the caller's credential, and
//! never a write: AI services accounts in a scope, a vault's control-plane resource (its access
//! model), the caller's own permissions at a scope, another principal's role assignments with
//! their role definitions, and a vault's Event Grid system topics with their subscriptions.
//!
//! Every path is built from segments ([`ArmClient::get_at`], [`ArmClient::list`]); ids that come
//! back from Resource Manager are split into segments the same way, so nothing it answers can
//! redirect a call (and `nextLink` is followed only on the configured endpoint).

use std::collections::BTreeMap;

use serde_json::Value;
use url::Url;

use super::access::{Effective, Permission, is_guid, scope_covers};
use crate::azure::arm::{ArmClient, ArmError};
use crate::domain::untrusted::echo;
use crate::domain::{ArmResourceId, Scope};
use crate::providers::cognitive_services;

/// Api-version of `Microsoft.Authorization` reads.
pub const AUTHORIZATION_API_VERSION: &str = "2022-04-01";
/// Api-version of the subscription list.
pub const SUBSCRIPTIONS_API_VERSION: &str = "2022-12-01";
/// Api-version of `Microsoft.KeyVault/vaults` (earlier ones retire in February 2027).
pub const KEY_VAULT_API_VERSION: &str = "2026-02-01";
/// Api-version of `Microsoft.EventGrid` system topics.
pub const EVENT_GRID_API_VERSION: &str = "2025-02-15";

/// An AI services account as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: ArmResourceId,
    pub kind: String,
    pub local_auth_disabled: bool,
    /// Its `properties` (endpoints, custom subdomain), which decide its data-plane check.
    pub properties: Value,
}

/// A vault's control-plane resource.
#[derive(Debug, Clone)]
pub struct VaultResource {
    pub id: ArmResourceId,
    /// `enableRbacAuthorization`: RBAC when true, access policies when false.
    pub rbac: bool,
    /// The whole answer (access policies included).
    pub body: Value,
}

impl VaultResource {
    /// Whether its `vaultUri` is `url` (the one keyflip calls: a `name=url` pair of
    /// `KEYFLIP_VAULTS` may name the vault anything).
    pub fn serves(&self, url: &Url) -> bool {
        self.body
            .pointer("/properties/vaultUri")
            .and_then(Value::as_str)
            .and_then(|u| Url::parse(u).ok())
            .is_some_and(|u| same_host(&u, url))
    }
}

/// Read-only access to Resource Manager for the operator commands.
#[derive(Debug, Clone)]
pub struct Directory {
    arm: ArmClient,
}

/// The path segments of an ARM id or scope string.
fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn scope_segments(scope: &Scope) -> Vec<String> {
    match scope {
        Scope::Subscription(s) => vec!["subscriptions".into(), s.clone()],
        Scope::ResourceGroup {
            subscription_id,
            resource_group,
        } => vec![
            "subscriptions".into(),
            subscription_id.clone(),
            "resourceGroups".into(),
            resource_group.clone(),
        ],
        Scope::Resource(id) => id.segments().into_iter().map(str::to_string).collect(),
    }
}

impl Directory {
    pub fn new(arm: ArmClient) -> Self {
        Self { arm }
    }

    /// Every AI services account within `scope` (a resource scope yields that account, if it
    /// is one).
    pub async fn accounts_in(&self, scope: &Scope) -> Result<Vec<Account>, ArmError> {
        let api = cognitive_services::API_VERSION;
        let items = match scope {
            Scope::Resource(id) => {
                if !id
                    .resource_type()
                    .eq_ignore_ascii_case(cognitive_services::RESOURCE_TYPE)
                {
                    return Ok(Vec::new());
                }
                match self.arm.get(id, api).await {
                    Ok(body) => vec![body],
                    Err(ArmError::NotFound { .. }) => Vec::new(),
                    Err(e) => return Err(e),
                }
            }
            _ => {
                let mut path = scope_segments(scope);
                path.extend(["providers", "Microsoft.CognitiveServices", "accounts"].map(String::from));
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                self.arm.list(&path, &[], api).await?
            }
        };
        Ok(items.iter().filter_map(account).collect())
    }

    /// Every vault in every subscription the caller can see (a subscription whose vaults it
    /// may not list, or a disabled one, holds none it can use and is passed over).
    pub async fn vaults(&self) -> Result<Vec<VaultResource>, ArmError> {
        let subscriptions = self
            .arm
            .list(&["subscriptions"], &[], SUBSCRIPTIONS_API_VERSION)
            .await?;
        let mut found = Vec::new();
        for subscription in &subscriptions {
            let Some(id) = subscription.get("subscriptionId").and_then(Value::as_str) else {
                continue;
            };
            let path = ["subscriptions", id, "providers", "Microsoft.KeyVault", "vaults"];
            let vaults = match self.arm.list(&path, &[], KEY_VAULT_API_VERSION).await {
                Ok(vaults) => vaults,
                Err(ArmError::Permanent { .. } | ArmError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            found.extend(vaults.into_iter().filter_map(vault));
        }
        Ok(found)
    }

    /// The caller's own effective permissions at `scope` (an ARM path).
    pub async fn my_permissions(&self, scope: &str) -> Result<Effective, ArmError> {
        let mut path = segments(scope);
        path.extend(["providers", "Microsoft.Authorization", "permissions"]);
        let blocks = self.arm.list(&path, &[], AUTHORIZATION_API_VERSION).await?;
        Ok(Effective(blocks.iter().map(Permission::from_json).collect()))
    }

    /// What `principal` holds at `target` (an ARM path) through its role assignments at or
    /// above it, with each role definition read once.
    pub async fn principal_permissions(
        &self,
        principal: &str,
        target: &str,
        definitions: &mut BTreeMap<String, Vec<Permission>>,
    ) -> Result<Effective, ArmError> {
        let assignments = self.assignments(principal, target).await?;
        let mut held = Vec::new();
        for assignment in &assignments {
            let properties = assignment.get("properties").unwrap_or(&Value::Null);
            let covers = properties
                .get("scope")
                .and_then(Value::as_str)
                .is_some_and(|s| scope_covers(s, target));
            let Some(definition) = properties.get("roleDefinitionId").and_then(Value::as_str) else {
                continue;
            };
            if !covers {
                continue;
            }
            let key = definition.to_ascii_lowercase();
            if !definitions.contains_key(&key) {
                let body = self
                    .arm
                    .get_at(&segments(definition), &[], AUTHORIZATION_API_VERSION)
                    .await?;
                let blocks = body
                    .pointer("/properties/permissions")
                    .and_then(Value::as_array)
                    .map(|b| b.iter().map(Permission::from_json).collect())
                    .unwrap_or_default();
                definitions.insert(key.clone(), blocks);
            }
            held.extend(definitions.get(&key).cloned().unwrap_or_default());
        }
        Ok(Effective(held))
    }

    /// The scopes of `principal`'s role assignments visible from `scope` (to find, e.g., the
    /// storage account it was given a role on).
    pub async fn assignment_scopes(&self, principal: &str, scope: &str) -> Result<Vec<String>, ArmError> {
        let assignments = self.assignments(principal, scope).await?;
        Ok(assignments
            .iter()
            .filter_map(|a| a.pointer("/properties/scope").and_then(Value::as_str))
            .map(str::to_string)
            .collect())
    }

    /// `principal`'s role assignments Resource Manager lists at `scope` (at, above and below
    /// it). `principal` goes into the `$filter`, so anything but a GUID is refused.
    async fn assignments(&self, principal: &str, scope: &str) -> Result<Vec<Value>, ArmError> {
        if !is_guid(principal) {
            return Err(ArmError::Permanent {
                status: None,
                code: "InvalidPrincipalId".into(),
                message: format!("'{}' is not an object id (a GUID)", echo(principal)),
            });
        }
        let mut path = segments(scope);
        path.extend(["providers", "Microsoft.Authorization", "roleAssignments"]);
        // assignedTo() also returns what the principal holds through its groups.
        let filter = format!("assignedTo('{principal}')");
        self.arm
            .list(&path, &[("$filter", filter.as_str())], AUTHORIZATION_API_VERSION)
            .await
    }

    /// The Event Grid system topics whose source is `vault`, each with its event subscriptions.
    pub async fn vault_topics(&self, vault: &ArmResourceId) -> Result<Vec<(Value, Vec<Value>)>, ArmError> {
        let path = [
            "subscriptions",
            vault.subscription_id(),
            "providers",
            "Microsoft.EventGrid",
            "systemTopics",
        ];
        let topics = self.arm.list(&path, &[], EVENT_GRID_API_VERSION).await?;
        let mut found = Vec::new();
        for topic in topics {
            let source = topic.pointer("/properties/source").and_then(Value::as_str);
            if !source.is_some_and(|s| s.eq_ignore_ascii_case(&vault.to_string())) {
                continue;
            }
            let Some(id) = topic.get("id").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            let mut path = segments(&id);
            path.push("eventSubscriptions");
            let subscriptions = self.arm.list(&path, &[], EVENT_GRID_API_VERSION).await?;
            found.push((topic, subscriptions));
        }
        Ok(found)
    }
}

/// Whether two vault URLs name the same vault (host and port, ignoring case and path).
fn same_host(a: &Url, b: &Url) -> bool {
    a.host_str()
        .zip(b.host_str())
        .is_some_and(|(x, y)| x.eq_ignore_ascii_case(y))
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A vault of a list, if its id parses.
fn vault(body: Value) -> Option<VaultResource> {
    let id = ArmResourceId::parse(body.get("id")?.as_str()?).ok()?;
    let rbac = body
        .pointer("/properties/enableRbacAuthorization")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Some(VaultResource { id, rbac, body })
}

/// An account of a list, if it is one keyflip can read.
fn account(body: &Value) -> Option<Account> {
    let id = ArmResourceId::parse(body.get("id")?.as_str()?).ok()?;
    Some(Account {
        id,
        kind: body
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        local_auth_disabled: body
            .pointer("/properties/disableLocalAuth")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        properties: body.get("properties").cloned().unwrap_or(Value::Null),
    })
}
