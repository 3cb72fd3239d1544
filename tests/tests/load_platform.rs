//! Load speaking the Platform's initial-load contract (issue 15), end to
//! end: the `ferry` CLI reads a Liquibase changelog of
//! `CALL p_load_table_from_csv(…)`s (or the same mapping as flags), the
//! coordinator relays the files, and the agent loads a Platform-shaped
//! registry database (testkit's fixture) with the rows and history rows
//! the Platform's procedure would write.
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_testkit::pg::TempPostgres;
use ferry_testkit::registry;
use ferry_tests::{Proc, World};
use serde_json::Value;

const ROLES: &[&str] = &["admin=admin", "ops=operator", "viewer=viewer"];

struct Reg {
    w: World,
    pg: Arc<TempPostgres>,
    db: String,
    _coordinator: Proc,
    _agent: Proc,
}

impl Reg {
    async fn new() -> anyhow::Result<Self> {
        let pg = TempPostgres::shared()?;
        let db = registry::fresh(&pg, "reg")?;
        let w = World::new(&["a"], &["admin", "ops", "viewer"])?;
        let coordinator = w.coordinator(ROLES, &[])?;
        let agent = w.agent("a", &["--database", &format!("registry={}", pg.url(&db))])?;
        w.all_connected(&["a"], Duration::from_secs(30)).await?;
        Ok(Reg {
            w,
            pg,
            db,
            _coordinator: coordinator,
            _agent: agent,
        })
    }

    fn sql(&self, q: &str) -> anyhow::Result<String> {
        Ok(self.pg.psql(&self.db, q)?.trim().to_string())
    }

    fn count(&self, table: &str) -> anyhow::Result<i64> {
        Ok(self
            .sql(&format!("SELECT count(*) FROM {table}"))?
            .parse()?)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<String> {
        let path = self.w.path(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, bytes)?;
        Ok(path.display().to_string())
    }

    /// `ferry load start … -o json`: exit code, JSON, stderr.
    fn load(&self, args: &[&str]) -> anyhow::Result<(Option<i32>, Value, String)> {
        let mut all = vec!["load", "start", "--cluster", "a", "--database", "registry"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        let out = self.w.ferry("ops", &all)?;
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Ok((
            out.status.code(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Every table's rows and history rows agree as the Platform writes them:
    /// one 'I' history row per row, same id and business values, written by
    /// admin from the Initial load system, application and process.
    fn history_matches(&self, table: &str, business: &[&str]) -> anyhow::Result<()> {
        let id = self.sql(&format!(
            "SELECT a.attname FROM pg_index x JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
             WHERE x.indrelid = 'registry.{table}'::regclass AND x.indisprimary"
        ))?;
        let same = business
            .iter()
            .map(|c| format!("h.{c} IS NOT DISTINCT FROM t.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let got = self.sql(&format!(
            "SELECT (SELECT count(*) FROM registry.{table}) || ',' || (SELECT count(*) FROM registry.{table}_hst) || ',' ||
                    (SELECT count(*) FROM registry.{table} t JOIN registry.{table}_hst h USING ({id})
                     WHERE {same} AND h.ddm_dml_op = 'I' AND h.ddm_created_by = 'admin'
                       AND t.ddm_created_by = 'admin' AND t.ddm_updated_by = 'admin'
                       AND h.ddm_created_at = t.ddm_created_at AND t.ddm_updated_at = t.ddm_created_at
                       AND h.ddm_system_id = (SELECT system_id FROM ddm_source_system WHERE system_name = 'initial load')
                       AND h.ddm_application_id = (SELECT application_id FROM ddm_source_application WHERE application_name = 'initial load')
                       AND h.ddm_business_process_id = (SELECT business_process_id FROM ddm_source_business_process
                                                        WHERE business_process_name = 'initial load process'))"
        ))?;
        let n: Vec<&str> = got.split(',').collect();
        anyhow::ensure!(
            n.len() == 3 && n[0] == n[1] && n[1] == n[2] && n[0] != "0",
            "{table}: rows, history rows, matching pairs = {got}"
        );
        Ok(())
    }
}

const R1: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const R2: &str = "b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12";
const R3: &str = "c2eebc99-9c0b-4ef8-bb6d-6bb9bd380a13";

/// The changelog: the Platform's documented forms of the call.
const CHANGELOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<databaseChangeLog xmlns="http://www.liquibase.org/xml/ns/dbchangelog"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <property name="labFile" value="laboratories.csv"/>
  <changeSet author="registry owner" id="dictionaries">
    <comment>Directories first: the laboratories refer to them.</comment>
    <sql dbms="postgresql" endDelimiter=";" splitStatements="true" stripComments="true">
      CALL p_load_table_from_csv('dict_region','${dataLoadPath}regions.csv', array['code','name'], array['code','name']);
      CALL p_load_table_from_csv('dict_research','${dataLoadPath}research.csv', array['uuid','research_type'], array['research_type']);
      CALL p_load_table_from_csv('factor','${dataLoadPath}factors.csv', array['code','name','legacy_code'],
        array['code','name','factor_type::''Хімічний: ОБРВ''','effective_date::''2024-01-01''']);
      CALL p_load_table_from_csv('koatuu','${dataLoadPath}koatuu.csv', array['code','name'],
        array['code','name','depth::(SELECT count(*) FROM koatuu_csv p WHERE koatuu_csv.code LIKE p.code || ''%'')']);
    </sql>
  </changeSet>
  <changeSet author="registry owner" id="laboratories">
    <sql>
      CALL p_load_table_from_csv('laboratory','${dataLoadPath}${labFile}',
        array['name','edrpou','region','researches','opened','capacity','note'],
        array['name','edrpou',
              'region_id::ref(lookup_col:region,ref_table:dict_region,ref_col:code,ref_id:region_id)',
              'research_ids::ref_array(lookup_col:researches,ref_table:dict_research,ref_col:research_type,ref_id:research_id,delim:#)',
              'opened','capacity','note']);
      ANALYZE registry.laboratory;
    </sql>
    <createIndex tableName="laboratory" indexName="ix_lab_name"><column name="name"/></createIndex>
  </changeSet>
</databaseChangeLog>
"#;

fn write_corpus(r: &Reg) -> anyhow::Result<(String, String)> {
    let dir = r.w.path("data-load");
    r.write(
        "data-load/regions.csv",
        "code,name\nkyiv,Київ\nlviv,\"Львів\"\nodesa,\u{a0}Одеса\u{a0}\n".as_bytes(),
    )?;
    r.write(
        "data-load/research.csv",
        format!("uuid,research_type\n{R1},chem\n{R2},bio\n{R3},rad\n").as_bytes(),
    )?;
    r.write(
        "data-load/factors.csv",
        "code,name,legacy_code\nf1,Бензол,X-1\nf2,Толуол,X-2\n".as_bytes(),
    )?;
    r.write(
        "data-load/koatuu.csv",
        "code,name\n01,Root\n0101,Child\n010101,Grandchild\n".as_bytes(),
    )?;
    r.write(
        "data-load/laboratories.csv",
        "name,edrpou,region,researches,opened,capacity,note\n\
         Lab A,12345678,kyiv,{chem#bio},2020-05-01,10,\"\"\n\
         Lab B,87654321,lviv,rad,,,\n"
            .as_bytes(),
    )?;
    let log = r.write("data-load.xml", CHANGELOG.as_bytes())?;
    Ok((log, dir.display().to_string()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_liquibase_changelog_loads_rows_and_history_as_the_platform_would() -> anyhow::Result<()>
{
    let r = Reg::new().await?;
    let (log, dir) = write_corpus(&r)?;
    let (code, out, err) = r.load(&["--changelog", &log, "--data-dir", &dir])?;
    assert_eq!(code, Some(0), "{out} {err}");
    let sets = out["change_sets"].as_array().context("change sets")?;
    assert_eq!(sets.len(), 2, "{out}");
    for s in sets {
        assert_eq!(s["load"]["state"], "loaded", "{out}");
        assert!(
            !s["load"]["loaded_at"].as_str().unwrap_or("").is_empty(),
            "{out}"
        );
        for f in s["load"]["files"].as_array().context("files")? {
            assert_eq!(f["model"], "platform", "{out}");
        }
    }
    assert_eq!(sets[0]["load"]["rows"], 11, "{out}");
    // What is not run is said, by line.
    let not_run: Vec<i64> = out["not_run"]
        .as_array()
        .context("not_run")?
        .iter()
        .filter_map(|n| n["line"].as_i64())
        .collect();
    assert_eq!(not_run, vec![24, 26], "{out}");

    // Values as PostgreSQL's CSV reads them; non-breaking spaces trimmed.
    assert_eq!(
        r.sql(
            "SELECT string_agg(code || '=' || name, ',' ORDER BY code) FROM registry.dict_region"
        )?,
        "kyiv=Київ,lviv=Львів,odesa=Одеса"
    );
    // The CSV's uuid is the row's id.
    assert_eq!(
        r.sql("SELECT string_agg(research_id || ':' || research_type, ',' ORDER BY research_type) FROM registry.dict_research")?,
        format!("{R2}:bio,{R1}:chem,{R3}:rad")
    );
    // Constants; the skipped CSV column went nowhere.
    assert_eq!(
        r.sql("SELECT string_agg(code || '|' || factor_type || '|' || effective_date, ',' ORDER BY code) FROM registry.factor")?,
        "f1|Хімічний: ОБРВ|2024-01-01,f2|Хімічний: ОБРВ|2024-01-01"
    );
    // A calculated column reading the staged rows.
    assert_eq!(
        r.sql("SELECT string_agg(code || ':' || depth, ',' ORDER BY code) FROM registry.koatuu")?,
        "01:1,0101:2,010101:3"
    );
    // ref, ref_array with its delimiter, empty vs quoted-empty.
    assert_eq!(
        r.sql(
            "SELECT string_agg(l.name || '|' || r.code || '|' || l.research_ids::text || '|' || coalesce(l.opened::text, 'NULL')
                               || '|' || coalesce(l.capacity::text, 'NULL') || '|' || coalesce('[' || l.note || ']', 'NULL'), ',' ORDER BY l.name)
             FROM registry.laboratory l JOIN registry.dict_region r USING (region_id)"
        )?,
        format!("Lab A|kyiv|{{{R1},{R2}}}|2020-05-01|10|[],Lab B|lviv|{{{R3}}}|NULL|NULL|NULL")
    );
    // History rows, system columns and source ids as the Platform writes them.
    r.history_matches("dict_region", &["code", "name"])?;
    r.history_matches("dict_research", &["research_type"])?;
    r.history_matches("factor", &["code", "name", "factor_type", "effective_date"])?;
    r.history_matches("koatuu", &["code", "name", "depth"])?;
    r.history_matches(
        "laboratory",
        &[
            "name",
            "edrpou",
            "region_id",
            "research_ids",
            "opened",
            "capacity",
            "note",
        ],
    )?;
    assert_eq!(
        r.sql("SELECT (SELECT count(*) FROM ddm_source_system) || ',' || (SELECT count(*) FROM ddm_source_application) || ',' || (SELECT count(*) FROM ddm_source_business_process)")?,
        "1,1,1"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_loads_nothing_and_a_changed_file_under_the_same_change_set_is_a_conflict()
-> anyhow::Result<()> {
    let r = Reg::new().await?;
    let (log, dir) = write_corpus(&r)?;
    let (code, out, err) = r.load(&["--changelog", &log, "--data-dir", &dir])?;
    assert_eq!(code, Some(0), "{out} {err}");
    let before = r.sql("SELECT (SELECT count(*) FROM registry.dict_region_hst) || ',' || (SELECT count(*) FROM registry.laboratory)")?;

    let (code, out, err) = r.load(&["--changelog", &log, "--data-dir", &dir])?;
    assert_eq!(code, Some(0), "{out} {err}");
    for s in out["change_sets"].as_array().context("change sets")? {
        assert_eq!(s["load"]["state"], "skipped: already loaded", "{out}");
    }
    assert_eq!(r.sql("SELECT (SELECT count(*) FROM registry.dict_region_hst) || ',' || (SELECT count(*) FROM registry.laboratory)")?, before);

    // The same changeSet with a changed file: refused, nothing loaded.
    r.write(
        "data-load/regions.csv",
        "code,name\nkyiv,Київ\nlviv,Львів\nodesa,Одеса\nkharkiv,Харків\n".as_bytes(),
    )?;
    let (code, out, err) = r.load(&["--changelog", &log, "--data-dir", &dir])?;
    assert_eq!(code, Some(3), "{out} {err}");
    assert!(
        err.contains("dictionaries") && err.contains("regions.csv"),
        "{err}"
    );
    assert_eq!(r.count("registry.dict_region")?, 3);
    assert_eq!(r.sql("SELECT (SELECT count(*) FROM registry.dict_region_hst) || ',' || (SELECT count(*) FROM registry.laboratory)")?, before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expression_with_a_statement_is_refused_before_anything_is_written() -> anyhow::Result<()>
{
    let r = Reg::new().await?;
    let file = r.write("factors.csv", "code,name\nf1,Бензол\n".as_bytes())?;
    let cases = [
        ("factor_type::'x'; DROP TABLE registry.dict_region", "';'"),
        (
            "factor_type::(DELETE FROM registry.dict_region RETURNING 'x')",
            "statement",
        ),
        ("factor_type::pg_sleep(1)::text", "allow-list"),
        (
            "factor_type::(SELECT rolpassword FROM pg_authid LIMIT 1)",
            "staged rows",
        ),
    ];
    for (i, (bad, why)) in cases.iter().enumerate() {
        let id = format!("bad-expr-{i}");
        let targets = format!("factors.csv=code,name,{bad}");
        let (code, out, err) = r.load(&[
            "--id",
            &id,
            "--file",
            &format!("{file}=factor"),
            "--csv-columns",
            "factors.csv=code,name",
            "--target-columns",
            &targets,
        ])?;
        assert_eq!(code, Some(1), "{bad}: {out} {err}");
        assert_eq!(out["state"], "rejected", "{out}");
        let e = &out["errors"][0];
        assert_eq!(e["file"], "factors.csv", "{out}");
        assert_eq!(e["column"].as_str(), Some(*bad), "{out}");
        assert!(
            e["reason"].as_str().is_some_and(|r| r.contains(why)),
            "{bad}: {out}"
        );
    }
    assert_eq!(r.count("registry.factor")?, 0);
    assert_eq!(r.count("registry.factor_hst")?, 0);
    assert_eq!(
        r.count("registry.dict_region")?,
        0,
        "the table is still there"
    );
    assert_eq!(r.count("ddm_source_system")?, 0, "not even the source rows");

    // The same mapping with a plain expression loads; on a table without a
    // history twin, as today (no system columns to fill, no history).
    r.sql("CREATE TABLE registry.plain_note (id serial PRIMARY KEY, code text, body text)")?;
    let notes = r.write("notes.csv", "code,body\nn1,hello\n".as_bytes())?;
    let (code, out, err) = r.load(&[
        "--id",
        "plain",
        "--file",
        &format!("{notes}=plain_note"),
        "--csv-columns",
        "notes.csv=code,body",
        "--target-columns",
        "notes.csv=code,body::upper(body) || '!'",
    ])?;
    assert_eq!(code, Some(0), "{out} {err}");
    assert_eq!(out["files"][0]["model"], "plain", "{out}");
    assert_eq!(
        r.sql("SELECT code || ':' || body FROM registry.plain_note")?,
        "n1:HELLO!"
    );
    Ok(())
}

/// An expression PostgreSQL refuses on some rows only (a division by
/// zero) is reported on each of those lines, with its column and the
/// expression, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn an_expression_failing_on_some_rows_is_reported_on_their_lines() -> anyhow::Result<()> {
    let r = Reg::new().await?;
    r.sql("CREATE TABLE registry.ratio (id serial PRIMARY KEY, code text, share numeric)")?;
    let mut csv = String::from("code,part,whole\n");
    for i in 0..2_000 {
        // Lines 2.. : the zero wholes sit on lines 3, 1,502 and 2,001.
        let whole = if [1, 1_500, 1_999].contains(&i) { 0 } else { 4 };
        csv.push_str(&format!("r{i},{},{whole}\n", i % 4));
    }
    let file = r.write("ratios.csv", csv.as_bytes())?;
    let expr = "share::(part::numeric / whole::numeric)";
    let (code, out, err) = r.load(&[
        "--id",
        "ratios",
        "--file",
        &format!("{file}=ratio"),
        "--csv-columns",
        "ratios.csv=code,part,whole",
        "--target-columns",
        &format!("ratios.csv=code,{expr}"),
    ])?;
    assert_eq!(code, Some(1), "{out} {err}");
    assert_eq!(out["state"], "rejected", "{out}");
    let errors = out["errors"].as_array().context("errors")?;
    let lines: Vec<u64> = errors.iter().filter_map(|e| e["line"].as_u64()).collect();
    assert_eq!(lines, [3, 1_502, 2_001], "{out}");
    for e in errors {
        assert_eq!(e["file"], "ratios.csv", "{out}");
        assert_eq!(e["column"], "share", "{out}");
        assert_eq!(e["value"], "(part::numeric / whole::numeric)", "{out}");
        assert!(
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("division by zero")),
            "{out}"
        );
    }
    assert_eq!(r.count("registry.ratio")?, 0);
    Ok(())
}

/// A bad file: what it shows, its bytes, --csv-columns, --target-columns,
/// and the errors expected (line, column, part of the reason).
type BadFile<'a> = (
    &'a str,
    Vec<u8>,
    &'a str,
    &'a str,
    Vec<(u64, &'a str, &'a str)>,
);

/// Each bad file is refused with its line and the CSV's own column, and
/// the database is unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn the_bad_file_corpus_is_refused_in_the_users_terms() -> anyhow::Result<()> {
    let r = Reg::new().await?;
    let regions = r.write(
        "regions.csv",
        "code,name\nkyiv,Київ\nlviv,Львів\n".as_bytes(),
    )?;
    let (code, out, err) = r.load(&[
        "--id",
        "regions",
        "--file",
        &format!("{regions}=dict_region"),
        "--csv-columns",
        "regions.csv=code,name",
    ])?;
    assert_eq!(code, Some(0), "{out} {err}");
    let snapshot = || -> anyhow::Result<String> {
        r.sql("SELECT (SELECT count(*) FROM registry.dict_region) || ',' || (SELECT count(*) FROM registry.dict_region_hst)
                 || ',' || (SELECT count(*) FROM registry.laboratory) || ',' || (SELECT count(*) FROM registry.laboratory_hst)")
    };
    let before = snapshot()?;
    let lab_targets = "lab.csv=name,edrpou,region_id::ref(lookup_col:region,ref_table:dict_region,ref_col:code,ref_id:region_id),opened,capacity";
    let lab_header = "name,edrpou,region,opened,capacity\n";
    let mut big = String::from(lab_header);
    for i in 0..100_000u32 {
        big.push_str(&format!("Lab {i},{:08},kyiv,2020-01-01,{}\n", i, i % 100));
    }
    big.push_str("Lab last,99999999,lviv,2020-02-30,5\n");
    // (name, file bytes, csv columns, targets, expected (line, column, reason part), ...)
    let cases: Vec<BadFile> = vec![
        (
            "encoding",
            b"name,edrpou,region,opened,capacity\nLab A,11111111,kyiv,2020-01-01,1\nLab \xe9,22222222,kyiv,2020-01-01,2\n".to_vec(),
            "lab.csv=name,edrpou,region,opened,capacity", lab_targets,
            vec![(3, "name", "not UTF-8")],
        ),
        (
            "short rows",
            format!("{lab_header}Lab A,11111111,kyiv\nLab B,22222222,kyiv,2020-01-01,2\n").into_bytes(),
            "lab.csv=name,edrpou,region,opened,capacity", lab_targets,
            vec![(2, "", "short row")],
        ),
        (
            "unknown column",
            format!("{lab_header}Lab A,11111111,kyiv,2020-01-01,1\n").into_bytes(),
            "lab.csv=name,edrpou,region,opened,capacity",
            "lab.csv=name,edrpou,region_id::ref(lookup_col:region,ref_table:dict_region,ref_col:code,ref_id:region_id),opened,size::capacity",
            vec![(0, "size::capacity", "unknown column")],
        ),
        (
            "a CSV column the file does not have",
            format!("{lab_header}Lab A,11111111,kyiv,2020-01-01,1\n").into_bytes(),
            "lab.csv=name,edrpou,region,opened,capacity,staff", lab_targets,
            vec![(1, "", "the header has 5 columns")],
        ),
        (
            "missing column",
            format!("{lab_header}Lab A,11111111,kyiv,2020-01-01,1\n").into_bytes(),
            "lab.csv=name,edrpou,region,opened,capacity",
            "lab.csv=name,edrpou,opened,capacity",
            vec![(0, "region_id", "missing column")],
        ),
        (
            "bad dates and numbers",
            format!("{lab_header}Lab A,11111111,kyiv,2020-13-45,1\nLab B,22222222,kyiv,2020-01-01,ten\n").into_bytes(),
            "lab.csv=name,edrpou,region,opened,capacity", lab_targets,
            vec![(2, "opened", "not a date"), (3, "capacity", "integer")],
        ),
        (
            "dangling reference",
            format!("{lab_header}Lab A,11111111,atlantis,2020-01-01,1\n").into_bytes(),
            "lab.csv=name,edrpou,region,opened,capacity", lab_targets,
            vec![(2, "region", "dangling reference")],
        ),
        (
            "duplicate keys",
            format!("{lab_header}Lab A,11111111,kyiv,2020-01-01,1\nLab B,22222222,kyiv,2020-01-01,2\nLab C,11111111,lviv,2020-01-01,3\n").into_bytes(),
            "lab.csv=name,edrpou,region,opened,capacity", lab_targets,
            vec![(4, "edrpou", "same (edrpou) as line 2")],
        ),
        (
            "unterminated quote",
            format!("{lab_header}Lab A,11111111,kyiv,2020-01-01,1\n\"Lab B,22222222,kyiv,2020-01-01,2\nLab C,33333333,kyiv,2020-01-01,3\n").into_bytes(),
            "lab.csv=name,edrpou,region,opened,capacity", lab_targets,
            vec![(3, "name", "unterminated quote")],
        ),
        (
            "an error on line 100,002",
            big.into_bytes(),
            "lab.csv=name,edrpou,region,opened,capacity", lab_targets,
            vec![(100_002, "opened", "not a date")],
        ),
        (
            "empty file",
            Vec::new(),
            "lab.csv=name,edrpou,region,opened,capacity", lab_targets,
            vec![(1, "", "empty file")],
        ),
    ];
    for (i, (what, bytes, csv, targets, expected)) in cases.iter().enumerate() {
        let lab = r.write("lab.csv", bytes)?;
        let id = format!("bad-{i}");
        let (code, out, err) = r.load(&[
            "--id",
            &id,
            "--file",
            &format!("{lab}=laboratory"),
            "--csv-columns",
            csv,
            "--target-columns",
            targets,
        ])?;
        assert_eq!(
            (code, out["state"].as_str()),
            (Some(1), Some("rejected")),
            "{what}: {out} {err}"
        );
        let errors = out["errors"].as_array().context("errors")?;
        assert_eq!(errors.len(), expected.len(), "{what}: {out}");
        for ((line, column, reason), e) in expected.iter().zip(errors) {
            assert_eq!(e["file"], "lab.csv", "{what}: {out}");
            assert_eq!(e["line"], *line, "{what}: {out}");
            assert_eq!(e["column"], *column, "{what}: {out}");
            assert!(
                e["reason"].as_str().is_some_and(|r| r.contains(reason)),
                "{what}: {out}"
            );
        }
        assert_eq!(snapshot()?, before, "{what}: the database changed");
    }
    // A unique key already in the table, and the first N errors, not only the first.
    let lab = r.write(
        "lab.csv",
        format!("{lab_header}Lab A,11111111,kyiv,2020-01-01,1\n").as_bytes(),
    )?;
    let (code, out, err) = r.load(&[
        "--id",
        "lab-1",
        "--file",
        &format!("{lab}=laboratory"),
        "--csv-columns",
        "lab.csv=name,edrpou,region,opened,capacity",
        "--target-columns",
        lab_targets,
    ])?;
    assert_eq!(code, Some(0), "{out} {err}");
    let before = snapshot()?;
    let mut many = String::from(lab_header);
    many.push_str("Lab Z,11111111,kyiv,2020-01-01,1\n");
    for i in 0..5 {
        many.push_str(&format!("Lab {i},2222222{i},kyiv,2020-01-0{},x\n", i + 1));
    }
    let lab = r.write("lab.csv", many.as_bytes())?;
    let (code, out, err) = r.load(&[
        "--id",
        "lab-2",
        "--file",
        &format!("{lab}=laboratory"),
        "--max-errors",
        "3",
        "--csv-columns",
        "lab.csv=name,edrpou,region,opened,capacity",
        "--target-columns",
        lab_targets,
    ])?;
    assert_eq!(code, Some(1), "{out} {err}");
    let lines: Vec<i64> = out["errors"]
        .as_array()
        .context("errors")?
        .iter()
        .filter_map(|e| e["line"].as_i64())
        .collect();
    assert_eq!(lines, vec![3, 4, 5], "{out}");
    assert_eq!(out["errors_truncated"], true, "{out}");
    let lab = r.write(
        "lab.csv",
        format!("{lab_header}Lab Z,11111111,kyiv,2020-01-01,1\n").as_bytes(),
    )?;
    let (code, out, err) = r.load(&[
        "--id",
        "lab-3",
        "--file",
        &format!("{lab}=laboratory"),
        "--csv-columns",
        "lab.csv=name,edrpou,region,opened,capacity",
        "--target-columns",
        lab_targets,
    ])?;
    assert_eq!(code, Some(1), "{out} {err}");
    assert_eq!(out["errors"][0]["line"], 2, "{out}");
    assert_eq!(out["errors"][0]["column"], "edrpou", "{out}");
    assert!(
        out["errors"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already has a row")),
        "{out}"
    );
    assert_eq!(snapshot()?, before);
    // A foreign key PostgreSQL refuses, mapped back to the line and column.
    let people = r.write(
        "people.csv",
        format!("full_name,region,laboratory_id\nAnna,kyiv,\nBoris,lviv,{R1}\n").as_bytes(),
    )?;
    let (code, out, err) = r.load(&[
        "--id",
        "people",
        "--file",
        &format!("{people}=person"),
        "--csv-columns",
        "people.csv=full_name,region,laboratory_id",
        "--target-columns",
        "people.csv=full_name,region_id::ref(lookup_col:region,ref_table:dict_region,ref_col:code,ref_id:region_id),laboratory_id",
    ])?;
    assert_eq!(code, Some(1), "{out} {err}");
    let e = &out["errors"][0];
    assert_eq!(
        (e["line"].as_i64(), e["column"].as_str()),
        (Some(3), Some("laboratory_id")),
        "{out}"
    );
    assert_eq!(e["value"], R1, "{out}");
    assert!(
        e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("foreign key")),
        "{out}"
    );
    assert_eq!(out["errors"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(r.count("registry.person")?, 0);
    assert_eq!(snapshot()?, before);
    Ok(())
}

/// Progress goes by rows out of the rows the client counted (not by bytes
/// relayed, which reach the coordinator long before their rows are
/// loaded), and a fresh load's JSON carries when it was recorded.
#[tokio::test(flavor = "multi_thread")]
async fn progress_is_by_rows_and_json_carries_loaded_at() -> anyhow::Result<()> {
    let r = Reg::new().await?;
    const ROWS: usize = 300_000;
    let mut body = String::from("research_type,note\n");
    for i in 0..ROWS {
        body.push_str(&format!("type-{i},n\n"));
    }
    let file = r.write("research.csv", body.as_bytes())?;
    let out = r.w.ferry(
        "ops",
        &[
            "load",
            "start",
            "--cluster",
            "a",
            "--database",
            "registry",
            "--id",
            "progress",
            "--file",
            &format!("{file}=dict_research"),
            "--csv-columns",
            "research.csv=research_type,note",
            "--target-columns",
            "research.csv=research_type",
        ],
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // `load <id>: <read> / <total> rows read, <written> written (<pct>%), …`
    let total = format!("/ {ROWS} rows read, ");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("rows/s")).collect();
    for l in &lines {
        assert!(l.contains(&total), "progress not by rows: {l}");
        let number = |after: &str, until: char| -> anyhow::Result<u64> {
            l.split(after)
                .nth(1)
                .and_then(|s| s.split(until).next())
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("no number after {after:?} in {l}"))
        };
        let read = number(": ", ' ')?;
        let written = number("rows read, ", ' ')?;
        let pct = number("written (", '%')?;
        assert!(written <= read, "written ahead of read: {l}");
        // Reading and writing each count for half.
        let exact = (read + written) as f64 * 50.0 / ROWS as f64;
        assert!((pct as f64 - exact).abs() <= 1.0, "{l}");
        assert!(
            pct < 100 || written == ROWS as u64,
            "100% with rows still to write: {l}"
        );
    }
    assert!(!lines.is_empty(), "no progress shown: {err}");
    assert_eq!(r.count("registry.dict_research")?, ROWS as i64);
    let got = r.w.ferry_json("viewer", &["load", "get", "progress"])?;
    assert!(
        got["loaded_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{got}"
    );
    Ok(())
}
