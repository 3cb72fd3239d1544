//! A migration's lifecycle as pure functions over its record: what start,
//! cancel, rollback, retry, stage and cutover change, what a step's start
//! and end change, and what runs next. No I/O: the caller reads the record,
//! applies one of these and journals the result with the event returned.
use ferry_common::pb::{self, MigrationState as MS, StepState as SS};
use ferry_common::step::StepName;
use ferry_proto::names::Named;

pub use super::journal::{At, step_at, step_mut};
use super::plan::{self, Planned};
use super::refs::{Actor, StepRef, parse_refs};
use super::request::{MigrationRequest, Mode};
use crate::{Error, Result};

pub fn is_terminal(state: MS) -> bool {
    matches!(
        state,
        MS::Succeeded | MS::Failed | MS::Cancelled | MS::RolledBack
    )
}

/// Nothing runs until someone asks: ended, or held after a stage copy.
pub fn is_resting(state: MS) -> bool {
    is_terminal(state) || state == MS::Staged
}

pub fn event(
    kind: pb::EventKind,
    step: &str,
    message: impl Into<String>,
    now: u64,
) -> pb::MigrationEvent {
    pb::MigrationEvent {
        at_unix_ms: now,
        kind: kind.into(),
        step: step.to_string(),
        message: message.into(),
        ..Default::default()
    }
}

pub fn new_steps(list: Vec<Planned>, request: &MigrationRequest) -> Vec<pb::Step> {
    list.into_iter()
        .map(|p| {
            let mut s = pb::Step {
                name: p.name.to_string(),
                cluster_id: plan::cluster_of(request, p.side),
                ..Default::default()
            };
            s.set_state(SS::Pending);
            s
        })
        .collect()
}

/// A new migration whose preflight passed: its first step is done.
pub fn start(
    request: &MigrationRequest,
    by: &Actor,
    checks: Vec<pb::Check>,
    domains: (String, String),
    trace: ferry_common::telemetry::TraceContext,
    now: u64,
) -> (pb::Migration, pb::MigrationEvent) {
    let mut steps = new_steps(plan::steps(request), request);
    if let Some(first) = steps.first_mut() {
        first.set_state(SS::Succeeded);
        first.attempt = 1;
        first.started_at_unix_ms = now;
        first.finished_at_unix_ms = now;
        first.detail = format!("{} checks passed", checks.len());
    }
    let mut m = pb::Migration {
        migration_id: request.migration_id.clone(),
        steps,
        created_by: by.to_string(),
        created_at_unix_ms: now,
        checks,
        source_apps_domain: domains.0,
        target_apps_domain: domains.1,
        request: Some(request.into()),
        trace_context: trace,
        ..Default::default()
    };
    m.set_state(MS::Running);
    let e = event(
        pb::EventKind::Created,
        "",
        format!(
            "migration of {} from {} to {} started by {by}",
            request.registry, request.source_cluster, request.target_cluster
        ),
        now,
    );
    (m, e)
}

/// Stops a running or staged migration and plans its rollback.
pub fn cancel(
    m: &mut pb::Migration,
    request: &MigrationRequest,
    by: &Actor,
    now: u64,
) -> Result<pb::MigrationEvent> {
    if !matches!(m.state(), MS::Running | MS::Staged) {
        return Err(Error::Precondition(format!(
            "migration {} is {}; only a running or staged migration can be cancelled (use rollback to undo a finished one)",
            m.migration_id,
            m.state()
        )));
    }
    m.set_state(MS::Cancelling);
    m.rollback = new_steps(plan::rollback_steps(request), request);
    Ok(event(
        pb::EventKind::State,
        "",
        format!("cancelled by {by}: stopping, then rolling back"),
        now,
    ))
}

/// Undoes an ended migration. A rolled-back one is left as it is (`None`).
pub fn rollback(
    m: &mut pb::Migration,
    request: &MigrationRequest,
    by: &Actor,
    now: u64,
) -> Result<Option<pb::MigrationEvent>> {
    match m.state() {
        MS::Succeeded | MS::Failed | MS::Cancelled => {}
        MS::RolledBack => return Ok(None),
        other => {
            return Err(Error::Precondition(format!(
                "migration {} is {other}; cancel a running migration instead (it rolls back)",
                m.migration_id
            )));
        }
    }
    m.set_state(MS::RollingBack);
    m.error.clear();
    m.finished_at_unix_ms = 0;
    m.rollback = new_steps(plan::rollback_steps(request), request);
    Ok(Some(event(
        pb::EventKind::State,
        "",
        format!("rollback asked by {by}"),
        now,
    )))
}

/// Runs a failed migration again from its failed step.
pub fn retry(m: &mut pb::Migration, by: &Actor, now: u64) -> Result<pb::MigrationEvent> {
    if m.state() != MS::Failed {
        return Err(Error::Precondition(format!(
            "migration {} is {}; only a failed migration can be retried",
            m.migration_id,
            m.state()
        )));
    }
    let rolling_back = !m.rollback.is_empty();
    let steps = if rolling_back {
        &mut m.rollback
    } else {
        &mut m.steps
    };
    let failed = steps.iter_mut().find(|s| s.state() == SS::Failed).map(|s| {
        s.set_state(SS::Pending);
        s.error.clear();
        // Velero names are the idempotency keys: a failed backup found
        // again by its name would fail again.
        rename_backups(s, StepRef::FailedBackup);
        s.name.clone()
    });
    m.set_state(if rolling_back {
        MS::RollingBack
    } else {
        MS::Running
    });
    m.error.clear();
    m.finished_at_unix_ms = 0;
    Ok(event(
        pb::EventKind::State,
        failed.as_deref().unwrap_or(""),
        format!("retry asked by {by}"),
        now,
    ))
}

/// A staged migration copies again what changed since its last stage copy.
pub fn stage(m: &mut pb::Migration, by: &Actor, now: u64) -> Result<pb::MigrationEvent> {
    held(m, "copied again")?;
    for s in m.steps.iter_mut() {
        if !matches!(
            s.name.parse(),
            Ok(StepName::StageBackup | StepName::StageTransfer)
        ) {
            continue;
        }
        s.set_state(SS::Pending);
        s.error.clear();
        s.detail.clear();
        s.progress = None;
        // The last stage backup keeps its name for cleanup; the next copy is
        // of a new one.
        rename_backups(s, StepRef::StagedBackup);
    }
    m.set_state(MS::Running);
    Ok(event(
        pb::EventKind::State,
        &StepName::StageBackup.to_string(),
        format!("another stage copy asked by {by}: what changed on the source since the last one"),
        now,
    ))
}

/// A staged migration goes on: quiesce, backup, the rest.
pub fn cutover(m: &mut pb::Migration, by: &Actor, now: u64) -> Result<pb::MigrationEvent> {
    held(m, "cut over")?;
    let await_cutover = StepName::AwaitCutover.to_string();
    if let Some(s) = m.steps.iter_mut().find(|s| s.name == await_cutover) {
        s.set_state(SS::Succeeded);
        s.attempt = s.attempt.max(1);
        s.started_at_unix_ms = now;
        s.finished_at_unix_ms = now;
        s.detail = format!("cutover asked by {by}");
    }
    m.set_state(MS::Running);
    Ok(event(
        pb::EventKind::State,
        &await_cutover,
        format!("cutover asked by {by}: quiesce, backup, transfer of what changed, restore"),
        now,
    ))
}

/// After the stage copy of a held migration: STAGED, until the operator asks.
pub fn hold(m: &mut pb::Migration, now: u64) -> Option<pb::MigrationEvent> {
    if m.state() != MS::Running {
        return None;
    }
    m.set_state(MS::Staged);
    let copy = stage_backup(m).unwrap_or_default();
    let id = &m.migration_id;
    Some(event(
        pb::EventKind::State,
        &StepName::AwaitCutover.to_string(),
        format!(
            "staged: the target holds the copy of {copy}; the source serves. `ferry migrate stage {id}` copies what changed since, `ferry migrate cutover {id}` goes on"
        ),
        now,
    ))
}

/// Refuses a call that needs a migration held after its stage copy.
fn held(m: &pb::Migration, what: &str) -> Result<()> {
    if m.state() == MS::Staged {
        return Ok(());
    }
    let was_held = MigrationRequest::of(m).is_ok_and(|r| r.mode == Mode::Held);
    let how = if was_held {
        "it is not holding now"
    } else {
        "it was not started with --hold"
    };
    Err(Error::Precondition(format!(
        "migration {} is {}; only a staged migration can be {what}, and {how}",
        m.migration_id,
        MS::name_of(m.state)
    )))
}

fn rename_backups(s: &mut pb::Step, to: fn(String) -> StepRef) {
    for r in s.refs.iter_mut() {
        if let Ok(StepRef::Backup(name)) = r.parse() {
            *r = to(name).to_string();
        }
    }
}

/// What the driver does next with a migration in this state.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Run(At),
    /// Held after the stage copy.
    Hold,
    /// No step left: it ends in this state.
    Finish(MS, &'static str),
    /// Ended or held: nothing runs.
    Rest,
}

pub fn next(m: &pb::Migration) -> Next {
    let pending = |steps: &[pb::Step]| {
        steps
            .iter()
            .position(|s| matches!(s.state(), SS::Pending | SS::Running))
    };
    let state = m.state();
    let (rollback, index) = match state {
        MS::Running => (false, pending(&m.steps)),
        MS::Cancelling | MS::RollingBack => (true, pending(&m.rollback)),
        _ => (false, None),
    };
    if let Some(index) = index {
        let at = At { rollback, index };
        let waits = !rollback
            && step_at(m, at).is_some_and(|s| s.name == StepName::AwaitCutover.to_string());
        return if waits { Next::Hold } else { Next::Run(at) };
    }
    match state {
        MS::Running => Next::Finish(MS::Succeeded, "migration verified and done"),
        MS::Cancelling => Next::Finish(
            MS::Cancelled,
            "cancelled; the target was cleaned and the source serves again",
        ),
        MS::RollingBack => Next::Finish(
            MS::RolledBack,
            "rolled back; the target was cleaned and the source serves again",
        ),
        _ => Next::Rest,
    }
}

/// Ends a migration whose last step is done, if it is still in `from`.
pub fn finish(
    m: &mut pb::Migration,
    from: MS,
    end: MS,
    message: &str,
    now: u64,
) -> Option<pb::MigrationEvent> {
    if m.state() != from {
        return None;
    }
    m.set_state(end);
    m.finished_at_unix_ms = m.finished_at_unix_ms.max(now);
    Some(event(pb::EventKind::Finished, "", message, now))
}

/// A step starts, or resumes after a restart (then its attempt stays).
pub fn step_started(m: &mut pb::Migration, at: At, now: u64) -> Option<pb::MigrationEvent> {
    let step = step_mut(m, at)?;
    let name = step.name.clone();
    let message = if step.state() == SS::Pending {
        step.set_state(SS::Running);
        step.attempt += 1;
        step.started_at_unix_ms = now;
        step.finished_at_unix_ms = 0;
        let on = if step.cluster_id.is_empty() {
            String::new()
        } else {
            format!(" on {}", step.cluster_id)
        };
        format!("{name} started{on} (attempt {})", step.attempt)
    } else {
        format!(
            "{name} resumed (attempt {}) after a coordinator restart",
            step.attempt
        )
    };
    Some(event(pb::EventKind::StepStarted, &name, message, now))
}

/// A step succeeded; its last progress and what it did are kept.
pub fn step_succeeded(
    m: &mut pb::Migration,
    at: At,
    detail: &str,
    progress: Option<pb::StepProgress>,
    now: u64,
) -> Option<pb::MigrationEvent> {
    let s = step_mut(m, at)?;
    s.set_state(SS::Succeeded);
    s.finished_at_unix_ms = now;
    s.detail = detail.to_string();
    if progress.is_some() {
        s.progress = progress;
    }
    if let Some(p) = s.progress.as_mut()
        && p.items_total > 0
    {
        p.items_done = p.items_total;
    }
    let name = s.name.clone();
    Some(event(
        pb::EventKind::StepFinished,
        &name,
        format!("{name}: {detail}"),
        now,
    ))
}

/// A step stopped because its migration was cancelled.
pub fn step_cancelled(m: &mut pb::Migration, at: At, now: u64) -> Option<pb::MigrationEvent> {
    let s = step_mut(m, at)?;
    s.set_state(SS::Failed);
    s.error = "cancelled".into();
    s.finished_at_unix_ms = now;
    let name = s.name.clone();
    Some(event(
        pb::EventKind::StepFailed,
        &name,
        format!("{name} stopped: the migration was cancelled"),
        now,
    ))
}

/// A step failed. The migration fails with it, unless a cancel asked for a
/// rollback meanwhile: a failure of the forward part does not stop that.
pub fn step_failed(
    m: &mut pb::Migration,
    at: At,
    message: &str,
    progress: Option<pb::StepProgress>,
    now: u64,
) -> Option<pb::MigrationEvent> {
    let s = step_mut(m, at)?;
    s.set_state(SS::Failed);
    s.error = message.to_string();
    s.finished_at_unix_ms = now;
    if progress.is_some() {
        s.progress = progress;
    }
    let name = s.name.clone();
    if at.rollback || m.state() == MS::Running {
        m.set_state(MS::Failed);
        m.error = format!("step {name} failed: {message}");
        m.finished_at_unix_ms = m.finished_at_unix_ms.max(now);
    }
    Some(event(
        pb::EventKind::StepFailed,
        &name,
        format!("{name} failed: {message}"),
        now,
    ))
}

/// Every backup the migration named: stage copies, cutover, failed ones.
pub fn all_backups(m: &pb::Migration) -> Vec<String> {
    let mut names: Vec<String> = m
        .steps
        .iter()
        .flat_map(|s| parse_refs(&s.refs))
        .filter_map(|r| r.any_backup().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The backup the current stage copy made, if it has one.
pub fn stage_backup(m: &pb::Migration) -> Option<String> {
    let stage = StepName::StageBackup.to_string();
    let step = m.steps.iter().find(|s| s.name == stage)?;
    parse_refs(&step.refs).find_map(|r| match r {
        StepRef::Backup(name) => Some(name),
        _ => None,
    })
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
