//! Helpers the step tests share, on the sandbox and on the real tier: a
//! cluster side (its agent's executor context and how to reach its
//! Kubernetes API), running a step through `exec::execute` as the
//! coordinator would, and reading what the steps did off the cluster.
#![allow(dead_code, unused_imports)]

pub use std::collections::BTreeSet;
pub use std::path::{Path, PathBuf};
pub use std::sync::atomic::{AtomicU64, Ordering};
pub use std::time::Duration;

pub use anyhow::{Context, Result, bail};
pub use ferry_agent::AgentConfig;
pub use ferry_agent::exec;
pub use ferry_agent::migrate::{PASSWORD_RESET_ANNOTATION, REPLICAS_ANNOTATION};
pub use ferry_agent::progress::Progress;
pub use ferry_agent::relay::RelayContext;
pub use ferry_common::pb::{
    self, ClusterRole, command_output, command_result, command_spec, step_command::Kind,
    step_output::Kind as Out,
};
pub use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
pub use ferry_sandbox::fixture::{
    self, BSL_PREFIX, DEFAULT_BSL, OBC_BUCKETS, Platform, Registry, Seed, Target, bucket_name,
};
pub use ferry_sandbox::s3::S3Server;
pub use ferry_sandbox::velero::NodeAgentStandIn;
pub use ferry_testkit::kube::RealCluster;
pub use ferry_testkit::velero::RealVelero;
pub use k8s_openapi::api::core::v1::Secret;
pub use kube::ResourceExt;
pub use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
pub use serde_json::json;
pub use tokio::sync::mpsc;

pub const REG: &str = "reg-one";
pub const VERSION: &str = "1.9.9";
pub const MIGRATION: &str = "m-1";
pub const BACKUP: &str = "reg-one-2026-01-02-03-04-05";
pub const IDENTITY_PREFIX: &str = "ferry/identity/m-1/";
pub const CAPACITY: u64 = 1 << 40;
pub const WAIT: Duration = Duration::from_secs(20);
pub const A_DOMAIN: &str = "apps.a.example.com";
pub const B_DOMAIN: &str = "apps.b.example.com";

/// A sandbox cluster and the executor context of its agent.
pub struct Side {
    /// The sandbox cluster: its Kubernetes API too on the sandbox tier; on
    /// the real tier, its object store, Keycloak and volumes only.
    pub cluster: SandboxCluster,
    /// The real control plane the agent talks to, on the real tier.
    pub real: Option<RealCluster>,
    /// Where the agent's Kubernetes API is.
    pub kubeconfig: PathBuf,
    /// The real Velero server and the node-agent stand-in, when started.
    pub velero: Option<(RealVelero, NodeAgentStandIn)>,
    pub ctx: RelayContext,
    pub progress: mpsc::Receiver<pb::CommandProgress>,
}

pub fn platform(domain: &str) -> Platform {
    Platform::new(VERSION).with_domain(domain)
}

pub fn source_seed() -> Seed {
    Seed {
        platform: Some(platform("a.example.com")),
        registries: vec![Registry::new(REG, VERSION)],
    }
}

pub fn target_seed() -> Seed {
    Seed {
        platform: Some(platform("b.example.com")),
        registries: vec![],
    }
}

pub fn obc_stores() -> Vec<String> {
    OBC_BUCKETS.iter().map(|o| format!("obc-{o}")).collect()
}

pub fn realms() -> Vec<String> {
    ferry_agent::keycloak::registry_realms(REG).to_vec()
}

/// Stores as an operator would configure them: the BSL bucket as `backups`,
/// each OBC bucket of the registry as `obc-<claim>`.
pub fn stores_json(cluster: &SandboxCluster) -> serde_json::Value {
    let s3 = |bucket: &str| {
        json!({
            "s3": {"endpoint": cluster.s3_endpoint(), "bucket": bucket, "region": cluster.s3_region(),
                   "access_key_id": cluster.s3_access_key(), "secret_access_key": cluster.s3_secret_key(),
                   "allow_http": true},
            "prefixes": [""],
        })
    };
    let mut stores = serde_json::Map::new();
    stores.insert("backups".into(), s3(cluster.bsl_bucket()));
    for obc in OBC_BUCKETS {
        stores.insert(format!("obc-{obc}"), s3(&bucket_name(REG, obc)));
    }
    json!({ "stores": stores })
}

pub async fn side(dir: &Path, id: &str, seed: Seed) -> Result<Side> {
    let cluster = SandboxCluster::start(dir.join(id), ClusterOptions::default()).await?;
    fixture::seed(&cluster, &seed).await?;
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    side_on(dir, id, cluster, None, kubeconfig)
}

/// A side on the real tier: a real control plane holding the fixture's
/// Kubernetes objects (CRDs installed first), beside the sandbox cluster's
/// object store and Keycloak.
pub async fn real_side(dir: &Path, id: &str, seed: Seed) -> Result<Side> {
    real_side_with(dir, id, seed, false).await
}

/// `real_side`, made ready for the real Velero server when `velero` (its
/// own CRDs installed first); [`start_velero`] starts it.
pub async fn real_side_with(dir: &Path, id: &str, seed: Seed, velero: bool) -> Result<Side> {
    let (cluster, real) = tokio::join!(
        SandboxCluster::start(dir.join(id), ClusterOptions::default()),
        RealCluster::start(),
    );
    let (cluster, real) = (cluster?, real?);
    let client = real.client().await?;
    if velero {
        ferry_testkit::velero::install_crds(&real)?;
    }
    // A bare OKD has none of the Platform's or Velero's types.
    if seed.platform.is_some() {
        fixture::install_crds(&client, WAIT).await?;
    }
    fixture::seed_onto(&cluster, &Target::Kube(client.clone()), &seed)
        .await
        .with_context(|| format!("seeding the real cluster:\n{}", real.log_tails()))?;
    let kubeconfig = real.kubeconfig().to_path_buf();
    side_on(dir, id, cluster, Some(real), kubeconfig)
}

/// Starts Velero's server on a real side (in a network namespace of its
/// own: `ferry_testkit::netns`), with the node-agent stand-in.
pub async fn start_velero(side: &mut Side) -> Result<()> {
    let real = side
        .real
        .as_ref()
        .context("Velero's server runs on a real side")?;
    let server = RealVelero::start(real).await?;
    let client = real.client().await?;
    side.velero = Some((server, side.cluster.serve_node_agent(client)));
    Ok(())
}

/// The same side, its agent reaching the cluster through `kubeconfig`
/// instead (e.g. holding only a ServiceAccount's token).
pub fn with_kubeconfig(side: Side, dir: &Path, kubeconfig: &Path) -> Result<Side> {
    let id = side.ctx.config.cluster_id.clone();
    let mut new = side_on(dir, &id, side.cluster, side.real, kubeconfig.to_path_buf())?;
    new.velero = side.velero;
    Ok(new)
}

fn side_on(
    dir: &Path,
    id: &str,
    cluster: SandboxCluster,
    real: Option<RealCluster>,
    kubeconfig: PathBuf,
) -> Result<Side> {
    let mut config = AgentConfig::new(id, "https://127.0.0.1:9", dir.join("pki"));
    config.kubeconfig = Some(kubeconfig.clone());
    config.capacity_bytes = Some(CAPACITY);
    let stores = serde_json::from_value(stores_json(&cluster))?;
    let (progress, rx) = Progress::channel();
    let ctx = RelayContext::new(config, stores, dir.join(format!("state-{id}")), progress);
    Ok(Side {
        cluster,
        real,
        kubeconfig,
        velero: None,
        ctx,
        progress: rx,
    })
}

pub static IDS: AtomicU64 = AtomicU64::new(1);

/// Runs a step through the agent's command entry point.
pub async fn step(side: &Side, kind: Kind) -> Result<Out> {
    let command = pb::Command {
        id: format!("c-{}", IDS.fetch_add(1, Ordering::Relaxed)),
        spec: Some(pb::CommandSpec {
            kind: Some(command_spec::Kind::Step(pb::StepCommand {
                migration_id: MIGRATION.into(),
                registry: REG.into(),
                kind: Some(kind),
            })),
            ..Default::default()
        }),
    };
    match exec::execute(&side.ctx, command).await.outcome {
        Some(command_result::Outcome::Output(pb::CommandOutput {
            kind: Some(command_output::Kind::Step(pb::StepOutput { kind: Some(out) })),
        })) => Ok(out),
        Some(command_result::Outcome::Error(e)) => bail!("{}", e.message),
        other => bail!("unexpected result {other:?}"),
    }
}

macro_rules! expect {
    ($out:expr, $variant:ident) => {
        match $out {
            Out::$variant(report) => report,
            other => bail!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

pub async fn preflight(side: &Side, role: ClusterRole) -> Result<pb::PreflightReport> {
    let out = step(
        side,
        Kind::Preflight(pb::PreflightStep {
            role: role as i32,
            backup_store: "backups".into(),
            leftover_prefixes: vec![
                format!("{BSL_PREFIX}/backups/{REG}-"),
                format!("{BSL_PREFIX}/kopia/{REG}/"),
            ],
            backup_location: DEFAULT_BSL.into(),
        }),
    )
    .await?;
    Ok(expect!(out, Preflight))
}

pub async fn quiesce(side: &Side, undo: bool) -> Result<pb::QuiesceReport> {
    Ok(expect!(
        step(side, Kind::Quiesce(pb::QuiesceStep { undo })).await?,
        Quiesce
    ))
}

pub async fn inventory(side: &Side) -> Result<pb::Inventory> {
    let out = step(
        side,
        Kind::Inventory(pb::InventoryStep {
            stores: obc_stores(),
            realms: realms(),
            // Volumes and databases: tests/tests/migrate*.rs.
            ..Default::default()
        }),
    )
    .await?;
    Ok(expect!(out, Inventory))
}

pub async fn restore(
    side: &Side,
    phase: &str,
    f: impl FnOnce(&mut pb::RestoreStep),
) -> Result<pb::RestoreReport> {
    let mut cmd = pb::RestoreStep {
        backup_name: BACKUP.into(),
        restore_name: format!("{BACKUP}-{phase}"),
        ..Default::default()
    };
    f(&mut cmd);
    Ok(expect!(step(side, Kind::Restore(cmd)).await?, Restore))
}

pub fn cleanup_step(restores: &[String]) -> pb::CleanupStep {
    pb::CleanupStep {
        backup_store: "backups".into(),
        prefixes: vec![
            format!("{BSL_PREFIX}/backups/{REG}-"),
            format!("{BSL_PREFIX}/kopia/{REG}/"),
            format!("{BSL_PREFIX}/restores/{BACKUP}-"),
            IDENTITY_PREFIX.into(),
        ],
        stores: obc_stores(),
        realms: realms(),
        backups: vec![BACKUP.into()],
        restores: restores.to_vec(),
    }
}

/// The checks a target preflight fails on a bare OKD (no Platform).
pub const BARE_TARGET_FAILURES: [&str; 7] = [
    "platform-present",
    "velero-present",
    "bsl-available",
    "apps-domain",
    "keycloak-answering",
    "gerrit-present",
    "nexus-present",
];

/// Runs the backup step for `name` at `location`.
pub async fn backup(
    side: &Side,
    name: &str,
    location: &str,
    allow_warnings: bool,
) -> Result<pb::BackupReport> {
    let out = step(
        side,
        Kind::Backup(pb::BackupStep {
            backup_name: name.into(),
            backup_location: location.into(),
            allow_warnings,
        }),
    )
    .await?;
    Ok(expect!(out, Backup))
}

pub fn failed(report: &pb::PreflightReport) -> BTreeSet<&str> {
    report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect()
}

pub fn names(report: &pb::PreflightReport) -> BTreeSet<&str> {
    report.checks.iter().map(|c| c.name.as_str()).collect()
}

/// Copies every object under `prefix` from one bucket to another, as the relay does.
pub async fn copy(
    from: &S3Server,
    from_bucket: &str,
    to: &S3Server,
    to_bucket: &str,
    prefix: &str,
) -> Result<usize> {
    let objects = from.list_objects(from_bucket, prefix).await?;
    for o in &objects {
        let data = from.get_object(from_bucket, &o.key).await?;
        to.put_object(to_bucket, &o.key, data).await?;
    }
    Ok(objects.len())
}

/// Workloads of the registry: name → (spec.replicas, recorded annotation).
pub async fn workloads(side: &Side) -> Result<Vec<(String, i64, Option<String>)>> {
    let client = client(side).await?;
    let mut out = Vec::new();
    for (kind, plural) in [
        ("Deployment", "deployments"),
        ("StatefulSet", "statefulsets"),
    ] {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), REG, &ar);
        for w in api.list(&Default::default()).await? {
            out.push((
                w.name_any(),
                w.data["spec"]["replicas"].as_i64().unwrap_or(1),
                w.annotations().get(REPLICAS_ANNOTATION).cloned(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

pub async fn client(side: &Side) -> Result<kube::Client> {
    Ok(ferry_agent::platform::connect(Some(&side.kubeconfig)).await?)
}

/// `kind/name` of every object in the registry's namespace whose content
/// (ConfigMap and Secret data, the spec of the rest) contains `needle`.
pub async fn mentions(side: &Side, needle: &str) -> Result<Vec<String>> {
    let client = client(side).await?;
    let mut found = Vec::new();
    let kinds = [
        ("", "v1", "ConfigMap", "configmaps", "data"),
        ("route.openshift.io", "v1", "Route", "routes", "spec"),
        ("apps", "v1", "Deployment", "deployments", "spec"),
        ("apps", "v1", "StatefulSet", "statefulsets", "spec"),
        (
            "v1.edp.epam.com",
            "v1",
            "KeycloakRealm",
            "keycloakrealms",
            "spec",
        ),
    ];
    for (group, version, kind, plural, field) in kinds {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), REG, &ar);
        for o in api.list(&Default::default()).await? {
            if o.data[field].to_string().contains(needle) {
                found.push(format!("{plural}/{}", o.name_any()));
            }
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client, REG);
    for s in secrets.list(&Default::default()).await? {
        let hit = s
            .data
            .iter()
            .flatten()
            .any(|(_, v)| String::from_utf8_lossy(&v.0).contains(needle));
        if hit {
            found.push(format!("secrets/{}", s.name_any()));
        }
    }
    Ok(found)
}

pub fn drain(rx: &mut mpsc::Receiver<pb::CommandProgress>) -> Vec<pb::CommandProgress> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}
