//! Errors of the Keycloak sandbox: [`Error`] for its Rust API, [`ApiError`]
//! for answers on the wire, shaped like Keycloak's error bodies.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What went wrong in the Keycloak sandbox, and on which object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr} for the Keycloak sandbox: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The same refusal an admin client would get over HTTP.
    #[error("Keycloak sandbox refused to {action} in realm {realm:?}: {message} (HTTP {status})")]
    Refused {
        action: String,
        realm: String,
        status: u16,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error answer as Keycloak gives it: a status and a one-field JSON body,
/// `{"error": …}` for lookups and auth, `{"errorMessage": …}` for refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub field: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            field: "error",
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            field: "errorMessage",
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            field: "errorMessage",
            message: message.into(),
        }
    }

    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            field: "error",
            message: "HTTP 401 Unauthorized".to_owned(),
        }
    }

    pub fn forbidden() -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            field: "error",
            message: "HTTP 403 Forbidden".to_owned(),
        }
    }

    pub fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            field: "error",
            message: "Service Unavailable (sandbox fault injection)".to_owned(),
        }
    }

    pub fn realm_not_found() -> Self {
        Self::not_found("Realm not found.")
    }

    pub fn user_not_found() -> Self {
        Self::not_found("User not found")
    }

    pub fn group_not_found() -> Self {
        Self::not_found("Could not find group by id")
    }

    pub fn role_not_found() -> Self {
        Self::not_found("Could not find role")
    }

    /// For the Rust API: the same refusal, said with what was being done.
    pub fn into_error(self, action: impl Into<String>, realm: &str) -> Error {
        Error::Refused {
            action: action.into(),
            realm: realm.to_owned(),
            status: self.status.as_u16(),
            message: self.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert(self.field.to_owned(), json!(self.message));
        (self.status, Json(serde_json::Value::Object(body))).into_response()
    }
}
