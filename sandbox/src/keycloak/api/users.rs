//! Users, their group memberships and their realm-role mappings.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::super::error::ApiError;
use super::super::model::{
    CredentialRepresentation, GroupRepresentation, RoleRepresentation, UserRepresentation,
};
use super::super::shared::Shared;
use super::super::store::{UserQuery, credentials};
use super::{created, json_body, no_content};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/realms/{realm}/users", get(list).post(create))
        .route("/admin/realms/{realm}/users/count", get(count))
        .route(
            "/admin/realms/{realm}/users/{id}",
            get(read).put(update).delete(remove),
        )
        .route(
            "/admin/realms/{realm}/users/{id}/credentials",
            get(credentials),
        )
        .route("/admin/realms/{realm}/users/{id}/groups", get(groups))
        .route(
            "/admin/realms/{realm}/users/{id}/groups/{group}",
            put(join).delete(leave),
        )
        .route(
            "/admin/realms/{realm}/users/{id}/role-mappings",
            get(all_role_mappings),
        )
        .route(
            "/admin/realms/{realm}/users/{id}/role-mappings/realm",
            get(realm_roles)
                .post(add_realm_roles)
                .delete(remove_realm_roles),
        )
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(q): Query<UserQuery>,
) -> Result<Json<Vec<UserRepresentation>>, ApiError> {
    Ok(Json(shared.store().realm(&realm)?.query_users(&q)))
}

async fn count(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(q): Query<UserQuery>,
) -> Result<Json<usize>, ApiError> {
    Ok(Json(shared.store().realm(&realm)?.count_users(&q)))
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rep: UserRepresentation = json_body(&body)?;
    let id = shared
        .store()
        .with_realm_tx(&realm, |r| r.create_user(rep))?;
    Ok(created(format!(
        "{}/admin/realms/{realm}/users/{id}",
        shared.base_url
    )))
}

async fn read(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
) -> Result<Json<UserRepresentation>, ApiError> {
    let store = shared.store();
    let realm = store.realm(&realm)?;
    Ok(Json(realm.user_rep(realm.user(&id)?, false)))
}

async fn update(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rep: UserRepresentation = json_body(&body)?;
    shared.store().realm_mut(&realm)?.update_user(&id, rep)?;
    Ok(no_content())
}

async fn remove(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    shared.store().realm_mut(&realm)?.delete_user(&id)?;
    Ok(no_content())
}

/// As Keycloak answers it: type, dates and parameters, never `secretData`.
async fn credentials(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
) -> Result<Json<Vec<CredentialRepresentation>>, ApiError> {
    let store = shared.store();
    let user = store.realm(&realm)?.user(&id)?;
    Ok(Json(
        user.credentials.iter().map(credentials::public).collect(),
    ))
}

async fn groups(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
) -> Result<Json<Vec<GroupRepresentation>>, ApiError> {
    Ok(Json(shared.store().realm(&realm)?.user_groups(&id)?))
}

async fn join(
    State(shared): State<Arc<Shared>>,
    Path((realm, id, group)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    shared.store().realm_mut(&realm)?.join_group(&id, &group)?;
    Ok(no_content())
}

async fn leave(
    State(shared): State<Arc<Shared>>,
    Path((realm, id, group)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    shared.store().realm_mut(&realm)?.leave_group(&id, &group)?;
    Ok(no_content())
}

async fn all_role_mappings(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let roles = shared.store().realm(&realm)?.user_realm_roles(&id)?;
    Ok(Json(json!({ "realmMappings": roles })))
}

async fn realm_roles(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
) -> Result<Json<Vec<RoleRepresentation>>, ApiError> {
    Ok(Json(shared.store().realm(&realm)?.user_realm_roles(&id)?))
}

async fn add_realm_roles(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let roles: Vec<RoleRepresentation> = json_body(&body)?;
    shared
        .store()
        .realm_mut(&realm)?
        .add_user_realm_roles(&id, &roles)?;
    Ok(no_content())
}

async fn remove_realm_roles(
    State(shared): State<Arc<Shared>>,
    Path((realm, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let roles: Vec<RoleRepresentation> = json_body(&body)?;
    shared
        .store()
        .realm_mut(&realm)?
        .remove_user_realm_roles(&id, &roles)?;
    Ok(no_content())
}
