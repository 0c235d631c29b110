//! Event Grid system topics (`Microsoft.EventGrid/systemTopics`, api-version 2025-02-15) and
//! their event subscriptions, read-only: `SystemTopics_ListBySubscription`,
//! `SystemTopics_ListByResourceGroup`, `SystemTopics_Get`,
//! `SystemTopicEventSubscriptions_ListBySystemTopic` and `SystemTopicEventSubscriptions_Get`.
//!
//! Shapes follow the 2025-02-15 examples of azure-rest-api-specs (`SystemTopics_Get.json`,
//! `SystemTopicEventSubscriptions_Get.json`, `EventSubscriptions_GetForCustomTopic_AzureFunctionDestination.json`)
//! and the `EventSubscriptionProperties` schema (../shared/reference/azure-deploy.md §3.2):
//! a topic answers `properties.{provisioningState,source,topicType,metricResourceId}`,
//! `location`, `tags`, `identity` when it has one; a subscription answers
//! `properties.{topic,provisioningState,destination:{endpointType,properties},filter,labels,
//! eventDeliverySchema,retryPolicy}` plus `deadLetterDestination` (Event Grid's own identity)
//! or `deadLetterWithResourceIdentity` (the topic's). As Azure does, a WebHook destination
//! reports only `endpointBaseUrl`, never the full URL. Any valid Resource Manager token may
//! read them (a simplification).

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::arm::{ResourcePath, error};
use crate::error::AzureError;
use crate::providers::ListScope;
use crate::seed::SeedError;
use crate::world::{World, random_guid};

/// Api-versions served: 2025-02-15, the newest GA one.
pub const API_VERSIONS: &[&str] = &["2025-02-15"];

/// The topic type of a Key Vault's system topic.
pub const KEY_VAULT_TOPIC_TYPE: &str = "Microsoft.KeyVault.vaults";

/// Where an event subscription delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointType {
    AzureFunction,
    WebHook,
    StorageQueue,
}

/// Where undeliverable events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSeed {
    /// The storage account's ARM id.
    pub resource_id: String,
    /// The blob container.
    pub container: String,
    /// `SystemAssigned` or `UserAssigned`: dead-letter with the topic's identity
    /// (`deadLetterWithResourceIdentity`); absent: with Event Grid's (`deadLetterDestination`).
    #[serde(default)]
    pub identity: Option<String>,
    /// The user-assigned identity's ARM id, for `identity: "UserAssigned"`.
    #[serde(default)]
    pub user_assigned_identity: Option<String>,
}

/// An event subscription of a system topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSubscriptionSeed {
    pub name: String,
    pub endpoint_type: EndpointType,
    /// The function's or storage account's ARM id; for a WebHook, its base URL.
    pub resource_id: String,
    /// For a StorageQueue destination.
    #[serde(default)]
    pub queue_name: Option<String>,
    /// `filter.includedEventTypes`; absent reports `null` (every event type).
    #[serde(default)]
    pub included_event_types: Option<Vec<String>>,
    #[serde(default = "thirty")]
    pub max_delivery_attempts: u32,
    #[serde(default = "one_day")]
    pub event_ttl_minutes: u32,
    #[serde(default = "one")]
    pub max_events_per_batch: u32,
    #[serde(default = "sixty_four")]
    pub preferred_batch_size_kb: u32,
    #[serde(default)]
    pub dead_letter: Option<DeadLetterSeed>,
    #[serde(default = "succeeded")]
    pub provisioning_state: String,
}

fn thirty() -> u32 {
    30
}
fn one_day() -> u32 {
    1440
}
fn one() -> u32 {
    1
}
fn sixty_four() -> u32 {
    64
}
fn succeeded() -> String {
    "Succeeded".to_string()
}
fn eastus() -> String {
    "eastus".to_string()
}
fn key_vault_topic_type() -> String {
    KEY_VAULT_TOPIC_TYPE.to_string()
}

/// A system topic as seeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemTopicSeed {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    #[serde(default = "eastus")]
    pub location: String,
    /// The source resource's ARM id (a vault's, for keyflip).
    pub source: String,
    #[serde(default = "key_vault_topic_type")]
    pub topic_type: String,
    /// The object id of the topic's system-assigned identity; absent: no identity.
    #[serde(default)]
    pub identity_principal_id: Option<String>,
    #[serde(default)]
    pub event_subscriptions: Vec<EventSubscriptionSeed>,
}

/// An emulated system topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemTopic {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub source: String,
    pub topic_type: String,
    pub identity_principal_id: Option<String>,
    /// `properties.metricResourceId`, a GUID fixed at seeding.
    pub metric_resource_id: String,
    pub event_subscriptions: Vec<EventSubscriptionSeed>,
}

impl SystemTopic {
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.EventGrid/systemTopics/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }

    fn is_at(&self, path: &ResourcePath) -> bool {
        self.subscription_id.eq_ignore_ascii_case(&path.subscription_id)
            && self.resource_group.eq_ignore_ascii_case(&path.resource_group)
            && self.name.eq_ignore_ascii_case(&path.name)
    }

    /// The `SystemTopic` body.
    pub fn resource(&self, tenant: &str) -> Value {
        let mut body = json!({
            "properties": {
                "provisioningState": "Succeeded",
                "source": self.source,
                "topicType": self.topic_type,
                "metricResourceId": self.metric_resource_id,
            },
            "location": self.location,
            "tags": null,
            "id": self.id(),
            "name": self.name,
            "type": "Microsoft.EventGrid/systemTopics",
        });
        if let Some(principal) = &self.identity_principal_id {
            body["identity"] =
                json!({ "type": "SystemAssigned", "principalId": principal, "tenantId": tenant });
        }
        body
    }

    /// The `EventSubscription` body of one of its subscriptions.
    pub fn subscription_resource(&self, sub: &EventSubscriptionSeed) -> Value {
        let destination = match sub.endpoint_type {
            EndpointType::AzureFunction => json!({
                "endpointType": "AzureFunction",
                "properties": {
                    "resourceId": sub.resource_id,
                    "maxEventsPerBatch": sub.max_events_per_batch,
                    "preferredBatchSizeInKilobytes": sub.preferred_batch_size_kb,
                }
            }),
            EndpointType::WebHook => json!({
                "endpointType": "WebHook",
                "properties": {
                    "endpointBaseUrl": sub.resource_id,
                    "maxEventsPerBatch": sub.max_events_per_batch,
                    "preferredBatchSizeInKilobytes": sub.preferred_batch_size_kb,
                }
            }),
            EndpointType::StorageQueue => json!({
                "endpointType": "StorageQueue",
                "properties": { "resourceId": sub.resource_id, "queueName": sub.queue_name }
            }),
        };
        let mut properties = json!({
            "topic": self.id(),
            "provisioningState": sub.provisioning_state,
            "destination": destination,
            "filter": {
                "includedEventTypes": sub.included_event_types,
                "subjectBeginsWith": "",
                "subjectEndsWith": "",
                "isSubjectCaseSensitive": false,
                "enableAdvancedFilteringOnArrays": true,
            },
            "labels": [],
            "eventDeliverySchema": "EventGridSchema",
            "retryPolicy": {
                "maxDeliveryAttempts": sub.max_delivery_attempts,
                "eventTimeToLiveInMinutes": sub.event_ttl_minutes,
            },
        });
        if let Some(dead_letter) = &sub.dead_letter {
            let destination = json!({
                "endpointType": "StorageBlob",
                "properties": { "resourceId": dead_letter.resource_id, "blobContainerName": dead_letter.container }
            });
            match &dead_letter.identity {
                Some(kind) => {
                    let mut identity = json!({ "type": kind });
                    if let Some(uai) = &dead_letter.user_assigned_identity {
                        identity["userAssignedIdentity"] = json!(uai);
                    }
                    properties["deadLetterWithResourceIdentity"] =
                        json!({ "identity": identity, "deadLetterDestination": destination });
                }
                None => properties["deadLetterDestination"] = destination,
            }
        }
        json!({
            "properties": properties,
            "id": format!("{}/eventSubscriptions/{}", self.id(), sub.name),
            "name": sub.name,
            "type": "Microsoft.EventGrid/systemTopics/eventSubscriptions",
        })
    }
}

/// Adds a topic: one per name in a group, and one per source ("Azure Event Grid allows only
/// one system topic per source", event-grid/system-topics.md).
pub fn add_system_topic(world: &mut World, seed: SystemTopicSeed) -> Result<(), SeedError> {
    let fail = |reason: String| SeedError::SystemTopic {
        name: seed.name.clone(),
        reason,
    };
    if let Some(other) = world.system_topics.iter().find(|t| {
        t.name.eq_ignore_ascii_case(&seed.name)
            && t.subscription_id.eq_ignore_ascii_case(&seed.subscription_id)
            && t.resource_group.eq_ignore_ascii_case(&seed.resource_group)
    }) {
        return Err(fail(format!("already seeded as {}", other.id())));
    }
    if world
        .system_topics
        .iter()
        .any(|t| t.source.eq_ignore_ascii_case(&seed.source))
    {
        return Err(fail(format!(
            "source '{}' already has a system topic; Event Grid allows one per source",
            seed.source
        )));
    }
    for (i, sub) in seed.event_subscriptions.iter().enumerate() {
        if seed.event_subscriptions[..i]
            .iter()
            .any(|s| s.name.eq_ignore_ascii_case(&sub.name))
        {
            return Err(fail(format!("event subscription '{}' is seeded twice", sub.name)));
        }
    }
    world.system_topics.push(SystemTopic {
        subscription_id: seed.subscription_id,
        resource_group: seed.resource_group,
        name: seed.name,
        location: seed.location,
        source: seed.source,
        topic_type: seed.topic_type,
        identity_principal_id: seed.identity_principal_id,
        metric_resource_id: random_guid(),
        event_subscriptions: seed.event_subscriptions,
    });
    Ok(())
}

fn topic_not_found(path: &ResourcePath) -> AzureError {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.EventGrid/systemTopics/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            path.name, path.resource_group
        ),
    )
}

fn find<'a>(world: &'a World, path: &ResourcePath) -> Result<&'a SystemTopic, AzureError> {
    world
        .system_topics
        .iter()
        .find(|t| t.is_at(path))
        .ok_or_else(|| topic_not_found(path))
}

/// `SystemTopics_ListBySubscription` / `_ListByResourceGroup`, in seeding order.
pub fn list_topics(world: &World, scope: &ListScope, tenant: &str) -> Vec<Value> {
    world
        .system_topics
        .iter()
        .filter(|t| scope.contains(&t.subscription_id, &t.resource_group))
        .map(|t| t.resource(tenant))
        .collect()
}

/// `SystemTopics_Get`.
pub fn get_topic(world: &World, path: &ResourcePath, tenant: &str) -> Result<Value, AzureError> {
    find(world, path).map(|t| t.resource(tenant))
}

/// `SystemTopicEventSubscriptions_ListBySystemTopic`.
pub fn list_subscriptions(world: &World, path: &ResourcePath) -> Result<Vec<Value>, AzureError> {
    let topic = find(world, path)?;
    Ok(topic
        .event_subscriptions
        .iter()
        .map(|s| topic.subscription_resource(s))
        .collect())
}

/// `SystemTopicEventSubscriptions_Get`.
pub fn get_subscription(world: &World, path: &ResourcePath, name: &str) -> Result<Value, AzureError> {
    let topic = find(world, path)?;
    topic
        .event_subscriptions
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .map(|s| topic.subscription_resource(s))
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!(
                    "The event subscription '{name}' of system topic '{}' was not found.",
                    topic.name
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(dead_letter: Value) -> SystemTopicSeed {
        serde_json::from_value(json!({
            "subscription_id": "s", "resource_group": "rg", "name": "t",
            "source": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1",
            "event_subscriptions": [{
                "name": "e", "endpoint_type": "AzureFunction",
                "resource_id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/functions/KeyVaultEvents",
                "included_event_types": ["Microsoft.KeyVault.SecretNearExpiry"],
                "dead_letter": dead_letter
            }]
        }))
        .unwrap()
    }

    #[test]
    fn dead_lettering_names_whose_identity_writes() {
        let mut world = World::default();
        add_system_topic(
            &mut world,
            seed(json!({"resource_id": "/st", "container": "dl", "identity": "SystemAssigned"})),
        )
        .unwrap();
        let topic = &world.system_topics[0];
        let body = topic.subscription_resource(&topic.event_subscriptions[0]);
        let props = &body["properties"];
        assert_eq!(props["destination"]["endpointType"], "AzureFunction");
        assert_eq!(props["retryPolicy"]["maxDeliveryAttempts"], 30);
        assert_eq!(
            props["deadLetterWithResourceIdentity"]["deadLetterDestination"]["properties"]["blobContainerName"],
            "dl"
        );
        assert!(props.get("deadLetterDestination").is_none());
        assert_eq!(
            topic.resource("tn")["properties"]["topicType"],
            "Microsoft.KeyVault.vaults"
        );
    }

    #[test]
    fn one_topic_per_source() {
        let mut world = World::default();
        add_system_topic(&mut world, seed(Value::Null)).unwrap();
        let mut second = seed(Value::Null);
        second.name = "t2".into();
        assert!(matches!(
            add_system_topic(&mut world, second),
            Err(SeedError::SystemTopic { .. })
        ));
    }
}
