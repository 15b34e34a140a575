//! CPU references, in float64, for the reductions and the element-wise family.
//!
//! # Reductions
//! Over a whole contiguous slice ([`reduce`], [`arg_reduce`] and their shorthands), or along
//! one axis of a 1-, 2- or 3-D [`StridedView`] ([`reduce_axis`], [`arg_reduce_axis`]).
//!
//! Conventions, the ones the GPU kernels must meet:
//! - **Empty input:** sum and sum of squares give 0, the L2 norm 0, the mean NaN; max, min,
//!   argmax and argmin give [`ReduceError::Empty`].
//! - **NaN propagates:** any NaN makes sum, mean, sum of squares, L2 norm, max and min NaN,
//!   and argmax/argmin return the index of the *first* NaN (with value NaN).
//! - **Ties:** argmax/argmin return the first index holding the extreme value; `-0.0` and
//!   `0.0` count as equal.
//! - **Infinities** follow IEEE arithmetic: `inf + -inf` is NaN, max of `[-inf]` is `-inf`.
//! - **Order of summation** is fixed (chunks of [`CHUNK`] summed in order), so results are
//!   bitwise reproducible.
//! - Squares are formed in f64 without scaling, fine for any f32/f16/bf16 input.

pub use crate::problem::{ArgOp, ReduceOp};
use rayon::prelude::*;
use thiserror::Error;

/// Elements one rayon task folds before its partial is combined with the others.
pub const CHUNK: usize = 1 << 14;

/// Why a reduction has no result.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReduceError {
    /// Max, min, argmax or argmin of an empty input, or along an axis of length 0.
    #[error("{0:?} of an empty input is undefined")]
    Empty(Reduction),
    /// The axis is not below the view's rank.
    #[error("axis {axis} is out of range for a {rank}-D tensor")]
    AxisOutOfRange {
        /// The axis asked for.
        axis: usize,
        /// The view's rank.
        rank: usize,
    },
    /// A view of a rank other than 1 to 3; holds the rank.
    #[error("views of rank {0} are not supported (1 to 3)")]
    UnsupportedRank(usize),
    /// The shape and the strides have different lengths.
    #[error("shape has {shape} dimensions but strides have {strides}")]
    RankMismatch {
        /// Entries in the shape.
        shape: usize,
        /// Entries in the strides.
        strides: usize,
    },
    /// The view reaches past the end of its buffer.
    #[error("the view reaches element {last} but the buffer holds {len}")]
    OutOfBounds {
        /// Offset of the view's last element (`usize::MAX` when it overflows).
        last: usize,
        /// Elements the buffer holds.
        len: usize,
    },
}

/// Any reduction, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// A reduction to one value.
    Value(ReduceOp),
    /// A reduction to an index and its value.
    Arg(ArgOp),
}

impl ReduceOp {
    fn identity(self) -> f64 {
        match self {
            Self::Max => f64::NEG_INFINITY,
            Self::Min => f64::INFINITY,
            Self::Sum | Self::Mean | Self::SumOfSquares | Self::L2Norm => 0.0,
        }
    }

    /// What one element contributes.
    fn lift(self, x: f64) -> f64 {
        match self {
            Self::SumOfSquares | Self::L2Norm => x * x,
            _ => x,
        }
    }

    /// Combines two partial results; NaN wins for max and min, unlike `f64::max`.
    fn merge(self, a: f64, b: f64) -> f64 {
        match self {
            Self::Sum | Self::Mean | Self::SumOfSquares | Self::L2Norm => a + b,
            _ if a.is_nan() || b.is_nan() => f64::NAN,
            Self::Max => a.max(b),
            Self::Min => a.min(b),
        }
    }

    fn finish(self, total: f64, count: usize) -> Result<f64, ReduceError> {
        match self {
            Self::Max | Self::Min if count == 0 => Err(ReduceError::Empty(Reduction::Value(self))),
            Self::Mean => Ok(total / count as f64),
            Self::L2Norm => Ok(total.sqrt()),
            _ => Ok(total),
        }
    }

    fn fold(self, values: impl Iterator<Item = f64>) -> f64 {
        values.fold(self.identity(), |acc, x| self.merge(acc, self.lift(x)))
    }
}

/// An element picked by [`ArgOp`]: its index (along the reduced axis for axis reductions) and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extremum {
    /// Into the slice for a whole-slice reduction, along the axis for an axis reduction.
    pub index: usize,
    /// The element's value.
    pub value: f64,
}

impl ArgOp {
    /// The better of two candidates, `earlier` coming first in the input: the first NaN
    /// wins, then the strictly greater (smaller) value, and the earlier one on ties.
    fn pick(self, earlier: Extremum, later: Extremum) -> Extremum {
        let later_wins = !earlier.value.is_nan()
            && (later.value.is_nan()
                || match self {
                    Self::ArgMax => later.value > earlier.value,
                    Self::ArgMin => later.value < earlier.value,
                });
        if later_wins {
            later
        } else {
            earlier
        }
    }

    fn fold(self, values: impl Iterator<Item = (usize, f64)>) -> Option<Extremum> {
        values.map(|(index, value)| Extremum { index, value }).reduce(|best, next| self.pick(best, next))
    }
}

/// `op` over the whole slice.
pub fn reduce(op: ReduceOp, x: &[f64]) -> Result<f64, ReduceError> {
    let partials: Vec<f64> = x.par_chunks(CHUNK).map(|chunk| op.fold(chunk.iter().copied())).collect();
    let total = partials.into_iter().fold(op.identity(), |a, b| op.merge(a, b));
    op.finish(total, x.len())
}

/// `op` over the whole slice; the index is into `x`.
pub fn arg_reduce(op: ArgOp, x: &[f64]) -> Result<Extremum, ReduceError> {
    let partials: Vec<Option<Extremum>> = x
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(chunk_index, chunk)| op.fold(chunk.iter().enumerate().map(|(i, &v)| (chunk_index * CHUNK + i, v))))
        .collect();
    partials.into_iter().flatten().reduce(|a, b| op.pick(a, b)).ok_or(ReduceError::Empty(Reduction::Arg(op)))
}

/// The sum; 0 for empty input.
pub fn sum(x: &[f64]) -> f64 {
    reduce(ReduceOp::Sum, x).expect("sum is defined on empty input")
}

/// NaN for empty input.
pub fn mean(x: &[f64]) -> f64 {
    reduce(ReduceOp::Mean, x).expect("mean is defined on empty input")
}

/// The largest element (NaN when any is NaN); [`ReduceError::Empty`] for empty input.
pub fn max(x: &[f64]) -> Result<f64, ReduceError> {
    reduce(ReduceOp::Max, x)
}

/// The smallest element (NaN when any is NaN); [`ReduceError::Empty`] for empty input.
pub fn min(x: &[f64]) -> Result<f64, ReduceError> {
    reduce(ReduceOp::Min, x)
}

/// The sum of the squares; 0 for empty input.
pub fn sum_of_squares(x: &[f64]) -> f64 {
    reduce(ReduceOp::SumOfSquares, x).expect("sum of squares is defined on empty input")
}

/// The square root of the sum of the squares; 0 for empty input.
pub fn l2_norm(x: &[f64]) -> f64 {
    reduce(ReduceOp::L2Norm, x).expect("L2 norm is defined on empty input")
}

/// The largest element at its first index, or the first NaN; [`ReduceError::Empty`] for empty input.
pub fn argmax(x: &[f64]) -> Result<Extremum, ReduceError> {
    arg_reduce(ArgOp::ArgMax, x)
}

/// The smallest element at its first index, or the first NaN; [`ReduceError::Empty`] for empty input.
pub fn argmin(x: &[f64]) -> Result<Extremum, ReduceError> {
    arg_reduce(ArgOp::ArgMin, x)
}

/// A 1-, 2- or 3-D tensor over a buffer: element `(i0, i1, i2)` sits at
/// `i0 * strides[0] + i1 * strides[1] + i2 * strides[2]`. Strides count elements and may be
/// anything that stays inside the buffer (rows with padding, columns, transposes).
#[derive(Debug, Clone)]
pub struct StridedView<'a> {
    data: &'a [f64],
    shape: Vec<usize>,
    strides: Vec<usize>,
}

impl<'a> StridedView<'a> {
    /// `data` seen with `shape` and `strides`. Fails on a rank other than 1 to 3, a shape and
    /// strides of different lengths, or a last element past the buffer (a view with a zero
    /// dimension holds nothing and always fits).
    pub fn new(data: &'a [f64], shape: &[usize], strides: &[usize]) -> Result<Self, ReduceError> {
        if shape.len() != strides.len() {
            return Err(ReduceError::RankMismatch { shape: shape.len(), strides: strides.len() });
        }
        if !(1..=3).contains(&shape.len()) {
            return Err(ReduceError::UnsupportedRank(shape.len()));
        }
        if !shape.contains(&0) {
            let last = shape
                .iter()
                .zip(strides)
                .try_fold(0usize, |acc, (&size, &stride)| (size - 1).checked_mul(stride)?.checked_add(acc))
                .unwrap_or(usize::MAX);
            if last >= data.len() {
                return Err(ReduceError::OutOfBounds { last, len: data.len() });
            }
        }
        Ok(Self { data, shape: shape.to_vec(), strides: strides.to_vec() })
    }

    /// A densely packed row-major tensor (last axis contiguous).
    pub fn contiguous(data: &'a [f64], shape: &[usize]) -> Result<Self, ReduceError> {
        let mut strides = vec![1; shape.len()];
        for axis in (0..shape.len().saturating_sub(1)).rev() {
            strides[axis] = strides[axis + 1] * shape[axis + 1];
        }
        Self::new(data, shape, &strides)
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Each dimension's stride, in elements.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The shape left after reducing `axis`: the other dimensions in order.
    pub fn reduced_shape(&self, axis: usize) -> Vec<usize> {
        self.shape.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &size)| size).collect()
    }

    /// For each output of a reduction along `axis`, in row-major order of
    /// [`Self::reduced_shape`], the offset of its first element; plus the axis length and stride.
    fn lanes(&self, axis: usize) -> Result<(Vec<usize>, usize, usize), ReduceError> {
        if axis >= self.shape.len() {
            return Err(ReduceError::AxisOutOfRange { axis, rank: self.shape.len() });
        }
        let mut starts = vec![0usize];
        for other in (0..self.shape.len()).filter(|&a| a != axis) {
            starts = starts
                .iter()
                .flat_map(|&start| (0..self.shape[other]).map(move |i| start + i * self.strides[other]))
                .collect();
        }
        Ok((starts, self.shape[axis], self.strides[axis]))
    }

    fn lane(&self, start: usize, len: usize, stride: usize) -> impl Iterator<Item = f64> + '_ {
        (0..len).map(move |i| self.data[start + i * stride])
    }
}

/// `op` along `axis`; the result has [`StridedView::reduced_shape`], row-major. Max and min
/// fail with [`ReduceError::Empty`] when the axis has length 0, even if the result is empty.
pub fn reduce_axis(op: ReduceOp, view: &StridedView, axis: usize) -> Result<Vec<f64>, ReduceError> {
    let (starts, len, stride) = view.lanes(axis)?;
    op.finish(op.identity(), len)?;
    starts.par_iter().map(|&start| op.finish(op.fold(view.lane(start, len, stride)), len)).collect()
}

/// `op` along `axis`; indices count along the axis. Fails with [`ReduceError::Empty`] when
/// the axis has length 0, even if the result is empty.
pub fn arg_reduce_axis(op: ArgOp, view: &StridedView, axis: usize) -> Result<Vec<Extremum>, ReduceError> {
    let (starts, len, stride) = view.lanes(axis)?;
    let empty = ReduceError::Empty(Reduction::Arg(op));
    if len == 0 {
        return Err(empty);
    }
    starts.par_iter().map(|&start| op.fold(view.lane(start, len, stride).enumerate()).ok_or(empty.clone())).collect()
}

// Element-wise family. Inputs of one call must have equal lengths (the functions panic
// otherwise); outputs are fresh contiguous vectors unless the operation is in place.

fn zip_map(what: &str, x: &[f64], y: &[f64], f: impl Fn(f64, f64) -> f64 + Sync) -> Vec<f64> {
    assert_eq!(x.len(), y.len(), "{what}: operand lengths differ");
    x.par_iter().zip(y).map(|(&a, &b)| f(a, b)).collect()
}

/// `x + y`
pub fn add(x: &[f64], y: &[f64]) -> Vec<f64> {
    zip_map("add", x, y, |a, b| a + b)
}

/// `x - y`
pub fn sub(x: &[f64], y: &[f64]) -> Vec<f64> {
    zip_map("sub", x, y, |a, b| a - b)
}

/// `x * y`, element by element.
pub fn mul(x: &[f64], y: &[f64]) -> Vec<f64> {
    zip_map("mul", x, y, |a, b| a * b)
}

/// `max(x + y, 0)`. NaN propagates (as in PyTorch's ReLU), so a kernel must not use a
/// comparison that turns NaN into 0.
pub fn add_relu(x: &[f64], y: &[f64]) -> Vec<f64> {
    zip_map("add_relu", x, y, |a, b| relu(a + b))
}

fn relu(v: f64) -> f64 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// `y = alpha * x + y`, in place.
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    assert_eq!(x.len(), y.len(), "axpy: operand lengths differ");
    y.par_iter_mut().zip(x).for_each(|(y, &x)| *y += alpha * x);
}

/// `alpha * x`
pub fn scale(alpha: f64, x: &[f64]) -> Vec<f64> {
    x.par_iter().map(|&v| alpha * v).collect()
}

/// `out[i][j] = x[i][j] + bias[j]` for a row-major `rows x cols` matrix `x` whose rows start
/// `row_stride` elements apart; the output is densely packed.
pub fn bias_add(x: &[f64], rows: usize, cols: usize, row_stride: usize, bias: &[f64]) -> Vec<f64> {
    assert_eq!(bias.len(), cols, "bias_add: bias length differs from the column count");
    assert!(row_stride >= cols, "bias_add: row stride {row_stride} is below the column count {cols}");
    let needed = if rows == 0 { 0 } else { (rows - 1) * row_stride + cols };
    assert!(x.len() >= needed, "bias_add: buffer holds {} elements, the matrix needs {needed}", x.len());
    let mut out = vec![0.0; rows * cols];
    if cols > 0 {
        out.par_chunks_mut(cols).enumerate().for_each(|(i, row)| {
            for ((out, &v), &b) in row.iter_mut().zip(&x[i * row_stride..]).zip(bias) {
                *out = v + b;
            }
        });
    }
    out
}

/// A storage type the kernels read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloatType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16: f32's exponent, 8 significant bits.
    BF16,
}

impl FloatType {
    /// Every storage type.
    pub const ALL: [FloatType; 3] = [Self::F32, Self::F16, Self::BF16];

    /// `x` rounded to the nearest value of this type, ties to even, as a GPU conversion does:
    /// too large becomes ±inf, too small becomes a subnormal or ±0, NaN stays NaN.
    ///
    /// The value goes through f32 first. That rounds once for inputs that are already f32,
    /// f16 or bf16 values (all exact in f32), which is what a cast kernel receives; an
    /// arbitrary f64 may round twice.
    pub fn round(self, x: f64) -> f64 {
        let single = x as f32;
        match self {
            Self::F32 => f64::from(single),
            Self::F16 => half::f16::from_f32(single).to_f64(),
            Self::BF16 => half::bf16::from_f32(single).to_f64(),
        }
    }
}

/// Each element of `x` after conversion to `to` (see [`FloatType::round`]). A cast between
/// two storage types is `cast(x, to)` with `x` holding values of the source type.
pub fn cast(x: &[f64], to: FloatType) -> Vec<f64> {
    x.par_iter().map(|&v| to.round(v)).collect()
}
