//! What the target tables look like, read from pg_catalog.

use tokio_postgres::GenericClient;

use super::error::{LoadError, Result};
use super::types::PgType;

/// One column of a target table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: PgType,
    pub not_null: bool,
    /// Has a default, is an identity, or is generated: may be left out.
    pub has_default: bool,
    pub generated: bool,
}

/// A target table.
#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    /// Quoted, schema-qualified where needed (`regclass` output).
    pub sql_name: String,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Look the table up as PostgreSQL would resolve `name` (search_path,
/// unquoted names folded to lower case). `Ok(None)`: no such table.
pub async fn table<C: GenericClient>(client: &C, name: &str) -> Result<Option<Table>> {
    let ctx = || format!("reading the definition of table {name}");
    let Some(row) = client
        .query_opt(
            "SELECT c.oid, c.oid::regclass::text FROM pg_class c \
             WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
            &[&name],
        )
        .await
        .map_err(LoadError::db(ctx()))?
    else {
        return Ok(None);
    };
    let oid: u32 = row.try_get(0).map_err(LoadError::db(ctx()))?;
    let sql_name: String = row.try_get(1).map_err(LoadError::db(ctx()))?;
    // Domains are checked as their base type (PostgreSQL checks the
    // domain's own constraints during COPY).
    let rows = client
        .query(
            "SELECT a.attname::text, t.typname::text, \
                    CASE WHEN a.atttypmod >= 0 THEN a.atttypmod ELSE d.typtypmod END, \
                    a.attnotnull OR d.typnotnull, \
                    a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', \
                    a.attgenerated <> '', \
                    e.typname::text, e.oid \
             FROM pg_attribute a \
             JOIN pg_type d ON d.oid = a.atttypid \
             JOIN pg_type t ON t.oid = CASE WHEN d.typtype = 'd' THEN d.typbasetype ELSE d.oid END \
             LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(LoadError::db(ctx()))?;
    let mut columns = Vec::with_capacity(rows.len());
    for r in rows {
        let map = LoadError::db(ctx());
        let name: String = r.try_get(0).map_err(map)?;
        let typname: String = r.try_get(1).map_err(LoadError::db(ctx()))?;
        let typmod: i32 = r.try_get(2).map_err(LoadError::db(ctx()))?;
        let elem_name: Option<String> = r.try_get(6).map_err(LoadError::db(ctx()))?;
        let elem_oid: Option<u32> = r.try_get(7).map_err(LoadError::db(ctx()))?;
        let elem = elem_name.as_deref().zip(elem_oid);
        columns.push(Column {
            name,
            ty: PgType::from_catalog(&typname, typmod, elem),
            not_null: r.try_get(3).map_err(LoadError::db(ctx()))?,
            has_default: r.try_get(4).map_err(LoadError::db(ctx()))?,
            generated: r.try_get(5).map_err(LoadError::db(ctx()))?,
        });
    }
    Ok(Some(Table {
        oid,
        sql_name,
        columns,
    }))
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
