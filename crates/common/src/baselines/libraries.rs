//! Finding the vendor libraries before cudarc loads them.
//!
//! cudarc (`dynamic-loading`) opens cuBLAS, cuBLASLt and cuDNN by bare file name, so the
//! dynamic loader finds them only through `LD_LIBRARY_PATH`, the ldconfig cache or the
//! default folders. CUDA's own folder (`/usr/local/cuda/lib64`) is often in none of them,
//! and the baseline would be missing on a machine that has it. So before a baseline's first
//! cudarc call, [`ensure_loaded`] checks whether cudarc's lookup succeeds and, when it does
//! not, opens the library by full path from the usual install folders ([`search_dirs`]) with
//! `RTLD_GLOBAL`, and keeps it open. The loader then matches cudarc's later open by name
//! against the library's soname (`libcublas.so.13`, one of cudarc's candidates), so cudarc
//! gets the copy found here. A library's own dependencies are opened first, for the same
//! reason: cuBLAS needs cuBLASLt, and cuDNN 9 opens its sublibraries by name when first used.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{GpuError, GpuResult};

/// A vendor library a baseline loads through cudarc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VendorLibrary {
    /// `libcublas`: GEMM baselines.
    Cublas,
    /// `libcublasLt`: the fp8 GEMM baseline, and a dependency of cuBLAS.
    CublasLt,
    /// `libcudnn` 9: convolution and softmax baselines.
    Cudnn,
}

impl VendorLibrary {
    /// Every library, dependencies before the libraries that need them.
    pub const ALL: [VendorLibrary; 3] = [VendorLibrary::CublasLt, VendorLibrary::Cublas, VendorLibrary::Cudnn];

    /// The name errors use.
    pub const fn name(self) -> &'static str {
        match self {
            VendorLibrary::Cublas => "cuBLAS",
            VendorLibrary::CublasLt => "cuBLASLt",
            VendorLibrary::Cudnn => "cuDNN 9",
        }
    }

    /// File names looked for in each folder, best first: the soname of the version the
    /// bindings are for (cudarc's `cuda-13000` feature, cuDNN 9), then the unversioned
    /// development link (whose soname is the same).
    pub const fn file_names(self) -> &'static [&'static str] {
        match self {
            VendorLibrary::Cublas => &["libcublas.so.13", "libcublas.so"],
            VendorLibrary::CublasLt => &["libcublasLt.so.13", "libcublasLt.so"],
            VendorLibrary::Cudnn => &["libcudnn.so.9", "libcudnn.so"],
        }
    }

    /// Libraries it links against that are searched for the same way, opened before it.
    pub const fn needs(self) -> &'static [VendorLibrary] {
        match self {
            VendorLibrary::Cublas => &[VendorLibrary::CublasLt],
            VendorLibrary::CublasLt | VendorLibrary::Cudnn => &[],
        }
    }

    /// Libraries it opens by name at run time, opened from the folder it was found in (when
    /// there) after it, dependencies first. cuDNN 9's front library loads these lazily.
    pub const fn companions(self) -> &'static [&'static str] {
        match self {
            VendorLibrary::Cudnn => &[
                "libcudnn_graph.so.9",
                "libcudnn_engines_precompiled.so.9",
                "libcudnn_engines_runtime_compiled.so.9",
                "libcudnn_heuristic.so.9",
                "libcudnn_ops.so.9",
                "libcudnn_cnn.so.9",
                "libcudnn_adv.so.9",
            ],
            VendorLibrary::Cublas | VendorLibrary::CublasLt => &[],
        }
    }

    /// Whether cudarc's own lookup (by bare name) finds it now.
    fn cudarc_finds(self) -> bool {
        // SAFETY: each only tries to dlopen the library by name and closes it again.
        unsafe {
            match self {
                VendorLibrary::Cublas => cudarc::cublas::sys::is_culib_present(),
                VendorLibrary::CublasLt => cudarc::cublaslt::sys::is_culib_present(),
                VendorLibrary::Cudnn => cudarc::cudnn::sys::is_culib_present(),
            }
        }
    }

    /// Where the outcome of the first [`ensure_loaded`] is kept.
    fn outcome(self) -> &'static OnceLock<Result<(), String>> {
        static OUTCOMES: [OnceLock<Result<(), String>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        &OUTCOMES[self as usize]
    }
}

/// Makes sure cudarc will find `library` (and what it needs), searching [`search_dirs`] when
/// the loader's own lookup fails. A typed [`GpuError::LibraryMissing`] names the library,
/// every folder looked in, and why files found there did not load. The outcome is decided
/// once per process.
pub fn ensure_loaded(library: VendorLibrary) -> GpuResult<()> {
    for &needed in library.needs() {
        ensure_loaded(needed)?;
    }
    library
        .outcome()
        .get_or_init(|| {
            if library.cudarc_finds() {
                return Ok(());
            }
            let dirs = search_dirs();
            let failures = preload(library, &dirs);
            if library.cudarc_finds() {
                Ok(())
            } else {
                Err(missing_detail(library, &dirs, &failures))
            }
        })
        .clone()
        .map_err(|detail| GpuError::LibraryMissing { library: library.name(), detail })
}

/// Opens the first of `library`'s [`VendorLibrary::file_names`] found in `dirs` (in order)
/// by full path with `RTLD_NOW | RTLD_GLOBAL`, then its companions from the same folder, and
/// keeps them open for the life of the process. Returns the files that were found but failed
/// to open, with the loader's reason; an empty list and nothing opened means nothing found.
pub fn preload(library: VendorLibrary, dirs: &[PathBuf]) -> Vec<(PathBuf, String)> {
    preload_files(library.name(), library.file_names(), library.companions(), dirs)
}

/// [`preload`] for any library: `names` tried in each folder, `companions` opened after it.
fn preload_files(what: &str, names: &[&str], companions: &[&str], dirs: &[PathBuf]) -> Vec<(PathBuf, String)> {
    let mut failures = Vec::new();
    for dir in dirs {
        for name in names {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            match open_global(&path) {
                Ok(()) => {
                    open_companions(what, companions, dir);
                    return failures;
                }
                Err(reason) => failures.push((path, reason)),
            }
        }
    }
    failures
}

/// Opens the companions found in `dir`. Each may need one opened after it, so the ones that
/// failed are tried again until a pass opens nothing new; those that never open are logged
/// and left to the library's own checks (e.g. `cudnnCnnVersionCheck`).
fn open_companions(what: &str, companions: &[&str], dir: &Path) {
    let mut pending: Vec<PathBuf> =
        companions.iter().map(|name| dir.join(name)).filter(|path| path.is_file()).collect();
    loop {
        let before = pending.len();
        let mut last_errors = Vec::new();
        pending.retain(|path| match open_global(path) {
            Ok(()) => false,
            Err(reason) => {
                last_errors.push(format!("{}: {reason}", path.display()));
                true
            }
        });
        if pending.is_empty() || pending.len() == before {
            for error in last_errors {
                tracing::debug!("{what} companion did not load: {error}");
            }
            return;
        }
    }
}

/// dlopen by full path with `RTLD_NOW | RTLD_GLOBAL`, never closed.
fn open_global(path: &Path) -> Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: loading runs the library's initializers; these are NVIDIA's CUDA libraries,
    // which the process loads anyway through cudarc. Never unloaded (forgotten below).
    match unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) } {
        Ok(handle) => {
            std::mem::forget(handle);
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The rule [`search_dirs_in`] follows, for error messages (which list the folders of it
/// that exist).
const SEARCH_RULE: &str = "$CUDA_HOME, $CUDA_PATH, $CUDA_ROOT, /usr/local/cuda and /usr/local/cuda-* \
    (lib64, targets/x86_64-linux/lib, lib), /usr/lib/x86_64-linux-gnu, /usr/lib64, /usr/local/lib, \
    NVIDIA's Python wheels (nvidia/{cu13,cublas,cudnn}/lib)";

fn missing_detail(library: VendorLibrary, dirs: &[PathBuf], failures: &[(PathBuf, String)]) -> String {
    let names = library.file_names().join(" or ");
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let looked = if looked.is_empty() { "none of them exists".to_string() } else { looked.join(", ") };
    let mut detail = format!(
        "{names} was not found by the loader (LD_LIBRARY_PATH, ldconfig) nor in {SEARCH_RULE}: looked in {looked}"
    );
    for (path, reason) in failures {
        detail.push_str(&format!("; {} did not load: {reason}", path.display()));
    }
    detail.push_str("; install it, or set CUDA_HOME or LD_LIBRARY_PATH to its folder");
    detail
}

/// The folders searched, in order, from this process's environment: see [`search_dirs_in`].
pub fn search_dirs() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    search_dirs_in(|name| std::env::var_os(name), home.as_deref(), Path::new("/"))
}

/// The folders searched, in order, given the environment `var`, the home folder and the
/// file-system root (tests pass a temporary one):
/// 1. `$CUDA_HOME`, `$CUDA_PATH`, `$CUDA_ROOT`: `lib64`, `targets/x86_64-linux/lib`, `lib`;
/// 2. `/usr/local/cuda` likewise, then each `/usr/local/cuda-*`, newest name first;
/// 3. `/usr/lib/x86_64-linux-gnu`, `/usr/lib64`, `/usr/local/lib`;
/// 4. NVIDIA's Python wheels (`nvidia/{cu13,cublas,cudnn}/lib`) in the site-packages of
///    `$VIRTUAL_ENV`, `$CONDA_PREFIX`, `~/.local`, `/usr/local` and `/usr`, and
///    `$CONDA_PREFIX/lib` itself.
///
/// Folders that do not exist are left out, and each appears once.
pub fn search_dirs_in(var: impl Fn(&str) -> Option<OsString>, home: Option<&Path>, root: &Path) -> Vec<PathBuf> {
    let under_root = |path: &str| root.join(path.trim_start_matches('/'));
    let toolkit = |dir: PathBuf| ["lib64", "targets/x86_64-linux/lib", "lib"].map(|sub| dir.join(sub));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for name in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Some(dir) = var(name).filter(|v| !v.is_empty()) {
            dirs.extend(toolkit(PathBuf::from(dir)));
        }
    }
    dirs.extend(toolkit(under_root("/usr/local/cuda")));
    let mut versioned = children(&under_root("/usr/local"), |name| name.starts_with("cuda-"));
    versioned.sort_by(|a, b| b.cmp(a));
    dirs.extend(versioned.into_iter().flat_map(toolkit));
    dirs.extend(["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/lib"].map(under_root));

    let conda = var("CONDA_PREFIX").filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut prefixes: Vec<PathBuf> = Vec::new();
    prefixes.extend(var("VIRTUAL_ENV").filter(|v| !v.is_empty()).map(PathBuf::from));
    prefixes.extend(conda.clone());
    prefixes.extend(home.map(|h| h.join(".local")));
    prefixes.extend([under_root("/usr/local"), under_root("/usr")]);
    for prefix in prefixes {
        let lib = prefix.join("lib");
        let mut sites = vec![lib.join("python3/dist-packages")];
        for python in children(&lib, |name| name.starts_with("python3")) {
            sites.push(python.join("site-packages"));
            sites.push(python.join("dist-packages"));
        }
        for site in sites {
            dirs.extend(["cu13", "cublas", "cudnn"].map(|package| site.join("nvidia").join(package).join("lib")));
        }
    }
    dirs.extend(conda.map(|c| c.join("lib")));

    let mut seen = std::collections::HashSet::new();
    dirs.retain(|dir| dir.is_dir() && seen.insert(dir.clone()));
    dirs
}

/// The entries of `dir` whose names pass `keep`, unsorted; none when it cannot be read.
fn children(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().filter(|e| e.file_name().to_str().is_some_and(&keep)).map(|e| e.path()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn make_dirs(root: &Path, dirs: &[&str]) {
        for dir in dirs {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
    }

    #[test]
    fn search_order_is_cuda_home_then_toolkits_then_system_then_wheels() {
        let root = std::env::temp_dir().join(format!("ckb-libraries-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        make_dirs(
            &root,
            &[
                "opt/cuda-home/lib64",
                "usr/local/cuda/targets/x86_64-linux/lib",
                "usr/local/cuda/lib64",
                "usr/local/cuda-12.8/lib64",
                "usr/local/cuda-13.0/lib64",
                "usr/lib/x86_64-linux-gnu",
                "home/me/.local/lib/python3.12/site-packages/nvidia/cu13/lib",
                "venv/lib/python3.11/site-packages/nvidia/cudnn/lib",
                "usr/lib/python3/dist-packages/nvidia/cublas/lib",
            ],
        );
        let cuda_home = root.join("opt/cuda-home").into_os_string();
        let venv = root.join("venv").into_os_string();
        let env = |name: &str| match name {
            "CUDA_HOME" => Some(cuda_home.clone()),
            // The same folder twice appears once.
            "CUDA_PATH" => Some(cuda_home.clone()),
            "VIRTUAL_ENV" => Some(venv.clone()),
            _ => None,
        };
        let home = root.join("home/me");
        let got: Vec<String> = search_dirs_in(env, Some(&home), &root)
            .iter()
            .map(|d| d.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            got,
            [
                "opt/cuda-home/lib64",
                "usr/local/cuda/lib64",
                "usr/local/cuda/targets/x86_64-linux/lib",
                "usr/local/cuda-13.0/lib64",
                "usr/local/cuda-12.8/lib64",
                "usr/lib/x86_64-linux-gnu",
                "venv/lib/python3.11/site-packages/nvidia/cudnn/lib",
                "home/me/.local/lib/python3.12/site-packages/nvidia/cu13/lib",
                "usr/lib/python3/dist-packages/nvidia/cublas/lib",
            ]
        );
    }

    #[test]
    fn a_file_that_does_not_load_is_reported_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("ckb-libraries-bad-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("libcublasLt.so.13"), b"not an ELF file").unwrap();
        let failures = preload(VendorLibrary::CublasLt, std::slice::from_ref(&dir));
        let detail = missing_detail(VendorLibrary::CublasLt, std::slice::from_ref(&dir), &failures);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].0, dir.join("libcublasLt.so.13"));
        assert!(detail.contains(&dir.display().to_string()), "{detail}");
        assert!(detail.contains("libcublasLt.so.13 did not load"), "{detail}");
    }

    #[test]
    fn nothing_found_names_every_folder_looked_in() {
        let dirs = [PathBuf::from("/nowhere/a"), PathBuf::from("/nowhere/b")];
        assert!(preload(VendorLibrary::Cudnn, &dirs).is_empty());
        let detail = missing_detail(VendorLibrary::Cudnn, &dirs, &[]);
        assert!(detail.starts_with("libcudnn.so.9 or libcudnn.so was not found"), "{detail}");
        assert!(detail.contains("looked in /nowhere/a, /nowhere/b;"), "{detail}");
        assert!(detail.contains("/usr/local/cuda"), "{detail}");
    }

    /// The mechanism the module rests on: a library opened by full path is what a later
    /// open by its bare soname (cudarc's way) gets. Shown with the CUDA runtime of the
    /// build's toolchain, or of the usual install folders, which the loader does not
    /// search by itself on the build machine.
    #[test]
    fn a_library_opened_by_path_answers_an_open_by_soname() {
        const SONAME: &str = "libcudart.so.13";
        // SAFETY: the CUDA runtime's initializers only set up its own state.
        let by_name = || unsafe { libloading::Library::new(SONAME) }.map(drop);
        if by_name().is_ok() {
            // The loader finds it by itself here (a GPU host with CUDA on the loader's
            // path): there is nothing to show.
            return;
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut dirs: Vec<PathBuf> = ckb_cuda_build::Toolchain::find(&ckb_cuda_build::workspace_root(manifest))
            .map(|t| t.cuda_lib)
            .into_iter()
            .collect();
        dirs.extend(search_dirs());
        let with_it: Vec<PathBuf> = dirs.into_iter().filter(|d| d.join(SONAME).is_file()).collect();
        assert!(!with_it.is_empty(), "no {SONAME} in the toolchain or the install folders");
        let failures = preload_files("CUDA runtime", &[SONAME], &[], &with_it);
        assert!(failures.is_empty(), "{failures:?}");
        by_name().unwrap_or_else(|e| panic!("{SONAME} opened by path, yet not by name: {e}"));
    }
}
