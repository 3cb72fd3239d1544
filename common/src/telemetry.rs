//! One `init` for every Ferry binary: an env filter (`RUST_LOG`, default
//! `info`), human or JSON logs on stderr, the process's meter provider
//! (`metrics`, always: `/metrics` reads it), and OpenTelemetry export over
//! OTLP (traces and metrics) when an endpoint is configured.
use std::collections::HashMap;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "human" | "text" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: use human or json")),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `service.name` of exported telemetry.
    pub service: String,
    pub log_format: LogFormat,
    /// An OTLP/gRPC endpoint such as `http://otel-collector:4317`.
    pub otlp_endpoint: Option<String>,
    /// Filter used when `RUST_LOG` is not set; `info` when empty.
    pub default_filter: String,
}

/// Flushes exporters when dropped; keep it alive for the life of `main`.
#[must_use]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meter.take() {
            let _ = m.shutdown();
        }
    }
}

pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(if config.default_filter.is_empty() {
            "info"
        } else {
            &config.default_filter
        })
    });
    let fmt = match config.log_format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut guard = TelemetryGuard {
        tracer: None,
        meter: None,
    };
    let otel = match &config.otlp_endpoint {
        None => None,
        Some(endpoint) => {
            let resource = Resource::builder()
                .with_service_name(config.service.clone())
                .build();
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| Error::Telemetry(format!("OTLP span exporter for {endpoint}: {e}")))?;
            let tracer = SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .with_resource(resource)
                .build();
            let layer =
                tracing_opentelemetry::layer().with_tracer(tracer.tracer(config.service.clone()));
            guard.tracer = Some(tracer);
            Some(layer)
        }
    };
    let otlp_metrics = match &config.otlp_endpoint {
        None => None,
        Some(endpoint) => Some(
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| {
                    Error::Telemetry(format!("OTLP metric exporter for {endpoint}: {e}"))
                })?,
        ),
    };
    // Metrics always have a provider: `/metrics` serves them without OTLP.
    guard.meter = crate::metrics::install(&config.service, otlp_metrics)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| Error::Telemetry(format!("a subscriber is already set: {e}")))?;
    Ok(guard)
}

/// W3C trace context (`traceparent`, `tracestate`) as carried between
/// processes: in gRPC metadata from a client, in a command to an agent.
pub type TraceContext = HashMap<String, String>;

/// The trace context of the current span, to hand to another process.
pub fn current_trace_context() -> TraceContext {
    let mut carrier = TraceContext::new();
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier
}

/// Makes `span` continue the trace `carrier` names; nothing when it names none.
pub fn continue_trace(span: &tracing::Span, carrier: &TraceContext) {
    if carrier.is_empty() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled; then there is nothing to continue.
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` continue the trace a client's call carries in its metadata.
pub fn continue_call(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    continue_trace(span, &trace_context_of(metadata));
}

/// The trace context a client sent in its call's metadata (`traceparent`,
/// `tracestate`), if any.
pub fn trace_context_of(metadata: &tonic::metadata::MetadataMap) -> TraceContext {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| {
            let value = metadata.get(key)?.to_str().ok()?;
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}
