//! Typed problems of this crate, their validation, and their errors.

use ckb_common::{bf16, f16, DType, Element, GpuError};

/// Everything that can go wrong in this crate: bad input, caught before any launch, or a
/// GPU failure.
#[derive(Debug, thiserror::Error)]
pub enum ReduceError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("{op}: {what} holds {got} elements, the problem needs {expected}")]
    LengthMismatch { op: &'static str, what: &'static str, expected: usize, got: usize },
    #[error("{op}: shape {shape:?} has {what}")]
    BadShape { op: &'static str, shape: Vec<usize>, what: &'static str },
    #[error("{op} of an empty input is undefined")]
    EmptyInput { op: &'static str },
}

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

/// Fails unless a buffer holds exactly `expected` elements.
pub(crate) fn require_exact_len(op: &'static str, what: &'static str, expected: usize, got: usize) -> ReduceResult<()> {
    if got == expected {
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
    pub m: usize,
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
    fn bias_add_overflow_is_a_typed_error() {
        assert!(matches!(BiasAddProblem { m: usize::MAX, n: 2 }.validate(), Err(ReduceError::BadShape { .. })));
        assert_eq!(BiasAddProblem { m: 3, n: 5 }.validate().unwrap(), 15);
    }
}
