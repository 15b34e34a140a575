//! Finding nvcc, the CUDA headers and libraries, and CUTLASS.
//!
//! Order: a user's own toolkit (`NVCC` or `CUDA_HOME`, with `CUTLASS_DIR`), then the
//! pinned packages that `cargo xtask setup` put under `<workspace>/.toolchain`
//! (or `CKB_TOOLCHAIN`).

use std::fmt;
use std::path::{Path, PathBuf};

/// The Python-index packages `cargo xtask setup` installs, pinned to versions verified on
/// the project's machines (see `../shared/design/architecture.md`).
/// cuobjdump and nvdisasm (which `cuobjdump -sass` runs) have no 13.0 wheels; 13.2 reads
/// sm_90a objects built by 13.0.
pub const PINNED_PACKAGES: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-cutlass==4.2.0.0",
    "nvidia-cuda-cuobjdump==13.2.86",
    "nvidia-cuda-nvdisasm==13.2.86",
];

/// Written last by `cargo xtask setup`; its presence means the install completed.
pub const STAMP_FILE: &str = "ckb-toolchain.stamp";

/// Environment variables that select a toolchain; build scripts rerun when they change.
pub const TOOLCHAIN_ENV: &[&str] = &["NVCC", "CUDA_HOME", "CUTLASS_DIR", "CKB_TOOLCHAIN"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolchainSource {
    /// `NVCC`/`CUDA_HOME` and `CUTLASS_DIR` from the environment.
    User,
    /// The pinned packages in the workspace.
    Pinned(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Toolchain {
    pub nvcc: PathBuf,
    /// Folder with `include/cuda_runtime.h`.
    pub cuda_include: PathBuf,
    /// Folder with `libcudart_static.a`.
    pub cuda_lib: PathBuf,
    /// CUTLASS's `include` (holds `cute/` and `cutlass/`).
    pub cutlass_include: PathBuf,
    pub source: ToolchainSource,
}

#[derive(Debug, Clone)]
pub enum ToolchainError {
    NotFound { looked_in: PathBuf },
    Broken { what: String },
}

impl fmt::Display for ToolchainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolchainError::NotFound { looked_in } => write!(
                f,
                "no CUDA toolchain found (looked in {} and NVCC/CUDA_HOME/CUTLASS_DIR): run `cargo xtask setup`",
                looked_in.display()
            ),
            ToolchainError::Broken { what } => {
                write!(f, "CUDA toolchain incomplete ({what}): run `cargo xtask setup`")
            }
        }
    }
}

impl std::error::Error for ToolchainError {}

/// The folder the pinned packages go into.
pub fn pinned_dir(workspace_root: &Path) -> PathBuf {
    match std::env::var_os("CKB_TOOLCHAIN") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root.join(".toolchain"),
    }
}

/// The workspace root above a crate's manifest folder: the nearest ancestor whose
/// Cargo.toml declares `[workspace]`.
pub fn workspace_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml")).map(|text| text.contains("[workspace]")).unwrap_or(false)
        })
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

fn first_existing(candidates: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    candidates.into_iter().find(|p| p.exists())
}

impl Toolchain {
    /// The user's toolkit if one is pointed at, else the pinned install.
    pub fn find(workspace_root: &Path) -> Result<Toolchain, ToolchainError> {
        let pinned = pinned_dir(workspace_root);
        if let Some(user) = Self::from_env(&pinned)? {
            return Ok(user);
        }
        Self::from_pinned(&pinned)
    }

    fn from_env(pinned: &Path) -> Result<Option<Toolchain>, ToolchainError> {
        let nvcc = match (std::env::var_os("NVCC"), std::env::var_os("CUDA_HOME")) {
            (Some(nvcc), _) => PathBuf::from(nvcc),
            (None, Some(home)) => PathBuf::from(home).join("bin/nvcc"),
            (None, None) => return Ok(None),
        };
        if !nvcc.exists() {
            return Err(ToolchainError::Broken { what: format!("{} does not exist", nvcc.display()) });
        }
        let home = nvcc.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let cuda_lib = first_existing([home.join("lib64"), home.join("lib"), home.join("targets/x86_64-linux/lib")])
            .ok_or_else(|| ToolchainError::Broken { what: format!("no lib folder under {}", home.display()) })?;
        let cutlass_include = match std::env::var_os("CUTLASS_DIR") {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                first_existing([dir.join("include"), dir.clone()])
                    .filter(|inc| inc.join("cute/tensor.hpp").exists())
                    .ok_or_else(|| ToolchainError::Broken {
                        what: format!("CUTLASS_DIR={} has no include/cute/tensor.hpp", dir.display()),
                    })?
            }
            // A user's nvcc with the pinned CUTLASS is a fine mix.
            None => Self::from_pinned(pinned)?.cutlass_include,
        };
        Ok(Some(Toolchain {
            nvcc,
            cuda_include: home.join("include"),
            cuda_lib,
            cutlass_include,
            source: ToolchainSource::User,
        }))
    }

    fn from_pinned(pinned: &Path) -> Result<Toolchain, ToolchainError> {
        let Ok(stamp) = std::fs::read_to_string(pinned.join(STAMP_FILE)) else {
            return Err(ToolchainError::NotFound { looked_in: pinned.to_path_buf() });
        };
        if stamp.lines().collect::<Vec<_>>() != PINNED_PACKAGES {
            return Err(ToolchainError::Broken {
                what: "the pinned package list changed since the last install".into(),
            });
        }
        let cuda = pinned.join("nvidia/cu13");
        let toolchain = Toolchain {
            nvcc: cuda.join("bin/nvcc"),
            cuda_include: cuda.join("include"),
            cuda_lib: cuda.join("lib"),
            cutlass_include: pinned.join("cutlass_library/source/include"),
            source: ToolchainSource::Pinned(pinned.to_path_buf()),
        };
        toolchain.check()?;
        Ok(toolchain)
    }

    /// Every piece a kernel build needs is on disk.
    pub fn check(&self) -> Result<(), ToolchainError> {
        let needed = [
            self.nvcc.clone(),
            self.cuda_include.join("cuda_runtime.h"),
            self.cuda_lib.join("libcudart_static.a"),
            self.cutlass_include.join("cute/tensor.hpp"),
            self.cutlass_include.join("cutlass/cutlass.h"),
        ];
        match needed.iter().find(|p| !p.exists()) {
            Some(missing) => Err(ToolchainError::Broken { what: format!("{} is missing", missing.display()) }),
            None => Ok(()),
        }
    }

    /// cuobjdump beside nvcc, or on PATH.
    pub fn cuobjdump(&self) -> PathBuf {
        let beside = self.nvcc.with_file_name("cuobjdump");
        if beside.exists() {
            beside
        } else {
            PathBuf::from("cuobjdump")
        }
    }

    /// A file whose change means the toolchain changed (for rerun-if-changed).
    pub fn stamp(&self) -> Option<PathBuf> {
        match &self.source {
            ToolchainSource::Pinned(dir) => Some(dir.join(STAMP_FILE)),
            ToolchainSource::User => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_toolchain_names_setup() {
        let empty = std::env::temp_dir().join(format!("ckb-no-toolchain-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let err = Toolchain::from_pinned(&empty).unwrap_err();
        assert!(matches!(err, ToolchainError::NotFound { .. }));
        assert!(err.to_string().contains("cargo xtask setup"), "{err}");
        // An install of other versions is out of date.
        std::fs::write(empty.join(STAMP_FILE), "nvidia-cuda-nvcc==12.0\n").unwrap();
        let err = Toolchain::from_pinned(&empty).unwrap_err();
        assert!(matches!(err, ToolchainError::Broken { .. }), "{err}");
        // A current stamp without the files is an incomplete install, not a working one.
        std::fs::write(empty.join(STAMP_FILE), PINNED_PACKAGES.join("\n") + "\n").unwrap();
        let err = Toolchain::from_pinned(&empty).unwrap_err();
        assert!(matches!(err, ToolchainError::Broken { .. }), "{err}");
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn workspace_root_is_found_from_a_crate() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = workspace_root(here);
        assert!(root.join("gates.toml").exists(), "{}", root.display());
    }
}
