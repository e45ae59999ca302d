//! Generates the OIP v2 and the retrieval gRPC servers and clients from `proto/inference.proto`
//! and `proto/retrieval.proto` (needs `protoc`: Debian's `protobuf-compiler`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    println!("cargo:rerun-if-changed=proto/retrieval.proto");
    tonic_prost_build::configure().compile_protos(
        &["proto/inference.proto", "proto/retrieval.proto"],
        &["proto"],
    )?;
    Ok(())
}
