//! Groups: the top-level list, single groups, children and members.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::super::error::ApiError;
use super::super::model::{GroupRepresentation, UserRepresentation};
use super::super::shared::Shared;
use super::{created, json_body, no_content, page};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/realms/{realm}/groups", get(list).post(create))
        .route(
            "/admin/realms/{realm}/groups/{id}",
            get(read).put(update).delete(remove),
        )
        .route(
            "/admin/realms/{realm}/groups/{id}/children",
            post(create_child),
        )
        .route("/admin/realms/{realm}/groups/{id}/members", get(members))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    search: Option<String>,
    first: Option<i64>,
    max: Option<i64>,
    brief_representation: Option<bool>,
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<GroupRepresentation>>, ApiError> {
    let store = shared.store();
    let (first, max) = page(q.first, q.max);
    // Keycloak's group list is brief unless asked otherwise.
    let full = !q.brief_representation.unwrap_or(true);
    Ok(Json(store.realm(&realm)?.list_groups(
        q.search.as_deref(),
        first,
        max,
        full,
    )))
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rep: GroupRepresentation = json_body(&body)?;
    let id = shared.store().realm_mut(&realm)?.create_group(None, &rep)?;
    Ok(created(format!(
        "{}/admin/realms/{realm}/groups/{id}",
        shared.base_url
    )))
}

async fn create_child(
    State(shared): State<Arc<Shared>>,
    Path((realm, parent)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rep: GroupRepresentation = json_body(&body)?;
    let id = shared
        .store()
        .realm_mut(&realm)?
        .create_group(Some(&parent), &rep)?;
    Ok(created(format!(
        "{}/admin/realms/{realm}/groups/{id}",
        shared.base_url
    )))
}

async fn read(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
) -> Result<Json<GroupRepresentation>, ApiError> {
    Ok(Json(
        shared.store().realm(&realm)?.group_rep_by_id(&id, true)?,
    ))
}

async fn update(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rep: GroupRepresentation = json_body(&body)?;
    shared.store().realm_mut(&realm)?.update_group(&id, &rep)?;
    Ok(no_content())
}

async fn remove(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    shared.store().realm_mut(&realm)?.delete_group(&id)?;
    Ok(no_content())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembersQuery {
    first: Option<i64>,
    max: Option<i64>,
    brief_representation: Option<bool>,
}

async fn members(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
    Query(q): Query<MembersQuery>,
) -> Result<Json<Vec<UserRepresentation>>, ApiError> {
    let store = shared.store();
    let (first, max) = page(q.first, q.max.or(Some(100)));
    let brief = q.brief_representation.unwrap_or(false);
    Ok(Json(
        store.realm(&realm)?.group_members(&id, first, max, brief)?,
    ))
}
