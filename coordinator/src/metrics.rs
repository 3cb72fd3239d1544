//! The coordinator's OpenTelemetry metrics (DESIGN §8): agent sessions,
//! migration steps and their outcomes, relayed bytes. They come from the
//! global meter, which `telemetry::init` sets (`ferry_common::metrics`):
//! served at `/metrics` with `--http-listen`, exported over OTLP when an
//! endpoint is configured.
use std::sync::{OnceLock, Weak};

use ferry_common::pb::ErrorKind;
use ferry_proto::names::Named;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

use crate::fleet::Fleet;

pub struct Metrics {
    /// `ferry.migration.steps` {step, outcome, error_kind}: steps that ended.
    steps: Counter<u64>,
    /// `ferry.migration.step.duration` (s) {step, outcome, error_kind}.
    step_seconds: Histogram<f64>,
    /// `ferry.migrations.finished` {state}.
    migrations: Counter<u64>,
    /// `ferry.agent.sessions.opened` {cluster}.
    sessions_opened: Counter<u64>,
    /// `ferry.relay.bytes`: object bytes forwarded from a source to a sink.
    relay_bytes: Counter<u64>,
}

/// The instruments, made on first use (after `telemetry::init`).
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = opentelemetry::global::meter("ferry-coordinator");
        Metrics {
            steps: meter
                .u64_counter("ferry.migration.steps")
                .with_description("migration steps that ended, by step and outcome")
                .build(),
            step_seconds: meter
                .f64_histogram("ferry.migration.step.duration")
                .with_unit("s")
                .with_description("how long migration steps ran, by step and outcome")
                .build(),
            migrations: meter
                .u64_counter("ferry.migrations.finished")
                .with_description("migrations that ended, by final state")
                .build(),
            sessions_opened: meter
                .u64_counter("ferry.agent.sessions.opened")
                .with_description("agent sessions registered, by cluster")
                .build(),
            relay_bytes: meter
                .u64_counter("ferry.relay.bytes")
                .with_unit("By")
                .with_description("object bytes the relay forwarded from sources to sinks")
                .build(),
        }
    })
}

impl Metrics {
    /// A step ended: `outcome` is `succeeded`, `failed` or `cancelled`; a
    /// failed step's `error_kind` says of what kind (`invalid`,
    /// `precondition`, `conflict`, `unavailable`, `internal`).
    pub fn step_ended(&self, step: &str, outcome: &str, error: Option<ErrorKind>, seconds: f64) {
        let mut attributes = vec![
            KeyValue::new("step", step.to_string()),
            KeyValue::new("outcome", outcome.to_string()),
        ];
        if let Some(kind) = error {
            attributes.push(KeyValue::new("error_kind", kind.name()));
        }
        self.steps.add(1, &attributes);
        self.step_seconds.record(seconds, &attributes);
    }

    pub fn migration_ended(&self, state: &str) {
        self.migrations
            .add(1, &[KeyValue::new("state", state.to_string())]);
    }

    pub fn session_opened(&self, cluster: &str) {
        self.sessions_opened
            .add(1, &[KeyValue::new("cluster", cluster.to_string())]);
    }

    pub fn relayed(&self, bytes: u64) {
        self.relay_bytes.add(bytes, &[]);
    }
}

/// `ferry.agent.sessions`: agents connected now, read from the fleet at
/// each export while it lives.
pub fn observe_sessions(fleet: Weak<Fleet>) {
    opentelemetry::global::meter("ferry-coordinator")
        .i64_observable_gauge("ferry.agent.sessions")
        .with_description("agents with an open session")
        .with_callback(move |gauge| {
            if let Some(fleet) = fleet.upgrade() {
                gauge.observe(fleet.session_count() as i64, &[]);
            }
        })
        .build();
}
