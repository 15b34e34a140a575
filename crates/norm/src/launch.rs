//! The `extern "C"` launchers of kernels/*.cu and the choice of one by op and type. Every
//! launcher takes a [`RowParams`] (device addresses, int64 sizes, the plan) and a
//! `cudaStream_t`, and returns the `cudaError_t` of its launches.

use std::ffi::c_void;

use ckb_common::{check_launch, DType};

use crate::problem::{NormOp, NormResult};

pub(crate) type Stream = *mut c_void;

/// Mirrors `ckb::norm::RowParams` in kernels/row_ops.cuh, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RowParams {
    pub x: u64,
    pub dy: u64,
    pub gamma: u64,
    pub beta: u64,
    pub out: u64,
    pub mean: u64,
    pub rstd: u64,
    pub row_partials: u64,
    pub col_partials: u64,
    pub dgamma: u64,
    pub dbeta: u64,
    pub rows: i64,
    pub in_stride: i64,
    pub out_stride: i64,
    pub cols: i32,
    pub packs: i32,
    pub threads: i32,
    pub parts: i32,
    pub slots: i32,
    pub layout: i32,
    pub mode: i32,
    pub flags: i32,
    pub eps: f32,
    pub sm_count: i32,
}
const _: () = assert!(std::mem::size_of::<RowParams>() == 152);

/// `ckb::norm::RowLayout`
pub(crate) const LAYOUT_WARP_PER_ROW: i32 = 0;
pub(crate) const LAYOUT_CTA_PER_ROW: i32 = 1;
/// `ckb::norm::Mode`
pub(crate) const MODE_WHOLE: i32 = 0;
pub(crate) const MODE_CLUSTER: i32 = 1;
pub(crate) const MODE_SPLIT: i32 = 2;
/// `ckb::norm::Flags`
pub(crate) const FLAG_VECTORIZED: i32 = 1;
pub(crate) const FLAG_LOG_SOFTMAX: i32 = 2;

/// Floats per split-row partial (`kPartialFloats`).
pub(crate) const PARTIAL_FLOATS: usize = 4;

pub(crate) type Launcher = unsafe extern "C" fn(*const RowParams, Stream) -> i32;

extern "C" {
    fn ckb_norm_softmax_f32(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_softmax_f16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_softmax_bf16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_layernorm_f32(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_layernorm_f16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_layernorm_bf16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_rmsnorm_f32(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_rmsnorm_f16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_rmsnorm_bf16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_softmax_backward_f32(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_softmax_backward_f16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_softmax_backward_bf16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_layernorm_backward_f32(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_layernorm_backward_f16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_layernorm_backward_bf16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_rmsnorm_backward_f32(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_rmsnorm_backward_f16(p: *const RowParams, s: Stream) -> i32;
    fn ckb_norm_rmsnorm_backward_bf16(p: *const RowParams, s: Stream) -> i32;
}

/// Softmax and log-softmax share a launcher (`FLAG_LOG_SOFTMAX` tells them apart).
pub(crate) fn launcher(op: NormOp, dtype: DType) -> Launcher {
    use NormOp::*;
    match (op, dtype) {
        (Softmax | LogSoftmax, DType::F32) => ckb_norm_softmax_f32,
        (Softmax | LogSoftmax, DType::F16) => ckb_norm_softmax_f16,
        (Softmax | LogSoftmax, DType::BF16) => ckb_norm_softmax_bf16,
        (LayerNorm, DType::F32) => ckb_norm_layernorm_f32,
        (LayerNorm, DType::F16) => ckb_norm_layernorm_f16,
        (LayerNorm, DType::BF16) => ckb_norm_layernorm_bf16,
        (RmsNorm, DType::F32) => ckb_norm_rmsnorm_f32,
        (RmsNorm, DType::F16) => ckb_norm_rmsnorm_f16,
        (RmsNorm, DType::BF16) => ckb_norm_rmsnorm_bf16,
        (SoftmaxBackward, DType::F32) => ckb_norm_softmax_backward_f32,
        (SoftmaxBackward, DType::F16) => ckb_norm_softmax_backward_f16,
        (SoftmaxBackward, DType::BF16) => ckb_norm_softmax_backward_bf16,
        (LayerNormBackward, DType::F32) => ckb_norm_layernorm_backward_f32,
        (LayerNormBackward, DType::F16) => ckb_norm_layernorm_backward_f16,
        (LayerNormBackward, DType::BF16) => ckb_norm_layernorm_backward_bf16,
        (RmsNormBackward, DType::F32) => ckb_norm_rmsnorm_backward_f32,
        (RmsNormBackward, DType::F16) => ckb_norm_rmsnorm_backward_f16,
        (RmsNormBackward, DType::BF16) => ckb_norm_rmsnorm_backward_bf16,
        (_, other) => unreachable!("NormElement admits no {other}"),
    }
}

/// Turns a launcher's return code into a result, naming the kernel only on failure.
pub(crate) fn check(code: i32, kernel: impl FnOnce() -> String) -> NormResult<()> {
    if code == 0 {
        Ok(())
    } else {
        Ok(check_launch(&kernel(), code)?)
    }
}
