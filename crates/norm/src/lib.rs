//! Row-wise normalisation kernels: softmax, log-softmax, layernorm, rmsnorm, forward and
//! backward, along the last axis of a `rows x cols` matrix with any row stride; f32, f16 and
//! bf16 in and out, f32 math.
//!
//! Follow a call: [`problem`] (typed problems, validation, errors), [`variants`] (the table
//! of compiled variants and the heuristic), [`normalizer`] (buffers, plans, launches),
//! `launch` (the `extern "C"` launchers of `kernels/*.cu`), [`reference`] (float64 CPU
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
//! The free functions make a [`Normalizer`] per call; keep one to reuse its scratch memory
//! (split rows, backward column sums). The `*_with_variant` forms force a variant.

mod launch;
pub mod normalizer;
pub mod problem;
pub mod reference;
pub mod variants;
pub mod verify;

use ckb_common::Gpu;
use cudarc::driver::{DevicePtr, DevicePtrMut};

pub use normalizer::Normalizer;
pub use problem::{
    check_buffers, check_eps, Extent, NormElement, NormError, NormOp, NormResult, RowsProblem, MAX_COLS,
};
pub use variants::{NormPlan, NormVariant, StagedShape, NORM_VARIANTS};

/// A normalizer that uses `variant`, or the heuristic.
fn normalizer(gpu: &Gpu, variant: Option<NormVariant>) -> NormResult<Normalizer> {
    let mut n = Normalizer::new(gpu)?;
    n.force_variant(variant);
    Ok(n)
}

/// `pub fn op(gpu, problem, args..)` with the heuristic's variant and
/// `pub fn op_with_variant(gpu, variant, problem, args..)`, both through a fresh [`Normalizer`].
macro_rules! row_op {
    ($(#[$doc:meta])* $op:ident, $with_variant:ident, ($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$doc])*
        pub fn $op<T: NormElement>(gpu: &Gpu, problem: &RowsProblem, $($arg: $ty),*) -> NormResult<Option<NormPlan>> {
            normalizer(gpu, None)?.$op(problem, $($arg),*)
        }

        $(#[$doc])*
        /// Runs `variant`, or fails with [`NormError::VariantMismatch`] when it cannot hold the rows.
        pub fn $with_variant<T: NormElement>(
            gpu: &Gpu,
            variant: NormVariant,
            problem: &RowsProblem,
            $($arg: $ty),*
        ) -> NormResult<Option<NormPlan>> {
            normalizer(gpu, Some(variant))?.$op(problem, $($arg),*)
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
