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

/// Schemas a load never touches, whatever the allow-list says: Ferry's own
/// bookkeeping (the ledger) and PostgreSQL's catalogs.
pub const FORBIDDEN_SCHEMAS: &[&str] = &[super::ledger::LEDGER_SCHEMA, "information_schema"];

/// A schema no load may write or read references from: Ferry's own, the
/// information schema, and every `pg_*` schema (catalog, toast, temp).
pub fn forbidden_schema(schema: &str) -> bool {
    FORBIDDEN_SCHEMAS.contains(&schema) || schema.starts_with("pg_")
}

/// Checks an allow-list of data schemas: not empty, none forbidden.
pub fn check_schemas(schemas: &[String]) -> std::result::Result<(), String> {
    if schemas.is_empty() {
        return Err("no schema is allowed for loads: name at least one data schema (the Platform's is `registry`)".into());
    }
    if let Some(s) = schemas.iter().find(|s| forbidden_schema(s)) {
        return Err(format!(
            "schema {s:?} cannot be a load target: {} and PostgreSQL's pg_* schemas are never written by a load",
            FORBIDDEN_SCHEMAS.join(", ")
        ));
    }
    Ok(())
}

/// How a table name given by a client resolved.
#[derive(Debug)]
pub enum Lookup {
    Found(Table),
    /// No such table in the allowed schemas.
    Missing,
    /// The name is qualified with a schema loads may not touch.
    Outside {
        schema: String,
    },
    /// Not a table name PostgreSQL can parse (or more than `schema.table`).
    Invalid(String),
}

/// Why a resolved name is refused, for the file's error list.
pub fn refusal(name: &str, lookup: &Lookup, schemas: &[String]) -> Option<String> {
    let allowed = schemas.join(", ");
    match lookup {
        Lookup::Found(_) => None,
        Lookup::Missing => Some(format!(
            "table {name} does not exist (or is not a table) in the schemas loads may write ({allowed})"
        )),
        Lookup::Outside { schema } if schema == super::ledger::LEDGER_SCHEMA => Some(format!(
            "table {name} is in schema {schema}, Ferry's own bookkeeping: a load never writes or reads it; \
             load into the registry's data schemas ({allowed})"
        )),
        Lookup::Outside { schema } => Some(format!(
            "table {name} is in schema {schema}, outside the schemas loads may write ({allowed}); \
             the agent's --load-schemas names them"
        )),
        Lookup::Invalid(why) => Some(format!("{name:?} is not a table name: {why}")),
    }
}

/// Look the table up in the allowed `schemas`: an unqualified name is
/// searched in them in order (not in the role's search_path), a qualified
/// one must name one of them. Names fold to lower case unless quoted, as
/// PostgreSQL folds them.
pub async fn table<C: GenericClient>(client: &C, name: &str, schemas: &[String]) -> Result<Lookup> {
    let ctx = || format!("reading the definition of table {name}");
    let parts: Vec<String> = match client.query_one("SELECT parse_ident($1)", &[&name]).await {
        Ok(row) => row.try_get(0).map_err(LoadError::db(ctx()))?,
        // 22023 / 42602: not an identifier PostgreSQL can parse.
        Err(e) if e.as_db_error().is_some() => {
            let why = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_default();
            return Ok(Lookup::Invalid(why));
        }
        Err(e) => return Err(LoadError::db(ctx())(e)),
    };
    let (candidates, relname): (Vec<&String>, &String) = match parts.as_slice() {
        [rel] => (schemas.iter().collect(), rel),
        [schema, rel] => {
            if !schemas.contains(schema) || forbidden_schema(schema) {
                return Ok(Lookup::Outside {
                    schema: schema.clone(),
                });
            }
            (vec![schema], rel)
        }
        _ => return Ok(Lookup::Invalid("use table or schema.table".into())),
    };
    let mut found = None;
    for schema in candidates {
        if forbidden_schema(schema) {
            continue;
        }
        if let Some(row) = client
            .query_opt(
                "SELECT c.oid, c.oid::regclass::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[schema, relname],
            )
            .await
            .map_err(LoadError::db(ctx()))?
        {
            found = Some(row);
            break;
        }
    }
    let Some(row) = found else {
        return Ok(Lookup::Missing);
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
    Ok(Lookup::Found(Table {
        oid,
        sql_name,
        columns,
    }))
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
