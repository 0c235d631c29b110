#!/bin/sh
# The second step of a keyflip deployment: subscribes each vault's Event Grid system topic to
# keyflip (infra/eventgrid-subscription.bicep), after the code is deployed. With main.bicep's
# eventDelivery=push (output EVENT_DELIVERY; the default when it is absent) the destination is
# the KeyVaultEvents function: Event Grid refuses a function that does not exist yet, so this
# waits until the app has indexed KeyVaultEvents and retries while Event Grid still cannot see
# it. With eventDelivery=queue the destination is the EVENTS_QUEUE_NAME queue of the app's
# storage account, written with the topic's system-assigned identity: nothing to wait for.
# Running it again changes nothing (the deployment is an idempotent PUT); switching the mode
# and running it again moves the subscription to the other destination.
#
# azd runs it as the project's postdeploy hook and passes main.bicep's outputs as environment
# variables. With the Azure CLI alone, run it after `az deployment group create` and the code
# deployment:
#
#   scripts/subscribe-eventgrid.sh --resource-group <rg> [--deployment <name>]
#
# which reads the same outputs from that deployment (default name: main). Needs `az` signed in
# (`az login`; azd's own login is not enough) with Microsoft.EventGrid/systemTopics/
# eventSubscriptions/write on each topic and Microsoft.Web/sites/functions/read on the app.
#
# Environment (tests and impatient people): SUBSCRIBE_ATTEMPTS (default 20) and
# SUBSCRIBE_RETRY_SECONDS (default 15) bound the waiting.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
template="$here/../infra/eventgrid-subscription.bicep"
attempts=${SUBSCRIBE_ATTEMPTS:-20}
pause=${SUBSCRIBE_RETRY_SECONDS:-15}

fail() {
  echo "subscribe-eventgrid: $*" >&2
  exit 1
}

resource_group=""
deployment="main"
while [ $# -gt 0 ]; do
  case "$1" in
    --resource-group | -g)
      [ $# -ge 2 ] || fail "$1 needs a value"
      resource_group=$2
      shift 2
      ;;
    --deployment | -n)
      [ $# -ge 2 ] || fail "$1 needs a value"
      deployment=$2
      shift 2
      ;;
    -h | --help)
      sed -n '2,20p' "$0"
      exit 0
      ;;
    *)
      fail "unknown argument '$1' (expected --resource-group <rg> [--deployment <name>])"
      ;;
  esac
done

command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is not installed; install it and run 'az login'"
az account show --output none 2>/dev/null || fail "the Azure CLI is not signed in: run 'az login' (azd's login does not sign az in)"

# One output of the deployment: from the environment (azd), else from the deployment (az).
output() {
  eval "value=\${$1:-}"
  if [ -z "$value" ] && [ -n "$resource_group" ]; then
    value=$(az deployment group show --resource-group "$resource_group" --name "$deployment" \
      --query "properties.outputs.$1.value" --output tsv) ||
      fail "cannot read output $1 of deployment '$deployment' in resource group '$resource_group'"
  fi
  [ -n "$value" ] || fail "$1 is not set: run this as azd's postdeploy hook, or pass --resource-group <rg> of the main.bicep deployment"
  printf '%s' "$value"
}

# An output older deployments lack: its value, or the default given.
optional_output() {
  eval "value=\${$1:-}"
  if [ -z "$value" ] && [ -n "$resource_group" ]; then
    value=$(az deployment group show --resource-group "$resource_group" --name "$deployment" \
      --query "properties.outputs.$1.value" --output tsv 2>/dev/null) || value=""
  fi
  [ -n "$value" ] || value=$2
  printf '%s' "$value"
}

app_id=$(output FUNCTION_APP_ID)
dead_letter_account=$(output DEAD_LETTER_STORAGE_ACCOUNT_ID)
dead_letter_container=$(output DEAD_LETTER_CONTAINER)
topics=$(output EVENTGRID_SYSTEM_TOPIC_IDS)
delivery=$(optional_output EVENT_DELIVERY push)
queue_name=$(optional_output EVENTS_QUEUE_NAME keyflip-events)
case "$delivery" in
  push) destination="KeyVaultEvents" ;;
  queue) destination="queue $queue_name" ;;
  *) fail "EVENT_DELIVERY='$delivery' is neither push nor queue (main.bicep's eventDelivery)" ;;
esac

# 1. Push: wait until the app has indexed KeyVaultEvents (the code deployment must have run).
i=1
[ "$delivery" = queue ] || until az rest --method get --url "$app_id/functions/KeyVaultEvents?api-version=2024-04-01" --output none 2>/dev/null; do
  [ "$i" -lt "$attempts" ] ||
    fail "the function KeyVaultEvents of $app_id is still not there after $attempts attempts: deploy the code first (azd deploy, or the package of scripts/package.sh), then run this again"
  echo "subscribe-eventgrid: KeyVaultEvents is not indexed yet (attempt $i of $attempts); waiting ${pause}s"
  i=$((i + 1))
  sleep "$pause"
done

# 2. One event subscription per system topic, retried while Event Grid cannot see the function.
for topic in $topics; do
  # /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.EventGrid/systemTopics/<name>
  sub=$(printf '%s' "$topic" | cut -d/ -f3)
  group=$(printf '%s' "$topic" | cut -d/ -f5)
  name=$(printf '%s' "$topic" | cut -d/ -f9)
  [ -n "$sub" ] && [ -n "$group" ] && [ -n "$name" ] || fail "'$topic' is not a system topic resource id"
  short=$(printf '%s' "$name" | cut -c1-40)
  i=1
  while :; do
    if result=$(az deployment group create --subscription "$sub" --resource-group "$group" \
      --name "keyflip-eventgrid-$short" --template-file "$template" \
      --parameters systemTopicName="$name" functionAppId="$app_id" \
      deadLetterStorageAccountId="$dead_letter_account" deadLetterContainerName="$dead_letter_container" \
      delivery="$delivery" queueName="$queue_name" \
      --output none 2>&1); then
      echo "subscribe-eventgrid: $name -> $destination subscribed"
      break
    fi
    case "$result" in
      *"Endpoint validation"* | *"Destination endpoint not found"* | *"Unsupported Azure Function Trigger"* | *"EndpointValidation"*)
        [ "$i" -lt "$attempts" ] ||
          fail "Event Grid still cannot see KeyVaultEvents after $attempts attempts: $result"
        echo "subscribe-eventgrid: Event Grid cannot see KeyVaultEvents yet (attempt $i of $attempts); waiting ${pause}s"
        i=$((i + 1))
        sleep "$pause"
        ;;
      *)
        fail "subscribing $name failed: $result"
        ;;
    esac
  done
done
