//! Generates the plugin protocol's Rust code from `proto/` when the `plugin` feature is on.
//! protox parses the protos in Rust, so nothing (no `protoc`) is needed on PATH.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    #[cfg(feature = "plugin")]
    {
        let files = [
            "proto/snoozebot/plugin/v1/cloud_provider.proto",
            "proto/plugin/grpc_controller.proto",
            "proto/plugin/grpc_broker.proto",
            "proto/plugin/grpc_stdio.proto",
        ];
        let descriptors = protox::compile(files, ["proto"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(descriptors)?;
    }
    Ok(())
}
