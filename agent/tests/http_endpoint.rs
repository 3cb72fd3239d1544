//! The agent's and the coordinator's plain-HTTP endpoint (`--http-listen`),
//! in process over loopback with the real mTLS link between them: the
//! agent is ready only while registered, the coordinator once it serves,
//! and both serve the instruments they record at `/metrics`.
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb::{self, command_spec::Kind, fleet_client::FleetClient};
use ferry_common::pki::{self, PkiPlan};
use ferry_common::tls::TlsPaths;
use ferry_coordinator::CoordinatorConfig;
use ferry_testkit::eventually;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// A loopback address free right now.
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from((
        [127, 0, 0, 1],
        ferry_testkit::free_port()?,
    )))
}

/// Status and body of `GET http://{addr}{path}`.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("GET {path} from {addr}"))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// The value of the sample `series` (name and labels as rendered) in a
/// Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn eventually_status(addr: SocketAddr, path: &str, want: u16) -> anyhow::Result<String> {
    eventually(
        WAIT,
        &format!("{path} on {addr} answering {want}"),
        || async {
            match get(addr, path).await {
                Ok((status, body)) if status == want => Some(body),
                _ => None,
            }
        },
    )
    .await
}

fn make_pki(dir: &Path) -> anyhow::Result<()> {
    pki::init(
        dir,
        &PkiPlan {
            clusters: vec!["a".into()],
            clients: vec!["admin".into()],
            ..PkiPlan::default()
        },
    )?;
    Ok(())
}

/// Pings the agent of cluster `a` through the coordinator and waits for the answer.
async fn ping(coordinator: &str, pki: &Path) -> anyhow::Result<()> {
    let channel = ferry_common::tls::connect(
        coordinator,
        &TlsPaths::in_dir(pki, "client-admin"),
        None,
        Duration::from_secs(5),
    )
    .await?;
    let mut fleet = FleetClient::new(channel);
    let status = fleet
        .submit_command(pb::SubmitCommandRequest {
            cluster_id: "a".into(),
            spec: Some(pb::CommandSpec {
                kind: Some(Kind::Ping(pb::PingCommand {
                    delay_ms: 0,
                    payload: "hello".into(),
                })),
                trace_context: Default::default(),
            }),
            request_id: "http-endpoint-ping".into(),
        })
        .await?
        .into_inner();
    let done = fleet
        .wait_command(pb::WaitCommandRequest {
            command_id: status.command_id,
            timeout_ms: 15_000,
        })
        .await?
        .into_inner();
    anyhow::ensure!(
        done.state == pb::CommandState::Succeeded as i32,
        "ping ended {done:?}"
    );
    Ok(())
}

#[tokio::test]
async fn agent_is_ready_while_registered_and_both_serve_their_metrics() -> anyhow::Result<()> {
    // Before any instrument is made, as `telemetry::init` does in the binaries.
    ferry_common::metrics::install("ferry-http-test", None)?;
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    make_pki(&pki)?;
    let grpc = free_addr()?;
    let url = format!("https://{grpc}");

    let agent_http = free_addr()?;
    let mut agent = ferry_agent::AgentConfig::new("a", &url, pki.clone());
    agent.http_listen = Some(agent_http);
    agent.backoff_base = Duration::from_millis(50);
    agent.backoff_cap = Duration::from_millis(300);
    let stop_agent = CancellationToken::new();
    let agent_task = tokio::spawn(ferry_agent::run(agent, stop_agent.clone()));

    // No coordinator yet: alive, not ready, and saying why.
    eventually_status(agent_http, "/healthz", 200).await?;
    let (status, body) = get(agent_http, "/readyz").await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: "), "{body}");
    assert_eq!(body.lines().count(), 1, "one line: {body:?}");

    let mut config = CoordinatorConfig::for_dirs(
        pki.clone(),
        dir.path().join("data"),
        vec!["admin=admin".parse().map_err(anyhow::Error::msg)?],
    );
    config.listen = grpc;
    config.http_listen = Some("127.0.0.1:0".parse()?);
    let coordinator = ferry_coordinator::start(&config).await?;
    let coordinator_http = coordinator
        .http_addr
        .context("the coordinator serves HTTP when asked")?;
    let (status, body) = get(coordinator_http, "/healthz").await?;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = get(coordinator_http, "/readyz").await?;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    // Registered: ready.
    let body = eventually_status(agent_http, "/readyz", 200).await?;
    assert_eq!(body, "ready\n");
    ping(&url, &pki).await?;

    let (status, metrics) = get(agent_http, "/metrics").await?;
    assert_eq!(status, 200, "{metrics}");
    assert!(
        sample(&metrics, "ferry_agent_registrations_total").is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "ferry_agent_connected"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"ferry_agent_commands_total{kind="ping",outcome="succeeded"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_agent_command_duration_seconds_bucket{kind=\"ping\",outcome=\"succeeded\",le=\"+Inf\"} 1\n"),
        "{metrics}"
    );
    let (_, metrics) = get(coordinator_http, "/metrics").await?;
    assert_eq!(
        sample(&metrics, "ferry_agent_sessions"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"ferry_agent_sessions_opened_total{cluster="a"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(metrics.contains("\nferry_build_info{"), "{metrics}");

    // The coordinator goes away: the agent is not ready again, and says why.
    coordinator.shutdown().await;
    let body = eventually_status(agent_http, "/readyz", 503).await?;
    assert!(body.starts_with("not ready: "), "{body}");
    let (_, metrics) = get(agent_http, "/metrics").await?;
    assert_eq!(
        sample(&metrics, "ferry_agent_connected"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        get(coordinator_http, "/healthz").await.is_err(),
        "the coordinator's endpoint stops with it"
    );

    stop_agent.cancel();
    agent_task.await??;
    assert!(
        get(agent_http, "/healthz").await.is_err(),
        "the agent's endpoint stops with it"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_paths_and_garbage_are_refused_and_the_agent_keeps_serving() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    make_pki(&pki)?;
    // Nothing listens there: the agent keeps redialling.
    let nowhere = format!("https://{}", free_addr()?);
    let http = free_addr()?;
    let mut agent = ferry_agent::AgentConfig::new("a", &nowhere, pki);
    agent.http_listen = Some(http);
    let stop = CancellationToken::new();
    let task = tokio::spawn(ferry_agent::run(agent, stop.clone()));
    eventually_status(http, "/healthz", 200).await?;

    let (status, body) = get(http, "/no/such/page").await?;
    assert_eq!(status, 404, "{body}");
    // Not HTTP at all: hyper answers 400 on that connection and closes it.
    let mut stream = tokio::net::TcpStream::connect(http).await?;
    stream.write_all(b"\x00\x01garbage\r\n\r\n").await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await??;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    let (status, _) = get(http, "/healthz").await?;
    assert_eq!(status, 200, "still serving");
    let (status, body) = get(http, "/readyz").await?;
    assert_eq!(status, 503, "{body}");

    stop.cancel();
    task.await??;
    Ok(())
}

#[tokio::test]
async fn a_taken_http_address_is_a_configuration_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut agent =
        ferry_agent::AgentConfig::new("a", "https://127.0.0.1:1", dir.path().to_path_buf());
    agent.http_listen = Some(taken.local_addr()?);
    let ended = ferry_agent::run(agent, CancellationToken::new()).await;
    let message = ended
        .err()
        .context("run refuses a taken address")?
        .to_string();
    assert!(message.contains("--http-listen"), "{message}");
    Ok(())
}
