//! The protobuf wire format, read-only: a field is a varint key (number and
//! wire type) followed by a varint, a fixed 32/64-bit word, or a
//! length-delimited byte string. Groups (wire types 3 and 4) are not used by
//! Kubernetes and are refused.

/// One field's value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// What is wrong with the bytes, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("a varint runs past the end of the message at byte {0}")]
    TruncatedVarint(usize),
    #[error("a varint at byte {0} is longer than 10 bytes")]
    LongVarint(usize),
    #[error("field {field} claims {len} bytes but only {left} remain")]
    TruncatedBytes { field: u32, len: u64, left: usize },
    #[error("field {field} uses wire type {wire_type}, which Kubernetes never sends")]
    WireType { field: u32, wire_type: u64 },
    #[error("field number 0 at byte {0}")]
    FieldZero(usize),
}

/// Iterates over the fields of one message.
pub(super) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or(WireError::TruncatedVarint(start))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::LongVarint(start))
    }

    fn take(&mut self, field: u32, len: u64) -> Result<&'a [u8], WireError> {
        let left = self.buf.len() - self.pos;
        let n = usize::try_from(len)
            .ok()
            .filter(|n| *n <= left)
            .ok_or(WireError::TruncatedBytes { field, len, left })?;
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn next_field(&mut self) -> Result<(u32, Wire<'a>), WireError> {
        let at = self.pos;
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).unwrap_or(u32::MAX);
        if field == 0 {
            return Err(WireError::FieldZero(at));
        }
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(field, 8)?;
                Wire::Fixed64(u64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            }
            2 => {
                let len = self.varint()?;
                Wire::Bytes(self.take(field, len)?)
            }
            5 => {
                let b = self.take(field, 4)?;
                Wire::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            wire_type => return Err(WireError::WireType { field, wire_type }),
        };
        Ok((field, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            // Nothing after a malformed field can be trusted.
            self.pos = self.buf.len();
        }
        Some(item)
    }
}

/// The varints packed into one length-delimited field (`repeated int64`
/// written packed).
pub(super) fn packed_varints(bytes: &[u8]) -> Result<Vec<u64>, WireError> {
    let mut reader = Fields::new(bytes);
    let mut out = Vec::new();
    while reader.pos < bytes.len() {
        out.push(reader.varint()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_wire_type() -> Result<(), WireError> {
        // field 1 varint 300, field 2 bytes "hi", field 3 fixed32 7, field 4 fixed64 9
        let buf = [
            0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x1d, 7, 0, 0, 0, 0x21, 9, 0, 0, 0, 0, 0, 0, 0,
        ];
        let fields: Vec<_> = Fields::new(&buf).collect::<Result<_, _>>()?;
        assert_eq!(
            fields,
            vec![
                (1, Wire::Varint(300)),
                (2, Wire::Bytes(b"hi")),
                (3, Wire::Fixed32(7)),
                (4, Wire::Fixed64(9)),
            ]
        );
        Ok(())
    }

    #[test]
    fn refuses_truncated_and_group_fields() {
        let truncated = [0x12, 5, b'a'];
        assert_eq!(
            Fields::new(&truncated).next(),
            Some(Err(WireError::TruncatedBytes {
                field: 2,
                len: 5,
                left: 1
            }))
        );
        let group = [0x0b];
        assert!(matches!(
            Fields::new(&group).next(),
            Some(Err(WireError::WireType { field: 1, .. }))
        ));
        assert_eq!(packed_varints(&[1, 0x96, 0x01]), Ok(vec![1, 150]));
    }
}
