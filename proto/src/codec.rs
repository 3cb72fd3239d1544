//! The services' codec: prost's, except that
//! - a request that does not decode is the caller's mistake —
//!   `INVALID_ARGUMENT` (docs/errors.md) — not the server's `INTERNAL`;
//! - a message is encoded into room reserved for all of it at once. prost's
//!   encoder grows tonic's buffer field by field, and a field written after
//!   a relay frame's megabyte of data found the buffer full: the growth
//!   copied the whole frame again (4 % of the coordinator's CPU).
use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, EncodeBuf};
use tonic_prost::ProstDecoder;

#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = Encoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        Encoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decoder(ProstDecoder::default())
    }
}

#[derive(Debug, Clone)]
pub struct Encoder<T>(PhantomData<T>);

impl<T: prost::Message> tonic::codec::Encoder for Encoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        encode_whole(&item, buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

#[derive(Debug, Clone)]
pub struct Decoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> tonic::codec::Decoder for Decoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| {
            let name = std::any::type_name::<U>()
                .rsplit("::")
                .next()
                .unwrap_or("message");
            Status::invalid_argument(format!(
                "the message is not a valid {name}: {}",
                s.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// A buffer that can make room ahead of writes.
trait Room: bytes::BufMut {
    fn make_room(&mut self, additional: usize);
}

impl Room for EncodeBuf<'_> {
    fn make_room(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl Room for bytes::BytesMut {
    fn make_room(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

/// Encodes `item` after reserving room for all of it: one allocation, and
/// no byte already written is copied again.
fn encode_whole<T: prost::Message>(item: &T, buf: &mut impl Room) -> Result<(), Status> {
    buf.make_room(item.encoded_len());
    item.encode(buf)
        .map_err(|e| Status::internal(format!("encoding a message: {e}")))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use prost::Message;

    use super::encode_whole;
    use crate::v1::{ObjectChunk, SinkDown, sink_down};

    #[test]
    fn a_frame_is_encoded_into_room_made_once() {
        let chunk = ObjectChunk {
            key: "bucket/object".into(),
            version: "v1".into(),
            offset: 8 << 20,
            data: vec![7u8; 1 << 20].into(),
            // Fields after the data: written when prost alone found the
            // buffer full and doubled it, copying the data again.
            blake3: vec![1u8; 32].into(),
            last: true,
            ..Default::default()
        };
        let msg = SinkDown {
            msg: Some(sink_down::Msg::Chunk(chunk)),
        };
        // As tonic hands it over: a small buffer with the gRPC header in it.
        let mut buf = BytesMut::with_capacity(8 << 10);
        buf.extend_from_slice(&[0u8; 5]);
        encode_whole(&msg, &mut buf).expect("encodes");
        let len = msg.encoded_len();
        assert_eq!(buf.len(), 5 + len);
        assert!(
            buf.capacity() < len + (64 << 10),
            "grown to {} bytes for a message of {len}: the buffer grew more than once",
            buf.capacity()
        );
        assert_eq!(SinkDown::decode(&buf[5..]).expect("decodes"), msg);
    }
}
