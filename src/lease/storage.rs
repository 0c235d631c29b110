//! Which storage account holds the rotation leases, and how keyflip authenticates to it: the
//! Functions host's own `AzureWebJobsStorage` settings, read the way the host reads them.
//!
//! Forms, in the host's order (a connection string wins over the identity-based settings):
//! - `AzureWebJobsStorage` = a connection string with `AccountName` and `AccountKey`, and
//!   `EndpointSuffix` (default `core.windows.net`) or `BlobEndpoint`; or `BlobEndpoint` with
//!   `SharedAccessSignature`; or `UseDevelopmentStorage=true` (the local storage emulator's
//!   well-known `devstoreaccount1`, `http://127.0.0.1:10000/devstoreaccount1`).
//! - identity-based: `AzureWebJobsStorage__blobServiceUri` (`https://<account>.blob.core.windows.net`)
//!   or `AzureWebJobsStorage__accountName`, with `AzureWebJobsStorage__credential`
//!   (`managedidentity` or unset) and `AzureWebJobsStorage__clientId` (a user-assigned
//!   identity; `__managedIdentityResourceId` is refused: the SDK's App Service source cannot
//!   select by resource id).
//!
//! It is pure: [`StorageConfig::from_vars`] reads a map, so every form is unit-tested. It owns
//! parsing and validation only; [`super::blob`] uses the result, the start-up wiring decides
//! what to do when nothing is configured. Keys and signatures are held as
//! [`azure_core::credentials::Secret`] and never printed: errors name the setting and the part
//! that is wrong, never its value.

use std::collections::HashMap;
use std::fmt;

use azure_core::credentials::Secret;
use url::Url;

/// The host's storage setting (a connection string, or the prefix of the identity-based ones).
pub const AZURE_WEBJOBS_STORAGE: &str = "AzureWebJobsStorage";
pub const BLOB_SERVICE_URI: &str = "AzureWebJobsStorage__blobServiceUri";
pub const ACCOUNT_NAME: &str = "AzureWebJobsStorage__accountName";
pub const CREDENTIAL: &str = "AzureWebJobsStorage__credential";
pub const CLIENT_ID: &str = "AzureWebJobsStorage__clientId";
pub const MANAGED_IDENTITY_RESOURCE_ID: &str = "AzureWebJobsStorage__managedIdentityResourceId";

/// The storage emulator's development account (public, documented by Microsoft).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// How keyflip proves itself to the storage account.
#[derive(Clone)]
pub enum StorageAuth {
    /// An Entra token (managed identity in Azure); `client_id` names a user-assigned identity.
    Identity { client_id: Option<String> },
    /// The account key: keyflip signs short-lived account SAS tokens with it.
    AccountKey { account: String, key: Secret },
    /// A SAS token given in the connection string (the query, without `?`).
    Sas(Secret),
}

impl fmt::Debug for StorageAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity { client_id } => f.debug_struct("Identity").field("client_id", client_id).finish(),
            Self::AccountKey { account, .. } => f
                .debug_struct("AccountKey")
                .field("account", account)
                .field("key", &"<redacted>")
                .finish(),
            Self::Sas(_) => f.write_str("Sas(<redacted>)"),
        }
    }
}

/// The storage that holds the leases: its blob service endpoint and how to authenticate.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The blob service, e.g. `https://acct.blob.core.windows.net/` (always ends with `/`).
    pub blob_endpoint: Url,
    pub auth: StorageAuth,
    /// The setting it was read from, for messages.
    pub source: &'static str,
}

/// Why the storage settings were refused; each message names the setting and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageConfigError {
    #[error("{setting}: {problem}")]
    Invalid { setting: &'static str, problem: String },
}

impl StorageConfigError {
    fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            setting,
            problem: problem.into(),
        }
    }

    /// The setting at fault.
    pub fn setting(&self) -> &'static str {
        match self {
            Self::Invalid { setting, .. } => setting,
        }
    }
}

impl StorageConfig {
    /// Reads the storage settings; `Ok(None)` when none is given.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Option<Self>, StorageConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        if let Some(connection_string) = get(AZURE_WEBJOBS_STORAGE) {
            return parse_connection_string(connection_string).map(Some);
        }
        let endpoint = match (get(BLOB_SERVICE_URI), get(ACCOUNT_NAME)) {
            (Some(uri), _) => blob_service_uri(uri)?,
            (None, Some(name)) => {
                let name = account_name(name).map_err(|p| StorageConfigError::new(ACCOUNT_NAME, p))?;
                endpoint_url(&format!("https://{name}.blob.core.windows.net/"), ACCOUNT_NAME)?
            }
            (None, None) => {
                if let Some(other) = [CREDENTIAL, CLIENT_ID, MANAGED_IDENTITY_RESOURCE_ID]
                    .into_iter()
                    .find(|s| get(s).is_some())
                {
                    return Err(StorageConfigError::new(
                        other,
                        format!(
                            "is set but names no storage account: set {BLOB_SERVICE_URI} (https://<account>.blob.core.windows.net) or {ACCOUNT_NAME}"
                        ),
                    ));
                }
                return Ok(None);
            }
        };
        if let Some(credential) = get(CREDENTIAL)
            && !credential.eq_ignore_ascii_case("managedidentity")
        {
            return Err(StorageConfigError::new(
                CREDENTIAL,
                format!(
                    "'{}' is not supported: use 'managedidentity' (in Azure) or leave it unset",
                    shorten(credential)
                ),
            ));
        }
        if get(MANAGED_IDENTITY_RESOURCE_ID).is_some() {
            return Err(StorageConfigError::new(
                MANAGED_IDENTITY_RESOURCE_ID,
                format!(
                    "is not supported by keyflip (the Azure SDK for Rust selects a user-assigned identity by client id on App Service): set {CLIENT_ID} to the identity's client id instead"
                ),
            ));
        }
        let client_id = match get(CLIENT_ID) {
            None => None,
            Some(id) if is_guid(id) => Some(id.to_ascii_lowercase()),
            Some(id) => {
                return Err(StorageConfigError::new(
                    CLIENT_ID,
                    format!("'{}' is not a client id (a GUID)", shorten(id)),
                ));
            }
        };
        let source = if get(BLOB_SERVICE_URI).is_some() {
            BLOB_SERVICE_URI
        } else {
            ACCOUNT_NAME
        };
        Ok(Some(Self {
            blob_endpoint: endpoint,
            auth: StorageAuth::Identity { client_id },
            source,
        }))
    }

    /// The account name, where the endpoint or the key names one.
    pub fn account(&self) -> Option<String> {
        if let StorageAuth::AccountKey { account, .. } = &self.auth {
            return Some(account.clone());
        }
        let host = self.blob_endpoint.host_str()?;
        match host.split_once('.') {
            Some((account, _)) => Some(account.to_string()),
            None => self
                .blob_endpoint
                .path_segments()
                .and_then(|mut s| s.next())
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }
    }

    /// The blob endpoint for logs and the README (never carries a secret).
    pub fn describe(&self) -> String {
        let mut url = self.blob_endpoint.clone();
        url.set_query(None);
        url.to_string()
    }
}

fn parse_connection_string(raw: &str) -> Result<StorageConfig, StorageConfigError> {
    let invalid = |problem: String| StorageConfigError::new(AZURE_WEBJOBS_STORAGE, problem);
    let mut parts: HashMap<String, String> = HashMap::new();
    for item in raw.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((name, value)) = item.split_once('=') else {
            return Err(invalid(
                "the connection string is not a list of Name=value pairs separated by ';'".into(),
            ));
        };
        let name = name.trim().to_ascii_lowercase();
        if parts.insert(name.clone(), value.trim().to_string()).is_some() {
            return Err(invalid(format!("the connection string gives {name} twice")));
        }
    }
    let part = |name: &str| parts.get(name).map(String::as_str).filter(|v| !v.is_empty());

    if let Some(dev) = part("usedevelopmentstorage") {
        if !dev.eq_ignore_ascii_case("true") {
            return Err(invalid("UseDevelopmentStorage must be 'true' when given".into()));
        }
        let endpoint = match part("developmentstorageproxyuri") {
            Some(proxy) => endpoint_url(
                &format!("{}/{DEV_ACCOUNT}/", proxy.trim_end_matches('/')),
                AZURE_WEBJOBS_STORAGE,
            )?,
            None => endpoint_url(&format!("{DEV_BLOB_ENDPOINT}/"), AZURE_WEBJOBS_STORAGE)?,
        };
        return Ok(StorageConfig {
            blob_endpoint: endpoint,
            auth: StorageAuth::AccountKey {
                account: DEV_ACCOUNT.to_string(),
                key: Secret::new(DEV_ACCOUNT_KEY.to_string()),
            },
            source: AZURE_WEBJOBS_STORAGE,
        });
    }

    let account = part("accountname")
        .map(|name| account_name(name).map_err(|p| invalid(format!("AccountName {p}"))))
        .transpose()?;
    let protocol = part("defaultendpointsprotocol")
        .unwrap_or("https")
        .to_ascii_lowercase();
    if protocol != "https" && protocol != "http" {
        return Err(invalid(format!(
            "DefaultEndpointsProtocol must be https, not '{}'",
            shorten(&protocol)
        )));
    }
    let endpoint = match (part("blobendpoint"), &account) {
        (Some(blob), _) => {
            let url = endpoint_url(&format!("{}/", blob.trim_end_matches('/')), AZURE_WEBJOBS_STORAGE)?;
            if url.scheme() != "https" && !is_loopback(&url) {
                return Err(invalid(
                    "BlobEndpoint must be an https URL (plain http only for a local emulator on 127.0.0.1/localhost)".into(),
                ));
            }
            url
        }
        (None, Some(account)) => {
            if protocol != "https" {
                return Err(invalid(
                    "DefaultEndpointsProtocol=http would send the account's requests unencrypted: use https"
                        .into(),
                ));
            }
            let suffix = part("endpointsuffix").unwrap_or("core.windows.net");
            if !is_dns_name(suffix) {
                return Err(invalid(format!(
                    "EndpointSuffix '{}' is not a DNS suffix such as core.windows.net",
                    shorten(suffix)
                )));
            }
            endpoint_url(
                &format!("https://{account}.blob.{suffix}/"),
                AZURE_WEBJOBS_STORAGE,
            )?
        }
        (None, None) => {
            return Err(invalid(
                "the connection string names no account: give AccountName (with AccountKey) or BlobEndpoint"
                    .into(),
            ));
        }
    };
    if let Some(sas) = part("sharedaccesssignature") {
        let sas = sas.trim_start_matches('?');
        if !sas.split('&').any(|p| p.starts_with("sig=")) {
            return Err(invalid(
                "SharedAccessSignature has no sig= part: paste the whole SAS token".into(),
            ));
        }
        return Ok(StorageConfig {
            blob_endpoint: endpoint,
            auth: StorageAuth::Sas(Secret::new(sas.to_string())),
            source: AZURE_WEBJOBS_STORAGE,
        });
    }
    let Some(account) = account else {
        return Err(invalid(
            "the connection string has BlobEndpoint but neither AccountName with AccountKey nor SharedAccessSignature".into(),
        ));
    };
    let Some(key) = part("accountkey") else {
        return Err(invalid(format!(
            "the connection string has no AccountKey: add the key of account '{account}', or use the identity-based settings ({BLOB_SERVICE_URI} or {ACCOUNT_NAME}) and grant keyflip's identity Storage Blob Data Contributor on the account"
        )));
    };
    let decodes = azure_core::base64::decode(key).is_ok_and(|bytes| !bytes.is_empty());
    if !decodes {
        return Err(invalid(format!(
            "the AccountKey of account '{account}' is not base64: copy it again from the account's Access keys"
        )));
    }
    Ok(StorageConfig {
        blob_endpoint: endpoint,
        auth: StorageAuth::AccountKey {
            account,
            key: Secret::new(key.to_string()),
        },
        source: AZURE_WEBJOBS_STORAGE,
    })
}

fn blob_service_uri(raw: &str) -> Result<Url, StorageConfigError> {
    let url = endpoint_url(&format!("{}/", raw.trim_end_matches('/')), BLOB_SERVICE_URI)?;
    if url.scheme() != "https" {
        return Err(StorageConfigError::new(
            BLOB_SERVICE_URI,
            "must be an https URL (tokens are never sent over plain http)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(StorageConfigError::new(
            BLOB_SERVICE_URI,
            "must be the service URL alone, without ?query or #fragment",
        ));
    }
    Ok(url)
}

fn endpoint_url(raw: &str, setting: &'static str) -> Result<Url, StorageConfigError> {
    let url = Url::parse(raw)
        .map_err(|e| StorageConfigError::new(setting, format!("'{}' is not a URL ({e})", shorten(raw))))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(StorageConfigError::new(
            setting,
            "the URL must not carry a user name or password",
        ));
    }
    if url.host_str().is_none() || !matches!(url.scheme(), "https" | "http") {
        return Err(StorageConfigError::new(
            setting,
            format!("'{}' is not an http(s) URL with a host", shorten(raw)),
        ));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

/// Storage account names: 3-24 lower-case letters and digits.
fn account_name(raw: &str) -> Result<String, String> {
    let ok =
        (3..=24).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    match ok {
        true => Ok(raw.to_string()),
        false => Err(format!(
            "'{}' is not a storage account name (3-24 lower-case letters and digits)",
            shorten(raw)
        )),
    }
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_guid(raw: &str) -> bool {
    let groups: Vec<&str> = raw.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// At most 40 characters of a value, for messages (values here are never secrets).
fn shorten(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a2V5ZmxpcC10ZXN0LWFjY291bnQta2V5LW5vdC1hLXJlYWwtb25lLTAxMjM0NQ==";

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ok(pairs: &[(&str, &str)]) -> StorageConfig {
        StorageConfig::from_vars(&vars(pairs)).unwrap().unwrap()
    }

    fn err(pairs: &[(&str, &str)]) -> StorageConfigError {
        StorageConfig::from_vars(&vars(pairs)).unwrap_err()
    }

    fn connection(s: &str) -> StorageConfig {
        ok(&[(AZURE_WEBJOBS_STORAGE, s)])
    }

    #[test]
    fn nothing_set_is_none_and_empty_values_count_as_unset() {
        assert!(StorageConfig::from_vars(&vars(&[])).unwrap().is_none());
        assert!(
            StorageConfig::from_vars(&vars(&[(AZURE_WEBJOBS_STORAGE, " "), (ACCOUNT_NAME, "")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_account_key_connection_string_gives_the_public_endpoint() {
        let config = connection(&format!(
            "DefaultEndpointsProtocol=https;AccountName=keyflipstg;AccountKey={KEY};EndpointSuffix=core.windows.net"
        ));
        assert_eq!(
            config.blob_endpoint.as_str(),
            "https://keyflipstg.blob.core.windows.net/"
        );
        assert!(matches!(&config.auth, StorageAuth::AccountKey { account, .. } if account == "keyflipstg"));
        assert_eq!(config.account().as_deref(), Some("keyflipstg"));
        let sovereign = connection(&format!(
            "AccountName=keyflipstg;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
        ));
        assert_eq!(
            sovereign.blob_endpoint.as_str(),
            "https://keyflipstg.blob.core.chinacloudapi.cn/"
        );
    }

    #[test]
    fn a_blob_endpoint_wins_over_the_suffix() {
        let config = connection(&format!(
            "BlobEndpoint=https://keyflipstg.privatelink.blob.core.windows.net/;AccountName=keyflipstg;AccountKey={KEY}"
        ));
        assert_eq!(
            config.blob_endpoint.as_str(),
            "https://keyflipstg.privatelink.blob.core.windows.net/"
        );
        let local = connection(&format!(
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;AccountName=devstoreaccount1;AccountKey={KEY}"
        ));
        assert_eq!(
            local.blob_endpoint.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/"
        );
        assert_eq!(local.account().as_deref(), Some("devstoreaccount1"));
    }

    #[test]
    fn development_storage_is_the_well_known_emulator_account() {
        let config = connection("UseDevelopmentStorage=true");
        assert_eq!(
            config.blob_endpoint.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/"
        );
        assert!(matches!(&config.auth, StorageAuth::AccountKey { account, .. } if account == DEV_ACCOUNT));
        let proxied =
            connection("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://localhost:8888");
        assert_eq!(
            proxied.blob_endpoint.as_str(),
            "http://localhost:8888/devstoreaccount1/"
        );
    }

    #[test]
    fn a_sas_connection_string_keeps_the_sas_secret() {
        let config = connection(
            "BlobEndpoint=https://keyflipstg.blob.core.windows.net;SharedAccessSignature=sv=2025-11-05&ss=b&srt=co&sp=rwc&se=2030-01-01&sig=c2VjcmV0",
        );
        assert!(matches!(config.auth, StorageAuth::Sas(_)));
        assert!(!format!("{config:?}").contains("c2VjcmV0"));
        assert!(!config.describe().contains("sig"));
    }

    #[test]
    fn identity_based_settings_give_a_token_endpoint() {
        let by_uri = ok(&[(BLOB_SERVICE_URI, "https://keyflipstg.blob.core.windows.net")]);
        assert_eq!(
            by_uri.blob_endpoint.as_str(),
            "https://keyflipstg.blob.core.windows.net/"
        );
        assert!(matches!(by_uri.auth, StorageAuth::Identity { client_id: None }));
        assert_eq!(by_uri.source, BLOB_SERVICE_URI);

        let by_name = ok(&[
            (ACCOUNT_NAME, "keyflipstg"),
            (CREDENTIAL, "managedidentity"),
            (CLIENT_ID, "0D8F2A51-1111-2222-3333-444455556666"),
        ]);
        assert_eq!(
            by_name.blob_endpoint.as_str(),
            "https://keyflipstg.blob.core.windows.net/"
        );
        assert!(matches!(
            &by_name.auth,
            StorageAuth::Identity { client_id: Some(id) } if id == "0d8f2a51-1111-2222-3333-444455556666"
        ));
        assert_eq!(by_name.account().as_deref(), Some("keyflipstg"));
    }

    #[test]
    fn the_connection_string_wins_over_identity_settings_as_in_the_host() {
        let config = ok(&[
            (AZURE_WEBJOBS_STORAGE, "UseDevelopmentStorage=true"),
            (ACCOUNT_NAME, "keyflipstg"),
        ]);
        assert!(matches!(config.auth, StorageAuth::AccountKey { .. }));
    }

    #[test]
    fn bad_connection_strings_name_the_setting_and_the_fix_without_the_key() {
        let cases = [
            ("AccountName=keyflipstg", "has no AccountKey"),
            ("AccountName=keyflipstg;AccountKey=%%%notbase64%%%", "not base64"),
            (
                "AccountName=Bad_Name;AccountKey=a2V5",
                "not a storage account name",
            ),
            ("just some text", "Name=value"),
            (
                "DefaultEndpointsProtocol=http;AccountName=keyflipstg;AccountKey=a2V5",
                "unencrypted",
            ),
            ("AccountName=a1b;AccountName=a1b;AccountKey=a2V5", "twice"),
            ("UseDevelopmentStorage=false", "must be 'true'"),
            ("AccountKey=a2V5", "names no account"),
            (
                "BlobEndpoint=http://keyflipstg.example.com;AccountName=keyflipstg;AccountKey=a2V5",
                "https",
            ),
            (
                "BlobEndpoint=https://keyflipstg.blob.core.windows.net;SharedAccessSignature=sv=1&sp=r",
                "no sig=",
            ),
            (
                "AccountName=keyflipstg;AccountKey=a2V5;EndpointSuffix=bad suffix",
                "EndpointSuffix",
            ),
        ];
        for (raw, expected) in cases {
            let e = err(&[(AZURE_WEBJOBS_STORAGE, raw)]);
            assert_eq!(e.setting(), AZURE_WEBJOBS_STORAGE, "{raw}");
            let message = e.to_string();
            assert!(message.starts_with("AzureWebJobsStorage: "), "{message}");
            assert!(message.contains(expected), "{raw}: {message}");
            assert!(
                !message.contains("notbase64") && !message.contains("a2V5"),
                "{message}"
            );
        }
    }

    #[test]
    fn bad_identity_settings_name_the_setting() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 7] = [
            (
                &[(BLOB_SERVICE_URI, "http://keyflipstg.blob.core.windows.net")],
                BLOB_SERVICE_URI,
                "https",
            ),
            (&[(BLOB_SERVICE_URI, "not a url")], BLOB_SERVICE_URI, "not a URL"),
            (
                &[(BLOB_SERVICE_URI, "https://a.blob.core.windows.net/?sv=1")],
                BLOB_SERVICE_URI,
                "without ?query",
            ),
            (&[(ACCOUNT_NAME, "UPPER")], ACCOUNT_NAME, "storage account name"),
            (
                &[(ACCOUNT_NAME, "keyflipstg"), (CREDENTIAL, "azurecli")],
                CREDENTIAL,
                "managedidentity",
            ),
            (
                &[(ACCOUNT_NAME, "keyflipstg"), (CLIENT_ID, "not-a-guid")],
                CLIENT_ID,
                "GUID",
            ),
            (
                &[
                    (ACCOUNT_NAME, "keyflipstg"),
                    (MANAGED_IDENTITY_RESOURCE_ID, "/subscriptions/x"),
                ],
                MANAGED_IDENTITY_RESOURCE_ID,
                CLIENT_ID,
            ),
        ];
        for (pairs, setting, expected) in cases {
            let e = err(pairs);
            assert_eq!(e.setting(), setting, "{pairs:?}");
            assert!(e.to_string().contains(expected), "{e}");
        }
        let orphan = err(&[(CLIENT_ID, "0d8f2a51-1111-2222-3333-444455556666")]);
        assert_eq!(orphan.setting(), CLIENT_ID);
        assert!(orphan.to_string().contains(BLOB_SERVICE_URI), "{orphan}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let config = connection(&format!("AccountName=keyflipstg;AccountKey={KEY}"));
        let debug = format!("{config:?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(
            debug.contains("keyflipstg") && debug.contains("redacted"),
            "{debug}"
        );
    }
}
