// keyflip's least-privilege custom role in one subscription: exactly the Resource Manager
// actions a rotation of a supported resource type calls (src/providers: SUPPORTED_TYPES'
// arm_actions; tests/deploy checks the two lists are equal), no wildcards. Creating it needs
// Microsoft.Authorization/roleDefinitions/write on the subscription (Owner or User Access
// Administrator).

targetScope = 'subscription'

@description('Display name of the role (unique in the tenant).')
param roleName string

@description('Name (a GUID) of the role definition. main.bicep computes it, so the assignments can name the role before it exists.')
param roleGuid string

resource rotator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  // Seeded without the actions: a changed action list updates the same role.
  name: roleGuid
  properties: {
    roleName: roleName
    description: 'keyflip: read Azure AI services accounts, list and regenerate their keys, and follow a long-running regeneration.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.CognitiveServices/accounts/read'
          'Microsoft.CognitiveServices/accounts/listKeys/action'
          'Microsoft.CognitiveServices/accounts/regenerateKey/action'
          'Microsoft.CognitiveServices/locations/operationresults/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

output roleDefinitionId string = rotator.id
