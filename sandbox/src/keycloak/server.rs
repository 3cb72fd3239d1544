//! The Keycloak sandbox's lifecycle: bind on loopback, serve, stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::shared::Shared;
use super::store::Store;
use super::tokens::{DEFAULT_ACCESS_LIFESPAN, Tokens};

/// How long open connections get to finish after shutdown is asked for.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How to start a [`KeycloakServer`].
#[derive(Debug, Clone)]
pub struct KeycloakConfig {
    /// The master realm's administrator, as `KEYCLOAK_ADMIN` sets it.
    pub admin_user: String,
    pub admin_password: String,
    /// Address to listen on; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Lifetime of access tokens (Keycloak's master realm default: 60 s).
    pub access_token_lifespan: Duration,
}

impl KeycloakConfig {
    pub fn new(admin_user: impl Into<String>, admin_password: impl Into<String>) -> Self {
        Self {
            admin_user: admin_user.into(),
            admin_password: admin_password.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_token_lifespan: DEFAULT_ACCESS_LIFESPAN,
        }
    }
}

/// A running Keycloak-admin-API-compatible server. Dropping it stops the
/// server; [`KeycloakServer::shutdown`] also waits for connections to drain.
pub struct KeycloakServer {
    pub(crate) shared: Arc<Shared>,
    config: KeycloakConfig,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl KeycloakServer {
    /// Starts on a free loopback port with a master realm whose admin user
    /// has the given credentials.
    pub async fn start(admin_user: &str, admin_password: &str) -> Result<Self> {
        Self::start_with(KeycloakConfig::new(admin_user, admin_password)).await
    }

    pub async fn start_with(config: KeycloakConfig) -> Result<Self> {
        let store = Store::bootstrap(&config.admin_user, &config.admin_password)
            .map_err(|e| e.into_error("create the admin user", "master"))?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.bind,
            source,
        })?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared::new(
            store,
            Tokens::new(config.access_token_lifespan),
            base_url,
        ));
        let app = super::api::router(shared.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "Keycloak sandbox server stopped with an error");
            }
        });
        tracing::info!(base_url = %shared.base_url, "sandbox Keycloak listening");
        Ok(Self {
            shared,
            config,
            shutdown,
            task: Some(task),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no `/auth` prefix, as
    /// Keycloak ≥ 17 serves it).
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn admin_user(&self) -> &str {
        &self.config.admin_user
    }

    pub fn admin_password(&self) -> &str {
        &self.config.admin_password
    }

    /// Writes an export command for the agent's `--keycloak-export-command`
    /// (owner-only: it holds the admin's password): `<path> <realm>…` prints
    /// each realm as Keycloak's own export would, users' password hashes
    /// included, fetched with `curl` from the sandbox's stand-in for
    /// `kc.sh export`.
    pub fn write_export_command(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let url = &self.shared.base_url;
        let script = format!(
            "#!/bin/sh
# The sandbox's stand-in for Keycloak's own export (kc.sh export --users
# realm_file): the realms named as arguments, one document each on stdout.
set -eu
token=$(curl -sf --data grant_type=password --data client_id=admin-cli \\
  --data-urlencode username={user} --data-urlencode password={password} \\
  {token_url} | sed -n 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/p')
for realm in \"$@\"; do
  curl -sf -H \"Authorization: Bearer $token\" {url}/ferry-sandbox/realms/\"$realm\"/export
  echo
done
",
            user = quote(&self.config.admin_user),
            password = quote(&self.config.admin_password),
            token_url = quote(&format!(
                "{url}/realms/master/protocol/openid-connect/token"
            )),
            url = quote(url),
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(path)?;
        f.write_all(script.as_bytes())
    }

    /// While on, every request (token and admin) is answered 503.
    pub fn set_unavailable(&self, on: bool) {
        tracing::info!(base_url = %self.shared.base_url, unavailable = on, "Keycloak fault switch");
        self.shared.set_unavailable(on);
    }

    pub fn is_unavailable(&self) -> bool {
        self.shared.is_unavailable()
    }

    /// Stops accepting and waits (bounded) for open connections to finish.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take()
            && tokio::time::timeout(DRAIN_GRACE, task).await.is_err()
        {
            tracing::warn!("Keycloak sandbox connections still open after the grace period");
        }
    }
}

impl Drop for KeycloakServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl std::fmt::Debug for KeycloakServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakServer")
            .field("base_url", &self.shared.base_url)
            .field("admin_user", &self.config.admin_user)
            .finish_non_exhaustive()
    }
}
