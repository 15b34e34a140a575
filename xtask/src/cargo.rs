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
/// every record it writes. Untracked files that git does not ignore count as a difference:
/// the kernel builds compile every `.cu` file under `kernels/`, committed or not. A folder
/// git cannot read (no repository, no git) is "unknown" and dirty.
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
        .args(["status", "--porcelain", "--untracked-files=normal"])
        .current_dir(dir)
        .output()
        .map(|o| !o.status.success() || !o.stdout.is_empty())
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

/// Builds and runs the release runner `ckb` with `args` (bench, gate, fuzz). The variables
/// that pick the toolchain steer the build only; they are kept from the runner, whose gates
/// refuse to run while any `CKB_*` variable (a tuning knob) is set.
pub fn runner(args: &[String]) -> Result<()> {
    crate::setup::run(false)?;
    let exe = build_runner(&workspace_root(), None)?;
    let mut cmd = Command::new(exe);
    cmd.args(args);
    for var in ckb_cuda_build::toolchain::TOOLCHAIN_ENV.iter().filter(|v| v.starts_with("CKB_")) {
        cmd.env_remove(var);
    }
    run_checked(&mut cmd)
}

/// `cargo xtask gate NAME [ARGS]`: the runner's gate, with records in `bench-results/`
/// (then the README's roadmap refreshed) unless ARGS send them elsewhere with `--out`.
///
/// The runner refuses to write into a `bench-results` folder from a dirty tree or an unknown
/// commit; the build embeds [`git_state`], so that refusal is known here before anything is
/// built, and is said first.
pub fn gate(name: &str, args: &[String]) -> Result<()> {
    let root = workspace_root();
    let custom_out = args.iter().any(|a| a == "--out" || a.starts_with("--out="));
    let mut full = vec!["gate".to_string(), name.to_string()];
    if !custom_out {
        let (commit, dirty) = git_state(&root);
        if dirty || commit == "unknown" {
            bail!(
                "`cargo xtask gate` writes into bench-results/, which takes records only from committed code, and {}. \
                 Commit first (untracked files under kernels/ count: the build compiles them), \
                 or measure this tree with the records sent elsewhere: `cargo xtask gate {name} --out /tmp/ckb-records`",
                if commit == "unknown" {
                    "git names no commit for this tree".to_string()
                } else {
                    "the tree has changes that `git status` lists".to_string()
                }
            );
        }
        full.extend(["--out".to_string(), root.join("bench-results").display().to_string()]);
    }
    full.extend(args.iter().cloned());
    let result = runner(&full);
    if !custom_out {
        crate::roadmap::run()?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(["-c", "user.name=ckb", "-c", "user.email=ckb@example.invalid", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(status.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&status.stderr));
    }

    #[test]
    fn untracked_kernels_make_the_tree_dirty_and_ignored_files_do_not() {
        let dir = std::env::temp_dir().join(format!("ckb-git-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("kernels")).unwrap();
        // Outside any repository: nothing is known.
        assert_eq!(git_state(&dir), ("unknown".to_string(), true));
        git(&dir, &["init", "--quiet"]);
        std::fs::write(dir.join(".gitignore"), "/target\n").unwrap();
        std::fs::write(dir.join("kernels/a.cu"), "// a\n").unwrap();
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "--quiet", "-m", "a"]);
        let (commit, dirty) = git_state(&dir);
        assert_eq!(commit.len(), 40, "{commit}");
        assert!(!dirty);
        std::fs::create_dir_all(dir.join("target")).unwrap();
        std::fs::write(dir.join("target/out.o"), "").unwrap();
        assert!(!git_state(&dir).1, "an ignored file is not a change");
        std::fs::write(dir.join("kernels/b.cu"), "// b\n").unwrap();
        assert!(git_state(&dir).1, "an untracked kernel is compiled, so it is a change");
        std::fs::remove_file(dir.join("kernels/b.cu")).unwrap();
        std::fs::write(dir.join("kernels/a.cu"), "// changed\n").unwrap();
        assert!(git_state(&dir).1, "a modified file is a change");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
