//! PostgreSQL array literals (`{a,b}`, `{{1,2},{3,4}}`, `{"x y",NULL}`) to
//! the binary array form, each element checked against the element type.

use super::types::PgType;

/// Dimensions beyond this are refused, as PostgreSQL does (MAXDIM).
const MAX_DIMS: usize = 6;

pub fn encode(v: &[u8], elem: &PgType, elem_oid: u32, out: &mut Vec<u8>) -> Result<(), String> {
    let mut p = Parser {
        v: v.trim_ascii(),
        pos: 0,
        dims: Vec::new(),
        leaf_depth: None,
        elems: Vec::new(),
    };
    p.parse_level(0)?;
    if p.pos != p.v.len() {
        return Err("not an array literal: text after the closing '}'".into());
    }
    // `{}` has no dimension at all.
    let ndims = if p.elems.is_empty() { 0 } else { p.dims.len() };
    let has_null = p.elems.iter().any(Option::is_none);
    out.extend_from_slice(&(ndims as i32).to_be_bytes());
    out.extend_from_slice(&i32::from(has_null).to_be_bytes());
    out.extend_from_slice(&elem_oid.to_be_bytes());
    for d in &p.dims[..ndims] {
        out.extend_from_slice(&(d.unwrap_or(0) as i32).to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes()); // lower bound
    }
    for (i, e) in p.elems.iter().enumerate() {
        match e {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(text) => {
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                elem.encode(text, out).map_err(|r| {
                    format!(
                        "element {} ({:?}): {r}",
                        i + 1,
                        String::from_utf8_lossy(text)
                    )
                })?;
                let len = (out.len() - at - 4) as i32;
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
    }
    Ok(())
}

struct Parser<'a> {
    v: &'a [u8],
    pos: usize,
    /// Length of each dimension, fixed by the first sub-array seen.
    dims: Vec<Option<usize>>,
    /// Depth of the innermost level: every branch must reach the same one.
    leaf_depth: Option<usize>,
    elems: Vec<Option<Vec<u8>>>,
}

impl Parser<'_> {
    fn skip_blanks(&mut self) {
        while self.v.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn parse_level(&mut self, depth: usize) -> Result<(), String> {
        if depth >= MAX_DIMS {
            return Err(format!("more than {MAX_DIMS} array dimensions"));
        }
        self.skip_blanks();
        if self.v.get(self.pos) != Some(&b'{') {
            return Err("not an array literal: expected '{' (arrays are written {a,b})".into());
        }
        self.pos += 1;
        self.skip_blanks();
        let mut count = 0usize;
        if self.v.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return if depth == 0 {
                Ok(())
            } else {
                Err("empty sub-array".into())
            };
        }
        let nested = self.v.get(self.pos) == Some(&b'{');
        loop {
            self.skip_blanks();
            if nested {
                self.parse_level(depth + 1)?;
            } else {
                if self.v.get(self.pos) == Some(&b'{') {
                    return Err("array dimensions do not match".into());
                }
                let e = self.element()?;
                self.elems.push(e);
            }
            count += 1;
            self.skip_blanks();
            match self.v.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err("not an array literal: expected ',' or '}'".into()),
            }
        }
        if !nested {
            match self.leaf_depth {
                None => self.leaf_depth = Some(depth),
                Some(d) if d == depth => {}
                Some(_) => return Err("array dimensions do not match".into()),
            }
        }
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        match self.dims[depth] {
            None => self.dims[depth] = Some(count),
            Some(d) if d == count => {}
            Some(_) => {
                return Err(
                    "array dimensions do not match (sub-arrays of different lengths)".into(),
                );
            }
        }
        Ok(())
    }

    /// One element: quoted (with `\` escapes) or bare (trimmed; `NULL`).
    fn element(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut text = Vec::new();
        if self.v.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            loop {
                match self.v.get(self.pos) {
                    None => return Err("not an array literal: unterminated quoted element".into()),
                    Some(b'"') => {
                        self.pos += 1;
                        return Ok(Some(text));
                    }
                    Some(b'\\') => {
                        let c = *self
                            .v
                            .get(self.pos + 1)
                            .ok_or("not an array literal: dangling '\\'")?;
                        text.push(c);
                        self.pos += 2;
                    }
                    Some(&c) => {
                        text.push(c);
                        self.pos += 1;
                    }
                }
            }
        }
        let mut escaped = false;
        while let Some(&c) = self.v.get(self.pos) {
            match c {
                b',' | b'}' => break,
                b'{' | b'"' => return Err("not an array literal: misplaced '{' or '\"'".into()),
                b'\\' => {
                    let c = *self
                        .v
                        .get(self.pos + 1)
                        .ok_or("not an array literal: dangling '\\'")?;
                    text.push(c);
                    escaped = true;
                    self.pos += 2;
                    continue;
                }
                _ => text.push(c),
            }
            self.pos += 1;
        }
        let t = text.trim_ascii();
        if t.is_empty() {
            return Err("not an array literal: empty element".into());
        }
        if !escaped && t.eq_ignore_ascii_case(b"null") {
            return Ok(None);
        }
        Ok(Some(t.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &str, t: &PgType) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        encode(v.as_bytes(), t, 23, &mut out).map(|()| out)
    }

    #[test]
    fn one_dimension() {
        let out = enc("{1, 2,NULL}", &PgType::Int4).unwrap();
        let head: Vec<i32> = out[..20]
            .chunks(4)
            .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(head, vec![1, 1, 23, 3, 1]);
        assert_eq!(out.len(), 20 + 8 + 8 + 4);
    }

    #[test]
    fn shapes_and_errors() {
        let text = PgType::Text {
            max_chars: None,
            blank_padded: false,
        };
        assert!(enc("{}", &PgType::Int4).is_ok());
        assert!(enc("{{1,2},{3,4}}", &PgType::Int4).is_ok());
        assert!(enc("{{1,2},{3}}", &PgType::Int4).is_err());
        assert!(enc("{1,x}", &PgType::Int4).is_err());
        assert!(enc("1,2", &PgType::Int4).is_err());
        assert!(enc("{\"a,b\",\"c\\\"d\"}", &text).is_ok());
        assert!(enc("{a", &text).is_err());
    }
}
