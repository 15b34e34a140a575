//! The `extern "C"` entry points of kernels/*.cu and the choice of them by op and type. Each
//! launcher takes a [`RowParams`] (device addresses, int64 sizes, the plan) and a
//! `cudaStream_t`, runs that plan as given, and returns the `cudaError_t` of its launches or
//! a refusal ([`REFUSED_PLAN`], [`REFUSED_SHARED_MEMORY`]). Beside each launcher, a residency
//! query answers the planner's occupancy questions about its staged kernel ([`StagedQuery`]).

use std::ffi::c_void;

use ckb_common::{check_launch, DType};

use crate::problem::{NormError, NormOp, NormResult, Refusal};
use crate::variants::NormPlan;

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
    pub sum_out: u64,
    pub addend: u64,
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
    pub stages: i32,
    pub smem_limit: i32,
    pub lanes: i32,
    pub width: i32,
    pub reserved: i32,
}
const _: () = assert!(std::mem::size_of::<RowParams>() == 184);

/// Mirrors `ckb::norm::StagedQuery` in kernels/rows_kernel.cuh, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StagedQuery {
    pub vectorized: i32,
    pub threads: i32,
    pub smem_bytes: i32,
    pub smem_limit: i32,
    pub cluster: i32,
    pub resident: i32,
}
const _: () = assert!(std::mem::size_of::<StagedQuery>() == 24);

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

/// `ckb::norm::Refusal`: what a launcher returns for a plan it will not run.
pub(crate) const REFUSED_PLAN: i32 = -1;
pub(crate) const REFUSED_SHARED_MEMORY: i32 = -2;
/// `cudaErrorInvalidClusterSize`: CUDA's answer to a cluster launch it cannot place.
pub(crate) const CUDA_ERROR_INVALID_CLUSTER_SIZE: i32 = 912;

/// The two entry points of one op and type: its launcher and its staged kernel's residency.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub launch: unsafe extern "C" fn(*const RowParams, Stream) -> i32,
    pub residency: unsafe extern "C" fn(*mut StagedQuery) -> i32,
}

/// Declares `ckb_norm_<op>_<type>` and `ckb_norm_<op>_<type>_residency` for each entry, and
/// `kernels(op, dtype)`, which picks them.
macro_rules! kernels {
    ($(($ops:pat, $dtype:ident) => $launch:ident, $residency:ident;)*) => {
        extern "C" {
            $(
                fn $launch(p: *const RowParams, s: Stream) -> i32;
                fn $residency(q: *mut StagedQuery) -> i32;
            )*
        }

        /// Softmax and log-softmax share kernels (`FLAG_LOG_SOFTMAX` tells them apart).
        pub(crate) fn kernels(op: NormOp, dtype: DType) -> Kernels {
            use NormOp::*;
            match (op, dtype) {
                $(($ops, DType::$dtype) => Kernels { launch: $launch, residency: $residency },)*
                (_, other) => unreachable!("NormElement admits no {other}"),
            }
        }
    };
}

kernels! {
    (Softmax | LogSoftmax, F32) => ckb_norm_softmax_f32, ckb_norm_softmax_f32_residency;
    (Softmax | LogSoftmax, F16) => ckb_norm_softmax_f16, ckb_norm_softmax_f16_residency;
    (Softmax | LogSoftmax, BF16) => ckb_norm_softmax_bf16, ckb_norm_softmax_bf16_residency;
    (LayerNorm, F32) => ckb_norm_layernorm_f32, ckb_norm_layernorm_f32_residency;
    (LayerNorm, F16) => ckb_norm_layernorm_f16, ckb_norm_layernorm_f16_residency;
    (LayerNorm, BF16) => ckb_norm_layernorm_bf16, ckb_norm_layernorm_bf16_residency;
    (RmsNorm, F32) => ckb_norm_rmsnorm_f32, ckb_norm_rmsnorm_f32_residency;
    (RmsNorm, F16) => ckb_norm_rmsnorm_f16, ckb_norm_rmsnorm_f16_residency;
    (RmsNorm, BF16) => ckb_norm_rmsnorm_bf16, ckb_norm_rmsnorm_bf16_residency;
    (AddLayerNorm, F32) => ckb_norm_add_layernorm_f32, ckb_norm_add_layernorm_f32_residency;
    (AddLayerNorm, F16) => ckb_norm_add_layernorm_f16, ckb_norm_add_layernorm_f16_residency;
    (AddLayerNorm, BF16) => ckb_norm_add_layernorm_bf16, ckb_norm_add_layernorm_bf16_residency;
    (AddRmsNorm, F32) => ckb_norm_add_rmsnorm_f32, ckb_norm_add_rmsnorm_f32_residency;
    (AddRmsNorm, F16) => ckb_norm_add_rmsnorm_f16, ckb_norm_add_rmsnorm_f16_residency;
    (AddRmsNorm, BF16) => ckb_norm_add_rmsnorm_bf16, ckb_norm_add_rmsnorm_bf16_residency;
    (SoftmaxBackward, F32) => ckb_norm_softmax_backward_f32, ckb_norm_softmax_backward_f32_residency;
    (SoftmaxBackward, F16) => ckb_norm_softmax_backward_f16, ckb_norm_softmax_backward_f16_residency;
    (SoftmaxBackward, BF16) => ckb_norm_softmax_backward_bf16, ckb_norm_softmax_backward_bf16_residency;
    (LayerNormBackward, F32) => ckb_norm_layernorm_backward_f32, ckb_norm_layernorm_backward_f32_residency;
    (LayerNormBackward, F16) => ckb_norm_layernorm_backward_f16, ckb_norm_layernorm_backward_f16_residency;
    (LayerNormBackward, BF16) => ckb_norm_layernorm_backward_bf16, ckb_norm_layernorm_backward_bf16_residency;
    (RmsNormBackward, F32) => ckb_norm_rmsnorm_backward_f32, ckb_norm_rmsnorm_backward_f32_residency;
    (RmsNormBackward, F16) => ckb_norm_rmsnorm_backward_f16, ckb_norm_rmsnorm_backward_f16_residency;
    (RmsNormBackward, BF16) => ckb_norm_rmsnorm_backward_bf16, ckb_norm_rmsnorm_backward_bf16_residency;
}

/// Turns a launcher's return code for `plan` into a result: its refusals (and CUDA's refusal
/// to place a cluster) into [`NormError::PlanRefused`], other CUDA errors into
/// [`NormError::Gpu`] naming the kernel.
pub(crate) fn check_launch_code(
    code: i32,
    op: NormOp,
    dtype: DType,
    plan: &NormPlan,
    smem_limit: usize,
) -> NormResult<()> {
    let refused = |reason| Err(NormError::PlanRefused { op: op.name(), plan: *plan, reason });
    match code {
        0 => Ok(()),
        REFUSED_PLAN => refused(Refusal::Inconsistent),
        REFUSED_SHARED_MEMORY => refused(Refusal::SharedMemory { needed: plan.smem_bytes(op), limit: smem_limit }),
        CUDA_ERROR_INVALID_CLUSTER_SIZE => refused(Refusal::ClusterNotResident),
        _ => Ok(check_launch(&format!("{}_{dtype} ({plan})", op.name()), code)?),
    }
}
