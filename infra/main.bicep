// keyflip in one resource group: the function app (Flex Consumption by default, Elastic
// Premium as the fallback), its identity, its storage, Application Insights with Log
// Analytics, the alerts, and through modules scoped where they live: each served vault's
// access and Event Grid system topic, and on each allowed scope the least-privilege custom
// role assigned to keyflip's identity.
//
// Resource-group scope, so that both `az deployment group create -g <rg> -f infra/main.bicep`
// and `azd up` deploy it: azd reads the compiled template's target scope and, for a resource
// group, deploys into AZURE_RESOURCE_GROUP, asking for (or creating) the group when it is not
// set (Azure/azure-dev cli/azd/pkg/infra/provisioning/bicep/bicep_provider.go,
// ensureResourceGroup/scopeForTemplate; no alpha flag since resource-group deployments left
// alpha). From a resource-group deployment ARM deploys modules to other resource groups in
// the same or other subscriptions and to any subscription of the tenant (Bicep docs,
// deploy-to-resource-group.md, "Deployment scopes"): the vaults, the custom role definitions
// (subscription scope) and their assignments go through such modules.
//
// Not here: the Event Grid subscription from each topic to keyflip (the KeyVaultEvents function
// with eventDelivery=push, the keyflip-events queue with eventDelivery=queue). Event Grid
// refuses a function that does not exist yet, so it is created after the code is deployed, by
// scripts/subscribe-eventgrid.sh (azd's postdeploy hook; the second step for az), with
// infra/eventgrid-subscription.bicep; this file creates the queues and the roles it needs.
//
// Classic Bicep only (no user-defined functions or types, no spread): tests/deploy parses
// every file here with tree-sitter-bicep, whose grammar lacks them.

targetScope = 'resourceGroup'

// ---- parameters ----------------------------------------------------------------------------

@description('Name of this deployment (azd: the environment name). Seeds resource names and the custom role\'s name.')
@minLength(1)
@maxLength(32)
param environmentName string = 'keyflip'

@description('Region of the app and its resources. Flex Consumption must offer runtime custom there (README "Deploy").')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

@description('Vaults keyflip serves: objects { name, resourceGroup?, subscriptionId?, enableRbacAuthorization?, systemTopicName? }. resourceGroup and subscriptionId default to this deployment\'s; enableRbacAuthorization (default true) says whether the vault uses Azure RBAC (Key Vault Secrets Officer) or access policies (get, list, set on secrets); systemTopicName names the vault\'s Event Grid system topic (an existing one is reused; default keyflip-<vault>).')
@minLength(1)
param vaults array

@description('Allowed scopes, as KEYFLIP_ALLOWED_SCOPES items: /subscriptions/<id>, /subscriptions/<id>/resourceGroups/<group> or an Azure AI services account id, each optionally prefixed with <vault>= to apply to that vault\'s secrets only. keyflip\'s custom role is assigned on each scope.')
@minLength(1)
param allowedScopes array

@description('NCRONTAB of the RotationSweep timer (KEYFLIP_SWEEP_SCHEDULE).')
param sweepSchedule string = '0 0 * * * *'

@description('Minutes between two sweeps of sweepSchedule, for the missed-sweep alert (Bicep cannot read NCRONTAB; two periods without a completed sweep alert).')
@minValue(5)
@maxValue(720)
param sweepPeriodMinutes int = 60

@description('How many days before exp the sweep rotates a secret (KEYFLIP_LEAD_DAYS).')
@minValue(1)
@maxValue(365)
param leadDays int = 30

@description('Minimum age in hours of a secret\'s latest version before the next rotation (KEYFLIP_DWELL_HOURS).')
@minValue(0)
@maxValue(8760)
param dwellHours int = 24

@description('Hosting plan: FlexConsumption (FC1, Linux, runtime custom) or ElasticPremium (EP1, Linux), the fallback where Flex does not offer custom.')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param plan string = 'FlexConsumption'

@description('keyflip\'s identity: UserAssigned (created here; the app settings name its client id) or SystemAssigned (the app\'s own; no client id is set).')
@allowed([
  'UserAssigned'
  'SystemAssigned'
])
param identityType string = 'UserAssigned'

@description('Email address for the alerts; empty = no action group (the alerts still fire in the portal).')
param alertEmail string = ''

@description('A rotation pending for longer than this many hours alerts.')
@minValue(1)
@maxValue(720)
param pendingAlertHours int = 2

@description('Object id of the person or pipeline deploying (azd fills it in); when set, it gets Storage Blob Data Contributor on the keyflip-locks container (the CLI takes its leases there) and, on Elastic Premium, on the package container. Empty = none.')
param principalId string = ''

@description('How the RotationSweep timer sweeps (KEYFLIP_SWEEP_MODE): single (its own invocation sweeps every vault; small fleets) or queue (it enqueues one message per vault on the keyflip-sweep queue and the SweepVault queue trigger sweeps each, spread over the app\'s instances).')
@allowed([
  'single'
  'queue'
])
param sweepMode string = 'single'

@description('How Event Grid delivers Key Vault events (read by scripts/subscribe-eventgrid.sh): push (to the KeyVaultEvents function through its public endpoint) or queue (into the keyflip-events queue of the app\'s storage account with the system topic\'s system-assigned identity, read by KeyVaultEventsQueue: the app needs no public endpoint for events).')
@allowed([
  'push'
  'queue'
])
param eventDelivery string = 'push'

@description('Type of principalId: User, Group or ServicePrincipal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

// ---- names and constants ---------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  application: 'keyflip'
}
var isFlex = plan == 'FlexConsumption'
var useUserAssigned = identityType == 'UserAssigned'

var identityName = 'id-keyflip-${resourceToken}'
var storageAccountName = 'stkf${resourceToken}'
var planName = 'plan-keyflip-${resourceToken}'
var appName = 'func-keyflip-${resourceToken}'
var workspaceName = 'log-keyflip-${resourceToken}'
var appInsightsName = 'appi-keyflip-${resourceToken}'
var packageContainerName = 'keyflip-package'
// keyflip's rotation leases and its mark key (.mark-key) live here (src/lease).
var locksContainerName = 'keyflip-locks'
var deadLetterContainerName = 'eventgrid-deadletter'
// The fan-out sweep's queue and the queue-delivered events' (src/triggers/queue.rs), and their
// poison queues, where the host moves a message after host.json's maxDequeueCount attempts.
var sweepQueueName = 'keyflip-sweep'
var eventsQueueName = 'keyflip-events'
var queueNames = [
  sweepQueueName
  '${sweepQueueName}-poison'
  eventsQueueName
  '${eventsQueueName}-poison'
]
var deliverToQueue = eventDelivery == 'queue'

// Built-in role definition ids (../shared/reference/azure-deploy.md §4.1).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// ../shared/reference/queues-flex-and-limits.md §2.2.
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// ---- vaults and scopes, normalised ----------------------------------------------------------

var vaultList = map(vaults, v => {
  name: v.name
  subscriptionId: v.?subscriptionId ?? subscription().subscriptionId
  resourceGroup: v.?resourceGroup ?? resourceGroup().name
  enableRbacAuthorization: v.?enableRbacAuthorization ?? true
  systemTopicName: v.?systemTopicName ?? 'keyflip-${v.name}'
})

// An allowed-scope item is `scope` or `vault=scope` (src/config.rs, parse_allowed_scope; an
// ARM scope never holds '='). Role assignments need each scope once, whichever vault it is for.
// keyflip accepts a trailing '/' on a scope (src/domain/arm_id.rs); dropped here so the segment
// counts below hold.
var scopeItems = map(allowedScopes, item => toLower(trim(last(split(item, '=')))))
var scopeStrings = map(scopeItems, s => endsWith(s, '/') ? substring(s, 0, length(s) - 1) : s)
var distinctScopes = map(filter(range(0, length(scopeStrings)), i => indexOf(scopeStrings, scopeStrings[i]) == i), i => scopeStrings[i])
// '/subscriptions/<id>' splits into 3 segments, '…/resourceGroups/<group>' into 5, a resource
// id '…/providers/<namespace>/<type>/<name>' into 9.
var scopeTargets = map(distinctScopes, s => {
  scope: s
  segments: split(s, '/')
})
var subscriptionScopes = filter(scopeTargets, t => length(t.segments) == 3)
var groupScopes = filter(scopeTargets, t => length(t.segments) == 5)
var resourceScopes = filter(scopeTargets, t => length(t.segments) != 3 && length(t.segments) != 5)

// One custom role per subscription that holds an allowed scope (its name is unique in the
// tenant; it is assignable only in its own subscription).
var scopeSubscriptions = map(scopeTargets, t => t.segments[2])
var rotatorSubscriptions = map(filter(range(0, length(scopeSubscriptions)), i => indexOf(scopeSubscriptions, scopeSubscriptions[i]) == i), i => scopeSubscriptions[i])

// ---- identity, storage ---------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (useUserAssigned) {
  name: identityName
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // networkAcls is deliberately not set: Azure's default (open, bypass 'AzureServices') holds,
    // and a firewall an operator adds later is not reset by the next deployment. Behind a
    // firewall (defaultAction 'Deny' or VNet rules), Event Grid's queue delivery keeps working
    // only while trusted Azure services may pass (keep bypass 'AzureServices') AND the delivery
    // uses the system topic's system-assigned identity: a storage account behind a firewall
    // accepts Event Grid deliveries only from a system-assigned identity on the topic, never a
    // user-assigned one (../shared/reference/queues-flex-and-limits.md §2.2).
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// Flex: the deployment container (it must exist when the app is created). Elastic Premium:
// where keyflip.zip is uploaded and run from (WEBSITE_RUN_FROM_PACKAGE).
resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: packageContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource locksContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: locksContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// Created here rather than on first use: Event Grid's queue destination must exist, and the
// poison queues are then there to be watched (their messages expire after 7 days).
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for name in queueNames: {
  parent: queueService
  name: name
}]

// ---- monitoring ----------------------------------------------------------------------------

module monitoring 'modules/monitoring.bicep' = {
  name: 'keyflip-monitoring'
  params: {
    location: location
    workspaceName: workspaceName
    appInsightsName: appInsightsName
    tags: tags
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'keyflip-alerts'
  params: {
    location: location
    appInsightsId: monitoring.outputs.appInsightsId
    namePrefix: 'keyflip-${resourceToken}'
    alertEmail: alertEmail
    pendingAlertHours: pendingAlertHours
    sweepPeriodMinutes: sweepPeriodMinutes
    tags: tags
  }
}

// ---- the function app ----------------------------------------------------------------------

resource hostingPlan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: 'EP1'
    tier: 'ElasticPremium'
    family: 'EP'
  }
  properties: isFlex ? {
    reserved: true
  } : {
    reserved: true
    maximumElasticWorkerCount: 20
  }
}

// Identity-based host storage (functions-reference.md, "Connecting to host storage with an
// identity"); keyflip's lease reads the same settings (src/lease/storage.rs).
var storageSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storage.name
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
]

// With a user-assigned identity both the host and keyflip are told its client id (keyflip
// refuses a storage client id other than its own); with the system-assigned one both are left
// unset.
var identitySettings = useUserAssigned ? [
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identity.properties.clientId
  }
  {
    name: 'KEYFLIP_MANAGED_IDENTITY_CLIENT_ID'
    value: identity.properties.clientId
  }
] : []

// Entra-authenticated ingestion (functions-app-settings.md, APPLICATIONINSIGHTS_*).
var monitoringSettings = [
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: monitoring.outputs.connectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: useUserAssigned ? 'Authorization=AAD;ClientId=${identity.properties.clientId}' : 'Authorization=AAD'
  }
]

// keyflip's own settings (src/config.rs). Every other KEYFLIP_ setting keyflip reads is left
// to its default on purpose (keyflip::config::DEFAULTED_SETTINGS) or is for local runs only
// (keyflip::config::LOCAL_ONLY_SETTINGS); tests/deploy checks the three lists cover them all.
var keyflipSettings = [
  {
    name: 'KEYFLIP_VAULTS'
    value: join(map(vaultList, v => v.name), ',')
  }
  {
    name: 'KEYFLIP_ALLOWED_SCOPES'
    value: join(allowedScopes, ',')
  }
  {
    // The timer binding reads %KEYFLIP_SWEEP_SCHEDULE%: missing, it fails the whole app.
    name: 'KEYFLIP_SWEEP_SCHEDULE'
    value: sweepSchedule
  }
  {
    name: 'KEYFLIP_LEAD_DAYS'
    value: string(leadDays)
  }
  {
    name: 'KEYFLIP_DWELL_HOURS'
    value: string(dwellHours)
  }
  {
    name: 'KEYFLIP_SWEEP_MODE'
    value: sweepMode
  }
]

// Elastic Premium only (Flex deprecates every one of these: functions-app-settings.md, "Flex
// Consumption plan deprecations"). No Azure Files (shared keys are off): the app runs from
// keyflip.zip in the package container, read with its identity
// (../shared/reference/azure-deploy.md §1.6; WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID
// takes a user-assigned identity's resource id or SystemAssigned).
var premiumSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'custom'
  }
  {
    name: 'WEBSITE_RUN_FROM_PACKAGE'
    value: '${storage.properties.primaryEndpoints.blob}${packageContainerName}/keyflip.zip'
  }
  {
    name: 'WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID'
    value: useUserAssigned ? identity.id : 'SystemAssigned'
  }
]

var appSettings = concat(storageSettings, identitySettings, monitoringSettings, keyflipSettings, isFlex ? [] : premiumSettings)

var siteIdentity = useUserAssigned ? {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${identity.id}': {}
  }
} : {
  type: 'SystemAssigned'
}

var siteCommon = {
  serverFarmId: hostingPlan.id
  httpsOnly: true
}

// Flex: runtime custom 1.0 (Azure's Flex stack data lists it for FC1), the package deployed
// ("one deploy") into the package container, read with keyflip's identity. The app settings
// are given here so they exist when the app is created.
var siteFlex = {
  functionAppConfig: {
    deployment: {
      storage: {
        type: 'blobContainer'
        value: '${storage.properties.primaryEndpoints.blob}${packageContainerName}'
        authentication: useUserAssigned ? {
          type: 'UserAssignedIdentity'
          userAssignedIdentityResourceId: identity.id
        } : {
          type: 'SystemAssignedIdentity'
        }
      }
    }
    scaleAndConcurrency: {
      maximumInstanceCount: 40
      instanceMemoryMB: 2048
    }
    runtime: {
      name: 'custom'
      version: '1.0'
    }
  }
  siteConfig: {
    minTlsVersion: '1.2'
    appSettings: appSettings
  }
}

var sitePremium = {
  reserved: true
  siteConfig: {
    minTlsVersion: '1.2'
    linuxFxVersion: ''
    appSettings: appSettings
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  // azd deploys the service `keyflip` of azure.yaml to the resource with this tag.
  tags: union(tags, {
    'azd-service-name': 'keyflip'
  })
  kind: 'functionapp,linux'
  identity: siteIdentity
  properties: union(siteCommon, isFlex ? siteFlex : sitePremium)
  dependsOn: [
    packageContainer
    locksContainer
  ]
}

// The object id role assignments are given, and a deploy-time-known id that seeds their
// names (never the principal id itself, which is known only once the identity exists).
// Both branches name `app`, so every assignment waits for the app, whichever identity is used:
// the app can start a few seconds before it holds its roles (the host retries its storage;
// a rotation in that window fails transiently and is retried).
var principalObjectId = useUserAssigned ? identity.properties.principalId : app.identity.principalId
var principalKey = useUserAssigned ? identity.id : app.id

// ---- roles on this resource group's resources -----------------------------------------------

// Host storage: Storage Blob Data Owner (host coordination, timer locks, the deployment
// package; keyflip's leases in keyflip-locks and its .mark-key) and Storage Table Data
// Contributor (the host's diagnostic events). ../shared/reference/azure-deploy.md §2.2.
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalKey, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalObjectId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalKey, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalObjectId
    principalType: 'ServicePrincipal'
  }
}

// The queue triggers (SweepVault, KeyVaultEventsQueue) and the timer's queue output binding:
// Storage Queue Data Contributor, because the host reads, deletes and updates messages, writes
// the fan-out's, and creates a queue that is missing (the output binding and the move to
// <queue>-poison both do); Reader + Message Processor + Message Sender would not create one.
// Both queue functions are in every package, so their listeners poll whatever the modes.
resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalKey, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalObjectId
    principalType: 'ServicePrincipal'
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// Entra-authenticated telemetry ingestion.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceId('Microsoft.Insights/components', appInsightsName), principalKey, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalObjectId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    monitoring
  ]
}

// The person deploying may run the CLI (keyflip rotate, onboard, doctor), which takes the
// same leases: Storage Blob Data Contributor on keyflip-locks only.
resource operatorLocks 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(locksContainer.id, principalId, storageBlobDataContributor)
  scope: locksContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

// Elastic Premium: the person deploying uploads keyflip.zip into the package container.
resource operatorPackage 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId) && !isFlex) {
  name: guid(packageContainer.id, principalId, storageBlobDataContributor)
  scope: packageContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

// ---- vaults: access and Event Grid system topics ---------------------------------------------

module vaultAccess 'modules/vault.bicep' = [for (v, i) in vaultList: {
  name: 'keyflip-vault-${i}-${uniqueString(resourceGroup().id, v.subscriptionId, v.resourceGroup, v.name)}'
  scope: resourceGroup(v.subscriptionId, v.resourceGroup)
  params: {
    vaultName: v.name
    enableRbacAuthorization: v.enableRbacAuthorization
    principalId: principalObjectId
    principalKey: principalKey
    systemTopicName: v.systemTopicName
    tags: tags
  }
}]

// Each topic's identity may write dead letters, into the dead-letter container only.
resource deadLetterWriters 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (v, i) in vaultList: {
  name: guid(deadLetterContainer.id, v.subscriptionId, v.resourceGroup, v.systemTopicName, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: vaultAccess[i].outputs.topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// Queue delivery: each topic's system-assigned identity may add messages to keyflip-events
// only (Storage Queue Data Message Sender on that queue). A system-assigned identity because a
// storage account behind a firewall accepts Event Grid deliveries only from one.
resource eventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: eventsQueueName
}

resource eventQueueSenders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (v, i) in vaultList: if (deliverToQueue) {
  name: guid(storage.id, eventsQueueName, v.subscriptionId, v.resourceGroup, v.systemTopicName, storageQueueDataMessageSender)
  scope: eventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    principalId: vaultAccess[i].outputs.topicPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    queues
  ]
}]

// ---- allowed scopes: the custom role and its assignments ------------------------------------

module rotatorRoles 'modules/rotator-role.bicep' = [for sub in rotatorSubscriptions: {
  name: 'keyflip-role-${uniqueString(resourceGroup().id, sub, environmentName)}'
  scope: subscription(sub)
  params: {
    roleName: 'keyflip key rotator (${environmentName}, ${sub})'
    roleGuid: guid(sub, environmentName, 'keyflip-key-rotator')
  }
}]

module rotatorOnSubscriptions 'modules/rotator-assignment-subscription.bicep' = [for t in subscriptionScopes: {
  name: 'keyflip-rotator-${uniqueString(resourceGroup().id, t.scope, environmentName)}'
  scope: subscription(t.segments[2])
  params: {
    roleDefinitionId: '/subscriptions/${t.segments[2]}/providers/Microsoft.Authorization/roleDefinitions/${guid(t.segments[2], environmentName, 'keyflip-key-rotator')}'
    principalId: principalObjectId
    principalKey: principalKey
  }
  dependsOn: [
    rotatorRoles
  ]
}]

module rotatorOnGroups 'modules/rotator-assignment-group.bicep' = [for t in groupScopes: {
  name: 'keyflip-rotator-${uniqueString(resourceGroup().id, t.scope, environmentName)}'
  scope: resourceGroup(t.segments[2], t.segments[4])
  params: {
    roleDefinitionId: '/subscriptions/${t.segments[2]}/providers/Microsoft.Authorization/roleDefinitions/${guid(t.segments[2], environmentName, 'keyflip-key-rotator')}'
    principalId: principalObjectId
    principalKey: principalKey
  }
  dependsOn: [
    rotatorRoles
  ]
}]

module rotatorOnAccounts 'modules/rotator-assignment-account.bicep' = [for t in resourceScopes: {
  name: 'keyflip-rotator-${uniqueString(resourceGroup().id, t.scope, environmentName)}'
  scope: resourceGroup(t.segments[2], t.segments[4])
  params: {
    accountName: last(t.segments)
    roleDefinitionId: '/subscriptions/${t.segments[2]}/providers/Microsoft.Authorization/roleDefinitions/${guid(t.segments[2], environmentName, 'keyflip-key-rotator')}'
    principalId: principalObjectId
    principalKey: principalKey
  }
  dependsOn: [
    rotatorRoles
  ]
}]

// ---- outputs: azd stores them in its environment; scripts/subscribe-eventgrid.sh reads them --

output RESOURCE_GROUP string = resourceGroup().name
output FUNCTION_APP_NAME string = app.name
output FUNCTION_APP_ID string = app.id
output STORAGE_ACCOUNT_NAME string = storage.name
output PACKAGE_CONTAINER_URL string = '${storage.properties.primaryEndpoints.blob}${packageContainerName}'
output DEAD_LETTER_STORAGE_ACCOUNT_ID string = storage.id
output DEAD_LETTER_CONTAINER string = deadLetterContainerName
output EVENTGRID_SYSTEM_TOPIC_IDS string = join(map(vaultList, v => resourceId(v.subscriptionId, v.resourceGroup, 'Microsoft.EventGrid/systemTopics', v.systemTopicName)), ' ')
output HOSTING_PLAN string = plan
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output APP_PRINCIPAL_ID string = principalObjectId
output EVENT_DELIVERY string = eventDelivery
output EVENTS_QUEUE_NAME string = eventsQueueName
output SWEEP_MODE string = sweepMode
