//! One record of a mapped file: checked (field count, UTF-8, types,
//! references) and appended to the staging COPY in binary form, or
//! reported with its line and the CSV's column.

use std::borrow::Cow;
use std::ops::ControlFlow;

use super::error::{Errors, RowError};
use super::mapping::{Source, UUID_COLUMN};
use super::pgcsv::Record;
use super::plan::shorten;
use super::staged::{StagedPlan, TargetPlan};
use super::types::PgType;

const NBSP: &[u8] = "\u{a0}".as_bytes();

/// Non-breaking spaces around a value go, as the Platform trims them.
pub(super) fn trim_nbsp(mut v: &[u8]) -> &[u8] {
    while let Some(rest) = v.strip_prefix(NBSP) {
        v = rest;
    }
    while let Some(rest) = v.strip_suffix(NBSP) {
        v = rest;
    }
    v
}

/// Check one record and append it to the staging COPY (nothing appended
/// when it is refused). `Break` once the error cap is reached.
pub(super) fn encode(
    plan: &StagedPlan,
    rec: &Record<'_>,
    (header_seen, skip_rest): (&mut bool, &mut bool),
    rows: &mut u64,
    buf: &mut Vec<u8>,
    errors: &mut Errors,
) -> ControlFlow<()> {
    let csv = &plan.mapping.csv_columns;
    let err = |line: u64, column: Option<&str>, value: Option<&[u8]>, reason: String| RowError {
        file: plan.file.clone(),
        line,
        column: column.map(str::to_owned),
        value: value.filter(|v| !v.is_empty()).map(shorten),
        reason,
    };
    let cap = |errors: &Errors| {
        if errors.full() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    if *skip_rest {
        return ControlFlow::Continue(());
    }
    if !*header_seen {
        *header_seen = true;
        let before = errors.list.len() + usize::from(errors.truncated);
        let cells: Vec<String> = (0..rec.len())
            .map(|i| {
                let b = rec.get(i).bytes;
                let b = if i == 0 {
                    b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b)
                } else {
                    b
                };
                String::from_utf8_lossy(b).trim().to_ascii_lowercase()
            })
            .collect();
        if cells.len() != csv.len() {
            errors.push(err(
                1,
                None,
                None,
                format!(
                    "the header has {} columns ({}) but csv_columns names {} ({}): every column of the file must be named, in order",
                    cells.len(),
                    cells.join(", "),
                    csv.len(),
                    csv.join(", ")
                ),
            ));
        } else if let Some((i, cell)) = cells
            .iter()
            .enumerate()
            .find(|(i, c)| *c != &csv[*i] && csv.contains(c))
        {
            errors.push(err(
                1,
                Some(&csv[i]),
                None,
                format!(
                    "the header has {cell} where csv_columns names {}: the columns are in another order than csv_columns says",
                    csv[i]
                ),
            ));
        }
        *skip_rest = errors.list.len() + usize::from(errors.truncated) > before;
        return cap(errors);
    }
    if rec.len() != csv.len() {
        errors.push(err(
            rec.line,
            None,
            None,
            format!(
                "{} fields, but the file has {} columns ({}){}",
                rec.len(),
                csv.len(),
                csv.join(", "),
                if rec.len() < csv.len() {
                    ": a short row"
                } else {
                    ": an unquoted ',' inside a value?"
                }
            ),
        ));
        return cap(errors);
    }
    let mut ok = true;
    for (i, name) in csv.iter().enumerate() {
        if let Err(e) = std::str::from_utf8(rec.get(i).bytes) {
            let bad = rec.get(i).bytes[e.valid_up_to()];
            errors.push(err(
                rec.line,
                Some(name),
                None,
                format!(
                    "not UTF-8: byte 0x{bad:02x} at byte {} of the value; files must be UTF-8 encoded",
                    e.valid_up_to()
                ),
            ));
            ok = false;
        }
    }
    if !ok {
        return cap(errors);
    }
    let start = buf.len();
    let nfields = 1
        + usize::from(plan.uuid_csv.is_some())
        + plan
            .targets
            .iter()
            .filter(|t| !matches!(t.source, Source::Expr(_)))
            .count()
        + if plan.stage_csv { csv.len() } else { 0 };
    buf.extend_from_slice(&(nfields as i16).to_be_bytes());
    buf.extend_from_slice(&8i32.to_be_bytes());
    buf.extend_from_slice(&(rec.line as i64).to_be_bytes());
    let put = |buf: &mut Vec<u8>, v: Option<&[u8]>| match v {
        None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(v) => {
            buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
            buf.extend_from_slice(v);
        }
    };
    let mut scratch = Vec::new();
    if let Some(u) = plan.uuid_csv {
        let f = rec.get(u);
        let v = trim_nbsp(f.bytes);
        scratch.clear();
        if f.is_null() || PgType::Uuid.encode(v, &mut scratch).is_err() {
            errors.push(err(
                rec.line,
                Some(UUID_COLUMN),
                Some(f.bytes),
                "not a UUID: the CSV column uuid holds the row's id".into(),
            ));
            ok = false;
        }
        put(buf, Some(v));
    }
    let mut list = Vec::new();
    for t in &plan.targets {
        // Borrowed from the record or the reference map but for lists.
        let value: Option<Cow<'_, [u8]>> = match &t.source {
            Source::Expr(_) => continue,
            Source::Column(_) => {
                let f = rec.get(t.csv_idx.unwrap_or(0));
                (!f.is_null()).then(|| Cow::Borrowed(trim_nbsp(f.bytes)))
            }
            Source::Ref(_) => {
                let (map, ci, _) = &t.refs[0];
                let f = rec.get(*ci);
                if f.is_null() {
                    None
                } else {
                    match map.get(f.bytes) {
                        Some(v) => v.map(|v| Cow::Borrowed(trim_nbsp(v))),
                        None => {
                            errors.push(err(
                                rec.line,
                                Some(&t.label),
                                Some(f.bytes),
                                dangling(t, 0),
                            ));
                            ok = false;
                            continue;
                        }
                    }
                }
            }
            Source::RefArray(_) => {
                list.clear();
                let mut good = true;
                for (n, (map, ci, delim)) in t.refs.iter().enumerate() {
                    let f = rec.get(*ci);
                    if f.is_null() {
                        continue;
                    }
                    let s = std::str::from_utf8(f.bytes).unwrap_or_default();
                    let inner = s.trim_start_matches('{').trim_end_matches('}');
                    for el in inner.split(*delim) {
                        let el = el.trim_matches(' ');
                        match map.get(el.as_bytes()) {
                            Some(Some(id)) => list.push(String::from_utf8_lossy(id).into_owned()),
                            Some(None) => list.push("NULL".into()),
                            None => {
                                errors.push(err(
                                    rec.line,
                                    Some(&csv[*ci]),
                                    Some(el.as_bytes()),
                                    dangling(t, n),
                                ));
                                good = false;
                            }
                        }
                    }
                }
                if !good {
                    ok = false;
                    continue;
                }
                Some(Cow::Owned(format!("{{{}}}", list.join(",")).into_bytes()))
            }
        };
        match &value {
            None if t.not_null => {
                errors.push(err(
                    rec.line,
                    Some(&t.label),
                    None,
                    format!("empty value (NULL) in NOT NULL column {}", t.column),
                ));
                ok = false;
            }
            None => put(buf, None),
            Some(v) => {
                scratch.clear();
                match t.ty.encode(v, &mut scratch) {
                    Ok(()) => put(buf, Some(v)),
                    Err(reason) => {
                        let shown = match t.source {
                            Source::Column(_) => v.as_ref(),
                            _ => rec.get(t.refs.first().map_or(0, |r| r.1)).bytes,
                        };
                        errors.push(err(
                            rec.line,
                            Some(&t.label),
                            Some(shown),
                            format!("{reason} (column {} is {})", t.column, t.ty),
                        ));
                        ok = false;
                    }
                }
            }
        }
    }
    if plan.stage_csv {
        for i in 0..csv.len() {
            let f = rec.get(i);
            put(buf, (!f.is_null()).then_some(f.bytes));
        }
    }
    if !ok {
        buf.truncate(start);
        return cap(errors);
    }
    *rows += 1;
    ControlFlow::Continue(())
}

fn dangling(t: &TargetPlan, n: usize) -> String {
    let r = match &t.source {
        Source::Ref(r) => r,
        Source::RefArray(l) => &l[n.min(l.len() - 1)].0,
        _ => return "dangling reference".into(),
    };
    format!(
        "dangling reference: no row of {} has {} equal to this value (for {})",
        r.ref_table, r.ref_col, t.column
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_breaking_spaces_are_trimmed_and_nothing_else() {
        assert_eq!(trim_nbsp("\u{a0} x \u{a0}\u{a0}".as_bytes()), b" x ");
        assert_eq!(trim_nbsp(b""), b"");
    }
}
