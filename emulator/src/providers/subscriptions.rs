//! Resource Manager's `GET /subscriptions` (`Subscriptions_List`): every subscription some
//! seeded item names — an account, a vault, a system topic, a role assignment's scope or a
//! custom role's assignable scope — in id order, as `Subscription` bodies of the 2022-12-01
//! contract (`id`, `authorizationSource`, `managedByTenants`, `subscriptionId`, `tenantId`,
//! `displayName`, `state`, `subscriptionPolicies`). Any valid token lists them all (Azure lists
//! the subscriptions the caller has a role in; the emulator does not model that).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::world::World;

/// Api-versions served (2022-12-01 is the newest the brief's clients use; older ones answer
/// the same shape).
pub const API_VERSIONS: &[&str] = &["2022-12-01", "2021-01-01", "2020-01-01", "2016-06-01"];

/// The subscription id at the start of a scope (`/subscriptions/{id}/…`), if any.
pub fn of_scope(scope: &str) -> Option<&str> {
    let rest = scope.strip_prefix('/')?;
    let (word, rest) = rest.split_once('/')?;
    if !word.eq_ignore_ascii_case("subscriptions") {
        return None;
    }
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// Every subscription named by the world, lower-case id → id as first spelled.
fn named(world: &World) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    let mut add = |id: &str| {
        ids.entry(id.to_ascii_lowercase())
            .or_insert_with(|| id.to_string());
    };
    world.accounts.iter().for_each(|a| add(&a.subscription_id));
    world.vaults.values().for_each(|v| add(&v.subscription_id));
    world.system_topics.iter().for_each(|t| add(&t.subscription_id));
    world
        .role_assignments
        .iter()
        .filter_map(|a| of_scope(&a.scope))
        .for_each(&mut add);
    world
        .role_definitions
        .iter()
        .flat_map(|d| d.assignable_scopes.iter())
        .filter_map(|s| of_scope(s))
        .for_each(&mut add);
    ids
}

/// `Subscriptions_List` items.
pub fn list(world: &World, tenant: &str) -> Vec<Value> {
    named(world)
        .into_values()
        .map(|id| {
            json!({
                "id": format!("/subscriptions/{id}"),
                "authorizationSource": "RoleBased",
                "managedByTenants": [],
                "subscriptionId": id,
                "tenantId": tenant,
                "displayName": format!("Emulated subscription {id}"),
                "state": "Enabled",
                "subscriptionPolicies": {
                    "locationPlacementId": "Public_2014-09-01",
                    "quotaId": "PayAsYouGo_2014-09-01",
                    "spendingLimit": "Off"
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_of_a_scope_is_its_second_segment() {
        assert_eq!(of_scope("/subscriptions/abc"), Some("abc"));
        assert_eq!(of_scope("/Subscriptions/abc/resourceGroups/rg"), Some("abc"));
        assert_eq!(
            of_scope("/providers/Microsoft.Management/managementGroups/m"),
            None
        );
        assert_eq!(of_scope("/"), None);
    }
}
