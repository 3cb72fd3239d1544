//! Backup sync: a backup found in a location's bucket that the cluster has
//! no `Backup` object for gets one, from its `velero-backup.json`, labelled
//! with the location, in the phase it was stored with.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::controller::Ctx;
use super::error::{Result, VeleroError};
use super::layout::{backup_file, backups_dir};
use super::location::Location;
use super::meta::{metadata_mut, name, phase, set_label, strip_server_fields};
use super::{STORAGE_LOCATION_LABEL, backups_gvr, locations_gvr};

pub(crate) async fn sync_loop(ctx: Ctx, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(ctx.config.sync_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(error) = sync_all(&ctx).await {
                    tracing::warn!(%error, "Velero backup sync failed; retrying next period");
                }
            }
        }
    }
}

/// One pass over every Available location.
pub(crate) async fn sync_all(ctx: &Ctx) -> Result<()> {
    if ctx.store.resource_type(&locations_gvr()).is_err() {
        return Ok(()); // no Velero CRDs: a bare cluster
    }
    let locations = ctx
        .store
        .list(&locations_gvr(), None, None)
        .await
        .map_err(VeleroError::kube("list", "backup storage locations"))?;
    for bsl in locations.iter().filter(|b| phase(b) == "Available") {
        let location = Location::from_object(bsl)?;
        if location.check(&ctx.s3).await.is_err() {
            continue;
        }
        sync_location(ctx, &location).await?;
    }
    Ok(())
}

async fn sync_location(ctx: &Ctx, location: &Location) -> Result<()> {
    let dir = backups_dir(&location.prefix);
    let stored: BTreeSet<String> = ctx
        .s3
        .list_objects(&location.bucket, &dir)
        .await
        .map_err(VeleroError::s3("list", &location.bucket, &dir))?
        .into_iter()
        .filter_map(|o| {
            let rest = o.key.strip_prefix(&dir)?;
            let (backup, file) = rest.split_once('/')?;
            (file == "velero-backup.json").then(|| backup.to_owned())
        })
        .collect();
    if stored.is_empty() {
        return Ok(());
    }
    let known: BTreeSet<String> = ctx
        .store
        .list(&backups_gvr(), Some(&location.namespace), None)
        .await
        .map_err(VeleroError::kube(
            "list",
            format!("backups in {}", location.namespace),
        ))?
        .iter()
        .map(|b| name(b).to_owned())
        .collect();
    for backup in stored.difference(&known) {
        let key = backup_file(&location.prefix, backup, "velero-backup.json");
        let data = ctx
            .s3
            .get_object(&location.bucket, &key)
            .await
            .map_err(VeleroError::s3("read", &location.bucket, &key))?;
        let object: Value = match serde_json::from_slice(&data) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(bucket = %location.bucket, %key, error = %e, "skipping a malformed velero-backup.json");
                continue;
            }
        };
        let synced = synced_backup(object, backup, location);
        match ctx
            .store
            .create(&backups_gvr(), Some(&location.namespace), synced)
            .await
        {
            Ok(_) => {
                tracing::info!(backup = %backup, location = %location.describe(), "synced backup from storage")
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => {
                return Err(VeleroError::kube(
                    "create",
                    format!("backup {}/{backup}", location.namespace),
                )(e));
            }
        }
    }
    Ok(())
}

/// The Backup object as this cluster gets it from storage.
fn synced_backup(mut object: Value, backup: &str, location: &Location) -> Value {
    strip_server_fields(&mut object);
    if let Some(meta) = metadata_mut(&mut object) {
        meta.insert("name".into(), json!(backup));
        meta.insert("namespace".into(), json!(location.namespace));
        meta.remove("ownerReferences");
        meta.remove("finalizers");
    }
    set_label(&mut object, STORAGE_LOCATION_LABEL, &location.name);
    object["apiVersion"] = json!("velero.io/v1");
    object["kind"] = json!("Backup");
    if object.get("spec").is_none_or(|s| !s.is_object()) {
        object["spec"] = json!({});
    }
    object["spec"]["storageLocation"] = json!(location.name);
    object
}
