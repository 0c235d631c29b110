//! The Bicep itself: it parses, it uses only listed resource types and API versions, its app
//! settings match what the code reads, the custom role holds exactly the providers' actions,
//! and the Event Grid subscription, vault access and parameters file say what keyflip needs.

use std::collections::BTreeSet;

use keyflip::config::{DEFAULTED_SETTINGS, KEYFLIP_SETTINGS, LOCAL_ONLY_SETTINGS};
use keyflip::providers::SUPPORTED_TYPES;

use super::bicep::{self, Setting};
use super::{bicep_files, data_lines, infra, read, root};

#[test]
fn every_bicep_file_parses_without_error_or_missing_nodes() {
    let files = bicep_files();
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(root()).ok())
        .map(|f| f.display().to_string())
        .collect();
    for expected in [
        "infra/main.bicep",
        "infra/eventgrid-subscription.bicep",
        "infra/modules/vault.bicep",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} is missing (found {names:?})"
        );
    }
    let errors: Vec<String> = files.iter().filter_map(|f| bicep::parse_file(f).err()).collect();
    assert!(
        errors.is_empty(),
        "Bicep that does not parse:\n{}",
        errors.join("\n")
    );
}

/// (allowed, excluded) of api-versions.txt; excluded lines start with `!`.
fn reference_list() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut allowed = BTreeSet::new();
    let mut excluded = BTreeSet::new();
    for line in data_lines("api-versions.txt") {
        match line.strip_prefix('!') {
            Some(entry) => excluded.insert(entry.to_string()),
            None => allowed.insert(line),
        };
    }
    (allowed, excluded)
}

#[test]
fn every_resource_type_and_api_version_is_listed() {
    let (allowed, excluded) = reference_list();
    let supplement: BTreeSet<String> = data_lines("api-versions.supplement.txt").into_iter().collect();
    assert!(
        allowed.is_disjoint(&supplement),
        "the supplement repeats entries of the reference copy"
    );
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for file in bicep_files() {
        let parsed = bicep::parse_file(&file).unwrap_or_else(|e| panic!("{e}"));
        for (ty, line) in parsed.resource_types() {
            let at = format!("{}:{line}", file.display());
            if excluded.contains(&ty) {
                problems.push(format!(
                    "{at}: {ty} is retired (see tests/data/deploy/api-versions.txt)"
                ));
            } else if !allowed.contains(&ty) && !supplement.contains(&ty) {
                problems.push(format!(
                    "{at}: {ty} is not in ../shared/reference/azure-deploy.md (tests/data/deploy/api-versions.txt) nor in the verified supplement"
                ));
            }
            used.insert(ty);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A supplement entry nobody uses is stale.
    for entry in &supplement {
        assert!(
            used.contains(entry),
            "{entry} is in the supplement but no Bicep file uses it"
        );
    }
}

/// Every `Microsoft.<Namespace>/<type>@<version>` token of a text (a scan for the token's
/// characters, not a pattern language).
fn type_versions(text: &str) -> BTreeSet<String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "./@-".contains(c);
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("Microsoft.") {
        let token: String = rest[at..].chars().take_while(|c| token_char(*c)).collect();
        rest = &rest[at + token.len().max(1)..];
        let token = token.trim_end_matches(['.', '-']);
        if let Some((ty, version)) = token.split_once('@')
            && ty.contains('/')
            && version.len() >= 10
        {
            found.insert(token.to_string());
        }
    }
    found
}

#[test]
fn the_api_version_list_is_a_faithful_copy_of_the_reference() {
    let reference = root().join("../shared/reference/azure-deploy.md");
    if !reference.exists() {
        eprintln!(
            "note: {} is not beside the repository; the copy in tests/data/deploy/api-versions.txt is not compared",
            reference.display()
        );
        return;
    }
    let named = type_versions(&read(&reference));
    let (allowed, excluded) = reference_list();
    let copy: BTreeSet<String> = allowed.union(&excluded).cloned().collect();
    assert_eq!(
        copy,
        named,
        "tests/data/deploy/api-versions.txt (allowed and ! lines) must list exactly the type@version entries of {}",
        reference.display()
    );
}

#[test]
fn the_token_scan_finds_type_versions() {
    let text = "use `Microsoft.KeyVault/vaults@2026-02-01` or later where this file shows `2023-07-01`; \
                Microsoft.Web/sites@2024-04-01, and `Microsoft.KeyVault/vaults@` alone.";
    let found: Vec<String> = type_versions(text).into_iter().collect();
    assert_eq!(
        found,
        [
            "Microsoft.KeyVault/vaults@2026-02-01",
            "Microsoft.Web/sites@2024-04-01"
        ]
    );
}

fn main_settings() -> Vec<Setting> {
    infra("main.bicep").app_settings()
}

#[test]
fn every_setting_the_code_reads_is_set_local_only_or_defaulted() {
    let settings = main_settings();
    let set: BTreeSet<&str> = settings.iter().map(|s| s.name.as_str()).collect();
    let mut problems = Vec::new();
    for name in KEYFLIP_SETTINGS {
        let places = [
            set.contains(name),
            LOCAL_ONLY_SETTINGS.contains(name),
            DEFAULTED_SETTINGS.contains(name),
        ];
        match places.iter().filter(|p| **p).count() {
            1 => {}
            0 => problems.push(format!(
                "{name} is read by keyflip but main.bicep does not set it and it is on neither LOCAL_ONLY_SETTINGS nor DEFAULTED_SETTINGS"
            )),
            _ => problems.push(format!(
                "{name} is in more than one of: set by main.bicep, LOCAL_ONLY_SETTINGS, DEFAULTED_SETTINGS"
            )),
        }
    }
    for name in set.iter().filter(|n| n.starts_with("KEYFLIP_")) {
        if !KEYFLIP_SETTINGS.contains(name) {
            problems.push(format!("main.bicep sets {name}, which keyflip does not read"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for required in [
        "KEYFLIP_VAULTS",
        "KEYFLIP_ALLOWED_SCOPES",
        "KEYFLIP_SWEEP_SCHEDULE",
    ] {
        assert!(set.contains(required), "main.bicep must set {required}");
    }
}

#[test]
fn other_settings_are_documented_platform_settings_and_flex_gets_none_it_deprecates() {
    let settings = main_settings();
    let mut documented = BTreeSet::new();
    let mut premium_only = BTreeSet::new();
    for line in data_lines("platform-settings.txt") {
        match line.strip_prefix("premium-only ") {
            Some(name) => {
                premium_only.insert(name.to_string());
                documented.insert(name.to_string());
            }
            None => {
                documented.insert(line);
            }
        }
    }
    let deprecated: BTreeSet<String> = data_lines("flex-deprecated.txt")
        .iter()
        .filter_map(|l| l.strip_prefix("setting "))
        .map(str::to_string)
        .collect();
    let mut problems = Vec::new();
    for s in &settings {
        let in_premium = s.var.as_deref() == Some("premiumSettings");
        if !s.name.starts_with("KEYFLIP_") && !documented.contains(&s.name) {
            problems.push(format!(
                "main.bicep sets {}, which tests/data/deploy/platform-settings.txt does not list as documented",
                s.name
            ));
        }
        if (premium_only.contains(&s.name) || deprecated.contains(&s.name)) && !in_premium {
            problems.push(format!(
                "{} is set outside premiumSettings (in {:?}): Flex Consumption deprecates it",
                s.name, s.var
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let main = infra("main.bicep");
    let variables = main.variables();
    let flex = variables
        .get("siteFlex")
        .copied()
        .unwrap_or_else(|| panic!("main.bicep has no var siteFlex"));
    let deprecated_properties: BTreeSet<String> = data_lines("flex-deprecated.txt")
        .iter()
        .filter_map(|l| l.strip_prefix("property "))
        .map(str::to_string)
        .collect();
    for key in main.keys_under(flex) {
        assert!(
            !deprecated_properties.contains(&key),
            "siteFlex sets {key}, which Flex Consumption deprecates"
        );
    }
    // The runtime is custom 1.0.
    let runtime = main.properties("runtime");
    assert_eq!(runtime.len(), 1, "one functionAppConfig.runtime");
    assert!(
        main.text(runtime[0]).contains("name: 'custom'") && main.text(runtime[0]).contains("version: '1.0'")
    );
}

#[test]
fn the_storage_client_id_and_keyflips_client_id_are_set_together() {
    let settings = main_settings();
    let var_of = |name: &str| {
        settings
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.var.clone())
    };
    let storage = var_of("AzureWebJobsStorage__clientId");
    assert!(storage.is_some(), "AzureWebJobsStorage__clientId is not set");
    assert_eq!(
        storage,
        var_of("KEYFLIP_MANAGED_IDENTITY_CLIENT_ID"),
        "keyflip refuses a storage client id other than its own: set both in one conditional list"
    );
    // Both take the user-assigned identity's client id.
    let main = infra("main.bicep");
    let list = main.variables()["identitySettings"];
    assert_eq!(main.text(list).matches("identity.properties.clientId").count(), 2);
    assert!(main.text(list).starts_with("useUserAssigned ?"));
}

#[test]
fn the_custom_role_holds_exactly_the_supported_providers_actions() {
    let role = infra("modules/rotator-role.bicep");
    let lists = role.properties("actions");
    assert_eq!(lists.len(), 1, "one actions list in the custom role");
    let actions = role.string_array(lists[0]).unwrap_or_else(|e| panic!("{e}"));
    let granted: BTreeSet<&str> = actions.iter().map(String::as_str).collect();
    assert_eq!(
        granted.len(),
        actions.len(),
        "an action is listed twice: {actions:?}"
    );
    let needed: BTreeSet<&str> = SUPPORTED_TYPES
        .iter()
        .flat_map(|t| t.arm_actions.iter().copied())
        .collect();
    assert_eq!(
        granted, needed,
        "infra/modules/rotator-role.bicep must grant exactly the union of SUPPORTED_TYPES' arm_actions"
    );
    assert!(
        actions.iter().all(|a| !a.contains('*')),
        "no wildcards: {actions:?}"
    );
    for empty in ["notActions", "dataActions", "notDataActions"] {
        let lists = role.properties(empty);
        assert_eq!(role.string_array(lists[0]), Ok(vec![]), "{empty} must be empty");
    }
}

#[test]
fn vault_access_is_secrets_officer_or_exactly_get_list_set() {
    let vault = infra("modules/vault.bicep");
    let main = vault.text(vault.properties("roleDefinitionId")[0]).to_string();
    assert!(main.contains("keyVaultSecretsOfficer"), "{main}");
    assert!(
        vault.source.contains("'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'"),
        "Key Vault Secrets Officer's id"
    );
    // src/store/keyvault.rs: get_secret (get), list_secret_properties (list), set_secret and
    // update_secret_properties (both secrets/set).
    let secrets = vault.properties("secrets");
    assert_eq!(
        vault.string_array(secrets[0]),
        Ok(vec!["get".to_string(), "list".to_string(), "set".to_string()])
    );
    let store = read(&root().join("src/store/keyvault.rs"));
    for call in [
        ".get_secret(",
        ".list_secret_properties(",
        ".set_secret(",
        ".update_secret_properties(",
    ] {
        assert!(
            store.contains(call),
            "src/store/keyvault.rs no longer calls {call}: review the access policy"
        );
    }
    for unexpected in [
        ".delete_secret(",
        ".purge_deleted_secret(",
        ".backup_secret(",
        ".restore_secret",
    ] {
        assert!(
            !store.contains(unexpected),
            "src/store/keyvault.rs calls {unexpected}: the access policy lacks it"
        );
    }
}

#[test]
fn the_event_grid_subscription_targets_keyvault_events_with_one_event_per_batch() {
    let sub = infra("eventgrid-subscription.bicep");
    let types = sub.properties("includedEventTypes");
    assert_eq!(
        sub.string_array(types[0]),
        Ok(vec![
            "Microsoft.KeyVault.SecretNearExpiry".to_string(),
            "Microsoft.KeyVault.SecretExpired".to_string()
        ])
    );
    let target = sub.text(sub.properties("resourceId")[0]).to_string();
    let function = keyflip::triggers::keyvault_events::FUNCTION;
    assert!(target.ends_with(&format!("/functions/{function}'")), "{target}");
    assert_eq!(sub.text(sub.properties("maxEventsPerBatch")[0]), "1");
    assert_eq!(sub.text(sub.properties("endpointType")[0]), "'AzureFunction'");
    assert_eq!(sub.properties("retryPolicy").len(), 1, "a retry policy");
    assert_eq!(
        sub.properties("deadLetterWithResourceIdentity").len(),
        1,
        "dead letters with the topic's identity"
    );
    // The topic's identity may write dead letters: main.bicep grants it on the container.
    let main = infra("main.bicep");
    assert!(
        main.source
            .contains("principalId: vaultAccess[i].outputs.topicPrincipalId")
    );
}

#[test]
fn the_parameters_file_maps_only_real_parameters() {
    let main = infra("main.bicep");
    let params: BTreeSet<String> = main.params().into_iter().collect();
    let file: serde_json::Value = serde_json::from_str(&read(&root().join("infra/main.parameters.json")))
        .unwrap_or_else(|e| panic!("infra/main.parameters.json is not JSON: {e}"));
    let mapped = file["parameters"].as_object().cloned().unwrap_or_default();
    for (name, value) in &mapped {
        assert!(
            params.contains(name),
            "main.parameters.json sets {name}, which main.bicep does not declare"
        );
        let text = value["value"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("${") && text.ends_with('}'),
            "{name} must be an azd environment variable reference, not {text}"
        );
    }
    for required in ["vaults", "allowedScopes", "environmentName", "location"] {
        assert!(
            mapped.contains_key(required),
            "main.parameters.json must map {required}"
        );
    }
}

#[test]
fn the_alert_queries_have_their_thresholds_in_front() {
    let alerts = infra("modules/alerts.bicep");
    for (var, names) in [
        (
            "rotationPendingQuery",
            "let pendingThreshold = ${pendingAlertHours}h;",
        ),
        ("sweepMissingQuery", "let sweepPeriod = ${sweepPeriodMinutes}m;"),
    ] {
        let value = alerts.variables()[var];
        assert!(
            alerts.text(value).contains(names),
            "{var}: {}",
            alerts.text(value)
        );
    }
    for kql in [
        "rotation-failed",
        "rotation-pending",
        "secret-expired",
        "sweep-missing",
    ] {
        let path = root().join(format!("infra/alerts/{kql}.kql"));
        assert!(path.exists(), "{} is missing", path.display());
        assert!(
            alerts.source.contains(&format!("'../alerts/{kql}.kql'")),
            "alerts.bicep does not load {kql}.kql"
        );
    }
    let pending = read(&root().join("infra/alerts/rotation-pending.kql"));
    assert!(pending.contains("ago(pendingThreshold)"));
    let sweep = read(&root().join("infra/alerts/sweep-missing.kql"));
    assert!(sweep.contains("ago(2 * sweepPeriod)"));
}
