//! `ferry demo`: the job on an embedded sandbox, in one process.
//!
//! It starts two sandbox clusters (A: the Platform with a registry; B: the
//! Platform only, on another domain), a coordinator, and an agent per
//! cluster. Then it migrates the registry from A to B exactly as on real
//! clusters: preflight, quiesce, Velero backup, identity export, relay of
//! the backup, its volume data, the nine buckets and the identity export,
//! the phased restore, identity import, reconfiguration, verification — and
//! prints the verification report, with a line per volume claim and, when
//! PostgreSQL is installed (the sandbox then runs the registry's databases),
//! a line per table. It exits 0 only when the target verified.
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_common::pb;
use ferry_common::pki::{self, PkiPlan};
use ferry_common::telemetry::{self, TelemetryConfig};
use ferry_coordinator::CoordinatorConfig;
use ferry_coordinator::auth::{Role, RoleBinding};
use ferry_proto::names::Named;
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{self, Platform, Seed};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cmd::agents::agents_table;
use crate::cmd::migrate;
use crate::cmd::sandbox::{agent_stores, ensure_buckets};
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

pub async fn run(args: DemoArgs, out: OutputFormat) -> anyhow::Result<u8> {
    let _telemetry = telemetry::init(&TelemetryConfig {
        service: "ferry-demo".into(),
        default_filter: "warn".into(),
        ..Default::default()
    })?;
    let tmp = tempfile::tempdir().context("creating the demo's work directory")?;
    let work = args.workdir.unwrap_or_else(|| tmp.path().to_path_buf());
    let pki_dir = work.join("pki");
    let table = out == OutputFormat::Table;
    let say = |line: &str| {
        if table {
            println!("{line}");
        }
    };

    say(&format!(
        "• starting sandbox cluster A (Platform {PLATFORM_VERSION} on a.example.com + registry {REGISTRY}) and B (Platform {PLATFORM_VERSION} on b.example.com)"
    ));
    let a = SandboxCluster::start(work.join("cluster-a"), ClusterOptions::default()).await?;
    let seeded = fixture::seed(
        &a,
        &Seed {
            platform: Some(Platform::new(PLATFORM_VERSION).with_domain("a.example.com")),
            registries: vec![fixture::Registry::new(REGISTRY, PLATFORM_VERSION)],
        },
    )
    .await?;
    let b = SandboxCluster::start(work.join("cluster-b"), ClusterOptions::default()).await?;
    fixture::seed(
        &b,
        &Seed {
            platform: Some(Platform::new(PLATFORM_VERSION).with_domain("b.example.com")),
            registries: vec![],
        },
    )
    .await?;
    // The target's bucket provisioner has made the registry's buckets (empty).
    ensure_buckets(&b, REGISTRY).await?;
    say(&format!("  seeded in {} ms", seeded.elapsed.as_millis()));
    say(if fixture::databases_available() {
        "  the registry's databases (PostgresClusters operational, analytical) run on local PostgreSQL servers"
    } else {
        "  PostgreSQL is not installed: the registry has no databases here (apt-get install postgresql for them)"
    });

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
        std::fs::write(&stores, agent_stores(cluster, REGISTRY).to_string())?;
        let mut agent = ferry_agent::AgentConfig::new(id, &coordinator.url(), pki_dir.clone());
        agent.kubeconfig = Some(cluster.kubeconfig().to_path_buf());
        agent.stores = Some(stores);
        agent.state_dir = Some(work.join(format!("agent-{id}")));
        // Keycloak's own export (here the sandbox's stand-in for `kc.sh
        // export`) carries the users' password hashes, which its admin API
        // never returns: officers log in on B with their passwords.
        let export = work.join(format!("keycloak-export-{id}"));
        cluster.keycloak().write_export_command(&export)?;
        agent.keycloak_export_command = Some(export);
        agents.push(tokio::spawn(ferry_agent::run(agent, stop_agents.clone())));
    }
    say("• agents a and b dialling out to the coordinator (the clusters never talk to each other)");

    let client = ClientArgs {
        coordinator: coordinator.url(),
        coordinator_name: None,
        coordinator_identity: ferry_common::identity::COORDINATOR_URI.into(),
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

    let mut migrations = migrate::client(&client).await?;
    let request = pb::MigrationRequest {
        migration_id: "demo".into(),
        registry: REGISTRY.into(),
        source_cluster: "a".into(),
        target_cluster: "b".into(),
        ..Default::default()
    };
    let plan = migrations
        .plan_migration(request.clone())
        .await?
        .into_inner();
    say(&format!(
        "• plan for {REGISTRY}, a → b:\n\n{}\n",
        migrate::plan_table(&plan)
    ));
    let started = std::time::Instant::now();
    let m = migrations.start_migration(request).await?.into_inner();
    say(&format!("• migration {} started", m.migration_id));
    let followed = async {
        if table {
            migrate::follow(&mut migrations, &m.migration_id, out).await
        } else {
            migrate::wait_end(&mut migrations, &m.migration_id).await
        }
    };
    // Interrupted, it returns so that the clusters are dropped and their
    // PostgreSQL servers stopped (killed outright, they would stay).
    let m = tokio::select! {
        m = followed => m?,
        () = ferry_common::signal::terminated() => {
            eprintln!("demo interrupted: stopping the clusters and their databases");
            return Ok(exit::FAILED);
        }
    };
    let verified = m.state == pb::MigrationState::Succeeded as i32
        && m.report.as_ref().is_some_and(|r| r.verified);
    let code = if verified { exit::OK } else { exit::FAILED };

    stop_agents.cancel();
    for agent in agents {
        agent.await??;
    }
    coordinator.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
    match out {
        OutputFormat::Json => output::print_json(&json!({
            "ok": verified,
            "migration": m.migration_id,
            "state": pb::MigrationState::name_of(m.state),
            "seconds": started.elapsed().as_secs_f64(),
            "report": serde_json::to_value(m.report.clone().unwrap_or_default())?,
            "steps": serde_json::to_value(&m.steps)?,
        })),
        OutputFormat::Table => {
            println!("\n{}", migrate::migration_table(&m));
            println!(
                "\n{} in {:.1}s",
                if verified {
                    "demo finished: the registry moved from A to B and verified"
                } else {
                    "demo FAILED"
                },
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(code)
}
