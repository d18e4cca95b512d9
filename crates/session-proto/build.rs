//! Generates the session.v1 code with the protoc shipped by `protoc-bin-vendored`, so a fresh
//! machine needs no hand-installed protoc.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Values travel as `Bytes` so the server and client share buffers instead of copying.
        .bytes(".")
        // INVALID_ARGUMENT for a request that does not decode (see src/codec.rs).
        .codec_path("crate::codec::SessionCodec")
        .file_descriptor_set_path(out.join("session_v1_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                "proto/session/v1/session.proto",
                "proto/session/v1/admin.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
