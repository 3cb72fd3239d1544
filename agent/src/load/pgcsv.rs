//! PostgreSQL's CSV format, streamed: the reader of mapped files.
//!
//! The Platform reads its files with PostgreSQL's `FORMAT csv`, where an
//! unquoted empty field is NULL and a quoted `""` is an empty string; a
//! reader that loses the quoting (as `csv-core` does) cannot tell them
//! apart, so mapped files are split here. Fields keep their bytes (UTF-8
//! is checked per field by the caller, who knows the column); a record may
//! straddle chunks; a record longer than [`MAX_RECORD_BYTES`] or a quote
//! still open at the end of the file stops the file with its line.

use std::ops::ControlFlow;

pub use super::reader::MAX_RECORD_BYTES;

/// One field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub bytes: &'a [u8],
    /// Quoted in the file: an empty quoted field is '', not NULL.
    pub quoted: bool,
}

impl Field<'_> {
    /// NULL as PostgreSQL's CSV reads it.
    pub fn is_null(&self) -> bool {
        self.bytes.is_empty() && !self.quoted
    }
}

/// A complete record and the line it starts on.
pub struct Record<'a> {
    pub line: u64,
    data: &'a [u8],
    /// (end offset in `data`, quoted) per field.
    ends: &'a [(usize, bool)],
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> Field<'a> {
        let start = if i == 0 { 0 } else { self.ends[i - 1].0 };
        let (end, quoted) = self.ends[i];
        Field {
            bytes: &self.data[start..end],
            quoted,
        }
    }
}

/// Why reading had to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A quote opened on `line` is never closed.
    Unterminated { line: u64, field: usize },
    /// The record starting on `line` exceeds [`MAX_RECORD_BYTES`].
    TooLong { line: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// In a quoted field, just after a `"`: closing, or the first of `""`.
    QuoteInQuoted,
}

pub struct PgCsv {
    delimiter: u8,
    state: State,
    data: Vec<u8>,
    ends: Vec<(usize, bool)>,
    quoted: bool,
    /// Line of the next byte.
    line: u64,
    /// Line the current record starts on.
    record_line: u64,
    /// Line where the open quote was opened.
    quote_line: u64,
    /// Anything of the current record seen (a delimiter or a byte).
    started: bool,
}

impl PgCsv {
    pub fn new(delimiter: u8) -> Self {
        PgCsv {
            delimiter,
            state: State::FieldStart,
            data: Vec::with_capacity(4096),
            ends: Vec::with_capacity(32),
            quoted: false,
            line: 1,
            record_line: 1,
            quote_line: 1,
            started: false,
        }
    }

    pub fn feed<F>(&mut self, chunk: &[u8], on_record: &mut F) -> Result<ControlFlow<()>, Fault>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        for &b in chunk {
            if !self.started && b != b'\n' && b != b'\r' {
                self.started = true;
                self.record_line = self.line;
            }
            match self.state {
                State::Quoted => {
                    if b == b'"' {
                        self.state = State::QuoteInQuoted;
                    } else {
                        if b == b'\n' {
                            self.line += 1;
                        }
                        self.data.push(b);
                    }
                }
                State::QuoteInQuoted if b == b'"' => {
                    self.data.push(b'"');
                    self.state = State::Quoted;
                }
                _ if b == self.delimiter => {
                    self.started = true;
                    self.end_field();
                }
                _ if b == b'\n' => {
                    self.line += 1;
                    if self.started {
                        self.end_field();
                        if self.emit(on_record).is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
                // A CR ends lines with the LF that follows it.
                _ if b == b'\r' => {}
                State::FieldStart if b == b'"' => {
                    self.state = State::Quoted;
                    self.quoted = true;
                    self.quote_line = self.line;
                }
                _ => {
                    // Text after a closing quote joins the field, as in
                    // PostgreSQL.
                    self.state = State::Unquoted;
                    self.data.push(b);
                }
            }
            if self.data.len() > MAX_RECORD_BYTES {
                return Err(Fault::TooLong {
                    line: self.record_line,
                });
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// End of the file: the last record (without a final newline), or the
    /// quote never closed.
    pub fn finish<F>(&mut self, on_record: &mut F) -> Result<ControlFlow<()>, Fault>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        if self.state == State::Quoted {
            return Err(Fault::Unterminated {
                line: self.quote_line,
                field: self.ends.len(),
            });
        }
        if self.started {
            self.end_field();
            return Ok(self.emit(on_record));
        }
        Ok(ControlFlow::Continue(()))
    }

    fn end_field(&mut self) {
        self.ends.push((self.data.len(), self.quoted));
        self.quoted = false;
        self.state = State::FieldStart;
    }

    fn emit<F>(&mut self, on_record: &mut F) -> ControlFlow<()>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        let flow = on_record(Record {
            line: self.record_line,
            data: &self.data,
            ends: &self.ends,
        });
        self.data.clear();
        self.ends.clear();
        self.started = false;
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rec = (u64, Vec<Option<String>>);

    fn read(chunks: &[&[u8]]) -> Result<Vec<Rec>, Fault> {
        let mut got = Vec::new();
        let mut p = PgCsv::new(b',');
        let mut f = |r: Record<'_>| {
            let fields = (0..r.len())
                .map(|i| {
                    let f = r.get(i);
                    (!f.is_null()).then(|| String::from_utf8_lossy(f.bytes).into_owned())
                })
                .collect();
            got.push((r.line, fields));
            ControlFlow::Continue(())
        };
        for c in chunks {
            let _ = p.feed(c, &mut f)?;
        }
        let _ = p.finish(&mut f)?;
        Ok(got)
    }

    #[test]
    fn empty_is_null_and_quoted_empty_is_empty() {
        let got = read(&[b"a,b,c\n,\"\",x\r\n\n\"q\"\"t\",\"multi\nline\",", b"z"]).unwrap();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            got,
            vec![
                (1, vec![s("a"), s("b"), s("c")]),
                (2, vec![None, s(""), s("x")]),
                (4, vec![s("q\"t"), s("multi\nline"), s("z")]),
            ]
        );
    }

    #[test]
    fn an_open_quote_is_reported_where_it_opened() {
        let err = read(&[b"a,b\n1,2\n3,\"never\n4,5\n"]).unwrap_err();
        assert_eq!(err, Fault::Unterminated { line: 3, field: 1 });
    }
}
