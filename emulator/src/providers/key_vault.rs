//! Key Vault's control plane (`Microsoft.KeyVault/vaults`): `Vaults_Get`,
//! `Vaults_ListBySubscription` and `Vaults_ListByResourceGroup`, for api-versions 2026-02-01,
//! 2024-11-01 and 2023-07-01.
//!
//! The vault is the one the data plane serves ([`crate::keyvault`]); its Resource Manager
//! settings come from the seed. The body follows the 2024-11-01 `getVault.json` example of
//! azure-rest-api-specs (`id`, `name`, `type`, `location`, `tags`, `properties.sku`
//! `{family:"A",name:"standard"}`, `tenantId`, `accessPolicies[{tenantId,objectId,permissions}]`,
//! `enabledFor*`, `vaultUri`, `provisioningState`, `publicNetworkAccess`), plus
//! `enableRbacAuthorization`, `enableSoftDelete` and `softDeleteRetentionInDays` of the
//! `VaultProperties` schema. `vaultUri` carries the trailing slash real vaults report (the
//! example omits it). Any valid Resource Manager token may read a vault (a simplification:
//! Azure would need `Microsoft.KeyVault/vaults/read`).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::arm::{ResourcePath, error};
use crate::error::AzureError;
use crate::keyvault::store::Vault;
use crate::providers::ListScope;
use crate::world::World;

/// Control-plane api-versions served. 2026-02-01 is the newest GA; versions before it retire
/// on 27 Feb 2027 (../shared/reference/queues-flex-and-limits.md).
pub const ARM_API_VERSIONS: &[&str] = &["2026-02-01", "2024-11-01", "2023-07-01"];

/// The vault's ARM id.
pub fn id(vault: &Vault) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}",
        vault.subscription_id, vault.resource_group, vault.name
    )
}

/// The `Vault` resource body; `tenant` is the emulator's tenant.
pub fn resource(vault: &Vault, tenant: &str) -> Value {
    let policies: Vec<Value> = vault
        .access_policies
        .iter()
        .map(|p| {
            json!({
                "tenantId": p.tenant_id.as_deref().unwrap_or(tenant),
                "objectId": p.object_id,
                "permissions": {
                    "keys": p.keys,
                    "secrets": p.secrets,
                    "certificates": p.certificates,
                    "storage": p.storage,
                }
            })
        })
        .collect();
    json!({
        "id": id(vault),
        "name": vault.name,
        "type": "Microsoft.KeyVault/vaults",
        "location": vault.location,
        "tags": vault.tags,
        "properties": {
            "sku": { "family": "A", "name": "standard" },
            "tenantId": tenant,
            "accessPolicies": policies,
            "enabledForDeployment": false,
            "enabledForDiskEncryption": false,
            "enabledForTemplateDeployment": false,
            "enableSoftDelete": true,
            "softDeleteRetentionInDays": vault.retention_days,
            "enableRbacAuthorization": vault.enable_rbac_authorization,
            "vaultUri": format!("https://{}.vault.azure.net/", vault.name.to_ascii_lowercase()),
            "provisioningState": "Succeeded",
            "publicNetworkAccess": "Enabled",
        }
    })
}

/// `Vaults_ListBySubscription` / `Vaults_ListByResourceGroup`, in name order.
pub fn list(world: &World, scope: &ListScope, tenant: &str) -> Vec<Value> {
    world
        .vaults
        .values()
        .filter(|v| scope.contains(&v.subscription_id, &v.resource_group))
        .map(|v| resource(v, tenant))
        .collect()
}

/// `Vaults_Get`: 404 `ResourceNotFound` unless a vault of that name lives in that group.
pub fn get(world: &World, path: &ResourcePath, tenant: &str) -> Result<Value, AzureError> {
    world
        .vaults
        .get(&path.name.to_ascii_lowercase())
        .filter(|v| {
            v.subscription_id.eq_ignore_ascii_case(&path.subscription_id)
                && v.resource_group.eq_ignore_ascii_case(&path.resource_group)
        })
        .map(|v| resource(v, tenant))
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!(
                    "The Resource 'Microsoft.KeyVault/vaults/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                    path.name, path.resource_group
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyvault::store::AccessPolicy;

    #[test]
    fn a_vault_reports_its_permission_model_and_policies() {
        let mut vault = Vault::new("kv1");
        vault.enable_rbac_authorization = false;
        vault.access_policies.push(AccessPolicy {
            object_id: "oid".into(),
            tenant_id: None,
            secrets: vec!["get".into(), "list".into()],
            keys: vec![],
            certificates: vec![],
            storage: vec![],
        });
        let body = resource(&vault, "tenant");
        assert_eq!(
            body["id"],
            "/subscriptions/3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b/resourceGroups/rg-api/providers/Microsoft.KeyVault/vaults/kv1"
        );
        assert_eq!(body["properties"]["enableRbacAuthorization"], false);
        assert_eq!(body["properties"]["vaultUri"], "https://kv1.vault.azure.net/");
        assert_eq!(
            body["properties"]["accessPolicies"][0],
            json!({"tenantId": "tenant", "objectId": "oid",
                   "permissions": {"keys": [], "secrets": ["get", "list"], "certificates": [], "storage": []}})
        );
    }
}
