//! What a load reports when it refuses data or cannot finish.

use std::fmt;

use super::plan::{RowState, shorten};
use super::reader::Utf8Fault;

/// Result of the load library.
pub type Result<T, E = LoadError> = std::result::Result<T, E>;

/// One refused value, row, header or file, located as precisely as known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Name of the file (as given in the [`super::FileSpec`]).
    pub file: String,
    /// 1-based physical line in the file (the header is line 1); 0 when the
    /// problem is not tied to a line (e.g. a missing file).
    pub line: u64,
    /// Header column (or table column) concerned, when there is one.
    pub column: Option<String>,
    /// The offending value as read from the file, when there is one.
    pub value: Option<String>,
    /// Why it was refused and, where it helps, what to do.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(c) = &self.column {
            write!(f, " column {c}")?;
        }
        if let Some(v) = &self.value {
            write!(f, " value {v:?}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why a load did not complete. In every case nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The files break the Platform's rules or the table's constraints.
    #[error("load {load_id} refused, nothing written: {}", summarize(.errors, *.truncated))]
    Rejected {
        load_id: String,
        /// The first errors found (at most `max_errors`).
        errors: Vec<RowError>,
        /// The cap was reached: checking stopped there and more errors may
        /// follow in the files.
        truncated: bool,
    },
    /// The request itself is malformed (no files, bad delimiter, chunk for
    /// an unknown file...).
    #[error("invalid load request: {0}")]
    Spec(String),
    /// The load id was loaded before with other content: nothing written.
    #[error(
        "load {load_id} conflicts with what was loaded under that id at {loaded_at}: {}; \
         these files differ from it (SHA-256), so nothing was written; give new data a new load id",
        describe_files(.files)
    )]
    Conflict {
        load_id: String,
        loaded_at: String,
        /// The files the id belongs to.
        files: Vec<super::FileOutcome>,
    },
    /// The caller's input stream failed while reading a file.
    #[error("reading file {file} failed, nothing written: {source}")]
    Input {
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// PostgreSQL failed or the connection was lost; the transaction is
    /// rolled back (or never committed).
    #[error("database error while {context}, nothing written: {source}")]
    Database {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl LoadError {
    pub(crate) fn db(
        context: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> LoadError {
        let context = context.into();
        move |source| LoadError::Database { context, source }
    }

    /// The listed row errors, empty unless [`LoadError::Rejected`].
    pub fn row_errors(&self) -> &[RowError] {
        match self {
            LoadError::Rejected { errors, .. } => errors,
            _ => &[],
        }
    }
}

fn describe_files(files: &[super::FileOutcome]) -> String {
    if files.is_empty() {
        return "files not recorded".into();
    }
    files
        .iter()
        .map(|f| format!("{} -> {} ({} rows)", f.name, f.table, f.rows))
        .collect::<Vec<_>>()
        .join(", ")
}

fn summarize(errors: &[RowError], truncated: bool) -> String {
    let mut s = String::new();
    for (i, e) in errors.iter().take(10).enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        s.push_str(&e.to_string());
    }
    if errors.len() > 10 || truncated {
        s.push_str(&format!(
            "; ... ({} listed{})",
            errors.len(),
            if truncated { ", more not listed" } else { "" }
        ));
    }
    s
}

/// Collects row errors up to a cap.
#[derive(Debug)]
pub(crate) struct Errors {
    pub list: Vec<RowError>,
    pub max: usize,
    pub truncated: bool,
}

impl Errors {
    pub fn new(max: usize) -> Self {
        Errors {
            list: Vec::new(),
            max: max.max(1),
            truncated: false,
        }
    }

    pub fn push(&mut self, e: RowError) {
        if self.list.len() < self.max {
            self.list.push(e);
        } else {
            self.truncated = true;
        }
    }

    /// The cap is reached: further work cannot add to the report.
    pub fn full(&self) -> bool {
        self.list.len() >= self.max
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

pub(crate) fn utf8_error(file: &str, fault: &Utf8Fault, column: Option<String>) -> RowError {
    RowError {
        file: file.to_owned(),
        line: fault.line,
        column,
        value: None,
        reason: match fault.byte {
            Some(b) => format!(
                "not UTF-8: byte 0x{b:02x} at byte offset {} (line {}); files must be UTF-8 encoded",
                fault.offset, fault.line
            ),
            None => format!(
                "a record starting before byte offset {} exceeds {} MiB: \
                 probably a quote (\") that is never closed",
                fault.offset,
                super::reader::MAX_RECORD_BYTES >> 20
            ),
        },
    }
}

/// Turn PostgreSQL's COPY error ("COPY t, line 12, column c: ...") into a
/// row error at the file's line.
pub(crate) fn db_row_error(
    file: &str,
    db: Option<&tokio_postgres::error::DbError>,
    state: &RowState,
    e: &tokio_postgres::Error,
) -> RowError {
    let Some(db) = db else {
        return RowError {
            file: file.to_owned(),
            line: 0,
            column: None,
            value: None,
            reason: e.to_string(),
        };
    };
    let where_ = db.where_().unwrap_or("");
    let copy_line = where_.split_once(", line ").and_then(|(_, rest)| {
        let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
        n.parse::<u64>().ok()
    });
    let column = db.column().map(str::to_owned).or_else(|| {
        where_
            .split_once(", column ")
            .map(|(_, rest)| rest.split(':').next().unwrap_or(rest).to_owned())
    });
    let mut reason = format!("PostgreSQL refused the row: {}", db.message());
    if let Some(d) = db.detail() {
        reason.push_str(&format!(" ({d})"));
    }
    if let Some(c) = db.constraint() {
        reason.push_str(&format!(" [constraint {c}]"));
    }
    RowError {
        file: file.to_owned(),
        line: copy_line.map_or(0, |n| state.file_line(n)),
        column,
        value: where_
            .split_once(": \"")
            .map(|(_, v)| shorten(v.trim_end_matches('"').as_bytes())),
        reason,
    }
}
