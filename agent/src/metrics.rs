//! The agent's OpenTelemetry metrics: its session with the coordinator and
//! the commands it ran. They come from the global meter that
//! `telemetry::init` sets (`ferry_common::metrics`): served at `/metrics`
//! with `--http-listen`, exported over OTLP when an endpoint is configured.
use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};

pub struct Metrics {
    /// `ferry.agent.registrations`: sessions registered with the coordinator.
    registrations: Counter<u64>,
    /// `ferry.agent.connected`: 1 while a registered session is open.
    connected: UpDownCounter<i64>,
    /// `ferry.agent.commands` {kind, outcome}: commands that ended.
    commands: Counter<u64>,
    /// `ferry.agent.command.duration` (s) {kind, outcome}.
    command_seconds: Histogram<f64>,
}

/// The instruments, made on first use (after `telemetry::init`).
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = opentelemetry::global::meter("ferry-agent");
        Metrics {
            registrations: meter
                .u64_counter("ferry.agent.registrations")
                .with_description("sessions this agent registered with the coordinator")
                .build(),
            connected: meter
                .i64_up_down_counter("ferry.agent.connected")
                .with_description("1 while this agent has a registered session, else 0")
                .build(),
            commands: meter
                .u64_counter("ferry.agent.commands")
                .with_description("commands this agent ran to the end, by kind and outcome")
                .build(),
            command_seconds: meter
                .f64_histogram("ferry.agent.command.duration")
                .with_unit("s")
                .with_description("how long commands ran, by kind and outcome")
                .build(),
        }
    })
}

impl Metrics {
    /// A session was registered; the returned guard counts it open until dropped.
    pub fn registered(&'static self) -> Connected {
        self.registrations.add(1, &[]);
        self.connected.add(1, &[]);
        Connected(self)
    }

    /// A command ended: `outcome` is `succeeded` or `failed`.
    pub fn command_ended(&self, kind: &'static str, outcome: &'static str, seconds: f64) {
        let attributes = [
            KeyValue::new("kind", kind),
            KeyValue::new("outcome", outcome),
        ];
        self.commands.add(1, &attributes);
        self.command_seconds.record(seconds, &attributes);
    }
}

/// An open, registered session, however it ends (error, or dropped at shutdown).
pub struct Connected(&'static Metrics);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected.add(-1, &[]);
    }
}
