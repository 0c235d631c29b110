//! Who may do what, as Azure RBAC and Key Vault access policies decide it: action patterns with
//! `*` wildcards, a role's `notActions` taken out of its own `actions`, and scopes that apply to
//! everything below them. `doctor` uses it on two sources: the permissions Resource Manager
//! reports for the person running it (`…/providers/Microsoft.Authorization/permissions`), and the
//! role assignments of the app's managed identity with their role definitions.
//!
//! It decides nothing about rotations; it only answers "would this principal be allowed".

use serde_json::Value;

/// One permission block of a role (or one entry of the permissions API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
}

impl Permission {
    /// A permission block as Resource Manager writes it (`actions`, `notActions`, …).
    pub fn from_json(block: &Value) -> Self {
        let list = |name: &str| -> Vec<String> {
            block
                .get(name)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            actions: list("actions"),
            not_actions: list("notActions"),
            data_actions: list("dataActions"),
            not_data_actions: list("notDataActions"),
        }
    }

    /// Whether this block grants the control-plane `action`.
    pub fn allows_action(&self, action: &str) -> bool {
        grants(&self.actions, &self.not_actions, action)
    }

    /// Whether this block grants the data-plane `action`.
    pub fn allows_data_action(&self, action: &str) -> bool {
        grants(&self.data_actions, &self.not_data_actions, action)
    }
}

/// What a principal holds at one scope: every permission block that applies there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective(pub Vec<Permission>);

impl Effective {
    /// The wanted control-plane actions no block grants.
    pub fn missing_actions<'a>(&self, wanted: &[&'a str]) -> Vec<&'a str> {
        wanted
            .iter()
            .copied()
            .filter(|a| !self.0.iter().any(|p| p.allows_action(a)))
            .collect()
    }

    /// The wanted data-plane actions no block grants.
    pub fn missing_data_actions<'a>(&self, wanted: &[&'a str]) -> Vec<&'a str> {
        wanted
            .iter()
            .copied()
            .filter(|a| !self.0.iter().any(|p| p.allows_data_action(a)))
            .collect()
    }
}

fn grants(allowed: &[String], excluded: &[String], action: &str) -> bool {
    allowed.iter().any(|p| matches_pattern(p, action)) && !excluded.iter().any(|p| matches_pattern(p, action))
}

/// Whether `action` matches an RBAC action pattern: case-insensitive, each `*` standing for any
/// run of characters (`/` included), as in `Microsoft.KeyVault/vaults/secrets/*` or `*/read`.
pub fn matches_pattern(pattern: &str, action: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let action = action.to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == action;
    };
    if parts.len() == 1 {
        return pattern == action;
    }
    let Some(mut rest) = action.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether `scope` is `target` or one of its ancestors (both ARM paths, compared by
/// case-insensitive segments: `/subscriptions/s` covers `/subscriptions/s/resourceGroups/g/…`;
/// a management group is taken to hold the target, since Resource Manager lists it only then).
pub fn scope_covers(scope: &str, target: &str) -> bool {
    let segments = |path: &str| -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let (scope, target) = (segments(scope), segments(target));
    // A management group holds subscriptions; Resource Manager lists an assignment there for a
    // scope only when the scope lies below it.
    let management_group = scope.len() >= 4
        && scope[0] == "providers"
        && scope[1] == "microsoft.management"
        && scope[2] == "managementgroups";
    management_group
        || scope.is_empty()
        || (scope.len() <= target.len() && scope.iter().zip(&target).all(|(a, b)| a == b))
}

/// Whether `raw` is a GUID (an object id), the only thing doctor puts in a `$filter`.
pub fn is_guid(raw: &str) -> bool {
    let groups: Vec<&str> = raw.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The secret permissions of one Key Vault access policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    pub object_id: String,
    pub secrets: Vec<String>,
}

impl AccessPolicy {
    /// The policies of a vault's `properties.accessPolicies`.
    pub fn from_vault(vault: &Value) -> Vec<Self> {
        let policies = vault
            .pointer("/properties/accessPolicies")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        policies
            .iter()
            .filter_map(|p| {
                let object_id = p.get("objectId")?.as_str()?.to_string();
                let secrets = p
                    .pointer("/permissions/secrets")
                    .and_then(Value::as_array)
                    .map(|s| {
                        s.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_ascii_lowercase)
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Self { object_id, secrets })
            })
            .collect()
    }
}

/// The secret permissions `principal` lacks among `wanted` (`get`, `list`, `set`) in `policies`
/// (`all` grants every one).
pub fn missing_secret_permissions<'a>(
    policies: &[AccessPolicy],
    principal: &str,
    wanted: &[&'a str],
) -> Vec<&'a str> {
    let held: Vec<&String> = policies
        .iter()
        .filter(|p| p.object_id.eq_ignore_ascii_case(principal))
        .flat_map(|p| &p.secrets)
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|w| {
            !held
                .iter()
                .any(|h| h.as_str() == "all" || h.eq_ignore_ascii_case(w))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_match_like_azure_rbac() {
        assert!(matches_pattern(
            "*",
            "Microsoft.CognitiveServices/accounts/listKeys/action"
        ));
        assert!(matches_pattern(
            "Microsoft.CognitiveServices/*",
            "microsoft.cognitiveservices/accounts/regenerateKey/action"
        ));
        assert!(matches_pattern(
            "*/read",
            "Microsoft.CognitiveServices/accounts/read"
        ));
        assert!(matches_pattern(
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/read"
        ));
        assert!(matches_pattern(
            "Microsoft.CognitiveServices/accounts/listkeys/action",
            "Microsoft.CognitiveServices/accounts/listKeys/action"
        ));
        assert!(!matches_pattern(
            "*/read",
            "Microsoft.CognitiveServices/accounts/listKeys/action"
        ));
        assert!(!matches_pattern(
            "Microsoft.CognitiveServices/accounts/read",
            "Microsoft.CognitiveServices/accounts/readx"
        ));
        assert!(!matches_pattern(
            "Microsoft.Storage/*",
            "Microsoft.CognitiveServices/accounts/read"
        ));
        assert!(!matches_pattern("a*b*c", "a-c"));
        assert!(matches_pattern("a*b*c", "a-b-c"));
    }

    #[test]
    fn not_actions_subtract_from_their_own_block_only() {
        let contributor = Permission {
            actions: vec!["*".into()],
            not_actions: vec!["Microsoft.Authorization/*/Write".into()],
            ..Default::default()
        };
        assert!(contributor.allows_action("Microsoft.CognitiveServices/accounts/regenerateKey/action"));
        assert!(!contributor.allows_action("Microsoft.Authorization/roleAssignments/write"));
        let owner = Permission {
            actions: vec!["*".into()],
            ..Default::default()
        };
        let both = Effective(vec![contributor, owner]);
        assert!(
            both.missing_actions(&["Microsoft.Authorization/roleAssignments/write"])
                .is_empty()
        );
    }

    #[test]
    fn data_actions_are_separate_from_actions() {
        let officer = Permission::from_json(&json!({
            "actions": ["Microsoft.KeyVault/vaults/*/read"],
            "dataActions": ["Microsoft.KeyVault/vaults/secrets/*"],
        }));
        assert!(officer.allows_data_action("Microsoft.KeyVault/vaults/secrets/setSecret/action"));
        assert!(!officer.allows_action("Microsoft.KeyVault/vaults/secrets/setSecret/action"));
        let reader = Effective(vec![Permission::from_json(&json!({"actions": ["*/read"]}))]);
        assert_eq!(
            reader.missing_data_actions(&["Microsoft.KeyVault/vaults/secrets/getSecret/action"]),
            ["Microsoft.KeyVault/vaults/secrets/getSecret/action"]
        );
    }

    #[test]
    fn a_scope_covers_itself_and_what_lies_below_it() {
        let account = "/subscriptions/S/resourceGroups/G/providers/Microsoft.CognitiveServices/accounts/a";
        assert!(scope_covers("/subscriptions/s", account));
        assert!(scope_covers("/subscriptions/s/resourcegroups/g", account));
        assert!(scope_covers(account, account));
        assert!(scope_covers("/", account));
        assert!(!scope_covers("/subscriptions/s/resourceGroups/g2", account));
        assert!(!scope_covers(&format!("{account}/child/x"), account));
        assert!(!scope_covers("/subscriptions/s2", account));
        assert!(scope_covers(
            "/providers/Microsoft.Management/managementGroups/root",
            account
        ));
    }

    #[test]
    fn access_policies_grant_their_listed_secret_permissions() {
        let vault = json!({"properties": {"accessPolicies": [
            {"objectId": "A", "permissions": {"secrets": ["Get", "List"]}},
            {"objectId": "b", "permissions": {"secrets": ["all"]}},
        ]}});
        let policies = AccessPolicy::from_vault(&vault);
        assert_eq!(
            missing_secret_permissions(&policies, "a", &["get", "list", "set"]),
            ["set"]
        );
        assert!(missing_secret_permissions(&policies, "B", &["get", "list", "set"]).is_empty());
        assert_eq!(missing_secret_permissions(&policies, "c", &["get"]), ["get"]);
    }
}
