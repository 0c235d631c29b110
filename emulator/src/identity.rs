//! The managed-identity endpoint, App Service protocol (what Azure Functions gives a function
//! app): `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=…[&client_id=…]` with header
//! `X-IDENTITY-HEADER: {IDENTITY_HEADER}`, answered with `access_token`, `expires_on` (a
//! string of unix seconds), `resource`, `token_type` and `client_id`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use crate::calls::{CallStart, Service};
use crate::error::json_response;
use crate::pipeline::Exchange;
use crate::request::Query;
use crate::token::wall_now;
use crate::world::Ctx;

/// Path of the token endpoint.
pub const PATH: &str = "/msi/token";
/// The only api-version of the App Service protocol.
pub const API_VERSION: &str = "2019-08-01";

fn failure(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({ "statusCode": status.as_u16(), "message": message }),
    )
}

/// `GET /msi/token`.
pub async fn token(State(ctx): State<Ctx>, headers: HeaderMap, uri: Uri) -> Response {
    let query = Query::parse(uri.query());
    let resource = query.get("resource").unwrap_or_default().to_string();
    let mut start = CallStart::new(Service::Identity, "GetToken", &resource, "GET", PATH);
    start.api_version = query.get("api-version").map(str::to_string);
    let mut exchange = Exchange::new(ctx.clone(), start, vec![resource.clone()]);

    let header_ok = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == ctx.identity_header);
    if !header_ok {
        return exchange.reject(failure(
            StatusCode::UNAUTHORIZED,
            "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.",
        ));
    }
    if query.get("api-version") != Some(API_VERSION) {
        return exchange.reject(failure(
            StatusCode::BAD_REQUEST,
            "The api-version query parameter must be 2019-08-01.",
        ));
    }
    if resource.is_empty() {
        return exchange.reject(failure(
            StatusCode::BAD_REQUEST,
            "The resource query parameter is required.",
        ));
    }
    if query.get("mi_res_id").is_some() {
        return exchange.reject(failure(
            StatusCode::BAD_REQUEST,
            "The emulator selects user-assigned identities by client_id or object_id, not mi_res_id.",
        ));
    }
    let wanted_client = query.get("client_id");
    let wanted_object = query.get("object_id").or_else(|| query.get("principal_id"));
    let identity = ctx
        .identities()
        .into_iter()
        .find(|i| match (wanted_client, wanted_object) {
            (Some(c), _) => i.client_id.eq_ignore_ascii_case(c),
            (None, Some(o)) => i.principal_id.eq_ignore_ascii_case(o),
            (None, None) => i == &ctx.system_identity,
        });
    let Some(identity) = identity else {
        return exchange.reject(failure(
            StatusCode::BAD_REQUEST,
            "Unable to load the proper Managed Identity.",
        ));
    };
    exchange.set_caller(identity.principal_id.clone());
    if let Err(response) = exchange.before().await {
        return response;
    }
    let (access_token, claims) =
        ctx.tokens
            .issue(&resource, &identity.principal_id, &identity.client_id, wall_now());
    let body = json!({
        "access_token": access_token,
        "expires_on": claims.exp.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": identity.client_id,
    });
    exchange.finish(json_response(StatusCode::OK, &body))
}
