//! Ferry's contract: the `ferry.v1` protobuf package and its tonic services.
//! Nothing but the contract lives here.
#![forbid(unsafe_code)]

pub mod codec;

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/ferry.v1.rs"));
}

pub mod names;

/// `-o json`'s names of the contract's enums (`names`), for the records the
/// CLI prints whole.
pub mod json {
    use serde::Serializer;

    use crate::names::Named;
    use crate::v1::{EventKind, MigrationState, StepState};

    pub fn migration_state<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MigrationState::name_of(*v))
    }

    pub fn step_state<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(StepState::name_of(*v))
    }

    pub fn event_kind<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(EventKind::name_of(*v))
    }
}

/// The encoded `FileDescriptorSet` of every `ferry.v1` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ferry_descriptor.bin"));
