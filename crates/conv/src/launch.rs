//! The `extern "C"` entry points of kernels/*.cu and the choice of them by element types.
//! Each launcher takes a [`ConvParams`] (device addresses, int64 sizes, the plan's grid) and
//! a `cudaStream_t`, runs that plan as given, and returns the `cudaError_t` of its launch or
//! [`REFUSED_PLAN`].

use std::ffi::c_void;

use ckb_common::DType;

pub(crate) type Stream = *mut c_void;

/// Mirrors `ckb::conv::ConvParams` in kernels/conv_params.cuh, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ConvParams {
    pub x: u64,
    pub w: u64,
    pub bias: u64,
    pub y: u64,
    pub n: i64,
    pub h: i64,
    pub w_in: i64,
    pub c: i64,
    pub k: i64,
    pub r: i64,
    pub s: i64,
    pub p: i64,
    pub q: i64,
    pub stride_h: i32,
    pub stride_w: i32,
    pub pad_h: i32,
    pub pad_w: i32,
    pub dilation_h: i32,
    pub dilation_w: i32,
    pub groups: i32,
    pub activation: i32,
    pub grid: i32,
    pub threads: i32,
}
const _: () = assert!(std::mem::size_of::<ConvParams>() == 144);

/// What a launcher returns for a plan it will not run (`-1` in kernels/direct_conv.cuh).
pub(crate) const REFUSED_PLAN: i32 = -1;

/// A launcher: `(params, stream) -> cudaError_t or REFUSED_PLAN`.
pub(crate) type Launcher = unsafe extern "C" fn(*const ConvParams, Stream) -> i32;

extern "C" {
    fn ckb_conv_direct_bf16_bf16(p: *const ConvParams, s: Stream) -> i32;
    fn ckb_conv_direct_bf16_f32(p: *const ConvParams, s: Stream) -> i32;
    fn ckb_conv_direct_f16_f16(p: *const ConvParams, s: Stream) -> i32;
    fn ckb_conv_direct_f16_f32(p: *const ConvParams, s: Stream) -> i32;
    fn ckb_conv_direct_f32_f32(p: *const ConvParams, s: Stream) -> i32;
}

/// The direct kernel for `input` elements (input, filters, bias) written as `output`; None
/// for a pair no kernel takes.
pub(crate) fn direct(input: DType, output: DType) -> Option<Launcher> {
    Some(match (input, output) {
        (DType::BF16, DType::BF16) => ckb_conv_direct_bf16_bf16,
        (DType::BF16, DType::F32) => ckb_conv_direct_bf16_f32,
        (DType::F16, DType::F16) => ckb_conv_direct_f16_f16,
        (DType::F16, DType::F32) => ckb_conv_direct_f16_f32,
        (DType::F32, DType::F32) => ckb_conv_direct_f32_f32,
        _ => return None,
    })
}
