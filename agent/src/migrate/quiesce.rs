//! Quiesce: every Deployment and StatefulSet of the registry scaled to zero,
//! its replicas recorded in an annotation first (in the same write), so that
//! a repeat never records the zero and `undo` scales back to what ran. The
//! annotation travels in the backup: on the target, `undo` brings the
//! restored workloads up. Quiescing ends once no pod mounts the registry's
//! volume claims any more: what the backup reads is no longer written.

use std::time::Duration;

use ferry_common::pb;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::Step;
use super::cluster::{list_all, workload_kinds};
use super::error::{Result, StepError, kube_err};

/// Where quiesce records a workload's replicas.
pub const REPLICAS_ANNOTATION: &str = "ferry.io/replicas";

/// Writes lost to a concurrent change are retried this many times.
const ATTEMPTS: usize = 5;

pub(super) async fn run(step: &Step<'_>, undo: bool) -> Result<pb::QuiesceReport> {
    let report = scale(&step.client, step.registry, undo).await?;
    if !undo {
        writers_gone(&step.client, step.registry, step.ctx.config.ready_timeout).await?;
    }
    Ok(report)
}

/// Waits until no pod of `namespace` but Ferry's own mounts a volume claim:
/// scaled to zero, a workload's pods still run until they have stopped,
/// and a backup taken meanwhile would read volumes still being written.
async fn writers_gone(client: &Client, namespace: &str, timeout: Duration) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let writers: Vec<String> = list_all(&pods, &format!("pods in namespace {namespace}"))
            .await?
            .into_iter()
            .filter(|p| {
                let ferry = p
                    .labels()
                    .get("app.kubernetes.io/managed-by")
                    .map(String::as_str)
                    == Some("ferry");
                let mounts = p
                    .spec
                    .iter()
                    .flat_map(|s| s.volumes.iter().flatten())
                    .any(|v| v.persistent_volume_claim.is_some());
                let ended = matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                );
                !ferry && mounts && !ended
            })
            .map(|p| p.name_any())
            .collect();
        if writers.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StepError::State(format!(
                "pods {} of namespace {namespace} still mount its volume claims {timeout:?} after                  its workloads were scaled to zero; a backup now would read volumes still being                  written — find what keeps them (`kubectl -n {namespace} get pod <name> -o                  yaml`: owner, finalizers) and run the step again",
                writers.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Quiesces (or with `undo` restores) the workloads of `namespace`.
pub(crate) async fn scale(
    client: &Client,
    namespace: &str,
    undo: bool,
) -> Result<pb::QuiesceReport> {
    let mut report = pb::QuiesceReport::default();
    for (word, ar) in workload_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        let what = format!("{}s in namespace {namespace}", ar.kind.to_lowercase());
        for workload in list_all(&api, &what).await? {
            report.workloads += 1;
            if scale_one(&api, namespace, word, workload, undo).await? {
                report.changed += 1;
            }
        }
    }
    tracing::info!(
        namespace,
        undo,
        workloads = report.workloads,
        changed = report.changed,
        "workloads scaled"
    );
    Ok(report)
}

/// Scales one workload; `true` when it was changed.
async fn scale_one(
    api: &Api<DynamicObject>,
    namespace: &str,
    word: &str,
    mut workload: DynamicObject,
    undo: bool,
) -> Result<bool> {
    let name = workload.name_any();
    let what = format!("{word} {namespace}/{name}");
    for _ in 0..ATTEMPTS {
        let Some(patch) = patch_for(&workload, undo, &what)? else {
            return Ok(false);
        };
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(true),
            // Changed since read (the patch carries its resourceVersion): read again.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                workload = api.get(&name).await.map_err(kube_err("read", &what))?;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            Err(e) => return Err(kube_err("scale", what)(e)),
        }
    }
    Err(StepError::State(format!(
        "{what} kept changing while Ferry scaled it ({ATTEMPTS} attempts); stop whatever \
         scales it (an autoscaler, an operator) and retry"
    )))
}

/// The merge patch that takes `workload` where the step wants it, if any.
/// It carries the resourceVersion it was computed from, so a concurrent
/// change makes it fail instead of recording a stale count.
fn patch_for(workload: &DynamicObject, undo: bool, what: &str) -> Result<Option<Value>> {
    // Kubernetes' default when spec.replicas is absent.
    let replicas = workload.data["spec"]["replicas"].as_i64().unwrap_or(1);
    let recorded = workload.annotations().get(REPLICAS_ANNOTATION);
    let rv = workload.resource_version();
    let patch = match (undo, recorded) {
        (false, None) => Some(json!({
            "metadata": {"annotations": {REPLICAS_ANNOTATION: replicas.to_string()}, "resourceVersion": rv},
            "spec": {"replicas": 0},
        })),
        (false, Some(_)) if replicas != 0 => Some(json!({
            "metadata": {"resourceVersion": rv},
            "spec": {"replicas": 0},
        })),
        (false, Some(_)) => None,
        (true, Some(value)) => {
            let back: i32 = value.trim().parse().map_err(|_| {
                StepError::State(format!(
                    "{what} has annotation {REPLICAS_ANNOTATION}={value:?}, which is not a \
                     replica count; set it to the replicas it should run with and retry"
                ))
            })?;
            Some(json!({
                "metadata": {"annotations": {REPLICAS_ANNOTATION: null}, "resourceVersion": rv},
                "spec": {"replicas": back},
            }))
        }
        (true, None) => None,
    };
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(replicas: Option<i64>, recorded: Option<&str>) -> anyhow::Result<DynamicObject> {
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bpms", "resourceVersion": "7"}, "spec": {}});
        if let Some(r) = replicas {
            obj["spec"]["replicas"] = json!(r);
        }
        if let Some(a) = recorded {
            obj["metadata"]["annotations"] = json!({REPLICAS_ANNOTATION: a});
        }
        Ok(serde_json::from_value(obj)?)
    }

    #[test]
    fn records_once_and_restores() -> anyhow::Result<()> {
        let p = patch_for(&workload(Some(3), None)?, false, "d")?;
        let p = p.ok_or_else(|| anyhow::anyhow!("no patch"))?;
        assert_eq!(p["metadata"]["annotations"][REPLICAS_ANNOTATION], "3");
        assert_eq!(p["spec"]["replicas"], 0);
        // Already recorded and at zero: nothing to do; scaled up again: zero
        // without touching the record.
        assert!(patch_for(&workload(Some(0), Some("3"))?, false, "d")?.is_none());
        let p = patch_for(&workload(Some(2), Some("3"))?, false, "d")?;
        let p = p.ok_or_else(|| anyhow::anyhow!("no patch"))?;
        assert!(p["metadata"].get("annotations").is_none());
        // Absent replicas mean 1.
        let p = patch_for(&workload(None, None)?, false, "d")?;
        assert_eq!(
            p.map(|p| p["metadata"]["annotations"][REPLICAS_ANNOTATION].clone()),
            Some(json!("1"))
        );
        let p = patch_for(&workload(Some(0), Some("3"))?, true, "d")?;
        let p = p.ok_or_else(|| anyhow::anyhow!("no patch"))?;
        assert_eq!(p["spec"]["replicas"], 3);
        assert!(p["metadata"]["annotations"][REPLICAS_ANNOTATION].is_null());
        assert!(patch_for(&workload(Some(1), None)?, true, "d")?.is_none());
        assert!(patch_for(&workload(Some(0), Some("x"))?, true, "d").is_err());
        Ok(())
    }
}
