//! Executes one command. Executors never panic on what they are given: any
//! failure becomes a `CommandError` result naming what failed.
use std::time::Duration;

use ferry_common::pb::{self, command_output::Kind as Out, command_spec::Kind};
use tracing::Instrument;

use crate::AgentConfig;
use crate::facts::{CAPABILITIES, current};
use crate::relay::{RelayContext, run_sink, run_source};

/// The longest a `ping` may ask the agent to wait.
const MAX_PING_DELAY: Duration = Duration::from_secs(600);

/// Runs the command in a span `agent.command` that continues the trace the
/// coordinator sent with it, and counts it in the agent's metrics.
pub async fn execute(ctx: &RelayContext, command: pb::Command) -> pb::CommandResult {
    let kind = kind_name(command.spec.as_ref());
    let span = tracing::info_span!(
        "agent.command",
        command = %command.id,
        kind,
        cluster = %ctx.config.cluster_id,
    );
    if let Some(spec) = &command.spec {
        ferry_common::telemetry::continue_trace(&span, &spec.trace_context);
    }
    let started = std::time::Instant::now();
    let result = run(ctx, command).instrument(span).await;
    let outcome = match result.outcome {
        Some(pb::command_result::Outcome::Output(_)) => "succeeded",
        _ => "failed",
    };
    crate::metrics::get().command_ended(kind, outcome, started.elapsed().as_secs_f64());
    result
}

/// What a command does, for its span: the step's name for a migration step.
fn kind_name(spec: Option<&pb::CommandSpec>) -> &'static str {
    match spec.and_then(|s| s.kind.as_ref()) {
        Some(Kind::Describe(_)) => "describe",
        Some(Kind::Ping(_)) => "ping",
        Some(Kind::RelaySource(_)) => "relay source",
        Some(Kind::RelaySink(_)) => "relay sink",
        Some(Kind::Load(_)) => "load",
        Some(Kind::Step(s)) => s.kind.as_ref().map_or("step", crate::migrate::step_name),
        None => "unknown",
    }
}

async fn run(ctx: &RelayContext, command: pb::Command) -> pb::CommandResult {
    let config = &ctx.config;
    let outcome = match command.spec.and_then(|s| s.kind) {
        Some(Kind::Describe(_)) => Ok(Out::Describe(describe(config).await)),
        Some(Kind::RelaySource(c)) => run_source(ctx, &c)
            .await
            .map(|counts| {
                Out::Relay(pb::RelayOutput {
                    counts: Some(counts),
                })
            })
            .map_err(|e| internal(e.to_string())),
        Some(Kind::RelaySink(c)) => run_sink(ctx, &c)
            .await
            .map(|counts| {
                Out::Relay(pb::RelayOutput {
                    counts: Some(counts),
                })
            })
            .map_err(|e| internal(e.to_string())),
        Some(Kind::Load(c)) => crate::load_exec::run_load(ctx, &command.id, &c)
            .await
            .map(Out::Load)
            .map_err(internal),
        Some(Kind::Step(step)) => crate::migrate::run_step(ctx, &command.id, &step)
            .await
            .map(Out::Step),
        Some(Kind::Ping(p)) => {
            tokio::time::sleep(Duration::from_millis(p.delay_ms).min(MAX_PING_DELAY)).await;
            Ok(Out::Ping(pb::PingOutput { payload: p.payload }))
        }
        None => Err(pb::CommandError {
            message: "the command has no kind this agent knows; upgrade the agent".into(),
            kind: pb::ErrorKind::Invalid.into(),
        }),
    };
    pb::CommandResult {
        id: command.id,
        outcome: Some(match outcome {
            Ok(kind) => pb::command_result::Outcome::Output(pb::CommandOutput { kind: Some(kind) }),
            Err(e) => pb::command_result::Outcome::Error(e),
        }),
    }
}

/// A failure this agent does not classify further.
fn internal(message: String) -> pb::CommandError {
    pb::CommandError {
        message,
        kind: pb::ErrorKind::Internal.into(),
    }
}

pub async fn describe(config: &AgentConfig) -> pb::DescribeOutput {
    let (facts, probe_json, probe_error) = current(config).await;
    pb::DescribeOutput {
        probe_json,
        probe_error,
        cluster_id: config.cluster_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        facts: Some(facts),
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        hostname: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}
