//! Durable state: an embedded database (redb) under the data directory by
//! default, PostgreSQL when several coordinator replicas share it
//! (docs/ha.md). Records are the contract's own messages, prost-encoded, so
//! what is stored is exactly what the API returns. Both backends keep the
//! same records with the same semantics; the tests below run on each.
use std::path::Path;
use std::sync::Arc;

use ferry_common::pb;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

mod pg;
mod pg_records;
mod redb;
mod schema;
#[cfg(test)]
mod tests;

pub use pg::{connect, redacted};
pub use schema::RECORD_TABLES;

#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

enum Backend {
    Redb(redb::RedbStore),
    Postgres(pg::PgStore),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &*$self.backend {
            Backend::Redb($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// The embedded store, `coordinator.redb` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Ok(Self {
            backend: Arc::new(Backend::Redb(redb::RedbStore::open(data_dir)?)),
        })
    }

    /// The PostgreSQL store: connects and brings the schema up to date.
    /// Writes are not fenced until [`Store::fence`] is called.
    pub fn postgres(config: tokio_postgres::Config) -> Result<Self> {
        Ok(Self {
            backend: Arc::new(Backend::Postgres(pg::PgStore::open(config)?)),
        })
    }

    /// Every write from now on must hold the leader's lease at `generation`
    /// (checked in the write's own transaction); a refused write cancels
    /// [`Store::deposed`]. Only PostgreSQL has leadership.
    pub fn fence(&self, generation: i64) -> Result<()> {
        match &*self.backend {
            Backend::Redb(_) => Err(Error::Invalid(
                "the embedded store has one coordinator and no leadership to fence".into(),
            )),
            Backend::Postgres(pg) => pg.fence(generation),
        }
    }

    /// Cancelled when a write was refused because another replica leads;
    /// `None` for the embedded store, which has no leadership.
    pub fn deposed(&self) -> Option<CancellationToken> {
        match &*self.backend {
            Backend::Redb(_) => None,
            Backend::Postgres(pg) => Some(pg.deposed()),
        }
    }

    /// Stores a new command, remembering the client's request id if it gave one.
    pub fn insert_command(
        &self,
        status: &pb::CommandStatus,
        request_key: Option<&str>,
    ) -> Result<()> {
        each!(self, s => s.insert_command(status, request_key))
    }

    pub fn command_for_request(&self, request_key: &str) -> Result<Option<pb::CommandStatus>> {
        each!(self, s => s.command_for_request(request_key))
    }

    pub fn command(&self, id: &str) -> Result<Option<pb::CommandStatus>> {
        each!(self, s => s.command(id))
    }

    /// Replaces a command's record; finished commands leave the open set.
    pub fn update_command(&self, status: &pb::CommandStatus) -> Result<()> {
        each!(self, s => s.update_command(status))
    }

    /// Records an open command's bookkeeping (a delivery counted, the
    /// agent's acceptance) without waiting for the disk: the next durable
    /// write makes it durable too. A crash that loses it loses nothing that
    /// matters: an open command is delivered again, and an agent runs a
    /// command id once. A finished command is always written durably.
    pub fn note_command(&self, status: &pb::CommandStatus) -> Result<()> {
        if is_finished(status) {
            return self.update_command(status);
        }
        each!(self, s => s.note_command(status))
    }

    /// Commands of a cluster that have not finished, oldest first.
    pub fn open_commands(&self, cluster: &str) -> Result<Vec<pb::CommandStatus>> {
        each!(self, s => s.open_commands(cluster))
    }

    pub fn put_agent(&self, info: &pb::AgentInfo) -> Result<()> {
        each!(self, s => s.put_agent(info))
    }

    /// An agent's record without waiting for the disk (as
    /// [`Store::note_command`]): for what the agent tells again each time it
    /// registers — its session, its address, when it was seen.
    pub fn note_agent(&self, info: &pb::AgentInfo) -> Result<()> {
        each!(self, s => s.note_agent(info))
    }

    pub fn agents(&self) -> Result<Vec<pb::AgentInfo>> {
        each!(self, s => s.agents())
    }

    pub fn delete_agent(&self, cluster: &str) -> Result<bool> {
        each!(self, s => s.delete_agent(cluster))
    }

    pub fn put_transfer(&self, t: &pb::TransferStatus) -> Result<()> {
        each!(self, s => s.put_transfer(t))
    }

    pub fn transfer(&self, id: &str) -> Result<Option<pb::TransferStatus>> {
        each!(self, s => s.transfer(id))
    }

    pub fn transfers(&self) -> Result<Vec<pb::TransferStatus>> {
        each!(self, s => s.transfers())
    }

    pub fn put_load(&self, l: &pb::LoadStatus) -> Result<()> {
        each!(self, s => s.put_load(l))
    }

    pub fn load(&self, id: &str) -> Result<Option<pb::LoadStatus>> {
        each!(self, s => s.load(id))
    }

    pub fn loads(&self) -> Result<Vec<pb::LoadStatus>> {
        each!(self, s => s.loads())
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
        each!(self, s => s.put_migration(migration, event.as_ref()))?;
        Ok(event)
    }

    pub fn migration(&self, id: &str) -> Result<Option<pb::Migration>> {
        each!(self, s => s.migration(id))
    }

    pub fn migrations(&self) -> Result<Vec<pb::Migration>> {
        each!(self, s => s.migrations())
    }

    /// The events of a migration with `seq > after`, in order.
    pub fn migration_events(&self, id: &str, after: u64) -> Result<Vec<pb::MigrationEvent>> {
        each!(self, s => s.migration_events(id, after))
    }

    pub fn put_inventory(&self, id: &str, inventory: &pb::Inventory) -> Result<()> {
        each!(self, s => s.put_inventory(id, inventory))
    }

    pub fn inventory(&self, id: &str) -> Result<Option<pb::Inventory>> {
        each!(self, s => s.inventory(id))
    }

    /// Appends to the audit log; the entry's `seq` and time are set here.
    pub fn audit(&self, mut entry: pb::AuditEntry) -> Result<pb::AuditEntry> {
        entry.at_unix_ms = ferry_common::time::unix_ms();
        each!(self, s => s.audit(entry))
    }

    /// The audit log, oldest first; only one migration's when `migration` is set.
    pub fn audit_log(&self, migration: Option<&str>) -> Result<Vec<pb::AuditEntry>> {
        let all = each!(self, s => s.audit_log())?;
        Ok(all
            .into_iter()
            .filter(|e| migration.is_none_or(|m| e.migration_id == m))
            .collect())
    }
}

pub fn is_finished(status: &pb::CommandStatus) -> bool {
    matches!(
        pb::CommandState::try_from(status.state),
        Ok(pb::CommandState::Succeeded | pb::CommandState::Failed)
    )
}

fn event_key(migration: &str, seq: u64) -> String {
    format!("{migration}/{seq:020}")
}

fn decode<M: Message + Default>(key: &str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}
