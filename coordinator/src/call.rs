//! One way to call an agent: send one command (or find it again by its
//! request id) and await its typed report, woken by the fleet's broadcast —
//! the result, the command's progress, its agent's session coming and going.
//! Used by the migration engine, preflight, transfers and loads alike.
use std::time::Duration;

use ferry_common::pb;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::fleet::{Fleet, FleetEvent};
use crate::store::is_finished;
use crate::{Error, Result};

/// What happens while a command runs.
#[derive(Debug, Clone)]
pub enum Update {
    /// The agent's latest report of how far it is.
    Progress(pb::CommandProgress),
    /// The agent's session closed (`false`) or opened again (`true`).
    Connected(bool),
}

/// A command stored (and sent, if its agent is connected).
pub struct Sent {
    pub command_id: String,
    cluster: String,
    what: String,
    /// Subscribed before the command was stored, so nothing is missed.
    events: broadcast::Receiver<FleetEvent>,
}

/// Stores and sends `spec`; the same `request_id` from the same submitter
/// finds the command already sent (and its result, if it has one).
/// `what` names the command in errors ("backup", "the preflight").
pub async fn send(
    fleet: &Fleet,
    cluster: &str,
    spec: pb::CommandSpec,
    request_id: &str,
    by: &str,
    what: &str,
) -> Result<Sent> {
    let events = fleet.subscribe();
    let status = fleet.submit(cluster, spec, request_id, by).await?;
    Ok(Sent {
        command_id: status.command_id,
        cluster: cluster.to_string(),
        what: what.to_string(),
        events,
    })
}

/// A command stored earlier (by a coordinator that may have restarted
/// since), to be awaited like one just sent.
pub fn awaiting(fleet: &Fleet, command_id: &str, cluster: &str, what: &str) -> Sent {
    Sent {
        command_id: command_id.to_string(),
        cluster: cluster.to_string(),
        what: what.to_string(),
        events: fleet.subscribe(),
    }
}

impl Sent {
    /// Waits for the command's output, telling `on` what happens meanwhile.
    /// `within`: how long to wait at most (none: until it ends).
    pub async fn output(
        mut self,
        fleet: &Fleet,
        within: Option<Duration>,
        mut on: impl FnMut(Update),
    ) -> Result<pb::command_output::Kind> {
        let deadline = within.map(|w| tokio::time::Instant::now() + w);
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            let status = fleet.command(&self.command_id)?;
            if is_finished(&status) {
                return self.unpack(status);
            }
            // Wait for news of this command; read the record again only when
            // it finished or news was missed.
            loop {
                tokio::select! {
                    () = &mut expired => {
                        return Err(Error::NoAnswer {
                            cluster: self.cluster,
                            what: self.what,
                            within: within.unwrap_or_default(),
                        });
                    }
                    () = fleet.stopped() => {
                        return Err(Error::ShuttingDown(self.what));
                    }
                    e = self.events.recv() => match e {
                        Ok(FleetEvent::Finished(id)) if id == self.command_id => break,
                        Ok(FleetEvent::Progress(p)) if p.id == self.command_id => {
                            on(Update::Progress(p));
                        }
                        Ok(FleetEvent::Session { cluster, connected }) if cluster == self.cluster => {
                            on(Update::Connected(connected));
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => {
                            return Err(Error::ShuttingDown(self.what));
                        }
                    },
                }
            }
        }
    }

    fn unpack(self, status: pb::CommandStatus) -> Result<pb::command_output::Kind> {
        match status.result.and_then(|r| r.outcome) {
            Some(pb::command_result::Outcome::Output(pb::CommandOutput { kind: Some(kind) })) => {
                Ok(kind)
            }
            Some(pb::command_result::Outcome::Error(e)) => Err(Error::Command {
                kind: e.kind(),
                cluster: self.cluster,
                message: e.message,
            }),
            _ => Err(self.unexpected()),
        }
    }

    fn unexpected(&self) -> Error {
        Error::Protocol(format!(
            "the agent of {} answered {} with no output of its kind",
            self.cluster, self.what
        ))
    }

    /// `output` of a migration step: the step's own report.
    pub async fn step_output(
        self,
        fleet: &Fleet,
        within: Option<Duration>,
        on: impl FnMut(Update),
    ) -> Result<pb::step_output::Kind> {
        let unexpected = self.unexpected();
        match self.output(fleet, within, on).await? {
            pb::command_output::Kind::Step(pb::StepOutput { kind: Some(k) }) => Ok(k),
            _ => Err(unexpected),
        }
    }
}

/// A migration step's command.
pub fn step_spec(migration: &str, registry: &str, kind: pb::step_command::Kind) -> pb::CommandSpec {
    pb::CommandSpec {
        kind: Some(pb::command_spec::Kind::Step(pb::StepCommand {
            migration_id: migration.to_string(),
            registry: registry.to_string(),
            kind: Some(kind),
        })),
        // The caller's span: the agent's work on it is its child.
        trace_context: ferry_common::telemetry::current_trace_context(),
    }
}
