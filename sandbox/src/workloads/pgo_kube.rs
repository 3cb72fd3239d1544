//! **PGO's instances on a real API server** (the real tier): the same
//! stand-in as the sandbox's (`postgres.rs`: a real PostgreSQL per
//! PostgresCluster, its database kept as a dump on the instance's claim in
//! the sandbox's volume directories), fed by watches of a real cluster
//! instead of the sandbox's store — the instance StatefulSets the real
//! controllers scale, and the `<cluster>-pguser-*` Secrets, which it points
//! at the server that runs on this cluster, or at nothing while none does
//! (a Secret restored from the source names the source's server until
//! then, as a restored PGO Secret names the source's service until PGO
//! reconciles it).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use serde::Serialize;
use tokio::task::JoinHandle;

use super::postgres::{CLUSTER_LABEL, Instances, Secrets};
use crate::k8s::EventType;
use crate::velero::Volumes;

/// The running stand-in; stops (and stops its servers) on drop.
pub struct PgoStandIn {
    tasks: Vec<JoinHandle<()>>,
    _instances: Arc<Instances>,
}

impl PgoStandIn {
    /// Watches the cluster behind `client`; `volumes` hold the claims'
    /// contents.
    pub fn start(client: kube::Client, volumes: Volumes) -> Self {
        let instances = Arc::new(Instances::new(Secrets::Kube(client.clone()), volumes));
        let config = watcher::Config::default().labels(CLUSTER_LABEL);
        let sets = watch(
            Api::<StatefulSet>::all(client.clone()),
            config.clone(),
            instances.clone(),
            |instances, event, object| async move { instances.on_event(&event, &object).await },
        );
        let secrets = watch(
            Api::<Secret>::all(client),
            config,
            instances.clone(),
            |instances, event, object| async move {
                if !matches!(event, EventType::Deleted) {
                    instances.repoint(&object).await;
                }
            },
        );
        PgoStandIn {
            tasks: vec![sets, secrets],
            _instances: instances,
        }
    }
}

impl Drop for PgoStandIn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Follows `api`'s objects, handing each change to `on` in order.
fn watch<K, F, Fut>(
    api: Api<K>,
    config: watcher::Config,
    instances: Arc<Instances>,
    on: F,
) -> JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Serialize,
    K: Send + Sync + 'static,
    F: Fn(Arc<Instances>, EventType, serde_json::Value) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, config).boxed();
        while let Some(event) = events.next().await {
            let (kind, object) = match event {
                Ok(Event::Apply(o) | Event::InitApply(o)) => (EventType::Modified, o),
                Ok(Event::Delete(o)) => (EventType::Deleted, o),
                Ok(Event::Init | Event::InitDone) => continue,
                Err(error) => {
                    tracing::warn!(%error, "PGO stand-in's watch failed; it retries");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            };
            match serde_json::to_value(&object) {
                Ok(v) => on(instances.clone(), kind, v).await,
                Err(error) => tracing::warn!(%error, "PGO stand-in cannot read an object"),
            }
        }
    })
}
