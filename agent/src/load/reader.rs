//! Streaming UTF-8 check and CSV record splitting over chunks of a file.
//!
//! Built on `csv-core`, which keeps its parse state between calls, so a
//! record may straddle chunks and the file is never held whole. UTF-8 is
//! checked on each chunk before the parser sees it; a multi-byte character
//! cut by a chunk boundary is carried (at most 3 bytes) to the next chunk.

use std::ops::ControlFlow;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

/// Longest record held in memory; a longer one is almost always an
/// unbalanced quote swallowing the rest of the file.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Where reading the file had to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utf8Fault {
    /// 0-based byte offset in the file.
    pub offset: u64,
    /// 1-based line of that byte.
    pub line: u64,
    /// 0-based index of the field it falls in (of its record).
    pub field: usize,
    /// The bad byte (not UTF-8), or `None`: the record exceeds
    /// [`MAX_RECORD_BYTES`].
    pub byte: Option<u8>,
}

/// One CSV record: unescaped fields and the line it starts on.
pub struct Record<'a> {
    pub line: u64,
    out: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }
}

/// Incremental reader of the records of one file (after its header line).
pub struct CsvStream {
    rdr: Reader,
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// Start of a UTF-8 sequence cut by the previous chunk's end.
    carry: [u8; 4],
    carry_len: usize,
    /// File offset of the next byte fed.
    offset: u64,
    /// Set when a record outgrew [`MAX_RECORD_BYTES`].
    too_long: Option<Utf8Fault>,
}

impl CsvStream {
    /// `first_line` is the line number of the first byte fed and `offset`
    /// its byte offset in the file.
    pub fn new(delimiter: u8, first_line: u64, offset: u64) -> Self {
        let mut rdr = ReaderBuilder::new().delimiter(delimiter).build();
        rdr.set_line(first_line);
        CsvStream {
            rdr,
            out: vec![0; 16 * 1024],
            out_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            carry: [0; 4],
            carry_len: 0,
            offset,
            too_long: None,
        }
    }

    /// Feed the next chunk; `on_record` is called for each complete record
    /// and may stop the reading by returning `Break`.
    pub fn feed<F>(&mut self, chunk: &[u8], on_record: &mut F) -> Result<ControlFlow<()>, Utf8Fault>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        let res = self.feed_inner(chunk, on_record);
        self.check_length(res)
    }

    /// A record that outgrew the limit stops the file.
    fn check_length(
        &mut self,
        res: Result<ControlFlow<()>, Utf8Fault>,
    ) -> Result<ControlFlow<()>, Utf8Fault> {
        match self.too_long.take() {
            Some(fault) => Err(fault),
            None => res,
        }
    }

    fn feed_inner<F>(
        &mut self,
        mut chunk: &[u8],
        on_record: &mut F,
    ) -> Result<ControlFlow<()>, Utf8Fault>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        if self.carry_len > 0 {
            let need = utf8_width(self.carry[0]).saturating_sub(self.carry_len);
            let take = need.min(chunk.len());
            let mut buf = [0u8; 4];
            buf[..self.carry_len].copy_from_slice(&self.carry[..self.carry_len]);
            buf[self.carry_len..self.carry_len + take].copy_from_slice(&chunk[..take]);
            let have = self.carry_len + take;
            chunk = &chunk[take..];
            if take < need {
                self.carry[..have].copy_from_slice(&buf[..have]);
                self.carry_len = have;
                return Ok(ControlFlow::Continue(()));
            }
            self.carry_len = 0;
            if let Err(e) = std::str::from_utf8(&buf[..have]) {
                return Err(self.fault(&buf[..have], e.valid_up_to(), on_record));
            }
            if self.parse(&buf[..have], on_record).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => Ok(self.parse(chunk, on_record)),
            Err(e) => {
                let valid = e.valid_up_to();
                if e.error_len().is_some() {
                    return Err(self.fault(chunk, valid, on_record));
                }
                if self.parse(&chunk[..valid], on_record).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                let rest = &chunk[valid..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carry_len = rest.len();
                Ok(ControlFlow::Continue(()))
            }
        }
    }

    /// End of file: flush the last record (one without a final newline).
    pub fn finish<F>(&mut self, on_record: &mut F) -> Result<ControlFlow<()>, Utf8Fault>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        if self.carry_len > 0 {
            // A multi-byte sequence cut by the end of the file.
            let carry = self.carry;
            let n = self.carry_len;
            self.carry_len = 0;
            return Err(self.fault(&carry[..n], 0, on_record));
        }
        let res = Ok(self.parse_raw(&[], on_record));
        self.check_length(res)
    }

    /// Parse the valid prefix, then locate the bad byte.
    fn fault<F>(&mut self, bytes: &[u8], valid: usize, on_record: &mut F) -> Utf8Fault
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        // Records completed before the bad byte are still checked, so their
        // errors are reported too; the callback's verdict no longer matters.
        let _ = self.parse(&bytes[..valid], on_record);
        Utf8Fault {
            offset: self.offset,
            line: self.rdr.line(),
            field: self.ends_len,
            byte: Some(bytes.get(valid).copied().unwrap_or(0)),
        }
    }

    /// Parse `input`; an empty `input` means end of file to csv-core, so it
    /// is only passed on from [`CsvStream::finish`].
    fn parse<F>(&mut self, input: &[u8], on_record: &mut F) -> ControlFlow<()>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        if input.is_empty() {
            return ControlFlow::Continue(());
        }
        self.parse_raw(input, on_record)
    }

    fn parse_raw<F>(&mut self, mut input: &[u8], on_record: &mut F) -> ControlFlow<()>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        let at_eof = input.is_empty();
        loop {
            let (res, nin, nout, nend) = self.rdr.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            let last = if nin > 0 { Some(input[nin - 1]) } else { None };
            input = &input[nin..];
            self.offset += nin as u64;
            self.out_len += nout;
            self.ends_len += nend;
            match res {
                ReadRecordResult::InputEmpty => {
                    if input.is_empty() && !at_eof {
                        return ControlFlow::Continue(());
                    }
                }
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_RECORD_BYTES {
                        self.too_long = Some(Utf8Fault {
                            offset: self.offset,
                            line: self.rdr.line(),
                            field: self.ends_len,
                            byte: None,
                        });
                        return ControlFlow::Break(());
                    }
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record => {
                    let out = &self.out[..self.out_len];
                    // The parser counts every '\n' it consumed, including the
                    // record's terminator and newlines inside quoted fields.
                    let end_line = self.rdr.line() - u64::from(last == Some(b'\n'));
                    let inner = out.iter().filter(|&&b| b == b'\n').count() as u64;
                    let rec = Record {
                        line: end_line.saturating_sub(inner),
                        out,
                        ends: &self.ends[..self.ends_len],
                    };
                    let flow = on_record(rec);
                    self.out_len = 0;
                    self.ends_len = 0;
                    if flow.is_break() {
                        return flow;
                    }
                }
                ReadRecordResult::End => return ControlFlow::Continue(()),
            }
        }
    }
}

/// Length of the UTF-8 sequence a lead byte announces (1 for invalid leads:
/// the check then reports it).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(chunks: &[&[u8]]) -> Result<Vec<(u64, Vec<String>)>, Utf8Fault> {
        let mut got = Vec::new();
        let mut s = CsvStream::new(b',', 2, 0);
        let mut f = |r: Record<'_>| {
            let fields = (0..r.len())
                .map(|i| String::from_utf8_lossy(r.get(i)).into_owned())
                .collect();
            got.push((r.line, fields));
            ControlFlow::Continue(())
        };
        for c in chunks {
            let _ = s.feed(c, &mut f)?;
        }
        let _ = s.finish(&mut f)?;
        Ok(got)
    }

    #[test]
    fn records_across_chunks_with_lines() {
        let got = records(&[b"a,b\nc,", b"d\r\n\"x\ny\",z\n\ne,f"]).unwrap();
        assert_eq!(
            got,
            vec![
                (2, vec!["a".into(), "b".into()]),
                (3, vec!["c".into(), "d".into()]),
                (4, vec!["x\ny".into(), "z".into()]),
                (7, vec!["e".into(), "f".into()]),
            ]
        );
    }

    #[test]
    fn utf8_split_across_chunks_is_fine() {
        let s = "é,ü€\n".as_bytes();
        let got = records(&[&s[..1], &s[1..4], &s[4..5], &s[5..]]).unwrap();
        assert_eq!(got, vec![(2, vec!["é".into(), "ü€".into()])]);
    }

    #[test]
    fn bad_byte_located() {
        let err = records(&[b"a,b\nc,d\nx,\xe9t\n"]).unwrap_err();
        assert_eq!(err.offset, 10);
        assert_eq!(err.line, 4);
        assert_eq!(err.field, 1);
        assert_eq!(err.byte, Some(0xe9));
    }

    #[test]
    fn unclosed_quote_is_bounded() {
        let mut s = CsvStream::new(b',', 2, 0);
        let mut f = |_: Record<'_>| ControlFlow::Continue(());
        let _ = s.feed(b"a,\"never closed", &mut f).unwrap();
        let big = vec![b'x'; 1 << 20];
        let mut fault = None;
        for _ in 0..=(MAX_RECORD_BYTES >> 20) {
            if let Err(e) = s.feed(&big, &mut f) {
                fault = Some(e);
                break;
            }
        }
        let fault = fault.expect("the record is cut off");
        assert_eq!((fault.line, fault.field, fault.byte), (2, 1, None));
    }

    #[test]
    fn truncated_sequence_at_eof() {
        let err = records(&[b"a,\xe2\x82"]).unwrap_err();
        assert_eq!(err.offset, 2);
    }
}
