//! The coordinator's configuration: flags with environment fallbacks and
//! defaults that work for the sandbox.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferry_common::telemetry::LogFormat;
use ferry_common::time::parse_duration;
use ferry_common::tls::TlsPaths;

use crate::auth::RoleBinding;

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

    /// A configuration for in-process use (demo, tests).
    pub fn for_dirs(pki_dir: PathBuf, data_dir: PathBuf, roles: Vec<RoleBinding>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            pki_dir,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            data_dir,
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
