//! The CPU GEMM reference against a naive triple loop and algebraic identities.

use ckb_common::Layout;
use ckb_gemm::reference::{flip, gemm, matmul, MatRef};
use proptest::prelude::*;

/// A stored matrix: its values plus the layout and leading dimension they sit in.
#[derive(Debug, Clone)]
struct Stored {
    data: Vec<f64>,
    rows: usize,
    cols: usize,
    layout: Layout,
    ld: usize,
}

impl Stored {
    fn view(&self) -> MatRef<'_> {
        MatRef::new(&self.data, self.rows, self.cols, self.layout, self.ld)
    }
}

fn any_layout() -> impl Strategy<Value = Layout> {
    prop_oneof![Just(Layout::RowMajor), Just(Layout::ColMajor)]
}

/// Small integers keep every sum exact, so identities can be checked with `==`.
fn small_values(len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((-8i32..=8).prop_map(f64::from), len)
}

/// A `rows x cols` matrix in a random layout with up to 3 elements of padding per line.
fn stored(rows: usize, cols: usize) -> impl Strategy<Value = Stored> {
    (any_layout(), 0usize..=3).prop_flat_map(move |(layout, padding)| {
        let ld = layout.min_ld(rows, cols) + padding;
        small_values(layout.required_len(rows, cols, ld)).prop_map(move |data| Stored { data, rows, cols, layout, ld })
    })
}

fn dims() -> impl Strategy<Value = (usize, usize, usize)> {
    (0usize..=13, 0usize..=13, 0usize..=13)
}

/// A, B and C with matching shapes; C starts with arbitrary contents.
fn problem() -> impl Strategy<Value = (Stored, Stored, Stored)> {
    dims().prop_flat_map(|(m, n, k)| (stored(m, k), stored(k, n), stored(m, n)))
}

fn naive(alpha: f64, a: MatRef, b: MatRef, beta: f64, c: &Stored) -> Vec<f64> {
    let mut out = c.data.clone();
    for i in 0..a.rows {
        for j in 0..b.cols {
            let dot: f64 = (0..a.cols).map(|p| a.get(i, p) * b.get(p, j)).sum();
            let at = c.layout.offset(i, j, c.ld);
            out[at] = alpha * dot + beta * c.data[at];
        }
    }
    out
}

fn run(alpha: f64, a: &Stored, b: &Stored, beta: f64, c: &Stored) -> Vec<f64> {
    let mut out = c.data.clone();
    gemm(alpha, a.view(), b.view(), beta, &mut out, c.layout, c.ld);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_naive_triple_loop_in_every_layout(
        (a, b, c) in problem(),
        alpha in -3i32..=3,
        beta in -3i32..=3,
    ) {
        let (alpha, beta) = (f64::from(alpha), f64::from(beta));
        prop_assert_eq!(run(alpha, &a, &b, beta, &c), naive(alpha, a.view(), b.view(), beta, &c));
    }

    #[test]
    fn is_linear_in_alpha_and_beta((a, b, c) in problem(), alpha in -3i32..=3, beta in -3i32..=3) {
        let (alpha, beta) = (f64::from(alpha), f64::from(beta));
        let product_only = run(1.0, &a, &b, 0.0, &c);
        let combined = run(alpha, &a, &b, beta, &c);
        let inside = |i: usize, j: usize| c.layout.offset(i, j, c.ld);
        for i in 0..c.rows {
            for j in 0..c.cols {
                let at = inside(i, j);
                prop_assert_eq!(combined[at], alpha * product_only[at] + beta * c.data[at]);
            }
        }
    }

    #[test]
    fn transpose_of_product_is_product_of_transposes((a, b, _c) in problem()) {
        // (AB)^T = B^T A^T, the transposes taken by reading the same memory in the other layout.
        let ab = matmul(a.view(), b.view());
        let bt_at = matmul(b.view().transposed(), a.view().transposed());
        let (m, n) = (a.rows, b.cols);
        for i in 0..m {
            for j in 0..n {
                prop_assert_eq!(ab[i * n + j], bt_at[j * m + i]);
            }
        }
    }

    #[test]
    fn padding_of_c_is_left_untouched((a, b, c) in problem()) {
        let out = run(2.0, &a, &b, 1.0, &c);
        for (at, (&new, &old)) in out.iter().zip(&c.data).enumerate() {
            let (line, within) = (at / c.ld, at % c.ld);
            let inside_line = match c.layout {
                Layout::RowMajor => within < c.cols && line < c.rows,
                Layout::ColMajor => within < c.rows && line < c.cols,
            };
            if !inside_line {
                prop_assert_eq!(new, old);
            }
        }
    }

    #[test]
    fn flipping_c_layout_stores_the_same_matrix((a, b, c) in problem()) {
        let flipped_ld = flip(c.layout).min_ld(c.rows, c.cols);
        let mut flipped = vec![0.0; flip(c.layout).required_len(c.rows, c.cols, flipped_ld)];
        gemm(1.0, a.view(), b.view(), 0.0, &mut flipped, flip(c.layout), flipped_ld);
        let direct = run(1.0, &a, &b, 0.0, &c);
        let flipped_view = MatRef::new(&flipped, c.rows, c.cols, flip(c.layout), flipped_ld);
        let direct_view = MatRef::new(&direct, c.rows, c.cols, c.layout, c.ld);
        for i in 0..c.rows {
            for j in 0..c.cols {
                prop_assert_eq!(flipped_view.get(i, j), direct_view.get(i, j));
            }
        }
    }
}

#[test]
fn beta_zero_ignores_nan_in_c() {
    let a = [1.0, 2.0, 3.0, 4.0];
    let b = [5.0, 6.0, 7.0, 8.0];
    let mut c = [f64::NAN; 4];
    let a = MatRef::dense(&a, 2, 2, Layout::RowMajor);
    let b = MatRef::dense(&b, 2, 2, Layout::RowMajor);
    gemm(1.0, a, b, 0.0, &mut c, Layout::RowMajor, 2);
    assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
}

#[test]
fn empty_inner_dimension_scales_c_by_beta() {
    let mut c = [1.0, -2.0, 3.0];
    let a = MatRef::dense(&[], 3, 0, Layout::ColMajor);
    let b = MatRef::dense(&[], 0, 1, Layout::RowMajor);
    gemm(5.0, a, b, 2.0, &mut c, Layout::ColMajor, 3);
    assert_eq!(c, [2.0, -4.0, 6.0]);
}

#[test]
fn larger_blocked_product_matches_naive() {
    // Sizes that straddle the row block, with non-integer values.
    let (m, n, k) = (37, 29, 41);
    let a: Vec<f64> = (0..m * k).map(|x| ((x * 7919) % 113) as f64 / 17.0 - 3.0).collect();
    let b: Vec<f64> = (0..k * n).map(|x| ((x * 104729) % 97) as f64 / 13.0 - 3.5).collect();
    let a = MatRef::dense(&a, m, k, Layout::ColMajor);
    let b = MatRef::dense(&b, k, n, Layout::RowMajor);
    let product = matmul(a, b);
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|p| a.get(i, p) * b.get(p, j)).sum();
            assert!((product[i * n + j] - dot).abs() <= 1e-12 * (1.0 + dot.abs()));
        }
    }
}

#[test]
#[should_panic(expected = "inner dimensions differ")]
fn mismatched_inner_dimension_panics() {
    let data = [0.0; 6];
    matmul(MatRef::dense(&data, 2, 3, Layout::RowMajor), MatRef::dense(&data, 2, 3, Layout::RowMajor));
}

#[test]
#[should_panic(expected = "leading dimension")]
fn short_leading_dimension_panics() {
    let data = [0.0; 6];
    let a = MatRef::new(&data, 2, 3, Layout::RowMajor, 2);
    matmul(a, MatRef::dense(&data, 3, 2, Layout::RowMajor));
}
