//! Restore: one phase of restoring the registry's backup on the target. The
//! backup reaches this cluster's Velero through its storage location (the
//! relay copied it there), so the step first waits for Velero's backup sync,
//! then creates the Restore (its name is the idempotency key) and awaits it.

use std::time::Duration;

use ferry_common::pb;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::backup::verdict;
use super::error::{Result, StepError};
use super::{Step, holders, require};
use crate::velero::{self, RestoreRequest, VELERO_NAMESPACE};

/// Velero syncs backups from storage every minute by default.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const RESTORE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

pub(super) async fn run(step: &mut Step<'_>, cmd: &pb::RestoreStep) -> Result<pb::RestoreReport> {
    require(&cmd.backup_name, "backup_name")?;
    require(&cmd.restore_name, "restore_name")?;
    let request = request(step.registry, cmd)?;
    let (backup, name) = (cmd.backup_name.as_str(), cmd.restore_name.as_str());
    step.progress.report(
        format!("waiting for Velero to sync backup {backup} from its storage location"),
        0,
        0,
    );
    velero::wait_backup_present(&step.client, VELERO_NAMESPACE, backup, SYNC_TIMEOUT).await?;
    velero::create_restore(&step.client, &request).await?;
    let mut items = 0;
    let progress = &mut step.progress;
    let outcome =
        velero::wait_restore(&step.client, VELERO_NAMESPACE, name, RESTORE_TIMEOUT, |p| {
            items = p.done;
            progress.report(
                format!("Velero restore {name}: {}", p.phase),
                p.done,
                p.total,
            );
        })
        .await?;
    // The phase that brings back the volume holders ends once Velero has
    // filled their claims; workloads of later phases take the claims over.
    holders::release(&step.client, step.registry).await?;
    let v = verdict("restore", name, outcome, cmd.allow_warnings)?;
    Ok(pb::RestoreReport {
        restore_name: name.to_owned(),
        phase: v.phase,
        items,
        warnings: v.warnings,
        errors: v.errors,
        messages: v.messages,
    })
}

fn request(registry: &str, cmd: &pb::RestoreStep) -> Result<RestoreRequest> {
    let mut r = RestoreRequest::new(&cmd.restore_name, &cmd.backup_name);
    r.included_namespaces = vec![registry.to_owned()];
    r.included_resources = cmd.included_resources.clone();
    r.excluded_resources = cmd.excluded_resources.clone();
    if !cmd.label_values.is_empty() {
        if cmd.label_key.trim().is_empty() {
            return Err(StepError::Invalid(format!(
                "restore {} selects label values {:?} without a label key",
                cmd.restore_name, cmd.label_values
            )));
        }
        r.label_selector = Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: cmd.label_key.clone(),
                operator: "In".into(),
                values: Some(cmd.label_values.clone()),
            }]),
            match_labels: None,
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_phase_selects_by_set() -> anyhow::Result<()> {
        let cmd = pb::RestoreStep {
            backup_name: "b".into(),
            restore_name: "b-vault".into(),
            label_key: "app.kubernetes.io/name".into(),
            label_values: vec!["vault".into()],
            ..Default::default()
        };
        let r = request("reg", &cmd)?;
        let expr = r
            .label_selector
            .and_then(|s| s.match_expressions)
            .and_then(|e| e.into_iter().next());
        assert_eq!(
            expr.map(|e| (e.key, e.operator, e.values)),
            Some((
                "app.kubernetes.io/name".into(),
                "In".into(),
                Some(vec!["vault".into()])
            ))
        );
        let no_key = pb::RestoreStep {
            label_key: String::new(),
            ..cmd
        };
        assert!(request("reg", &no_key).is_err());
        Ok(())
    }
}
