//! A real stack per cluster, for whole migrations on the real tier: the real
//! control plane (KWOK for kubelets, a CSI provisioner stand-in), Velero's
//! real server with its AWS plugin (in a network namespace of its own) and
//! the node-agent stand-in, a real Keycloak over its own PostgreSQL — beside
//! a sandbox cluster for what this machine cannot run for real: the object
//! store (the sandbox's S3), the volumes' contents (its directories) and
//! PGO's instances (real PostgreSQL servers, the PGO stand-in). The
//! coordinator and both agents are the real binaries, as processes.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{self, Platform, Registry, Seed, Target};
use ferry_sandbox::velero::NodeAgentStandIn;
use ferry_sandbox::workloads::PgoStandIn;
use ferry_testkit::keycloak::RealKeycloak;
use ferry_testkit::kube::RealCluster;
use ferry_testkit::velero::RealVelero;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::migrate_world::{PLATFORM, REGISTRY};
use crate::{Proc, World};

/// Real controllers, KWOK and Velero's periodic loops need time.
pub const READY: Duration = Duration::from_secs(120);

/// One cluster's real stack.
pub struct RealStack {
    pub id: String,
    /// The object store and volume directories (its own API is unused).
    pub sandbox: SandboxCluster,
    pub cluster: RealCluster,
    pub client: kube::Client,
    pub keycloak: RealKeycloak,
    pub velero: RealVelero,
    _node_agent: NodeAgentStandIn,
    _pgo: PgoStandIn,
}

/// The seed of a source (`registry`) or a target, on `domain`.
pub fn seed(domain: &str, registry: bool) -> Seed {
    Seed {
        platform: Some(Platform::new(PLATFORM).with_domain(domain)),
        registries: if registry {
            vec![Registry::new(REGISTRY, PLATFORM)]
        } else {
            vec![]
        },
    }
}

/// Waits until the PGO stand-in serves every database of the registry:
/// their `pguser` Secrets name a loopback server.
async fn databases_serving(client: &kube::Client) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), REGISTRY);
    let deadline = tokio::time::Instant::now() + READY;
    for (cluster, _) in fixture::POSTGRES_CLUSTERS {
        let name = format!("{cluster}-pguser-postgres");
        loop {
            let data = secrets.get(&name).await?.data.unwrap_or_default();
            let text = |k: &str| {
                data.get(k)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    .unwrap_or_default()
            };
            if text("host") == "127.0.0.1" && !matches!(text("port").as_str(), "" | "9") {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "PostgresCluster {REGISTRY}/{cluster} is not served within {READY:?} \
                 (Secret {name} names {}:{})",
                text("host"),
                text("port")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

impl RealStack {
    /// Starts and seeds cluster `id`'s stack, Velero's server last, and
    /// waits until Velero has validated its backup storage location.
    pub async fn start(w: &World, id: &str, seed: Seed) -> anyhow::Result<Self> {
        let (sandbox, cluster, keycloak) = tokio::join!(
            SandboxCluster::start(w.path(&format!("cluster-{id}")), ClusterOptions::default()),
            RealCluster::start(),
            RealKeycloak::start(),
        );
        let (sandbox, cluster, keycloak) = (sandbox?, cluster?, keycloak?);
        let client = cluster.client().await?;
        ferry_testkit::velero::install_crds(&cluster)?;
        fixture::install_crds(&client, READY).await?;
        // PGO's instances run (real PostgreSQL here) as the real
        // controllers scale them, from the fixture's seeding on.
        let pgo = sandbox.serve_pgo(client.clone());
        let registry = !seed.registries.is_empty();
        fixture::seed_onto(&sandbox, &Target::Kube(client.clone()), &seed)
            .await
            .with_context(|| format!("seeding cluster {id}:\n{}", cluster.log_tails()))?;
        if registry && fixture::databases_available() {
            databases_serving(&client).await?;
        }
        ferry_cli::cmd::sandbox::ensure_buckets(&sandbox, REGISTRY).await?;
        let since = jiff::Timestamp::now();
        let velero = RealVelero::start(&cluster).await?;
        let node_agent = sandbox.serve_node_agent(client.clone());
        let stack = RealStack {
            id: id.to_owned(),
            sandbox,
            cluster,
            client,
            keycloak,
            velero,
            _node_agent: node_agent,
            _pgo: pgo,
        };
        ferry_testkit::velero::wait_validated(
            &stack.velero,
            &stack.client,
            fixture::DEFAULT_BSL,
            since,
            READY,
        )
        .await?;
        Ok(stack)
    }

    /// Velero's objects of `plural` (`backups`, `restores`, …).
    pub fn velero_api(&self, kind: &str, plural: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            ferry_testkit::velero::NAMESPACE,
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("velero.io", "v1", kind),
                plural,
            ),
        )
    }

    /// Starts this cluster's agent: the real control plane's API, the
    /// sandbox's S3 as its stores, the real Keycloak (and, with `export`,
    /// Keycloak's own export for the users' credentials), volumes measured
    /// from Velero's totals (no kubelet runs reader pods here).
    pub fn agent(&self, w: &World, export: bool) -> anyhow::Result<Proc> {
        let id = &self.id;
        let stores = w.path(&format!("stores-{id}.json"));
        std::fs::write(
            &stores,
            ferry_cli::cmd::sandbox::agent_stores(&self.sandbox, REGISTRY).to_string(),
        )?;
        let path = |p: PathBuf| p.display().to_string();
        let mut args = vec![
            "--kubeconfig".to_owned(),
            path(self.cluster.kubeconfig().to_path_buf()),
            "--stores".into(),
            path(stores),
            "--state-dir".into(),
            path(w.path(&format!("agent-{id}-state"))),
            "--keycloak-url".into(),
            self.keycloak.url().to_owned(),
            "--keycloak-admin-user".into(),
            self.keycloak.admin_user().to_owned(),
            "--volume-reader".into(),
            "velero".into(),
            "--capacity-bytes".into(),
            (1u64 << 40).to_string(),
        ];
        if export {
            args.push("--keycloak-export-command".into());
            args.push(path(self.keycloak.export_command().to_path_buf()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        w.agent_with_env(
            id,
            &args,
            &[(
                "FERRY_KEYCLOAK_ADMIN_PASSWORD",
                self.keycloak.admin_password(),
            )],
        )
    }

    /// The logs a failing test shows: the control plane's, Velero's, Keycloak's.
    pub fn log_tails(&self) -> String {
        format!(
            "=== cluster {}\n{}\n{}\n{}",
            self.id,
            self.cluster.log_tails(),
            self.velero.log_tail(),
            self.keycloak.log_tail()
        )
    }
}
