//! `ferry bench load` (default scenario, issue 15): N rows with two
//! references into a Platform-shaped table with its history (testkit's
//! registry fixture, table `person`), three ways, in one run on one
//! database:
//!
//! 1. Ferry: this CLI → coordinator → agent → PostgreSQL, the file mapped
//!    outside itself as `p_load_table_from_csv` maps it (two `ref` columns
//!    resolved by business value), rows and history rows written set-based;
//! 2. a row-by-row procedure that writes the same rows and history rows the
//!    Platform's way (testkit's `p_fixture_row_by_row`: per row a generated
//!    statement, hstores, the key column from the information schema, the
//!    source ids, each reference, two dynamic INSERTs), measured on
//!    `--procedure-rows` rows into twin tables;
//! 3. the physical floor: two `psql \copy` runs of the already-resolved rows
//!    into twins of the table and of its history.
//!
//! Prints each rate and the two ratios the issue sets targets for
//! (Ferry ÷ row-by-row ≥ 50, Ferry ÷ floor ≥ 1.0).
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use ferry_common::pb::{LoadState, loads_client::LoadsClient};
use ferry_testkit::pg::TempPostgres;
use ferry_testkit::registry;

use super::bench_load::{LoadBench, start_stack};
use crate::cmd::load::{FileEntry, StartArgs, start};
use crate::output::{OutputFormat, bytes};

const REGIONS: u64 = 100;
const LABS: u64 = 1000;

/// Directories to refer to, and twins of `person` for the baselines.
const SEED: &str = "
    INSERT INTO registry.dict_region (code, name, ddm_created_by, ddm_updated_by)
      SELECT 'r-' || g, 'Region ' || g, 'admin', 'admin' FROM generate_series(1, 100) g;
    INSERT INTO registry.laboratory (name, edrpou, region_id, ddm_created_by, ddm_updated_by)
      SELECT 'Lab ' || g, lpad(g::text, 8, '0'), (SELECT region_id FROM registry.dict_region WHERE code = 'r-1'), 'admin', 'admin'
      FROM generate_series(1, 1000) g;
    CREATE TABLE registry.person_floor (LIKE registry.person INCLUDING ALL);
    ALTER TABLE registry.person_floor
      ADD FOREIGN KEY (region_id) REFERENCES registry.dict_region (region_id),
      ADD FOREIGN KEY (laboratory_id) REFERENCES registry.laboratory (laboratory_id);
    CREATE TABLE registry.person_floor_hst (LIKE registry.person_hst INCLUDING ALL);
    CREATE TABLE registry.person_rbr (LIKE registry.person INCLUDING ALL);
    ALTER TABLE registry.person_rbr
      ADD FOREIGN KEY (region_id) REFERENCES registry.dict_region (region_id),
      ADD FOREIGN KEY (laboratory_id) REFERENCES registry.laboratory (laboratory_id);
    CREATE TABLE registry.person_rbr_hst (LIKE registry.person_hst INCLUDING ALL);
    CREATE UNLOGGED TABLE public.bench_stage (full_name text, birth_date text, salary text, region text, lab text);
";

const TARGETS: [&str; 5] = [
    "full_name",
    "birth_date",
    "salary",
    "region_id::ref(lookup_col:region,ref_table:dict_region,ref_col:code,ref_id:region_id)",
    "laboratory_id::ref(lookup_col:lab,ref_table:laboratory,ref_col:edrpou,ref_id:laboratory_id)",
];

/// A version-4-shaped id, scattered like the random ids the Platform (and
/// Ferry) give rows: sequential ids would make the floor's primary-key
/// index an append, which no real load gets.
fn uuid(n: u64) -> String {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    x ^= x >> 31;
    let y = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        x >> 32,
        (x >> 16) & 0xffff,
        x & 0xfff,
        y >> 52,
        y & 0xffff_ffff_ffff
    )
}

struct Files {
    ferry: std::path::PathBuf,
    rows: std::path::PathBuf,
    history: std::path::PathBuf,
    sample: std::path::PathBuf,
}

/// The same people four ways: by business value (Ferry, and a sample for
/// the procedure), and resolved (the floor's rows and history rows).
fn generate(
    dir: &Path,
    n: u64,
    sample: u64,
    regions: &[String],
    labs: &[String],
    sources: &[String; 3],
) -> anyhow::Result<Files> {
    let f = Files {
        ferry: dir.join("person.csv"),
        rows: dir.join("person-resolved.csv"),
        history: dir.join("person-resolved-hst.csv"),
        sample: dir.join("person-sample.csv"),
    };
    let mut ferry = BufWriter::new(std::fs::File::create(&f.ferry)?);
    let mut rows = BufWriter::new(std::fs::File::create(&f.rows)?);
    let mut hist = BufWriter::new(std::fs::File::create(&f.history)?);
    let mut smpl = BufWriter::new(std::fs::File::create(&f.sample)?);
    writeln!(ferry, "full_name,birth_date,salary,region,lab")?;
    let at = "2026-01-01 00:00:00+00";
    for i in 0..n {
        let name = format!("Person {i}");
        let born = format!("{}-{:02}-{:02}", 1950 + i % 50, 1 + i % 12, 1 + i % 28);
        let salary = format!("{}.{:02}", 1000 + i % 90_000, i % 100);
        let (r, l) = ((i % REGIONS) as usize, (i % LABS) as usize);
        let region = format!("r-{}", r + 1);
        let lab = format!("{:08}", l + 1);
        let line = format!("{name},{born},{salary},{region},{lab}");
        writeln!(ferry, "{line}")?;
        if i < sample {
            writeln!(smpl, "{line}")?;
        }
        let id = uuid(i);
        writeln!(
            rows,
            "{id},{name},{born},{salary},{},{},{at},admin,{at},admin",
            regions[r], labs[l]
        )?;
        writeln!(
            hist,
            "I,{id},{name},{born},{salary},{},{},{at},admin,{},{},{}",
            regions[r], labs[l], sources[0], sources[1], sources[2]
        )?;
    }
    for w in [&mut ferry, &mut rows, &mut hist, &mut smpl] {
        w.flush()?;
    }
    Ok(f)
}

fn psql_timed(pg: &TempPostgres, sql: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = Command::new(pg.psql_path())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(pg.connection_string("registry"))
        .arg("-c")
        .arg(sql)
        .output()
        .context("running psql")?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(secs)
}

fn list(pg: &TempPostgres, sql: &str) -> anyhow::Result<Vec<String>> {
    Ok(pg
        .psql("registry", sql)?
        .lines()
        .map(str::to_owned)
        .collect())
}

pub async fn run(b: &LoadBench, dir: &Path) -> anyhow::Result<u8> {
    let pg = tokio::task::spawn_blocking(TempPostgres::start).await??;
    registry::create(&pg, "registry")?;
    pg.psql("registry", SEED)?;
    // The source rows exist as after any earlier Platform load; the floor's
    // history rows carry their ids.
    pg.psql(
        "registry",
        "INSERT INTO ddm_source_system VALUES (gen_random_uuid(), 'initial load', 'admin');
         INSERT INTO ddm_source_application VALUES (gen_random_uuid(), 'initial load', 'admin');
         INSERT INTO ddm_source_business_process VALUES (gen_random_uuid(), 'initial load process', 'admin');",
    )?;
    let regions = list(
        &pg,
        "SELECT region_id FROM registry.dict_region ORDER BY substr(code, 3)::int",
    )?;
    let labs = list(
        &pg,
        "SELECT laboratory_id FROM registry.laboratory ORDER BY edrpou",
    )?;
    let src = list(
        &pg,
        "SELECT (SELECT system_id FROM ddm_source_system) UNION ALL SELECT (SELECT application_id FROM ddm_source_application)
         UNION ALL SELECT (SELECT business_process_id FROM ddm_source_business_process)",
    )?;
    let sources: [String; 3] = src
        .try_into()
        .map_err(|_| anyhow::anyhow!("reading the source ids"))?;
    let sample = b.procedure_rows.min(b.rows);
    println!("generating {} rows…", b.rows);
    let files = generate(dir, b.rows, sample, &regions, &labs, &sources)?;
    let size = std::fs::metadata(&files.ferry)?.len();
    let stack = start_stack(dir, &pg.url("registry"), "registry").await?;

    println!("loading through Ferry ({})…", bytes(size));
    let mut loads = LoadsClient::new(stack.client.channel().await?);
    let args = StartArgs {
        cluster: Some("a".into()),
        database: Some("registry".into()),
        files: vec![],
        manifest: None,
        id: "bench".into(),
        delimiter: None,
        dry_run: false,
        max_errors: 0,
        csv_columns: vec![],
        target_columns: vec![],
        changelog: None,
        data_dir: None,
        properties: vec![],
        entries: vec![FileEntry {
            path: files.ferry.clone(),
            table: "person".into(),
            csv_columns: ["full_name", "birth_date", "salary", "region", "lab"]
                .map(String::from)
                .to_vec(),
            target_columns: TARGETS.map(String::from).to_vec(),
        }],
    };
    // Each load starts with no checkpoint work left by the one before.
    pg.psql("registry", "CHECKPOINT")?;
    let started = Instant::now();
    let status = start(&mut loads, args, OutputFormat::Json).await?;
    let ferry_secs = started.elapsed().as_secs_f64();
    if status.state != LoadState::Loaded as i32 || status.rows != b.rows {
        bail!("the Ferry load did not load {} rows: {status:?}", b.rows);
    }
    let hst: u64 = pg
        .psql("registry", "SELECT count(*) FROM registry.person_hst")?
        .trim()
        .parse()?;
    if hst != b.rows {
        bail!("the Ferry load wrote {hst} history rows, not {}", b.rows);
    }

    // How long PostgreSQL's set-based write took, from the agent's log.
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    let write_secs: Option<f64> = log
        .lines()
        .rev()
        .filter(|l| l.contains("mapped file staged and written"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["fields"]["write_secs"].as_f64());

    println!("loading {sample} rows with the row-by-row procedure…");
    psql_timed(
        &pg,
        &format!(
            "\\copy public.bench_stage FROM '{}' WITH (FORMAT csv)",
            files.sample.display()
        ),
    )?;
    pg.psql("registry", "CHECKPOINT")?;
    let rbr_secs = psql_timed(
        &pg,
        "CALL p_fixture_row_by_row('person_rbr', 'public.bench_stage',
           ARRAY['full_name','birth_date','salary'],
           ARRAY['region_id=region:dict_region:code:region_id', 'laboratory_id=lab:laboratory:edrpou:laboratory_id'])",
    )?;

    println!("loading the resolved rows and history rows with two psql \\copy runs…");
    pg.psql("registry", "CHECKPOINT")?;
    let floor_rows = psql_timed(
        &pg,
        &format!(
            "\\copy registry.person_floor (person_id, full_name, birth_date, salary, region_id, laboratory_id, \
             ddm_created_at, ddm_created_by, ddm_updated_at, ddm_updated_by) FROM '{}' WITH (FORMAT csv)",
            files.rows.display()
        ),
    )?;
    pg.psql("registry", "CHECKPOINT")?;
    let floor_hst = psql_timed(
        &pg,
        &format!(
            "\\copy registry.person_floor_hst (ddm_dml_op, person_id, full_name, birth_date, salary, region_id, \
             laboratory_id, ddm_created_at, ddm_created_by, ddm_system_id, ddm_application_id, \
             ddm_business_process_id) FROM '{}' WITH (FORMAT csv)",
            files.history.display()
        ),
    )?;
    let floor_secs = floor_rows + floor_hst;

    let rows = b.rows as f64;
    let ferry_rate = rows / ferry_secs;
    let rbr_rate = sample as f64 / rbr_secs;
    let floor_rate = rows / floor_secs;
    println!(
        "rows: {} ({} of CSV; 3 business columns and 2 references, into registry.person and its history)",
        b.rows,
        bytes(size)
    );
    println!(
        "ferry: {ferry_rate:.0} rows/s ({ferry_secs:.2} s, client → coordinator → agent → PostgreSQL, rows and history rows)"
    );
    if let Some(w) = write_secs {
        println!(
            "  of which the set-based write of rows and history rows: {w:.2} s; reading, checking and staging: {:.2} s",
            ferry_secs - w
        );
    }
    println!("row-by-row procedure: {rbr_rate:.0} rows/s ({sample} rows in {rbr_secs:.2} s)");
    println!(
        "psql \\copy floor: {floor_rate:.0} rows/s (rows {floor_rows:.2} s + history {floor_hst:.2} s, already resolved)"
    );
    println!(
        "ratio vs row-by-row: {:.1} (target ≥ 50)",
        ferry_rate / rbr_rate
    );
    println!(
        "ratio vs floor: {:.2} (target ≥ 1.0)",
        ferry_rate / floor_rate
    );
    Ok(crate::exit::OK)
}
