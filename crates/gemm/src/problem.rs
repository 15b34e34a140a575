//! The typed GEMM problem and the GEMM errors.
//!
//! The problem is the one GEMM type of the workspace, [`ckb_common::gemm::GemmSpec`]:
//! `C = alpha * A * B + beta * C` with `A` of `m x k`, `B` of `k x n` and `C` of `m x n`,
//! each stored row- or column-major with its own leading dimension (BLAS conventions, as in
//! [`crate::reference`]). `beta == 0` overwrites C without reading it. The cuBLAS baseline
//! takes the same type, so a problem goes to both unchanged. Its validation (dimensions in
//! `1..2^31`, leading dimensions, spans below 2^63 elements, buffer lengths) lives there too
//! and fails with a [`GemmShapeError`]; what a kernel variant can run is `launch.rs`'s.

use ckb_common::{DType, GpuError};

pub use ckb_common::gemm::{GemmShapeError, Operand};

/// A GEMM's shape, storage and scalars: [`ckb_common::gemm::GemmSpec`], under the name the
/// GEMM crate's API uses. Build it with `GemmProblem::new` (or `row_col`, `row_major`) and
/// adjust it with the `with_*` methods; every launch validates it.
pub use ckb_common::gemm::GemmSpec as GemmProblem;

/// Why a GEMM call did not launch.
#[derive(Debug, thiserror::Error)]
pub enum GemmError {
    /// The problem or a buffer is invalid (checked before anything touches the GPU).
    #[error(transparent)]
    Shape(#[from] GemmShapeError),
    /// No kernel takes this pair of element types.
    #[error(
        "no GEMM kernel takes {input} inputs with {output} output (inputs: f32, f16, bf16; outputs: f32, f16, bf16)"
    )]
    UnsupportedTypes {
        /// The input element type asked for.
        input: DType,
        /// The output element type asked for.
        output: DType,
    },
    /// `--variant` named no compiled variant.
    #[error("no GEMM variant is named {0:?} (see ckb_gemm::variants())")]
    UnknownVariant(String),
    /// The forced (or the fallback) variant cannot take this problem.
    #[error("variant {variant} cannot run this problem: {reason}")]
    VariantCannotRun {
        /// The variant's name.
        variant: &'static str,
        /// Why not, in words; for a plan in place, one reason per orientation tried,
        /// `; `-separated.
        reason: String,
    },
    /// The GPU or the launch failed.
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
