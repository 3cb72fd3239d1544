//! The ledger of completed loads: `ferry.load_ledger`, one row per load id,
//! written in the load's own transaction so a load is recorded if and only
//! if its rows are.

use tokio_postgres::{Client, GenericClient};

use super::error::{LoadError, Result};
use super::{FileOutcome, LoadOutcome, LoadStatus};

pub const LEDGER_SCHEMA: &str = "ferry";
pub const LEDGER_TABLE: &str = "ferry.load_ledger";

/// Create the ledger if missing. Runs outside the load's transaction so
/// concurrent first loads do not trip over each other's DDL.
pub async fn ensure(client: &Client) -> Result<()> {
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {LEDGER_SCHEMA};
         CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
             load_id   text PRIMARY KEY,
             loaded_at timestamptz NOT NULL DEFAULT now(),
             rows      bigint NOT NULL DEFAULT 0,
             bytes     bigint NOT NULL DEFAULT 0,
             files     jsonb NOT NULL DEFAULT '[]',
             digest    text
         );
         ALTER TABLE {LEDGER_TABLE} ADD COLUMN IF NOT EXISTS digest text;"
    );
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(()),
        // Another load created it at the same moment: it exists now.
        Err(e)
            if e.code()
                .is_some_and(|c| c.code() == "23505" || c.code() == "42P07") =>
        {
            Ok(())
        }
        Err(e) => Err(LoadError::db(format!(
            "creating the load ledger {LEDGER_TABLE} (the role needs CREATE on the database)"
        ))(e)),
    }
}

/// Take the load id in the current transaction. `Ok(None)`: the id is ours
/// (a concurrent load with the same id waits here until we finish);
/// `Ok(Some(..))`: it was loaded before.
pub async fn claim<C: GenericClient>(client: &C, load_id: &str) -> Result<Option<LoadOutcome>> {
    let n = client
        .execute(
            &format!(
                "INSERT INTO {LEDGER_TABLE} (load_id) VALUES ($1) ON CONFLICT (load_id) DO NOTHING"
            ),
            &[&load_id],
        )
        .await
        .map_err(LoadError::db(format!(
            "recording load {load_id} in {LEDGER_TABLE}"
        )))?;
    if n == 1 {
        return Ok(None);
    }
    lookup(client, load_id).await
}

/// A completed load's record, if any (no error when the ledger is missing).
pub async fn lookup<C: GenericClient>(client: &C, load_id: &str) -> Result<Option<LoadOutcome>> {
    let ctx = || format!("reading load {load_id} from {LEDGER_TABLE}");
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&LEDGER_TABLE])
        .await
        .map_err(LoadError::db(ctx()))?;
    if !exists.try_get::<_, bool>(0).map_err(LoadError::db(ctx()))? {
        return Ok(None);
    }
    let Some(row) = client
        .query_opt(
            &format!(
                "SELECT rows, bytes, files::text, loaded_at::text, to_jsonb(l) ->> 'digest' \
                 FROM {LEDGER_TABLE} l WHERE load_id = $1"
            ),
            &[&load_id],
        )
        .await
        .map_err(LoadError::db(ctx()))?
    else {
        return Ok(None);
    };
    let rows: i64 = row.try_get(0).map_err(LoadError::db(ctx()))?;
    let bytes: i64 = row.try_get(1).map_err(LoadError::db(ctx()))?;
    let files: String = row.try_get(2).map_err(LoadError::db(ctx()))?;
    let loaded_at: String = row.try_get(3).map_err(LoadError::db(ctx()))?;
    // Read through jsonb: a ledger created before digests were kept has no
    // such column until the next load adds it, and still answers.
    let digest: Option<String> = row.try_get(4).map_err(LoadError::db(ctx()))?;
    // A hand-edited ledger row should not make the load fail: counts stay.
    let files: Vec<FileOutcome> = serde_json::from_str(&files).unwrap_or_default();
    Ok(Some(LoadOutcome {
        load_id: load_id.to_owned(),
        status: LoadStatus::AlreadyLoaded {
            loaded_at: loaded_at.clone(),
        },
        files,
        rows: rows.max(0) as u64,
        bytes: bytes.max(0) as u64,
        digest,
        loaded_at: Some(loaded_at),
    }))
}

/// Record the counts of the load being committed; returns when it is
/// recorded as loaded.
pub async fn complete<C: GenericClient>(client: &C, outcome: &LoadOutcome) -> Result<String> {
    let files = serde_json::to_string(&outcome.files).unwrap_or_else(|_| "[]".to_owned());
    let row = client
        .query_one(
            &format!(
                "UPDATE {LEDGER_TABLE} SET rows = $2, bytes = $3, files = $4::text::jsonb, digest = $5, \
                 loaded_at = now() WHERE load_id = $1 RETURNING loaded_at::text"
            ),
            &[
                &outcome.load_id,
                &(outcome.rows as i64),
                &(outcome.bytes as i64),
                &files,
                &outcome.digest,
            ],
        )
        .await
        .map_err(LoadError::db(format!("recording load {} in {LEDGER_TABLE}", outcome.load_id)))?;
    row.try_get(0).map_err(LoadError::db(format!(
        "recording load {} in {LEDGER_TABLE}",
        outcome.load_id
    )))
}

/// A recorded load answers a repeat of its id only when the content is the
/// same: `ours` is this load's digest (`None`: unknown). A record without a
/// digest (written before they were kept) is taken as the same load.
pub fn check_same(recorded: &LoadOutcome, ours: Option<&str>) -> Result<()> {
    match (recorded.digest.as_deref(), ours) {
        (Some(theirs), Some(ours)) if theirs != ours => Err(LoadError::Conflict {
            load_id: recorded.load_id.clone(),
            loaded_at: match &recorded.status {
                LoadStatus::AlreadyLoaded { loaded_at } => loaded_at.clone(),
                _ => String::new(),
            },
            files: recorded.files.clone(),
        }),
        _ => Ok(()),
    }
}
