//! Shared pieces of cute-kernel-bench: the GPU context and stream, typed device buffers,
//! seeded random inputs (host and device), CUDA-event timing, the streaming roofline that
//! memory-bound cases are scored against, comparison against float64 references and the
//! checkers built on it, device facts, typed errors, the GEMM problem ours and the baselines
//! share ([`gemm::GemmSpec`]), and the vendor baselines every gate measures against.

#![deny(missing_docs)]

// Links the native library of the raw baselines and the CUB shim, whose entry points
// `baselines::{cub, naive}` declare: no Rust item of it is used, so without this line the
// library would not be linked.
extern crate ckb_baselines_cuda;

pub mod baselines;
pub mod check;
pub mod compare;
pub mod element;
pub mod error;
pub mod gemm;
pub mod gpu;
pub mod layout;
pub mod random;
pub mod roofline;
pub mod timing;

pub use check::{
    check_rows, cross_check, plant_extrema, tile_covering_rows, ulp_distance, ulps_away, within_ulps, Planted,
    RowCheck, UlpCheck, CHECK_TILE_ROWS, CROSS_CHECK_MARGIN,
};
pub use compare::{compare, Comparison, Tolerance};
pub use element::{to_f64_vec, DType, Element};
pub use error::{check_launch, cuda_error_string, GpuError, GpuResult};
pub use gpu::{device_address, driver_present, require_aligned, require_len, DeviceFacts, Gpu};
pub use layout::Layout;
pub use roofline::{time_against_roofline, Roofline, RooflineTiming};
pub use timing::{copy_bandwidth_gbs, gb_per_s, Stats, Timer, TimingConfig};

pub use cudarc;
pub use float8::{F8E4M3, F8E5M2};
pub use half::{bf16, f16};
