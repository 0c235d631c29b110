//! The one HTTP client every Azure client shares (Key Vault, Resource Manager, the credential),
//! and the retry options that keep a call inside its invocation's budget.
//!
//! It owns: the explicit connect and per-request timeouts (the SDK's own client has none in
//! total), redirects off (as the SDK's own client), the extra CA of `KEYFLIP_CA_BUNDLE` trusted
//! *in addition to* the system roots, and the `KEYFLIP_CONNECT_TO` overrides of where a host name
//! connects (`host=ip:port`, `*.suffix` for every subdomain), applied by a custom resolver so the
//! URL, the TLS server name and the Key Vault challenge check all keep the real host name.
//!
//! It deliberately does not read the environment: [`crate::config`] parses and validates the
//! settings and hands them over as [`TransportSettings`]. The start-up wiring calls
//! [`build_http_client`] once and passes [`transport`] and [`retry_options`] into every client's
//! `ClientOptions`.
//!
//! # Trusting the extra CA
//! reqwest 0.13 with rustls verifies through `rustls-platform-verifier`; given extra roots
//! (`tls_certs_merge`), that verifier on Linux and Windows builds one webpki store from the
//! extra roots plus the platform's roots (`rustls-native-certs`, which honours `SSL_CERT_FILE`
//! and `SSL_CERT_DIR`). The tests prove both halves: the bundle's CA is trusted, a CA that only
//! the "system" store holds is still trusted, and nothing is trusted without the bundle.
//!
//! # Proxies
//! reqwest's system-proxy support (`HTTPS_PROXY`, `NO_PROXY`) stays on. A proxied request
//! connects to the proxy, so `KEYFLIP_CONNECT_TO` does not apply to it; use `NO_PROXY` for the
//! hosts it overrides.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::headers::{RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS};
use azure_core::http::policies::{RetryHeaders, RetryPolicy};
use azure_core::http::{RetryOptions, StatusCode, Transport};

/// Time allowed to open a TCP connection and finish the TLS handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one request, from sending it to reading the whole body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest single wait between two attempts, whatever `Retry-After` says.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// Which host names a `KEYFLIP_CONNECT_TO` entry overrides.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host name (lower-case).
    Exact(String),
    /// Every subdomain of this suffix (`*.vault.azure.net` holds `vault.azure.net`); the suffix
    /// itself is not matched.
    Subdomains(String),
}

impl HostPattern {
    /// Parses `host` or `*.suffix`; host names are DNS names (letters, digits, hyphens, dots).
    pub fn parse(raw: &str) -> Result<Self, ConnectToError> {
        let host = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let invalid = || ConnectToError::Host(raw.trim().to_string());
        match host.strip_prefix("*.") {
            Some(suffix) if is_dns_name(suffix) => Ok(Self::Subdomains(suffix.to_string())),
            Some(_) => Err(invalid()),
            None if is_dns_name(&host) => Ok(Self::Exact(host)),
            None => Err(invalid()),
        }
    }

    /// Whether `host` (any case) is covered by this pattern.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            Self::Exact(exact) => host == *exact,
            Self::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(host) => f.write_str(host),
            Self::Subdomains(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Whether `name` is a DNS host name: dot-separated labels of 1-63 letters, digits and hyphens,
/// neither starting nor ending with a hyphen.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// One `KEYFLIP_CONNECT_TO` entry: connections to hosts matching `host_pattern` go to `addr`,
/// like curl's `--connect-to`; the URL, TLS server name and `Host` header are unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    pub host_pattern: HostPattern,
    pub addr: SocketAddr,
}

impl ConnectTo {
    /// Parses a comma-separated list of `host=ip:port` entries (empty entries are skipped).
    /// The same host pattern twice is refused: one of them would be silently ignored.
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, ConnectToError> {
        let mut entries: Vec<Self> = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let entry: Self = item.parse()?;
            if entries.iter().any(|e| e.host_pattern == entry.host_pattern) {
                return Err(ConnectToError::Duplicate(entry.host_pattern.to_string()));
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl FromStr for ConnectTo {
    type Err = ConnectToError;

    fn from_str(item: &str) -> Result<Self, Self::Err> {
        let item = item.trim();
        let (host, addr) = item
            .split_once('=')
            .ok_or_else(|| ConnectToError::Entry(item.to_string()))?;
        let host_pattern = HostPattern::parse(host)?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| ConnectToError::Address(addr.trim().to_string()))?;
        if addr.port() == 0 {
            return Err(ConnectToError::Address(addr.to_string()));
        }
        Ok(Self { host_pattern, addr })
    }
}

impl fmt::Display for ConnectTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.host_pattern, self.addr)
    }
}

/// Why a `KEYFLIP_CONNECT_TO` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectToError {
    #[error("entry '{0}' is not host=ip:port")]
    Entry(String),
    #[error("'{0}' is not a host name or *.suffix pattern")]
    Host(String),
    #[error("'{0}' is not an ip:port address with a non-zero port (IPv6 as [::1]:443)")]
    Address(String),
    #[error("host pattern '{0}' is given more than once")]
    Duplicate(String),
}

/// What the shared HTTP client needs (from `KEYFLIP_CA_BUNDLE`, `KEYFLIP_CONNECT_TO`).
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// PEM file of extra trusted CAs, trusted in addition to the system roots.
    pub ca_bundle: Option<PathBuf>,
    /// Where host names connect instead of where DNS says.
    pub connect_to: Vec<ConnectTo>,
    pub connect_timeout: Duration,
    /// Total time of one request (connect, send, read the whole body).
    pub request_timeout: Duration,
    /// Idle connections kept per host for reuse (0: none kept, each closed after its answer).
    pub max_idle_per_host: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            ca_bundle: None,
            connect_to: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_idle_per_host: MAX_IDLE_PER_HOST,
        }
    }
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot read the CA bundle '{path}': {source}")]
    CaBundleRead { path: PathBuf, source: std::io::Error },
    #[error("the CA bundle '{path}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    CaBundleEmpty { path: PathBuf },
    #[error("the CA bundle '{path}' holds a certificate that cannot be used as a trusted root: {source}")]
    CaBundleInvalid { path: PathBuf, source: reqwest::Error },
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Reads a PEM bundle and checks that it holds at least one certificate usable as a trusted
/// root (each one is loaded into a trust store, not only base64-decoded).
pub fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, TransportError> {
    let pem = std::fs::read(path).map_err(|source| TransportError::CaBundleRead {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |source| TransportError::CaBundleInvalid {
        path: path.to_path_buf(),
        source,
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(invalid)?;
    if certs.is_empty() {
        return Err(TransportError::CaBundleEmpty {
            path: path.to_path_buf(),
        });
    }
    // Only the given roots: no system store is loaded, so this is cheap.
    reqwest::Client::builder()
        .tls_certs_only(certs.clone())
        .build()
        .map_err(invalid)?;
    Ok(certs)
}

/// Idle connections kept per host by the shared client: the hosts it calls are few (each
/// served vault, Resource Manager, the token endpoint, storage), so memory stays bounded
/// whatever the number of accounts (their data planes are checked with a client that keeps
/// none). With HTTP/2, which Key Vault and Resource Manager speak, one is all a host needs.
pub const MAX_IDLE_PER_HOST: usize = 2;

/// How long an idle connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the one HTTP client every Azure client uses.
pub fn build_http_client(settings: &TransportSettings) -> Result<reqwest::Client, TransportError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .pool_max_idle_per_host(settings.max_idle_per_host)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &settings.ca_bundle {
        builder = builder.tls_certs_merge(load_ca_bundle(path)?);
    }
    if !settings.connect_to.is_empty() {
        builder = builder.dns_resolver(Arc::new(ConnectToResolver::new(settings.connect_to.clone())));
    }
    builder.build().map_err(TransportError::Build)
}

/// A client built on first use from its settings, or given ready-made: the data-plane checks'
/// client, so that start-up loads the trusted roots once (for the shared client) and the first
/// check pays for its own.
#[derive(Debug, Clone)]
pub struct LazyClient {
    settings: Option<TransportSettings>,
    client: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
}

impl LazyClient {
    /// Built from `settings` when first asked for.
    pub fn new(settings: TransportSettings) -> Self {
        Self {
            settings: Some(settings),
            client: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// The client, built now if it was not yet; the error says why it could not be built.
    pub fn get(&self) -> Result<&reqwest::Client, &str> {
        self.client
            .get_or_init(|| match &self.settings {
                Some(settings) => build_http_client(settings).map_err(|e| e.to_string()),
                None => Err("no HTTP client settings".to_string()),
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

impl From<reqwest::Client> for LazyClient {
    fn from(client: reqwest::Client) -> Self {
        Self {
            settings: None,
            client: Arc::new(std::sync::OnceLock::from(Ok(client))),
        }
    }
}

/// The client as an Azure SDK transport (`ClientOptions::transport`).
pub fn transport(client: &reqwest::Client) -> Transport {
    Transport::new(Arc::new(client.clone()))
}

/// Resolves `KEYFLIP_CONNECT_TO` hosts to their address; every other name through the system
/// resolver. An exact host wins over a pattern; among patterns the longest suffix wins.
#[derive(Debug, Clone)]
pub struct ConnectToResolver {
    rules: Arc<[ConnectTo]>,
}

impl ConnectToResolver {
    pub fn new(rules: Vec<ConnectTo>) -> Self {
        Self { rules: rules.into() }
    }

    /// The override for `host`, if any.
    pub fn lookup(&self, host: &str) -> Option<SocketAddr> {
        let matching = || self.rules.iter().filter(|rule| rule.host_pattern.matches(host));
        let exact = matching().find(|rule| matches!(rule.host_pattern, HostPattern::Exact(_)));
        let specificity = |rule: &&ConnectTo| match &rule.host_pattern {
            HostPattern::Exact(h) | HostPattern::Subdomains(h) => h.len(),
        };
        exact
            .or_else(|| matching().max_by_key(specificity))
            .map(|rule| rule.addr)
    }
}

impl reqwest::dns::Resolve for ConnectToResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let overridden = self.lookup(&host);
        Box::pin(async move {
            if let Some(addr) = overridden {
                let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(addr));
                return Ok(addrs);
            }
            // Port 0: the connector puts in the URL's port (or the scheme's default).
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

/// Retry options for every Azure client, bounded so a call never outlives its budget:
/// at most `max_retries` retries, exponential waits from `initial` (doubling, with up to
/// 255 ms of jitter), `Retry-After` honoured on 429/503 but each wait capped at a quarter of
/// `max_total` (and 30 s), and no wait started unless even the longest wait ends within
/// `max_total` of the first attempt's answer.
///
/// The SDK's own exponential policy checks its time limit only after each attempt and obeys
/// any `Retry-After`, so one call could last minutes. Here `max_total` counts from the first
/// answer and the last retry starts within it, so a call lasts at most the first attempt +
/// `max_total` + the last attempt (each attempt bounded by the transport's request timeout).
/// Pick `max_total` with that in mind; a caller with a hard deadline still wraps the call in
/// `tokio::time::timeout`.
pub fn retry_options(max_retries: u32, initial: Duration, max_total: Duration) -> RetryOptions {
    RetryOptions::custom(Arc::new(BoundedRetry::new(max_retries, initial, max_total)))
}

/// The policy behind [`retry_options`].
#[derive(Debug)]
struct BoundedRetry {
    max_retries: u32,
    initial: Duration,
    max_total: Duration,
    max_wait: Duration,
    headers: RetryHeaders,
}

impl BoundedRetry {
    fn new(max_retries: u32, initial: Duration, max_total: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        let max_wait = (max_total / 4).min(MAX_RETRY_WAIT).max(initial);
        Self {
            max_retries,
            initial,
            max_total,
            max_wait,
            // The same headers azure_core's pipeline reads, in the same order.
            headers: RetryHeaders {
                retry_headers: vec![X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS, RETRY_AFTER],
            },
        }
    }

    /// The wait before retry number `retry_count` (from 1), given the server's `Retry-After`.
    fn wait_for(&self, retry_count: u32, retry_after: Option<Duration>) -> Duration {
        let doubling = 2u32.saturating_pow(retry_count.saturating_sub(1));
        let backoff = self.initial.saturating_mul(doubling) + jitter();
        retry_after.unwrap_or_default().max(backoff).min(self.max_wait)
    }
}

/// 0-255 ms, so that many callers throttled together do not retry in step.
fn jitter() -> Duration {
    let random = RandomState::new().build_hasher().finish();
    Duration::from_millis(random % 256)
}

fn to_std(duration: azure_core::time::Duration) -> Duration {
    Duration::try_from(duration).unwrap_or_default()
}

fn to_sdk(duration: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(duration).unwrap_or(azure_core::time::Duration::MAX)
}

#[async_trait::async_trait]
impl RetryPolicy for BoundedRetry {
    fn is_expired(&self, since_first_answer: azure_core::time::Duration, retry_count: u32) -> bool {
        retry_count >= self.max_retries || to_std(since_first_answer) + self.max_wait > self.max_total
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    /// Empty: the SDK's defaults (408, 429, 500, 502, 503, 504).
    fn retry_status_codes(&self) -> &[StatusCode] {
        &[]
    }

    fn sleep_duration(&self, retry_count: u32) -> azure_core::time::Duration {
        to_sdk(self.wait_for(retry_count, None))
    }

    async fn wait(&self, retry_count: u32, retry_after: Option<azure_core::time::Duration>) {
        let wait = self.wait_for(retry_count, retry_after.map(to_std));
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use azure_core::http::{ClientOptions, Context, Method, Pipeline, Request, Url};
    use emulator::{ControlClient, Emulator, EmulatorOptions};
    use reqwest::dns::Resolve as _;
    use serde_json::json;

    const KV_LIST: &str = "https://kv1.vault.azure.net/secrets?api-version=2025-07-01";

    /// A fresh file under the temp directory (no tempfile crate in the tree).
    fn temp_file(name: &str, contents: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "keyflip-transport-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn chain(e: &dyn std::error::Error) -> String {
        crate::telemetry::error_chain(e)
    }

    fn settings(ca_bundle: Option<PathBuf>, connect_to: &str) -> TransportSettings {
        TransportSettings {
            ca_bundle,
            connect_to: ConnectTo::parse_list(connect_to).unwrap(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ..TransportSettings::default()
        }
    }

    /// `*.vault.azure.net` and `management.azure.com` to the emulator, trusting its CA.
    fn emulator_settings(emu: &Emulator) -> TransportSettings {
        let addr = emu.address();
        settings(
            Some(temp_file("ca.pem", emu.ca_pem())),
            &format!("*.vault.azure.net={addr}, management.azure.com={addr}"),
        )
    }

    async fn calls(emu: &Emulator) -> usize {
        let control = ControlClient::new(&emu.info(None).control_url);
        control.calls(None).await.unwrap().len()
    }

    /// The emulator's Key Vault answered: its 401 challenge, or its 404 `VaultNotFound`.
    async fn assert_key_vault_answered(response: reqwest::Response) {
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.text().await.unwrap();
        match status {
            401 => assert!(
                challenge.contains("resource=\"https://vault.azure.net\""),
                "{challenge}"
            ),
            404 => assert!(body.contains("VaultNotFound"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }

    #[test]
    fn host_patterns_match_exact_hosts_or_every_subdomain() {
        let vaults = HostPattern::parse("*.Vault.Azure.NET").unwrap();
        assert_eq!(vaults, HostPattern::Subdomains("vault.azure.net".into()));
        assert_eq!(vaults.to_string(), "*.vault.azure.net");
        assert!(vaults.matches("kv1.vault.azure.net"));
        assert!(vaults.matches("KV1.VAULT.AZURE.NET."));
        assert!(vaults.matches("a.b.vault.azure.net"));
        assert!(
            !vaults.matches("vault.azure.net"),
            "the suffix itself is not a subdomain"
        );
        assert!(!vaults.matches("evilvault.azure.net"));
        assert!(!vaults.matches("kv1.vault.azure.net.example.com"));

        let arm = HostPattern::parse("management.azure.com").unwrap();
        assert!(arm.matches("Management.Azure.Com"));
        assert!(!arm.matches("x.management.azure.com"));

        for bad in [
            "",
            "*",
            "*.",
            "a*.vault.azure.net",
            "*.*.net",
            "kv 1.net",
            "-a.net",
            "a..net",
            "a_b.net",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_to_lists_parse_like_curl_connect_to() {
        let list =
            ConnectTo::parse_list(" *.vault.azure.net=127.0.0.1:8443 ,management.azure.com=[::1]:443,")
                .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].to_string(), "*.vault.azure.net=127.0.0.1:8443");
        assert_eq!(list[1].addr, "[::1]:443".parse().unwrap());
        assert!(ConnectTo::parse_list("").unwrap().is_empty());

        let cases = [
            (
                "kv.vault.azure.net",
                ConnectToError::Entry("kv.vault.azure.net".into()),
            ),
            (
                "kv.vault.azure.net=127.0.0.1",
                ConnectToError::Address("127.0.0.1".into()),
            ),
            (
                "kv.vault.azure.net=localhost:443",
                ConnectToError::Address("localhost:443".into()),
            ),
            (
                "kv.vault.azure.net=127.0.0.1:0",
                ConnectToError::Address("127.0.0.1:0".into()),
            ),
            (
                "kv.vault.azure.net=::1:443",
                ConnectToError::Address("::1:443".into()),
            ),
            ("bad host=127.0.0.1:1", ConnectToError::Host("bad host".into())),
            (
                "a.net=127.0.0.1:1,A.NET=127.0.0.2:2",
                ConnectToError::Duplicate("a.net".into()),
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(ConnectTo::parse_list(raw).unwrap_err(), expected, "{raw}");
        }
    }

    #[test]
    fn exact_hosts_win_over_patterns_and_longer_suffixes_over_shorter() {
        let resolver = ConnectToResolver::new(
            ConnectTo::parse_list(
                "*.azure.net=10.0.0.1:1,*.vault.azure.net=10.0.0.2:2,kv9.vault.azure.net=10.0.0.3:3",
            )
            .unwrap(),
        );
        let port = |host: &str| resolver.lookup(host).map(|a| a.port());
        assert_eq!(port("kv9.vault.azure.net"), Some(3));
        assert_eq!(port("kv1.vault.azure.net"), Some(2));
        assert_eq!(port("other.azure.net"), Some(1));
        assert_eq!(port("management.azure.com"), None);
    }

    #[tokio::test]
    async fn names_without_an_override_go_to_the_system_resolver() {
        let resolver = ConnectToResolver::new(ConnectTo::parse_list("*.vault.azure.net=10.9.9.9:1").unwrap());
        let addrs: Vec<SocketAddr> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 0),
            "{addrs:?}"
        );
        assert!(
            resolver
                .resolve("kv1.vault.azure.net.invalid".parse().unwrap())
                .await
                .is_err()
        );
        let overridden: Vec<SocketAddr> = resolver
            .resolve("kv1.vault.azure.net".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(overridden, vec!["10.9.9.9:1".parse().unwrap()]);
    }

    #[tokio::test]
    async fn real_host_names_reach_the_emulator_through_connect_to_and_the_ca_bundle() {
        let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let client = build_http_client(&emulator_settings(&emu)).unwrap();

        assert_key_vault_answered(client.get(KV_LIST).send().await.unwrap()).await;
        // An explicit default port (as Key Vault's nextLink has) still reaches the override.
        let explicit = KV_LIST.replace(".net/", ".net:443/");
        assert_key_vault_answered(client.get(&explicit).send().await.unwrap()).await;

        let arm = "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000000\
                   /resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a?api-version=2025-06-01";
        let response = client.get(arm).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        assert!(response.text().await.unwrap().contains("AuthenticationFailed"));
    }

    #[tokio::test]
    async fn hosts_not_in_connect_to_are_not_sent_to_the_emulator() {
        let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let client = build_http_client(&emulator_settings(&emu)).unwrap();
        client.get(KV_LIST).send().await.unwrap();
        let before = calls(&emu).await;
        assert!(before > 0, "the emulator records the calls it receives");

        for url in [
            "https://kv1.vault.azure.net.invalid/secrets?api-version=2025-07-01",
            "https://kv1.evilvault.invalid/secrets?api-version=2025-07-01",
        ] {
            let err = client.get(url).send().await.unwrap_err();
            assert!(err.is_connect(), "{}", chain(&err));
            assert!(
                chain(&err).contains("dns"),
                "the system resolver was asked: {}",
                chain(&err)
            );
        }
        assert_eq!(calls(&emu).await, before);
    }

    #[tokio::test]
    async fn without_the_ca_bundle_the_tls_handshake_fails() {
        let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let mut no_ca = emulator_settings(&emu);
        no_ca.ca_bundle = None;
        let client = build_http_client(&no_ca).unwrap();

        let err = client.get(KV_LIST).send().await.unwrap_err();
        let chain = chain(&err);
        assert!(err.is_connect(), "{chain}");
        assert!(chain.contains("UnknownIssuer"), "{chain}");
        assert_eq!(calls(&emu).await, 0, "no request got through");
    }

    #[test]
    fn ca_bundles_must_hold_a_usable_certificate() {
        let pki = emulator::tls::Pki::generate().unwrap();
        assert_eq!(
            load_ca_bundle(&temp_file("ok.pem", &pki.ca_pem)).unwrap().len(),
            1
        );
        let two = format!(
            "{}\n# comment\n{}",
            pki.ca_pem,
            emulator::tls::Pki::generate().unwrap().ca_pem
        );
        assert_eq!(load_ca_bundle(&temp_file("two.pem", &two)).unwrap().len(), 2);

        let missing = std::env::temp_dir().join("keyflip-no-such-dir/ca.pem");
        assert!(matches!(
            load_ca_bundle(&missing),
            Err(TransportError::CaBundleRead { .. })
        ));
        let empty = temp_file("empty.pem", "not a certificate\n");
        assert!(matches!(
            load_ca_bundle(&empty),
            Err(TransportError::CaBundleEmpty { .. })
        ));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let garbage = temp_file("garbage.pem", garbage);
        let err = load_ca_bundle(&garbage).unwrap_err();
        assert!(matches!(err, TransportError::CaBundleInvalid { .. }), "{err}");
        assert!(err.to_string().contains("garbage.pem"), "{err}");
    }

    /// Child mode of the test below: `SSL_CERT_FILE` (the "system" store) holds only CA B.
    async fn merge_child(a: SocketAddr, b: SocketAddr, ca_a: PathBuf) {
        let connect_to = format!("kva.vault.azure.net={a},kvb.vault.azure.net={b}");
        let url = |vault: &str| KV_LIST.replace("kv1", vault);

        let merged = build_http_client(&settings(Some(ca_a), &connect_to)).unwrap();
        assert_key_vault_answered(merged.get(url("kva")).send().await.unwrap()).await;
        assert_key_vault_answered(merged.get(url("kvb")).send().await.unwrap()).await;

        let system_only = build_http_client(&settings(None, &connect_to)).unwrap();
        assert_key_vault_answered(system_only.get(url("kvb")).send().await.unwrap()).await;
        // Both CAs are named "keyflip emulator CA": webpki tries B's and reports BadSignature.
        let err = system_only.get(url("kva")).send().await.unwrap_err();
        assert!(
            chain(&err).contains("invalid peer certificate"),
            "{}",
            chain(&err)
        );
    }

    /// `tls_certs_merge` keeps the system roots: run in a child process whose system store
    /// (`SSL_CERT_FILE`) holds emulator B's CA, with emulator A's CA as the bundle.
    #[tokio::test]
    async fn the_ca_bundle_is_trusted_in_addition_to_the_system_roots() {
        const CHILD: &str = "KEYFLIP_TEST_MERGE_CHILD";
        if let Ok(ca_a) = std::env::var(CHILD) {
            let addr = |k: &str| std::env::var(k).unwrap().parse().unwrap();
            return merge_child(addr("KEYFLIP_TEST_A"), addr("KEYFLIP_TEST_B"), ca_a.into()).await;
        }
        let a = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let b = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let output = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "azure::transport::tests::the_ca_bundle_is_trusted_in_addition_to_the_system_roots",
                "--nocapture",
            ])
            .env(CHILD, temp_file("a.pem", a.ca_pem()))
            .env("KEYFLIP_TEST_A", a.address().to_string())
            .env("KEYFLIP_TEST_B", b.address().to_string())
            .env("SSL_CERT_FILE", temp_file("b.pem", b.ca_pem()))
            .env_remove("SSL_CERT_DIR")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("1 passed"), "the child ran the test: {stdout}");
    }

    #[test]
    fn retry_waits_grow_but_never_exceed_the_cap_whatever_retry_after_says() {
        let policy = BoundedRetry::new(5, Duration::from_millis(100), Duration::from_secs(8));
        assert_eq!(policy.max_wait, Duration::from_secs(2));
        let first = policy.wait_for(1, None);
        assert!(
            first >= Duration::from_millis(100) && first < Duration::from_millis(356),
            "{first:?}"
        );
        let third = policy.wait_for(3, None);
        assert!(
            third >= Duration::from_millis(400) && third < Duration::from_millis(656),
            "{third:?}"
        );
        assert_eq!(policy.wait_for(20, None), Duration::from_secs(2));
        assert_eq!(
            policy.wait_for(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(2)
        );
        assert!(policy.wait_for(1, Some(Duration::from_millis(1500))) >= Duration::from_millis(1500));

        let long = BoundedRetry::new(5, Duration::from_millis(100), Duration::from_secs(600));
        assert_eq!(long.max_wait, MAX_RETRY_WAIT);
    }

    #[test]
    fn no_retry_starts_that_could_end_past_the_budget() {
        let policy = BoundedRetry::new(3, Duration::from_millis(100), Duration::from_secs(8));
        let secs = azure_core::time::Duration::seconds;
        assert!(!policy.is_expired(secs(0), 0));
        assert!(!policy.is_expired(secs(6), 2));
        assert!(policy.is_expired(secs(0), 3), "max_retries");
        assert!(
            policy.is_expired(azure_core::time::Duration::milliseconds(6001), 1),
            "6 s + a 2 s wait > 8 s"
        );
        assert!(
            BoundedRetry::new(0, Duration::from_millis(1), Duration::from_secs(8)).is_expired(secs(0), 0)
        );
    }

    /// 503 with `Retry-After: 60` on every call: the SDK's default policy would wait a minute per
    /// retry; ours stays within its 2 s budget.
    #[tokio::test]
    async fn a_huge_retry_after_does_not_stretch_a_call_past_its_budget() {
        let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let info = emu.info(None);
        let control = ControlClient::new(&info.control_url);
        let fault = json!({"operation": "GetToken", "status": 503, "count": 100, "retry_after_seconds": 60});
        control.post("/faults", &fault).await.unwrap();

        let client = build_http_client(&TransportSettings::default()).unwrap();
        let options = ClientOptions {
            transport: Some(transport(&client)),
            retry: retry_options(8, Duration::from_millis(50), Duration::from_secs(2)),
            ..Default::default()
        };
        let pipeline = Pipeline::new(
            Some("keyflip"),
            Some("test"),
            options,
            Vec::new(),
            Vec::new(),
            None,
        );
        let url = format!(
            "{}?api-version=2019-08-01&resource=https://vault.azure.net",
            info.identity_endpoint
        );
        let mut request = Request::new(Url::parse(&url).unwrap(), Method::Get);
        request.insert_header("x-identity-header", info.identity_header.clone());
        request.insert_header("metadata", "true");

        let started = Instant::now();
        let result = pipeline.send(&Context::new(), &mut request, None).await;
        let elapsed = started.elapsed();

        let status = match result {
            Ok(response) => u16::from(response.status()),
            Err(e) => e.http_status().map(u16::from).unwrap_or_default(),
        };
        assert_eq!(status, 503);
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        let attempts = control.calls(Some("GetToken")).await.unwrap().len();
        assert!((2..=5).contains(&attempts), "{attempts} attempts");
    }

    #[test]
    fn the_transport_wraps_the_shared_client() {
        let client = build_http_client(&TransportSettings::default()).unwrap();
        assert!(format!("{:?}", transport(&client)).contains("HttpClient"));
    }
}
