//! `POST /realms/{realm}/protocol/openid-connect/token`: the password,
//! client-credentials and refresh-token grants.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::super::shared::Shared;
use super::super::store::{ADMIN_ROLE, MASTER};
use super::super::tokens::Grant;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/realms/{realm}/protocol/openid-connect/token", post(token))
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
}

/// OAuth's error shape, which the token endpoint uses instead of Keycloak's.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn invalid_client() -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Invalid client or Invalid client credentials",
    )
}

/// A 400, as RFC 6749 §5.2 has it and Keycloak 26 answers (measured in
/// agent/tests/real_keycloak.rs), not the 401 of older Keycloaks.
fn invalid_user() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "Invalid user credentials",
    )
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let grant = {
        let store = shared.store();
        let Ok(realm) = store.realm(&realm_name) else {
            return oauth_error(
                StatusCode::NOT_FOUND,
                "Realm does not exist",
                "Realm does not exist",
            );
        };
        let Some(client_id) = form.client_id.clone() else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing parameter: client_id",
            );
        };
        let Some(client) = realm.client(&client_id) else {
            return invalid_client();
        };
        let confidential = !client.public_client.unwrap_or(false);
        if confidential && client.secret.is_some() && client.secret != form.client_secret {
            return invalid_client();
        }
        let in_master = realm_name == MASTER;
        match form.grant_type.as_deref() {
            Some("password") => {
                let (Some(username), Some(password)) =
                    (form.username.as_deref(), form.password.as_deref())
                else {
                    return invalid_user();
                };
                let Some(user) = realm.user_by_username(username) else {
                    return invalid_user();
                };
                if !user.rep.enabled.unwrap_or(false) || !user.password_matches(password) {
                    return invalid_user();
                }
                Grant {
                    subject: user.username().to_owned(),
                    client_id,
                    admin: in_master && user.realm_roles.iter().any(|r| r == ADMIN_ROLE),
                }
            }
            Some("client_credentials") => {
                if !confidential
                    || client.secret.is_none()
                    || !client.service_accounts_enabled.unwrap_or(false)
                {
                    return oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized_client",
                        "Client not enabled to retrieve service account",
                    );
                }
                Grant {
                    subject: format!("service-account-{client_id}"),
                    client_id,
                    // Master-realm service accounts exist in the sandbox to administer it.
                    admin: in_master,
                }
            }
            Some("refresh_token") => {
                let redeemed = form
                    .refresh_token
                    .as_deref()
                    .and_then(|t| shared.tokens().redeem_refresh(t));
                match redeemed {
                    Some(grant) if grant.client_id == client_id => grant,
                    _ => {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "Invalid refresh token",
                        );
                    }
                }
            }
            _ => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "Unsupported grant_type",
                );
            }
        }
    };
    let with_refresh = !grant.subject.starts_with("service-account-");
    let issued = shared.tokens().issue(&shared.issuer(), grant, with_refresh);
    Json(issued).into_response()
}
