//! Which Entra credential keyflip authenticates with, and building it with azure_identity 1.0.
//!
//! The Rust SDK has no `DefaultAzureCredential`, so the chain is here, decided once at start-up
//! from the environment and never retried at run time:
//!
//! 1. **Managed identity** (Functions, App Service, Container Apps): `IDENTITY_ENDPOINT` and
//!    `IDENTITY_HEADER` are both set. User-assigned when `KEYFLIP_MANAGED_IDENTITY_CLIENT_ID`
//!    is given; `AZURE_CLIENT_ID` is never used for this (the Functions docs warn that the
//!    SDK's `AZURE_*` variables are not fully supported there and leak into other connections).
//! 2. **Workload identity** (AKS): `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID` and
//!    `AZURE_TENANT_ID`.
//! 3. **Client secret** (a service principal): `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
//!    `AZURE_CLIENT_SECRET`.
//! 4. **Developer tools**: `az login`, then `azd auth login`.
//!
//! [`select_credential`] is pure (it reads a map, so every branch is unit-tested);
//! [`build_credential`] constructs the SDK credential with the shared transport and retry
//! options. The client secret is never held by [`CredentialSource`]: it is read from the
//! process environment inside [`build_credential`] and handed straight to the SDK's `Secret`.
//! The managed-identity path reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` from the process
//! environment inside the SDK, so it is proven end to end by a child-process test, not here.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::ClientOptions;
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
const IDENTITY_HEADER: &str = "IDENTITY_HEADER";
const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";

/// The credential the environment calls for. Holds identifiers only, never a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The App Service managed-identity protocol; `client_id` selects a user-assigned identity.
    ManagedIdentity { client_id: Option<String> },
    /// A federated token file (Kubernetes workload identity).
    WorkloadIdentity {
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// A service principal; the secret stays in `AZURE_CLIENT_SECRET` until built.
    ClientSecret { tenant_id: String, client_id: String },
    /// Azure CLI, then Azure Developer CLI.
    DeveloperTools,
}

impl CredentialSource {
    /// A short name for logs (`managed-identity`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ManagedIdentity { .. } => "managed-identity",
            Self::WorkloadIdentity { .. } => "workload-identity",
            Self::ClientSecret { .. } => "client-secret",
            Self::DeveloperTools => "developer-tools",
        }
    }
}

/// Ids are not secret, but the type promises never to print anything that could be: only the
/// kind and the ids, spelled out, are shown.
impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
            Self::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            Self::ClientSecret { tenant_id, client_id } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("secret", &"<from AZURE_CLIENT_SECRET, not shown>")
                .finish(),
            Self::DeveloperTools => f.write_str("DeveloperTools"),
        }
    }
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ManagedIdentity { client_id: Some(id) } => write!(f, "user-assigned managed identity {id}"),
            Self::ManagedIdentity { client_id: None } => f.write_str("system-assigned managed identity"),
            Self::WorkloadIdentity { client_id, .. } => write!(f, "workload identity {client_id}"),
            Self::ClientSecret { client_id, .. } => {
                write!(f, "service principal {client_id} (client secret)")
            }
            Self::DeveloperTools => f.write_str("developer tools (az, azd)"),
        }
    }
}

/// Why the credential could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("AZURE_CLIENT_SECRET is not set (or empty) although it was when the credential was chosen")]
    MissingSecret,
    #[error("cannot build the {kind} credential: {source}")]
    Build {
        kind: &'static str,
        source: azure_core::Error,
    },
}

/// A variable's value, trimmed; empty counts as unset.
fn var<'a>(vars: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Picks the credential the environment calls for (see the module doc for the order).
/// `managed_identity_client_id` is `KEYFLIP_MANAGED_IDENTITY_CLIENT_ID`, already validated.
pub fn select_credential(
    vars: &HashMap<String, String>,
    managed_identity_client_id: Option<&str>,
) -> CredentialSource {
    let get = |name| var(vars, name);
    if get(IDENTITY_ENDPOINT).is_some() && get(IDENTITY_HEADER).is_some() {
        let client_id = managed_identity_client_id
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string);
        return CredentialSource::ManagedIdentity { client_id };
    }
    if let (Some(token_file), Some(client_id), Some(tenant_id)) = (
        get(AZURE_FEDERATED_TOKEN_FILE),
        get(AZURE_CLIENT_ID),
        get(AZURE_TENANT_ID),
    ) {
        return CredentialSource::WorkloadIdentity {
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            token_file: PathBuf::from(token_file),
        };
    }
    if let (Some(tenant_id), Some(client_id), Some(_)) = (
        get(AZURE_TENANT_ID),
        get(AZURE_CLIENT_ID),
        get(AZURE_CLIENT_SECRET),
    ) {
        return CredentialSource::ClientSecret {
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
        };
    }
    CredentialSource::DeveloperTools
}

/// Builds the SDK credential for `source`; `client_options` carries the shared transport and
/// retry options for the credential's own token requests. Developer tools run `az`/`azd` as
/// child processes and take no client options.
pub fn build_credential(
    source: &CredentialSource,
    client_options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    let kind = source.kind();
    let built: azure_core::Result<Arc<dyn TokenCredential>> = match source {
        CredentialSource::ManagedIdentity { client_id } => {
            managed_identity(client_id.clone(), client_options)
        }
        CredentialSource::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file,
        } => workload_identity(tenant_id, client_id, token_file, client_options),
        CredentialSource::ClientSecret { tenant_id, client_id } => {
            let secret = client_secret_from_env()?;
            client_secret(tenant_id, client_id, secret, client_options)
        }
        CredentialSource::DeveloperTools => {
            DeveloperToolsCredential::new(None).map(|c| c as Arc<dyn TokenCredential>)
        }
    };
    built.map_err(|source| CredentialError::Build { kind, source })
}

fn managed_identity(
    client_id: Option<String>,
    client_options: ClientOptions,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(UserAssignedId::ClientId),
        client_options,
    };
    Ok(ManagedIdentityCredential::new(Some(options))?)
}

fn workload_identity(
    tenant_id: &str,
    client_id: &str,
    token_file: &std::path::Path,
    client_options: ClientOptions,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = WorkloadIdentityCredentialOptions {
        credential_options: ClientAssertionCredentialOptions { client_options },
        client_id: Some(client_id.to_string()),
        tenant_id: Some(tenant_id.to_string()),
        token_file_path: Some(token_file.to_path_buf()),
    };
    Ok(WorkloadIdentityCredential::new(Some(options))?)
}

fn client_secret(
    tenant_id: &str,
    client_id: &str,
    secret: Secret,
    client_options: ClientOptions,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = ClientSecretCredentialOptions { client_options };
    Ok(ClientSecretCredential::new(
        tenant_id,
        client_id.to_string(),
        secret,
        Some(options),
    )?)
}

/// The only read of `AZURE_CLIENT_SECRET`; the value goes straight into the SDK's `Secret`.
fn client_secret_from_env() -> Result<Secret, CredentialError> {
    std::env::var(AZURE_CLIENT_SECRET)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(Secret::new)
        .ok_or(CredentialError::MissingSecret)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UAI: &str = "11111111-2222-3333-4444-555555555555";
    const SECRET: &str = "do-not-print-me";

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const MI: [(&str, &str); 2] = [
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:41234/msi/token"),
        ("IDENTITY_HEADER", "h"),
    ];
    const SP: [(&str, &str); 3] = [
        ("AZURE_TENANT_ID", "tenant"),
        ("AZURE_CLIENT_ID", "app"),
        ("AZURE_CLIENT_SECRET", SECRET),
    ];

    #[test]
    fn the_functions_host_gets_the_system_assigned_managed_identity() {
        let source = select_credential(&vars(&MI), None);
        assert_eq!(source, CredentialSource::ManagedIdentity { client_id: None });
        assert_eq!(source.to_string(), "system-assigned managed identity");
    }

    #[test]
    fn keyflip_s_own_setting_selects_a_user_assigned_identity() {
        let source = select_credential(&vars(&MI), Some(UAI));
        assert_eq!(
            source,
            CredentialSource::ManagedIdentity {
                client_id: Some(UAI.into())
            }
        );
        assert_eq!(
            select_credential(&vars(&MI), Some(" ")),
            CredentialSource::ManagedIdentity { client_id: None }
        );
    }

    #[test]
    fn azure_client_id_never_picks_the_managed_identity() {
        let mut env = vars(&MI);
        env.insert(
            "AZURE_CLIENT_ID".into(),
            "22222222-2222-2222-2222-222222222222".into(),
        );
        assert_eq!(
            select_credential(&env, None),
            CredentialSource::ManagedIdentity { client_id: None }
        );
        assert_eq!(
            select_credential(&env, Some(UAI)),
            CredentialSource::ManagedIdentity {
                client_id: Some(UAI.into())
            }
        );
    }

    #[test]
    fn managed_identity_wins_over_every_other_source() {
        let mut env = vars(&MI);
        env.extend(vars(&SP));
        env.insert("AZURE_FEDERATED_TOKEN_FILE".into(), "/var/run/token".into());
        assert!(matches!(
            select_credential(&env, None),
            CredentialSource::ManagedIdentity { .. }
        ));
    }

    #[test]
    fn managed_identity_needs_both_its_variables_set_and_not_empty() {
        for partial in [
            vars(&[MI[0]]),
            vars(&[MI[1]]),
            vars(&[MI[0], ("IDENTITY_HEADER", "")]),
            vars(&[("IDENTITY_ENDPOINT", "  "), MI[1]]),
        ] {
            assert_eq!(
                select_credential(&partial, Some(UAI)),
                CredentialSource::DeveloperTools
            );
        }
    }

    #[test]
    fn a_federated_token_file_selects_workload_identity() {
        let env = vars(&[
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_CLIENT_ID", "app"),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_CLIENT_SECRET", SECRET),
        ]);
        assert_eq!(
            select_credential(&env, None),
            CredentialSource::WorkloadIdentity {
                tenant_id: "tenant".into(),
                client_id: "app".into(),
                token_file: "/var/run/secrets/azure/tokens/azure-identity-token".into(),
            }
        );
    }

    #[test]
    fn workload_identity_needs_all_three_variables() {
        let env = vars(&[("AZURE_FEDERATED_TOKEN_FILE", "/t"), ("AZURE_CLIENT_ID", "app")]);
        assert_eq!(select_credential(&env, None), CredentialSource::DeveloperTools);
        let env = vars(&[
            ("AZURE_FEDERATED_TOKEN_FILE", ""),
            ("AZURE_CLIENT_ID", "app"),
            ("AZURE_TENANT_ID", "t"),
        ]);
        assert_eq!(select_credential(&env, None), CredentialSource::DeveloperTools);
    }

    #[test]
    fn a_service_principal_secret_selects_client_secret_without_holding_it() {
        let source = select_credential(&vars(&SP), None);
        assert_eq!(
            source,
            CredentialSource::ClientSecret {
                tenant_id: "tenant".into(),
                client_id: "app".into()
            }
        );
        let printed = format!("{source:?} {source}");
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(printed.contains("not shown"), "{printed}");
    }

    #[test]
    fn client_secret_needs_all_three_variables() {
        for missing in 0..SP.len() {
            let partial: Vec<_> = SP
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, p)| *p)
                .collect();
            assert_eq!(
                select_credential(&vars(&partial), None),
                CredentialSource::DeveloperTools
            );
        }
        let empty_secret = vars(&[SP[0], SP[1], ("AZURE_CLIENT_SECRET", "")]);
        assert_eq!(
            select_credential(&empty_secret, None),
            CredentialSource::DeveloperTools
        );
    }

    #[test]
    fn nothing_configured_falls_back_to_developer_tools() {
        assert_eq!(
            select_credential(&vars(&[]), Some(UAI)),
            CredentialSource::DeveloperTools
        );
        assert_eq!(CredentialSource::DeveloperTools.kind(), "developer-tools");
    }

    fn workload(tenant_id: &str, token_file: PathBuf) -> CredentialSource {
        CredentialSource::WorkloadIdentity {
            tenant_id: tenant_id.into(),
            client_id: "app".into(),
            token_file,
        }
    }

    #[test]
    fn workload_identity_is_built_from_the_selected_values_not_the_environment() {
        let dir = std::env::temp_dir().join(format!("keyflip-credential-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, "federated-token").unwrap();
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        assert!(build_credential(&workload(tenant, token_file.clone()), ClientOptions::default()).is_ok());

        let err =
            build_credential(&workload(tenant, dir.join("missing")), ClientOptions::default()).unwrap_err();
        let chain = crate::telemetry::error_chain(&err);
        assert!(
            chain.starts_with("cannot build the workload-identity credential"),
            "{chain}"
        );
        assert!(chain.contains("missing"), "the token file is named: {chain}");
        let err =
            build_credential(&workload("not a tenant", token_file), ClientOptions::default()).unwrap_err();
        assert!(err.to_string().contains("invalid tenant ID"), "{err}");
    }

    #[test]
    fn a_client_secret_that_vanished_is_reported_by_name() {
        if std::env::var_os(AZURE_CLIENT_SECRET).is_some() {
            return; // this process really has one; nothing to prove here
        }
        let source = CredentialSource::ClientSecret {
            tenant_id: "tenant".into(),
            client_id: "app".into(),
        };
        let err = build_credential(&source, ClientOptions::default()).unwrap_err();
        assert!(matches!(err, CredentialError::MissingSecret));
        assert!(err.to_string().starts_with("AZURE_CLIENT_SECRET is not set"));
    }

    #[test]
    fn developer_tools_build_without_running_anything() {
        assert!(build_credential(&CredentialSource::DeveloperTools, ClientOptions::default()).is_ok());
    }
}
