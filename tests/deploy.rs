//! The deployment checks that run here (issue 8, item 3). The Bicep CLI cannot run on this
//! machine and nothing may reach Azure, so instead: every `infra/**/*.bicep` parses with the
//! tree-sitter Bicep grammar; every resource type and API version is one the reference lists;
//! the app settings main.bicep sets match what the code reads; the custom role holds exactly
//! the actions of the supported providers; every function folder and hook exists; azure.yaml
//! parses; README "Deploy" agrees with the Bicep; the Event Grid hook behaves against a
//! stand-in `az`; and host.json's queue settings and the queue functions fit the budgets.
//! Facts about the Bicep come from its parse tree (`deploy/bicep.rs`).

#[path = "deploy/bicep.rs"]
mod bicep;
#[path = "deploy/hook.rs"]
mod hook;
#[path = "deploy/packaging.rs"]
mod packaging;
#[path = "deploy/queues.rs"]
mod queues;
#[path = "deploy/readme.rs"]
mod readme;
#[path = "deploy/templates.rs"]
mod templates;

use std::path::{Path, PathBuf};

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `.bicep` file under `infra/`, sorted.
fn bicep_files() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root().join("infra")];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "bicep") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A parsed infra file (panics with the syntax error).
fn infra(relative: &str) -> bicep::Bicep {
    bicep::parse_file(&root().join("infra").join(relative)).unwrap_or_else(|e| panic!("{e}"))
}

/// The non-comment, non-empty lines of a file under tests/data/deploy.
fn data_lines(name: &str) -> Vec<String> {
    read(&root().join("tests/data/deploy").join(name))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
