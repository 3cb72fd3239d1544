//! The Load stage against a real PostgreSQL: the Platform's file rules,
//! all-or-nothing, idempotence, dry run, and interruption.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use ferry_agent::load::{self, Chunk, FileSpec, LoadError, LoadSpec, LoadStatus, RowError};
use ferry_testkit::pg::TempPostgres;
use futures::{Stream, StreamExt, stream};
use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "
    CREATE TABLE owners (
        id    serial PRIMARY KEY,
        code  text NOT NULL UNIQUE,
        name  varchar(20) NOT NULL
    );
    CREATE TABLE items (
        id       bigserial PRIMARY KEY,
        owner_id integer NOT NULL REFERENCES owners(id),
        sku      varchar(10) NOT NULL UNIQUE,
        price    numeric(10,2),
        qty      integer,
        active   boolean DEFAULT true,
        born     date,
        seen_at  timestamptz,
        tags     text[],
        uid      uuid,
        meta     jsonb,
        ratio    double precision
    );
    INSERT INTO owners (code, name) VALUES ('OLD', 'Pre-existing');
";

struct Db {
    pg: Arc<TempPostgres>,
    name: String,
}

impl Db {
    async fn new() -> anyhow::Result<Db> {
        let pg = TempPostgres::shared()?;
        let name = pg.fresh_database("load")?;
        let db = Db { pg, name };
        db.client().await?.batch_execute(SCHEMA).await?;
        Ok(db)
    }

    async fn client(&self) -> anyhow::Result<Client> {
        let (client, conn) =
            tokio_postgres::connect(&self.pg.connection_string(&self.name), NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    async fn count(&self, table: &str) -> anyhow::Result<i64> {
        let c = self.client().await?;
        Ok(c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0))
    }

    /// Nothing of any load is in the database.
    async fn assert_untouched(&self) -> anyhow::Result<()> {
        assert_eq!(self.count("owners").await?, 1, "owners unchanged");
        assert_eq!(self.count("items").await?, 0, "items unchanged");
        let c = self.client().await?;
        let exists: bool = c
            .query_one("SELECT to_regclass('ferry.load_ledger') IS NOT NULL", &[])
            .await?
            .get(0);
        if exists {
            let n: i64 = c
                .query_one("SELECT count(*) FROM ferry.load_ledger", &[])
                .await?
                .get(0);
            assert_eq!(n, 0, "no ledger entry");
        }
        Ok(())
    }
}

/// The files cut into `size`-byte chunks, as a client would stream them.
fn chunks(files: &[&[u8]], size: usize) -> impl Stream<Item = Result<Chunk, Infallible>> + use<> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        for piece in f.chunks(size) {
            out.push(Ok(Chunk {
                file: i,
                data: Bytes::copy_from_slice(piece),
            }));
        }
    }
    stream::iter(out)
}

/// A load into this file's tables, which live in `public`.
fn spec(id: &str, files: &[(&str, &str)]) -> LoadSpec {
    let mut s = LoadSpec::new(
        id,
        files.iter().map(|(n, t)| FileSpec::new(*n, *t)).collect(),
    );
    s.schemas = vec!["public".into()];
    s
}

async fn run(
    db: &Db,
    spec: &LoadSpec,
    files: &[&[u8]],
) -> anyhow::Result<Result<load::LoadOutcome, LoadError>> {
    let mut client = db.client().await?;
    Ok(load::load(&mut client, spec, chunks(files, 7), |_| {}).await)
}

const OWNERS: &[u8] = b"code,name\nA1,Alpha\nB2,\"Beta, Inc\"\n";
const ITEMS_HEADER: &str =
    "owner_id::ref(code,owners,id);sku;price;qty;active;born;seen_at;tags;uid;meta;ratio\n";

fn items(rows: &[&str]) -> Vec<u8> {
    let mut s = ITEMS_HEADER.to_owned();
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.into_bytes()
}

fn good_items() -> Vec<u8> {
    items(&[
        "A1;S-1;12.50;3;true;2024-02-29;2024-03-01 10:00:00+02;{red,\"dark blue\"};a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11;{\"k\": [1,2]};0.5",
        "B2;S-2;;;f;;;;;;",
        "OLD;S-3;-0.01;-7;yes;1999-12-31;2000-01-01T00:00:00Z;{};;null;1e-3",
    ])
}

fn rejected(res: Result<load::LoadOutcome, LoadError>) -> Vec<RowError> {
    match res {
        Err(LoadError::Rejected { errors, .. }) => errors,
        other => panic!("expected a rejected load, got {other:?}"),
    }
}

#[tokio::test]
async fn multi_table_load_resolves_references() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let items = good_items();
    let s = spec(
        "multi-1",
        &[("owners.csv", "owners"), ("items.csv", "items")],
    );
    let mut client = db.client().await?;
    let mut last = None;
    let out = load::load(&mut client, &s, chunks(&[OWNERS, &items], 5), |p| {
        last = Some(*p)
    })
    .await?;
    assert_eq!(out.status, LoadStatus::Loaded);
    assert_eq!(out.rows, 5);
    assert_eq!(out.files[0].rows, 2);
    assert_eq!(out.files[1].rows, 3);
    assert_eq!(out.bytes, (OWNERS.len() + items.len()) as u64);
    let last = last.expect("progress reported");
    assert!(last.file_done && last.file == 1 && last.total_rows == 5);

    let c = db.client().await?;
    let rows = c
        .query(
            "SELECT i.sku, o.code, o.name, i.price::text, i.qty, i.active, i.born::text, \
                    i.seen_at = '2024-03-01 08:00:00Z', i.tags, i.uid::text, i.meta::text, i.ratio \
             FROM items i JOIN owners o ON o.id = i.owner_id ORDER BY i.sku",
            &[],
        )
        .await?;
    assert_eq!(rows.len(), 3);
    let r = &rows[0];
    assert_eq!(r.get::<_, &str>(0), "S-1");
    assert_eq!(r.get::<_, &str>(1), "A1");
    assert_eq!(r.get::<_, &str>(3), "12.50");
    assert_eq!(r.get::<_, i32>(4), 3);
    assert!(r.get::<_, bool>(5));
    assert_eq!(r.get::<_, &str>(6), "2024-02-29");
    assert!(r.get::<_, bool>(7));
    assert_eq!(r.get::<_, Vec<String>>(8), vec!["red", "dark blue"]);
    assert_eq!(r.get::<_, &str>(9), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(r.get::<_, &str>(10), "{\"k\": [1, 2]}");
    assert_eq!(r.get::<_, f64>(11), 0.5);
    let r = &rows[1];
    assert_eq!(r.get::<_, &str>(1), "B2");
    assert_eq!(r.get::<_, &str>(2), "Beta, Inc");
    assert_eq!(r.get::<_, Option<&str>>(3), None, "empty field is NULL");
    assert!(!r.get::<_, bool>(5));
    let r = &rows[2];
    assert_eq!(
        r.get::<_, &str>(1),
        "OLD",
        "pre-existing rows are referenced too"
    );
    assert_eq!(r.get::<_, &str>(3), "-0.01");
    assert_eq!(r.get::<_, Vec<String>>(8), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn non_utf8_is_refused_with_offset_line_and_column() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let mut bad = OWNERS.to_vec();
    bad.extend_from_slice(b"C3,Caf\xe9\n");
    let offset = OWNERS.len() + 6;
    let errs = rejected(run(&db, &spec("u", &[("owners.csv", "owners")]), &[&bad]).await?);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 4);
    assert_eq!(errs[0].column.as_deref(), Some("name"));
    assert!(
        errs[0].reason.contains(&format!("byte offset {offset}")),
        "{}",
        errs[0].reason
    );
    db.assert_untouched().await
}

#[tokio::test]
async fn missing_and_unknown_columns_are_named() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let errs = rejected(
        run(
            &db,
            &spec("m", &[("owners.csv", "owners")]),
            &[b"code,nickname\nX,y\n"],
        )
        .await?,
    );
    let unknown = errs
        .iter()
        .find(|e| e.column.as_deref() == Some("nickname"))
        .expect("unknown column");
    assert_eq!(unknown.line, 1);
    assert!(
        unknown.reason.contains("unknown column"),
        "{}",
        unknown.reason
    );
    let missing = errs
        .iter()
        .find(|e| e.column.as_deref() == Some("name"))
        .expect("missing column");
    assert!(
        missing.reason.contains("missing column"),
        "{}",
        missing.reason
    );
    db.assert_untouched().await
}

#[tokio::test]
async fn wrong_type_value_is_refused_at_its_line_and_column() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let items = items(&[
        "A1;S-1;1;not-a-number;true;;;;;;",
        "A1;S-2;2;2;true;2024-13-01;;;;;",
    ]);
    let errs = rejected(
        run(
            &db,
            &spec("t", &[("owners.csv", "owners"), ("items.csv", "items")]),
            &[OWNERS, &items],
        )
        .await?,
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!((errs[0].file.as_str(), errs[0].line), ("items.csv", 2));
    assert_eq!(errs[0].column.as_deref(), Some("qty"));
    assert_eq!(errs[0].value.as_deref(), Some("not-a-number"));
    assert_eq!((errs[1].line, errs[1].column.as_deref()), (3, Some("born")));
    db.assert_untouched().await
}

#[tokio::test]
async fn dangling_reference_is_refused() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let items = items(&["A1;S-1;;;;;;;;;", "ZZ;S-2;;;;;;;;;"]);
    let errs = rejected(
        run(
            &db,
            &spec("d", &[("owners.csv", "owners"), ("items.csv", "items")]),
            &[OWNERS, &items],
        )
        .await?,
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        (errs[0].line, errs[0].column.as_deref()),
        (3, Some("owner_id"))
    );
    assert_eq!(errs[0].value.as_deref(), Some("ZZ"));
    assert!(
        errs[0].reason.contains("dangling reference"),
        "{}",
        errs[0].reason
    );
    db.assert_untouched().await
}

#[tokio::test]
async fn wrong_delimiter_says_so() -> anyhow::Result<()> {
    let db = Db::new().await?;
    // Header read with an explicit ',' while the file uses ';'.
    let mut s = spec("w", &[("owners.csv", "owners")]);
    s.delimiter = Some(b',');
    let errs = rejected(run(&db, &s, &[b"code;name\nA;b\n"]).await?);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 1);
    assert!(
        errs[0].reason.contains("wrong delimiter"),
        "{}",
        errs[0].reason
    );
    // Detected ',' from the header, but a row uses ';'.
    let errs = rejected(
        run(
            &db,
            &spec("w2", &[("owners.csv", "owners")]),
            &[b"code,name\nA,b\nC;d\n"],
        )
        .await?,
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 3);
    assert!(
        errs[0].reason.contains("wrong delimiter"),
        "{}",
        errs[0].reason
    );
    db.assert_untouched().await
}

#[tokio::test]
async fn empty_file_refused_header_only_accepted() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let errs = rejected(run(&db, &spec("e", &[("owners.csv", "owners")]), &[b""]).await?);
    assert!(errs[0].reason.contains("empty file"), "{}", errs[0].reason);
    db.assert_untouched().await?;
    let out = run(
        &db,
        &spec("h", &[("owners.csv", "owners")]),
        &[b"code,name"],
    )
    .await??;
    assert_eq!(out.status, LoadStatus::Loaded);
    assert_eq!(out.rows, 0);
    assert_eq!(db.count("owners").await?, 1);
    Ok(())
}

#[tokio::test]
async fn several_errors_are_listed_up_to_the_cap() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let rows: Vec<String> = (0..10).map(|i| format!("A1;S-{i};x;;;;;;;;")).collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let items = items(&rows);
    let files = [("owners.csv", "owners"), ("items.csv", "items")];
    let errs = rejected(run(&db, &spec("s", &files), &[OWNERS, &items]).await?);
    assert_eq!(errs.len(), 10);
    assert_eq!(
        errs.iter().map(|e| e.line).collect::<Vec<_>>(),
        (2..12).collect::<Vec<_>>()
    );
    let mut capped = spec("s2", &files);
    capped.max_errors = 3;
    match run(&db, &capped, &[OWNERS, &items]).await? {
        Err(LoadError::Rejected {
            errors, truncated, ..
        }) => {
            assert_eq!(errors.len(), 3);
            assert!(truncated);
        }
        other => panic!("expected rejection, got {other:?}"),
    }
    db.assert_untouched().await
}

#[tokio::test]
async fn same_load_id_twice_writes_once() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let s = spec("twice", &[("owners.csv", "owners")]);
    let first = run(&db, &s, &[OWNERS]).await??;
    assert_eq!(first.status, LoadStatus::Loaded);
    let second = run(&db, &s, &[OWNERS]).await??;
    assert!(
        matches!(second.status, LoadStatus::AlreadyLoaded { .. }),
        "{second:?}"
    );
    assert_eq!(second.rows, 2, "original counts");
    assert_eq!(second.files, first.files);
    assert_eq!(db.count("owners").await?, 3);
    let seen = load::ledger_lookup(&db.client().await?, "twice").await?;
    assert!(seen.is_some());
    Ok(())
}

#[tokio::test]
async fn dry_run_writes_nothing_but_sees_constraints() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let items = good_items();
    let mut s = spec("dry", &[("owners.csv", "owners"), ("items.csv", "items")]);
    s.dry_run = true;
    let out = run(&db, &s, &[OWNERS, &items]).await??;
    assert_eq!(out.status, LoadStatus::DryRun);
    assert_eq!(out.rows, 5);
    db.assert_untouched().await?;
    // A duplicate business key only PostgreSQL can see (UNIQUE on code).
    let dup = b"code,name\nA1,x\nOLD,y\n";
    let errs = rejected(run(&db, &s, &[dup]).await?);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 3);
    assert!(errs[0].reason.contains("unique"), "{}", errs[0].reason);
    db.assert_untouched().await
}

#[tokio::test]
async fn killed_connection_mid_copy_leaves_nothing() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let mut client = db.client().await?;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let killer = db.client().await?;
    let rows: Vec<String> = (0..5000).map(|i| format!("OLD;S{i};1;1;t;;;;;;")).collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let body = items(&rows);
    let half = body.len() / 2;
    let (a, b) = (
        Bytes::copy_from_slice(&body[..half]),
        Bytes::copy_from_slice(&body[half..]),
    );
    let s = spec("killed", &[("items.csv", "items")]);
    let input = stream::iter([Ok::<_, Infallible>(Chunk { file: 0, data: a })]).chain(
        stream::once(async move {
            killer
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .expect("terminate the loader's backend");
            Ok(Chunk { file: 0, data: b })
        }),
    );
    let res = load::load(&mut client, &s, input, |_| {}).await;
    assert!(matches!(res, Err(LoadError::Database { .. })), "{res:?}");
    db.assert_untouched().await
}

#[tokio::test]
async fn dropped_load_future_leaves_nothing() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let mut client = db.client().await?;
    let s = spec("dropped", &[("owners.csv", "owners")]);
    // The client sends part of the file, then goes silent.
    let input = stream::iter([Ok::<_, Infallible>(Chunk {
        file: 0,
        data: Bytes::from_static(OWNERS),
    })])
    .chain(stream::pending());
    let res = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        load::load(&mut client, &s, input, |_| {}),
    )
    .await;
    assert!(res.is_err(), "the load waits for more input");
    db.assert_untouched().await?;
    // The connection is still usable: the abandoned transaction was rolled back.
    let n: i64 = client
        .query_one("SELECT count(*) FROM owners", &[])
        .await?
        .get(0);
    assert_eq!(n, 1);
    Ok(())
}

/// The agent runs loads on tokio tasks (gRPC handlers): the future must be Send.
#[allow(dead_code)]
fn load_future_is_send(client: &mut Client, spec: &LoadSpec) {
    fn is_send<T: Send>(_: &T) {}
    let input = stream::empty::<Result<Chunk, std::io::Error>>();
    let fut = load::load(client, spec, input, |_| {});
    is_send(&fut);
}

#[tokio::test]
async fn concurrent_loads_with_one_id_write_once() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let s = spec("race", &[("owners.csv", "owners")]);
    let (a, b) = tokio::join!(run(&db, &s, &[OWNERS]), run(&db, &s, &[OWNERS]));
    let statuses = [a??.status, b??.status];
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == LoadStatus::Loaded)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(db.count("owners").await?, 3);
    Ok(())
}

#[tokio::test]
async fn unchecked_types_go_through_copy_text_with_lines() -> anyhow::Result<()> {
    let db = Db::new().await?;
    db.client()
        .await?
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('happy', 'sad');
             CREATE TABLE moods (who text NOT NULL, mood mood, span interval, n int);",
        )
        .await?;
    let s = spec("enum-ok", &[("moods.csv", "moods")]);
    let out = run(
        &db,
        &s,
        &[b"who,mood,span,n\nann,happy,1 day,1\n\"b\tob\",,,\n"],
    )
    .await??;
    assert_eq!(out.rows, 2);
    let c = db.client().await?;
    let tab: String = c
        .query_one("SELECT who FROM moods WHERE mood IS NULL", &[])
        .await?
        .get(0);
    assert_eq!(tab, "b\tob", "text COPY escapes tabs");
    // Our own checks still apply to known types, PostgreSQL's to the rest.
    let bad = b"who,mood,span,n\nx,happy,,one\ny,angry,,\n";
    let errs = rejected(run(&db, &spec("enum-bad", &[("moods.csv", "moods")]), &[bad]).await?);
    assert_eq!((errs[0].line, errs[0].column.as_deref()), (2, Some("n")));
    let bad = b"who,mood,span,n\nx,happy,,\ny,angry,,\n";
    let errs = rejected(run(&db, &spec("enum-bad2", &[("moods.csv", "moods")]), &[bad]).await?);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].line, errs[0].column.as_deref()), (3, Some("mood")));
    Ok(())
}

#[tokio::test]
async fn reference_needs_a_unique_lookup_column() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let owners = b"code,name\nA1,Same\nB2,Same\n";
    let items = b"owner_id::ref(name,owners,id);sku\nSame;S-1\n";
    let errs = rejected(
        run(
            &db,
            &spec("nu", &[("owners.csv", "owners"), ("items.csv", "items")]),
            &[owners, items],
        )
        .await?,
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        (errs[0].line, errs[0].column.as_deref()),
        (1, Some("owner_id"))
    );
    assert!(errs[0].reason.contains("not unique"), "{}", errs[0].reason);
    db.assert_untouched().await
}

/// Ferry's ledger, PostgreSQL's catalogs and any schema outside the
/// allow-list are never load targets; a later load of the id a refused load
/// tried to plant in the ledger still loads.
#[tokio::test]
async fn loads_stay_in_the_allowed_schemas() -> anyhow::Result<()> {
    let db = Db::new().await?;
    // The ledger exists once a load committed.
    run(&db, &spec("first", &[("owners.csv", "owners")]), &[OWNERS]).await??;
    let c = db.client().await?;
    c.batch_execute("CREATE SCHEMA other; CREATE TABLE other.notes (note text);")
        .await?;
    let planted: &[u8] = b"load_id,rows\nvictim,0\n";
    let catalog: &[u8] = b"objoid,classoid,objsubid,description\n1,1,0,pwned\n";
    let notes: &[u8] = b"note\nhello\n";
    for (table, file) in [
        ("ferry.load_ledger", planted),
        ("FERRY.LOAD_LEDGER", planted),
        ("pg_catalog.pg_description", catalog),
        ("pg_description", catalog),
        ("information_schema.sql_features", notes),
        ("other.notes", notes),
        ("notes", notes),
    ] {
        let errs = rejected(run(&db, &spec("sneaky", &[("x.csv", table)]), &[file]).await?);
        assert_eq!(errs.len(), 1, "{table}: {errs:?}");
        assert!(
            errs[0].reason.contains("public"),
            "{table}: the allowed schemas are named: {}",
            errs[0].reason
        );
    }
    let errs = rejected(
        run(
            &db,
            &spec("sneaky", &[("x.csv", "ferry.load_ledger")]),
            &[planted],
        )
        .await?,
    );
    assert!(
        errs[0].reason.contains("Ferry's own bookkeeping"),
        "{}",
        errs[0].reason
    );
    // A reference may not read a catalog either (a password hash into a column).
    let leak: &[u8] = b"code,name::ref(rolname,pg_authid,rolpassword)\nX9,postgres\n";
    let errs = rejected(run(&db, &spec("leak", &[("o.csv", "owners")]), &[leak]).await?);
    assert!(errs[0].reason.contains("pg_authid"), "{errs:?}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM ferry.load_ledger", &[])
        .await?
        .get(0);
    assert_eq!(n, 1, "only the first load is in the ledger");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_description WHERE description = 'pwned'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(n, 0);
    // The id the refused load tried to plant loads for real.
    let out = run(
        &db,
        &spec("victim", &[("owners.csv", "owners")]),
        &[b"code,name\nV1,Victim\n"],
    )
    .await??;
    assert_eq!(out.status, LoadStatus::Loaded);
    assert_eq!(out.rows, 1);
    Ok(())
}

/// By default a load goes to the Platform's `registry` schema, where an
/// unqualified name is looked up whatever the role's search_path; a table
/// of the same name elsewhere is not touched.
#[tokio::test]
async fn default_schema_is_the_registrys() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let c = db.client().await?;
    c.batch_execute("CREATE SCHEMA registry; CREATE TABLE registry.owners (code text, name text);")
        .await?;
    let s = LoadSpec::new("reg-1", vec![FileSpec::new("owners.csv", "owners")]);
    assert_eq!(s.schemas, vec!["registry".to_string()]);
    let out = run(&db, &s, &[OWNERS]).await??;
    assert_eq!(out.status, LoadStatus::Loaded);
    assert_eq!(db.count("registry.owners").await?, 2);
    assert_eq!(db.count("public.owners").await?, 1, "public untouched");
    // Naming a forbidden schema in the allow-list is refused before anything runs.
    for bad in ["ferry", "pg_catalog", "information_schema", "pg_toast"] {
        let mut s = s.clone();
        s.schemas = vec![bad.into()];
        match run(&db, &s, &[OWNERS]).await? {
            Err(LoadError::Spec(m)) => assert!(m.contains(bad), "{m}"),
            other => panic!("schema {bad} accepted: {other:?}"),
        }
    }
    Ok(())
}

/// The agent warns at start when its role is a superuser; a plain role
/// with the grants a load needs is quiet.
#[tokio::test]
async fn superuser_role_is_warned_about() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let c = db.client().await?;
    let warning = load::superuser_warning(&c)
        .await?
        .expect("the test role is a superuser");
    assert!(warning.contains("superuser"), "{warning}");
    let role = format!("loader_{}", db.name);
    c.batch_execute(&format!("CREATE ROLE {role} LOGIN; SET ROLE {role};"))
        .await?;
    assert_eq!(load::superuser_warning(&c).await?, None);
    Ok(())
}

/// A load id is its content: the same id with other bytes (declared or
/// not) is a conflict naming the files the id belongs to, and writes
/// nothing; the same content again is already loaded.
#[tokio::test]
async fn same_id_other_content_is_a_conflict() -> anyhow::Result<()> {
    let db = Db::new().await?;
    let s = spec("once", &[("owners.csv", "owners")]);
    run(&db, &s, &[OWNERS]).await??;
    let other: &[u8] = b"code,name\nZ9,Zeta\n";
    let renamed = spec("once", &[("other.csv", "owners")]);
    match run(&db, &renamed, &[other]).await? {
        Err(e @ LoadError::Conflict { .. }) => {
            let m = e.to_string();
            assert!(m.contains("owners.csv -> owners"), "{m}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Declared digests answer without reading the data.
    let sha = |b: &[u8]| {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut declared = renamed.clone();
    declared.files[0].sha256 = Some(sha(other));
    let never = stream::iter(Vec::<Result<Chunk, Infallible>>::new());
    let mut client = db.client().await?;
    match load::load(&mut client, &declared, never, |_| {}).await {
        Err(LoadError::Conflict { files, .. }) => assert_eq!(files[0].name, "owners.csv"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    declared.files[0].sha256 = Some(sha(OWNERS));
    let again = run(&db, &declared, &[OWNERS]).await??;
    assert!(
        matches!(again.status, LoadStatus::AlreadyLoaded { .. }),
        "{again:?}"
    );
    assert_eq!(db.count("owners").await?, 3, "nothing written twice");
    // Bytes that are not what was declared are not loaded.
    let mut lying = spec("lying", &[("owners.csv", "owners")]);
    lying.files[0].sha256 = Some(sha(other));
    match run(&db, &lying, &[b"code,name\nL1,Liar\n"]).await? {
        Err(LoadError::Input { file, source }) => {
            assert_eq!(file, "owners.csv");
            assert!(source.to_string().contains("declared"), "{source}");
        }
        other => panic!("expected an input error, got {other:?}"),
    }
    assert_eq!(db.count("owners").await?, 3);
    Ok(())
}

/// A mapped file is read and staged first, then written set-based in
/// batches: progress shows rows read climbing while none is written, then
/// the rows written climbing batch by batch, and only then the file done.
#[tokio::test]
async fn a_mapped_files_write_reports_progress_batch_by_batch() -> anyhow::Result<()> {
    let db = Db::new().await?;
    const ROWS: u64 = 250_001;
    let mut csv = b"code,name\n".to_vec();
    for i in 0..ROWS {
        csv.extend_from_slice(format!("c{i},n{i}\n").as_bytes());
    }
    let mut s = spec("mapped-progress", &[("owners.csv", "owners")]);
    s.files[0].mapping = Some(load::FileMapping {
        csv_columns: vec!["code".into(), "name".into()],
        target_columns: vec!["code".into(), "name".into()],
    });
    let mut client = db.client().await?;
    let mut seen = Vec::new();
    let out = load::load(&mut client, &s, chunks(&[&csv], 64 * 1024), |p| {
        seen.push(*p)
    })
    .await?;
    assert_eq!(out.rows, ROWS);
    assert_eq!(db.count("owners").await?, ROWS as i64 + 1);

    let reading: Vec<_> = seen
        .iter()
        .filter(|p| !p.file_done && p.total_rows < ROWS)
        .collect();
    assert!(
        reading.len() > 2,
        "rows read climb chunk by chunk: {seen:?}"
    );
    assert!(
        reading.iter().all(|p| p.total_written == 0),
        "nothing of a mapped file is written while it is read: {reading:?}"
    );
    let writing: Vec<u64> = seen
        .iter()
        .filter(|p| !p.file_done && p.total_rows == ROWS && p.total_written > 0)
        .map(|p| p.total_written)
        .collect();
    assert!(
        writing.len() >= 3 && writing.windows(2).all(|w| w[0] < w[1]),
        "the write goes batch by batch: {writing:?}"
    );
    assert!(writing[0] < ROWS, "the first batch is not the whole file");
    let last = seen.last().copied().expect("progress reported");
    assert!(last.file_done && last.total_written == ROWS, "{last:?}");
    Ok(())
}
