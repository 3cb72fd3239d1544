//! The coordinator stopped, as a crash would, at exactly the two seams where
//! a journal and an agent can disagree (issue 14): a step journaled running
//! whose command was never sent, and a step the agent finished whose success
//! was never journaled. Restarted, it finishes the migration, which
//! verifies, and Velero made no backup or restore twice.
//!
//! The seams are `fail` crate failpoints compiled in with the coordinator's
//! `testing` feature (src/seam.rs), armed through `FAILPOINTS`.
use std::time::Duration;

use ferry_common::pb;
use ferry_coordinator::migrate::{StepRef, parse_refs};
use ferry_coordinator::seam;
use ferry_coordinator::store::{Store, is_finished};
use ferry_tests::World;
use ferry_tests::migrate_world::{
    Site, both_agents, bucket_digests, cluster, ended, made_once_and_copied, migrations, request,
    velero_names, wait_until,
};

const MIGRATION_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the first coordinator may take to reach the seam.
const TO_SEAM: Duration = Duration::from_secs(120);

/// What the journal said of the step when the process stopped.
struct AtSeam {
    step: pb::Step,
    /// The step's command, if one was stored.
    command: Option<pb::CommandStatus>,
}

/// Runs migration `id` under a coordinator armed to stop at `failpoint`
/// when `step` reaches it, and reads its journal once it has stopped; then
/// starts a coordinator without the seam and checks that the migration
/// finishes, verified, with one backup and one restore per phase.
async fn stopped_at(
    id: &str,
    failpoint: &str,
    step: &str,
    at_seam: impl FnOnce(&AtSeam, usize),
) -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    let before_buckets = bucket_digests(&a).await?;
    let armed = format!("{failpoint}=return({step})");
    let mut first = w.coordinator_with_env(&["admin=operator"], &[], &[("FAILPOINTS", &armed)])?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;
    migrations(&w, "admin")
        .await?
        .start_migration(request(id, "a", "b"))
        .await?;

    let exit = first.wait_exit(TO_SEAM)?;
    let log = first.log_text();
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(seam::EXIT_CODE),
        "the coordinator did not stop at {failpoint}:\n{log}"
    );
    assert_eq!(
        first.log_count(&[&format!("test seam {failpoint} reached by step {step}:")]),
        1,
        "{log}"
    );
    {
        let store = Store::open(&w.path("coordinator-data"))?;
        let m = store
            .migration(id)?
            .ok_or_else(|| anyhow::anyhow!("migration {id} not recorded"))?;
        let s = m
            .steps
            .iter()
            .find(|s| s.name == step)
            .ok_or_else(|| anyhow::anyhow!("no step {step}: {m:#?}"))?
            .clone();
        let command = parse_refs(&s.refs)
            .find_map(|r| match r {
                StepRef::Command(c) => Some(c),
                _ => None,
            })
            .map(|c| store.command(&c))
            .transpose()?
            .flatten();
        let backups = velero_names(&a.store(), "backups").await?.len();
        at_seam(&AtSeam { step: s, command }, backups);
    }

    let _second = w.coordinator(&["admin=operator"], &[])?;
    let m = wait_until(&w, id, MIGRATION_TIMEOUT, "the end", ended).await?;
    assert_eq!(m.state, pb::MigrationState::Succeeded as i32, "{m:#?}");
    let resumed = m
        .steps
        .iter()
        .find(|s| s.name == step)
        .ok_or_else(|| anyhow::anyhow!("no step {step}: {m:#?}"))?;
    // Resumed, not retried: the same attempt ran on.
    assert_eq!(resumed.attempt, 1, "{m:#?}");
    made_once_and_copied(&a, &b, &m, &before_buckets).await
}

/// Journaled running, command never sent: no command is stored and Velero
/// has no backup; the restarted coordinator sends it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopped_after_journaling_a_step_before_sending_it() -> anyhow::Result<()> {
    stopped_at("seam1", "step-command-unsent", "backup", |at, backups| {
        assert_eq!(at.step.state(), pb::StepState::Running, "{:#?}", at.step);
        assert!(
            at.command.is_none(),
            "a command was stored: {:#?}",
            at.command
        );
        assert_eq!(backups, 0, "Velero has a backup already");
    })
    .await
}

/// The agent finished the backup, its success never journaled: the step is
/// still running in the journal while its command has its result; the
/// restarted coordinator finds that result by request id instead of making
/// a second backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopped_after_the_agent_replied_before_journaling_it() -> anyhow::Result<()> {
    stopped_at(
        "seam2",
        "step-succeeded-unjournaled",
        "backup",
        |at, backups| {
            assert_eq!(at.step.state(), pb::StepState::Running, "{:#?}", at.step);
            let command = at.command.as_ref().expect("the backup's command is stored");
            assert!(is_finished(command), "{command:#?}");
            assert_eq!(backups, 1, "Velero's backups when the agent replied");
        },
    )
    .await
}
