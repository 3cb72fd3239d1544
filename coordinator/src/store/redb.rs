//! The embedded backend: redb under the data directory, one file. Its
//! tables and their types are unchanged since the first release, so an
//! existing data directory opens as it was.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_common::pb;
use prost::Message;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{decode, event_key, is_finished};
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
pub(super) struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl RedbStore {
    pub(super) fn open(data_dir: &Path) -> Result<Self> {
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
        self.write_with(Durability::Immediate, f)
    }

    fn write_with<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(durability).map_err(|e| self.err(e))?;
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
    pub(super) fn insert_command(
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

    pub(super) fn command_for_request(
        &self,
        request_key: &str,
    ) -> Result<Option<pb::CommandStatus>> {
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

    pub(super) fn command(&self, id: &str) -> Result<Option<pb::CommandStatus>> {
        self.get_record(COMMANDS, id)
    }

    /// Replaces a command's record; finished commands leave the open set.
    pub(super) fn update_command(&self, status: &pb::CommandStatus) -> Result<()> {
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

    /// An open command's record, committed without waiting for the disk
    /// (durable with the next durable commit).
    pub(super) fn note_command(&self, status: &pb::CommandStatus) -> Result<()> {
        self.put_record_with(Durability::None, COMMANDS, &status.command_id, status)
    }

    /// Commands of a cluster that have not finished, oldest first.
    pub(super) fn open_commands(&self, cluster: &str) -> Result<Vec<pb::CommandStatus>> {
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

    pub(super) fn put_agent(&self, info: &pb::AgentInfo) -> Result<()> {
        self.put_record(AGENTS, &info.cluster_id, info)
    }

    /// An agent's record, committed without waiting for the disk.
    pub(super) fn note_agent(&self, info: &pb::AgentInfo) -> Result<()> {
        self.put_record_with(Durability::None, AGENTS, &info.cluster_id, info)
    }

    pub(super) fn agents(&self) -> Result<Vec<pb::AgentInfo>> {
        self.all_records(AGENTS)
    }

    pub(super) fn delete_agent(&self, cluster: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.open_table(AGENTS)?.remove(cluster)?.is_some()))
    }
}

impl RedbStore {
    pub(super) fn put_transfer(&self, t: &pb::TransferStatus) -> Result<()> {
        self.put_record(TRANSFERS, &t.transfer_id, t)
    }

    pub(super) fn transfer(&self, id: &str) -> Result<Option<pb::TransferStatus>> {
        self.get_record(TRANSFERS, id)
    }

    pub(super) fn transfers(&self) -> Result<Vec<pb::TransferStatus>> {
        self.all_records(TRANSFERS)
    }

    pub(super) fn put_load(&self, l: &pb::LoadStatus) -> Result<()> {
        self.put_record(LOADS, &l.load_id, l)
    }

    pub(super) fn load(&self, id: &str) -> Result<Option<pb::LoadStatus>> {
        self.get_record(LOADS, id)
    }

    pub(super) fn loads(&self) -> Result<Vec<pb::LoadStatus>> {
        self.all_records(LOADS)
    }
}

impl RedbStore {
    /// Stores the migration's record and, when given, its next event, in
    /// one transaction, so the log never disagrees with the record.
    pub(super) fn put_migration(
        &self,
        migration: &pb::Migration,
        event: Option<&pb::MigrationEvent>,
    ) -> Result<()> {
        let record = migration.encode_to_vec();
        let id = migration.migration_id.as_str();
        let logged = event.map(|e| (event_key(id, e.seq), e.encode_to_vec()));
        self.write(|tx| {
            tx.open_table(MIGRATIONS)?.insert(id, record.as_slice())?;
            if let Some((key, bytes)) = &logged {
                tx.open_table(MIGRATION_EVENTS)?
                    .insert(key.as_str(), bytes.as_slice())?;
            }
            Ok(())
        })
    }

    pub(super) fn migration(&self, id: &str) -> Result<Option<pb::Migration>> {
        self.get_record(MIGRATIONS, id)
    }

    pub(super) fn migrations(&self) -> Result<Vec<pb::Migration>> {
        self.all_records(MIGRATIONS)
    }

    /// The events of a migration with `seq > after`, in order.
    pub(super) fn migration_events(&self, id: &str, after: u64) -> Result<Vec<pb::MigrationEvent>> {
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

    pub(super) fn put_inventory(&self, id: &str, inventory: &pb::Inventory) -> Result<()> {
        self.put_record(INVENTORIES, id, inventory)
    }

    pub(super) fn inventory(&self, id: &str) -> Result<Option<pb::Inventory>> {
        self.get_record(INVENTORIES, id)
    }

    /// Appends to the audit log; the entry's `seq` is set here.
    pub(super) fn audit(&self, mut entry: pb::AuditEntry) -> Result<pb::AuditEntry> {
        self.write(|tx| {
            let mut t = tx.open_table(AUDIT)?;
            let last = t.last()?.map(|(k, _)| k.value()).unwrap_or(0);
            entry.seq = last + 1;
            t.insert(entry.seq, entry.encode_to_vec().as_slice())?;
            Ok(())
        })?;
        Ok(entry)
    }

    pub(super) fn audit_log(&self) -> Result<Vec<pb::AuditEntry>> {
        let rows = self.read(|tx| {
            let t = tx.open_table(AUDIT)?;
            let mut rows = vec![];
            for entry in t.iter()? {
                let (k, v) = entry?;
                rows.push((k.value(), v.value().to_vec()));
            }
            Ok(rows)
        })?;
        rows.iter()
            .map(|(seq, bytes)| decode(&format!("audit/{seq}"), bytes))
            .collect()
    }
}

/// A table of prost-encoded records keyed by id.
type Records = TableDefinition<'static, &'static str, &'static [u8]>;

impl RedbStore {
    fn put_record<M: Message>(&self, table: Records, key: &str, record: &M) -> Result<()> {
        self.put_record_with(Durability::Immediate, table, key, record)
    }

    fn put_record_with<M: Message>(
        &self,
        durability: Durability,
        table: Records,
        key: &str,
        record: &M,
    ) -> Result<()> {
        let bytes = record.encode_to_vec();
        self.write_with(durability, |tx| {
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
