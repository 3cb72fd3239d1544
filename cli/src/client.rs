//! The CLI's connection to the coordinator: mTLS with a client certificate.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb::{self, fleet_client::FleetClient};
use ferry_common::tls::{self, AlertDescription, ConnectError, TlsPaths};
use tonic::transport::Channel;

use crate::exit;

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The coordinator's address.
    #[arg(
        long,
        global = true,
        env = "FERRY_COORDINATOR",
        default_value = "https://127.0.0.1:7443"
    )]
    pub coordinator: String,
    /// TLS server name to expect in the coordinator's certificate, if not the URL's host.
    #[arg(long, global = true, env = "FERRY_COORDINATOR_NAME")]
    pub coordinator_name: Option<String>,
    /// The identity (URI SAN) the coordinator's certificate must carry.
    #[arg(
        long,
        global = true,
        env = "FERRY_COORDINATOR_IDENTITY",
        default_value = ferry_common::identity::COORDINATOR_URI
    )]
    pub coordinator_identity: String,
    /// Directory with `ca.pem` and `client-<name>.pem`/`-key.pem`.
    #[arg(long, global = true, env = "FERRY_PKI_DIR", default_value = "pki")]
    pub pki_dir: PathBuf,
    /// Which client certificate of the PKI directory to use.
    #[arg(
        long = "as",
        global = true,
        env = "FERRY_CLIENT",
        default_value = "admin"
    )]
    pub client_name: String,
    #[arg(long, global = true, env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, global = true, env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    #[arg(long, global = true, env = "FERRY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl ClientArgs {
    pub fn tls_paths(&self) -> TlsPaths {
        let d = TlsPaths::in_dir(&self.pki_dir, &format!("client-{}", self.client_name));
        TlsPaths {
            cert: self.tls_cert.clone().unwrap_or(d.cert),
            key: self.tls_key.clone().unwrap_or(d.key),
            ca: self.tls_ca.clone().unwrap_or(d.ca),
        }
    }

    pub async fn channel(&self) -> Result<Channel, ConnectError> {
        tls::connect_to(
            &self.coordinator,
            &self.tls_paths(),
            tls::ServerCheck {
                name: self.coordinator_name.as_deref(),
                identity: &self.coordinator_identity,
            },
            Duration::from_secs(10),
        )
        .await
    }

    pub async fn fleet(&self) -> anyhow::Result<FleetClient<Channel>> {
        Ok(FleetClient::new(self.channel().await?))
    }
}

/// Waits for a command to finish, riding out a coordinator restart: the
/// command is durable there, so the wait is simply asked again.
pub async fn wait_command(
    args: &ClientArgs,
    command_id: &str,
    timeout: Duration,
) -> anyhow::Result<pb::CommandStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<pb::CommandStatus> = None;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return last.ok_or_else(|| anyhow::anyhow!("timed out waiting for command {command_id}: the coordinator could not be reached"));
        }
        let attempt = async {
            let mut fleet = args.fleet().await?;
            let status = fleet
                .wait_command(pb::WaitCommandRequest {
                    command_id: command_id.to_string(),
                    timeout_ms: remaining.min(Duration::from_secs(30)).as_millis() as u64,
                })
                .await?
                .into_inner();
            anyhow::Ok(status)
        };
        match attempt.await {
            Ok(status) => {
                if matches!(
                    pb::CommandState::try_from(status.state),
                    Ok(pb::CommandState::Succeeded | pb::CommandState::Failed)
                ) {
                    return Ok(status);
                }
                last = Some(status);
            }
            Err(e) if is_transient(&e) => {
                tracing::debug!(error = %e, "coordinator unreachable; retrying");
                tokio::time::sleep(Duration::from_millis(300).min(remaining)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("waiting for command {command_id}")),
        }
    }
}

/// A call cut by the link (the coordinator died or restarted), not refused.
fn is_link_error(s: &tonic::Status) -> bool {
    let m = s.message().to_ascii_lowercase();
    [
        "transport error",
        "connection",
        "broken pipe",
        "operation was canceled",
        "h2 protocol",
        "error reading a body",
        "stream closed",
    ]
    .iter()
    .any(|n| m.contains(n))
}

/// The coordinator is away (down, restarting, the link cut): worth asking
/// again, since what runs there goes on without the CLI.
pub fn is_transient(e: &anyhow::Error) -> bool {
    if handshake_refusal(e).is_some() {
        return false;
    }
    for cause in e.chain() {
        if let Some(s) = cause.downcast_ref::<tonic::Status>() {
            return matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
            );
        }
        if let Some(ConnectError::Connect { .. }) = cause.downcast_ref::<ConnectError>() {
            return true;
        }
    }
    false
}

/// A mistake in the command line found by the CLI itself (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `Err(UsageError)` as an anyhow error, for `?`.
pub fn usage<T>(message: impl Into<String>) -> anyhow::Result<T> {
    Err(UsageError(message.into()).into())
}

/// The coordinator refused this client's certificate during the handshake
/// (TLS 1.3 reports that only at the first call): the alert it sent, read
/// from the error's words. `None` if `e` is not that. In words for a person:
/// `ferry_common::tls::refusal_in_words`.
pub fn handshake_refusal(e: &anyhow::Error) -> Option<AlertDescription> {
    let text = e
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    [
        ("UnknownCA", AlertDescription::UnknownCA),
        ("unknown ca", AlertDescription::UnknownCA),
        ("CertificateExpired", AlertDescription::CertificateExpired),
        ("certificate expired", AlertDescription::CertificateExpired),
        ("DecryptError", AlertDescription::DecryptError),
        ("BadCertificate", AlertDescription::BadCertificate),
        ("bad certificate", AlertDescription::BadCertificate),
        ("CertificateRequired", AlertDescription::CertificateRequired),
        ("AccessDenied", AlertDescription::AccessDenied),
    ]
    .iter()
    .find(|(needle, _)| text.contains(needle))
    .map(|(_, alert)| *alert)
}

/// Maps an error to the documented exit codes (`crate::exit`).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if handshake_refusal(e).is_some() {
        return exit::REFUSED;
    }
    for cause in e.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return exit::USAGE;
        }
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            return match status.code() {
                tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
                | tonic::Code::FailedPrecondition
                | tonic::Code::NotFound
                | tonic::Code::AlreadyExists
                | tonic::Code::ResourceExhausted => exit::REFUSED,
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange => exit::USAGE,
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => exit::UNAVAILABLE,
                tonic::Code::Cancelled | tonic::Code::Unknown if is_link_error(status) => {
                    exit::UNAVAILABLE
                }
                _ => exit::FAILED,
            };
        }
        if let Some(ConnectError::Files(_)) = cause.downcast_ref::<ConnectError>() {
            return exit::USAGE;
        }
        match cause.downcast_ref::<ConnectError>() {
            Some(ConnectError::Connect { .. }) => return exit::UNAVAILABLE,
            Some(ConnectError::Refused { .. }) => return exit::REFUSED,
            _ => {}
        }
    }
    exit::FAILED
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal seen at the first call (TLS 1.3) reads as the alert
    /// the coordinator sent, and its words are the ones the handshake
    /// probe prints: one message whichever way the refusal was noticed.
    #[test]
    fn a_refusal_at_the_first_call_reads_as_the_probes_words() {
        let e = anyhow::anyhow!("transport error")
            .context("connection error: received fatal alert: DecryptError");
        let alert = handshake_refusal(&e).expect("a refusal");
        assert_eq!(alert, AlertDescription::DecryptError);
        let words = tls::refusal_in_words(alert, std::path::Path::new("/x/client.pem"));
        assert!(
            words.starts_with("the coordinator refused this side's certificate /x/client.pem"),
            "{words}"
        );
        assert_eq!(exit_code(&e), exit::REFUSED);
        assert!(!is_transient(&e));
        assert!(handshake_refusal(&anyhow::anyhow!("connection refused")).is_none());
    }
}
