//! What the deployment packages and runs: a function folder for every function the handler
//! serves, the packaging script, and azure.yaml's service and hooks.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

use super::{is_executable, read, root};

/// The functions `keyflip serve` routes (src/triggers, src/status/http.rs).
const SERVED: [&str; 6] = [
    keyflip::triggers::keyvault_events::FUNCTION,
    keyflip::triggers::sweep::FUNCTION,
    keyflip::triggers::manual::FUNCTION,
    keyflip::triggers::sweep_vault::FUNCTION,
    keyflip::triggers::keyvault_events_queue::FUNCTION,
    keyflip::status::http::FUNCTION,
];

#[test]
fn every_served_function_has_its_folder_and_no_folder_is_unserved() {
    for function in SERVED {
        let path = root().join("functions").join(function).join("function.json");
        let json: serde_json::Value = serde_json::from_str(&read(&path))
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        assert!(
            json["bindings"].as_array().is_some_and(|b| !b.is_empty()),
            "{} has no bindings",
            path.display()
        );
    }
    let folders = std::fs::read_dir(root().join("functions")).unwrap_or_else(|e| panic!("functions/: {e}"));
    for folder in folders.flatten() {
        let name = folder.file_name().to_string_lossy().into_owned();
        assert!(
            SERVED.contains(&name.as_str()),
            "functions/{name} is not a function keyflip serves"
        );
    }
    // The sweep's schedule is the app setting main.bicep sets.
    let sweep = read(&root().join("functions/RotationSweep/function.json"));
    assert!(sweep.contains("\"%KEYFLIP_SWEEP_SCHEDULE%\""));
}

#[test]
fn the_packaging_script_exists_and_is_executable() {
    let script = root().join("scripts/package.sh");
    assert!(
        is_executable(&script),
        "{} is missing or not executable (chmod +x): azure.yaml's prepackage hook runs it",
        script.display()
    );
}

fn azure_yaml() -> Yaml {
    let path = root().join("azure.yaml");
    let mut docs =
        YamlLoader::load_from_str(&read(&path)).unwrap_or_else(|e| panic!("azure.yaml does not parse: {e}"));
    assert_eq!(docs.len(), 1, "azure.yaml holds one document");
    docs.remove(0)
}

/// Every `run:` of a hooks map (`posix`/`windows` variants included), with the hook's name.
fn hook_runs(hooks: &Yaml) -> Vec<(String, String)> {
    let mut runs = Vec::new();
    if let Some(map) = hooks.as_hash() {
        for (name, hook) in map {
            let name = name.as_str().unwrap_or_default().to_string();
            for variant in [hook, &hook["posix"], &hook["windows"]] {
                if let Some(run) = variant["run"].as_str() {
                    runs.push((name.clone(), run.to_string()));
                }
            }
        }
    }
    runs
}

#[test]
fn azure_yaml_declares_the_custom_function_service() {
    let doc = azure_yaml();
    assert_eq!(doc["name"].as_str(), Some("keyflip"));
    let service = &doc["services"]["keyflip"];
    assert_eq!(service["language"].as_str(), Some("custom"));
    assert_eq!(service["host"].as_str(), Some("function"));
    assert_eq!(service["dist"].as_str(), Some("dist/keyflip.zip"));
    assert_eq!(doc["infra"]["path"].as_str(), Some("infra"));
    assert_eq!(doc["infra"]["module"].as_str(), Some("main"));
    let service_hooks = hook_runs(&service["hooks"]);
    assert!(
        service_hooks.contains(&("prepackage".into(), "./scripts/package.sh".into())),
        "{service_hooks:?}"
    );
    let project_hooks = hook_runs(&doc["hooks"]);
    assert!(
        project_hooks.contains(&("postdeploy".into(), "./scripts/subscribe-eventgrid.sh".into())),
        "{project_hooks:?}"
    );
}

#[test]
fn every_hook_azure_yaml_names_exists_and_is_executable() {
    let doc = azure_yaml();
    let mut runs = hook_runs(&doc["hooks"]);
    if let Some(services) = doc["services"].as_hash() {
        for service in services.values() {
            runs.extend(hook_runs(&service["hooks"]));
        }
    }
    assert!(!runs.is_empty(), "azure.yaml names no hook");
    for (name, run) in runs {
        let path = root().join(Path::new(run.trim_start_matches("./")));
        assert!(
            is_executable(&path),
            "hook {name} runs {run}: missing or not executable"
        );
    }
}

#[test]
fn the_yaml_parser_rejects_broken_yaml() {
    assert!(YamlLoader::load_from_str("services:\n  keyflip: [unclosed\n").is_err());
}
