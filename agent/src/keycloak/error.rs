//! What can go wrong talking to Keycloak: the realm (and user) concerned,
//! the HTTP status, and what to do.

use keycloak::KeycloakError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "could not log in to Keycloak at {url} as {user} (realm master): {message}; check the \
         admin credentials the agent was given"
    )]
    Login {
        url: String,
        user: String,
        status: Option<u16>,
        message: String,
    },

    #[error("Keycloak answered HTTP {status} when asked to {action} in realm {realm}: {message}")]
    Http {
        action: String,
        realm: String,
        status: u16,
        message: String,
    },

    #[error(
        "could not reach Keycloak to {action} in realm {realm}: {source}; check its URL and \
         that it runs"
    )]
    Transport {
        action: String,
        realm: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("Keycloak sent {what} in realm {realm}; the export cannot be trusted, retry it")]
    Malformed { realm: String, what: String },

    #[error("could not set up the HTTPS client for Keycloak: {0}")]
    Setup(String),

    #[error(
        "Keycloak's export command {command} did not give the users' credentials: {message}; \
         check --keycloak-export-command (it must print the realms' documents of `kc.sh \
         export --users realm_file` on stdout)"
    )]
    ExportCommand { command: String, message: String },
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

impl AdminError {
    /// Names the call that failed; keeps Keycloak's status and message.
    pub(crate) fn from_keycloak(action: impl Into<String>, realm: &str, e: KeycloakError) -> Self {
        let action = action.into();
        match e {
            KeycloakError::HttpFailure { status, body, text } => AdminError::Http {
                action,
                realm: realm.into(),
                status,
                message: body
                    .and_then(|b| b.message().map(|m| m.into_owned()))
                    .unwrap_or(text),
            },
            KeycloakError::ReqwestFailure(source) => AdminError::Transport {
                action,
                realm: realm.into(),
                source,
            },
        }
    }

    /// The HTTP status, when Keycloak answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AdminError::Http { status, .. } => Some(*status),
            AdminError::Login { status, .. } => *status,
            _ => None,
        }
    }
}
