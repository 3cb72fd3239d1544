//! Telemetry: the coordinator, pointed at an OTLP collector, exports the
//! metrics DESIGN §8 names (agent sessions, migration steps and outcomes,
//! relayed bytes) and a span per migration step. The collector here is the
//! OTLP/gRPC collector service, served by the test; what it receives is
//! what any collector would.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb;
use ferry_tests::World;
use ferry_tests::migrate_world::{
    Site, both_agents, cluster, ended, migrations, request, wait_until,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::{Request, Response, Status};

/// What the collector received.
#[derive(Default, Clone)]
struct Collector {
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

fn push<T>(list: &Mutex<Vec<T>>, item: T) {
    match list.lock() {
        Ok(mut l) => l.push(item),
        Err(poisoned) => poisoned.into_inner().push(item),
    }
}

fn snapshot<T: Clone>(list: &Mutex<Vec<T>>) -> Vec<T> {
    match list.lock() {
        Ok(l) => l.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        push(&self.metrics, req.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        push(&self.traces, req.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves OTLP/gRPC on a free loopback port; returns its endpoint.
    async fn start(&self) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let server = tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(self.clone()))
            .add_service(TraceServiceServer::new(self.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        Ok(endpoint)
    }

    /// Every metric received so far, newest export last.
    fn metrics(&self) -> Vec<Metric> {
        snapshot(&self.metrics)
            .into_iter()
            .flat_map(|r| r.resource_metrics)
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics)
            .collect()
    }

    fn spans(&self) -> Vec<Span> {
        snapshot(&self.traces)
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }
}

fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|a| a.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn number(v: Option<&number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        Some(number_data_point::Value::AsDouble(d)) => *d,
        None => 0.0,
    }
}

/// The newest value of a counter or gauge whose points carry `want`
/// attributes; `None` when never exported.
fn latest(metrics: &[Metric], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    metrics
        .iter()
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.clone(),
            Some(Data::Gauge(g)) => g.data_points.clone(),
            _ => vec![],
        })
        .filter(|p| {
            want.iter()
                .all(|(k, v)| attr(&p.attributes, k).as_deref() == Some(*v))
        })
        .map(|p| number(p.value.as_ref()))
        .next_back()
}

/// How many times a histogram recorded with `want` attributes (newest export).
fn histogram_count(metrics: &[Metric], name: &str, want: &[(&str, &str)]) -> u64 {
    metrics
        .iter()
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(Data::Histogram(h)) => h.data_points.clone(),
            _ => vec![],
        })
        .filter(|p| {
            want.iter()
                .all(|(k, v)| attr(&p.attributes, k).as_deref() == Some(*v))
        })
        .map(|p| p.count)
        .next_back()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_coordinator_exports_step_session_and_relay_telemetry() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let collector = Collector::default();
    let endpoint = collector.start().await?;
    let w = World::new(&["a", "b"], &["admin"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    let _c = w.coordinator_with_env(
        &["admin=operator"],
        &["--otlp-endpoint", &endpoint],
        &[
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;
    migrations(&w, "admin")
        .await?
        .start_migration(request("m8", "a", "b"))
        .await?;
    let m = wait_until(&w, "m8", Duration::from_secs(120), "the end", ended).await?;
    anyhow::ensure!(
        m.state == pb::MigrationState::Succeeded as i32,
        "the migration did not succeed: {m:#?}"
    );
    let steps: Vec<String> = m
        .steps
        .iter()
        .filter(|s| s.name != "preflight")
        .map(|s| s.name.clone())
        .collect();

    // Wait for an export that has seen the end of the migration.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = collector.metrics();
        let finished = latest(
            &metrics,
            "ferry.migrations.finished",
            &[("state", "succeeded")],
        );
        let traced = collector.spans().iter().any(|s| {
            s.name == "migration.step" && attr(&s.attributes, "step").as_deref() == Some("verify")
        });
        if finished == Some(1.0) && traced {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no export saw the migration end (finished: {finished:?}, verify span: {traced}); metrics: {:?}",
            metrics.iter().map(|m| &m.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let metrics = collector.metrics();
    for step in &steps {
        let ended = latest(
            &metrics,
            "ferry.migration.steps",
            &[("step", step), ("outcome", "succeeded")],
        );
        assert_eq!(ended, Some(1.0), "ferry.migration.steps for {step}");
        assert_eq!(
            histogram_count(
                &metrics,
                "ferry.migration.step.duration",
                &[("step", step), ("outcome", "succeeded")]
            ),
            1,
            "ferry.migration.step.duration for {step}"
        );
    }
    assert_eq!(
        latest(&metrics, "ferry.migration.steps", &[("outcome", "failed")]),
        None,
        "no step failed"
    );
    let relayed = latest(&metrics, "ferry.relay.bytes", &[]).context("ferry.relay.bytes")?;
    let moved: u64 = m
        .steps
        .iter()
        .filter(|s| s.name == "transfer")
        .filter_map(|s| s.progress.as_ref())
        .map(|p| p.bytes_total)
        .sum();
    assert!(
        moved > 0 && relayed >= moved as f64,
        "relayed {relayed} bytes, the transfer moved {moved}"
    );
    assert_eq!(
        latest(&metrics, "ferry.agent.sessions", &[]),
        Some(2.0),
        "two agents connected"
    );
    for cluster in ["a", "b"] {
        assert!(
            latest(
                &metrics,
                "ferry.agent.sessions.opened",
                &[("cluster", cluster)]
            )
            .is_some_and(|n| n >= 1.0),
            "session of {cluster}"
        );
    }

    // One span per step, named for it and its migration.
    let spans = collector.spans();
    for step in &steps {
        assert!(
            spans.iter().any(|s| s.name == "migration.step"
                && attr(&s.attributes, "step").as_deref() == Some(step.as_str())
                && attr(&s.attributes, "migration").as_deref() == Some("m8")),
            "no span for {step}"
        );
    }
    Ok(())
}
