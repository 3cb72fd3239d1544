//! Cleanup (rollback on the target): removes what the migration put there:
//! the registry's namespace, its GerritProject, its realms, the transferred
//! objects, and the Velero Backups and Restores. Counts are what this run
//! removed, so a repeat reports zeros.
//!
//! It refuses to delete a namespace that no restore of this migration made
//! (Velero labels what it restores with `velero.io/backup-name`: the
//! namespace, or — where Velero created it first — the claims and config
//! maps restored into it): sent to the wrong cluster, it must not delete a
//! live registry.

use std::time::Duration;

use ferry_common::pb;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::{Client, Resource, ResourceExt};

use super::cluster::{absent_if_missing, gerrit_projects, list_all};
use super::error::{Result, StepError, kube_err};
use super::{Step, identity, storage};
use crate::velero::{Backup, Restore, VELERO_NAMESPACE};

/// Velero's label on everything it restores.
const BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
/// A namespace's finalizers can take a while on a real cluster.
const NAMESPACE_GONE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

pub(super) async fn run(step: &mut Step<'_>, cmd: &pb::CleanupStep) -> Result<pb::CleanupReport> {
    let client = step.client.clone();
    let reg = step.registry;
    let mut report = pb::CleanupReport {
        namespace_deleted: delete_namespace(step, &cmd.backups).await?,
        ..Default::default()
    };
    delete_gerrit_projects(&client, reg).await?;
    if !cmd.realms.is_empty() {
        let keycloak = identity::admin(step.ctx, &client).await?;
        for realm in &cmd.realms {
            if keycloak.delete_realm(realm).await? {
                report.realms_deleted += 1;
            }
        }
    }
    // Objects before Velero's records: a Backup deleted while its files
    // remain would come back through Velero's backup sync.
    for prefix in &cmd.prefixes {
        super::require(&cmd.backup_store, "backup_store")?;
        let listing = storage::list_prefix(&step.ctx.stores, &cmd.backup_store, prefix).await?;
        report.objects_deleted += storage::delete_listed(&listing).await?;
    }
    for store in &cmd.stores {
        let listing = storage::list_prefix(&step.ctx.stores, store, "").await?;
        report.objects_deleted += storage::delete_listed(&listing).await?;
    }
    let restores: Api<Restore> = Api::namespaced(client.clone(), VELERO_NAMESPACE);
    for name in &cmd.restores {
        report.velero_deleted += u32::from(delete(&restores, name).await?);
    }
    let backups: Api<Backup> = Api::namespaced(client.clone(), VELERO_NAMESPACE);
    for name in &cmd.backups {
        report.velero_deleted += u32::from(delete(&backups, name).await?);
    }
    tracing::info!(registry = reg, ?report, "cleaned up");
    Ok(report)
}

/// Deletes the registry's namespace and waits until it is gone; `false`
/// when there was none.
async fn delete_namespace(step: &mut Step<'_>, backups: &[String]) -> Result<bool> {
    let reg = step.registry;
    let api: Api<Namespace> = Api::all(step.client.clone());
    let what = format!("namespace {reg}");
    let Some(ns) = absent_if_missing(api.get(reg).await).map_err(kube_err("read", &what))? else {
        return Ok(false);
    };
    let label = ns.labels().get(BACKUP_NAME_LABEL);
    // Without a backup, nothing of this migration can have been restored.
    let ours = label.is_some_and(|l| backups.iter().any(|b| same_label(b, l)))
        || holds_restored(&step.client, reg, backups).await?;
    if !ours {
        return Err(StepError::State(format!(
            "namespace {reg} was not made by a restore of this migration's backups ({}); \
             cleanup refuses to delete a registry Ferry did not restore; check that the step \
             was sent to the target cluster, or remove the namespace by hand",
            match label {
                Some(l) => format!("it was restored from {l}"),
                None => format!("it has no {BACKUP_NAME_LABEL} label"),
            }
        )));
    }
    if ns.meta().deletion_timestamp.is_none() {
        absent_if_missing(api.delete(reg, &DeleteParams::foreground()).await)
            .map_err(kube_err("delete", &what))?;
    }
    step.progress
        .report(format!("waiting for namespace {reg} to be deleted"), 0, 0);
    let gone = async {
        loop {
            match absent_if_missing(api.get(reg).await).map_err(kube_err("read", &what))? {
                None => return Ok::<_, StepError>(()),
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    };
    match tokio::time::timeout(NAMESPACE_GONE_TIMEOUT, gone).await {
        Ok(done) => done?,
        Err(_) => {
            return Err(StepError::State(format!(
                "namespace {reg} is still terminating after {NAMESPACE_GONE_TIMEOUT:?}; look \
                 for objects whose finalizers hold it (`oc get all -n {reg}`), then retry"
            )));
        }
    }
    Ok(true)
}

/// Whether `namespace` holds objects Velero restored from one of
/// `backups`. Velero labels what it restores, but not a namespace it had
/// to create before restoring into it (the real server then skips the
/// backed-up namespace as existing), so the namespace's own label is not
/// always there.
async fn holds_restored(client: &Client, namespace: &str, backups: &[String]) -> Result<bool> {
    let lp = ListParams::default().labels(BACKUP_NAME_LABEL);
    let restored = |labels: &std::collections::BTreeMap<String, String>| {
        labels
            .get(BACKUP_NAME_LABEL)
            .is_some_and(|l| backups.iter().any(|b| same_label(b, l)))
    };
    let what = format!("objects Velero restored in namespace {namespace}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let claims = claims.list(&lp).await.map_err(kube_err("list", &what))?;
    if claims.items.iter().any(|o| restored(o.labels())) {
        return Ok(true);
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let maps = maps.list(&lp).await.map_err(kube_err("list", &what))?;
    Ok(maps.items.iter().any(|o| restored(o.labels())))
}

/// Velero shortens label values longer than 63 characters to their first
/// 57 and 6 hex digits of their hash.
fn same_label(backup: &str, label: &str) -> bool {
    backup == label
        || (backup.len() > 63 && label.get(..57).is_some_and(|head| backup.starts_with(head)))
}

/// GerritProjects named `<reg>` or for `<reg>-regulations`, in any namespace.
async fn delete_gerrit_projects(client: &Client, reg: &str) -> Result<()> {
    let ar = gerrit_projects();
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let regulations = format!("{reg}-regulations");
    for p in list_all(&all, "gerritprojects in all namespaces").await? {
        if p.name_any() != reg && p.data["spec"]["name"].as_str() != Some(&regulations) {
            continue;
        }
        let ns = p.namespace().unwrap_or_default();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        absent_if_missing(api.delete(&p.name_any(), &DeleteParams::default()).await).map_err(
            kube_err("delete", format!("GerritProject {ns}/{}", p.name_any())),
        )?;
    }
    Ok(())
}

/// Deletes `name`; `false` when it was not there.
async fn delete<K>(api: &Api<K>, name: &str) -> Result<bool>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let what = format!("Velero object {VELERO_NAMESPACE}/{name}");
    Ok(
        absent_if_missing(api.delete(name, &DeleteParams::default()).await)
            .map_err(kube_err("delete", what))?
            .is_some(),
    )
}
