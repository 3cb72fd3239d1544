//! Step executors: one free function per kind of step, over a narrow
//! context, chosen by an exhaustive `match` on [`StepName`] — a step added
//! to the vocabulary does not build until it has an executor here.
mod agent;
mod transfer;

use std::sync::Mutex;

use ferry_common::pb::{self, ErrorKind, step_command::Kind as StepKind};
use ferry_common::step::StepName;
use ferry_common::time::unix_ms;

use super::SUBMITTER;
use super::journal::Journal;
use super::lifecycle::{At, event, step_mut};
use super::preflight;
use super::refs::{StepRef, add_ref};
use super::request::MigrationRequest;
use crate::call::{self, Update};
use crate::fleet::Fleet;
use crate::relay::TransfersApi;

pub use transfer::stop_transfers;

/// How a step ended, when it did not succeed.
pub enum StepError {
    /// With the kind of failure (the agent's, when it was the agent's).
    Failed {
        kind: ErrorKind,
        message: String,
    },
    Cancelled,
    /// The coordinator is shutting down: not an outcome, the step runs
    /// again when it resumes.
    ShuttingDown,
}

impl StepError {
    pub fn failed(kind: ErrorKind, message: impl Into<String>) -> Self {
        StepError::Failed {
            kind,
            message: message.into(),
        }
    }
}

impl From<crate::Error> for StepError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::ShuttingDown(_) => StepError::ShuttingDown,
            e => StepError::failed(e.kind(), e.to_string()),
        }
    }
}

/// What a step did, in one line.
pub type StepResult = Result<String, StepError>;

/// What an executor may see and do: its migration as it was when the step
/// started, and the few writes a step makes (refs, warnings, progress).
pub struct Context<'a> {
    pub journal: &'a Journal,
    pub fleet: &'a Fleet,
    pub transfers: &'a TransfersApi,
    pub m: &'a pb::Migration,
    pub request: &'a MigrationRequest,
    pub at: At,
    pub step: &'a pb::Step,
    pub name: StepName,
    /// The last progress told to watchers; journaled when the step ends.
    last_progress: Mutex<Option<pb::StepProgress>>,
}

impl<'a> Context<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        journal: &'a Journal,
        fleet: &'a Fleet,
        transfers: &'a TransfersApi,
        m: &'a pb::Migration,
        request: &'a MigrationRequest,
        at: At,
        step: &'a pb::Step,
        name: StepName,
    ) -> Self {
        Self {
            journal,
            fleet,
            transfers,
            m,
            request,
            at,
            step,
            name,
            last_progress: Mutex::new(None),
        }
    }

    pub fn id(&self) -> &str {
        &self.m.migration_id
    }

    /// The progress to journal with the step's end.
    pub fn last_progress(&self) -> Option<pb::StepProgress> {
        match self.last_progress.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Journals a reference of the step unless it holds it already.
    pub fn add_ref(&self, r: StepRef) -> crate::Result<()> {
        if self.step.refs.contains(&r.to_string()) {
            return Ok(());
        }
        self.journal.apply(self.id(), |m| {
            if let Some(s) = step_mut(m, self.at) {
                add_ref(&mut s.refs, &r);
            }
            Ok(None)
        })?;
        Ok(())
    }

    /// A warning in the migration's log.
    pub fn warn(&self, message: &str) {
        let step = self.name.to_string();
        let r = self.journal.apply(self.id(), |_| {
            Ok(Some(event(
                pb::EventKind::Warning,
                &step,
                message.to_string(),
                unix_ms(),
            )))
        });
        if let Err(e) = r {
            tracing::warn!(migration = %self.id(), error = %e, "cannot journal a warning: {message}");
        }
    }

    /// Tells watchers how far the step is; nothing is written until it ends.
    pub fn progress(&self, progress: pb::StepProgress) {
        let mut e = event(
            pb::EventKind::StepProgress,
            &self.name.to_string(),
            progress.message.clone(),
            unix_ms(),
        );
        e.migration_id = self.id().to_string();
        e.state = self.m.state;
        e.progress = Some(progress.clone());
        match self.last_progress.lock() {
            Ok(mut g) => *g = Some(progress),
            Err(poisoned) => *poisoned.into_inner() = Some(progress),
        }
        self.journal.progress(self.at, e);
    }

    /// Sends the step's command (the same one again after a restart: the
    /// request id is the migration's, the step's and its attempt's) and
    /// awaits the agent's report, passing its progress on.
    pub async fn command(&self, kind: StepKind) -> Result<pb::step_output::Kind, StepError> {
        let cluster = &self.step.cluster_id;
        let request_id = format!(
            "{}/{}{}/{}",
            self.id(),
            if self.at.rollback { "rollback/" } else { "" },
            self.name,
            self.step.attempt
        );
        let spec = call::step_spec(self.id(), &self.request.registry, kind);
        let what = self.name.to_string();
        crate::seam::crash_point("step-command-unsent", &what);
        let sent = call::send(self.fleet, cluster, spec, &request_id, SUBMITTER, &what).await?;
        self.add_ref(StepRef::Command(sent.command_id.clone()))?;
        let waiting = || {
            self.warn(&format!(
                "the agent of {cluster} is not connected; {what} waits for it to come back"
            ))
        };
        if !self.fleet.is_connected(cluster) {
            waiting();
        }
        let out = sent
            .step_output(self.fleet, None, |u| match u {
                Update::Progress(p) => self.progress(pb::StepProgress {
                    items_done: p.done,
                    items_total: p.total,
                    message: p.message,
                    ..Default::default()
                }),
                Update::Connected(false) => waiting(),
                Update::Connected(true) => {}
            })
            .await?;
        Ok(out)
    }
}

/// Runs one step to its end; returns what it did, in one line.
pub async fn execute(cx: &Context<'_>) -> StepResult {
    match cx.name {
        StepName::Preflight => {
            let verdict = preflight::run(cx.fleet, cx.request).await;
            if verdict.ready() {
                Ok(format!("{} checks passed", verdict.checks.len()))
            } else {
                Err(StepError::failed(
                    ErrorKind::Precondition,
                    verdict.failures(),
                ))
            }
        }
        // The driver holds here instead of running it; an operator's cutover
        // ends it.
        StepName::AwaitCutover => Ok("cutover asked".into()),
        StepName::Quiesce => agent::quiesce(cx, false).await,
        StepName::UnquiesceSource => agent::quiesce(cx, true).await,
        StepName::StageBackup | StepName::Backup => agent::backup(cx).await,
        StepName::Inventory => agent::inventory(cx).await,
        StepName::ExportIdentity | StepName::ImportIdentity => agent::identity(cx).await,
        StepName::StageTransfer | StepName::Transfer => transfer::run(cx).await,
        StepName::Restore(phase) => agent::restore(cx, phase).await,
        StepName::Reconfigure => agent::reconfigure(cx).await,
        StepName::Verify => agent::verify(cx).await,
        StepName::CleanupTarget => agent::cleanup(cx).await,
    }
}

/// The agent answered with a report of another step's kind.
fn unexpected(cx: &Context<'_>) -> StepError {
    StepError::failed(
        ErrorKind::Internal,
        format!(
            "the agent's answer to {} is of another kind; agent and coordinator versions differ",
            cx.name
        ),
    )
}
