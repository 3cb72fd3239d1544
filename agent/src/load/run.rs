//! The load itself: one transaction, the files one after the other.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_postgres::{Client, Transaction};

use super::copy::CopyWriter;
use super::digest::{self, FileHash};
use super::error::{Errors, LoadError, Result, RowError, db_row_error, utf8_error};
use super::header::{self, MAX_HEADER_BYTES};
use super::plan::{FilePlan, RowState};
use super::reader::{CsvStream, Utf8Fault};
use super::refs::RefMap;
use super::staged::StagedFile;
use super::{Chunk, FileOutcome, LoadOutcome, LoadSpec, LoadStatus, Progress, ledger};

/// Load `spec`'s files, read from `chunks`, into the database behind
/// `client`. See the module documentation for the rules. `progress` is
/// called after every chunk.
///
/// Returns once the transaction is committed (or rolled back for a dry
/// run). Any error means nothing was written.
#[tracing::instrument(
    skip_all,
    fields(load_id = %spec.load_id, files = spec.files.len(), dry_run = spec.dry_run)
)]
pub async fn load<S, E, P>(
    client: &mut Client,
    spec: &LoadSpec,
    chunks: S,
    mut progress: P,
) -> Result<LoadOutcome>
where
    S: Stream<Item = std::result::Result<Chunk, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    P: FnMut(&Progress),
{
    check_spec(spec)?;
    if !spec.dry_run {
        ledger::ensure(client).await?;
    }
    let has_expressions = spec.files.iter().any(|f| {
        f.mapping
            .as_ref()
            .is_some_and(|m| m.target_columns.iter().any(|t| has_expression(t)))
    });
    let eval_role = has_expressions && super::platform::ensure_eval_role(client).await;
    if has_expressions && !eval_role {
        tracing::warn!(
            role = super::platform::EVAL_ROLE,
            "cannot use the expression role (the agent's role may not create it or be granted it): \
             expressions run as the agent's role, guarded by the allow-list only"
        );
    }
    let txn = client
        .transaction()
        .await
        .map_err(LoadError::db("starting the load's transaction"))?;
    let already = if spec.dry_run {
        ledger::lookup(&txn, &spec.load_id).await?
    } else {
        ledger::claim(&txn, &spec.load_id).await?
    };
    if let Some(outcome) = already {
        let ours = match digest::declared(spec) {
            Some(d) => Some(d),
            // Undeclared content: read it (loading nothing) to compare.
            None if outcome.digest.is_some() => Some(stream_digest(spec, chunks).await?),
            None => None,
        };
        ledger::check_same(&outcome, ours.as_deref())?;
        tracing::info!(rows = outcome.rows, "load already done: nothing to do");
        return Ok(outcome);
    }
    let started = std::time::Instant::now();

    let mut run = Run {
        spec,
        txn: &txn,
        errors: Errors::new(spec.max_errors),
        refs: HashMap::new(),
        sources: None,
        eval_role,
        outcomes: Vec::with_capacity(spec.files.len()),
        digests: Vec::with_capacity(spec.files.len()),
        total: Progress::default(),
    };
    futures::pin_mut!(chunks);
    let mut current: Option<FileRun> = None;
    let mut next_file = 0usize;
    while let Some(item) = chunks.next().await {
        let chunk = match item {
            Ok(c) => c,
            Err(e) => {
                let file = current
                    .as_ref()
                    .map(|f| spec.files[f.idx].name.clone())
                    .unwrap_or_default();
                return Err(LoadError::Input {
                    file,
                    source: e.into(),
                });
            }
        };
        if current.as_ref().is_none_or(|f| f.idx != chunk.file) {
            if chunk.file < next_file || chunk.file >= spec.files.len() {
                return Err(LoadError::Spec(format!(
                    "chunk for file #{} out of order: files must be sent one after the other, \
                     in the order of the load's file list ({} files)",
                    chunk.file,
                    spec.files.len()
                )));
            }
            if let Some(f) = current.take() {
                run.finish_file(f, &mut progress).await?;
            }
            // Files that got no chunk at all are empty files.
            for idx in next_file..chunk.file {
                run.finish_file(FileRun::new(idx, spec), &mut progress)
                    .await?;
            }
            next_file = chunk.file + 1;
            current = Some(FileRun::new(chunk.file, spec));
        }
        if let Some(f) = current.as_mut() {
            run.feed(f, &chunk.data).await?;
            progress(&run.progress(f, false));
        }
    }
    if let Some(f) = current.take() {
        run.finish_file(f, &mut progress).await?;
    }
    for idx in next_file..spec.files.len() {
        run.finish_file(FileRun::new(idx, spec), &mut progress)
            .await?;
    }
    if !run.errors.is_empty() {
        tracing::info!(errors = run.errors.list.len(), "load refused, rolling back");
        return Err(run.rejected());
    }
    // Deferred constraints (e.g. DEFERRABLE foreign keys) are checked now,
    // so that a dry run sees them too and a commit cannot fail on them.
    if let Err(e) = txn.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await {
        run.errors
            .push(db_row_error("", e.as_db_error(), &RowState::default(), &e));
        return Err(run.rejected());
    }
    let rows = run.outcomes.iter().map(|f| f.rows).sum();
    let bytes = run.outcomes.iter().map(|f| f.bytes).sum();
    let mut outcome = LoadOutcome {
        load_id: spec.load_id.clone(),
        status: LoadStatus::Loaded,
        files: std::mem::take(&mut run.outcomes),
        rows,
        bytes,
        digest: Some(digest::of_mapped_files(
            spec.files
                .iter()
                .zip(&run.digests)
                .map(|(f, d)| (f.table.as_str(), d.as_str(), f.mapping.as_ref())),
        )),
        loaded_at: None,
    };
    tracing::info!(
        rows,
        bytes,
        secs = started.elapsed().as_secs_f64(),
        "load checked{}",
        if spec.dry_run {
            " (dry run, rolling back)"
        } else {
            ", committing"
        }
    );
    if spec.dry_run {
        txn.rollback()
            .await
            .map_err(LoadError::db("rolling back the dry run"))?;
        outcome.status = LoadStatus::DryRun;
        return Ok(outcome);
    }
    outcome.loaded_at = Some(ledger::complete(&txn, &outcome).await?);
    txn.commit()
        .await
        .map_err(LoadError::db(format!("committing load {}", spec.load_id)))?;
    Ok(outcome)
}

/// The digest of a load's content read from its chunks, loading nothing.
async fn stream_digest<S, E>(spec: &LoadSpec, chunks: S) -> Result<String>
where
    S: Stream<Item = std::result::Result<Chunk, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut hashes: Vec<FileHash> = spec.files.iter().map(|_| FileHash::new()).collect();
    futures::pin_mut!(chunks);
    while let Some(item) = chunks.next().await {
        let chunk = item.map_err(|e| LoadError::Input {
            file: String::new(),
            source: e.into(),
        })?;
        let Some(h) = hashes.get_mut(chunk.file) else {
            return Err(LoadError::Spec(format!(
                "chunk for file #{} of a load of {} files",
                chunk.file,
                spec.files.len()
            )));
        };
        h.update(&chunk.data);
    }
    let shas: Vec<String> = hashes.into_iter().map(FileHash::finish).collect();
    Ok(digest::of_mapped_files(spec.files.iter().zip(&shas).map(
        |(f, d)| (f.table.as_str(), d.as_str(), f.mapping.as_ref()),
    )))
}

fn check_spec(spec: &LoadSpec) -> Result<()> {
    if spec.load_id.trim().is_empty() {
        return Err(LoadError::Spec("the load id is empty".into()));
    }
    if spec.files.is_empty() {
        return Err(LoadError::Spec("the load names no file".into()));
    }
    super::schema::check_schemas(&spec.schemas).map_err(LoadError::Spec)?;
    if let Some(d) = spec.delimiter
        && d != b','
        && d != b';'
    {
        return Err(LoadError::Spec(format!(
            "delimiter {:?} is not supported: use ',' or ';'",
            d as char
        )));
    }
    // Every mapping, expressions included, is checked before a byte is
    // loaded.
    let mut errors = Vec::new();
    for f in &spec.files {
        if let Some(m) = &f.mapping
            && let Err(errs) = super::mapping::parse(&f.table, &m.csv_columns, &m.target_columns)
        {
            errors.extend(
                errs.into_iter()
                    .map(|e| super::staged::mapping_error(&f.name, e)),
            );
        }
    }
    if !errors.is_empty() {
        errors.truncate(spec.max_errors.max(1));
        return Err(LoadError::Rejected {
            load_id: spec.load_id.clone(),
            errors,
            truncated: false,
        });
    }
    Ok(())
}

/// A target element with an SQL expression (not a plain column or a
/// reference).
fn has_expression(element: &str) -> bool {
    element.split_once("::").is_some_and(|(_, rest)| {
        let rest = rest.trim();
        !rest.starts_with("ref(") && !rest.starts_with("ref_array(")
    })
}

/// State shared by the files of one load.
pub(super) struct Run<'a, 't> {
    pub(super) spec: &'a LoadSpec,
    pub(super) txn: &'a Transaction<'t>,
    pub(super) errors: Errors,
    /// Reference maps by (table oid, lookup column, referenced column);
    /// dropped when a later file loads into that table.
    pub(super) refs: HashMap<(u32, String, String), Arc<RefMap>>,
    /// The Platform's source ids, resolved once per load.
    pub(super) sources: Option<super::platform::SourceIds>,
    /// Expressions run under [`super::platform::EVAL_ROLE`].
    pub(super) eval_role: bool,
    outcomes: Vec<FileOutcome>,
    /// Each finished file's SHA-256, in order.
    digests: Vec<String>,
    total: Progress,
}

/// One file being read.
struct FileRun {
    idx: usize,
    bytes: u64,
    hash: FileHash,
    phase: Phase,
}

enum Phase {
    /// Collecting the header line.
    Header(Vec<u8>),
    Body(Box<Body>),
    /// A file with a mapping: staged, then written set-based; `None`
    /// until its first chunk.
    Mapped(Option<Box<StagedFile>>),
    /// Refused at the header or cut by bad UTF-8: the rest is discarded.
    Skip,
}

struct Body {
    csv: CsvStream,
    plan: FilePlan,
    copy: CopyWriter,
    state: RowState,
}

impl FileRun {
    fn new(idx: usize, spec: &LoadSpec) -> Self {
        let mapped = spec.files.get(idx).is_some_and(|f| f.mapping.is_some());
        FileRun {
            idx,
            bytes: 0,
            hash: FileHash::new(),
            phase: if mapped {
                Phase::Mapped(None)
            } else {
                Phase::Header(Vec::new())
            },
        }
    }
}

impl Run<'_, '_> {
    fn name(&self, idx: usize) -> String {
        self.spec.files[idx].name.clone()
    }

    fn progress(&self, f: &FileRun, done: bool) -> Progress {
        // A plain file's rows are written as its COPY streams them; a
        // mapped file's only by its set-based write, once it is staged.
        let (file_rows, file_written) = match &f.phase {
            Phase::Body(b) => (b.state.rows, b.state.rows),
            Phase::Mapped(Some(s)) => (s.rows, 0),
            _ => (0, 0),
        };
        Progress {
            file: f.idx,
            file_rows,
            file_bytes: f.bytes,
            total_rows: self.total.total_rows + file_rows,
            total_bytes: self.total.total_bytes + f.bytes,
            total_written: self.total.total_written + file_written,
            file_done: done,
        }
    }

    fn rejected(&mut self) -> LoadError {
        let truncated = self.errors.truncated || self.errors.full();
        LoadError::Rejected {
            load_id: self.spec.load_id.clone(),
            errors: std::mem::take(&mut self.errors.list),
            truncated,
        }
    }

    /// Stop now if the error cap is reached (nothing more can be reported).
    fn check_cap(&mut self) -> Result<()> {
        if self.errors.full() {
            return Err(self.rejected());
        }
        Ok(())
    }

    async fn feed(&mut self, f: &mut FileRun, data: &[u8]) -> Result<()> {
        f.bytes += data.len() as u64;
        f.hash.update(data);
        match &mut f.phase {
            Phase::Skip => Ok(()),
            Phase::Mapped(slot) => {
                if slot.is_none() {
                    match self.start_staged(f.idx).await? {
                        Some(s) => *slot = Some(Box::new(s)),
                        None => {
                            f.phase = Phase::Skip;
                            return self.check_cap();
                        }
                    }
                }
                let Phase::Mapped(Some(s)) = &mut f.phase else {
                    return Ok(());
                };
                if !self.feed_staged(s, data).await? {
                    f.phase = Phase::Skip;
                }
                Ok(())
            }
            Phase::Header(pending) => {
                let seen = pending.len();
                pending.extend_from_slice(data);
                let Some(nl) = pending[seen..].iter().position(|&b| b == b'\n') else {
                    if pending.len() > MAX_HEADER_BYTES {
                        self.errors.push(self.file_error(
                            f.idx,
                            1,
                            format!(
                                "no header line within the first {MAX_HEADER_BYTES} bytes: \
                             the file must start with a header row naming the columns"
                            ),
                        ));
                        f.phase = Phase::Skip;
                        self.check_cap()?;
                    }
                    return Ok(());
                };
                let pending = std::mem::take(pending);
                self.start_body(f, pending, Some(seen + nl)).await
            }
            Phase::Body(body) => {
                let res = body.csv.feed(data, &mut |rec| {
                    body.plan.encode_row(
                        &rec,
                        &mut body.copy.buf,
                        &mut body.state,
                        &mut self.errors,
                    )
                });
                self.after_feed(f, res).await
            }
        }
    }

    async fn after_feed(
        &mut self,
        f: &mut FileRun,
        res: std::result::Result<ControlFlow<()>, Utf8Fault>,
    ) -> Result<()> {
        let Phase::Body(body) = &mut f.phase else {
            return Ok(());
        };
        match res {
            Ok(ControlFlow::Break(())) => return Err(self.rejected()),
            Ok(ControlFlow::Continue(())) => {}
            Err(fault) => {
                let column = body.plan.fields.get(fault.field).map(|c| c.column.clone());
                self.errors
                    .push(utf8_error(&self.spec.files[f.idx].name, &fault, column));
                // Close the COPY cleanly so the transaction stays usable for
                // checking the other files; everything is rolled back anyway.
                if let Phase::Body(body) = std::mem::replace(&mut f.phase, Phase::Skip) {
                    self.close_copy(f.idx, *body).await?;
                }
                return self.check_cap();
            }
        }
        if let Err(e) = body.copy.flush_if_full().await {
            return Err(self.copy_failed(f.idx, &body.state, e));
        }
        Ok(())
    }

    /// The header line is `pending[..nl]` (`nl` None: the whole file).
    async fn start_body(
        &mut self,
        f: &mut FileRun,
        pending: Vec<u8>,
        nl: Option<usize>,
    ) -> Result<()> {
        let end = nl.unwrap_or(pending.len());
        let mut line = &pending[..end];
        line = line.strip_suffix(b"\r").unwrap_or(line);
        let bom = line.starts_with(b"\xef\xbb\xbf");
        if bom {
            line = &line[3..];
        }
        if let Err(e) = std::str::from_utf8(line) {
            let fault = Utf8Fault {
                offset: (e.valid_up_to() + if bom { 3 } else { 0 }) as u64,
                line: 1,
                field: 0,
                byte: Some(line[e.valid_up_to()]),
            };
            self.errors
                .push(utf8_error(&self.spec.files[f.idx].name, &fault, None));
            f.phase = Phase::Skip;
            return self.check_cap();
        }
        let delimiter = self
            .spec
            .delimiter
            .unwrap_or_else(|| header::detect_delimiter(line));
        let cells = header::split_header(line, delimiter);
        let plan = match self.plan(f.idx, &cells, delimiter).await? {
            Some(p) => p,
            None => {
                f.phase = Phase::Skip;
                return self.check_cap();
            }
        };
        let copy = CopyWriter::start(self.txn, &plan.table, &plan.copy_columns(), plan.format)
            .await
            .map_err(LoadError::db(format!(
                "starting COPY into {} for file {}",
                plan.table.sql_name,
                self.name(f.idx)
            )))?;
        let body_start = nl.map_or(pending.len(), |n| n + 1);
        let mut body = Box::new(Body {
            csv: CsvStream::new(delimiter, 2, body_start as u64),
            plan,
            copy,
            state: RowState::default(),
        });
        let rest = &pending[body_start..];
        let b = &mut *body;
        let res = b.csv.feed(rest, &mut |rec| {
            b.plan
                .encode_row(&rec, &mut b.copy.buf, &mut b.state, &mut self.errors)
        });
        f.phase = Phase::Body(body);
        self.after_feed(f, res).await
    }

    async fn finish_file<P: FnMut(&Progress)>(
        &mut self,
        mut f: FileRun,
        progress: &mut P,
    ) -> Result<()> {
        let spec_file = &self.spec.files[f.idx];
        let mut model = "plain";
        let mut mapped_rows = None;
        if let Phase::Mapped(slot) = &mut f.phase {
            let staged = match slot.take() {
                Some(s) => Some(*s),
                // No chunk at all: an empty file, reported at line 1.
                None => self.start_staged(f.idx).await?,
            };
            if let Some(s) = staged {
                model = s.plan.model.name();
                let oid = s.plan.table.oid;
                let (base, idx, bytes) = (self.total, f.idx, f.bytes);
                let mut writing = |read: u64, written: u64| {
                    progress(&Progress {
                        file: idx,
                        file_rows: read,
                        file_bytes: bytes,
                        total_rows: base.total_rows + read,
                        total_bytes: base.total_bytes + bytes,
                        total_written: base.total_written + written,
                        file_done: false,
                    })
                };
                mapped_rows = Some(self.finish_staged(s, &mut writing).await?);
                // Later files must see this file's rows in their references.
                self.refs.retain(|k, _| k.0 != oid);
            }
            f.phase = Phase::Skip;
        }
        if let Phase::Header(pending) = &mut f.phase {
            let pending = std::mem::take(pending);
            let blank = pending
                .strip_prefix(b"\xef\xbb\xbf")
                .unwrap_or(&pending)
                .iter()
                .all(u8::is_ascii_whitespace);
            if blank {
                self.errors.push(self.file_error(
                    f.idx,
                    0,
                    "empty file: it must start with a header row naming the columns".into(),
                ));
                f.phase = Phase::Skip;
                self.check_cap()?;
            } else {
                self.start_body(&mut f, pending, None).await?;
            }
        }
        let mut rows = mapped_rows.unwrap_or(0);
        if let Phase::Body(body) = &mut f.phase {
            let b = &mut **body;
            let res = b.csv.finish(&mut |rec| {
                b.plan
                    .encode_row(&rec, &mut b.copy.buf, &mut b.state, &mut self.errors)
            });
            self.after_feed(&mut f, res).await?;
        }
        if let Phase::Body(body) = std::mem::replace(&mut f.phase, Phase::Skip) {
            rows = body.state.rows;
            let table_oid = body.plan.table.oid;
            self.close_copy(f.idx, *body).await?;
            // Later files must see this file's rows in their references.
            self.refs.retain(|k, _| k.0 != table_oid);
        }
        let done = Progress {
            file: f.idx,
            file_rows: rows,
            file_bytes: f.bytes,
            total_rows: self.total.total_rows + rows,
            total_bytes: self.total.total_bytes + f.bytes,
            total_written: self.total.total_written + rows,
            file_done: true,
        };
        self.total = done;
        progress(&done);
        let sha256 = f.hash.finish();
        if let Some(declared) = &spec_file.sha256
            && !declared.eq_ignore_ascii_case(&sha256)
        {
            return Err(LoadError::Input {
                file: spec_file.name.clone(),
                source: format!(
                    "the bytes received have SHA-256 {sha256}, not the {declared} declared for the file: \
                     it changed while it was read, or the upload was damaged; start the load again"
                )
                .into(),
            });
        }
        self.digests.push(sha256);
        self.outcomes.push(FileOutcome {
            name: spec_file.name.clone(),
            table: spec_file.table.clone(),
            rows,
            bytes: f.bytes,
            model: model.to_owned(),
        });
        Ok(())
    }

    async fn close_copy(&mut self, idx: usize, body: Body) -> Result<()> {
        let Body { copy, state, .. } = body;
        match copy.finish().await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.copy_failed(idx, &state, e)),
        }
    }

    /// PostgreSQL refused the COPY (constraint, trigger...) or the
    /// connection broke: the transaction is unusable, so the load stops.
    fn copy_failed(&mut self, idx: usize, state: &RowState, e: tokio_postgres::Error) -> LoadError {
        match e.as_db_error() {
            Some(db) => {
                let err = db_row_error(&self.spec.files[idx].name, Some(db), state, &e);
                self.errors.push(err);
                self.rejected()
            }
            None => LoadError::db(format!("loading file {}", self.name(idx)))(e),
        }
    }

    pub(super) fn file_error(&self, idx: usize, line: u64, reason: String) -> RowError {
        RowError {
            file: self.name(idx),
            line,
            column: None,
            value: None,
            reason,
        }
    }
}
