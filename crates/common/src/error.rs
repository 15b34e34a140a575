//! Errors every crate shares: the GPU, the driver, the vendor libraries, kernel launches,
//! and the buffer checks every operator makes before it launches.

use cudarc::driver::DriverError;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no CUDA driver: libcuda.so could not be loaded (is this a machine with an NVIDIA GPU and driver?)")]
    NoDriver,
    #[error("the CUDA driver found no GPU")]
    NoDevice,
    #[error("GPU {ordinal} does not exist ({count} found)")]
    NoSuchDevice { ordinal: usize, count: usize },
    #[error("{name} is compute capability {major}.{minor}; these kernels need 9.0 (Hopper, sm_90a)")]
    UnsupportedDevice { name: String, major: i32, minor: i32 },
    #[error("CUDA driver call failed: {0}")]
    Driver(#[from] DriverError),
    #[error("{library} is not installed on this machine ({detail})")]
    LibraryMissing { library: &'static str, detail: String },
    #[error("{library} call failed: {detail}")]
    Library { library: &'static str, detail: String },
    #[error("kernel {kernel} failed to launch or run: {message} (CUDA error {code})")]
    Kernel { kernel: String, code: i32, message: String },
    #[error("{what}: buffer holds {got} elements, the problem needs {needed}")]
    BufferTooSmall { what: &'static str, needed: usize, got: usize },
    #[error("{what}: lengths differ ({left} vs {right})")]
    LengthMismatch { what: &'static str, left: usize, right: usize },
    #[error("{what}: device address {address:#x} is not aligned to {align} bytes")]
    Misaligned { what: &'static str, address: u64, align: usize },
    #[error("{what}: invalid shape: {detail}")]
    InvalidShape { what: &'static str, detail: String },
    #[error("{what} does not support {detail}")]
    Unsupported { what: &'static str, detail: String },
    /// An operator crate's own error (bad problem, variant mismatch), carried where a
    /// `GpuError` is expected, such as a timed candidate.
    #[error("{operator}: {detail}")]
    Operator { operator: &'static str, detail: String },
}

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
