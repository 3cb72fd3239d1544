//! The transfer steps: the relay moves every object set of the migration, a
//! few at a time, through the transfers the coordinator already follows;
//! this step wakes when one of them ends.
use std::time::Duration;

use ferry_common::pb::{self, ErrorKind};
use ferry_common::step::StepName;
use tokio::sync::broadcast::error::RecvError;

use super::{Context, StepError, StepResult};
use crate::migrate::lifecycle::stage_backup;
use crate::migrate::plan;
use crate::migrate::refs::{StepRef, parse_refs};
use crate::relay::TransfersApi;

/// Transfers of one step running at once.
const TRANSFERS_AT_ONCE: usize = 6;
/// How often, at most, watchers are told the relayed bytes of the running
/// transfers: the step wakes as the relay's figures move (nothing is
/// journaled between a step's start and end), and to start more transfers
/// as others end.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long a rollback waits for a cancelled transfer to stop.
const TRANSFER_STOP_WAIT: Duration = Duration::from_secs(30);

pub async fn run(cx: &Context<'_>) -> StepResult {
    let staged = cx.name == StepName::StageTransfer;
    let backup = if staged {
        stage_backup(cx.m).ok_or_else(|| {
            StepError::failed(ErrorKind::Precondition, "the stage backup has no name yet")
        })?
    } else {
        cx.m.backup_name.clone()
    };
    let sets = plan::transfer_sets(cx.request, &backup, cx.id(), !staged);
    let ids: Vec<String> = sets
        .iter()
        .map(|(name, _, _)| format!("{}-{}-a{}-{name}", cx.id(), cx.name, cx.step.attempt))
        .collect();
    // Subscribed before any starts, so no end is missed.
    let mut ended = cx.transfers.subscribe_ended();
    let mut relayed = cx.transfers.follow_changes(PROGRESS_EVERY);
    let mut started: Vec<usize> = vec![];
    let mut last = pb::StepProgress::default();
    loop {
        let mut running = 0;
        let mut totals = pb::StepProgress::default();
        let mut failures = vec![];
        let mut done = 0;
        let mut moved = 0;
        for &i in &started {
            let t = cx.transfers.status(&ids[i])?;
            let c = t.counts.unwrap_or_default();
            moved += c.bytes_moved;
            totals.items_total += c.objects_total;
            totals.items_done += c.objects_moved + c.objects_skipped;
            totals.bytes_total += c.bytes_total;
            // Never more than the transfer's own total: bytes sent again
            // after a resume, or counted before the total is known, are not
            // progress past it.
            totals.bytes_done += (c.bytes_moved + c.bytes_skipped)
                .max(t.bytes_relayed.min(c.bytes_total))
                .min(c.bytes_total);
            totals.rate_bytes_per_sec += t.rate_bytes_per_sec;
            totals.eta_ms = totals.eta_ms.max(t.eta_ms);
            match t.state() {
                pb::TransferState::Running => running += 1,
                pb::TransferState::Succeeded => done += 1,
                _ => failures.push(format!("{} ({}): {}", sets[i].0, ids[i], t.error)),
            }
        }
        if !failures.is_empty() {
            return Err(StepError::failed(
                ErrorKind::Unavailable,
                format!("transfers failed: {}", failures.join("; ")),
            ));
        }
        if done == sets.len() {
            cx.progress(totals.clone());
            return Ok(format!(
                "{} sets relayed: {} objects, {} bytes; {} bytes moved, the rest already on the target",
                sets.len(),
                totals.items_total,
                totals.bytes_total,
                moved
            ));
        }
        // Start more, up to the limit.
        let pending: Vec<usize> = (0..sets.len()).filter(|i| !started.contains(i)).collect();
        for i in pending {
            if running >= TRANSFERS_AT_ONCE {
                break;
            }
            let (_, store, prefix) = &sets[i];
            let set = |cluster: &str| pb::ObjectSet {
                cluster_id: cluster.to_string(),
                store: store.clone(),
                prefix: prefix.clone(),
            };
            cx.transfers
                .begin(pb::StartTransferRequest {
                    transfer_id: ids[i].clone(),
                    source: Some(set(&cx.request.source_cluster)),
                    target: Some(set(&cx.request.target_cluster)),
                    chunk_size: 0,
                    parallelism: 0,
                })
                .await?;
            cx.add_ref(StepRef::Transfer(ids[i].clone()))?;
            started.push(i);
            running += 1;
        }
        totals.message = format!("{} of {} sets relayed, {running} moving", done, sets.len());
        if totals != last {
            cx.progress(totals.clone());
            last = totals;
        }
        tokio::select! {
            e = ended.recv() => if let Err(RecvError::Closed) = e {
                return Err(crate::Error::ShuttingDown(cx.name.to_string()).into());
            },
            () = relayed.changed() => {}
        }
    }
}

/// Aborts the migration's running transfers and waits for them to stop.
pub async fn stop_transfers(transfers: &TransfersApi, m: &pb::Migration) {
    let ids: Vec<String> = m
        .steps
        .iter()
        .flat_map(|s| parse_refs(&s.refs))
        .filter_map(|r| match r {
            StepRef::Transfer(id) => Some(id),
            _ => None,
        })
        .collect();
    let mut ended = transfers.subscribe_ended();
    let deadline = tokio::time::Instant::now() + TRANSFER_STOP_WAIT;
    for t in &ids {
        transfers.abort(t, "the migration was cancelled");
        while transfers
            .status(t)
            .is_ok_and(|s| s.state() == pb::TransferState::Running)
        {
            tokio::select! {
                e = ended.recv() => if let Err(RecvError::Closed) = e {
                    return;
                },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(transfer = %t, "transfer still running after abort; cleaning up anyway");
                    break;
                }
            }
        }
    }
}
