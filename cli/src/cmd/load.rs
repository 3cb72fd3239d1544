//! `ferry load`: stream CSV files from disk into a cluster's registry
//! database through the coordinator, and follow loads.
//!
//! Exit codes: 0 loaded (or already loaded, or dry run passed); 1 the data
//! was rejected or the load failed; 3 refused (role, precondition such as a
//! load of the same id running, or the id loaded before with other files);
//! 4 coordinator unreachable.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use ferry_common::pb::{self, LoadState, load_event::Event, loads_client::LoadsClient};
use ferry_proto::names::Named;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::client::usage;
use crate::output::{self, OutputFormat};
use crate::{ClientArgs, exit};

/// Bytes read from disk per chunk: nothing is staged beyond one chunk per file.
const READ_SIZE: usize = ferry_common::limits::LOAD_CHUNK;

#[derive(Debug, clap::Subcommand)]
pub enum LoadCommand {
    /// Load files into a cluster's database, all or nothing, and follow it.
    Start(Box<StartArgs>),
    /// Show a load.
    Get { id: String },
    /// List loads.
    List,
    /// Follow a load until it ends.
    Watch { id: String },
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Cluster whose agent loads the files.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Database name in that agent's configuration (`--database name=url`).
    #[arg(long)]
    pub database: Option<String>,
    /// `path=table`, repeatable, in dependency order (referenced tables first).
    #[arg(long = "file", value_parser = parse_file)]
    pub files: Vec<(PathBuf, String)>,
    /// JSON: {"cluster", "database", "delimiter", "files": [{"path", "table"}]};
    /// paths relative to the manifest. Flags given as well win.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The load's id; the same id again loads nothing twice. Default: a new one.
    #[arg(long, default_value = "")]
    pub id: String,
    /// `,` or `;`; default: detected from each file's header.
    #[arg(long)]
    pub delimiter: Option<char>,
    /// Check everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Errors to list before giving up (0: the default, 100).
    #[arg(long, default_value_t = 0)]
    pub max_errors: u32,
    /// `FILE=a,b,c`: the file's columns in order (the Platform's
    /// csv_columns); the file's header row is then skipped. Repeatable,
    /// one per file (FILE as given to --file, or its name).
    #[arg(long = "csv-columns", value_parser = parse_keyed)]
    pub csv_columns: Vec<(String, String)>,
    /// `FILE=elem,elem`: the target columns (the Platform's
    /// target_columns): `col`, `col::<expression>`,
    /// `col::ref(lookup_col:…,ref_table:…,ref_col:…,ref_id:…)`,
    /// `col::ref_array(…,delim:…)`. Needs --csv-columns for the same file.
    #[arg(long = "target-columns", value_parser = parse_keyed)]
    pub target_columns: Vec<(String, String)>,
    /// A Liquibase changelog whose `<sql>` blocks CALL
    /// p_load_table_from_csv: each changeSet is loaded all or nothing, and
    /// a re-run skips what was loaded.
    #[arg(long)]
    pub changelog: Option<PathBuf>,
    /// Where the changelog's `${dataLoadPath}` points on this machine.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `NAME=VALUE` for the changelog's `${NAME}`, repeatable.
    #[arg(long = "property", value_parser = parse_keyed)]
    pub properties: Vec<(String, String)>,
    /// Files with their mappings, as a changelog gives them.
    #[arg(skip)]
    pub entries: Vec<FileEntry>,
}

fn parse_keyed(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("bad value {s:?}: use KEY=VALUE")),
    }
}

/// Split a list at commas outside parentheses and quotes, so that
/// `a,b::ref(lookup_col:x,ref_table:t,ref_col:c,ref_id:id)` is two elements.
pub fn split_elements(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
    for c in s.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() || !out.is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn parse_file(s: &str) -> Result<(PathBuf, String), String> {
    match s.rsplit_once('=') {
        Some((p, t)) if !p.is_empty() && !t.is_empty() => Ok((PathBuf::from(p), t.to_string())),
        _ => Err(format!("bad file {s:?}: use path=table")),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    cluster: Option<String>,
    database: Option<String>,
    delimiter: Option<String>,
    #[serde(default)]
    files: Vec<ManifestFile>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    path: PathBuf,
    table: String,
    /// The Platform's csv_columns (the file's columns in order).
    #[serde(default)]
    csv_columns: Vec<String>,
    /// The Platform's target_columns.
    #[serde(default)]
    target_columns: Vec<String>,
}

/// One file to load and how.
#[derive(Debug, Clone)]
pub struct FileEntry {
    pub path: PathBuf,
    pub table: String,
    pub csv_columns: Vec<String>,
    pub target_columns: Vec<String>,
}

pub async fn run(client: &ClientArgs, cmd: LoadCommand, out: OutputFormat) -> anyhow::Result<u8> {
    let mut loads = LoadsClient::new(client.channel().await?);
    match cmd {
        LoadCommand::Start(args) if args.changelog.is_some() => {
            run_changelog(&mut loads, *args, out).await
        }
        LoadCommand::Start(args) => {
            let status = start(&mut loads, *args, out).await?;
            Ok(print(&status, out))
        }
        LoadCommand::Get { id } => {
            let l = loads
                .get_load(pb::GetLoadRequest { load_id: id })
                .await?
                .into_inner();
            Ok(print(&l, out))
        }
        LoadCommand::List => {
            let list = loads
                .list_loads(pb::ListLoadsRequest {})
                .await?
                .into_inner();
            match out {
                OutputFormat::Json => output::print_json(
                    &json!({"loads": list.loads.iter().map(load_json).collect::<Vec<_>>()}),
                ),
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = list
                        .loads
                        .iter()
                        .map(|l| {
                            let s = l.spec.clone().unwrap_or_default();
                            vec![
                                l.load_id.clone(),
                                LoadState::name_of(l.state).into(),
                                s.cluster_id,
                                s.database,
                                l.rows.to_string(),
                                l.attempt.to_string(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        output::table(
                            &["ID", "STATE", "CLUSTER", "DATABASE", "ROWS", "ATTEMPTS"],
                            &rows
                        )
                    );
                }
            }
            Ok(exit::OK)
        }
        LoadCommand::Watch { id } => {
            let mut stream = loads
                .watch_load(pb::GetLoadRequest { load_id: id })
                .await?
                .into_inner();
            let mut bar = Bar::new(out);
            let mut last = None;
            while let Some(l) = stream.next().await {
                let l = l?;
                if let Some(p) = &l.progress {
                    bar.show(&l.load_id, p);
                }
                last = Some(l);
            }
            bar.done();
            let l = last.context("the coordinator ended the watch without a status")?;
            Ok(print(&l, out))
        }
    }
}

/// Loads a Liquibase changelog's changeSets one after the other, each all
/// or nothing, and stops at the first that does not load (as Liquibase
/// does). A changeSet loaded before (same file, id and author, same
/// content) is skipped; the same changeSet with changed content is a
/// conflict (exit 3).
async fn run_changelog(
    loads: &mut LoadsClient<tonic::transport::Channel>,
    args: StartArgs,
    out: OutputFormat,
) -> anyhow::Result<u8> {
    let Some(path) = args.changelog.clone() else {
        return usage("name the changelog: --changelog data-load.xml");
    };
    let Some(data_dir) = args.data_dir.clone() else {
        return usage("name where ${dataLoadPath} points on this machine: --data-dir DIR");
    };
    if !args.files.is_empty() || args.manifest.is_some() {
        return usage("--changelog names the files itself: leave out --file and --manifest");
    }
    let log = crate::cmd::load_changelog::read(&path, &data_dir, &args.properties)?;
    let mut results = Vec::new();
    let mut code = exit::OK;
    for cs in &log.change_sets {
        let load_id = cs.load_id(&log.file);
        let mut one = json!({
            "id": cs.id, "author": cs.author, "file": log.file, "line": cs.line, "load_id": load_id,
        });
        if cs.calls.is_empty() {
            one["state"] = json!("nothing-to-load");
            results.push(one);
            continue;
        }
        let entries = cs
            .calls
            .iter()
            .map(|c| FileEntry {
                path: c.file.clone(),
                table: c.table.clone(),
                csv_columns: c.csv_columns.clone(),
                target_columns: c.target_columns.clone(),
            })
            .collect();
        let sub = StartArgs {
            cluster: args.cluster.clone(),
            database: args.database.clone(),
            files: vec![],
            manifest: None,
            id: load_id.clone(),
            delimiter: args.delimiter,
            dry_run: args.dry_run,
            max_errors: args.max_errors,
            csv_columns: vec![],
            target_columns: vec![],
            changelog: None,
            data_dir: None,
            properties: vec![],
            entries,
        };
        if out == OutputFormat::Table {
            eprintln!(
                "changeSet {} by {} ({}:{}): load {load_id}",
                output::printable(&cs.id),
                output::printable(&cs.author),
                output::printable(&log.file),
                cs.line
            );
        }
        let status = match start(loads, sub, out).await {
            Ok(s) => s,
            Err(e) => {
                print_changelog(&log, &results, out);
                return Err(e.context(format!(
                    "changeSet {} by {} ({}:{})",
                    cs.id, cs.author, log.file, cs.line
                )));
            }
        };
        let c = match out {
            OutputFormat::Table => print(&status, out),
            OutputFormat::Json => exit_code(&status),
        };
        let mut j = load_json(&status);
        if status.state == LoadState::AlreadyLoaded as i32 {
            j["state"] = json!("skipped: already loaded");
        }
        one["load"] = j;
        results.push(one);
        if c != exit::OK {
            code = c;
            break;
        }
    }
    print_changelog(&log, &results, out);
    Ok(code)
}

fn print_changelog(
    log: &crate::cmd::load_changelog::Changelog,
    results: &[Value],
    out: OutputFormat,
) {
    let not_run: Vec<Value> = log
        .not_run
        .iter()
        .map(|n| json!({"line": n.line, "what": n.what}))
        .collect();
    match out {
        OutputFormat::Json => output::print_json(&json!({
            "changelog": log.file,
            "change_sets": results,
            "not_run": not_run,
        })),
        OutputFormat::Table => {
            for n in &log.not_run {
                println!(
                    "{}:{}: not run: {}",
                    output::printable(&log.file),
                    n.line,
                    output::printable(&n.what)
                );
            }
        }
    }
}

/// Merges the manifest and the flags into a spec and the files to read.
fn plan(args: StartArgs) -> anyhow::Result<(pb::LoadSpec, Vec<PathBuf>)> {
    let manifest = match &args.manifest {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading manifest {}", path.display()))?;
            let m: Manifest = serde_json::from_str(&text).with_context(|| {
                format!("manifest {} is not a valid load manifest", path.display())
            })?;
            let base = path.parent().unwrap_or(Path::new("."));
            let files = m
                .files
                .iter()
                .map(|f| FileEntry {
                    path: base.join(&f.path),
                    table: f.table.clone(),
                    csv_columns: f.csv_columns.clone(),
                    target_columns: f.target_columns.clone(),
                })
                .collect();
            (m, files)
        }
        None => (Manifest::default(), vec![]),
    };
    let (m, manifest_files): (Manifest, Vec<FileEntry>) = manifest;
    let mut files = if !args.entries.is_empty() {
        args.entries.clone()
    } else if args.files.is_empty() {
        manifest_files
    } else {
        args.files
            .iter()
            .map(|(p, t)| FileEntry {
                path: p.clone(),
                table: t.clone(),
                csv_columns: vec![],
                target_columns: vec![],
            })
            .collect()
    };
    for (key, list, is_csv) in args
        .csv_columns
        .iter()
        .map(|(k, v)| (k, v, true))
        .chain(args.target_columns.iter().map(|(k, v)| (k, v, false)))
    {
        let Some(f) = files.iter_mut().find(|f| {
            f.path == Path::new(key)
                || f.path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy() == key.as_str())
        }) else {
            return usage(format!(
                "--{}-columns {key}=…: no --file names {key}",
                if is_csv { "csv" } else { "target" }
            ));
        };
        let parsed = split_elements(list);
        if is_csv {
            f.csv_columns = parsed;
        } else {
            f.target_columns = parsed;
        }
    }
    if let Some(f) = files
        .iter()
        .find(|f| f.csv_columns.is_empty() && !f.target_columns.is_empty())
    {
        return usage(format!(
            "{}: target columns need the file's columns too (--csv-columns {}=a,b,…)",
            f.path.display(),
            f.path.display()
        ));
    }
    if files.is_empty() {
        return usage(
            "name the files to load: --file path=table (repeatable) or --manifest load.json",
        );
    }
    let Some(cluster) = args.cluster.or(m.cluster) else {
        return usage("name the cluster: --cluster");
    };
    let Some(database) = args.database.or(m.database) else {
        return usage("name the database: --database");
    };
    let delimiter = args
        .delimiter
        .map(String::from)
        .or(m.delimiter)
        .unwrap_or_default();
    let mut specs = vec![];
    for FileEntry {
        path,
        table,
        csv_columns,
        target_columns,
    } in &files
    {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if !meta.is_file() {
            return usage(format!(
                "{} is not a file{}: name each CSV file to load (--file path=table)",
                path.display(),
                if meta.is_dir() {
                    " but a directory"
                } else {
                    ""
                }
            ));
        }
        let (sha256, rows) = sha256_file(path)?;
        specs.push(pb::LoadFile {
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            table: table.clone(),
            size: meta.len(),
            sha256,
            csv_columns: csv_columns.clone(),
            target_columns: target_columns.clone(),
            rows,
        });
    }
    let load_id = if args.id.is_empty() {
        new_id()
    } else {
        args.id
    };
    let spec = pb::LoadSpec {
        load_id,
        cluster_id: cluster,
        database,
        files: specs,
        delimiter,
        dry_run: args.dry_run,
        max_errors: args.max_errors,
    };
    Ok((spec, files.into_iter().map(|f| f.path).collect()))
}

/// The file's SHA-256 (lowercase hex): with the tables, what makes a
/// repeated load id the same load (the agent checks the bytes against it);
/// and its data rows (lines after the header), for progress by rows.
fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; READ_SIZE];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        lines += 1;
    }
    let hex = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Lines, not records: a quoted value with a newline counts twice.
    Ok((hex, lines.saturating_sub(1)))
}

fn new_id() -> String {
    let bytes: [u8; 8] = rand_bytes();
    format!(
        "load-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn rand_bytes() -> [u8; 8] {
    // Time and pid are unique enough for an id the user may also choose.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 40)).to_be_bytes()
}

/// The upload: the spec, then each file read from disk chunk by chunk, then
/// `end`. A read error ends the stream without `end` (so the agent rolls
/// back) and is kept in `failure` for the message.
fn upload(
    spec: pb::LoadSpec,
    paths: Vec<PathBuf>,
    failure: Arc<Mutex<Option<String>>>,
) -> impl futures::Stream<Item = pb::LoadUpload> + Send + 'static {
    use pb::load_upload::Msg;
    struct State {
        spec: Option<pb::LoadSpec>,
        paths: Vec<PathBuf>,
        idx: usize,
        file: Option<tokio::fs::File>,
        sent: u64,
        done: bool,
        failure: Arc<Mutex<Option<String>>>,
    }
    impl State {
        fn fail(&mut self, message: String) -> Option<pb::LoadUpload> {
            if let Ok(mut f) = self.failure.lock() {
                *f = Some(message);
            }
            self.done = true;
            None
        }

        async fn next(&mut self) -> Option<pb::LoadUpload> {
            if let Some(spec) = self.spec.take() {
                return Some(pb::LoadUpload {
                    msg: Some(Msg::Spec(spec)),
                });
            }
            while !self.done {
                let Some(path) = self.paths.get(self.idx).cloned() else {
                    self.done = true;
                    let end = pb::LoadEnd { bytes: self.sent };
                    return Some(pb::LoadUpload {
                        msg: Some(Msg::End(end)),
                    });
                };
                let file = match self.file.as_mut() {
                    Some(f) => f,
                    None => match tokio::fs::File::open(&path).await {
                        Ok(f) => self.file.insert(f),
                        Err(e) => return self.fail(format!("cannot open {}: {e}", path.display())),
                    },
                };
                let mut buf = vec![0u8; READ_SIZE];
                match file.read(&mut buf).await {
                    Ok(0) => {
                        self.file = None;
                        self.idx += 1;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        self.sent += n as u64;
                        let chunk = pb::LoadChunk {
                            file: self.idx as u32,
                            data: buf.into(),
                        };
                        return Some(pb::LoadUpload {
                            msg: Some(Msg::Chunk(chunk)),
                        });
                    }
                    Err(e) => return self.fail(format!("cannot read {}: {e}", path.display())),
                }
            }
            None
        }
    }
    let state = State {
        spec: Some(spec),
        paths,
        idx: 0,
        file: None,
        sent: 0,
        done: false,
        failure,
    };
    futures::stream::unfold(state, |mut s| async move { s.next().await.map(|m| (m, s)) })
}

/// Streams the files and follows the load to its end (progress on stderr
/// for `Table`); returns how it ended.
pub async fn start(
    loads: &mut LoadsClient<tonic::transport::Channel>,
    args: StartArgs,
    out: OutputFormat,
) -> anyhow::Result<pb::LoadStatus> {
    let (spec, paths) = plan(args)?;
    let id = spec.load_id.clone();
    let failure = Arc::new(Mutex::new(None));
    let mut events = loads
        .start_load(upload(spec, paths, failure.clone()))
        .await
        .with_context(|| format!("starting load {id}"))?
        .into_inner();
    let mut bar = Bar::new(out);
    let mut last = None;
    loop {
        let event = match events.message().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(status) => {
                bar.done();
                if let Ok(Some(f)) = failure.lock().map(|f| f.clone()) {
                    bail!("load {id}: {f}; nothing was loaded");
                }
                return Err(anyhow::Error::from(status).context(format!(
                    "load {id}: the link to the coordinator broke; see `ferry load get {id}`, and start it again with `--id {id}` if it did not load"
                )));
            }
        };
        match event.event {
            Some(Event::Accepted(a)) if out == OutputFormat::Table && !bar.tty => {
                eprintln!(
                    "load {}: accepted (attempt {}, command {})",
                    a.load_id, a.attempt, a.command_id
                );
            }
            Some(Event::Progress(p)) => bar.show(&id, &p),
            Some(Event::Finished(s) | Event::Rejected(s) | Event::Failed(s)) => last = Some(s),
            Some(Event::Accepted(_)) | None => {}
        }
    }
    bar.done();
    last.with_context(|| format!("load {id}: the coordinator ended the call without an outcome; see `ferry load get {id}`"))
}

/// A progress bar on a terminal; one line per update otherwise; nothing for JSON.
struct Bar {
    tty: bool,
    on: bool,
}

impl Bar {
    fn new(out: OutputFormat) -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            on: out == OutputFormat::Table,
        }
    }

    fn show(&mut self, id: &str, p: &pb::LoadProgress) {
        if !self.on {
            return;
        }
        // By rows when they were counted: bytes reach the coordinator well
        // before their rows are loaded.
        // Each row is read, then written (a mapped file's only once the
        // whole file is read): the percentage counts both halves.
        let pct = if p.rows_total > 0 {
            ((p.rows + p.rows_written) as f64 * 50.0 / p.rows_total as f64).min(100.0)
        } else if p.bytes_total > 0 {
            p.bytes_done as f64 * 100.0 / p.bytes_total as f64
        } else {
            0.0
        };
        let text = if p.rows_total > 0 {
            format!(
                "load {id}: {} / {} rows read, {} written ({pct:.0}%), {:.0} rows/s, ETA {}s",
                p.rows,
                p.rows_total,
                p.rows_written,
                p.rate_rows_per_sec,
                p.eta_ms / 1000
            )
        } else {
            format!(
                "load {id}: {} rows, {} / {} ({pct:.0}%), {:.0} rows/s, ETA {}s",
                p.rows,
                output::bytes(p.bytes_done),
                output::bytes(p.bytes_total),
                p.rate_rows_per_sec,
                p.eta_ms / 1000
            )
        };
        if self.tty {
            let filled = (pct / 5.0).round().clamp(0.0, 20.0) as usize;
            eprint!(
                "\r\x1b[2K[{}{}] {text}",
                "#".repeat(filled),
                ".".repeat(20 - filled)
            );
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{text}");
        }
    }

    fn done(&mut self) {
        if self.on && self.tty {
            eprintln!();
        }
        self.on = false;
    }
}

/// `file:line: column: value: reason`, leaving out what is not known. The
/// parts come from the file (its values, its header) and are printed with
/// their control characters escaped.
pub fn row_error_line(e: &pb::LoadRowError) -> String {
    let mut s = output::printable(&e.file);
    if e.line > 0 {
        s.push_str(&format!(":{}", e.line));
    }
    for part in [&e.column, &e.value] {
        if !part.is_empty() {
            s.push_str(&format!(": {}", output::printable(part)));
        }
    }
    s.push_str(&format!(": {}", output::printable(&e.reason)));
    s
}

pub fn load_json(l: &pb::LoadStatus) -> Value {
    let s = l.spec.clone().unwrap_or_default();
    json!({
        "load_id": l.load_id,
        "state": LoadState::name_of(l.state),
        "cluster_id": s.cluster_id,
        "database": s.database,
        "dry_run": s.dry_run,
        "rows": l.rows,
        "bytes": l.bytes,
        "files": l.files.iter().map(|f| json!({"name": f.name, "table": f.table, "rows": f.rows, "bytes": f.bytes, "model": f.model})).collect::<Vec<_>>(),
        "errors": l.errors.iter().map(|e| json!({"file": e.file, "line": e.line, "column": e.column, "value": e.value, "reason": e.reason})).collect::<Vec<_>>(),
        "errors_truncated": l.errors_truncated,
        "error": l.error,
        "attempt": l.attempt,
        "command_id": l.command_id,
        "loaded_at": l.loaded_at,
        "started_at_unix_ms": l.started_at_unix_ms,
        "finished_at_unix_ms": l.finished_at_unix_ms,
    })
}

fn print(l: &pb::LoadStatus, out: OutputFormat) -> u8 {
    match out {
        OutputFormat::Json => output::print_json(&load_json(l)),
        OutputFormat::Table => {
            println!(
                "load {}: {}, {} rows, {}",
                l.load_id,
                LoadState::name_of(l.state),
                l.rows,
                output::bytes(l.bytes)
            );
            for f in &l.files {
                println!(
                    "  {} -> {}: {} rows{}",
                    output::printable(&f.name),
                    output::printable(&f.table),
                    f.rows,
                    if f.model.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} table)", f.model)
                    }
                );
            }
            for e in &l.errors {
                println!("{}", row_error_line(e));
            }
            if l.errors_truncated {
                println!("(more errors not listed; raise --max-errors to see them)");
            }
            if !l.error.is_empty() {
                println!("error: {}", output::printable(&l.error));
            }
        }
    }
    exit_code(l)
}

fn exit_code(l: &pb::LoadStatus) -> u8 {
    match LoadState::try_from(l.state) {
        Ok(LoadState::Rejected | LoadState::Failed) => exit::FAILED,
        Ok(LoadState::Conflict) => exit::REFUSED,
        _ => exit::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_errors_read_file_line_column_value_reason() {
        let e = pb::LoadRowError {
            file: "items.csv".into(),
            line: 3,
            column: "price".into(),
            value: "twelve".into(),
            reason: "not a number".into(),
        };
        assert_eq!(
            row_error_line(&e),
            "items.csv:3: price: twelve: not a number"
        );
        let whole_file = pb::LoadRowError {
            file: "empty.csv".into(),
            reason: "no header".into(),
            ..Default::default()
        };
        assert_eq!(row_error_line(&whole_file), "empty.csv: no header");
    }

    /// A value from a file never reaches the terminal as an escape sequence.
    #[test]
    fn control_characters_from_a_file_are_escaped() {
        let e = pb::LoadRowError {
            file: "x.csv".into(),
            line: 2,
            column: "name\r".into(),
            value: "\x1b[2J\x1b]0;owned\x07".into(),
            reason: "too long".into(),
        };
        let line = row_error_line(&e);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("\\u{1b}[2J"), "{line}");
    }

    /// A directory is refused up front, by its path, not later with a
    /// blank file name.
    #[test]
    fn a_directory_is_not_a_load_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = StartArgs {
            cluster: Some("a".into()),
            database: Some("registry".into()),
            files: vec![(dir.path().to_path_buf(), "item".into())],
            manifest: None,
            id: "l-1".into(),
            delimiter: None,
            dry_run: false,
            max_errors: 0,
            csv_columns: vec![],
            target_columns: vec![],
            changelog: None,
            data_dir: None,
            properties: vec![],
            entries: vec![],
        };
        let err = plan(args)
            .expect_err("a directory must be refused")
            .to_string();
        assert!(
            err.contains("directory") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn files_are_path_equals_table() {
        assert_eq!(
            parse_file("dir/a=b.csv=item"),
            Ok((PathBuf::from("dir/a=b.csv"), "item".into()))
        );
        assert!(parse_file("items.csv").is_err());
    }
}
