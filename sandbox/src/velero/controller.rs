//! The controller's lifecycle: one task per Velero controller (backups,
//! restores, storage-location validation, backup sync), all stopped by one
//! cancellation token.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::faults::VeleroFaults;
use super::meta::{name, namespace, phase};
use super::volumes::Volumes;
use super::{backup, backups_gvr, bsl, restore, restores_gvr, sync};
use crate::k8s::{EventType, Gvr, Store};
use crate::s3::S3Server;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct VeleroConfig {
    /// Where PVC contents live.
    pub volumes: Volumes,
    /// How often each BSL's bucket is checked (Velero's default is a minute;
    /// the sandbox is quicker so that tests see changes at once).
    pub validation_interval: Duration,
    /// How often BSL buckets are scanned for backups the cluster lacks.
    pub sync_interval: Duration,
}

impl VeleroConfig {
    pub fn new(volumes: Volumes) -> Self {
        VeleroConfig {
            volumes,
            validation_interval: Duration::from_millis(500),
            sync_interval: Duration::from_secs(1),
        }
    }
}

/// Shared by the controller's tasks.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub store: Store,
    pub s3: Arc<S3Server>,
    pub volumes: Volumes,
    pub faults: Arc<VeleroFaults>,
    pub config: VeleroConfig,
}

/// A running Velero controller. Stop it with [`VeleroController::shutdown`]
/// (dropping it also stops the tasks).
pub struct VeleroController {
    faults: Arc<VeleroFaults>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl VeleroController {
    /// Starts the controllers; they act on objects already present too.
    pub fn start(store: Store, s3: Arc<S3Server>, config: VeleroConfig) -> Self {
        let faults = Arc::new(VeleroFaults::default());
        let ctx = Ctx {
            store,
            s3,
            volumes: config.volumes.clone(),
            faults: faults.clone(),
            config,
        };
        let cancel = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(watch_loop(
                ctx.clone(),
                cancel.clone(),
                backups_gvr(),
                |ctx, ns, name| async move { backup::run(&ctx, &ns, &name).await },
            )),
            tokio::spawn(watch_loop(
                ctx.clone(),
                cancel.clone(),
                restores_gvr(),
                |ctx, ns, name| async move { restore::run(&ctx, &ns, &name).await },
            )),
            tokio::spawn(bsl::validation_loop(ctx.clone(), cancel.clone())),
            tokio::spawn(sync::sync_loop(ctx, cancel.clone())),
        ];
        VeleroController {
            faults,
            cancel,
            tasks,
        }
    }

    /// The fault switches.
    pub fn faults(&self) -> &Arc<VeleroFaults> {
        &self.faults
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            // A task that panicked has nothing left to stop.
            let _ = task.await;
        }
    }
}

impl Drop for VeleroController {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// How soon an object whose processing failed (an API or storage error
/// before its phase could say so) is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Watches `gvr` in all namespaces and hands each object in phase New (or
/// none) to `handle`, one at a time, as Velero's controllers do by default.
async fn watch_loop<F, Fut>(ctx: Ctx, cancel: CancellationToken, gvr: Gvr, handle: F)
where
    F: Fn(Ctx, String, String) -> Fut,
    Fut: Future<Output = super::Result<()>>,
{
    let mut retry: BTreeSet<(String, String)> = BTreeSet::new();
    let mut ticker = tokio::time::interval(RETRY_AFTER);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut watch = match ctx.store.watch(&gvr, None, None).await {
            Ok(w) => w,
            Err(error) => {
                // Without Velero's CRDs (a bare cluster) there is nothing to
                // watch until someone installs them: wait quietly.
                if error.is_not_found() || ctx.store.resource_type(&gvr).is_err() {
                    tracing::debug!(%error, resource = %gvr.resource, "Velero's CRDs are not installed");
                } else {
                    tracing::warn!(%error, resource = %gvr.resource, "Velero cannot watch; retrying");
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        loop {
            let due: Vec<(String, String)> = tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick(), if !retry.is_empty() => std::mem::take(&mut retry).into_iter().collect(),
                event = watch.next() => {
                    // The stream ended (the watcher fell too far behind):
                    // watch anew, which replays what exists.
                    let Some(event) = event else { break };
                    let wanted = matches!(event.event_type, EventType::Added | EventType::Modified)
                        && is_new(&event.object);
                    if !wanted {
                        continue;
                    }
                    let key = (namespace(&event.object).unwrap_or_default().to_owned(), name(&event.object).to_owned());
                    vec![key]
                }
            };
            for (ns, nm) in due {
                let work = handle(ctx.clone(), ns.clone(), nm.clone());
                let outcome = tokio::select! {
                    () = cancel.cancelled() => return,
                    outcome = work => outcome,
                };
                if let Err(error) = outcome {
                    tracing::warn!(%error, namespace = %ns, name = %nm, resource = %gvr.resource, "Velero could not process the object; will retry");
                    retry.insert((ns, nm));
                }
            }
        }
    }
}

fn is_new(object: &Value) -> bool {
    matches!(phase(object), "" | "New")
}
