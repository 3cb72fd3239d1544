//! Commands sent to an agent through the coordinator: `describe`, `ping`,
//! and `command get` to look one up (or wait for it) by id.
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb::{self, command_spec::Kind};
use ferry_common::time::parse_duration;
use ferry_proto::names::Named;

use crate::client::wait_command;
use crate::output::{self, OutputFormat};
use crate::{ClientArgs, exit};

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    pub cluster: String,
    /// How long to wait for the agent's answer.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct PingArgs {
    pub cluster: String,
    /// Ask the agent to wait this long before answering.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    #[arg(long, default_value = "ping")]
    pub payload: String,
    /// A client-chosen id that makes a retried submission the same command.
    #[arg(long, default_value = "")]
    pub request_id: String,
    /// Print the command id and return without waiting for the result.
    #[arg(long)]
    pub no_wait: bool,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, clap::Subcommand)]
pub enum CommandCommand {
    /// Show a command; with `--wait`, wait for it to finish first.
    Get {
        id: String,
        #[arg(long, value_parser = parse_duration)]
        wait: Option<Duration>,
    },
}

async fn submit(
    client: &ClientArgs,
    cluster: &str,
    kind: Kind,
    request_id: &str,
) -> anyhow::Result<pb::CommandStatus> {
    let mut fleet = client.fleet().await?;
    let status = fleet
        .submit_command(pb::SubmitCommandRequest {
            cluster_id: cluster.to_string(),
            spec: Some(pb::CommandSpec {
                kind: Some(kind),
                trace_context: Default::default(),
            }),
            request_id: request_id.to_string(),
        })
        .await
        .with_context(|| format!("submitting a command to cluster {cluster}"))?
        .into_inner();
    Ok(status)
}

/// Prints a finished command and returns its exit code.
fn finish(
    status: &pb::CommandStatus,
    out: OutputFormat,
    table: impl FnOnce(&pb::CommandOutput) -> String,
) -> u8 {
    match out {
        OutputFormat::Json => output::print_json(&output::command_json(status)),
        OutputFormat::Table => match status.result.as_ref().and_then(|r| r.outcome.as_ref()) {
            Some(pb::command_result::Outcome::Output(o)) => println!("{}", table(o)),
            Some(pb::command_result::Outcome::Error(e)) => {
                eprintln!("command {} failed: {}", status.command_id, e.message)
            }
            None => println!(
                "command {} is {}",
                status.command_id,
                pb::CommandState::name_of(status.state)
            ),
        },
    }
    match pb::CommandState::try_from(status.state) {
        Ok(pb::CommandState::Succeeded) => exit::OK,
        Ok(pb::CommandState::Failed) => exit::FAILED,
        _ => exit::UNAVAILABLE,
    }
}

pub fn describe_table(o: &pb::CommandOutput) -> String {
    match &o.kind {
        Some(pb::command_output::Kind::Describe(d)) => {
            let f = d.facts.clone().unwrap_or_default();
            let mut rows = vec![
                vec!["cluster".into(), d.cluster_id.clone()],
                vec![
                    "agent".into(),
                    format!("{} on {}", d.agent_version, d.hostname),
                ],
                vec!["platform".into(), f.platform_version.clone()],
                vec!["capabilities".into(), d.capabilities.join(",")],
            ];
            for r in &f.registries {
                rows.push(vec!["registry".into(), format!("{} {}", r.name, r.version)]);
            }
            output::table(&["FIELD", "VALUE"], &rows)
        }
        other => format!("{other:?}"),
    }
}

pub async fn describe(
    client: &ClientArgs,
    args: DescribeArgs,
    out: OutputFormat,
) -> anyhow::Result<u8> {
    let status = submit(
        client,
        &args.cluster,
        Kind::Describe(pb::DescribeCommand {}),
        "",
    )
    .await?;
    let status = wait_command(client, &status.command_id, args.timeout).await?;
    Ok(finish(&status, out, describe_table))
}

pub async fn ping(client: &ClientArgs, args: PingArgs, out: OutputFormat) -> anyhow::Result<u8> {
    let kind = Kind::Ping(pb::PingCommand {
        delay_ms: args.delay_ms,
        payload: args.payload,
    });
    let status = submit(client, &args.cluster, kind, &args.request_id).await?;
    if args.no_wait {
        match out {
            OutputFormat::Json => output::print_json(&output::command_json(&status)),
            OutputFormat::Table => println!("{}", status.command_id),
        }
        return Ok(exit::OK);
    }
    let status = wait_command(client, &status.command_id, args.timeout).await?;
    Ok(finish(&status, out, |o| match &o.kind {
        Some(pb::command_output::Kind::Ping(p)) => p.payload.clone(),
        other => format!("{other:?}"),
    }))
}

pub async fn command(
    client: &ClientArgs,
    cmd: CommandCommand,
    out: OutputFormat,
) -> anyhow::Result<u8> {
    match cmd {
        CommandCommand::Get { id, wait } => {
            let status = match wait {
                Some(timeout) => wait_command(client, &id, timeout).await?,
                None => {
                    let mut fleet = client.fleet().await?;
                    fleet
                        .wait_command(pb::WaitCommandRequest {
                            command_id: id.clone(),
                            timeout_ms: 0,
                        })
                        .await?
                        .into_inner()
                }
            };
            match out {
                OutputFormat::Json => output::print_json(&output::command_json(&status)),
                OutputFormat::Table => println!(
                    "{}",
                    output::table(
                        &["COMMAND", "CLUSTER", "STATE", "DELIVERIES", "BY"],
                        &[vec![
                            status.command_id.clone(),
                            status.cluster_id.clone(),
                            pb::CommandState::name_of(status.state).into(),
                            status.deliveries.to_string(),
                            status.submitted_by.clone(),
                        ]]
                    )
                ),
            }
            Ok(exit::OK)
        }
    }
}
