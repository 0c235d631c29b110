//! The blob lease against a real Azurite behind the emulator's storage proxy: keyflip's shared
//! transport (`KEYFLIP_CA_BUNDLE`, `KEYFLIP_CONNECT_TO`) reaching
//! `https://<account>.blob.core.windows.net`, tokens from the emulator's managed-identity
//! endpoint, or an account SAS signed from a connection string's key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, RetryOptions};
use azure_storage_blob::models::{BlobClientAcquireLeaseOptions, BlobClientBreakLeaseOptions};
use azure_storage_blob::{BlobClient, BlobClientOptions};
use emulator::azurite::{Azurite, AzuriteAccount};
use emulator::calls::Call;
use emulator::client::ControlCredential;
use emulator::faults::{FaultRule, LatencyRule, Phase};
use emulator::{ControlClient, Emulator, EmulatorInfo, EmulatorOptions};
use keyflip::app::AzureAccess;
use keyflip::config::Settings;
use keyflip::domain::{SecretName, VaultName};
use keyflip::lease::blob::{BLOB_API_VERSION, BlobLeases};
use keyflip::lease::storage::StorageConfig;
use keyflip::lease::{LeaseError, LeaseKey, Leases};

use crate::helpers::{base_vars, test_dir};

/// A second account Azurite serves, reached with its key.
const KEY_ACCOUNT: &str = "keyflipstg";
const ACCOUNT_KEY: &str = "a2V5ZmxpcC1sZWFzZS10ZXN0cy1hY2NvdW50LWtleS0wMTIzNDU2Nzg5YWJjZGVm";
/// The account used with tokens.
const TOKEN_ACCOUNT: &str = "devstoreaccount1";

/// A token credential speaking the App Service managed-identity protocol to the emulator,
/// as `ManagedIdentityCredential` does (which reads its endpoint from the process environment,
/// so it cannot be pointed at a per-test emulator in-process).
#[derive(Debug)]
struct ManagedIdentityEndpoint {
    endpoint: String,
    header: String,
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl TokenCredential for ManagedIdentityEndpoint {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let resource = scopes[0].trim_end_matches("/.default");
        let answer: serde_json::Value = self
            .http
            .get(format!(
                "{}?api-version=2019-08-01&resource={resource}",
                self.endpoint
            ))
            .header("X-IDENTITY-HEADER", &self.header)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expires = answer["expires_on"].as_str().unwrap().parse::<i64>().unwrap();
        Ok(AccessToken::new(
            answer["access_token"].as_str().unwrap().to_string(),
            azure_core::time::OffsetDateTime::from_unix_timestamp(expires).unwrap(),
        ))
    }
}

struct World {
    _emulator: Emulator,
    info: EmulatorInfo,
    control: ControlClient,
    azurite: Azurite,
    vars: HashMap<String, String>,
    access: AzureAccess,
}

async fn world() -> World {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let azurite = emulator
        .start_azurite(vec![AzuriteAccount {
            name: KEY_ACCOUNT.into(),
            key: ACCOUNT_KEY.into(),
        }])
        .unwrap();
    let info = emulator.info(None);
    let dir = test_dir("lease");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &info.ca_pem).unwrap();
    let vars = base_vars(&info, &ca_file);
    let settings = Settings::from_vars(&vars).unwrap();
    let access = AzureAccess::new(&settings).unwrap();
    World {
        control: ControlClient::new(&info.control_url),
        _emulator: emulator,
        info,
        azurite,
        vars,
        access,
    }
}

impl World {
    fn config(&self, pairs: &[(&str, &str)]) -> StorageConfig {
        let mut vars = self.vars.clone();
        for (k, v) in pairs {
            vars.insert(k.to_string(), v.to_string());
        }
        StorageConfig::from_vars(&vars).unwrap().unwrap()
    }

    fn credential(&self) -> Arc<dyn TokenCredential> {
        Arc::new(ManagedIdentityEndpoint {
            endpoint: self.info.identity_endpoint.clone(),
            header: self.info.identity_header.clone(),
            http: reqwest::Client::new(),
        })
    }

    /// Leases with a token from the managed-identity endpoint (`__blobServiceUri`).
    fn token_leases(&self) -> BlobLeases {
        let uri = format!("https://{TOKEN_ACCOUNT}.blob.core.windows.net");
        let config = self.config(&[("AzureWebJobsStorage__blobServiceUri", &uri)]);
        BlobLeases::new(
            &config,
            Some(self.credential()),
            self.access.client_options.clone(),
        )
        .unwrap()
    }

    /// Leases signed with an account key (`AzureWebJobsStorage` connection string).
    fn key_leases(&self, key: &str) -> BlobLeases {
        let connection = format!(
            "DefaultEndpointsProtocol=https;AccountName={KEY_ACCOUNT};AccountKey={key};EndpointSuffix=core.windows.net"
        );
        let config = self.config(&[("AzureWebJobsStorage", &connection)]);
        BlobLeases::new(&config, None, self.access.client_options.clone()).unwrap()
    }

    /// The SDK's own client on a lease blob, as another instance (or an operator) would hold it.
    fn other_party(&self, key: &LeaseKey) -> BlobClient {
        let url = format!(
            "https://{TOKEN_ACCOUNT}.blob.core.windows.net/keyflip-locks/{}",
            key.blob_name()
        );
        let client_options = ClientOptions {
            retry: RetryOptions::none(),
            ..self.access.client_options.clone()
        };
        BlobClient::new(
            url.parse().unwrap(),
            Some(Arc::new(ControlCredential(self.control.clone()))),
            Some(BlobClientOptions {
                client_options,
                version: BLOB_API_VERSION.into(),
            }),
        )
        .unwrap()
    }

    async fn calls(&self, operation: &str) -> Vec<Call> {
        self.control.calls(Some(operation)).await.unwrap()
    }
}

fn key(secret: &str) -> LeaseKey {
    LeaseKey::new(
        &VaultName::parse("kv-api").unwrap(),
        &SecretName::parse(secret).unwrap(),
    )
}

fn transient(result: Result<Box<dyn keyflip::lease::HeldLease>, LeaseError>) -> String {
    match result {
        Err(LeaseError::Transient(message)) => message,
        Err(other) => panic!("expected Transient, got {other:?}"),
        Ok(_) => panic!("expected Transient, got a lease"),
    }
}

#[tokio::test]
async fn a_lease_is_exclusive_renewable_and_free_again_once_released() {
    let world = world().await;
    let leases = world.token_leases();
    assert_eq!(
        leases.describe(),
        "blob https://devstoreaccount1.blob.core.windows.net/keyflip-locks"
    );

    let first = leases.acquire(&key("OpenAI-Key")).await.unwrap();
    assert!(matches!(
        leases.acquire(&key("openai-key")).await,
        Err(LeaseError::Held)
    ));
    first.renew().await.unwrap();
    first.release().await.unwrap();
    let again = leases.acquire(&key("OpenAI-Key")).await.unwrap();

    // The first acquire created the container and the blob; later ones are one call each.
    assert_eq!(world.calls("Container_Create").await.len(), 1);
    let uploads = world.calls("Blob_Upload").await;
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].target, "keyflip-locks/kv-api/openai-key");
    let acquires = world.calls("Blob_AcquireLease").await;
    let statuses: Vec<u16> = acquires.iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![404, 201, 409, 201]);
    let oid = &world.info.system_identity.principal_id;
    assert!(acquires.iter().all(|c| c.caller.as_ref() == Some(oid)));
    assert!(
        acquires
            .iter()
            .all(|c| c.lease.as_ref().unwrap().duration_seconds == Some(20))
    );
    again.release().await.unwrap();
}

#[tokio::test]
async fn a_renewal_after_someone_broke_the_lease_is_lost() {
    let world = world().await;
    let leases = world.token_leases();
    let held = leases.acquire(&key("s1")).await.unwrap();
    let breaker = world.other_party(&key("s1"));
    breaker
        .break_lease(Some(BlobClientBreakLeaseOptions {
            break_period: Some(0),
            ..Default::default()
        }))
        .await
        .unwrap();

    match held.renew().await {
        Err(LeaseError::Lost(why)) => assert!(why.contains("409"), "{why}"),
        other => panic!("expected Lost, got {other:?}"),
    }
    // A broken lease is free for the next rotation.
    leases.acquire(&key("s1")).await.unwrap();
}

/// Azurite's leases run on real time: the one test that waits for the shortest lease (15 s).
#[tokio::test]
async fn a_lease_nobody_renews_expires_by_itself() {
    let world = world().await;
    let leases = world.token_leases();
    leases.acquire(&key("s2")).await.unwrap().release().await.unwrap();
    let crashed = world.other_party(&key("s2"));
    crashed
        .acquire_lease(
            15,
            Some(BlobClientAcquireLeaseOptions {
                proposed_lease_id: Some("cccccccc-0000-4000-a000-000000000015".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let taken_at = Instant::now();
    assert!(matches!(leases.acquire(&key("s2")).await, Err(LeaseError::Held)));

    tokio::time::sleep(
        Duration::from_secs(15).saturating_sub(taken_at.elapsed()) + Duration::from_millis(500),
    )
    .await;
    leases.acquire(&key("s2")).await.unwrap();
}

#[tokio::test]
async fn a_lost_answer_is_retried_with_the_same_lease_id_and_takes_the_lease() {
    let world = world().await;
    let leases = world.token_leases();
    leases.acquire(&key("s3")).await.unwrap().release().await.unwrap();
    let fault = FaultRule {
        phase: Phase::After,
        ..FaultRule::new("Blob_AcquireLease", 503, 1)
    };
    world.control.fault(&fault).await.unwrap();

    let held = leases.acquire(&key("s3")).await.unwrap();
    held.renew().await.unwrap();
    let acquires = world.calls("Blob_AcquireLease").await;
    let last_two: Vec<_> = acquires[acquires.len() - 2..]
        .iter()
        .map(|c| (c.status, c.lease.as_ref().unwrap().upstream_status))
        .collect();
    assert_eq!(last_two, vec![(503, Some(201)), (201, Some(201))]);
}

#[tokio::test]
async fn storage_failing_after_it_acted_is_transient_never_acquired() {
    let world = world().await;
    let leases = world.token_leases();
    leases.acquire(&key("s4")).await.unwrap().release().await.unwrap();
    let fault = FaultRule {
        phase: Phase::After,
        target: Some("keyflip-locks/kv-api/s4".into()),
        ..FaultRule::new("Blob_AcquireLease", 503, 100)
    };
    world.control.fault(&fault).await.unwrap();

    let message = transient(leases.acquire(&key("s4")).await);
    assert!(message.contains("503 ServerBusy"), "{message}");
    assert!(message.contains("kv-api/s4"), "{message}");
    let faulted = world.calls("Blob_AcquireLease").await;
    assert!(faulted.iter().filter(|c| c.faulted).all(|c| c.status == 503));

    // Storage did grant it; keyflip gives the proposed id back, so nothing stays blocked.
    world.control.clear_faults().await.unwrap();
    let started = Instant::now();
    loop {
        match leases.acquire(&key("s4")).await {
            Ok(_) => break,
            Err(LeaseError::Held) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(other) => panic!("the granted lease was not given back: {other:?}"),
        }
    }
    let releases = world.calls("Blob_ReleaseLease").await;
    assert!(releases.iter().any(|c| c.status == 200), "{releases:?}");
}

#[tokio::test]
async fn latency_beyond_the_call_budget_ends_the_call_as_transient() {
    let world = world().await;
    let leases = world.token_leases().with_call_timeout(Duration::from_millis(600));
    leases.acquire(&key("s5")).await.unwrap().release().await.unwrap();
    let rule = LatencyRule {
        operation: "Blob_AcquireLease".into(),
        target: None,
        delay_ms: 5_000,
        count: Some(1),
    };
    world.control.latency(&rule).await.unwrap();

    let started = Instant::now();
    let message = transient(leases.acquire(&key("s5")).await);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(message.contains("did not answer within 600 ms"), "{message}");
}

#[tokio::test]
async fn access_refused_is_permanent_and_names_the_role() {
    let world = world().await;
    let leases = world.token_leases();
    let fault = FaultRule {
        code: Some("AuthorizationPermissionMismatch".into()),
        ..FaultRule::new("Blob_AcquireLease", 403, 1)
    };
    world.control.fault(&fault).await.unwrap();
    match leases.acquire(&key("s6")).await {
        Err(LeaseError::Permanent(message)) => {
            assert!(message.contains("Storage Blob Data Contributor"), "{message}");
            assert!(message.contains("AuthorizationPermissionMismatch"), "{message}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
}

/// Collects every log line of the test's thread (the current-thread runtime runs the emulator,
/// Azurite's proxy and keyflip's calls on it).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_account_key_signs_a_sas_that_works_and_is_never_shown() {
    let world = world().await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let leases = world.key_leases(ACCOUNT_KEY);
    let first = leases.acquire(&key("sas-secret")).await.unwrap();
    assert!(matches!(
        leases.acquire(&key("sas-secret")).await,
        Err(LeaseError::Held)
    ));
    first.renew().await.unwrap();
    first.release().await.unwrap();
    leases
        .acquire(&key("sas-secret"))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let acquires = world.calls("Blob_AcquireLease").await;
    assert!(
        acquires.iter().all(|c| c.caller.is_none()),
        "a SAS carries no identity"
    );

    // The wrong key: storage refuses the signature, and the message says what to check.
    let wrong = world.key_leases("d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=");
    let refused = match wrong.acquire(&key("sas-secret")).await {
        Err(LeaseError::Permanent(message)) => message,
        other => panic!("expected Permanent, got {other:?}"),
    };
    assert!(refused.contains("AccountKey"), "{refused}");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let shown = format!(
        "{logs}\n{refused}\n{leases:?}\n{first:?}\n{:?}",
        world.control.calls(None).await.unwrap()
    );
    assert!(!logs.is_empty(), "TRACE logging was captured");
    assert!(!shown.contains(ACCOUNT_KEY));
    for (at, _) in shown.match_indices("sig=") {
        assert!(shown[at + 4..].starts_with("REDACTED"), "{}", &shown[at..at + 40]);
    }
    assert!(world.azurite.output().contains("Azurite Blob service"));
}

#[tokio::test]
async fn the_mark_key_is_made_once_beside_the_leases_and_every_instance_reads_the_same() {
    // Arrange: two instances' clients on one storage account, nothing stored yet
    let world = world().await;
    let (one, two) = (world.token_leases(), world.token_leases());

    // Act
    let first = one.mark_key().await.unwrap();
    let second = two.mark_key().await.unwrap();
    let again = one.mark_key().await.unwrap();

    // Assert: one key, created once (if-none-match) in keyflip-locks/.mark-key, never printed
    let parts = ["v1", "some-active-key"];
    assert_eq!(first.proof(&parts), second.proof(&parts));
    assert_eq!(first.proof(&parts), again.proof(&parts));
    let uploads = world.calls("Blob_Upload").await;
    let made: Vec<_> = uploads
        .iter()
        .filter(|c| c.target == "keyflip-locks/.mark-key")
        .collect();
    assert_eq!(made.len(), 1, "{uploads:?}");
    assert_eq!(format!("{first:?}"), "MarkKey(<redacted>)");
}
