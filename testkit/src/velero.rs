//! Velero's real server for a test's real control plane, built from its Go
//! module by `scripts/realstack` with the AWS object-store plugin.
//!
//! Real: the `velero server` process — Backup and Restore controllers,
//! backup sync, BSL validation, the kopia repository it creates in the
//! bucket, and the AWS plugin talking S3 to the BSL's endpoint. Stood in
//! for: the node-agent DaemonSet's pods exist (KWOK reports them Running
//! on every fake node, so Velero hands out PodVolumeBackups), but what they
//! would do is done by `ferry_sandbox`'s node-agent stand-in, which the
//! test starts beside this.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

use crate::free_port;
use crate::kube::process::Process;
use crate::kube::{RealCluster, realstack_bin_dir, realstack_binary};
use crate::netns::Netns;

/// Velero's namespace.
pub const NAMESPACE: &str = "velero";

/// A running `velero server`; killed on drop.
pub struct RealVelero {
    process: Process,
    /// Dropped after the process (fields drop in order).
    _netns: Netns,
    dir: tempfile::TempDir,
}

/// `velero install --crds-only --dry-run -o yaml`, applied with the real
/// kubectl: every CRD this Velero version serves, as it ships them.
pub fn install_crds(cluster: &RealCluster) -> anyhow::Result<()> {
    let velero = realstack_binary("velero")?;
    let yaml = std::process::Command::new(&velero)
        .args(["install", "--crds-only", "--dry-run", "-o", "yaml"])
        .output()
        .with_context(|| format!("running {}", velero.display()))?;
    if !yaml.status.success() {
        bail!(
            "velero install --crds-only failed: {}",
            String::from_utf8_lossy(&yaml.stderr)
        );
    }
    let file = cluster.dir().join("velero-crds.yaml");
    std::fs::write(&file, &yaml.stdout).context("writing Velero's CRDs")?;
    let applied = std::process::Command::new(realstack_binary("kubectl")?)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["apply", "--server-side", "-f"])
        .arg(&file)
        .output()
        .context("running kubectl apply")?;
    if !applied.status.success() {
        bail!(
            "applying Velero's CRDs failed: {}",
            String::from_utf8_lossy(&applied.stderr)
        );
    }
    let established = std::process::Command::new(realstack_binary("kubectl")?)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["wait", "--for=condition=Established", "--timeout=60s", "-f"])
        .arg(&file)
        .output()
        .context("running kubectl wait")?;
    if !established.status.success() {
        bail!(
            "Velero's CRDs did not become Established: {}",
            String::from_utf8_lossy(&established.stderr)
        );
    }
    Ok(())
}

/// The loopback ports Velero's server talks to: its API server's and the
/// S3 endpoints (`s3Url`) of the cluster's backup storage locations.
async fn reached_ports(cluster: &RealCluster, client: &kube::Client) -> anyhow::Result<Vec<u16>> {
    let port_of = |url: &str| -> anyhow::Result<u16> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("reading the address {url}"))?;
        uri.port_u16().with_context(|| {
            format!("{url} names no port; the real tier's servers listen on loopback ports")
        })
    };
    let mut ports = vec![port_of(cluster.server())?];
    let bsls: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation"),
            "backupstoragelocations",
        ),
    );
    for bsl in bsls
        .list(&Default::default())
        .await
        .context("listing Velero's backup storage locations")?
    {
        if let Some(url) = bsl.data["spec"]["config"]["s3Url"].as_str() {
            ports.push(port_of(url).with_context(|| {
                format!(
                    "the s3Url of backup storage location {}",
                    bsl.metadata.name.as_deref().unwrap_or("?")
                )
            })?);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

impl RealVelero {
    /// Creates the node-agent DaemonSet (its pods are KWOK's) and starts
    /// `velero server` against `cluster`. The `velero` namespace, the BSL and
    /// its credentials Secret must exist (the fixture seeds them).
    pub async fn start(cluster: &RealCluster) -> anyhow::Result<Self> {
        let client = cluster.client().await?;
        let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
        let labels = json!({"name": "node-agent", "role": "node-agent"});
        let ds: DaemonSet = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "node-agent", "namespace": NAMESPACE, "labels": labels,
                         "annotations": {"ferry.io/stand-in": "no kubelet runs these pods; Ferry's node-agent stand-in serves their PodVolumeBackups and PodVolumeRestores"}},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                             "spec": {"containers": [{"name": "node-agent", "image": "velero/velero"}]}},
            },
        }))?;
        match daemonsets.create(&PostParams::default(), &ds).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e).context("creating the node-agent DaemonSet"),
        }
        let dir = tempfile::Builder::new()
            .prefix("ferry-velero-")
            .tempdir()
            .context("creating Velero's directory")?;
        let plugins: PathBuf = realstack_bin_dir()
            .parent()
            .map(|p| p.join("velero-plugins"))
            .context("the real stack's directory")?;
        let args = vec![
            "server".to_string(),
            format!("--kubeconfig={}", cluster.kubeconfig().display()),
            format!("--plugin-dir={}", plugins.display()),
            "--uploader-type=kopia".into(),
            "--backup-sync-period=3s".into(),
            "--store-validation-frequency=5s".into(),
            "--fs-backup-timeout=5m".into(),
            format!("--metrics-address=127.0.0.1:{}", free_port()?),
            format!("--profiler-address=127.0.0.1:{}", free_port()?),
            "--log-level=info".into(),
        ];
        // Its own network namespace: Velero's controller manager always
        // serves metrics on :8080, so servers of two clusters would collide.
        // It reaches its API server and its locations' S3 endpoints through
        // loopback ports forwarded into the namespace.
        let mut netns = Netns::create("velero")?;
        for port in reached_ports(cluster, &client).await? {
            netns.forward(port)?;
        }
        let mut command = netns.command(&realstack_binary("velero")?);
        // Velero's namespace comes from the environment (default `velero`).
        command.args(&args).env("VELERO_NAMESPACE", NAMESPACE);
        let process = Process::spawn_command(dir.path(), "velero", command)?;
        let mut velero = RealVelero {
            process,
            _netns: netns,
            dir,
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(status) = velero.process.exited()? {
            bail!(
                "velero server exited at start ({status}):\n{}",
                velero.log_tail()
            );
        }
        Ok(velero)
    }

    /// The end of the server's log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        self.process.tail()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("velero.log")
    }
}

/// Waits until Velero's server has validated backup storage location
/// `name` (phase Available, validated at or after `since`, which is taken
/// a second early: Velero writes whole seconds).
pub async fn wait_validated(
    velero: &RealVelero,
    client: &kube::Client,
    name: &str,
    since: jiff::Timestamp,
    timeout: Duration,
) -> anyhow::Result<()> {
    let bsls: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation"),
            "backupstoragelocations",
        ),
    );
    let since = since - jiff::SignedDuration::from_secs(1);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let bsl = bsls.get(name).await?;
        let validated = bsl.data["status"]["lastValidationTime"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if bsl.data["status"]["phase"] == "Available" && validated.is_some_and(|t| t >= since) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "Velero did not validate backup storage location {name} within {timeout:?}: {}\n{}",
                bsl.data["status"],
                velero.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
