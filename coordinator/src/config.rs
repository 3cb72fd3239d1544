//! The coordinator's configuration: flags with environment fallbacks and
//! defaults that work for the sandbox.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferry_common::telemetry::LogFormat;
use ferry_common::time::parse_duration;
use ferry_common::tls::TlsPaths;

use crate::auth::RoleBinding;
use crate::{Error, Result};

/// `--store`: shown redacted, as it may hold a password.
#[derive(Clone)]
pub struct StoreUrl(pub String);

impl std::str::FromStr for StoreUrl {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") || s.contains("host=") {
            Ok(Self(s.to_string()))
        } else {
            Err("expected a PostgreSQL URL, postgres://user@host:port/database".into())
        }
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.parse::<tokio_postgres::Config>() {
            Ok(c) => f.write_str(&crate::store::redacted(&c)),
            Err(_) => f.write_str("<unparsable PostgreSQL URL>"),
        }
    }
}

/// A password: never printed.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct CoordinatorConfig {
    /// Address to listen on for agents and clients (mTLS gRPC).
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// Directory with `ca.pem`, `coordinator.pem`, `coordinator-key.pem` (as `ferry pki init` writes).
    #[arg(long, env = "FERRY_PKI_DIR", default_value = "pki")]
    pub pki_dir: PathBuf,
    /// Server certificate; defaults to `<pki-dir>/coordinator.pem`.
    #[arg(long, env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Server key; defaults to `<pki-dir>/coordinator-key.pem`.
    #[arg(long, env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA that issued agents' and clients' certificates; defaults to `<pki-dir>/ca.pem`.
    #[arg(long, env = "FERRY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Directory of the durable state (embedded database).
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "ferry-data")]
    pub data_dir: PathBuf,
    /// Keep the durable state in PostgreSQL instead, e.g.
    /// `postgres://ferry@db:5432/ferry`: several replicas share it, one
    /// leads (docs/ha.md). Unset: the embedded database under --data-dir.
    #[arg(long = "store", env = "FERRY_STORE")]
    pub store: Option<StoreUrl>,
    /// A file holding the PostgreSQL password (e.g. a mounted Secret).
    #[arg(long, env = "FERRY_STORE_PASSWORD_FILE")]
    pub store_password_file: Option<PathBuf>,
    /// The PostgreSQL password, from the environment only (never a flag:
    /// command lines are visible to every user of the host).
    #[arg(skip = std::env::var("FERRY_STORE_PASSWORD").ok().map(Secret))]
    pub store_password: Option<Secret>,
    /// With PostgreSQL: how long the leader's lease lasts. A standby takes
    /// over at most this long (plus a third of it) after the leader stops
    /// renewing; the leader renews every third of it.
    #[arg(long, env = "FERRY_LEASE", default_value = "15s", value_parser = parse_duration)]
    pub lease: Duration,
    /// Client roles, `name=viewer|operator|admin`, comma separated or repeated.
    #[arg(long = "role", env = "FERRY_ROLES", value_delimiter = ',')]
    pub roles: Vec<RoleBinding>,
    /// How often agents send heartbeats.
    #[arg(long, env = "FERRY_HEARTBEAT", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// A connected agent silent for this long is reported lost.
    #[arg(long, env = "FERRY_LOST_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub lost_after: Duration,
    /// On SIGTERM, how long sessions and calls may drain before the process exits.
    #[arg(long, env = "FERRY_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    #[arg(long, env = "FERRY_LOG_FORMAT", default_value = "human")]
    pub log_format: LogFormat,
    /// OTLP/gRPC endpoint for traces and metrics, e.g. http://otel-collector:4317.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Serve `/healthz`, `/readyz` and `/metrics` (Prometheus) over plain
    /// HTTP on this address, e.g. 0.0.0.0:9090; off when unset.
    #[arg(long, env = "FERRY_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
}

impl CoordinatorConfig {
    pub fn tls_paths(&self) -> TlsPaths {
        let d = TlsPaths::in_dir(&self.pki_dir, "coordinator");
        TlsPaths {
            cert: self.tls_cert.clone().unwrap_or(d.cert),
            key: self.tls_key.clone().unwrap_or(d.key),
            ca: self.tls_ca.clone().unwrap_or(d.ca),
        }
    }

    /// The PostgreSQL connection when `--store` names one, with the password
    /// from the file or the environment when the URL has none.
    pub fn postgres(&self) -> Result<Option<tokio_postgres::Config>> {
        let Some(url) = &self.store else {
            return Ok(None);
        };
        let mut pg: tokio_postgres::Config = url.0.parse().map_err(|e| {
            Error::Invalid(format!(
                "--store is not a PostgreSQL URL or connection string ({e}); \
                 expected e.g. postgres://ferry@db:5432/ferry"
            ))
        })?;
        if let Some(file) = &self.store_password_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::Invalid(format!(
                    "cannot read the PostgreSQL password from {}: {e}",
                    file.display()
                ))
            })?;
            pg.password(text.trim_end_matches(['\r', '\n']));
        } else if let Some(Secret(password)) = &self.store_password {
            pg.password(password.as_str());
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        pg.application_name("ferry-coordinator");
        Ok(Some(pg))
    }

    /// A configuration for in-process use (demo, tests).
    pub fn for_dirs(pki_dir: PathBuf, data_dir: PathBuf, roles: Vec<RoleBinding>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            pki_dir,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            data_dir,
            store: None,
            store_password_file: None,
            store_password: None,
            lease: Duration::from_secs(15),
            roles,
            heartbeat: Duration::from_secs(5),
            lost_after: Duration::from_secs(30),
            grace: Duration::from_secs(5),
            log_format: LogFormat::Human,
            otlp_endpoint: None,
            http_listen: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_store(url: &str) -> CoordinatorConfig {
        let mut c = CoordinatorConfig::for_dirs("pki".into(), "data".into(), vec![]);
        c.store = Some(url.parse().expect("a PostgreSQL URL"));
        c
    }

    #[test]
    fn the_store_password_never_shows_in_the_configuration() {
        let mut c = with_store("postgres://ferry:in-url-pw@db:5432/ferry");
        c.store_password = Some(Secret("env-pw".into()));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("in-url-pw") && !shown.contains("env-pw"),
            "{shown}"
        );
        assert!(shown.contains("postgres://ferry@db:5432/ferry"), "{shown}");
    }

    #[test]
    fn the_password_file_wins_over_the_environment() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\n")?;
        let mut c = with_store("postgres://ferry@db/ferry");
        c.store_password = Some(Secret("from-env".into()));
        let pg = c.postgres()?.ok_or_else(|| anyhow::anyhow!("no store"))?;
        assert_eq!(pg.get_password(), Some(&b"from-env"[..]));
        c.store_password_file = Some(file);
        let pg = c.postgres()?.ok_or_else(|| anyhow::anyhow!("no store"))?;
        assert_eq!(pg.get_password(), Some(&b"from-file"[..]));
        assert!(
            with_store("postgres://ferry@db/ferry")
                .postgres()?
                .is_some()
        );
        assert!("mysql://db/ferry".parse::<StoreUrl>().is_err());
        let mut missing = with_store("postgres://ferry@db/ferry");
        missing.store_password_file = Some(dir.path().join("nothing"));
        assert!(missing.postgres().is_err());
        Ok(())
    }
}
