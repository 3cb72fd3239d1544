//! Column types the loader checks, and their COPY BINARY encoding.
//!
//! Every value is parsed here before it is sent, so a bad value is reported
//! with its file line instead of surfacing as PostgreSQL's first COPY error.
//! Parsing already yields the binary form, which spares the server its text
//! input functions (the reason COPY BINARY is used, see `copy.rs`).

use super::{array, datetime, numeric};

/// A column type as the loader understands it.
#[derive(Debug, Clone, PartialEq)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(precision, scale)` when declared.
    Numeric(Option<(u32, u32)>),
    /// text, varchar(n), char(n) (`max_chars` from the typmod).
    Text {
        max_chars: Option<usize>,
        blank_padded: bool,
    },
    Date,
    Timestamp,
    Timestamptz,
    Uuid,
    Json,
    Jsonb,
    Array {
        elem: Box<PgType>,
        elem_oid: u32,
    },
    /// A type the loader cannot check (enum, interval, inet, ...): its text
    /// goes to PostgreSQL unchanged and the table is loaded with COPY text.
    Unchecked(String),
}

impl PgType {
    /// From a (base) type name as in `pg_type.typname`, its typmod, and for
    /// arrays the element's name and oid.
    pub fn from_catalog(typname: &str, typmod: i32, elem: Option<(&str, u32)>) -> PgType {
        if let (Some(inner), Some((elem_name, elem_oid))) = (typname.strip_prefix('_'), elem) {
            let _ = inner;
            return match PgType::from_catalog(elem_name, typmod, None) {
                PgType::Unchecked(_) => PgType::Unchecked(typname.to_owned()),
                t => PgType::Array {
                    elem: Box::new(t),
                    elem_oid,
                },
            };
        }
        match typname {
            "bool" => PgType::Bool,
            "int2" => PgType::Int2,
            "int4" => PgType::Int4,
            "int8" => PgType::Int8,
            "float4" => PgType::Float4,
            "float8" => PgType::Float8,
            "numeric" => PgType::Numeric((typmod >= 4).then(|| {
                let m = (typmod - 4) as u32;
                (m >> 16, m & 0xffff)
            })),
            "text" | "varchar" | "bpchar" => PgType::Text {
                max_chars: (typmod >= 4).then(|| (typmod - 4) as usize),
                blank_padded: typname == "bpchar",
            },
            "date" => PgType::Date,
            "timestamp" => PgType::Timestamp,
            "timestamptz" => PgType::Timestamptz,
            "uuid" => PgType::Uuid,
            "json" => PgType::Json,
            "jsonb" => PgType::Jsonb,
            other => PgType::Unchecked(other.to_owned()),
        }
    }

    pub fn is_checked(&self) -> bool {
        !matches!(self, PgType::Unchecked(_))
    }

    /// Check `v` (never empty: empty is NULL) and append its binary form
    /// (without the length word) to `out`. On error `out` may hold garbage
    /// past its original length; the caller truncates.
    pub fn encode(&self, v: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            PgType::Bool => {
                let b =
                    parse_bool(v).ok_or("not a boolean (true/false, t/f, yes/no, on/off, 1/0)")?;
                out.push(u8::from(b));
            }
            PgType::Int2 => {
                let n = parse_int(v).ok_or("not an integer")?;
                let n = i16::try_from(n).map_err(|_| "out of range for smallint")?;
                out.extend_from_slice(&n.to_be_bytes());
            }
            PgType::Int4 => {
                let n = parse_int(v).ok_or("not an integer")?;
                let n = i32::try_from(n).map_err(|_| "out of range for integer")?;
                out.extend_from_slice(&n.to_be_bytes());
            }
            PgType::Int8 => {
                let n = parse_int(v).ok_or("not an integer (or out of range for bigint)")?;
                out.extend_from_slice(&n.to_be_bytes());
            }
            PgType::Float4 => {
                let s = trimmed_str(v).ok_or("not a number")?;
                let f: f32 = s.parse().map_err(|_| "not a number")?;
                if f.is_infinite() && !is_infinity_literal(s) {
                    return Err("out of range for real".into());
                }
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            PgType::Float8 => {
                let s = trimmed_str(v).ok_or("not a number")?;
                let f: f64 = s.parse().map_err(|_| "not a number")?;
                if f.is_infinite() && !is_infinity_literal(s) {
                    return Err("out of range for double precision".into());
                }
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            PgType::Numeric(typmod) => numeric::encode(v, *typmod, out)?,
            PgType::Text {
                max_chars,
                blank_padded,
            } => {
                if v.contains(&0) {
                    return Err("text cannot contain a NUL byte".into());
                }
                if let Some(max) = *max_chars
                    && v.len() > max
                {
                    let counted = if *blank_padded { v.trim_ascii_end() } else { v };
                    let chars = counted.iter().filter(|&&b| (b & 0xC0) != 0x80).count();
                    if chars > max {
                        return Err(format!(
                            "{chars} characters, longer than the column's {max}"
                        ));
                    }
                }
                out.extend_from_slice(v);
            }
            PgType::Date => {
                let d = datetime::parse_date(v.trim_ascii()).ok_or("not a date (YYYY-MM-DD)")?;
                out.extend_from_slice(&d.to_be_bytes());
            }
            PgType::Timestamp => {
                let t = datetime::parse_timestamp(v.trim_ascii(), false)
                    .ok_or("not a timestamp (YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]])")?;
                out.extend_from_slice(&t.to_be_bytes());
            }
            PgType::Timestamptz => {
                let t = datetime::parse_timestamp(v.trim_ascii(), true).ok_or(
                    "not a timestamp with time zone (YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]][Z|±HH[:MM]])",
                )?;
                out.extend_from_slice(&t.to_be_bytes());
            }
            PgType::Uuid => {
                let u = parse_uuid(v.trim_ascii()).ok_or("not a UUID")?;
                out.extend_from_slice(&u);
            }
            PgType::Json | PgType::Jsonb => {
                if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(v) {
                    return Err(format!("not valid JSON: {e}"));
                }
                if *self == PgType::Jsonb {
                    out.push(1); // jsonb binary format version
                }
                out.extend_from_slice(v);
            }
            PgType::Array { elem, elem_oid } => array::encode(v, elem, *elem_oid, out)?,
            PgType::Unchecked(_) => out.extend_from_slice(v),
        }
        Ok(())
    }
}

impl std::fmt::Display for PgType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgType::Bool => f.write_str("boolean"),
            PgType::Int2 => f.write_str("smallint"),
            PgType::Int4 => f.write_str("integer"),
            PgType::Int8 => f.write_str("bigint"),
            PgType::Float4 => f.write_str("real"),
            PgType::Float8 => f.write_str("double precision"),
            PgType::Numeric(None) => f.write_str("numeric"),
            PgType::Numeric(Some((p, s))) => write!(f, "numeric({p},{s})"),
            PgType::Text {
                max_chars: None, ..
            } => f.write_str("text"),
            PgType::Text {
                max_chars: Some(n),
                blank_padded: false,
            } => write!(f, "varchar({n})"),
            PgType::Text {
                max_chars: Some(n),
                blank_padded: true,
            } => write!(f, "char({n})"),
            PgType::Date => f.write_str("date"),
            PgType::Timestamp => f.write_str("timestamp"),
            PgType::Timestamptz => f.write_str("timestamptz"),
            PgType::Uuid => f.write_str("uuid"),
            PgType::Json => f.write_str("json"),
            PgType::Jsonb => f.write_str("jsonb"),
            PgType::Array { elem, .. } => write!(f, "{elem}[]"),
            PgType::Unchecked(n) => f.write_str(n),
        }
    }
}

fn trimmed_str(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v.trim_ascii()).ok()
}

fn is_infinity_literal(s: &str) -> bool {
    s.trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("inf")
}

/// Decimal integer with optional sign and surrounding blanks, as int8in.
pub fn parse_int(v: &[u8]) -> Option<i64> {
    let v = v.trim_ascii();
    let (neg, digits) = match v.first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut n: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d))?;
    }
    if neg { Some(n) } else { n.checked_neg() }
}

/// PostgreSQL's boolean spellings (any unambiguous prefix, any case).
fn parse_bool(v: &[u8]) -> Option<bool> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 5 {
        return None;
    }
    let mut buf = [0u8; 5];
    for (d, s) in buf.iter_mut().zip(v) {
        *d = s.to_ascii_lowercase();
    }
    let w = &buf[..v.len()];
    let prefix_of = |full: &[u8]| full.starts_with(w);
    match w {
        b"1" => Some(true),
        b"0" => Some(false),
        b"on" => Some(true),
        b"of" | b"off" => Some(false),
        _ if prefix_of(b"true") || prefix_of(b"yes") => Some(true),
        _ if prefix_of(b"false") || prefix_of(b"no") => Some(false),
        _ => None,
    }
}

/// 32 hex digits, optionally in braces and with hyphens between groups.
fn parse_uuid(v: &[u8]) -> Option<[u8; 16]> {
    let v = match (v.first(), v.last()) {
        (Some(b'{'), Some(b'}')) => &v[1..v.len() - 1],
        _ => v,
    };
    let mut out = [0u8; 16];
    let mut n = 0usize;
    let mut prev_hyphen = true; // no leading hyphen
    for &b in v {
        if b == b'-' {
            if prev_hyphen || !n.is_multiple_of(2) {
                return None;
            }
            prev_hyphen = true;
            continue;
        }
        prev_hyphen = false;
        let d = (b as char).to_digit(16)? as u8;
        if n >= 32 {
            return None;
        }
        out[n / 2] |= if n.is_multiple_of(2) { d << 4 } else { d };
        n += 1;
    }
    (n == 32 && !prev_hyphen).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(t: &PgType, v: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        t.encode(v.as_bytes(), &mut out).map(|()| out)
    }

    #[test]
    fn integers() {
        assert_eq!(enc(&PgType::Int4, " 42 ").unwrap(), 42i32.to_be_bytes());
        assert_eq!(
            enc(&PgType::Int8, "-9223372036854775808").unwrap(),
            i64::MIN.to_be_bytes()
        );
        assert!(enc(&PgType::Int2, "40000").is_err());
        assert!(enc(&PgType::Int4, "4x").is_err());
        assert!(enc(&PgType::Int4, "-").is_err());
        assert!(enc(&PgType::Int8, "9223372036854775808").is_err());
    }

    #[test]
    fn booleans_and_floats() {
        assert_eq!(enc(&PgType::Bool, "Yes").unwrap(), [1]);
        assert_eq!(enc(&PgType::Bool, "f").unwrap(), [0]);
        assert!(enc(&PgType::Bool, "maybe").is_err());
        assert_eq!(
            enc(&PgType::Float8, "1.5").unwrap(),
            1.5f64.to_bits().to_be_bytes()
        );
        assert!(enc(&PgType::Float8, "1e400").is_err());
        assert!(enc(&PgType::Float8, "-Infinity").is_ok());
        assert!(enc(&PgType::Float4, "abc").is_err());
    }

    #[test]
    fn text_length_in_characters() {
        let t = PgType::from_catalog("varchar", 3 + 4, None);
        assert!(enc(&t, "éèà").is_ok());
        assert!(enc(&t, "abcd").is_err());
        let c = PgType::from_catalog("bpchar", 2 + 4, None);
        assert!(enc(&c, "ab   ").is_ok());
    }

    #[test]
    fn uuids_and_json() {
        let u = enc(&PgType::Uuid, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}").unwrap();
        assert_eq!(u[0], 0xa0);
        assert_eq!(u[15], 0x11);
        assert!(enc(&PgType::Uuid, "a0eebc99").is_err());
        assert_eq!(enc(&PgType::Jsonb, "{\"a\":1}").unwrap()[0], 1);
        assert!(enc(&PgType::Json, "{a:1}").is_err());
    }
}
