//! Hopper GEMM kernels written with CuTe, driven from Rust.
//!
//! `C = alpha * A * B + beta * C` for f32/f16/bf16 inputs, f32/f16/bf16 output, fp32
//! accumulation, any shape, layouts and leading dimensions:
//!
//! ```no_run
//! use ckb_common::{bf16, Gpu};
//! use ckb_gemm::GemmProblem;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gpu = Gpu::new(0)?;
//! let problem = GemmProblem::row_col(4096, 4096, 4096);
//! let a = gpu.random_normal::<bf16>(4096 * 4096, 1)?;
//! let b = gpu.random_normal::<bf16>(4096 * 4096, 2)?;
//! let mut c = gpu.zeros::<bf16>(4096 * 4096)?;
//! let plan = ckb_gemm::gemm(&gpu, &problem, &a, &b, &mut c)?;
//! println!("ran {plan}"); // e.g. "sm90_bf16_128x256_s4_rc, direct"
//! # Ok(()) }
//! ```
//!
//! f16/bf16 problems take the TMA + WGMMA kernels, whatever C's alignment. Where TMA cannot
//! read A or B in place (a start or leading dimension that is not a multiple of 16 bytes),
//! that operand is first copied into aligned scratch ([`Staging`]); only tiny problems of
//! that kind take the universal kernel. Never an error for a valid problem.
//! f32 problems of 2^21 multiply-adds or more run on tf32 tensor cores at fp32 accuracy:
//! each operand is split into two tf32 terms in scratch and three products are summed
//! ([`Tf32Split`], 3xTF32; 2.1x cuBLAS SGEMM at 4096^3 on the H200, at SGEMM's error).
//! `Fp32Math::Tf32` on the problem opts into one product of tf32-rounded inputs. Known gap:
//! an infinite f32 input gives NaN where SGEMM gives +-inf (its remainder term is 0).
//! Where the output tiles alone would leave most SMs idle (decode rows, skinny and deep-K
//! problems), the K loop is split across SMs and the slices summed in a fixed order
//! ([`SplitK`]), so results are the same bits on every run. Every call returns the
//! [`Plan`] that ran, and logs it through `tracing` at debug level.
//!
//! [`GemmProblem`] is the type the cuBLAS baseline takes too (`ckb_common::gemm::GemmSpec`),
//! so one problem goes to both unchanged. The kernel pieces in `kernels/gemm/` are exported
//! to dependents' build scripts as `DEP_CKB_GEMM_KERNELS_INCLUDE` (`links`), which
//! ckb-cuda-build puts on nvcc's include path.

#![deny(missing_docs)]

pub mod launch;
pub mod problem;
pub mod reference;
pub mod variants;
pub mod verify;

use cudarc::driver::{DevicePtr, DevicePtrMut};

use ckb_common::{bf16, f16, DType, Element, Gpu};

pub use launch::{Orientation, Plan, SplitK, Staging, Tf32Split};
pub use problem::{GemmError, GemmProblem, GemmShapeError, Operand};
pub use variants::{find_variant, variants, InputType, KernelConfig, Major, Schedule, TileShape, Variant};

/// Input element types the kernels take.
pub trait GemmInput: Element {}
impl GemmInput for f32 {}
impl GemmInput for f16 {}
impl GemmInput for bf16 {}

/// Output element types the kernels write.
pub trait GemmOutput: Element {}
impl GemmOutput for f32 {}
impl GemmOutput for f16 {}
impl GemmOutput for bf16 {}

/// Runs `C = alpha * A * B + beta * C` on the GPU's stream with the plan the shape heuristic
/// picks, and returns that plan. Nothing is synchronized.
pub fn gemm<TIn: GemmInput, TOut: GemmOutput>(
    gpu: &Gpu,
    problem: &GemmProblem,
    a: &impl DevicePtr<TIn>,
    b: &impl DevicePtr<TIn>,
    c: &mut impl DevicePtrMut<TOut>,
) -> Result<Plan, GemmError> {
    run::<TIn, TOut>(gpu, problem, a, b, c, None)
}

/// As [`gemm`], with the variant forced (bench and gate `--variant`). Fails with
/// [`GemmError::VariantCannotRun`] when the variant cannot take this problem (dtype,
/// majorness, alignment); returns how it ran.
pub fn gemm_with_variant<TIn: GemmInput, TOut: GemmOutput>(
    gpu: &Gpu,
    variant: &'static Variant,
    problem: &GemmProblem,
    a: &impl DevicePtr<TIn>,
    b: &impl DevicePtr<TIn>,
    c: &mut impl DevicePtrMut<TOut>,
) -> Result<Plan, GemmError> {
    run::<TIn, TOut>(gpu, problem, a, b, c, Some(variant))
}

/// The variant and orientation [`gemm`] would use for `problem` on buffers at these
/// addresses (device addresses, for the alignment checks).
pub fn choose_plan(
    gpu: &Gpu,
    problem: &GemmProblem,
    input: DType,
    output: DType,
    addresses: [u64; 3],
) -> Result<Plan, GemmError> {
    problem.lens()?;
    let [a, b, c] = addresses;
    launch::choose(problem, input, output, launch::Addresses { a, b, c }, gpu.sm_count())
}

fn run<TIn: GemmInput, TOut: GemmOutput>(
    gpu: &Gpu,
    problem: &GemmProblem,
    a: &impl DevicePtr<TIn>,
    b: &impl DevicePtr<TIn>,
    c: &mut impl DevicePtrMut<TOut>,
    forced: Option<&'static Variant>,
) -> Result<Plan, GemmError> {
    problem.validate(a.len(), b.len(), c.len())?;
    let stream = &gpu.stream;
    // The guards record the buffers' use on the stream when dropped, after the launch.
    let (a_ptr, _a_guard) = a.device_ptr(stream);
    let (b_ptr, _b_guard) = b.device_ptr(stream);
    let (c_ptr, _c_guard) = c.device_ptr_mut(stream);
    let addresses = launch::Addresses { a: a_ptr, b: b_ptr, c: c_ptr };
    let sms = gpu.sm_count();
    let plan = match forced {
        Some(variant) => launch::plan_for(variant, problem, TIn::DTYPE, TOut::DTYPE, addresses, sms)?,
        None => launch::choose(problem, TIn::DTYPE, TOut::DTYPE, addresses, sms)?,
    };
    // SAFETY: the buffers were checked against the problem above and stay borrowed (and
    // their guards alive) until the launch has been enqueued on `stream`.
    unsafe { launch::launch(plan, problem, addresses, TOut::DTYPE, gpu)? };
    Ok(plan)
}
