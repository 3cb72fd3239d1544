//! `ferry demo`: the whole job on an embedded sandbox, in one process.
//!
//! Today it starts a coordinator and two agents (clusters `a` and `b`) with
//! freshly made certificates, shows them connected, and asks each to
//! `describe` its cluster over the real mTLS link.
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_common::pb;
use ferry_common::pki::{self, PkiPlan};
use ferry_common::telemetry::{self, TelemetryConfig};
use ferry_coordinator::CoordinatorConfig;
use ferry_coordinator::auth::{Role, RoleBinding};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::wait_command;
use crate::cmd::agents::agents_table;
use crate::cmd::commands::describe_table;
use crate::output::{self, OutputFormat};
use crate::{ClientArgs, exit};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep certificates and state here instead of a temporary directory.
    #[arg(long)]
    pub workdir: Option<std::path::PathBuf>,
}

const PLATFORM_VERSION: &str = "1.9.9";

pub async fn run(args: DemoArgs, out: OutputFormat) -> anyhow::Result<u8> {
    let _telemetry = telemetry::init(&TelemetryConfig {
        service: "ferry-demo".into(),
        default_filter: "warn".into(),
        ..Default::default()
    })?;
    let tmp = tempfile::tempdir().context("creating the demo's work directory")?;
    let work = args.workdir.unwrap_or_else(|| tmp.path().to_path_buf());
    let pki_dir = work.join("pki");
    let say = |line: &str| {
        if out == OutputFormat::Table {
            println!("{line}");
        }
    };

    say("• making certificates: CA, coordinator, agents a and b, client admin");
    pki::init(
        &pki_dir,
        &PkiPlan {
            clusters: vec!["a".into(), "b".into()],
            clients: vec!["admin".into()],
            ..PkiPlan::default()
        },
    )?;
    let mut config = CoordinatorConfig::for_dirs(
        pki_dir.clone(),
        work.join("coordinator"),
        vec![RoleBinding {
            client: "admin".into(),
            role: Role::Admin,
        }],
    );
    config.heartbeat = Duration::from_secs(1);
    let coordinator = ferry_coordinator::start(&config).await?;
    say(&format!(
        "• coordinator listening on {} (mTLS)",
        coordinator.url()
    ));

    let stop_agents = CancellationToken::new();
    let mut agents = vec![];
    for (cluster, registries) in [("a", vec!["demo-registry"]), ("b", vec![])] {
        let mut agent = ferry_agent::AgentConfig::new(cluster, &coordinator.url(), pki_dir.clone());
        agent.platform_version = PLATFORM_VERSION.into();
        agent.registries = registries
            .into_iter()
            .map(|name| pb::RegistryFacts {
                name: name.into(),
                version: PLATFORM_VERSION.into(),
            })
            .collect();
        agents.push(tokio::spawn(ferry_agent::run(agent, stop_agents.clone())));
    }
    say("• agents a and b dialling out to the coordinator");

    let client = ClientArgs {
        coordinator: coordinator.url(),
        coordinator_name: None,
        pki_dir: pki_dir.clone(),
        client_name: "admin".into(),
        tls_cert: None,
        tls_key: None,
        tls_ca: None,
    };
    let mut fleet = client.fleet().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let agents = fleet
            .list_agents(pb::ListAgentsRequest {})
            .await?
            .into_inner()
            .agents;
        let connected = agents
            .iter()
            .filter(|a| a.state == pb::AgentState::Connected as i32)
            .count();
        if connected == 2 {
            break agents;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "agents did not connect within 20s:\n{}",
                agents_table(&agents)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    say(&format!("\n{}\n", agents_table(&listed)));

    let mut described = serde_json::Map::new();
    let mut code = exit::OK;
    for cluster in ["a", "b"] {
        let submitted = fleet
            .submit_command(pb::SubmitCommandRequest {
                cluster_id: cluster.into(),
                spec: Some(pb::CommandSpec {
                    kind: Some(pb::command_spec::Kind::Describe(pb::DescribeCommand {})),
                }),
                request_id: String::new(),
            })
            .await?
            .into_inner();
        let status = wait_command(&client, &submitted.command_id, Duration::from_secs(20)).await?;
        if status.state != pb::CommandState::Succeeded as i32 {
            code = exit::FAILED;
        }
        if let Some(pb::command_result::Outcome::Output(o)) =
            status.result.as_ref().and_then(|r| r.outcome.as_ref())
        {
            say(&format!("• describe {cluster}:\n{}\n", describe_table(o)));
        }
        described.insert(cluster.into(), output::command_json(&status));
    }

    stop_agents.cancel();
    for a in agents {
        a.await??;
    }
    coordinator.shutdown().await;
    match out {
        OutputFormat::Json => output::print_json(&json!({
            "agents": listed.iter().map(output::agent_json).collect::<Vec<_>>(),
            "describe": described,
        })),
        OutputFormat::Table => println!(
            "{}",
            if code == exit::OK {
                "demo finished: both agents connected and answered describe"
            } else {
                "demo FAILED"
            }
        ),
    }
    Ok(code)
}
