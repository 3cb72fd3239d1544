//! Load end to end: the `ferry` CLI streams CSV files to a coordinator, the
//! agent of the cluster pulls them and loads a real PostgreSQL (a throwaway
//! one from `TempPostgres`), all or nothing.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_testkit::pg::TempPostgres;
use ferry_tests::{Proc, World, bin, eventually};

const ROLES: &[&str] = &["admin=admin", "viewer=viewer", "ops=operator"];
const CLIENTS: &[&str] = &["admin", "viewer", "ops"];

/// As on a Platform registry database: the data in schema `registry`, the
/// agent's default load schema (the database's search_path names it, for
/// the checks' unqualified queries).
const SCHEMA: &str = "
    CREATE SCHEMA registry;
    SET search_path = registry;
    CREATE TABLE category (
        id   serial PRIMARY KEY,
        code text NOT NULL UNIQUE,
        name text NOT NULL
    );
    CREATE TABLE item (
        id          bigserial PRIMARY KEY,
        name        text NOT NULL,
        price       numeric(10,2),
        qty         integer,
        tags        text[],
        category_id integer NOT NULL REFERENCES category(id)
    );
    -- So that ids in the files' order are not the ids in the table.
    INSERT INTO category (code, name) VALUES ('old', 'Pre-existing');
";

const CATEGORIES: &str = "code,name\nfood,Food\ntools,Tools\ntoys,Toys\n";
const ITEMS: &str = "name,price,qty,tags,category_id::ref(code,category,id)\n\
apple,1.50,10,\"{red,fresh}\",food\n\
hammer,12.00,2,,tools\n\
ball,3.25,,{round},toys\n\
bread,2.10,5,,food\n";

struct LoadWorld {
    w: World,
    pg: Arc<TempPostgres>,
    db: String,
    coordinator: Option<Proc>,
    agent: Option<Proc>,
}

impl LoadWorld {
    async fn new() -> anyhow::Result<Self> {
        let pg = TempPostgres::shared()?;
        let db = pg.fresh_database("e2e")?;
        pg.psql(&db, SCHEMA)?;
        pg.psql(
            &db,
            &format!("ALTER DATABASE {db} SET search_path = registry, public"),
        )?;
        let w = World::new(&["a"], CLIENTS)?;
        let mut lw = Self {
            coordinator: Some(w.coordinator(ROLES, &[])?),
            w,
            pg,
            db,
            agent: None,
        };
        lw.start_agent()?;
        lw.w.all_connected(&["a"], Duration::from_secs(30)).await?;
        Ok(lw)
    }

    fn start_agent(&mut self) -> anyhow::Result<()> {
        let database = format!("registry={}", self.pg.url(&self.db));
        self.agent = Some(self.w.agent("a", &["--database", &database])?);
        Ok(())
    }

    fn sql(&self, q: &str) -> anyhow::Result<String> {
        Ok(self.pg.psql(&self.db, q)?.trim().to_string())
    }

    fn count(&self, table: &str) -> anyhow::Result<i64> {
        Ok(self
            .sql(&format!("SELECT count(*) FROM {table}"))?
            .parse()?)
    }

    fn file(&self, name: &str, text: &str) -> anyhow::Result<String> {
        let path = self.w.path(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }

    fn start_args(&self, id: &str, files: &[(&str, &str)]) -> Vec<String> {
        let mut args: Vec<String> = [
            "load",
            "start",
            "--cluster",
            "a",
            "--database",
            "registry",
            "--id",
            id,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (path, table) in files {
            args.push("--file".into());
            args.push(format!("{path}={table}"));
        }
        args
    }

    /// `ferry load start … -o json` as `client`: exit code, JSON (if any), stderr.
    fn load(
        &self,
        client: &str,
        args: &[String],
    ) -> anyhow::Result<(Option<i32>, serde_json::Value, String)> {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["-o", "json"]);
        let out = self.w.ferry(client, &all)?;
        let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        Ok((
            out.status.code(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// The CLI as a background process (for killing things under it).
    fn spawn_load(&self, args: &[String]) -> anyhow::Result<Child> {
        Ok(Command::new(bin("ferry")?)
            .arg("--coordinator")
            .arg(self.w.url())
            .arg("--pki-dir")
            .arg(&self.w.pki)
            .args(["--as", "ops"])
            .args(args)
            .args(["-o", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_table_load_with_references_loads_every_row() -> anyhow::Result<()> {
    let lw = LoadWorld::new().await?;
    let cats = lw.file("categories.csv", CATEGORIES)?;
    let items = lw.file("items.csv", ITEMS)?;
    let (code, out, err) = lw.load(
        "ops",
        &lw.start_args("first", &[(&cats, "category"), (&items, "item")]),
    )?;
    assert_eq!(code, Some(0), "{out} {err}");
    assert_eq!(out["state"], "loaded", "{out}");
    assert_eq!(out["rows"], 7, "{out}");
    assert_eq!(out["files"][1]["rows"], 4, "{out}");
    assert_eq!(lw.count("category")?, 4);
    assert_eq!(
        lw.sql("SELECT string_agg(i.name || ':' || c.code, ',' ORDER BY i.name) FROM item i JOIN category c ON c.id = i.category_id")?,
        "apple:food,ball:toys,bread:food,hammer:tools"
    );
    assert_eq!(
        lw.sql("SELECT tags::text FROM item WHERE name = 'apple'")?,
        "{red,fresh}"
    );
    // Viewers can follow it.
    let got = lw.w.ferry_json("viewer", &["load", "get", "first"])?;
    assert_eq!(got["state"], "loaded", "{got}");
    let list = lw.w.ferry_json("viewer", &["load", "list"])?;
    assert_eq!(list["loads"][0]["load_id"], "first", "{list}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_file_is_refused_with_its_place_and_nothing_is_written() -> anyhow::Result<()> {
    let lw = LoadWorld::new().await?;
    let cats = lw.file("categories.csv", CATEGORIES)?;
    let bad = ITEMS
        .replace("hammer,12.00", "hammer,twelve")
        .replace(",toys\n", ",nosuch\n");
    let items = lw.file("items.csv", &bad)?;
    let args = lw.start_args("bad", &[(&cats, "category"), (&items, "item")]);
    let (code, out, err) = lw.load("ops", &args)?;
    assert_eq!(code, Some(1), "{out} {err}");
    assert_eq!(out["state"], "rejected", "{out}");
    let errors = out["errors"].as_array().context("errors listed")?;
    assert!(
        errors.iter().any(|e| e["file"] == "items.csv"
            && e["line"] == 3
            && e["column"] == "price"
            && e["value"] == "twelve"),
        "{out}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e["line"] == 4 && e["value"] == "nosuch"),
        "{out}"
    );
    // The table form prints file:line: column: value: reason.
    let table =
        lw.w.ferry("ops", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("items.csv:3: price: twelve: "), "{text}");
    // All or nothing: the good categories file was rolled back too.
    assert_eq!(lw.count("category")?, 1);
    assert_eq!(lw.count("item")?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_load_twice_writes_once_and_a_dry_run_writes_nothing() -> anyhow::Result<()> {
    let lw = LoadWorld::new().await?;
    let cats = lw.file("categories.csv", CATEGORIES)?;
    let mut dry = lw.start_args("twice", &[(&cats, "category")]);
    dry.push("--dry-run".into());
    let (code, out, err) = lw.load("ops", &dry)?;
    assert_eq!(code, Some(0), "{out} {err}");
    assert_eq!(out["state"], "dry-run-passed", "{out}");
    assert_eq!(out["rows"], 3, "{out}");
    assert_eq!(lw.count("category")?, 1, "a dry run wrote rows");

    let args = lw.start_args("twice", &[(&cats, "category")]);
    let (code, out, err) = lw.load("ops", &args)?;
    assert_eq!(
        (code, out["state"].as_str()),
        (Some(0), Some("loaded")),
        "{out} {err}"
    );
    let (code, out, err) = lw.load("ops", &args)?;
    assert_eq!(
        (code, out["state"].as_str()),
        (Some(0), Some("already-loaded")),
        "{out} {err}"
    );
    assert_eq!(out["rows"], 3, "{out}");
    assert_eq!(lw.count("category")?, 4);
    // The table form says so.
    let table =
        lw.w.ferry("ops", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    assert!(String::from_utf8_lossy(&table.stdout).contains("already-loaded"));
    Ok(())
}

/// A load's target is confined to the registry's data schemas: Ferry's
/// ledger is refused (so no id can be planted there to make a later load
/// silently load nothing), as are PostgreSQL's catalogs; and the agent,
/// whose role here is a superuser, said so when it started.
#[tokio::test(flavor = "multi_thread")]
async fn a_load_never_writes_the_ledger_or_the_catalogs() -> anyhow::Result<()> {
    let lw = LoadWorld::new().await?;
    let cats = lw.file("categories.csv", CATEGORIES)?;
    let (code, out, err) = lw.load("ops", &lw.start_args("first", &[(&cats, "category")]))?;
    assert_eq!(code, Some(0), "{out} {err}");
    let planted = lw.file("planted.csv", "load_id,rows\nvictim,0\n")?;
    let (code, out, err) = lw.load(
        "ops",
        &lw.start_args("sneaky", &[(&planted, "ferry.load_ledger")]),
    )?;
    assert_eq!(
        (code, out["state"].as_str()),
        (Some(1), Some("rejected")),
        "{out} {err}"
    );
    assert!(
        out["errors"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Ferry's own bookkeeping")),
        "{out}"
    );
    let catalog = lw.file(
        "catalog.csv",
        "objoid,classoid,objsubid,description\n1,1,0,pwned\n",
    )?;
    let (code, out, err) = lw.load(
        "ops",
        &lw.start_args("catalog", &[(&catalog, "pg_catalog.pg_description")]),
    )?;
    assert_eq!(
        (code, out["state"].as_str()),
        (Some(1), Some("rejected")),
        "{out} {err}"
    );
    assert_eq!(lw.sql("SELECT count(*) FROM ferry.load_ledger")?, "1");
    assert_eq!(
        lw.sql("SELECT count(*) FROM pg_description WHERE description = 'pwned'")?,
        "0"
    );
    let more = lw.file("more.csv", "code,name\ngames,Games\n")?;
    let (code, out, err) = lw.load("ops", &lw.start_args("victim", &[(&more, "category")]))?;
    assert_eq!(
        (code, out["state"].as_str()),
        (Some(0), Some("loaded")),
        "{out} {err}"
    );
    assert_eq!(lw.count("category")?, 5);
    let agent = lw.agent.as_ref().context("agent running")?;
    assert_eq!(
        agent.log_count(&["is a superuser"]),
        1,
        "{}",
        agent.log_text()
    );
    Ok(())
}

/// The same load id with another file is not "already loaded" (which
/// would load nothing and exit 0): it is refused, exit 3, naming the file
/// the id belongs to.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_id_with_other_files_is_refused_naming_its_files() -> anyhow::Result<()> {
    let lw = LoadWorld::new().await?;
    let cats = lw.file("categories.csv", CATEGORIES)?;
    let (code, out, err) = lw.load("ops", &lw.start_args("dup", &[(&cats, "category")]))?;
    assert_eq!(code, Some(0), "{out} {err}");
    let other = lw.file("more.csv", "code,name\ngames,Games\n")?;
    let (code, out, err) = lw.load("ops", &lw.start_args("dup", &[(&other, "category")]))?;
    assert_eq!(code, Some(3), "{out} {err}");
    assert!(err.contains("categories.csv -> category"), "{err}");
    assert_eq!(lw.count("category")?, 4, "nothing of more.csv loaded");
    // The same file again is still simply already loaded.
    let (code, out, err) = lw.load("ops", &lw.start_args("dup", &[(&cats, "category")]))?;
    assert_eq!(
        (code, out["state"].as_str()),
        (Some(0), Some("already-loaded")),
        "{out} {err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_cannot_start_a_load() -> anyhow::Result<()> {
    let lw = LoadWorld::new().await?;
    let cats = lw.file("categories.csv", CATEGORIES)?;
    let (code, _, err) = lw.load("viewer", &lw.start_args("nope", &[(&cats, "category")]))?;
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("operator"), "{err}");
    assert_eq!(lw.count("category")?, 1);
    Ok(())
}

/// Categories and a big items file referencing them.
fn big_files(lw: &LoadWorld, rows: usize) -> anyhow::Result<(String, String)> {
    let cats = lw.file("categories.csv", CATEGORIES)?;
    let mut items = String::with_capacity(rows * 40);
    items.push_str("name,price,qty,tags,category_id::ref(code,category,id)\n");
    let codes = ["food", "tools", "toys"];
    for i in 0..rows {
        items.push_str(&format!(
            "item-{i},{}.{:02},{},,{}\n",
            i % 1000,
            i % 100,
            i % 50,
            codes[i % 3]
        ));
    }
    let items_path: PathBuf = lw.w.path("items.csv");
    std::fs::write(&items_path, items)?;
    Ok((cats, items_path.display().to_string()))
}

fn wait_exit(child: &mut Child, timeout: Duration) -> anyhow::Result<Option<i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s.code());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("ferry load did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the coordinator has handed the upload to the agent and some rows went in.
async fn mid_load(lw: &LoadWorld, id: &str) -> anyhow::Result<()> {
    eventually(
        Duration::from_secs(60),
        "the load to be under way",
        || async {
            let l = lw.w.ferry_json("viewer", &["load", "get", id]).ok()?;
            (l["state"] == "running"
                && lw.coordinator.as_ref()?.log_count(&["agent pulling load"]) > 0)
                .then_some(())
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// Either every row once or none, at any moment.
fn all_or_nothing(lw: &LoadWorld, rows: i64) -> anyhow::Result<i64> {
    let n = lw.count("item")?;
    assert!(
        n == 0 || n == rows,
        "{n} rows of {rows}: a half load is visible"
    );
    Ok(n)
}

async fn resubmit_completes_once(lw: &LoadWorld, args: &[String], rows: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, out, err) = lw.load("ops", args)?;
        if code == Some(0) {
            assert!(
                out["state"] == "loaded" || out["state"] == "already-loaded",
                "{out}"
            );
            break;
        }
        // The previous attempt may still be ending (its agent rolling back).
        if Instant::now() > deadline {
            bail!("resubmitting never completed: {code:?} {out} {err}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(lw.count("item")?, rows);
    assert_eq!(lw.count("category")?, 4);
    Ok(())
}

const BIG: usize = 400_000;

#[tokio::test(flavor = "multi_thread")]
async fn coordinator_killed_mid_load_leaves_all_or_nothing_and_a_retry_completes_once()
-> anyhow::Result<()> {
    let mut lw = LoadWorld::new().await?;
    let (cats, items) = big_files(&lw, BIG)?;
    let args = lw.start_args("big", &[(&cats, "category"), (&items, "item")]);
    let mut cli = lw.spawn_load(&args)?;
    mid_load(&lw, "big").await?;
    if let Some(c) = lw.coordinator.as_mut() {
        c.kill9()?;
    }
    all_or_nothing(&lw, BIG as i64)?;
    let code = wait_exit(&mut cli, Duration::from_secs(60))?;
    eprintln!(
        "after the kill: ferry exited {code:?}, {} item rows",
        lw.count("item")?
    );
    if code == Some(0) {
        // It finished before the kill: then everything is there.
        assert_eq!(lw.count("item")?, BIG as i64);
    }
    lw.coordinator = Some(lw.w.coordinator(ROLES, &[])?);
    lw.w.all_connected(&["a"], Duration::from_secs(30)).await?;
    all_or_nothing(&lw, BIG as i64)?;
    resubmit_completes_once(&lw, &args, BIG as i64).await
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_mid_load_leaves_all_or_nothing_and_a_retry_completes_once()
-> anyhow::Result<()> {
    let mut lw = LoadWorld::new().await?;
    let (cats, items) = big_files(&lw, BIG)?;
    let args = lw.start_args("big", &[(&cats, "category"), (&items, "item")]);
    let mut cli = lw.spawn_load(&args)?;
    mid_load(&lw, "big").await?;
    if let Some(a) = lw.agent.as_mut() {
        a.kill9()?;
    }
    all_or_nothing(&lw, BIG as i64)?;
    lw.start_agent()?;
    let code = wait_exit(&mut cli, Duration::from_secs(60))?;
    eprintln!(
        "after the kill: ferry exited {code:?}, {} item rows",
        lw.count("item")?
    );
    if code == Some(0) {
        assert_eq!(lw.count("item")?, BIG as i64);
    }
    all_or_nothing(&lw, BIG as i64)?;
    resubmit_completes_once(&lw, &args, BIG as i64).await
}

/// An agent killed mid-load and not coming back: the CLI does not wait for
/// it forever with a frozen line — the load ends failed (exit 1) once the
/// agent has been away longer than the coordinator's `--lost-after`, saying
/// why, and nothing is in the database.
#[tokio::test(flavor = "multi_thread")]
async fn a_load_whose_agent_is_lost_fails_visibly() -> anyhow::Result<()> {
    let mut lw = LoadWorld::new().await?;
    let (cats, items) = big_files(&lw, BIG)?;
    let args = lw.start_args("orphan", &[(&cats, "category"), (&items, "item")]);
    let mut cli = lw.spawn_load(&args)?;
    mid_load(&lw, "orphan").await?;
    if let Some(a) = lw.agent.as_mut() {
        a.kill9()?;
    }
    // --lost-after is 3 s in these tests.
    let code = wait_exit(&mut cli, Duration::from_secs(60))?;
    let out =
        lw.w.ferry("viewer", &["load", "get", "orphan", "-o", "json"])?;
    let got: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    if code == Some(0) {
        // It finished before the kill.
        assert_eq!(got["state"], "loaded", "{got}");
        return Ok(());
    }
    assert_eq!(code, Some(1), "{got}");
    assert_eq!(got["state"], "failed", "{got}");
    assert!(
        got["error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable")),
        "{got}"
    );
    all_or_nothing(&lw, BIG as i64)?;
    assert_eq!(lw.count("item")?, 0);
    Ok(())
}
