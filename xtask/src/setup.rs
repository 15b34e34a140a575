//! `cargo xtask setup`: the pinned CUDA compiler pieces and CUTLASS from the Python package
//! index, through pip, into `.toolchain/`. A user's own toolkit (NVCC / CUDA_HOME with
//! CUTLASS_DIR) is used instead when pointed at.

use std::process::Command;

use anyhow::{bail, Context, Result};
use ckb_cuda_build::{pinned_dir, Toolchain, ToolchainSource, PINNED_PACKAGES, STAMP_FILE};

use crate::cargo::workspace_root;

/// Makes sure a toolchain is there, installing the pinned one if needed; returns it.
pub fn run(force: bool) -> Result<Toolchain> {
    let root = workspace_root();
    let dir = pinned_dir(&root);
    if !force {
        if let Ok(found) = Toolchain::find(&root) {
            report(&found)?;
            return Ok(found);
        }
    }
    let uses_user_nvcc = std::env::var_os("NVCC").is_some() || std::env::var_os("CUDA_HOME").is_some();
    if uses_user_nvcc && std::env::var_os("CUTLASS_DIR").is_some() {
        // Pointed at a broken user toolkit: say what is wrong rather than installing over it.
        Toolchain::find(&root).context("NVCC/CUDA_HOME/CUTLASS_DIR point at an incomplete toolkit")?;
    }
    tracing::info!(
        "installing the pinned CUDA 13.0 toolchain and CUTLASS 4.2 into {} (about 300 MB unpacked)",
        dir.display()
    );
    let stamp = dir.join(STAMP_FILE);
    let _ = std::fs::remove_file(&stamp);
    let python = python()?;
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--upgrade",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--target",
        ])
        .arg(&dir)
        .args(PINNED_PACKAGES)
        .status()
        .with_context(|| format!("running {python} -m pip"))?;
    if !status.success() {
        bail!("pip could not install the pinned toolchain (is the Python package index reachable?)");
    }
    std::fs::write(&stamp, PINNED_PACKAGES.join("\n") + "\n")?;
    let found = Toolchain::find(&root).context("the install finished but the toolchain is incomplete")?;
    report(&found)?;
    Ok(found)
}

fn python() -> Result<String> {
    for candidate in ["python3", "python"] {
        if Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Ok(candidate.to_string());
        }
    }
    bail!("no python3 on PATH: the pinned CUDA toolchain installs through pip (or point NVCC/CUDA_HOME and CUTLASS_DIR at your own)")
}

/// Runs nvcc --version and says where everything is.
fn report(t: &Toolchain) -> Result<()> {
    let out =
        Command::new(&t.nvcc).arg("--version").output().with_context(|| format!("running {}", t.nvcc.display()))?;
    if !out.status.success() {
        bail!("{} --version failed: {}", t.nvcc.display(), String::from_utf8_lossy(&out.stderr));
    }
    let version = String::from_utf8_lossy(&out.stdout);
    let release = version.lines().find(|l| l.contains("release")).unwrap_or("unknown release").trim().to_string();
    let source = match &t.source {
        ToolchainSource::User => "your toolkit (NVCC/CUDA_HOME, CUTLASS_DIR)".to_string(),
        ToolchainSource::Pinned(dir) => format!("pinned packages in {}", dir.display()),
    };
    tracing::info!("toolchain: {source}");
    tracing::info!("  nvcc     {} ({release})", t.nvcc.display());
    tracing::info!("  CUTLASS  {}", t.cutlass_include.display());
    tracing::info!("  cudart   {}", t.cuda_lib.display());
    Ok(())
}
