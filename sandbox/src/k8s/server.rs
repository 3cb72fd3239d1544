//! The listener: accepts loopback connections, serves HTTP/1.1 through the
//! handler, and shuts down in order (stop accepting, end watches, drain).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::error::{K8sError, Result};
use super::http::{Ctx, handle};
use super::kubeconfig;
use super::store::Store;

/// How long shutdown waits for in-flight requests before dropping them.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// A running API server. Dropping it without `shutdown` leaves the server
/// running until its runtime ends.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    base_url: String,
    token: String,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address bound (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bearer token written into kubeconfigs (the server accepts any).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A kubeconfig (YAML) pointing at this server, for kubectl and
    /// `kube::Config::from_custom_kubeconfig`.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::render(&self.base_url, &self.token)
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| K8sError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Stops accepting, ends open watches and waits for the connections
    /// to drain (bounded by a grace period).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if self.task.await.is_err() {
            tracing::warn!(addr = %self.addr, "the Kubernetes API accept loop panicked");
        }
    }
}

/// Binds `addr` and serves the store's API until shut down.
pub async fn serve(store: Store, addr: SocketAddr) -> Result<ServerHandle> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| K8sError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| K8sError::Bind { addr, source })?;
    let shutdown = CancellationToken::new();
    let ctx = Ctx {
        store,
        shutdown: shutdown.clone(),
        server_address: addr.to_string(),
    };
    let task = tokio::spawn(accept_loop(listener, ctx));
    tracing::info!(%addr, "sandbox Kubernetes API listening");
    Ok(ServerHandle {
        addr,
        base_url: format!("http://{addr}"),
        token: "ferry-sandbox".into(),
        shutdown,
        task,
    })
}

async fn accept_loop(listener: TcpListener, ctx: Ctx) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %err, "accepting a Kubernetes API connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
        let ctx = ctx.clone();
        connections.spawn(async move {
            let shutdown = ctx.shutdown.clone();
            let service = service_fn(move |req| handle(ctx.clone(), req));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(err) = res {
                        tracing::debug!(error = %err, "Kubernetes API connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_GRACE, drain).await.is_err() {
        tracing::warn!("Kubernetes API connections did not drain in time");
    }
}
