//! Compiles `ferry/v1/*.proto` with protox (pure Rust), so no `protoc` is needed.
use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "ferry/v1/link.proto",
        "ferry/v1/fleet.proto",
        "ferry/v1/relay.proto",
        "ferry/v1/load.proto",
        "ferry/v1/steps.proto",
        "ferry/v1/migrate.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Served by gRPC server reflection.
    std::fs::write(out.join("ferry_descriptor.bin"), fds.encode_to_vec())?;
    let mut builder = tonic_prost_build::configure();
    // The migration's records are printed as JSON by the CLI (`-o json`).
    for message in [
        "Migration",
        "MigrationRequest",
        "Step",
        "StepProgress",
        "Check",
        "VerificationReport",
        "VerifyLine",
        "MigrationEvent",
        "AuditEntry",
        "MigrationPlan",
        "PlannedStep",
    ] {
        builder = builder.type_attribute(
            format!(".ferry.v1.{message}"),
            "#[derive(serde::Serialize)]",
        );
    }
    for (field, enum_name) in [
        ("Migration.state", "migration_state"),
        ("Step.state", "step_state"),
        ("MigrationEvent.kind", "event_kind"),
        ("MigrationEvent.state", "migration_state"),
    ] {
        builder = builder.field_attribute(
            format!(".ferry.v1.{field}"),
            format!("#[serde(serialize_with = \"crate::json::{enum_name}\")]"),
        );
    }
    builder
        .build_client(true)
        .build_server(true)
        // prost's, with undecodable requests answered INVALID_ARGUMENT.
        .codec_path("crate::codec::Codec")
        // Chunks of data are passed along without copies.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
