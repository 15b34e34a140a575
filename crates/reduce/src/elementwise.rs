//! The element-wise family: add, sub, mul, fused add+ReLU, axpy, scale, casts and a
//! row-vector bias add, for f32, f16 and bf16, computed in f32 and rounded once to the
//! output type.
//!
//! Any length and any element-aligned view works. When all operands sit the same number of
//! elements before a 16-byte boundary, that many elements are done one at a time and the
//! rest moves in 16-byte vectors; when their misalignments differ, the whole range takes the
//! kernel's scalar path (correct, about a quarter of the speed for f32 or less for halves).
//!
//! ```no_run
//! # use ckb_common::Gpu;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gpu = Gpu::new(0)?;
//! let a = gpu.random_normal::<f32>(1 << 20, 1)?;
//! let b = gpu.random_normal::<f32>(1 << 20, 2)?;
//! let mut c = gpu.zeros::<f32>(1 << 20)?;
//! let plan = ckb_reduce::elementwise::add(&gpu, &a, &b, &mut c)?;
//! println!("ran {plan}"); // "vec16-tile-per-block"
//! # Ok(()) }
//! ```

use ckb_common::{DType, Gpu, GpuError};
use cudarc::driver::{sys, DevicePtr, DevicePtrMut};

pub use crate::launch::BinaryOp;
use crate::launch::{self, check};
use crate::problem::{aligned_head, pack_elems, require_len, BiasAddProblem, EwElement, ReduceResult};
pub use crate::variants::{EwPath, EwPlan, EwVariant, GridPolicy, EW_VARIANTS};

/// out = a + b
pub fn add<T: EwElement>(
    gpu: &Gpu,
    a: &impl DevicePtr<T>,
    b: &impl DevicePtr<T>,
    out: &mut impl DevicePtrMut<T>,
) -> ReduceResult<EwPlan> {
    binary_with(gpu, EwVariant::default(), BinaryOp::Add, a, b, out)
}

/// out = a - b
pub fn sub<T: EwElement>(
    gpu: &Gpu,
    a: &impl DevicePtr<T>,
    b: &impl DevicePtr<T>,
    out: &mut impl DevicePtrMut<T>,
) -> ReduceResult<EwPlan> {
    binary_with(gpu, EwVariant::default(), BinaryOp::Sub, a, b, out)
}

/// out = a * b
pub fn mul<T: EwElement>(
    gpu: &Gpu,
    a: &impl DevicePtr<T>,
    b: &impl DevicePtr<T>,
    out: &mut impl DevicePtrMut<T>,
) -> ReduceResult<EwPlan> {
    binary_with(gpu, EwVariant::default(), BinaryOp::Mul, a, b, out)
}

/// out = max(a + b, 0), one pass; a NaN sum stays NaN.
pub fn add_relu<T: EwElement>(
    gpu: &Gpu,
    a: &impl DevicePtr<T>,
    b: &impl DevicePtr<T>,
    out: &mut impl DevicePtrMut<T>,
) -> ReduceResult<EwPlan> {
    binary_with(gpu, EwVariant::default(), BinaryOp::AddRelu, a, b, out)
}

/// A two-operand op with a chosen variant (benches and gates compare variants through this).
/// Every call returns the plan that ran.
pub fn binary_with<T: EwElement>(
    gpu: &Gpu,
    variant: EwVariant,
    op: BinaryOp,
    a: &impl DevicePtr<T>,
    b: &impl DevicePtr<T>,
    out: &mut impl DevicePtrMut<T>,
) -> ReduceResult<EwPlan> {
    let n = a.len();
    require_len(op.name(), "b", n, b.len())?;
    require_len(op.name(), "out", n, out.len())?;
    if n == 0 {
        return Ok(EwPlan::without_kernel(EwPath::Empty));
    }
    let grid_limit = variant.grid_limit(gpu)?;
    let (pa, _ra) = a.device_ptr(&gpu.stream);
    let (pb, _rb) = b.device_ptr(&gpu.stream);
    let (po, _ro) = out.device_ptr_mut(&gpu.stream);
    let size = T::DTYPE.size_bytes();
    let head = aligned_head(&[(pa, size), (pb, size), (po, size)], pack_elems(&[T::DTYPE]), n);
    let launcher = launch::binary_launcher(op, T::DTYPE);
    // SAFETY: the three addresses hold n elements of T on this stream's context (checked
    // above); out is exclusively borrowed, so it aliases neither input.
    let code = unsafe { launcher(pa, pb, po, n as i64, head as i64, grid_limit, gpu.cu_stream()) };
    check(code, || format!("ew_{}_{}", op.name(), T::DTYPE))?;
    Ok(EwPlan::launched(variant, head, n))
}

/// y = alpha * x + y, in place.
pub fn axpy<T: EwElement>(
    gpu: &Gpu,
    alpha: f32,
    x: &impl DevicePtr<T>,
    y: &mut impl DevicePtrMut<T>,
) -> ReduceResult<EwPlan> {
    // The kernel reads y[i] before writing it, in the same thread.
    with_alpha(gpu, ("axpy", "y"), launch::axpy_launcher(T::DTYPE), alpha, x, y)
}

/// out = alpha * x
pub fn scale<T: EwElement>(
    gpu: &Gpu,
    alpha: f32,
    x: &impl DevicePtr<T>,
    out: &mut impl DevicePtrMut<T>,
) -> ReduceResult<EwPlan> {
    with_alpha(gpu, ("scale", "out"), launch::scale_launcher(T::DTYPE), alpha, x, out)
}

/// The ops of one scalar and two operands of one type (axpy, scale).
fn with_alpha<T: EwElement>(
    gpu: &Gpu,
    (name, out_name): (&'static str, &'static str),
    launcher: launch::AlphaLauncher,
    alpha: f32,
    x: &impl DevicePtr<T>,
    out: &mut impl DevicePtrMut<T>,
) -> ReduceResult<EwPlan> {
    let n = x.len();
    require_len(name, out_name, n, out.len())?;
    if n == 0 {
        return Ok(EwPlan::without_kernel(EwPath::Empty));
    }
    let variant = EwVariant::default();
    let grid_limit = variant.grid_limit(gpu)?;
    let (px, _rx) = x.device_ptr(&gpu.stream);
    let (po, _ro) = out.device_ptr_mut(&gpu.stream);
    let size = T::DTYPE.size_bytes();
    let head = aligned_head(&[(px, size), (po, size)], pack_elems(&[T::DTYPE]), n);
    // SAFETY: both addresses hold n elements of T on this stream's context.
    let code = unsafe { launcher(alpha, px, po, n as i64, head as i64, grid_limit, gpu.cu_stream()) };
    check(code, || format!("ew_{name}_{}", T::DTYPE))?;
    Ok(EwPlan::launched(variant, head, n))
}

/// dst = src converted to D, rounding to nearest even. A cast to the same type is a copy.
pub fn cast<S: EwElement, D: EwElement>(
    gpu: &Gpu,
    src: &impl DevicePtr<S>,
    dst: &mut impl DevicePtrMut<D>,
) -> ReduceResult<EwPlan> {
    let n = src.len();
    require_len("cast", "dst", n, dst.len())?;
    if n == 0 {
        return Ok(EwPlan::without_kernel(EwPath::Empty));
    }
    let variant = EwVariant::default();
    let grid_limit = variant.grid_limit(gpu)?;
    let (ps, _rs) = src.device_ptr(&gpu.stream);
    let (pd, _rd) = dst.device_ptr_mut(&gpu.stream);
    let Some(launcher) = launch::cast_launcher(S::DTYPE, D::DTYPE) else {
        // SAFETY: both hold n elements of the same size on this context.
        unsafe { sys::cuMemcpyDtoDAsync_v2(pd, ps, n * S::DTYPE.size_bytes(), gpu.stream.cu_stream()) }
            .result()
            .map_err(GpuError::from)?;
        return Ok(EwPlan::without_kernel(EwPath::Copy));
    };
    let head =
        aligned_head(&[(ps, S::DTYPE.size_bytes()), (pd, D::DTYPE.size_bytes())], pack_elems(&[S::DTYPE, D::DTYPE]), n);
    // SAFETY: src holds n elements of S and dst n elements of D on this context.
    let code = unsafe { launcher(ps, pd, n as i64, head as i64, grid_limit, gpu.cu_stream()) };
    check(code, || format!("ew_cast_{}_{}", S::DTYPE, D::DTYPE))?;
    Ok(EwPlan::launched(variant, head, n))
}

/// `out[i, j] = x[i, j] + bias[j]` for an m x n row-major matrix x (contiguous, m * n elements).
pub fn bias_add<T: EwElement>(
    gpu: &Gpu,
    m: usize,
    n: usize,
    x: &impl DevicePtr<T>,
    bias: &impl DevicePtr<T>,
    out: &mut impl DevicePtrMut<T>,
) -> ReduceResult<EwPlan> {
    let len = BiasAddProblem { m, n }.validate()?;
    require_len("bias_add", "x", len, x.len())?;
    require_len("bias_add", "bias", n, bias.len())?;
    require_len("bias_add", "out", len, out.len())?;
    if len == 0 {
        return Ok(EwPlan::without_kernel(EwPath::Empty));
    }
    let variant = EwVariant::default();
    let grid_limit = variant.grid_limit(gpu)?;
    let (px, _rx) = x.device_ptr(&gpu.stream);
    let (pb, _rb) = bias.device_ptr(&gpu.stream);
    let (po, _ro) = out.device_ptr_mut(&gpu.stream);
    // Only x and out are streamed; the bias is read per pack (vectorized when a pack sits in
    // one row and is aligned, gathered otherwise).
    let size = T::DTYPE.size_bytes();
    let head = aligned_head(&[(px, size), (po, size)], pack_elems(&[T::DTYPE]), len);
    // SAFETY: x and out hold m * n elements, bias n, all of T on this context; n >= 1 here.
    let code = unsafe {
        launch::bias_add_launcher(T::DTYPE)(px, pb, po, len as i64, n as i64, head as i64, grid_limit, gpu.cu_stream())
    };
    check(code, || format!("ew_bias_add_{}", T::DTYPE))?;
    Ok(EwPlan::launched(variant, head, len))
}

/// Which dtypes an op takes, for tables and benches.
pub const EW_DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];
