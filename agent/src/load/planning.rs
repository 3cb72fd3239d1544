//! From a file's header to its load plan: columns checked against the
//! table, reference maps loaded.

use std::sync::Arc;

use super::copy::Format;
use super::error::{Result, RowError};
use super::header::{self, HeaderCell, RefSpec};
use super::plan::{FieldPlan, FilePlan};
use super::refs::{RefMap, RefProblem};
use super::run::Run;
use super::schema::{self, Lookup};

impl Run<'_, '_> {
    /// Check the header against the table and build the file's plan.
    /// `Ok(None)`: the header is refused (errors recorded).
    pub(super) async fn plan(
        &mut self,
        idx: usize,
        raw_cells: &[String],
        delimiter: u8,
    ) -> Result<Option<FilePlan>> {
        let file = &self.spec.files[idx];
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
        let before = self.errors.list.len() + usize::from(self.errors.truncated);
        let header_err = |column: Option<String>, reason: String| RowError {
            file: file.name.clone(),
            line: 1,
            column,
            value: None,
            reason,
        };
        if raw_cells.len() == 1 && table.columns.iter().filter(|c| !c.generated).count() > 1 {
            let other = if delimiter == b',' { b';' } else { b',' };
            if raw_cells[0].as_bytes().contains(&other) {
                self.errors.push(header_err(
                    None,
                    format!(
                        "wrong delimiter: the header {:?} reads as a single column with {:?}, \
                         but table {} has {} columns; the file seems to use {:?}: \
                         set the delimiter to {:?} (or leave it unset to detect it)",
                        raw_cells[0],
                        delimiter as char,
                        table.sql_name,
                        table.columns.len(),
                        other as char,
                        other as char
                    ),
                ));
                return Ok(None);
            }
        }
        let mut cells: Vec<HeaderCell> = Vec::with_capacity(raw_cells.len());
        for raw in raw_cells {
            match header::parse_cell(raw) {
                Ok(c) => cells.push(c),
                Err(reason) => self.errors.push(header_err(Some(raw.clone()), reason)),
            }
        }
        let mut fields = Vec::with_capacity(cells.len());
        let mut refs: Vec<Arc<RefMap>> = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            if cells[..i].iter().any(|c| c.column == cell.column) {
                self.errors.push(header_err(
                    Some(cell.column.clone()),
                    "column named twice in the header".into(),
                ));
                continue;
            }
            let Some(col) = table.column(&cell.column) else {
                self.errors.push(header_err(
                    Some(cell.column.clone()),
                    format!(
                        "unknown column: table {} has no column {}",
                        table.sql_name, cell.column
                    ),
                ));
                continue;
            };
            if col.generated {
                self.errors.push(header_err(
                    Some(cell.column.clone()),
                    "generated column: PostgreSQL computes it, remove it from the file".into(),
                ));
                continue;
            }
            let (reference, ref_label) = match &cell.reference {
                None => (None, None),
                Some(r) => match self.ref_map(r).await? {
                    Ok((map, label)) => {
                        refs.push(map);
                        (Some(refs.len() - 1), Some(label))
                    }
                    Err(reason) => {
                        self.errors
                            .push(header_err(Some(cell.column.clone()), reason));
                        continue;
                    }
                },
            };
            fields.push(FieldPlan {
                column: col.name.clone(),
                ty: col.ty.clone(),
                not_null: col.not_null,
                reference,
                ref_label,
            });
        }
        for col in &table.columns {
            if col.not_null && !col.has_default && !cells.iter().any(|c| c.column == col.name) {
                self.errors.push(header_err(
                    Some(col.name.clone()),
                    format!(
                        "missing column: {}.{} is NOT NULL without a default, the file must provide it",
                        table.sql_name, col.name
                    ),
                ));
            }
        }
        if self.errors.list.len() + usize::from(self.errors.truncated) > before {
            return Ok(None);
        }
        let format = if fields.iter().all(|f| f.ty.is_checked()) {
            Format::Binary
        } else {
            Format::Text
        };
        Ok(Some(FilePlan {
            file: file.name.clone(),
            table,
            fields,
            refs,
            format,
            delimiter,
        }))
    }

    /// The map for one reference, loaded now if not cached. The inner
    /// error is a header problem to report.
    async fn ref_map(
        &mut self,
        r: &RefSpec,
    ) -> Result<std::result::Result<(Arc<RefMap>, String), String>> {
        let schemas = &self.spec.schemas;
        let table = match schema::table(self.txn, &r.table, schemas).await? {
            Lookup::Found(t) => t,
            other => {
                let reason = schema::refusal(&r.table, &other, schemas).unwrap_or_default();
                return Ok(Err(format!("reference {reason}")));
            }
        };
        let label = format!("{}.{}", table.sql_name, r.lookup);
        let key = (table.oid, r.lookup.clone(), r.target.clone());
        if let Some(m) = self.refs.get(&key) {
            return Ok(Ok((m.clone(), label)));
        }
        match RefMap::load(self.txn, r, &table).await {
            Ok(m) => {
                let m = Arc::new(m);
                self.refs.insert(key, m.clone());
                Ok(Ok((m, label)))
            }
            Err(RefProblem::Invalid(reason)) => Ok(Err(reason)),
            Err(RefProblem::Db(e)) => Err(e),
        }
    }
}
