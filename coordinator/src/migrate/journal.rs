//! The journal: a migration's record, its event log and the audit log, read
//! and written through the store, and the events told to watchers. It
//! knows how a record is kept, not what a migration does.
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use ferry_common::pb;
use tokio::sync::broadcast;

use super::refs::Actor;
use crate::store::Store;
use crate::{Error, Result};

pub struct Journal {
    store: Store,
    events: broadcast::Sender<pb::MigrationEvent>,
    /// Serializes read-modify-write of migration records.
    records: Mutex<()>,
    /// The last progress of each running step, kept here between its start
    /// and its end (when it is journaled with the step) and shown in the
    /// records read meanwhile.
    live: Mutex<HashMap<(String, At), pb::StepProgress>>,
}

/// Where a step is in its record: in the forward list or the rollback list,
/// at an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct At {
    pub rollback: bool,
    pub index: usize,
}

pub fn step_mut(m: &mut pb::Migration, at: At) -> Option<&mut pb::Step> {
    if at.rollback {
        m.rollback.get_mut(at.index)
    } else {
        m.steps.get_mut(at.index)
    }
}

pub fn step_at(m: &pb::Migration, at: At) -> Option<&pb::Step> {
    if at.rollback {
        m.rollback.get(at.index)
    } else {
        m.steps.get(at.index)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Journal {
    pub fn new(store: Store) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            store,
            events,
            records: Mutex::new(()),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Events as they are journaled, and progress as it is reported.
    pub fn subscribe(&self) -> broadcast::Receiver<pb::MigrationEvent> {
        self.events.subscribe()
    }

    /// The migration as journaled, with its running step's live progress.
    pub fn get(&self, id: &str) -> Result<pb::Migration> {
        let mut m = self.stored(id)?;
        self.overlay(&mut m);
        Ok(m)
    }

    fn stored(&self, id: &str) -> Result<pb::Migration> {
        self.store
            .migration(id)?
            .ok_or_else(|| Error::UnknownMigration(id.to_string()))
    }

    pub fn find(&self, id: &str) -> Result<Option<pb::Migration>> {
        let mut m = self.store.migration(id)?;
        if let Some(m) = m.as_mut() {
            self.overlay(m);
        }
        Ok(m)
    }

    /// Every migration, oldest first.
    pub fn list(&self) -> Result<Vec<pb::Migration>> {
        let mut all = self.store.migrations()?;
        all.sort_by_key(|m| m.created_at_unix_ms);
        for m in &mut all {
            self.overlay(m);
        }
        Ok(all)
    }

    fn overlay(&self, m: &mut pb::Migration) {
        let live = lock(&self.live);
        for ((id, at), p) in live.iter() {
            if *id == m.migration_id
                && let Some(s) = step_mut(m, *at)
                && s.state() == pb::StepState::Running
            {
                s.progress = Some(p.clone());
            }
        }
    }

    pub fn events(&self, id: &str, after: u64) -> Result<Vec<pb::MigrationEvent>> {
        self.store.migration_events(id, after)
    }

    /// Appends to the audit log; a failure to is logged, never returned
    /// (the action it records has already happened).
    pub fn audit(&self, actor: &Actor, action: &str, migration: &str, detail: impl Into<String>) {
        let entry = pb::AuditEntry {
            actor: actor.to_string(),
            action: action.to_string(),
            migration_id: migration.to_string(),
            detail: detail.into(),
            ..Default::default()
        };
        if let Err(e) = self.store.audit(entry) {
            tracing::error!(error = %e, %actor, %action, %migration, "cannot append to the audit log");
        }
    }

    pub fn audit_log(&self, migration: Option<&str>) -> Result<Vec<pb::AuditEntry>> {
        self.store.audit_log(migration)
    }

    /// Stores a new migration with its first event, unless one with its id
    /// exists: then returns that one and stores nothing.
    pub fn create(
        &self,
        mut m: pb::Migration,
        first: pb::MigrationEvent,
    ) -> Result<(pb::Migration, bool)> {
        let _g = lock(&self.records);
        if let Some(existing) = self.store.migration(&m.migration_id)? {
            return Ok((existing, false));
        }
        let first = with_state(first, &m);
        let stored = self.store.put_migration(&mut m, Some(first))?;
        self.publish(stored);
        Ok((m, true))
    }

    /// Read-modify-write of one migration; `f` may return an event to log
    /// with the change, in the same write.
    pub fn update<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut pb::Migration) -> Result<(T, Option<pb::MigrationEvent>)>,
    ) -> Result<(pb::Migration, T)> {
        let _g = lock(&self.records);
        let mut m = self.stored(id)?;
        let (out, event) = f(&mut m)?;
        let event = event.map(|e| with_state(e, &m));
        let stored = self.store.put_migration(&mut m, event)?;
        self.publish(stored);
        Ok((m, out))
    }

    /// `update` for a change that returns only its event.
    pub fn apply(
        &self,
        id: &str,
        f: impl FnOnce(&mut pb::Migration) -> Result<Option<pb::MigrationEvent>>,
    ) -> Result<pb::Migration> {
        self.update(id, |m| Ok(((), f(m)?))).map(|(m, ())| m)
    }

    /// A running step's progress: told to watchers and shown in records
    /// read, written nowhere (its step's end journals the last one).
    pub fn progress(&self, at: At, e: pb::MigrationEvent) {
        if let Some(p) = &e.progress {
            lock(&self.live).insert((e.migration_id.clone(), at), p.clone());
        }
        let _ = self.events.send(e);
    }

    /// The step ended: its progress is in its record now.
    pub fn progress_ended(&self, id: &str, at: At) {
        lock(&self.live).remove(&(id.to_string(), at));
    }

    pub fn put_inventory(&self, id: &str, inventory: &pb::Inventory) -> Result<()> {
        self.store.put_inventory(id, inventory)
    }

    pub fn inventory(&self, id: &str) -> Result<Option<pb::Inventory>> {
        self.store.inventory(id)
    }

    fn publish(&self, e: Option<pb::MigrationEvent>) {
        if let Some(e) = e {
            let _ = self.events.send(e);
        }
    }
}

/// An event carries the state its change left the migration in.
fn with_state(mut e: pb::MigrationEvent, m: &pb::Migration) -> pb::MigrationEvent {
    e.state = m.state;
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: u64) -> pb::StepProgress {
        pb::StepProgress {
            items_done: done,
            items_total: 3,
            message: format!("{done} of 3 sets relayed"),
            ..Default::default()
        }
    }

    /// What the driver does with a step's progress: told to watchers and
    /// shown to readers as it comes, journaled once, with the step's end.
    #[test]
    fn progress_reaches_watchers_and_is_journaled_only_at_the_steps_end() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let journal = Journal::new(store.clone());
        let mut step = pb::Step {
            name: "transfer".into(),
            ..Default::default()
        };
        step.set_state(pb::StepState::Running);
        let m = pb::Migration {
            migration_id: "m1".into(),
            steps: vec![step],
            ..Default::default()
        };
        journal.create(m, pb::MigrationEvent::default())?;
        let journaled = store.migration("m1")?;
        let at = At {
            rollback: false,
            index: 0,
        };
        let mut watcher = journal.subscribe();
        for done in 1..=3 {
            journal.progress(
                at,
                pb::MigrationEvent {
                    migration_id: "m1".into(),
                    kind: pb::EventKind::StepProgress.into(),
                    progress: Some(progress(done)),
                    ..Default::default()
                },
            );
        }
        for done in 1..=3 {
            let e = watcher.try_recv()?;
            assert_eq!(e.progress.map(|p| p.items_done), Some(done));
        }
        // Readers see the latest; the store holds the record as it was.
        let read = journal.get("m1")?;
        assert_eq!(read.steps[0].progress, Some(progress(3)));
        assert_eq!(store.migration("m1")?, journaled);
        assert!(store.migration_events("m1", 1)?.is_empty());

        // The step's end journals its last progress, once.
        journal.apply("m1", |m| {
            Ok(super::super::lifecycle::step_succeeded(
                m,
                at,
                "3 sets relayed",
                Some(progress(3)),
                1,
            ))
        })?;
        journal.progress_ended("m1", at);
        let stored = store.migration("m1")?;
        let stored_step = stored.as_ref().map(|m| &m.steps[0]);
        assert_eq!(
            stored_step.and_then(|s| s.progress.clone()),
            Some(progress(3))
        );
        assert_eq!(
            stored_step.map(|s| s.state()),
            Some(pb::StepState::Succeeded)
        );
        Ok(())
    }
}
