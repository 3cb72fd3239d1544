//! The migration engine: runs each migration's steps in order, journaling
//! every step in the store before and after it runs.
//!
//! Every step is idempotent where it acts: a step's agent command has a
//! request id derived from the migration, the step and its attempt, so a
//! restarted coordinator that runs a step again gets the command it already
//! sent (and its result, if the agent finished it) instead of a second one;
//! Velero objects are named by the migration, so a repeated create finds the
//! existing one. A coordinator killed at any moment resumes every migration
//! that was running at the step it was on.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferry_common::pb::{
    self, MigrationState as MS, StepState as SS, step_command::Kind as StepKind,
};
use ferry_common::telemetry;
use ferry_common::time::unix_ms;
use ferry_proto::names::Named;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::plan::{self, Side};
use super::preflight;
use super::verify;
use crate::fleet::Fleet;
use crate::metrics;
use crate::relay::TransfersApi;
use crate::store::{Store, is_finished};
use crate::{Error, Result};

/// Who the fleet records as submitting a migration's commands.
pub const SUBMITTER: &str = "ferry-migrations";
/// How often a running step's progress is looked at.
const POLL: Duration = Duration::from_millis(250);
/// Transfers of one step running at once.
const TRANSFERS_AT_ONCE: usize = 6;
/// How long a rollback waits for a cancelled transfer to stop.
const TRANSFER_STOP_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    fleet: Arc<Fleet>,
    transfers: TransfersApi,
    events: broadcast::Sender<pb::MigrationEvent>,
    /// Serializes read-modify-write of migration records.
    records: Mutex<()>,
    /// Migrations with a running driver, and the token that cancels the
    /// forward part of the run.
    runs: Mutex<HashMap<String, CancellationToken>>,
    shutdown: CancellationToken,
}

/// How a step ended, when it did not succeed.
enum StepError {
    Failed(String),
    Cancelled,
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        StepError::Failed(e.to_string())
    }
}

type StepResult = std::result::Result<String, StepError>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

pub fn is_terminal(state: i32) -> bool {
    matches!(
        MS::try_from(state),
        Ok(MS::Succeeded | MS::Failed | MS::Cancelled | MS::RolledBack)
    )
}

/// Nothing runs until someone asks: ended, or held after a stage copy.
pub fn is_resting(state: i32) -> bool {
    is_terminal(state) || state == MS::Staged as i32
}

fn event(kind: pb::EventKind, step: &str, message: impl Into<String>) -> pb::MigrationEvent {
    pb::MigrationEvent {
        at_unix_ms: unix_ms(),
        kind: kind as i32,
        step: step.to_string(),
        message: message.into(),
        ..Default::default()
    }
}

fn new_steps(list: Vec<(String, Side, String)>, request: &pb::MigrationRequest) -> Vec<pb::Step> {
    list.into_iter()
        .map(|(name, side, _)| pb::Step {
            name,
            cluster_id: match side {
                Side::Source => request.source_cluster.clone(),
                Side::Target => request.target_cluster.clone(),
                Side::Coordinator => String::new(),
            },
            state: SS::Pending as i32,
            ..Default::default()
        })
        .collect()
}

impl Engine {
    /// Also resumes every migration the store says was in progress.
    pub fn new(
        store: Store,
        fleet: Arc<Fleet>,
        transfers: TransfersApi,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let (events, _) = broadcast::channel(4096);
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                fleet,
                transfers,
                events,
                records: Mutex::new(()),
                runs: Mutex::new(HashMap::new()),
                shutdown,
            }),
        };
        for m in engine.inner.store.migrations()? {
            if !is_terminal(m.state) {
                tracing::info!(migration = %m.migration_id, state = ?m.state(), "resuming migration");
                engine.drive(&m.migration_id);
            }
        }
        Ok(engine)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::MigrationEvent> {
        self.inner.events.subscribe()
    }

    pub fn get(&self, id: &str) -> Result<pb::Migration> {
        self.inner.get(id)
    }

    pub fn list(&self) -> Result<Vec<pb::Migration>> {
        let mut all = self.inner.store.migrations()?;
        all.sort_by_key(|m| m.created_at_unix_ms);
        Ok(all)
    }

    pub fn events(&self, id: &str, after: u64) -> Result<Vec<pb::MigrationEvent>> {
        self.inner.store.migration_events(id, after)
    }

    pub fn audit(&self, actor: &str, action: &str, migration: &str, detail: impl Into<String>) {
        self.inner.audit(actor, action, migration, detail.into());
    }

    pub fn audit_log(&self, migration: Option<&str>) -> Result<Vec<pb::AuditEntry>> {
        self.inner.store.audit_log(migration)
    }

    /// The steps and every preflight verdict. Changes nothing anywhere.
    pub async fn plan(&self, request: &pb::MigrationRequest) -> Result<pb::MigrationPlan> {
        check_request(request)?;
        let verdict = preflight::run(&self.inner.fleet, request).await;
        Ok(pb::MigrationPlan {
            steps: plan::steps(request)
                .into_iter()
                .map(|(name, side, description)| pb::PlannedStep {
                    name,
                    cluster_id: match side {
                        Side::Source => request.source_cluster.clone(),
                        Side::Target => request.target_cluster.clone(),
                        Side::Coordinator => String::new(),
                    },
                    description,
                })
                .collect(),
            ready: verdict.ready(),
            checks: verdict.checks,
        })
    }

    /// Runs the preflight and, if every check passes, records the migration
    /// and starts it. The same id returns the migration already recorded.
    /// `trace`: the caller's trace context, which every step's span continues.
    pub async fn start(
        &self,
        mut request: pb::MigrationRequest,
        by: &str,
        trace: ferry_common::telemetry::TraceContext,
    ) -> Result<pb::Migration> {
        check_request(&request)?;
        if request.migration_id.is_empty() {
            request.migration_id = format!("{}-{}", request.registry, &crate::fleet::new_id()[..8]);
        }
        if let Some(existing) = self.inner.store.migration(&request.migration_id)? {
            return Ok(existing);
        }
        let verdict = preflight::run(&self.inner.fleet, &request).await;
        let id = request.migration_id.clone();
        if !verdict.ready() {
            let failed: Vec<String> = verdict
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{} ({}): {}", c.name, c.cluster_id, c.reason))
                .collect();
            self.inner.audit(
                by,
                "start-refused",
                &id,
                format!("preflight failed: {}", failed.join("; ")),
            );
            return Err(Error::Precondition(format!(
                "migration of {} from {} to {} refused; nothing was changed. Failed checks:\n  {}",
                request.registry,
                request.source_cluster,
                request.target_cluster,
                failed.join("\n  ")
            )));
        }
        let mut steps = new_steps(plan::steps(&request), &request);
        if let Some(first) = steps.first_mut() {
            first.state = SS::Succeeded as i32;
            first.attempt = 1;
            first.started_at_unix_ms = unix_ms();
            first.finished_at_unix_ms = unix_ms();
            first.detail = format!("{} checks passed", verdict.checks.len());
        }
        let mut m = pb::Migration {
            migration_id: id.clone(),
            state: MS::Running as i32,
            steps,
            created_by: by.to_string(),
            created_at_unix_ms: unix_ms(),
            checks: verdict.checks.clone(),
            source_apps_domain: verdict.source_apps_domain.clone(),
            target_apps_domain: verdict.target_apps_domain.clone(),
            request: Some(request.clone()),
            trace_context: trace,
            ..Default::default()
        };
        {
            let _g = lock(&self.inner.records);
            // A concurrent start with the same id may have won.
            if let Some(existing) = self.inner.store.migration(&id)? {
                return Ok(existing);
            }
            let e = self.inner.store.put_migration(
                &mut m,
                Some(event(
                    pb::EventKind::Created,
                    "",
                    format!(
                        "migration of {} from {} to {} started by {by}",
                        request.registry, request.source_cluster, request.target_cluster
                    ),
                )),
            )?;
            self.inner.publish(e, m.state);
        }
        self.inner.audit(
            by,
            "start",
            &id,
            format!(
                "registry {} from {} to {} (stage: {}, hold: {}, allow warnings: {}); preflight passed",
                request.registry,
                request.source_cluster,
                request.target_cluster,
                request.stage || request.hold,
                request.hold,
                request.allow_warnings
            ),
        );
        self.drive(&id);
        Ok(m)
    }

    /// Stops the running step (if any) and rolls back.
    pub fn cancel(&self, id: &str, by: &str) -> Result<pb::Migration> {
        let m = self.inner.update(id, |m| {
            if m.state != MS::Running as i32 && m.state != MS::Staged as i32 {
                return Err(Error::Precondition(format!(
                    "migration {id} is {}; only a running or staged migration can be cancelled (use rollback to undo a finished one)",
                    MS::name_of(m.state)
                )));
            }
            m.state = MS::Cancelling as i32;
            m.rollback = new_steps(plan::rollback_steps(request(m)), request(m));
            Ok(Some(event(
                pb::EventKind::State,
                "",
                format!("cancelled by {by}: stopping, then rolling back"),
            )))
        })?;
        self.inner.audit(by, "cancel", id, "stop and roll back");
        if let Some(token) = lock(&self.inner.runs).get(id) {
            token.cancel();
        }
        self.drive(id);
        Ok(m)
    }

    /// Removes what the migration put on the target and un-quiesces the source.
    pub fn rollback(&self, id: &str, by: &str) -> Result<pb::Migration> {
        let m = self.inner.update(id, |m| {
            match MS::try_from(m.state) {
                Ok(MS::Succeeded | MS::Failed | MS::Cancelled) => {}
                Ok(MS::RolledBack) => return Ok(None),
                _ => {
                    return Err(Error::Precondition(format!(
                        "migration {id} is {}; cancel a running migration instead (it rolls back)",
                        MS::name_of(m.state)
                    )));
                }
            }
            m.state = MS::RollingBack as i32;
            m.error.clear();
            m.finished_at_unix_ms = 0;
            m.rollback = new_steps(plan::rollback_steps(request(m)), request(m));
            Ok(Some(event(
                pb::EventKind::State,
                "",
                format!("rollback asked by {by}"),
            )))
        })?;
        self.inner
            .audit(by, "rollback", id, "remove from target, un-quiesce source");
        self.drive(id);
        Ok(m)
    }

    /// Runs a failed migration again from its failed step.
    pub fn retry(&self, id: &str, by: &str) -> Result<pb::Migration> {
        let m = self.inner.update(id, |m| {
            if m.state != MS::Failed as i32 {
                return Err(Error::Precondition(format!(
                    "migration {id} is {}; only a failed migration can be retried",
                    MS::name_of(m.state)
                )));
            }
            let rolling_back = !m.rollback.is_empty();
            let steps = if rolling_back {
                &mut m.rollback
            } else {
                &mut m.steps
            };
            let failed = steps
                .iter_mut()
                .find(|s| s.state == SS::Failed as i32)
                .map(|s| {
                    s.state = SS::Pending as i32;
                    s.error.clear();
                    // Velero names are the idempotency keys: a failed backup
                    // found again by its name would fail again.
                    for r in s.refs.iter_mut() {
                        if let Some(name) = r.strip_prefix("backup/") {
                            *r = format!("failed-backup/{name}");
                        }
                    }
                    s.name.clone()
                });
            m.state = if rolling_back {
                MS::RollingBack
            } else {
                MS::Running
            } as i32;
            m.error.clear();
            m.finished_at_unix_ms = 0;
            Ok(Some(event(
                pb::EventKind::State,
                failed.as_deref().unwrap_or(""),
                format!("retry asked by {by}"),
            )))
        })?;
        self.inner
            .audit(by, "retry", id, "run again from the failed step");
        self.drive(id);
        Ok(m)
    }

    /// A staged migration copies again what changed on the source since its
    /// last stage copy (a new stage backup; the relay moves only what the
    /// target lacks), then holds again.
    pub fn stage(&self, id: &str, by: &str) -> Result<pb::Migration> {
        let m = self.inner.update(id, |m| {
            held(m, id, "copied again")?;
            for s in m.steps.iter_mut() {
                if s.name != "stage-backup" && s.name != "stage-transfer" {
                    continue;
                }
                s.state = SS::Pending as i32;
                s.error.clear();
                s.detail.clear();
                s.progress = None;
                // The last stage backup keeps its name for cleanup; the next
                // copy is of a new one.
                for r in s.refs.iter_mut() {
                    if let Some(name) = r.strip_prefix("backup/") {
                        *r = format!("staged-backup/{name}");
                    }
                }
            }
            m.state = MS::Running as i32;
            Ok(Some(event(
                pb::EventKind::State,
                "stage-backup",
                format!("another stage copy asked by {by}: what changed on the source since the last one"),
            )))
        })?;
        self.inner.audit(
            by,
            "stage",
            id,
            "copy what changed on the source since the last stage copy",
        );
        self.drive(id);
        Ok(m)
    }

    /// A staged migration goes on: quiesce, backup, the rest.
    pub fn cutover(&self, id: &str, by: &str) -> Result<pb::Migration> {
        let m = self.inner.update(id, |m| {
            held(m, id, "cut over")?;
            let now = unix_ms();
            if let Some(s) = m.steps.iter_mut().find(|s| s.name == plan::AWAIT_CUTOVER) {
                s.state = SS::Succeeded as i32;
                s.attempt = s.attempt.max(1);
                s.started_at_unix_ms = now;
                s.finished_at_unix_ms = now;
                s.detail = format!("cutover asked by {by}");
            }
            m.state = MS::Running as i32;
            Ok(Some(event(
                pb::EventKind::State,
                plan::AWAIT_CUTOVER,
                format!(
                    "cutover asked by {by}: quiesce, backup, transfer of what changed, restore"
                ),
            )))
        })?;
        self.inner
            .audit(by, "cutover", id, "quiesce the source and go on");
        self.drive(id);
        Ok(m)
    }

    /// Starts the migration's driver unless one is running.
    fn drive(&self, id: &str) {
        let token = {
            let mut runs = lock(&self.inner.runs);
            if runs.contains_key(id) {
                return;
            }
            let token = self.inner.shutdown.child_token();
            runs.insert(id.to_string(), token.clone());
            token
        };
        let inner = self.inner.clone();
        let id = id.to_string();
        tokio::spawn(async move { inner.drive(id, token).await });
    }
}

/// Refuses a call that needs a migration held after its stage copy.
fn held(m: &pb::Migration, id: &str, what: &str) -> Result<()> {
    if m.state == MS::Staged as i32 {
        return Ok(());
    }
    let how = if request(m).hold {
        "it is not holding now"
    } else {
        "it was not started with --hold"
    };
    Err(Error::Precondition(format!(
        "migration {id} is {}; only a staged migration can be {what}, and {how}",
        MS::name_of(m.state)
    )))
}

fn request(m: &pb::Migration) -> &pb::MigrationRequest {
    static EMPTY: std::sync::OnceLock<pb::MigrationRequest> = std::sync::OnceLock::new();
    m.request
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
}

fn check_request(r: &pb::MigrationRequest) -> Result<()> {
    let valid = ferry_common::identity::valid_name;
    if !valid(&r.registry) {
        return Err(Error::Invalid(format!(
            "registry {:?} must be a namespace name: lowercase letters, digits and '-'",
            r.registry
        )));
    }
    for (what, v) in [
        ("source cluster", &r.source_cluster),
        ("target cluster", &r.target_cluster),
    ] {
        if v.is_empty() {
            return Err(Error::Invalid(format!("the {what} is required")));
        }
    }
    if !r.migration_id.is_empty() && !valid(&r.migration_id) {
        return Err(Error::Invalid(format!(
            "migration id {:?} must be lowercase letters, digits and '-'",
            r.migration_id
        )));
    }
    Ok(())
}

/// Where a step is: in the forward list or the rollback list, at an index.
#[derive(Clone, Copy)]
struct At {
    rollback: bool,
    index: usize,
}

fn step_mut(m: &mut pb::Migration, at: At) -> Option<&mut pb::Step> {
    if at.rollback {
        m.rollback.get_mut(at.index)
    } else {
        m.steps.get_mut(at.index)
    }
}

fn step_ref(m: &pb::Migration, at: At) -> Option<&pb::Step> {
    if at.rollback {
        m.rollback.get(at.index)
    } else {
        m.steps.get(at.index)
    }
}

fn next_step(steps: &[pb::Step]) -> Option<usize> {
    steps
        .iter()
        .position(|s| s.state == SS::Pending as i32 || s.state == SS::Running as i32)
}

impl Inner {
    fn get(&self, id: &str) -> Result<pb::Migration> {
        self.store
            .migration(id)?
            .ok_or_else(|| Error::UnknownMigration(id.to_string()))
    }

    fn audit(&self, actor: &str, action: &str, migration: &str, detail: impl Into<String>) {
        let entry = pb::AuditEntry {
            actor: actor.to_string(),
            action: action.to_string(),
            migration_id: migration.to_string(),
            detail: detail.into(),
            ..Default::default()
        };
        if let Err(e) = self.store.audit(entry) {
            tracing::error!(error = %e, %actor, %action, %migration, "cannot append to the audit log");
        }
    }

    fn publish(&self, e: Option<pb::MigrationEvent>, state: i32) {
        if let Some(mut e) = e {
            e.state = state;
            let _ = self.events.send(e);
        }
    }

    /// Read-modify-write of one migration; `f` may return an event to log.
    fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut pb::Migration) -> Result<Option<pb::MigrationEvent>>,
    ) -> Result<pb::Migration> {
        let _g = lock(&self.records);
        let mut m = self.get(id)?;
        let e = f(&mut m)?;
        if let Some(e) = e.as_ref()
            && (e.kind == pb::EventKind::Finished as i32 || is_terminal(m.state))
        {
            m.finished_at_unix_ms = m.finished_at_unix_ms.max(unix_ms());
        }
        let mut stored = e.map(|mut e| {
            e.state = m.state;
            e
        });
        stored = self.store.put_migration(&mut m, stored)?;
        self.publish(stored, m.state);
        Ok(m)
    }

    fn update_step(
        &self,
        id: &str,
        at: At,
        f: impl FnOnce(&mut pb::Step),
    ) -> Result<pb::Migration> {
        self.update(id, |m| {
            if let Some(s) = step_mut(m, at) {
                f(s);
            }
            Ok(None)
        })
    }

    async fn drive(self: Arc<Self>, id: String, token: CancellationToken) {
        loop {
            if self.shutdown.is_cancelled() {
                lock(&self.runs).remove(&id);
                return;
            }
            let m = match self.get(&id) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(migration = %id, error = %e, "cannot read migration; its driver stops");
                    lock(&self.runs).remove(&id);
                    return;
                }
            };
            let state = MS::try_from(m.state).unwrap_or(MS::Unspecified);
            let next = match state {
                MS::Running => next_step(&m.steps).map(|index| At {
                    rollback: false,
                    index,
                }),
                MS::Cancelling | MS::RollingBack => next_step(&m.rollback).map(|index| At {
                    rollback: true,
                    index,
                }),
                _ => None,
            };
            if let Some(at) = next {
                if !at.rollback && step_ref(&m, at).is_some_and(|s| s.name == plan::AWAIT_CUTOVER) {
                    self.hold(&id).await;
                    continue;
                }
                self.run_step(&id, at, &token).await;
                continue;
            }
            if !is_resting(m.state) {
                let (end, message) = match state {
                    MS::Running => (MS::Succeeded, "migration verified and done"),
                    MS::Cancelling => (
                        MS::Cancelled,
                        "cancelled; the target was cleaned and the source serves again",
                    ),
                    _ => (
                        MS::RolledBack,
                        "rolled back; the target was cleaned and the source serves again",
                    ),
                };
                let finished = self.update(&id, |m| {
                    if m.state != state as i32 {
                        return Ok(None);
                    }
                    m.state = end as i32;
                    Ok(Some(event(pb::EventKind::Finished, "", message)))
                });
                if let Err(e) = finished {
                    tracing::error!(migration = %id, error = %e, "cannot record the end of a migration");
                } else {
                    self.audit("coordinator", "finished", &id, message.to_string());
                    metrics::get().migration_ended(end.name());
                }
                continue;
            }
            // Ended or held: stop, unless a call changed the state meanwhile.
            let mut runs = lock(&self.runs);
            match self.get(&id) {
                Ok(m) if !is_resting(m.state) => continue,
                _ => {
                    runs.remove(&id);
                    return;
                }
            }
        }
    }

    /// After the stage copy of a held migration: STAGED, until the operator
    /// asks for another stage copy or for the cutover.
    async fn hold(&self, id: &str) {
        let held = self.update(id, |m| {
            if m.state != MS::Running as i32 {
                return Ok(None);
            }
            m.state = MS::Staged as i32;
            let copy = stage_backup(m).unwrap_or_default();
            Ok(Some(event(
                pb::EventKind::State,
                plan::AWAIT_CUTOVER,
                format!(
                    "staged: the target holds the copy of {copy}; the source serves. `ferry migrate stage {id}` copies what changed since, `ferry migrate cutover {id}` goes on"
                ),
            )))
        });
        match held {
            Ok(m) if m.state == MS::Staged as i32 => {
                tracing::info!(migration = %id, "staged; holding for the operator");
                self.audit("coordinator", "staged", id, "holding for stage or cutover");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(migration = %id, error = %e, "cannot journal the hold; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn run_step(self: &Arc<Self>, id: &str, at: At, token: &CancellationToken) {
        let started = self.update(id, |m| {
            let Some(step) = step_mut(m, at) else {
                return Ok(None);
            };
            let name = step.name.clone();
            if step.state == SS::Pending as i32 {
                step.state = SS::Running as i32;
                step.attempt += 1;
                step.started_at_unix_ms = unix_ms();
                step.finished_at_unix_ms = 0;
                let on = if step.cluster_id.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", step.cluster_id)
                };
                Ok(Some(event(
                    pb::EventKind::StepStarted,
                    &name,
                    format!("{name} started{on} (attempt {})", step.attempt),
                )))
            } else {
                Ok(Some(event(
                    pb::EventKind::StepStarted,
                    &name,
                    format!(
                        "{name} resumed (attempt {}) after a coordinator restart",
                        step.attempt
                    ),
                )))
            }
        });
        let m = match started {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(migration = %id, error = %e, "cannot journal a step start; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return;
            }
        };
        let Some(step) = step_ref(&m, at).cloned() else {
            return;
        };
        tracing::info!(migration = %id, step = %step.name, attempt = step.attempt, cluster = %step.cluster_id, "step started");
        self.audit(
            "coordinator",
            "step-started",
            id,
            format!(
                "{} (attempt {}) {}",
                step.name, step.attempt, step.cluster_id
            ),
        );
        let span = tracing::info_span!(
            "migration.step",
            migration = %id,
            step = %step.name,
            attempt = step.attempt,
            cluster = %step.cluster_id,
        );
        telemetry::continue_trace(&span, &m.trace_context);
        let began = std::time::Instant::now();
        let work = self.execute(&m, at, &step).instrument(span);
        let outcome = if at.rollback {
            tokio::select! {
                r = work => r,
                _ = self.shutdown.cancelled() => return,
            }
        } else {
            tokio::select! {
                r = work => r,
                _ = token.cancelled() => Err(StepError::Cancelled),
                _ = self.shutdown.cancelled() => return,
            }
        };
        let actor = if step.cluster_id.is_empty() {
            "coordinator".to_string()
        } else {
            format!("cluster/{}", step.cluster_id)
        };
        match outcome {
            Ok(detail) => {
                let r = self.update(id, |m| {
                    let Some(s) = step_mut(m, at) else {
                        return Ok(None);
                    };
                    s.state = SS::Succeeded as i32;
                    s.finished_at_unix_ms = unix_ms();
                    s.detail = detail.clone();
                    if let Some(p) = s.progress.as_mut()
                        && p.items_total > 0
                    {
                        p.items_done = p.items_total;
                    }
                    Ok(Some(event(
                        pb::EventKind::StepFinished,
                        &step.name,
                        format!("{}: {detail}", step.name),
                    )))
                });
                if let Err(e) = r {
                    tracing::error!(migration = %id, error = %e, "cannot journal a step's end; it runs again");
                    return;
                }
                tracing::info!(migration = %id, step = %step.name, "step finished: {detail}");
                metrics::get().step_ended(&step.name, "succeeded", began.elapsed().as_secs_f64());
                self.audit(
                    &actor,
                    "step-finished",
                    id,
                    format!("{}: {detail}", step.name),
                );
            }
            Err(StepError::Cancelled) => {
                let _ = self.update(id, |m| {
                    if let Some(s) = step_mut(m, at) {
                        s.state = SS::Failed as i32;
                        s.error = "cancelled".into();
                        s.finished_at_unix_ms = unix_ms();
                    }
                    Ok(Some(event(
                        pb::EventKind::StepFailed,
                        &step.name,
                        format!("{} stopped: the migration was cancelled", step.name),
                    )))
                });
                self.audit("coordinator", "step-cancelled", id, step.name.clone());
                metrics::get().step_ended(&step.name, "cancelled", began.elapsed().as_secs_f64());
            }
            Err(StepError::Failed(message)) => {
                let r = self.update(id, |m| {
                    if let Some(s) = step_mut(m, at) {
                        s.state = SS::Failed as i32;
                        s.error = message.clone();
                        s.finished_at_unix_ms = unix_ms();
                    }
                    // A failure during a cancel's or rollback's forward part
                    // does not stop the rollback that was asked for.
                    if at.rollback || m.state == MS::Running as i32 {
                        m.state = MS::Failed as i32;
                        m.error = format!("step {} failed: {message}", step.name);
                    }
                    Ok(Some(event(
                        pb::EventKind::StepFailed,
                        &step.name,
                        format!("{} failed: {message}", step.name),
                    )))
                });
                if let Ok(m) = r
                    && m.state == MS::Failed as i32
                {
                    metrics::get().migration_ended("failed");
                    let _ = self.update(id, |_| {
                        Ok(Some(event(
                            pb::EventKind::Finished,
                            "",
                            format!(
                                "migration failed at {}; fix the cause and `ferry migrate retry {id}`, or `ferry migrate rollback {id}`",
                                step.name
                            ),
                        )))
                    });
                }
                tracing::warn!(migration = %id, step = %step.name, "step failed: {message}");
                metrics::get().step_ended(&step.name, "failed", began.elapsed().as_secs_f64());
                self.audit(
                    &actor,
                    "step-failed",
                    id,
                    format!("{}: {message}", step.name),
                );
            }
        }
    }

    /// Runs one step to its end; returns what it did, in one line.
    async fn execute(self: &Arc<Self>, m: &pb::Migration, at: At, step: &pb::Step) -> StepResult {
        let req = request(m).clone();
        let id = m.migration_id.as_str();
        let kind = |k: StepKind| k;
        match step.name.as_str() {
            "preflight" => {
                let verdict = preflight::run(&self.fleet, &req).await;
                if verdict.ready() {
                    Ok(format!("{} checks passed", verdict.checks.len()))
                } else {
                    Err(StepError::Failed(verdict.failures()))
                }
            }
            "quiesce" | "unquiesce-source" => {
                let undo = step.name != "quiesce";
                let out = self
                    .command(
                        m,
                        at,
                        step,
                        kind(StepKind::Quiesce(pb::QuiesceStep { undo })),
                    )
                    .await?;
                let Some(pb::step_output::Kind::Quiesce(q)) = out.kind else {
                    return Err(unexpected(&step.name));
                };
                Ok(format!(
                    "{} of {} workloads {}",
                    q.changed,
                    q.workloads,
                    if undo {
                        "scaled back up"
                    } else {
                        "scaled to zero"
                    }
                ))
            }
            "stage-backup" | "backup" => {
                let name = self.backup_name_for(m, at, step)?;
                let out = self
                    .command(
                        m,
                        at,
                        step,
                        StepKind::Backup(pb::BackupStep {
                            backup_name: name.clone(),
                            backup_location: plan::backup_location(&req),
                            allow_warnings: req.allow_warnings,
                        }),
                    )
                    .await?;
                let Some(pb::step_output::Kind::Backup(b)) = out.kind else {
                    return Err(unexpected(&step.name));
                };
                self.warn_all(id, &step.name, &b.messages);
                Ok(format!(
                    "backup {name} {}: {} items, {} warnings, {} errors",
                    b.phase, b.items, b.warnings, b.errors
                ))
            }
            "inventory" => {
                let out = self
                    .command(
                        m,
                        at,
                        step,
                        StepKind::Inventory(plan::inventory_step(&req.registry, &m.backup_name)),
                    )
                    .await?;
                let Some(pb::step_output::Kind::Inventory(inv)) = out.kind else {
                    return Err(unexpected(&step.name));
                };
                self.store.put_inventory(id, &inv)?;
                Ok(verify::summary(&inv))
            }
            "export-identity" | "import-identity" => {
                let (store, prefix) = (plan::backup_store(&req), plan::identity_prefix(id));
                let k = if step.name == "export-identity" {
                    StepKind::ExportIdentity(pb::ExportIdentityStep { store, prefix })
                } else {
                    StepKind::ImportIdentity(pb::ImportIdentityStep { store, prefix })
                };
                let out = self.command(m, at, step, k).await?;
                let Some(pb::step_output::Kind::Identity(r)) = out.kind else {
                    return Err(unexpected(&step.name));
                };
                let users: u64 = r.realms.iter().map(|x| x.users).sum();
                let created: u64 = r.realms.iter().map(|x| x.created).sum();
                let skipped: u64 = r.realms.iter().map(|x| x.skipped).sum();
                Ok(if step.name == "export-identity" {
                    format!("{} realms, {users} users exported", r.realms.len())
                } else {
                    format!(
                        "{} realms imported; users: {created} created, {skipped} already there",
                        r.realms.len()
                    )
                })
            }
            "stage-transfer" | "transfer" => {
                let staged = step.name == "stage-transfer";
                let backup = if staged {
                    stage_backup(m).ok_or_else(|| {
                        StepError::Failed("the stage backup has no name yet".into())
                    })?
                } else {
                    m.backup_name.clone()
                };
                let sets = plan::transfer_sets(&req, &backup, id, !staged);
                self.transfer(m, at, step, sets).await
            }
            name if name.starts_with("restore-") => {
                let phase = plan::restore_phase(name)
                    .ok_or_else(|| StepError::Failed(format!("no restore phase named {name}")))?;
                // A retried phase gets a new Restore: the failed one keeps its verdict.
                let restore_name = if step.attempt > 1 {
                    format!("{}-{}-{}", m.backup_name, phase.name, step.attempt)
                } else {
                    format!("{}-{}", m.backup_name, phase.name)
                };
                let reference = format!("restore/{restore_name}");
                if !step.refs.contains(&reference) {
                    self.update_step(id, at, |s| {
                        if !s.refs.contains(&reference) {
                            s.refs.push(reference.clone());
                        }
                    })?;
                }
                let out = self
                    .command(
                        m,
                        at,
                        step,
                        StepKind::Restore(pb::RestoreStep {
                            backup_name: m.backup_name.clone(),
                            restore_name: restore_name.clone(),
                            included_resources: vec![],
                            excluded_resources: phase
                                .excluded
                                .iter()
                                .map(|s| s.to_string())
                                .collect(),
                            label_key: if phase.labels.is_empty() {
                                String::new()
                            } else {
                                plan::PHASE_LABEL.to_string()
                            },
                            label_values: phase.labels.iter().map(|s| s.to_string()).collect(),
                            allow_warnings: req.allow_warnings,
                        }),
                    )
                    .await?;
                let Some(pb::step_output::Kind::Restore(r)) = out.kind else {
                    return Err(unexpected(name));
                };
                self.warn_all(id, name, &r.messages);
                Ok(format!(
                    "restore {restore_name} {}: {} items, {} warnings",
                    r.phase, r.items, r.warnings
                ))
            }
            "reconfigure" => {
                let out = self
                    .command(
                        m,
                        at,
                        step,
                        StepKind::Reconfigure(pb::ReconfigureStep {
                            from_apps_domain: m.source_apps_domain.clone(),
                            to_apps_domain: m.target_apps_domain.clone(),
                        }),
                    )
                    .await?;
                let Some(pb::step_output::Kind::Reconfigure(r)) = out.kind else {
                    return Err(unexpected("reconfigure"));
                };
                Ok(format!(
                    "{} objects rewritten from {} to {}, {} allow-lists, {} database passwords reset, keycloak-operator {}, {} workloads scaled back",
                    r.rewritten,
                    m.source_apps_domain,
                    m.target_apps_domain,
                    r.allowlists,
                    r.passwords_reset,
                    if r.keycloak_operator_restarted {
                        "restarted"
                    } else {
                        "not found"
                    },
                    r.workloads_scaled
                ))
            }
            "verify" => {
                let source = self.store.inventory(id)?.ok_or_else(|| {
                    StepError::Failed("the source's inventory was never taken".into())
                })?;
                let out = self
                    .command(
                        m,
                        at,
                        step,
                        StepKind::Inventory(plan::inventory_step(&req.registry, &m.backup_name)),
                    )
                    .await?;
                let Some(pb::step_output::Kind::Inventory(target)) = out.kind else {
                    return Err(unexpected("verify"));
                };
                let report = verify::compare(&source, &target, &m.target_apps_domain);
                let verified = report.verified;
                let bad: Vec<String> = report
                    .lines
                    .iter()
                    .filter(|l| !l.ok)
                    .map(|l| format!("{}: expected {}, found {}", l.what, l.expected, l.actual))
                    .collect();
                let lines = report.lines.len();
                self.update(id, |m| {
                    m.report = Some(report);
                    Ok(None)
                })?;
                if verified {
                    Ok(format!("{lines} checks equal on source and target"))
                } else {
                    Err(StepError::Failed(format!(
                        "the target differs from the source: {}",
                        bad.join("; ")
                    )))
                }
            }
            "cleanup-target" => {
                self.stop_transfers(m).await;
                let backups = all_backups(m);
                let mut prefixes: Vec<String> =
                    backups.iter().map(|b| plan::backup_prefix(b)).collect();
                prefixes.push(plan::repository_prefix(&req.registry));
                prefixes.push(format!("ferry/{id}/"));
                let restores: Vec<String> = m
                    .steps
                    .iter()
                    .flat_map(|s| s.refs.iter())
                    .filter_map(|r| r.strip_prefix("restore/"))
                    .map(str::to_string)
                    .collect();
                let out = self
                    .command(
                        m,
                        at,
                        step,
                        StepKind::Cleanup(pb::CleanupStep {
                            backup_store: plan::backup_store(&req),
                            prefixes,
                            stores: plan::obc_stores(),
                            realms: plan::realms(&req.registry),
                            backups,
                            restores,
                        }),
                    )
                    .await?;
                let Some(pb::step_output::Kind::Cleanup(c)) = out.kind else {
                    return Err(unexpected("cleanup-target"));
                };
                Ok(format!(
                    "namespace {}, {} realms, {} objects and {} Velero records removed",
                    if c.namespace_deleted {
                        "removed"
                    } else {
                        "was absent"
                    },
                    c.realms_deleted,
                    c.objects_deleted,
                    c.velero_deleted
                ))
            }
            other => Err(StepError::Failed(format!(
                "no step named {other} in this coordinator; upgrade it"
            ))),
        }
    }

    /// The backup's name, chosen once and journaled before anything uses it.
    fn backup_name_for(&self, m: &pb::Migration, at: At, step: &pb::Step) -> Result<String> {
        if let Some(name) = step.refs.iter().find_map(|r| r.strip_prefix("backup/")) {
            return Ok(name.to_string());
        }
        let req = request(m);
        let mut now = unix_ms();
        // Two backups of one migration must not share a name (names have
        // seconds): not the stage's, nor one that failed before a retry.
        let taken: Vec<String> = all_backups(m);
        while taken
            .iter()
            .any(|t| plan::backup_name(&req.registry, now) <= *t)
        {
            now += 1000;
        }
        let name = plan::backup_name(&req.registry, now);
        let is_main = step.name == "backup";
        self.update(&m.migration_id, |m| {
            if let Some(s) = step_mut(m, at) {
                s.refs.push(format!("backup/{name}"));
            }
            if is_main {
                m.backup_name = name.clone();
            }
            Ok(None)
        })?;
        Ok(name)
    }

    /// Velero's warnings of a step as one event: how many, and the first few.
    fn warn_all(&self, id: &str, step: &str, messages: &[String]) {
        const SHOWN: usize = 5;
        if messages.is_empty() {
            return;
        }
        let mut text = match messages.len() {
            1 => format!("{step}: "),
            n => format!("{step}: {n} messages from Velero: "),
        };
        text.push_str(
            &messages
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        );
        if messages.len() > SHOWN {
            text.push_str("; …");
        }
        self.warn(id, step, &text);
    }

    fn warn(&self, id: &str, step: &str, message: &str) {
        let _ = self.update(id, |_| {
            Ok(Some(event(
                pb::EventKind::Warning,
                step,
                message.to_string(),
            )))
        });
    }

    /// Sends the step's command (the same one again after a restart) and
    /// waits for its result, passing progress on.
    async fn command(
        &self,
        m: &pb::Migration,
        at: At,
        step: &pb::Step,
        kind: StepKind,
    ) -> std::result::Result<pb::StepOutput, StepError> {
        let id = &m.migration_id;
        let req = request(m);
        let request_id = format!(
            "{id}/{}{}/{}",
            if at.rollback { "rollback/" } else { "" },
            step.name,
            step.attempt
        );
        let spec = pb::CommandSpec {
            kind: Some(pb::command_spec::Kind::Step(pb::StepCommand {
                migration_id: id.clone(),
                registry: req.registry.clone(),
                kind: Some(kind),
            })),
            // The step's span: the agent's work on it is its child.
            trace_context: telemetry::current_trace_context(),
        };
        let status = self
            .fleet
            .submit(&step.cluster_id, spec, &request_id, SUBMITTER)
            .await?;
        let command_id = status.command_id.clone();
        let reference = format!("command/{command_id}");
        if !step.refs.contains(&reference) {
            self.update_step(id, at, |s| {
                if !s.refs.contains(&reference) {
                    s.refs.push(reference.clone());
                }
            })?;
        }
        let mut warned_disconnected = false;
        let mut last_progress = None;
        loop {
            let status = self.fleet.wait(&command_id, POLL).await?;
            if is_finished(&status) {
                return match status.result.and_then(|r| r.outcome) {
                    Some(pb::command_result::Outcome::Output(pb::CommandOutput {
                        kind: Some(pb::command_output::Kind::Step(out)),
                    })) => Ok(out),
                    Some(pb::command_result::Outcome::Error(e)) => Err(StepError::Failed(format!(
                        "{} (agent of {})",
                        e.message, step.cluster_id
                    ))),
                    _ => Err(StepError::Failed(format!(
                        "the agent of {} answered {} with no step output; is it older than the coordinator?",
                        step.cluster_id, step.name
                    ))),
                };
            }
            if self.shutdown.is_cancelled() {
                return Err(StepError::Failed("the coordinator is shutting down".into()));
            }
            let connected = self
                .fleet
                .agent(&step.cluster_id)
                .is_ok_and(|a| a.state == pb::AgentState::Connected as i32);
            if !connected && !warned_disconnected {
                warned_disconnected = true;
                self.warn(
                    id,
                    &step.name,
                    &format!(
                        "the agent of {} is not connected; {} waits for it to come back",
                        step.cluster_id, step.name
                    ),
                );
            } else if connected {
                warned_disconnected = false;
            }
            if let Some(p) = self.fleet.progress(&command_id)
                && last_progress.as_ref() != Some(&p)
            {
                let progress = pb::StepProgress {
                    items_done: p.done,
                    items_total: p.total,
                    message: p.message.clone(),
                    ..Default::default()
                };
                self.progress(id, at, &step.name, progress);
                last_progress = Some(p);
            }
        }
    }

    /// Records a step's progress and tells watchers (not logged as an event).
    fn progress(&self, id: &str, at: At, step: &str, progress: pb::StepProgress) {
        match self.update_step(id, at, |s| s.progress = Some(progress.clone())) {
            Ok(m) => {
                let mut e = event(pb::EventKind::StepProgress, step, progress.message.clone());
                e.migration_id = id.to_string();
                e.progress = Some(progress);
                e.state = m.state;
                let _ = self.events.send(e);
            }
            Err(e) => tracing::warn!(migration = %id, error = %e, "cannot record progress"),
        }
    }

    /// Relays every set, a few at a time, and sums their progress.
    async fn transfer(
        &self,
        m: &pb::Migration,
        at: At,
        step: &pb::Step,
        sets: Vec<(String, String, String)>,
    ) -> StepResult {
        let req = request(m);
        let id = &m.migration_id;
        let ids: Vec<String> = sets
            .iter()
            .map(|(name, _, _)| format!("{id}-{}-a{}-{name}", step.name, step.attempt))
            .collect();
        let mut started: Vec<usize> = vec![];
        let mut last = pb::StepProgress::default();
        loop {
            let mut running = 0;
            let mut totals = pb::StepProgress::default();
            let mut failures = vec![];
            let mut done = 0;
            let mut moved = 0;
            for &i in &started {
                let t = self.transfers.status(&ids[i])?;
                let c = t.counts.unwrap_or_default();
                moved += c.bytes_moved;
                totals.items_total += c.objects_total;
                totals.items_done += c.objects_moved + c.objects_skipped;
                totals.bytes_total += c.bytes_total;
                // Never more than the transfer's own total: bytes sent again
                // after a resume, or counted before the total is known, are
                // not progress past it.
                totals.bytes_done += (c.bytes_moved + c.bytes_skipped)
                    .max(t.bytes_relayed.min(c.bytes_total))
                    .min(c.bytes_total);
                totals.rate_bytes_per_sec += t.rate_bytes_per_sec;
                totals.eta_ms = totals.eta_ms.max(t.eta_ms);
                match pb::TransferState::try_from(t.state) {
                    Ok(pb::TransferState::Running) => running += 1,
                    Ok(pb::TransferState::Succeeded) => done += 1,
                    _ => failures.push(format!("{} ({}): {}", sets[i].0, ids[i], t.error)),
                }
            }
            if !failures.is_empty() {
                return Err(StepError::Failed(format!(
                    "transfers failed: {}",
                    failures.join("; ")
                )));
            }
            if done == sets.len() {
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
                self.transfers
                    .begin(pb::StartTransferRequest {
                        transfer_id: ids[i].clone(),
                        source: Some(set(&req.source_cluster)),
                        target: Some(set(&req.target_cluster)),
                        chunk_size: 0,
                        parallelism: 0,
                    })
                    .await?;
                let reference = format!("transfer/{}", ids[i]);
                self.update_step(id, at, |s| {
                    if !s.refs.contains(&reference) {
                        s.refs.push(reference.clone());
                    }
                })?;
                started.push(i);
                running += 1;
            }
            totals.message = format!("{} of {} sets relayed, {running} moving", done, sets.len());
            if totals != last {
                self.progress(id, at, &step.name, totals.clone());
                last = totals;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Aborts the migration's running transfers and waits for them to stop.
    async fn stop_transfers(&self, m: &pb::Migration) {
        let ids: Vec<String> = m
            .steps
            .iter()
            .flat_map(|s| s.refs.iter())
            .filter_map(|r| r.strip_prefix("transfer/"))
            .map(str::to_string)
            .collect();
        let deadline = tokio::time::Instant::now() + TRANSFER_STOP_WAIT;
        for t in &ids {
            while let Ok(status) = self.transfers.status(t) {
                if status.state != pb::TransferState::Running as i32 {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    tracing::warn!(transfer = %t, "transfer still running after abort; cleaning up anyway");
                    break;
                }
                self.transfers.abort(t, "the migration was cancelled");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Every backup the migration named: stage copies, cutover, and those that failed.
fn all_backups(m: &pb::Migration) -> Vec<String> {
    let mut names: Vec<String> = m
        .steps
        .iter()
        .flat_map(|s| s.refs.iter())
        .filter_map(|r| {
            r.strip_prefix("backup/")
                .or_else(|| r.strip_prefix("failed-backup/"))
                .or_else(|| r.strip_prefix("staged-backup/"))
        })
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn stage_backup(m: &pb::Migration) -> Option<String> {
    m.steps
        .iter()
        .find(|s| s.name == "stage-backup")
        .and_then(|s| s.refs.iter().find_map(|r| r.strip_prefix("backup/")))
        .map(str::to_string)
}

fn unexpected(step: &str) -> StepError {
    StepError::Failed(format!(
        "the agent's answer to {step} is of another kind; agent and coordinator versions differ"
    ))
}
