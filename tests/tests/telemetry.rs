//! Telemetry: the coordinator and agents, pointed at an OTLP collector,
//! export the metrics DESIGN §8 names (agent sessions, migration steps and
//! outcomes, relayed bytes) and spans: one per migration step, one per
//! command an agent runs, all in the trace of the client's call that started
//! the migration. The collector here is the OTLP/gRPC collector service,
//! served by the test; what it receives is what any collector would.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb;
use ferry_sandbox::cluster::SandboxCluster;
use ferry_tests::migrate_world::{
    Site, agent_with, channel, cluster, ended, migrations, request, wait_until,
};
use ferry_tests::{Proc, World};
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

/// The trace an automation client started, and its span (W3C hex).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// Another client's trace, of a transfer it starts.
const TRANSFER_TRACE_ID: &str = "5ce0e9a56015fec5aadfa328ae398115";

fn hex(s: &str) -> anyhow::Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("hex"))
        .collect()
}

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

    /// Every span received so far, with the `service.name` that sent it.
    fn spans(&self) -> Vec<(String, Span)> {
        snapshot(&self.traces)
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|r| {
                let service = r
                    .resource
                    .as_ref()
                    .and_then(|res| attr(&res.attributes, "service.name"))
                    .unwrap_or_default();
                r.scope_spans
                    .into_iter()
                    .flat_map(|s| s.spans)
                    .map(move |span| (service.clone(), span))
            })
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

/// A collector; a coordinator and the agents of two sandbox clusters (`a`
/// the source) exporting to it often, all connected.
struct Exporting {
    collector: Collector,
    w: World,
    a: SandboxCluster,
    _processes: (SandboxCluster, [Proc; 3]),
}

async fn exporting() -> anyhow::Result<Exporting> {
    ferry_tests::init_logs();
    let collector = Collector::default();
    let endpoint = collector.start().await?;
    let w = World::new(&["a", "b"], &["admin"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    let export = ["--otlp-endpoint", endpoint.as_str()];
    let often = [
        ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let coordinator = w.coordinator_with_env(&["admin=operator"], &export, &often)?;
    let agent_a = agent_with(&w, "a", &a, &export, &often)?;
    let agent_b = agent_with(&w, "b", &b, &export, &often)?;
    w.all_connected(&["a", "b"], Duration::from_secs(30))
        .await?;
    Ok(Exporting {
        collector,
        w,
        a,
        _processes: (b, [coordinator, agent_a, agent_b]),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_coordinator_exports_step_session_and_relay_telemetry() -> anyhow::Result<()> {
    let Exporting {
        collector,
        w,
        a: _a,
        _processes,
    } = exporting().await?;
    // An automation client that traces its own call passes its context on.
    let mut start = Request::new(request("m8", "a", "b"));
    start.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CLIENT_SPAN}-01").parse()?,
    );
    migrations(&w, "admin")
        .await?
        .start_migration(start)
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
        let spans = collector.spans();
        let traced = spans.iter().any(|(_, s)| {
            s.name == "migration.step" && attr(&s.attributes, "step").as_deref() == Some("verify")
        });
        // The agent's inventory for verify is the last command of the migration.
        let inventories = spans
            .iter()
            .filter(|(_, s)| {
                s.name == "agent.command"
                    && attr(&s.attributes, "kind").as_deref() == Some("inventory")
            })
            .count();
        if finished == Some(1.0) && traced && inventories >= 2 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no export saw the migration end (finished: {finished:?}, verify span: {traced}, inventory spans: {inventories}); metrics: {:?}",
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

    // One span per step, named for it and its migration, in the client's
    // trace; each agent's work on a step is a child of the step's span.
    let spans = collector.spans();
    let trace = hex(TRACE_ID)?;
    let step_span = |name: &str| {
        spans.iter().find(|(_, s)| {
            s.name == "migration.step"
                && attr(&s.attributes, "step").as_deref() == Some(name)
                && attr(&s.attributes, "migration").as_deref() == Some("m8")
        })
    };
    for step in &steps {
        let (service, span) = step_span(step).with_context(|| format!("no span for {step}"))?;
        assert_eq!(service, "ferry-coordinator");
        assert_eq!(span.trace_id, trace, "{step} is in the client's trace");
    }
    let client_span = hex(CLIENT_SPAN)?;
    // The preflight the start ran on both agents is in the client's trace too.
    for cluster in ["a", "b"] {
        assert!(
            spans.iter().any(|(_, s)| s.name == "agent.command"
                && attr(&s.attributes, "kind").as_deref() == Some("preflight")
                && attr(&s.attributes, "cluster").as_deref() == Some(cluster)
                && s.trace_id == trace),
            "the preflight on {cluster} is not in the client's trace"
        );
    }
    assert!(
        spans.iter().any(|(_, s)| s.name == "migration.start"
            && s.trace_id == trace
            && s.parent_span_id == client_span),
        "no migration.start span under the client's"
    );
    for (step, kind, cluster) in [
        ("backup", "backup", "a"),
        ("transfer", "relay source", "a"),
        ("transfer", "relay sink", "b"),
        ("restore-init", "restore", "b"),
        ("reconfigure", "reconfigure", "b"),
    ] {
        let (_, parent) = step_span(step).with_context(|| format!("no span for {step}"))?;
        let (service, child) = spans
            .iter()
            .find(|(_, s)| {
                s.name == "agent.command"
                    && s.parent_span_id == parent.span_id
                    && attr(&s.attributes, "kind").as_deref() == Some(kind)
            })
            .with_context(|| format!("no agent span under {step}"))?;
        assert_eq!(service, "ferry-agent", "{step}");
        assert_eq!(child.trace_id, trace, "{step}");
        assert_eq!(
            attr(&child.attributes, "kind").as_deref(),
            Some(kind),
            "{step}"
        );
        assert_eq!(
            attr(&child.attributes, "cluster").as_deref(),
            Some(cluster),
            "{step}"
        );
    }

    // A transfer started by a client with its own trace: both agents' work
    // on it is in that trace.
    let mut transfers = pb::transfers_client::TransfersClient::new(channel(&w, "admin").await?);
    let set = |cluster: &str| pb::ObjectSet {
        cluster_id: cluster.to_string(),
        store: "obc-user-import".to_string(),
        prefix: String::new(),
    };
    let mut start = Request::new(pb::StartTransferRequest {
        transfer_id: "t1".into(),
        source: Some(set("a")),
        target: Some(set("b")),
        ..Default::default()
    });
    start.metadata_mut().insert(
        "traceparent",
        format!("00-{TRANSFER_TRACE_ID}-{CLIENT_SPAN}-01").parse()?,
    );
    transfers.start_transfer(start).await?;
    let transfer_trace = hex(TRANSFER_TRACE_ID)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans = collector.spans();
        let traced = |kind: &str| {
            spans.iter().any(|(_, s)| {
                s.name == "agent.command"
                    && s.trace_id == transfer_trace
                    && attr(&s.attributes, "kind").as_deref() == Some(kind)
            })
        };
        if traced("relay source") && traced("relay sink") {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the transfer's agent work is not in the client's trace (source: {}, sink: {})",
            traced("relay source"),
            traced("relay sink")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A step that fails exports its end with the kind of error the agent
/// reported: a Velero backup that ends PartiallyFailed is the cluster's
/// state refusing the step (`precondition`), not Ferry's fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_steps_metric_carries_its_error_kind() -> anyhow::Result<()> {
    let Exporting {
        collector,
        w,
        a,
        _processes,
    } = exporting().await?;
    a.velero_faults()
        .fail_next_backup("a volume snapshot failed (injected)");
    migrations(&w, "admin")
        .await?
        .start_migration(Request::new(request("m9", "a", "b")))
        .await?;
    let m = wait_until(&w, "m9", Duration::from_secs(120), "the failure", |m| {
        m.state == pb::MigrationState::Failed as i32
    })
    .await?;
    let failed = m
        .steps
        .iter()
        .find(|s| s.state == pb::StepState::Failed as i32)
        .context("no failed step")?;
    assert_eq!(failed.name, "backup", "{m:#?}");

    let want = [
        ("step", "backup"),
        ("outcome", "failed"),
        ("error_kind", "precondition"),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = collector.metrics();
        if latest(&metrics, "ferry.migration.steps", &want) == Some(1.0) {
            assert_eq!(
                histogram_count(&metrics, "ferry.migration.step.duration", &want),
                1
            );
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no export of the failed backup with its kind: {:?}",
            metrics
                .iter()
                .filter(|m| m.name == "ferry.migration.steps")
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
