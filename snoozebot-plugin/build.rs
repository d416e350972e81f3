//! Generates the plugin protocol's Rust code from `proto/`: the clients for the `host` feature,
//! the servers for `serve`. protox parses the protos in Rust, so nothing (no `protoc`) is
//! needed on PATH.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "proto/snoozebot/plugin/v1/cloud_provider.proto",
        "proto/plugin/grpc_controller.proto",
        "proto/plugin/grpc_broker.proto",
        "proto/plugin/grpc_stdio.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // The model's maps are BTreeMaps: the wire types' too, so conversions move them.
        .btree_map(".snoozebot.plugin.v1")
        .build_client(std::env::var_os("CARGO_FEATURE_HOST").is_some())
        .build_server(std::env::var_os("CARGO_FEATURE_SERVE").is_some())
        .compile_fds(descriptors)?;
    Ok(())
}
