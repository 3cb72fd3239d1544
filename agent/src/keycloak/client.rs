//! A logged-in admin client for one Keycloak.

use std::sync::Arc;
use std::time::Duration;

use keycloak::{KeycloakAdmin, KeycloakError};

use super::error::{AdminError, Result};
use super::token::TokenSource;

/// The master realm's administrator (as `KEYCLOAK_ADMIN` sets it, or the
/// Platform's `keycloak-admin` secret holds it).
#[derive(Clone)]
pub struct AdminCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Admin access to one Keycloak (cheap to clone).
#[derive(Clone)]
pub struct AdminClient {
    base_url: String,
    http: reqwest::Client,
    tokens: TokenSource,
    api: Arc<KeycloakAdmin<TokenSource>>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base_url", &self.base_url)
            .field("user", &self.tokens.user())
            .finish_non_exhaustive()
    }
}

/// Per-request bound: a large partial import can take a while on Keycloak.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

impl AdminClient {
    /// An HTTP client trusting the system's roots plus, when given, the PEM
    /// CA bundle (OKD's ingress CA for a route with a private certificate).
    pub fn http_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| AdminError::Setup(format!("the Keycloak CA bundle is not PEM: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
            .build()
            .map_err(|e| AdminError::Setup(e.to_string()))
    }

    /// Logs in to the master realm at `base_url` (no `/auth` suffix on
    /// Keycloak ≥ 17; include it for older ones) with a default HTTP client.
    pub async fn connect(base_url: &str, credentials: &AdminCredentials) -> Result<Self> {
        Self::connect_with(base_url, credentials, Self::http_client(None)?).await
    }

    /// Logs in with the given HTTP client; fails now on bad credentials.
    pub async fn connect_with(
        base_url: &str,
        credentials: &AdminCredentials,
        http: reqwest::Client,
    ) -> Result<Self> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let tokens = TokenSource::new(
            &base_url,
            &credentials.user,
            &credentials.password,
            http.clone(),
        );
        tokens.token().await.map_err(|e| {
            let (status, message) = match e {
                KeycloakError::HttpFailure { status, text, .. } => (Some(status), text),
                KeycloakError::ReqwestFailure(e) => (None, e.to_string()),
            };
            AdminError::Login {
                url: base_url.clone(),
                user: credentials.user.clone(),
                status,
                message,
            }
        })?;
        let api = Arc::new(KeycloakAdmin::new(&base_url, tokens.clone(), http.clone()));
        Ok(AdminClient {
            base_url,
            http,
            tokens,
            api,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn api(&self) -> &KeycloakAdmin<TokenSource> {
        &self.api
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) async fn token(&self, action: &str, realm: &str) -> Result<String> {
        self.tokens
            .token()
            .await
            .map_err(|e| AdminError::from_keycloak(action, realm, e))
    }

    /// Names of all realms.
    pub async fn realm_names(&self) -> Result<Vec<String>> {
        let realms = self
            .api
            .get(Some(true))
            .await
            .map_err(|e| AdminError::from_keycloak("list realms", "*", e))?;
        Ok(realms.into_iter().filter_map(|r| r.realm).collect())
    }

    /// Whether `realm` exists.
    pub async fn realm_exists(&self, realm: &str) -> Result<bool> {
        match self.api.realm_get(realm).await {
            Ok(_) => Ok(true),
            Err(KeycloakError::HttpFailure { status: 404, .. }) => Ok(false),
            Err(e) => Err(AdminError::from_keycloak("read the realm", realm, e)),
        }
    }

    /// Deletes `realm` with everything in it; `false` when it did not exist.
    pub async fn delete_realm(&self, realm: &str) -> Result<bool> {
        match self.api.realm_delete(realm).await {
            Ok(_) => Ok(true),
            Err(KeycloakError::HttpFailure { status: 404, .. }) => Ok(false),
            Err(e) => Err(AdminError::from_keycloak("delete the realm", realm, e)),
        }
    }

    /// How many users `realm` has; `None` when the realm does not exist.
    pub async fn user_count(&self, realm: &str) -> Result<Option<u64>> {
        if !self.realm_exists(realm).await? {
            return Ok(None);
        }
        let count = self
            .api
            .realm_users_count_get(
                realm, None, None, None, None, None, None, None, None, None, None, None, None, None,
            )
            .await
            .map_err(|e| AdminError::from_keycloak("count the users", realm, e))?;
        u64::try_from(count)
            .map(Some)
            .map_err(|_| AdminError::Malformed {
                realm: realm.into(),
                what: format!("a negative user count ({count})"),
            })
    }
}
