//! The driver over a real store in a temporary directory and a real fleet
//! with no agent connected: what it journals when a step cannot reach its
//! agent, and that a restarted engine resumes a migration it finds running.
use std::sync::Arc;
use std::time::Duration;

use ferry_common::pb::{self, MigrationState as MS, StepState as SS};
use tokio_util::sync::CancellationToken;

use crate::auth::Authorizer;
use crate::background::Background;
use crate::fleet::Fleet;
use crate::migrate::journal::Journal;
use crate::migrate::refs::Actor;
use crate::migrate::request::MigrationRequest;
use crate::migrate::{Engine, lifecycle};
use crate::relay::{RelayHub, TransfersApi};
use crate::store::Store;

#[tokio::test]
async fn a_resumed_migration_whose_agent_is_unknown_fails_its_step_by_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    // A migration recorded by an earlier coordinator, its preflight done.
    let request = MigrationRequest::try_from(pb::MigrationRequest {
        migration_id: "m1".into(),
        registry: "abc-01".into(),
        source_cluster: "gone".into(),
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
    let engine = Engine::new(store.clone(), fleet, transfers, background.clone())?;
    let mut events = engine.subscribe();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(e) if e.kind() == pb::EventKind::Finished => return Ok(e),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await??;
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
    let kinds: Vec<pb::EventKind> = engine.events("m1", 1)?.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
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
