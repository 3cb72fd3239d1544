//! The plain-HTTP endpoint a Ferry process serves beside its gRPC when
//! asked (`--http-listen`): Kubernetes probes and Prometheus metrics.
//!
//! - `GET /healthz`: 200 while the process's runtime answers — a liveness
//!   probe; it says nothing about the coordinator or the cluster.
//! - `GET /readyz`: 200 when the process's [`Readiness`] says so, else 503
//!   with a one-line reason.
//! - `GET /metrics`: every instrument of the global meter provider in the
//!   Prometheus text format 0.0.4 ([`crate::metrics`]).
//!
//! Anything else is 404 (unknown path) or 405 (another method); a request
//! hyper cannot parse gets its 400 and closes only that connection.
//! Plain HTTP on purpose: kubelet and Prometheus scrape it inside the pod
//! network, and it carries nothing secret; keep it off public routes.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Prometheus;
use crate::{Error, Result};

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const TEXT: &str = "text/plain; charset=utf-8";

/// Whether the process is ready, and if not, why. Cheap to clone; clones
/// share the state.
#[derive(Clone, Debug)]
pub struct Readiness {
    not_ready: Arc<RwLock<Option<String>>>,
}

impl Readiness {
    /// Not ready yet, for `reason`.
    pub fn not_ready(reason: impl Into<String>) -> Self {
        Self {
            not_ready: Arc::new(RwLock::new(Some(reason.into()))),
        }
    }

    pub fn set_ready(&self) {
        *self.not_ready.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.not_ready.write().unwrap_or_else(|p| p.into_inner()) = Some(reason.into());
    }

    /// `Err(reason)` while not ready.
    pub fn check(&self) -> std::result::Result<(), String> {
        match &*self.not_ready.read().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }
}

/// A running endpoint; it stops when the token given to [`serve`] is
/// cancelled.
pub struct HttpServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Waits until the endpoint has stopped (after its token was cancelled).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Binds `addr` and serves the probes and `metrics` on it until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    metrics: Prometheus,
    shutdown: CancellationToken,
) -> Result<HttpServer> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: addr.to_string(),
        source,
    })?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics over plain HTTP");
    let task = tokio::spawn(accept(listener, readiness, metrics, shutdown));
    Ok(HttpServer { addr, task })
}

async fn accept(
    listener: TcpListener,
    readiness: Readiness,
    metrics: Prometheus,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (readiness, metrics) = (readiness.clone(), metrics.clone());
        let service = hyper::service::service_fn(move |request| {
            let response = respond(&request, &readiness, &metrics);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let stop = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn respond(
    request: &Request<Incoming>,
    readiness: &Readiness,
    metrics: &Prometheus,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match readiness.check() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", one_line(&reason)),
            ),
        },
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; this endpoint serves /healthz, /readyz and /metrics\n".into(),
        ),
    }
}

fn one_line(reason: &str) -> String {
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(TEXT));
    response
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Sends `request` as is on a fresh connection; the status code and the
    /// whole answer (headers and body).
    async fn send(addr: SocketAddr, request: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"));
        (status, answer)
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        send(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
        )
        .await
    }

    async fn start() -> (
        HttpServer,
        Readiness,
        opentelemetry_sdk::metrics::SdkMeterProvider,
        CancellationToken,
    ) {
        let (provider, prometheus) =
            crate::metrics::provider("ferry-test", None).expect("provider");
        let readiness = Readiness::not_ready("no session with the coordinator yet");
        let stop = CancellationToken::new();
        let server = serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            readiness.clone(),
            prometheus,
            stop.clone(),
        )
        .await
        .expect("serve");
        (server, readiness, provider, stop)
    }

    #[tokio::test]
    async fn healthz_answers_and_readyz_follows_readiness() {
        let (server, readiness, _provider, stop) = start().await;
        let (status, body) = get(server.addr, "/healthz").await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = get(server.addr, "/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.ends_with("\r\n\r\nnot ready: no session with the coordinator yet\n"),
            "{body}"
        );
        readiness.set_ready();
        let (status, body) = get(server.addr, "/readyz").await;
        assert_eq!(status, 200, "{body}");
        readiness.set_not_ready("session ended:\nthe coordinator closed it");
        let (status, body) = get(server.addr, "/readyz?verbose").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.ends_with("not ready: session ended: the coordinator closed it\n"),
            "one line: {body}"
        );
        stop.cancel();
        server.stopped().await;
    }

    #[tokio::test]
    async fn metrics_show_what_was_recorded() {
        let (server, _readiness, provider, stop) = start().await;
        provider
            .meter("t")
            .u64_counter("ferry.test.things")
            .build()
            .add(7, &[opentelemetry::KeyValue::new("kind", "x")]);
        let (status, body) = get(server.addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8")
                || body.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{body}"
        );
        assert!(
            body.contains("\nferry_test_things_total{kind=\"x\"} 7\n"),
            "{body}"
        );
        assert!(body.contains("\nferry_build_info{"), "{body}");
        stop.cancel();
        server.stopped().await;
    }

    #[tokio::test]
    async fn unknown_paths_other_methods_and_garbage_are_refused_and_it_keeps_serving() {
        let (server, _readiness, _provider, stop) = start().await;
        let (status, body) = get(server.addr, "/nothing-here").await;
        assert_eq!(status, 404, "{body}");
        let (status, body) = send(
            server.addr,
            "POST /readyz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 405, "{body}");
        assert!(
            body.to_ascii_lowercase().contains("allow: get, head"),
            "{body}"
        );
        let (status, body) = send(server.addr, "\x16\x03\x01 this is not HTTP\r\n\r\n").await;
        assert_eq!(status, 400, "{body}");
        // A client that connects and goes away sends nothing at all.
        drop(
            tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("connect"),
        );
        let (status, body) = get(server.addr, "/healthz").await;
        assert_eq!(status, 200, "still serving: {body}");
        stop.cancel();
        server.stopped().await;
    }

    #[tokio::test]
    async fn it_stops_when_cancelled_even_with_an_idle_connection_open() {
        let (server, _readiness, _provider, stop) = start().await;
        let addr = server.addr;
        let _idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server.stopped())
            .await
            .expect("stopped within 5 s");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
