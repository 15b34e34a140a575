//! Running cargo and the release runner from xtask.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub fn workspace_root() -> PathBuf {
    ckb_cuda_build::workspace_root(Path::new(env!("CARGO_MANIFEST_DIR")))
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

pub fn run_checked(cmd: &mut Command) -> Result<()> {
    tracing::debug!("running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

/// A GPU is usable here when the driver answers with at least one device.
pub fn has_gpu() -> bool {
    Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("GPU"))
}

/// The commit being built and whether the tree differs from it; the runner embeds both in
/// every record it writes.
pub fn git_state(dir: &Path) -> (String, bool) {
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(dir)
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(true);
    (commit, dirty)
}

/// `cargo xtask test`: the whole workspace's tests; GPU tests (ignored elsewhere) run too
/// when this machine has a GPU.
pub fn test(extra: &[String]) -> Result<()> {
    crate::setup::run(false)?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]).args(extra);
    if has_gpu() {
        tracing::info!("GPU found: running the GPU tests too");
        cmd.args(["--", "--include-ignored"]);
    } else {
        tracing::info!(
            "no GPU here: GPU tests are reported as ignored (run them on a GPU host from `cargo xtask bundle`)"
        );
    }
    run_checked(&mut cmd)
}

/// Builds the release runner with the commit embedded and returns its path.
pub fn build_runner(root: &Path, target_dir: Option<&Path>) -> Result<PathBuf> {
    let (commit, dirty) = git_state(root);
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "--release", "--package", "ckb-runner"])
        .env("CKB_GIT_COMMIT", &commit)
        .env("CKB_GIT_DIRTY", if dirty { "1" } else { "0" });
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    run_checked(&mut cmd)?;
    let target = target_dir.map(Path::to_path_buf).unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/ckb"))
}

/// Builds and runs the release runner `ckb` with `args` (bench, gate, fuzz).
pub fn runner(args: &[String]) -> Result<()> {
    crate::setup::run(false)?;
    let exe = build_runner(&workspace_root(), None)?;
    run_checked(Command::new(exe).args(args))
}
