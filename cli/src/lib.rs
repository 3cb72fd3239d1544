//! The `ferry` command line. Each subcommand lives in `cmd/`; they share the
//! connection to the coordinator (`client`) and the output forms (`output`).
//! `demo`, `sandbox` and `bench` embed servers and the test harness, and are
//! built only with the `dev` feature (on by default; see cli/Cargo.toml).
#![forbid(unsafe_code)]

pub mod client;
pub mod cmd;
pub mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use client::ClientArgs;
pub use output::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Move a registry between isolated OKD clusters, and load data into it"
)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output: a table for people, or JSON for scripts.
    #[arg(short = 'o', long = "output", global = true, default_value = "table")]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole job on an embedded sandbox: coordinator, two clusters, their agents.
    #[cfg(feature = "dev")]
    Demo(cmd::demo::DemoArgs),
    /// Run one sandbox cluster (Kubernetes API, Velero, S3, Keycloak) standalone.
    #[cfg(feature = "dev")]
    Sandbox(cmd::sandbox::SandboxArgs),
    /// Make certificates for demos and tests.
    #[command(subcommand)]
    Pki(cmd::pki::PkiCommand),
    /// List the agents the coordinator knows, or forget one.
    Agents(cmd::agents::AgentsArgs),
    /// Ask a cluster's agent what it sees of its cluster.
    Describe(cmd::commands::DescribeArgs),
    /// Check the link to an agent with a round trip (optionally delayed).
    Ping(cmd::commands::PingArgs),
    /// Sync objects from one cluster's store to another's through the relay.
    #[command(subcommand)]
    Transfer(cmd::transfer::TransferCommand),
    /// Move a registry from one cluster to another: plan, start, watch, cancel, roll back.
    #[command(subcommand)]
    Migrate(cmd::migrate::MigrateCommand),
    /// Load CSV files into a cluster's registry database, all or nothing.
    #[command(subcommand)]
    Load(cmd::load::LoadCommand),
    /// Measure throughput and memory (figures for docs/benchmarks.md).
    #[command(subcommand)]
    #[cfg(feature = "dev")]
    Bench(cmd::bench::BenchCommand),
    /// Inspect a command sent to an agent.
    #[command(subcommand)]
    Command(cmd::commands::CommandCommand),
}

/// Exit codes scripts can rely on — the one place they are defined (README
/// and docs/errors.md list them); `client::exit_code` maps every error to one.
pub mod exit {
    pub const OK: u8 = 0;
    /// Something failed (a command's error, a load rejected, a step failed).
    pub const FAILED: u8 = 1;
    /// The command line is wrong: a bad or missing argument, a request the
    /// coordinator finds malformed (INVALID_ARGUMENT). clap exits 2 too.
    pub const USAGE: u8 = 2;
    /// The request was refused: not allowed, an identity or certificate
    /// refused on either side, a precondition that does not hold, or an
    /// object (cluster, migration, load…) that does not exist.
    pub const REFUSED: u8 = 3;
    /// The coordinator could not be reached, or waiting ran out of time.
    pub const UNAVAILABLE: u8 = 4;
    /// The migration was cancelled or rolled back.
    pub const CANCELLED: u8 = 5;
}

/// Runs one invocation and maps its outcome to an exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        #[cfg(feature = "dev")]
        Command::Demo(args) => cmd::demo::run(args, cli.output).await,
        Command::Pki(c) => cmd::pki::run(c),
        #[cfg(feature = "dev")]
        Command::Sandbox(a) => cmd::sandbox::run(a, cli.output).await,
        Command::Agents(a) => cmd::agents::run(&cli.client, a, cli.output).await,
        Command::Describe(a) => cmd::commands::describe(&cli.client, a, cli.output).await,
        Command::Ping(a) => cmd::commands::ping(&cli.client, a, cli.output).await,
        Command::Command(c) => cmd::commands::command(&cli.client, c, cli.output).await,
        Command::Transfer(c) => cmd::transfer::run(&cli.client, c, cli.output).await,
        Command::Load(c) => cmd::load::run(&cli.client, c, cli.output).await,
        Command::Migrate(c) => cmd::migrate::run(&cli.client, c, cli.output).await,
        #[cfg(feature = "dev")]
        Command::Bench(c) => cmd::bench::run(c).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = client::exit_code(&e);
            // A call broken at once may be the coordinator refusing this
            // client's certificate (TLS 1.3 says so only after the
            // handshake): ask it, and say so in words.
            if matches!(code, exit::UNAVAILABLE | exit::FAILED)
                && let Some(words) = ferry_common::tls::refusal_of_own_certificate(
                    &cli.client.coordinator,
                    &cli.client.tls_paths(),
                    ferry_common::tls::ServerCheck {
                        name: cli.client.coordinator_name.as_deref(),
                        identity: &cli.client.coordinator_identity,
                    },
                )
                .await
            {
                eprintln!("ferry: {words}");
                return ExitCode::from(exit::REFUSED);
            }
            match client::handshake_refusal(&e) {
                Some(alert) => eprintln!(
                    "ferry: {}",
                    ferry_common::tls::refusal_in_words(alert, &cli.client.tls_paths().cert)
                ),
                None => eprintln!("ferry: {e:#}"),
            }
            ExitCode::from(code)
        }
    }
}
