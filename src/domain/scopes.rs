//! `KEYFLIP_ALLOWED_SCOPES` as the engine applies it: which ARM scopes the secrets of each
//! served vault may name (DESIGN.md §8, I9). An item `vault=scope` binds the scope to that
//! vault's secrets; a bare scope applies to every served vault, so several teams' vaults served
//! by one deployment each get their own scopes. Parsed by `crate::config`; checked by the
//! engine before any Resource Manager call.

use std::fmt;

use super::arm_id::{ArmResourceId, Scope};
use super::names::VaultName;

/// One item of `KEYFLIP_ALLOWED_SCOPES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedScope {
    /// `None` for a bare scope (every served vault).
    pub vault: Option<VaultName>,
    pub scope: Scope,
}

impl fmt::Display for AllowedScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vault {
            Some(vault) => write!(f, "{vault}={}", self.scope),
            None => write!(f, "{}", self.scope),
        }
    }
}

/// Every allowed scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedScopes(pub Vec<AllowedScope>);

impl AllowedScopes {
    /// Whether a secret of `vault` may name `resource`.
    pub fn permits(&self, vault: &VaultName, resource: &ArmResourceId) -> bool {
        self.for_vault(vault).any(|scope| scope.contains(resource))
    }

    /// The scopes that apply to `vault`'s secrets.
    pub fn for_vault<'a>(&'a self, vault: &'a VaultName) -> impl Iterator<Item = &'a Scope> + 'a {
        self.0
            .iter()
            .filter(move |item| item.vault.as_ref().is_none_or(|v| v == vault))
            .map(|item| &item.scope)
    }

    /// The scopes of `vault`, comma-separated, for messages (`none` when no scope applies).
    pub fn describe_for(&self, vault: &VaultName) -> String {
        let listed: Vec<String> = self.for_vault(vault).map(ToString::to_string).collect();
        match listed.is_empty() {
            true => "none".into(),
            false => listed.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-1111-2222-3333-444444444444";

    fn vault(name: &str) -> VaultName {
        VaultName::parse(name).unwrap()
    }

    fn account(group: &str) -> ArmResourceId {
        ArmResourceId::parse(&format!(
            "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/a"
        ))
        .unwrap()
    }

    fn group(name: &str) -> Scope {
        Scope::parse(&format!("/subscriptions/{SUB}/resourceGroups/{name}")).unwrap()
    }

    #[test]
    fn a_vault_bound_scope_applies_to_that_vault_only() {
        let scopes = AllowedScopes(vec![
            AllowedScope {
                vault: Some(vault("kv-team-a")),
                scope: group("rg-a"),
            },
            AllowedScope {
                vault: Some(vault("kv-team-b")),
                scope: group("rg-b"),
            },
        ]);
        assert!(scopes.permits(&vault("kv-team-a"), &account("rg-a")));
        assert!(!scopes.permits(&vault("kv-team-a"), &account("rg-b")));
        assert!(scopes.permits(&vault("kv-team-b"), &account("rg-b")));
        assert!(!scopes.permits(&vault("kv-other"), &account("rg-a")));
        assert_eq!(
            scopes.describe_for(&vault("kv-team-a")),
            format!("/subscriptions/{SUB}/resourceGroups/rg-a")
        );
        assert_eq!(scopes.describe_for(&vault("kv-other")), "none");
    }

    #[test]
    fn a_bare_scope_applies_to_every_vault() {
        let scopes = AllowedScopes(vec![AllowedScope {
            vault: None,
            scope: group("rg-shared"),
        }]);
        assert!(scopes.permits(&vault("kv-team-a"), &account("rg-shared")));
        assert!(scopes.permits(&vault("kv-team-b"), &account("RG-SHARED")));
        assert!(!scopes.permits(&vault("kv-team-b"), &account("rg-other")));
    }
}
