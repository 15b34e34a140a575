//! `cargo xtask bundle`: the release runner, every test binary (GPU tests included) and a
//! run script, in one folder that runs on a GPU host with only a driver installed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cargo::{build_runner, cargo, git_state, run_checked, workspace_root};

/// What a device lease lets travel.
const SIZE_LIMIT_BYTES: u64 = 64 << 20;

const RUN_SCRIPT: &str = r#"#!/usr/bin/env bash
# cute-kernel-bench bundle: runs on a GPU host with only an NVIDIA driver.
#   ./run.sh test [ARGS]            every test binary, GPU tests included
#   ./run.sh gate NAME --out DIR    one roadmap gate; writes DIR/<device>/NAME.{json,md,svg}
#   ./run.sh bench OP | profile FAMILY ARGS | fuzz OP --cases N | info
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# cuBLAS and cuDNN are loaded at run time; a CUDA toolkit's lib folder is often off the loader's path.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
done
cmd=${1:-help}
shift || true
case "$cmd" in
  test)
    # Test threads share the GPU; a library kernel loaded lazily while another thread's long
    # kernel runs can fail to launch (seen with cuDNN on the H100), so load modules up front.
    export CUDA_MODULE_LOADING=EAGER
    failed=()
    for t in "$here"/tests/*; do
      echo "== $(basename "$t")"
      "$t" --include-ignored "$@" || failed+=("$(basename "$t")")
    done
    if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}"; exit 1; fi
    echo "all test binaries passed" ;;
  gate|bench|profile|fuzz|info) exec "$here/bin/ckb" "$cmd" "$@" ;;
  *) sed -n '2,6p' "$0"; exit 2 ;;
esac
"#;

pub fn run(out: &str, clean_head: bool) -> Result<()> {
    crate::setup::run(false)?;
    let root = workspace_root();
    let (src, target) = if clean_head {
        (clean_checkout(&root)?, Some(root.join("target/bundle-target")))
    } else {
        (root.clone(), None)
    };
    let (commit, dirty) = git_state(&src);
    if dirty {
        tracing::warn!(
            "the tree has uncommitted changes: this bundle's gates refuse to write into a bench-results folder \
             (use --clean-head for gate records)"
        );
    }
    let runner = build_runner(&src, target.as_deref())?;
    let tests = build_tests(&src, target.as_deref())?;

    let out = root.join(out);
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    fs::create_dir_all(out.join("bin"))?;
    fs::create_dir_all(out.join("tests"))?;
    fs::copy(&runner, out.join("bin/ckb"))?;
    for (name, exe) in &tests {
        fs::copy(exe, out.join("tests").join(name))?;
    }
    let script = out.join("run.sh");
    fs::write(&script, RUN_SCRIPT)?;
    make_executable(&script)?;
    fs::write(out.join("COMMIT"), format!("{commit}{}\n", if dirty { " (dirty)" } else { "" }))?;

    let size = dir_size(&out)?;
    tracing::info!(
        "bundle in {}: runner + {} test binaries, {:.1} MiB, commit {}{}",
        out.display(),
        tests.len(),
        size as f64 / (1 << 20) as f64,
        &commit[..commit.len().min(10)],
        if dirty { " (dirty)" } else { "" }
    );
    if size > SIZE_LIMIT_BYTES {
        bail!("bundle is {} MiB, over the 64 MiB a device lease carries", size >> 20);
    }
    Ok(())
}

/// A detached worktree of HEAD under target/, reused between bundles.
fn clean_checkout(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/bundle-src");
    if dir.join(".git").exists() {
        run_checked(
            Command::new("git")
                .args(["checkout", "--quiet", "--detach", "--force"])
                .arg(git_state(root).0)
                .current_dir(&dir),
        )?;
    } else {
        let _ = Command::new("git").args(["worktree", "prune"]).current_dir(root).status();
        run_checked(
            Command::new("git")
                .args(["worktree", "add", "--detach", "--force"])
                .arg(&dir)
                .arg("HEAD")
                .current_dir(root),
        )?;
    }
    // The pinned toolchain stays where setup put it.
    std::env::set_var("CKB_TOOLCHAIN", ckb_cuda_build::pinned_dir(root));
    Ok(dir)
}

/// Compiles every test target in release mode and returns (bundle name, executable).
fn build_tests(src: &Path, target: Option<&Path>) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = cargo();
    cmd.current_dir(src).args([
        "test",
        "--release",
        "--workspace",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    if let Some(dir) = target {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let output = cmd.stderr(std::process::Stdio::inherit()).output().context("cargo test --no-run")?;
    if !output.status.success() {
        bail!("building the test binaries failed");
    }
    let mut tests = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else { continue };
        let package = msg["package_id"].as_str().unwrap_or("").rsplit(['/', '#']).find(|s| !s.is_empty()).unwrap_or("");
        let package = package.split('@').next().unwrap_or(package);
        let target = msg["target"]["name"].as_str().unwrap_or("test");
        let kind = msg["target"]["kind"][0].as_str().unwrap_or("");
        // Criterion benches are not tests.
        if kind == "bench" {
            continue;
        }
        // Only binaries with GPU tests (ignored elsewhere) travel; CPU tests run here and in CI.
        if !has_ignored_tests(Path::new(exe))? {
            continue;
        }
        let package = package.trim_start_matches("ckb-");
        let name = if kind == "lib" { format!("{package}-unit") } else { format!("{package}-{target}") };
        tests.push((name, PathBuf::from(exe)));
    }
    Ok(tests)
}

/// Does the test binary hold any test marked `#[ignore]` (our GPU tests)?
fn has_ignored_tests(exe: &Path) -> Result<bool> {
    let out = Command::new(exe)
        .args(["--list", "--ignored", "--format", "terse"])
        .output()
        .with_context(|| format!("listing {}", exe.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.ends_with(": test")))
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_size(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}
