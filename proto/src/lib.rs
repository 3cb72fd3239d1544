//! Ferry's contract: the `ferry.v1` protobuf package and its tonic services.
//! Nothing but the contract lives here.
#![forbid(unsafe_code)]

pub mod codec;

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/ferry.v1.rs"));
}

/// JSON names of the contract's enums, for the records the CLI prints.
pub mod json {
    use serde::Serializer;

    use crate::v1::{EventKind, MigrationState, StepState};

    /// `MIGRATION_STATE_RUNNING` → `running`.
    fn short(full: &str, prefix: &str) -> String {
        full.strip_prefix(prefix)
            .unwrap_or(full)
            .to_ascii_lowercase()
    }

    pub fn migration_state<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let name = MigrationState::try_from(*v).map_or("unknown", |e| e.as_str_name());
        s.serialize_str(&short(name, "MIGRATION_STATE_"))
    }

    pub fn step_state<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let name = StepState::try_from(*v).map_or("unknown", |e| e.as_str_name());
        s.serialize_str(&short(name, "STEP_STATE_"))
    }

    pub fn event_kind<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let name = EventKind::try_from(*v).map_or("unknown", |e| e.as_str_name());
        s.serialize_str(&short(name, "EVENT_KIND_"))
    }
}

/// The encoded `FileDescriptorSet` of every `ferry.v1` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ferry_descriptor.bin"));
