//! The migration engine's face: what the API asks (plan, start, cancel,
//! rollback, retry, stage, cutover, and reads), each a lifecycle transition
//! journaled, then the migration's driver woken.
//!
//! Every step is idempotent where it acts: a step's agent command has a
//! request id derived from the migration, the step and its attempt, so a
//! restarted coordinator that runs a step again gets the command it already
//! sent (and its result, if the agent finished it) instead of a second one;
//! Velero objects are named by the migration, so a repeated create finds the
//! existing one. A coordinator killed at any moment resumes every migration
//! that was running at the step it was on.
use std::sync::Arc;

use ferry_common::pb;
use ferry_common::time::unix_ms;
use tokio::sync::broadcast;

use super::driver::Driver;
use super::journal::Journal;
use super::lifecycle;
use super::plan;
use super::preflight;
use super::refs::Actor;
use super::request::MigrationRequest;
use crate::background::Background;
use crate::fleet::Fleet;
use crate::relay::TransfersApi;
use crate::store::Store;
use crate::{Error, Result};

#[derive(Clone)]
pub struct Engine {
    driver: Arc<Driver>,
}

impl Engine {
    /// Also resumes every migration the store says was in progress.
    pub fn new(
        store: Store,
        fleet: Arc<Fleet>,
        transfers: TransfersApi,
        background: Background,
    ) -> Result<Self> {
        let driver = Arc::new(Driver::new(
            Journal::new(store),
            fleet,
            transfers,
            background,
        ));
        for m in driver.journal.list()? {
            if !lifecycle::is_terminal(m.state()) {
                tracing::info!(migration = %m.migration_id, state = ?m.state(), "resuming migration");
                driver.drive(&m.migration_id);
            }
        }
        Ok(Engine { driver })
    }

    fn journal(&self) -> &Journal {
        &self.driver.journal
    }

    /// Where the API's watch streams run.
    pub fn background(&self) -> &Background {
        &self.driver.background
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::MigrationEvent> {
        self.journal().subscribe()
    }

    pub fn get(&self, id: &str) -> Result<pb::Migration> {
        self.journal().get(id)
    }

    pub fn list(&self) -> Result<Vec<pb::Migration>> {
        self.journal().list()
    }

    pub fn events(&self, id: &str, after: u64) -> Result<Vec<pb::MigrationEvent>> {
        self.journal().events(id, after)
    }

    pub fn audit(&self, actor: &Actor, action: &str, migration: &str, detail: impl Into<String>) {
        self.journal().audit(actor, action, migration, detail);
    }

    pub fn audit_log(&self, migration: Option<&str>) -> Result<Vec<pb::AuditEntry>> {
        self.journal().audit_log(migration)
    }

    /// The steps and every preflight verdict. Changes nothing anywhere.
    pub async fn plan(&self, request: &MigrationRequest) -> Result<pb::MigrationPlan> {
        let verdict = preflight::run(&self.driver.fleet, request).await;
        Ok(pb::MigrationPlan {
            steps: plan::steps(request)
                .into_iter()
                .map(|p| pb::PlannedStep {
                    name: p.name.to_string(),
                    cluster_id: plan::cluster_of(request, p.side),
                    description: p.description,
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
        mut request: MigrationRequest,
        by: &Actor,
        trace: ferry_common::telemetry::TraceContext,
    ) -> Result<pb::Migration> {
        if request.migration_id.is_empty() {
            request.migration_id = format!("{}-{}", request.registry, &crate::fleet::new_id()[..8]);
        }
        let id = request.migration_id.clone();
        if let Some(existing) = self.journal().find(&id)? {
            return Ok(existing);
        }
        let verdict = preflight::run(&self.driver.fleet, &request).await;
        if !verdict.ready() {
            let failed: Vec<String> = verdict
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{} ({}): {}", c.name, c.cluster_id, c.reason))
                .collect();
            self.audit(
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
        let (m, created) = lifecycle::start(
            &request,
            by,
            verdict.checks,
            (verdict.source_apps_domain, verdict.target_apps_domain),
            trace,
            unix_ms(),
        );
        // A concurrent start with the same id may have won.
        let (m, new) = self.journal().create(m, created)?;
        if new {
            self.audit(
                by,
                "start",
                &id,
                format!("{}; preflight passed", request.describe()),
            );
            self.driver.drive(&id);
        }
        Ok(m)
    }

    /// Stops the running step (if any) and rolls back.
    pub fn cancel(&self, id: &str, by: &Actor) -> Result<pb::Migration> {
        let m = self.journal().apply(id, |m| {
            let request = MigrationRequest::of(m)?;
            lifecycle::cancel(m, &request, by, unix_ms()).map(Some)
        })?;
        self.audit(by, "cancel", id, "stop and roll back");
        self.driver.stop_forward(id);
        self.driver.drive(id);
        Ok(m)
    }

    /// Removes what the migration put on the target and un-quiesces the source.
    pub fn rollback(&self, id: &str, by: &Actor) -> Result<pb::Migration> {
        let m = self.journal().apply(id, |m| {
            let request = MigrationRequest::of(m)?;
            lifecycle::rollback(m, &request, by, unix_ms())
        })?;
        self.audit(by, "rollback", id, "remove from target, un-quiesce source");
        self.driver.drive(id);
        Ok(m)
    }

    /// Runs a failed migration again from its failed step.
    pub fn retry(&self, id: &str, by: &Actor) -> Result<pb::Migration> {
        let m = self
            .journal()
            .apply(id, |m| lifecycle::retry(m, by, unix_ms()).map(Some))?;
        self.audit(by, "retry", id, "run again from the failed step");
        self.driver.drive(id);
        Ok(m)
    }

    /// A staged migration copies again what changed on the source since its
    /// last stage copy (a new stage backup; the relay moves only what the
    /// target lacks), then holds again.
    pub fn stage(&self, id: &str, by: &Actor) -> Result<pb::Migration> {
        let m = self
            .journal()
            .apply(id, |m| lifecycle::stage(m, by, unix_ms()).map(Some))?;
        self.audit(
            by,
            "stage",
            id,
            "copy what changed on the source since the last stage copy",
        );
        self.driver.drive(id);
        Ok(m)
    }

    /// A staged migration goes on: quiesce, backup, the rest.
    pub fn cutover(&self, id: &str, by: &Actor) -> Result<pb::Migration> {
        let m = self
            .journal()
            .apply(id, |m| lifecycle::cutover(m, by, unix_ms()).map(Some))?;
        self.audit(by, "cutover", id, "quiesce the source and go on");
        self.driver.drive(id);
        Ok(m)
    }
}
