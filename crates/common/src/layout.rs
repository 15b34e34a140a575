//! Matrix storage order, shared by GEMM, convolution (as implicit GEMM) and the baselines.

/// How a matrix of `rows x cols` sits in memory with leading dimension `ld`:
/// row-major puts element (i, j) at `i * ld + j`, column-major at `i + j * ld`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Layout {
    /// Each row contiguous: (i, j) at `i * ld + j`, `ld >= cols`.
    RowMajor,
    /// Each column contiguous: (i, j) at `i + j * ld`, `ld >= rows`.
    ColMajor,
}

impl Layout {
    /// Both layouts, row-major first, for sweeps over every combination.
    pub const ALL: [Layout; 2] = [Layout::RowMajor, Layout::ColMajor];

    /// Offset of element (i, j).
    pub fn offset(self, i: usize, j: usize, ld: usize) -> usize {
        match self {
            Layout::RowMajor => i * ld + j,
            Layout::ColMajor => i + j * ld,
        }
    }

    /// The smallest leading dimension a `rows x cols` matrix can have.
    pub fn min_ld(self, rows: usize, cols: usize) -> usize {
        match self {
            Layout::RowMajor => cols.max(1),
            Layout::ColMajor => rows.max(1),
        }
    }

    /// Elements a buffer must hold for a `rows x cols` matrix with leading dimension `ld`.
    pub fn required_len(self, rows: usize, cols: usize, ld: usize) -> usize {
        if rows == 0 || cols == 0 {
            return 0;
        }
        match self {
            Layout::RowMajor => (rows - 1) * ld + cols,
            Layout::ColMajor => (cols - 1) * ld + rows,
        }
    }

    /// One letter, as in "A row-major x B column-major" = "rc".
    pub fn letter(self) -> char {
        match self {
            Layout::RowMajor => 'r',
            Layout::ColMajor => 'c',
        }
    }
}
