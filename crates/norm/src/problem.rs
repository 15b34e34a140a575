//! Typed problems of this crate, their validation, and their errors.

use ckb_common::{bf16, f16, Element, GpuError};

use crate::reference::Rows;
use crate::variants::{NormPlan, Tuning};

/// Everything that can go wrong in this crate: bad input, caught before any launch; a
/// variant or plan this problem or device cannot take; or a GPU failure.
#[derive(Debug, thiserror::Error)]
pub enum NormError {
    /// A CUDA call failed, or a kernel failed to launch or run.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// The problem itself is invalid (stride, row length, size).
    #[error("{op}: {problem:?} has {what}")]
    BadShape {
        /// The op's name.
        op: &'static str,
        /// The problem as given.
        problem: RowsProblem,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A buffer holds fewer elements than the problem needs.
    #[error("{op}: {what} holds {got} elements, the problem needs {needed}")]
    BufferTooShort {
        /// The op's name.
        op: &'static str,
        /// The buffer (`x`, `gamma`, ...).
        what: &'static str,
        /// Elements the problem needs.
        needed: usize,
        /// Elements the buffer holds.
        got: usize,
    },
    /// eps is negative or not finite.
    #[error("{op}: eps must be finite and >= 0, got {eps}")]
    BadEps {
        /// The op's name.
        op: &'static str,
        /// The eps given.
        eps: f32,
    },
    /// The forced variant cannot hold this problem's rows (whatever the device).
    #[error("variant {variant} cannot run {op} on {what}")]
    VariantMismatch {
        /// The variant's name.
        variant: &'static str,
        /// The op's name.
        op: &'static str,
        /// The rows it cannot hold and what it holds, in words.
        what: String,
    },
    /// A tuning field is outside its range ([`Tuning::validate`]).
    #[error("tuning {tuning:?} has {what}")]
    BadTuning {
        /// The tuning as given.
        tuning: Tuning,
        /// What is out of range, in words.
        what: &'static str,
    },
    /// The variant holds the rows, but this device cannot run its plan: the planner found
    /// it from the device's limits and occupancy, or the launcher refused it. Nothing ran;
    /// no other plan was tried in its place.
    #[error("{op}: this device cannot run {plan}: {reason}")]
    PlanRefused {
        /// The op's name.
        op: &'static str,
        /// The plan the device cannot run.
        plan: NormPlan,
        /// Why.
        reason: Refusal,
    },
}

impl From<NormError> for GpuError {
    /// GPU errors pass through; the crate's own errors keep their message.
    fn from(e: NormError) -> GpuError {
        match e {
            NormError::Gpu(g) => g,
            other => GpuError::Operator { operator: "ckb-norm", detail: other.to_string() },
        }
    }
}

/// Why a device cannot run a plan ([`NormError::PlanRefused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The staging ring needs more dynamic shared memory than a CTA may take.
    #[error("its staging ring needs {needed} bytes of shared memory, a CTA may take {limit}")]
    SharedMemory {
        /// Bytes of dynamic shared memory the ring needs at its shallowest, one stage.
        needed: usize,
        /// Bytes a staged CTA may take on this device
        /// ([`DeviceLimits::max_dynamic_smem`](crate::variants::DeviceLimits::max_dynamic_smem)).
        limit: usize,
    },
    /// No CTA of the plan fits on an SM.
    #[error("no CTA of it fits on an SM")]
    NotResident,
    /// No GPC can hold a whole cluster of the plan at once.
    #[error("no GPC can hold one of its clusters")]
    ClusterNotResident,
    /// The launcher found the plan inconsistent with the compiled kernels (a planner bug).
    #[error("the launcher holds no such kernel configuration")]
    Inconsistent,
}

/// The result of this crate's calls.
pub type NormResult<T> = Result<T, NormError>;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for super::f16 {}
    impl Sealed for super::bf16 {}
}

/// The element types the row kernels are compiled for: f32, f16 and bf16 (math in f32).
pub trait NormElement: Element + sealed::Sealed {}
impl NormElement for f32 {}
impl NormElement for f16 {}
impl NormElement for bf16 {}

/// The row operations, forward and backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormOp {
    /// `softmax(x)` along each row.
    Softmax,
    /// `log_softmax(x)` along each row.
    LogSoftmax,
    /// LayerNorm forward (with or without saving mean and rstd).
    LayerNorm,
    /// RMSNorm forward (with or without saving rstd).
    RmsNorm,
    /// Fused residual add and LayerNorm forward: `h = x + residual`, `y = layernorm(h)`,
    /// both written.
    AddLayerNorm,
    /// Fused residual add and RMSNorm forward: `h = x + residual`, `y = rmsnorm(h)`, both
    /// written.
    AddRmsNorm,
    /// Softmax backward, from the forward output.
    SoftmaxBackward,
    /// LayerNorm backward, from the saved mean and rstd.
    LayerNormBackward,
    /// RMSNorm backward, from the saved rstd.
    RmsNormBackward,
}

impl NormOp {
    /// Every op, forward ones first.
    pub const ALL: [NormOp; 9] = [
        NormOp::Softmax,
        NormOp::LogSoftmax,
        NormOp::LayerNorm,
        NormOp::RmsNorm,
        NormOp::AddLayerNorm,
        NormOp::AddRmsNorm,
        NormOp::SoftmaxBackward,
        NormOp::LayerNormBackward,
        NormOp::RmsNormBackward,
    ];

    /// The op's name in errors, logs and records.
    pub fn name(self) -> &'static str {
        match self {
            NormOp::Softmax => "softmax",
            NormOp::LogSoftmax => "log_softmax",
            NormOp::LayerNorm => "layernorm",
            NormOp::RmsNorm => "rmsnorm",
            NormOp::AddLayerNorm => "add_layernorm",
            NormOp::AddRmsNorm => "add_rmsnorm",
            NormOp::SoftmaxBackward => "softmax_backward",
            NormOp::LayerNormBackward => "layernorm_backward",
            NormOp::RmsNormBackward => "rmsnorm_backward",
        }
    }

    /// Softmax, log-softmax, layernorm and rmsnorm forward, fused with a residual add or not.
    pub fn is_forward(self) -> bool {
        !matches!(self, NormOp::SoftmaxBackward | NormOp::LayerNormBackward | NormOp::RmsNormBackward)
    }

    /// The fused residual-add forms, which also read the residual and write `h`.
    pub fn adds_residual(self) -> bool {
        matches!(self, NormOp::AddLayerNorm | NormOp::AddRmsNorm)
    }

    /// Row-shaped inputs the op reads (`kInputs`): x; backward ops also dy, fused adds the
    /// residual.
    pub fn row_inputs(self) -> usize {
        if self.is_forward() && !self.adds_residual() {
            1
        } else {
            2
        }
    }

    /// Per-row f32 statistics a forward op writes for its backward, where the caller
    /// passes their buffers (the training form): mean and rstd, rstd, or none.
    pub fn saved_stats(self) -> usize {
        match self {
            NormOp::LayerNorm | NormOp::AddLayerNorm => 2,
            NormOp::RmsNorm | NormOp::AddRmsNorm => 1,
            _ => 0,
        }
    }

    /// Per-column sums the op produces (dgamma, dbeta): 2, 1 or 0.
    pub fn column_sums(self) -> usize {
        match self {
            NormOp::LayerNormBackward => 2,
            NormOp::RmsNormBackward => 1,
            _ => 0,
        }
    }
}

/// The rows one call works on: `rows` rows of `cols` elements along the last axis, row `i`
/// starting at element `i * row_stride` of every row-shaped input. Outputs are dense
/// (`rows x cols`), per-row statistics have `rows` values, gamma, beta and their gradients
/// `cols`: the conventions of [`crate::reference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowsProblem {
    /// Rows to normalise.
    pub rows: usize,
    /// Elements per row: the axis the op runs along.
    pub cols: usize,
    /// Elements from the start of one input row to the next; at least `cols`.
    pub row_stride: usize,
}

/// The longest row the kernels index with 32-bit column arithmetic.
pub const MAX_COLS: usize = 1 << 30;

impl RowsProblem {
    /// `rows` rows of `cols` elements, `row_stride` elements apart.
    pub fn new(rows: usize, cols: usize, row_stride: usize) -> RowsProblem {
        RowsProblem { rows, cols, row_stride }
    }

    /// Densely packed rows.
    pub fn dense(rows: usize, cols: usize) -> RowsProblem {
        RowsProblem::new(rows, cols, cols)
    }

    /// The same description for the float64 references.
    pub fn reference_rows(&self) -> Rows {
        Rows::new(self.rows, self.cols, self.row_stride)
    }

    /// Elements a row-shaped input must hold: `(rows - 1) * row_stride + cols`.
    pub fn input_len(&self) -> usize {
        if self.rows == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + self.cols
        }
    }

    /// Elements of a dense output: `rows * cols`.
    pub fn output_len(&self) -> usize {
        self.rows * self.cols
    }

    /// Fails on a stride below the row length, a row too long for the kernels, or sizes
    /// beyond what a 64-bit element index addresses.
    pub fn validate(&self, op: &'static str) -> NormResult<()> {
        let bad = |what| Err(NormError::BadShape { op, problem: *self, what });
        if self.row_stride < self.cols {
            return bad("a row stride below the row length");
        }
        if self.cols > MAX_COLS {
            return bad("rows longer than 2^30 elements");
        }
        let fits = |n: Option<usize>| n.is_some_and(|n| n <= i64::MAX as usize);
        let input =
            self.rows.checked_sub(1).map_or(Some(0), |r| r.checked_mul(self.row_stride)?.checked_add(self.cols));
        if !fits(input) || !fits(self.rows.checked_mul(self.cols)) {
            return bad("more elements than a 64-bit index can address");
        }
        Ok(())
    }

    /// No rows, or rows of no elements: nothing to launch.
    pub fn is_empty(&self) -> bool {
        self.rows == 0 || self.cols == 0
    }
}

/// What a buffer spans, which sets the elements it must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// A row-shaped input, rows `row_stride` apart: [`RowsProblem::input_len`].
    Rows,
    /// A dense row-shaped output: [`RowsProblem::output_len`].
    Dense,
    /// One value per column (gamma, beta, dgamma, dbeta).
    PerColumn,
    /// One value per row (mean, rstd).
    PerRow,
}

impl RowsProblem {
    /// Elements a buffer of this extent must hold.
    pub fn needed(&self, extent: Extent) -> usize {
        match extent {
            Extent::Rows => self.input_len(),
            Extent::Dense => self.output_len(),
            Extent::PerColumn => self.cols,
            Extent::PerRow => self.rows,
        }
    }
}

/// Validates the problem, then each buffer, given as (name, extent, elements held): the
/// checks every call makes before it launches.
pub fn check_buffers(op: NormOp, problem: &RowsProblem, buffers: &[(&'static str, Extent, usize)]) -> NormResult<()> {
    problem.validate(op.name())?;
    buffers.iter().try_for_each(|&(what, extent, got)| {
        let needed = problem.needed(extent);
        if got >= needed {
            Ok(())
        } else {
            Err(NormError::BufferTooShort { op: op.name(), what, needed, got })
        }
    })
}

/// Fails unless eps is finite and non-negative.
pub fn check_eps(op: &'static str, eps: f32) -> NormResult<()> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(NormError::BadEps { op, eps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_the_reference() {
        let p = RowsProblem::new(3, 5, 8);
        assert_eq!(p.input_len(), 2 * 8 + 5);
        assert_eq!(p.output_len(), 15);
        assert_eq!(p.input_len(), p.reference_rows().required_len());
        assert_eq!(RowsProblem::new(0, 5, 5).input_len(), 0);
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(RowsProblem::new(2, 5, 4).validate("softmax").is_err());
        assert!(RowsProblem::new(2, MAX_COLS + 1, MAX_COLS + 1).validate("softmax").is_err());
        assert!(RowsProblem::new(usize::MAX, 2, 2).validate("softmax").is_err());
        assert!(RowsProblem::new(3, 1, 7).validate("softmax").is_ok());
        assert!(RowsProblem::new(0, 0, 0).validate("softmax").is_ok());
        assert!(check_eps("layernorm", -1.0).is_err());
        assert!(check_eps("layernorm", f32::NAN).is_err());
        assert!(check_eps("layernorm", 0.0).is_ok());
    }
}
