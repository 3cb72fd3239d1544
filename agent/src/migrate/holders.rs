//! Volume holders: Velero's file-system backup reads a volume through a
//! running pod that mounts it (its node-agent reads the pod's volume
//! directory on that node), and restores one into the pod that mounts it
//! again. A quiesced registry has no pods, so its claims would travel
//! without their data. Before the backup the agent starts one holder pod
//! per claim that no running pod mounts — its own image, the claim mounted
//! read-only, `ferry-agent hold`, under the restricted security context —
//! and removes them once the backup has ended. The holders travel in the
//! backup; on the target the restore phase `volumes` brings them back (and
//! with them Velero's PodVolumeRestores), and the step removes them once
//! the data is in place, before any workload starts on the claims.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::cluster::list_all;
use super::error::{Result, StepError, kube_err};

use ferry_common::labels::{APP_NAME as APP_LABEL, VOLUME_HOLDER_APP as HOLDER_APP};
/// Where the claim is mounted in a holder.
const MOUNT: &str = "/data";

const HOLDER_PREFIX: &str = "ferry-hold-";

/// The holder of claim `pvc` (pod names are DNS subdomains, up to 253).
fn holder_name(pvc: &str) -> String {
    let mut name = format!("{HOLDER_PREFIX}{pvc}");
    name.truncate(253);
    name
}

/// The claim a holder pod named `pod` held (the pod may be gone: Velero's
/// PodVolumeBackups and PodVolumeRestores name it); `None` for any other
/// pod. A claim name longer than 242 characters is cut in the pod's name.
pub(super) fn claim_of(pod: &str) -> Option<&str> {
    pod.strip_prefix(HOLDER_PREFIX).filter(|c| !c.is_empty())
}

fn holder(pvc: &str, image: &str, migration: &str) -> Result<Pod> {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": holder_name(pvc),
            "labels": {
                APP_LABEL: HOLDER_APP,
                "app.kubernetes.io/managed-by": "ferry",
                "ferry.io/migration": migration,
            },
            "annotations": {
                "ferry.io/holds": pvc,
                // Velero's opt-in, for a Velero that does not back up every
                // pod volume by default.
                "backup.velero.io/backup-volumes": "data",
            },
        },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "hold",
                "image": image,
                "args": ["hold"],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                              "limits": {"cpu": "100m", "memory": "64Mi"}},
                "volumeMounts": [{"name": "data", "mountPath": MOUNT, "readOnly": true}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc, "readOnly": true}}],
        },
    }))
    .map_err(|e| StepError::Invalid(format!("the holder pod of claim {pvc}: {e}")))
}

/// Claims of `namespace` mounted by a running pod other than a holder.
async fn mounted(pods: &Api<Pod>, namespace: &str) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for pod in list_all(pods, &format!("pods in namespace {namespace}")).await? {
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if !running || pod.labels().get(APP_LABEL).map(String::as_str) == Some(HOLDER_APP) {
            continue;
        }
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if let Some(c) = &v.persistent_volume_claim {
                out.insert(c.claim_name.clone());
            }
        }
    }
    Ok(out)
}

/// Starts a holder for every claim of `namespace` that no running pod
/// mounts and waits until each runs; the number of holders.
pub(super) async fn hold(
    client: &Client,
    namespace: &str,
    image: &str,
    migration: &str,
    timeout: Duration,
) -> Result<u32> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let mounted = mounted(&pods, namespace).await?;
    let mut held = Vec::new();
    for claim in list_all(&claims, &format!("volume claims in namespace {namespace}")).await? {
        let pvc = claim.name_any();
        if mounted.contains(&pvc) {
            continue;
        }
        let pod = holder(&pvc, image, migration)?;
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            // A repeat of the step: the holder is there already.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                return Err(kube_err(
                    "create",
                    format!("holder pod of claim {namespace}/{pvc}"),
                )(e));
            }
        }
        held.push(holder_name(&pvc));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    for name in &held {
        loop {
            let pod = pods
                .get(name)
                .await
                .map_err(kube_err("read", format!("holder pod {namespace}/{name}")))?;
            let status = pod.status.unwrap_or_default();
            match status.phase.as_deref() {
                Some("Running") => break,
                Some(phase @ ("Failed" | "Succeeded")) => {
                    return Err(StepError::State(format!(
                        "holder pod {namespace}/{name} ended ({phase}) before the backup: {}; \
                         read `kubectl -n {namespace} describe pod {name}`",
                        status.message.unwrap_or_default()
                    )));
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StepError::State(format!(
                    "holder pod {namespace}/{name} is not running after {timeout:?} (phase {:?}: \
                     {}); Velero's file-system backup reads the claim through it — check that \
                     the image can be pulled (--volume-reader-image) and that the claim can be \
                     attached, with `kubectl -n {namespace} describe pod {name}`",
                    status.phase.unwrap_or_default(),
                    status.message.unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    tracing::info!(namespace, holders = held.len(), "volume holders running");
    Ok(held.len() as u32)
}

/// Removes the holders of `namespace` (none: nothing to do).
pub(super) async fn release(client: &Client, namespace: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{APP_LABEL}={HOLDER_APP}");
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&selector),
    )
    .await
    .map_err(kube_err(
        "delete",
        format!("the volume holder pods in namespace {namespace}"),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_mounts_its_claim_read_only_under_the_restricted_profile() -> anyhow::Result<()> {
        let pod = holder("gerrit-data", "img:1", "m-1")?;
        assert_eq!(pod.name_any(), "ferry-hold-gerrit-data");
        assert_eq!(
            pod.labels().get(APP_LABEL).map(String::as_str),
            Some(HOLDER_APP)
        );
        let spec = pod.spec.unwrap_or_default();
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("img:1"));
        assert_eq!(c.args, Some(vec!["hold".to_owned()]));
        let sc = c.security_context.clone().unwrap_or_default();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let claim = spec.volumes.unwrap_or_default()[0]
            .persistent_volume_claim
            .clone()
            .map(|c| (c.claim_name, c.read_only));
        assert_eq!(claim, Some(("gerrit-data".into(), Some(true))));
        assert_eq!(holder_name(&"x".repeat(300)).len(), 253);
        assert_eq!(claim_of("ferry-hold-gerrit-data"), Some("gerrit-data"));
        assert_eq!(claim_of("gerrit-0"), None);
        Ok(())
    }
}
