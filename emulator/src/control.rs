//! The control API (`http://127.0.0.1:<port>/control/...`): seed state, read it back for
//! assertions, inject faults and latency, move the clock, reset. Documented in
//! `emulator/README.md`; [`crate::client::ControlClient`] is its typed client.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::json_response;
use crate::faults::{FaultRule, LatencyRule};
use crate::providers::cognitive_services::{AccountPatch, AccountSeed};
use crate::seed::{self, Seed, SeedError, VaultSeed, VersionSeed};
use crate::throttling::ThrottlingSettings;
use crate::token::wall_now;
use crate::world::{Ctx, Identity};

/// An error of the control API: a status and a message saying what to fix.
#[derive(Debug)]
pub struct ControlError(StatusCode, String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        json_response(self.0, &json!({ "error": self.1 }))
    }
}

impl From<SeedError> for ControlError {
    fn from(e: SeedError) -> Self {
        ControlError(StatusCode::BAD_REQUEST, e.to_string())
    }
}

type Answer = Result<Response, ControlError>;

fn ok(value: Value) -> Answer {
    Ok(json_response(StatusCode::OK, &value))
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    serde_json::from_slice(body)
        .map_err(|e| ControlError(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))
}

fn not_found(what: String) -> ControlError {
    ControlError(StatusCode::NOT_FOUND, what)
}

/// The control routes, under `/control`.
pub fn router() -> Router<Ctx> {
    Router::new()
        .route("/control", get(summary))
        .route("/control/reset", post(reset))
        .route("/control/seed", post(apply_seed))
        .route("/control/vaults", post(add_vault))
        .route("/control/vaults/{vault}", get(vault))
        .route("/control/vaults/{vault}/secrets/{name}", get(secret))
        .route(
            "/control/vaults/{vault}/secrets/{name}/versions",
            post(add_version),
        )
        .route("/control/accounts", post(add_account))
        .route("/control/accounts/{name}", get(account).patch(patch_account))
        .route("/control/identities", get(identities).post(add_identity))
        .route("/control/calls", get(calls).delete(clear_calls))
        .route(
            "/control/faults",
            get(faults).post(add_fault).delete(clear_faults),
        )
        .route("/control/latency", post(add_latency))
        .route("/control/clock", get(clock).post(move_clock))
        .route("/control/operations", get(operations))
        .route("/control/operations/{id}", get(operation))
        .route("/control/active-regenerations", get(active_regenerations))
        .route("/control/tokens", post(mint_token))
        .route("/control/settings", get(settings).put(put_settings))
        .route("/control/throttling", get(throttling).delete(restart_throttling))
}

fn settings_view(world: &crate::world::World) -> Value {
    json!({ "arm_page_size": world.arm_page_size(), "throttling": world.throttling.settings() })
}

async fn throttling(State(ctx): State<Ctx>) -> Answer {
    ok(ctx.world().throttling.view())
}

async fn restart_throttling(State(ctx): State<Ctx>) -> Answer {
    let mut world = ctx.world();
    world.throttling.restart();
    ok(world.throttling.view())
}

async fn settings(State(ctx): State<Ctx>) -> Answer {
    ok(settings_view(&ctx.world()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Items per page of Resource Manager lists; `null` restores the default.
    #[serde(default, deserialize_with = "crate::seed::present")]
    arm_page_size: Option<Option<usize>>,
    /// Key Vault and Resource Manager throttling ([`ThrottlingSettings`]); `null` turns it off.
    #[serde(default, deserialize_with = "crate::seed::present")]
    throttling: Option<Option<ThrottlingSettings>>,
}

async fn put_settings(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let change: Settings = parse(&body)?;
    let mut world = ctx.world();
    if let Some(size) = change.arm_page_size {
        if size == Some(0) {
            return Err(ControlError(
                StatusCode::BAD_REQUEST,
                "arm_page_size must be at least 1 (or null for the default)".into(),
            ));
        }
        world.arm_page_size = size;
    }
    if let Some(throttling) = change.throttling {
        if let Some(settings) = &throttling {
            settings
                .validate()
                .map_err(|e| ControlError(StatusCode::BAD_REQUEST, e))?;
        }
        world.throttling.configure(throttling);
    }
    ok(settings_view(&world))
}

async fn summary(State(ctx): State<Ctx>) -> Answer {
    let world = ctx.world();
    ok(json!({
        "now": world.now(),
        "vaults": world.vaults.values().map(|v| v.name.clone()).collect::<Vec<_>>(),
        "accounts": world.accounts.iter().map(|a| a.id()).collect::<Vec<_>>(),
        "system_topics": world.system_topics.iter().map(|t| t.id()).collect::<Vec<_>>(),
        "role_definitions": world.role_definitions.len(),
        "role_assignments": world.role_assignments.len(),
        "calls": world.calls.len(),
        "active_regenerations": world.active_regenerations.len(),
        "throttled": world.throttling.throttled_total(),
    }))
}

async fn operations(State(ctx): State<Ctx>) -> Answer {
    ok(json!(ctx.world().operations.values().collect::<Vec<_>>()))
}

async fn operation(State(ctx): State<Ctx>, Path(id): Path<String>) -> Answer {
    let world = ctx.world();
    let operation = world
        .operations
        .values()
        .find(|o| o.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| not_found(format!("no operation '{id}'")))?;
    ok(json!(operation))
}

async fn active_regenerations(State(ctx): State<Ctx>) -> Answer {
    let world = ctx.world();
    ok(json!(crate::client::ActiveRegenerations {
        count: world.active_regenerations.len(),
        regenerations: world.active_regenerations.clone(),
    }))
}

async fn reset(State(ctx): State<Ctx>) -> Answer {
    *ctx.world() = crate::world::World::default();
    ok(json!({ "reset": true }))
}

async fn apply_seed(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let seed: Seed = parse(&body)?;
    seed.apply(&mut ctx.world())?;
    ok(json!({ "seeded": true }))
}

async fn add_vault(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let vault: VaultSeed = parse(&body)?;
    let name = vault.name.clone();
    Seed {
        vaults: vec![vault],
        ..Seed::default()
    }
    .apply(&mut ctx.world())?;
    ok(json!({ "name": name }))
}

async fn vault(State(ctx): State<Ctx>, Path(vault): Path<String>) -> Answer {
    let world = ctx.world();
    let vault = world
        .vaults
        .get(&vault.to_ascii_lowercase())
        .ok_or_else(|| not_found(format!("no vault '{vault}'")))?;
    ok(json!({
        "name": vault.name,
        "id": crate::providers::key_vault::id(vault),
        "location": vault.location,
        "enable_rbac_authorization": vault.enable_rbac_authorization,
        "access_policies": vault.access_policies,
        "allowed_principals": vault.allowed_principals,
        "secrets": vault.secrets.values().map(|s| json!({
            "name": s.name,
            "versions": s.versions.len(),
            "deleted": s.deleted,
        })).collect::<Vec<_>>(),
    }))
}

async fn secret(State(ctx): State<Ctx>, Path((vault, name)): Path<(String, String)>) -> Answer {
    let world = ctx.world();
    let secret = world
        .vaults
        .get(&vault.to_ascii_lowercase())
        .and_then(|v| v.secrets.get(&name.to_ascii_lowercase()))
        .ok_or_else(|| not_found(format!("no secret '{name}' in vault '{vault}'")))?;
    let mut body = serde_json::to_value(secret).unwrap_or_default();
    body["latest"] = json!(secret.latest().map(|v| v.version.clone()));
    ok(body)
}

async fn add_version(
    State(ctx): State<Ctx>,
    Path((vault, name)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let version: VersionSeed = parse(&body)?;
    let (name, version) = seed::add_version(&mut ctx.world(), &vault, &name, version)?;
    ok(json!({
        "name": name,
        "version": version,
        "id": format!("https://{}.vault.azure.net/secrets/{name}/{version}", vault.to_ascii_lowercase()),
    }))
}

async fn add_account(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let account: AccountSeed = parse(&body)?;
    let mut world = ctx.world();
    seed::add_account(&mut world, account)?;
    let added = world.accounts.last().map(account_view).unwrap_or_default();
    ok(added)
}

fn account_view(account: &crate::providers::cognitive_services::Account) -> Value {
    let mut view = serde_json::to_value(account).unwrap_or_default();
    view["id"] = json!(account.id());
    view["endpoint"] = json!(account.endpoint());
    view
}

async fn account(State(ctx): State<Ctx>, Path(name): Path<String>) -> Answer {
    let mut world = ctx.world();
    let account = world
        .account_by_name(&name)
        .ok_or_else(|| not_found(format!("no account '{name}'")))?;
    ok(account_view(account))
}

async fn patch_account(State(ctx): State<Ctx>, Path(name): Path<String>, body: Bytes) -> Answer {
    let patch: AccountPatch = parse(&body)?;
    let mut world = ctx.world();
    let account = world
        .account_by_name(&name)
        .ok_or_else(|| not_found(format!("no account '{name}'")))?;
    account.apply(patch);
    ok(account_view(account))
}

async fn identities(State(ctx): State<Ctx>) -> Answer {
    ok(json!({ "system_assigned": ctx.system_identity, "user_assigned": ctx.world().user_identities }))
}

async fn add_identity(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let identity: Identity = parse(&body)?;
    seed::add_identity(&mut ctx.world(), identity.clone())?;
    ok(json!(identity))
}

#[derive(Debug, Deserialize)]
struct CallFilter {
    service: Option<String>,
    operation: Option<String>,
    target: Option<String>,
}

async fn calls(State(ctx): State<Ctx>, QueryParams(filter): QueryParams<CallFilter>) -> Answer {
    let world = ctx.world();
    let selected: Vec<_> = world
        .calls
        .iter()
        .filter(|c| {
            let service = serde_json::to_value(c.service).unwrap_or_default();
            filter.service.as_deref().is_none_or(|s| service == s)
                && filter
                    .operation
                    .as_deref()
                    .is_none_or(|o| c.operation.eq_ignore_ascii_case(o))
                && filter
                    .target
                    .as_deref()
                    .is_none_or(|t| c.target.eq_ignore_ascii_case(t))
        })
        .cloned()
        .collect();
    ok(json!(selected))
}

async fn clear_calls(State(ctx): State<Ctx>) -> Answer {
    ctx.world().calls.clear();
    ok(json!({ "cleared": true }))
}

async fn faults(State(ctx): State<Ctx>) -> Answer {
    let (faults, latency) = ctx.world().faults.list();
    ok(json!({ "faults": faults, "latency": latency }))
}

async fn add_fault(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let rule: FaultRule = parse(&body)?;
    if StatusCode::from_u16(rule.status).is_err() || rule.status < 400 {
        return Err(ControlError(
            StatusCode::BAD_REQUEST,
            format!("status {} is not an error status (400-599)", rule.status),
        ));
    }
    ctx.world().faults.add_fault(rule.clone());
    ok(json!(rule))
}

async fn add_latency(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let rule: LatencyRule = parse(&body)?;
    ctx.world().faults.add_latency(rule.clone());
    ok(json!(rule))
}

async fn clear_faults(State(ctx): State<Ctx>) -> Answer {
    ctx.world().faults.clear();
    ok(json!({ "cleared": true }))
}

fn clock_view(world: &crate::world::World) -> Value {
    let now = world.now();
    json!({ "now": now, "offset_seconds": now - wall_now(), "frozen": world.frozen_at.is_some() })
}

async fn clock(State(ctx): State<Ctx>) -> Answer {
    ok(clock_view(&ctx.world()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockMove {
    advance_seconds: Option<i64>,
    set: Option<i64>,
    freeze: Option<bool>,
}

async fn move_clock(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let change: ClockMove = parse(&body)?;
    let mut world = ctx.world();
    match (change.advance_seconds, change.set, change.freeze) {
        (Some(_), Some(_), _) | (None, None, None) => {
            return Err(ControlError(
                StatusCode::BAD_REQUEST,
                "give one of advance_seconds or set, and/or freeze".into(),
            ));
        }
        (Some(seconds), None, _) => world.advance(seconds),
        (None, Some(now), _) => world.set_now(now),
        (None, None, Some(_)) => {}
    }
    if let Some(frozen) = change.freeze {
        world.freeze(frozen);
    }
    ok(clock_view(&world))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    audience: String,
    client_id: Option<String>,
}

async fn mint_token(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let request: TokenRequest = parse(&body)?;
    let identity = match &request.client_id {
        None => ctx.system_identity.clone(),
        Some(id) => ctx
            .identities()
            .into_iter()
            .find(|i| i.client_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| not_found(format!("no identity with client id '{id}'")))?,
    };
    let (token, claims) = ctx.tokens.issue(
        &request.audience,
        &identity.principal_id,
        &identity.client_id,
        wall_now(),
    );
    ok(json!({ "access_token": token, "expires_on": claims.exp, "oid": claims.oid }))
}
