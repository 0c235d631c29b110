//! `keyflip doctor`: checks a set-up and says how to fix each failure, changing nothing keyflip
//! relies on. Everything runs under the caller's credentials; with `--app-principal-id` it also
//! reads the role assignments (and access policies) of the app's managed identity and judges
//! them against what a rotation needs.
//!
//! In order: the configuration; a token for every audience keyflip uses; per served vault its
//! access model (RBAC or access policies), listing, the caller's (and the app's) secret
//! permissions, found through the documented permission reads rather than by writing anything,
//! and the Event Grid subscription to `KeyVaultEvents`; per managed secret its tags, Resource
//! Manager read and `listKeys` (never a regeneration), proof of possession (its value is the key
//! its `CredentialId` names, I8), that the data-plane check accepts that key and refuses a
//! deliberately wrong one (a check that accepts anything proves nothing), its expiry, one
//! resource per secret, and the app's actions on the resource; then the rotation lease (a lease
//! taken and released on a scratch name, and the mark key read).
//!
//! No key value goes into a check's text (I7); the wrong key is random and never stored.

use std::collections::BTreeMap;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use serde::Serialize;
use serde_json::Value;

use super::Tools;
pub use super::access::is_guid;
use super::access::{AccessPolicy, Effective, Permission, missing_secret_permissions};
use super::directory::VaultResource;
use crate::azure::arm::ArmError;
use crate::domain::tags::{self, RotationTags, rfc3339};
use crate::domain::untrusted::echo;
use crate::domain::{ApiKey, ArmResourceId, SecretName, VaultName};
use crate::engine::claims::Claims;
use crate::lease::LeaseKey;
use crate::lease::storage::StorageAuth;
use crate::providers::{KeyProvider, ResourceInfo, Verification, supported_type};
use crate::store::SecretSummary;

/// The Key Vault data actions keyflip uses: read values, list, write versions and tags.
pub const SECRET_DATA_ACTIONS: &[&str] = &[
    "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
    "Microsoft.KeyVault/vaults/secrets/setSecret/action",
    // Tag-only updates: the pending and revocation marks.
    "Microsoft.KeyVault/vaults/secrets/update/action",
];
/// The access-policy secret permissions keyflip uses.
pub const SECRET_PERMISSIONS: &[&str] = &["get", "list", "set"];
/// The blob data actions the rotation lease uses (leases and the mark key).
pub const LEASE_DATA_ACTIONS: &[&str] = &[
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
];
/// How long one token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The state of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not run: something it depends on failed, or it was not asked for.
    Skip,
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`token`, `vault`, `secret`, `lease`, …).
    pub area: &'static str,
    /// What it was checked on (an audience, a vault, `vault/secret`).
    pub subject: String,
    pub name: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Doctor's whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    /// The object id the caller's Resource Manager token names, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_principal: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    /// The checklist for a terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let mark = match check.status {
                Status::Ok => "ok  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            out.push_str(&format!(
                "{mark} {} {}: {}: {}\n",
                check.area, check.subject, check.name, check.detail
            ));
            if let Some(fix) = &check.fix {
                out.push_str(&format!("     fix: {fix}\n"));
            }
        }
        let failed = self.checks.iter().filter(|c| c.status == Status::Fail).count();
        let warned = self.checks.iter().filter(|c| c.status == Status::Warn).count();
        out.push_str(&match failed {
            0 => format!("all checks passed ({warned} warnings)\n"),
            n => format!("{n} checks failed, {warned} warnings\n"),
        });
        out
    }

    /// The report of a configuration that does not load: nothing else can be checked.
    pub fn configuration_failed(problem: &str) -> Self {
        Self {
            ok: false,
            caller: None,
            app_principal: None,
            checks: vec![Check {
                area: "configuration",
                subject: "settings".into(),
                name: "valid".into(),
                status: Status::Fail,
                detail: problem.to_string(),
                fix: Some("correct the settings named above (README \"Configuration\")".into()),
            }],
        }
    }
}

/// What doctor was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The object id of the app's managed identity (the deployment's output
    /// `APP_PRINCIPAL_ID`), validated as a GUID.
    pub app_principal_id: Option<String>,
    /// `KEYFLIP_*` settings the configuration does not know (typos).
    pub unknown_settings: Vec<String>,
}

/// Runs every check.
pub async fn run(tools: &Tools, options: &Options) -> Report {
    let mut doctor = Doctor {
        tools,
        app: options.app_principal_id.clone(),
        caller: None,
        checks: Vec::new(),
        definitions: BTreeMap::new(),
    };
    doctor.configuration(options);
    doctor.tokens().await;
    // Every vault the caller can see, listed once for all served vaults.
    let visible = tools.directory.vaults().await;
    let mut listed: Vec<(VaultName, Vec<SecretSummary>)> = Vec::new();
    for vault in &tools.settings.vaults {
        if let Some(secrets) = doctor.vault(&vault.name, &visible).await {
            listed.push((vault.name.clone(), secrets));
        }
    }
    let claims = Claims::from_listing(
        listed.iter().map(|(v, s)| (v, s.as_slice())),
        &tools.settings.allowed_scopes,
    );
    for (vault, secrets) in &listed {
        for summary in secrets.iter().filter(|s| tags::is_managed(&s.tags)) {
            doctor.secret(vault, summary, &claims).await;
        }
    }
    doctor.lease().await;
    let ok = !doctor.checks.iter().any(|c| c.status == Status::Fail);
    Report {
        ok,
        caller: doctor.caller,
        app_principal: doctor.app,
        checks: doctor.checks,
    }
}

struct Doctor<'a> {
    tools: &'a Tools,
    app: Option<String>,
    caller: Option<String>,
    checks: Vec<Check>,
    definitions: BTreeMap<String, Vec<Permission>>,
}

fn arm_failure(error: &ArmError) -> Status {
    match error {
        ArmError::Permanent {
            status: Some(403), ..
        } => Status::Warn,
        _ => Status::Fail,
    }
}

impl Doctor<'_> {
    fn add(
        &mut self,
        area: &'static str,
        subject: &str,
        name: &str,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.checks.push(Check {
            area,
            subject: subject.to_string(),
            name: name.to_string(),
            status,
            detail: detail.into(),
            fix,
        });
    }

    fn configuration(&mut self, options: &Options) {
        let settings = &self.tools.settings;
        let scopes: Vec<String> = settings
            .allowed_scopes
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        let detail = format!(
            "{} vaults ({}); allowed scopes: {}",
            settings.vaults.len(),
            settings
                .vaults
                .iter()
                .map(|v| v.name.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            scopes.join(", ")
        );
        self.add("configuration", "settings", "valid", Status::Ok, detail, None);
        for name in &options.unknown_settings {
            self.add(
                "configuration",
                name,
                "known setting",
                Status::Warn,
                "keyflip does not read this setting, so it has no effect",
                Some("check its spelling against README \"Configuration\"".into()),
            );
        }
        if self.app.is_none() {
            self.add(
                "identity",
                "app",
                "checked",
                Status::Skip,
                "the app's managed identity is not checked",
                Some("pass --app-principal-id <object id> (the deployment's output APP_PRINCIPAL_ID) to check its roles too".into()),
            );
        }
    }

    async fn tokens(&mut self) {
        let settings = &self.tools.settings;
        let mut audiences = vec![
            ("Resource Manager", settings.arm_token_scope()),
            ("Key Vault", "https://vault.azure.net/.default".to_string()),
        ];
        if let Some(storage) = &settings.storage
            && matches!(storage.auth, StorageAuth::Identity { .. })
        {
            audiences.push(("Storage", "https://storage.azure.com/.default".to_string()));
        }
        for (index, (name, scope)) in audiences.into_iter().enumerate() {
            let credential: &dyn TokenCredential = self.tools.credential.as_ref();
            match tokio::time::timeout(TOKEN_TIMEOUT, credential.get_token(&[scope.as_str()], None)).await {
                Ok(Ok(token)) => {
                    if index == 0 {
                        self.caller = object_id(token.token.secret());
                    }
                    let who = self.caller.as_deref().map(|c| format!(" (object id {c})")).unwrap_or_default();
                    self.add("token", name, "acquired", Status::Ok, format!("a token for {scope}{}", if index == 0 { who } else { String::new() }), None);
                }
                Ok(Err(e)) => self.add(
                    "token",
                    name,
                    "acquired",
                    Status::Fail,
                    format!("no token for {scope}: {}", crate::telemetry::error_chain(&e)),
                    Some("sign in (az login), or check the managed identity / workload identity settings (README \"Configuration\")".into()),
                ),
                Err(_) => self.add("token", name, "acquired", Status::Fail, format!("no token for {scope} within {} s", TOKEN_TIMEOUT.as_secs()), Some("check the network path to Entra ID / the identity endpoint".into())),
            }
        }
    }

    /// The vault's checks; its secrets when it can be listed.
    async fn vault(
        &mut self,
        vault: &VaultName,
        visible: &Result<Vec<VaultResource>, ArmError>,
    ) -> Option<Vec<SecretSummary>> {
        let subject = vault.to_string();
        let url = self.tools.settings.vault(vault).map(|v| v.url.clone())?;
        let found = visible
            .as_ref()
            .map(|vaults| vaults.iter().find(|v| v.serves(&url)).cloned());
        let resource = match found {
            Ok(Some(found)) => {
                let model = match found.rbac {
                    true => "RBAC (enableRbacAuthorization=true): roles grant secret access",
                    false => {
                        "access policies (enableRbacAuthorization=false): the vault's access policies grant secret access"
                    }
                };
                self.add(
                    "vault",
                    &subject,
                    "access model",
                    Status::Ok,
                    format!("{model}; {}", found.id),
                    None,
                );
                Some(found)
            }
            Ok(None) => {
                self.add("vault", &subject, "access model", Status::Warn, "the vault's Resource Manager resource is in no subscription you can read, so its access model and Event Grid wiring are not checked", Some("grant yourself Reader on the vault (or its resource group) to check them".into()));
                None
            }
            Err(e) => {
                self.add(
                    "vault",
                    &subject,
                    "access model",
                    arm_failure(e),
                    format!("reading the vault's resource failed: {e}"),
                    None,
                );
                None
            }
        };
        let listed = match self.tools.store.list(vault).await {
            Ok(secrets) => {
                let managed = secrets.iter().filter(|s| tags::is_managed(&s.tags)).count();
                self.add(
                    "vault",
                    &subject,
                    "list secrets",
                    Status::Ok,
                    format!("{} secrets, {managed} managed", secrets.len()),
                    None,
                );
                Some(secrets)
            }
            Err(e) => {
                self.add("vault", &subject, "list secrets", Status::Fail, format!("listing failed: {e}"), Some(format!("give yourself (and the app) Key Vault Secrets Officer on {vault}, or an access policy with secret permissions get, list, set; check KEYFLIP_VAULTS")));
                None
            }
        };
        if let Some(found) = &resource {
            self.secret_permissions(vault, found).await;
            self.event_grid(vault, found).await;
        }
        listed
    }

    async fn secret_permissions(&mut self, vault: &VaultName, found: &VaultResource) {
        let subject = vault.to_string();
        let target = found.id.to_string();
        if found.rbac {
            match self.tools.directory.my_permissions(&target).await {
                Ok(effective) => self.judge_data_actions("you", &subject, &effective, &target),
                Err(e) => self.add(
                    "vault",
                    &subject,
                    "secret permissions (you)",
                    arm_failure(&e),
                    format!("reading your permissions failed: {e}"),
                    None,
                ),
            }
            if let Some(app) = self.app.clone() {
                match self
                    .tools
                    .directory
                    .principal_permissions(&app, &target, &mut self.definitions)
                    .await
                {
                    Ok(effective) => self.judge_data_actions("the app", &subject, &effective, &target),
                    Err(e) => self.add(
                        "vault",
                        &subject,
                        "secret permissions (the app)",
                        arm_failure(&e),
                        format!("reading the app's role assignments failed: {e}"),
                        None,
                    ),
                }
            }
        } else {
            let policies = AccessPolicy::from_vault(&found.body);
            let mut principals = Vec::new();
            if let Some(caller) = self.caller.clone() {
                principals.push(("you", caller));
            }
            if let Some(app) = self.app.clone() {
                principals.push(("the app", app));
            }
            for (who, principal) in principals {
                let missing = missing_secret_permissions(&policies, &principal, SECRET_PERMISSIONS);
                let name = format!("secret permissions ({who})");
                match missing.is_empty() {
                    true => self.add("vault", &subject, &name, Status::Ok, "the access policies grant get, list and set", None),
                    false => self.add("vault", &subject, &name, Status::Fail, format!("the access policies do not grant secret permission {}", missing.join(", ")), Some(format!("az keyvault set-policy --name {vault} --object-id {principal} --secret-permissions get list set"))),
                }
            }
        }
    }

    fn judge_data_actions(&mut self, who: &str, subject: &str, effective: &Effective, target: &str) {
        let missing = effective.missing_data_actions(SECRET_DATA_ACTIONS);
        let name = format!("secret permissions ({who})");
        match missing.is_empty() {
            true => self.add("vault", subject, &name, Status::Ok, "roles grant reading, listing and writing secrets", None),
            false => self.add("vault", subject, &name, Status::Fail, format!("no role grants {}", missing.join(", ")), Some(format!("assign Key Vault Secrets Officer on {target} (az role assignment create --role \"Key Vault Secrets Officer\" --scope {target} --assignee <object id>)"))),
        }
    }

    async fn event_grid(&mut self, vault: &VaultName, found: &VaultResource) {
        let subject = vault.to_string();
        let fix = Some("run scripts/subscribe-eventgrid.sh after the code is deployed (README \"Deploy\"); the sweep still rotates every due secret meanwhile".to_string());
        let topics = match self.tools.directory.vault_topics(&found.id).await {
            Ok(topics) => topics,
            Err(e) => {
                self.add(
                    "vault",
                    &subject,
                    "Event Grid subscription",
                    Status::Warn,
                    format!("reading the vault's Event Grid system topics failed: {e}"),
                    None,
                );
                return;
            }
        };
        if topics.is_empty() {
            self.add(
                "vault",
                &subject,
                "Event Grid subscription",
                Status::Fail,
                "the vault has no Event Grid system topic: SecretNearExpiry events reach no one",
                fix,
            );
            return;
        }
        let subscriptions: Vec<&Value> = topics.iter().flat_map(|(_, subs)| subs).collect();
        let name_of = |s: &Value| echo(s.get("name").and_then(Value::as_str).unwrap_or_default());
        let target_of = |s: &Value| {
            echo(
                s.pointer("/properties/destination/properties/resourceId")
                    .or_else(|| s.pointer("/properties/destination/properties/endpointBaseUrl"))
                    .and_then(Value::as_str)
                    .unwrap_or("an endpoint"),
            )
        };
        // Which expiry events reach each KeyVaultEvents function, over every subscription (one
        // may carry both types, or two one each).
        let mut coverage: BTreeMap<String, (bool, bool)> = BTreeMap::new();
        for sub in &subscriptions {
            let d = delivery(sub);
            if !d.provisioned || !(d.near || d.expired) {
                continue;
            }
            match (&d.keyflip, d.filtered, d.runs_code) {
                (Some(_), true, _) => self.add(
                    "vault",
                    &subject,
                    "Event Grid subscription",
                    Status::Fail,
                    format!("{} delivers to {} only for some secrets (a subject or advanced filter): the others' events reach no one", name_of(sub), target_of(sub)),
                    Some("remove the subscription's subject and advanced filters (keyflip decides which secrets it manages from their tags)".into()),
                ),
                (Some(target), false, _) => {
                    let seen = coverage.entry(target.clone()).or_default();
                    seen.0 |= d.near;
                    seen.1 |= d.expired;
                }
                (None, _, true) => self.add(
                    "vault",
                    &subject,
                    "no other rotator",
                    Status::Fail,
                    format!("{} also delivers the expiry events to {}: another rotator (e.g. one of Microsoft's sample functions) may rotate the same secrets, and two rotators break consumers", name_of(sub), target_of(sub)),
                    Some("delete that event subscription (README \"Migrating from Microsoft's PowerShell rotation samples\")".into()),
                ),
                (None, _, false) => self.add(
                    "vault",
                    &subject,
                    "no other rotator",
                    Status::Warn,
                    format!("{} also delivers the expiry events to {} (a queue, hub or bus): fine if only something that records them reads it", name_of(sub), target_of(sub)),
                    None,
                ),
            }
        }
        let complete: Vec<String> = coverage
            .iter()
            .filter(|(_, (near, expired))| *near && *expired)
            .map(|(target, _)| echo(target))
            .collect();
        match complete.as_slice() {
            [] => {
                let partial = match coverage.is_empty() {
                    true => String::new(),
                    false => " (only one of the two event types reaches it)".to_string(),
                };
                self.add("vault", &subject, "Event Grid subscription", Status::Fail, format!("no subscription of the vault's system topic delivers both SecretNearExpiry and SecretExpired to a KeyVaultEvents function{partial}"), fix)
            }
            [one] => self.add("vault", &subject, "Event Grid subscription", Status::Ok, format!("SecretNearExpiry and SecretExpired reach {one}"), None),
            many => self.add(
                "vault",
                &subject,
                "Event Grid subscription",
                Status::Fail,
                format!("the expiry events reach {} KeyVaultEvents functions ({}): two keyflip deployments serving one vault rotate the same secrets", many.len(), many.join(", ")),
                Some("keep one deployment per vault: delete the other subscriptions".into()),
            ),
        }
    }

    async fn secret(&mut self, vault: &VaultName, summary: &SecretSummary, claims: &Claims) {
        let subject = format!("{vault}/{}", summary.name);
        let settings = &self.tools.settings;
        let tags = match RotationTags::parse(&summary.tags, settings.lead_days) {
            Ok(tags) => tags,
            Err(e) => {
                self.add(
                    "secret",
                    &subject,
                    "tags",
                    Status::Fail,
                    e.to_string(),
                    Some("correct the tags (README \"The tag contract\")".into()),
                );
                return;
            }
        };
        let resource = tags.provider_address.clone();
        if !settings.allowed_scopes.permits(vault, &resource) {
            self.add(
                "secret",
                &subject,
                "scope",
                Status::Fail,
                format!(
                    "{resource} is outside the scopes allowed for {vault} ({})",
                    settings.allowed_scopes.describe_for(vault)
                ),
                Some("add its scope to KEYFLIP_ALLOWED_SCOPES, or correct ProviderAddress".into()),
            );
            return;
        }
        let provider = match self.tools.providers.for_resource(&resource) {
            Ok(provider) => provider,
            Err(e) => {
                self.add("secret", &subject, "provider", Status::Fail, e.to_string(), None);
                return;
            }
        };
        self.add(
            "secret",
            &subject,
            "tags",
            Status::Ok,
            format!("{} active; {resource}", tags.credential_id),
            None,
        );
        let others = claims.on(&resource);
        if others.len() > 1 {
            let names: Vec<String> = others.iter().map(ToString::to_string).collect();
            self.add(
                "secret",
                &subject,
                "one secret per resource",
                Status::Fail,
                format!(
                    "{resource} is named by {}: keyflip rotates none of them",
                    names.join(" and ")
                ),
                Some(
                    "give each resource one managed secret: remove the rotation tags from the others".into(),
                ),
            );
        }
        if let Some(expires) = summary.expires {
            let now = self.tools.clock.now();
            if expires <= now {
                self.add("secret", &subject, "expiry", Status::Fail, format!("expired at {}: a rotation was missed", rfc3339(expires)), Some(format!("keyflip rotate --vault {vault} --secret {}, and check why the sweep did not (its alert fires on secret.expired)", summary.name)));
            }
        }
        let info = match provider.describe(&resource).await {
            Ok(info) => info,
            Err(e) => {
                self.add("secret", &subject, "resource read", Status::Fail, format!("reading {resource}: {e}"), Some("check the resource exists and that you (and the app) hold the keyflip key rotator role on it".into()));
                return;
            }
        };
        if info.keys_disabled {
            self.add(
                "secret",
                &subject,
                "resource read",
                Status::Fail,
                format!("{resource} has disableLocalAuth=true: its keys cannot be used"),
                Some("remove the secret's rotation tags, or enable local auth".into()),
            );
            return;
        }
        let keys = match provider.list_keys(&resource).await {
            Ok(keys) => keys,
            Err(e) => {
                self.add("secret", &subject, "listKeys", Status::Fail, format!("listing the keys of {resource}: {e}"), Some("assign the keyflip key rotator role (or Cognitive Services Contributor) on the resource's scope".into()));
                return;
            }
        };
        self.add(
            "secret",
            &subject,
            "resource read",
            Status::Ok,
            format!(
                "read and listKeys on {resource} (kind {})",
                info.kind.as_deref().unwrap_or("unknown")
            ),
            None,
        );
        let Some(slot) = provider.slot_from_tag(&tags.credential_id) else {
            self.add(
                "secret",
                &subject,
                "proof of possession",
                Status::Fail,
                format!(
                    "CredentialId {} is not a slot of this resource",
                    tags.credential_id
                ),
                None,
            );
            return;
        };
        let value = match self.tools.store.latest(vault, &summary.name).await {
            Ok(secret) => secret.value,
            Err(e) => {
                self.add(
                    "secret",
                    &subject,
                    "proof of possession",
                    Status::Fail,
                    format!("reading the latest version: {e}"),
                    Some("you (and the app) need secret get on the vault".into()),
                );
                return;
            }
        };
        let fix_repair = Some(format!(
            "keyflip rotate --repair --vault {vault} --secret {} (publishes the active slot's current key)",
            summary.name
        ));
        match keys.slot_of(&value) {
            Some(held) if held == slot => self.add("secret", &subject, "proof of possession", Status::Ok, format!("the latest version holds the current {}", provider.slot_tag(slot)), None),
            Some(held) => self.add("secret", &subject, "proof of possession", Status::Fail, format!("the latest version holds {}, but CredentialId says {}: a rotation would regenerate the key consumers use, so keyflip refuses", provider.slot_tag(held), tags.credential_id), fix_repair),
            None => self.add("secret", &subject, "proof of possession", Status::Fail, "the latest version holds neither key of the resource: keyflip refuses to rotate it (failed:unknown-key)", fix_repair),
        }
        self.data_plane(
            &subject,
            provider.as_ref(),
            &info,
            keys.get(slot),
            tags.verify_key,
        )
        .await;
        self.app_actions(&subject, &resource).await;
    }

    async fn data_plane(
        &mut self,
        subject: &str,
        provider: &dyn KeyProvider,
        info: &ResourceInfo,
        key: &ApiKey,
        verify: bool,
    ) {
        let (status, detail, fix) = judge_check(provider, info, key, verify).await;
        self.add("secret", subject, "data-plane check", status, detail, fix);
    }

    async fn app_actions(&mut self, subject: &str, resource: &ArmResourceId) {
        let Some(app) = self.app.clone() else {
            return;
        };
        let Some(supported) = supported_type(&resource.resource_type()) else {
            return;
        };
        let target = resource.to_string();
        match self
            .tools
            .directory
            .principal_permissions(&app, &target, &mut self.definitions)
            .await
        {
            Ok(effective) => {
                let missing = effective.missing_actions(supported.arm_actions);
                match missing.is_empty() {
                    true => self.add("secret", subject, "the app's actions", Status::Ok, "the app's roles grant every action a rotation calls", None),
                    false => self.add("secret", subject, "the app's actions", Status::Fail, format!("the app's roles do not grant {}", missing.join(", ")), Some(format!("assign the keyflip key rotator role to the app on a scope holding {target} (infra/ does it for each allowed scope)"))),
                }
            }
            Err(e) => self.add(
                "secret",
                subject,
                "the app's actions",
                arm_failure(&e),
                format!("reading the app's role assignments failed: {e}"),
                None,
            ),
        }
    }

    async fn lease(&mut self) {
        let leases = match &self.tools.leases {
            Ok(leases) => leases.clone(),
            Err(why) => {
                self.add("lease", "storage", "lease", Status::Fail, why.clone(), Some("set AzureWebJobsStorage (or AzureWebJobsStorage__accountName) to the app's storage account, with Storage Blob Data Contributor for you".into()));
                return;
            }
        };
        let subject = leases.describe();
        let (Some(vault), Ok(scratch)) = (
            self.tools.settings.vaults.first(),
            SecretName::parse("keyflip-doctor-scratch"),
        ) else {
            return;
        };
        match leases.acquire(&LeaseKey::new(&vault.name, &scratch)).await {
            Ok(lease) => {
                let released = lease.release().await;
                let detail = match released {
                    Ok(()) => "took and released a lease on a scratch name".to_string(),
                    Err(e) => format!(
                        "took a lease on a scratch name; releasing it failed ({e}), it expires by itself"
                    ),
                };
                self.add("lease", &subject, "lease", Status::Ok, detail, None);
            }
            Err(e) => {
                self.add("lease", &subject, "lease", Status::Fail, format!("taking a lease failed: {e}"), Some("give yourself (and the app) Storage Blob Data Contributor on the storage account, and check its network rules".into()));
                return;
            }
        }
        match leases.mark_key().await {
            Ok(_) => self.add(
                "lease",
                &subject,
                "mark key",
                Status::Ok,
                "read (or made) keyflip's mark key beside the leases",
                None,
            ),
            Err(e) => self.add(
                "lease",
                &subject,
                "mark key",
                Status::Fail,
                format!("reading the mark key failed: {e}"),
                None,
            ),
        }
        self.app_lease_roles().await;
    }

    /// The app's blob roles on the lease storage account, found among its role assignments.
    async fn app_lease_roles(&mut self) {
        let Some(app) = self.app.clone() else {
            return;
        };
        let Some(account) = self
            .tools
            .settings
            .storage
            .as_ref()
            .and_then(|s| s.blob_endpoint.host_str())
            .and_then(|h| h.split('.').next())
            .map(str::to_string)
        else {
            return;
        };
        let mut subscriptions: Vec<String> = self
            .tools
            .settings
            .allowed_scopes
            .0
            .iter()
            .map(|s| s.scope.subscription_id().to_string())
            .collect();
        subscriptions.sort();
        subscriptions.dedup();
        for subscription in subscriptions {
            let scopes = match self
                .tools
                .directory
                .assignment_scopes(&app, &format!("/subscriptions/{subscription}"))
                .await
            {
                Ok(scopes) => scopes,
                Err(_) => continue,
            };
            let suffix = format!(
                "/providers/microsoft.storage/storageaccounts/{}",
                account.to_ascii_lowercase()
            );
            let Some(scope) = scopes
                .into_iter()
                .find(|s| s.to_ascii_lowercase().ends_with(&suffix))
            else {
                continue;
            };
            match self
                .tools
                .directory
                .principal_permissions(&app, &scope, &mut self.definitions)
                .await
            {
                Ok(effective) => {
                    let missing = effective.missing_data_actions(LEASE_DATA_ACTIONS);
                    match missing.is_empty() {
                        true => self.add(
                            "lease",
                            &account,
                            "the app's blob roles",
                            Status::Ok,
                            format!("the app may read and write blobs in {scope}"),
                            None,
                        ),
                        false => self.add(
                            "lease",
                            &account,
                            "the app's blob roles",
                            Status::Fail,
                            format!("the app's roles on {scope} do not grant {}", missing.join(", ")),
                            Some("assign Storage Blob Data Owner to the app on its storage account".into()),
                        ),
                    }
                }
                Err(e) => self.add(
                    "lease",
                    &account,
                    "the app's blob roles",
                    arm_failure(&e),
                    format!("reading the app's roles failed: {e}"),
                    None,
                ),
            }
            return;
        }
        self.add("lease", &account, "the app's blob roles", Status::Warn, format!("no role assignment of the app on a storage account named {account} was found in the allowed scopes' subscriptions"), Some("check that the app holds Storage Blob Data Owner on its storage account".into()));
    }
}

/// What the data-plane check of a resource proves: it must accept `key` (the active one) and
/// refuse a deliberately wrong key, or it proves nothing about a new key.
pub async fn judge_check(
    provider: &dyn KeyProvider,
    info: &ResourceInfo,
    key: &ApiKey,
    verify: bool,
) -> (Status, String, Option<String>) {
    if info.check.is_none() {
        let kind = info.kind.as_deref().unwrap_or("unknown");
        return match verify {
            false => (
                Status::Warn,
                "none: VerifyKey=false, so rotations publish keys unchecked".into(),
                None,
            ),
            true => (
                Status::Fail,
                format!("kind {kind} has no trustworthy check, so keyflip refuses to rotate it"),
                Some("set VerifyKey=false on the secret if you accept unchecked keys".into()),
            ),
        };
    }
    match provider.verify(info, key).await {
        Verification::Accepted => {}
        Verification::Refused(why) => {
            return (
                Status::Fail,
                format!("the data plane refuses the active key: {why}"),
                Some(
                    "check the account's endpoint and network rules (keyflip must reach its data plane)"
                        .into(),
                ),
            );
        }
        Verification::Inconclusive(why) => {
            return (
                Status::Warn,
                format!("inconclusive with the active key: {why}"),
                None,
            );
        }
    }
    match provider.verify(info, &wrong_key()).await {
        Verification::Refused(_) => (Status::Ok, "accepts the active key and refuses a wrong one".into(), None),
        Verification::Accepted => (
            Status::Fail,
            "the check accepts a deliberately wrong key, so it proves nothing about a new key".into(),
            Some("report it; until it is fixed, VerifyKey=false says plainly that keys are published unchecked".into()),
        ),
        Verification::Inconclusive(why) => (
            Status::Warn,
            format!("accepts the active key; inconclusive with a wrong one: {why}"),
            None,
        ),
    }
}

/// What an event subscription does with Key Vault's expiry events.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivery {
    /// It is live (`Succeeded`, or still being changed: `Updating`/`Creating` deliver soon).
    provisioned: bool,
    near: bool,
    expired: bool,
    /// The `KeyVaultEvents` function it delivers to, if it does.
    keyflip: Option<String>,
    /// A subject or advanced filter lets only some secrets' events through.
    filtered: bool,
    /// Its destination runs code (a function, a webhook): it could rotate.
    runs_code: bool,
}

fn delivery(subscription: &Value) -> Delivery {
    let properties = subscription.get("properties").unwrap_or(&Value::Null);
    let state = properties
        .get("provisioningState")
        .and_then(Value::as_str)
        .unwrap_or("Succeeded");
    let provisioned = ["Succeeded", "Updating", "Creating"]
        .iter()
        .any(|s| state.eq_ignore_ascii_case(s));
    // An absent or empty list means every default event type.
    let types = properties
        .pointer("/filter/includedEventTypes")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty());
    let delivers = |wanted: &str| match types {
        None => true,
        Some(types) => types
            .iter()
            .filter_map(Value::as_str)
            .any(|t| t.eq_ignore_ascii_case(wanted)),
    };
    let destination = properties
        .get("destination")
        .filter(|d| !d.is_null())
        .or_else(|| properties.pointer("/deliveryWithResourceIdentity/destination"))
        .unwrap_or(&Value::Null);
    let endpoint = destination
        .get("endpointType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let runs_code = ["AzureFunction", "WebHook"]
        .iter()
        .any(|t| endpoint.eq_ignore_ascii_case(t));
    let keyflip = destination
        .pointer("/properties/resourceId")
        .and_then(Value::as_str)
        .filter(|id| {
            endpoint.eq_ignore_ascii_case("AzureFunction")
                && id.to_ascii_lowercase().ends_with("/functions/keyvaultevents")
        })
        .map(str::to_ascii_lowercase);
    let filter = properties.get("filter").unwrap_or(&Value::Null);
    let text = |name: &str| {
        filter
            .get(name)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    };
    let advanced = filter
        .get("advancedFilters")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    Delivery {
        provisioned,
        near: delivers("Microsoft.KeyVault.SecretNearExpiry"),
        expired: delivers("Microsoft.KeyVault.SecretExpired"),
        keyflip,
        filtered: text("subjectBeginsWith") || text("subjectEndsWith") || advanced,
        runs_code,
    }
}

/// The `oid` claim of a JWT, read without verifying it (only to say who is checking).
fn object_id(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = azure_core::base64::decode_url_safe(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("oid")
        .and_then(Value::as_str)
        .filter(|o| is_guid(o))
        .map(str::to_string)
}

/// A random key no resource holds.
fn wrong_key() -> ApiKey {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        bytes = *b"keyflip-doctor!!";
    }
    ApiKey::new(format!(
        "{}{}",
        "0wrong",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{KeyCheck, KeyPair, ProviderError};
    use serde_json::json;

    #[test]
    fn guids_are_the_only_principal_ids_accepted() {
        assert!(is_guid("3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"));
        assert!(!is_guid("3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5"));
        assert!(!is_guid("x' or principalId ne 'y"));
        assert!(!is_guid(""));
    }

    #[test]
    fn subscriptions_are_classified_by_destination_types_and_filters() {
        let good = json!({"name": "s", "properties": {
            "provisioningState": "Succeeded",
            "destination": {"endpointType": "AzureFunction", "properties": {"resourceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/app/functions/KeyVaultEvents"}},
            "filter": {"includedEventTypes": ["Microsoft.KeyVault.SecretNearExpiry", "Microsoft.KeyVault.SecretExpired"]}}});
        let d = delivery(&good);
        assert!(d.provisioned && d.near && d.expired && !d.filtered && d.runs_code);
        assert!(
            d.keyflip
                .as_deref()
                .is_some_and(|t| t.ends_with("/functions/keyvaultevents"))
        );
        let mut one_type = good.clone();
        one_type["properties"]["filter"]["includedEventTypes"] =
            json!(["Microsoft.KeyVault.SecretNearExpiry"]);
        let d = delivery(&one_type);
        assert!(
            d.near && !d.expired && !d.filtered,
            "one type is coverage, not a filter"
        );
        let mut subject = good.clone();
        subject["properties"]["filter"]["subjectBeginsWith"] = json!("my-secret");
        assert!(delivery(&subject).filtered);
        let mut advanced = good.clone();
        advanced["properties"]["filter"]["advancedFilters"] =
            json!([{"operatorType": "StringIn", "key": "subject", "values": ["a"]}]);
        assert!(delivery(&advanced).filtered);
        let mut webhook = good.clone();
        webhook["properties"]["destination"] =
            json!({"endpointType": "WebHook", "properties": {"endpointBaseUrl": "https://rotator.example"}});
        let d = delivery(&webhook);
        assert!(d.keyflip.is_none() && d.runs_code);
        let mut queue = good.clone();
        queue["properties"]["destination"] = json!({"endpointType": "StorageQueue", "properties": {"resourceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a", "queueName": "q"}});
        assert!(!delivery(&queue).runs_code);
        let mut with_identity = good.clone();
        let destination = with_identity["properties"]["destination"].take();
        with_identity["properties"]["deliveryWithResourceIdentity"] =
            json!({"identity": {"type": "SystemAssigned"}, "destination": destination});
        assert!(delivery(&with_identity).keyflip.is_some());
        let mut failed = good.clone();
        failed["properties"]["provisioningState"] = json!("Failed");
        assert!(!delivery(&failed).provisioned);
        let mut unrelated = good.clone();
        unrelated["properties"]["filter"]["includedEventTypes"] =
            json!(["Microsoft.KeyVault.SecretNewVersionCreated"]);
        let d = delivery(&unrelated);
        assert!(!d.near && !d.expired);
        let mut empty = good;
        empty["properties"]["filter"]["includedEventTypes"] = json!([]);
        let d = delivery(&empty);
        assert!(d.near && d.expired, "an empty list is every type");
    }

    #[test]
    fn the_object_id_comes_from_the_token_payload() {
        let payload =
            azure_core::base64::encode_url_safe(br#"{"oid":"3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"}"#);
        assert_eq!(
            object_id(&format!("h.{payload}.s")).as_deref(),
            Some("3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(object_id("not a token"), None);
    }

    /// A provider whose check answers the same for every key.
    #[derive(Debug)]
    struct Answers(Verification);

    #[async_trait::async_trait]
    impl KeyProvider for Answers {
        fn name(&self) -> &'static str {
            "test"
        }
        fn slot_from_tag(&self, _: &str) -> Option<crate::domain::Slot> {
            None
        }
        fn slot_tag(&self, _: crate::domain::Slot) -> &'static str {
            "key1"
        }
        async fn describe(&self, _: &ArmResourceId) -> Result<ResourceInfo, ProviderError> {
            Err(ProviderError::NotFound("unused".into()))
        }
        async fn list_keys(&self, _: &ArmResourceId) -> Result<KeyPair, ProviderError> {
            Err(ProviderError::NotFound("unused".into()))
        }
        async fn regenerate(
            &self,
            _: &ArmResourceId,
            _: crate::domain::Slot,
        ) -> Result<KeyPair, ProviderError> {
            Err(ProviderError::NotFound("unused".into()))
        }
        async fn verify(&self, _: &ResourceInfo, _: &ApiKey) -> Verification {
            self.0.clone()
        }
    }

    fn info(with_check: bool) -> ResourceInfo {
        ResourceInfo {
            kind: Some("OpenAI".into()),
            keys_disabled: false,
            check: with_check.then(|| KeyCheck {
                method: "GET",
                url: url::Url::parse("https://a.openai.azure.com/openai/models").unwrap(),
                header: "api-key",
            }),
        }
    }

    #[tokio::test]
    async fn a_check_that_accepts_any_key_fails() {
        let key = ApiKey::new("the-active-key-value");
        let judge = |answer: Verification, check: bool, verify: bool| async move {
            judge_check(
                &Answers(answer),
                &info(check),
                &ApiKey::new("the-active-key-value"),
                verify,
            )
            .await
        };
        let (status, detail, fix) =
            judge_check(&Answers(Verification::Accepted), &info(true), &key, true).await;
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(detail.contains("accepts a deliberately wrong key"));
        assert!(fix.is_some());
        assert_eq!(
            judge(Verification::Refused("401".into()), true, true).await.0,
            Status::Fail
        );
        assert_eq!(
            judge(Verification::Inconclusive("503".into()), true, true)
                .await
                .0,
            Status::Warn
        );
        assert_eq!(
            judge(Verification::Accepted, false, true).await.0,
            Status::Fail,
            "no check, no opt-out"
        );
        assert_eq!(
            judge(Verification::Accepted, false, false).await.0,
            Status::Warn,
            "VerifyKey=false said plainly"
        );
    }

    #[test]
    fn the_wrong_key_is_random() {
        assert!(!wrong_key().same_as(&wrong_key()));
    }
}
