//! `Microsoft.Authorization` at a scope (api-version 2022-04-01), read-only: role
//! assignments, role definitions and the caller's effective permissions.
//!
//! Routes (`{scope}` a subscription, resource group or resource, see [`scope`]):
//! - `GET {scope}/providers/Microsoft.Authorization/roleAssignments[?$filter=…]`
//!   (`RoleAssignments_ListForSubscription` / `_ListForResourceGroup` / `_ListForResource`),
//!   which assignments follow the documented `$filter` rule ([`scope::AssignmentFilter`]);
//!   `…/roleAssignments/{guid}` (`RoleAssignments_Get`);
//! - `GET {scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}` (`RoleDefinitions_Get`)
//!   and `…/roleDefinitions[?$filter=roleName eq '…']` (`RoleDefinitions_List`): the built-in roles
//!   of [`builtin`] plus the seeded custom roles whose assignable scopes are related to the scope;
//! - `GET {scope}/providers/Microsoft.Authorization/permissions` (`Permissions_ListForResourceGroup`,
//!   `Permissions_ListForResource`; at a subscription `Permissions_ListForSubscription`, a name
//!   of the emulator's: the REST reference documents only the group and resource forms): one
//!   `{actions,notActions,dataActions,notDataActions}` entry per permission block of each role
//!   assigned to the CALLER (the token's `oid`) at the scope or an ancestor of it.
//!
//! Shapes are those of the 2022-04-01 examples of azure-rest-api-specs
//! (`RoleAssignments_ListForScope.json`, `GetRoleDefinitionById.json`) and of `az role …`
//! output quoted in the Azure docs: a `roleDefinitionId` is
//! `/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}` (the form real
//! assignments report; the spec example's `/providers/…` form is the tenant-level one).
//!
//! Simplifications: any valid Resource Manager token may read all of this (Azure needs
//! `Microsoft.Authorization/*/read`, which every built-in role but the data-only ones has);
//! groups, deny assignments, conditions and management-group or root scopes are not modelled;
//! assignments are reported, not enforced (the emulated providers still authorize with their
//! `allowed_principals`).

pub mod builtin;
pub mod scope;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::arm::{ArmCall, error};
use crate::error::AzureError;
use crate::request::Query;
use crate::seed::SeedError;
use crate::world::{World, random_guid};
use scope::{AssignmentFilter, DefinitionFilter, Scope, ScopeKind, at_or_above, is_guid};

/// Api-versions served.
pub const API_VERSIONS: &[&str] = &["2022-04-01"];

/// A custom role definition as seeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDefinitionSeed {
    /// The role's GUID (its `name`).
    pub id: String,
    pub role_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
    /// Scopes (subscription, group or resource paths) the role may be assigned at or under.
    pub assignable_scopes: Vec<String>,
}

/// A seeded custom role.
pub type RoleDefinition = RoleDefinitionSeed;

/// A role assignment as seeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleAssignmentSeed {
    /// The assignment's GUID (random when absent).
    #[serde(default)]
    pub id: Option<String>,
    /// The object id of the user, group or service principal.
    pub principal_id: String,
    /// The role's GUID, or its full id (`…/providers/Microsoft.Authorization/roleDefinitions/{guid}`).
    pub role_definition_id: String,
    pub scope: String,
    /// `ServicePrincipal` (the default), `User`, `Group`, …
    #[serde(default = "service_principal")]
    pub principal_type: String,
}

fn service_principal() -> String {
    "ServicePrincipal".to_string()
}

/// An emulated role assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    pub id: String,
    pub principal_id: String,
    /// The role's GUID, lower-case.
    pub role_definition_id: String,
    /// The scope in canonical spelling.
    pub scope: String,
    pub principal_type: String,
    /// When it was seeded, on the emulator's clock.
    pub created_on: i64,
}

/// A role, built-in or custom, in one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Role {
    id: String,
    name: String,
    description: String,
    builtin: bool,
    assignable_scopes: Vec<String>,
    permissions: Value,
}

impl Role {
    fn from_builtin(role: &builtin::BuiltinRole) -> Self {
        Self {
            id: role.id.to_string(),
            name: role.name.to_string(),
            description: role.description.to_string(),
            builtin: true,
            assignable_scopes: vec!["/".to_string()],
            permissions: permission(
                role.actions,
                role.not_actions,
                role.data_actions,
                role.not_data_actions,
            ),
        }
    }

    fn from_custom(role: &RoleDefinition) -> Self {
        Self {
            id: role.id.to_ascii_lowercase(),
            name: role.role_name.clone(),
            description: role.description.clone().unwrap_or_default(),
            builtin: false,
            assignable_scopes: role.assignable_scopes.clone(),
            permissions: permission(
                &role.actions,
                &role.not_actions,
                &role.data_actions,
                &role.not_data_actions,
            ),
        }
    }

    fn role_type(&self) -> &'static str {
        if self.builtin { "BuiltInRole" } else { "CustomRole" }
    }

    /// Whether the role may be seen at `scope`: built-in roles everywhere, a custom role where
    /// one of its assignable scopes is at, above or below the scope.
    fn visible_at(&self, scope: &str) -> bool {
        self.builtin
            || self
                .assignable_scopes
                .iter()
                .any(|a| at_or_above(a, scope) || at_or_above(scope, a))
    }

    /// The `RoleDefinition` body, its id under `subscription_id`.
    fn resource(&self, subscription_id: &str) -> Value {
        json!({
            "properties": {
                "roleName": self.name,
                "type": self.role_type(),
                "description": self.description,
                "assignableScopes": self.assignable_scopes,
                "permissions": [self.permissions],
                "createdBy": null,
                "updatedBy": null,
            },
            "id": definition_id(subscription_id, &self.id),
            "type": "Microsoft.Authorization/roleDefinitions",
            "name": self.id,
        })
    }
}

fn permission<S: AsRef<str>>(
    actions: &[S],
    not_actions: &[S],
    data_actions: &[S],
    not_data_actions: &[S],
) -> Value {
    let list = |items: &[S]| items.iter().map(|s| s.as_ref().to_string()).collect::<Vec<_>>();
    json!({
        "actions": list(actions),
        "notActions": list(not_actions),
        "dataActions": list(data_actions),
        "notDataActions": list(not_data_actions),
    })
}

fn definition_id(subscription_id: &str, guid: &str) -> String {
    format!("/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

/// The role with GUID `id`, built-in or seeded.
fn find_role(world: &World, id: &str) -> Option<Role> {
    builtin::find(id).map(Role::from_builtin).or_else(|| {
        world
            .role_definitions
            .iter()
            .find(|d| d.id.eq_ignore_ascii_case(id))
            .map(Role::from_custom)
    })
}

fn all_roles(world: &World) -> Vec<Role> {
    builtin::BUILTIN_ROLES
        .iter()
        .map(Role::from_builtin)
        .chain(world.role_definitions.iter().map(Role::from_custom))
        .collect()
}

impl RoleAssignment {
    /// The `RoleAssignment` body.
    fn resource(&self) -> Value {
        let subscription = crate::providers::subscriptions::of_scope(&self.scope).unwrap_or_default();
        let created = crate::operations::rfc3339(self.created_on);
        json!({
            "properties": {
                "roleDefinitionId": definition_id(subscription, &self.role_definition_id),
                "principalId": self.principal_id,
                "principalType": self.principal_type,
                "scope": self.scope,
                "condition": null,
                "conditionVersion": null,
                "createdOn": created,
                "updatedOn": created,
                "createdBy": null,
                "updatedBy": null,
                "delegatedManagedIdentityResourceId": null,
                "description": null,
            },
            "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", self.scope, self.id),
            "type": "Microsoft.Authorization/roleAssignments",
            "name": self.id,
        })
    }
}

/// Adds a custom role: its id a GUID no other role has, its name unique ("Custom role display
/// names must be unique to your tenant"), its assignable scopes valid.
pub fn add_role_definition(world: &mut World, mut seed: RoleDefinitionSeed) -> Result<(), SeedError> {
    let id = seed.id.clone();
    let fail = |reason: String| SeedError::RoleDefinition {
        id: id.clone(),
        reason,
    };
    if !is_guid(&seed.id) {
        return Err(fail("the id must be a GUID (8-4-4-4-12 hex digits)".into()));
    }
    if find_role(world, &seed.id).is_some() {
        return Err(fail(
            "a role with this id already exists (built-in or seeded)".into(),
        ));
    }
    if all_roles(world)
        .iter()
        .any(|r| r.name.eq_ignore_ascii_case(&seed.role_name))
    {
        return Err(fail(format!("a role named '{}' already exists", seed.role_name)));
    }
    if seed.assignable_scopes.is_empty() {
        return Err(fail("give at least one assignable scope".into()));
    }
    let mut scopes = Vec::new();
    for raw in &seed.assignable_scopes {
        let scope = Scope::parse(raw).ok_or_else(|| {
            fail(format!(
                "assignable scope '{raw}' is not a subscription, resource group or resource path"
            ))
        })?;
        scopes.push(scope.path);
    }
    seed.assignable_scopes = scopes;
    world.role_definitions.push(seed);
    Ok(())
}

/// Adds a role assignment: a valid scope, a known role that may be assigned there, a GUID id
/// no other assignment has.
pub fn add_role_assignment(world: &mut World, seed: RoleAssignmentSeed) -> Result<(), SeedError> {
    let fail = |reason: String| SeedError::RoleAssignment {
        principal_id: seed.principal_id.clone(),
        scope: seed.scope.clone(),
        reason,
    };
    let scope = Scope::parse(&seed.scope)
        .ok_or_else(|| fail("the scope is not a subscription, resource group or resource path".into()))?;
    let guid = seed
        .role_definition_id
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let role = find_role(world, &guid).ok_or_else(|| {
        fail(format!(
            "role definition '{}' is neither a built-in role the emulator knows nor a seeded role_definitions[] item",
            seed.role_definition_id
        ))
    })?;
    if !role.builtin && !role.assignable_scopes.iter().any(|a| at_or_above(a, &scope.path)) {
        return Err(fail(format!(
            "role '{}' may be assigned only at or under {:?}",
            role.name, role.assignable_scopes
        )));
    }
    let id = match &seed.id {
        Some(id) if is_guid(id) => id.to_ascii_lowercase(),
        Some(id) => return Err(fail(format!("assignment id '{id}' is not a GUID"))),
        None => random_guid(),
    };
    if world.role_assignments.iter().any(|a| a.id == id) {
        return Err(fail(format!("an assignment with id '{id}' is already seeded")));
    }
    let created_on = world.now();
    world.role_assignments.push(RoleAssignment {
        id,
        principal_id: seed.principal_id.clone(),
        role_definition_id: role.id,
        scope: scope.path,
        principal_type: seed.principal_type.clone(),
        created_on,
    });
    Ok(())
}

/// A read of `{scope}/providers/Microsoft.Authorization/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationRead {
    RoleAssignments(Scope),
    RoleAssignment(Scope, String),
    RoleDefinitions(Scope),
    RoleDefinition(Scope, String),
    Permissions(Scope),
}

impl AuthorizationRead {
    /// The read at these path segments (no empty ones), if it is one: the last
    /// `providers/Microsoft.Authorization` splits the scope from the collection.
    pub fn parse(parts: &[&str]) -> Option<Self> {
        let at = (0..parts.len().saturating_sub(1)).rev().find(|&i| {
            parts[i].eq_ignore_ascii_case("providers")
                && parts[i + 1].eq_ignore_ascii_case("Microsoft.Authorization")
        })?;
        let scope = Scope::parse_segments(&parts[..at])?;
        let is = |s: &str, word: &str| s.eq_ignore_ascii_case(word);
        match &parts[at + 2..] {
            [c] if is(c, "roleAssignments") => Some(Self::RoleAssignments(scope)),
            [c, id] if is(c, "roleAssignments") => Some(Self::RoleAssignment(scope, id.to_string())),
            [c] if is(c, "roleDefinitions") => Some(Self::RoleDefinitions(scope)),
            [c, id] if is(c, "roleDefinitions") => Some(Self::RoleDefinition(scope, id.to_string())),
            [c] if is(c, "permissions") => Some(Self::Permissions(scope)),
            _ => None,
        }
    }

    pub fn scope(&self) -> &str {
        match self {
            Self::RoleAssignments(s)
            | Self::RoleAssignment(s, _)
            | Self::RoleDefinitions(s)
            | Self::RoleDefinition(s, _)
            | Self::Permissions(s) => &s.path,
        }
    }

    pub fn operation(&self) -> &'static str {
        match self {
            Self::RoleAssignments(s) => match s.kind {
                ScopeKind::Subscription => "RoleAssignments_ListForSubscription",
                ScopeKind::ResourceGroup => "RoleAssignments_ListForResourceGroup",
                ScopeKind::Resource => "RoleAssignments_ListForResource",
            },
            Self::RoleAssignment(..) => "RoleAssignments_Get",
            Self::RoleDefinitions(_) => "RoleDefinitions_List",
            Self::RoleDefinition(..) => "RoleDefinitions_Get",
            Self::Permissions(s) => match s.kind {
                ScopeKind::Subscription => "Permissions_ListForSubscription",
                ScopeKind::ResourceGroup => "Permissions_ListForResourceGroup",
                ScopeKind::Resource => "Permissions_ListForResource",
            },
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::RoleAssignments(_) | Self::RoleAssignment(..) => "roleAssignments",
            Self::RoleDefinitions(_) | Self::RoleDefinition(..) => "roleDefinitions",
            Self::Permissions(_) => "permissions",
        }
    }

    /// Answers the read; `page` pages a list.
    pub fn execute(
        &self,
        world: &World,
        call: &ArmCall,
        query: &Query,
        page: impl Fn(Vec<Value>) -> Result<Value, AzureError>,
    ) -> Result<Value, AzureError> {
        let unsupported = |message: String| {
            // Code as Authorization answers an unsupported filter; the message is the emulator's.
            error(
                StatusCode::BAD_REQUEST,
                "UnsupportedQuery",
                format!(
                    "{message}. Supported: atScope(), principalId eq '{{id}}', assignedTo('{{id}}'), and atScope() with either (roleAssignments); roleName eq '{{name}}', type eq '{{BuiltInRole|CustomRole}}' (roleDefinitions)."
                ),
            )
        };
        match self {
            Self::RoleAssignments(scope) => {
                let filter = AssignmentFilter::parse(query.get("$filter")).map_err(unsupported)?;
                page(
                    world
                        .role_assignments
                        .iter()
                        .filter(|a| filter.selects(&scope.path, &a.scope, &a.principal_id))
                        .map(RoleAssignment::resource)
                        .collect(),
                )
            }
            Self::RoleAssignment(scope, name) => world
                .role_assignments
                .iter()
                .find(|a| {
                    a.id.eq_ignore_ascii_case(name)
                        && at_or_above(&a.scope, &scope.path)
                        && at_or_above(&scope.path, &a.scope)
                })
                .map(RoleAssignment::resource)
                .ok_or_else(|| {
                    error(
                        StatusCode::NOT_FOUND,
                        "RoleAssignmentNotFound",
                        format!("The role assignment '{name}' is not found."),
                    )
                }),
            Self::RoleDefinitions(scope) => {
                let filter = DefinitionFilter::parse(query.get("$filter")).map_err(unsupported)?;
                page(
                    all_roles(world)
                        .iter()
                        .filter(|r| r.visible_at(&scope.path))
                        .filter(|r| {
                            filter
                                .role_name
                                .as_ref()
                                .is_none_or(|n| r.name.eq_ignore_ascii_case(n))
                        })
                        .filter(|r| {
                            filter
                                .role_type
                                .as_ref()
                                .is_none_or(|t| r.role_type().eq_ignore_ascii_case(t))
                        })
                        .map(|r| r.resource(&scope.subscription_id))
                        .collect(),
                )
            }
            Self::RoleDefinition(scope, id) => find_role(world, id)
                .filter(|r| r.visible_at(&scope.path))
                .map(|r| r.resource(&scope.subscription_id))
                .ok_or_else(|| {
                    error(
                        StatusCode::NOT_FOUND,
                        "RoleDefinitionDoesNotExist",
                        format!("The specified role definition with ID '{id}' does not exist."),
                    )
                }),
            Self::Permissions(scope) => page(permissions_of(world, &call.caller, scope)),
        }
    }
}

/// The caller's effective permissions at `scope`: one entry per permission block of the role
/// of every assignment of the caller at the scope or above it. An assignment below the scope
/// (on a child resource) grants nothing at the scope, so it is not counted.
pub fn permissions_of(world: &World, caller: &str, scope: &Scope) -> Vec<Value> {
    world
        .role_assignments
        .iter()
        .filter(|a| a.principal_id.eq_ignore_ascii_case(caller) && at_or_above(&a.scope, &scope.path))
        .filter_map(|a| find_role(world, &a.role_definition_id))
        .map(|r| r.permissions)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world_with(assignments: &[(&str, &str, &str)]) -> World {
        let mut world = World::default();
        for (principal, role, scope) in assignments {
            add_role_assignment(
                &mut world,
                RoleAssignmentSeed {
                    id: None,
                    principal_id: principal.to_string(),
                    role_definition_id: role.to_string(),
                    scope: scope.to_string(),
                    principal_type: service_principal(),
                },
            )
            .unwrap();
        }
        world
    }

    const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    const OFFICER: &str = "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/b86a8fe4-44ce-4948-aee5-eccb2c155cd7";

    #[test]
    fn permissions_count_assignments_at_and_above_the_scope_only() {
        let world = world_with(&[
            ("me", READER, "/subscriptions/s"),
            (
                "me",
                OFFICER,
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
            ),
            ("other", READER, "/subscriptions/s/resourceGroups/rg"),
        ]);
        let rg = Scope::parse("/subscriptions/s/resourceGroups/rg").unwrap();
        let at_rg = permissions_of(&world, "me", &rg);
        assert_eq!(
            at_rg,
            vec![json!({"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []})]
        );
        let kv = Scope::parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv")
            .unwrap();
        assert_eq!(permissions_of(&world, "ME", &kv).len(), 2);
    }

    #[test]
    fn seeded_roles_are_checked() {
        let mut world = World::default();
        let custom = |id: &str, name: &str, scopes: Vec<&str>| RoleDefinitionSeed {
            id: id.into(),
            role_name: name.into(),
            description: None,
            actions: vec!["Microsoft.CognitiveServices/accounts/read".into()],
            not_actions: vec![],
            data_actions: vec![],
            not_data_actions: vec![],
            assignable_scopes: scopes.into_iter().map(String::from).collect(),
        };
        let id = "11111111-2222-3333-4444-555555555555";
        add_role_definition(
            &mut world,
            custom(id, "rotator", vec!["/subscriptions/s/resourceGroups/rg"]),
        )
        .unwrap();
        assert!(
            add_role_definition(&mut world, custom("not-a-guid", "x", vec!["/subscriptions/s"])).is_err()
        );
        assert!(add_role_definition(&mut world, custom(READER, "x", vec!["/subscriptions/s"])).is_err());
        assert!(
            add_role_definition(
                &mut world,
                custom(
                    "21111111-2222-3333-4444-555555555555",
                    "Reader",
                    vec!["/subscriptions/s"]
                )
            )
            .is_err()
        );
        let assign = |scope: &str, role: &str| RoleAssignmentSeed {
            id: None,
            principal_id: "p".into(),
            role_definition_id: role.into(),
            scope: scope.into(),
            principal_type: service_principal(),
        };
        assert!(
            add_role_assignment(
                &mut world,
                assign(
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a",
                    id
                )
            )
            .is_ok()
        );
        assert!(add_role_assignment(&mut world, assign("/subscriptions/s", id)).is_err());
        assert!(
            add_role_assignment(
                &mut world,
                assign("/subscriptions/s", "31111111-2222-3333-4444-555555555555")
            )
            .is_err()
        );
    }

    #[test]
    fn reads_parse_at_every_scope_kind() {
        let parse = |p: &str| {
            let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
            AuthorizationRead::parse(&parts)
        };
        assert_eq!(
            parse("/subscriptions/s/providers/Microsoft.Authorization/roleAssignments")
                .map(|r| r.operation()),
            Some("RoleAssignments_ListForSubscription")
        );
        assert_eq!(
            parse("/subscriptions/s/resourcegroups/rg/providers/microsoft.authorization/permissions")
                .map(|r| r.operation()),
            Some("Permissions_ListForResourceGroup")
        );
        let res = parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/providers/Microsoft.Authorization/roleDefinitions/abc").unwrap();
        assert_eq!(res.operation(), "RoleDefinitions_Get");
        assert_eq!(
            res.scope(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
        );
        assert!(parse("/providers/Microsoft.Authorization/roleDefinitions/abc").is_none());
        assert!(parse("/subscriptions/s/providers/Microsoft.Authorization/denyAssignments").is_none());
    }
}
