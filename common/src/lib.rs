//! What every Ferry process shares: peer identity and mutual TLS, the demo
//! PKI, telemetry and metrics, the probe endpoint, reconnect backoff, a volume's
//! digest, the names of a migration's steps, and the generated contract.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod http;
pub mod identity;
pub mod labels;
pub mod limits;
pub mod metrics;
pub mod pki;
pub mod signal;
pub mod step;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod volume;

pub use ferry_proto::v1 as pb;
pub use identity::Identity;

/// Errors of the shared layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}; check that the file exists and is readable")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no usable {what}; expected a PEM file")]
    Pem {
        path: std::path::PathBuf,
        what: &'static str,
    },
    #[error("invalid TLS configuration from {what}: {source}")]
    Tls { what: String, source: rustls::Error },
    #[error("certificate carries no Ferry identity: {0}")]
    Identity(String),
    #[error("cannot issue certificate for {what}: {source}")]
    Issue { what: String, source: rcgen::Error },
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error("cannot listen on {addr}: {source}; is the address this host's and the port free?")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
