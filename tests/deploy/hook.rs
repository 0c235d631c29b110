//! scripts/subscribe-eventgrid.sh against a stand-in `az` (a shell script that records its
//! arguments and answers as Azure would): it waits for the function, retries while Event Grid
//! cannot see it, subscribes every topic in its own subscription and resource group, stops at
//! once on any other error, and says what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::root;

const TOPIC_A: &str = "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg-vaults/providers/Microsoft.EventGrid/systemTopics/keyflip-kv-one";
const TOPIC_B: &str = "/subscriptions/00000000-0000-0000-0000-00000000000b/resourceGroups/rg-other/providers/Microsoft.EventGrid/systemTopics/keyflip-kv-two";
const APP: &str = "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg-app/providers/Microsoft.Web/sites/func-keyflip-x";

/// A scratch directory with a fake `az` whose `rest` fails `rest_failures` times and whose
/// `deployment group create` fails `create_failures` times with `create_error`.
fn fake_az(tag: &str, rest_failures: u32, create_failures: u32, create_error: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyflip-deploy-hook-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let script = format!(
        r#"#!/bin/sh
dir="{dir}"
echo "$*" >> "$dir/calls"
count() {{ n=$(cat "$dir/$1" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$dir/$1"; echo "$n"; }}
case "$1 $2" in
  "account show") exit 0 ;;
  "rest --method")
    n=$(count rest)
    [ "$n" -gt {rest_failures} ] && exit 0
    echo "ERROR: (NotFound) Error retrieving function." >&2; exit 1 ;;
  "deployment group")
    n=$(count create)
    [ "$n" -gt {create_failures} ] && exit 0
    echo "{create_error}" >&2; exit 1 ;;
esac
echo "unexpected az call: $*" >&2
exit 2
"#,
        dir = dir.display()
    );
    let az = dir.join("az");
    std::fs::write(&az, script).unwrap_or_else(|e| panic!("{}: {e}", az.display()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn run(dir: &Path, topics: &str) -> (bool, String, Vec<String>) {
    run_with(dir, topics, &[])
}

fn run_with(dir: &Path, topics: &str, extra: &[(&str, &str)]) -> (bool, String, Vec<String>) {
    let output = Command::new("sh")
        .arg(root().join("scripts/subscribe-eventgrid.sh"))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
        .env("FUNCTION_APP_ID", APP)
        .env(
            "DEAD_LETTER_STORAGE_ACCOUNT_ID",
            "/subscriptions/a/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/stkf",
        )
        .env("DEAD_LETTER_CONTAINER", "eventgrid-deadletter")
        .env("EVENTGRID_SYSTEM_TOPIC_IDS", topics)
        .env("SUBSCRIBE_ATTEMPTS", "4")
        .env("SUBSCRIBE_RETRY_SECONDS", "0")
        .envs(extra.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running the hook: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let calls = std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    (output.status.success(), text, calls)
}

#[test]
fn it_waits_for_the_function_retries_validation_and_subscribes_every_topic() {
    let dir = fake_az(
        "ok",
        2,
        1,
        "ERROR: Endpoint validation: Destination endpoint not found.",
    );
    let (ok, text, calls) = run(&dir, &format!("{TOPIC_A} {TOPIC_B}"));
    assert!(ok, "{text}");
    let rests: Vec<&String> = calls.iter().filter(|c| c.starts_with("rest")).collect();
    assert_eq!(
        rests.len(),
        3,
        "two misses, then the function is there: {calls:?}"
    );
    assert!(rests[0].contains(&format!("{APP}/functions/KeyVaultEvents?api-version=")));
    let creates: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("deployment group create"))
        .collect();
    assert_eq!(
        creates.len(),
        3,
        "topic A retried once, topic B at once: {calls:?}"
    );
    assert!(
        creates[2].contains("--subscription 00000000-0000-0000-0000-00000000000b --resource-group rg-other")
    );
    assert!(creates[2].contains("systemTopicName=keyflip-kv-two"));
    assert!(creates[2].contains(&format!("functionAppId={APP}")));
    assert!(creates[2].contains("eventgrid-subscription.bicep"));
    assert!(
        text.contains("keyflip-kv-one -> KeyVaultEvents subscribed"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn any_other_error_stops_at_once() {
    let dir = fake_az(
        "denied",
        0,
        9,
        "ERROR: (AuthorizationFailed) The client does not have authorization",
    );
    let (ok, text, calls) = run(&dir, TOPIC_A);
    assert!(!ok, "{text}");
    assert!(text.contains("AuthorizationFailed"), "{text}");
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("deployment")).count(),
        1,
        "{calls:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_function_that_never_appears_is_named() {
    let dir = fake_az("absent", 99, 0, "");
    let (ok, text, _) = run(&dir, TOPIC_A);
    assert!(!ok);
    assert!(
        text.contains("KeyVaultEvents") && text.contains("deploy the code first"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_outputs_say_how_to_run_it() {
    let dir = fake_az("outputs", 0, 0, "");
    let output = Command::new("sh")
        .arg(root().join("scripts/subscribe-eventgrid.sh"))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        text.contains("FUNCTION_APP_ID is not set") && text.contains("--resource-group"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn queue_delivery_subscribes_the_events_queue_without_waiting_for_the_function() {
    // The function is never indexed: queue delivery does not need it.
    let dir = fake_az("queue", 99, 0, "");
    let (ok, text, calls) = run_with(
        &dir,
        TOPIC_A,
        &[
            ("EVENT_DELIVERY", "queue"),
            ("EVENTS_QUEUE_NAME", "keyflip-events"),
        ],
    );
    assert!(ok, "{text}");
    assert!(!calls.iter().any(|c| c.starts_with("rest")), "{calls:?}");
    let create = calls
        .iter()
        .find(|c| c.starts_with("deployment group create"))
        .unwrap_or_else(|| panic!("no deployment: {calls:?}"));
    assert!(create.contains("delivery=queue"), "{create}");
    assert!(create.contains("queueName=keyflip-events"), "{create}");
    assert!(
        text.contains("keyflip-kv-one -> queue keyflip-events subscribed"),
        "{text}"
    );

    // An unknown mode is refused before anything is deployed.
    let (ok, text, _) = run_with(&dir, TOPIC_A, &[("EVENT_DELIVERY", "webhook")]);
    assert!(!ok);
    assert!(text.contains("neither push nor queue"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn push_is_the_default_delivery() {
    let dir = fake_az("default", 0, 0, "");
    let (ok, text, calls) = run(&dir, TOPIC_A);
    assert!(ok, "{text}");
    let create = calls
        .iter()
        .find(|c| c.starts_with("deployment group create"))
        .unwrap_or_else(|| panic!("no deployment: {calls:?}"));
    assert!(create.contains("delivery=push"), "{create}");
    let _ = std::fs::remove_dir_all(&dir);
}
