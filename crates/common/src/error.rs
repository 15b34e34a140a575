//! Errors every crate shares: the GPU, the driver, the vendor libraries, kernel launches,
//! and the buffer checks every operator makes before it launches.

use cudarc::driver::DriverError;

/// Every failure of the GPU layer: opening a device, driver and vendor-library calls, kernel
/// launches, and the buffer and shape checks made before a launch.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// libcuda.so could not be loaded: no NVIDIA driver on this machine.
    #[error("no CUDA driver: libcuda.so could not be loaded (is this a machine with an NVIDIA GPU and driver?)")]
    NoDriver,
    /// The driver loaded but reports no GPU.
    #[error("the CUDA driver found no GPU")]
    NoDevice,
    /// The GPU ordinal asked for is not below the device count.
    #[error("GPU {ordinal} does not exist ({count} found)")]
    NoSuchDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many GPUs the driver sees.
        count: usize,
    },
    /// The GPU is not a Hopper (compute capability 9.x), which the kernels are built for.
    #[error("{name} is compute capability {major}.{minor}; these kernels need 9.0 (Hopper, sm_90a)")]
    UnsupportedDevice {
        /// The device's name.
        name: String,
        /// Compute capability, major part.
        major: i32,
        /// Compute capability, minor part.
        minor: i32,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver call failed: {0}")]
    Driver(#[from] DriverError),
    /// A vendor library, or a sublibrary it needs, is not installed, or not in a version these
    /// bindings support.
    #[error("{library} is not installed on this machine ({detail})")]
    LibraryMissing {
        /// The library (`cuDNN`, ...).
        library: &'static str,
        /// What was missing or what version was found.
        detail: String,
    },
    /// A vendor library call failed for a reason other than the problem being unsupported.
    #[error("{library} call failed: {detail}")]
    Library {
        /// The library (`cuDNN`, `CUB`, ...).
        library: &'static str,
        /// The call and the status it returned.
        detail: String,
    },
    /// One of our kernels failed to launch or run; see [`check_launch`].
    #[error("kernel {kernel} failed to launch or run: {message} (CUDA error {code})")]
    Kernel {
        /// The kernel's name.
        kernel: String,
        /// The CUDA error code its launcher returned.
        code: i32,
        /// The CUDA runtime's name for the code.
        message: String,
    },
    /// A device buffer holds fewer elements than the problem reads or writes.
    #[error("{what}: buffer holds {got} elements, the problem needs {needed}")]
    BufferTooSmall {
        /// The buffer (operand).
        what: &'static str,
        /// Elements the problem needs.
        needed: usize,
        /// Elements the buffer holds.
        got: usize,
    },
    /// Two sequences that must be as long as each other are not.
    #[error("{what}: lengths differ ({left} vs {right})")]
    LengthMismatch {
        /// What was compared.
        what: &'static str,
        /// The first length.
        left: usize,
        /// The second length.
        right: usize,
    },
    /// A device buffer's address is not a multiple of the alignment a kernel or library needs.
    #[error("{what}: device address {address:#x} is not aligned to {align} bytes")]
    Misaligned {
        /// The buffer (operand).
        what: &'static str,
        /// Its device address.
        address: u64,
        /// The alignment needed, in bytes.
        align: usize,
    },
    /// The problem's shape is inconsistent or overflows (a leading dimension too small, a size
    /// out of range).
    #[error("{what}: invalid shape: {detail}")]
    InvalidShape {
        /// The operation or operand.
        what: &'static str,
        /// What is wrong with the shape.
        detail: String,
    },
    /// A valid problem that this kernel, baseline or library path cannot run (a type
    /// combination, a size past a library's limits, no engine that applies).
    #[error("{what} does not support {detail}")]
    Unsupported {
        /// What refused the problem.
        what: &'static str,
        /// The part of the problem it does not support.
        detail: String,
    },
    /// An operator crate's own error (bad problem, variant mismatch), carried where a
    /// `GpuError` is expected, such as a timed candidate.
    #[error("{operator}: {detail}")]
    Operator {
        /// The operator crate (`ckb-gemm`, ...).
        operator: &'static str,
        /// Its error, as text.
        detail: String,
    },
}

/// A result whose error is a [`GpuError`].
pub type GpuResult<T> = Result<T, GpuError>;

extern "C" {
    fn ckb_cuda_error_string(code: i32) -> *const std::ffi::c_char;
}

/// The CUDA runtime's name for an error code returned by one of our `extern "C"` launchers.
pub fn cuda_error_string(code: i32) -> String {
    // SAFETY: cudaGetErrorString returns a static NUL-terminated string for any code.
    unsafe { std::ffi::CStr::from_ptr(ckb_cuda_error_string(code)) }.to_string_lossy().into_owned()
}

/// Turns a launcher's return code into a result.
pub fn check_launch(kernel: &str, code: i32) -> GpuResult<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(GpuError::Kernel { kernel: kernel.to_string(), code, message: cuda_error_string(code) })
    }
}
