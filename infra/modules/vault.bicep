// One served vault, deployed into the vault's own resource group (which may be in another
// subscription; main.bicep scopes this module there):
//
// - keyflip's access to secrets: Key Vault Secrets Officer for a vault on Azure RBAC, or, for
//   a vault still on access policies (enableRbacAuthorization=false, as Microsoft's rotation
//   samples set up), an access policy with exactly the secret permissions keyflip uses: get
//   (read the latest version), list (the sweep and the one-resource index), set (publish a
//   new version, and update a version's tags: Key Vault's Update Secret requires secrets/set);
// - the vault's Event Grid system topic, with a system-assigned identity that writes dead
//   letters. Azure allows one system topic per source: to reuse a topic someone already made
//   for this vault (e.g. in the portal's Events blade), give its name; it is declared again
//   here with the same source, so its system-assigned identity is switched on.
//
// The subscription from the topic to the KeyVaultEvents function is NOT here: Event Grid
// refuses a function that does not exist yet, so scripts/subscribe-eventgrid.sh creates it
// after the code is deployed (infra/eventgrid-subscription.bicep).

@description('Name of the existing vault.')
param vaultName string

@description('true: the vault uses Azure RBAC (keyflip gets Key Vault Secrets Officer); false: access policies (keyflip gets get, list, set on secrets).')
param enableRbacAuthorization bool

@description('Object id of keyflip\'s identity.')
param principalId string

@description('A deploy-time-known id of keyflip\'s identity (the user-assigned identity\'s or the app\'s resource id), seeding the role assignment\'s name.')
param principalKey string

@description('Name of the vault\'s Event Grid system topic (an existing one is reused).')
param systemTopicName string

@description('Tags for the system topic.')
param tags object

var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2026-02-01' existing = {
  name: vaultName
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableRbacAuthorization) {
  name: guid(vault.id, principalKey, principalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Microsoft.KeyVault/vaults/accessPolicies is not in ../shared/reference/azure-deploy.md: see
// tests/data/deploy/api-versions.supplement.txt. 'add' merges this entry into the vault's
// policies and leaves the others alone.
resource secretsPolicy 'Microsoft.KeyVault/vaults/accessPolicies@2026-02-01' = if (!enableRbacAuthorization) {
  parent: vault
  name: 'add'
  properties: {
    accessPolicies: [
      {
        tenantId: subscription().tenantId
        objectId: principalId
        permissions: {
          secrets: [
            'get'
            'list'
            'set'
          ]
        }
      }
    ]
  }
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: vault.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

output vaultId string = vault.id
output topicId string = topic.id
output topicName string = topic.name
output topicPrincipalId string = topic.identity.principalId
