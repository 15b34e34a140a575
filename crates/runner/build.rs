//! Embeds the versions of the toolchain the kernels were built with (nvcc, CCCL, CUTLASS),
//! found the way every kernel crate's build script finds it, so each gate record can say so.

use std::path::Path;

use ckb_cuda_build::{toolchain::TOOLCHAIN_ENV, workspace_root, Toolchain};

fn main() {
    for var in TOOLCHAIN_ENV {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let root = workspace_root(Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()));
    let (nvcc, cccl, cutlass, source) = match Toolchain::find(&root) {
        Ok(toolchain) => {
            for file in toolchain.version_files().into_iter().chain(toolchain.stamp()) {
                println!("cargo:rerun-if-changed={}", file.display());
            }
            let v = toolchain.versions();
            (v.nvcc, v.cccl, v.cutlass, v.source.to_string())
        }
        Err(e) => {
            // The kernel crates fail to build without a toolchain; say why here too.
            println!("cargo:warning=toolchain versions unknown: {e}");
            ("unknown".into(), "unknown".into(), "unknown".into(), "unknown".into())
        }
    };
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    println!("cargo:rustc-env=CKB_BUILD_NVCC={}", one_line(&nvcc));
    println!("cargo:rustc-env=CKB_BUILD_CCCL={}", one_line(&cccl));
    println!("cargo:rustc-env=CKB_BUILD_CUTLASS={}", one_line(&cutlass));
    println!("cargo:rustc-env=CKB_BUILD_TOOLCHAIN_SOURCE={}", one_line(&source));
}
