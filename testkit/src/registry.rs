//! A Platform registry database, as the Platform shapes it, for load tests
//! and `ferry bench load`.
//!
//! Written by us from the Platform's published facts (its registry
//! database procedures and its docs on initial data loading), not copied:
//!
//! * data tables live in schema `registry`; each has a uuid primary key,
//!   business columns and the system columns `ddm_created_at/by`,
//!   `ddm_updated_at/by`;
//! * each data table `<t>` has a history twin `<t>_hst` holding
//!   `ddm_dml_op`, the business columns, the id, `ddm_created_at/by` and the
//!   ids of the source system, application and business process;
//! * those ids come from `public.ddm_source_system`,
//!   `ddm_source_application` and `ddm_source_business_process`, whose rows
//!   are created on first use, names stored lower-cased;
//! * the initial load writes as user `admin`, system and application
//!   `Initial load`, process `Initial load process`.
//!
//! The tables: a directory with a unique business column (`dict_region`,
//! by `code`), a directory referenced as a list (`dict_research`, by
//! `research_type`), a table with a `ref` and a `ref_array` column
//! (`laboratory`), a table with constants (`factor`), a hierarchy whose
//! calculated column reads the staged rows (`koatuu`), and `person`, with
//! two references, used by the benchmark.
//!
//! [`ROW_BY_ROW`] is a row-by-row loader written the Platform's way (one
//! dynamic INSERT pair per row, references and source ids looked up per
//! row): the benchmark's baseline.

use crate::pg::TempPostgres;

/// The history table of every data table: `<t>_hst`.
pub const HISTORY_SUFFIX: &str = "_hst";

/// Who the Platform's initial load writes as, and its source names.
pub const LOAD_USER: &str = "admin";
pub const LOAD_SYSTEM: &str = "Initial load";
pub const LOAD_APPLICATION: &str = "Initial load";
pub const LOAD_PROCESS: &str = "Initial load process";

/// The schema: source tables in `public`, data tables in `registry`.
pub const SCHEMA: &str = r#"
CREATE SCHEMA registry;

CREATE TABLE public.ddm_source_system (
    system_id   uuid PRIMARY KEY,
    system_name text NOT NULL UNIQUE,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.ddm_source_application (
    application_id   uuid PRIMARY KEY,
    application_name text NOT NULL UNIQUE,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.ddm_source_business_process (
    business_process_id   uuid PRIMARY KEY,
    business_process_name text NOT NULL UNIQUE,
    created_by            text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE registry.dict_region (
    region_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code      text NOT NULL UNIQUE,
    name      text NOT NULL,
    ddm_created_at timestamptz NOT NULL DEFAULT now(),
    ddm_created_by text NOT NULL,
    ddm_updated_at timestamptz NOT NULL DEFAULT now(),
    ddm_updated_by text NOT NULL
);
CREATE TABLE registry.dict_research (
    research_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    research_type text NOT NULL UNIQUE,
    ddm_created_at timestamptz NOT NULL DEFAULT now(),
    ddm_created_by text NOT NULL,
    ddm_updated_at timestamptz NOT NULL DEFAULT now(),
    ddm_updated_by text NOT NULL
);
CREATE TABLE registry.laboratory (
    laboratory_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    edrpou        varchar(8) NOT NULL UNIQUE,
    region_id     uuid NOT NULL REFERENCES registry.dict_region (region_id),
    opened        date,
    capacity      integer,
    research_ids  uuid[],
    note          text,
    ddm_created_at timestamptz NOT NULL DEFAULT now(),
    ddm_created_by text NOT NULL,
    ddm_updated_at timestamptz NOT NULL DEFAULT now(),
    ddm_updated_by text NOT NULL
);
CREATE TABLE registry.factor (
    factor_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code           text NOT NULL UNIQUE,
    name           text NOT NULL,
    factor_type    text NOT NULL,
    effective_date date,
    ddm_created_at timestamptz NOT NULL DEFAULT now(),
    ddm_created_by text NOT NULL,
    ddm_updated_at timestamptz NOT NULL DEFAULT now(),
    ddm_updated_by text NOT NULL
);
CREATE TABLE registry.koatuu (
    koatuu_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code      text NOT NULL UNIQUE,
    name      text NOT NULL,
    depth     integer NOT NULL,
    ddm_created_at timestamptz NOT NULL DEFAULT now(),
    ddm_created_by text NOT NULL,
    ddm_updated_at timestamptz NOT NULL DEFAULT now(),
    ddm_updated_by text NOT NULL
);
CREATE TABLE registry.person (
    person_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    full_name     text NOT NULL,
    birth_date    date,
    salary        numeric(12,2),
    region_id     uuid NOT NULL REFERENCES registry.dict_region (region_id),
    laboratory_id uuid REFERENCES registry.laboratory (laboratory_id),
    ddm_created_at timestamptz NOT NULL DEFAULT now(),
    ddm_created_by text NOT NULL,
    ddm_updated_at timestamptz NOT NULL DEFAULT now(),
    ddm_updated_by text NOT NULL
);

-- History twins: the business columns and the id (not unique: a row has
-- many versions), and the system columns of a history row.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['dict_region','dict_research','laboratory','factor','koatuu','person'] LOOP
    EXECUTE format(
      'CREATE TABLE registry.%I (LIKE registry.%I EXCLUDING CONSTRAINTS EXCLUDING DEFAULTS)',
      t || '_hst', t);
    EXECUTE format('ALTER TABLE registry.%I DROP COLUMN ddm_updated_at, DROP COLUMN ddm_updated_by', t || '_hst');
    EXECUTE format('ALTER TABLE registry.%I
        ADD COLUMN ddm_dml_op char(1) NOT NULL,
        ADD COLUMN ddm_system_id uuid NOT NULL,
        ADD COLUMN ddm_application_id uuid NOT NULL,
        ADD COLUMN ddm_business_process_id uuid,
        ADD COLUMN ddm_business_process_definition_id text,
        ADD COLUMN ddm_business_process_instance_id text,
        ADD COLUMN ddm_business_activity text,
        ADD COLUMN ddm_business_activity_instance_id text,
        ADD COLUMN ddm_digital_sign text,
        ADD COLUMN ddm_digital_sign_derived text', t || '_hst');
    EXECUTE format('ALTER TABLE registry.%I ALTER COLUMN ddm_created_at SET NOT NULL, ALTER COLUMN ddm_created_by SET NOT NULL', t || '_hst');
  END LOOP;
END $$;
"#;

/// A row-by-row loader the Platform's way, over a staged text table: per
/// row, the source ids are looked up (and created on first use), each
/// reference is one query, and the row and its history row are two
/// dynamic INSERTs. `p_refs` holds, per reference, `target=lookup_col:ref_table:ref_col:ref_id`.
pub const ROW_BY_ROW: &str = r#"
CREATE EXTENSION IF NOT EXISTS hstore;

-- A source row's id, created (name lower-cased) on first use.
CREATE OR REPLACE FUNCTION public.f_fixture_source_id(p_table text, p_id text, p_name_col text, p_name text, p_user text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
  l_id uuid;
BEGIN
  EXECUTE format('SELECT %I FROM public.%I WHERE %I = lower(%L)', p_id, p_table, p_name_col, p_name) INTO l_id;
  IF l_id IS NULL THEN
    l_id := gen_random_uuid();
    EXECUTE format('INSERT INTO public.%I (%I, %I, created_by) VALUES (%L, lower(%L), %L)',
                   p_table, p_id, p_name_col, l_id, p_name, p_user);
  END IF;
  RETURN l_id;
END $$;

-- One reference: the id of the row whose business column holds the value.
CREATE OR REPLACE FUNCTION public.f_fixture_ref(p_table text, p_col text, p_id text, p_value text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  l_ret text;
BEGIN
  IF p_value IS NULL THEN
    RETURN NULL;
  END IF;
  EXECUTE format('SELECT %I::text FROM registry.%I WHERE %I = %L', p_id, p_table, p_col, p_value) INTO STRICT l_ret;
  RETURN l_ret;
END $$;

-- One row and its history row from hstores of system and business
-- values: the key column read from the information schema, the source ids
-- resolved, the column lists built, two dynamic INSERTs.
CREATE OR REPLACE FUNCTION public.f_fixture_row_insert(p_table text, p_sys hstore, p_business hstore)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
  l_key text; l_id uuid := gen_random_uuid(); l_now timestamptz := now();
  l_user text := p_sys -> 'curr_user';
  l_sys uuid; l_app uuid; l_proc uuid;
  l_rcnt hstore; l_hst hstore; kv record;
  l_cols text := ''; l_vals text := ''; l_hcols text := ''; l_hvals text := '';
BEGIN
  SELECT cc.column_name INTO STRICT l_key
    FROM information_schema.table_constraints c
    JOIN information_schema.constraint_column_usage cc
      USING (constraint_name, table_name, table_schema, table_catalog)
   WHERE c.table_name = p_table AND c.constraint_type = 'PRIMARY KEY'
   LIMIT 1;
  l_sys := f_fixture_source_id('ddm_source_system', 'system_id', 'system_name', p_sys -> 'source_system', l_user);
  l_app := f_fixture_source_id('ddm_source_application', 'application_id', 'application_name', p_sys -> 'source_application', l_user);
  l_proc := f_fixture_source_id('ddm_source_business_process', 'business_process_id', 'business_process_name', p_sys -> 'source_process', l_user);
  l_rcnt := hstore(ARRAY['ddm_created_at', 'ddm_created_by', 'ddm_updated_at', 'ddm_updated_by'],
                   ARRAY[l_now::text, l_user, l_now::text, l_user]);
  l_hst := hstore(ARRAY['ddm_created_at', 'ddm_created_by', 'ddm_system_id', 'ddm_application_id', 'ddm_business_process_id'],
                  ARRAY[l_now::text, l_user, l_sys::text, l_app::text, l_proc::text]);
  FOR kv IN SELECT * FROM each(l_rcnt || p_business) LOOP
    l_cols := l_cols || quote_ident(kv.key) || ',';
    l_vals := l_vals || quote_nullable(kv.value) || ',';
  END LOOP;
  FOR kv IN SELECT * FROM each(l_hst || p_business) LOOP
    l_hcols := l_hcols || quote_ident(kv.key) || ',';
    l_hvals := l_hvals || quote_nullable(kv.value) || ',';
  END LOOP;
  EXECUTE format('INSERT INTO registry.%I (%s%I) VALUES (%s%L::uuid)', p_table, l_cols, l_key, l_vals, l_id);
  EXECUTE format('INSERT INTO registry.%I (ddm_dml_op, %s%I) VALUES (%L, %s%L::uuid)',
                 p_table || '_hst', l_hcols, l_key, 'I', l_hvals, l_id);
  RETURN l_id;
END $$;

-- The loader: one statement text per staged row (its business values as
-- an hstore, references resolved one query each, non-breaking spaces
-- trimmed), then each executed. `p_refs` holds, per reference,
-- `target=lookup_col:ref_table:ref_col:ref_id`.
CREATE OR REPLACE PROCEDURE public.p_fixture_row_by_row(p_table text, p_stage text, p_cols text[], p_refs text[])
LANGUAGE plpgsql AS $$
DECLARE
  c text; l_ref text[]; l_expr text := ''; r record;
  l_sys text := 'curr_user=>"admin",source_system=>"Initial load",source_application=>"Initial load",source_process=>"Initial load process"';
BEGIN
  FOREACH c IN ARRAY p_cols LOOP
    l_expr := l_expr || format('%L || coalesce(%L || replace(btrim(s.%I, chr(160)), %L, %L) || %L, %L) || %L || ',
                               c || '=>', '"', c, '"', '\"', '"', 'NULL', ',');
  END LOOP;
  IF p_refs IS NOT NULL THEN
    FOREACH c IN ARRAY p_refs LOOP
      l_ref := regexp_split_to_array(split_part(c, '=', 2), ':');
      l_expr := l_expr || format('%L || coalesce(%L || f_fixture_ref(%L, %L, %L, s.%I) || %L, %L) || %L || ',
                                 split_part(c, '=', 1) || '=>', '"', l_ref[2], l_ref[3], l_ref[4], l_ref[1], '"', 'NULL', ',');
    END LOOP;
  END IF;
  FOR r IN EXECUTE format('SELECT format(%L, %L, %L, rtrim(%s%L, %L)) AS f FROM %s s',
                          'SELECT f_fixture_row_insert(%L, %L::hstore, %L::hstore)', p_table, l_sys, l_expr, '', ',', p_stage) LOOP
    EXECUTE r.f;
  END LOOP;
END $$;
"#;

/// Creates a database `name` shaped as a Platform registry database, its
/// search path `registry, public` as on the Platform.
pub fn create(pg: &TempPostgres, name: &str) -> anyhow::Result<()> {
    pg.create_database(name)?;
    pg.psql(name, SCHEMA)?;
    pg.psql(name, ROW_BY_ROW)?;
    let ident = format!("\"{}\"", name.replace('"', "\"\""));
    pg.psql(
        name,
        &format!("ALTER DATABASE {ident} SET search_path = registry, public"),
    )?;
    Ok(())
}

/// A fresh registry database with a unique name; returns the name.
pub fn fresh(pg: &TempPostgres, prefix: &str) -> anyhow::Result<String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    create(pg, &name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_has_history_twins_and_a_row_by_row_loader() -> anyhow::Result<()> {
        let pg = TempPostgres::start()?;
        let db = fresh(&pg, "fixture")?;
        let hst = pg.psql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'registry' AND tablename LIKE '%\\_hst'",
        )?;
        assert_eq!(hst.trim(), "6");
        pg.psql(
            &db,
            "CREATE TEMP TABLE s (code text, name text);
             INSERT INTO s VALUES ('kyiv', 'Kyiv'), ('lviv', 'Lviv');
             CALL p_fixture_row_by_row('dict_region', 's', ARRAY['code','name'], NULL);",
        )?;
        let out = pg.psql(
            &db,
            "SELECT (SELECT count(*) FROM registry.dict_region_hst h JOIN registry.dict_region r USING (region_id, code, name)
                     WHERE h.ddm_dml_op = 'I' AND h.ddm_created_by = 'admin')
                  || ',' || (SELECT system_name FROM ddm_source_system)",
        )?;
        assert_eq!(out.trim(), "2,initial load");
        Ok(())
    }
}
