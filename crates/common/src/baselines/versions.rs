//! The versions of the vendor libraries this process loads, for gate records: cuBLAS and
//! cuBLASLt through their `GetProperty` calls, cuDNN through `cudnnGetVersion`.
//!
//! Each is asked through cudarc's bindings, which open the library the baselines run with
//! (the first of cudarc's candidate names that loads). A library that is not installed, or
//! lacks the call, is recorded as missing with the reason; probing never fails.

use std::ffi::c_int;

use cudarc::cublas::sys as blas;
use cudarc::cublaslt::sys as lt;
use cudarc::cudnn::sys as dnn;
use serde::Serialize;

/// One library: the version it reports, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LibraryVersion {
    /// Loaded; its version as `major.minor.patch`.
    Loaded(String),
    /// Not loadable, or it cannot say its version; the reason.
    Missing(String),
}

impl std::fmt::Display for LibraryVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LibraryVersion::Loaded(version) => f.write_str(version),
            LibraryVersion::Missing(_) => f.write_str("missing"),
        }
    }
}

/// The vendor libraries the baselines use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibraryVersions {
    /// cuBLAS (GEMM baselines).
    pub cublas: LibraryVersion,
    /// cuBLASLt (fp8 GEMM baselines).
    pub cublaslt: LibraryVersion,
    /// cuDNN (convolution and softmax baselines).
    pub cudnn: LibraryVersion,
}

/// Asks each library for its version; needs no GPU context.
pub fn library_versions() -> LibraryVersions {
    LibraryVersions { cublas: cublas(), cublaslt: cublaslt(), cudnn: cudnn() }
}

/// `$version` once the library of `$sys` (cudarc's bindings) loads and has `$call`, else
/// missing with the reason. Checked first because cudarc panics on a missing library or
/// symbol.
macro_rules! probe {
    ($sys:ident, $file:literal, $call:ident, $version:expr) => {{
        // SAFETY: `is_culib_present` only tries to dlopen the library; `culib().get`, reached
        // once it is present, looks a name up and calls nothing.
        if !unsafe { $sys::is_culib_present() } {
            LibraryVersion::Missing(concat!($file, " could not be loaded").into())
        } else if unsafe { $sys::culib().get::<unsafe extern "C" fn()>(stringify!($call)) }.is_err() {
            LibraryVersion::Missing(concat!("the installed library has no ", stringify!($call)).into())
        } else {
            $version
        }
    }};
}

/// `major.minor.patch` from cuBLAS's or cuBLASLt's `GetProperty` (`$call` in `$sys`), one
/// call per part; needs no handle.
macro_rules! property_version {
    ($sys:ident, $call:ident) => {{
        let part = |kind: $sys::libraryPropertyType| {
            let mut value: c_int = 0;
            // SAFETY: writes one int.
            let status = unsafe { $sys::$call(kind, &mut value) };
            (status == $sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS).then_some(value)
        };
        use $sys::libraryPropertyType as P;
        from_parts(stringify!($call), [part(P::MAJOR_VERSION), part(P::MINOR_VERSION), part(P::PATCH_LEVEL)])
    }};
}

/// `major.minor.patch` when every part was read, else missing: a version is never guessed.
fn from_parts(call: &str, parts: [Option<c_int>; 3]) -> LibraryVersion {
    match parts {
        [Some(major), Some(minor), Some(patch)] => LibraryVersion::Loaded(format!("{major}.{minor}.{patch}")),
        _ => LibraryVersion::Missing(format!("{call} failed")),
    }
}

fn cublas() -> LibraryVersion {
    probe!(blas, "libcublas.so", cublasGetProperty, property_version!(blas, cublasGetProperty))
}

fn cublaslt() -> LibraryVersion {
    probe!(lt, "libcublasLt.so", cublasLtGetProperty, property_version!(lt, cublasLtGetProperty))
}

fn cudnn() -> LibraryVersion {
    // SAFETY: takes no arguments.
    probe!(
        dnn,
        "libcudnn.so",
        cudnnGetVersion,
        LibraryVersion::Loaded(cudnn_version(unsafe { dnn::cudnnGetVersion() }))
    )
}

/// `cudnnGetVersion`'s code as `major.minor.patch`: major * 10000 + minor * 100 + patch
/// since cuDNN 9, major * 1000 + minor * 100 + patch before.
pub fn cudnn_version(code: usize) -> String {
    let (major, rest) = if code >= 90_000 { (code / 10_000, code % 10_000) } else { (code / 1000, code % 1000) };
    format!("{major}.{}.{}", rest / 100, rest % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cudnn_version_codes() {
        assert_eq!(cudnn_version(91_400), "9.14.0");
        assert_eq!(cudnn_version(90_102), "9.1.2");
        assert_eq!(cudnn_version(8_907), "8.9.7");
    }

    #[test]
    fn a_failed_property_call_is_missing_not_a_guess() {
        assert_eq!(from_parts("x", [Some(1), Some(2), Some(3)]), LibraryVersion::Loaded("1.2.3".into()));
        assert!(matches!(from_parts("x", [Some(1), Some(2), None]), LibraryVersion::Missing(_)));
    }

    #[test]
    fn probing_never_fails_and_reports_loaded_libraries_as_versions() {
        // Wherever this runs (with or without the libraries), each entry is either a version
        // of three numbers or missing with a reason.
        let versions = library_versions();
        for v in [&versions.cublas, &versions.cublaslt, &versions.cudnn] {
            match v {
                LibraryVersion::Loaded(s) => assert!(s.split('.').all(|p| p.parse::<u32>().is_ok()), "{s}"),
                LibraryVersion::Missing(why) => assert!(!why.is_empty()),
            }
        }
        let json = serde_json::to_value(&versions).unwrap();
        assert!(json["cublas"].get("loaded").is_some() || json["cublas"].get("missing").is_some(), "{json}");
    }
}
