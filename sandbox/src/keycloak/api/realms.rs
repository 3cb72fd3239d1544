//! Realms, and the realm-level import and export.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::super::error::ApiError;
use super::super::model::{PartialImportRepresentation, RealmRepresentation};
use super::super::shared::Shared;
use super::{created, json_body, no_content};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/realms", get(list).post(create))
        .route(
            "/admin/realms/{realm}",
            get(read).put(update).delete(remove),
        )
        .route("/admin/realms/{realm}/partial-export", post(partial_export))
        .route("/admin/realms/{realm}/partialImport", post(partial_import))
        .route("/ferry-sandbox/realms/{realm}/export", get(database_export))
}

/// The sandbox's stand-in for `kc.sh export --users realm_file`, which reads
/// Keycloak's database; not a Keycloak path. Admins only, as the rest.
async fn database_export(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
) -> Result<Json<RealmRepresentation>, ApiError> {
    Ok(Json(shared.store().realm(&realm)?.full_export()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    brief_representation: Option<bool>,
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<ListQuery>,
) -> Json<Vec<RealmRepresentation>> {
    let store = shared.store();
    let brief = q.brief_representation.unwrap_or(false);
    Json(
        store
            .realms()
            .iter()
            .map(|r| {
                if brief {
                    r.brief_rep()
                } else {
                    r.settings_rep()
                }
            })
            .collect(),
    )
}

async fn create(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let rep: RealmRepresentation = json_body(&body)?;
    let name = rep.realm.clone().unwrap_or_default();
    shared.store().create_realm(rep)?;
    Ok(created(format!("{}/admin/realms/{name}", shared.base_url)))
}

async fn read(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
) -> Result<Json<RealmRepresentation>, ApiError> {
    Ok(Json(shared.store().realm(&realm)?.settings_rep()))
}

async fn update(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rep: RealmRepresentation = json_body(&body)?;
    shared.store().update_realm(&realm, rep)?;
    Ok(no_content())
}

async fn remove(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
) -> Result<Response, ApiError> {
    shared.store().delete_realm(&realm)?;
    Ok(no_content())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportQuery {
    export_clients: Option<bool>,
    export_groups_and_roles: Option<bool>,
}

async fn partial_export(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Json<RealmRepresentation>, ApiError> {
    let store = shared.store();
    let realm = store.realm(&realm)?;
    Ok(Json(realm.partial_export(
        q.export_clients.unwrap_or(false),
        q.export_groups_and_roles.unwrap_or(false),
    )))
}

async fn partial_import(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rep: PartialImportRepresentation = json_body(&body)?;
    let results = shared
        .store()
        .with_realm_tx(&realm, |r| r.partial_import(rep))?;
    Ok(Json(results).into_response())
}
