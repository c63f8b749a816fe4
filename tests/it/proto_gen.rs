//! The protobuf code checked in under `src/generated/` is exactly what protox and
//! tonic-prost-build produce from `proto/` (so the release build needs neither).

use std::path::{Path, PathBuf};

/// The roots `src/generated/` is compiled from (with everything they import).
const PROTOS: &[&str] = &[
    "cerbos/svc/v1/svc.proto",
    "buf/validate/validate.proto",
    "google/rpc/status.proto",
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
    "envoy/service/auth/v3/external_auth.proto",
];

/// Packages that only declare options (validation and versioning annotations of Envoy's
/// files): imported by the files above, but no generated code uses them.
const ANNOTATIONS: &[&str] = &[
    "validate",
    "udpa.annotations",
    "xds.annotations.v3",
    "envoy.annotations",
];

/// Packages whose maps are `BTreeMap`s (Envoy's, as Envoy's own Rust types, keep
/// `HashMap`).
const BTREE_MAP_PACKAGES: &[&str] = &[".cerbos", ".buf", ".google", ".opentelemetry"];

/// The command that rewrites `src/generated/` from `proto/`.
const REGENERATE: &str = "GATEHOUSE_REGENERATE_PROTO=1 cargo test --test it proto_gen";

/// Compiles `proto/` into `out` the way `src/api/pb.rs` and `src/telemetry` expect.
fn generate(root: &Path, out: &Path) {
    let mut descriptors = protox::compile(PROTOS, [root.join("proto")]).expect("proto/ compiles");
    descriptors
        .file
        .retain(|f| !ANNOTATIONS.contains(&f.package()));
    let mut builder = tonic_prost_build::configure()
        .build_server(true)
        .build_client(true);
    for package in BTREE_MAP_PACKAGES {
        builder = builder.btree_map(package);
    }
    builder
        .out_dir(out)
        .compile_fds(descriptors)
        .expect("code generation");
}

/// The `.rs` files of `dir`, sorted by name.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    files
}

#[test]
fn checked_in_protobuf_code_matches_proto_sources() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let checked_in = root.join("src/generated");
    let fresh = Path::new(env!("CARGO_TARGET_TMPDIR")).join("proto_gen");
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).expect("temp dir");
    generate(root, &fresh);

    if std::env::var_os("GATEHOUSE_REGENERATE_PROTO").is_some() {
        for old in rust_files(&checked_in) {
            std::fs::remove_file(old).expect("remove stale generated file");
        }
        for new in rust_files(&fresh) {
            std::fs::copy(&new, checked_in.join(new.file_name().expect("name")))
                .expect("write generated file");
        }
    }

    let names = |files: Vec<PathBuf>| -> Vec<String> {
        files
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect()
    };
    let expected = names(rust_files(&fresh));
    assert!(!expected.is_empty(), "protox produced no code");
    assert_eq!(
        names(rust_files(&checked_in)),
        expected,
        "src/generated/ has other files than proto/ produces; regenerate with `{REGENERATE}`"
    );
    for name in &expected {
        let want = std::fs::read(fresh.join(name)).expect("fresh file");
        let have = std::fs::read(checked_in.join(name)).expect("checked-in file");
        assert!(
            want == have,
            "src/generated/{name} differs from what proto/ produces; regenerate with `{REGENERATE}`"
        );
    }
}
