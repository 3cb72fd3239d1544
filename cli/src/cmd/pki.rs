//! `ferry pki init`: certificates for demos and tests.
use std::path::PathBuf;

use ferry_common::pki::{self, PkiPlan};

#[derive(Debug, clap::Subcommand)]
pub enum PkiCommand {
    /// Write a CA, the coordinator's certificate, one per agent and one per client.
    Init {
        #[arg(long)]
        out: PathBuf,
        /// Cluster ids, one agent certificate each.
        #[arg(long, value_delimiter = ',')]
        clusters: Vec<String>,
        /// Client names, one client certificate each.
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        clients: Vec<String>,
        /// DNS names and IP addresses the coordinator is reached by.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        server_names: Vec<String>,
    },
}

pub fn run(cmd: PkiCommand) -> anyhow::Result<u8> {
    match cmd {
        PkiCommand::Init {
            out,
            clusters,
            clients,
            server_names,
        } => {
            let written = pki::init(
                &out,
                &PkiPlan {
                    clusters,
                    clients,
                    server_names,
                },
            )?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(crate::exit::OK)
        }
    }
}
