//! The store's records on PostgreSQL: the same operations as the redb
//! backend, each one transaction, rows holding the prost-encoded messages.
use ferry_common::pb;
use prost::Message;

use super::pg::{PgStore, Row, Stmt, Value};
use super::{decode, is_finished};
use crate::{Error, Result};

/// A table of prost-encoded records keyed by id, and its statements.
struct Records {
    name: &'static str,
    put: &'static str,
    get: &'static str,
    all: &'static str,
}

macro_rules! records {
    ($table:literal) => {
        Records {
            name: $table,
            put: concat!(
                "INSERT INTO ",
                $table,
                " (id, record, written_by) VALUES ($2, $3, $1) ON CONFLICT (id) DO UPDATE \
                 SET record = excluded.record, written_by = excluded.written_by, written_at = now()"
            ),
            get: concat!("SELECT record FROM ", $table, " WHERE id = $1"),
            all: concat!("SELECT id, record FROM ", $table, " ORDER BY id"),
        }
    };
}

const COMMANDS: Records = records!("ferry_commands");
const AGENTS: Records = records!("ferry_agents");
const TRANSFERS: Records = records!("ferry_transfers");
const LOADS: Records = records!("ferry_loads");
const MIGRATIONS: Records = records!("ferry_migrations");
const INVENTORIES: Records = records!("ferry_inventories");

impl PgStore {
    fn corrupt(&self, what: &str) -> Error {
        Error::Database {
            target: self.target().to_string(),
            message: format!("unexpected row shape in {what}"),
        }
    }

    fn put_record<M: Message>(&self, t: &Records, key: &str, record: &M) -> Result<()> {
        self.write(vec![Stmt::stamped(
            t.put,
            vec![Value::text(key), Value::Bytes(record.encode_to_vec())],
        )])
        .map(|_| ())
    }

    /// [`Self::put_record`] whose commit does not wait for the WAL flush
    /// (durable with the next write that does, or the WAL writer's next
    /// flush, a fraction of a second later).
    fn note_record<M: Message>(&self, t: &Records, key: &str, record: &M) -> Result<()> {
        self.write(vec![
            Stmt::new("SET LOCAL synchronous_commit TO off", vec![]),
            Stmt::stamped(
                t.put,
                vec![Value::text(key), Value::Bytes(record.encode_to_vec())],
            ),
        ])
        .map(|_| ())
    }

    fn get_record<M: Message + Default>(&self, t: &Records, key: &str) -> Result<Option<M>> {
        let rows = self.query(t.get, vec![Value::text(key)])?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(row) => {
                let bytes = first_bytes(row).ok_or_else(|| self.corrupt(t.name))?;
                decode(key, &bytes).map(Some)
            }
        }
    }

    fn all_records<M: Message + Default>(&self, t: &Records) -> Result<Vec<M>> {
        self.query(t.all, vec![])?
            .into_iter()
            .map(|row| {
                let (key, bytes) = key_bytes(row).ok_or_else(|| self.corrupt(t.name))?;
                decode(&key, &bytes)
            })
            .collect()
    }

    pub(super) fn insert_command(
        &self,
        status: &pb::CommandStatus,
        request_key: Option<&str>,
    ) -> Result<()> {
        let id = Value::text(&status.command_id);
        let mut stmts = vec![
            Stmt::stamped(
                COMMANDS.put,
                vec![id.clone(), Value::Bytes(status.encode_to_vec())],
            ),
            Stmt::stamped(
                "INSERT INTO ferry_open_commands (id, cluster, written_by) VALUES ($2, $3, $1) \
                 ON CONFLICT (id) DO UPDATE SET cluster = excluded.cluster, \
                 written_by = excluded.written_by, written_at = now()",
                vec![id.clone(), Value::text(&status.cluster_id)],
            ),
        ];
        if let Some(key) = request_key {
            stmts.push(Stmt::stamped(
                "INSERT INTO ferry_command_requests (key, command_id, written_by) \
                 VALUES ($2, $3, $1) ON CONFLICT (key) DO UPDATE SET \
                 command_id = excluded.command_id, written_by = excluded.written_by, \
                 written_at = now()",
                vec![Value::text(key), id],
            ));
        }
        self.write(stmts).map(|_| ())
    }

    pub(super) fn command_for_request(
        &self,
        request_key: &str,
    ) -> Result<Option<pb::CommandStatus>> {
        let rows = self.query(
            "SELECT c.id, c.record FROM ferry_command_requests r \
             JOIN ferry_commands c ON c.id = r.command_id WHERE r.key = $1",
            vec![Value::text(request_key)],
        )?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(row) => {
                let (key, bytes) =
                    key_bytes(row).ok_or_else(|| self.corrupt("ferry_command_requests"))?;
                decode(&key, &bytes).map(Some)
            }
        }
    }

    pub(super) fn command(&self, id: &str) -> Result<Option<pb::CommandStatus>> {
        self.get_record(&COMMANDS, id)
    }

    pub(super) fn update_command(&self, status: &pb::CommandStatus) -> Result<()> {
        let id = Value::text(&status.command_id);
        let mut stmts = vec![Stmt::stamped(
            COMMANDS.put,
            vec![id.clone(), Value::Bytes(status.encode_to_vec())],
        )];
        if is_finished(status) {
            stmts.push(Stmt::new(
                "DELETE FROM ferry_open_commands WHERE id = $1",
                vec![id],
            ));
        }
        self.write(stmts).map(|_| ())
    }

    /// An open command's record, its commit not waiting for the WAL flush.
    pub(super) fn note_command(&self, status: &pb::CommandStatus) -> Result<()> {
        self.note_record(&COMMANDS, &status.command_id, status)
    }

    pub(super) fn open_commands(&self, cluster: &str) -> Result<Vec<pb::CommandStatus>> {
        let mut out: Vec<pb::CommandStatus> = self
            .query(
                "SELECT c.id, c.record FROM ferry_open_commands o \
                 JOIN ferry_commands c ON c.id = o.id WHERE o.cluster = $1",
                vec![Value::text(cluster)],
            )?
            .into_iter()
            .map(|row| {
                let (key, bytes) =
                    key_bytes(row).ok_or_else(|| self.corrupt("ferry_open_commands"))?;
                decode(&key, &bytes)
            })
            .collect::<Result<_>>()?;
        out.sort_by_key(|c| c.submitted_at_unix_ms);
        Ok(out)
    }

    pub(super) fn put_agent(&self, info: &pb::AgentInfo) -> Result<()> {
        self.put_record(&AGENTS, &info.cluster_id, info)
    }

    /// An agent's record, its commit not waiting for the WAL flush.
    pub(super) fn note_agent(&self, info: &pb::AgentInfo) -> Result<()> {
        self.note_record(&AGENTS, &info.cluster_id, info)
    }

    pub(super) fn agents(&self) -> Result<Vec<pb::AgentInfo>> {
        self.all_records(&AGENTS)
    }

    pub(super) fn delete_agent(&self, cluster: &str) -> Result<bool> {
        let rows = self.write(vec![Stmt::new(
            "DELETE FROM ferry_agents WHERE id = $1 RETURNING id",
            vec![Value::text(cluster)],
        )])?;
        Ok(rows.first().is_some_and(|r| !r.is_empty()))
    }

    pub(super) fn put_transfer(&self, t: &pb::TransferStatus) -> Result<()> {
        self.put_record(&TRANSFERS, &t.transfer_id, t)
    }

    pub(super) fn transfer(&self, id: &str) -> Result<Option<pb::TransferStatus>> {
        self.get_record(&TRANSFERS, id)
    }

    pub(super) fn transfers(&self) -> Result<Vec<pb::TransferStatus>> {
        self.all_records(&TRANSFERS)
    }

    pub(super) fn put_load(&self, l: &pb::LoadStatus) -> Result<()> {
        self.put_record(&LOADS, &l.load_id, l)
    }

    pub(super) fn load(&self, id: &str) -> Result<Option<pb::LoadStatus>> {
        self.get_record(&LOADS, id)
    }

    pub(super) fn loads(&self) -> Result<Vec<pb::LoadStatus>> {
        self.all_records(&LOADS)
    }

    pub(super) fn put_migration(
        &self,
        migration: &pb::Migration,
        event: Option<&pb::MigrationEvent>,
    ) -> Result<()> {
        let id = Value::text(&migration.migration_id);
        let mut stmts = vec![Stmt::stamped(
            MIGRATIONS.put,
            vec![id.clone(), Value::Bytes(migration.encode_to_vec())],
        )];
        if let Some(e) = event {
            // As in redb, a sequence number written again replaces its event.
            stmts.push(Stmt::stamped(
                "INSERT INTO ferry_migration_events (migration_id, seq, record, written_by) \
                 VALUES ($2, $3, $4, $1) ON CONFLICT (migration_id, seq) DO UPDATE SET \
                 record = excluded.record, written_by = excluded.written_by, written_at = now()",
                vec![
                    id,
                    Value::Int(seq_i64(e.seq)?),
                    Value::Bytes(e.encode_to_vec()),
                ],
            ));
        }
        self.write(stmts).map(|_| ())
    }

    pub(super) fn migration(&self, id: &str) -> Result<Option<pb::Migration>> {
        self.get_record(&MIGRATIONS, id)
    }

    pub(super) fn migrations(&self) -> Result<Vec<pb::Migration>> {
        self.all_records(&MIGRATIONS)
    }

    pub(super) fn migration_events(&self, id: &str, after: u64) -> Result<Vec<pb::MigrationEvent>> {
        self.query(
            "SELECT seq, record FROM ferry_migration_events \
             WHERE migration_id = $1 AND seq > $2 ORDER BY seq",
            vec![Value::text(id), Value::Int(seq_i64(after)?)],
        )?
        .into_iter()
        .map(|row| {
            let (seq, bytes) =
                seq_bytes(row).ok_or_else(|| self.corrupt("ferry_migration_events"))?;
            decode(&format!("{id}/{seq}"), &bytes)
        })
        .collect()
    }

    pub(super) fn put_inventory(&self, id: &str, inventory: &pb::Inventory) -> Result<()> {
        self.put_record(&INVENTORIES, id, inventory)
    }

    pub(super) fn inventory(&self, id: &str) -> Result<Option<pb::Inventory>> {
        self.get_record(&INVENTORIES, id)
    }

    /// The database numbers the entry; the stored record has `seq` 0 and
    /// takes it from its row when read.
    pub(super) fn audit(&self, mut entry: pb::AuditEntry) -> Result<pb::AuditEntry> {
        entry.seq = 0;
        let rows = self.write(vec![Stmt::stamped(
            "INSERT INTO ferry_audit (record, written_by) VALUES ($2, $1) RETURNING seq",
            vec![Value::Bytes(entry.encode_to_vec())],
        )])?;
        let seq = rows
            .first()
            .and_then(|r| r.first())
            .and_then(|r| r.first())
            .and_then(Value::as_int)
            .ok_or_else(|| self.corrupt("ferry_audit"))?;
        entry.seq = seq as u64;
        Ok(entry)
    }

    pub(super) fn audit_log(&self) -> Result<Vec<pb::AuditEntry>> {
        self.query("SELECT seq, record FROM ferry_audit ORDER BY seq", vec![])?
            .into_iter()
            .map(|row| {
                let (seq, bytes) = seq_bytes(row).ok_or_else(|| self.corrupt("ferry_audit"))?;
                let mut e: pb::AuditEntry = decode(&format!("audit/{seq}"), &bytes)?;
                e.seq = seq as u64;
                Ok(e)
            })
            .collect()
    }
}

fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::Invalid(format!("sequence number {seq} is too large")))
}

fn first_bytes(row: Row) -> Option<Vec<u8>> {
    row.into_iter().next()?.into_bytes()
}

fn key_bytes(row: Row) -> Option<(String, Vec<u8>)> {
    let mut it = row.into_iter();
    Some((it.next()?.into_text()?, it.next()?.into_bytes()?))
}

fn seq_bytes(row: Row) -> Option<(i64, Vec<u8>)> {
    let mut it = row.into_iter();
    Some((it.next()?.as_int()?, it.next()?.into_bytes()?))
}
