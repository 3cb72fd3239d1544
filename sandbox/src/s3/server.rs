//! The S3 endpoint's lifecycle: bind on loopback, serve `s3s` over HTTP/1.1
//! (or HTTPS, with a certificate from a given CA), stop on request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s_fs::FileSystem;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::backend::SharedFs;
use super::error::{Error, Result};
use super::fault::{FaultSwitch, unavailable_response};

/// The region reported to clients; SigV4 signatures are checked with whatever
/// region the client signed for, as MinIO-style endpoints do.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How long open connections get to finish after shutdown is asked for.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How to start an [`S3Server`].
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Directory holding the buckets (one subdirectory each); created if missing.
    pub root: PathBuf,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// Address to listen on; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Serve HTTPS instead of plain HTTP.
    pub tls: Option<S3Tls>,
}

impl S3Config {
    pub fn new(
        root: impl Into<PathBuf>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        Self {
            root: root.into(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            region: DEFAULT_REGION.to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
        }
    }
}

/// HTTPS for an endpoint: a server certificate for `127.0.0.1` and
/// `localhost` issued by a CA the clients trust (the bench's own, as a real
/// cluster's S3 route has one from its CA).
#[derive(Clone)]
pub struct S3Tls {
    config: Arc<rustls::ServerConfig>,
}

impl S3Tls {
    /// Issues the certificate with the CA in `ca_cert` and `ca_key` (PEM, as
    /// `ferry pki init` writes `ca.pem` and `ca-key.pem`).
    pub fn issued_by(ca_cert: &Path, ca_key: &Path) -> Result<Self> {
        let what = format!("a server certificate from the CA {}", ca_cert.display());
        let err = |message: String| Error::Tls {
            what: what.clone(),
            message,
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| err(format!("reading {}: {e}", p.display())))
        };
        let ca_key = rcgen::KeyPair::from_pem(&read(ca_key)?).map_err(|e| err(e.to_string()))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&read(ca_cert)?, ca_key)
            .map_err(|e| err(e.to_string()))?;
        let key = rcgen::KeyPair::generate().map_err(|e| err(e.to_string()))?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .map_err(|e| err(e.to_string()))?;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| err(e.to_string()))?;
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| err(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .map_err(|e| err(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

impl std::fmt::Debug for S3Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Tls").finish_non_exhaustive()
    }
}

/// A running S3-compatible endpoint with SigV4 checking. Dropping it stops the
/// server; [`S3Server::shutdown`] also waits for open connections to drain.
pub struct S3Server {
    pub(crate) config: S3Config,
    pub(crate) endpoint: String,
    /// The storage behind the endpoint, also used by the in-process helpers
    /// (`objects.rs`), so both keep the listing index current.
    pub(crate) fs: SharedFs,
    pub(crate) faults: Arc<FaultSwitch>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Starts an endpoint on a free loopback port over `root`, accepting only
    /// requests signed with `access_key`/`secret_key`.
    pub async fn start(root: impl AsRef<Path>, access_key: &str, secret_key: &str) -> Result<Self> {
        Self::start_with(S3Config::new(root.as_ref(), access_key, secret_key)).await
    }

    pub async fn start_with(config: S3Config) -> Result<Self> {
        tokio::fs::create_dir_all(&config.root)
            .await
            .map_err(|source| Error::Root {
                path: config.root.clone(),
                source,
            })?;
        let fs = FileSystem::new(&config.root).map_err(|e| Error::Backend {
            path: config.root.clone(),
            message: format!("{e:?}"),
        })?;
        // The same directory `s3s-fs` resolves its paths against.
        let root = std::fs::canonicalize(&config.root).unwrap_or_else(|_| config.root.clone());
        let fs = SharedFs::new(fs, root);
        let mut builder = S3ServiceBuilder::new(fs.clone());
        builder.set_auth(SimpleAuth::from_single(
            config.access_key.clone(),
            config.secret_key.clone(),
        ));
        let service = builder.build();

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
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoint = format!("{scheme}://{addr}");
        let tls = config
            .tls
            .as_ref()
            .map(|t| TlsAcceptor::from(t.config.clone()));

        let faults = Arc::new(FaultSwitch::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            tls,
            service,
            faults.clone(),
            shutdown.clone(),
        ));
        tracing::info!(%endpoint, root = %config.root.display(), "sandbox S3 endpoint listening");

        Ok(Self {
            config,
            endpoint,
            fs,
            faults,
            shutdown,
            task: Some(task),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (`https://` with [`S3Tls`]);
    /// buckets are addressed path-style.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn access_key(&self) -> &str {
        &self.config.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.config.secret_key
    }

    pub fn region(&self) -> &str {
        &self.config.region
    }

    /// Directory holding the buckets.
    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// While on, every request is answered 503 ServiceUnavailable.
    pub fn set_unavailable(&self, on: bool) {
        tracing::info!(endpoint = %self.endpoint, unavailable = on, "S3 fault switch");
        self.faults.set_unavailable(on);
    }

    pub fn is_unavailable(&self) -> bool {
        self.faults.is_unavailable()
    }

    /// While on, requests for this one bucket are answered 503; the others
    /// are served (a BSL goes Unavailable while OBC buckets stay readable).
    pub fn set_bucket_unavailable(&self, bucket: &str, on: bool) {
        tracing::info!(endpoint = %self.endpoint, bucket, unavailable = on, "S3 bucket fault switch");
        self.faults.set_bucket_unavailable(bucket, on);
    }

    /// Whether requests over HTTP for `bucket` fail now, by either switch.
    /// In-process helpers ignore the switches (they are the fixture's back
    /// door), so an in-process probe of bucket health should ask this.
    pub fn is_bucket_unavailable(&self, bucket: &str) -> bool {
        self.faults.is_unavailable() || self.faults.is_bucket_unavailable(bucket)
    }

    /// Stops accepting, lets open connections finish (bounded), then returns.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            // A panicked server task has nothing left to drain.
            let _ = task.await;
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("root", &self.config.root)
            .field("access_key", &self.config.access_key)
            .finish_non_exhaustive()
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S3Service,
    faults: Arc<FaultSwitch>,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "S3 sandbox accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small response writes must not wait for delayed ACKs (Nagle): clients
        // that read object bodies in pieces would otherwise stall 40 ms a piece.
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let faults = faults.clone();
        let handler = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let service = service.clone();
            let faults = faults.clone();
            async move {
                if faults.blocks(req.uri().path()) {
                    return Ok::<_, s3s::HttpError>(unavailable_response());
                }
                let head = req.method() == http::Method::HEAD;
                let mut resp = hyper::service::Service::call(&service, req).await?;
                // `s3s` answers every HEAD 200; a ranged one is 206, as its GET.
                if head
                    && resp.status() == http::StatusCode::OK
                    && resp.headers().contains_key(http::header::CONTENT_RANGE)
                {
                    *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
                }
                Ok(resp)
            }
        });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => serve_connection(stream, handler, watcher).await,
                // The handshake runs in the connection's task, so a slow
                // client never holds up the accept loop.
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => serve_connection(stream, handler, watcher).await,
                    Err(error) => {
                        tracing::debug!(%error, "S3 sandbox TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(error) = served {
                tracing::debug!(%error, "S3 sandbox connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("S3 sandbox connections still open after the grace period; dropping them");
    }
}

async fn serve_connection<S, H>(
    stream: S,
    handler: H,
    watcher: hyper_util::server::graceful::Watcher,
) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: hyper::service::HttpService<hyper::body::Incoming> + Send,
    H::Future: Send + 'static,
    H::ResBody: Send + 'static,
    <H::ResBody as hyper::body::Body>::Data: Send,
    <H::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), handler);
    watcher.watch(conn).await
}
