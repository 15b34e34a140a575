//! Raw CUDA baselines from `baselines/cuda` (the `ckb-baselines-cuda` package): simple kernels
//! with no CuTe.

use std::ffi::c_void;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use half::bf16;

use super::spec::GemmSpec;
use super::{all_ok, to_i64};
use crate::element::{DType, Element};
use crate::error::{check_launch, GpuError, GpuResult};
use crate::gpu::Gpu;
use crate::layout::Layout;

type StreamPtr = *mut c_void;

extern "C" {
    fn ckb_naive_add_f32(a: u64, b: u64, c: u64, n: i64, stream: *mut std::ffi::c_void) -> i32;
    fn ckb_naive_add_bf16(a: u64, b: u64, c: u64, n: i64, stream: *mut std::ffi::c_void) -> i32;
}

extern_c_entries!(
    type NaiveGemmEntry = (
        a: *const c_void,
        b: *const c_void,
        c: *mut c_void,
        m: i64,
        n: i64,
        k: i64,
        a_row: i64,
        a_col: i64,
        b_row: i64,
        b_col: i64,
        c_row: i64,
        c_col: i64,
        alpha: f32,
        beta: f32,
        stream: StreamPtr,
    ) -> i32;
    ckb_naive_gemm_f32_f32,
    ckb_naive_gemm_f32_f16,
    ckb_naive_gemm_f32_bf16,
    ckb_naive_gemm_f16_f32,
    ckb_naive_gemm_f16_f16,
    ckb_naive_gemm_f16_bf16,
    ckb_naive_gemm_bf16_f32,
    ckb_naive_gemm_bf16_f16,
    ckb_naive_gemm_bf16_bf16,
);

/// c = a + b, one thread per element.
pub fn add_f32(gpu: &Gpu, a: &CudaSlice<f32>, b: &CudaSlice<f32>, c: &mut CudaSlice<f32>) -> GpuResult<()> {
    let n = a.len().min(b.len()).min(c.len());
    let (pa, _ra) = a.device_ptr(&gpu.stream);
    let (pb, _rb) = b.device_ptr(&gpu.stream);
    let (pc, _rc) = c.device_ptr_mut(&gpu.stream);
    // SAFETY: all three buffers hold at least n elements on this stream's context.
    check_launch("naive_add_f32", unsafe { ckb_naive_add_f32(pa, pb, pc, n as i64, gpu.cu_stream()) })
}

/// c = a + b in bf16, one thread per element.
pub fn add_bf16(gpu: &Gpu, a: &CudaSlice<bf16>, b: &CudaSlice<bf16>, c: &mut CudaSlice<bf16>) -> GpuResult<()> {
    let n = a.len().min(b.len()).min(c.len());
    let (pa, _ra) = a.device_ptr(&gpu.stream);
    let (pb, _rb) = b.device_ptr(&gpu.stream);
    let (pc, _rc) = c.device_ptr_mut(&gpu.stream);
    // SAFETY: all three buffers hold at least n elements on this stream's context.
    check_launch("naive_add_bf16", unsafe { ckb_naive_add_bf16(pa, pb, pc, n as i64, gpu.cu_stream()) })
}

/// The naive GEMM kernel for `input x input -> output`; f32, f16 and bf16 in any pairing.
fn naive_gemm_entry(input: DType, output: DType) -> GpuResult<NaiveGemmEntry> {
    use DType::{BF16, F16, F32};
    Ok(match (input, output) {
        (F32, F32) => ckb_naive_gemm_f32_f32,
        (F32, F16) => ckb_naive_gemm_f32_f16,
        (F32, BF16) => ckb_naive_gemm_f32_bf16,
        (F16, F32) => ckb_naive_gemm_f16_f32,
        (F16, F16) => ckb_naive_gemm_f16_f16,
        (F16, BF16) => ckb_naive_gemm_f16_bf16,
        (BF16, F32) => ckb_naive_gemm_bf16_f32,
        (BF16, F16) => ckb_naive_gemm_bf16_f16,
        (BF16, BF16) => ckb_naive_gemm_bf16_bf16,
        _ => {
            return Err(GpuError::Unsupported {
                what: "the naive GEMM",
                detail: format!("{input} inputs with {output} output (it takes f32, f16 and bf16)"),
            })
        }
    })
}

/// (row stride, column stride) of a matrix stored in `layout` with leading dimension `ld`.
pub fn strides(layout: Layout, ld: usize) -> (usize, usize) {
    match layout {
        Layout::RowMajor => (ld, 1),
        Layout::ColMajor => (1, ld),
    }
}

/// `c = alpha * a * b + beta * c` by the naive kernel: one thread per element of C, plain
/// fp32 FMAs (no TF32, whatever `spec.fp32_math` says), `beta == 0` does not read C.
/// A checker for shapes too large for the CPU reference, not a performance baseline.
pub fn gemm<TIn: Element, TOut: Element>(
    gpu: &Gpu,
    spec: &GemmSpec,
    a: &impl DevicePtr<TIn>,
    b: &impl DevicePtr<TIn>,
    c: &mut impl DevicePtrMut<TOut>,
) -> GpuResult<()> {
    let entry = naive_gemm_entry(TIn::DTYPE, TOut::DTYPE)?;
    spec.validate(a.len(), b.len(), c.len())?;
    let [(a_row, a_col), (b_row, b_col), (c_row, c_col)] =
        [strides(spec.a_layout, spec.lda), strides(spec.b_layout, spec.ldb), strides(spec.c_layout, spec.ldc)];
    let [m, n, k, a_row, a_col, b_row, b_col, c_row, c_col] =
        all_ok([spec.m, spec.n, spec.k, a_row, a_col, b_row, b_col, c_row, c_col].map(|v| to_i64("naive GEMM", v)))?;
    gpu.ctx.bind_to_thread()?;
    let (pa, _ra) = a.device_ptr(&gpu.stream);
    let (pb, _rb) = b.device_ptr(&gpu.stream);
    let (pc, _rc) = c.device_ptr_mut(&gpu.stream);
    // SAFETY: the buffers hold the validated extents on this stream's context.
    let code = unsafe {
        entry(
            pa as *const c_void,
            pb as *const c_void,
            pc as *mut c_void,
            m,
            n,
            k,
            a_row,
            a_col,
            b_row,
            b_col,
            c_row,
            c_col,
            spec.alpha,
            spec.beta,
            gpu.cu_stream(),
        )
    };
    check_launch("naive_gemm", code)
}
