//! `ferry transfer`: sync a set of objects from one cluster's store to
//! another's through the relay, and follow it.
use std::io::{IsTerminal, Write};

use anyhow::Context;
use ferry_common::pb::{self, transfers_client::TransfersClient};
use ferry_proto::names::Named;
use futures::StreamExt;

use crate::output::{self, OutputFormat};
use crate::{ClientArgs, exit};

#[derive(Debug, clap::Subcommand)]
pub enum TransferCommand {
    /// Start a transfer (`cluster:store:prefix` on each side) and follow it.
    Start {
        /// Source, e.g. `aws-prod:bsl:openshift-backups/backups/reg-2026-11-24-10-00-00`.
        #[arg(long)]
        from: String,
        /// Target, e.g. `vsphere:bsl:openshift-backups/backups/reg-2026-11-24-10-00-00`.
        #[arg(long)]
        to: String,
        /// An id of your choosing; the same id again is the same transfer.
        #[arg(long, default_value = "")]
        id: String,
        /// Bytes per chunk (the resume unit; at least 5 MiB). 0: the default, 8 MiB.
        #[arg(long, default_value_t = 0)]
        chunk_size: u64,
        /// Objects in flight at once. 0: the default, 4.
        #[arg(long, default_value_t = 0)]
        parallelism: u32,
        /// Return once started instead of following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show a transfer.
    Get { id: String },
    /// Follow a transfer until it ends.
    Watch { id: String },
}

fn parse_set(s: &str) -> anyhow::Result<pb::ObjectSet> {
    let mut parts = s.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(store), prefix) if !c.is_empty() && !store.is_empty() => Ok(pb::ObjectSet {
            cluster_id: c.into(),
            store: store.into(),
            prefix: prefix.unwrap_or_default().into(),
        }),
        _ => crate::client::usage(format!("bad object set {s:?}: use cluster:store[:prefix]")),
    }
}

pub async fn run(
    client: &ClientArgs,
    cmd: TransferCommand,
    out: OutputFormat,
) -> anyhow::Result<u8> {
    let mut transfers = TransfersClient::new(client.channel().await?);
    let id = match cmd {
        TransferCommand::Start {
            from,
            to,
            id,
            chunk_size,
            parallelism,
            no_wait,
        } => {
            let status = transfers
                .start_transfer(pb::StartTransferRequest {
                    transfer_id: id,
                    source: Some(parse_set(&from)?),
                    target: Some(parse_set(&to)?),
                    chunk_size,
                    parallelism,
                })
                .await
                .context("starting the transfer")?
                .into_inner();
            if no_wait {
                return Ok(print(&status, out));
            }
            status.transfer_id
        }
        TransferCommand::Get { id } => {
            let status = transfers
                .get_transfer(pb::GetTransferRequest { transfer_id: id })
                .await?
                .into_inner();
            return Ok(print(&status, out));
        }
        TransferCommand::Watch { id } => id,
    };
    let status = follow(&mut transfers, &id, out).await?;
    Ok(print(&status, out))
}

/// Follows a transfer: a progress line on a terminal, one line per update otherwise.
pub async fn follow(
    transfers: &mut TransfersClient<tonic::transport::Channel>,
    id: &str,
    out: OutputFormat,
) -> anyhow::Result<pb::TransferStatus> {
    let mut stream = transfers
        .watch_transfer(pb::GetTransferRequest {
            transfer_id: id.into(),
        })
        .await?
        .into_inner();
    let tty = std::io::stderr().is_terminal();
    let mut last = None;
    while let Some(status) = stream.next().await {
        let status = status?;
        if out == OutputFormat::Table {
            let line = progress_line(&status);
            if tty {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{line}");
            }
        }
        last = Some(status);
    }
    if tty && out == OutputFormat::Table {
        eprintln!();
    }
    last.context("the coordinator ended the watch without a status")
}

pub fn progress_line(t: &pb::TransferStatus) -> String {
    let c = t.counts.unwrap_or_default();
    let done = c.bytes_moved + c.bytes_skipped;
    let pct = if c.bytes_total > 0 {
        done as f64 * 100.0 / c.bytes_total as f64
    } else {
        0.0
    };
    format!(
        "transfer {} {}: {}/{} objects, {} / {} ({pct:.0}%), {}/s, ETA {}s",
        t.transfer_id,
        pb::TransferState::name_of(t.state),
        c.objects_moved + c.objects_skipped,
        c.objects_total,
        output::bytes(done),
        output::bytes(c.bytes_total),
        output::bytes(t.rate_bytes_per_sec as u64),
        t.eta_ms / 1000,
    )
}

fn print(t: &pb::TransferStatus, out: OutputFormat) -> u8 {
    match out {
        OutputFormat::Json => output::print_json(&output::transfer_json(t)),
        OutputFormat::Table => {
            println!("{}", progress_line(t));
            if !t.error.is_empty() {
                println!("error: {}", t.error);
            }
        }
    }
    match pb::TransferState::try_from(t.state) {
        Ok(pb::TransferState::Succeeded) => exit::OK,
        Ok(pb::TransferState::Failed) => exit::FAILED,
        _ => exit::OK,
    }
}
