//! Access and refresh tokens issued by the master realm's token endpoint.
//!
//! Tokens are JWT-shaped (`header.payload.signature`, base64url) so clients
//! that read `exp` from them work, but they are checked by lookup in this
//! table, not by signature: the sandbox is their only consumer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::store::now_millis;

/// Keycloak's default lifespan of master-realm access tokens.
pub const DEFAULT_ACCESS_LIFESPAN: Duration = Duration::from_secs(60);

const REFRESH_LIFESPAN: Duration = Duration::from_secs(1800);

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub subject: String,
    pub client_id: String,
    /// Holds the master realm's `admin` role (or is a sandbox service account).
    pub admin: bool,
}

#[derive(Debug)]
struct Entry {
    grant: Grant,
    expires: Instant,
}

#[derive(Debug)]
pub(crate) struct Tokens {
    access_lifespan: Duration,
    access: HashMap<String, Entry>,
    refresh: HashMap<String, Entry>,
}

/// The token endpoint's success body, with the fields Keycloak sends.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub token_type: &'static str,
    #[serde(rename = "not-before-policy")]
    pub not_before_policy: u64,
    pub session_state: String,
    pub scope: &'static str,
}

fn jwt_shaped(issuer: &str, grant: &Grant, typ: &str, lifespan: Duration) -> String {
    let now = now_millis() / 1000;
    let exp = now + i64::try_from(lifespan.as_secs()).unwrap_or(i64::MAX / 2);
    let header = json!({"alg": "none", "typ": "JWT"});
    let payload = json!({
        "exp": exp,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iss": issuer,
        "sub": grant.subject,
        "typ": typ,
        "azp": grant.client_id,
        "preferred_username": grant.subject,
        "scope": "profile email",
    });
    // The random third part makes every token unguessable.
    let nonce = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(nonce)
    )
}

impl Tokens {
    pub fn new(access_lifespan: Duration) -> Self {
        Self {
            access_lifespan,
            access: HashMap::new(),
            refresh: HashMap::new(),
        }
    }

    /// Issues an access token (and, for user logins, a refresh token).
    pub fn issue(&mut self, issuer: &str, grant: Grant, with_refresh: bool) -> TokenResponse {
        let now = Instant::now();
        self.access.retain(|_, e| e.expires > now);
        self.refresh.retain(|_, e| e.expires > now);
        let access_token = jwt_shaped(issuer, &grant, "Bearer", self.access_lifespan);
        let refresh_token = with_refresh.then(|| {
            let token = jwt_shaped(issuer, &grant, "Refresh", REFRESH_LIFESPAN);
            self.refresh.insert(
                token.clone(),
                Entry {
                    grant: grant.clone(),
                    expires: now + REFRESH_LIFESPAN,
                },
            );
            token
        });
        self.access.insert(
            access_token.clone(),
            Entry {
                grant,
                expires: now + self.access_lifespan,
            },
        );
        TokenResponse {
            access_token,
            expires_in: self.access_lifespan.as_secs(),
            refresh_expires_in: if with_refresh {
                REFRESH_LIFESPAN.as_secs()
            } else {
                0
            },
            refresh_token,
            token_type: "Bearer",
            not_before_policy: 0,
            session_state: uuid::Uuid::new_v4().to_string(),
            scope: "profile email",
        }
    }

    pub fn check(&self, token: &str) -> Option<&Grant> {
        self.access
            .get(token)
            .filter(|e| e.expires > Instant::now())
            .map(|e| &e.grant)
    }

    /// Consumes a refresh token and returns its grant if it is still valid.
    pub fn redeem_refresh(&mut self, token: &str) -> Option<Grant> {
        self.refresh
            .remove(token)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.grant)
    }
}
