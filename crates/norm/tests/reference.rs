//! The CPU row-wise references against their defining properties and finite differences.

use ckb_norm::reference::*;
use proptest::prelude::*;

/// A buffer with `rows x cols` values in `-5..5`, rows `cols + padding` apart.
fn matrix(max_rows: usize, max_cols: usize) -> impl Strategy<Value = (Vec<f64>, Rows)> {
    (0..=max_rows, 1..=max_cols, 0usize..=2).prop_flat_map(|(rows, cols, padding)| {
        let shape = Rows::new(rows, cols, cols + padding);
        (prop::collection::vec(-5.0f64..5.0, shape.required_len()), Just(shape))
    })
}

fn values(len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-2.0f64..2.0, len)
}

/// `(x, shape, dy, gamma, beta)` for checking gradients: small, dense.
fn gradient_case() -> impl Strategy<Value = (Vec<f64>, Rows, Vec<f64>, Vec<f64>, Vec<f64>)> {
    (1usize..=3, 1usize..=6).prop_flat_map(|(rows, cols)| {
        let shape = Rows::dense(rows, cols);
        (values(rows * cols), Just(shape), values(rows * cols), values(cols), values(cols))
    })
}

fn assert_close(what: &str, got: &[f64], expected: &[f64], tolerance: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), expected.len(), "{}: lengths differ", what);
    for (j, (g, e)) in got.iter().zip(expected).enumerate() {
        prop_assert!((g - e).abs() <= tolerance * (1.0 + e.abs()), "{}[{}]: {} vs {}", what, j, g, e);
    }
    Ok(())
}

/// Rows of `x` packed densely, to compare a strided call with a dense one.
fn packed(x: &[f64], shape: Rows) -> Vec<f64> {
    (0..shape.rows).flat_map(|i| shape.row(x, i).to_vec()).collect()
}

/// Central differences of `loss` at `point`, one per coordinate.
fn numeric_gradient(point: &[f64], loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let step = 1e-5;
    (0..point.len())
        .map(|k| {
            let mut moved = point.to_vec();
            moved[k] = point[k] + step;
            let up = loss(&moved);
            moved[k] = point[k] - step;
            (up - loss(&moved)) / (2.0 * step)
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

fn row_mean(row: &[f64]) -> f64 {
    row.iter().sum::<f64>() / row.len() as f64
}

const GRADIENT_TOLERANCE: f64 = 1e-6;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn softmax_rows_are_distributions((x, shape) in matrix(4, 40)) {
        let y = softmax(&x, shape);
        for i in 0..shape.rows {
            let row = &y[i * shape.cols..][..shape.cols];
            prop_assert!(row.iter().all(|&p| (0.0..=1.0).contains(&p)));
            prop_assert!((row.iter().sum::<f64>() - 1.0).abs() <= 1e-12);
        }
    }

    #[test]
    fn softmax_is_shift_invariant((x, shape) in matrix(4, 40), shift in -50.0f64..50.0) {
        let shifted: Vec<f64> = x.iter().map(|v| v + shift).collect();
        assert_close("softmax", &softmax(&shifted, shape), &softmax(&x, shape), 1e-12)?;
        let log_shifted = log_softmax(&shifted, shape);
        assert_close("log_softmax", &log_shifted, &log_softmax(&x, shape), 1e-12)?;
    }

    #[test]
    fn log_softmax_is_log_of_softmax((x, shape) in matrix(4, 40)) {
        let logs: Vec<f64> = softmax(&x, shape).iter().map(|p| p.ln()).collect();
        assert_close("log_softmax", &log_softmax(&x, shape), &logs, 1e-12)?;
    }

    #[test]
    fn row_stride_only_moves_rows((x, shape) in matrix(4, 12), gamma in values(12), beta in values(12)) {
        let dense = Rows::dense(shape.rows, shape.cols);
        let x_dense = packed(&x, shape);
        let (gamma, beta) = (&gamma[..shape.cols], &beta[..shape.cols]);
        prop_assert_eq!(softmax(&x, shape), softmax(&x_dense, dense));
        prop_assert_eq!(log_softmax(&x, shape), log_softmax(&x_dense, dense));
        prop_assert_eq!(layernorm(&x, shape, gamma, beta, 1e-5), layernorm(&x_dense, dense, gamma, beta, 1e-5));
        prop_assert_eq!(rmsnorm(&x, shape, gamma, 1e-5), rmsnorm(&x_dense, dense, gamma, 1e-5));
    }

    #[test]
    fn layernorm_standardises_each_row((x, shape) in matrix(4, 40), eps in 0.0f64..1e-3) {
        prop_assume!(shape.cols >= 2);
        let ones = vec![1.0; shape.cols];
        let zeros = vec![0.0; shape.cols];
        let out = layernorm(&x, shape, &ones, &zeros, eps);
        for i in 0..shape.rows {
            let (row, y) = (shape.row(&x, i), &out.y[i * shape.cols..][..shape.cols]);
            let mean = row_mean(row);
            let variance = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / row.len() as f64;
            prop_assert!((out.mean[i] - mean).abs() <= 1e-12);
            prop_assert!((out.rstd[i] - 1.0 / (variance + eps).sqrt()).abs() <= 1e-9 * out.rstd[i]);
            prop_assert!(row_mean(y).abs() <= 1e-12);
            let y_variance = y.iter().map(|v| v * v).sum::<f64>() / y.len() as f64;
            prop_assert!((y_variance - variance / (variance + eps)).abs() <= 1e-9);
        }
    }

    #[test]
    fn layernorm_applies_gamma_and_beta_after_standardising(
        (x, shape) in matrix(4, 12), gamma in values(12), beta in values(12),
    ) {
        let (gamma, beta) = (&gamma[..shape.cols], &beta[..shape.cols]);
        let plain = layernorm(&x, shape, &vec![1.0; shape.cols], &vec![0.0; shape.cols], 1e-5);
        let affine = layernorm(&x, shape, gamma, beta, 1e-5);
        let expected: Vec<f64> = plain.y.iter().enumerate().map(|(k, v)| v * gamma[k % shape.cols] + beta[k % shape.cols]).collect();
        assert_close("layernorm", &affine.y, &expected, 1e-12)?;
    }

    #[test]
    fn constant_rows_give_beta_exactly(value in -1e3f64..1e3, cols in 1usize..=50, beta in values(50)) {
        let shape = Rows::dense(2, cols);
        let beta = &beta[..cols];
        let out = layernorm(&vec![value; 2 * cols], shape, &vec![3.0; cols], beta, 1e-5);
        prop_assert_eq!(&out.y[..cols], beta);
        prop_assert_eq!(&out.y[cols..], beta);
        prop_assert_eq!(out.mean, vec![value; 2]);
        prop_assert_eq!(out.rstd, vec![1.0 / 1e-5f64.sqrt(); 2]);
    }

    #[test]
    fn rmsnorm_ignores_the_scale_of_a_row((x, shape) in matrix(4, 40), scale in 0.01f64..100.0, gamma in values(40)) {
        let gamma = &gamma[..shape.cols];
        let scaled: Vec<f64> = x.iter().map(|v| -scale * v).collect();
        let flipped: Vec<f64> = rmsnorm(&x, shape, gamma, 0.0).y.iter().map(|v| -v).collect();
        assert_close("rmsnorm", &rmsnorm(&scaled, shape, gamma, 0.0).y, &flipped, 1e-12)?;
        let unit = rmsnorm(&x, shape, &vec![1.0; shape.cols], 0.0);
        for i in 0..shape.rows {
            let row = &unit.y[i * shape.cols..][..shape.cols];
            prop_assert!((row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64 - 1.0).abs() <= 1e-12);
        }
    }

    #[test]
    fn softmax_backward_matches_finite_differences((x, shape, dy, _, _) in gradient_case()) {
        let y = softmax(&x, shape);
        let numeric = numeric_gradient(&x, |x| dot(&dy, &softmax(x, shape)));
        assert_close("dx", &softmax_backward(&dy, &y, shape), &numeric, GRADIENT_TOLERANCE)?;
    }

    #[test]
    fn layernorm_backward_matches_finite_differences((x, shape, dy, gamma, beta) in gradient_case()) {
        let eps = 1e-2; // keeps near-constant rows well conditioned for the differences
        let out = layernorm(&x, shape, &gamma, &beta, eps);
        let grads = layernorm_backward(&dy, &x, shape, &gamma, &out.mean, &out.rstd);
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| dot(&dy, &layernorm(x, shape, gamma, beta, eps).y);
        assert_close("dx", &grads.dx, &numeric_gradient(&x, |x| loss(x, &gamma, &beta)), GRADIENT_TOLERANCE)?;
        assert_close("dgamma", &grads.dgamma, &numeric_gradient(&gamma, |g| loss(&x, g, &beta)), GRADIENT_TOLERANCE)?;
        assert_close("dbeta", &grads.dbeta, &numeric_gradient(&beta, |b| loss(&x, &gamma, b)), GRADIENT_TOLERANCE)?;
    }

    #[test]
    fn rmsnorm_backward_matches_finite_differences((x, shape, dy, gamma, _) in gradient_case()) {
        let eps = 1e-2;
        let out = rmsnorm(&x, shape, &gamma, eps);
        let grads = rmsnorm_backward(&dy, &x, shape, &gamma, &out.rstd);
        let loss = |x: &[f64], gamma: &[f64]| dot(&dy, &rmsnorm(x, shape, gamma, eps).y);
        assert_close("dx", &grads.dx, &numeric_gradient(&x, |x| loss(x, &gamma)), GRADIENT_TOLERANCE)?;
        assert_close("dgamma", &grads.dgamma, &numeric_gradient(&gamma, |g| loss(&x, g)), GRADIENT_TOLERANCE)?;
    }
}

#[test]
fn negative_infinity_entries_are_exact() {
    let inf = f64::INFINITY;
    let x = [-inf, 0.0, -inf, 0.0];
    assert_eq!(softmax(&x, Rows::dense(1, 4)), vec![0.0, 0.5, 0.0, 0.5]);
    let logs = log_softmax(&x, Rows::dense(1, 4));
    assert_eq!(logs, vec![-inf, -(2f64.ln()), -inf, -(2f64.ln())]);
}

#[test]
fn rows_without_a_distribution_are_nan_and_leave_other_rows_alone() {
    let inf = f64::INFINITY;
    let x = [-inf, -inf, 1.0, 1.0, inf, 0.0, f64::NAN, 0.0];
    let shape = Rows::dense(4, 2);
    for y in [softmax(&x, shape), log_softmax(&x, shape)] {
        assert!(y[..2].iter().all(|v| v.is_nan()), "all -inf row");
        assert!(y[2..4].iter().all(|v| v.is_finite()));
        assert!(y[4..].iter().all(|v| v.is_nan()), "+inf and NaN rows");
    }
}

#[test]
fn rows_of_length_one() {
    let shape = Rows::new(3, 1, 2);
    let x = [4.0, 99.0, -7.0, 99.0, 0.5];
    assert_eq!(softmax(&x, shape), vec![1.0; 3]);
    assert_eq!(log_softmax(&x, shape), vec![0.0; 3]);
    let out = layernorm(&x, shape, &[2.0], &[0.25], 1e-5);
    assert_eq!(out.y, vec![0.25; 3]);
    assert_eq!(out.mean, vec![4.0, -7.0, 0.5]);
    let rms = rmsnorm(&x, shape, &[1.0], 0.0);
    assert_eq!(rms.y, vec![1.0, -1.0, 1.0]);
}

#[test]
fn empty_matrices_give_empty_outputs() {
    let no_rows = Rows::dense(0, 5);
    assert!(softmax(&[], no_rows).is_empty());
    let out = layernorm(&[], no_rows, &[1.0; 5], &[0.0; 5], 1e-5);
    assert!(out.y.is_empty() && out.mean.is_empty());
    let grads = layernorm_backward(&[], &[], no_rows, &[1.0; 5], &[], &[]);
    assert_eq!(grads.dgamma, vec![0.0; 5]);
}

#[test]
#[should_panic(expected = "gamma holds 2 elements, expected 3")]
fn mismatched_gamma_panics() {
    rmsnorm(&[1.0; 3], Rows::dense(1, 3), &[1.0; 2], 1e-5);
}
