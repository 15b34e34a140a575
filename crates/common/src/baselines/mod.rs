//! Vendor and raw-CUDA baselines, run on the same stream and inputs as our kernels.
//!
//! - [`cublas`]: GEMM through cuBLAS (bf16, fp16, fp32, tf32) and cuBLASLt (fp8).
//! - [`cudnn`]: conv2d forward, NHWC, through cuDNN's graph API, with the fastest engine
//!   config found once per shape.
//! - [`cudnn_softmax`]: row-wise softmax and log-softmax through cuDNN's legacy API.
//! - [`cub`]: CUB device-wide and row (segmented) reductions through the shim in `baselines/cub`.
//! - [`naive`]: raw CUDA kernels from `baselines/cuda` (element-wise add, naive GEMM).
//!
//! Problems and their validation live in [`spec`]; it needs no GPU. Every constructor of a
//! vendor baseline first makes sure cudarc can load its library ([`libraries`]); [`versions`]
//! says which library versions the process loaded, for gate records.

/// Declares C entry points that share one signature, and a fn-pointer type for it:
/// `extern_c_entries!(type Entry = (params) -> ret; name, ...)`.
macro_rules! extern_c_entries {
    (type $alias:ident = $params:tt -> $ret:ty; $($name:ident),* $(,)?) => {
        type $alias = unsafe extern "C" fn $params -> $ret;
        extern "C" {
            $(fn $name $params -> $ret;)*
        }
    };
}

pub mod cub;
pub mod cublas;
pub mod cudnn;
pub mod cudnn_softmax;
pub mod libraries;
pub mod naive;
pub mod spec;
pub mod versions;

pub use cub::{Cub, ReduceOp};
pub use cublas::{Cublas, Fp8Scales};
pub use cudnn::{Conv2dForward, ConvAlgorithm, Cudnn};
pub use spec::{ConvLens, ConvSpec, Fp32Math, GemmLens, GemmSpec};
pub use versions::{library_versions, LibraryVersion, LibraryVersions};

use crate::error::{GpuError, GpuResult};

/// Maps a vendor library's error status to a [`GpuError::Library`] that names the call.
pub(crate) fn library_error<E: std::fmt::Debug>(
    library: &'static str,
    call: &'static str,
) -> impl FnOnce(E) -> GpuError {
    move |status| GpuError::Library { library, detail: format!("{call} returned {status:?}") }
}

/// A raw library object (handle or descriptor) destroyed when dropped. A failed destroy is
/// ignored: nothing can be done about it, and a drop must not panic.
pub(crate) struct Owned<H: Copy> {
    pub raw: H,
    destroy: fn(H),
}

impl<H: Copy> Owned<H> {
    pub fn new(raw: H, destroy: fn(H)) -> Self {
        Owned { raw, destroy }
    }
}

impl<H: Copy> Drop for Owned<H> {
    fn drop(&mut self) {
        (self.destroy)(self.raw);
    }
}

/// A size as the `int64_t` our C launchers take.
pub(crate) fn to_i64(what: &'static str, value: usize) -> GpuResult<i64> {
    i64::try_from(value).map_err(|_| GpuError::InvalidShape { what, detail: format!("{value} does not fit in int64") })
}

/// A size as the `int` the vendor libraries take.
pub(crate) fn to_i32(what: &'static str, value: usize) -> GpuResult<i32> {
    i32::try_from(value).map_err(|_| GpuError::Unsupported {
        what,
        detail: format!("a size of {value}: the library takes 32-bit ints (at most {})", i32::MAX),
    })
}

/// Fails with [`GpuError::LibraryMissing`] naming the functions a loaded library lacks (an
/// older or partial install): calling one through cudarc would panic instead.
pub(crate) fn require_symbols(
    library: &'static str,
    names: &[&str],
    has_symbol: impl Fn(&str) -> bool,
) -> GpuResult<()> {
    let missing: Vec<&str> = names.iter().copied().filter(|name| !has_symbol(name)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(GpuError::LibraryMissing { library, detail: format!("the installed library lacks {}", missing.join(", ")) })
    }
}

/// The first error among `results`, or all their values.
pub(crate) fn all_ok<T: Copy + Default, const N: usize>(results: [GpuResult<T>; N]) -> GpuResult<[T; N]> {
    let mut values = [T::default(); N];
    for (value, result) in values.iter_mut().zip(results) {
        *value = result?;
    }
    Ok(values)
}

/// Creates a library object through `create` (which writes it and returns a status) and
/// wraps it so that `destroy` runs on drop. `success` is the library's success status.
pub(crate) fn created<H: Copy, S: PartialEq + std::fmt::Debug>(
    library: &'static str,
    call: &'static str,
    create: unsafe fn(*mut H) -> S,
    success: S,
    destroy: fn(H),
) -> GpuResult<Owned<H>> {
    let mut raw = std::mem::MaybeUninit::<H>::uninit();
    // SAFETY: `create` is a library constructor that writes the object when it succeeds.
    let status = unsafe { create(raw.as_mut_ptr()) };
    if status != success {
        return Err(library_error(library, call)(status));
    }
    // SAFETY: written by the successful call above.
    Ok(Owned::new(unsafe { raw.assume_init() }, destroy))
}
