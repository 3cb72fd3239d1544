//! Keeping each `BackupStorageLocation`'s `status.phase`: Available while
//! its bucket exists and answers, Unavailable otherwise.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::clock::now_rfc3339;
use super::controller::Ctx;
use super::location::Location;
use super::locations_gvr;
use super::meta::{name, namespace, phase};
use crate::k8s::EventType;

/// `lastValidationTime` is refreshed at least this often even when the
/// phase holds (more often would flood watchers with no news).
const REFRESH: Duration = Duration::from_secs(10);

type Written = HashMap<(String, String), Instant>;

/// Validates every BSL on a short period, and at once when one is added.
pub(crate) async fn validation_loop(ctx: Ctx, cancel: CancellationToken) {
    let mut written = Written::new();
    let mut ticker = tokio::time::interval(ctx.config.validation_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = None;
    loop {
        if watch.is_none() {
            watch = ctx.store.watch(&locations_gvr(), None, None).await.ok();
        }
        let added = async {
            match watch.as_mut() {
                Some(w) => w.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => validate_all(&ctx, &mut written).await,
            event = added => match event {
                Some(e) if e.event_type == EventType::Added => validate_all(&ctx, &mut written).await,
                Some(_) => {}
                None => watch = None,
            },
        }
    }
}

async fn validate_all(ctx: &Ctx, written: &mut Written) {
    let gvr = locations_gvr();
    if ctx.store.resource_type(&gvr).is_err() {
        return; // no Velero CRDs: a bare cluster
    }
    let all = match ctx.store.list(&gvr, None, None).await {
        Ok(all) => all,
        Err(error) => {
            tracing::warn!(%error, "Velero cannot list backup storage locations");
            return;
        }
    };
    for bsl in all {
        let key = (
            namespace(&bsl).unwrap_or_default().to_owned(),
            name(&bsl).to_owned(),
        );
        let verdict = match Location::from_object(&bsl) {
            Ok(location) => location.check(&ctx.s3).await,
            Err(e) => Err(e.to_string()),
        };
        let new_phase = if verdict.is_ok() {
            "Available"
        } else {
            "Unavailable"
        };
        let fresh = written.get(&key).is_some_and(|t| t.elapsed() < REFRESH);
        if phase(&bsl) == new_phase && fresh {
            continue;
        }
        let message = match &verdict {
            Ok(()) => json!(null),
            Err(reason) => json!(format!(
                "BackupStorageLocation \"{}\" is unavailable: {reason}",
                key.1
            )),
        };
        let body = json!({"status": {"phase": new_phase, "lastValidationTime": now_rfc3339(), "message": message}});
        match ctx
            .store
            .patch_merge(&gvr, Some(&key.0), &key.1, &body)
            .await
        {
            Ok(_) => {
                if phase(&bsl) != new_phase {
                    tracing::info!(namespace = %key.0, name = %key.1, phase = new_phase, "backup storage location validated");
                }
                written.insert(key, Instant::now());
            }
            Err(error) => {
                tracing::warn!(%error, namespace = %key.0, name = %key.1, "cannot update the backup storage location's status")
            }
        }
    }
}
