//! A Liquibase changelog as a load's input: the Platform's registries load
//! their initial data with `<sql>` blocks of
//! `CALL p_load_table_from_csv('table', '${dataLoadPath}file.csv', array[…], array[…]);`
//! inside `<changeSet id=… author=…>`s.
//!
//! This reads the changelog on the client: `${dataLoadPath}` becomes the
//! `--data-dir` (other `${…}` come from `<property>`s or `--property`),
//! each changeSet becomes one load (all or nothing) whose id is derived from
//! the changeSet's file, id and author as Liquibase keys its
//! DATABASECHANGELOG, so a re-run finds it loaded and a changed file under
//! the same changeSet is a conflict. Anything else in the changelog (other
//! statements, other change types, includes) is not run and is reported by
//! line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// One `CALL p_load_table_from_csv(…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub table: String,
    /// The file as resolved on this machine.
    pub file: PathBuf,
    pub csv_columns: Vec<String>,
    pub target_columns: Vec<String>,
    pub line: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    pub id: String,
    pub author: String,
    pub line: u64,
    pub calls: Vec<Call>,
}

/// Something of the changelog that Ferry does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRun {
    pub line: u64,
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changelog {
    /// The name the changeSets are remembered under (`logicalFilePath`, or
    /// the file's name).
    pub file: String,
    pub change_sets: Vec<ChangeSet>,
    pub not_run: Vec<NotRun>,
}

impl ChangeSet {
    /// The load id of this changeSet: stable for the same file, id and
    /// author (Liquibase's key), whatever the machine.
    pub fn load_id(&self, file: &str) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [file, &self.id, &self.author] {
            ctx.update(part.as_bytes());
            ctx.update(b"\0");
        }
        let hex: String = ctx.finish().as_ref()[..10]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("changeset-{hex}")
    }
}

/// Read `path`, resolving `${dataLoadPath}` to `data_dir` and other
/// properties from the changelog and `props` (which win).
pub fn read(path: &Path, data_dir: &Path, props: &[(String, String)]) -> anyhow::Result<Changelog> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading changelog {}", path.display()))?;
    let mut properties: HashMap<String, String> = HashMap::new();
    let mut dir = data_dir.display().to_string();
    if !dir.ends_with('/') {
        dir.push('/');
    }
    properties.insert("dataLoadPath".into(), dir);
    parse(&text, path, properties, props)
}

fn line_of(text: &str, pos: usize) -> u64 {
    1 + text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
}

fn parse(
    text: &str,
    path: &Path,
    mut properties: HashMap<String, String>,
    props: &[(String, String)],
) -> anyhow::Result<Changelog> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut reader = Reader::from_str(text);
    let mut log = Changelog {
        file: name,
        change_sets: vec![],
        not_run: vec![],
    };
    let mut current: Option<ChangeSet> = None;
    // Inside <sql>: its text and where it started.
    let mut sql: Option<(String, usize)> = None;
    let mut depth_in_set = 0usize;
    loop {
        let pos = reader.buffer_position() as usize;
        let event = reader.read_event().with_context(|| {
            format!(
                "changelog {} line {}: not well-formed XML",
                path.display(),
                line_of(text, pos)
            )
        })?;
        match event {
            Event::Start(e) | Event::Empty(e) if matches!(e.local_name().as_ref(), b"property") => {
                let mut n = None;
                let mut v = None;
                for a in e.attributes().flatten() {
                    let val = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map(|c| c.into_owned())
                        .unwrap_or_default();
                    match a.key.local_name().as_ref() {
                        b"name" => n = Some(val),
                        b"value" => v = Some(val),
                        _ => {}
                    }
                }
                if let (Some(n), Some(v)) = (n, v) {
                    properties.entry(n).or_insert(v);
                }
            }
            Event::Start(e) => {
                let local = e.local_name().as_ref().to_vec();
                match local.as_slice() {
                    b"databaseChangeLog" => {
                        for a in e.attributes().flatten() {
                            if a.key.local_name().as_ref() == b"logicalFilePath" {
                                log.file = a
                                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .map(|c| c.into_owned())
                                    .unwrap_or_default();
                            }
                        }
                    }
                    b"changeSet" => {
                        let mut cs = ChangeSet {
                            id: String::new(),
                            author: String::new(),
                            line: line_of(text, pos),
                            calls: vec![],
                        };
                        for a in e.attributes().flatten() {
                            let val = a
                                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .map(|c| c.into_owned())
                                .unwrap_or_default();
                            match a.key.local_name().as_ref() {
                                b"id" => cs.id = val,
                                b"author" => cs.author = val,
                                _ => {}
                            }
                        }
                        current = Some(cs);
                        depth_in_set = 0;
                    }
                    b"sql" if current.is_some() => sql = Some((String::new(), pos)),
                    b"comment" | b"rollback" | b"preConditions" if current.is_some() => {
                        depth_in_set += 1;
                    }
                    other => {
                        if current.is_some() && depth_in_set == 0 && sql.is_none() {
                            log.not_run.push(NotRun {
                                line: line_of(text, pos),
                                what: format!(
                                    "<{}> (only <sql> with CALL p_load_table_from_csv is run)",
                                    String::from_utf8_lossy(other)
                                ),
                            });
                        } else if current.is_none() && other != b"databaseChangeLog" {
                            log.not_run.push(NotRun {
                                line: line_of(text, pos),
                                what: format!(
                                    "<{}> outside a changeSet",
                                    String::from_utf8_lossy(other)
                                ),
                            });
                        }
                        depth_in_set += 1;
                    }
                }
            }
            Event::Empty(e) => {
                let local = e.local_name().as_ref().to_vec();
                if current.is_some() && depth_in_set == 0
                    || current.is_none() && local != b"databaseChangeLog"
                {
                    log.not_run.push(NotRun {
                        line: line_of(text, pos),
                        what: format!(
                            "<{}/> (only <sql> with CALL p_load_table_from_csv is run)",
                            String::from_utf8_lossy(&local)
                        ),
                    });
                }
            }
            Event::Text(t) => {
                if let Some((s, _)) = sql.as_mut() {
                    let raw = t.decode().map(|c| c.into_owned()).unwrap_or_default();
                    s.push_str(
                        &quick_xml::escape::unescape(&raw)
                            .map(|c| c.into_owned())
                            .unwrap_or(raw),
                    );
                }
            }
            Event::CData(t) => {
                if let Some((s, _)) = sql.as_mut() {
                    s.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"sql" => {
                    if let Some((s, start)) = sql.take() {
                        // The text starts after the start tag.
                        let tag_end = text[start..].find('>').map_or(start, |i| start + i + 1);
                        let cs = current.as_mut().context("<sql> outside a changeSet")?;
                        statements(text, &s, tag_end, &properties, props, cs, &mut log.not_run)?;
                    }
                }
                b"changeSet" => {
                    if let Some(cs) = current.take() {
                        log.change_sets.push(cs);
                    }
                }
                _ => depth_in_set = depth_in_set.saturating_sub(1),
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(log)
}

/// Split an `<sql>` body into statements; keep the CALLs, report the rest.
fn statements(
    text: &str,
    body: &str,
    at: usize,
    properties: &HashMap<String, String>,
    props: &[(String, String)],
    cs: &mut ChangeSet,
    not_run: &mut Vec<NotRun>,
) -> anyhow::Result<()> {
    let base_line = line_of(text, at);
    for (offset, stmt) in split_statements(body) {
        let lead = stmt.len() - stmt.trim_start().len();
        let line = base_line + body[..offset + lead].matches('\n').count() as u64;
        let s = stmt.trim();
        if s.is_empty() {
            continue;
        }
        let resolved = substitute(s, properties, props)
            .with_context(|| format!("changeSet {} line {line}", cs.id))?;
        match parse_call(&resolved) {
            Some(Ok((table, file, csv, target))) => cs.calls.push(Call {
                table,
                file: PathBuf::from(file),
                csv_columns: csv,
                target_columns: target,
                line,
            }),
            Some(Err(why)) => bail!("changeSet {} by {}, line {line}: {why}", cs.id, cs.author),
            None => not_run.push(NotRun {
                line,
                what: format!(
                    "statement {:?} in changeSet {} (only CALL p_load_table_from_csv is run)",
                    first_words(s),
                    cs.id
                ),
            }),
        }
    }
    Ok(())
}

fn first_words(s: &str) -> String {
    let mut out: String = s.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
    if out.len() > 60 {
        out.truncate(60);
    }
    out
}

/// `${name}` from the properties (`--property` first).
fn substitute(
    s: &str,
    properties: &HashMap<String, String>,
    props: &[(String, String)],
) -> anyhow::Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            bail!("unclosed ${{ in {s:?}");
        };
        let name = &after[..end];
        let value = props
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| properties.get(name).map(String::as_str))
            .with_context(|| format!("property ${{{name}}} is not defined: give it with --property {name}=VALUE or a <property> in the changelog"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Statements separated by `;` outside quotes, with their offsets.
fn split_statements(body: &str) -> Vec<(usize, &str)> {
    let b = body.as_bytes();
    let mut out = vec![];
    let (mut start, mut quoted) = (0usize, false);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\'' => quoted = !quoted,
            b';' if !quoted => {
                out.push((start, &body[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push((start, &body[start..]));
    out
}

type Parsed = (String, String, Vec<String>, Vec<String>);

/// `CALL p_load_table_from_csv('t', 'file', array['a',…], array['x',…])`:
/// `None` if the statement is something else.
pub fn parse_call(stmt: &str) -> Option<Result<Parsed, String>> {
    let s = stmt.trim();
    let lower = s.to_ascii_lowercase();
    let rest = lower.strip_prefix("call")?.trim_start();
    let name_len = rest.find('(')?;
    let name = rest[..name_len].trim();
    let name = name.rsplit('.').next().unwrap_or(name);
    if name != "p_load_table_from_csv" {
        return None;
    }
    let open = s.len() - rest.len() + name_len;
    let args = &s[open + 1..];
    let Some(args) = args.trim_end().strip_suffix(')') else {
        return Some(Err("the CALL does not end with ')'".into()));
    };
    Some(parse_args(args))
}

fn parse_args(args: &str) -> Result<Parsed, String> {
    let mut p = ArgParser {
        s: args.as_bytes(),
        i: 0,
    };
    let table = p
        .string()
        .map_err(|e| format!("first argument (table): {e}"))?;
    p.comma()?;
    let file = p
        .string()
        .map_err(|e| format!("second argument (file): {e}"))?;
    p.comma()?;
    let csv = p
        .array()
        .map_err(|e| format!("third argument (csv columns): {e}"))?;
    let target = if p.comma().is_ok() {
        p.array()
            .map_err(|e| format!("fourth argument (target columns): {e}"))?
    } else {
        vec![]
    };
    p.ws();
    if p.i != p.s.len() {
        return Err(
            "p_load_table_from_csv takes four arguments: table, file, csv columns, target columns"
                .into(),
        );
    }
    Ok((table, file, csv, target))
}

struct ArgParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl ArgParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn comma(&mut self) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&b',') {
            self.i += 1;
            Ok(())
        } else {
            Err("expected ',' between the arguments".into())
        }
    }

    /// A '…' literal ('' is a quote).
    fn string(&mut self) -> Result<String, String> {
        self.ws();
        if self.s.get(self.i) != Some(&b'\'') {
            return Err("expected a '…' string".into());
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err("unterminated string".into()),
                Some(b'\'') if self.s.get(self.i + 1) == Some(&b'\'') => {
                    out.push(b'\'');
                    self.i += 2;
                }
                Some(b'\'') => {
                    self.i += 1;
                    break;
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| "not UTF-8".into())
    }

    /// `array['a', 'b']` (or `ARRAY[…]`), or NULL.
    fn array(&mut self) -> Result<Vec<String>, String> {
        self.ws();
        let rest = &self.s[self.i..];
        if rest.len() >= 4 && rest[..4].eq_ignore_ascii_case(b"null") {
            self.i += 4;
            return Ok(vec![]);
        }
        if rest.len() < 5 || !rest[..5].eq_ignore_ascii_case(b"array") {
            return Err("expected array['…', …]".into());
        }
        self.i += 5;
        self.ws();
        if self.s.get(self.i) != Some(&b'[') {
            return Err("expected '[' after array".into());
        }
        self.i += 1;
        let mut out = vec![];
        loop {
            self.ws();
            if self.s.get(self.i) == Some(&b']') {
                self.i += 1;
                break;
            }
            out.push(self.string()?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => return Err("expected ',' or ']' in the array".into()),
            }
        }
        // `array[…]::text[]`
        self.ws();
        if self.s[self.i..].starts_with(b"::") {
            self.i += 2;
            while self.i < self.s.len() && !matches!(self.s[self.i], b',' | b')') {
                self.i += 1;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<databaseChangeLog xmlns="http://www.liquibase.org/xml/ns/dbchangelog">
  <property name="suffix" value=".csv"/>
  <changeSet author="registry owner" id="load dictionaries">
    <comment>regions first</comment>
    <sql dbms="postgresql" splitStatements="true" stripComments="true">
      CALL p_load_table_from_csv('dict_region', '${dataLoadPath}regions${suffix}', array['code','name'], array['code','name']);
      CALL p_load_table_from_csv('factor','${dataLoadPath}factor.csv', array['code','name','skip'],
        array['code','name','factor_type::''Хімічний: ОБРВ''']);
      UPDATE registry.factor SET name = 'x';
    </sql>
  </changeSet>
  <changeSet author="a" id="ddl">
    <createTable tableName="x"/>
  </changeSet>
</databaseChangeLog>
"#;

    #[test]
    fn reads_calls_properties_and_what_it_does_not_run() {
        let mut props = HashMap::new();
        props.insert("dataLoadPath".to_string(), "/data/".to_string());
        let log = parse(LOG, Path::new("dir/data-load.xml"), props, &[]).unwrap();
        assert_eq!(log.file, "data-load.xml");
        assert_eq!(log.change_sets.len(), 2);
        let cs = &log.change_sets[0];
        assert_eq!(
            (cs.id.as_str(), cs.author.as_str()),
            ("load dictionaries", "registry owner")
        );
        assert_eq!(cs.calls.len(), 2);
        assert_eq!(cs.calls[0].file, PathBuf::from("/data/regions.csv"));
        assert_eq!(cs.calls[0].line, 7);
        assert_eq!(
            cs.calls[1].target_columns[2],
            "factor_type::'Хімічний: ОБРВ'"
        );
        let lines: Vec<u64> = log.not_run.iter().map(|n| n.line).collect();
        assert_eq!(lines, vec![10, 14], "{:?}", log.not_run);
        assert_ne!(cs.load_id(&log.file), log.change_sets[1].load_id(&log.file));
        assert!(ferry_common::identity::valid_name(&cs.load_id(&log.file)));
    }

    #[test]
    fn an_undefined_property_is_named() {
        let err = parse(
            &LOG.replace("${suffix}", "${nope}"),
            Path::new("x.xml"),
            HashMap::new(),
            &[("dataLoadPath".into(), "/d/".into())],
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("${nope}"), "{err:#}");
    }
}
