//! Executing a `Restore`: read the backup from its storage location's bucket
//! (so a backup copied into another cluster's bucket restores there), select
//! items by the restore's filters, create them in Velero's order, namespaces
//! first, fill restored PVCs from the file-system repository, and report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::backup::{gz_json, put};
use super::clock::now_rfc3339;
use super::controller::Ctx;
use super::error::{Result, VeleroError};
use super::faults::pause;
use super::filter::{NamespaceFilter, ResourceFilter, label_selector};
use super::layout::{backup_file, gunzip, gzip, restore_file};
use super::location::Location;
use super::meta::{name, phase, str_at};
use super::restore_item::{ItemOutcome, RestoreTarget, restore_item};
use super::results::Journal;
use super::tarball::{self, TarItem, resource_dir};
use super::{backups_gvr, restores_gvr};
use crate::k8s::{LabelSelector, ResourceType};

const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Velero's default restore exclusions.
const NEVER: &[&str] = &[
    "nodes",
    "events",
    "events.events.k8s.io",
    "backups.velero.io",
    "restores.velero.io",
    "resticrepositories.velero.io",
    "backuprepositories.velero.io",
    "csinodes.storage.k8s.io",
    "volumeattachments.storage.k8s.io",
];

/// Velero's default restore priorities; the rest follow by name.
const PRIORITIES: &[&str] = &[
    "customresourcedefinitions",
    "namespaces",
    "storageclasses.storage.k8s.io",
    "persistentvolumes",
    "persistentvolumeclaims",
    "serviceaccounts",
    "secrets",
    "configmaps",
    "limitranges",
    "pods",
    "replicasets.apps",
    "endpoints",
    "services",
];

/// Runs the Restore `ns/name` if it is still New.
pub(crate) async fn run(ctx: &Ctx, ns: &str, name: &str) -> Result<()> {
    let gvr = restores_gvr();
    let what = format!("restore {ns}/{name}");
    let restore = match ctx.store.get(&gvr, Some(ns), name).await {
        Ok(r) => r,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(VeleroError::kube("read", what)(e)),
    };
    if !matches!(phase(&restore), "" | "New") {
        return Ok(());
    }
    let spec = restore.get("spec").cloned().unwrap_or(json!({}));
    let backup_name = str_at(&spec, &["backupName"])
        .unwrap_or_default()
        .to_owned();

    let mut validation = Vec::new();
    let selector = label_selector(spec.get("labelSelector"))
        .map_err(|e| validation.push(format!("invalid labelSelector: {e}")))
        .ok();
    let mut location = None;
    if backup_name.is_empty() {
        validation.push("Either a backup or schedule must be specified as a source for the restore, but not both".to_owned());
    } else {
        match ctx.store.get(&backups_gvr(), Some(ns), &backup_name).await {
            Err(e) if e.is_not_found() => {
                validation.push(format!("backup.velero.io \"{backup_name}\" not found"));
            }
            Err(e) => return Err(VeleroError::kube("read", format!("backup {ns}/{backup_name}"))(e)),
            Ok(b) if !matches!(phase(&b), "Completed" | "PartiallyFailed") => validation.push(format!(
                "backup \"{backup_name}\" is in phase {:?}; only Completed or PartiallyFailed backups can be restored",
                phase(&b)
            )),
            Ok(b) => {
                let wanted = str_at(&b, &["spec", "storageLocation"]);
                location = Location::find(&ctx.store, ns, wanted).await?;
                if location.is_none() {
                    validation.push(format!(
                        "backup storage location {:?} of backup {backup_name:?} not found",
                        wanted.unwrap_or(super::location::DEFAULT_LOCATION)
                    ));
                }
            }
        }
    }
    let (Some(location), Some(selector), true) = (location, selector, validation.is_empty()) else {
        tracing::info!(restore = %what, ?validation, "restore failed validation");
        return set_status(
            ctx,
            ns,
            name,
            json!({"phase": "FailedValidation", "validationErrors": validation}),
        )
        .await;
    };

    let mut claimed = restore.clone();
    claimed["status"] =
        json!({"phase": "InProgress", "startTimestamp": now_rfc3339(), "progress": {}});
    let claimed = match ctx.store.update(&gvr, Some(ns), claimed).await {
        Ok(c) => c,
        Err(e) if e.is_conflict() => return Ok(()),
        Err(e) => return Err(VeleroError::kube("start", what)(e)),
    };
    tracing::info!(restore = %what, backup = %backup_name, "restore started");
    pause(ctx.faults.phase_delay()).await;

    let mut journal = Journal::new("restore", ns, name);
    journal.info("starting restore", &format!("backup={backup_name}"));
    let outcome = execute(
        ctx,
        &claimed,
        &backup_name,
        &location,
        &selector,
        &mut journal,
    )
    .await;
    pause(ctx.faults.phase_delay()).await;

    let mut status = claimed["status"].clone();
    match outcome {
        Ok(progress) => {
            status["progress"] = progress;
            status["phase"] = json!(if journal.errors.count() > 0 {
                "PartiallyFailed"
            } else {
                "Completed"
            });
        }
        Err(error) => {
            journal.error(None, error.to_string());
            status["phase"] = json!("Failed");
            status["failureReason"] = json!(error.to_string());
        }
    }
    status["errors"] = json!(journal.errors.count());
    status["warnings"] = json!(journal.warnings.count());
    status["completionTimestamp"] = json!(now_rfc3339());
    if let Err(error) = write_results(ctx, &location, name, &journal).await {
        tracing::warn!(restore = %what, %error, "could not write the restore's log and results");
    }
    tracing::info!(restore = %what, phase = %status["phase"], "restore finished");
    set_status(ctx, ns, name, status).await
}

async fn set_status(ctx: &Ctx, ns: &str, name: &str, status: Value) -> Result<()> {
    ctx.store
        .patch_merge(&restores_gvr(), Some(ns), name, &json!({"status": status}))
        .await
        .map(|_| ())
        .map_err(VeleroError::kube(
            "update the status of",
            format!("restore {ns}/{name}"),
        ))
}

async fn write_results(
    ctx: &Ctx,
    location: &Location,
    name: &str,
    journal: &Journal,
) -> Result<()> {
    let logs = gzip(journal.log_text().as_bytes())
        .map_err(|e| VeleroError::malformed("restore log", e))?;
    put(
        ctx,
        location,
        &restore_file(&location.prefix, name, &format!("restore-{name}-logs.gz")),
        logs,
    )
    .await?;
    let results = gz_json(&journal.results())?;
    put(
        ctx,
        location,
        &restore_file(
            &location.prefix,
            name,
            &format!("restore-{name}-results.gz"),
        ),
        results,
    )
    .await
}

async fn read(ctx: &Ctx, location: &Location, key: &str) -> Result<Vec<u8>> {
    ctx.s3
        .get_object(&location.bucket, key)
        .await
        .map(|b| b.to_vec())
        .map_err(VeleroError::s3("read", &location.bucket, key))
}

fn rank(dir: &str) -> usize {
    PRIORITIES
        .iter()
        .position(|p| *p == dir)
        .unwrap_or(PRIORITIES.len())
}

/// Restores the selected items; returns the final `progress`.
async fn execute(
    ctx: &Ctx,
    restore: &Value,
    backup_name: &str,
    location: &Location,
    selector: &LabelSelector,
    journal: &mut Journal,
) -> Result<Value> {
    let restore_ns = super::meta::namespace(restore)
        .unwrap_or_default()
        .to_owned();
    let restore_name = name(restore).to_owned();
    let spec = restore.get("spec").cloned().unwrap_or(json!({}));
    let prefix = &location.prefix;
    let tar = read(
        ctx,
        location,
        &backup_file(prefix, backup_name, &format!("{backup_name}.tar.gz")),
    )
    .await?;
    let items = tarball::parse(&tar)?;
    let pvb_key = backup_file(
        prefix,
        backup_name,
        &format!("{backup_name}-podvolumebackups.json.gz"),
    );
    let pod_volume_backups: Vec<Value> = match ctx.s3.get_object(&location.bucket, &pvb_key).await {
        Ok(data) => {
            let json = gunzip(&data).map_err(|e| VeleroError::malformed(pvb_key.clone(), e))?;
            serde_json::from_slice::<Option<Vec<Value>>>(&json)
                .map_err(|e| VeleroError::malformed(pvb_key.clone(), e))?
                .unwrap_or_default()
        }
        Err(crate::s3::Error::NoSuchKey { .. }) => Vec::new(),
        Err(e) => return Err(VeleroError::s3("read", &location.bucket, &pvb_key)(e)),
    };

    let types: BTreeMap<String, ResourceType> = ctx
        .store
        .resource_types()
        .into_iter()
        .map(|rt| (resource_dir(&rt.group, &rt.plural), rt))
        .collect();
    let namespaces = NamespaceFilter::from_spec(&spec);
    let resources = ResourceFilter::from_spec(&spec, NEVER);
    let mut selected: Vec<(TarItem, ResourceType)> = Vec::new();
    let mut backed_up_namespaces: BTreeMap<String, Value> = BTreeMap::new();
    let mut unknown = BTreeSet::new();
    for item in items {
        let Some(rt) = types.get(&item.dir) else {
            unknown.insert(item.dir.clone());
            continue;
        };
        let is_namespace = item.dir == "namespaces";
        if is_namespace {
            backed_up_namespaces.insert(item.name.clone(), item.object.clone());
        }
        let scope = if is_namespace {
            Some(item.name.as_str())
        } else {
            item.namespace.as_deref()
        };
        let ns_ok = scope.is_none_or(|n| namespaces.allows(n));
        if ns_ok && resources.allows(rt) && selector.matches(&item.object) {
            selected.push((item, rt.clone()));
        }
    }
    for dir in unknown {
        journal.warn(
            None,
            format!("could not restore {dir}: the resource is not served by this cluster"),
        );
    }
    selected.sort_by(|(a, _), (b, _)| {
        (rank(&a.dir), &a.dir, &a.namespace, &a.name).cmp(&(
            rank(&b.dir),
            &b.dir,
            &b.namespace,
            &b.name,
        ))
    });
    let total = selected.len();
    set_status(
        ctx,
        &restore_ns,
        &restore_name,
        json!({"progress": {"totalItems": total, "itemsRestored": 0}}),
    )
    .await?;

    let mapping: BTreeMap<String, String> = spec
        .get("namespaceMapping")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    // Velero's change-storage-class restore item action reads its mapping
    // from ConfigMaps so labelled in its namespace.
    let storage_classes: BTreeMap<String, String> = ctx
        .store
        .list(
            &crate::k8s::Gvr::core("configmaps"),
            Some(super::VELERO_NAMESPACE),
            Some("velero.io/change-storage-class=RestoreItemAction"),
        )
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|cm| cm.get("data").and_then(Value::as_object))
        .flat_map(|data| {
            data.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        })
        .collect();
    let target = RestoreTarget {
        storage_classes,
        backup_name: backup_name.to_owned(),
        restore_name: restore_name.clone(),
        location: location.clone(),
        update_existing: str_at(&spec, &["existingResourcePolicy"]) == Some("update"),
        restore_pvs: spec.get("restorePVs").and_then(Value::as_bool) != Some(false),
        mapping,
        backed_up_namespaces,
        pod_volume_backups,
    };
    let mut ensured = BTreeSet::new();
    let mut last = Instant::now();
    let delay = ctx.faults.item_delay();
    for (done, (item, rt)) in selected.iter().enumerate() {
        match restore_item(ctx, &target, item, rt, &mut ensured, journal).await {
            ItemOutcome::Created => journal.info(
                "Restored item",
                &format!(
                    "resource={} namespace={} name={}",
                    item.dir,
                    item.namespace.as_deref().unwrap_or(""),
                    item.name
                ),
            ),
            ItemOutcome::Skipped => {}
        }
        pause(delay).await;
        if !delay.is_zero() || last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            set_status(
                ctx,
                &restore_ns,
                &restore_name,
                json!({"progress": {"totalItems": total, "itemsRestored": done + 1}}),
            )
            .await?;
        }
    }
    Ok(json!({"totalItems": total, "itemsRestored": total}))
}
