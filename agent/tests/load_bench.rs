//! Throughput of the loader against `psql \copy`, on the same server and
//! the same rows. Not a timed test: run it on purpose, in release mode:
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-load cargo test --release -p ferry-agent \
//!     --test load_bench -- --ignored --nocapture
//! ```
//!
//! `FERRY_BENCH_ROWS` changes the row count (default 1,000,000).

use std::convert::Infallible;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_agent::load::{self, Chunk, FileSpec, LoadSpec};
use ferry_testkit::pg::TempPostgres;
use futures::stream;
use tokio_postgres::NoTls;

const OWNERS: usize = 1000;
const CHUNK: usize = 64 * 1024;

fn table_ddl(name: &str) -> String {
    format!(
        "CREATE TABLE {name} (
            id       bigint PRIMARY KEY,
            owner_id integer NOT NULL,
            sku      varchar(32) NOT NULL,
            price    numeric(12,2),
            qty      integer,
            active   boolean,
            born     date,
            seen_at  timestamptz
        );"
    )
}

/// One row; `owner` is written as the business code (Ferry) or the id (psql).
fn row(i: usize, ferry: bool, out: &mut Vec<u8>) {
    let owner = i % OWNERS + 1;
    if ferry {
        write!(out, "{i},OWN{owner:05},").ok();
    } else {
        write!(out, "{i},{owner},").ok();
    }
    writeln!(
        out,
        "SKU-{i:08},{}.{:02},{},{},20{:02}-{:02}-{:02},2024-{:02}-{:02} {:02}:{:02}:{:02}+00",
        i % 100_000,
        i % 100,
        i % 1000,
        if i.is_multiple_of(3) { "true" } else { "false" },
        i % 24,
        i % 12 + 1,
        i % 28 + 1,
        i % 12 + 1,
        i % 28 + 1,
        i % 24,
        i % 60,
        (i * 7) % 60,
    )
    .ok();
}

fn csv(rows: usize, ferry: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * 90);
    if ferry {
        out.extend_from_slice(
            b"id,\"owner_id::ref(code,bench_owners,id)\",sku,price,qty,active,born,seen_at\n",
        );
    } else {
        out.extend_from_slice(b"id,owner_id,sku,price,qty,active,born,seen_at\n");
    }
    for i in 0..rows {
        row(i, ferry, &mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on purpose with --release -- --ignored --nocapture"]
async fn bench_load_vs_psql_copy() -> anyhow::Result<()> {
    let rows: usize = std::env::var("FERRY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let pg = TempPostgres::start()?;
    let db = pg.fresh_database("bench")?;
    let (mut client, conn) = tokio_postgres::connect(&pg.connection_string(&db), NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE TABLE bench_owners (id serial PRIMARY KEY, code text NOT NULL UNIQUE);
             INSERT INTO bench_owners (code) SELECT 'OWN' || lpad(g::text, 5, '0') FROM generate_series(1, {OWNERS}) g;
             {} {}",
            table_ddl("bench_items_ferry"),
            table_ddl("bench_items_psql")
        ))
        .await?;

    let ferry_csv = Bytes::from(csv(rows, true));
    let psql_csv = csv(rows, false);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("items.csv");
    std::fs::write(&path, &psql_csv)?;

    let mut best_ferry = Duration::MAX;
    let mut best_psql = Duration::MAX;
    for round in 0..3 {
        client
            .batch_execute("TRUNCATE bench_items_ferry, bench_items_psql; CHECKPOINT;")
            .await?;

        let t = Instant::now();
        let out = std::process::Command::new(pg.psql_path())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(pg.connection_string(&db))
            .arg("-c")
            .arg(format!(
                "\\copy bench_items_psql FROM '{}' WITH (FORMAT csv, HEADER true)",
                path.display()
            ))
            .output()?;
        let psql = t.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let chunks: Vec<Result<Chunk, Infallible>> = (0..ferry_csv.len())
            .step_by(CHUNK)
            .map(|at| {
                Ok(Chunk {
                    file: 0,
                    data: ferry_csv.slice(at..(at + CHUNK).min(ferry_csv.len())),
                })
            })
            .collect();
        let mut spec = LoadSpec::new(
            format!("bench-{round}"),
            vec![FileSpec::new("items.csv", "bench_items_ferry")],
        );
        spec.schemas = vec!["public".into()];
        let t = Instant::now();
        let outcome = load::load(&mut client, &spec, stream::iter(chunks), |_| {}).await?;
        let ferry = t.elapsed();
        anyhow::ensure!(outcome.rows == rows as u64, "loaded {} rows", outcome.rows);

        println!(
            "round {round}: ferry {:.2}s ({:.0} rows/s), psql \\copy {:.2}s ({:.0} rows/s)",
            ferry.as_secs_f64(),
            rows as f64 / ferry.as_secs_f64(),
            psql.as_secs_f64(),
            rows as f64 / psql.as_secs_f64()
        );
        best_ferry = best_ferry.min(ferry);
        best_psql = best_psql.min(psql);
    }

    // Both tables hold the same rows.
    let diff: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT * FROM bench_items_ferry EXCEPT SELECT * FROM bench_items_psql) d",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(diff == 0, "{diff} rows differ between the two tables");

    let ferry_rate = rows as f64 / best_ferry.as_secs_f64();
    let psql_rate = rows as f64 / best_psql.as_secs_f64();
    println!("rows: {rows}");
    println!("ferry: {ferry_rate:.0} rows/s");
    println!("psql: {psql_rate:.0} rows/s");
    println!("ratio: {:.2}", ferry_rate / psql_rate);
    Ok(())
}
