//! The Platform's data model, detected per target table, and the pieces of
//! it a load writes besides the rows: system columns, history rows, source
//! ids.
//!
//! A table `<t>` is a Platform registry table when its schema also holds
//! `<t>_hst`. Then, as the Platform's own initial load writes them, every
//! row gets `ddm_created_at/by` and `ddm_updated_at/by` (now, `admin`) and
//! one history row in `<t>_hst` with `ddm_dml_op = 'I'`, the business
//! columns, the id, `ddm_created_at/by` and the ids of the source system,
//! application (`Initial load`) and business process (`Initial load
//! process`) from `ddm_source_system`, `ddm_source_application` and
//! `ddm_source_business_process`, whose rows are created on first use with
//! their names lower-cased. Otherwise the table is plain and gets only the
//! mapped columns.

use tokio_postgres::GenericClient;

use super::error::{LoadError, Result};
use super::schema::quote_ident;

pub const LOAD_USER: &str = "admin";
pub const LOAD_SYSTEM: &str = "Initial load";
pub const LOAD_APPLICATION: &str = "Initial load";
pub const LOAD_PROCESS: &str = "Initial load process";

/// The role user expressions are evaluated under: it can read the staged
/// rows and write the expressions' results, nothing else.
pub const EVAL_ROLE: &str = "ferry_load_eval";

/// Which data model a target table follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    Plain,
    Platform {
        /// `schema."<t>_hst"`.
        history: String,
        /// Columns of the history table.
        history_columns: Vec<String>,
        /// The table's primary key column (a uuid on the Platform).
        id_column: String,
    },
}

impl Model {
    pub fn name(&self) -> &'static str {
        match self {
            Model::Plain => "plain",
            Model::Platform { .. } => "platform",
        }
    }
}

/// The source ids of the initial load, as text.
#[derive(Debug, Clone)]
pub struct SourceIds {
    pub system: String,
    pub application: String,
    pub process: String,
}

/// Detect the model of table `oid`.
pub async fn detect<C: GenericClient>(client: &C, oid: u32, table: &str) -> Result<Model> {
    let ctx = || format!("reading whether {table} has a history table");
    let row = client
        .query_opt(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(h.relname), h.oid,
                    (SELECT a.attname::text FROM pg_index x JOIN pg_attribute a
                       ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
                     WHERE x.indrelid = c.oid AND x.indisprimary AND x.indnatts = 1)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_class h ON h.relnamespace = n.oid AND h.relname = c.relname || '_hst' AND h.relkind IN ('r', 'p')
             WHERE c.oid = $1",
            &[&oid],
        )
        .await
        .map_err(LoadError::db(ctx()))?;
    let Some(row) = row else {
        return Ok(Model::Plain);
    };
    let history: String = row.try_get(0).map_err(LoadError::db(ctx()))?;
    let hoid: u32 = row.try_get(1).map_err(LoadError::db(ctx()))?;
    let id: Option<String> = row.try_get(2).map_err(LoadError::db(ctx()))?;
    let Some(id_column) = id else {
        return Err(LoadError::Spec(format!(
            "{table} has a history table {history} but no single-column primary key: \
             a Platform registry table has a uuid id"
        )));
    };
    let cols = client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&hoid],
        )
        .await
        .map_err(LoadError::db(ctx()))?;
    let mut history_columns = Vec::with_capacity(cols.len());
    for r in cols {
        history_columns.push(r.try_get(0).map_err(LoadError::db(ctx()))?);
    }
    Ok(Model::Platform {
        history,
        history_columns,
        id_column,
    })
}

/// The `ddm_source_*` ids of the initial load, created on first use (in
/// the load's transaction) as the Platform creates them.
pub async fn source_ids<C: GenericClient>(client: &C) -> Result<SourceIds> {
    let one = |table: &'static str,
               id: &'static str,
               name_col: &'static str,
               name: &'static str| async move {
        let ctx = || format!("resolving {name:?} in {table} (created on first use)");
        let found = client
            .query_opt(
                "SELECT to_regclass($1)::text",
                &[&format!("public.{table}")],
            )
            .await
            .map_err(LoadError::db(ctx()))?
            .and_then(|r| r.try_get::<_, Option<String>>(0).ok().flatten());
        let Some(qualified) = found else {
            return Err(LoadError::Spec(format!(
                "this is a Platform registry database (history tables) but public.{table} is missing; \
                 the Platform's initial load records its source there"
            )));
        };
        let sql = format!(
            "WITH found AS (SELECT {id}::text FROM {qualified} WHERE {name_col} = lower($1)),
                  made AS (INSERT INTO {qualified} ({id}, {name_col}, created_by)
                           SELECT gen_random_uuid(), lower($1), $2 WHERE NOT EXISTS (SELECT 1 FROM found)
                           RETURNING {id}::text)
             SELECT * FROM found UNION ALL SELECT * FROM made",
            id = quote_ident(id),
            name_col = quote_ident(name_col),
        );
        let row = client
            .query_one(sql.as_str(), &[&name, &LOAD_USER])
            .await
            .map_err(LoadError::db(ctx()))?;
        row.try_get::<_, String>(0).map_err(LoadError::db(ctx()))
    };
    Ok(SourceIds {
        system: one("ddm_source_system", "system_id", "system_name", LOAD_SYSTEM).await?,
        application: one(
            "ddm_source_application",
            "application_id",
            "application_name",
            LOAD_APPLICATION,
        )
        .await?,
        process: one(
            "ddm_source_business_process",
            "business_process_id",
            "business_process_name",
            LOAD_PROCESS,
        )
        .await?,
    })
}

/// Make the expression role exist and be usable by the agent's role, if
/// the agent's role may. Outside the load's transaction (roles are
/// cluster-wide). `false`: expressions run as the agent's role, guarded by
/// the allow-list only.
pub async fn ensure_eval_role(client: &tokio_postgres::Client) -> bool {
    let _ = client
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{EVAL_ROLE}') THEN
                 CREATE ROLE {EVAL_ROLE} NOLOGIN NOINHERIT;
               END IF;
             END $$"
        ))
        .await;
    let _ = client
        .batch_execute(&format!("GRANT {EVAL_ROLE} TO CURRENT_USER"))
        .await;
    match client
        .query_one(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text) \
             THEN pg_has_role(current_user, $1::text, 'MEMBER') ELSE false END",
            &[&EVAL_ROLE],
        )
        .await
    {
        Ok(r) => r.try_get(0).unwrap_or(false),
        Err(_) => false,
    }
}
