//! The registry's volume claims, each measured for verification.
//!
//! The agent cannot mount a claim itself. By default it starts a reader
//! pod per claim: its own image, the claim mounted read-only, `ferry-agent
//! volume-digest /data` under the restricted security context; the pod's
//! termination message (readable from its status, no `pods/log`) carries
//! files, bytes and digest. Where no pod can read a claim (no kubelet, as in
//! the real tier), `--volume-reader velero` reports the totals of Velero's
//! own PodVolumeBackups (source) and PodVolumeRestores (target) instead.
//! A PGO data volume is neither: its instance writes to it as soon as it
//! starts on the target, so the database lines prove it.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_common::pb::{self, volume_inventory::Measure};
use ferry_common::volume::VolumeSummary;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::cluster::{list_all, resource};
use super::error::{Result, StepError, kube_err};
use super::{Step, holders};
use crate::config::VolumeReader;
use crate::velero::{GROUP, VELERO_NAMESPACE, VERSION};

/// Reader pods at once.
const READERS: usize = 4;
/// Marks Ferry's reader pods (leftovers of a crash are removed by it).
const READER_LABEL: &str = "ferry.io/volume-reader";
/// Where the claim is mounted in the reader pod.
const MOUNT: &str = "/data";
/// PGO's labels on a PostgresCluster's data volume.
const PGO_CLUSTER_LABEL: &str = "postgres-operator.crunchydata.com/cluster";
const PGO_DATA_LABEL: &str = "postgres-operator.crunchydata.com/data";

/// One line per claim of the namespace, sorted by claim name.
pub(super) async fn inventory(
    step: &mut Step<'_>,
    backup: &str,
) -> Result<Vec<pb::VolumeInventory>> {
    let (client, ns) = (step.client.clone(), step.registry);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut claims = list_all(&claims, &format!("volume claims in namespace {ns}")).await?;
    claims.sort_by_key(|c| c.name_any());
    let mut out = Vec::new();
    let mut to_read = Vec::new();
    for claim in claims {
        let labels = claim.labels();
        match (labels.get(PGO_CLUSTER_LABEL), labels.get(PGO_DATA_LABEL)) {
            (Some(cluster), Some(data)) if data == "postgres" => out.push(pb::VolumeInventory {
                pvc: claim.name_any(),
                measure: Some(Measure::Database(cluster.clone())),
            }),
            _ => to_read.push(claim.name_any()),
        }
    }
    let config = &step.ctx.config;
    match config.volume_reader {
        VolumeReader::Pod => {
            remove_readers(&client, ns).await?;
            let nodes = claim_nodes(&client, ns).await?;
            let total = to_read.len() as u64;
            let reader = Reader {
                pods: Api::namespaced(client.clone(), ns),
                ns: ns.to_owned(),
                image: config.volume_reader_image.clone(),
                timeout: config.volume_reader_timeout,
            };
            // Each reader a task of its own: watching a pod deserializes
            // deep, and a task starts on a fresh stack.
            let mut reads = futures::stream::iter(to_read)
                .map(|pvc| {
                    let node = nodes.get(&pvc).cloned();
                    let reader = reader.clone();
                    let what = format!("reading volume claim {ns}/{pvc}");
                    async move {
                        let summary =
                            tokio::spawn(
                                async move { reader.read(&pvc, node).await.map(|s| (pvc, s)) },
                            )
                            .await
                            .map_err(|e| {
                                StepError::State(format!("{what}: the reader task ended: {e}"))
                            })??;
                        Ok::<_, StepError>(summary)
                    }
                })
                .buffer_unordered(READERS);
            let mut done = 0;
            while let Some((pvc, s)) = reads.try_next().await? {
                done += 1;
                step.progress
                    .report(format!("read volume {pvc}"), done, total);
                out.push(pb::VolumeInventory {
                    pvc,
                    measure: Some(Measure::Contents(pb::VolumeContents {
                        files: s.files,
                        bytes: s.bytes,
                        digest: s.digest,
                    })),
                });
            }
        }
        VolumeReader::Velero => {
            let totals = velero_totals(&client, ns, backup).await?;
            for pvc in to_read {
                let velero = totals.get(&pvc).cloned().unwrap_or(pb::VeleroVolume {
                    phase: "absent".into(),
                    ..Default::default()
                });
                out.push(pb::VolumeInventory {
                    pvc,
                    measure: Some(Measure::Velero(velero)),
                });
            }
        }
    }
    out.sort_by(|a, b| a.pvc.cmp(&b.pvc));
    Ok(out)
}

#[derive(Clone)]
struct Reader {
    pods: Api<Pod>,
    ns: String,
    image: String,
    timeout: Duration,
}

impl Reader {
    /// Runs a reader pod over `pvc` and reads its termination message; the
    /// pod is deleted whatever happened.
    async fn read(&self, pvc: &str, node: Option<String>) -> Result<VolumeSummary> {
        let what = format!("the reader pod of volume claim {}/{pvc}", self.ns);
        let pod: Pod = serde_json::from_value(reader_pod(&self.ns, pvc, &self.image, node))
            .map_err(|e| StepError::State(format!("could not build {what}: {e}")))?;
        let pod = self
            .pods
            .create(&PostParams::default(), &pod)
            .await
            .map_err(kube_err("create", &what))?;
        let name = pod.name_any();
        let ended = tokio::time::timeout(
            self.timeout,
            await_condition(self.pods.clone(), &name, |p: Option<&Pod>| {
                p.is_some_and(|p| terminated(p).is_some())
            }),
        )
        .await;
        let last = self.pods.get(&name).await;
        // Best effort: a pod left behind is removed by the next inventory.
        if let Err(error) = self.pods.delete(&name, &DeleteParams::background()).await {
            tracing::warn!(%error, pod = %name, "could not delete a volume reader pod");
        }
        let last = last.map_err(kube_err("read", format!("pod {}/{name}", self.ns)))?;
        match ended {
            Err(_) => Err(StepError::State(format!(
                "{what} ({name}) did not finish within {:?}: {}; check that the claim can be \
                 mounted (a ReadWriteOnce claim in use elsewhere), that image {} can be pulled, \
                 or raise --volume-reader-timeout",
                self.timeout,
                pod_state(&last),
                self.image
            ))),
            Ok(Err(e)) => Err(StepError::State(format!("watching {what} ({name}): {e}"))),
            Ok(Ok(_)) => match terminated(&last) {
                Some((0, message)) => message
                    .trim()
                    .parse()
                    .map_err(|e| StepError::State(format!("{what} ({name}) answered {e}"))),
                Some((code, message)) => Err(StepError::State(format!(
                    "{what} ({name}) failed (exit code {code}): {}",
                    message.trim()
                ))),
                None => Err(StepError::State(format!(
                    "{what} ({name}) ended without a termination message: {}",
                    pod_state(&last)
                ))),
            },
        }
    }
}

/// The reader pod: the claim read-only at [`MOUNT`], OKD's restricted
/// security context (no privilege, no capabilities, default seccomp, any
/// non-root UID the namespace assigns), no service account token. `node`
/// pins it beside a pod already mounting the claim, so a ReadWriteOnce
/// claim in use can be mounted again.
fn reader_pod(ns: &str, pvc: &str, image: &str, node: Option<String>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "ferry-volume-reader-",
            "namespace": ns,
            "labels": {READER_LABEL: "true", "app.kubernetes.io/managed-by": "ferry"},
            "annotations": {"ferry.io/claim": pvc},
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "volume-digest",
                "image": image,
                "command": ["/usr/local/bin/ferry-agent"],
                "args": ["volume-digest", MOUNT],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
                "volumeMounts": [{"name": "data", "mountPath": MOUNT, "readOnly": true}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc, "readOnly": true}}],
        },
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

/// `(exit code, message)` once the reader's container has ended.
fn terminated(pod: &Pod) -> Option<(i32, String)> {
    let status = pod.status.as_ref()?;
    if !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let t = status
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    Some((t.exit_code, t.message.clone().unwrap_or_default()))
}

/// What a pod's status says, for an error.
fn pod_state(pod: &Pod) -> String {
    let Some(status) = &pod.status else {
        return "no status".into();
    };
    let mut parts = vec![format!(
        "phase {}",
        status.phase.as_deref().unwrap_or("unknown")
    )];
    for c in status.conditions.iter().flatten() {
        if c.status != "True"
            && let Some(m) = &c.message
        {
            parts.push(format!("{}: {m}", c.type_));
        }
    }
    for cs in status.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            parts.push(format!(
                "waiting: {} {}",
                w.reason.as_deref().unwrap_or_default(),
                w.message.as_deref().unwrap_or_default()
            ));
        }
    }
    parts.join("; ")
}

/// Removes reader pods an earlier, interrupted inventory left.
async fn remove_readers(client: &Client, ns: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let what = format!("volume reader pods in namespace {ns}");
    let left = pods
        .list(&ListParams::default().labels(&format!("{READER_LABEL}=true")))
        .await
        .map_err(kube_err("list", &what))?;
    for pod in left {
        match pods
            .delete(&pod.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(kube_err("delete", &what)(e)),
        }
    }
    Ok(())
}

/// Claim → node of a pod (not a reader) that mounts it now.
async fn claim_nodes(client: &Client, ns: &str) -> Result<BTreeMap<String, String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut nodes = BTreeMap::new();
    for pod in list_all(&pods, &format!("pods in namespace {ns}")).await? {
        if pod.labels().contains_key(READER_LABEL) {
            continue;
        }
        let Some(spec) = pod.spec else { continue };
        let Some(node) = spec.node_name else { continue };
        for v in spec.volumes.into_iter().flatten() {
            if let Some(c) = v.persistent_volume_claim {
                nodes.insert(c.claim_name, node.clone());
            }
        }
    }
    Ok(nodes)
}

/// Claim → Velero's totals for it: the PodVolumeBackups of `backup`
/// (source), else the PodVolumeRestores of restores of `backup` into
/// `ns` (target).
async fn velero_totals(
    client: &Client,
    ns: &str,
    backup: &str,
) -> Result<BTreeMap<String, pb::VeleroVolume>> {
    let api = |kind, plural| {
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            VELERO_NAMESPACE,
            &resource(GROUP, VERSION, kind, plural),
        )
    };
    let mut out = BTreeMap::new();
    if backup.is_empty() {
        return Ok(out);
    }
    let pvbs = api("PodVolumeBackup", "podvolumebackups");
    let lp = ListParams::default().labels(&format!("velero.io/backup-name={backup}"));
    let what = format!("PodVolumeBackups of backup {backup}");
    // Velero labels a PodVolumeBackup with its claim's uid.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let by_uid: BTreeMap<String, String> =
        list_all(&claims, &format!("volume claims in namespace {ns}"))
            .await?
            .into_iter()
            .filter_map(|c| Some((c.uid()?, c.name_any())))
            .collect();
    for pvb in pvbs.list(&lp).await.map_err(kube_err("list", &what))? {
        let v = serde_json::to_value(&pvb).unwrap_or_default();
        if str_at(&v, "/spec/pod/namespace") != ns {
            continue;
        }
        let pvc = pvb
            .labels()
            .get("velero.io/pvc-uid")
            .and_then(|uid| by_uid.get(uid).cloned())
            .or_else(|| holders::claim_of(str_at(&v, "/spec/pod/name")).map(str::to_owned))
            .unwrap_or_else(|| match str_at(&v, "/spec/tags/pvc") {
                "" => str_at(&v, "/spec/volume").to_owned(),
                pvc => pvc.to_owned(),
            });
        out.insert(pvc, totals(&v));
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let restores = api("Restore", "restores");
    let pvrs = api("PodVolumeRestore", "podvolumerestores");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let what = "PodVolumeRestores".to_string();
    for pvr in list_all(&pvrs, &what).await? {
        let v = serde_json::to_value(&pvr).unwrap_or_default();
        let restore = pvr.labels().get("velero.io/restore-name").cloned();
        if str_at(&v, "/spec/pod/namespace") != ns {
            continue;
        }
        let Some(restore) = restore else { continue };
        let of_backup = match restores.get(&restore).await {
            Ok(r) => r.data["spec"]["backupName"].as_str() == Some(backup),
            Err(kube::Error::Api(s)) if s.code == 404 => false,
            Err(e) => return Err(kube_err("read", format!("Velero Restore {restore}"))(e)),
        };
        if !of_backup {
            continue;
        }
        let (pod, volume) = (str_at(&v, "/spec/pod/name"), str_at(&v, "/spec/volume"));
        // A volume holder is gone once its phase ended; its name tells.
        if let Some(pvc) = holders::claim_of(pod) {
            out.insert(pvc.to_owned(), totals(&v));
            continue;
        }
        let pvc = match pods.get(pod).await {
            Ok(p) => p
                .spec
                .and_then(|s| s.volumes)
                .into_iter()
                .flatten()
                .find(|vol| vol.name == volume)
                .and_then(|vol| vol.persistent_volume_claim)
                .map(|c| c.claim_name),
            Err(_) => None,
        };
        out.insert(pvc.unwrap_or_else(|| volume.to_owned()), totals(&v));
    }
    Ok(out)
}

fn totals(v: &Value) -> pb::VeleroVolume {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    pb::VeleroVolume {
        phase: str_at(v, "/status/phase").to_owned(),
        total_bytes: n("/status/progress/totalBytes"),
        bytes_done: n("/status/progress/bytesDone"),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_pod_is_restricted_and_mounts_read_only() -> anyhow::Result<()> {
        let pod: Pod =
            serde_json::from_value(reader_pod("reg", "data", "img:1", Some("n1".into())))?;
        let spec = pod.spec.ok_or_else(|| anyhow::anyhow!("no spec"))?;
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        let c = &spec.containers[0];
        assert_eq!(
            c.args.as_deref(),
            Some(&["volume-digest".to_string(), MOUNT.to_string()][..])
        );
        assert_eq!(
            c.volume_mounts.as_ref().and_then(|m| m[0].read_only),
            Some(true)
        );
        let sc = c
            .security_context
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no context"))?;
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(spec.automount_service_account_token, Some(false));
        Ok(())
    }
}
