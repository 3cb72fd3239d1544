//! A stand-in for the kubelet and the workload controllers: whenever a
//! Deployment's or StatefulSet's status differs from its `spec.replicas`,
//! the status is set to match, every replica ready at once, and the
//! generation observed. Enough for scaling down and up to look real.
//!
//! Two more stand-ins ride on it: the kubelet's part for the agent's
//! volume reader pods (`reader.rs`: the pod's command run over the claim's
//! directory, its termination message written), and PGO's instances
//! (`postgres.rs`: a real PostgreSQL per PostgresCluster, its database kept
//! on the instance's volume).

mod holder;
mod pgo_kube;
mod postgres;
mod reader;

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use pgo_kube::PgoStandIn;
pub use postgres::{
    CLUSTER_LABEL as PGO_CLUSTER_LABEL, DATABASE, DUMP, installed as postgres_installed,
};

use crate::k8s::{EventType, Gvr, Store};
use crate::velero::Volumes;

/// The running controller; stops on [`WorkloadController::shutdown`] or drop.
pub struct WorkloadController {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl WorkloadController {
    /// Starts watching Deployments, StatefulSets and Pods in every
    /// namespace; `volumes` are the claims' contents.
    pub fn start(store: Store, volumes: Volumes) -> Self {
        let cancel = CancellationToken::new();
        let instances = Arc::new(postgres::Instances::new(
            postgres::Secrets::Store(store.clone()),
            volumes.clone(),
        ));
        let mut tasks: Vec<JoinHandle<()>> = ["deployments", "statefulsets"]
            .into_iter()
            .map(|plural| {
                tokio::spawn(run(
                    store.clone(),
                    Gvr::new("apps", "v1", plural),
                    instances.clone(),
                    cancel.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(readers(store, volumes, cancel.clone())));
        WorkloadController { cancel, tasks }
    }

    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for WorkloadController {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Runs the agent's volume reader pods as they appear.
async fn readers(store: Store, volumes: Volumes, cancel: CancellationToken) {
    let pods = Gvr::core("pods");
    loop {
        let mut watch = match store.watch(&pods, None, None).await {
            Ok(w) => w,
            Err(error) => {
                tracing::warn!(%error, "reader pod stand-in cannot watch pods; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_millis(500)) => continue,
                }
            }
        };
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                event = watch.next() => event,
            };
            let Some(event) = event else { break };
            if matches!(event.event_type, EventType::Added | EventType::Modified) {
                reader::serve(&store, &volumes, &event.object).await;
                holder::serve(&store, &event.object).await;
            }
        }
    }
}

async fn run(
    store: Store,
    gvr: Gvr,
    instances: Arc<postgres::Instances>,
    cancel: CancellationToken,
) {
    loop {
        let mut watch = match store.watch(&gvr, None, None).await {
            Ok(w) => w,
            Err(error) => {
                tracing::warn!(%error, resource = %gvr.resource, "workload controller cannot watch; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_millis(500)) => continue,
                }
            }
        };
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                event = watch.next() => event,
            };
            // The stream ended (fell behind): watch anew, which replays all.
            let Some(event) = event else { break };
            instances.on_event(&event.event_type, &event.object).await;
            if !matches!(event.event_type, EventType::Added | EventType::Modified) {
                continue;
            }
            let Some(status) = wanted_status(&event.object) else {
                continue;
            };
            let ns = event
                .object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str);
            let name = event
                .object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let body = json!({"status": status});
            match store.patch_status_merge(&gvr, ns, name, &body).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(error) => {
                    tracing::warn!(%error, name, resource = %gvr.resource, "workload controller could not set status")
                }
            }
        }
    }
}

/// The status fields that differ from what `spec.replicas` calls for.
fn wanted_status(obj: &Value) -> Option<Value> {
    let replicas = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    let status = obj.get("status");
    let field = |k: &str| {
        status
            .and_then(|s| s.get(k))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let counts = [
        "replicas",
        "readyReplicas",
        "availableReplicas",
        "updatedReplicas",
    ];
    let observed = status
        .and_then(|s| s.get("observedGeneration"))
        .and_then(Value::as_i64);
    if counts.iter().all(|k| field(k) == replicas)
        && (generation.is_none() || observed == generation)
    {
        return None;
    }
    let mut wanted = json!({});
    for k in counts {
        wanted[k] = json!(replicas);
    }
    if let Some(g) = generation {
        wanted["observedGeneration"] = json!(g);
    }
    Some(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_spec() {
        let ready = json!({"metadata": {"generation": 2}, "spec": {"replicas": 1},
            "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                       "updatedReplicas": 1, "observedGeneration": 2}});
        assert_eq!(wanted_status(&ready), None);
        let mut scaled = ready.clone();
        scaled["spec"]["replicas"] = json!(0);
        scaled["metadata"]["generation"] = json!(3);
        let s = wanted_status(&scaled);
        assert_eq!(
            s.as_ref()
                .map(|s| (s["readyReplicas"].clone(), s["observedGeneration"].clone())),
            Some((json!(0), json!(3)))
        );
        // Kubernetes leaves out zero counts.
        let zero = json!({"metadata": {"generation": 3}, "spec": {"replicas": 0},
            "status": {"replicas": 0, "observedGeneration": 3}});
        assert_eq!(wanted_status(&zero), None);
    }
}
