//! The steps an agent runs on its cluster: each sends one command and turns
//! the agent's report into the step's one line.
use ferry_common::pb::{self, ErrorKind, step_command::Kind as StepKind, step_output::Kind as Out};
use ferry_common::step::{Phase, StepName};
use ferry_common::time::unix_ms;

use super::{Context, StepError, StepResult, unexpected};
use crate::migrate::lifecycle::{all_backups, step_mut};
use crate::migrate::plan;
use crate::migrate::refs::{StepRef, add_ref, parse_refs};
use crate::migrate::verify;

pub async fn quiesce(cx: &Context<'_>, undo: bool) -> StepResult {
    let Out::Quiesce(q) = cx
        .command(StepKind::Quiesce(pb::QuiesceStep { undo }))
        .await?
    else {
        return Err(unexpected(cx));
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

pub async fn backup(cx: &Context<'_>) -> StepResult {
    let name = backup_name(cx)?;
    let Out::Backup(b) = cx
        .command(StepKind::Backup(pb::BackupStep {
            backup_name: name.clone(),
            backup_location: cx.request.backup_location.clone(),
            allow_warnings: cx.request.allow_warnings,
        }))
        .await?
    else {
        return Err(unexpected(cx));
    };
    warn_all(cx, &b.messages);
    Ok(format!(
        "backup {name} {}: {} items, {} warnings, {} errors",
        b.phase, b.items, b.warnings, b.errors
    ))
}

/// The backup's name, chosen once and journaled before anything uses it.
fn backup_name(cx: &Context<'_>) -> crate::Result<String> {
    if let Some(name) = parse_refs(&cx.step.refs).find_map(|r| match r {
        StepRef::Backup(n) => Some(n),
        _ => None,
    }) {
        return Ok(name);
    }
    let mut now = unix_ms();
    // Two backups of one migration must not share a name (names have
    // seconds): not the stage's, nor one that failed before a retry.
    let taken = all_backups(cx.m);
    while taken
        .iter()
        .any(|t| plan::backup_name(&cx.request.registry, now) <= *t)
    {
        now += 1000;
    }
    let name = plan::backup_name(&cx.request.registry, now);
    let is_main = cx.name == StepName::Backup;
    cx.journal.apply(cx.id(), |m| {
        if let Some(s) = step_mut(m, cx.at) {
            add_ref(&mut s.refs, &StepRef::Backup(name.clone()));
        }
        if is_main {
            m.backup_name = name.clone();
        }
        Ok(None)
    })?;
    Ok(name)
}

pub async fn inventory(cx: &Context<'_>) -> StepResult {
    let step = plan::inventory_step(&cx.request.registry, &cx.m.backup_name);
    let Out::Inventory(inv) = cx.command(StepKind::Inventory(step)).await? else {
        return Err(unexpected(cx));
    };
    cx.journal.put_inventory(cx.id(), &inv)?;
    Ok(verify::summary(&inv))
}

pub async fn identity(cx: &Context<'_>) -> StepResult {
    let (store, prefix) = (
        cx.request.backup_store.clone(),
        plan::identity_prefix(cx.id()),
    );
    let export = cx.name == StepName::ExportIdentity;
    let kind = if export {
        StepKind::ExportIdentity(pb::ExportIdentityStep { store, prefix })
    } else {
        StepKind::ImportIdentity(pb::ImportIdentityStep { store, prefix })
    };
    let Out::Identity(r) = cx.command(kind).await? else {
        return Err(unexpected(cx));
    };
    let users: u64 = r.realms.iter().map(|x| x.users).sum();
    let created: u64 = r.realms.iter().map(|x| x.created).sum();
    let skipped: u64 = r.realms.iter().map(|x| x.skipped).sum();
    Ok(if export {
        format!("{} realms, {users} users exported", r.realms.len())
    } else {
        format!(
            "{} realms imported; users: {created} created, {skipped} already there",
            r.realms.len()
        )
    })
}

pub async fn restore(cx: &Context<'_>, phase: Phase) -> StepResult {
    let backup = &cx.m.backup_name;
    // A retried phase gets a new Restore: the failed one keeps its verdict.
    let restore_name = if cx.step.attempt > 1 {
        format!("{backup}-{phase}-{}", cx.step.attempt)
    } else {
        format!("{backup}-{phase}")
    };
    cx.add_ref(StepRef::Restore(restore_name.clone()))?;
    let filters = plan::filters(phase);
    let Out::Restore(r) = cx
        .command(StepKind::Restore(pb::RestoreStep {
            backup_name: backup.clone(),
            restore_name: restore_name.clone(),
            included_resources: vec![],
            excluded_resources: filters.excluded.iter().map(|s| s.to_string()).collect(),
            label_key: if filters.labels.is_empty() {
                String::new()
            } else {
                plan::PHASE_LABEL.to_string()
            },
            label_values: filters.labels.iter().map(|s| s.to_string()).collect(),
            allow_warnings: cx.request.allow_warnings,
        }))
        .await?
    else {
        return Err(unexpected(cx));
    };
    warn_all(cx, &r.messages);
    Ok(format!(
        "restore {restore_name} {}: {} items, {} warnings",
        r.phase, r.items, r.warnings
    ))
}

pub async fn reconfigure(cx: &Context<'_>) -> StepResult {
    let (from, to) = (&cx.m.source_apps_domain, &cx.m.target_apps_domain);
    let Out::Reconfigure(r) = cx
        .command(StepKind::Reconfigure(pb::ReconfigureStep {
            from_apps_domain: from.clone(),
            to_apps_domain: to.clone(),
        }))
        .await?
    else {
        return Err(unexpected(cx));
    };
    Ok(format!(
        "{} objects rewritten from {from} to {to}, {} allow-lists, {} database passwords reset, keycloak-operator {}, {} workloads scaled back",
        r.rewritten,
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

pub async fn verify(cx: &Context<'_>) -> StepResult {
    let source = cx.journal.inventory(cx.id())?.ok_or_else(|| {
        StepError::failed(
            ErrorKind::Precondition,
            "the source's inventory was never taken",
        )
    })?;
    let step = plan::inventory_step(&cx.request.registry, &cx.m.backup_name);
    let Out::Inventory(target) = cx.command(StepKind::Inventory(step)).await? else {
        return Err(unexpected(cx));
    };
    let report = verify::compare(&source, &target, &cx.m.target_apps_domain);
    let verified = report.verified;
    let bad: Vec<String> = report
        .lines
        .iter()
        .filter(|l| !l.ok)
        .map(|l| format!("{}: expected {}, found {}", l.what, l.expected, l.actual))
        .collect();
    let lines = report.lines.len();
    cx.journal.apply(cx.id(), |m| {
        m.report = Some(report);
        Ok(None)
    })?;
    if verified {
        Ok(format!("{lines} checks equal on source and target"))
    } else {
        Err(StepError::failed(
            ErrorKind::Conflict,
            format!("the target differs from the source: {}", bad.join("; ")),
        ))
    }
}

pub async fn cleanup(cx: &Context<'_>) -> StepResult {
    super::stop_transfers(cx.transfers, cx.m).await;
    let backups = all_backups(cx.m);
    let mut prefixes: Vec<String> = backups.iter().map(|b| plan::backup_prefix(b)).collect();
    prefixes.push(plan::repository_prefix(&cx.request.registry));
    prefixes.push(format!("ferry/{}/", cx.id()));
    let restores: Vec<String> =
        cx.m.steps
            .iter()
            .flat_map(|s| parse_refs(&s.refs))
            .filter_map(|r| match r {
                StepRef::Restore(name) => Some(name),
                _ => None,
            })
            .collect();
    let Out::Cleanup(c) = cx
        .command(StepKind::Cleanup(pb::CleanupStep {
            backup_store: cx.request.backup_store.clone(),
            prefixes,
            stores: plan::obc_stores(),
            realms: plan::realms(&cx.request.registry),
            backups,
            restores,
        }))
        .await?
    else {
        return Err(unexpected(cx));
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

/// Velero's warnings of a step as one event: how many, and the first few.
fn warn_all(cx: &Context<'_>, messages: &[String]) {
    const SHOWN: usize = 5;
    if messages.is_empty() {
        return;
    }
    let mut text = match messages.len() {
        1 => format!("{}: ", cx.name),
        n => format!("{}: {n} messages from Velero: ", cx.name),
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
    cx.warn(&text);
}
