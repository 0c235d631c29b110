// keyflip's alerts: scheduled queries over the handler's JSON log lines in Application
// Insights (`traces`, category Host.Function.Console), written to the log contract of the
// README ("Alerts and the log contract"). The queries live in ../alerts/*.kql; the thresholds
// are put in front of them as KQL `let` statements.
//
// - rotation failed: any rotation.failed line (split by vault and secret);
// - rotation pending too long: the latest rotation.* line of a secret is rotation.pending and
//   its pending_since is older than pendingAlertHours;
// - secret expired: any secret.expired line (a missed rotation);
// - sweep missing: no sweep.completed line for two sweep periods (a missed rotation: nothing
//   catches what Event Grid missed).

@description('Region of the alert rules (the component\'s region).')
param location string

@description('Resource id of the Application Insights component the queries run on.')
param appInsightsId string

@description('Prefix of the rule names.')
param namePrefix string

@description('Email address that receives the alerts; empty = no action group (alerts still show in the portal).')
param alertEmail string

@description('A rotation pending for longer than this many hours alerts.')
param pendingAlertHours int

@description('Minutes between two sweeps (what KEYFLIP_SWEEP_SCHEDULE says; Bicep cannot read NCRONTAB).')
param sweepPeriodMinutes int

@description('Tags for every resource.')
param tags object

var hasEmail = !empty(alertEmail)

var rotationFailedQuery = loadTextContent('../alerts/rotation-failed.kql')
var rotationPendingQuery = 'let pendingThreshold = ${pendingAlertHours}h;\n${loadTextContent('../alerts/rotation-pending.kql')}'
var secretExpiredQuery = loadTextContent('../alerts/secret-expired.kql')
var sweepMissingQuery = 'let sweepPeriod = ${sweepPeriodMinutes}m;\n${loadTextContent('../alerts/sweep-missing.kql')}'

// One row per vault and secret is one alert each.
var perSecret = [
  {
    name: 'vault'
    operator: 'Include'
    values: [
      '*'
    ]
  }
  {
    name: 'secret'
    operator: 'Include'
    values: [
      '*'
    ]
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasEmail) {
  name: '${namePrefix}-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'keyflip'
    enabled: true
    emailReceivers: [
      {
        name: 'keyflip-oncall'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = {
  actionGroups: hasEmail ? [
    actionGroup.id
  ] : []
}

resource rotationFailed 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-rotation-failed'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'keyflip: a rotation failed'
    description: 'A rotation ended failed:<reason> (log event rotation.failed). The latest version still holds a working key; the message in the log line says what to fix.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: rotationFailedQuery
          timeAggregation: 'Count'
          dimensions: perSecret
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource rotationPending 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-rotation-pending'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'keyflip: a rotation is pending for too long'
    description: 'The latest rotation of a secret is pending (its new key has not passed its check) for longer than ${pendingAlertHours} h. keyflip resumes it without regenerating again until KEYFLIP_PENDING_TIMEOUT_HOURS.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT30M'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: rotationPendingQuery
          timeAggregation: 'Count'
          dimensions: perSecret
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource secretExpired 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-secret-expired'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'keyflip: a managed secret expired (missed rotation)'
    description: 'A sweep found a managed secret past its exp (log event secret.expired): its rotation was missed.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: secretExpiredQuery
          timeAggregation: 'Count'
          dimensions: perSecret
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource sweepMissing 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-sweep-missing'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'keyflip: no sweep completed for two periods (missed rotations)'
    description: 'No sweep.completed line for ${2 * sweepPeriodMinutes} minutes: the RotationSweep timer is not running or every sweep fails, so nothing catches what Event Grid missed.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    criteria: {
      allOf: [
        {
          query: sweepMissingQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

output ruleNames array = [
  rotationFailed.name
  rotationPending.name
  secretExpired.name
  sweepMissing.name
]
