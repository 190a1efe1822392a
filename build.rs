//! Compiles `proto/` with protox (a pure-Rust protobuf compiler): no protoc binary is needed or
//! downloaded, so the build works offline from the crate registry alone.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["momentd/v1/momentd.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
