//! Blob Storage through the emulator's proxy to a real Azurite: the official
//! `azure_storage_blob` client on `https://<account>.blob.core.windows.net`, tokens from the
//! emulator, faults and the call log as for every other service.

use std::net::TcpStream;
use std::time::Duration;

use azure_core::http::{ClientOptions, RequestContent, RetryOptions};
use azure_storage_blob::models::{BlobClientAcquireLeaseOptions, BlobClientAcquireLeaseResultHeaders};
use azure_storage_blob::{BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions};
use emulator::azurite::{Azurite, BLOB_API_VERSION};
use emulator::calls::Call;
use emulator::faults::{FaultRule, LatencyRule, Phase};

use crate::helpers::{TestEmulator, http_error, spawn_emulator};

const ACCOUNT: &str = "devstoreaccount1";

struct Storage {
    app: TestEmulator,
    azurite: Azurite,
}

async fn spawn_storage() -> Storage {
    let app = spawn_emulator().await;
    let azurite = app.emulator.start_azurite(Vec::new()).expect("Azurite starts");
    Storage { app, azurite }
}

impl Storage {
    fn options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(self.app.transport()),
            retry: RetryOptions::none(),
            ..Default::default()
        }
    }

    fn container(&self, name: &str) -> BlobContainerClient {
        let url = format!("https://{ACCOUNT}.blob.core.windows.net/{name}");
        BlobContainerClient::new(
            url.parse().unwrap(),
            Some(self.app.credential()),
            Some(BlobContainerClientOptions {
                client_options: self.options(),
                version: BLOB_API_VERSION.into(),
            }),
        )
        .unwrap()
    }

    fn blob(&self, path: &str) -> BlobClient {
        let url = format!("https://{ACCOUNT}.blob.core.windows.net/{path}");
        BlobClient::new(
            url.parse().unwrap(),
            Some(self.app.credential()),
            Some(BlobClientOptions {
                client_options: self.options(),
                version: BLOB_API_VERSION.into(),
            }),
        )
        .unwrap()
    }

    async fn calls(&self, operation: &str) -> Vec<Call> {
        self.app.control.calls(Some(operation)).await.unwrap()
    }

    /// A container `locks` holding an empty blob `kv1/s1`.
    async fn with_blob(&self) -> BlobClient {
        self.container("locks").create(None).await.unwrap();
        let blob = self.blob("locks/kv1/s1");
        blob.upload(RequestContent::from(Vec::new()), None).await.unwrap();
        blob
    }
}

async fn acquire(blob: &BlobClient, proposed: &str) -> azure_core::Result<String> {
    let options = BlobClientAcquireLeaseOptions {
        proposed_lease_id: Some(proposed.into()),
        ..Default::default()
    };
    let response = blob.acquire_lease(20, Some(options)).await?;
    Ok(response.lease_id()?.unwrap_or_default())
}

const LEASE_A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const LEASE_B: &str = "bbbbbbbb-0000-0000-0000-000000000002";

#[tokio::test]
async fn leases_work_through_the_proxy_and_every_call_is_logged_with_its_caller() {
    let storage = spawn_storage().await;
    let blob = storage.with_blob().await;

    assert_eq!(acquire(&blob, LEASE_A).await.unwrap(), LEASE_A);
    let held = acquire(&blob, LEASE_B).await.unwrap_err();
    assert_eq!(http_error(&held), (409, Some("LeaseAlreadyPresent".into())));
    blob.renew_lease(LEASE_A.into(), None).await.unwrap();
    blob.release_lease(LEASE_A.into(), None).await.unwrap();
    assert_eq!(acquire(&blob, LEASE_B).await.unwrap(), LEASE_B);

    let oid = storage.app.info.system_identity.principal_id.clone();
    let created = storage.calls("Container_Create").await;
    assert_eq!(created.len(), 1);
    assert_eq!((created[0].status, created[0].target.as_str()), (201, "locks"));
    assert_eq!(created[0].caller.as_deref(), Some(oid.as_str()));
    assert_eq!(storage.calls("Blob_Upload").await[0].target, "locks/kv1/s1");

    let acquires = storage.calls("Blob_AcquireLease").await;
    let seen: Vec<_> = acquires
        .iter()
        .map(|c| {
            let lease = c.lease.clone().unwrap();
            (
                c.status,
                lease.duration_seconds,
                lease.lease_id,
                lease.upstream_status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (201, Some(20), Some(LEASE_A.to_string()), Some(201)),
            (409, Some(20), Some(LEASE_B.to_string()), Some(409)),
            (201, Some(20), Some(LEASE_B.to_string()), Some(201)),
        ]
    );
    for call in &acquires {
        assert_eq!(call.caller.as_deref(), Some(oid.as_str()));
        let lease = call.lease.as_ref().unwrap();
        assert!(lease.answered_ms.unwrap() >= lease.received_ms);
        assert_eq!(call.api_version.as_deref(), Some(BLOB_API_VERSION));
    }
    let renew = &storage.calls("Blob_RenewLease").await[0];
    assert_eq!(renew.lease.as_ref().unwrap().lease_id.as_deref(), Some(LEASE_A));
    assert_eq!(storage.calls("Blob_ReleaseLease").await[0].status, 200);
}

#[tokio::test]
async fn an_after_fault_lets_azurite_act_and_answers_the_fault() {
    let storage = spawn_storage().await;
    let blob = storage.with_blob().await;
    let fault = FaultRule {
        phase: Phase::After,
        target: Some("locks/kv1/s1".into()),
        ..FaultRule::new("Blob_AcquireLease", 503, 1)
    };
    storage.app.control.fault(&fault).await.unwrap();

    let lost = acquire(&blob, LEASE_A).await.unwrap_err();
    assert_eq!(http_error(&lost), (503, Some("ServerBusy".into())));
    // Azurite took the lease all the same: the answer was lost, not the act.
    let held = acquire(&blob, LEASE_B).await.unwrap_err();
    assert_eq!(http_error(&held), (409, Some("LeaseAlreadyPresent".into())));

    let calls = storage.calls("Blob_AcquireLease").await;
    assert!(calls[0].faulted);
    assert_eq!(calls[0].status, 503);
    assert_eq!(calls[0].lease.as_ref().unwrap().upstream_status, Some(201));
    assert!(!calls[1].faulted);
}

#[tokio::test]
async fn a_before_fault_and_latency_apply_without_reaching_azurite() {
    let storage = spawn_storage().await;
    let blob = storage.with_blob().await;
    storage
        .app
        .control
        .fault(&FaultRule::new("Blob_AcquireLease", 500, 1))
        .await
        .unwrap();
    let failed = acquire(&blob, LEASE_A).await.unwrap_err();
    assert_eq!(http_error(&failed), (500, Some("InternalError".into())));
    assert_eq!(
        acquire(&blob, LEASE_A).await.unwrap(),
        LEASE_A,
        "nothing was held"
    );
    let calls = storage.calls("Blob_AcquireLease").await;
    assert_eq!(calls[0].lease.as_ref().unwrap().upstream_status, None);

    let rule = LatencyRule {
        operation: "Blob_RenewLease".into(),
        target: Some("locks".into()),
        delay_ms: 400,
        count: Some(1),
    };
    storage.app.control.latency(&rule).await.unwrap();
    let started = std::time::Instant::now();
    blob.renew_lease(LEASE_A.into(), None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn tokens_the_emulator_did_not_issue_are_refused_before_azurite() {
    let storage = spawn_storage().await;
    let response = storage
        .app
        .http
        .put(format!(
            "https://{ACCOUNT}.blob.core.windows.net/locks?restype=container"
        ))
        .header("x-ms-version", BLOB_API_VERSION)
        .bearer_auth("e30.e30.c2ln")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-ms-error-code"], "InvalidAuthenticationInfo");
    let calls = storage.calls("Container_Create").await;
    assert_eq!((calls[0].status, calls[0].caller.clone()), (401, None));

    // A token for another audience is refused too.
    let vault_token = storage
        .app
        .control
        .token("https://vault.azure.net")
        .await
        .unwrap();
    let response = storage
        .app
        .http
        .put(format!(
            "https://{ACCOUNT}.blob.core.windows.net/locks?restype=container"
        ))
        .header("x-ms-version", BLOB_API_VERSION)
        .bearer_auth(vault_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(storage.azurite.output().contains("Azurite Blob service"));
}

#[tokio::test]
async fn without_an_upstream_storage_calls_say_what_is_missing() {
    let app = spawn_emulator().await;
    let response = app
        .http
        .get(format!("https://{ACCOUNT}.blob.core.windows.net/?comp=list"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("Azurite"));
}

#[tokio::test]
async fn dropping_the_handle_stops_azurite() {
    let app = spawn_emulator().await;
    let azurite = app.emulator.start_azurite(Vec::new()).unwrap();
    let addr = azurite.address();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
    drop(azurite);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
