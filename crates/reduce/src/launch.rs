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

    fn ckb_ew_bias_add_f32(x: u64, bias: u64, out: u64, n: i64, cols: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_bias_add_f16(x: u64, bias: u64, out: u64, n: i64, cols: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
    fn ckb_ew_bias_add_bf16(x: u64, bias: u64, out: u64, n: i64, cols: i64, head: i64, grid_limit: i64, s: Stream) -> i32;
}

/// Element-wise ops on two streamed operands of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    AddRelu,
}

impl BinaryOp {
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
