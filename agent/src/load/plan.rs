//! A file's load plan (header cells -> table columns, types, references)
//! and the per-row check-and-encode step.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::copy::{Format, push_text_escaped};
use super::error::{Errors, RowError};
use super::reader::Record;
use super::refs::RefMap;
use super::schema::Table;
use super::types::PgType;

/// Longest value quoted back in an error.
const MAX_VALUE_IN_ERROR: usize = 200;

/// How one field of the file becomes one column value.
#[derive(Debug)]
pub struct FieldPlan {
    pub column: String,
    pub ty: PgType,
    pub not_null: bool,
    /// Index into [`FilePlan::refs`] for a reference column.
    pub reference: Option<usize>,
    /// `ref_table.lookup_col`, for messages.
    pub ref_label: Option<String>,
}

#[derive(Debug)]
pub struct FilePlan {
    pub file: String,
    pub table: Table,
    pub fields: Vec<FieldPlan>,
    pub refs: Vec<Arc<RefMap>>,
    pub format: Format,
    pub delimiter: u8,
}

/// Per-file counters that row encoding updates.
#[derive(Debug, Default)]
pub struct RowState {
    /// Rows handed to COPY.
    pub rows: u64,
    /// (COPY row number, file line) where the mapping stops being linear
    /// (multi-line or skipped records): maps PostgreSQL's "COPY ..., line N"
    /// back to the file without storing a line per row.
    pub anchors: Vec<(u64, u64)>,
    /// Scratch for checking values of a COPY text load.
    scratch: Vec<u8>,
}

impl RowState {
    /// File line of 1-based COPY row `n`.
    pub fn file_line(&self, n: u64) -> u64 {
        let i = self.anchors.partition_point(|&(row, _)| row <= n);
        match i.checked_sub(1).and_then(|i| self.anchors.get(i)) {
            Some(&(row, line)) => line + (n - row),
            None => n + 1,
        }
    }
}

impl FilePlan {
    pub fn copy_columns(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.column.as_str()).collect()
    }

    /// Check one record and append it to `buf` (nothing is appended when the
    /// record is refused). `Break` once the error cap is reached.
    pub fn encode_row(
        &self,
        rec: &Record<'_>,
        buf: &mut Vec<u8>,
        st: &mut RowState,
        errors: &mut Errors,
    ) -> ControlFlow<()> {
        if rec.len() != self.fields.len() {
            let other = if self.delimiter == b',' { ';' } else { ',' };
            errors.push(RowError {
                file: self.file.clone(),
                line: rec.line,
                column: None,
                value: None,
                reason: format!(
                    "{} fields, but the header has {} (wrong delimiter? the header uses {:?}; \
                     a row using {other:?} or an unquoted {:?} inside a value breaks the count)",
                    rec.len(),
                    self.fields.len(),
                    self.delimiter as char,
                    self.delimiter as char,
                ),
            });
            return self.cap(errors);
        }
        let start = buf.len();
        let ok = match self.format {
            Format::Binary => self.encode_binary(rec, buf, errors),
            Format::Text => self.encode_text(rec, buf, &mut st.scratch, errors),
        };
        if !ok {
            buf.truncate(start);
            return self.cap(errors);
        }
        st.rows += 1;
        let expected = st.file_line(st.rows);
        if expected != rec.line {
            st.anchors.push((st.rows, rec.line));
        }
        ControlFlow::Continue(())
    }

    fn cap(&self, errors: &Errors) -> ControlFlow<()> {
        if errors.full() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// The value to encode for field `i`: `Ok(None)` is NULL.
    fn value<'r>(&'r self, i: usize, raw: &'r [u8]) -> Result<Option<&'r [u8]>, String> {
        let f = &self.fields[i];
        if raw.is_empty() {
            if f.not_null {
                return Err(format!(
                    "empty value (NULL) in NOT NULL column {}",
                    f.column
                ));
            }
            return Ok(None);
        }
        match f.reference {
            None => Ok(Some(raw)),
            Some(r) => match self.refs[r].get(raw) {
                Some(v) => Ok(v),
                None => Err(format!(
                    "dangling reference: no row of {} has this value",
                    f.ref_label.as_deref().unwrap_or("the referenced table")
                )),
            },
        }
    }

    fn encode_binary(&self, rec: &Record<'_>, buf: &mut Vec<u8>, errors: &mut Errors) -> bool {
        let mut ok = true;
        buf.extend_from_slice(&(self.fields.len() as i16).to_be_bytes());
        for (i, f) in self.fields.iter().enumerate() {
            let raw = rec.get(i);
            match self.value(i, raw) {
                Ok(None) => buf.extend_from_slice(&(-1i32).to_be_bytes()),
                Ok(Some(v)) => {
                    let at = buf.len();
                    buf.extend_from_slice(&[0; 4]);
                    match f.ty.encode(v, buf) {
                        Ok(()) => {
                            let len = (buf.len() - at - 4) as i32;
                            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
                        }
                        Err(reason) => {
                            buf.truncate(at);
                            ok = false;
                            self.push_err(errors, rec, i, raw, v, &reason);
                        }
                    }
                }
                Err(reason) => {
                    ok = false;
                    self.push_err(errors, rec, i, raw, raw, &reason);
                }
            }
        }
        ok
    }

    fn encode_text(
        &self,
        rec: &Record<'_>,
        buf: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        errors: &mut Errors,
    ) -> bool {
        let mut ok = true;
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            let raw = rec.get(i);
            match self.value(i, raw) {
                Ok(None) => buf.extend_from_slice(b"\\N"),
                Ok(Some(v)) => {
                    scratch.clear();
                    match f.ty.encode(v, scratch) {
                        Ok(()) => push_text_escaped(buf, v),
                        Err(reason) => {
                            ok = false;
                            self.push_err(errors, rec, i, raw, v, &reason);
                        }
                    }
                }
                Err(reason) => {
                    ok = false;
                    self.push_err(errors, rec, i, raw, raw, &reason);
                }
            }
        }
        buf.push(b'\n');
        ok
    }

    fn push_err(
        &self,
        errors: &mut Errors,
        rec: &Record<'_>,
        i: usize,
        raw: &[u8],
        encoded: &[u8],
        reason: &str,
    ) {
        let f = &self.fields[i];
        let reason = if f.reference.is_some() && raw != encoded {
            format!(
                "referenced value {:?} does not fit {} {}: {reason}",
                String::from_utf8_lossy(encoded),
                f.column,
                f.ty
            )
        } else if raw.is_empty() || f.reference.is_some() {
            reason.to_owned()
        } else {
            format!("{reason} (column type {})", f.ty)
        };
        errors.push(RowError {
            file: self.file.clone(),
            line: rec.line,
            column: Some(f.column.clone()),
            value: (!raw.is_empty()).then(|| shorten(raw)),
            reason,
        });
    }
}

/// A value for an error message: lossy UTF-8, cut at a char boundary.
pub fn shorten(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if s.len() <= MAX_VALUE_IN_ERROR {
        return s.into_owned();
    }
    let mut end = MAX_VALUE_IN_ERROR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_map_back_to_lines() {
        let mut st = RowState::default();
        assert_eq!(st.file_line(1), 2);
        assert_eq!(st.file_line(5), 6);
        st.anchors.push((3, 10));
        assert_eq!(st.file_line(2), 3);
        assert_eq!(st.file_line(3), 10);
        assert_eq!(st.file_line(4), 11);
    }
}
