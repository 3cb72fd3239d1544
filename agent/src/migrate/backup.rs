//! Backup: a Velero Backup of the registry's namespace with its volumes
//! (file-system backup), awaited to its end with progress. The Backup's
//! name is the idempotency key: a repeat finds the one already made.

use std::time::Duration;

use ferry_common::pb;

use super::error::{Result, StepError};
use super::{Step, holders, require};
use crate::velero::{self, BackupRequest, Outcome, VELERO_NAMESPACE};

/// A registry's backup (hundreds of GiB of volumes) can take hours.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

pub(super) async fn run(step: &mut Step<'_>, cmd: &pb::BackupStep) -> Result<pb::BackupReport> {
    require(&cmd.backup_name, "backup_name")?;
    require(&cmd.backup_location, "backup_location")?;
    let name = cmd.backup_name.as_str();
    let config = &step.ctx.config;
    let held = holders::hold(
        &step.client,
        step.registry,
        &config.volume_reader_image,
        step.migration_id,
        config.volume_reader_timeout,
    )
    .await?;
    if held > 0 {
        step.progress.report(
            format!("{held} volume holder pods running for Velero's file-system backup"),
            0,
            0,
        );
    }
    let request = BackupRequest::new(name, step.registry, &cmd.backup_location);
    let mut items = 0;
    let progress = &mut step.progress;
    let outcome = async {
        velero::create_backup(&step.client, &request).await?;
        velero::wait_backup(&step.client, VELERO_NAMESPACE, name, BACKUP_TIMEOUT, |p| {
            items = p.done;
            progress.report(
                format!("Velero backup {name}: {}", p.phase),
                p.done,
                p.total,
            );
        })
        .await
    }
    .await;
    // Whatever the backup's end, the holders go: a repeat starts them again.
    holders::release(&step.client, step.registry).await?;
    let v = verdict("backup", name, outcome?, cmd.allow_warnings)?;
    Ok(pb::BackupReport {
        backup_name: name.to_owned(),
        phase: v.phase,
        items,
        warnings: v.warnings,
        errors: v.errors,
        messages: v.messages,
    })
}

/// How a finished backup or restore is judged.
pub(super) struct Verdict {
    pub phase: String,
    pub warnings: u32,
    pub errors: u32,
    pub messages: Vec<String>,
}

/// Completed passes; PartiallyFailed passes only with `allow_warnings`;
/// Failed never does. `what` is `backup` or `restore` (Velero's CLI words).
pub(super) fn verdict(
    what: &str,
    name: &str,
    outcome: Outcome,
    allow_warnings: bool,
) -> Result<Verdict> {
    let details = format!(
        "read them with `velero {what} describe {name} --details` and `velero {what} logs {name}`"
    );
    let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    match outcome {
        Outcome::Completed { warnings } => Ok(Verdict {
            phase: "Completed".into(),
            warnings: count(warnings),
            errors: 0,
            messages: if warnings > 0 {
                vec![format!(
                    "Velero {what} {name} completed with {warnings} warnings; {details}"
                )]
            } else {
                Vec::new()
            },
        }),
        Outcome::PartiallyFailed { errors, warnings } if allow_warnings => Ok(Verdict {
            phase: "PartiallyFailed".into(),
            warnings: count(warnings),
            errors: count(errors),
            messages: vec![format!(
                "Velero {what} {name} partially failed with {errors} errors and {warnings} \
                 warnings, accepted as asked; {details}"
            )],
        }),
        Outcome::PartiallyFailed { errors, warnings } => Err(StepError::State(format!(
            "Velero {what} {name} partially failed with {errors} errors and {warnings} warnings; \
             {details}; fix the cause and run the step again under a new name, or accept the \
             partial result by allowing warnings"
        ))),
        Outcome::Failed { reason } => Err(StepError::State(format!(
            "Velero {what} {name} failed: {reason}; read `velero {what} logs {name}`, fix the \
             cause and run the step again under a new name"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_results_pass_only_when_allowed() {
        let partial = || Outcome::PartiallyFailed {
            errors: 2,
            warnings: 1,
        };
        let refused = verdict("backup", "b", partial(), false)
            .err()
            .map(|e| e.to_string());
        assert!(
            refused.as_deref().is_some_and(
                |m| m.contains("2 errors") && m.contains("velero backup describe b --details")
            ),
            "{refused:?}"
        );
        let accepted = verdict("backup", "b", partial(), true).ok();
        assert_eq!(
            accepted.map(|v| (v.phase, v.errors)),
            Some(("PartiallyFailed".into(), 2))
        );
        let failed = verdict(
            "restore",
            "r",
            Outcome::Failed {
                reason: "no BSL".into(),
            },
            true,
        );
        assert!(failed.is_err());
        let done = verdict("restore", "r", Outcome::Completed { warnings: 3 }, false).ok();
        assert_eq!(done.map(|v| (v.warnings, v.messages.len())), Some((3, 1)));
    }
}
