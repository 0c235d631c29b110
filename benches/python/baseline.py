"""The Python baseline of benches/sweep.rs: a straightforward rotation sweep with the official
Azure SDK for Python (azure-keyvault-secrets, azure-identity, azure-mgmt-cognitiveservices).

For each vault it lists the secrets (properties only), takes the due ones the way keyflip does
(enabled, tagged CredentialId / ProviderAddress / ValidityPeriodDays, `exp` within the lead) and,
on a thread pool, rotates each: get the secret, list the account's keys (and check the secret
holds the active one), regenerate the idle slot, set a new version with the new key, the
flipped CredentialId and a new expiry. No lease, no verification of the new key, no
one-resource-one-secret check: that is keyflip's extra work.

It reaches the local stand-in of Azure with the real host names and URLs: name resolution of
`*.vault.azure.net` and `management.azure.com` is sent to the emulator's address (port
included), the emulator's CA is trusted through REQUESTS_CA_BUNDLE, and tokens come from
azure-identity's ManagedIdentityCredential through the App Service protocol (IDENTITY_ENDPOINT,
IDENTITY_HEADER), as in a function app.

Prints `ready` once imports are done and the clients are built (cold start ends there), then,
unless --ready-only, one JSON line with what it did and measured.
"""

import argparse
import json
import os
import resource
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timedelta, timezone

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient

LEAD_DAYS = 30
TAGS = ("CredentialId", "ProviderAddress", "ValidityPeriodDays")


def route_to_emulator(address):
    """Sends the Azure host names to the emulator's `host:port`, keeping them in URLs, SNI and
    certificate checks (the emulator routes by host name)."""
    host, port = address.rsplit(":", 1)
    original = socket.getaddrinfo

    def getaddrinfo(name, service, *args, **kwargs):
        if isinstance(name, str) and (
            name.endswith(".vault.azure.net") or name == "management.azure.com"
        ):
            return original(host, int(port), *args, **kwargs)
        return original(name, service, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def transport(pool):
    """A requests transport whose connection pool fits the thread pool (requests keeps 10 a
    host by default, and would open and drop the rest)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=True)


class Clients:
    def __init__(self, vaults, subscription, pool):
        self.pool = pool
        self.credential = ManagedIdentityCredential()
        self.vaults = {
            v: SecretClient(f"https://{v}.vault.azure.net", self.credential, transport=transport(pool))
            for v in vaults
        }
        self.arm = {}
        self.lock = threading.Lock()
        self.management(subscription)

    def management(self, subscription):
        with self.lock:
            client = self.arm.get(subscription)
            if client is None:
                client = CognitiveServicesManagementClient(
                    self.credential, subscription, transport=transport(self.pool)
                )
                self.arm[subscription] = client
            return client


def parse_address(address):
    parts = address.strip("/").split("/")
    lower = [p.lower() for p in parts]
    if (
        len(parts) != 8
        or lower[0] != "subscriptions"
        or lower[2] != "resourcegroups"
        or lower[4] != "providers"
        or lower[5] != "microsoft.cognitiveservices"
        or lower[6] != "accounts"
    ):
        raise ValueError(f"not an AI services account: {address}")
    return parts[1], parts[3], parts[7]


def due(props, now):
    tags = props.tags or {}
    return (
        props.enabled is not False
        and all(t in tags for t in TAGS)
        and props.expires_on is not None
        and props.expires_on <= now + timedelta(days=LEAD_DAYS)
    )


def rotate(clients, vault, name):
    started = time.perf_counter()
    secrets = clients.vaults[vault]
    secret = secrets.get_secret(name)
    tags = dict(secret.properties.tags or {})
    subscription, group, account = parse_address(tags["ProviderAddress"])
    arm = clients.management(subscription)
    active = tags["CredentialId"].lower()
    idle = {"key1": "key2", "key2": "key1"}[active]
    keys = arm.accounts.list_keys(group, account)
    if getattr(keys, active) != secret.value:
        raise RuntimeError(f"{vault}/{name}: the secret does not hold the account's {active}")
    regenerated = arm.accounts.regenerate_key(group, account, idle.capitalize())
    tags["CredentialId"] = idle
    expires = datetime.now(timezone.utc) + timedelta(days=int(tags["ValidityPeriodDays"]))
    secrets.set_secret(
        name,
        getattr(regenerated, idle),
        tags=tags,
        expires_on=expires,
        content_type=secret.properties.content_type,
    )
    return time.perf_counter() - started


def list_due(clients, vault):
    now = datetime.now(timezone.utc)
    listed, found = 0, []
    for props in clients.vaults[vault].list_properties_of_secrets():
        listed += 1
        if due(props, now):
            found.append(props.name)
    return vault, listed, found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--emulator", required=True, help="host:port of the local stand-in")
    parser.add_argument("--vaults", required=True, help="comma-separated vault names")
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--ready-only", action="store_true")
    args = parser.parse_args()

    route_to_emulator(args.emulator)
    vaults = args.vaults.split(",")
    clients = Clients(vaults, args.subscription, args.concurrency)
    print("ready", flush=True)
    if args.ready_only:
        return

    started = time.perf_counter()
    cpu_started = time.process_time()
    with ThreadPoolExecutor(max_workers=max(args.concurrency, len(vaults))) as pool:
        listings = list(pool.map(lambda v: list_due(clients, v), vaults))
    listed_s = time.perf_counter() - started
    cpu_listed = time.process_time()

    work = [(vault, name) for vault, _, names in listings for name in names]
    durations, errors = [], []
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        futures = {pool.submit(rotate, clients, v, n): (v, n) for v, n in work}
        for future in as_completed(futures):
            try:
                durations.append(future.result())
            except Exception as error:  # a failed rotation is counted, not fatal
                errors.append(f"{futures[future][0]}/{futures[future][1]}: {type(error).__name__}: {error}"[:300])
    elapsed = time.perf_counter() - started
    durations.sort()
    print(
        json.dumps(
            {
                "listed": sum(n for _, n, _ in listings),
                "due": len(work),
                "rotated": len(durations),
                "failed": len(errors),
                "errors": errors[:5],
                "list_s": listed_s,
                "work_s": elapsed,
                "rotation_median_s": durations[len(durations) // 2] if durations else None,
                "cpu_s": time.process_time() - cpu_started,
                "cpu_rotations_s": time.process_time() - cpu_listed,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
