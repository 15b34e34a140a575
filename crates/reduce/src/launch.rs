//! The `extern "C"` launchers of kernels/*.cu and the choice of one by op and type.
//! Every launcher takes device addresses, int64 lengths and a `cudaStream_t`, and returns
//! the `cudaError_t` of its launch.

use std::ffi::c_void;

use ckb_common::{check_launch, DType};

use crate::problem::ReduceResult;

pub(crate) type Stream = *mut c_void;

/// (a, b, out, n, head, grid_limit, stream)
pub(crate) type BinaryLauncher = unsafe extern "C" fn(u64, u64, u64, i64, i64, i64, Stream) -> i32;
/// (alpha, x, out, n, head, grid_limit, stream): scale, and axpy with out = y
pub(crate) type AlphaLauncher = unsafe extern "C" fn(f32, u64, u64, i64, i64, i64, Stream) -> i32;
/// (src, dst, n, head, grid_limit, stream)
pub(crate) type CastLauncher = unsafe extern "C" fn(u64, u64, i64, i64, i64, Stream) -> i32;
/// (x, bias, out, n, cols, head, grid_limit, stream)
pub(crate) type BiasLauncher = unsafe extern "C" fn(u64, u64, u64, i64, i64, i64, i64, Stream) -> i32;

extern "C" {
    fn ckb_ew_add_f32(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_add_f16(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_add_bf16(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_sub_f32(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_sub_f16(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_sub_bf16(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_mul_f32(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_mul_f16(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_mul_bf16(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_add_relu_f32(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_add_relu_f16(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_add_relu_bf16(a: u64, b: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;

    fn ckb_ew_axpy_f32(alpha: f32, x: u64, y: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_axpy_f16(alpha: f32, x: u64, y: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_axpy_bf16(alpha: f32, x: u64, y: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_scale_f32(alpha: f32, x: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_scale_f16(alpha: f32, x: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_scale_bf16(alpha: f32, x: u64, out: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;

    fn ckb_ew_cast_f32_f16(src: u64, dst: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_cast_f32_bf16(src: u64, dst: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_cast_f16_f32(src: u64, dst: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_cast_bf16_f32(src: u64, dst: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_cast_f16_bf16(src: u64, dst: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_cast_bf16_f16(src: u64, dst: u64, n: i64, head: i64, grid_limit: i64, s: Stream) -> i32;

    fn ckb_ew_bias_add_f32(
        x: u64,
        bias: u64,
        out: u64,
        n: i64,
        cols: i64,
        head: i64,
        grid_limit: i64,
        s: Stream,
    ) -> i32;
    fn ckb_ew_bias_add_f16(
        x: u64,
        bias: u64,
        out: u64,
        n: i64,
        cols: i64,
        head: i64,
        grid_limit: i64,
        s: Stream,
    ) -> i32;
    fn ckb_ew_bias_add_bf16(
        x: u64,
        bias: u64,
        out: u64,
        n: i64,
        cols: i64,
        head: i64,
        grid_limit: i64,
        s: Stream,
    ) -> i32;
}

/// Element-wise ops on two streamed operands of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `max(a + b, 0)` in one pass; a NaN sum stays NaN.
    AddRelu,
}

impl BinaryOp {
    /// The op's name in errors and kernel names (`add_relu`).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::AddRelu => "add_relu",
        }
    }
}

pub(crate) fn binary_launcher(op: BinaryOp, dtype: DType) -> BinaryLauncher {
    use BinaryOp::*;
    match (op, dtype) {
        (Add, DType::F32) => ckb_ew_add_f32,
        (Add, DType::F16) => ckb_ew_add_f16,
        (Add, DType::BF16) => ckb_ew_add_bf16,
        (Sub, DType::F32) => ckb_ew_sub_f32,
        (Sub, DType::F16) => ckb_ew_sub_f16,
        (Sub, DType::BF16) => ckb_ew_sub_bf16,
        (Mul, DType::F32) => ckb_ew_mul_f32,
        (Mul, DType::F16) => ckb_ew_mul_f16,
        (Mul, DType::BF16) => ckb_ew_mul_bf16,
        (AddRelu, DType::F32) => ckb_ew_add_relu_f32,
        (AddRelu, DType::F16) => ckb_ew_add_relu_f16,
        (AddRelu, DType::BF16) => ckb_ew_add_relu_bf16,
        (_, other) => unreachable!("EwElement admits no {other}"),
    }
}

pub(crate) fn axpy_launcher(dtype: DType) -> AlphaLauncher {
    match dtype {
        DType::F32 => ckb_ew_axpy_f32,
        DType::F16 => ckb_ew_axpy_f16,
        DType::BF16 => ckb_ew_axpy_bf16,
        other => unreachable!("EwElement admits no {other}"),
    }
}

pub(crate) fn scale_launcher(dtype: DType) -> AlphaLauncher {
    match dtype {
        DType::F32 => ckb_ew_scale_f32,
        DType::F16 => ckb_ew_scale_f16,
        DType::BF16 => ckb_ew_scale_bf16,
        other => unreachable!("EwElement admits no {other}"),
    }
}

/// None for a cast to the same type (a copy, done by the caller).
pub(crate) fn cast_launcher(src: DType, dst: DType) -> Option<CastLauncher> {
    use DType::*;
    Some(match (src, dst) {
        (F32, F16) => ckb_ew_cast_f32_f16,
        (F32, BF16) => ckb_ew_cast_f32_bf16,
        (F16, F32) => ckb_ew_cast_f16_f32,
        (BF16, F32) => ckb_ew_cast_bf16_f32,
        (F16, BF16) => ckb_ew_cast_f16_bf16,
        (BF16, F16) => ckb_ew_cast_bf16_f16,
        (s, d) if s == d => return None,
        (s, d) => unreachable!("EwElement admits no cast {s} -> {d}"),
    })
}

pub(crate) fn bias_add_launcher(dtype: DType) -> BiasLauncher {
    match dtype {
        DType::F32 => ckb_ew_bias_add_f32,
        DType::F16 => ckb_ew_bias_add_f16,
        DType::BF16 => ckb_ew_bias_add_bf16,
        other => unreachable!("EwElement admits no {other}"),
    }
}

/// Turns a launcher's return code into a result, naming the kernel only on failure.
pub(crate) fn check(code: i32, kernel: impl FnOnce() -> String) -> ReduceResult<()> {
    if code == 0 {
        Ok(())
    } else {
        Ok(check_launch(&kernel(), code)?)
    }
}

// --- Reductions -------------------------------------------------------------------------

/// Mirrors `ckb::red::ReduceParams` in kernels/reduce.cuh, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReduceParams {
    pub x: u64,
    pub outer: i64,
    pub len: i64,
    pub inner: i64,
    pub row_stride: i64,
    pub out: u64,
    pub out_index: u64,
    pub partials: u64,
    pub counters: u64,
    pub splits: i32,
    pub layout: i32,
    pub combine: i32,
    pub post: i32,
    pub out_f32: i32,
    pub vectorized: i32,
}
const _: () = assert!(std::mem::size_of::<ReduceParams>() == 96);

/// `ckb::red::Layout`
pub(crate) const LAYOUT_ROWS_WARP: i32 = 0;
pub(crate) const LAYOUT_ROWS_BLOCK: i32 = 1;
pub(crate) const LAYOUT_COLUMNS: i32 = 2;
/// `ckb::red::Combine`
pub(crate) const COMBINE_TWO_STAGE: i32 = 0;
pub(crate) const COMBINE_SINGLE_PASS: i32 = 1;
/// `ckb::red::Post`
pub(crate) const POST_NONE: i32 = 0;
pub(crate) const POST_MEAN: i32 = 1;
pub(crate) const POST_SQRT: i32 = 2;

pub(crate) type ReduceLauncher = unsafe extern "C" fn(*const ReduceParams, Stream) -> i32;

extern "C" {
    fn ckb_reduce_sum_f32(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_sum_f16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_sum_bf16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_sum_squares_f32(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_sum_squares_f16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_sum_squares_bf16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_max_f32(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_max_f16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_max_bf16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_min_f32(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_min_f16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_min_bf16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_argmax_f32(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_argmax_f16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_argmax_bf16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_argmin_f32(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_argmin_f16(p: *const ReduceParams, s: Stream) -> i32;
    fn ckb_reduce_argmin_bf16(p: *const ReduceParams, s: Stream) -> i32;
}

/// The accumulation a kernel does (`ckb::red::Kind`); mean and L2 norm are sum and sum of
/// squares with a final step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sum,
    SumSquares,
    Max,
    Min,
    ArgMax,
    ArgMin,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sum => "sum",
            Kind::SumSquares => "sum_squares",
            Kind::Max => "max",
            Kind::Min => "min",
            Kind::ArgMax => "argmax",
            Kind::ArgMin => "argmin",
        }
    }

    /// Bytes of one partial accumulator: f32, or (f32 value, i64 index) padded to 16.
    pub fn accumulator_bytes(self) -> usize {
        match self {
            Kind::ArgMax | Kind::ArgMin => 16,
            _ => 4,
        }
    }
}

pub(crate) fn reduce_launcher(kind: Kind, dtype: DType) -> ReduceLauncher {
    use Kind::*;
    match (kind, dtype) {
        (Sum, DType::F32) => ckb_reduce_sum_f32,
        (Sum, DType::F16) => ckb_reduce_sum_f16,
        (Sum, DType::BF16) => ckb_reduce_sum_bf16,
        (SumSquares, DType::F32) => ckb_reduce_sum_squares_f32,
        (SumSquares, DType::F16) => ckb_reduce_sum_squares_f16,
        (SumSquares, DType::BF16) => ckb_reduce_sum_squares_bf16,
        (Max, DType::F32) => ckb_reduce_max_f32,
        (Max, DType::F16) => ckb_reduce_max_f16,
        (Max, DType::BF16) => ckb_reduce_max_bf16,
        (Min, DType::F32) => ckb_reduce_min_f32,
        (Min, DType::F16) => ckb_reduce_min_f16,
        (Min, DType::BF16) => ckb_reduce_min_bf16,
        (ArgMax, DType::F32) => ckb_reduce_argmax_f32,
        (ArgMax, DType::F16) => ckb_reduce_argmax_f16,
        (ArgMax, DType::BF16) => ckb_reduce_argmax_bf16,
        (ArgMin, DType::F32) => ckb_reduce_argmin_f32,
        (ArgMin, DType::F16) => ckb_reduce_argmin_f16,
        (ArgMin, DType::BF16) => ckb_reduce_argmin_bf16,
        (_, other) => unreachable!("EwElement admits no {other}"),
    }
}
