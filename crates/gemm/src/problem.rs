//! The typed GEMM problem, its validation and its errors.
//!
//! `C = alpha * A * B + beta * C` with `A` of `m x k`, `B` of `k x n` and `C` of `m x n`, each
//! stored row- or column-major with its own leading dimension (BLAS conventions, as in
//! [`crate::reference`]). `beta == 0` overwrites C without reading it.

use ckb_common::baselines::GemmSpec;
use ckb_common::{DType, GpuError, Layout};

/// Which matrix of the problem an error or a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operand {
    A,
    B,
    C,
}

impl std::fmt::Display for Operand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operand::A => "A",
            Operand::B => "B",
            Operand::C => "C",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GemmError {
    #[error("GEMM dimensions must all be at least 1, got m={m} n={n} k={k}")]
    ZeroDimension { m: usize, n: usize, k: usize },
    #[error("{what} = {value} is too large: kernels take sizes below 2^31 and offsets below 2^63")]
    TooLarge { what: &'static str, value: u128 },
    #[error("{operand}: leading dimension {ld} is below {min}, the least a {rows}x{cols} {layout:?} matrix needs")]
    LeadingDimension { operand: Operand, ld: usize, min: usize, rows: usize, cols: usize, layout: Layout },
    #[error("{operand}: buffer holds {got} elements, the problem needs {needed}")]
    BufferTooSmall { operand: Operand, needed: usize, got: usize },
    #[error(
        "no GEMM kernel takes {input} inputs with {output} output (inputs: f32, f16, bf16; outputs: f32, f16, bf16)"
    )]
    UnsupportedTypes { input: DType, output: DType },
    #[error("no GEMM variant is named {0:?} (see ckb_gemm::variants())")]
    UnknownVariant(String),
    #[error("variant {variant} cannot run this problem: {reason}")]
    VariantCannotRun { variant: &'static str, reason: String },
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

impl From<GemmError> for GpuError {
    /// GPU errors pass through; the crate's own errors keep their message.
    fn from(e: GemmError) -> GpuError {
        match e {
            GemmError::Gpu(g) => g,
            other => GpuError::Operator { operator: "ckb-gemm", detail: other.to_string() },
        }
    }
}

/// A GEMM's shape, storage and scalars. Build it with [`GemmProblem::packed`] (or the
/// layout shorthands) and adjust with the `with_*` methods; [`GemmProblem::validate`] is
/// called by every launch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmProblem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_layout: Layout,
    pub b_layout: Layout,
    pub c_layout: Layout,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// Kernels take sizes as 32-bit signed integers.
const MAX_DIM: usize = i32::MAX as usize;

impl GemmProblem {
    /// Densely packed operands (each leading dimension the least its layout allows),
    /// `alpha = 1`, `beta = 0`.
    pub fn packed(m: usize, n: usize, k: usize, a_layout: Layout, b_layout: Layout, c_layout: Layout) -> Self {
        GemmProblem {
            m,
            n,
            k,
            a_layout,
            b_layout,
            c_layout,
            lda: a_layout.min_ld(m, k),
            ldb: b_layout.min_ld(k, n),
            ldc: c_layout.min_ld(m, n),
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// A row-major times B column-major into row-major C: a linear layer's `x * W^T`,
    /// the layout of the gates ("TN" in BLAS terms).
    pub fn row_col(m: usize, n: usize, k: usize) -> Self {
        Self::packed(m, n, k, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor)
    }

    /// Everything row-major.
    pub fn row_major(m: usize, n: usize, k: usize) -> Self {
        Self::packed(m, n, k, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor)
    }

    pub fn with_scalars(self, alpha: f32, beta: f32) -> Self {
        GemmProblem { alpha, beta, ..self }
    }

    pub fn with_leading_dims(self, lda: usize, ldb: usize, ldc: usize) -> Self {
        GemmProblem { lda, ldb, ldc, ..self }
    }

    /// Rows and columns of each operand as stored: A is `m x k`, B `k x n`, C `m x n`.
    pub fn shape_of(&self, operand: Operand) -> (usize, usize, Layout, usize) {
        match operand {
            Operand::A => (self.m, self.k, self.a_layout, self.lda),
            Operand::B => (self.k, self.n, self.b_layout, self.ldb),
            Operand::C => (self.m, self.n, self.c_layout, self.ldc),
        }
    }

    /// Elements a buffer for `operand` must hold.
    pub fn required_len(&self, operand: Operand) -> Result<usize, GemmError> {
        let (rows, cols, layout, ld) = self.shape_of(operand);
        let (lines, line_len) = match layout {
            Layout::RowMajor => (rows, cols),
            Layout::ColMajor => (cols, rows),
        };
        // (lines - 1) * ld + line_len, computed without overflow.
        let needed = (lines.max(1) as u128 - 1) * ld as u128 + line_len as u128;
        if needed > i64::MAX as u128 {
            return Err(GemmError::TooLarge { what: "elements spanned by an operand", value: needed });
        }
        Ok(needed as usize)
    }

    /// Checks the dimensions, leading dimensions and that every offset fits in an i64.
    pub fn validate(&self) -> Result<(), GemmError> {
        let GemmProblem { m, n, k, .. } = *self;
        if m == 0 || n == 0 || k == 0 {
            return Err(GemmError::ZeroDimension { m, n, k });
        }
        for (what, value) in [("m", m), ("n", n), ("k", k)] {
            if value > MAX_DIM {
                return Err(GemmError::TooLarge { what, value: value as u128 });
            }
        }
        for (what, a, b) in [("m * k", m, k), ("k * n", k, n), ("m * n", m, n)] {
            let product = a as u128 * b as u128;
            if product > i64::MAX as u128 {
                return Err(GemmError::TooLarge { what, value: product });
            }
        }
        for operand in [Operand::A, Operand::B, Operand::C] {
            let (rows, cols, layout, ld) = self.shape_of(operand);
            let min = layout.min_ld(rows, cols);
            if ld < min {
                return Err(GemmError::LeadingDimension { operand, ld, min, rows, cols, layout });
            }
            self.required_len(operand)?;
        }
        Ok(())
    }

    /// Checks a buffer of `len` elements against what `operand` needs.
    pub fn check_buffer(&self, operand: Operand, len: usize) -> Result<(), GemmError> {
        let needed = self.required_len(operand)?;
        if len < needed {
            return Err(GemmError::BufferTooSmall { operand, needed, got: len });
        }
        Ok(())
    }

    /// Validates the problem and the lengths of all three buffers.
    pub fn check_buffers(&self, a_len: usize, b_len: usize, c_len: usize) -> Result<(), GemmError> {
        self.validate()?;
        self.check_buffer(Operand::A, a_len)?;
        self.check_buffer(Operand::B, b_len)?;
        self.check_buffer(Operand::C, c_len)
    }

    /// Floating-point operations of the product, `2 m n k`.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// The same GEMM for the vendor baselines (cuBLAS, the naive CUDA GEMM).
    pub fn spec(&self) -> GemmSpec {
        GemmSpec::new(self.m, self.n, self.k, self.a_layout, self.b_layout, self.c_layout)
            .with_leading_dims(self.lda, self.ldb, self.ldc)
            .with_scalars(self.alpha, self.beta)
    }

    /// "rc" for A row-major x B column-major, and so on.
    pub fn layout_letters(&self) -> String {
        format!("{}{}", self.a_layout.letter(), self.b_layout.letter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_leading_dims() {
        let p = GemmProblem::packed(3, 5, 7, Layout::RowMajor, Layout::ColMajor, Layout::ColMajor);
        assert_eq!((p.lda, p.ldb, p.ldc), (7, 7, 3));
        assert_eq!(p.required_len(Operand::A).unwrap(), 21);
        assert_eq!(p.required_len(Operand::B).unwrap(), 35);
        assert_eq!(p.required_len(Operand::C).unwrap(), 15);
        p.validate().unwrap();
    }

    #[test]
    fn padded_lengths_do_not_count_the_last_line_padding() {
        let p = GemmProblem::row_major(2, 3, 4).with_leading_dims(10, 8, 5);
        assert_eq!(p.required_len(Operand::A).unwrap(), 10 + 4);
        assert_eq!(p.required_len(Operand::B).unwrap(), 3 * 8 + 3);
        assert_eq!(p.required_len(Operand::C).unwrap(), 5 + 3);
    }
}
