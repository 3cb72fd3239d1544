//! The migration steps an agent runs on its own cluster (`StepCommand`).
//! The coordinator's engine decides what runs where and in which order; each
//! step here is idempotent on the cluster: run twice, or again after a crash
//! midway, it reaches the same end state without doing anything twice.
//!
//! | step | reads / changes |
//! |---|---|
//! | preflight | reads only: Platform, Velero, Keycloak, leftovers, sizes |
//! | quiesce | scales the registry's workloads to 0 (or back), recording replicas in `ferry.io/replicas`, and waits until no pod writes its volumes |
//! | backup | a Velero Backup of the namespace, volumes by file-system backup through holder pods (`holders`) |
//! | export/import identity | the registry's realms and users, via a store |
//! | restore | one Velero Restore phase of the backup; the volume holders removed once it ends |
//! | reconfigure | the source's wildcard DNS rewritten, DB passwords reset, keycloak-operator restarted, workloads back up |
//! | inventory | counts and digests the engine compares between the sides: items, buckets, users, workloads, volumes (reader pods), database tables |
//! | cleanup | removes what a migration put on a target (rollback) |

mod backup;
mod cleanup;
mod cluster;
mod database;
mod error;
mod holders;
mod identity;
mod inventory;
mod preflight;
mod quantity;
mod quiesce;
mod reconfigure;
mod restore;
mod rewrite;
mod storage;
mod volumes;

use ferry_common::pb::{self, step_command::Kind, step_output::Kind as Out};

pub use error::{Result, StepError};
pub use quiesce::REPLICAS_ANNOTATION;
pub use reconfigure::PASSWORD_RESET_ANNOTATION;

use crate::progress::Reporter;
use crate::relay::RelayContext;

/// What every step works with.
pub(crate) struct Step<'a> {
    pub ctx: &'a RelayContext,
    pub client: kube::Client,
    /// The registry, which is also its namespace.
    pub registry: &'a str,
    pub migration_id: &'a str,
    pub progress: Reporter,
}

/// Runs one step; the error names what failed, on which object, and what to do.
pub async fn run_step(
    ctx: &RelayContext,
    command_id: &str,
    cmd: &pb::StepCommand,
) -> std::result::Result<pb::StepOutput, pb::CommandError> {
    let Some(kind) = &cmd.kind else {
        return Err(pb::CommandError {
            message: "the step command has no kind this agent knows; upgrade the agent".into(),
            kind: pb::ErrorKind::Invalid.into(),
        });
    };
    let name = step_name(kind);
    let cluster = &ctx.config.cluster_id;
    let registry = cmd.registry.as_str();
    run(ctx, command_id, cmd, kind)
        .await
        .map(|out| pb::StepOutput { kind: Some(out) })
        .map_err(|e| pb::CommandError {
            message: format!("{name} of registry {registry:?} on cluster {cluster}: {e}"),
            kind: e.kind().into(),
        })
}

async fn run(
    ctx: &RelayContext,
    command_id: &str,
    cmd: &pb::StepCommand,
    kind: &Kind,
) -> Result<Out> {
    if !ferry_common::identity::valid_name(&cmd.registry) {
        return Err(StepError::Invalid(format!(
            "registry name {:?} is not a namespace name (lowercase letters, digits and '-')",
            cmd.registry
        )));
    }
    let mut step = Step {
        ctx,
        client: cluster::client(ctx).await?,
        registry: &cmd.registry,
        migration_id: &cmd.migration_id,
        progress: ctx.progress.reporter(command_id),
    };
    tracing::info!(step = step_name(kind), registry = %cmd.registry, migration = %cmd.migration_id, "running migration step");
    Ok(match kind {
        Kind::Preflight(c) => Out::Preflight(preflight::run(&mut step, c).await?),
        Kind::Quiesce(c) => Out::Quiesce(quiesce::run(&step, c.undo).await?),
        Kind::Backup(c) => Out::Backup(backup::run(&mut step, c).await?),
        Kind::ExportIdentity(c) => Out::Identity(identity::export(&step, c).await?),
        Kind::Restore(c) => Out::Restore(restore::run(&mut step, c).await?),
        Kind::ImportIdentity(c) => Out::Identity(identity::import(&step, c).await?),
        Kind::Reconfigure(c) => Out::Reconfigure(reconfigure::run(&step, c).await?),
        Kind::Inventory(c) => Out::Inventory(inventory::run(&mut step, c).await?),
        Kind::Cleanup(c) => Out::Cleanup(cleanup::run(&mut step, c).await?),
    })
}

/// The step's name in the coordinator's words (`ferry_common::step`).
pub(crate) fn step_name(kind: &Kind) -> &'static str {
    ferry_common::step::command_step_name(kind)
}

/// `what` must not be empty.
fn require(value: &str, what: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(StepError::Invalid(format!("{what} is empty")));
    }
    Ok(())
}
