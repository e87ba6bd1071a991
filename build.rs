//! Compiles the protos with protox (pure Rust, no `protoc`) and generates
//! the tonic services and clients. The encoded descriptor set, which keeps
//! extension options such as `google.api.http` and the proto comments, is
//! written to `OUT_DIR` for server reflection and the HTTP edge.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut api: Vec<PathBuf> = std::fs::read_dir("proto/debrief/v1")?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    api.retain(|path| path.extension().is_some_and(|ext| ext == "proto"));
    api.sort();
    // The error model is not imported by the API files, but the HTTP edge
    // needs its descriptors to render `google.rpc.Status` details as JSON.
    let extra = [
        "proto/google/rpc/status.proto",
        "proto/google/rpc/error_details.proto",
    ];

    // tonic-prost-build emits no rerun-if-changed lines of its own.
    println!("cargo:rerun-if-changed=proto");
    for path in walk(Path::new("proto"))? {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(
        api.iter()
            .map(PathBuf::as_path)
            .chain(extra.iter().map(Path::new)),
    )?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("debrief_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // RPCs whose implementation has not landed answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .extern_path(".google.rpc", "::tonic_types::pb")
        // Upload bytes are taken from the received message's buffer
        // without a copy.
        .bytes(".google.api.HttpBody.data")
        .bytes(".debrief.v1.UploadRequest.chunk")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(walk(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}
