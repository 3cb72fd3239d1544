//! The coordinator's chart in its high-availability mode (docs/ha.md) on a
//! real control plane (testkit's `RealCluster`, real Helm): it installs into
//! a namespace enforcing the `restricted` Pod Security level with the
//! PostgreSQL URL taken from a Secret, runs two replicas without a volume,
//! and has a PodDisruptionBudget the API server accepts.
//!
//! What this cannot show: KWOK plays the kubelets, so no container runs and
//! every pod reports Ready; readiness following leadership is shown by
//! `coordinator_ha.rs` on real processes instead.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_testkit::kube::{RealCluster, realstack_binary};
use ferry_tests::eventually;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, PostParams};
use serde_json::json;

const NS: &str = "ferry";

fn helm(cluster: &RealCluster, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(realstack_binary("helm")?)
        .args(args)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .env("HELM_CACHE_HOME", cluster.dir().join("helm-cache"))
        .env("HELM_CONFIG_HOME", cluster.dir().join("helm-config"))
        .env("HELM_DATA_HOME", cluster.dir().join("helm-data"))
        .output()?;
    if !out.status.success() {
        bail!(
            "helm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/charts/ferry-coordinator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_chart_runs_replicas_on_postgres_from_a_secret() -> anyhow::Result<()> {
    let cluster = RealCluster::start().await?;
    let client = cluster.client().await?;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": NS, "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest"}},
            }))?,
        )
        .await?;
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "ferry-db"},
                "stringData": {"url": "postgres://ferry@db:5432/ferry", "password": "pw"},
            }))?,
        )
        .await?;
    let chart = chart().display().to_string();
    helm(
        &cluster,
        &[
            "install",
            "ferry",
            &chart,
            "--namespace",
            NS,
            "--set",
            "postgres.secretName=ferry-db",
        ],
    )?;

    let deployment = Api::<Deployment>::namespaced(client.clone(), NS)
        .get("ferry-coordinator")
        .await?;
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(2));
    let pod_spec = spec.template.spec.context("no pod spec")?;
    let container = pod_spec.containers.first().context("no container")?;
    let env = container.env.clone().unwrap_or_default();
    let from_secret = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.secret_key_ref.as_ref())
            .map(|s| (s.name.clone(), s.key.clone()))
    };
    assert_eq!(
        from_secret("FERRY_STORE"),
        Some(("ferry-db".to_string(), "url".to_string()))
    );
    assert_eq!(
        from_secret("FERRY_STORE_PASSWORD"),
        Some(("ferry-db".to_string(), "password".to_string()))
    );
    let args = container.args.clone().unwrap_or_default();
    assert!(args.iter().any(|a| a.starts_with("--lease=")), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--data-dir")),
        "{args:?}"
    );
    let readiness = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .map(|h| h.path.clone());
    assert_eq!(readiness, Some(Some("/readyz".to_string())));

    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), NS)
        .get("ferry-coordinator")
        .await?;
    let pdb_spec = pdb.spec.context("no PDB spec")?;
    assert_eq!(
        pdb_spec.unhealthy_pod_eviction_policy.as_deref(),
        Some("AlwaysAllow")
    );
    assert!(pdb_spec.max_unavailable.is_some());
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .list(&Default::default())
        .await?;
    assert!(claims.items.is_empty(), "replicas keep no volume");

    // Both replicas are admitted under the restricted profile.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    eventually(Duration::from_secs(60), "two coordinator pods", || async {
        let n = pods.list(&Default::default()).await.ok()?.items.len();
        (n == 2).then_some(())
    })
    .await?;
    Ok(())
}
