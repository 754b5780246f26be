//! Compiles vtmove's own Vitess `.proto` subset (in `proto/`) with protox, a pure-Rust parser, so
//! building vtmove's protos needs no `protoc`.

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
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
