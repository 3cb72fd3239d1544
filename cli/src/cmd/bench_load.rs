//! `ferry bench load`: loads a generated CSV through Ferry (this CLI →
//! coordinator → agent → PostgreSQL, separate processes over mTLS) and, in
//! the same run, the same rows with `psql \copy` into an identical table of
//! the same throwaway PostgreSQL; prints both rates and `ratio: <ferry/psql>`.
//!
//! The rows are the same; the files differ in one column: Ferry's names the
//! category by its business code (`category_id::ref(code,category,id)`) and
//! resolves it, psql's carries the resolved id, since `\copy` cannot.
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_common::pb::{self, LoadState, loads_client::LoadsClient};
use ferry_common::pki::{self, PkiPlan};
use ferry_testkit::pg::TempPostgres;

use crate::ClientArgs;
use crate::cmd::load::{StartArgs, start};
use crate::output::{OutputFormat, bytes};

const CATEGORIES: u64 = 100;
const SCHEMA: &str = "
    CREATE TABLE category (id serial PRIMARY KEY, code text NOT NULL UNIQUE, name text NOT NULL);
    INSERT INTO category (code, name) SELECT 'cat-' || g, 'Category ' || g FROM generate_series(1, 100) g;
    CREATE TABLE item (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        price numeric(12,2),
        qty integer,
        born date,
        active boolean,
        category_id integer NOT NULL REFERENCES category(id)
    );
    CREATE TABLE item_psql (LIKE item INCLUDING ALL);
    ALTER TABLE item_psql ADD FOREIGN KEY (category_id) REFERENCES category(id);
";

#[derive(Debug, clap::Args)]
pub struct LoadBench {
    /// Rows in the generated file.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Keep the work directory here instead of a temporary one.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// The issue-6 scenario instead: a header-mapped file into a plain
    /// table, against one `psql \copy`.
    #[arg(long)]
    pub plain: bool,
    /// Platform scenario: rows loaded by the row-by-row procedure (its rate
    /// is measured on this many; a million would take most of an hour).
    #[arg(long, default_value_t = 20_000)]
    pub procedure_rows: u64,
}

/// The processes of a bench: a coordinator and one agent for cluster `a`,
/// and a client for them.
pub struct Stack {
    _coordinator: super::bench::Proc,
    _agent: super::bench::Proc,
    pub client: ClientArgs,
}

/// Starts a coordinator and an agent whose database `registry` is
/// `db_url`, loads confined to `schemas`.
pub async fn start_stack(dir: &Path, db_url: &str, schemas: &str) -> anyhow::Result<Stack> {
    let pki_dir = dir.join("pki");
    pki::init(
        &pki_dir,
        &PkiPlan {
            clusters: vec!["a".into()],
            clients: vec!["admin".into()],
            ..PkiPlan::default()
        },
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let pki_arg = format!("--pki-dir={}", pki_dir.display());
    let coordinator = super::bench::spawn_sibling(
        "ferry-coordinator",
        &[
            format!("--listen=127.0.0.1:{port}"),
            pki_arg.clone(),
            format!("--data-dir={}", dir.join("coordinator").display()),
            "--role=admin=admin".into(),
        ],
        &dir.join("coordinator.log"),
    )?;
    // The load's own phase timings go to the log, for the figures.
    let agent = super::bench::spawn_sibling_env(
        "ferry-agent",
        &[
            "--cluster-id=a".into(),
            format!("--coordinator={url}"),
            pki_arg,
            format!("--database=registry={db_url}"),
            format!("--load-schemas={schemas}"),
            "--backoff-cap=1s".into(),
            "--log-format=json".into(),
        ],
        &dir.join("agent.log"),
        &[("RUST_LOG", "warn,ferry_agent::load=info".into())],
    )?;
    let client = ClientArgs {
        coordinator: url,
        coordinator_name: None,
        coordinator_identity: ferry_common::identity::COORDINATOR_URI.into(),
        pki_dir,
        client_name: "admin".into(),
        tls_cert: None,
        tls_key: None,
        tls_ca: None,
    };
    connected(&client).await?;
    Ok(Stack {
        _coordinator: coordinator,
        _agent: agent,
        client,
    })
}

/// The same rows twice: categories by code (Ferry) and by id (psql).
fn generate(dir: &Path, rows: u64) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ferry = dir.join("items-ferry.csv");
    let psql = dir.join("items-psql.csv");
    let mut f = BufWriter::new(std::fs::File::create(&ferry)?);
    let mut p = BufWriter::new(std::fs::File::create(&psql)?);
    writeln!(
        f,
        "name,price,qty,born,active,category_id::ref(code,category,id)"
    )?;
    writeln!(p, "name,price,qty,born,active,category_id")?;
    for i in 0..rows {
        let common = format!(
            "item {i},{}.{:02},{},{}-{:02}-{:02},{}",
            i % 100_000,
            i % 100,
            i % 1000,
            1970 + i % 50,
            1 + i % 12,
            1 + i % 28,
            if i % 2 == 0 { "true" } else { "false" }
        );
        let cat = 1 + i % CATEGORIES;
        writeln!(f, "{common},cat-{cat}")?;
        writeln!(p, "{common},{cat}")?;
    }
    f.flush()?;
    p.flush()?;
    Ok((ferry, psql))
}

pub async fn connected(client: &ClientArgs) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = async {
            let agents = client
                .fleet()
                .await?
                .list_agents(pb::ListAgentsRequest {})
                .await?
                .into_inner()
                .agents;
            anyhow::Ok(
                agents
                    .iter()
                    .any(|a| a.state == pb::AgentState::Connected as i32),
            )
        };
        if let Ok(true) = up.await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the agent did not connect within 30 s; see agent.log in the work directory (--workdir)"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(b: LoadBench) -> anyhow::Result<u8> {
    let tmp = tempfile::tempdir()?;
    let dir = b
        .workdir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    if !b.plain {
        return super::bench_load_platform::run(&b, &dir).await;
    }
    let pg = tokio::task::spawn_blocking(TempPostgres::start).await??;
    pg.create_database("registry")?;
    pg.psql("registry", SCHEMA)?;
    println!("generating {} rows…", b.rows);
    let (ferry_csv, psql_csv) = generate(&dir, b.rows)?;
    let size = std::fs::metadata(&ferry_csv)?.len();

    // The bench's tables are in `public`, not the Platform's `registry` schema.
    let stack = start_stack(&dir, &pg.url("registry"), "public").await?;
    let client = &stack.client;

    println!("loading through Ferry ({})…", bytes(size));
    let mut loads = LoadsClient::new(client.channel().await?);
    let args = StartArgs {
        cluster: Some("a".into()),
        database: Some("registry".into()),
        files: vec![(ferry_csv, "item".into())],
        manifest: None,
        id: "bench".into(),
        delimiter: Some(','),
        dry_run: false,
        max_errors: 0,
        csv_columns: vec![],
        target_columns: vec![],
        changelog: None,
        data_dir: None,
        properties: vec![],
        entries: vec![],
    };
    let started = Instant::now();
    let status = start(&mut loads, args, OutputFormat::Json).await?;
    let ferry_secs = started.elapsed().as_secs_f64();
    if status.state != LoadState::Loaded as i32 || status.rows != b.rows {
        bail!("the Ferry load did not load {} rows: {status:?}", b.rows);
    }

    println!("loading with psql \\copy…");
    let copy = format!(
        "\\copy item_psql (name, price, qty, born, active, category_id) FROM '{}' WITH (FORMAT csv, HEADER true)",
        psql_csv.display()
    );
    let started = Instant::now();
    let out = Command::new(pg.psql_path())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(pg.connection_string("registry"))
        .arg("-c")
        .arg(&copy)
        .output()
        .context("running psql")?;
    let psql_secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "psql \\copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let copied: u64 = pg
        .psql("registry", "SELECT count(*) FROM item_psql")?
        .trim()
        .parse()?;
    if copied != b.rows {
        bail!("psql \\copy loaded {copied} rows, not {}", b.rows);
    }

    let rows = b.rows as f64;
    let (ferry_rate, psql_rate) = (rows / ferry_secs, rows / psql_secs);
    println!(
        "rows: {} ({} of CSV, 6 typed columns, one a reference)",
        b.rows,
        bytes(size)
    );
    println!(
        "ferry: {ferry_rate:.0} rows/s ({ferry_secs:.2} s, client → coordinator → agent → PostgreSQL)"
    );
    println!("psql \\copy: {psql_rate:.0} rows/s ({psql_secs:.2} s)");
    println!("ratio: {:.2}", ferry_rate / psql_rate);
    Ok(crate::exit::OK)
}
