//! Ferry's contract: the `ferry.v1` protobuf package and its tonic services.
//! Nothing but the contract lives here.
#![forbid(unsafe_code)]

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/ferry.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every `ferry.v1` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ferry_descriptor.bin"));
