//! The registry of emulated resource types: one variant and one module per type, mirroring
//! keyflip's own `providers/`. A module owns the resource's model, its Resource Manager
//! operations and its data plane.
//!
//! [`ArmResourceType`] lists the types with per-resource operations (GET, listKeys,
//! regenerateKey). [`ArmRead`] lists the read-only routes around them: collection lists,
//! `Microsoft.KeyVault/vaults`, `Microsoft.EventGrid/systemTopics` and their event
//! subscriptions, `Microsoft.Authorization` at a scope, and `/subscriptions`.

pub mod authorization;
pub mod cognitive_services;
pub mod event_grid;
pub mod key_vault;
pub mod subscriptions;

use axum::http::Method;
use axum::response::Response;
use serde_json::Value;

use crate::arm::{ArmCall, ResourcePath};
use crate::error::AzureError;
use crate::request::{Query, segments};
use crate::world::Ctx;

/// A subscription, or one of its resource groups: where a collection is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListScope {
    pub subscription_id: String,
    pub resource_group: Option<String>,
}

impl ListScope {
    /// Whether a resource in `subscription_id`/`resource_group` is in this scope.
    pub fn contains(&self, subscription_id: &str, resource_group: &str) -> bool {
        self.subscription_id.eq_ignore_ascii_case(subscription_id)
            && self
                .resource_group
                .as_deref()
                .is_none_or(|rg| rg.eq_ignore_ascii_case(resource_group))
    }

    fn path(&self) -> String {
        match &self.resource_group {
            Some(rg) => format!("/subscriptions/{}/resourceGroups/{rg}", self.subscription_id),
            None => format!("/subscriptions/{}", self.subscription_id),
        }
    }
}

/// A read-only Resource Manager route, identified from its path (matched case-insensitively,
/// as ARM does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArmRead {
    /// `GET …/providers/Microsoft.CognitiveServices/accounts` (`Accounts_List`,
    /// `Accounts_ListByResourceGroup`).
    Accounts(ListScope),
    /// `GET …/providers/Microsoft.KeyVault/vaults` (`Vaults_ListBySubscription`,
    /// `Vaults_ListByResourceGroup`).
    Vaults(ListScope),
    /// `GET …/providers/Microsoft.KeyVault/vaults/{name}` (`Vaults_Get`).
    Vault(ResourcePath),
    /// `GET /subscriptions` (`Subscriptions_List`).
    Subscriptions,
    /// `GET …/providers/Microsoft.EventGrid/systemTopics` (`SystemTopics_ListBySubscription`,
    /// `SystemTopics_ListByResourceGroup`).
    SystemTopics(ListScope),
    /// `GET …/systemTopics/{name}` (`SystemTopics_Get`).
    SystemTopic(ResourcePath),
    /// `GET …/systemTopics/{name}/eventSubscriptions[/{name}]`
    /// (`SystemTopicEventSubscriptions_ListBySystemTopic`, `SystemTopicEventSubscriptions_Get`).
    EventSubscriptions(ResourcePath, Option<String>),
    /// `GET {scope}/providers/Microsoft.Authorization/…`.
    Authorization(authorization::AuthorizationRead),
}

impl ArmRead {
    /// The route at `path`, if it is one of these.
    pub fn parse(path: &str) -> Option<Self> {
        let parts = segments(path);
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let parts = match parts.as_slice() {
            [rest @ .., ""] => rest,
            all => all,
        };
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        if let Some(read) = authorization::AuthorizationRead::parse(parts) {
            return Some(Self::Authorization(read));
        }
        let is = |s: &str, word: &str| s.eq_ignore_ascii_case(word);
        let (scope, rest) = match parts {
            [s] if is(s, "subscriptions") => return Some(Self::Subscriptions),
            [s, sub, g, rg, p, rest @ ..]
                if is(s, "subscriptions") && is(g, "resourceGroups") && is(p, "providers") =>
            {
                (
                    ListScope {
                        subscription_id: sub.to_string(),
                        resource_group: Some(rg.to_string()),
                    },
                    rest,
                )
            }
            [s, sub, p, rest @ ..] if is(s, "subscriptions") && is(p, "providers") => (
                ListScope {
                    subscription_id: sub.to_string(),
                    resource_group: None,
                },
                rest,
            ),
            _ => return None,
        };
        let resource = |namespace: &str, resource_type: &str, name: &str| {
            Some(ResourcePath {
                subscription_id: scope.subscription_id.clone(),
                resource_group: scope.resource_group.clone()?,
                namespace: namespace.to_string(),
                resource_type: resource_type.to_string(),
                name: name.to_string(),
                action: None,
            })
        };
        match rest {
            [ns, t] if is(ns, "Microsoft.CognitiveServices") && is(t, "accounts") => {
                Some(Self::Accounts(scope))
            }
            [ns, t] if is(ns, "Microsoft.KeyVault") && is(t, "vaults") => Some(Self::Vaults(scope)),
            [ns, t] if is(ns, "Microsoft.EventGrid") && is(t, "systemTopics") => {
                Some(Self::SystemTopics(scope))
            }
            [ns, t, name] if is(ns, "Microsoft.KeyVault") && is(t, "vaults") => {
                resource(ns, t, name).map(Self::Vault)
            }
            [ns, t, name] if is(ns, "Microsoft.EventGrid") && is(t, "systemTopics") => {
                resource(ns, t, name).map(Self::SystemTopic)
            }
            [ns, t, name, e]
                if is(ns, "Microsoft.EventGrid") && is(t, "systemTopics") && is(e, "eventSubscriptions") =>
            {
                resource(ns, t, name).map(|r| Self::EventSubscriptions(r, None))
            }
            [ns, t, name, e, sub]
                if is(ns, "Microsoft.EventGrid") && is(t, "systemTopics") && is(e, "eventSubscriptions") =>
            {
                resource(ns, t, name).map(|r| Self::EventSubscriptions(r, Some(sub.to_string())))
            }
            _ => None,
        }
    }

    /// The REST operation id, for the call log, faults and latency.
    pub fn operation(&self) -> &'static str {
        let by_group = |scope: &ListScope, sub: &'static str, rg: &'static str| {
            if scope.resource_group.is_some() { rg } else { sub }
        };
        match self {
            Self::Accounts(s) => by_group(s, "Accounts_List", "Accounts_ListByResourceGroup"),
            Self::Vaults(s) => by_group(s, "Vaults_ListBySubscription", "Vaults_ListByResourceGroup"),
            Self::Vault(_) => "Vaults_Get",
            Self::Subscriptions => "Subscriptions_List",
            Self::SystemTopics(s) => by_group(
                s,
                "SystemTopics_ListBySubscription",
                "SystemTopics_ListByResourceGroup",
            ),
            Self::SystemTopic(_) => "SystemTopics_Get",
            Self::EventSubscriptions(_, None) => "SystemTopicEventSubscriptions_ListBySystemTopic",
            Self::EventSubscriptions(_, Some(_)) => "SystemTopicEventSubscriptions_Get",
            Self::Authorization(read) => read.operation(),
        }
    }

    pub fn api_versions(&self) -> &'static [&'static str] {
        match self {
            Self::Accounts(_) => cognitive_services::ARM_API_VERSIONS,
            Self::Vaults(_) | Self::Vault(_) => key_vault::ARM_API_VERSIONS,
            Self::Subscriptions => subscriptions::API_VERSIONS,
            Self::SystemTopics(_) | Self::SystemTopic(_) | Self::EventSubscriptions(..) => {
                event_grid::API_VERSIONS
            }
            Self::Authorization(_) => authorization::API_VERSIONS,
        }
    }

    /// The type named in an api-version error.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Accounts(_) => "accounts",
            Self::Vaults(_) | Self::Vault(_) => "vaults",
            Self::Subscriptions => "subscriptions",
            Self::SystemTopics(_) | Self::SystemTopic(_) => "systemTopics",
            Self::EventSubscriptions(..) => "systemTopics/eventSubscriptions",
            Self::Authorization(read) => read.type_name(),
        }
    }

    /// The error code of an unknown api-version: Resource Manager's own `/subscriptions`
    /// answers `InvalidApiVersionParameter`, resource providers `NoRegisteredProviderFound`.
    pub fn invalid_version_code(&self) -> &'static str {
        match self {
            Self::Subscriptions => "InvalidApiVersionParameter",
            _ => "NoRegisteredProviderFound",
        }
    }

    /// The call's target in the log: the resource id, or the scope a list is taken at.
    pub fn target(&self) -> String {
        match self {
            Self::Accounts(s) | Self::Vaults(s) | Self::SystemTopics(s) => s.path(),
            Self::Vault(r) | Self::SystemTopic(r) => r.resource_id(),
            Self::EventSubscriptions(r, None) => r.resource_id(),
            Self::EventSubscriptions(r, Some(name)) => {
                format!("{}/eventSubscriptions/{name}", r.resource_id())
            }
            Self::Subscriptions => "/subscriptions".to_string(),
            Self::Authorization(read) => read.scope().to_string(),
        }
    }

    /// A second name a fault rule's `target` may use: the resource's name.
    pub fn name(&self) -> String {
        match self {
            Self::Vault(r) | Self::SystemTopic(r) | Self::EventSubscriptions(r, None) => r.name.clone(),
            Self::EventSubscriptions(_, Some(name)) => name.clone(),
            _ => String::new(),
        }
    }

    /// Answers the route: the JSON body of a 200, or an ARM error.
    pub fn execute(&self, ctx: &Ctx, call: &ArmCall, path: &str, query: &Query) -> Result<Value, AzureError> {
        let world = ctx.world();
        let page = |items: Vec<Value>| crate::arm::page(items, path, query, world.arm_page_size());
        let tenant = ctx.tokens.tenant_id();
        match self {
            Self::Accounts(scope) => page(cognitive_services::list(&world, scope, &call.caller)),
            Self::Vaults(scope) => page(key_vault::list(&world, scope, tenant)),
            Self::Vault(resource) => key_vault::get(&world, resource, tenant),
            Self::Subscriptions => page(subscriptions::list(&world, tenant)),
            Self::SystemTopics(scope) => page(event_grid::list_topics(&world, scope, tenant)),
            Self::SystemTopic(resource) => event_grid::get_topic(&world, resource, tenant),
            Self::EventSubscriptions(topic, None) => page(event_grid::list_subscriptions(&world, topic)?),
            Self::EventSubscriptions(topic, Some(name)) => event_grid::get_subscription(&world, topic, name),
            Self::Authorization(read) => read.execute(&world, call, query, page),
        }
    }
}

/// A resource type the emulated Resource Manager serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmResourceType {
    /// `Microsoft.CognitiveServices/accounts`.
    CognitiveServicesAccount,
}

impl ArmResourceType {
    /// The type at `{namespace}/{type}` (case-insensitive), if emulated.
    pub fn resolve(namespace: &str, resource_type: &str) -> Option<Self> {
        match (
            namespace.to_ascii_lowercase().as_str(),
            resource_type.to_ascii_lowercase().as_str(),
        ) {
            ("microsoft.cognitiveservices", "accounts") => Some(Self::CognitiveServicesAccount),
            _ => None,
        }
    }

    /// The operation id for a method and action on this type.
    pub fn operation(self, method: &Method, action: Option<&str>) -> Option<&'static str> {
        match self {
            Self::CognitiveServicesAccount => cognitive_services::arm_operation(method, action),
        }
    }

    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Self::CognitiveServicesAccount => cognitive_services::ARM_API_VERSIONS,
        }
    }

    /// Checks that the caller may run the operation on the resource (RBAC).
    pub fn authorize(
        self,
        ctx: &Ctx,
        resource: &ResourcePath,
        caller: &str,
        operation: &str,
    ) -> Result<(), AzureError> {
        match self {
            Self::CognitiveServicesAccount => cognitive_services::authorize(ctx, resource, caller, operation),
        }
    }

    /// Runs the operation.
    pub fn execute(
        self,
        ctx: &Ctx,
        resource: &ResourcePath,
        operation: &str,
        call: &ArmCall,
        body: &[u8],
    ) -> Response {
        match self {
            Self::CognitiveServicesAccount => {
                cognitive_services::execute(ctx, resource, operation, call, body)
            }
        }
    }

    /// What the `Location` URL of one of its long-running operations answers.
    pub fn operation_result(
        self,
        world: &crate::world::World,
        operation: &crate::operations::Operation,
    ) -> Response {
        match self {
            Self::CognitiveServicesAccount => cognitive_services::operation_result(world, operation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_recognised_case_insensitively_and_other_paths_are_not() {
        let op = |p: &str| ArmRead::parse(p).map(|r| r.operation());
        assert_eq!(op("/subscriptions"), Some("Subscriptions_List"));
        assert_eq!(op("/subscriptions/"), Some("Subscriptions_List"));
        assert_eq!(
            op("/subscriptions/s/providers/Microsoft.CognitiveServices/accounts"),
            Some("Accounts_List")
        );
        assert_eq!(
            op("/SUBSCRIPTIONS/s/resourcegroups/rg/providers/microsoft.cognitiveservices/Accounts"),
            Some("Accounts_ListByResourceGroup")
        );
        assert_eq!(
            op("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"),
            Some("Vaults_Get")
        );
        assert_eq!(
            op("/subscriptions/s/providers/Microsoft.KeyVault/vaults/kv"),
            None,
            "a vault lives in a group"
        );
        assert_eq!(
            op(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/systemTopics/t/eventSubscriptions/e"
            ),
            Some("SystemTopicEventSubscriptions_Get")
        );
        assert_eq!(
            op(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/providers/Microsoft.Authorization/permissions"
            ),
            Some("Permissions_ListForResource")
        );
        // Per-resource operations stay with ArmResourceType.
        assert_eq!(
            op("/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a"),
            None
        );
        assert_eq!(
            op("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites"),
            None
        );
        assert_eq!(op("/subscriptions/s//providers/Microsoft.KeyVault/vaults"), None);
    }
}
