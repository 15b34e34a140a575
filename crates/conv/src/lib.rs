//! Convolution kernels (implicit GEMM, Winograd, direct) written with CuTe.
//!
//! Follow a call: [`problem`] (the typed [`Conv2dProblem`], its validation, the crate's
//! errors), [`variants`] (the table and the planner), [`conv2d`] (the launch), then
//! [`reference`](mod@reference) (the float64 CPU reference the kernels are checked against).
//! Today the table holds the direct kernel, correct on every valid problem and not fast;
//! phase 3's implicit GEMM and specialized kernels join it as variants.
//!
//! ```
//! # use ckb_conv::Conv2dProblem;
//! // ResNet-50's 3x3, 64 -> 64 channels at 56x56, padding 1.
//! let layer = Conv2dProblem::new(256, (56, 56), 64, 64, (3, 3)).with_padding(1, 1);
//! layer.validate()?;
//! assert_eq!(layer.output_hw()?, (56, 56));
//! assert_eq!(layer.flops()?, 2.0 * 256.0 * 64.0 * 56.0 * 56.0 * 64.0 * 9.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod launch;
pub mod problem;
pub mod reference;
pub mod variants;

use cudarc::driver::{DevicePtr, DevicePtrMut};

use ckb_common::{check_launch, Element, Gpu};

pub use problem::{
    Activation, Conv2dProblem, ConvError, ConvResult, ConvShapeError, GemmDims, MAX_ELEMENTS, MAX_EXTENT,
};
pub use variants::{ConvPlan, ConvVariant, CONV_VARIANTS};

/// `y = conv2d(x, w)` (NHWC input, KRSC filters, NPQK output) on the GPU's stream, with the
/// plan [`variants::plan`] makes; returns it, or None for an empty batch. Inputs are f32,
/// f16 or bf16 with fp32 accumulation; the output is the input's type or f32. Nothing is
/// synchronized.
pub fn conv2d<TIn: Element, TOut: Element>(
    gpu: &Gpu,
    problem: &Conv2dProblem,
    x: &impl DevicePtr<TIn>,
    w: &impl DevicePtr<TIn>,
    y: &mut impl DevicePtrMut<TOut>,
) -> ConvResult<Option<ConvPlan>> {
    conv2d_fused::<TIn, TOut, cudarc::driver::CudaSlice<TIn>>(gpu, problem, x, w, None, Activation::Identity, y)
}

/// [`conv2d`] with the fused epilogue: `y = activation(conv2d(x, w) + bias)`, `bias` one
/// value per output channel (of the input's type) where given.
pub fn conv2d_fused<TIn: Element, TOut: Element, B: DevicePtr<TIn>>(
    gpu: &Gpu,
    problem: &Conv2dProblem,
    x: &impl DevicePtr<TIn>,
    w: &impl DevicePtr<TIn>,
    bias: Option<&B>,
    activation: Activation,
    y: &mut impl DevicePtrMut<TOut>,
) -> ConvResult<Option<ConvPlan>> {
    let launcher = launch::direct(TIn::DTYPE, TOut::DTYPE)
        .ok_or(ConvError::UnsupportedTypes { input: TIn::DTYPE, output: TOut::DTYPE })?;
    problem.check_buffers(x.len(), w.len(), y.len())?;
    if let Some(bias) = bias {
        if bias.len() < problem.out_channels {
            return Err(ConvError::BufferTooShort { what: "bias", needed: problem.out_channels, got: bias.len() });
        }
    }
    if problem.is_empty() {
        return Ok(None);
    }
    let plan = variants::plan(problem, gpu.sm_count())?;
    let (p, q) = problem.output_hw()?;
    let stream = gpu.stream.clone();
    let (x_ptr, _x) = x.device_ptr(&stream);
    let (w_ptr, _w) = w.device_ptr(&stream);
    let bias_ptr = bias.map(|b| b.device_ptr(&stream));
    let (y_ptr, _y) = y.device_ptr_mut(&stream);
    // Every size fits i32 (validate: MAX_EXTENT), and the plan's grid is within the SMs'.
    let int = |v: usize| v as i32;
    let params = launch::ConvParams {
        x: x_ptr,
        w: w_ptr,
        bias: bias_ptr.as_ref().map_or(0, |(ptr, _)| *ptr),
        y: y_ptr,
        n: problem.batch as i64,
        h: problem.in_h as i64,
        w_in: problem.in_w as i64,
        c: problem.in_channels as i64,
        k: problem.out_channels as i64,
        r: problem.filter_h as i64,
        s: problem.filter_w as i64,
        p: p as i64,
        q: q as i64,
        stride_h: int(problem.stride_h),
        stride_w: int(problem.stride_w),
        pad_h: int(problem.pad_h),
        pad_w: int(problem.pad_w),
        dilation_h: int(problem.dilation_h),
        dilation_w: int(problem.dilation_w),
        groups: int(problem.groups),
        activation: activation.code(),
        grid: int(plan.grid),
        threads: int(plan.threads),
    };
    // SAFETY: the buffers were checked against the problem above and stay borrowed (their
    // guards alive) until the launch is enqueued on `stream`.
    let code = unsafe { launcher(&params, gpu.cu_stream()) };
    let kernel = format!("conv2d direct {}->{}", TIn::DTYPE, TOut::DTYPE);
    if code == launch::REFUSED_PLAN {
        return Err(ConvError::PlanRefused { kernel, plan: plan.to_string() });
    }
    check_launch(&kernel, code)?;
    tracing::debug!("conv2d {problem:?}: {plan}");
    Ok(Some(plan))
}
