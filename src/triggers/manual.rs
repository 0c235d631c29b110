//! `POST /api/rotate/{vault}/{secret}`: the manual rotation (function `RotateSecret`, an
//! httpTrigger with `enableForwardingHttpRequest`, so the host forwards the caller's raw request
//! and returns this handler's status and body to the caller as they are).
//!
//! Query parameters `dryRun` and `force` (names case-insensitive, values `true`/`false`/`1`/`0`)
//! shape the [`RotationRequest`]; the host's function key `code` is accepted and never logged;
//! any other parameter is refused ([`PARAMETERS`] is the one list), so a misspelt `dry_run`
//! never runs a real rotation. A body is optional; one that is present must be JSON (its content
//! is not used). The answer is a plain HTTP status ([`status_for`]) with the [`RotationResult`]
//! as JSON body, or `{"error": …}` when the request is refused before the engine runs
//! ([`ManualError`]; values quoted from the request go through
//! [`crate::domain::untrusted::echo`]).
//!
//! | answer | status |
//! |---|---|
//! | `rotated`, `planned`, `skipped:stale/not-due/not-managed/ignored` | 200 |
//! | `pending` | 202 |
//! | bad vault or secret name, unknown parameter, bad `dryRun`/`force` value, a body that is not JSON, `failed:bad-event` | 400 |
//! | vault not in KEYFLIP_VAULTS, `failed:not-found` | 404 |
//! | `failed:locked`, `skipped:dwell` (with a `hint` to use `?force=true`), `skipped:disabled`, `skipped:paused`, `skipped:opted-out` | 409 |
//! | `failed:misconfigured/not-allowed/pointer-mismatch/unknown-key/shared-resource/keys-disabled/no-trustworthy-check/verification-timeout` | 422 |
//! | `failed:azure` | 502 |
//! | a body whose `Content-Type` is not JSON | 415 |
//! | `failed:transient` | 503 |
//! | `failed:internal` | 500 |

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Rotator;
use crate::domain::names::NameError;
use crate::domain::untrusted::echo;
use crate::domain::{SecretName, VaultName};
use crate::engine::{FailReason, Outcome, RotationRequest, RotationResult, SkipReason, TriggerKind};

/// The function's name (its folder under `functions/`).
pub const FUNCTION: &str = "RotateSecret";

/// A query parameter the route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parameter {
    DryRun,
    Force,
    /// `mode=revoke-active`.
    Mode,
    /// The function key, read by the Functions host (and by nothing here).
    Code,
}

/// Every query parameter the route accepts, by name (compared ignoring case); any other is
/// refused. A new parameter is one line here and one arm in [`parse_flags`].
const PARAMETERS: &[(&str, Parameter)] = &[
    ("dryRun", Parameter::DryRun),
    ("force", Parameter::Force),
    ("mode", Parameter::Mode),
    ("code", Parameter::Code),
];

/// The accepted names, for messages: `dryRun, force, mode, code`.
fn accepted_parameters() -> String {
    let names: Vec<&str> = PARAMETERS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// The flags a caller may set in the query string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `?dryRun=true`: plan only, change nothing.
    pub dry_run: bool,
    /// `?force=true`: bypass the dwell.
    pub force: bool,
    /// `?mode=revoke-active`: a leaked key.
    pub revoke_active: bool,
}

/// Why a manual request is refused before the engine runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualError {
    #[error("the vault in the path is invalid: {0}")]
    BadVault(NameError),
    #[error("the secret in the path is invalid: {0}")]
    BadSecret(NameError),
    #[error("query parameter '{name}' must be true, false, 1 or 0, not '{value}'")]
    BadFlag { name: &'static str, value: String },
    #[error(
        "query parameter 'mode' is '{0}': the only mode is revoke-active (a leaked key: publish the idle slot, then regenerate the formerly active one at once)"
    )]
    BadMode(String),
    #[error("query parameter '{name}' is given more than once")]
    RepeatedFlag { name: &'static str },
    #[error(
        "query parameter '{name}' is not accepted (check its spelling); the accepted parameters are {}",
        accepted_parameters()
    )]
    UnknownParameter { name: String },
    #[error("the body is not JSON ({0}); send no body, or a JSON one")]
    BodyNotJson(String),
    #[error("the body's Content-Type '{0}' is not JSON; send no body, or a JSON one as application/json")]
    NotJsonContentType(String),
    #[error(
        "vault '{0}' is not one keyflip serves: add it to the KEYFLIP_VAULTS setting to rotate its secrets"
    )]
    NotServed(VaultName),
}

impl ManualError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadVault(_)
            | Self::BadSecret(_)
            | Self::BadFlag { .. }
            | Self::BadMode(_)
            | Self::RepeatedFlag { .. }
            | Self::UnknownParameter { .. }
            | Self::BodyNotJson(_) => StatusCode::BAD_REQUEST,
            Self::NotJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotServed(_) => StatusCode::NOT_FOUND,
        }
    }
}

/// Reads `dryRun` and `force` from a raw query string (percent-decoded, names ignoring case),
/// refusing any parameter not in [`PARAMETERS`].
pub fn parse_flags(query: Option<&str>) -> Result<Flags, ManualError> {
    let mut dry_run = None;
    let mut force = None;
    let mut revoke_active = None;
    for (raw_name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let Some((name, parameter)) = PARAMETERS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&raw_name))
        else {
            return Err(ManualError::UnknownParameter {
                name: echo(&raw_name),
            });
        };
        let slot = match parameter {
            Parameter::DryRun => &mut dry_run,
            Parameter::Force => &mut force,
            Parameter::Mode => {
                if revoke_active.is_some() {
                    return Err(ManualError::RepeatedFlag { name: "mode" });
                }
                match value.trim().eq_ignore_ascii_case("revoke-active") {
                    true => revoke_active = Some(true),
                    false => return Err(ManualError::BadMode(echo(&value))),
                }
                continue;
            }
            Parameter::Code => continue,
        };
        let name = *name;
        if slot.is_some() {
            return Err(ManualError::RepeatedFlag { name });
        }
        *slot = Some(flag(name, &value)?);
    }
    Ok(Flags {
        dry_run: dry_run.unwrap_or(false),
        force: force.unwrap_or(false),
        revoke_active: revoke_active.unwrap_or(false),
    })
}

fn flag(name: &'static str, value: &str) -> Result<bool, ManualError> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        v if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        v => Err(ManualError::BadFlag { name, value: echo(v) }),
    }
}

/// Builds the request from the path and the query; pure.
pub fn request(
    vault: &str,
    secret: &str,
    query: Option<&str>,
    budget: Duration,
) -> Result<RotationRequest, ManualError> {
    let vault = VaultName::parse(vault).map_err(ManualError::BadVault)?;
    let secret = SecretName::parse(secret).map_err(ManualError::BadSecret)?;
    let Flags {
        dry_run,
        force,
        revoke_active,
    } = parse_flags(query)?;
    Ok(RotationRequest {
        vault,
        secret,
        trigger: TriggerKind::Manual,
        event_version: None,
        dry_run,
        force,
        revoke_active,
        budget,
        index_wait: None,
    })
}

/// Refuses a body that is present and not JSON: 415 when its `Content-Type` says it is not,
/// 400 when it does not parse. No body (or only whitespace) is fine whatever the header says
/// (`curl -d ''` sends a form type with an empty body).
pub fn check_body(content_type: Option<&str>, body: &[u8]) -> Result<(), ManualError> {
    if body.trim_ascii().is_empty() {
        return Ok(());
    }
    if let Some(content_type) = content_type
        && !is_json(content_type)
    {
        return Err(ManualError::NotJsonContentType(echo(content_type)));
    }
    // serde_json's messages name a position, never the content.
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| ManualError::BodyNotJson(e.to_string()))
}

/// `application/json` or `application/<anything>+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// One forwarded manual request, as the server received it.
#[derive(Debug, Clone, Default)]
pub struct ManualCall {
    /// The `{vault}` segment of the path, percent-decoded.
    pub vault: String,
    /// The `{secret}` segment of the path, percent-decoded.
    pub secret: String,
    /// The raw query string (it carries the function key: never logged).
    pub query: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// The HTTP status of an outcome (the table in this module's doc).
pub fn status_for(outcome: Outcome) -> StatusCode {
    match outcome {
        Outcome::Rotated | Outcome::Repaired | Outcome::Revoked | Outcome::Planned => StatusCode::OK,
        Outcome::Skipped(
            SkipReason::Stale
            | SkipReason::NotDue
            | SkipReason::NotManaged
            | SkipReason::Ignored
            | SkipReason::NothingToRepair,
        ) => StatusCode::OK,
        Outcome::Pending => StatusCode::ACCEPTED,
        Outcome::Skipped(
            SkipReason::Dwell
            | SkipReason::Disabled
            | SkipReason::Locked
            | SkipReason::Paused
            | SkipReason::OptedOut,
        )
        | Outcome::Failed(FailReason::Locked) => StatusCode::CONFLICT,
        Outcome::Failed(FailReason::NotFound) => StatusCode::NOT_FOUND,
        Outcome::Failed(FailReason::BadEvent) => StatusCode::BAD_REQUEST,
        Outcome::Failed(
            FailReason::Misconfigured
            | FailReason::NotAllowed
            | FailReason::PointerMismatch
            | FailReason::UnknownKey
            | FailReason::SharedResource
            | FailReason::KeysDisabled
            | FailReason::NoTrustworthyCheck
            | FailReason::VerificationTimeout,
        ) => StatusCode::UNPROCESSABLE_ENTITY,
        Outcome::Failed(FailReason::Azure) => StatusCode::BAD_GATEWAY,
        Outcome::Failed(FailReason::Transient) => StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Failed(FailReason::Internal) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a caller can do next, when there is something to say beyond the result's message.
fn hint(outcome: Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Skipped(SkipReason::Dwell) => {
            Some("the latest version is inside the dwell; add ?force=true to rotate anyway")
        }
        Outcome::Failed(FailReason::Locked) => {
            Some("another rotation of this secret is in flight; retry shortly")
        }
        Outcome::Pending => Some("the new key is not verified yet; call again to resume the rotation"),
        _ => None,
    }
}

/// A status and a JSON body: what the manual route answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualReply {
    pub status: StatusCode,
    pub body: Value,
}

impl IntoResponse for ManualReply {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<ManualError> for ManualReply {
    fn from(error: ManualError) -> Self {
        Self {
            status: error.status(),
            body: json!({ "error": error.to_string() }),
        }
    }
}

/// Maps an engine result: [`status_for`] its outcome, the result as body (plus a `hint`).
pub fn reply(result: &RotationResult) -> ManualReply {
    let mut body = serde_json::to_value(result)
        .unwrap_or_else(|e| json!({ "error": format!("the result could not be serialized: {e}") }));
    if let (Some(hint), Some(object)) = (hint(result.outcome), body.as_object_mut()) {
        object.insert("hint".into(), Value::from(hint));
    }
    ManualReply {
        status: status_for(result.outcome),
        body,
    }
}

/// Handles one manual call: validate the path, the query and the body, refuse a vault not
/// served, rotate, answer. Runs inside the invocation's span (see `server`). The engine logs
/// the rotation it runs.
pub async fn handle(rotator: &dyn Rotator, budget: Duration, call: ManualCall) -> ManualReply {
    let request = request(&call.vault, &call.secret, call.query.as_deref(), budget)
        .and_then(|request| check_body(call.content_type.as_deref(), &call.body).map(|()| request));
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!("manual rotation refused: {error}");
            return error.into();
        }
    };
    if !rotator.serves(&request.vault) {
        let error = ManualError::NotServed(request.vault);
        tracing::warn!("manual rotation refused: {error}");
        return error.into();
    }
    tracing::info!(
        vault = %request.vault,
        secret = %request.secret,
        dry_run = request.dry_run,
        force = request.force,
        "manual rotation requested"
    );
    let result = rotator.rotate(request).await;
    let reply = reply(&result);
    tracing::info!(status = reply.status.as_u16(), outcome = %result.outcome.label(), "manual rotation answered");
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(60);

    #[test]
    fn flags_take_names_in_any_case_and_four_spellings() {
        let cases = [
            (None, Flags::default()),
            (Some(""), Flags::default()),
            (Some("code=abc"), Flags::default()),
            (
                Some("dryRun=true"),
                Flags {
                    dry_run: true,
                    force: false,
                    ..Flags::default()
                },
            ),
            (
                Some("DRYRUN=1&Force=TRUE&code=k"),
                Flags {
                    dry_run: true,
                    force: true,
                    ..Flags::default()
                },
            ),
            (
                Some("dryrun=0&force=false"),
                Flags {
                    dry_run: false,
                    force: false,
                    ..Flags::default()
                },
            ),
            (
                Some("force=%74rue"),
                Flags {
                    dry_run: false,
                    force: true,
                    ..Flags::default()
                },
            ),
        ];
        for (query, flags) in cases {
            assert_eq!(parse_flags(query), Ok(flags), "{query:?}");
        }
        assert!(parse_flags(Some("MODE=Revoke-Active")).unwrap().revoke_active);
        for bad in ["mode=revoke", "mode=", "mode=rotate"] {
            let error = parse_flags(Some(bad)).unwrap_err();
            assert!(matches!(error, ManualError::BadMode(_)), "{bad}: {error}");
            assert!(error.to_string().contains("revoke-active"), "{error}");
        }
        assert_eq!(
            parse_flags(Some("mode=revoke-active&mode=revoke-active")),
            Err(ManualError::RepeatedFlag { name: "mode" })
        );
    }

    #[test]
    fn bad_flags_name_the_parameter() {
        for (query, name) in [
            ("dryRun=yes", "dryRun"),
            ("force=", "force"),
            ("force", "force"),
            ("FORCE=2", "force"),
        ] {
            let error = parse_flags(Some(query)).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            assert!(error.to_string().contains(&format!("'{name}'")), "{error}");
        }
        assert_eq!(
            parse_flags(Some("force=1&Force=0")),
            Err(ManualError::RepeatedFlag { name: "force" })
        );
    }

    #[test]
    fn unknown_parameters_are_refused_naming_them_and_the_accepted_ones() {
        for (query, name) in [
            ("dry_run=true", "dry_run"),
            ("dryRun=false&dry-run=true", "dry-run"),
            ("Code=k&forced=1", "forced"),
            ("mode=revoke-active&revoke=1", "revoke"),
            ("=true", ""),
        ] {
            let error = parse_flags(Some(query)).unwrap_err();
            assert_eq!(
                error,
                ManualError::UnknownParameter { name: name.into() },
                "{query}"
            );
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            let text = error.to_string();
            assert!(text.contains(&format!("'{name}' is not accepted")), "{text}");
            assert!(
                text.ends_with("the accepted parameters are dryRun, force, mode, code"),
                "{text}"
            );
        }
        assert_eq!(parse_flags(Some("CODE=k&code=other")), Ok(Flags::default()));
    }

    #[test]
    fn rejected_names_and_values_are_cut_and_escaped() {
        let error = parse_flags(Some("dry%0Arun=1")).unwrap_err();
        assert!(error.to_string().contains("'dry\\nrun'"), "{error}");
        let long = format!("force={}", "y".repeat(5000));
        let error = parse_flags(Some(&long)).unwrap_err();
        assert!(error.to_string().chars().count() < 300, "{error}");
        let long = format!("{}=1", "n".repeat(5000));
        let error = parse_flags(Some(&long)).unwrap_err();
        assert!(error.to_string().chars().count() < 400, "{error}");
    }

    #[test]
    fn a_body_is_optional_and_must_be_json_when_present() {
        for (content_type, body) in [
            (None, ""),
            (Some("application/x-www-form-urlencoded"), ""),
            (Some("text/plain"), " \r\n"),
            (None, "{}"),
            (Some("application/json"), r#"{"reason": "leaked"}"#),
            (Some("Application/JSON; charset=utf-8"), "[1, 2]"),
            (Some("application/merge-patch+json"), "null"),
        ] {
            assert_eq!(
                check_body(content_type, body.as_bytes()),
                Ok(()),
                "{content_type:?} {body:?}"
            );
        }
        for (content_type, body) in [
            (None, "dryRun=true"),
            (Some("application/json"), "{"),
            (Some("application/json"), "{} trailing"),
        ] {
            let error = check_body(content_type, body.as_bytes()).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{body}");
            assert!(error.to_string().starts_with("the body is not JSON"), "{error}");
            assert!(!error.to_string().contains(body), "no content echoed: {error}");
        }
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonp",
        ] {
            let error = check_body(Some(content_type), b"{}").unwrap_err();
            assert_eq!(
                error.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{content_type}"
            );
            assert!(error.to_string().contains(content_type), "{error}");
        }
    }

    #[test]
    fn the_request_carries_the_path_and_the_flags() {
        let request = request("KV-One", "api-key", Some("dryRun=true"), BUDGET).unwrap();
        assert_eq!(request.vault.as_str(), "kv-one");
        assert_eq!(request.secret.as_str(), "api-key");
        assert_eq!(request.trigger, TriggerKind::Manual);
        assert!(request.dry_run && !request.force);
        assert_eq!(request.event_version, None);
        assert_eq!(request.budget, BUDGET);
    }

    #[test]
    fn bad_names_say_which_and_why() {
        let vault = request("k", "api-key", None, BUDGET).unwrap_err();
        assert_eq!(vault.status(), StatusCode::BAD_REQUEST);
        assert!(vault.to_string().contains("vault in the path") && vault.to_string().contains("3-24"));
        let secret = request("kv-one", "api_key", None, BUDGET).unwrap_err();
        assert_eq!(secret.status(), StatusCode::BAD_REQUEST);
        assert!(secret.to_string().contains("secret in the path") && secret.to_string().contains("hyphens"));
        let not_served = ManualError::NotServed(VaultName::parse("kv-one").unwrap());
        assert_eq!(not_served.status(), StatusCode::NOT_FOUND);
        assert!(not_served.to_string().contains("KEYFLIP_VAULTS"));
    }

    #[test]
    fn every_outcome_has_its_status() {
        use FailReason as F;
        use SkipReason as S;
        let cases = [
            (Outcome::Rotated, 200),
            (Outcome::Planned, 200),
            (Outcome::Skipped(S::Stale), 200),
            (Outcome::Skipped(S::NotDue), 200),
            (Outcome::Skipped(S::NotManaged), 200),
            (Outcome::Skipped(S::Ignored), 200),
            (Outcome::Pending, 202),
            (Outcome::Skipped(S::Dwell), 409),
            (Outcome::Skipped(S::Disabled), 409),
            (Outcome::Failed(F::Locked), 409),
            (Outcome::Failed(F::NotFound), 404),
            (Outcome::Failed(F::BadEvent), 400),
            (Outcome::Failed(F::Misconfigured), 422),
            (Outcome::Failed(F::NotAllowed), 422),
            (Outcome::Failed(F::PointerMismatch), 422),
            (Outcome::Failed(F::KeysDisabled), 422),
            (Outcome::Failed(F::NoTrustworthyCheck), 422),
            (Outcome::Failed(F::VerificationTimeout), 422),
            (Outcome::Failed(F::Azure), 502),
            (Outcome::Failed(F::Transient), 503),
        ];
        for (outcome, status) in cases {
            assert_eq!(status_for(outcome).as_u16(), status, "{}", outcome.label());
        }
    }

    fn result(outcome: Outcome) -> RotationResult {
        RotationResult {
            secret: "api-key".into(),
            vault: "kv-one".into(),
            provider: Some("Microsoft.CognitiveServices/accounts".into()),
            trigger: TriggerKind::Manual,
            outcome,
            from: Some("key1".into()),
            to: Some("key2".into()),
            version: None,
            expires: None,
            verified: false,
            duration_ms: 5,
            message: "what happened".into(),
        }
    }

    #[test]
    fn the_body_is_the_result_with_a_hint_where_useful() {
        let dwell = reply(&result(Outcome::Skipped(SkipReason::Dwell)));
        assert_eq!(dwell.status, StatusCode::CONFLICT);
        assert_eq!(dwell.body["outcome"], "skipped:dwell");
        assert!(dwell.body["hint"].as_str().unwrap().contains("?force=true"));
        let rotated = reply(&result(Outcome::Rotated));
        assert_eq!(rotated.body["outcome"], "rotated");
        assert_eq!(rotated.body["from"], "key1");
        assert!(rotated.body.get("hint").is_none());
        let refused: ManualReply = ManualError::RepeatedFlag { name: "force" }.into();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.body["error"].as_str().unwrap().contains("force"));
    }
}
