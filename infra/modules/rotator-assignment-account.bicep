// Assigns keyflip's custom role to its identity on one Azure AI services account (an allowed
// scope that is a resource id). Only Microsoft.CognitiveServices/accounts can be a resource
// scope here: it is the only type keyflip rotates, and a role assignment in Bicep needs the
// resource's type. Another type fails the deployment with a not-found error for the account.

@description('Name of the existing account.')
param accountName string

@description('Resource id of the custom role (modules/rotator-role.bicep) in this subscription.')
param roleDefinitionId string

@description('Object id of keyflip\'s identity.')
param principalId string

@description('A deploy-time-known id of keyflip\'s identity, seeding the assignment\'s name.')
param principalKey string

resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' existing = {
  name: accountName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalKey, principalId, roleDefinitionId)
  scope: account
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
