//! The HTTP face of the Keycloak sandbox: Keycloak's paths, bodies and
//! status codes for the subset of the Admin REST API that Ferry uses.

mod groups;
mod realms;
mod roles;
mod token;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::shared::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let admin = Router::new()
        .merge(realms::routes())
        .merge(users::routes())
        .merge(groups::routes())
        .merge(roles::routes())
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            require_admin,
        ));
    Router::new()
        .merge(token::routes())
        .merge(admin)
        .layer(middleware::from_fn_with_state(shared.clone(), fault_gate))
        .with_state(shared)
}

/// Faults on demand: while switched on, Keycloak is "down" for everyone.
async fn fault_gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if shared.is_unavailable() {
        return ApiError::unavailable().into_response();
    }
    next.run(req).await
}

/// Admin endpoints need a live bearer token of a master-realm administrator.
async fn require_admin(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let verdict = token.map(|t| shared.tokens().check(t).map(|g| g.admin));
    match verdict {
        Some(Some(true)) => next.run(req).await,
        Some(Some(false)) => ApiError::forbidden().into_response(),
        _ => ApiError::unauthorized().into_response(),
    }
}

/// Parses a JSON body, answering 400 the way Keycloak does for bad JSON.
pub(crate) fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Unable to parse request body: {e}")))
}

/// `201 Created` with the new resource's URL, as Keycloak answers a POST.
pub(crate) fn created(location: String) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Keycloak's paging parameters: negative or absent `max` means "all".
pub(crate) fn page(first: Option<i64>, max: Option<i64>) -> (usize, usize) {
    let first = first.and_then(|f| usize::try_from(f).ok()).unwrap_or(0);
    let max = max
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(usize::MAX);
    (first, max)
}
