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

/// Where a [`Toolchain`] was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolchainSource {
    /// `NVCC`/`CUDA_HOME` and `CUTLASS_DIR` from the environment.
    User,
    /// The pinned packages in the workspace; the folder they are installed in.
    Pinned(PathBuf),
}

/// The CUDA toolkit and CUTLASS that kernels compile with: the paths a kernel build needs,
/// found by [`Toolchain::find`].
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The nvcc executable.
    pub nvcc: PathBuf,
    /// Folder with `include/cuda_runtime.h`.
    pub cuda_include: PathBuf,
    /// Folder with `libcudart_static.a`.
    pub cuda_lib: PathBuf,
    /// CUTLASS's `include` (holds `cute/` and `cutlass/`).
    pub cutlass_include: PathBuf,
    /// Whether it is the user's toolkit or the pinned install.
    pub source: ToolchainSource,
}

/// Why no usable toolchain was found. Both messages tell the user to run `cargo xtask setup`.
#[derive(Debug, Clone)]
pub enum ToolchainError {
    /// No toolkit is pointed at and the pinned folder has no stamp file (setup never completed).
    NotFound {
        /// The pinned folder that was looked in.
        looked_in: PathBuf,
    },
    /// A toolkit is pointed at or installed but cannot be used: a file or folder is missing,
    /// or the pinned package list changed since the last install.
    Broken {
        /// What is wrong, in words.
        what: String,
    },
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

/// The versions a build compiled with, as gate records report them. A version that cannot be
/// read is `"unknown"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolchainVersions {
    /// nvcc's release and build (`13.0.88`), from `nvcc --version`.
    pub nvcc: String,
    /// CCCL (libcu++, CUB, Thrust) from `cuda/std/__cccl/version.h` (`3.0.1`).
    pub cccl: String,
    /// CUTLASS from `cutlass/version.h` (`4.2.0`).
    pub cutlass: String,
    /// `pinned` (`cargo xtask setup`'s packages) or `user` (`NVCC`/`CUDA_HOME`/`CUTLASS_DIR`).
    pub source: &'static str,
}

const UNKNOWN: &str = "unknown";

impl Toolchain {
    /// CCCL's version header: under `include/cccl` since CUDA 13, directly under `include` before.
    fn cccl_version_header(&self) -> PathBuf {
        let cccl = self.cuda_include.join("cccl/cuda/std/__cccl/version.h");
        if cccl.exists() {
            cccl
        } else {
            self.cuda_include.join("cuda/std/__cccl/version.h")
        }
    }

    /// The files [`Toolchain::versions`] reads (for `rerun-if-changed`).
    pub fn version_files(&self) -> Vec<PathBuf> {
        vec![self.nvcc.clone(), self.cccl_version_header(), self.cutlass_include.join("cutlass/version.h")]
    }

    /// nvcc's, CCCL's and CUTLASS's versions; runs `nvcc --version` and reads two headers.
    pub fn versions(&self) -> ToolchainVersions {
        let nvcc = std::process::Command::new(&self.nvcc)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| nvcc_version(&String::from_utf8_lossy(&o.stdout)));
        let header = |path: PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        ToolchainVersions {
            nvcc: nvcc.unwrap_or_else(|| UNKNOWN.into()),
            cccl: cccl_version(&header(self.cccl_version_header())).unwrap_or_else(|| UNKNOWN.into()),
            cutlass: cutlass_version(&header(self.cutlass_include.join("cutlass/version.h")))
                .unwrap_or_else(|| UNKNOWN.into()),
            source: match self.source {
                ToolchainSource::Pinned(_) => "pinned",
                ToolchainSource::User => "user",
            },
        }
    }
}

/// The version in `nvcc --version`'s "Cuda compilation tools, release 13.0, V13.0.88" line.
pub fn nvcc_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("release"))?;
    let version = line.split_whitespace().find_map(|w| w.strip_prefix('V'))?;
    version.chars().all(|c| c.is_ascii_digit() || c == '.').then(|| version.to_string())
}

/// The integer a header `#define NAME <integer>` gives.
fn define(header: &str, name: &str) -> Option<u64> {
    header.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("#define") && words.next() == Some(name)).then(|| words.next()?.parse().ok())?
    })
}

/// CCCL's `CCCL_VERSION` (major * 1000000 + minor * 1000 + patch) as `major.minor.patch`.
pub fn cccl_version(header: &str) -> Option<String> {
    let v = define(header, "CCCL_VERSION")?;
    Some(format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000))
}

/// CUTLASS's `CUTLASS_MAJOR`, `CUTLASS_MINOR` and `CUTLASS_PATCH` as `major.minor.patch`.
pub fn cutlass_version(header: &str) -> Option<String> {
    let part = |name| define(header, name);
    Some(format!("{}.{}.{}", part("CUTLASS_MAJOR")?, part("CUTLASS_MINOR")?, part("CUTLASS_PATCH")?))
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

    #[test]
    fn versions_from_nvcc_and_headers() {
        let nvcc = "nvcc: NVIDIA (R) Cuda compiler driver\nBuilt on Wed_Aug_20_01:58:59_PM_PDT_2025\n\
                    Cuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0/compiler.36424714_0\n";
        assert_eq!(nvcc_version(nvcc).as_deref(), Some("13.0.88"));
        assert_eq!(nvcc_version("command not found"), None);
        let cccl = "#ifndef __CCCL_VERSION_H\n#define __CCCL_VERSION_H\n\n#define CCCL_VERSION 3000001\n\
                    #define CCCL_MAJOR_VERSION (CCCL_VERSION / 1000000)\n";
        assert_eq!(cccl_version(cccl).as_deref(), Some("3.0.1"));
        assert_eq!(cccl_version("#define CCCL_VERSION_H\n"), None);
        // CUTLASS's header has a trailing space after the patch level.
        let cutlass = "#define CUTLASS_MAJOR 4\n#define CUTLASS_MINOR 2\n#define CUTLASS_PATCH 0 \n";
        assert_eq!(cutlass_version(cutlass).as_deref(), Some("4.2.0"));
        assert_eq!(cutlass_version("#define CUTLASS_MAJOR 4\n"), None);
    }

    #[test]
    fn the_pinned_toolchain_reports_its_versions() {
        let root = workspace_root(Path::new(env!("CARGO_MANIFEST_DIR")));
        // Without an install (a fresh checkout) there is nothing to read.
        let Ok(toolchain) = Toolchain::find(&root) else { return };
        let versions = toolchain.versions();
        for v in [&versions.nvcc, &versions.cccl, &versions.cutlass] {
            assert!(v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()), "{versions:?}");
        }
    }
}
