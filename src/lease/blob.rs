//! The rotation lease on Azure Blob Storage: one empty blob per secret,
//! `keyflip-locks/<vault>/<secret, lower case>`, leased for [`LEASE_SECONDS`] through the
//! official `azure_storage_blob` client.
//!
//! The common path is one call: acquire the blob's lease with a lease id keyflip proposes (so a
//! retry after a lost answer takes the same lease again instead of finding it "held"). Only when
//! storage answers `BlobNotFound` is the empty blob created (`If-None-Match: *`), and on
//! `ContainerNotFound` the container first (`ContainerAlreadyExists` is fine); then it acquires
//! again. Answers map to [`LeaseError`]: `LeaseAlreadyPresent` → `Held`; 401/403 → `Permanent`,
//! naming the role keyflip's identity needs; 408/429/5xx, connection failures and calls that
//! outlive their time bound → `Transient`; a renewal storage refuses (the lease was broken,
//! expired and taken, or the blob is gone) → `Lost`.
//!
//! Authentication follows [`StorageConfig`]: an Entra token from keyflip's credential (https
//! only), or with an account key an account SAS signed here (HMAC-SHA256, valid one hour) and
//! no credential; a SAS from the connection string is used as given. Every client uses keyflip's
//! shared transport (CA bundle, `KEYFLIP_CONNECT_TO`) and bounded retries, and sends blob
//! `x-ms-version` [`BLOB_API_VERSION`], which Azure and the pinned Azurite both serve.
//!
//! No key or SAS signature reaches a log line, an error or `Debug`: errors are built from
//! status and error code plus scrubbed transport text, and every type holding a URL with a SAS
//! has a hand-written `Debug`. The start-up wiring (not this file) decides which backend runs.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, Etag, RequestContent, StatusCode};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientAcquireLeaseResultHeaders, BlobClientUploadOptions,
};
use azure_storage_blob::{BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions};
use time::OffsetDateTime;
use url::Url;

use super::storage::{StorageAuth, StorageConfig};
use super::{HeldLease, LEASE_SECONDS, LeaseError, LeaseKey, Leases, MarkKey};

/// The container that holds one lease blob per secret.
pub const CONTAINER: &str = "keyflip-locks";
/// The blob `x-ms-version` keyflip sends (the SDK's default, 2026-04-06, is newer than Azurite
/// 3.35 serves; leases have not changed since long before either).
pub const BLOB_API_VERSION: &str = "2025-11-05";
/// The time one storage call may take, retries included, unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a signed account SAS is valid.
const SAS_LIFETIME: time::Duration = time::Duration::hours(1);
/// The role keyflip's identity needs on the account.
const ROLE: &str = "Storage Blob Data Contributor";

/// How calls authenticate.
#[derive(Clone)]
enum Auth {
    Token(Arc<dyn TokenCredential>),
    AccountKey { account: String, key: Secret },
    Sas(Secret),
}

/// Leases on blobs of one storage account's `keyflip-locks` container.
#[derive(Clone)]
pub struct BlobLeases {
    /// The blob service endpoint, ending with `/`, without a query.
    endpoint: Url,
    auth: Auth,
    client_options: ClientOptions,
    call_timeout: Duration,
}

impl fmt::Debug for BlobLeases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::Token(_) => "token",
            Auth::AccountKey { .. } => "account-key SAS",
            Auth::Sas(_) => "SAS",
        };
        f.debug_struct("BlobLeases")
            .field("endpoint", &self.endpoint.as_str())
            .field("auth", &auth)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl BlobLeases {
    /// Leases in the storage `config` names. `credential` is required for identity-based
    /// settings (keyflip's credential, or one for `AzureWebJobsStorage__clientId`) and unused
    /// otherwise; `client_options` are the shared transport and bounded retries.
    pub fn new(
        config: &StorageConfig,
        credential: Option<Arc<dyn TokenCredential>>,
        client_options: ClientOptions,
    ) -> Result<Self, LeaseError> {
        let auth = match (&config.auth, credential) {
            (StorageAuth::Identity { .. }, Some(credential)) => {
                if config.blob_endpoint.scheme() != "https" {
                    return Err(LeaseError::Permanent(format!(
                        "{}: tokens are sent only over https, and {} is not",
                        config.source,
                        config.describe()
                    )));
                }
                Auth::Token(credential)
            }
            (StorageAuth::Identity { .. }, None) => {
                return Err(LeaseError::Permanent(format!(
                    "{}: identity-based storage needs a credential, and none was given",
                    config.source
                )));
            }
            (StorageAuth::AccountKey { account, key }, _) => Auth::AccountKey {
                account: account.clone(),
                key: key.clone(),
            },
            (StorageAuth::Sas(sas), _) => Auth::Sas(sas.clone()),
        };
        let mut endpoint = config.blob_endpoint.clone();
        endpoint.set_query(None);
        Ok(Self {
            endpoint,
            auth,
            client_options,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        })
    }

    /// Bounds each storage call (retries included) to `timeout`.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The container's URL (no query).
    fn container_url(&self) -> Result<Url, LeaseError> {
        self.url_of(&[CONTAINER])
    }

    fn url_of(&self, segments: &[&str]) -> Result<Url, LeaseError> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| LeaseError::Permanent(format!("{} cannot hold a path", self.endpoint)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// `url` with the SAS query, when SAS is how calls authenticate; the credential otherwise.
    fn authorize(&self, mut url: Url) -> Result<(Url, Option<Arc<dyn TokenCredential>>), LeaseError> {
        match &self.auth {
            Auth::Token(credential) => Ok((url, Some(credential.clone()))),
            Auth::AccountKey { account, key } => {
                let sas = account_sas(account, key, OffsetDateTime::now_utc() + SAS_LIFETIME)?;
                url.set_query(Some(sas.secret()));
                Ok((url, None))
            }
            Auth::Sas(sas) => {
                url.set_query(Some(sas.secret()));
                Ok((url, None))
            }
        }
    }

    fn blob_client(&self, key: &LeaseKey) -> Result<BlobClient, LeaseError> {
        let blob = key.blob_name();
        let segments: Vec<&str> = std::iter::once(CONTAINER).chain(blob.split('/')).collect();
        self.blob_client_at(&segments)
    }

    fn blob_client_at(&self, segments: &[&str]) -> Result<BlobClient, LeaseError> {
        let (url, credential) = self.authorize(self.url_of(segments)?)?;
        let options = BlobClientOptions {
            client_options: self.client_options.clone(),
            version: BLOB_API_VERSION.to_string(),
        };
        BlobClient::new(url, credential, Some(options)).map_err(|e| {
            LeaseError::Permanent(format!("cannot build the blob client: {}", scrub(&e.to_string())))
        })
    }

    fn container_client(&self) -> Result<BlobContainerClient, LeaseError> {
        let (url, credential) = self.authorize(self.container_url()?)?;
        let options = BlobContainerClientOptions {
            client_options: self.client_options.clone(),
            version: BLOB_API_VERSION.to_string(),
        };
        BlobContainerClient::new(url, credential, Some(options)).map_err(|e| {
            LeaseError::Permanent(format!(
                "cannot build the container client: {}",
                scrub(&e.to_string())
            ))
        })
    }

    /// One acquire call with `proposed` as the lease id.
    async fn acquire_once(&self, blob: &BlobClient, what: &str, proposed: &str) -> Result<(), Failure> {
        let options = BlobClientAcquireLeaseOptions {
            proposed_lease_id: Some(proposed.to_string()),
            ..Default::default()
        };
        let call = blob.acquire_lease(LEASE_SECONDS as i32, Some(options));
        let response = bounded(self.call_timeout, what, call).await?;
        // Storage answers with the proposed id; a different one would not be ours to renew.
        match response.lease_id() {
            Ok(Some(id)) if id.eq_ignore_ascii_case(proposed) => Ok(()),
            Ok(other) => Err(Failure::Unexpected(format!(
                "{what}: storage granted lease id {other:?} instead of the proposed one"
            ))),
            Err(e) => Err(Failure::Unexpected(format!(
                "{what}: the answer's lease id cannot be read: {}",
                scrub(&e.to_string())
            ))),
        }
    }

    /// Creates the empty lease blob unless it exists, and first the container when storage
    /// said it is missing (or says so now).
    async fn create_blob(
        &self,
        blob: &BlobClient,
        what: &str,
        container_missing: bool,
    ) -> Result<(), LeaseError> {
        if container_missing {
            self.create_container().await?;
        }
        match self.upload_empty(blob, what).await {
            Ok(()) => Ok(()),
            Err(Failure::Http { code: Some(code), .. }) if code == "ContainerNotFound" => {
                self.create_container().await?;
                match self.upload_empty(blob, what).await {
                    Ok(()) => Ok(()),
                    Err(f) if f.already_exists() => Ok(()),
                    Err(f) => Err(f.into_error(&self.describe_role())),
                }
            }
            Err(f) if f.already_exists() => Ok(()),
            Err(f) => Err(f.into_error(&self.describe_role())),
        }
    }

    async fn upload_empty(&self, blob: &BlobClient, what: &str) -> Result<(), Failure> {
        let options = BlobClientUploadOptions {
            if_none_match: Some(Etag::from("*")),
            ..Default::default()
        };
        let call = blob.upload(RequestContent::from(Vec::new()), Some(options));
        bounded(
            self.call_timeout,
            &format!("creating the lease blob of {what}"),
            call,
        )
        .await
        .map(|_| ())
    }

    async fn create_container(&self) -> Result<(), LeaseError> {
        let container = self.container_client()?;
        let what = format!("creating the container {CONTAINER}");
        match bounded(self.call_timeout, &what, container.create(None)).await {
            Ok(_) => Ok(()),
            Err(Failure::Http { code: Some(code), .. }) if code == "ContainerAlreadyExists" => Ok(()),
            Err(f) => Err(f.into_error(&self.describe_role())),
        }
    }

    fn describe_role(&self) -> String {
        match &self.auth {
            Auth::Token(_) => format!(
                "grant keyflip's identity the role {ROLE} on the storage account of {}",
                self.endpoint
            ),
            Auth::AccountKey { account, .. } => format!(
                "check the AccountKey of '{account}' in AzureWebJobsStorage (keys rotated?) and that shared-key access is allowed on the account, or switch to the identity-based settings with {ROLE}"
            ),
            Auth::Sas(_) => "the SharedAccessSignature in AzureWebJobsStorage needs permissions rwc on services b, resource types co, and must not have expired".to_string(),
        }
    }
}

#[async_trait::async_trait]
impl Leases for BlobLeases {
    async fn acquire(&self, key: &LeaseKey) -> Result<Box<dyn HeldLease>, LeaseError> {
        let what = format!("the lease of {key}");
        let blob = self.blob_client(key)?;
        let proposed = lease_id();
        let outcome = match self.acquire_once(&blob, &what, &proposed).await {
            Err(f) if f.code_is("BlobNotFound") || f.code_is("ContainerNotFound") => {
                self.create_blob(&blob, &what, f.code_is("ContainerNotFound"))
                    .await?;
                self.acquire_once(&blob, &what, &proposed).await
            }
            other => other,
        };
        match outcome {
            Ok(()) => Ok(Box::new(BlobLease {
                key: key.clone(),
                blob,
                lease_id: proposed,
                call_timeout: self.call_timeout,
            })),
            Err(failure) => {
                let error = failure.into_error(&self.describe_role());
                if matches!(error, LeaseError::Transient(_)) {
                    // The answer may have been lost after storage granted the lease: give
                    // the proposed id back, best effort, so it does not block for 20 s.
                    let timeout = self.call_timeout;
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(timeout, blob.release_lease(proposed, None)).await;
                    });
                }
                Err(error)
            }
        }
    }

    fn describe(&self) -> String {
        let mut url = self.endpoint.clone();
        url.set_query(None);
        format!("blob {}{CONTAINER}", url)
    }

    /// Reads `keyflip-locks/.mark-key`; the first instance to need it creates it (if-none-match,
    /// so two instances starting at once agree on one key).
    async fn mark_key(&self) -> Result<MarkKey, LeaseError> {
        let blob = self.blob_client_at(&[CONTAINER, MARK_KEY_BLOB])?;
        let role = self.describe_role();
        let what = format!("the mark key ({CONTAINER}/{MARK_KEY_BLOB})");
        for _ in 0..2 {
            let reading = async { blob.download(None).await?.body.collect().await };
            match bounded(self.call_timeout, &format!("reading {what}"), reading).await {
                Ok(stored) => {
                    return MarkKey::from_stored(&stored)
                        .map_err(|e| LeaseError::Permanent(format!("{what}: {e}")));
                }
                Err(f) if f.code_is("BlobNotFound") || f.code_is("ContainerNotFound") => {
                    if f.code_is("ContainerNotFound") {
                        self.create_container().await?;
                    }
                    let made = MarkKey::random().map_err(|e| {
                        LeaseError::Permanent(format!("the system random generator failed: {e}"))
                    })?;
                    let options = BlobClientUploadOptions {
                        if_none_match: Some(Etag::from("*")),
                        ..Default::default()
                    };
                    let content = RequestContent::from(made.to_stored().into_bytes());
                    let upload = blob.upload(content, Some(options));
                    match bounded(self.call_timeout, &format!("creating {what}"), upload).await {
                        Ok(_) => return Ok(made),
                        // Another instance made it first: read theirs.
                        Err(f) if f.already_exists() => continue,
                        Err(f) => return Err(f.into_error(&role)),
                    }
                }
                Err(f) => return Err(f.into_error(&role)),
            }
        }
        Err(LeaseError::Transient(format!(
            "{what} was created and then not found; a retry will read it"
        )))
    }
}

/// The blob of the mark key, beside the leases (a vault name never starts with `.`).
pub const MARK_KEY_BLOB: &str = ".mark-key";

/// A lease this process holds on one blob.
struct BlobLease {
    key: LeaseKey,
    blob: BlobClient,
    lease_id: String,
    call_timeout: Duration,
}

impl fmt::Debug for BlobLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobLease")
            .field("key", &self.key)
            .field("lease_id", &self.lease_id)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HeldLease for BlobLease {
    async fn renew(&self) -> Result<(), LeaseError> {
        let what = format!("renewing the lease of {}", self.key);
        let call = self.blob.renew_lease(self.lease_id.clone(), None);
        match bounded(self.call_timeout, &what, call).await {
            Ok(_) => Ok(()),
            Err(f) => Err(f.into_lost_or_error()),
        }
    }

    async fn release(&self) -> Result<(), LeaseError> {
        let what = format!("releasing the lease of {}", self.key);
        let call = self.blob.release_lease(self.lease_id.clone(), None);
        match bounded(self.call_timeout, &what, call).await {
            Ok(_) => Ok(()),
            Err(f) => Err(f.into_lost_or_error()),
        }
    }
}

/// What went wrong with one call, before it is judged.
#[derive(Debug)]
enum Failure {
    Http {
        what: String,
        status: StatusCode,
        code: Option<String>,
    },
    /// Connection, TLS, I/O or credential failure (text scrubbed of SAS signatures).
    Transport {
        what: String,
        detail: String,
    },
    TimedOut {
        what: String,
        after: Duration,
    },
    Unexpected(String),
}

impl Failure {
    fn code_is(&self, wanted: &str) -> bool {
        matches!(self, Self::Http { code: Some(code), .. } if code == wanted)
    }

    fn already_exists(&self) -> bool {
        matches!(self, Self::Http { status, .. } if matches!(u16::from(*status), 409 | 412))
    }

    /// The error an acquire (or a create) ends with.
    fn into_error(self, role: &str) -> LeaseError {
        match self {
            Self::Http { status, code, .. }
                if status == StatusCode::Conflict && code.as_deref() == Some("LeaseAlreadyPresent") =>
            {
                LeaseError::Held
            }
            Self::Http { what, status, code } => {
                let code = code.unwrap_or_else(|| "no error code".to_string());
                let status_code = u16::from(status);
                match status_code {
                    401 | 403 => LeaseError::Permanent(format!(
                        "{what}: storage refused access ({status_code} {code}): {role}"
                    )),
                    408 | 429 | 500..=599 => LeaseError::Transient(format!(
                        "{what}: storage answered {status_code} {code}; a later attempt can succeed"
                    )),
                    _ => LeaseError::Permanent(format!("{what}: storage answered {status_code} {code}")),
                }
            }
            Self::Transport { what, detail } => {
                LeaseError::Transient(format!("{what}: storage could not be reached ({detail})"))
            }
            Self::TimedOut { what, after } => LeaseError::Transient(format!(
                "{what}: storage did not answer within {} ms",
                after.as_millis()
            )),
            Self::Unexpected(message) => LeaseError::Transient(message),
        }
    }

    /// The error a renewal or release ends with: storage refusing the lease id means it is lost.
    fn into_lost_or_error(self) -> LeaseError {
        match self {
            Self::Http { what, status, code } if matches!(u16::from(status), 404 | 409 | 412) => {
                LeaseError::Lost(format!(
                    "{what}: storage answered {} {} (the lease expired and was taken, was broken, or the blob is gone)",
                    u16::from(status),
                    code.unwrap_or_else(|| "no error code".to_string())
                ))
            }
            other => other.into_error(&format!(
                "grant keyflip's identity the role {ROLE} on the storage account"
            )),
        }
    }
}

/// Runs one SDK call within `timeout` and sorts its failure.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    call: impl std::future::Future<Output = azure_core::Result<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(Failure::TimedOut {
            what: what.to_string(),
            after: timeout,
        }),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(match e.kind() {
            ErrorKind::HttpResponse {
                status, error_code, ..
            } => Failure::Http {
                what: what.to_string(),
                status: *status,
                code: error_code.clone(),
            },
            _ => Failure::Transport {
                what: what.to_string(),
                detail: scrub(&crate::telemetry::error_chain(&e)),
            },
        }),
    }
}

/// Removes SAS signatures (`sig=…`) from text that may quote a URL (reqwest errors do).
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("sig=") {
        out.push_str(&rest[..at + 4]);
        out.push_str("REDACTED");
        let tail = &rest[at + 4..];
        let end = tail.find(['&', ')', ' ', '"', '\'', '>']).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A random lease id (a GUID; storage wants one).
fn lease_id() -> String {
    let random = || RandomState::new().build_hasher().finish();
    let hex = format!("{:016x}{:016x}", random(), random());
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// An account SAS for the blob service (`ss=b`), containers and objects (`srt=co`), read, write
/// and create (`sp=rwc`), expiring at `expiry`, signed with the account key.
fn account_sas(account: &str, key: &Secret, expiry: OffsetDateTime) -> Result<Secret, LeaseError> {
    let (sp, ss, srt, sv) = ("rwc", "b", "co", BLOB_API_VERSION);
    let se = expiry
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .ok_or_else(|| LeaseError::Permanent("cannot format the SAS expiry".to_string()))?;
    // Account SAS string-to-sign for sv >= 2020-12-06: account, permissions, services, resource
    // types, start, expiry, IP range, protocol, version, encryption scope, each followed by \n.
    let string_to_sign = format!("{account}\n{sp}\n{ss}\n{srt}\n\n{se}\n\n\n{sv}\n\n");
    let signature = azure_core::hmac::hmac_sha256(&string_to_sign, key).map_err(|_| {
        LeaseError::Permanent(
            "AzureWebJobsStorage: the AccountKey cannot sign (it is not a valid base64 key)".to_string(),
        )
    })?;
    let encode = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    Ok(Secret::new(format!(
        "sv={sv}&ss={ss}&srt={srt}&sp={sp}&se={}&sig={}",
        encode(&se),
        encode(&signature)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn signatures_are_scrubbed_from_any_text() {
        let text = "error sending request for url (https://a.blob.core.windows.net/c/b?sv=1&sig=abc%2Bdef&se=2) sig=xyz";
        let scrubbed = scrub(text);
        assert!(
            !scrubbed.contains("abc") && !scrubbed.contains("xyz"),
            "{scrubbed}"
        );
        assert!(scrubbed.contains("sig=REDACTED&se=2"), "{scrubbed}");
    }

    #[test]
    fn lease_ids_are_guids_and_differ() {
        let (a, b) = (lease_id(), lease_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(
            a.split('-').map(str::len).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
    }

    #[test]
    fn the_account_sas_matches_the_documented_string_to_sign() {
        let key = Secret::new("a2V5".to_string());
        let expiry = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let sas = account_sas("acct", &key, expiry).unwrap();
        let expected_signature = azure_core::hmac::hmac_sha256(
            "acct\nrwc\nb\nco\n\n2030-01-01T00:00:00Z\n\n\n2025-11-05\n\n",
            &key,
        )
        .unwrap();
        let encoded: String = url::form_urlencoded::byte_serialize(expected_signature.as_bytes()).collect();
        assert_eq!(
            sas.secret(),
            format!("sv=2025-11-05&ss=b&srt=co&sp=rwc&se=2030-01-01T00%3A00%3A00Z&sig={encoded}")
        );
    }

    #[test]
    fn debug_and_describe_never_show_the_key() {
        const KEY: &str = "a2V5ZmxpcC10ZXN0LWtleS1mb3ItZGVidWc=";
        let vars = HashMap::from([(
            "AzureWebJobsStorage".to_string(),
            format!("AccountName=keyflipstg;AccountKey={KEY}"),
        )]);
        let config = StorageConfig::from_vars(&vars).unwrap().unwrap();
        let leases = BlobLeases::new(&config, None, ClientOptions::default()).unwrap();
        let shown = format!("{leases:?} {}", leases.describe());
        assert!(!shown.contains(KEY), "{shown}");
        assert_eq!(
            leases.describe(),
            "blob https://keyflipstg.blob.core.windows.net/keyflip-locks"
        );
    }
}
