//! **Stand-in for Velero's node-agent** on a KWOK cluster (the real tier).
//!
//! A real node-agent runs beside a kubelet and reads a pod's mounted
//! volumes from the node; KWOK runs no kubelet and mounts nothing, so no
//! real node-agent can serve Velero's file-system backups there. This one
//! takes the node-agent's part of the protocol with the real Velero server:
//! it watches `PodVolumeBackup`s and `PodVolumeRestore`s in Velero's
//! namespace and completes them, copying the claim's data between the
//! sandbox's volume directories and the same file-system repository the
//! sandbox's Velero writes (`repo.rs`, under `kopia/<namespace>/` of the
//! BSL bucket, beside the real kopia repository Velero creates there).
//! Everything else — the Backup and Restore, which volumes to back up, the
//! records in the bucket, the restore's init container and waiting for the
//! volumes — is the real Velero server's doing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::error::{Result, VeleroError};
use super::location::Location;
use super::repo::{self, Repo};
use super::volumes::Volumes;
use crate::s3::S3Server;

/// Velero's namespace, where its records live.
const NAMESPACE: &str = super::VELERO_NAMESPACE;

/// A running stand-in; dropping it stops the watch.
pub struct NodeAgentStandIn {
    tasks: Vec<JoinHandle<()>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Drop for NodeAgentStandIn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone)]
struct Ctx {
    client: kube::Client,
    s3: Arc<S3Server>,
    volumes: Volumes,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Ctx {
    fn problem(&self, text: String) {
        tracing::warn!(problem = %text, "node-agent stand-in");
        if let Ok(mut p) = self.problems.lock() {
            p.push(text);
        }
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("velero.io", "v1", kind), plural)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl NodeAgentStandIn {
    /// Serves the PodVolumeBackups and PodVolumeRestores of the cluster
    /// behind `client`, with `s3` as the BSL's object store and `volumes` as
    /// the claims' contents.
    pub fn start(client: kube::Client, s3: Arc<S3Server>, volumes: Volumes) -> Self {
        let problems = Arc::new(Mutex::new(Vec::new()));
        let ctx = Ctx {
            client,
            s3,
            volumes,
            problems: problems.clone(),
        };
        let tasks = [
            ("PodVolumeBackup", "podvolumebackups"),
            ("PodVolumeRestore", "podvolumerestores"),
        ]
        .into_iter()
        .map(|(kind, plural)| tokio::spawn(serve(ctx.clone(), kind, plural)))
        .collect();
        NodeAgentStandIn { tasks, problems }
    }

    /// What went wrong so far (a failed volume, a watch error), for a
    /// failing test's message.
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

async fn serve(ctx: Ctx, kind: &'static str, plural: &'static str) {
    let ar = resource(kind, plural);
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), NAMESPACE, &ar);
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let obj = match event {
            Ok(obj) => obj,
            Err(e) => {
                ctx.problem(format!("watching {plural}: {e}"));
                continue;
            }
        };
        let obj = serde_json::to_value(&obj).unwrap_or_default();
        let phase = str_at(&obj, "/status/phase");
        if !(phase.is_empty() || phase == "New") {
            continue;
        }
        let name = str_at(&obj, "/metadata/name").to_owned();
        let started = jiff::Timestamp::now().to_string();
        let status = match if kind == "PodVolumeBackup" {
            back_up(&ctx, &obj).await
        } else {
            restore(&ctx, &obj).await
        } {
            Ok(mut status) => {
                status["startTimestamp"] = json!(started);
                status["completionTimestamp"] = json!(jiff::Timestamp::now().to_string());
                status
            }
            Err(e) => {
                ctx.problem(format!("{kind} {name}: {e}"));
                json!({"phase": "Failed", "message": e.to_string(), "startTimestamp": started,
                       "completionTimestamp": jiff::Timestamp::now().to_string()})
            }
        };
        let patch = Patch::Merge(json!({ "status": status }));
        // Velero's PodVolumeBackup and PodVolumeRestore CRDs have no status
        // subresource: the status is written with the object.
        if let Err(e) = api.patch(&name, &PatchParams::default(), &patch).await {
            ctx.problem(format!("reporting {kind} {name}: {e}"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The claim a pod mounts as `volume`.
async fn claim_of(ctx: &Ctx, namespace: &str, pod: &str, volume: &str) -> Result<String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let what = format!("pod {namespace}/{pod}");
    let pod = pods.get(pod).await.map_err(|e| VeleroError::StandIn {
        what: what.clone(),
        message: e.to_string(),
    })?;
    pod.spec
        .and_then(|s| s.volumes)
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == volume)
        .and_then(|v| v.persistent_volume_claim)
        .map(|c| c.claim_name)
        .ok_or_else(|| VeleroError::StandIn {
            what,
            message: format!("it mounts no claim as volume {volume:?}"),
        })
}

async fn location(ctx: &Ctx, name: &str) -> Result<Location> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        NAMESPACE,
        &resource("BackupStorageLocation", "backupstoragelocations"),
    );
    let bsl = api.get(name).await.map_err(|e| VeleroError::StandIn {
        what: format!("backup storage location {NAMESPACE}/{name}"),
        message: e.to_string(),
    })?;
    Location::from_object(&serde_json::to_value(&bsl).unwrap_or_default())
}

async fn back_up(ctx: &Ctx, pvb: &Value) -> Result<Value> {
    let (ns, pod, volume) = (
        str_at(pvb, "/spec/pod/namespace"),
        str_at(pvb, "/spec/pod/name"),
        str_at(pvb, "/spec/volume"),
    );
    let backup = str_at(pvb, "/spec/tags/backup");
    let pvc = claim_of(ctx, ns, pod, volume).await?;
    let location = location(ctx, str_at(pvb, "/spec/backupStorageLocation")).await?;
    let mut repo = Repo::open(&ctx.s3, &location, ns).await?;
    let snapshot = repo.snapshot(&ctx.volumes, backup, ns, &pvc).await?;
    Ok(json!({
        "phase": "Completed",
        "snapshotID": snapshot.id,
        "path": format!("/host_pods/{}/volumes/{volume}", str_at(pvb, "/spec/pod/uid")),
        "progress": {"totalBytes": snapshot.total_bytes, "bytesDone": snapshot.total_bytes},
        "message": "served by Ferry's node-agent stand-in (KWOK runs no kubelet)",
    }))
}

async fn restore(ctx: &Ctx, pvr: &Value) -> Result<Value> {
    let (ns, pod, volume) = (
        str_at(pvr, "/spec/pod/namespace"),
        str_at(pvr, "/spec/pod/name"),
        str_at(pvr, "/spec/volume"),
    );
    let pvc = claim_of(ctx, ns, pod, volume).await?;
    let location = location(ctx, str_at(pvr, "/spec/backupStorageLocation")).await?;
    let source_ns = match str_at(pvr, "/spec/sourceNamespace") {
        "" => ns,
        s => s,
    };
    let snapshot = repo::load(
        &ctx.s3,
        &location,
        source_ns,
        str_at(pvr, "/spec/snapshotID"),
    )
    .await?;
    let written = repo::restore(&ctx.s3, &location, &snapshot, &ctx.volumes, ns, &pvc).await?;
    Ok(json!({
        "phase": "Completed",
        "progress": {"totalBytes": snapshot.total_bytes, "bytesDone": written},
        "message": "served by Ferry's node-agent stand-in (KWOK runs no kubelet)",
    }))
}
