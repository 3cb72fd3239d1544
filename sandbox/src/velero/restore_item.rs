//! Restoring one item: map its namespace, make sure the namespace exists,
//! clean what the source cluster owned, create it (or handle what exists
//! per `existingResourcePolicy`), and fill a restored PVC's volume.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::controller::Ctx;
use super::location::Location;
use super::meta::{metadata_mut, set_label, str_at, strip_server_fields};
use super::results::Journal;
use super::tarball::TarItem;
use super::{BACKUP_NAME_LABEL, RESTORE_NAME_LABEL, repo};
use crate::k8s::{Gvr, ResourceType};

/// What one restore applies to every item.
pub(crate) struct RestoreTarget {
    pub backup_name: String,
    pub restore_name: String,
    pub location: Location,
    pub update_existing: bool,
    pub restore_pvs: bool,
    pub mapping: BTreeMap<String, String>,
    /// Velero's change-storage-class mapping (old class → new class).
    pub storage_classes: BTreeMap<String, String>,
    /// Namespace objects in the backup, by (source) name.
    pub backed_up_namespaces: BTreeMap<String, Value>,
    pub pod_volume_backups: Vec<Value>,
}

impl RestoreTarget {
    fn map<'a>(&'a self, ns: &'a str) -> &'a str {
        self.mapping.get(ns).map(String::as_str).unwrap_or(ns)
    }
}

pub(crate) enum ItemOutcome {
    Created,
    Skipped,
}

fn gvr_for(rt: &ResourceType, version: &str) -> Gvr {
    let version = if rt.versions.iter().any(|v| v == version) {
        version
    } else {
        rt.versions.first().map(String::as_str).unwrap_or(version)
    };
    Gvr::new(&rt.group, version, &rt.plural)
}

/// Cleans a backed-up object for creation in this cluster, as Velero's
/// restore item actions do; returns the status it had.
fn prepare(
    item: &TarItem,
    target: &RestoreTarget,
    target_ns: Option<&str>,
    name: &str,
) -> (Value, Option<Value>) {
    let mut obj = item.object.clone();
    strip_server_fields(&mut obj);
    let status = obj.as_object_mut().and_then(|o| o.remove("status"));
    if let Some(meta) = metadata_mut(&mut obj) {
        meta.insert("name".into(), json!(name));
        match target_ns {
            Some(ns) => meta.insert("namespace".into(), json!(ns)),
            None => meta.remove("namespace"),
        };
    }
    set_label(&mut obj, BACKUP_NAME_LABEL, &target.backup_name);
    set_label(&mut obj, RESTORE_NAME_LABEL, &target.restore_name);
    match item.dir.as_str() {
        // A new cluster allocates its own service IPs.
        "services" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                    spec.remove("clusterIP");
                    spec.remove("clusterIPs");
                }
                spec.remove("healthCheckNodePort");
            }
        }
        // The volume comes back from the file-system backup, not from the
        // old PV: the claim is provisioned anew.
        "persistentvolumeclaims" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("volumeName");
                change_storage_class(spec, &target.storage_classes);
            }
            if let Some(ann) = metadata_mut(&mut obj)
                .and_then(|m| m.get_mut("annotations"))
                .and_then(Value::as_object_mut)
            {
                ann.remove("pv.kubernetes.io/bind-completed");
                ann.remove("pv.kubernetes.io/bound-by-controller");
            }
        }
        "statefulsets.apps" => {
            let templates = obj
                .pointer_mut("/spec/volumeClaimTemplates")
                .and_then(Value::as_array_mut);
            for t in templates.into_iter().flatten() {
                if let Some(spec) = t.get_mut("spec").and_then(Value::as_object_mut) {
                    change_storage_class(spec, &target.storage_classes);
                }
            }
        }
        _ => {}
    }
    (obj, status)
}

/// Velero's change-storage-class action: a claim (or claim template) of a
/// mapped class gets the new class; one that names none keeps none.
fn change_storage_class(
    spec: &mut serde_json::Map<String, Value>,
    classes: &BTreeMap<String, String>,
) {
    let mapped = spec
        .get("storageClassName")
        .and_then(Value::as_str)
        .and_then(|old| classes.get(old));
    if let Some(new) = mapped {
        spec.insert("storageClassName".into(), json!(new));
    }
}

/// Creates the target namespace unless it exists (from the backed-up
/// Namespace object when there is one, for its labels).
async fn ensure_namespace(
    ctx: &Ctx,
    target: &RestoreTarget,
    source_ns: &str,
    ensured: &mut BTreeSet<String>,
    journal: &mut Journal,
) -> bool {
    let target_ns = target.map(source_ns).to_owned();
    if ensured.contains(&target_ns) {
        return true;
    }
    let gvr = Gvr::core("namespaces");
    let exists = ctx.store.get(&gvr, None, &target_ns).await.is_ok();
    if !exists {
        let mut ns_obj = match target.backed_up_namespaces.get(source_ns) {
            Some(obj) => obj.clone(),
            None => json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {}}),
        };
        strip_server_fields(&mut ns_obj);
        if let Some(o) = ns_obj.as_object_mut() {
            o.remove("status");
            o.remove("spec");
        }
        if let Some(meta) = metadata_mut(&mut ns_obj) {
            meta.insert("name".into(), json!(target_ns));
        }
        set_label(&mut ns_obj, BACKUP_NAME_LABEL, &target.backup_name);
        set_label(&mut ns_obj, RESTORE_NAME_LABEL, &target.restore_name);
        match ctx.store.create(&gvr, None, ns_obj).await {
            Ok(_) => journal.info("Created namespace", &format!("namespace={target_ns}")),
            Err(e) if e.is_conflict() => {}
            Err(e) => {
                journal.error(
                    Some(&target_ns),
                    format!("error creating namespace {target_ns}: {e}"),
                );
                return false;
            }
        }
    }
    ensured.insert(target_ns);
    true
}

/// Restores one item, recording problems in the journal.
pub(crate) async fn restore_item(
    ctx: &Ctx,
    target: &RestoreTarget,
    item: &TarItem,
    rt: &ResourceType,
    ensured: &mut BTreeSet<String>,
    journal: &mut Journal,
) -> ItemOutcome {
    let is_namespace = item.dir == "namespaces";
    if is_namespace {
        return match ensure_namespace(ctx, target, &item.name, ensured, journal).await {
            true => ItemOutcome::Created,
            false => ItemOutcome::Skipped,
        };
    }
    let target_ns = item
        .namespace
        .as_deref()
        .map(|ns| target.map(ns).to_owned());
    if let Some(source_ns) = item.namespace.as_deref()
        && !ensure_namespace(ctx, target, source_ns, ensured, journal).await
    {
        return ItemOutcome::Skipped;
    }
    let kind = rt.kind.as_str();
    let (obj, status) = prepare(item, target, target_ns.as_deref(), &item.name);
    let gvr = gvr_for(rt, &item.version);
    let ns = target_ns.as_deref();
    let shown = match ns {
        Some(ns) => format!("{ns}/{}", item.name),
        None => item.name.clone(),
    };
    match ctx.store.create(&gvr, ns, obj.clone()).await {
        Ok(_) => {}
        Err(e) if e.is_conflict() && target.update_existing => {
            let updated = match ctx.store.get(&gvr, ns, &item.name).await {
                Ok(existing) => {
                    let mut replacement = obj;
                    if let (Some(meta), Some(rv)) = (
                        metadata_mut(&mut replacement),
                        str_at(&existing, &["metadata", "resourceVersion"]),
                    ) {
                        meta.insert("resourceVersion".into(), json!(rv));
                    }
                    ctx.store.update(&gvr, ns, replacement).await.map(|_| ())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = updated {
                journal.warn(
                    ns,
                    format!("could not update existing {kind} \"{}\": {e}", item.name),
                );
            }
            return ItemOutcome::Skipped;
        }
        Err(e) if e.is_conflict() => {
            journal.warn(
                ns,
                format!("could not restore, {kind} \"{}\" already exists. Warning: the in-cluster version is different than the backed-up version", item.name),
            );
            return ItemOutcome::Skipped;
        }
        Err(e) => {
            journal.error(ns, format!("error restoring {}/{shown}: {e}", item.dir));
            return ItemOutcome::Skipped;
        }
    }
    // No controllers run in the sandbox: the backed-up status stands in for
    // what they would report once the workload is up again (Velero's
    // `restoreStatus`, applied to every kind with a status subresource).
    if let Some(status) = status.filter(|s| rt.status_subresource && !s.is_null()) {
        let body = json!({"status": status});
        if let Err(e) = ctx
            .store
            .patch_status_merge(&gvr, ns, &item.name, &body)
            .await
        {
            journal.warn(
                ns,
                format!(
                    "could not restore the status of {kind} \"{}\": {e}",
                    item.name
                ),
            );
        }
    }
    if item.dir == "persistentvolumeclaims"
        && target.restore_pvs
        && let (Some(source_ns), Some(target_ns)) = (item.namespace.as_deref(), ns)
    {
        restore_volume(ctx, target, source_ns, target_ns, &item.name, journal).await;
    }
    ItemOutcome::Created
}

/// Fills a restored PVC from its PodVolumeBackup's snapshot, if it had one.
async fn restore_volume(
    ctx: &Ctx,
    target: &RestoreTarget,
    source_ns: &str,
    target_ns: &str,
    pvc: &str,
    journal: &mut Journal,
) {
    let pvb = target.pod_volume_backups.iter().find(|p| {
        str_at(p, &["spec", "pod", "namespace"]) == Some(source_ns)
            && str_at(p, &["spec", "volume"]) == Some(pvc)
    });
    let Some(snapshot_id) = pvb.and_then(|p| str_at(p, &["status", "snapshotID"])) else {
        return;
    };
    let restored = async {
        let snapshot = repo::load(&ctx.s3, &target.location, source_ns, snapshot_id).await?;
        repo::restore(
            &ctx.s3,
            &target.location,
            &snapshot,
            &ctx.volumes,
            target_ns,
            pvc,
        )
        .await
    }
    .await;
    match restored {
        Ok(bytes) => journal.info(
            "Restored pod volume",
            &format!("namespace={target_ns} pvc={pvc} snapshotID={snapshot_id} bytes={bytes}"),
        ),
        Err(e) => journal.error(
            Some(target_ns),
            format!("pod volume restore of PVC {target_ns}/{pvc} failed: {e}"),
        ),
    }
}
