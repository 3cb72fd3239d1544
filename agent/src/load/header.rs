//! The header row: delimiter detection and column cells, including the
//! Platform's reference form `column::ref(lookup_col, ref_table, ref_col)`.

/// Longest header line accepted; a longer "first line" means the file is
/// not what it claims to be.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// One header cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCell {
    /// The cell as written (for messages).
    pub raw: String,
    /// Target column.
    pub column: String,
    pub reference: Option<RefSpec>,
}

/// `column::ref(lookup, table, target)`: the file holds `table.lookup`, the
/// loader writes the matching `table.target`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefSpec {
    pub lookup: String,
    /// Possibly schema-qualified.
    pub table: String,
    pub target: String,
}

/// Pick `,` or `;` from the header line: the one that occurs more often
/// outside double quotes and outside `ref(...)` parentheses (`,` on a tie,
/// e.g. a single-column header).
pub fn detect_delimiter(line: &[u8]) -> u8 {
    let (mut commas, mut semis) = (0usize, 0usize);
    scan(line, |b| match b {
        b',' => commas += 1,
        b';' => semis += 1,
        _ => {}
    });
    if semis > commas { b';' } else { b',' }
}

/// Split the header line (without its terminator) into cells. Like CSV,
/// with one addition: a delimiter inside parentheses does not split, so
/// `owner_id::ref(code,owners,id)` needs no quotes in a `,` file.
pub fn split_header(line: &[u8], delimiter: u8) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = Vec::new();
    let (mut quoted, mut depth) = (false, 0usize);
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        match b {
            b'"' if quoted && line.get(i + 1) == Some(&b'"') => {
                cell.push(b'"');
                i += 1;
            }
            b'"' => quoted = !quoted,
            b'(' if !quoted => {
                depth += 1;
                cell.push(b);
            }
            b')' if !quoted => {
                depth = depth.saturating_sub(1);
                cell.push(b);
            }
            _ if b == delimiter && !quoted && depth == 0 => {
                cells.push(String::from_utf8_lossy(&cell).into_owned());
                cell.clear();
            }
            _ => cell.push(b),
        }
        i += 1;
    }
    cells.push(String::from_utf8_lossy(&cell).into_owned());
    cells
}

/// Call `f` with each byte outside quotes and parentheses.
fn scan(line: &[u8], mut f: impl FnMut(u8)) {
    let (mut quoted, mut depth) = (false, 0usize);
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth = depth.saturating_sub(1),
            _ if !quoted && depth == 0 => f(b),
            _ => {}
        }
    }
}

/// Parse one header cell; the error says what is wrong with it.
pub fn parse_cell(raw: &str) -> Result<HeaderCell, String> {
    let cell = raw.trim();
    let (column, reference) = match cell.split_once("::") {
        None => (cell, None),
        Some((col, rest)) => {
            let rest = rest.trim();
            let args = rest
                .strip_prefix("ref(")
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| {
                    "a header cell with '::' must read column::ref(lookup_col,ref_table,ref_col)"
                        .to_owned()
                })?;
            let parts: Vec<&str> = args.split(',').map(str::trim).collect();
            let [lookup, table, target] = parts.as_slice() else {
                return Err(format!(
                    "ref() takes 3 arguments (lookup_col, ref_table, ref_col), got {}",
                    parts.len()
                ));
            };
            for (what, name) in [("lookup_col", lookup), ("ref_col", target)] {
                if !is_snake_case(name) {
                    return Err(format!(
                        "ref() {what} {name:?} is not a snake_case column name"
                    ));
                }
            }
            if table.is_empty()
                || !table.split('.').all(is_snake_case)
                || table.split('.').count() > 2
            {
                return Err(format!(
                    "ref() table {table:?} must be table or schema.table in snake_case"
                ));
            }
            (
                col.trim(),
                Some(RefSpec {
                    lookup: (*lookup).to_owned(),
                    table: (*table).to_owned(),
                    target: (*target).to_owned(),
                }),
            )
        }
    };
    if !is_snake_case(column) {
        return Err(format!(
            "column name {column:?} is not snake_case (lower-case letters, digits, '_')"
        ));
    }
    Ok(HeaderCell {
        raw: raw.to_owned(),
        column: column.to_owned(),
        reference,
    })
}

fn is_snake_case(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_delimiter() {
        assert_eq!(detect_delimiter(b"a;b;c"), b';');
        assert_eq!(detect_delimiter(b"a,b"), b',');
        assert_eq!(detect_delimiter(b"a"), b',');
        assert_eq!(detect_delimiter(b"a;\"o::ref(x,y,z)\""), b';');
        assert_eq!(detect_delimiter(b"a,\"o::ref(x;y)\""), b',');
        assert_eq!(detect_delimiter(b"o::ref(x,y,z);sku"), b';');
    }

    #[test]
    fn splits_quoted_cells() {
        assert_eq!(
            split_header(b"id,\"owner_id::ref(code,owners,id)\",name", b','),
            vec!["id", "owner_id::ref(code,owners,id)", "name"]
        );
        assert_eq!(split_header(b"a", b','), vec!["a"]);
        assert_eq!(
            split_header(b"a,o::ref(x,y,z),\"q\"\"t\"", b','),
            vec!["a", "o::ref(x,y,z)", "q\"t"]
        );
    }

    #[test]
    fn parses_reference_cells() {
        let c = parse_cell("owner_id::ref( code , app.owners , id )").unwrap();
        assert_eq!(c.column, "owner_id");
        assert_eq!(
            c.reference,
            Some(RefSpec {
                lookup: "code".into(),
                table: "app.owners".into(),
                target: "id".into()
            })
        );
        assert!(parse_cell("Owner").is_err());
        assert!(parse_cell("a::ref(x,y)").is_err());
        assert!(parse_cell("a::int").is_err());
    }
}
