//! The GEMM problem every crate shares: shape, storage and scalars, and their validation.
//!
//! `C = alpha * A * B + beta * C` with A of `m x k`, B of `k x n` and C of `m x n`, each
//! stored row- or column-major with its own leading dimension (BLAS conventions, see
//! [`Layout`]). Accumulation is in fp32. As in BLAS, `beta == 0` overwrites C without
//! reading it. One [`GemmSpec`] describes the same product to our kernels (`ckb_gemm`
//! takes it as `GemmProblem`), to cuBLAS and cuBLASLt ([`crate::baselines::Cublas`]) and to
//! the naive checker, so a case is built once and handed to each unchanged.
//!
//! Validation is pure, typed and GPU-free: [`GemmSpec::lens`] checks the problem,
//! [`GemmSpec::validate`] the buffers too. Its [`GemmShapeError`] converts into
//! [`GpuError`] for the baselines' results.

use crate::baselines::spec::Fp32Math;
use crate::error::GpuError;
use crate::layout::Layout;

/// Which matrix of the problem an error or a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operand {
    /// The `m x k` left operand.
    A,
    /// The `k x n` right operand.
    B,
    /// The `m x n` output (also read when `beta != 0`).
    C,
}

impl Operand {
    /// Every operand, in order.
    pub const ALL: [Operand; 3] = [Operand::A, Operand::B, Operand::C];

    /// "A", "B" or "C".
    pub const fn name(self) -> &'static str {
        match self {
            Operand::A => "A",
            Operand::B => "B",
            Operand::C => "C",
        }
    }
}

impl std::fmt::Display for Operand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a [`GemmSpec`] or its buffers cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemmShapeError {
    /// m, n or k is 0.
    #[error("GEMM dimensions must all be at least 1, got m={m} n={n} k={k}")]
    ZeroDimension {
        /// Rows of A and C.
        m: usize,
        /// Columns of B and C.
        n: usize,
        /// Columns of A, rows of B.
        k: usize,
    },
    /// m, n or k does not fit the 32-bit sizes every GEMM here (ours, cuBLAS) takes.
    #[error("{what} = {value} is too large: GEMM sizes must be below 2^31")]
    TooLarge {
        /// Which dimension: "m", "n" or "k".
        what: &'static str,
        /// Its value.
        value: usize,
    },
    /// A leading dimension is below what the operand's layout needs.
    #[error("{operand}: leading dimension {ld} is below {min}, the least a {rows}x{cols} {layout:?} matrix needs")]
    LeadingDimension {
        /// The operand.
        operand: Operand,
        /// Its leading dimension, in elements.
        ld: usize,
        /// The least its layout allows ([`Layout::min_ld`]).
        min: usize,
        /// Its rows.
        rows: usize,
        /// Its columns.
        cols: usize,
        /// Its storage order.
        layout: Layout,
    },
    /// An operand spans more elements than a signed 64-bit offset reaches.
    #[error("{operand}: spans {elements} elements, more than the 2^63 - 1 a 64-bit offset reaches")]
    SpanTooLarge {
        /// The operand.
        operand: Operand,
        /// Elements it spans, `(lines - 1) * ld + line length`.
        elements: u128,
    },
    /// A buffer holds fewer elements than its operand spans.
    #[error("{operand}: buffer holds {got} elements, the problem needs {needed}")]
    BufferTooSmall {
        /// The operand.
        operand: Operand,
        /// Elements it spans.
        needed: usize,
        /// Elements the buffer holds.
        got: usize,
    },
}

impl From<GemmShapeError> for GpuError {
    /// The baselines' form: [`GpuError::BufferTooSmall`] for a short buffer, else
    /// [`GpuError::InvalidShape`] naming the operand ("GEMM" for the dimensions).
    fn from(err: GemmShapeError) -> GpuError {
        let what = match err {
            GemmShapeError::BufferTooSmall { operand, needed, got } => {
                return GpuError::BufferTooSmall { what: operand.name(), needed, got }
            }
            GemmShapeError::ZeroDimension { .. } | GemmShapeError::TooLarge { .. } => "GEMM",
            GemmShapeError::LeadingDimension { operand, .. } | GemmShapeError::SpanTooLarge { operand, .. } => {
                operand.name()
            }
        };
        GpuError::InvalidShape { what, detail: err.to_string() }
    }
}

/// A GEMM's shape, storage and scalars: `C = alpha * A * B + beta * C` (see the module
/// docs). Build it with [`GemmSpec::new`] (or the layout shorthands) and adjust it with the
/// `with_*` methods; every launch validates it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmSpec {
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Storage order of A.
    pub a_layout: Layout,
    /// Leading dimension of A, in elements.
    pub lda: usize,
    /// Storage order of B.
    pub b_layout: Layout,
    /// Leading dimension of B, in elements.
    pub ldb: usize,
    /// Storage order of C.
    pub c_layout: Layout,
    /// Leading dimension of C, in elements.
    pub ldc: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the C read back; 0 does not read C.
    pub beta: f32,
    /// How f32 inputs are multiplied ([`Fp32Math::Tf32`] allows rounding them to TF32), by
    /// cuBLAS and by ckb-gemm (fp32 accuracy through 3xTF32, or one TF32 product). The
    /// float64 checker ignores it; the GEMM checks loosen their bound to TF32's under `Tf32`.
    pub fp32_math: Fp32Math,
}

/// Elements each GEMM operand's buffer must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmLens {
    /// Elements A spans.
    pub a: usize,
    /// Elements B spans.
    pub b: usize,
    /// Elements C spans.
    pub c: usize,
}

/// Every GEMM here takes m, n and k as 32-bit signed integers.
const MAX_DIM: usize = i32::MAX as usize;

impl GemmSpec {
    /// Densely packed operands (each leading dimension the least its layout allows),
    /// `alpha = 1`, `beta = 0`, IEEE fp32.
    pub fn new(m: usize, n: usize, k: usize, a_layout: Layout, b_layout: Layout, c_layout: Layout) -> GemmSpec {
        GemmSpec {
            m,
            n,
            k,
            a_layout,
            lda: a_layout.min_ld(m, k),
            b_layout,
            ldb: b_layout.min_ld(k, n),
            c_layout,
            ldc: c_layout.min_ld(m, n),
            alpha: 1.0,
            beta: 0.0,
            fp32_math: Fp32Math::Ieee,
        }
    }

    /// A row-major times B column-major into row-major C: a linear layer's `x * W^T`,
    /// the layout of the gates ("TN" in BLAS terms).
    pub fn row_col(m: usize, n: usize, k: usize) -> GemmSpec {
        GemmSpec::new(m, n, k, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor)
    }

    /// Everything row-major.
    pub fn row_major(m: usize, n: usize, k: usize) -> GemmSpec {
        GemmSpec::new(m, n, k, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor)
    }

    /// The same problem with these leading dimensions.
    pub fn with_leading_dims(self, lda: usize, ldb: usize, ldc: usize) -> GemmSpec {
        GemmSpec { lda, ldb, ldc, ..self }
    }

    /// The same problem with these scalars.
    pub fn with_scalars(self, alpha: f32, beta: f32) -> GemmSpec {
        GemmSpec { alpha, beta, ..self }
    }

    /// The same problem with this fp32 math mode.
    pub fn with_fp32_math(self, fp32_math: Fp32Math) -> GemmSpec {
        GemmSpec { fp32_math, ..self }
    }

    /// Floating-point operations of the product, `2 m n k`.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// "rc" for A row-major x B column-major, and so on.
    pub fn layout_letters(&self) -> String {
        format!("{}{}", self.a_layout.letter(), self.b_layout.letter())
    }

    /// `(rows, cols, layout, ld)` of `operand` as stored: A is `m x k`, B `k x n`, C `m x n`.
    pub fn shape_of(&self, operand: Operand) -> (usize, usize, Layout, usize) {
        match operand {
            Operand::A => (self.m, self.k, self.a_layout, self.lda),
            Operand::B => (self.k, self.n, self.b_layout, self.ldb),
            Operand::C => (self.m, self.n, self.c_layout, self.ldc),
        }
    }

    /// Elements a buffer for `operand` must hold: `(lines - 1) * ld + line length`. Fails
    /// on a leading dimension below the minimum or a span past `i64::MAX`.
    pub fn required_len(&self, operand: Operand) -> Result<usize, GemmShapeError> {
        let (rows, cols, layout, ld) = self.shape_of(operand);
        let min = layout.min_ld(rows, cols);
        if ld < min {
            return Err(GemmShapeError::LeadingDimension { operand, ld, min, rows, cols, layout });
        }
        let (lines, line_len) = match layout {
            Layout::RowMajor => (rows, cols),
            Layout::ColMajor => (cols, rows),
        };
        // Exact in u128 for any usize inputs.
        let elements = (lines.max(1) as u128 - 1) * ld as u128 + line_len as u128;
        if elements > i64::MAX as u128 {
            return Err(GemmShapeError::SpanTooLarge { operand, elements });
        }
        Ok(elements as usize)
    }

    /// Checks the dimensions (each in `1..2^31`) and every operand's leading dimension and
    /// span, and returns the elements each operand needs.
    pub fn lens(&self) -> Result<GemmLens, GemmShapeError> {
        let GemmSpec { m, n, k, .. } = *self;
        if m == 0 || n == 0 || k == 0 {
            return Err(GemmShapeError::ZeroDimension { m, n, k });
        }
        if let Some((what, value)) = [("m", m), ("n", n), ("k", k)].into_iter().find(|&(_, v)| v > MAX_DIM) {
            return Err(GemmShapeError::TooLarge { what, value });
        }
        Ok(GemmLens {
            a: self.required_len(Operand::A)?,
            b: self.required_len(Operand::B)?,
            c: self.required_len(Operand::C)?,
        })
    }

    /// [`GemmSpec::lens`], then checks that the buffers hold enough elements.
    pub fn validate(&self, len_a: usize, len_b: usize, len_c: usize) -> Result<GemmLens, GemmShapeError> {
        let lens = self.lens()?;
        for (operand, got, needed) in
            [(Operand::A, len_a, lens.a), (Operand::B, len_b, lens.b), (Operand::C, len_c, lens.c)]
        {
            if got < needed {
                return Err(GemmShapeError::BufferTooSmall { operand, needed, got });
            }
        }
        Ok(lens)
    }

    /// Checks that a buffer of `len` elements holds what `operand` needs.
    pub fn check_buffer(&self, operand: Operand, len: usize) -> Result<(), GemmShapeError> {
        let needed = self.required_len(operand)?;
        if len < needed {
            return Err(GemmShapeError::BufferTooSmall { operand, needed, got: len });
        }
        Ok(())
    }

    /// The largest dimension or leading dimension, for APIs that take 32-bit ints.
    pub fn largest_extent(&self) -> usize {
        [self.m, self.n, self.k, self.lda, self.ldb, self.ldc].into_iter().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_leading_dims_and_lengths() {
        let p = GemmSpec::new(3, 5, 7, Layout::RowMajor, Layout::ColMajor, Layout::ColMajor);
        assert_eq!((p.lda, p.ldb, p.ldc), (7, 7, 3));
        assert_eq!(p.lens().unwrap(), GemmLens { a: 21, b: 35, c: 15 });
    }

    #[test]
    fn padded_lengths_do_not_count_the_last_line_padding() {
        let p = GemmSpec::row_major(2, 3, 4).with_leading_dims(10, 8, 5);
        assert_eq!(p.lens().unwrap(), GemmLens { a: 10 + 4, b: 3 * 8 + 3, c: 5 + 3 });
    }
}
