//! `ferry`: the command line for people and scripts.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ferry_cli::Cli::parse();
    ferry_cli::run(cli).await
}
