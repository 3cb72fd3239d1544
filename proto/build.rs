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
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Chunks of data are passed along without copies.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
