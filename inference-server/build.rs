//! Generates the OIP v2 gRPC server and client from `proto/inference.proto` (needs `protoc`:
//! Debian's `protobuf-compiler`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    tonic_prost_build::configure().compile_protos(&["proto/inference.proto"], &["proto"])?;
    Ok(())
}
