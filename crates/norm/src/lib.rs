//! Row-wise normalisation kernels: softmax, log-softmax, layernorm, rmsnorm (alone or fused
//! with a residual add), forward and backward, along the last axis of a `rows x cols` matrix with any row stride; f32, f16 and
//! bf16 in and out, f32 math.
//!
//! Follow a call: [`problem`] (typed problems, validation, errors), [`variants`] (the table
//! of compiled variants and the planner), [`normalizer`] (buffers, plans, launches),
//! `launch` (the `extern "C"` launchers of `kernels/*.cu`), [`reference`](mod@reference) (float64 CPU
//! references, whose conventions for `-inf`, NaN and constant rows the kernels follow),
//! [`verify`] (device results checked against them, row by row).
//!
//! ```no_run
//! # use ckb_common::{bf16, Gpu};
//! # use ckb_norm::{softmax, RowsProblem};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gpu = Gpu::new(0)?;
//! let problem = RowsProblem::dense(32768, 4096);
//! let x = gpu.random_normal::<bf16>(problem.input_len(), 7)?;
//! let mut y = gpu.zeros::<bf16>(problem.output_len())?;
//! softmax(&gpu, &problem, &x, &mut y)?;
//! # Ok(()) }
//! ```
//!
//! [`Normalizer`] is the primary API: one per stream keeps the tuning, the device's limits
//! and occupancy answers, and the scratch memory (split rows, backward column sums) between
//! calls. The free functions are conveniences that run on this thread's cached Normalizer
//! for the stream they are given (made on first use, replaced when a call names another
//! stream; it keeps its scratch memory until then or until the thread ends). The
//! `*_with_variant` forms force a variant. Every call returns the [`NormPlan`] that ran, or
//! None for an empty problem.

#![deny(missing_docs)]

mod launch;
pub mod normalizer;
pub mod problem;
pub mod reference;
pub mod variants;
pub mod verify;

use std::cell::RefCell;

use ckb_common::Gpu;
use cudarc::driver::{DevicePtr, DevicePtrMut};

pub use normalizer::Normalizer;
pub use problem::{
    check_buffers, check_eps, Extent, NormElement, NormError, NormOp, NormResult, Refusal, RowsProblem, MAX_COLS,
};
pub use variants::{
    DeviceLimits, NormPlan, NormVariant, Planner, Residency, StagedKernel, Tuning, MAX_STAGES, NORM_VARIANTS,
    STATIC_SMEM_RESERVE,
};

thread_local! {
    /// The free functions' Normalizer: this thread's, for the stream it last served.
    static CACHED: RefCell<Option<Normalizer>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's cached Normalizer for `gpu`'s stream, with `variant` forced
/// (None: the heuristic).
fn with_normalizer<R>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    f: impl FnOnce(&mut Normalizer) -> NormResult<R>,
) -> NormResult<R> {
    CACHED.with(|cached| match cached.try_borrow_mut() {
        Ok(mut slot) => {
            let normalizer = match slot.take() {
                Some(n) if n.serves(gpu) => n,
                _ => Normalizer::new(gpu)?,
            };
            let normalizer = slot.insert(normalizer);
            normalizer.force_variant(variant);
            f(normalizer)
        }
        // Only reachable from inside `f`, which calls no free function: a fresh one then.
        Err(_) => f(Normalizer::new(gpu)?.force_variant(variant)),
    })
}

/// `pub fn op(gpu, problem, args..)` with the heuristic's variant and
/// `pub fn op_with_variant(gpu, variant, problem, args..)`, both on the cached [`Normalizer`].
macro_rules! row_op {
    ($(#[$doc:meta])* $op:ident, $with_variant:ident, ($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$doc])*
        pub fn $op<T: NormElement>(gpu: &Gpu, problem: &RowsProblem, $($arg: $ty),*) -> NormResult<Option<NormPlan>> {
            with_normalizer(gpu, None, |n| n.$op(problem, $($arg),*))
        }

        $(#[$doc])*
        /// Runs `variant`, or fails with [`NormError::VariantMismatch`] when it cannot hold the
        /// rows or [`NormError::PlanRefused`] when the device cannot run its plan.
        pub fn $with_variant<T: NormElement>(
            gpu: &Gpu,
            variant: NormVariant,
            problem: &RowsProblem,
            $($arg: $ty),*
        ) -> NormResult<Option<NormPlan>> {
            with_normalizer(gpu, Some(variant), |n| n.$op(problem, $($arg),*))
        }
    };
}

row_op!(
    /// `y = softmax(x)` along each row; see [`Normalizer::softmax`].
    softmax, softmax_with_variant, (x: &impl DevicePtr<T>, y: &mut impl DevicePtrMut<T>)
);
row_op!(
    /// `y = log_softmax(x)` along each row; see [`Normalizer::log_softmax`].
    log_softmax, log_softmax_with_variant, (x: &impl DevicePtr<T>, y: &mut impl DevicePtrMut<T>)
);
row_op!(
    /// LayerNorm forward, saving mean and rstd; see [`Normalizer::layernorm`].
    layernorm,
    layernorm_with_variant,
    (
        x: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        beta: &impl DevicePtr<T>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
        mean: &mut impl DevicePtrMut<f32>,
        rstd: &mut impl DevicePtrMut<f32>,
    )
);
row_op!(
    /// LayerNorm forward without mean and rstd; see [`Normalizer::layernorm_inference`].
    layernorm_inference,
    layernorm_inference_with_variant,
    (
        x: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        beta: &impl DevicePtr<T>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
    )
);
row_op!(
    /// RMSNorm forward, saving rstd; see [`Normalizer::rmsnorm`].
    rmsnorm,
    rmsnorm_with_variant,
    (
        x: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
        rstd: &mut impl DevicePtrMut<f32>,
    )
);
row_op!(
    /// RMSNorm forward without rstd; see [`Normalizer::rmsnorm_inference`].
    rmsnorm_inference,
    rmsnorm_inference_with_variant,
    (x: &impl DevicePtr<T>, gamma: &impl DevicePtr<T>, eps: f32, y: &mut impl DevicePtrMut<T>)
);
row_op!(
    /// Softmax backward; see [`Normalizer::softmax_backward`].
    softmax_backward,
    softmax_backward_with_variant,
    (y: &impl DevicePtr<T>, dy: &impl DevicePtr<T>, dx: &mut impl DevicePtrMut<T>)
);
row_op!(
    /// LayerNorm backward; see [`Normalizer::layernorm_backward`].
    layernorm_backward,
    layernorm_backward_with_variant,
    (
        x: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        mean: &impl DevicePtr<f32>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
        dbeta: &mut impl DevicePtrMut<T>,
    )
);
row_op!(
    /// RMSNorm backward; see [`Normalizer::rmsnorm_backward`].
    rmsnorm_backward,
    rmsnorm_backward_with_variant,
    (
        x: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
    )
);
row_op!(
    /// Fused residual add and LayerNorm forward, saving mean and rstd; see [`Normalizer::add_layernorm`].
    add_layernorm,
    add_layernorm_with_variant,
    (
        x: &impl DevicePtr<T>,
        residual: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        beta: &impl DevicePtr<T>,
        eps: f32,
        h: &mut impl DevicePtrMut<T>,
        y: &mut impl DevicePtrMut<T>,
        mean: &mut impl DevicePtrMut<f32>,
        rstd: &mut impl DevicePtrMut<f32>,
    )
);
row_op!(
    /// Fused residual add and LayerNorm forward without mean and rstd; see
    /// [`Normalizer::add_layernorm_inference`].
    add_layernorm_inference,
    add_layernorm_inference_with_variant,
    (
        x: &impl DevicePtr<T>,
        residual: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        beta: &impl DevicePtr<T>,
        eps: f32,
        h: &mut impl DevicePtrMut<T>,
        y: &mut impl DevicePtrMut<T>,
    )
);
row_op!(
    /// Fused residual add and RMSNorm forward, saving rstd; see [`Normalizer::add_rmsnorm`].
    add_rmsnorm,
    add_rmsnorm_with_variant,
    (
        x: &impl DevicePtr<T>,
        residual: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        eps: f32,
        h: &mut impl DevicePtrMut<T>,
        y: &mut impl DevicePtrMut<T>,
        rstd: &mut impl DevicePtrMut<f32>,
    )
);
row_op!(
    /// Fused residual add and RMSNorm forward without rstd; see [`Normalizer::add_rmsnorm_inference`].
    add_rmsnorm_inference,
    add_rmsnorm_inference_with_variant,
    (
        x: &impl DevicePtr<T>,
        residual: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        eps: f32,
        h: &mut impl DevicePtrMut<T>,
        y: &mut impl DevicePtrMut<T>,
    )
);
row_op!(
    /// The backward pass of the fused add and LayerNorm; see [`Normalizer::add_layernorm_backward`].
    add_layernorm_backward,
    add_layernorm_backward_with_variant,
    (
        h: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        dh: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        mean: &impl DevicePtr<f32>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
        dbeta: &mut impl DevicePtrMut<T>,
    )
);
row_op!(
    /// The backward pass of the fused add and RMSNorm; see [`Normalizer::add_rmsnorm_backward`].
    add_rmsnorm_backward,
    add_rmsnorm_backward_with_variant,
    (
        h: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        dh: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
    )
);
