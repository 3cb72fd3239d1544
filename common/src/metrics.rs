//! The process's one meter provider and its Prometheus view. Every
//! instrument a Ferry process records goes to the global meter provider set
//! here; that provider always feeds a Prometheus registry (served at
//! `/metrics` by [`crate::http`]) and, when an OTLP endpoint is configured,
//! a periodic OTLP exporter too — one set of instruments, two ways out.
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder as _, TextEncoder};

use crate::{Error, Result};

/// `Content-Type` of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus registry a meter provider's reader fills at each scrape.
/// Cheap to clone; clones share the registry.
#[derive(Clone, Default)]
pub struct Prometheus {
    registry: prometheus::Registry,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prometheus")
    }
}

impl Prometheus {
    /// A registry and the reader that feeds it; give the reader to a meter
    /// provider (`SdkMeterProvider::builder().with_reader(…)`).
    pub fn new() -> Result<(Self, opentelemetry_prometheus::PrometheusExporter)> {
        let registry = prometheus::Registry::new();
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            // Every instrument of a process comes from its own meter: the
            // scope labels would repeat the job's name on every series.
            .scope_info_enabled(false)
            .build()
            .map_err(|e| Error::Telemetry(format!("Prometheus reader: {e}")))?;
        Ok((Self { registry }, reader))
    }

    /// Every metric now, in the text exposition format 0.0.4: collects the
    /// provider's instruments (observable ones call their callbacks).
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            // Only an I/O error of the writer, which a Vec does not have.
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

/// A meter provider for `service` that feeds a Prometheus registry and,
/// with `otlp`, exports periodically too; it carries the process facts
/// (`ferry.build.info`, `process.start_time`).
pub fn provider(
    service: &str,
    otlp: Option<opentelemetry_otlp::MetricExporter>,
) -> Result<(SdkMeterProvider, Prometheus)> {
    let (prometheus, reader) = Prometheus::new()?;
    let resource = Resource::builder()
        .with_service_name(service.to_string())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut builder = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource);
    if let Some(exporter) = otlp {
        builder = builder.with_periodic_exporter(exporter);
    }
    let provider = builder.build();
    process_facts(&provider, service);
    Ok((provider, prometheus))
}

/// `ferry.build.info` {service, version} = 1, and `process.start_time`
/// (Unix seconds): what a dashboard needs to tell a restart or an upgrade.
fn process_facts(provider: &SdkMeterProvider, service: &str) {
    let meter = provider.meter("ferry");
    let labels = [
        KeyValue::new("service", service.to_string()),
        KeyValue::new("version", env!("CARGO_PKG_VERSION")),
    ];
    meter
        .i64_observable_gauge("ferry.build.info")
        .with_description("always 1; labels name the service and its version")
        .with_callback(move |gauge| gauge.observe(1, &labels))
        .build();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    meter
        .f64_observable_gauge("process.start_time")
        .with_unit("s")
        .with_description("when the process started, in seconds since the Unix epoch")
        .with_callback(move |gauge| gauge.observe(started, &[]))
        .build();
}

static GLOBAL: OnceLock<Prometheus> = OnceLock::new();

/// Makes a provider for `service` the global one (the one every
/// `opentelemetry::global::meter` draws from) unless one was installed
/// before; returns the provider when this call installed it, for its owner
/// to shut down. `telemetry::init` calls it; in-process tests may too.
/// Instruments made before the first call stay no-ops.
pub fn install(
    service: &str,
    otlp: Option<opentelemetry_otlp::MetricExporter>,
) -> Result<Option<SdkMeterProvider>> {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if GLOBAL.get().is_some() {
        return Ok(None);
    }
    let (provider, prometheus) = self::provider(service, otlp)?;
    opentelemetry::global::set_meter_provider(provider.clone());
    let _ = GLOBAL.set(prometheus);
    Ok(Some(provider))
}

/// The Prometheus view of the global provider; an empty registry when
/// nothing was installed.
pub fn global() -> Prometheus {
    GLOBAL.get().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> (SdkMeterProvider, Prometheus) {
        provider("ferry-test", None).expect("provider")
    }

    /// The value on the sample line of `series` (name and labels as rendered).
    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn counters_carry_total_help_and_type() {
        let (provider, prometheus) = local();
        let counter = provider
            .meter("t")
            .u64_counter("ferry.things")
            .with_description("things seen")
            .build();
        counter.add(3, &[KeyValue::new("kind", "a")]);
        counter.add(2, &[KeyValue::new("kind", "a")]);
        let text = prometheus.render();
        assert!(
            text.contains("# HELP ferry_things_total things seen\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ferry_things_total counter\n"),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"ferry_things_total{kind="a"}"#),
            Some("5"),
            "{text}"
        );
    }

    #[test]
    fn up_down_counters_and_gauges_are_gauges() {
        let (provider, prometheus) = local();
        let meter = provider.meter("t");
        let open = meter.i64_up_down_counter("ferry.open").build();
        open.add(2, &[]);
        open.add(-1, &[]);
        meter
            .f64_observable_gauge("ferry.level")
            .with_callback(|g| g.observe(0.5, &[]))
            .build();
        let text = prometheus.render();
        assert!(text.contains("# TYPE ferry_open gauge\n"), "{text}");
        assert_eq!(sample(&text, "ferry_open"), Some("1"), "{text}");
        assert!(text.contains("# TYPE ferry_level gauge\n"), "{text}");
        assert_eq!(sample(&text, "ferry_level"), Some("0.5"), "{text}");
    }

    #[test]
    fn histograms_have_buckets_sum_and_count_and_a_unit_suffix() {
        let (provider, prometheus) = local();
        let h = provider
            .meter("t")
            .f64_histogram("ferry.step.duration")
            .with_unit("s")
            .build();
        h.record(3.0, &[KeyValue::new("step", "backup")]);
        h.record(700.0, &[KeyValue::new("step", "backup")]);
        let text = prometheus.render();
        let name = "ferry_step_duration_seconds";
        assert!(
            text.contains(&format!("# TYPE {name} histogram\n")),
            "{text}"
        );
        assert_eq!(
            sample(&text, &format!(r#"{name}_bucket{{step="backup",le="5"}}"#)),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!(r#"{name}_bucket{{step="backup",le="+Inf"}}"#)
            ),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            sample(&text, &format!(r#"{name}_sum{{step="backup"}}"#)),
            Some("703"),
            "{text}"
        );
        assert_eq!(
            sample(&text, &format!(r#"{name}_count{{step="backup"}}"#)),
            Some("2"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped_and_names_sanitised() {
        let (provider, prometheus) = local();
        provider
            .meter("t")
            .u64_counter("ferry.odd-name")
            .build()
            .add(1, &[KeyValue::new("path", "a\"b\\c\nd")]);
        let text = prometheus.render();
        assert_eq!(
            sample(&text, r#"ferry_odd_name_total{path="a\"b\\c\nd"}"#),
            Some("1"),
            "{text}"
        );
    }

    #[test]
    fn build_info_and_start_time_are_always_there() {
        let (_provider, prometheus) = local();
        let text = prometheus.render();
        let info = format!(
            r#"ferry_build_info{{service="ferry-test",version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(sample(&text, &info), Some("1"), "{text}");
        let started: f64 = sample(&text, "process_start_time_seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no process_start_time_seconds in {text}"));
        assert!(started > 1.7e9, "{started}");
    }

    #[test]
    fn an_empty_registry_renders_nothing() {
        assert_eq!(Prometheus::default().render(), "");
    }
}
