//! The driver: one loop per migration that asks the lifecycle what is next,
//! journals a step's start, runs its executor, and journals its end. A
//! coordinator killed anywhere in here resumes at the step it was on.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferry_common::pb::{self, ErrorKind, MigrationState as MS};
use ferry_common::step::StepName;
use ferry_common::telemetry;
use ferry_common::time::unix_ms;
use ferry_proto::names::Named;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::journal::Journal;
use super::lifecycle::{self as life, At, Next};
use super::refs::Actor;
use super::request::MigrationRequest;
use super::steps::{self, Context, StepError};
use crate::background::Background;
use crate::fleet::Fleet;
use crate::metrics;
use crate::relay::TransfersApi;

/// How long a driver waits before trying again to journal what it could not.
const JOURNAL_RETRY: Duration = Duration::from_secs(1);

pub struct Driver {
    pub journal: Journal,
    pub fleet: Arc<Fleet>,
    pub transfers: TransfersApi,
    /// Migrations with a running loop, and the token that cancels the
    /// forward part of the run.
    runs: Mutex<HashMap<String, CancellationToken>>,
    /// Cancelled when background work stops (after calls drained).
    shutdown: CancellationToken,
    /// Where the drivers run, so shutdown waits for each.
    pub background: Background,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Driver {
    pub fn new(
        journal: Journal,
        fleet: Arc<Fleet>,
        transfers: TransfersApi,
        background: Background,
    ) -> Self {
        Self {
            journal,
            fleet,
            transfers,
            runs: Mutex::new(HashMap::new()),
            shutdown: background.work_stopped().clone(),
            background,
        }
    }

    /// Starts the migration's loop unless one is running.
    pub fn drive(self: &Arc<Self>, id: &str) {
        let token = {
            let mut runs = lock(&self.runs);
            if runs.contains_key(id) {
                return;
            }
            let token = self.shutdown.child_token();
            runs.insert(id.to_string(), token.clone());
            token
        };
        let driver = self.clone();
        let id = id.to_string();
        self.background
            .spawn_work(async move { driver.run(id, token).await });
    }

    /// Stops the forward step a migration is running, if any.
    pub fn stop_forward(&self, id: &str) {
        if let Some(token) = lock(&self.runs).get(id) {
            token.cancel();
        }
    }

    async fn run(self: Arc<Self>, id: String, token: CancellationToken) {
        loop {
            // A draining coordinator starts no step (its agents' sessions
            // are ending); the migration resumes where it is.
            if self.shutdown.is_cancelled() || self.fleet.stopping() {
                lock(&self.runs).remove(&id);
                return;
            }
            let m = match self.journal.get(&id) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(migration = %id, error = %e, "cannot read migration; its driver stops");
                    lock(&self.runs).remove(&id);
                    return;
                }
            };
            match life::next(&m) {
                Next::Run(at) => self.run_step(&id, at, &token).await,
                Next::Hold => self.hold(&id).await,
                Next::Finish(end, message) => self.finish(&id, m.state(), end, message),
                Next::Rest => {
                    // Ended or held: stop, unless a call changed it meanwhile.
                    let mut runs = lock(&self.runs);
                    match self.journal.get(&id) {
                        Ok(m) if !life::is_resting(m.state()) => continue,
                        _ => {
                            runs.remove(&id);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn finish(&self, id: &str, from: MS, end: MS, message: &str) {
        let finished = self
            .journal
            .apply(id, |m| Ok(life::finish(m, from, end, message, unix_ms())));
        match finished {
            Ok(m) if m.state() == end => {
                self.journal
                    .audit(&Actor::Coordinator, "finished", id, message.to_string());
                metrics::get().migration_ended(end.name());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(migration = %id, error = %e, "cannot record the end of a migration")
            }
        }
    }

    async fn hold(&self, id: &str) {
        match self.journal.apply(id, |m| Ok(life::hold(m, unix_ms()))) {
            Ok(m) if m.state() == MS::Staged => {
                tracing::info!(migration = %id, "staged; holding for the operator");
                self.journal.audit(
                    &Actor::Coordinator,
                    "staged",
                    id,
                    "holding for stage or cutover",
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(migration = %id, error = %e, "cannot journal the hold; retrying");
                tokio::time::sleep(JOURNAL_RETRY).await;
            }
        }
    }

    async fn run_step(&self, id: &str, at: At, token: &CancellationToken) {
        let m = match self
            .journal
            .apply(id, |m| Ok(life::step_started(m, at, unix_ms())))
        {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(migration = %id, error = %e, "cannot journal a step start; retrying");
                tokio::time::sleep(JOURNAL_RETRY).await;
                return;
            }
        };
        let Some(step) = life::step_at(&m, at).cloned() else {
            return;
        };
        tracing::info!(migration = %id, step = %step.name, attempt = step.attempt, cluster = %step.cluster_id, "step started");
        self.journal.audit(
            &Actor::Coordinator,
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
        let (outcome, progress) = match (step.name.parse::<StepName>(), MigrationRequest::of(&m)) {
            (Ok(name), Ok(request)) => {
                let cx = Context::new(
                    &self.journal,
                    &self.fleet,
                    &self.transfers,
                    &m,
                    &request,
                    at,
                    &step,
                    name,
                );
                let work = steps::execute(&cx).instrument(span);
                // Shutdown first: a run's token is cancelled with it, and
                // a stopping coordinator records no outcome (the step runs
                // again when it resumes).
                let outcome = if at.rollback {
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return,
                        r = work => r,
                    }
                } else {
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return,
                        _ = token.cancelled() => Err(StepError::Cancelled),
                        r = work => r,
                    }
                };
                if matches!(outcome, Err(StepError::ShuttingDown)) {
                    return;
                }
                (outcome, cx.last_progress())
            }
            (Err(e), _) => (
                Err(StepError::failed(ErrorKind::Invalid, e.to_string())),
                None,
            ),
            (_, Err(e)) => (Err(e.into()), None),
        };
        self.ended(id, at, &step, outcome, progress, began.elapsed());
        self.journal.progress_ended(id, at);
    }

    /// Journals how a step ended, audits and counts it.
    fn ended(
        &self,
        id: &str,
        at: At,
        step: &pb::Step,
        outcome: steps::StepResult,
        progress: Option<pb::StepProgress>,
        took: Duration,
    ) {
        let name = &step.name;
        let actor = Actor::of_step(&step.cluster_id);
        let now = unix_ms();
        let seconds = took.as_secs_f64();
        match outcome {
            Ok(detail) => {
                crate::seam::crash_point("step-succeeded-unjournaled", name);
                let r = self.journal.apply(id, |m| {
                    Ok(life::step_succeeded(m, at, &detail, progress, now))
                });
                if let Err(e) = r {
                    tracing::error!(migration = %id, error = %e, "cannot journal a step's end; it runs again");
                    return;
                }
                tracing::info!(migration = %id, step = %name, "step finished: {detail}");
                metrics::get().step_ended(name, "succeeded", None, seconds);
                self.journal
                    .audit(&actor, "step-finished", id, format!("{name}: {detail}"));
            }
            // Not an outcome (`run_step` returns before it): nothing to journal.
            Err(StepError::ShuttingDown) => {}
            Err(StepError::Cancelled) => {
                let _ = self
                    .journal
                    .apply(id, |m| Ok(life::step_cancelled(m, at, now)));
                self.journal
                    .audit(&Actor::Coordinator, "step-cancelled", id, name.clone());
                metrics::get().step_ended(name, "cancelled", None, seconds);
            }
            Err(StepError::Failed { kind, message }) => {
                let r = self.journal.apply(id, |m| {
                    Ok(life::step_failed(m, at, &message, progress, now))
                });
                if let Ok(m) = r
                    && m.state() == MS::Failed
                {
                    metrics::get().migration_ended("failed");
                    let _ = self.journal.apply(id, |_| {
                        Ok(Some(life::event(
                            pb::EventKind::Finished,
                            "",
                            format!(
                                "migration failed at {name}; fix the cause and `ferry migrate retry {id}`, or `ferry migrate rollback {id}`"
                            ),
                            now,
                        )))
                    });
                }
                tracing::warn!(migration = %id, step = %name, kind = %kind, "step failed: {message}");
                metrics::get().step_ended(name, "failed", Some(kind), seconds);
                self.journal
                    .audit(&actor, "step-failed", id, format!("{name}: {message}"));
            }
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
