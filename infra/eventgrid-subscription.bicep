// The second step of a deployment: the Event Grid subscription from one vault's system topic
// to keyflip's KeyVaultEvents function. It cannot be part of main.bicep: Event Grid validates
// the destination when the subscription is created and refuses a function that does not exist
// yet ("Destination endpoint not found"), and the function exists only once the code package
// is deployed. scripts/subscribe-eventgrid.sh deploys this file into the topic's resource
// group after the code, once per topic, retrying while the function is not indexed yet. A PUT
// of the same subscription is idempotent: running it again changes nothing.
//
// Shape: ../shared/reference/azure-deploy.md §3.2-3.4 (Microsoft.EventGrid 2025-02-15).

@description('Name of the vault\'s system topic (main.bicep output EVENTGRID_SYSTEM_TOPIC_IDS).')
param systemTopicName string

@description('Resource id of the function app (main.bicep output FUNCTION_APP_ID).')
param functionAppId string

@description('Resource id of the storage account that holds dead letters (main.bicep output DEAD_LETTER_STORAGE_ACCOUNT_ID).')
param deadLetterStorageAccountId string

@description('Container for dead letters (main.bicep output DEAD_LETTER_CONTAINER).')
param deadLetterContainerName string = 'eventgrid-deadletter'

@description('Name of the event subscription.')
param subscriptionName string = 'keyflip-secret-expiry'

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource expiry 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: subscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/KeyVaultEvents'
        // One event per invocation: the custom-handler envelope carries one event.
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.SecretNearExpiry'
        'Microsoft.KeyVault.SecretExpired'
      ]
    }
    // Event Grid's maximum: 30 attempts within 24 hours; the sweep catches what is still lost.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    // Dead letters are written with the topic's system-assigned identity (main.bicep grants
    // it Storage Blob Data Contributor on this container; shared keys are off).
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output eventSubscriptionId string = expiry.id
