// Assigns keyflip's custom role to its identity on a resource group (an allowed scope of the
// form /subscriptions/<id>/resourceGroups/<group>).

@description('Resource id of the custom role (modules/rotator-role.bicep) in this subscription.')
param roleDefinitionId string

@description('Object id of keyflip\'s identity.')
param principalId string

@description('A deploy-time-known id of keyflip\'s identity, seeding the assignment\'s name.')
param principalKey string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalKey, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
