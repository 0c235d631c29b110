// The second step of a deployment: the Event Grid subscription from one vault's system topic
// to keyflip, by one of two paths (main.bicep's eventDelivery, passed on by the script):
//
// - push: to the KeyVaultEvents function (endpointType AzureFunction). It cannot be part of
//   main.bicep: Event Grid validates the destination when the subscription is created and
//   refuses a function that does not exist yet ("Destination endpoint not found"), and the
//   function exists only once the code package is deployed.
// - queue: into the keyflip-events Storage queue of the app's own storage account
//   (endpointType StorageQueue), written with the system topic's system-assigned identity
//   (deliveryWithResourceIdentity; main.bicep grants it Storage Queue Data Message Sender on
//   that queue), read by the KeyVaultEventsQueue queue trigger. No handshake, no function key,
//   no public endpoint of the app. A storage account behind a firewall accepts Event Grid
//   deliveries only from a system-assigned identity on the topic (with trusted Azure services
//   allowed through, networkAcls.bypass 'AzureServices'), never from a user-assigned one
//   (../shared/reference/queues-flex-and-limits.md §2.2).
// scripts/subscribe-eventgrid.sh deploys this file into the topic's resource
// group after the code, once per topic, retrying while the function is not indexed yet. A PUT
// of the same subscription is idempotent: running it again changes nothing.
//
// Shape: ../shared/reference/azure-deploy.md §3.2-3.4 (Microsoft.EventGrid 2025-02-15).

@description('Name of the vault\'s system topic (main.bicep output EVENTGRID_SYSTEM_TOPIC_IDS).')
param systemTopicName string

@description('Resource id of the function app (main.bicep output FUNCTION_APP_ID).')
param functionAppId string

@description('Resource id of the app\'s storage account, which holds dead letters and, with delivery=queue, the events queue (main.bicep output DEAD_LETTER_STORAGE_ACCOUNT_ID).')
param deadLetterStorageAccountId string

@description('Container for dead letters (main.bicep output DEAD_LETTER_CONTAINER).')
param deadLetterContainerName string = 'eventgrid-deadletter'

@description('Name of the event subscription.')
param subscriptionName string = 'keyflip-secret-expiry'

@description('push: to the KeyVaultEvents function; queue: into the events queue of the app\'s storage account with the topic\'s system-assigned identity (main.bicep output EVENT_DELIVERY).')
@allowed([
  'push'
  'queue'
])
param delivery string = 'push'

@description('Queue Event Grid writes to with delivery=queue, in the dead-letter storage account (the app\'s own; main.bicep output EVENTS_QUEUE_NAME).')
param queueName string = 'keyflip-events'

// One event per invocation either way: the custom-handler envelope carries one event, and a
// queue message holds one event.
var pushDestination = {
  destination: {
    endpointType: 'AzureFunction'
    properties: {
      resourceId: '${functionAppId}/functions/KeyVaultEvents'
      maxEventsPerBatch: 1
      preferredBatchSizeInKilobytes: 64
    }
  }
}

// Event Grid takes the storage ACCOUNT id and the queue's name. Messages live 7 days, as the
// poison queue's do; the sweep catches whatever expires unread.
var queueDestination = {
  deliveryWithResourceIdentity: {
    identity: {
      type: 'SystemAssigned'
    }
    destination: {
      endpointType: 'StorageQueue'
      properties: {
        resourceId: deadLetterStorageAccountId
        queueName: queueName
        queueMessageTimeToLiveInSeconds: 604800
      }
    }
  }
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource expiry 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: subscriptionName
  properties: union(delivery == 'queue' ? queueDestination : pushDestination, {
    eventDeliverySchema: 'EventGridSchema'
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
  })
}

output eventSubscriptionId string = expiry.id
