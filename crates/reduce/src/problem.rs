//! Typed problems of this crate, their validation, and their errors.

use ckb_common::{bf16, f16, DType, Element, GpuError};

/// Everything that can go wrong in this crate: bad input, caught before any launch, or a
/// GPU failure.
#[derive(Debug, thiserror::Error)]
pub enum ReduceError {
    /// A GPU failure: a driver call, an allocation or a launch.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A buffer holds fewer elements than the problem reads or writes.
    #[error("{op}: {what} holds {got} elements, the problem needs at least {expected}")]
    LengthMismatch {
        /// The operation (`sum`, `add`, ...).
        op: &'static str,
        /// The buffer (`x`, `out`, ...).
        what: &'static str,
        /// Elements the problem needs.
        expected: usize,
        /// Elements the buffer holds.
        got: usize,
    },
    /// The shape cannot be run: a rank other than 1 to 3, no such axis, or more elements
    /// than a 64-bit index can address.
    #[error("{op}: shape {shape:?} has {what}")]
    BadShape {
        /// The operation.
        op: &'static str,
        /// The shape as given.
        shape: Vec<usize>,
        /// What is wrong with it.
        what: &'static str,
    },
    /// Max, min, argmax or argmin of an empty input (or along an empty axis): no value.
    #[error("{op} of an empty input is undefined")]
    EmptyInput {
        /// The operation.
        op: &'static str,
    },
    /// A forced variant cannot run the problem: a row variant on a strided axis, or the
    /// column variant on rows.
    #[error("variant {variant} cannot run {what}")]
    VariantMismatch {
        /// The variant's name.
        variant: &'static str,
        /// What it cannot run.
        what: &'static str,
    },
    /// The float64 reference refused the problem (an empty max, an axis out of range), in a check.
    #[error(transparent)]
    Reference(#[from] crate::reference::ReduceError),
}

impl From<ReduceError> for GpuError {
    /// GPU errors pass through; the crate's own errors keep their message.
    fn from(e: ReduceError) -> GpuError {
        match e {
            ReduceError::Gpu(g) => g,
            other => GpuError::Operator { operator: "ckb-reduce", detail: other.to_string() },
        }
    }
}

/// A result whose error is a [`ReduceError`].
pub type ReduceResult<T> = Result<T, ReduceError>;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for super::f16 {}
    impl Sealed for super::bf16 {}
}

/// The element types the streaming kernels are compiled for: f32, f16 and bf16.
pub trait EwElement: Element + sealed::Sealed {}
impl EwElement for f32 {}
impl EwElement for f16 {}
impl EwElement for bf16 {}

/// The type a reduction writes for input `T`: `T` itself or f32.
pub trait ReduceOutput<T: EwElement>: EwElement {}
impl<T: EwElement> ReduceOutput<T> for T {}
impl ReduceOutput<f16> for f32 {}
impl ReduceOutput<bf16> for f32 {}

/// Reductions to one value per output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// The sum; 0 for an empty input.
    Sum,
    /// NaN for an empty input.
    Mean,
    /// The largest element; NaN when any is NaN.
    Max,
    /// The smallest element; NaN when any is NaN.
    Min,
    /// The sum of the squares; 0 for an empty input.
    SumOfSquares,
    /// The square root of the sum of the squares; 0 for an empty input.
    L2Norm,
}

impl ReduceOp {
    /// Every reduction, in declaration order.
    pub const ALL: [ReduceOp; 6] =
        [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::SumOfSquares, ReduceOp::L2Norm];

    /// The op's name in errors, kernel names and records (`sum_of_squares`).
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::SumOfSquares => "sum_of_squares",
            ReduceOp::L2Norm => "l2_norm",
        }
    }

    /// What an empty input (or an empty axis) gives: a value, or None when undefined.
    pub fn empty_value(self) -> Option<f64> {
        match self {
            ReduceOp::Sum | ReduceOp::SumOfSquares | ReduceOp::L2Norm => Some(0.0),
            ReduceOp::Mean => Some(f64::NAN),
            ReduceOp::Max | ReduceOp::Min => None,
        }
    }
}

/// Reductions to the first index of an extreme value (and that value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgOp {
    /// The first index of the largest value, or of the first NaN.
    ArgMax,
    /// The first index of the smallest value, or of the first NaN.
    ArgMin,
}

impl ArgOp {
    /// Both, argmax first.
    pub const ALL: [ArgOp; 2] = [ArgOp::ArgMax, ArgOp::ArgMin];

    /// The op's name in errors and records (`argmax`).
    pub fn name(self) -> &'static str {
        match self {
            ArgOp::ArgMax => "argmax",
            ArgOp::ArgMin => "argmin",
        }
    }
}

/// A reduction as the kernels see it: out[o, i] = reduce over k < len of x[o, k, i], for a
/// contiguous row-major tensor. `inner == 1` is a row reduction (a full reduction is one row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisProblem {
    /// Product of the dimensions before the axis.
    pub outer: usize,
    /// Length of the reduced axis.
    pub len: usize,
    /// Product of the dimensions after the axis: the axis's stride, in elements.
    pub inner: usize,
}

impl AxisProblem {
    /// The whole tensor as one row.
    pub fn full(n: usize) -> AxisProblem {
        AxisProblem { outer: 1, len: n, inner: 1 }
    }

    /// Reduction of `axis` of a contiguous row-major tensor of rank 1 to 3.
    pub fn along(op: &'static str, shape: &[usize], axis: usize) -> ReduceResult<AxisProblem> {
        let bad = |what| ReduceError::BadShape { op, shape: shape.to_vec(), what };
        if !(1..=3).contains(&shape.len()) {
            return Err(bad("a rank other than 1, 2 or 3"));
        }
        if axis >= shape.len() {
            return Err(bad("no such axis"));
        }
        let product = |dims: &[usize]| dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let total = product(shape).filter(|&t| t <= i64::MAX as usize);
        let (Some(_), Some(outer), Some(inner)) = (total, product(&shape[..axis]), product(&shape[axis + 1..])) else {
            return Err(bad("more elements than a 64-bit index can address"));
        };
        Ok(AxisProblem { outer, len: shape[axis], inner })
    }

    /// Input elements, `outer * len * inner`.
    pub fn elements(&self) -> usize {
        self.outer * self.len * self.inner
    }

    /// Results written, `outer * inner`.
    pub fn outputs(&self) -> usize {
        self.outer * self.inner
    }
}

/// Fails unless a buffer holds at least `expected` elements (the rule of every crate:
/// elements past the problem's are neither read nor written).
pub(crate) fn require_len(op: &'static str, what: &'static str, expected: usize, got: usize) -> ReduceResult<()> {
    if got >= expected {
        Ok(())
    } else {
        Err(ReduceError::LengthMismatch { op, what, expected, got })
    }
}

/// Bytes per 16-byte access.
pub(crate) const VECTOR_BYTES: usize = 16;

/// Elements per pack for operands of the given types: 16 bytes of the narrowest one.
/// Mirrors `pack_elems` in kernels/streaming.cuh.
pub(crate) fn pack_elems(dtypes: &[DType]) -> usize {
    VECTOR_BYTES / dtypes.iter().map(|d| d.size_bytes()).min().expect("at least one operand")
}

/// How many leading elements take the scalar path so that every operand then starts on a
/// 16-byte boundary at the same element index. Operands are (device address, element size).
/// Each operand's alignment repeats every 16 / size elements, which divides the pack, so
/// searching one pack is complete; when no index in it works (operands misaligned by
/// different amounts) the answer is `n`: everything takes the scalar path. Never above `n`.
pub(crate) fn aligned_head(operands: &[(u64, usize)], pack: usize, n: usize) -> usize {
    (0..pack)
        .find(|&h| operands.iter().all(|&(addr, size)| (addr + (h * size) as u64).is_multiple_of(VECTOR_BYTES as u64)))
        .map_or(n, |h| h.min(n))
}

/// An m x n row-major matrix plus a length-n row vector broadcast over its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BiasAddProblem {
    /// Rows of the matrix.
    pub m: usize,
    /// Columns of the matrix, and the bias's length.
    pub n: usize,
}

impl BiasAddProblem {
    /// Element count of the matrix; fails when m * n overflows.
    pub fn validate(&self) -> ReduceResult<usize> {
        self.m.checked_mul(self.n).filter(|&len| len <= i64::MAX as usize).ok_or(ReduceError::BadShape {
            op: "bias_add",
            shape: vec![self.m, self.n],
            what: "more elements than a 64-bit index can address",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_reaches_a_common_boundary() {
        // f32 operands 4 bytes past a boundary: 3 scalar elements, then aligned.
        assert_eq!(aligned_head(&[(0x1004, 4), (0x2004, 4), (0x3004, 4)], 4, 100), 3);
        // Already aligned.
        assert_eq!(aligned_head(&[(0x1000, 2), (0x2000, 2)], 8, 100), 0);
        // Different misalignments: no common point, all scalar.
        assert_eq!(aligned_head(&[(0x1004, 4), (0x2008, 4)], 4, 100), 100);
        // Never beyond n.
        assert_eq!(aligned_head(&[(0x1002, 2), (0x2002, 2)], 8, 3), 3);
        // Mixed sizes (f32 -> bf16 cast, pack 8): f32 at +8 bytes needs h = 2 mod 4, bf16 at
        // +12 bytes needs h = 2 mod 8 -> 2; bf16 at +4 bytes needs h = 6 mod 8 -> 6.
        assert_eq!(aligned_head(&[(0x1008, 4), (0x200C, 2)], 8, 100), 2);
        assert_eq!(aligned_head(&[(0x1008, 4), (0x2004, 2)], 8, 100), 6);
        // f32 at +8, bf16 at +2: f32 needs h = 2 mod 4, bf16 needs h = 7 mod 8: none.
        assert_eq!(aligned_head(&[(0x1008, 4), (0x2002, 2)], 8, 100), 100);
    }

    #[test]
    fn pack_is_sixteen_bytes_of_the_narrowest() {
        assert_eq!(pack_elems(&[DType::F32, DType::F32]), 4);
        assert_eq!(pack_elems(&[DType::F32, DType::BF16]), 8);
        assert_eq!(pack_elems(&[DType::F16]), 8);
    }

    #[test]
    fn axis_problems_split_the_shape() {
        assert_eq!(AxisProblem::along("sum", &[4, 5, 6], 1).unwrap(), AxisProblem { outer: 4, len: 5, inner: 6 });
        assert_eq!(AxisProblem::along("sum", &[4, 5], 1).unwrap(), AxisProblem { outer: 4, len: 5, inner: 1 });
        assert_eq!(AxisProblem::along("sum", &[4, 5], 0).unwrap(), AxisProblem { outer: 1, len: 4, inner: 5 });
        assert_eq!(AxisProblem::along("sum", &[7], 0).unwrap(), AxisProblem::full(7));
        for (shape, axis) in
            [(&[2usize, 3][..], 2usize), (&[][..], 0), (&[1, 2, 3, 4][..], 0), (&[usize::MAX, 3][..], 0)]
        {
            assert!(
                matches!(AxisProblem::along("sum", shape, axis), Err(ReduceError::BadShape { .. })),
                "{shape:?} axis {axis}"
            );
        }
    }

    #[test]
    fn bias_add_overflow_is_a_typed_error() {
        assert!(matches!(BiasAddProblem { m: usize::MAX, n: 2 }.validate(), Err(ReduceError::BadShape { .. })));
        assert_eq!(BiasAddProblem { m: 3, n: 5 }.validate().unwrap(), 15);
    }
}
