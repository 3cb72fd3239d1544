//! The lifecycle's transitions, as pure functions over a record.
use ferry_common::pb::{self, MigrationState as MS, StepState as SS};
use ferry_common::step::{Phase, StepName};

use super::*;

const NOW: u64 = 1_795_501_805_000;

fn request(stage: bool, hold: bool) -> MigrationRequest {
    MigrationRequest::try_from(pb::MigrationRequest {
        migration_id: "m1".into(),
        registry: "abc-01".into(),
        source_cluster: "a".into(),
        target_cluster: "b".into(),
        stage,
        hold,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn started(stage: bool, hold: bool) -> pb::Migration {
    let by = Actor::Client("client/admin".into());
    start(
        &request(stage, hold),
        &by,
        vec![],
        ("apps.a".into(), "apps.b".into()),
        Default::default(),
        NOW,
    )
    .0
}

fn by() -> Actor {
    Actor::Client("client/ops".into())
}

fn index_of(m: &pb::Migration, name: StepName) -> usize {
    let name = name.to_string();
    m.steps
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

/// Runs the driver's choice until it asks for something else than a step.
fn run_all(m: &mut pb::Migration, fail_at: Option<StepName>) -> Next {
    loop {
        match next(m) {
            Next::Run(at) => {
                step_started(m, at, NOW);
                let name = step_at(m, at).map(|s| s.name.clone()).unwrap_or_default();
                if fail_at.is_some_and(|f| f.to_string() == name) {
                    step_failed(m, at, "boom", None, NOW);
                } else {
                    step_succeeded(m, at, "done", None, NOW);
                }
            }
            other => return other,
        }
    }
}

#[test]
fn a_direct_migration_runs_every_step_then_succeeds() {
    let mut m = started(false, false);
    assert_eq!(m.state(), MS::Running);
    assert_eq!(
        m.steps[0].state(),
        SS::Succeeded,
        "preflight passed at start"
    );
    let end = run_all(&mut m, None);
    assert_eq!(
        end,
        Next::Finish(MS::Succeeded, "migration verified and done")
    );
    assert!(finish(&mut m, MS::Running, MS::Succeeded, "done", NOW).is_some());
    assert_eq!(m.state(), MS::Succeeded);
    assert!(m.steps.iter().all(|s| s.state() == SS::Succeeded));
    assert_eq!(next(&m), Next::Rest);
    // A second finish (a racing driver) changes nothing.
    assert!(finish(&mut m, MS::Running, MS::Succeeded, "done", NOW).is_none());
}

#[test]
fn a_failed_backup_is_renamed_before_its_retry() -> crate::Result<()> {
    let mut m = started(false, false);
    let backup = index_of(&m, StepName::Backup);
    m.steps[backup]
        .refs
        .push(StepRef::Backup("abc-01-2026-11-24-06-30-05".into()).to_string());
    run_all(&mut m, Some(StepName::Backup));
    assert_eq!(m.state(), MS::Failed);
    assert!(m.error.contains("backup failed: boom"));
    retry(&mut m, &by(), NOW)?;
    assert_eq!(m.state(), MS::Running);
    assert_eq!(m.steps[backup].state(), SS::Pending);
    assert_eq!(
        m.steps[backup].refs,
        ["failed-backup/abc-01-2026-11-24-06-30-05"]
    );
    // Still a backup of the migration's, for cleanup.
    assert_eq!(all_backups(&m), ["abc-01-2026-11-24-06-30-05"]);
    assert_eq!(
        next(&m),
        Next::Run(At {
            rollback: false,
            index: backup
        })
    );
    // Only a failed migration is retried.
    assert!(matches!(
        retry(&mut m, &by(), NOW),
        Err(Error::Precondition(_))
    ));
    Ok(())
}

#[test]
fn cutover_only_from_staged() -> crate::Result<()> {
    for (staged, held) in [(false, false), (true, false), (true, true)] {
        let mut m = started(staged, held);
        // Running, not holding yet.
        assert!(matches!(
            cutover(&mut m, &by(), NOW),
            Err(Error::Precondition(_))
        ));
        assert!(stage(&mut m, &by(), NOW).is_err());
    }
    let mut m = started(false, true);
    assert_eq!(run_all(&mut m, None), Next::Hold);
    let staged_at = index_of(&m, StepName::StageBackup);
    m.steps[staged_at].refs.push("backup/first".into());
    assert!(hold(&mut m, NOW).is_some());
    assert_eq!(m.state(), MS::Staged);
    assert_eq!(next(&m), Next::Rest);
    // Another stage copy: a new backup, the last one kept for cleanup.
    stage(&mut m, &by(), NOW)?;
    assert_eq!(m.state(), MS::Running);
    assert_eq!(m.steps[staged_at].refs, ["staged-backup/first"]);
    assert_eq!(
        next(&m),
        Next::Run(At {
            rollback: false,
            index: staged_at
        })
    );
    assert_eq!(run_all(&mut m, None), Next::Hold);
    hold(&mut m, NOW);
    cutover(&mut m, &by(), NOW)?;
    assert_eq!(m.state(), MS::Running);
    let quiesce = index_of(&m, StepName::Quiesce);
    assert_eq!(
        next(&m),
        Next::Run(At {
            rollback: false,
            index: quiesce
        })
    );
    assert!(cutover(&mut m, &by(), NOW).is_err(), "not staged any more");
    Ok(())
}

#[test]
fn cancel_from_every_state() {
    let all = [
        MS::Unspecified,
        MS::Running,
        MS::Succeeded,
        MS::Failed,
        MS::Cancelling,
        MS::Cancelled,
        MS::RollingBack,
        MS::RolledBack,
        MS::Staged,
    ];
    for state in all {
        let mut m = started(false, false);
        m.set_state(state);
        let r = cancel(&mut m, &request(false, false), &by(), NOW);
        if matches!(state, MS::Running | MS::Staged) {
            assert!(r.is_ok(), "{state} can be cancelled");
            assert_eq!(m.state(), MS::Cancelling);
            let names: Vec<&str> = m.rollback.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, ["cleanup-target", "unquiesce-source"]);
            assert_eq!(m.rollback[0].cluster_id, "b");
            assert_eq!(m.rollback[1].cluster_id, "a");
            assert_eq!(
                next(&m),
                Next::Run(At {
                    rollback: true,
                    index: 0
                })
            );
        } else {
            assert!(
                matches!(r, Err(Error::Precondition(_))),
                "{state} cannot be cancelled"
            );
            assert_eq!(m.state(), state, "a refused cancel changes nothing");
        }
    }
}

#[test]
fn a_cancel_stops_the_running_step_and_rolls_back() {
    let mut m = started(false, false);
    let quiesce = At {
        rollback: false,
        index: index_of(&m, StepName::Quiesce),
    };
    step_started(&mut m, quiesce, NOW);
    assert!(cancel(&mut m, &request(false, false), &by(), NOW).is_ok());
    step_cancelled(&mut m, quiesce, NOW);
    // A late failure of the forward part does not fail the cancel.
    step_failed(&mut m, quiesce, "late", None, NOW);
    assert_eq!(m.state(), MS::Cancelling);
    assert_eq!(
        run_all(&mut m, None),
        Next::Finish(
            MS::Cancelled,
            "cancelled; the target was cleaned and the source serves again"
        )
    );
}

#[test]
fn rollback_only_after_the_end_and_a_failed_rollback_retries_itself() -> crate::Result<()> {
    let req = request(false, false);
    let mut m = started(false, false);
    assert!(rollback(&mut m, &req, &by(), NOW).is_err(), "running");
    run_all(&mut m, Some(StepName::Restore(Phase::Kafka)));
    assert_eq!(m.state(), MS::Failed);
    assert!(rollback(&mut m, &req, &by(), NOW)?.is_some());
    assert_eq!(m.state(), MS::RollingBack);
    assert_eq!(m.finished_at_unix_ms, 0);
    run_all(&mut m, Some(StepName::UnquiesceSource));
    assert_eq!(m.state(), MS::Failed, "a failed rollback step fails it");
    retry(&mut m, &by(), NOW)?;
    assert_eq!(m.state(), MS::RollingBack, "the retry goes on rolling back");
    assert_eq!(
        next(&m),
        Next::Run(At {
            rollback: true,
            index: 1
        })
    );
    m.set_state(MS::RolledBack);
    assert!(
        rollback(&mut m, &req, &by(), NOW)?.is_none(),
        "already done"
    );
    Ok(())
}

#[test]
fn a_resumed_step_keeps_its_attempt() {
    let mut m = started(false, false);
    let Next::Run(at) = next(&m) else {
        panic!("a step runs first");
    };
    step_started(&mut m, at, NOW);
    assert_eq!(step_at(&m, at).map(|s| s.attempt), Some(1));
    let again = step_started(&mut m, at, NOW).map(|e| e.message);
    assert!(again.is_some_and(|e| e.contains("resumed (attempt 1)")));
    assert_eq!(step_at(&m, at).map(|s| s.attempt), Some(1));
}
