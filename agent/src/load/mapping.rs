//! The Platform's mapping language, given outside the file:
//! `p_load_table_from_csv(table, file, csv_columns[], target_columns[])`.
//!
//! `csv_columns` names the file's columns in order (its header row is
//! skipped, as the Platform's procedure skips it). Each element of
//! `target_columns` is one of
//!
//! * `col` — the CSV column `col` into the table column `col`;
//! * `col::<expression>` — an SQL expression over the CSV's columns
//!   (constants too), evaluated by PostgreSQL; it may read the staged rows
//!   as the table `<t>_csv`;
//! * `col::ref(lookup_col:<csv col>, ref_table:<t>, ref_col:<unique col>, ref_id:<id col>)`
//!   — the `ref_id` of the row of `ref_table` whose `ref_col` equals the CSV
//!   value;
//! * `col::ref_array(lookup_col:…, ref_table:…, ref_col:…, ref_id:…, delim:<char>)`
//!   — the same for each element of a list (`{a#b}` or `a#b`), giving an
//!   array; several `ref_array` elements for one column are concatenated.
//!
//! CSV columns not named in the mapping are read and dropped. An empty
//! `target_columns` means "every CSV column, as is".
//!
//! Expressions are checked here before anything is loaded: a single
//! expression made of literals, the CSV's columns, operators, casts,
//! `CASE`, and calls of functions on an allow-list; a subquery may read
//! only `<t>_csv`. Anything else (`;`, a comment, a statement or DDL
//! keyword, a function off the list, another table) is refused with the
//! column and the reason.

/// A parsed mapping for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The CSV's columns, in file order (lower-cased).
    pub csv_columns: Vec<String>,
    /// Target columns, in order; `ref_array` elements of one column merged.
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The element as written (for messages).
    pub raw: String,
    /// Table column written.
    pub column: String,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A CSV column of the same name.
    Column(String),
    /// An SQL expression over the CSV's columns.
    Expr(String),
    Ref(RefArgs),
    /// One or more lists of references, concatenated.
    RefArray(Vec<(RefArgs, char)>),
}

/// `ref(lookup_col:…, ref_table:…, ref_col:…, ref_id:…)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefArgs {
    /// The CSV column holding the business value.
    pub lookup_col: String,
    /// Possibly schema-qualified.
    pub ref_table: String,
    /// The referenced table's unique business column.
    pub ref_col: String,
    /// The referenced table's id column, written into the target.
    pub ref_id: String,
}

impl Source {
    /// The CSV column a value comes from, as the user knows it.
    pub fn csv_column(&self) -> Option<&str> {
        match self {
            Source::Column(c) => Some(c),
            Source::Ref(r) => Some(&r.lookup_col),
            Source::RefArray(list) => list.first().map(|(r, _)| r.lookup_col.as_str()),
            Source::Expr(_) => None,
        }
    }
}

/// A refused mapping element: the target element (or CSV column) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    pub column: String,
    pub reason: String,
}

/// The CSV column holding the row's id, as on the Platform.
pub const UUID_COLUMN: &str = "uuid";

/// Parse and check a mapping for table `table` (its unqualified name names
/// the staged rows: `<table>_csv`).
pub fn parse(
    table: &str,
    csv_columns: &[String],
    target_columns: &[String],
) -> Result<Mapping, Vec<MappingError>> {
    let mut errors = Vec::new();
    let mut csv = Vec::with_capacity(csv_columns.len());
    for c in csv_columns {
        let name = c.trim().to_ascii_lowercase();
        if !is_ident(&name) {
            errors.push(err(
                c,
                "a CSV column name must be a plain SQL name (letters, digits, '_')",
            ));
        } else if csv.contains(&name) {
            errors.push(err(c, "CSV column named twice"));
        } else {
            csv.push(name);
        }
    }
    if csv_columns.is_empty() {
        errors.push(err(
            "",
            "csv_columns is empty: name the file's columns in order",
        ));
    }
    let staged = format!("{}_csv", unqualified(table));
    let elements: Vec<String> = if target_columns.is_empty() {
        csv.clone()
    } else {
        target_columns.to_vec()
    };
    let mut targets: Vec<Target> = Vec::with_capacity(elements.len());
    for raw in &elements {
        match parse_element(raw, &csv, &staged) {
            Ok(t) => {
                if let Some(prev) = targets.iter_mut().find(|p| p.column == t.column) {
                    match (&mut prev.source, t.source) {
                        (Source::RefArray(list), Source::RefArray(more)) => list.extend(more),
                        _ => errors.push(err(raw, "target column named twice")),
                    }
                } else {
                    targets.push(t);
                }
            }
            Err(reason) => errors.push(err(raw, &reason)),
        }
    }
    if errors.is_empty() {
        Ok(Mapping {
            csv_columns: csv,
            targets,
        })
    } else {
        Err(errors)
    }
}

fn err(column: &str, reason: &str) -> MappingError {
    MappingError {
        column: column.to_owned(),
        reason: reason.to_owned(),
    }
}

fn unqualified(table: &str) -> String {
    table
        .rsplit('.')
        .next()
        .unwrap_or(table)
        .trim_matches('"')
        .to_ascii_lowercase()
}

fn parse_element(raw: &str, csv: &[String], staged: &str) -> Result<Target, String> {
    let el = raw.trim();
    let (column, rest) = match el.split_once("::") {
        None => (el, None),
        Some((c, r)) => (c.trim(), Some(r.trim())),
    };
    let column = column.to_ascii_lowercase();
    if !is_ident(&column) {
        return Err(format!(
            "target column {column:?} is not a plain SQL name (letters, digits, '_')"
        ));
    }
    let source = match rest {
        None => {
            if !csv.contains(&column) {
                return Err(format!(
                    "{column} is not one of the CSV's columns ({}); map it with {column}::<expression> or add it to csv_columns",
                    csv.join(", ")
                ));
            }
            Source::Column(column.clone())
        }
        Some(r) if r.starts_with("ref_array(") => {
            let (args, delim) = ref_args(r, "ref_array", csv)?;
            Source::RefArray(vec![(args, delim.unwrap_or(','))])
        }
        Some(r) if r.starts_with("ref(") => {
            let (args, delim) = ref_args(r, "ref", csv)?;
            if delim.is_some() {
                return Err("ref() takes no delim; use ref_array() for a list".into());
            }
            Source::Ref(args)
        }
        Some("") => {
            return Err("nothing after '::': give an expression, ref(…) or ref_array(…)".into());
        }
        Some(expr) => {
            check_expression(expr, csv, staged)?;
            Source::Expr(expr.to_owned())
        }
    };
    Ok(Target {
        raw: raw.to_owned(),
        column,
        source,
    })
}

/// `ref(lookup_col:a, ref_table:b, ref_col:c, ref_id:d[, delim:x])`.
fn ref_args(r: &str, kind: &str, csv: &[String]) -> Result<(RefArgs, Option<char>), String> {
    let usage = format!(
        "{kind}() reads {kind}(lookup_col:<csv column>, ref_table:<table>, ref_col:<unique column>, ref_id:<id column>{})",
        if kind == "ref_array" {
            ", delim:<char>"
        } else {
            ""
        }
    );
    let inner = r
        .strip_prefix(kind)
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| usage.clone())?;
    let (mut lookup, mut table, mut col, mut id, mut delim) = (None, None, None, None, None);
    // `delim:,` holds the separator itself: take it before splitting.
    let (inner, tail_delim) = match inner.rfind("delim:") {
        Some(at) => {
            let value = &inner[at + "delim:".len()..];
            let mut chars = value.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => (inner[..at].trim_end().trim_end_matches(','), Some(c)),
                _ => return Err(format!("delim must be a single character, got {value:?}")),
            }
        }
        None => (inner, None),
    };
    delim = delim.or(tail_delim);
    for part in inner.split(',') {
        let Some((k, v)) = part.split_once(':') else {
            return Err(usage);
        };
        let v = v.trim().to_ascii_lowercase();
        let slot = match k.trim() {
            "lookup_col" => &mut lookup,
            "ref_table" => &mut table,
            "ref_col" => &mut col,
            "ref_id" => &mut id,
            other => return Err(format!("unknown {kind}() argument {other:?}; {usage}")),
        };
        *slot = Some(v);
    }
    let (Some(lookup_col), Some(ref_table), Some(ref_col), Some(ref_id)) = (lookup, table, col, id)
    else {
        return Err(usage);
    };
    for (what, name) in [
        ("lookup_col", &lookup_col),
        ("ref_col", &ref_col),
        ("ref_id", &ref_id),
    ] {
        if !is_ident(name) {
            return Err(format!("{kind}() {what} {name:?} is not a plain SQL name"));
        }
    }
    if ref_table.is_empty()
        || ref_table.split('.').count() > 2
        || !ref_table.split('.').all(is_ident)
    {
        return Err(format!(
            "{kind}() ref_table {ref_table:?} must be table or schema.table"
        ));
    }
    if !csv.contains(&lookup_col) {
        return Err(format!(
            "{kind}() lookup_col {lookup_col} is not one of the CSV's columns ({})",
            csv.join(", ")
        ));
    }
    Ok((
        RefArgs {
            lookup_col,
            ref_table,
            ref_col,
            ref_id,
        },
        delim,
    ))
}

pub fn is_ident(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(b'a'..=b'z' | b'_'))
        && b.all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Functions an expression may call: pure functions over values.
const ALLOWED_FUNCTIONS: &[&str] = &[
    "abs",
    "array_agg",
    "array_length",
    "array_to_string",
    "avg",
    "btrim",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "coalesce",
    "concat",
    "concat_ws",
    "count",
    "date_part",
    "date_trunc",
    "extract",
    "floor",
    "format",
    "greatest",
    "initcap",
    "least",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "max",
    "md5",
    "min",
    "mod",
    "nullif",
    "overlay",
    "position",
    "regexp_replace",
    "regexp_match",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "rpad",
    "rtrim",
    "split_part",
    "string_agg",
    "string_to_array",
    "strpos",
    "substr",
    "substring",
    "sum",
    "to_char",
    "to_date",
    "to_number",
    "to_timestamp",
    "translate",
    "trim",
    "trunc",
    "upper",
];

/// Words that may stand before `(` without being a function call.
const SYNTAX_BEFORE_PAREN: &[&str] = &[
    "and", "or", "not", "in", "exists", "any", "all", "some", "cast", "array", "row", "when",
    "then", "else", "select", "from", "where", "on", "as", "is", "case", "distinct", "over",
    "filter", "by", "like", "ilike", "between", "and", "end", "using", "join",
];

/// Words that make a statement, not an expression.
const REFUSED_WORDS: &[&str] = &[
    "insert",
    "update",
    "delete",
    "merge",
    "create",
    "drop",
    "alter",
    "truncate",
    "grant",
    "revoke",
    "copy",
    "call",
    "do",
    "execute",
    "set",
    "reset",
    "lock",
    "vacuum",
    "analyze",
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "prepare",
    "deallocate",
    "listen",
    "notify",
    "unlisten",
    "discard",
    "load",
    "import",
    "refresh",
    "cluster",
    "reindex",
    "comment",
    "with",
    "into",
    "returning",
    "security",
    "owner",
    "checkpoint",
    "declare",
    "fetch",
    "move",
    "close",
    "explain",
    "table",
    "values",
    "lateral",
    "for",
];

/// Check that `expr` is one expression of the allowed kind.
pub fn check_expression(expr: &str, csv: &[String], staged: &str) -> Result<(), String> {
    let tokens = tokenize(expr)?;
    // Aliases of the staged rows: `FROM <t>_csv [AS] c`.
    let mut readable = vec![staged.to_owned()];
    for w in tokens.windows(4) {
        if let [Tok::Word(kw), Tok::Word(t), a, b] = w
            && (kw.eq_ignore_ascii_case("from") || kw.eq_ignore_ascii_case("join"))
            && t.eq_ignore_ascii_case(staged)
        {
            let alias = match (a, b) {
                (Tok::Word(x), Tok::Word(y)) if x.eq_ignore_ascii_case("as") => Some(y),
                (Tok::Word(x), _) => Some(x),
                _ => None,
            };
            if let Some(al) = alias.map(|a| a.to_ascii_lowercase())
                && !SYNTAX_BEFORE_PAREN.contains(&al.as_str())
                && !["where", "group", "order", "limit", "having"].contains(&al.as_str())
            {
                readable.push(al);
            }
        }
    }
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Tok::Punct(';') => {
                return Err("';' ends a statement: a mapping element holds one expression".into());
            }
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            Tok::Word(w) => {
                let lw = w.to_ascii_lowercase();
                if REFUSED_WORDS.contains(&lw.as_str()) {
                    return Err(format!(
                        "{w:?} makes a statement, not an expression: only one SQL expression is allowed"
                    ));
                }
                let next = tokens.get(i + 1);
                if next == Some(&Tok::Punct('.')) {
                    // `koatuu_csv.code` is fine; `schema.function(` or
                    // `schema.table` is not.
                    if !readable.contains(&lw) {
                        return Err(format!(
                            "{w}.… names an object outside the staged rows: an expression may read only \
                             the CSV's columns and the staged rows as {staged}"
                        ));
                    }
                    continue;
                }
                if next == Some(&Tok::Punct('(')) && !SYNTAX_BEFORE_PAREN.contains(&lw.as_str()) {
                    if !ALLOWED_FUNCTIONS.contains(&lw.as_str()) {
                        return Err(format!(
                            "function {lw}() is not on the allow-list of functions an expression may call"
                        ));
                    }
                    continue;
                }
                if matches!(
                    tokens.get(i.wrapping_sub(1)),
                    Some(Tok::Word(p)) if p.eq_ignore_ascii_case("from") || p.eq_ignore_ascii_case("join")
                ) && lw != staged
                {
                    return Err(format!(
                        "a subquery may read only the staged rows {staged}, not {w}"
                    ));
                }
            }
            Tok::Ident(q) if tokens.get(i + 1) == Some(&Tok::Punct('(')) => {
                return Err(format!("quoted function name {q:?} is not allowed"));
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    if tokens.is_empty() {
        return Err("empty expression".into());
    }
    let _ = csv;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    /// A double-quoted identifier.
    Ident(String),
    Str,
    Num,
    Punct(char),
    Op,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                return Err("comments are not allowed in an expression".into());
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                return Err("comments are not allowed in an expression".into());
            }
            b'$' => {
                return Err(
                    "dollar quoting and parameters are not allowed in an expression".into(),
                );
            }
            b'\'' => {
                // 'text' with '' inside; E'…' escapes are refused below.
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                out.push(Tok::Str);
            }
            b'"' => {
                let start = i + 1;
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("unterminated quoted name".into()),
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                out.push(Tok::Ident(
                    String::from_utf8_lossy(&b[start..i]).into_owned(),
                ));
                i += 1;
            }
            b'0'..=b'9' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                out.push(Tok::Num);
            }
            b'(' | b')' | b',' | b';' | b'.' | b'[' | b']' => {
                out.push(Tok::Punct(c as char));
                i += 1;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
                let w = String::from_utf8_lossy(&b[start..i]).into_owned();
                if b.get(i) == Some(&b'\'')
                    && (w.eq_ignore_ascii_case("e") || w.eq_ignore_ascii_case("u&"))
                {
                    return Err(
                        "escape-string literals (E'…') are not allowed; use a plain '…' literal"
                            .into(),
                    );
                }
                out.push(Tok::Word(w));
            }
            b'+' | b'*' | b'/' | b'<' | b'>' | b'=' | b'~' | b'!' | b'@' | b'#' | b'%' | b'^'
            | b'&' | b'|' | b'`' | b'?' | b':' | b'-' => {
                out.push(Tok::Op);
                i += 1;
            }
            _ => {
                return Err(format!(
                    "character {:?} is not allowed in an expression",
                    c as char
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_platform_forms() {
        let m = parse(
            "laboratory",
            &cols(&["uuid", "name", "region", "research", "skip_me"]),
            &cols(&[
                "name",
                "region_id::ref(lookup_col:region,ref_table:dict_region,ref_col:code,ref_id:region_id)",
                "research_ids::ref_array(lookup_col:research,ref_table:dict_research,ref_col:research_type,ref_id:research_id,delim:#)",
                "note::'Хімічний: ОБРВ'",
                "capacity::(SELECT count(*) FROM laboratory_csv c WHERE c.region = laboratory_csv.region)",
            ]),
        )
        .unwrap();
        assert_eq!(m.targets.len(), 5);
        assert_eq!(m.targets[0].source, Source::Column("name".into()));
        match &m.targets[2].source {
            Source::RefArray(list) => assert_eq!(list[0].1, '#'),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.targets[3].source, Source::Expr("'Хімічний: ОБРВ'".into()));
        let comma = parse(
            "t",
            &cols(&["a"]),
            &cols(&["x::ref_array(lookup_col:a,ref_table:r,ref_col:c,ref_id:id,delim:,)"]),
        )
        .unwrap();
        assert!(matches!(&comma.targets[0].source, Source::RefArray(l) if l[0].1 == ','));
    }

    #[test]
    fn refuses_statements_and_strangers() {
        let csv = cols(&["a", "b"]);
        for (expr, why) in [
            ("x::a; DROP TABLE registry.t", "';'"),
            ("x::(DELETE FROM t RETURNING 1)", "statement"),
            ("x::pg_sleep(10)", "allow-list"),
            ("x::pg_catalog.lower(a)", "outside"),
            ("x::(SELECT passwd FROM pg_shadow)", "only the staged rows"),
            ("x::a -- comment", "comments"),
            ("x::$$a$$", "dollar"),
            ("x::E'\\x41'", "escape"),
            ("y", "not one of the CSV's columns"),
            (
                "x::ref(lookup_col:zz,ref_table:r,ref_col:c,ref_id:id)",
                "lookup_col zz",
            ),
        ] {
            let e = parse("t", &csv, &cols(&[expr])).unwrap_err();
            assert!(e[0].reason.contains(why), "{expr}: {e:?}");
        }
        assert!(parse("t", &csv, &cols(&["x::upper(a) || '-' || b::text"])).is_ok());
        assert!(
            parse(
                "t",
                &csv,
                &cols(&["x::CASE WHEN a = '' THEN NULL ELSE a END"])
            )
            .is_ok()
        );
    }

    #[test]
    fn empty_targets_mean_every_csv_column() {
        let m = parse("t", &cols(&["a", "B"]), &[]).unwrap();
        assert_eq!(
            m.targets
                .iter()
                .map(|t| t.column.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
