//! `ferry agents`: the fleet as the coordinator sees it.
use ferry_common::pb;
use ferry_proto::names::Named;
use serde_json::json;

use crate::output::{self, OutputFormat};
use crate::{ClientArgs, exit};

#[derive(Debug, clap::Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub action: Option<AgentsAction>,
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentsAction {
    /// List agents (the default).
    List,
    /// Remove a disconnected agent from the fleet (admin).
    Forget { cluster: String },
}

pub async fn run(client: &ClientArgs, args: AgentsArgs, out: OutputFormat) -> anyhow::Result<u8> {
    let mut fleet = client.fleet().await?;
    match args.action.unwrap_or(AgentsAction::List) {
        AgentsAction::List => {
            let agents = fleet
                .list_agents(pb::ListAgentsRequest {})
                .await?
                .into_inner()
                .agents;
            match out {
                OutputFormat::Json => output::print_json(&json!({
                    "agents": agents.iter().map(output::agent_json).collect::<Vec<_>>()
                })),
                OutputFormat::Table => println!("{}", agents_table(&agents)),
            }
        }
        AgentsAction::Forget { cluster } => {
            fleet
                .forget_agent(pb::ForgetAgentRequest {
                    cluster_id: cluster.clone(),
                })
                .await?;
            match out {
                OutputFormat::Json => output::print_json(&json!({ "forgotten": cluster })),
                OutputFormat::Table => println!("forgot agent {cluster}"),
            }
        }
    }
    Ok(exit::OK)
}

pub fn agents_table(agents: &[pb::AgentInfo]) -> String {
    let now = ferry_common::time::unix_ms();
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let facts = a.facts.clone().unwrap_or_default();
            vec![
                a.cluster_id.clone(),
                pb::AgentState::name_of(a.state).into(),
                facts.platform_version,
                facts
                    .registries
                    .iter()
                    .map(|r| format!("{}@{}", r.name, r.version))
                    .collect::<Vec<_>>()
                    .join(","),
                format!(
                    "{:.1}s ago",
                    now.saturating_sub(a.last_seen_unix_ms) as f64 / 1000.0
                ),
                a.peer_address.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "CLUSTER",
            "STATE",
            "PLATFORM",
            "REGISTRIES",
            "LAST SEEN",
            "PEER",
        ],
        &rows,
    )
}
