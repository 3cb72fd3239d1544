//! When PostgreSQL refuses a mapped file's set-based write, find the lines
//! and columns in the user's terms: a unique key (duplicates in the file,
//! or rows already in the table), a foreign key, a NOT NULL column, or a
//! value an expression produced that does not fit its column. Runs after
//! the write was rolled back to its savepoint, so only on refusal.

use futures::TryStreamExt;
use tokio_postgres::error::{DbError, SqlState};

use super::error::{LoadError, Result, RowError};
use super::mapping::Source;
use super::plan::shorten;
use super::run::Run;
use super::schema::quote_ident;
use super::staged::StagedPlan;

impl Run<'_, '_> {
    pub(super) async fn diagnose(&mut self, plan: &StagedPlan, db: &DbError) -> Result<()> {
        let before = self.errors.list.len();
        let found = match *db.code() {
            SqlState::UNIQUE_VIOLATION => self.unique(plan, db).await,
            SqlState::FOREIGN_KEY_VIOLATION => self.foreign(plan, db).await,
            SqlState::NOT_NULL_VIOLATION => self.not_null(plan, db).await,
            _ => self.expression_values(plan).await,
        };
        if let Err(de) = found {
            tracing::warn!(error = %de, "could not locate the refused rows");
            let _ = self
                .txn
                .batch_execute("ROLLBACK TO SAVEPOINT ferry_write")
                .await;
        }
        if self.errors.list.len() == before && !self.errors.truncated {
            let mut reason = format!("PostgreSQL refused the rows: {}", db.message());
            if let Some(d) = db.detail() {
                reason.push_str(&format!(" ({d})"));
            }
            if let Some(c) = db.constraint() {
                reason.push_str(&format!(" [constraint {c}]"));
            }
            self.errors.push(RowError {
                file: plan.file.clone(),
                line: 0,
                column: db.column().map(str::to_owned),
                value: None,
                reason,
            });
        }
        Ok(())
    }

    /// `(value SQL, label)` of each table column, or `None` if a column is
    /// not written by the mapping.
    fn values_of(plan: &StagedPlan, columns: &[String]) -> Option<Vec<(String, String)>> {
        columns
            .iter()
            .map(|c| {
                plan.targets
                    .iter()
                    .enumerate()
                    .find(|(_, t)| &t.column == c)
                    .map(|(k, t)| (t.value_sql(k), t.label.clone()))
            })
            .collect()
    }

    fn from_sql(plan: &StagedPlan) -> String {
        let staged = quote_ident(&plan.staged);
        if plan.stage_csv {
            format!(
                "pg_temp.{staged} s JOIN pg_temp.{} e ON e.__line = s.__line",
                quote_ident(&format!("{}_expr", plan.staged))
            )
        } else {
            format!("pg_temp.{staged} s")
        }
    }

    async fn unique(&mut self, plan: &StagedPlan, db: &DbError) -> Result<()> {
        let Some(constraint) = db.constraint() else {
            return Ok(());
        };
        let cols = self
            .query_names(
                "SELECT a.attname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                 CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                 WHERE x.indrelid = $1 AND i.relname = $2 ORDER BY k.n",
                plan.table.oid,
                constraint,
            )
            .await?;
        let Some(vals) = Self::values_of(plan, &cols) else {
            return Ok(());
        };
        let names: Vec<String> = (0..vals.len()).map(|i| format!("k{i}")).collect();
        let select: Vec<String> = vals
            .iter()
            .zip(&names)
            .map(|((v, _), n)| format!("{v} AS {n}"))
            .collect();
        let key = names.join(", ");
        let tcols: Vec<String> = cols
            .iter()
            .map(|c| format!("t.{}", quote_ident(c)))
            .collect();
        let wcols: Vec<String> = names.iter().map(|n| format!("w.{n}")).collect();
        let sql = format!(
            "WITH v AS (SELECT s.__line AS line, {select} FROM {from}),
                  w AS (SELECT v.*, min(line) OVER (PARTITION BY {key}) AS first FROM v
                        WHERE {notnull})
             SELECT line, concat_ws(', ', {text}), CASE WHEN line <> first THEN first ELSE 0 END
             FROM w WHERE line <> first
                OR EXISTS (SELECT 1 FROM {table} t WHERE ({tcols}) = ({wcols}))
             ORDER BY line LIMIT {limit}",
            select = select.join(", "),
            from = Self::from_sql(plan),
            notnull = names
                .iter()
                .map(|n| format!("{n} IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" AND "),
            text = names
                .iter()
                .map(|n| format!("{n}::text"))
                .collect::<Vec<_>>()
                .join(", "),
            table = plan.table.sql_name,
            tcols = tcols.join(", "),
            wcols = wcols.join(", "),
            limit = self.errors.max,
        );
        let labels: Vec<&str> = vals.iter().map(|(_, l)| l.as_str()).collect();
        for row in self
            .txn
            .query(sql.as_str(), &[])
            .await
            .map_err(LoadError::db("locating duplicate keys"))?
        {
            let line: i64 = row
                .try_get(0)
                .map_err(LoadError::db("locating duplicate keys"))?;
            let value: String = row
                .try_get(1)
                .map_err(LoadError::db("locating duplicate keys"))?;
            let first: i64 = row
                .try_get(2)
                .map_err(LoadError::db("locating duplicate keys"))?;
            let reason = if first > 0 {
                format!(
                    "duplicate key: the same ({}) as line {first}, but {} is unique (constraint {constraint})",
                    labels.join(", "),
                    cols.join(", ")
                )
            } else {
                format!(
                    "duplicate key: {} already has a row with this ({}) (constraint {constraint})",
                    plan.table.sql_name,
                    cols.join(", ")
                )
            };
            self.errors.push(RowError {
                file: plan.file.clone(),
                line: line as u64,
                column: Some(labels.join(", ")),
                value: Some(shorten(value.as_bytes())),
                reason,
            });
        }
        Ok(())
    }

    async fn foreign(&mut self, plan: &StagedPlan, db: &DbError) -> Result<()> {
        let Some(constraint) = db.constraint() else {
            return Ok(());
        };
        let ctx = "reading the foreign key";
        let Some(row) = self
            .txn
            .query_opt(
                "SELECT c.confrelid::regclass::text,
                        ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                              JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
                        ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                              JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
                 FROM pg_constraint c WHERE c.conrelid = $1 AND c.conname = $2",
                &[&plan.table.oid, &constraint],
            )
            .await
            .map_err(LoadError::db(ctx))?
        else {
            return Ok(());
        };
        let parent: String = row.try_get(0).map_err(LoadError::db(ctx))?;
        let cols: Vec<String> = row.try_get(1).map_err(LoadError::db(ctx))?;
        let pcols: Vec<String> = row.try_get(2).map_err(LoadError::db(ctx))?;
        let Some(vals) = Self::values_of(plan, &cols) else {
            return Ok(());
        };
        let sql = format!(
            "SELECT s.__line, concat_ws(', ', {text}) FROM {from}
             WHERE {notnull} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE ({pc}) = ({v}))
             ORDER BY 1 LIMIT {limit}",
            text = vals
                .iter()
                .map(|(v, _)| format!("({v})::text"))
                .collect::<Vec<_>>()
                .join(", "),
            from = Self::from_sql(plan),
            notnull = vals
                .iter()
                .map(|(v, _)| format!("({v}) IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" AND "),
            pc = pcols
                .iter()
                .map(|c| format!("p.{}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", "),
            v = vals
                .iter()
                .map(|(v, _)| v.clone())
                .collect::<Vec<_>>()
                .join(", "),
            limit = self.errors.max,
        );
        let labels: Vec<&str> = vals.iter().map(|(_, l)| l.as_str()).collect();
        for row in self
            .txn
            .query(sql.as_str(), &[])
            .await
            .map_err(LoadError::db(ctx))?
        {
            let line: i64 = row.try_get(0).map_err(LoadError::db(ctx))?;
            let value: String = row.try_get(1).map_err(LoadError::db(ctx))?;
            self.errors.push(RowError {
                file: plan.file.clone(),
                line: line as u64,
                column: Some(labels.join(", ")),
                value: Some(shorten(value.as_bytes())),
                reason: format!(
                    "no row of {parent} has ({}) equal to this (foreign key {constraint} on {})",
                    pcols.join(", "),
                    cols.join(", ")
                ),
            });
        }
        Ok(())
    }

    async fn not_null(&mut self, plan: &StagedPlan, db: &DbError) -> Result<()> {
        let Some(col) = db.column() else {
            return Ok(());
        };
        let Some(vals) = Self::values_of(plan, &[col.to_owned()]) else {
            return Ok(());
        };
        let (v, label) = &vals[0];
        let sql = format!(
            "SELECT s.__line FROM {} WHERE ({v}) IS NULL ORDER BY 1 LIMIT {}",
            Self::from_sql(plan),
            self.errors.max
        );
        for row in self
            .txn
            .query(sql.as_str(), &[])
            .await
            .map_err(LoadError::db("locating NULLs"))?
        {
            let line: i64 = row.try_get(0).map_err(LoadError::db("locating NULLs"))?;
            self.errors.push(RowError {
                file: plan.file.clone(),
                line: line as u64,
                column: Some(label.clone()),
                value: None,
                reason: format!("empty value (NULL) in NOT NULL column {col}"),
            });
        }
        Ok(())
    }

    /// Values the expressions made, checked against their columns' types.
    async fn expression_values(&mut self, plan: &StagedPlan) -> Result<()> {
        if !plan.stage_csv {
            return Ok(());
        }
        let expr_table = quote_ident(&format!("{}_expr", plan.staged));
        for (k, t) in plan.targets.iter().enumerate() {
            if !matches!(t.source, Source::Expr(_)) {
                continue;
            }
            let sql = format!("SELECT __line, __e{k} FROM pg_temp.{expr_table} ORDER BY 1");
            let rows = self
                .txn
                .query_raw(sql.as_str(), std::iter::empty::<&str>())
                .await
                .map_err(LoadError::db("reading the expressions' values"))?;
            futures::pin_mut!(rows);
            let mut scratch = Vec::new();
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(LoadError::db("reading the expressions' values"))?
            {
                let line: i64 = row
                    .try_get(0)
                    .map_err(LoadError::db("reading the expressions' values"))?;
                let v: Option<&str> = row
                    .try_get(1)
                    .map_err(LoadError::db("reading the expressions' values"))?;
                let reason = match v {
                    None if t.not_null => Some(format!(
                        "the expression gave NULL for NOT NULL column {}",
                        t.column
                    )),
                    None => None,
                    Some(v) => {
                        scratch.clear();
                        t.ty.encode(v.as_bytes(), &mut scratch).err().map(|r| {
                            format!(
                                "the expression's value does not fit {} {}: {r}",
                                t.column, t.ty
                            )
                        })
                    }
                };
                if let Some(reason) = reason {
                    self.errors.push(RowError {
                        file: plan.file.clone(),
                        line: line as u64,
                        column: Some(t.column.clone()),
                        value: v.map(|v| shorten(v.as_bytes())),
                        reason,
                    });
                    if self.errors.full() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    async fn query_names(&self, sql: &str, oid: u32, name: &str) -> Result<Vec<String>> {
        let rows = self
            .txn
            .query(sql, &[&oid, &name])
            .await
            .map_err(LoadError::db(format!("reading constraint {name}")))?;
        rows.iter()
            .map(|r| {
                r.try_get(0)
                    .map_err(LoadError::db(format!("reading constraint {name}")))
            })
            .collect()
    }
}
