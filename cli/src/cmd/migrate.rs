//! `ferry migrate`: plan, start, follow and steer migrations.
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_common::pb::{self, MigrationState as MS, migrations_client::MigrationsClient};
use ferry_proto::names::Named;
use futures::StreamExt;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::output::{self, OutputFormat};
use crate::{ClientArgs, exit};

#[derive(Debug, clap::Subcommand)]
pub enum MigrateCommand {
    /// Show the steps and every preflight verdict; changes nothing.
    Plan(RequestArgs),
    /// Start a migration (refused, changing nothing, if a check fails) and follow it.
    Start(StartArgs),
    /// Follow a migration's events until it ends (or holds, staged).
    Watch(IdArgs),
    /// Show one migration: its steps and, once verified, the report.
    Get(IdArgs),
    /// List migrations.
    List,
    /// Stop a running migration and roll it back.
    Cancel(FollowArgs),
    /// Remove what a migration restored on the target; the source serves again.
    Rollback(FollowArgs),
    /// Run a failed migration again from its failed step.
    Retry(FollowArgs),
    /// A staged migration (started with --hold) copies what changed on the
    /// source since its last stage copy, then holds again.
    Stage(FollowArgs),
    /// A staged migration (started with --hold) goes on: quiesce, backup,
    /// transfer of what changed, restore, reconfigure, verify.
    Cutover(FollowArgs),
    /// The audit log: who asked for what, and what each agent did.
    Audit(AuditArgs),
}

#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// The registry (its namespace) to move.
    #[arg(long)]
    pub registry: String,
    /// The source cluster's id.
    #[arg(long)]
    pub from: String,
    /// The target cluster's id.
    #[arg(long)]
    pub to: String,
    /// Copy once while the source still serves, so the cutover moves only the delta.
    #[arg(long)]
    pub stage: bool,
    /// Stage, then hold (state `staged`, the source serving) until
    /// `ferry migrate stage` copies the delta again or `ferry migrate cutover`
    /// goes on. Implies --stage.
    #[arg(long)]
    pub hold: bool,
    /// Go on when Velero reports a backup or restore PartiallyFailed.
    #[arg(long)]
    pub allow_warnings: bool,
    /// The agents' store name for the backup storage location's bucket.
    #[arg(long, default_value = "backups")]
    pub backup_store: String,
    /// Velero's backup storage location.
    #[arg(long, default_value = "default")]
    pub backup_location: String,
}

impl RequestArgs {
    fn request(&self, id: Option<String>) -> pb::MigrationRequest {
        pb::MigrationRequest {
            migration_id: id.unwrap_or_default(),
            registry: self.registry.clone(),
            source_cluster: self.from.clone(),
            target_cluster: self.to.clone(),
            stage: self.stage || self.hold,
            hold: self.hold,
            allow_warnings: self.allow_warnings,
            backup_store: self.backup_store.clone(),
            backup_location: self.backup_location.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// Id of the migration (starting the same id again returns it).
    #[arg(long)]
    pub id: Option<String>,
    /// Return once started instead of following it.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct FollowArgs {
    pub id: String,
    /// Return at once instead of following it.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this migration's entries.
    pub id: Option<String>,
}

pub async fn client(args: &ClientArgs) -> anyhow::Result<MigrationsClient<Channel>> {
    Ok(MigrationsClient::new(args.channel().await?))
}

pub async fn run(args: &ClientArgs, cmd: MigrateCommand, out: OutputFormat) -> anyhow::Result<u8> {
    let mut c = client(args).await?;
    let r = |id: &str| pb::MigrationRef {
        migration_id: id.to_string(),
    };
    match cmd {
        MigrateCommand::Plan(a) => {
            let plan = c.plan_migration(a.request(None)).await?.into_inner();
            match out {
                OutputFormat::Json => output::print_json(&to_json(&plan)),
                OutputFormat::Table => println!("{}", plan_table(&plan)),
            }
            Ok(if plan.ready { exit::OK } else { exit::REFUSED })
        }
        MigrateCommand::Start(a) => {
            let m = c
                .start_migration(a.request.request(a.id))
                .await?
                .into_inner();
            if out == OutputFormat::Table {
                eprintln!(
                    "migration {} started: {} from {} to {}",
                    m.migration_id, a.request.registry, a.request.from, a.request.to
                );
            }
            if a.detach {
                return Ok(print_migration(&m, out));
            }
            let m = follow(&mut c, &m.migration_id, out).await?;
            Ok(print_migration(&m, out))
        }
        MigrateCommand::Watch(a) => {
            let m = follow(&mut c, &a.id, out).await?;
            Ok(print_migration(&m, out))
        }
        MigrateCommand::Get(a) => {
            let m = c.get_migration(r(&a.id)).await?.into_inner();
            print_migration(&m, out);
            // Reading succeeded, whatever state the migration is in.
            Ok(exit::OK)
        }
        MigrateCommand::List => {
            let all = c
                .list_migrations(pb::ListMigrationsRequest {})
                .await?
                .into_inner()
                .migrations;
            match out {
                OutputFormat::Json => output::print_json(&json!({
                    "migrations": all.iter().map(to_json).collect::<Vec<_>>()
                })),
                OutputFormat::Table => println!("{}", list_table(&all)),
            }
            Ok(exit::OK)
        }
        MigrateCommand::Cancel(a) => {
            let m = c.cancel_migration(r(&a.id)).await?.into_inner();
            after_call(&mut c, m, a.detach, out).await
        }
        MigrateCommand::Rollback(a) => {
            let m = c.rollback_migration(r(&a.id)).await?.into_inner();
            after_call(&mut c, m, a.detach, out).await
        }
        MigrateCommand::Retry(a) => {
            let m = c.retry_migration(r(&a.id)).await?.into_inner();
            after_call(&mut c, m, a.detach, out).await
        }
        MigrateCommand::Stage(a) => {
            let m = c.stage_migration(r(&a.id)).await?.into_inner();
            after_call(&mut c, m, a.detach, out).await
        }
        MigrateCommand::Cutover(a) => {
            let m = c.cutover_migration(r(&a.id)).await?.into_inner();
            after_call(&mut c, m, a.detach, out).await
        }
        MigrateCommand::Audit(a) => {
            let entries = c
                .list_audit(r(a.id.as_deref().unwrap_or("")))
                .await?
                .into_inner()
                .entries;
            match out {
                OutputFormat::Json => output::print_json(&json!({
                    "entries": entries.iter().map(to_json).collect::<Vec<_>>()
                })),
                OutputFormat::Table => println!("{}", audit_table(&entries)),
            }
            Ok(exit::OK)
        }
    }
}

async fn after_call(
    c: &mut MigrationsClient<Channel>,
    m: pb::Migration,
    detach: bool,
    out: OutputFormat,
) -> anyhow::Result<u8> {
    if detach {
        return Ok(print_migration(&m, out));
    }
    let m = follow(c, &m.migration_id, out).await?;
    Ok(print_migration(&m, out))
}

/// Exit code of a migration's state.
pub fn code(m: &pb::Migration) -> u8 {
    match MS::try_from(m.state) {
        Ok(MS::Succeeded) => exit::OK,
        Ok(MS::Cancelled | MS::RolledBack) => exit::CANCELLED,
        Ok(MS::Failed) => exit::FAILED,
        _ => exit::OK,
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| json!({"error": e.to_string()}))
}

fn print_migration(m: &pb::Migration, out: OutputFormat) -> u8 {
    match out {
        OutputFormat::Json => output::print_json(&to_json(m)),
        OutputFormat::Table => println!("{}", migration_table(m)),
    }
    code(m)
}

pub fn plan_table(p: &pb::MigrationPlan) -> String {
    let steps: Vec<Vec<String>> = p
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vec![
                (i + 1).to_string(),
                s.name.clone(),
                s.cluster_id.clone(),
                s.description.clone(),
            ]
        })
        .collect();
    format!(
        "{}\n\n{}\n\n{}",
        output::table(&["#", "STEP", "ON", "WHAT"], &steps),
        checks_table(&p.checks),
        if p.ready {
            "ready: every check passed"
        } else {
            "NOT READY: a start would be refused"
        }
    )
}

pub fn checks_table(checks: &[pb::Check]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                if c.passed { "pass" } else { "FAIL" }.to_string(),
                c.name.clone(),
                c.cluster_id.clone(),
                c.reason.clone(),
            ]
        })
        .collect();
    output::table(&["CHECK", "NAME", "CLUSTER", "WHY"], &rows)
}

fn duration(from: u64, to: u64) -> String {
    if from == 0 || to < from {
        return String::new();
    }
    format!("{:.1}s", (to - from) as f64 / 1000.0)
}

fn steps_rows(steps: &[pb::Step]) -> Vec<Vec<String>> {
    steps
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.cluster_id.clone(),
                pb::StepState::name_of(s.state).into(),
                duration(s.started_at_unix_ms, s.finished_at_unix_ms),
                if s.error.is_empty() {
                    s.detail.clone()
                } else {
                    s.error.clone()
                },
            ]
        })
        .collect()
}

pub fn migration_table(m: &pb::Migration) -> String {
    let r = m.request.clone().unwrap_or_default();
    let mut out = format!(
        "migration {}: {} from {} to {} — {}\nbackup {}\n\n{}",
        m.migration_id,
        r.registry,
        r.source_cluster,
        r.target_cluster,
        MS::name_of(m.state),
        if m.backup_name.is_empty() {
            "(none yet)"
        } else {
            &m.backup_name
        },
        output::table(
            &["STEP", "ON", "STATE", "TOOK", "DETAIL"],
            &steps_rows(&m.steps)
        ),
    );
    if !m.rollback.is_empty() {
        out.push_str("\n\nrollback:\n");
        out.push_str(&output::table(
            &["STEP", "ON", "STATE", "TOOK", "DETAIL"],
            &steps_rows(&m.rollback),
        ));
    }
    if let Some(report) = &m.report {
        out.push_str("\n\n");
        out.push_str(&report_table(report));
    }
    if !m.error.is_empty() {
        out.push_str(&format!("\n\nerror: {}", m.error));
    }
    if m.state == MS::Staged as i32 {
        out.push_str(&format!(
            "\n\nstaged: the source serves. Copy what changed since: `ferry migrate stage {id}`; \
             go on: `ferry migrate cutover {id}`; give up: `ferry migrate cancel {id}`",
            id = m.migration_id
        ));
    }
    out
}

pub fn report_table(r: &pb::VerificationReport) -> String {
    let rows: Vec<Vec<String>> = r
        .lines
        .iter()
        .map(|l| {
            vec![
                if l.ok { "ok" } else { "DIFFERS" }.to_string(),
                l.what.clone(),
                l.expected.clone(),
                l.actual.clone(),
            ]
        })
        .collect();
    format!(
        "verification: {}\n{}",
        if r.verified {
            "VERIFIED"
        } else {
            "NOT VERIFIED"
        },
        output::table(&["", "WHAT", "SOURCE", "TARGET"], &rows)
    )
}

fn list_table(all: &[pb::Migration]) -> String {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            let r = m.request.clone().unwrap_or_default();
            let current = m
                .steps
                .iter()
                .chain(m.rollback.iter())
                .rfind(|s| s.state != pb::StepState::Pending as i32)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            vec![
                m.migration_id.clone(),
                r.registry,
                format!("{} → {}", r.source_cluster, r.target_cluster),
                MS::name_of(m.state).into(),
                current,
            ]
        })
        .collect();
    output::table(&["ID", "REGISTRY", "CLUSTERS", "STATE", "STEP"], &rows)
}

fn audit_table(entries: &[pb::AuditEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.at_unix_ms.to_string(),
                e.actor.clone(),
                e.action.clone(),
                if e.migration_id.is_empty() {
                    e.object.clone()
                } else {
                    e.migration_id.clone()
                },
                e.detail.clone(),
            ]
        })
        .collect();
    output::table(
        &["SEQ", "AT (ms)", "ACTOR", "ACTION", "OBJECT", "DETAIL"],
        &rows,
    )
}

/// A progress bar of a step: items, bytes, percent, rate and ETA.
///
/// A total below what is done is not a total (more was found than first
/// counted): the line then shows what is done, without a percentage or ETA
/// that would be invented.
pub fn progress_line(step: &str, p: &pb::StepProgress) -> String {
    let (done, total, unit_bytes) = if p.bytes_total > 0 || p.bytes_done > 0 {
        (p.bytes_done, p.bytes_total, true)
    } else {
        (p.items_done, p.items_total, false)
    };
    let known = total > 0 && done <= total;
    let width = 24;
    let mut line = if known {
        let pct = done as f64 * 100.0 / total as f64;
        let filled = ((pct / 100.0) * width as f64) as usize;
        format!(
            "{step:<18} [{}{}] {pct:>3.0}%",
            "#".repeat(filled),
            "-".repeat(width - filled),
        )
    } else {
        format!("{step:<18} [{}]    ?", "?".repeat(width))
    };
    let of = |done: u64, total: u64, show: &dyn Fn(u64) -> String| {
        if total > 0 && done <= total {
            format!("{} / {}", show(done), show(total))
        } else {
            format!("{} so far", show(done))
        }
    };
    line.push_str(&format!(
        "  {} items",
        of(p.items_done, p.items_total, &|n| n.to_string())
    ));
    if unit_bytes {
        line.push_str(&format!(
            "  {}  {}/s",
            of(p.bytes_done, p.bytes_total, &output::bytes),
            output::bytes(p.rate_bytes_per_sec as u64),
        ));
        if known {
            line.push_str(&format!("  ETA {}s", p.eta_ms / 1000));
        }
    }
    if !p.message.is_empty() {
        line.push_str(&format!("  {}", output::printable(&p.message)));
    }
    line
}

/// Waits for the migration to end, printing nothing; returns it.
pub async fn wait_end(
    c: &mut MigrationsClient<Channel>,
    id: &str,
) -> anyhow::Result<pb::Migration> {
    let mut stream = c
        .watch_migration(pb::WatchMigrationRequest {
            migration_id: id.to_string(),
            after_seq: 0,
        })
        .await?
        .into_inner();
    while let Some(e) = stream.next().await {
        e.context("watching the migration")?;
    }
    Ok(c.get_migration(pb::MigrationRef {
        migration_id: id.to_string(),
    })
    .await?
    .into_inner())
}

/// How long `follow` keeps reconnecting to a coordinator that went away
/// (restarting, say) before it gives up with exit 4; the migration goes on
/// there meanwhile.
const RECONNECT_FOR: Duration = Duration::from_secs(600);

/// Prints events as they come (a live bar on a terminal, one line each
/// otherwise, JSON lines for scripts) until the migration ends; returns it.
/// A coordinator that goes away (restarts) is reconnected to, and the watch
/// resumes after the last event seen.
pub async fn follow(
    c: &mut MigrationsClient<Channel>,
    id: &str,
    out: OutputFormat,
) -> anyhow::Result<pb::Migration> {
    let mut view = View {
        out,
        tty: std::io::stderr().is_terminal(),
        bar_shown: false,
        last_line: Instant::now() - Duration::from_secs(60),
    };
    let mut after_seq = 0;
    let mut away: Option<Instant> = None;
    loop {
        let watched = async {
            let mut stream = c
                .watch_migration(pb::WatchMigrationRequest {
                    migration_id: id.to_string(),
                    after_seq,
                })
                .await?
                .into_inner();
            while let Some(e) = stream.next().await {
                let e = e?;
                away = None;
                after_seq = after_seq.max(e.seq);
                view.show(&e);
            }
            Ok::<_, tonic::Status>(())
        }
        .await;
        let err = match watched {
            Ok(()) => match c
                .get_migration(pb::MigrationRef {
                    migration_id: id.to_string(),
                })
                .await
            {
                Ok(m) => {
                    view.end();
                    return Ok(m.into_inner());
                }
                Err(status) => anyhow::Error::from(status),
            },
            Err(status) => anyhow::Error::from(status),
        };
        if !crate::client::is_transient(&err) {
            view.end();
            return Err(err).context("watching the migration");
        }
        let since = *away.get_or_insert_with(|| {
            view.end();
            eprintln!(
                "the coordinator went away ({err:#}); migration {id} goes on there — reconnecting"
            );
            Instant::now()
        });
        if since.elapsed() > RECONNECT_FOR {
            return Err(err).context(format!(
                "the coordinator has been unreachable for {}s; follow migration {id} again with `ferry migrate watch {id}`",
                RECONNECT_FOR.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How `follow` shows events.
struct View {
    out: OutputFormat,
    tty: bool,
    bar_shown: bool,
    last_line: Instant,
}

impl View {
    fn show(&mut self, e: &pb::MigrationEvent) {
        let progress = e.kind == pb::EventKind::StepProgress as i32;
        match self.out {
            OutputFormat::Json => {
                if !progress || self.last_line.elapsed() > Duration::from_secs(1) {
                    println!("{}", to_json(e));
                    self.last_line = Instant::now();
                }
            }
            OutputFormat::Table if progress => {
                let Some(p) = &e.progress else { return };
                let line = progress_line(&e.step, p);
                if self.tty {
                    eprint!("\r\x1b[2K{line}");
                    let _ = std::io::stderr().flush();
                    self.bar_shown = true;
                } else if self.last_line.elapsed() > Duration::from_secs(2) {
                    eprintln!("{line}");
                    self.last_line = Instant::now();
                }
            }
            OutputFormat::Table => {
                if self.bar_shown {
                    eprint!("\r\x1b[2K");
                    self.bar_shown = false;
                }
                let mark = match pb::EventKind::try_from(e.kind) {
                    Ok(pb::EventKind::StepFinished) => "✓",
                    Ok(pb::EventKind::StepFailed) => "✗",
                    Ok(pb::EventKind::Warning) => "!",
                    Ok(pb::EventKind::StepStarted) => "→",
                    _ => "•",
                };
                eprintln!("{mark} {}", output::printable(&e.message));
            }
        }
    }

    fn end(&mut self) {
        if self.bar_shown {
            eprintln!();
            self.bar_shown = false;
        }
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    /// Seen in a run: `100% 48.2 MiB / 46.2 KiB` — done over a total that
    /// is not one. No percentage, no total, no ETA then.
    #[test]
    fn a_total_below_what_is_done_is_not_shown_as_one() {
        let p = pb::StepProgress {
            bytes_done: 48 << 20,
            bytes_total: 46 << 10,
            items_done: 12,
            items_total: 3,
            eta_ms: 5000,
            ..Default::default()
        };
        let line = progress_line("transfer", &p);
        assert!(!line.contains('%'), "{line}");
        assert!(
            !line.contains("46.0 KiB") && !line.contains("ETA"),
            "{line}"
        );
        assert!(line.contains("48.0 MiB so far"), "{line}");
        let ok = pb::StepProgress {
            bytes_done: 1 << 20,
            bytes_total: 2 << 20,
            items_done: 1,
            items_total: 2,
            ..Default::default()
        };
        let line = progress_line("transfer", &ok);
        assert!(
            line.contains(" 50%") && line.contains("1.0 MiB / 2.0 MiB"),
            "{line}"
        );
    }
}
