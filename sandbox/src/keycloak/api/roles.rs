//! Realm roles.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::super::error::ApiError;
use super::super::model::RoleRepresentation;
use super::super::shared::Shared;
use super::{created, json_body, page};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/realms/{realm}/roles", get(list).post(create))
        .route("/admin/realms/{realm}/roles/{role}", get(read))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    search: Option<String>,
    first: Option<i64>,
    max: Option<i64>,
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<RoleRepresentation>>, ApiError> {
    let store = shared.store();
    let (first, max) = page(q.first, q.max);
    Ok(Json(store.realm(&realm)?.list_roles(
        q.search.as_deref(),
        first,
        max,
    )))
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rep: RoleRepresentation = json_body(&body)?;
    let name = shared.store().realm_mut(&realm)?.create_role(rep)?;
    Ok(created(format!(
        "{}/admin/realms/{realm}/roles/{name}",
        shared.base_url
    )))
}

async fn read(
    State(shared): State<Arc<Shared>>,
    Path((realm, role)): Path<(String, String)>,
) -> Result<Json<RoleRepresentation>, ApiError> {
    let store = shared.store();
    let realm = store.realm(&realm)?;
    let found = realm.role(&role).ok_or_else(ApiError::role_not_found)?;
    Ok(Json(realm.role_rep(found)))
}
