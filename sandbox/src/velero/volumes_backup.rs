//! The file-system part of a backup: each backed-up PVC's volume goes into
//! the namespace's repository, recorded as a `PodVolumeBackup`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::BACKUP_NAME_LABEL;
use super::clock::now_rfc3339;
use super::controller::Ctx;
use super::error::Result;
use super::location::Location;
use super::meta::{name, namespace, str_at};
use super::repo::Repo;
use super::results::Journal;
use super::tarball::TarItem;

/// What the volume backups produced, for the backup's metadata files.
#[derive(Debug, Default)]
pub(crate) struct VolumeBackups {
    pub pod_volume_backups: Vec<Value>,
    pub volume_info: Vec<Value>,
}

/// Snapshots every PVC among `items`. A volume that cannot be backed up is
/// an error of the backup (PartiallyFailed), not the end of it; a bucket
/// that cannot be written is.
pub(crate) async fn back_up_volumes(
    ctx: &Ctx,
    backup: &Value,
    location: &Location,
    items: &[TarItem],
    journal: &mut Journal,
) -> Result<VolumeBackups> {
    let backup_name = name(backup).to_owned();
    let velero_ns = namespace(backup).unwrap_or_default().to_owned();
    let mut out = VolumeBackups::default();
    let mut repos: BTreeMap<String, Repo<'_>> = BTreeMap::new();
    for pvc in items.iter().filter(|i| i.dir == "persistentvolumeclaims") {
        let Some(ns) = pvc.namespace.as_deref() else {
            continue;
        };
        if !repos.contains_key(ns) {
            repos.insert(ns.to_owned(), Repo::open(&ctx.s3, location, ns).await?);
        }
        let Some(repo) = repos.get_mut(ns) else {
            continue;
        };
        let started = now_rfc3339();
        let snapshot = match repo
            .snapshot(&ctx.volumes, &backup_name, ns, &pvc.name)
            .await
        {
            Ok(s) => s,
            Err(error @ super::VeleroError::S3 { .. }) => return Err(error),
            Err(error) => {
                journal.error(
                    Some(ns),
                    format!("pod volume backup of PVC {ns}/{} failed: {error}", pvc.name),
                );
                continue;
            }
        };
        journal.info(
            "Completed pod volume backup",
            &format!(
                "namespace={ns} pvc={} snapshotID={} bytes={}",
                pvc.name, snapshot.id, snapshot.total_bytes
            ),
        );
        let pod = mounting_pod(items, ns, &pvc.name);
        let record = json!({
            "apiVersion": "velero.io/v1",
            "kind": "PodVolumeBackup",
            "metadata": {
                "name": format!("{backup_name}-{}", &snapshot.id[..8]),
                "namespace": velero_ns,
                "labels": {BACKUP_NAME_LABEL: backup_name, "velero.io/pvc-name": pvc.name},
            },
            "spec": {
                "node": "sandbox",
                "pod": {"kind": "Pod", "namespace": ns, "name": pod},
                "volume": pvc.name,
                "backupStorageLocation": location.name,
                "repoIdentifier": repo.identifier(location.s3_url.as_deref()),
                "uploaderType": "kopia",
                "tags": {"backup": backup_name, "ns": ns, "pod": pod, "volume": pvc.name, "pvc": pvc.name},
            },
            "status": {
                "phase": "Completed",
                "snapshotID": snapshot.id,
                "path": format!("/host_pods/{pod}/volumes/kubernetes.io~csi/{}/mount", pvc.name),
                "startTimestamp": started,
                "completionTimestamp": now_rfc3339(),
                "progress": {"totalBytes": snapshot.total_bytes, "bytesDone": snapshot.total_bytes},
            },
        });
        // As Velero's node agent leaves them: visible with `kubectl get
        // podvolumebackups -n velero`. The backup does not depend on it.
        if let Err(error) = ctx.store.create_object(record.clone()).await {
            tracing::debug!(%error, pvc = %pvc.name, "could not record the PodVolumeBackup object");
        }
        out.pod_volume_backups.push(record);
        out.volume_info.push(json!({
            "pvcName": pvc.name,
            "pvcNamespace": ns,
            "pvName": str_at(&pvc.object, &["spec", "volumeName"]).unwrap_or_default(),
            "backupMethod": "PodVolumeBackup",
            "snapshotDataMoved": false,
            "pvbInfo": {"snapshotHandle": snapshot.id, "size": snapshot.total_bytes, "uploaderType": "kopia",
                         "volumeName": pvc.name, "podName": pod, "podNamespace": ns},
        }));
    }
    Ok(out)
}

/// The pod that mounts the claim: a Pod among the items, else the first
/// replica of the workload whose template mounts it (no kubelet runs pods
/// here), else the claim's own name.
fn mounting_pod(items: &[TarItem], ns: &str, claim: &str) -> String {
    let mounts = |spec: Option<&Value>| {
        spec.and_then(|s| s.get("volumes"))
            .and_then(Value::as_array)
            .is_some_and(|vols| {
                vols.iter()
                    .any(|v| str_at(v, &["persistentVolumeClaim", "claimName"]) == Some(claim))
            })
    };
    let in_ns = items.iter().filter(|i| i.namespace.as_deref() == Some(ns));
    for item in in_ns {
        match item.dir.as_str() {
            "pods" if mounts(item.object.get("spec")) => return item.name.clone(),
            "deployments.apps" | "statefulsets.apps"
                if mounts(item.object.pointer("/spec/template/spec")) =>
            {
                return format!("{}-0", item.name);
            }
            _ => {}
        }
    }
    claim.to_owned()
}
