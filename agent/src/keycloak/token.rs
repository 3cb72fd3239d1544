//! Admin tokens from the `master` realm, renewed before they expire: an
//! export of a large realm takes longer than a token lives (60 s by default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use keycloak::{KeycloakAdminToken, KeycloakError, KeycloakTokenSupplier};
use tokio::sync::Mutex;

/// Renew this long before Keycloak's expiry, so a token never dies mid-call.
const MARGIN: Duration = Duration::from_secs(10);

/// A cheap-to-clone source of valid admin tokens.
#[derive(Clone)]
pub(crate) struct TokenSource {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    user: String,
    password: String,
    http: reqwest::Client,
    cached: Mutex<Option<(String, Instant)>>,
}

impl TokenSource {
    pub(crate) fn new(url: &str, user: &str, password: &str, http: reqwest::Client) -> Self {
        TokenSource {
            inner: Arc::new(Inner {
                url: url.into(),
                user: user.into(),
                password: password.into(),
                http,
                cached: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn user(&self) -> &str {
        &self.inner.user
    }

    /// A token valid for at least [`MARGIN`], logging in again when needed.
    pub(crate) async fn token(&self) -> Result<String, KeycloakError> {
        let mut cached = self.inner.cached.lock().await;
        if let Some((token, valid_until)) = cached.as_ref()
            && Instant::now() < *valid_until
        {
            return Ok(token.clone());
        }
        let fresh = KeycloakAdminToken::acquire(
            &self.inner.url,
            &self.inner.user,
            &self.inner.password,
            &self.inner.http,
        )
        .await?;
        let lifetime = Duration::from_secs(fresh.expires_in() as u64).saturating_sub(MARGIN);
        let token = fresh.access_token().to_owned();
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }
}

#[async_trait]
impl KeycloakTokenSupplier for TokenSource {
    async fn get(&self, _url: &str) -> Result<String, KeycloakError> {
        self.token().await
    }
}
