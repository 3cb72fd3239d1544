//! `ferry-coordinator`: reads config, starts telemetry, serves until SIGTERM.
#![forbid(unsafe_code)]

use clap::Parser;
use ferry_common::telemetry::{self, TelemetryConfig};
use ferry_coordinator::CoordinatorConfig;

#[derive(Parser)]
#[command(
    name = "ferry-coordinator",
    version,
    about = "Ferry's coordinator: agent sessions, client API, durable state"
)]
struct Cli {
    #[command(flatten)]
    config: CoordinatorConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ferry_coordinator::seam::arm_from_env();
    let _telemetry = telemetry::init(&TelemetryConfig {
        service: "ferry-coordinator".into(),
        log_format: cli.config.log_format,
        otlp_endpoint: cli.config.otlp_endpoint.clone(),
        default_filter: String::new(),
    })?;
    if cli.config.store.is_none() {
        let running = ferry_coordinator::start(&cli.config).await?;
        // Tests and scripts read the bound address from this line.
        println!("listening on {}", running.addr);
        ferry_common::signal::terminated().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        return Ok(());
    }
    let replica = ferry_coordinator::replica::start(&cli.config).await?;
    println!("listening on {}", replica.addr);
    tokio::select! {
        () = ferry_common::signal::terminated() => {
            tracing::info!("shutting down");
            replica.shutdown().await;
            Ok(())
        }
        () = replica.deposed() => {
            // Nothing it would write can land (the store's fence): exit, so
            // the supervisor starts this replica again as a standby.
            anyhow::bail!(
                "deposed: another coordinator replica took the lease over; exiting so that \
                 this one restarts as a standby"
            )
        }
    }
}
