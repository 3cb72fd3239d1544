//! Executing a `Backup`: validate, collect the items its spec selects, back
//! up PVC contents into the file-system repository, and write Velero's
//! layout into the storage location's bucket, reporting phase and progress.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::clock::{now_rfc3339, parse_go_duration, rfc3339_in};
use super::controller::Ctx;
use super::error::{Result, VeleroError};
use super::faults::pause;
use super::filter::{NamespaceFilter, ResourceFilter, label_selector};
use super::layout::{backup_file, gzip};
use super::location::{DEFAULT_LOCATION, Location};
use super::meta::{name, namespace, phase, str_at, strip_server_fields};
use super::results::Journal;
use super::tarball::{self, TarItem, resource_dir};
use super::volumes_backup::back_up_volumes;
use super::{BACKUP_FORMAT_VERSION, STORAGE_LOCATION_LABEL, backups_gvr};
use crate::k8s::{Gvr, LabelSelector, ResourceType};

/// How often progress is written while items are processed.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Velero's default backup TTL (30 days).
const DEFAULT_TTL_SECS: i64 = 720 * 3600;

/// Runs the Backup `ns/name` if it is still New.
pub(crate) async fn run(ctx: &Ctx, ns: &str, name: &str) -> Result<()> {
    let gvr = backups_gvr();
    let what = format!("backup {ns}/{name}");
    let backup = match ctx.store.get(&gvr, Some(ns), name).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(VeleroError::kube("read", what)(e)),
    };
    if !matches!(phase(&backup), "" | "New") {
        return Ok(());
    }
    let spec = backup.get("spec").cloned().unwrap_or(json!({}));
    let wanted = str_at(&spec, &["storageLocation"]);

    let mut validation = Vec::new();
    let selector = match label_selector(spec.get("labelSelector")) {
        Ok(s) => Some(s),
        Err(e) => {
            validation.push(format!("invalid labelSelector: {e}"));
            None
        }
    };
    let location = Location::find(&ctx.store, ns, wanted).await?;
    match (&location, wanted) {
        (None, None) => validation.push(format!(
            "an existing backup storage location wasn't specified at backup creation time and the default '{DEFAULT_LOCATION}' wasn't found. Please address this issue (see `velero backup-location -h` for options) and create a new backup."
        )),
        (None, Some(w)) => validation.push(format!(
            "an existing backup storage location wasn't specified at backup creation time and the server default '{w}' doesn't exist. Please address this issue (see `velero backup-location -h` for options) and create a new backup. Error: backupstoragelocations.velero.io \"{w}\" not found"
        )),
        (Some(l), _) if l.read_only => validation.push(format!(
            "backup can't be created because backup storage location {} is currently in read-only mode",
            l.name
        )),
        _ => {}
    }
    let (Some(location), Some(selector), true) = (location, selector, validation.is_empty()) else {
        tracing::info!(backup = %what, ?validation, "backup failed validation");
        set_status(
            ctx,
            ns,
            name,
            json!({
                "phase": "FailedValidation",
                "validationErrors": validation,
                "version": 1,
                "formatVersion": BACKUP_FORMAT_VERSION,
            }),
        )
        .await?;
        return Ok(());
    };

    // Claim the backup with a resourceVersion precondition: a concurrent
    // change makes this a no-op, and the next watch event retries.
    let ttl = str_at(&spec, &["ttl"])
        .and_then(parse_go_duration)
        .unwrap_or(DEFAULT_TTL_SECS);
    let started = now_rfc3339();
    let mut claimed = backup.clone();
    claimed["spec"]["storageLocation"] = json!(location.name);
    super::meta::set_label(&mut claimed, STORAGE_LOCATION_LABEL, &location.name);
    claimed["status"] = json!({
        "phase": "InProgress",
        "version": 1,
        "formatVersion": BACKUP_FORMAT_VERSION,
        "startTimestamp": started,
        "expiration": rfc3339_in(ttl),
        "progress": {},
    });
    let claimed = match ctx.store.update(&gvr, Some(ns), claimed).await {
        Ok(c) => c,
        Err(e) if e.is_conflict() => return Ok(()),
        Err(e) => return Err(VeleroError::kube("start", what)(e)),
    };
    tracing::info!(backup = %what, location = %location.describe(), "backup started");
    pause(ctx.faults.phase_delay()).await;

    let mut journal = Journal::new("backup", ns, name);
    journal.info("Setting up backup log", "");
    let outcome = match location.check(&ctx.s3).await {
        Err(reason) => Err(VeleroError::Location {
            namespace: location.namespace.clone(),
            name: location.name.clone(),
            reason,
        }),
        Ok(()) => execute(ctx, &claimed, &location, &selector, &mut journal).await,
    };
    pause(ctx.faults.phase_delay()).await;

    let mut status = claimed["status"].clone();
    status["completionTimestamp"] = json!(now_rfc3339());
    match outcome {
        Ok(progress) => {
            status["progress"] = progress;
            status["errors"] = json!(journal.errors.count());
            status["warnings"] = json!(journal.warnings.count());
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
            status["errors"] = json!(journal.errors.count());
        }
    }
    let mut finished = claimed.clone();
    finished["status"] = status.clone();
    // The metadata files and velero-backup.json go last: their presence is
    // what backup sync takes for a finished backup. A backup that failed
    // before it wrote anything (bucket gone) leaves nothing behind.
    if (status["phase"] != "Failed" || location.check(&ctx.s3).await.is_ok())
        && let Err(error) = write_final(ctx, &location, name, &finished, &journal).await
    {
        status["phase"] = json!("Failed");
        status["failureReason"] = json!(error.to_string());
    }
    tracing::info!(backup = %what, phase = %status["phase"], "backup finished");
    set_status(ctx, ns, name, status).await
}

/// Merges `status` into the Backup (Velero's CRDs have no status subresource).
async fn set_status(ctx: &Ctx, ns: &str, name: &str, status: Value) -> Result<()> {
    ctx.store
        .patch_merge(&backups_gvr(), Some(ns), name, &json!({"status": status}))
        .await
        .map(|_| ())
        .map_err(VeleroError::kube(
            "update the status of",
            format!("backup {ns}/{name}"),
        ))
}

/// Collects and writes the items; returns the final `progress`.
async fn execute(
    ctx: &Ctx,
    backup: &Value,
    location: &Location,
    selector: &LabelSelector,
    journal: &mut Journal,
) -> Result<Value> {
    let backup_ns = namespace(backup).unwrap_or_default().to_owned();
    let backup_name = name(backup).to_owned();
    let spec = backup.get("spec").cloned().unwrap_or(json!({}));
    let items = collect(ctx, &spec, selector).await?;
    let total = items.len();
    set_status(
        ctx,
        &backup_ns,
        &backup_name,
        json!({"progress": {"totalItems": total, "itemsBackedUp": 0}}),
    )
    .await?;

    if let Some(message) = ctx.faults.take_partial_failure() {
        let ns = items.iter().find_map(|i| i.namespace.clone());
        journal.error(ns.as_deref(), message);
    }
    let mut last = Instant::now();
    let delay = ctx.faults.item_delay();
    let mut resource_list: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (done, item) in items.iter().enumerate() {
        let kind = item
            .object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api_version = item
            .object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id = match &item.namespace {
            Some(ns) => format!("{ns}/{}", item.name),
            None => item.name.clone(),
        };
        journal.info(
            "Backed up item",
            &format!(
                "resource={} namespace={} name={}",
                item.dir,
                item.namespace.as_deref().unwrap_or(""),
                item.name
            ),
        );
        resource_list
            .entry(format!("{api_version}/{kind}"))
            .or_default()
            .push(id);
        pause(delay).await;
        if !delay.is_zero() || last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            set_status(
                ctx,
                &backup_ns,
                &backup_name,
                json!({"progress": {"totalItems": total, "itemsBackedUp": done + 1}}),
            )
            .await?;
        }
    }

    let fs_backup = spec
        .get("defaultVolumesToFsBackup")
        .and_then(Value::as_bool)
        == Some(true);
    let volumes = if fs_backup {
        back_up_volumes(ctx, backup, location, &items, journal).await?
    } else {
        Default::default()
    };

    let mtime = jiff::Timestamp::now().as_second().max(0) as u64;
    let tar = tarball::build(&items, mtime).map_err(|e| {
        VeleroError::malformed(format!("backup tarball of {backup_ns}/{backup_name}"), e)
    })?;
    let files: Vec<(String, Vec<u8>)> = vec![
        (format!("{backup_name}.tar.gz"), tar),
        (
            format!("{backup_name}-resource-list.json.gz"),
            gz_json(&resource_list)?,
        ),
        (
            format!("{backup_name}-podvolumebackups.json.gz"),
            gz_json(&volumes.pod_volume_backups)?,
        ),
        (
            format!("{backup_name}-volumesnapshots.json.gz"),
            gz_json(&Vec::<Value>::new())?,
        ),
        (
            format!("{backup_name}-itemoperations.json.gz"),
            gz_json(&Vec::<Value>::new())?,
        ),
        (
            format!("{backup_name}-volumeinfo.json.gz"),
            gz_json(&volumes.volume_info)?,
        ),
    ];
    for (file, data) in files {
        put(
            ctx,
            location,
            &backup_file(&location.prefix, &backup_name, &file),
            data,
        )
        .await?;
    }
    Ok(json!({"totalItems": total, "itemsBackedUp": total}))
}

/// Writes the log, the results and `velero-backup.json`.
async fn write_final(
    ctx: &Ctx,
    location: &Location,
    name: &str,
    backup: &Value,
    journal: &Journal,
) -> Result<()> {
    let prefix = &location.prefix;
    let logs =
        gzip(journal.log_text().as_bytes()).map_err(|e| VeleroError::malformed("backup log", e))?;
    put(
        ctx,
        location,
        &backup_file(prefix, name, &format!("{name}-logs.gz")),
        logs,
    )
    .await?;
    put(
        ctx,
        location,
        &backup_file(prefix, name, &format!("{name}-results.gz")),
        gz_json(&journal.results())?,
    )
    .await?;
    let mut stored = backup.clone();
    if let Some(meta) = super::meta::metadata_mut(&mut stored) {
        meta.remove("managedFields");
    }
    let json = serde_json::to_vec_pretty(&stored)
        .map_err(|e| VeleroError::malformed("velero-backup.json", e))?;
    put(
        ctx,
        location,
        &backup_file(prefix, name, "velero-backup.json"),
        json,
    )
    .await
}

pub(crate) fn gz_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    let json =
        serde_json::to_vec(value).map_err(|e| VeleroError::malformed("backup metadata", e))?;
    gzip(&json).map_err(|e| VeleroError::malformed("backup metadata", e))
}

pub(crate) async fn put(ctx: &Ctx, location: &Location, key: &str, data: Vec<u8>) -> Result<()> {
    ctx.s3
        .put_object(&location.bucket, key, data)
        .await
        .map_err(VeleroError::s3("write", &location.bucket, key))
}

/// Velero never backs these up on its own account.
const NEVER: &[&str] = &["events", "events.events.k8s.io"];

/// The items the spec selects, sorted by resource, namespace and name.
async fn collect(ctx: &Ctx, spec: &Value, selector: &LabelSelector) -> Result<Vec<TarItem>> {
    let namespaces = NamespaceFilter::from_spec(spec);
    let resources = ResourceFilter::from_spec(spec, NEVER);
    let cluster_resources =
        spec.get("includeClusterResources").and_then(Value::as_bool) == Some(true);
    let mut types: Vec<ResourceType> = ctx.store.resource_types();
    types.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
    let mut items = Vec::new();
    for rt in types.iter().filter(|rt| resources.allows(rt)) {
        let Some(version) = rt.versions.first() else {
            continue;
        };
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        // Cluster-scoped kinds only on request, except the selected
        // namespaces themselves, as Velero does for namespaced backups.
        if !rt.namespaced && !is_namespace && !cluster_resources {
            continue;
        }
        let gvr = Gvr::new(&rt.group, version, &rt.plural);
        let listed = ctx
            .store
            .list(&gvr, None, None)
            .await
            .map_err(VeleroError::kube("list", rt.plural.clone()))?;
        for mut object in listed {
            let item_ns = namespace(&object).map(str::to_owned);
            let scope_ns = if is_namespace {
                Some(name(&object).to_owned())
            } else {
                item_ns.clone()
            };
            if scope_ns.as_deref().is_some_and(|n| !namespaces.allows(n))
                || !selector.matches(&object)
            {
                continue;
            }
            strip_server_fields(&mut object);
            items.push(TarItem {
                dir: resource_dir(&rt.group, &rt.plural),
                version: version.clone(),
                namespace: if rt.namespaced { item_ns } else { None },
                name: name(&object).to_owned(),
                object,
            });
        }
    }
    Ok(items)
}
