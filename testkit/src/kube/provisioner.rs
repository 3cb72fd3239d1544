//! **Stand-in for a CSI driver's external provisioner.** No CSI driver runs
//! on a KWOK cluster, so a claim nothing pre-bound (the chart's state claim,
//! a claim Velero restores without its volume) would stay Pending and its
//! pod unscheduled. This watches claims and, where a real provisioner would
//! act — a claim of a class with a provisioner, waiting for a volume, and
//! for `WaitForFirstConsumer` classes once the scheduler picked a node —
//! creates a PersistentVolume bound to it, as the provisioner would. The
//! volume handle names nothing: no data lives behind it.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

/// The annotation the scheduler sets on a `WaitForFirstConsumer` claim.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// Runs until the task is aborted.
pub(crate) async fn run(client: kube::Client) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let mut events = watcher(claims, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(claim) = event else { continue };
        // Nothing sensible to do with a failure here but try again on the
        // claim's next event; the claim stays Pending and the test says so.
        let _ = provision(&client, &claim).await;
    }
}

async fn provision(client: &kube::Client, claim: &PersistentVolumeClaim) -> kube::Result<()> {
    let spec = claim.spec.clone().unwrap_or_default();
    let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
    if !pending || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
        return Ok(());
    }
    let Some(class_name) = spec.storage_class_name.clone() else {
        return Ok(());
    };
    let classes: Api<StorageClass> = Api::all(client.clone());
    let Some(class) = classes.get_opt(&class_name).await? else {
        return Ok(());
    };
    let annotations = claim.metadata.annotations.clone().unwrap_or_default();
    let waits_for_consumer = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    if waits_for_consumer && !annotations.contains_key(SELECTED_NODE) {
        return Ok(());
    }
    let (Some(ns), Some(name), Some(uid)) = (
        claim.metadata.namespace.as_deref(),
        claim.metadata.name.as_deref(),
        claim.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    let size = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned())
        .map(|q| q.0)
        .unwrap_or_else(|| "1Gi".into());
    let labels = BTreeMap::from([("ferry.io/stand-in".to_owned(), "csi-provisioned".to_owned())]);
    let volume: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pvc-{uid}"), "labels": labels,
                     "annotations": {"pv.kubernetes.io/provisioned-by": class.provisioner}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": class_name,
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": ns, "name": name, "uid": uid},
            "csi": {"driver": class.provisioner, "volumeHandle": format!("ferry-stand-in-{uid}")},
        },
    }))
    .map_err(kube::Error::SerdeError)?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    match volumes.create(&PostParams::default(), &volume).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
