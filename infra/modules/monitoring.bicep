// Log Analytics workspace and the workspace-based Application Insights component keyflip's
// logs land in (the Functions host copies every stdout line of the handler into `traces`).
// Local (instrumentation-key) ingestion is switched off: the app sends with its identity
// (Monitoring Metrics Publisher, granted in main.bicep).

@description('Region of the workspace and the component.')
param location string

@description('Name of the Log Analytics workspace.')
param workspaceName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Tags for every resource.')
param tags object

// Microsoft.OperationalInsights is not in ../shared/reference/azure-deploy.md: see
// tests/data/deploy/api-versions.supplement.txt for where this version was verified.
resource workspace 'Microsoft.OperationalInsights/workspaces@2025-02-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
output workspaceId string = workspace.id
