//! `ferry-agent`: reads config, starts telemetry, runs the session loop until SIGTERM.
//! `ferry-agent volume-digest <dir>` is the one other use: the command of a
//! reader pod that sums up a volume (docs/migration.md, "Volumes"), and
//! `ferry-agent hold` the command of a volume holder pod.
#![forbid(unsafe_code)]

use clap::Parser;
use ferry_agent::AgentConfig;
use ferry_common::telemetry::{self, TelemetryConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ferry-agent",
    version,
    about = "Ferry's agent: runs in a cluster and dials out to the coordinator"
)]
struct Cli {
    #[command(flatten)]
    config: AgentConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "volume-digest")
    {
        let args = ferry_agent::volume_digest::Args::parse_from(std::env::args_os().skip(1));
        std::process::exit(ferry_agent::volume_digest::run(&args));
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "hold") {
        // A volume holder pod's command: keep its claim mounted for Velero
        // until the pod is deleted (agent/src/migrate/holders.rs).
        ferry_common::signal::terminated().await;
        return Ok(());
    }
    let cli = Cli::parse();
    let _telemetry = telemetry::init(&TelemetryConfig {
        service: "ferry-agent".into(),
        log_format: cli.config.log_format,
        otlp_endpoint: cli.config.otlp_endpoint.clone(),
        default_filter: String::new(),
    })?;
    let shutdown = CancellationToken::new();
    let mut agent = tokio::spawn(ferry_agent::run(cli.config, shutdown.clone()));
    tokio::select! {
        _ = ferry_common::signal::terminated() => {
            tracing::info!("shutting down");
            shutdown.cancel();
            (&mut agent).await??;
        }
        ended = &mut agent => ended??,
    }
    Ok(())
}
