//! README "Deploy" agrees with the Bicep: its parameter table lists exactly main.bicep's
//! parameters with the azd values main.parameters.json maps them to, the events the alert
//! queries use are in its log contract table, and it names the commands and hooks that exist.

use std::collections::{BTreeMap, BTreeSet};

use super::{infra, read, root};

/// The `## Deploy` section (up to the next `## ` heading).
fn deploy_section() -> String {
    let readme = read(&root().join("README.md"));
    let start = readme
        .find("\n## Deploy\n")
        .unwrap_or_else(|| panic!("README.md has no \"## Deploy\" section"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    let before = &readme[..start];
    assert!(
        before.contains("\n## Running under the Functions host\n"),
        "\"## Deploy\" must follow \"## Running under the Functions host\""
    );
    rest[..end].to_string()
}

/// The rows of the first table whose header's first cell is `header`, as cells (backticks
/// kept).
fn table(section: &str, header: &str) -> Vec<Vec<String>> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect()
    };
    let lines: Vec<&str> = section.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with('|') && cells(l).first().map(String::as_str) == Some(header))
        .unwrap_or_else(|| panic!("README \"Deploy\" has no table headed `{header}`"));
    lines[start + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|l| cells(l))
        .collect()
}

fn unquote(cell: &str) -> String {
    cell.trim_matches('`').to_string()
}

#[test]
fn the_parameter_table_lists_exactly_the_bicep_parameters_and_their_azd_values() {
    let section = deploy_section();
    let rows = table(&section, "parameter");
    let documented: BTreeMap<String, String> = rows
        .iter()
        .map(|r| (unquote(&r[0]), unquote(r.get(1).map_or("", String::as_str))))
        .collect();
    let params: BTreeSet<String> = infra("main.bicep").params().into_iter().collect();
    let in_readme: BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(
        in_readme, params,
        "README \"Deploy\" parameter table vs infra/main.bicep parameters"
    );
    let file: serde_json::Value =
        serde_json::from_str(&read(&root().join("infra/main.parameters.json"))).unwrap_or_default();
    let mapped = file["parameters"].as_object().cloned().unwrap_or_default();
    for (name, value) in &mapped {
        let variable = value["value"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("${")
            .trim_end_matches('}')
            .to_string();
        assert_eq!(
            documented.get(name),
            Some(&variable),
            "README gives another azd value for {name} than infra/main.parameters.json"
        );
    }
}

#[test]
fn the_events_the_alerts_query_are_in_the_log_contract_table() {
    let section = deploy_section();
    let contract: BTreeSet<String> = table(&section, "event").iter().map(|r| unquote(&r[0])).collect();
    for expected in [
        "rotation.failed",
        "rotation.pending",
        "sweep.completed",
        "secret.expired",
    ] {
        assert!(
            contract.contains(expected),
            "the log contract table lacks {expected}"
        );
    }
    let dir = root().join("infra/alerts");
    let mut used = BTreeSet::new();
    for entry in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
    {
        let query = read(&entry.path());
        // Every double-quoted literal of the query that names an event family.
        for literal in query.split('"').skip(1).step_by(2) {
            if ["rotation.", "sweep.", "secret."]
                .iter()
                .any(|p| literal.starts_with(p))
            {
                used.insert(literal.to_string());
            }
        }
        let file = entry.file_name().to_string_lossy().into_owned();
        assert!(
            section.contains(&format!("`{file}`")),
            "README \"Deploy\" does not name {file}"
        );
    }
    for event in used.iter().filter(|e| !e.ends_with('.')) {
        assert!(
            contract.contains(event),
            "the alerts query {event}, which the log contract table lacks"
        );
    }
}

#[test]
fn it_names_the_commands_that_exist_and_says_what_was_not_run() {
    let section = deploy_section();
    for needed in [
        "azd up",
        "azd config set alpha.language.custom on",
        "az deployment group create",
        "scripts/package.sh",
        "scripts/subscribe-eventgrid.sh",
        "infra/eventgrid-subscription.bicep",
        "keyflip doctor",
        "keyflip onboard",
        "roleDefinitions/write",
        "roleAssignments/write",
        "list-flexconsumption-runtimes",
        "ElasticPremium",
        "Nothing in this section has been run against Azure",
        "compiled with the Bicep CLI",
    ] {
        let needed_norm = needed.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = section.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains(&needed_norm),
            "README \"Deploy\" does not mention {needed}"
        );
    }
    for file in [
        "infra/eventgrid-subscription.bicep",
        "scripts/subscribe-eventgrid.sh",
    ] {
        assert!(
            root().join(file).exists(),
            "README names {file}, which does not exist"
        );
    }
    let readme = read(&root().join("README.md"));
    assert!(
        !readme.contains("infrastructure as code and packaging come with a later issue"),
        "the \"Not yet run against Azure\" paragraph still says IaC comes later"
    );
}
