//! `ferry demo`: the job on an embedded sandbox, in one process.
//!
//! It starts two sandbox clusters (A: the Platform with a registry; B: the
//! Platform only), a coordinator, and an agent per cluster that probes its
//! cluster through the Kubernetes API. Each agent `describe`s what it sees
//! over the mTLS link; then the registry's nine object buckets move from A
//! to B through the relay — chunked, verified, resumable — and the demo checks
//! every object arrived intact. (The full migration — Velero backup, phased
//! restore, identity, reconfiguration — is the migration engine's work.)
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_common::pb::{self, transfers_client::TransfersClient};
use ferry_common::pki::{self, PkiPlan};
use ferry_common::telemetry::{self, TelemetryConfig};
use ferry_coordinator::CoordinatorConfig;
use ferry_coordinator::auth::{Role, RoleBinding};
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{self, OBC_BUCKETS, Seed, bucket_name};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::wait_command;
use crate::cmd::agents::agents_table;
use crate::cmd::commands::describe_table;
use crate::cmd::transfer::{follow, progress_line};
use crate::output::{self, OutputFormat};
use crate::{ClientArgs, exit};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep certificates, clusters and state here instead of a temporary directory.
    #[arg(long)]
    pub workdir: Option<std::path::PathBuf>,
}

const PLATFORM_VERSION: &str = "1.9.9";
const REGISTRY: &str = "demo-registry";

fn stores_json(cluster: &SandboxCluster) -> serde_json::Value {
    let mut stores = serde_json::Map::new();
    for obc in OBC_BUCKETS {
        stores.insert(
            format!("obc-{obc}"),
            json!({
                "s3": {
                    "endpoint": cluster.s3_endpoint(),
                    "bucket": bucket_name(REGISTRY, obc),
                    "region": cluster.s3_region(),
                    "access_key_id": cluster.s3_access_key(),
                    "secret_access_key": cluster.s3_secret_key(),
                    "allow_http": true
                },
                "prefixes": [""]
            }),
        );
    }
    json!({ "stores": stores })
}

async fn digests(cluster: &SandboxCluster, bucket: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = vec![];
    for o in cluster.s3().list_objects(bucket, "").await? {
        let data = cluster.s3().get_object(bucket, &o.key).await?;
        out.push((
            o.key,
            ring::digest::digest(&ring::digest::SHA256, &data)
                .as_ref()
                .to_vec(),
        ));
    }
    Ok(out)
}

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

    say(
        "• starting sandbox cluster A (Platform 1.9.9 + registry demo-registry) and B (Platform 1.9.9)",
    );
    let a = SandboxCluster::start(work.join("cluster-a"), ClusterOptions::default()).await?;
    let seeded = fixture::seed(
        &a,
        &Seed::platform(PLATFORM_VERSION).with_registry(REGISTRY, PLATFORM_VERSION),
    )
    .await?;
    let b = SandboxCluster::start(work.join("cluster-b"), ClusterOptions::default()).await?;
    fixture::seed(&b, &Seed::platform(PLATFORM_VERSION)).await?;
    for obc in OBC_BUCKETS {
        b.s3().create_bucket(&bucket_name(REGISTRY, obc)).await?;
    }
    say(&format!("  seeded in {} ms", seeded.elapsed.as_millis()));

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
    for (id, cluster) in [("a", &a), ("b", &b)] {
        let stores = work.join(format!("stores-{id}.json"));
        std::fs::write(&stores, stores_json(cluster).to_string())?;
        let mut agent = ferry_agent::AgentConfig::new(id, &coordinator.url(), pki_dir.clone());
        agent.kubeconfig = Some(cluster.kubeconfig().to_path_buf());
        agent.stores = Some(stores);
        agent.state_dir = Some(work.join(format!("agent-{id}")));
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
            say(&format!(
                "• describe {cluster} (probed through its Kubernetes API):\n{}\n",
                describe_table(o)
            ));
        }
        described.insert(cluster.into(), output::command_json(&status));
    }

    say("• relaying the registry's nine object buckets from A to B");
    let mut transfers = TransfersClient::new(client.channel().await?);
    let mut moved = vec![];
    for obc in OBC_BUCKETS {
        let id = format!("demo-{obc}");
        let set = |cluster: &str| pb::ObjectSet {
            cluster_id: cluster.into(),
            store: format!("obc-{obc}"),
            prefix: String::new(),
        };
        transfers
            .start_transfer(pb::StartTransferRequest {
                transfer_id: id.clone(),
                source: Some(set("a")),
                target: Some(set("b")),
                chunk_size: 0,
                parallelism: 0,
            })
            .await?;
        let status = follow(&mut transfers, &id, OutputFormat::Json).await?;
        let bucket = bucket_name(REGISTRY, obc);
        let verified = digests(&a, &bucket).await? == digests(&b, &bucket).await?;
        if status.state != pb::TransferState::Succeeded as i32 || !verified {
            code = exit::FAILED;
        }
        say(&format!(
            "  {}  {}",
            progress_line(&status),
            if verified { "verified" } else { "MISMATCH" }
        ));
        let mut j = output::transfer_json(&status);
        j["verified"] = json!(verified);
        moved.push(j);
    }

    stop_agents.cancel();
    for agent in agents {
        agent.await??;
    }
    coordinator.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
    match out {
        OutputFormat::Json => output::print_json(&json!({
            "ok": code == exit::OK,
            "agents": listed.iter().map(output::agent_json).collect::<Vec<_>>(),
            "describe": described,
            "transfers": moved,
        })),
        OutputFormat::Table => println!(
            "\n{}",
            if code == exit::OK {
                "demo finished: both clusters probed over the link; every bucket relayed and verified"
            } else {
                "demo FAILED"
            }
        ),
    }
    Ok(code)
}
