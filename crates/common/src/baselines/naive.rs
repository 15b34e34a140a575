//! Raw CUDA baselines from `baselines/cuda`: simple kernels with no CuTe.

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use half::bf16;

use crate::error::{check_launch, GpuResult};
use crate::gpu::Gpu;

extern "C" {
    fn ckb_naive_add_f32(a: u64, b: u64, c: u64, n: i64, stream: *mut std::ffi::c_void) -> i32;
    fn ckb_naive_add_bf16(a: u64, b: u64, c: u64, n: i64, stream: *mut std::ffi::c_void) -> i32;
}

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
