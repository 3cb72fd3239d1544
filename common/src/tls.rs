//! Mutual TLS for every Ferry connection (rustls).
//!
//! The server side re-reads its certificate, key and CA whenever one of the
//! files changes on disk, so a rotated certificate is used for the next
//! handshake without a restart and without touching established sessions.
//! The client side reads the files afresh for every new connection.
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
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

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

/// Client TLS from the files as they are now.
pub fn client_tls(paths: &TlsPaths, server_name: Option<&str>) -> Result<ClientTlsConfig> {
    // Parse first so a bad file is reported by name, not as a handshake failure.
    read_certs(&paths.ca)?;
    read_certs(&paths.cert)?;
    read_key(&paths.key)?;
    let mut config = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read_file(
            &paths.ca,
        )?))
        .identity(tonic::transport::Identity::from_pem(
            read_file(&paths.cert)?,
            read_file(&paths.key)?,
        ));
    if let Some(name) = server_name {
        config = config.domain_name(name);
    }
    Ok(config)
}

/// Errors of connecting a client.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Files(#[from] Error),
    #[error("bad coordinator address {url}: {source}")]
    Address {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("cannot connect to the coordinator at {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
}

/// The largest HTTP/2 frame either side of a link accepts (the protocol's
/// default is 16 KiB; relay frames are up to 1 MiB).
pub const MAX_H2_FRAME: u32 = 256 << 10;
const CLIENT_STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CLIENT_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// Opens an mTLS channel to `url` (`https://host:port`), reading the files now.
pub async fn connect(
    url: &str,
    paths: &TlsPaths,
    server_name: Option<&str>,
    timeout: Duration,
) -> std::result::Result<Channel, ConnectError> {
    let tls = client_tls(paths, server_name)?;
    let endpoint = Endpoint::from_shared(url.to_string())
        .and_then(|e| e.tls_config(tls))
        .map_err(|source| ConnectError::Address {
            url: url.to_string(),
            source,
        })?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
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
    endpoint
        .connect()
        .await
        .map_err(|source| ConnectError::Connect {
            url: url.to_string(),
            source,
        })
}
