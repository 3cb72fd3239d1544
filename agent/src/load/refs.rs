//! Reference resolution: business value in the file -> key in a lookup
//! table, through an in-memory map loaded once per file that needs it.
//!
//! The map is read inside the load's transaction after the earlier files
//! were copied, so it sees rows those files added. Keys are compared on
//! PostgreSQL's text form of the lookup column.

use std::collections::HashMap;

use futures::TryStreamExt;
use tokio_postgres::GenericClient;

use super::error::{LoadError, Result};
use super::header::RefSpec;
use super::schema::{Table, quote_ident};

/// lookup value -> referenced column's value (text form; `None` if NULL).
#[derive(Debug, Default)]
pub struct RefMap {
    map: HashMap<Box<[u8]>, Option<Box<[u8]>>>,
}

/// Why a reference map could not be built (reported against the header).
pub enum RefProblem {
    Db(LoadError),
    Invalid(String),
}

impl RefMap {
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.map.get(key).map(|v| v.as_deref())
    }

    /// Read `spec.table` (already resolved to `table`) into a map, refusing
    /// a lookup column that is not unique.
    pub async fn load<C: GenericClient>(
        client: &C,
        spec: &RefSpec,
        table: &Table,
    ) -> Result<RefMap, RefProblem> {
        for col in [&spec.lookup, &spec.target] {
            if table.column(col).is_none() {
                return Err(RefProblem::Invalid(format!(
                    "reference table {} has no column {col}",
                    table.sql_name
                )));
            }
        }
        let sql = format!(
            "SELECT {l}::text, {t}::text FROM {tab} WHERE {l} IS NOT NULL",
            l = quote_ident(&spec.lookup),
            t = quote_ident(&spec.target),
            tab = table.sql_name
        );
        let ctx = || {
            format!(
                "reading reference table {} ({})",
                table.sql_name, spec.lookup
            )
        };
        let rows = client
            .query_raw(sql.as_str(), std::iter::empty::<&str>())
            .await
            .map_err(|e| RefProblem::Db(LoadError::db(ctx())(e)))?;
        futures::pin_mut!(rows);
        let mut map = HashMap::new();
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|e| RefProblem::Db(LoadError::db(ctx())(e)))?
        {
            let key: &str = row
                .try_get(0)
                .map_err(|e| RefProblem::Db(LoadError::db(ctx())(e)))?;
            let val: Option<&str> = row
                .try_get(1)
                .map_err(|e| RefProblem::Db(LoadError::db(ctx())(e)))?;
            let key: Box<[u8]> = key.as_bytes().into();
            if map.contains_key(&key) {
                return Err(RefProblem::Invalid(format!(
                    "lookup column {}.{} is not unique (value {:?} occurs more than once); \
                     references need a unique business column",
                    table.sql_name,
                    spec.lookup,
                    String::from_utf8_lossy(&key)
                )));
            }
            map.insert(key, val.map(|v| v.as_bytes().into()));
        }
        Ok(RefMap { map })
    }
}
