//! The PostgreSQL schema, as an ordered list of migrations applied at start.
//!
//! `ferry_schema_version` holds the version the database is at. Replicas
//! starting at once serialise on a transaction-scoped advisory lock, and each
//! migration runs in that one transaction, so a database is never half
//! migrated. A database newer than this binary is refused: an older
//! coordinator must not write records it may not understand.
//!
//! Every table of records keeps `written_by` (the generation of the leader
//! that wrote the row, docs/ha.md) and `written_at` (the database's clock).
use tokio_postgres::Client;

use crate::{Error, Result};

/// Key of the advisory lock that serialises schema migrations ("ferry" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_6572_7279;

/// Migration `i` takes the schema from version `i` to `i + 1`; append only.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the records of the embedded store, one table each, and the lease.
    "
    CREATE TABLE ferry_commands (
        id text PRIMARY KEY, record bytea NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE ferry_open_commands (
        id text PRIMARY KEY, cluster text NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now());
    CREATE INDEX ferry_open_commands_cluster ON ferry_open_commands (cluster);
    CREATE TABLE ferry_command_requests (
        key text PRIMARY KEY, command_id text NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE ferry_agents (
        id text PRIMARY KEY, record bytea NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE ferry_transfers (
        id text PRIMARY KEY, record bytea NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE ferry_loads (
        id text PRIMARY KEY, record bytea NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE ferry_migrations (
        id text PRIMARY KEY, record bytea NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE ferry_migration_events (
        migration_id text NOT NULL, seq bigint NOT NULL, record bytea NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (migration_id, seq));
    CREATE TABLE ferry_inventories (
        id text PRIMARY KEY, record bytea NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE ferry_audit (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, record bytea NOT NULL,
        written_by bigint, written_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE ferry_leader (
        id int PRIMARY KEY CHECK (id = 1),
        generation bigint NOT NULL,
        holder text NOT NULL,
        acquired_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL);
    ",
];

/// The tables of records, for tests that look at every row.
pub const RECORD_TABLES: &[&str] = &[
    "ferry_commands",
    "ferry_open_commands",
    "ferry_command_requests",
    "ferry_agents",
    "ferry_transfers",
    "ferry_loads",
    "ferry_migrations",
    "ferry_migration_events",
    "ferry_inventories",
    "ferry_audit",
];

/// Brings the database to the latest version this binary knows.
pub(super) async fn migrate(client: &mut Client, target: &str) -> Result<()> {
    let err = |what: &str, e: tokio_postgres::Error| Error::Database {
        target: target.to_string(),
        message: match e.as_db_error() {
            Some(db) => format!("{what}: {}: {}", db.code().code(), db.message()),
            None => format!("{what}: {e}"),
        },
    };
    let tx = client
        .transaction()
        .await
        .map_err(|e| err("beginning the schema migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| err("locking the schema", e))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS ferry_schema_version (version bigint NOT NULL)")
        .await
        .map_err(|e| err("creating ferry_schema_version", e))?;
    let current: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM ferry_schema_version",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| err("reading the schema version", e))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(Error::SchemaTooNew {
            target: target.to_string(),
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| err(&format!("applying schema migration {}", i + 1), e))?;
        tracing::info!(
            database = target,
            version = i + 1,
            "schema migration applied"
        );
    }
    if current < known {
        tx.execute("DELETE FROM ferry_schema_version", &[])
            .await
            .map_err(|e| err("recording the schema version", e))?;
        tx.execute(
            "INSERT INTO ferry_schema_version (version) VALUES ($1)",
            &[&known],
        )
        .await
        .map_err(|e| err("recording the schema version", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| err("committing the schema migration", e))
}
