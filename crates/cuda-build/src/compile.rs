//! Compiling a crate's `.cu` files into one static library from build.rs.
//!
//! Each file compiles to its own object, in parallel under cargo's jobserver. A file is
//! recompiled only when it, a header it includes (nvcc's depfile), or the command line
//! changed. ptxas's resource report is kept beside each object, and a kernel that spills
//! or uses a stack frame fails the build unless the library allows it.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::toolchain::{workspace_root, Toolchain, TOOLCHAIN_ENV};

/// The one target the project builds for.
pub const GENCODE: &str = "-gencode=arch=compute_90a,code=sm_90a";

/// One static library of a crate's kernels: its `.cu` sources, include folders and extra nvcc
/// flags, and whether spills are allowed. Made with [`KernelLibrary::new`] or
/// [`KernelLibrary::from_kernels_dir`], filled with the builder methods, compiled and linked by
/// [`KernelLibrary::build`].
pub struct KernelLibrary {
    name: String,
    sources: Vec<PathBuf>,
    includes: Vec<PathBuf>,
    flags: Vec<String>,
    allow_spills: bool,
}

/// What ptxas said about one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelResources {
    /// The function's name as ptxas prints it (mangled).
    pub function: String,
    /// Registers per thread.
    pub registers: u32,
    /// Bytes of stack frame per thread.
    pub stack_frame_bytes: u32,
    /// Bytes of register spill stores per thread.
    pub spill_store_bytes: u32,
    /// Bytes of register spill loads per thread.
    pub spill_load_bytes: u32,
}

/// Parses `nvcc -Xptxas -v` output into one entry per compiled function. Only the lines of a
/// function's own block count: ptxas's warnings (which also quote spill figures) come out
/// wherever its threads print them, inside other functions' blocks.
pub fn parse_ptxas_report(report: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    for line in report.lines() {
        if line.starts_with("ptxas warning") {
            continue;
        }
        if let Some(rest) = line.split("Function properties for ").nth(1) {
            out.push(KernelResources {
                function: rest.trim().to_string(),
                registers: 0,
                stack_frame_bytes: 0,
                spill_store_bytes: 0,
                spill_load_bytes: 0,
            });
            continue;
        }
        let Some(current) = out.last_mut() else { continue };
        let number_before = |needle: &str| -> Option<u32> {
            let idx = line.find(needle)?;
            line[..idx].split_whitespace().last()?.parse().ok()
        };
        if let Some(v) = number_before("bytes stack frame") {
            current.stack_frame_bytes = v;
        }
        if let Some(v) = number_before("bytes spill stores") {
            current.spill_store_bytes = v;
        }
        if let Some(v) = number_before("bytes spill loads") {
            current.spill_load_bytes = v;
        }
        if let Some(v) = number_before("registers") {
            current.registers = v;
        }
    }
    out
}

impl KernelLibrary {
    /// An empty library named `name`; add sources with `sources_in` or `file`.
    pub fn new(name: &str) -> Self {
        KernelLibrary {
            name: name.to_string(),
            sources: Vec::new(),
            includes: Vec::new(),
            flags: Vec::new(),
            allow_spills: false,
        }
    }

    /// A library named `name`, built from every `.cu` file in the crate's `kernels/` folder.
    pub fn from_kernels_dir(name: &str) -> Self {
        let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run from build.rs"));
        Self::new(name).sources_in(manifest.join("kernels"))
    }

    /// Adds every `.cu` file in `dir` and puts `dir` on the include path.
    pub fn sources_in(mut self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let mut sources: Vec<PathBuf> =
            fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        sources.retain(|p| p.extension().is_some_and(|e| e == "cu"));
        sources.sort();
        self.sources.extend(sources);
        self.includes.push(dir);
        self
    }

    /// Adds one `.cu` file (its folder is not put on the include path).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sources.push(path.into());
        self
    }

    /// Puts `dir` on the include path, after the folders added before it and ahead of
    /// CUTLASS and the CUDA headers.
    pub fn include(mut self, dir: impl Into<PathBuf>) -> Self {
        self.includes.push(dir.into());
        self
    }

    /// Appends one nvcc flag, after the standard flags and the include folders.
    pub fn flag(mut self, flag: &str) -> Self {
        self.flags.push(flag.to_string());
        self
    }

    /// For debug-only or fallback kernels where a spill is acceptable.
    pub fn allow_spills(mut self) -> Self {
        self.allow_spills = true;
        self
    }

    /// Compiles, archives and tells cargo how to link. On a missing toolchain, prints one
    /// line naming `cargo xtask setup` and exits. The header folders that dependencies export
    /// (see [`dependency_includes`]) go on the include path after the library's own.
    pub fn build(mut self) {
        let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run from build.rs"));
        let root = workspace_root(&manifest);
        self.includes.extend(dependency_includes(std::env::vars()));
        println!("cargo:rerun-if-env-changed=CKB_LINEINFO");
        for var in TOOLCHAIN_ENV {
            println!("cargo:rerun-if-env-changed={var}");
        }
        for dir in &self.includes {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
        for src in &self.sources {
            println!("cargo:rerun-if-changed={}", src.display());
        }
        let toolchain = match Toolchain::find(&root) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                // Rerun once setup has written its stamp.
                println!("cargo:rerun-if-changed={}", crate::toolchain::pinned_dir(&root).display());
                std::process::exit(1);
            }
        };
        if let Some(stamp) = toolchain.stamp() {
            println!("cargo:rerun-if-changed={}", stamp.display());
        }
        let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("run from build.rs"));
        let obj_dir = out_dir.join("obj");
        fs::create_dir_all(&obj_dir).expect("create object folder");

        let objects = self.compile_all(&toolchain, &obj_dir);
        self.check_resources(&obj_dir);

        if objects.is_empty() {
            return;
        }
        cc::Build::new().objects(&objects).cargo_metadata(true).compile(&self.name);
        println!("cargo:rustc-link-search=native={}", toolchain.cuda_lib.display());
        // Not bundled into each rlib: several crates link it, the final link needs it once.
        println!("cargo:rustc-link-lib=static:-bundle=cudart_static");
        for lib in ["stdc++", "dl", "rt", "pthread"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }

    fn command_line(&self, toolchain: &Toolchain) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-std=c++17".into(),
            GENCODE.into(),
            "--expt-relaxed-constexpr".into(),
            "-O3".into(),
            "-DNDEBUG".into(),
            // Fatbins compress to about a third; the bundle that travels to a GPU host is capped.
            "--compress-mode=size".into(),
            "-Xcompiler=-fPIC".into(),
            "-Xptxas=-v".into(),
            "-Xptxas=-warn-spills".into(),
        ];
        let mut includes = self.includes.clone();
        includes.push(toolchain.cutlass_include.clone());
        includes.push(toolchain.cutlass_include.join("../tools/util/include"));
        includes.push(toolchain.cuda_include.clone());
        args.extend(includes.iter().map(|i| format!("-I{}", i.display())));
        args.extend(self.flags.iter().cloned());
        // Line tables triple the SASS size; turn them on for ncu source views only.
        if std::env::var_os("CKB_LINEINFO").is_some() {
            args.push("-lineinfo".into());
        }
        args
    }

    fn compile_all(&self, toolchain: &Toolchain, obj_dir: &Path) -> Vec<PathBuf> {
        let args = self.command_line(toolchain);
        let mut hasher = DefaultHasher::new();
        (&args, &toolchain.nvcc).hash(&mut hasher);
        let flags_hash = format!("{:016x}", hasher.finish());

        let jobs = jobserver_client();
        let failures = Mutex::new(Vec::<String>::new());
        let objects: Vec<PathBuf> = self.sources.iter().map(|src| object_path(obj_dir, src)).collect();
        let stale: Vec<(&PathBuf, &PathBuf)> =
            self.sources.iter().zip(&objects).filter(|(src, obj)| !is_fresh(src, obj, &flags_hash)).collect();
        let queue = Mutex::new(stale.iter().copied());
        let next = || queue.lock().unwrap().next();
        let compile = |(src, obj): (&PathBuf, &PathBuf)| {
            if let Err(msg) = compile_one(toolchain, &args, src, obj, &flags_hash) {
                failures.lock().unwrap().push(msg);
            }
        };
        // The build script's implicit token runs one compile at a time on this thread. Helper
        // threads compile only while they hold a token they found free, polling for one
        // between files: a blocking acquire would deadlock when every token is held by build
        // scripts that are all waiting for one more.
        let helpers = stale.len().saturating_sub(1).min(std::thread::available_parallelism().map_or(1, |n| n.get()));
        std::thread::scope(|scope| {
            if let Some(jobs) = jobs.as_ref() {
                for _ in 0..helpers {
                    scope.spawn(|| loop {
                        if queue.lock().unwrap().len() == 0 {
                            return;
                        }
                        match jobs.try_acquire() {
                            Ok(Some(_token)) => match next() {
                                Some(job) => compile(job),
                                None => return,
                            },
                            _ => std::thread::sleep(std::time::Duration::from_millis(50)),
                        }
                    });
                }
            }
            while let Some(job) = next() {
                compile(job);
            }
        });
        let failures = failures.into_inner().unwrap();
        if !failures.is_empty() {
            for f in &failures {
                eprintln!("{f}");
            }
            eprintln!("error: {} kernel file(s) failed to compile", failures.len());
            std::process::exit(1);
        }
        objects
    }

    /// Gathers every object's ptxas report into `OUT_DIR/ptxas-report.txt` and fails on spills.
    fn check_resources(&self, obj_dir: &Path) {
        let mut all = String::new();
        for src in &self.sources {
            let report = fs::read_to_string(object_path(obj_dir, src).with_extension("ptxas.txt")).unwrap_or_default();
            all.push_str(&format!("# {}\n{report}\n", src.display()));
        }
        fs::write(obj_dir.join("../ptxas-report.txt"), &all).expect("write ptxas report");
        if self.allow_spills {
            return;
        }
        let spilling: Vec<_> =
            parse_ptxas_report(&all).into_iter().filter(|k| k.spill_store_bytes + k.spill_load_bytes > 0).collect();
        if !spilling.is_empty() {
            for k in &spilling {
                eprintln!(
                    "error: kernel {} spills ({} B stores, {} B loads, {} B stack)",
                    k.function, k.spill_store_bytes, k.spill_load_bytes, k.stack_frame_bytes
                );
            }
            std::process::exit(1);
        }
    }
}

/// The header folders that a build script's dependencies export: a crate with
/// `links = "NAME"` whose build script prints `cargo:include=DIR` makes cargo set
/// `DEP_<NAME>_INCLUDE=DIR` for the build scripts of the crates that depend on it. Sorted by
/// variable name, so that the command line (and with it every object's freshness) does not
/// depend on the environment's order.
pub fn dependency_includes(vars: impl IntoIterator<Item = (String, String)>) -> Vec<PathBuf> {
    let mut found: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(key, value)| key.starts_with("DEP_") && key.ends_with("_INCLUDE") && !value.is_empty())
        .collect();
    found.sort();
    found.into_iter().map(|(_, dir)| PathBuf::from(dir)).collect()
}

fn object_path(obj_dir: &Path, src: &Path) -> PathBuf {
    obj_dir.join(src.file_stem().expect("source file name")).with_extension("o")
}

fn jobserver_client() -> Option<jobserver::Client> {
    // SAFETY: cargo hands build scripts a jobserver; from_env only reads its descriptors.
    unsafe { jobserver::Client::from_env() }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The object exists, was built with the same flags, and is newer than every file in its depfile.
fn is_fresh(src: &Path, obj: &Path, flags_hash: &str) -> bool {
    let Some(built) = mtime(obj) else { return false };
    if fs::read_to_string(obj.with_extension("flags")).ok().as_deref() != Some(flags_hash) {
        return false;
    }
    let Ok(depfile) = fs::read_to_string(obj.with_extension("d")) else { return false };
    let deps = depfile
        .split_once(':')
        .map(|(_, deps)| deps)
        .unwrap_or("")
        .split_whitespace()
        .filter(|d| *d != "\\")
        .map(PathBuf::from);
    std::iter::once(src.to_path_buf()).chain(deps).all(|dep| mtime(&dep).is_some_and(|t| t <= built))
}

fn compile_one(toolchain: &Toolchain, args: &[String], src: &Path, obj: &Path, flags_hash: &str) -> Result<(), String> {
    let output = Command::new(&toolchain.nvcc)
        .args(args)
        .arg("-MD")
        .arg("-MF")
        .arg(obj.with_extension("d"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .output()
        .map_err(|e| format!("error: cannot run {}: {e}", toolchain.nvcc.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let _ = fs::remove_file(obj);
        return Err(format!("error: nvcc failed on {}:\n{stderr}", src.display()));
    }
    for warning in stderr.lines().filter(|l| l.contains("warning")) {
        println!("cargo:warning={warning}");
    }
    fs::write(obj.with_extension("ptxas.txt"), stderr.as_bytes()).map_err(|e| e.to_string())?;
    fs::write(obj.with_extension("flags"), flags_hash).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_include_folders_are_found_and_sorted() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("DEP_CKB_GEMM_KERNELS_INCLUDE", "/src/gemm/kernels"),
            ("DEP_CKB_COMMON_CUDA_ROOT", "/out"),
            ("DEP_ABC_INCLUDE", "/abc"),
            ("DEP_EMPTY_INCLUDE", ""),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(dependency_includes(vars), [PathBuf::from("/abc"), PathBuf::from("/src/gemm/kernels")]);
    }

    #[test]
    fn parses_ptxas_report() {
        let report = "ptxas info    : Compiling entry function '_Z1kPfi' for 'sm_90a'\n\
ptxas info    : Function properties for _Z1kPfi\n\
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
ptxas info    : Used 10 registers, used 0 barriers\n";
        let k = parse_ptxas_report(report);
        assert_eq!(
            k,
            vec![KernelResources {
                function: "_Z1kPfi".into(),
                registers: 10,
                stack_frame_bytes: 16,
                spill_store_bytes: 8,
                spill_load_bytes: 4
            }]
        );
    }

    #[test]
    fn spill_warnings_are_not_charged_to_the_function_before_them() {
        let report = "ptxas info    : Function properties for _Z1aPf\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas warning : Registers are spilled to local memory in function '_Z1bPf', 36 bytes spill stores, 84 bytes spill loads\n\
ptxas info    : Used 80 registers, used 1 barriers\n\
ptxas info    : Function properties for _Z1bPf\n\
    24 bytes stack frame, 36 bytes spill stores, 84 bytes spill loads\n\
ptxas info    : Used 80 registers, used 1 barriers\n";
        let k = parse_ptxas_report(report);
        assert_eq!((k[0].function.as_str(), k[0].spill_store_bytes, k[0].spill_load_bytes), ("_Z1aPf", 0, 0));
        assert_eq!((k[1].function.as_str(), k[1].spill_store_bytes, k[1].spill_load_bytes), ("_Z1bPf", 36, 84));
    }
}
