//! What the source sends up its relay stream, encoded as `ferry.v1.SourceUp`
//! without first gathering a frame's data in one buffer: a frame is the
//! store's reads as they came (`Bytes` of the S3 client's own buffers), and
//! the encoder copies them once, straight into the gRPC message. Gathering
//! them first was a second copy of every byte (5 % of the source's CPU).
//!
//! The wire format is `SourceUp` exactly: protobuf lets a message's fields
//! come in any order, so a frame is its chunk's other fields as prost
//! encodes them, then the data field written from the pieces.
use bytes::{Buf, BufMut, Bytes};
use ferry_common::pb::{self, source_up::Msg as Up};
use prost::Message;
use prost::encoding::{self, DecodeContext, WireType};

/// `SourceUp.chunk`'s field number, and `ObjectChunk.data`'s.
const CHUNK_FIELD: u32 = 5;
const DATA_FIELD: u32 = 4;

/// One message up the source's stream.
#[derive(Debug)]
pub(super) enum Outgoing {
    Msg(pb::SourceUp),
    Frame(Frame),
}

impl From<Up> for Outgoing {
    fn from(msg: Up) -> Self {
        Outgoing::Msg(pb::SourceUp { msg: Some(msg) })
    }
}

/// A frame of an object: its chunk's fields but the data, and the data as
/// the pieces it was read in.
#[derive(Debug, Default)]
pub(super) struct Frame {
    pub head: pb::ObjectChunk,
    pub pieces: Vec<Bytes>,
    pub len: usize,
}

impl Frame {
    fn data_len(&self) -> usize {
        if self.len == 0 {
            0
        } else {
            encoding::key_len(DATA_FIELD) + encoding::encoded_len_varint(self.len as u64) + self.len
        }
    }

    fn chunk_len(&self) -> usize {
        self.head.encoded_len() + self.data_len()
    }
}

impl Message for Outgoing {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Outgoing::Msg(m) => m.encode_raw(buf),
            Outgoing::Frame(f) => {
                encoding::encode_key(CHUNK_FIELD, WireType::LengthDelimited, buf);
                encoding::encode_varint(f.chunk_len() as u64, buf);
                f.head.encode_raw(buf);
                if f.len > 0 {
                    encoding::encode_key(DATA_FIELD, WireType::LengthDelimited, buf);
                    encoding::encode_varint(f.len as u64, buf);
                    for piece in &f.pieces {
                        buf.put_slice(piece);
                    }
                }
            }
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Outgoing::Msg(m) => m.encoded_len(),
            Outgoing::Frame(f) => {
                let inner = f.chunk_len();
                encoding::key_len(CHUNK_FIELD) + encoding::encoded_len_varint(inner as u64) + inner
            }
        }
    }

    /// Only ever encoded: what a decoder would find is skipped.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn clear(&mut self) {
        *self = Outgoing::Msg(pb::SourceUp::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(out: &Outgoing) -> pb::SourceUp {
        let bytes = out.encode_to_vec();
        assert_eq!(bytes.len(), out.encoded_len());
        pb::SourceUp::decode(bytes.as_slice()).expect("decodes as SourceUp")
    }

    #[test]
    fn a_frame_of_pieces_is_the_chunk_of_their_data() {
        let pieces: Vec<Bytes> = [&b"abc"[..], b"", b"defghij", &[9u8; 70_000]]
            .into_iter()
            .map(Bytes::copy_from_slice)
            .collect();
        let data: Vec<u8> = pieces.iter().flat_map(|p| p.to_vec()).collect();
        let head = pb::ObjectChunk {
            key: "bucket/a key".into(),
            version: "\"etag\"".into(),
            offset: 3 << 23,
            blake3: vec![5u8; 32].into(),
            last: true,
            ..Default::default()
        };
        let frame = Outgoing::Frame(Frame {
            head: head.clone(),
            len: data.len(),
            pieces,
        });
        let expected = pb::ObjectChunk {
            data: data.into(),
            ..head
        };
        assert_eq!(
            decoded(&frame),
            pb::SourceUp {
                msg: Some(Up::Chunk(expected))
            }
        );
    }

    #[test]
    fn an_empty_frame_and_other_messages_encode_as_prost_does() {
        let empty = pb::ObjectChunk {
            key: "k".into(),
            last: true,
            ..Default::default()
        };
        let frame = Outgoing::Frame(Frame {
            head: empty.clone(),
            ..Default::default()
        });
        let as_prost = pb::SourceUp {
            msg: Some(Up::Chunk(empty)),
        };
        assert_eq!(frame.encode_to_vec(), as_prost.encode_to_vec());
        let hello = Outgoing::from(Up::Hello(pb::RelayHello {
            job_id: "job".into(),
        }));
        let Outgoing::Msg(inner) = &hello else {
            unreachable!()
        };
        assert_eq!(hello.encode_to_vec(), inner.encode_to_vec());
    }
}
