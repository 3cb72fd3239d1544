//! Durable state in an embedded database (redb) under the data directory.
//! Records are the contract's own messages, prost-encoded, so what is stored
//! is exactly what the API returns.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_common::pb;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{Error, Result};

/// command id → `CommandStatus`
const COMMANDS: TableDefinition<&str, &[u8]> = TableDefinition::new("commands");
/// command id → cluster id, for commands not finished yet
const OPEN_COMMANDS: TableDefinition<&str, &str> = TableDefinition::new("open_commands");
/// `<client>/<request id>` → command id
const REQUESTS: TableDefinition<&str, &str> = TableDefinition::new("command_requests");
/// cluster id → last known `AgentInfo`
const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
/// transfer id → `TransferStatus`
const TRANSFERS: TableDefinition<&str, &[u8]> = TableDefinition::new("transfers");
/// load id → `LoadStatus`
const LOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("loads");
/// migration id → `Migration`
const MIGRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("migrations");
/// `<migration id>/<seq, 20 digits>` → `MigrationEvent` (append-only)
const MIGRATION_EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("migration_events");
/// migration id → the source's `Inventory`, taken at backup
const INVENTORIES: TableDefinition<&str, &[u8]> = TableDefinition::new("migration_inventories");
/// seq → `AuditEntry` (append-only)
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("coordinator.redb");
        std::fs::create_dir_all(data_dir).map_err(|e| Error::Store {
            path: path.clone(),
            message: format!("cannot create data directory: {e}"),
        })?;
        let db = Database::create(&path).map_err(|e| Error::Store {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let store = Self {
            db: Arc::new(db),
            path,
        };
        store.write(|tx| {
            tx.open_table(COMMANDS)?;
            tx.open_table(OPEN_COMMANDS)?;
            tx.open_table(REQUESTS)?;
            tx.open_table(AGENTS)?;
            tx.open_table(TRANSFERS)?;
            tx.open_table(LOADS)?;
            tx.open_table(MIGRATIONS)?;
            tx.open_table(MIGRATION_EVENTS)?;
            tx.open_table(INVENTORIES)?;
            tx.open_table(AUDIT)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Store {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let out = f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        f(&tx).map_err(|e| self.err(e))
    }

    /// Stores a new command, remembering the client's request id if it gave one.
    pub fn insert_command(
        &self,
        status: &pb::CommandStatus,
        request_key: Option<&str>,
    ) -> Result<()> {
        let bytes = status.encode_to_vec();
        self.write(|tx| {
            tx.open_table(COMMANDS)?
                .insert(status.command_id.as_str(), bytes.as_slice())?;
            tx.open_table(OPEN_COMMANDS)?
                .insert(status.command_id.as_str(), status.cluster_id.as_str())?;
            if let Some(key) = request_key {
                tx.open_table(REQUESTS)?
                    .insert(key, status.command_id.as_str())?;
            }
            Ok(())
        })
    }

    pub fn command_for_request(&self, request_key: &str) -> Result<Option<pb::CommandStatus>> {
        let id = self.read(|tx| {
            Ok(tx
                .open_table(REQUESTS)?
                .get(request_key)?
                .map(|v| v.value().to_string()))
        })?;
        match id {
            Some(id) => self.command(&id),
            None => Ok(None),
        }
    }

    pub fn command(&self, id: &str) -> Result<Option<pb::CommandStatus>> {
        self.get_record(COMMANDS, id)
    }

    /// Replaces a command's record; finished commands leave the open set.
    pub fn update_command(&self, status: &pb::CommandStatus) -> Result<()> {
        let bytes = status.encode_to_vec();
        let finished = is_finished(status);
        self.write(|tx| {
            tx.open_table(COMMANDS)?
                .insert(status.command_id.as_str(), bytes.as_slice())?;
            let mut open = tx.open_table(OPEN_COMMANDS)?;
            if finished {
                open.remove(status.command_id.as_str())?;
            }
            Ok(())
        })
    }

    /// Commands of a cluster that have not finished, oldest first.
    pub fn open_commands(&self, cluster: &str) -> Result<Vec<pb::CommandStatus>> {
        let ids = self.read(|tx| {
            let open = tx.open_table(OPEN_COMMANDS)?;
            let mut ids = vec![];
            for entry in open.iter()? {
                let (id, c) = entry?;
                if c.value() == cluster {
                    ids.push(id.value().to_string());
                }
            }
            Ok(ids)
        })?;
        let mut out = vec![];
        for id in ids {
            if let Some(c) = self.command(&id)? {
                out.push(c);
            }
        }
        out.sort_by_key(|c| c.submitted_at_unix_ms);
        Ok(out)
    }

    pub fn put_agent(&self, info: &pb::AgentInfo) -> Result<()> {
        self.put_record(AGENTS, &info.cluster_id, info)
    }

    pub fn agents(&self) -> Result<Vec<pb::AgentInfo>> {
        self.all_records(AGENTS)
    }

    pub fn delete_agent(&self, cluster: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.open_table(AGENTS)?.remove(cluster)?.is_some()))
    }
}

impl Store {
    pub fn put_transfer(&self, t: &pb::TransferStatus) -> Result<()> {
        self.put_record(TRANSFERS, &t.transfer_id, t)
    }

    pub fn transfer(&self, id: &str) -> Result<Option<pb::TransferStatus>> {
        self.get_record(TRANSFERS, id)
    }

    pub fn transfers(&self) -> Result<Vec<pb::TransferStatus>> {
        self.all_records(TRANSFERS)
    }

    pub fn put_load(&self, l: &pb::LoadStatus) -> Result<()> {
        self.put_record(LOADS, &l.load_id, l)
    }

    pub fn load(&self, id: &str) -> Result<Option<pb::LoadStatus>> {
        self.get_record(LOADS, id)
    }

    pub fn loads(&self) -> Result<Vec<pb::LoadStatus>> {
        self.all_records(LOADS)
    }
}

/// Migrations: the record and its event log change together, in one
/// transaction, so the log never disagrees with the record.
impl Store {
    /// Stores `migration` and, when given, appends `event` with the next
    /// sequence number (written into both). Returns the event as stored.
    pub fn put_migration(
        &self,
        migration: &mut pb::Migration,
        event: Option<pb::MigrationEvent>,
    ) -> Result<Option<pb::MigrationEvent>> {
        let event = event.map(|mut e| {
            migration.last_seq += 1;
            e.seq = migration.last_seq;
            e.migration_id = migration.migration_id.clone();
            e
        });
        let record = migration.encode_to_vec();
        let id = migration.migration_id.clone();
        let logged = event
            .as_ref()
            .map(|e| (event_key(&id, e.seq), e.encode_to_vec()));
        self.write(|tx| {
            tx.open_table(MIGRATIONS)?
                .insert(id.as_str(), record.as_slice())?;
            if let Some((key, bytes)) = &logged {
                tx.open_table(MIGRATION_EVENTS)?
                    .insert(key.as_str(), bytes.as_slice())?;
            }
            Ok(())
        })?;
        Ok(event)
    }

    pub fn migration(&self, id: &str) -> Result<Option<pb::Migration>> {
        self.get_record(MIGRATIONS, id)
    }

    pub fn migrations(&self) -> Result<Vec<pb::Migration>> {
        self.all_records(MIGRATIONS)
    }

    /// The events of a migration with `seq > after`, in order.
    pub fn migration_events(&self, id: &str, after: u64) -> Result<Vec<pb::MigrationEvent>> {
        let (from, to) = (event_key(id, after + 1), event_key(id, u64::MAX));
        let rows = self.read(|tx| {
            let t = tx.open_table(MIGRATION_EVENTS)?;
            let mut rows = vec![];
            for entry in t.range(from.as_str()..=to.as_str())? {
                let (k, v) = entry?;
                rows.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(rows)
        })?;
        rows.iter().map(|(k, v)| decode(k, v)).collect()
    }

    pub fn put_inventory(&self, id: &str, inventory: &pb::Inventory) -> Result<()> {
        self.put_record(INVENTORIES, id, inventory)
    }

    pub fn inventory(&self, id: &str) -> Result<Option<pb::Inventory>> {
        self.get_record(INVENTORIES, id)
    }

    /// Appends to the audit log; the entry's `seq` and time are set here.
    pub fn audit(&self, mut entry: pb::AuditEntry) -> Result<pb::AuditEntry> {
        entry.at_unix_ms = ferry_common::time::unix_ms();
        self.write(|tx| {
            let mut t = tx.open_table(AUDIT)?;
            let last = t.last()?.map(|(k, _)| k.value()).unwrap_or(0);
            entry.seq = last + 1;
            t.insert(entry.seq, entry.encode_to_vec().as_slice())?;
            Ok(())
        })?;
        Ok(entry)
    }

    /// The audit log, oldest first; only one migration's when `migration` is set.
    pub fn audit_log(&self, migration: Option<&str>) -> Result<Vec<pb::AuditEntry>> {
        let rows = self.read(|tx| {
            let t = tx.open_table(AUDIT)?;
            let mut rows = vec![];
            for entry in t.iter()? {
                let (k, v) = entry?;
                rows.push((k.value(), v.value().to_vec()));
            }
            Ok(rows)
        })?;
        let mut out = vec![];
        for (seq, bytes) in rows {
            let e: pb::AuditEntry = decode(&format!("audit/{seq}"), &bytes)?;
            if migration.is_none_or(|m| e.migration_id == m) {
                out.push(e);
            }
        }
        Ok(out)
    }
}

fn event_key(migration: &str, seq: u64) -> String {
    format!("{migration}/{seq:020}")
}

/// A table of prost-encoded records keyed by id.
type Records = TableDefinition<'static, &'static str, &'static [u8]>;

impl Store {
    fn put_record<M: Message>(&self, table: Records, key: &str, record: &M) -> Result<()> {
        let bytes = record.encode_to_vec();
        self.write(|tx| {
            tx.open_table(table)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
    }

    fn get_record<M: Message + Default>(&self, table: Records, key: &str) -> Result<Option<M>> {
        let bytes =
            self.read(|tx| Ok(tx.open_table(table)?.get(key)?.map(|v| v.value().to_vec())))?;
        bytes.map(|b| decode(key, &b)).transpose()
    }

    fn all_records<M: Message + Default>(&self, table: Records) -> Result<Vec<M>> {
        let rows = self.read(|tx| {
            let t = tx.open_table(table)?;
            let mut rows = vec![];
            for entry in t.iter()? {
                let (k, v) = entry?;
                rows.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(rows)
        })?;
        rows.iter().map(|(k, v)| decode(k, v)).collect()
    }
}

pub fn is_finished(status: &pb::CommandStatus) -> bool {
    matches!(
        pb::CommandState::try_from(status.state),
        Ok(pb::CommandState::Succeeded | pb::CommandState::Failed)
    )
}

fn decode<M: Message + Default>(key: &str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(id: &str, cluster: &str, at: u64) -> pb::CommandStatus {
        pb::CommandStatus {
            command_id: id.into(),
            cluster_id: cluster.into(),
            state: pb::CommandState::Pending as i32,
            submitted_at_unix_ms: at,
            ..Default::default()
        }
    }

    #[test]
    fn commands_survive_reopen_and_leave_the_open_set_when_finished() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let store = Store::open(dir.path())?;
            store.insert_command(&command("c2", "a", 2), Some("admin/r1"))?;
            store.insert_command(&command("c1", "a", 1), None)?;
            store.insert_command(&command("c3", "b", 3), None)?;
        }
        let store = Store::open(dir.path())?;
        let open: Vec<_> = store
            .open_commands("a")?
            .into_iter()
            .map(|c| c.command_id)
            .collect();
        assert_eq!(open, ["c1", "c2"]);
        assert_eq!(
            store.command_for_request("admin/r1")?.map(|c| c.command_id),
            Some("c2".into())
        );
        let mut done = command("c1", "a", 1);
        done.state = pb::CommandState::Succeeded as i32;
        store.update_command(&done)?;
        let open: Vec<_> = store
            .open_commands("a")?
            .into_iter()
            .map(|c| c.command_id)
            .collect();
        assert_eq!(open, ["c2"]);
        assert_eq!(
            store.command("c1")?.map(|c| c.state),
            Some(pb::CommandState::Succeeded as i32)
        );
        Ok(())
    }

    #[test]
    fn migration_events_and_audit_append_in_order_and_survive_reopen() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let store = Store::open(dir.path())?;
            let mut m = pb::Migration {
                migration_id: "m1".into(),
                ..Default::default()
            };
            for message in ["created", "quiesce started", "quiesce finished"] {
                let e = pb::MigrationEvent {
                    message: message.into(),
                    ..Default::default()
                };
                store.put_migration(&mut m, Some(e))?;
            }
            // A record written without an event takes no sequence number.
            store.put_migration(&mut m, None)?;
            // Another migration's log is its own.
            let mut other = pb::Migration {
                migration_id: "m10".into(),
                ..Default::default()
            };
            store.put_migration(&mut other, Some(pb::MigrationEvent::default()))?;
            for action in ["start", "step-started"] {
                store.audit(pb::AuditEntry {
                    action: action.into(),
                    migration_id: "m1".into(),
                    ..Default::default()
                })?;
            }
            store.audit(pb::AuditEntry {
                action: "list".into(),
                ..Default::default()
            })?;
        }
        let store = Store::open(dir.path())?;
        assert_eq!(store.migration("m1")?.map(|m| m.last_seq), Some(3));
        let after_one: Vec<(u64, String)> = store
            .migration_events("m1", 1)?
            .into_iter()
            .map(|e| (e.seq, e.message))
            .collect();
        assert_eq!(
            after_one,
            [
                (2, "quiesce started".to_string()),
                (3, "quiesce finished".to_string())
            ]
        );
        assert_eq!(store.migration_events("m10", 0)?.len(), 1);
        let audit = store.audit_log(Some("m1"))?;
        assert_eq!(
            audit
                .iter()
                .map(|e| (e.seq, e.action.as_str()))
                .collect::<Vec<_>>(),
            [(1, "start"), (2, "step-started")]
        );
        assert!(audit.iter().all(|e| e.at_unix_ms > 0));
        assert_eq!(store.audit_log(None)?.len(), 3);
        Ok(())
    }
}
