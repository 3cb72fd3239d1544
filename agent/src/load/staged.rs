//! A file with a mapping (the Platform's `p_load_table_from_csv` contract):
//! staged, then written set-based.
//!
//! 1. The file is read with PostgreSQL's CSV rules ([`super::pgcsv`]); the
//!    header row is checked against `csv_columns` and skipped. Each row is
//!    checked here — field count, UTF-8, every value of a plain column
//!    against its column's type, every `ref`/`ref_array` resolved through
//!    the referenced table (rows of earlier files of the load included) —
//!    and refused rows are reported with their line and the CSV's column.
//! 2. Good rows go with COPY BINARY into a temporary table `<t>_csv`
//!    (dropped at commit): the line, the checked values, and — when the
//!    mapping has expressions — the CSV's own columns, which expressions
//!    read. Expressions are then evaluated by PostgreSQL in one statement
//!    under the role [`EVAL_ROLE`] (it can read `<t>_csv` and write their
//!    results, nothing else), non-breaking spaces trimmed as the Platform
//!    trims them. When PostgreSQL refuses an expression, each expression
//!    alone is tried over halved ranges of lines to name the first lines
//!    it fails on.
//! 3. Statements over batches of `<t>_csv`'s pages (TID ranges, about
//!    [`WRITE_BATCH_ROWS`] rows each, so progress follows the write) write
//!    the rows, and on a Platform table, in the same statement, their
//!    history rows (`INSERT … RETURNING` feeding the history `INSERT`).
//!    All run under one savepoint: when PostgreSQL refuses one (unique key,
//!    foreign key, NOT NULL, a value an expression made), the write is
//!    rolled back to it and [`super::diagnose`] finds the lines and columns.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::copy::{CopyWriter, Format};
use super::error::{LoadError, Result, RowError};
use super::mapping::{self, Mapping, RefArgs, Source, UUID_COLUMN};
use super::pgcsv::{Fault, PgCsv};
use super::plan::shorten;
use super::platform::{self, EVAL_ROLE, LOAD_USER, Model};
use super::refs::RefMap;
use super::run::Run;
use super::schema::{self, Lookup, Table, quote_ident};
use super::staged_row::encode;
use super::types::PgType;

/// Lines reported per failing expression: each costs about two
/// evaluations of the staged rows, and the error cap bounds the rest.
const LINES_PER_EXPRESSION: usize = 5;

/// Rows per statement of a mapped file's set-based write: few enough
/// statements that each costs nothing to plan, enough that progress moves.
const WRITE_BATCH_ROWS: u64 = 100_000;

/// How one target column gets its value.
#[derive(Debug)]
pub(super) struct TargetPlan {
    pub column: String,
    pub ty: PgType,
    /// `format_type` of the column, for the cast from text.
    pub sql_type: String,
    pub not_null: bool,
    pub source: Source,
    /// For `Column`: index of the CSV column.
    pub csv_idx: Option<usize>,
    /// For `Ref`/`RefArray`: (map, CSV index, delimiter).
    pub refs: Vec<(Arc<RefMap>, usize, char)>,
    /// The column as the user knows it: the CSV column (for a reference its
    /// `lookup_col`), or the target column for an expression.
    pub label: String,
}

impl TargetPlan {
    /// The SQL reading this column's typed value from the staged tables
    /// (`s`: `<t>_csv`, `e`: the expressions' results).
    pub fn value_sql(&self, k: usize) -> String {
        let from = match self.source {
            Source::Expr(_) => format!("e.__e{k}"),
            _ => format!("s.__v{k}"),
        };
        format!("{from}::{}", self.sql_type)
    }
}

pub(super) struct StagedPlan {
    pub file: String,
    pub table: Table,
    pub mapping: Mapping,
    /// `<t>_csv`, unquoted.
    pub staged: String,
    pub targets: Vec<TargetPlan>,
    /// Index of the CSV column `uuid`, the rows' ids.
    pub uuid_csv: Option<usize>,
    /// The raw CSV columns are staged too (expressions read them).
    pub stage_csv: bool,
    pub model: Model,
    pub delimiter: u8,
    /// Columns of the target table.
    pub table_columns: Vec<String>,
}

pub(super) struct StagedFile {
    pub plan: StagedPlan,
    csv: PgCsv,
    copy: Option<CopyWriter>,
    pub rows: u64,
    header_seen: bool,
    /// The header was refused: the rest of the file is not checked.
    skip_rest: bool,
}

impl Run<'_, '_> {
    /// Plan a mapped file and open its staging; `Ok(None)`: refused (errors
    /// recorded).
    pub(super) async fn start_staged(&mut self, idx: usize) -> Result<Option<StagedFile>> {
        let file = &self.spec.files[idx];
        let Some(m) = &file.mapping else {
            return Err(LoadError::Spec(format!(
                "file {} has no mapping",
                file.name
            )));
        };
        let name = file.name.clone();
        let schemas = &self.spec.schemas;
        let table = match schema::table(self.txn, &file.table, schemas).await? {
            Lookup::Found(t) => t,
            other => {
                let reason = schema::refusal(&file.table, &other, schemas).unwrap_or_default();
                self.errors
                    .push(self.file_error(idx, 0, format!("target {reason}")));
                return Ok(None);
            }
        };
        let mapping = match mapping::parse(&file.table, &m.csv_columns, &m.target_columns) {
            Ok(m) => m,
            Err(errs) => {
                for e in errs {
                    self.errors.push(mapping_error(&name, e));
                }
                return Ok(None);
            }
        };
        let model = platform::detect(self.txn, table.oid, &table.sql_name).await?;
        let sql_types = sql_types(self.txn, table.oid, &table.sql_name).await?;
        let before = self.errors.list.len();
        let map_err = |column: &str, reason: String| RowError {
            file: name.clone(),
            line: 0,
            column: Some(column.to_owned()),
            value: None,
            reason,
        };
        let mut targets = Vec::with_capacity(mapping.targets.len());
        for t in &mapping.targets {
            let Some(col) = table.column(&t.column) else {
                self.errors.push(map_err(
                    &t.raw,
                    format!(
                        "unknown column: table {} has no column {}",
                        table.sql_name, t.column
                    ),
                ));
                continue;
            };
            if col.generated {
                self.errors.push(map_err(
                    &t.raw,
                    "generated column: PostgreSQL computes it".into(),
                ));
                continue;
            }
            let mut refs = Vec::new();
            let list: Vec<(&RefArgs, char)> = match &t.source {
                Source::Ref(r) => vec![(r, ',')],
                Source::RefArray(l) => l.iter().map(|(r, d)| (r, *d)).collect(),
                _ => vec![],
            };
            let mut bad = false;
            for (r, delim) in list {
                match self.staged_ref_map(r).await? {
                    Ok(map) => {
                        let ci = mapping
                            .csv_columns
                            .iter()
                            .position(|c| *c == r.lookup_col)
                            .unwrap_or(0);
                        refs.push((map, ci, delim));
                    }
                    Err(reason) => {
                        self.errors.push(map_err(&t.raw, reason));
                        bad = true;
                    }
                }
            }
            if bad {
                continue;
            }
            let label = match &t.source {
                Source::Expr(_) => t.column.clone(),
                s => s.csv_column().unwrap_or(&t.column).to_owned(),
            };
            targets.push(TargetPlan {
                column: t.column.clone(),
                ty: col.ty.clone(),
                sql_type: sql_types
                    .iter()
                    .find(|(n, _)| *n == t.column)
                    .map(|(_, ty)| ty.clone())
                    .unwrap_or_else(|| "text".into()),
                not_null: col.not_null,
                csv_idx: match &t.source {
                    Source::Column(c) => mapping.csv_columns.iter().position(|x| x == c),
                    _ => None,
                },
                source: t.source.clone(),
                refs,
                label,
            });
        }
        let uuid_csv = mapping.csv_columns.iter().position(|c| c == UUID_COLUMN);
        // What the load fills itself on a Platform table.
        let filled = |c: &str| match &model {
            Model::Platform { id_column, .. } => c == id_column || c.starts_with("ddm_"),
            Model::Plain => false,
        };
        for col in &table.columns {
            if col.not_null
                && !col.has_default
                && !filled(&col.name)
                && !mapping.targets.iter().any(|t| t.column == col.name)
            {
                self.errors.push(map_err(
                    &col.name,
                    format!(
                        "missing column: {}.{} is NOT NULL without a default; map it in target_columns",
                        table.sql_name, col.name
                    ),
                ));
            }
        }
        if self.errors.list.len() > before || self.errors.truncated {
            return Ok(None);
        }
        let staged = format!("{}_csv", table_short_name(&table.sql_name));
        let stage_csv = targets.iter().any(|t| matches!(t.source, Source::Expr(_)));
        let plan = StagedPlan {
            file: name.clone(),
            table_columns: table.columns.iter().map(|c| c.name.clone()).collect(),
            table,
            staged,
            targets,
            uuid_csv,
            stage_csv,
            model,
            delimiter: self.spec.delimiter.unwrap_or(b','),
            mapping,
        };
        let copy = self.open_staging(&plan).await?;
        tracing::info!(file = %name, table = %plan.table.sql_name, model = plan.model.name(), "mapped file: staging");
        Ok(Some(StagedFile {
            csv: PgCsv::new(plan.delimiter),
            plan,
            copy: Some(copy),
            rows: 0,
            header_seen: false,
            skip_rest: false,
        }))
    }

    async fn staged_ref_map(
        &mut self,
        r: &RefArgs,
    ) -> Result<std::result::Result<Arc<RefMap>, String>> {
        let spec = super::header::RefSpec {
            lookup: r.ref_col.clone(),
            table: r.ref_table.clone(),
            target: r.ref_id.clone(),
        };
        let schemas = &self.spec.schemas;
        let table = match schema::table(self.txn, &r.ref_table, schemas).await? {
            Lookup::Found(t) => t,
            other => {
                let reason = schema::refusal(&r.ref_table, &other, schemas).unwrap_or_default();
                return Ok(Err(format!("reference {reason}")));
            }
        };
        let key = (table.oid, spec.lookup.clone(), spec.target.clone());
        if let Some(m) = self.refs.get(&key) {
            return Ok(Ok(m.clone()));
        }
        match RefMap::load(self.txn, &spec, &table).await {
            Ok(m) => {
                let m = Arc::new(m);
                self.refs.insert(key, m.clone());
                Ok(Ok(m))
            }
            Err(super::refs::RefProblem::Invalid(reason)) => Ok(Err(reason)),
            Err(super::refs::RefProblem::Db(e)) => Err(e),
        }
    }

    async fn open_staging(&self, plan: &StagedPlan) -> Result<CopyWriter> {
        let mut cols = vec!["__line bigint".to_owned()];
        let mut names = vec!["__line".to_owned()];
        if plan.uuid_csv.is_some() {
            cols.push("__id text".into());
            names.push("__id".into());
        }
        for (k, t) in plan.targets.iter().enumerate() {
            if !matches!(t.source, Source::Expr(_)) {
                cols.push(format!("__v{k} text"));
                names.push(format!("__v{k}"));
            }
        }
        if plan.stage_csv {
            for c in &plan.mapping.csv_columns {
                cols.push(format!("{} text", quote_ident(c)));
                names.push(c.clone());
            }
        }
        let staged = quote_ident(&plan.staged);
        let sql = format!(
            "DROP TABLE IF EXISTS pg_temp.{staged}; DROP TABLE IF EXISTS pg_temp.{e};
             CREATE TEMP TABLE {staged} ({}) ON COMMIT DROP",
            cols.join(", "),
            e = quote_ident(&format!("{}_expr", plan.staged)),
        );
        let ctx = || format!("staging file {} for {}", plan.file, plan.table.sql_name);
        self.txn
            .batch_execute(&sql)
            .await
            .map_err(LoadError::db(ctx()))?;
        let t = Table {
            oid: 0,
            sql_name: format!("pg_temp.{staged}"),
            columns: vec![],
        };
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        CopyWriter::start(self.txn, &t, &refs, Format::Binary)
            .await
            .map_err(LoadError::db(ctx()))
    }

    /// Feed a chunk of a mapped file.
    pub(super) async fn feed_staged(&mut self, s: &mut StagedFile, data: &[u8]) -> Result<bool> {
        let res = {
            let StagedFile {
                plan,
                csv,
                copy,
                rows,
                header_seen,
                skip_rest,
            } = s;
            let Some(copy) = copy.as_mut() else {
                return Ok(false);
            };
            let errors = &mut self.errors;
            csv.feed(data, &mut |rec| {
                encode(
                    plan,
                    &rec,
                    (header_seen, skip_rest),
                    rows,
                    &mut copy.buf,
                    errors,
                )
            })
        };
        self.after_staged(s, res).await
    }

    /// `Ok(false)`: the file is stopped (a fault), the rest is skipped.
    async fn after_staged(
        &mut self,
        s: &mut StagedFile,
        res: std::result::Result<ControlFlow<()>, Fault>,
    ) -> Result<bool> {
        match res {
            Ok(ControlFlow::Break(())) => return Err(self.rejected_now()),
            Ok(ControlFlow::Continue(())) => {}
            Err(fault) => {
                let (line, field, reason) = match fault {
                    Fault::Unterminated { line, field } => (
                        line,
                        Some(field),
                        "unterminated quote: a '\"' opened here is never closed, so the rest of the file \
                         would read as one value"
                            .to_owned(),
                    ),
                    Fault::TooLong { line } => (
                        line,
                        None,
                        format!(
                            "a record longer than {} MiB: probably a quote never closed",
                            super::reader::MAX_RECORD_BYTES >> 20
                        ),
                    ),
                };
                self.errors.push(RowError {
                    file: s.plan.file.clone(),
                    line,
                    column: field.and_then(|f| s.plan.mapping.csv_columns.get(f).cloned()),
                    value: None,
                    reason,
                });
                if let Some(copy) = s.copy.take() {
                    let _ = copy.finish().await;
                }
                self.check_cap_now()?;
                return Ok(false);
            }
        }
        if let Some(copy) = s.copy.as_mut() {
            copy.flush_if_full()
                .await
                .map_err(LoadError::db(format!("staging file {}", s.plan.file)))?;
        }
        Ok(true)
    }

    /// The end of a mapped file: the last record, then the set-based write,
    /// whose rows written so far go to `written` after each batch.
    /// Returns the rows written.
    pub(super) async fn finish_staged(
        &mut self,
        mut s: StagedFile,
        written: &mut impl FnMut(u64, u64),
    ) -> Result<u64> {
        let res = {
            let StagedFile {
                plan,
                csv,
                copy,
                rows,
                header_seen,
                skip_rest,
            } = &mut s;
            match copy.as_mut() {
                Some(copy) => {
                    let errors = &mut self.errors;
                    csv.finish(&mut |rec| {
                        encode(
                            plan,
                            &rec,
                            (header_seen, skip_rest),
                            rows,
                            &mut copy.buf,
                            errors,
                        )
                    })
                }
                None => Ok(ControlFlow::Continue(())),
            }
        };
        if !self.after_staged(&mut s, res).await? {
            return Ok(s.rows);
        }
        if !s.header_seen {
            self.errors.push(RowError {
                file: s.plan.file.clone(),
                line: 1,
                column: None,
                value: None,
                reason: "empty file: it must start with a header row naming the columns".into(),
            });
            self.check_cap_now()?;
        }
        if let Some(copy) = s.copy.take() {
            copy.finish()
                .await
                .map_err(LoadError::db(format!("staging file {}", s.plan.file)))?;
        }
        if !self.errors.is_empty() || s.rows == 0 {
            return Ok(s.rows);
        }
        let started = std::time::Instant::now();
        if s.plan.stage_csv && !self.evaluate(&s.plan).await? {
            return Ok(s.rows);
        }
        let evaluated = started.elapsed();
        let rows = s.rows;
        let written = self
            .write_rows(&s.plan, rows, &mut |n| written(rows, n))
            .await?;
        tracing::info!(
            file = %s.plan.file,
            rows = s.rows,
            model = s.plan.model.name(),
            expressions_secs = evaluated.as_secs_f64(),
            write_secs = (started.elapsed() - evaluated).as_secs_f64(),
            "mapped file staged and written"
        );
        Ok(written.unwrap_or(s.rows))
    }

    /// Evaluate the expressions into `<t>_expr`. `false`: refused (errors
    /// recorded).
    async fn evaluate(&mut self, plan: &StagedPlan) -> Result<bool> {
        let staged = quote_ident(&plan.staged);
        let expr_table = quote_ident(&format!("{}_expr", plan.staged));
        let exprs: Vec<(usize, &TargetPlan, &str)> = plan
            .targets
            .iter()
            .enumerate()
            .filter_map(|(k, t)| match &t.source {
                Source::Expr(e) => Some((k, t, e.as_str())),
                _ => None,
            })
            .collect();
        let cols: Vec<String> = exprs
            .iter()
            .map(|(k, _, _)| format!("__e{k} text"))
            .collect();
        let ctx = || format!("evaluating the expressions of file {}", plan.file);
        self.txn
            .batch_execute(&format!(
                "CREATE TEMP TABLE {expr_table} (__line bigint, {}) ON COMMIT DROP",
                cols.join(", ")
            ))
            .await
            .map_err(LoadError::db(ctx()))?;
        let role = self.eval_role;
        let select = |only: Option<usize>| {
            let vals: Vec<String> = exprs
                .iter()
                .filter(|(k, _, _)| only.is_none_or(|o| o == *k))
                .map(|(_, _, e)| format!("btrim(({e})::text, chr(160))"))
                .collect();
            format!(
                "SELECT {staged}.__line, {} FROM pg_temp.{staged}",
                vals.join(", ")
            )
        };
        let mut sql = String::from("SAVEPOINT ferry_eval;");
        if role {
            sql.push_str(&format!(
                "GRANT SELECT ON pg_temp.{staged} TO {EVAL_ROLE}; GRANT INSERT ON pg_temp.{expr_table} TO {EVAL_ROLE};
                 SET LOCAL ROLE {EVAL_ROLE};"
            ));
        }
        sql.push_str(&format!(
            "INSERT INTO pg_temp.{expr_table} {};",
            select(None)
        ));
        if role {
            sql.push_str("RESET ROLE;");
        }
        sql.push_str("RELEASE SAVEPOINT ferry_eval;");
        match self.txn.batch_execute(&sql).await {
            Ok(()) => Ok(true),
            Err(e) if e.as_db_error().is_some() => {
                self.txn
                    .batch_execute("ROLLBACK TO SAVEPOINT ferry_eval; RESET ROLE")
                    .await
                    .map_err(LoadError::db(ctx()))?;
                // Which expression failed, and on which lines: each alone,
                // as the same role, over halved ranges of lines.
                // The rollback took the grant back too.
                let grant = if role {
                    format!("GRANT SELECT ON pg_temp.{staged} TO {EVAL_ROLE};")
                } else {
                    String::new()
                };
                self.txn
                    .batch_execute(&format!(
                        "CREATE INDEX ON pg_temp.{staged} (__line); {grant}"
                    ))
                    .await
                    .map_err(LoadError::db(ctx()))?;
                let mut named = false;
                for (_, t, expr) in &exprs {
                    let probe = |lo: i64, hi: i64| {
                        format!(
                            "SAVEPOINT ferry_probe; {} SELECT count(btrim(({expr})::text, chr(160))) \
                             FROM pg_temp.{staged} WHERE {staged}.__line BETWEEN {lo} AND {hi}; \
                             RESET ROLE; RELEASE SAVEPOINT ferry_probe;",
                            if role {
                                format!("SET LOCAL ROLE {EVAL_ROLE};")
                            } else {
                                String::new()
                            },
                        )
                    };
                    let want = (self.errors.max - self.errors.list.len()).min(LINES_PER_EXPRESSION);
                    for (line, message) in self.failing_lines(&staged, probe, want).await? {
                        named = true;
                        self.errors.push(RowError {
                            file: plan.file.clone(),
                            line,
                            column: Some(t.column.clone()),
                            value: Some(shorten(expr.as_bytes())),
                            reason: format!("the expression failed in PostgreSQL: {message}"),
                        });
                    }
                }
                if !named {
                    self.errors.push(RowError {
                        file: plan.file.clone(),
                        line: 0,
                        column: None,
                        value: None,
                        reason: format!(
                            "the expressions failed in PostgreSQL: {}",
                            e.as_db_error()
                                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                        ),
                    });
                }
                self.check_cap_now()?;
                Ok(false)
            }
            Err(e) => Err(LoadError::db(ctx())(e)),
        }
    }

    /// The first `want` lines on which `probe(lo, hi)` — a statement over
    /// the staged lines `lo..=hi` — fails, with PostgreSQL's message, in
    /// line order. Each is found by halving: about twice the staged rows
    /// evaluated per line found (the lines are indexed first).
    async fn failing_lines(
        &mut self,
        staged: &str,
        probe: impl Fn(i64, i64) -> String,
        want: usize,
    ) -> Result<Vec<(u64, String)>> {
        let ctx = || format!("locating the lines an expression failed on in {staged}");
        let range = self
            .txn
            .query_one(
                &format!("SELECT min(__line), max(__line) FROM pg_temp.{staged}"),
                &[],
            )
            .await
            .map_err(LoadError::db(ctx()))?;
        let (Some(first), Some(last)) = (
            range
                .try_get::<_, Option<i64>>(0)
                .map_err(LoadError::db(ctx()))?,
            range
                .try_get::<_, Option<i64>>(1)
                .map_err(LoadError::db(ctx()))?,
        ) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        let mut from = first;
        while found.len() < want && from <= last {
            if self.refused(&probe(from, last)).await?.is_none() {
                break;
            }
            let (mut lo, mut hi) = (from, last);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.refused(&probe(lo, mid)).await? {
                    Some(_) => hi = mid,
                    None => lo = mid + 1,
                }
            }
            let Some(message) = self.refused(&probe(lo, lo)).await? else {
                // Not reproducible on its own line (it depends on others):
                // the caller reports the statement's error without a line.
                break;
            };
            found.push((u64::try_from(lo).unwrap_or_default(), message));
            from = lo + 1;
        }
        Ok(found)
    }

    /// Runs `sql` (which opens the savepoint `ferry_probe`); PostgreSQL's
    /// message if it refused, after rolling back to that savepoint.
    async fn refused(&mut self, sql: &str) -> Result<Option<String>> {
        match self.txn.batch_execute(sql).await {
            Ok(()) => Ok(None),
            Err(e) => match e.as_db_error() {
                Some(db) => {
                    let message = db.message().to_owned();
                    self.txn
                        .batch_execute("ROLLBACK TO SAVEPOINT ferry_probe; RESET ROLE")
                        .await
                        .map_err(LoadError::db("rolling back a refused probe".to_owned()))?;
                    Ok(Some(message))
                }
                None => Err(LoadError::db("probing an expression".to_owned())(e)),
            },
        }
    }

    /// The rows (and history rows), set-based, in batches of the staged
    /// table's pages (a TID range scan each), so progress can follow the
    /// write; all under one savepoint. `Ok(None)`: refused.
    async fn write_rows(
        &mut self,
        plan: &StagedPlan,
        rows: u64,
        written: &mut impl FnMut(u64),
    ) -> Result<Option<u64>> {
        let sql = self.insert_sql(plan).await?;
        let ctx = || {
            format!(
                "writing the rows of file {} into {}",
                plan.file, plan.table.sql_name
            )
        };
        let pages: i64 = self
            .txn
            .query_one(
                &format!(
                    "SELECT pg_relation_size('pg_temp.{}'::regclass) / current_setting('block_size')::bigint",
                    quote_ident(&plan.staged)
                ),
                &[],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(LoadError::db(ctx()))?;
        let batches = i64::try_from(rows.div_ceil(WRITE_BATCH_ROWS))
            .unwrap_or(i64::MAX)
            .max(1);
        let step = (pages / batches + 1).max(1);
        self.txn
            .batch_execute("SAVEPOINT ferry_write")
            .await
            .map_err(LoadError::db(ctx()))?;
        let statement = self.txn.prepare(&sql).await.map_err(LoadError::db(ctx()))?;
        let mut done = 0u64;
        let mut from = 0i64;
        while from < pages.max(1) {
            let to = from.saturating_add(step);
            let (lo, hi) = (format!("({from},0)"), format!("({to},0)"));
            match self.txn.execute(&statement, &[&lo, &hi]).await {
                Ok(n) => {
                    done += n;
                    written(done);
                }
                Err(e) if e.as_db_error().is_some() => {
                    self.txn
                        .batch_execute("ROLLBACK TO SAVEPOINT ferry_write")
                        .await
                        .map_err(LoadError::db(ctx()))?;
                    if let Some(db) = e.as_db_error() {
                        self.diagnose(plan, db).await?;
                    }
                    self.check_cap_now()?;
                    return Ok(None);
                }
                Err(e) => return Err(LoadError::db(ctx())(e)),
            }
            from = to;
        }
        self.txn
            .batch_execute("RELEASE SAVEPOINT ferry_write")
            .await
            .map_err(LoadError::db(ctx()))?;
        Ok(Some(done))
    }

    async fn insert_sql(&mut self, plan: &StagedPlan) -> Result<String> {
        let staged = quote_ident(&plan.staged);
        let mut cols: Vec<String> = Vec::new();
        let mut vals: Vec<String> = Vec::new();
        for (k, t) in plan.targets.iter().enumerate() {
            cols.push(quote_ident(&t.column));
            vals.push(t.value_sql(k));
        }
        let mapped = |c: &str| plan.targets.iter().any(|t| t.column == c);
        let from = if plan.stage_csv {
            format!(
                "pg_temp.{staged} s JOIN pg_temp.{} e ON e.__line = s.__line",
                quote_ident(&format!("{}_expr", plan.staged))
            )
        } else {
            format!("pg_temp.{staged} s")
        };
        // One batch of the staged table's pages ($1, $2: TIDs as text).
        let from = format!("{from} WHERE s.ctid >= $1::text::tid AND s.ctid < $2::text::tid");
        let Model::Platform {
            history,
            history_columns,
            id_column,
        } = &plan.model
        else {
            return Ok(format!(
                "INSERT INTO {} ({}) SELECT {} FROM {from}",
                plan.table.sql_name,
                cols.join(", "),
                vals.join(", ")
            ));
        };
        let business = cols.clone();
        if !mapped(id_column) {
            cols.push(quote_ident(id_column));
            vals.push(match plan.uuid_csv {
                Some(_) => "s.__id::uuid".into(),
                None => "gen_random_uuid()".into(),
            });
        }
        let user = format!("'{LOAD_USER}'");
        for (c, v) in [
            ("ddm_created_at", "now()"),
            ("ddm_created_by", user.as_str()),
            ("ddm_updated_at", "now()"),
            ("ddm_updated_by", user.as_str()),
        ] {
            if plan.table_columns.iter().any(|x| x == c) && !mapped(c) {
                cols.push(c.to_owned());
                vals.push(v.to_owned());
            }
        }
        if self.sources.is_none() {
            self.sources = Some(platform::source_ids(self.txn).await?);
        }
        let src = self
            .sources
            .clone()
            .ok_or_else(|| LoadError::Spec("no source ids".into()))?;
        let id = quote_ident(id_column);
        let mut hcols = vec!["ddm_dml_op".to_owned()];
        let mut hvals = vec!["'I'".to_owned()];
        for c in business.iter().chain(std::iter::once(&id)) {
            hcols.push(c.clone());
            hvals.push(format!("ins.{c}"));
        }
        for (c, v) in [
            ("ddm_created_at", "now()".to_owned()),
            ("ddm_created_by", user.clone()),
            ("ddm_system_id", format!("'{}'::uuid", src.system)),
            ("ddm_application_id", format!("'{}'::uuid", src.application)),
            (
                "ddm_business_process_id",
                format!("'{}'::uuid", src.process),
            ),
        ] {
            if history_columns.iter().any(|x| x == c) {
                hcols.push(c.to_owned());
                hvals.push(v);
            }
        }
        let mut returning = business.clone();
        returning.push(id.clone());
        // Rows go in in key order: random uuids inserted in file order
        // touch the whole primary-key index for every row; sorted, the
        // index fills page after page.
        let order = match cols.iter().position(|c| *c == id) {
            Some(i) => format!(" ORDER BY {}", i + 1),
            None => String::new(),
        };
        Ok(format!(
            "WITH ins AS (INSERT INTO {table} ({cols}) SELECT {vals} FROM {from}{order} RETURNING {ret})
             INSERT INTO {history} ({hcols}) SELECT {hvals} FROM ins",
            table = plan.table.sql_name,
            cols = cols.join(", "),
            vals = vals.join(", "),
            ret = returning.join(", "),
            hcols = hcols.join(", "),
            hvals = hvals.join(", "),
        ))
    }

    fn rejected_now(&mut self) -> LoadError {
        let truncated = self.errors.truncated || self.errors.full();
        LoadError::Rejected {
            load_id: self.spec.load_id.clone(),
            errors: std::mem::take(&mut self.errors.list),
            truncated,
        }
    }

    pub(super) fn check_cap_now(&mut self) -> Result<()> {
        if self.errors.full() {
            return Err(self.rejected_now());
        }
        Ok(())
    }
}

pub(super) fn mapping_error(file: &str, e: mapping::MappingError) -> RowError {
    RowError {
        file: file.to_owned(),
        line: 0,
        column: (!e.column.is_empty()).then_some(e.column),
        value: None,
        reason: e.reason,
    }
}

fn table_short_name(sql_name: &str) -> String {
    let last = sql_name.rsplit('.').next().unwrap_or(sql_name);
    last.trim_matches('"').replace("\"\"", "\"")
}

async fn sql_types(
    txn: &tokio_postgres::Transaction<'_>,
    oid: u32,
    table: &str,
) -> Result<Vec<(String, String)>> {
    let ctx = || format!("reading the column types of {table}");
    let rows = txn
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
            &[&oid],
        )
        .await
        .map_err(LoadError::db(ctx()))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push((
            r.try_get(0).map_err(LoadError::db(ctx()))?,
            r.try_get(1).map_err(LoadError::db(ctx()))?,
        ));
    }
    Ok(out)
}
