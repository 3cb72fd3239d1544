//! Mutual TLS for every Ferry connection (rustls).
//!
//! The server side re-reads its certificate, key and CA whenever one of the
//! files changes on disk, so a rotated certificate is used for the next
//! handshake without a restart and without touching established sessions.
//! The client side reads the files afresh for every new connection.
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use crate::{Error, Identity, Result};

/// Where a party's PEM files are.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsPaths {
    /// The layout `ferry pki init` writes: `<dir>/<name>.pem`, `<dir>/<name>-key.pem`, `<dir>/ca.pem`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
            ca: dir.join("ca.pem"),
        }
    }

    fn files(&self) -> [&Path; 3] {
        [&self.cert, &self.key, &self.ca]
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Pem {
            path: path.to_owned(),
            what: "certificate",
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| Error::Pem {
        path: path.to_owned(),
        what: "private key",
    })
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|source| Error::Tls {
            what: format!("CA {}", ca.display()),
            source,
        })?;
    }
    Ok(Arc::new(roots))
}

/// A server config that demands a client certificate issued by the CA.
pub fn server_config(paths: &TlsPaths) -> Result<ServerConfig> {
    let what = || format!("server certificate {}", paths.cert.display());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&paths.ca)?, provider())
        .build()
        .map_err(|e| Error::Tls {
            what: what(),
            source: rustls::Error::General(e.to_string()),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Tls {
            what: what(),
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&paths.cert)?, read_key(&paths.key)?)
        .map_err(|source| Error::Tls {
            what: what(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

type Fingerprint = Vec<Option<(SystemTime, u64)>>;

fn fingerprint(paths: &TlsPaths) -> Fingerprint {
    paths
        .files()
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The server's TLS config, rebuilt when its files change.
pub struct ReloadingServerConfig {
    paths: TlsPaths,
    state: Mutex<(Fingerprint, Arc<ServerConfig>)>,
}

impl ReloadingServerConfig {
    pub fn new(paths: TlsPaths) -> Result<Self> {
        let print = fingerprint(&paths);
        let config = Arc::new(server_config(&paths)?);
        Ok(Self {
            paths,
            state: Mutex::new((print, config)),
        })
    }

    /// The config for the next handshake. A change that does not load (say,
    /// a certificate written before its key) keeps the previous config and is
    /// retried at the next change.
    pub fn current(&self) -> Arc<ServerConfig> {
        let print = fingerprint(&self.paths);
        let mut state = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.0 != print {
            match server_config(&self.paths) {
                Ok(config) => {
                    tracing::info!(cert = %self.paths.cert.display(), "TLS files changed on disk; new handshakes use them");
                    state.1 = Arc::new(config);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous ones")
                }
            }
            state.0 = print;
        }
        state.1.clone()
    }
}

/// What the server knows of the peer of a connection, from its certificate.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub identity: Identity,
    pub remote: SocketAddr,
}

/// A server-side TLS connection whose peer has been identified.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and completes their TLS handshakes concurrently,
/// yielding only connections whose client certificate is from the CA and
/// names a Ferry identity. Refusals are logged, never yielded.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingServerConfig>,
    shutdown: CancellationToken,
) -> impl Stream<Item = std::io::Result<TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<TlsConn>>(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.current());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(acceptor, tcp, remote))
                    .await
                {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(reason)) => tracing::warn!(%remote, %reason, "TLS connection refused"),
                    Err(_) => tracing::warn!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
) -> std::result::Result<TlsConn, String> {
    let stream = acceptor
        .accept(tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no client certificate")?;
    let identity = Identity::from_cert_der(cert).map_err(|e| e.to_string())?;
    Ok(TlsConn {
        inner: stream,
        peer: PeerInfo { identity, remote },
    })
}

/// What a client requires of the server it dials.
#[derive(Debug, Clone, Copy)]
pub struct ServerCheck<'a> {
    /// The DNS or IP name the certificate must carry; the URL's host if `None`.
    pub name: Option<&'a str>,
    /// The Ferry identity (URI SAN) the certificate must carry.
    pub identity: &'a str,
}

impl<'a> ServerCheck<'a> {
    /// The coordinator, under its default identity `spiffe://ferry/coordinator`.
    pub fn coordinator(name: Option<&'a str>) -> Self {
        ServerCheck {
            name,
            identity: crate::identity::COORDINATOR_URI,
        }
    }
}

/// Verifies the server's chain and name with webpki, then requires the
/// expected identity among its URI SANs: a certificate from the same CA
/// that names another party (a client's, an agent's) is not the
/// coordinator, whatever its DNS names. Why a certificate was refused is
/// kept for the caller's error, in words.
#[derive(Debug)]
struct IdentityVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: String,
    refused: Arc<Mutex<Option<String>>>,
}

impl IdentityVerifier {
    fn refuse(&self, why: String) {
        if let Ok(mut slot) = self.refused.lock() {
            *slot = Some(why);
        }
    }
}

/// A webpki refusal of the server's certificate, in words.
fn describe_refusal(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => {
                "its certificate is not issued by the CA this side trusts (--tls-ca / ca.pem)".into()
            }
            C::Expired | C::ExpiredContext { .. } => "its certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "its certificate is not valid yet (check both clocks)".into()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "its certificate does not carry the name dialled (use --coordinator-name, or reissue it with that DNS/IP name)".into()
            }
            C::Revoked => "its certificate is revoked".into(),
            other => format!("its certificate is refused: {other:?}"),
        },
        other => format!("its certificate is refused: {other}"),
    }
}

impl rustls::client::danger::ServerCertVerifier for IdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .inspect_err(|e| self.refuse(describe_refusal(e)))?;
        let uris = crate::identity::uri_sans(end_entity);
        if uris.iter().any(|u| u == &self.expected) {
            return Ok(verified);
        }
        let names = if uris.is_empty() {
            "no URI".to_string()
        } else {
            uris.join(", ")
        };
        self.refuse(format!(
            "its certificate names {names}, not {}: it is not the coordinator (check --coordinator, \
             or --coordinator-identity if the coordinator has another identity)",
            self.expected
        ));
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Client TLS from the files as they are now, requiring `identity` of the
/// server; refusals are described in `refused`.
fn client_config(
    paths: &TlsPaths,
    identity: &str,
    refused: Arc<Mutex<Option<String>>>,
) -> Result<rustls::ClientConfig> {
    let what = || format!("client certificate {}", paths.cert.display());
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(&paths.ca)?, provider())
            .build()
            .map_err(|e| Error::Tls {
                what: format!("CA {}", paths.ca.display()),
                source: rustls::Error::General(e.to_string()),
            })?;
    let verifier = IdentityVerifier {
        inner,
        expected: identity.to_string(),
        refused,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Tls {
            what: what(),
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(read_certs(&paths.cert)?, read_key(&paths.key)?)
        .map_err(|source| Error::Tls {
            what: what(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Dials TCP and completes the TLS handshake with our own verifier (tonic's
/// TLS cannot check the server's URI SAN); tonic sees a plain connection.
#[derive(Clone)]
struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

impl tonic::codegen::Service<tonic::codegen::http::Uri> for TlsConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        let name = self.name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let tcp = TcpStream::connect((host.as_str(), uri.port_u16().unwrap_or(443))).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// Why the server refused this client's certificate, in words, found by
/// completing a handshake and reading what the server says next: with TLS
/// 1.3 a refused client certificate shows only after the handshake (as a
/// broken connection at the first call), so a caller whose call broke that
/// way asks here. `None`: the server accepted the certificate, or did not
/// say why (down, unreachable).
pub async fn refusal_of_own_certificate(
    url: &str,
    paths: &TlsPaths,
    check: ServerCheck<'_>,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let rest = url.strip_prefix("https://")?;
    let uri: tonic::codegen::http::Uri = format!("http://{rest}").parse().ok()?;
    let host = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let refused = Arc::new(Mutex::new(None));
    let config = client_config(paths, check.identity, refused).ok()?;
    let name =
        rustls::pki_types::ServerName::try_from(check.name.map_or(host.clone(), str::to_string))
            .ok()?;
    let probe = async {
        let tcp = TcpStream::connect((host.as_str(), uri.port_u16().unwrap_or(443))).await?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let mut byte = [0u8; 1];
        tls.read(&mut byte).await
    };
    let err = match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Err(e)) => e,
        _ => return None,
    };
    let alert = match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => *a,
        _ => return None,
    };
    Some(refusal_in_words(alert, &paths.cert))
}

/// The TLS alerts a server sends when it refuses a certificate.
pub use rustls::AlertDescription;

/// A refusal of this side's own certificate (`cert`), told by the server
/// as a TLS alert, in words: why, and what to do.
pub fn refusal_in_words(alert: rustls::AlertDescription, cert: &std::path::Path) -> String {
    use rustls::AlertDescription as A;
    let why = match alert {
        A::UnknownCA => "it is not issued by the CA the coordinator trusts".to_string(),
        A::CertificateExpired => "it has expired".to_string(),
        A::BadCertificate | A::UnsupportedCertificate => {
            "it is not a valid Ferry certificate (no Ferry identity, or not for client auth)"
                .to_string()
        }
        A::DecryptError => {
            "its signature does not verify: the key does not match the certificate, or it is not issued by the coordinator's CA"
                .to_string()
        }
        A::CertificateRequired => "none was sent".to_string(),
        A::AccessDenied => "its identity is not allowed".to_string(),
        other => format!("the coordinator sent {other:?}"),
    };
    format!(
        "the coordinator refused this side's certificate {} during the TLS handshake: {why}; \
         use a certificate issued by the deployment's CA and still valid (--tls-cert, --tls-key)",
        cert.display()
    )
}

/// Errors of connecting a client.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Files(#[from] Error),
    #[error("bad coordinator address {url}: {reason}")]
    Address { url: String, reason: String },
    #[error("cannot connect to the coordinator at {url}: {}", chain(.source))]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    /// The server's certificate was refused: not the coordinator, or not
    /// one this side can trust.
    #[error("refused the server at {url}: {reason}")]
    Refused { url: String, reason: String },
}

/// An error and its causes, `: `-separated (tonic's own says only
/// "transport error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The largest HTTP/2 frame either side of a link accepts (the protocol's
/// default is 16 KiB; relay frames are up to 1 MiB).
pub const MAX_H2_FRAME: u32 = 256 << 10;
const CLIENT_STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CLIENT_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// Opens an mTLS channel to the coordinator at `url` (`https://host:port`),
/// reading the files now; its certificate must name `spiffe://ferry/coordinator`.
pub async fn connect(
    url: &str,
    paths: &TlsPaths,
    server_name: Option<&str>,
    timeout: Duration,
) -> std::result::Result<Channel, ConnectError> {
    connect_to(url, paths, ServerCheck::coordinator(server_name), timeout).await
}

/// Opens an mTLS channel to `url` (`https://host:port`), reading the files
/// now, to a server whose certificate passes `check`.
pub async fn connect_to(
    url: &str,
    paths: &TlsPaths,
    check: ServerCheck<'_>,
    timeout: Duration,
) -> std::result::Result<Channel, ConnectError> {
    let address = |reason: String| ConnectError::Address {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| address("Ferry speaks only mutual TLS: use https://host:port".into()))?;
    let refused = Arc::new(Mutex::new(None));
    let config = client_config(paths, check.identity, refused.clone())?;
    // tonic dials `http://` through our connector, which does the TLS.
    let endpoint =
        Endpoint::from_shared(format!("http://{rest}")).map_err(|e| address(e.to_string()))?;
    let host = endpoint
        .uri()
        .host()
        .ok_or_else(|| address("no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = rustls::pki_types::ServerName::try_from(check.name.map_or(host, str::to_string))
        .map_err(|e| address(format!("bad TLS server name: {e}")))?;
    let connector = TlsConnector {
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        name,
    };
    let endpoint = endpoint
        .connect_timeout(timeout)
        // Bulk data (the relay's frames) in both directions: windows as large
        // as the coordinator's, so a stream is not stalled waiting for window
        // updates on a long link; what a slow reader lets pile up stays bounded.
        .initial_stream_window_size(CLIENT_STREAM_WINDOW)
        .initial_connection_window_size(CLIENT_CONNECTION_WINDOW)
        // HTTP/2 frames up to this size: a relay frame crosses in a few
        // HTTP/2 frames rather than 64 of 16 KiB each (less framing work).
        .max_frame_size(MAX_H2_FRAME)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    match endpoint.connect_with_connector(connector).await {
        Ok(channel) => Ok(channel),
        Err(source) => match refused.lock().ok().and_then(|mut r| r.take()) {
            Some(reason) => Err(ConnectError::Refused {
                url: url.to_string(),
                reason,
            }),
            None => Err(ConnectError::Connect {
                url: url.to_string(),
                source,
            }),
        },
    }
}
