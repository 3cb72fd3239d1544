//! The driver over a real store in a temporary directory and a real fleet:
//! with no agent connected, what it journals when a step cannot reach its
//! agent; with a stand-in for the source's agent (a session opened on the
//! fleet, as the link opens one for a real agent, answering from a script),
//! what it journals as steps succeed, fail and are retried.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_common::pb::{
    self, MigrationState as MS, StepState as SS, command_output, command_result,
    coordinator_message::Msg as Down, step_command, step_output,
};
use tokio_util::sync::CancellationToken;

use crate::auth::Authorizer;
use crate::background::Background;
use crate::fleet::Fleet;
use crate::migrate::journal::Journal;
use crate::migrate::refs::{Actor, StepRef, parse_refs};
use crate::migrate::request::MigrationRequest;
use crate::migrate::{Engine, lifecycle};
use crate::relay::{RelayHub, TransfersApi};
use crate::store::Store;

/// An engine over a store in `dir` holding migration `m1` of `abc-01` from
/// `source` to `b`, recorded by an earlier coordinator with its preflight
/// done; it resumes `m1` as it starts.
struct Setup {
    fleet: Arc<Fleet>,
    engine: Engine,
    shutdown: CancellationToken,
}

fn setup(dir: &std::path::Path, source: &str) -> anyhow::Result<Setup> {
    let store = Store::open(dir)?;
    let request = MigrationRequest::try_from(pb::MigrationRequest {
        migration_id: "m1".into(),
        registry: "abc-01".into(),
        source_cluster: source.into(),
        target_cluster: "b".into(),
        ..Default::default()
    })?;
    let (m, created) = lifecycle::start(
        &request,
        &Actor::Client("client/admin".into()),
        vec![],
        ("apps.a".into(), "apps.b".into()),
        Default::default(),
        1,
    );
    Journal::new(store.clone()).create(m, created)?;

    let shutdown = CancellationToken::new();
    let fleet = Arc::new(Fleet::new(
        store.clone(),
        Duration::from_secs(5),
        Duration::from_secs(15),
        shutdown.child_token(),
    ));
    let background = Background::new();
    let transfers = TransfersApi::new(
        fleet.clone(),
        Arc::new(RelayHub::new(store.clone(), background.clone())),
        store.clone(),
        Arc::new(Authorizer::new(&[])),
        background.clone(),
    )?;
    let engine = Engine::new(store, fleet.clone(), transfers, background)?;
    Ok(Setup {
        fleet,
        engine,
        shutdown,
    })
}

/// Waits for the migration's next `Finished` event.
async fn finished(
    events: &mut tokio::sync::broadcast::Receiver<pb::MigrationEvent>,
) -> anyhow::Result<pb::MigrationEvent> {
    Ok(tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(e) if e.kind() == pb::EventKind::Finished => return Ok(e),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await??)
}

/// The journaled events of `m1` after `after`, by kind.
fn kinds(engine: &Engine, after: u64) -> anyhow::Result<Vec<pb::EventKind>> {
    Ok(engine
        .events("m1", after)?
        .iter()
        .map(|e| e.kind())
        .collect())
}

#[tokio::test]
async fn a_resumed_migration_whose_agent_is_unknown_fails_its_step_by_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Setup {
        engine, shutdown, ..
    } = setup(dir.path(), "gone")?;
    let mut events = engine.subscribe();
    let ended = finished(&mut events).await?;
    assert_eq!(ended.state(), MS::Failed);

    let m = engine.get("m1")?;
    assert_eq!(m.state(), MS::Failed);
    let quiesce = &m.steps[1];
    assert_eq!(quiesce.name, "quiesce");
    assert_eq!(quiesce.state(), SS::Failed);
    assert_eq!(quiesce.attempt, 1);
    assert!(
        quiesce.error.contains("no agent of cluster gone is known"),
        "{}",
        quiesce.error
    );
    assert!(m.error.starts_with("step quiesce failed"), "{}", m.error);
    assert!(m.steps[2..].iter().all(|s| s.state() == SS::Pending));
    // Journaled: started, failed, then the end, in that order.
    assert_eq!(
        kinds(&engine, 1)?,
        [
            pb::EventKind::StepStarted,
            pb::EventKind::StepFailed,
            pb::EventKind::Finished
        ]
    );
    let audit = engine.audit_log(Some("m1"))?;
    assert!(
        audit
            .iter()
            .any(|e| e.action == "step-failed" && e.actor == "cluster/gone")
    );
    shutdown.cancel();
    Ok(())
}

/// What the stand-in agent answers to one step command: progress reports,
/// then the result's outcome.
type Script = Box<dyn FnMut(&step_command::Kind) -> (Vec<u64>, command_result::Outcome) + Send>;

/// A stand-in for `cluster`'s agent: a session on the real fleet, answering
/// each command it is sent from `script` as an agent's link would (accept,
/// progress, result).
async fn stand_in(fleet: Arc<Fleet>, cluster: &str, mut script: Script) -> anyhow::Result<()> {
    let register = pb::Register {
        cluster_id: cluster.into(),
        agent_version: "stand-in".into(),
        ..Default::default()
    };
    let peer: SocketAddr = "127.0.0.1:1".parse()?;
    let mut session = fleet.open_session(register, peer).await?;
    let cluster = cluster.to_string();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = session.rx.recv().await {
            let Some(Down::Command(c)) = msg.msg else {
                continue;
            };
            let Some(pb::command_spec::Kind::Step(step)) = c.spec.and_then(|s| s.kind) else {
                continue;
            };
            let Some(kind) = step.kind else { continue };
            let (progress, outcome) = script(&kind);
            let _ = fleet.accepted(&cluster, &c.id);
            let total = progress.last().copied().unwrap_or_default();
            for done in progress {
                let p = pb::CommandProgress {
                    id: c.id.clone(),
                    message: format!("{done} of {total} items"),
                    done,
                    total,
                };
                let _ = fleet.record_progress(&cluster, p);
            }
            let result = pb::CommandResult {
                id: c.id.clone(),
                outcome: Some(outcome),
            };
            let _ = fleet.complete(&cluster, result);
        }
    });
    Ok(())
}

fn output(kind: step_output::Kind) -> command_result::Outcome {
    command_result::Outcome::Output(pb::CommandOutput {
        kind: Some(command_output::Kind::Step(pb::StepOutput {
            kind: Some(kind),
        })),
    })
}

fn failure(kind: pb::ErrorKind, message: &str) -> command_result::Outcome {
    command_result::Outcome::Error(pb::CommandError {
        message: message.into(),
        kind: kind.into(),
    })
}

/// Quiesce succeeds; the first backup reports progress and ends
/// PartiallyFailed, so the migration fails at the backup with the step's
/// progress journaled once, at its end; a retry asks the agent for a backup
/// under a new name (the failed one kept as a reference) and carries on to
/// the next step.
#[tokio::test]
async fn the_driver_journals_a_stand_in_agents_answers_and_retries_a_failed_backup()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Setup {
        fleet,
        engine,
        shutdown,
    } = setup(dir.path(), "a")?;
    let mut events = engine.subscribe();
    // The backup names the agent was asked for, in order.
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let backups = asked.clone();
    let script: Script = Box::new(move |kind| match kind {
        step_command::Kind::Quiesce(_) => (
            vec![],
            output(step_output::Kind::Quiesce(pb::QuiesceReport {
                workloads: 5,
                changed: 3,
            })),
        ),
        step_command::Kind::Backup(b) => {
            let mut names = backups.lock().unwrap_or_else(|p| p.into_inner());
            names.push(b.backup_name.clone());
            if names.len() == 1 {
                let message = format!("backup {} ended PartiallyFailed", b.backup_name);
                (
                    vec![1, 2, 3],
                    failure(pb::ErrorKind::Precondition, &message),
                )
            } else {
                let report = pb::BackupReport {
                    backup_name: b.backup_name.clone(),
                    phase: "Completed".into(),
                    items: 42,
                    ..Default::default()
                };
                (vec![42], output(step_output::Kind::Backup(report)))
            }
        }
        // The step after the backup: stops the run there.
        _ => (vec![], failure(pb::ErrorKind::Invalid, "not scripted")),
    });
    stand_in(fleet, "a", script).await?;

    let ended = finished(&mut events).await?;
    assert_eq!(ended.state(), MS::Failed);
    let m = engine.get("m1")?;
    let (quiesce, backup) = (&m.steps[1], &m.steps[2]);
    assert_eq!(
        (quiesce.name.as_str(), quiesce.state()),
        ("quiesce", SS::Succeeded)
    );
    assert_eq!(quiesce.detail, "3 of 5 workloads scaled to zero");
    assert_eq!(
        (backup.name.as_str(), backup.state()),
        ("backup", SS::Failed)
    );
    assert!(
        backup.error.contains("ended PartiallyFailed"),
        "{}",
        backup.error
    );
    // The progress the agent reported, journaled with the step's end.
    let progress = backup.progress.clone().unwrap_or_default();
    assert_eq!((progress.items_done, progress.items_total), (3, 3));
    assert_eq!(
        kinds(&engine, 1)?,
        [
            pb::EventKind::StepStarted,
            pb::EventKind::StepFinished,
            pb::EventKind::StepStarted,
            pb::EventKind::StepFailed,
            pb::EventKind::Finished
        ]
    );
    let seen = engine.events("m1", 0)?.last().map_or(0, |e| e.seq);

    engine.retry("m1", &Actor::Client("client/admin".into()))?;
    finished(&mut events).await?;
    let m = engine.get("m1")?;
    let backup = &m.steps[2];
    assert_eq!((backup.state(), backup.attempt), (SS::Succeeded, 2));
    let names = asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_ne!(
        names[0], names[1],
        "the retry reused the failed backup's name"
    );
    assert_eq!(m.backup_name, names[1]);
    let refs: Vec<StepRef> = parse_refs(&backup.refs).collect();
    assert!(
        refs.contains(&StepRef::FailedBackup(names[0].clone())),
        "{refs:?}"
    );
    assert!(
        refs.contains(&StepRef::Backup(names[1].clone())),
        "{refs:?}"
    );
    // The run went on to the next step, which the script refuses.
    assert_eq!((m.steps[3].state(), m.state()), (SS::Failed, MS::Failed));
    assert_eq!(
        kinds(&engine, seen)?.first(),
        Some(&pb::EventKind::State),
        "{:?}",
        kinds(&engine, seen)?
    );
    shutdown.cancel();
    Ok(())
}
