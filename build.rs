//! Compiles vtmove's own Vitess `.proto` subset (in `proto/`) with protox, a pure-Rust parser, so
//! building vtmove's protos needs no `protoc`.
//!
//! Besides the generated types, the encoded descriptors (without source info) are written to
//! `OUT_DIR/vitess_descriptors.bin`: the protobuf text reader (`src/vitess/tablet/prototext.rs`)
//! reads Vitess's text against them.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/vttime.proto",
        "proto/vtrpc.proto",
        "proto/query.proto",
        "proto/topodata.proto",
        "proto/vschema.proto",
        "proto/binlogdata.proto",
        "proto/replicationdata.proto",
        "proto/tabletmanagerdata.proto",
        "proto/tabletmanagerservice.proto",
        "proto/queryservice.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(files)?;
    // Source info carries the .proto comments into the generated docs.
    let descriptors = compiler.file_descriptor_set();
    // The run-time copy needs no comments.
    compiler.include_source_info(false);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("vitess_descriptors.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
