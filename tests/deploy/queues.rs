//! The queue paths, checked statically (without the Functions host a poison test would only
//! test the harness): host.json's `extensions.queues` against keyflip's budgets and the sweep
//! period, the queue functions' bindings, and the Bicep that creates the queues, grants the
//! roles and subscribes Event Grid to the events queue with the topic's system-assigned
//! identity.

use serde_json::Value;

use keyflip::config::DEFAULT_MAX_INVOCATIONS;
use keyflip::server::Budgets;
use keyflip::triggers::{keyvault_events_queue, queue, sweep, sweep_vault};

use super::{infra, read, root};

fn json(relative: &str) -> Value {
    let path = root().join(relative);
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `hh:mm:ss` in seconds.
fn seconds(timespan: &str) -> u64 {
    let parts: Vec<u64> = timespan
        .split(':')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|e| panic!("'{timespan}' is not hh:mm:ss: {e}"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "'{timespan}' is not hh:mm:ss");
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

/// The default sweep period: KEYFLIP_SWEEP_SCHEDULE's default is hourly, as is main.bicep's
/// sweepPeriodMinutes.
const SWEEP_PERIOD_SECONDS: u64 = 3600;

#[test]
fn host_json_queue_settings_fit_the_budgets_and_poison_before_the_next_sweep() {
    let host = json("host.json");
    let queues = &host["extensions"]["queues"];
    assert!(queues.is_object(), "host.json has no extensions.queues");
    let budgets = Budgets::default();

    // Both encodings Event Grid has written reach keyflip, which decodes base64 itself: with
    // the host's default base64 a plain-JSON message would fail binding on every dequeue.
    assert_eq!(queues["messageEncoding"], "none");

    // A failed message comes back after visibilityTimeout: not at once (five attempts would
    // burn out in a second) and not later than one sweep budget.
    let visibility = seconds(queues["visibilityTimeout"].as_str().unwrap_or_default());
    assert!(
        visibility > 0 && visibility <= budgets.sweep.as_secs(),
        "visibilityTimeout {visibility} s must be within (0, {}] s, the sweep budget",
        budgets.sweep.as_secs()
    );

    // Poison after N dequeues, and every attempt of a vault's message (a whole sweep budget
    // each, plus the wait) over before the next timer run enqueues that vault again.
    let max_dequeue = queues["maxDequeueCount"].as_u64().unwrap_or_default();
    assert!((2..=10).contains(&max_dequeue), "maxDequeueCount {max_dequeue}");
    let worst = max_dequeue * (budgets.sweep.as_secs() + visibility);
    assert!(
        worst <= SWEEP_PERIOD_SECONDS,
        "{max_dequeue} attempts of {} s + {visibility} s = {worst} s outlast the sweep period",
        budgets.sweep.as_secs()
    );
    // The events' retries stay short too (Event Grid's push path retries for 24 h instead;
    // the sweep is the safety net either way).
    assert!(max_dequeue * (budgets.event.as_secs() + visibility) <= 600);

    // Messages in flight per queue function and instance: batchSize + newBatchThreshold. Both
    // queue functions at once must stay under KEYFLIP_MAX_INVOCATIONS, or the handler would
    // answer the host's own invocations as busy.
    let batch = queues["batchSize"].as_u64().unwrap_or_default();
    let threshold = queues["newBatchThreshold"].as_u64().unwrap_or(batch / 2);
    assert!((1..=32).contains(&batch), "batchSize {batch}");
    let per_instance = 2 * (batch + threshold) as usize;
    assert!(
        per_instance < DEFAULT_MAX_INVOCATIONS,
        "{per_instance} concurrent queue invocations reach KEYFLIP_MAX_INVOCATIONS"
    );
    let polling = seconds(queues["maxPollingInterval"].as_str().unwrap_or("00:01:00"));
    assert!(polling <= 60, "maxPollingInterval {polling} s");

    // A function may run longer than any budget it is given.
    let timeout = seconds(host["functionTimeout"].as_str().unwrap_or_default());
    assert!(timeout > budgets.sweep.as_secs());
}

#[test]
fn the_queue_functions_trigger_on_their_queues_and_the_timer_outputs_to_the_sweep_queue() {
    for (function, queue_name) in [
        (sweep_vault::FUNCTION, queue::SWEEP_QUEUE),
        (keyvault_events_queue::FUNCTION, queue::EVENTS_QUEUE),
    ] {
        let bindings = json(&format!("functions/{function}/function.json"))["bindings"].clone();
        let bindings = bindings.as_array().cloned().unwrap_or_default();
        assert_eq!(bindings.len(), 1, "{function}: one binding");
        let trigger = &bindings[0];
        assert_eq!(trigger["type"], "queueTrigger", "{function}");
        assert_eq!(trigger["direction"], "in", "{function}");
        assert_eq!(trigger["name"], queue::BINDING, "{function}");
        assert_eq!(trigger["queueName"], queue_name, "{function}");
        assert_eq!(trigger["connection"], "AzureWebJobsStorage", "{function}");
    }
    let timer = json(&format!("functions/{}/function.json", sweep::FUNCTION));
    let output = timer["bindings"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["direction"] == "out"))
        .cloned()
        .unwrap_or_else(|| panic!("RotationSweep has no output binding"));
    assert_eq!(output["type"], "queue");
    assert_eq!(output["name"], sweep::OUTPUT_BINDING);
    assert_eq!(output["queueName"], queue::SWEEP_QUEUE);
    assert_eq!(output["connection"], "AzureWebJobsStorage");
}

/// What the Bicep must say where it sets up queue delivery.
const FIREWALL_NOTE: &str = "a storage account behind a firewall accepts event grid deliveries only from a system-assigned identity on the topic";

/// A file's text as prose: comment markers dropped, whitespace collapsed, lower case.
fn prose(source: &str) -> String {
    source
        .replace("//", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The string value of a top-level `var` of main.bicep.
fn main_var(name: &str) -> String {
    let main = infra("main.bicep");
    let variables = main.variables();
    let node = variables
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("main.bicep has no var {name}"));
    main.string_literal(node)
        .unwrap_or_else(|| panic!("var {name} is not a string literal"))
}

#[test]
fn main_bicep_creates_the_queues_and_grants_the_queue_roles() {
    assert_eq!(main_var("sweepQueueName"), queue::SWEEP_QUEUE);
    assert_eq!(main_var("eventsQueueName"), queue::EVENTS_QUEUE);
    let main = infra("main.bicep");
    let types: Vec<String> = main.resource_types().into_iter().map(|(t, _)| t).collect();
    assert!(
        types
            .iter()
            .any(|t| t.starts_with("Microsoft.Storage/storageAccounts/queueServices/queues@"))
    );
    let queue_names = main.text(main.variables()["queueNames"]).to_string();
    assert!(
        queue_names.contains("'${sweepQueueName}-poison'")
            && queue_names.contains("'${eventsQueueName}-poison'"),
        "the poison queues are created: {queue_names}"
    );
    // The app: Storage Queue Data Contributor; each topic (queue delivery): Message Sender on
    // the events queue only.
    assert_eq!(
        main_var("storageQueueDataContributor"),
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
    );
    assert_eq!(
        main_var("storageQueueDataMessageSender"),
        "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
    );
    let source = &main.source;
    assert!(
        source.contains("resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01'")
    );
    let senders = source
        .split("resource eventQueueSenders ")
        .nth(1)
        .unwrap_or_else(|| panic!("main.bicep has no eventQueueSenders"));
    let senders = &senders[..senders.find("\n}]").unwrap_or(senders.len())];
    assert!(senders.contains("if (deliverToQueue)"), "{senders}");
    assert!(senders.contains("scope: eventsQueue"), "{senders}");
    assert!(senders.contains("storageQueueDataMessageSender"), "{senders}");
    assert!(
        senders.contains("vaultAccess[i].outputs.topicPrincipalId"),
        "{senders}"
    );
    // No networkAcls, so a deployment never resets a firewall an operator added; and the note
    // saying what such a firewall needs for Event Grid's deliveries.
    assert!(main.properties("networkAcls").is_empty());
    assert!(
        prose(source).contains(FIREWALL_NOTE),
        "main.bicep must say: {FIREWALL_NOTE}"
    );
    // The sweep mode is a parameter and the setting keyflip reads.
    assert!(main.params().contains(&"sweepMode".to_string()));
    assert!(main.params().contains(&"eventDelivery".to_string()));
    assert!(source.contains("name: 'KEYFLIP_SWEEP_MODE'\n    value: sweepMode"));
}

#[test]
fn queue_delivery_writes_to_the_events_queue_with_the_topic_s_system_assigned_identity() {
    let sub = infra("eventgrid-subscription.bicep");
    let variables = sub.variables();
    let destination = sub.text(variables["queueDestination"]).to_string();
    assert!(
        destination.contains("endpointType: 'StorageQueue'"),
        "{destination}"
    );
    assert!(
        destination.contains("deliveryWithResourceIdentity"),
        "{destination}"
    );
    assert!(destination.contains("type: 'SystemAssigned'"), "{destination}");
    assert!(destination.contains("queueName: queueName"), "{destination}");
    assert!(
        destination.contains("queueMessageTimeToLiveInSeconds"),
        "{destination}"
    );
    // The default queue is the one KeyVaultEventsQueue reads.
    assert!(
        sub.source
            .contains(&format!("param queueName string = '{}'", queue::EVENTS_QUEUE))
    );
    assert!(
        sub.source
            .contains("delivery == 'queue' ? queueDestination : pushDestination")
    );
    assert!(
        prose(&sub.source).contains(FIREWALL_NOTE),
        "eventgrid-subscription.bicep must say: {FIREWALL_NOTE}"
    );
}
