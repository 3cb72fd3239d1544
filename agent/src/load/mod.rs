//! Load (the L of ETL): pre-transformed CSV files into a registry's
//! PostgreSQL, all or nothing.
//!
//! The caller streams the files' bytes as [`Chunk`]s (file after file, in
//! dependency order) and [`load`] checks them against the Platform's file
//! rules while it `COPY`s them into the target tables, in one transaction:
//!
//! * UTF-8 only; the first bad byte is reported with its offset and line.
//! * A header row of snake_case column names; unknown columns, and missing
//!   NOT NULL columns without a default, are refused.
//! * Delimiter `,` or `;`, given in [`LoadSpec::delimiter`] or detected from
//!   the header line.
//! * An empty field is NULL; arrays are PostgreSQL literals (`{a,b}`).
//! * `col::ref(lookup_col, ref_table, ref_col)` in the header: the file holds
//!   `ref_table.lookup_col` (unique), `col` receives the matching
//!   `ref_table.ref_col`. Rows of earlier files of the same load are seen;
//!   rows of the same file are not. In the header, the delimiter inside
//!   `ref(...)` does not split cells, so the cell needs no quotes.
//! * Values are checked against the column types (see [`types`]) and sent
//!   with COPY BINARY.
//! * Target and reference tables must be in [`LoadSpec::schemas`] (by
//!   default the Platform's `registry`); Ferry's own schema (the ledger)
//!   and PostgreSQL's `pg_*` and `information_schema` never are.
//!
//! On any refused value the transaction is rolled back and
//! [`LoadError::Rejected`] lists the first [`LoadSpec::max_errors`] errors
//! with file, line, column, value and reason. A load id is recorded in
//! `ferry.load_ledger` in the same transaction, with the load's content
//! digest: the same id and content again returns
//! [`LoadStatus::AlreadyLoaded`] with the original counts and writes nothing;
//! the same id with other content is [`LoadError::Conflict`].
//! A dry run does everything, including PostgreSQL's own constraint checks,
//! then rolls back. Dropping the future (or losing the connection) rolls
//! back too.

mod array;
mod copy;
mod datetime;
mod diagnose;
mod digest;
mod error;
#[cfg(test)]
mod fuzz;
mod header;
mod ledger;
pub mod mapping;
mod numeric;
mod pgcsv;
mod plan;
mod planning;
pub mod platform;
mod reader;
mod refs;
mod role;
mod run;
mod schema;
mod staged;
mod staged_row;
pub mod types;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use digest::declared as declared_digest;
pub use error::{LoadError, Result, RowError};
pub use ledger::{LEDGER_TABLE, check_same, lookup as ledger_lookup};
pub use role::superuser_warning;
pub use run::load;
pub use schema::{FORBIDDEN_SCHEMAS, check_schemas};

/// Where loads go unless the agent is told otherwise: the Platform's
/// registry data schema.
pub const DEFAULT_SCHEMAS: &[&str] = &["registry"];

/// Default cap on the errors listed by a refused load.
pub const DEFAULT_MAX_ERRORS: usize = 100;

/// What to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSpec {
    /// Idempotency key: a load id that was committed before is not loaded
    /// again.
    pub load_id: String,
    /// Files in dependency order (referenced tables first).
    pub files: Vec<FileSpec>,
    /// `b','` or `b';'`; `None` detects it per file from the header line.
    pub delimiter: Option<u8>,
    /// Validate everything, write nothing.
    pub dry_run: bool,
    /// How many errors to list before giving up (at least 1).
    pub max_errors: usize,
    /// The data schemas this load may write and read references from; an
    /// unqualified table name is looked up in them, in order. Ferry's own
    /// schema and PostgreSQL's are refused whatever this says.
    pub schemas: Vec<String>,
}

impl LoadSpec {
    pub fn new(load_id: impl Into<String>, files: Vec<FileSpec>) -> Self {
        LoadSpec {
            load_id: load_id.into(),
            files,
            delimiter: None,
            dry_run: false,
            max_errors: DEFAULT_MAX_ERRORS,
            schemas: DEFAULT_SCHEMAS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One file and its target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Name used in errors and progress (e.g. the client's file name).
    pub name: String,
    /// Target table, optionally schema-qualified; an unqualified name is
    /// looked up in [`LoadSpec::schemas`] (unquoted names fold to lower case).
    pub table: String,
    /// The SHA-256 (lowercase hex) the client declares for the file's bytes:
    /// checked against what arrives, and compared with the ledger's record
    /// when the load id was loaded before, without reading the data.
    pub sha256: Option<String>,
    /// The Platform's mapping, given outside the file: the file is read
    /// with PostgreSQL's CSV rules and written set-based (see
    /// [`mapping`]). `None`: the file's header names the columns.
    pub mapping: Option<FileMapping>,
}

/// `p_load_table_from_csv`'s third and fourth arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileMapping {
    /// The file's columns, in order.
    pub csv_columns: Vec<String>,
    /// Target elements (`col`, `col::<expr>`, `col::ref(…)`,
    /// `col::ref_array(…)`); empty: every CSV column as is.
    pub target_columns: Vec<String>,
}

impl FileSpec {
    pub fn new(name: impl Into<String>, table: impl Into<String>) -> Self {
        FileSpec {
            name: name.into(),
            table: table.into(),
            sha256: None,
            mapping: None,
        }
    }
}

/// A piece of file `file` (index into [`LoadSpec::files`]). Chunks of a file
/// come in order, and all chunks of a file before those of the next; a file
/// that gets no chunk at all is an empty file.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub file: usize,
    pub data: Bytes,
}

/// Progress after each chunk, after each batch of a mapped file's write,
/// and once more when a file is done. Totals
/// (for percentages and ETA) are the caller's: it knows the file sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Index of the file being loaded.
    pub file: usize,
    /// Rows of that file checked and sent so far.
    pub file_rows: u64,
    /// Bytes of that file read so far.
    pub file_bytes: u64,
    pub total_rows: u64,
    pub total_bytes: u64,
    /// Rows written into their tables so far, all files: a plain file's as
    /// its COPY streams them, a mapped file's batch by batch of its
    /// set-based write, which starts once the whole file is staged.
    pub total_written: u64,
    /// This file is complete (its COPY finished).
    pub file_done: bool,
}

/// How a load ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOutcome {
    pub load_id: String,
    pub status: LoadStatus,
    pub files: Vec<FileOutcome>,
    pub rows: u64,
    pub bytes: u64,
    /// The content digest recorded with the load (`None` for a ledger row
    /// written before digests were kept).
    pub digest: Option<String>,
    /// When the database recorded the load (`None` for a dry run).
    pub loaded_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadStatus {
    /// Committed now.
    Loaded,
    /// Nothing done: this id was committed before (counts are from then).
    AlreadyLoaded { loaded_at: String },
    /// Everything checked and rolled back.
    DryRun,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOutcome {
    pub name: String,
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
    /// `platform` (rows with system columns and history) or `plain`.
    #[serde(default)]
    pub model: String,
}
