//! CPU reference GEMM in float64, the yardstick every GPU variant is compared against.
//!
//! Conventions follow BLAS: `C = alpha * A * B + beta * C`, with `A` of `m x k`, `B` of
//! `k x n` and `C` of `m x n`, each stored row- or column-major with its own leading
//! dimension (see [`Layout`]). "Four layouts" means the four (A, B) storage pairs; a
//! transposed operand is expressed by swapping its layout, see [`MatRef::transposed`].
//!
//! The reference is meant for shapes up to a few thousand per dimension: it packs both
//! operands into contiguous row-major copies, then walks blocks of C rows in parallel
//! so that each row of B is loaded once per block rather than once per row.

use ckb_common::Layout;
use rayon::prelude::*;

/// A read-only view of a `rows x cols` matrix stored with `layout` and leading dimension `ld`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    /// The elements; element (i, j) is at `layout.offset(i, j, ld)`, and the slice may run
    /// past the matrix.
    pub data: &'a [f64],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Storage order of `data`.
    pub layout: Layout,
    /// Leading dimension: elements from the start of one row (row-major) or column
    /// (column-major) to the start of the next; at least [`Layout::min_ld`].
    pub ld: usize,
}

impl<'a> MatRef<'a> {
    /// A `rows x cols` view of `data` stored with `layout` and leading dimension `ld`. Not
    /// checked here: [`MatRef::check`] is, by [`matmul`] and [`gemm`].
    pub fn new(data: &'a [f64], rows: usize, cols: usize, layout: Layout, ld: usize) -> Self {
        Self { data, rows, cols, layout, ld }
    }

    /// A densely packed view: `ld` is the smallest the layout allows.
    pub fn dense(data: &'a [f64], rows: usize, cols: usize, layout: Layout) -> Self {
        Self::new(data, rows, cols, layout, layout.min_ld(rows, cols))
    }

    /// The same memory read as the transpose: a row-major `m x n` matrix is a
    /// column-major `n x m` one with the same leading dimension.
    pub fn transposed(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, layout: flip(self.layout), ld: self.ld }
    }

    /// Element (i, j).
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[self.layout.offset(i, j, self.ld)]
    }

    /// Panics with a message naming `what` when `ld` or the buffer length cannot hold the matrix.
    pub fn check(&self, what: &str) {
        check_storage(what, self.data.len(), self.rows, self.cols, self.layout, self.ld);
    }

    /// A contiguous row-major copy (leading dimension = `cols`), so that inner loops run
    /// over unit stride whatever the original storage.
    pub fn to_row_major(&self) -> Vec<f64> {
        if self.layout == Layout::RowMajor && self.ld == self.cols {
            return self.data[..self.rows * self.cols].to_vec();
        }
        let mut packed = vec![0.0; self.rows * self.cols];
        if self.cols == 0 {
            return packed;
        }
        packed.par_chunks_mut(self.cols).enumerate().for_each(|(i, row)| {
            for (j, value) in row.iter_mut().enumerate() {
                *value = self.get(i, j);
            }
        });
        packed
    }
}

/// The other storage order.
pub fn flip(layout: Layout) -> Layout {
    match layout {
        Layout::RowMajor => Layout::ColMajor,
        Layout::ColMajor => Layout::RowMajor,
    }
}

fn check_storage(what: &str, len: usize, rows: usize, cols: usize, layout: Layout, ld: usize) {
    let min_ld = layout.min_ld(rows, cols);
    assert!(
        ld >= min_ld,
        "{what}: leading dimension {ld} is below the minimum {min_ld} for a {rows}x{cols} {layout:?} matrix"
    );
    let needed = layout.required_len(rows, cols, ld);
    assert!(
        len >= needed,
        "{what}: buffer holds {len} elements, a {rows}x{cols} {layout:?} matrix with ld {ld} needs {needed}"
    );
}

/// Rows of C computed together, so each row of B streamed from memory serves all of them.
const ROW_BLOCK: usize = 8;

/// The product `A * B` as a contiguous row-major `m x n` matrix.
///
/// # Panics
/// When the inner dimensions differ or a buffer is too small for its shape.
pub fn matmul(a: MatRef, b: MatRef) -> Vec<f64> {
    a.check("A");
    b.check("B");
    assert_eq!(a.cols, b.rows, "inner dimensions differ: A is {}x{}, B is {}x{}", a.rows, a.cols, b.rows, b.cols);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut product = vec![0.0; m * n];
    if m == 0 || n == 0 || k == 0 {
        return product;
    }
    let a_rows = a.to_row_major();
    let b_rows = b.to_row_major();
    product.par_chunks_mut(ROW_BLOCK * n).zip(a_rows.par_chunks(ROW_BLOCK * k)).for_each(|(c_block, a_block)| {
        for (kk, b_row) in b_rows.chunks_exact(n).enumerate() {
            for (c_row, a_row) in c_block.chunks_exact_mut(n).zip(a_block.chunks_exact(k)) {
                let a_ik = a_row[kk];
                for (c, &b_kj) in c_row.iter_mut().zip(b_row) {
                    *c += a_ik * b_kj;
                }
            }
        }
    });
    product
}

/// `C = alpha * A * B + beta * C` in float64.
///
/// `c` holds an `a.rows x b.cols` matrix stored with `c_layout` and leading dimension `ldc`;
/// elements outside the matrix (padding between rows or columns) are left untouched.
/// As in BLAS, `beta == 0` overwrites C without reading it, so NaN or garbage in the old C
/// does not leak into the result. `alpha` is applied as written: `alpha == 0` still
/// propagates NaN/inf from A or B.
///
/// # Panics
/// When the inner dimensions differ, a leading dimension is below the minimum, or a buffer
/// is too small for its shape.
pub fn gemm(alpha: f64, a: MatRef, b: MatRef, beta: f64, c: &mut [f64], c_layout: Layout, ldc: usize) {
    let (m, n) = (a.rows, b.cols);
    check_storage("C", c.len(), m, n, c_layout, ldc);
    let product = matmul(a, b);
    if m == 0 || n == 0 {
        return;
    }
    let combine = |old: f64, ab: f64| {
        if beta == 0.0 {
            alpha * ab
        } else {
            alpha * ab + beta * old
        }
    };
    // Each chunk of `ldc` elements is one row (row-major) or one column (column-major) of C.
    let lines = match c_layout {
        Layout::RowMajor => m,
        Layout::ColMajor => n,
    };
    c.par_chunks_mut(ldc).take(lines).enumerate().for_each(|(line, storage)| match c_layout {
        Layout::RowMajor => {
            let ab_row = &product[line * n..(line + 1) * n];
            for (old, &ab) in storage[..n].iter_mut().zip(ab_row) {
                *old = combine(*old, ab);
            }
        }
        Layout::ColMajor => {
            for (i, old) in storage[..m].iter_mut().enumerate() {
                *old = combine(*old, product[i * n + line]);
            }
        }
    });
}
