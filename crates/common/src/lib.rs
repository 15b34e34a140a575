//! Shared pieces of cute-kernel-bench: the GPU context and stream, typed device buffers,
//! seeded random inputs, CUDA-event timing, comparison against float64 references, device
//! facts, typed errors, the GEMM problem ours and the baselines share ([`gemm::GemmSpec`]), and
//! the vendor baselines every gate measures against.

pub mod baselines;
pub mod compare;
pub mod element;
pub mod error;
pub mod gemm;
pub mod gpu;
pub mod layout;
pub mod random;
pub mod timing;

pub use compare::{compare, Comparison, Tolerance};
pub use element::{to_f64_vec, DType, Element};
pub use error::{check_launch, cuda_error_string, GpuError, GpuResult};
pub use gpu::{device_address, driver_present, require_aligned, require_len, DeviceFacts, Gpu};
pub use layout::Layout;
pub use timing::{copy_bandwidth_gbs, Stats, Timer, TimingConfig};

pub use cudarc;
pub use float8::{F8E4M3, F8E5M2};
pub use half::{bf16, f16};
