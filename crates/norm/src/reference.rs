//! CPU references, in float64, for the row-wise kernels: softmax, log-softmax, layernorm and
//! rmsnorm, forward and backward.
//!
//! Every operation works along the last axis of a matrix described by [`Rows`]: `rows` rows
//! of `cols` elements, row `i` starting at element `i * row_stride` of its buffer. All
//! row-shaped inputs of one call share that description; outputs are densely packed
//! (`row_stride == cols`), per-row statistics have one value per row, per-column
//! parameters (gamma, beta) and gradients one value per column.
//!
//! # Hard inputs
//! - Softmax: `-inf` entries are exact (their probability is exactly 0, their log-softmax
//!   `-inf`). A row that is entirely `-inf` has no distribution: softmax and log-softmax give
//!   an all-NaN row. A row holding NaN or `+inf` also gives an all-NaN row.
//! - LayerNorm: the mean is taken relative to the row's first element, so a constant row
//!   has mean exactly that value and variance exactly 0, and its output is exactly `beta`
//!   (for `eps > 0`; `eps == 0` gives NaN there).
//! - Rows of length 1 work: softmax gives 1, layernorm gives `beta`.
//! - Variance is the biased (population) variance, as in PyTorch's `layer_norm`.
//!
//! # How far the kernels may be from these
//! LayerNorm kernels take the variance in one pass, as `sum(d^2) / n - (sum(d) / n)^2` of
//! f32 deviations `d = x - s` from a shift `s` that is an element of the row (the first of
//! each warp's share; kernels/row_stats.cuh). Its relative error is about
//! `eps32 * log2(n) * (1 + (mean - s)^2 / var)` (`eps32` = 2^-24): a few f32 roundings when
//! the shift lies within a few standard deviations of the mean, whatever the mean's size
//! (rows of 1000 + 0.01 N(0, 1) or of three nearly equal elements keep f32 accuracy; tested
//! by `layernorm_keeps_large_means_and_tiny_variances`), and `n` times that at worst (a first
//! element that is the row's only outlier). Outputs are computed as
//! `((x - s) - (mean - s)) * rstd`, so a large mean costs no digits there either.

use rayon::prelude::*;

/// Where the rows of a matrix lie in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    /// Number of rows.
    pub rows: usize,
    /// Elements per row: the axis the ops run along.
    pub cols: usize,
    /// Elements from the start of one row to the start of the next; at least `cols`.
    pub row_stride: usize,
}

impl Rows {
    /// `rows` rows of `cols` elements, `row_stride` elements apart.
    pub fn new(rows: usize, cols: usize, row_stride: usize) -> Self {
        Self { rows, cols, row_stride }
    }

    /// Densely packed rows.
    pub fn dense(rows: usize, cols: usize) -> Self {
        Self::new(rows, cols, cols)
    }

    /// Elements a buffer must hold.
    pub fn required_len(&self) -> usize {
        if self.rows == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + self.cols
        }
    }

    /// Row `i` of `data`.
    pub fn row<'a>(&self, data: &'a [f64], i: usize) -> &'a [f64] {
        &data[i * self.row_stride..][..self.cols]
    }

    /// Panics unless `data` can hold these rows; `what` names the buffer.
    fn check(&self, what: &str, data: &[f64]) {
        assert!(self.row_stride >= self.cols, "row stride {} is below the row length {}", self.row_stride, self.cols);
        let needed = self.required_len();
        assert!(data.len() >= needed, "{what} holds {} elements, the rows need {needed}", data.len());
    }

    /// A dense `rows x cols` output whose row `i` is filled by `fill(i, row)`, in parallel.
    fn map_rows(&self, fill: impl Fn(usize, &mut [f64]) + Sync) -> Vec<f64> {
        let mut out = vec![0.0; self.rows * self.cols];
        if self.cols > 0 {
            out.par_chunks_mut(self.cols).enumerate().for_each(|(i, row)| fill(i, row));
        } else {
            (0..self.rows).into_par_iter().for_each(|i| fill(i, &mut []));
        }
        out
    }

    /// For each column `j`, `f` summed over rows `i` in order: deterministic, unlike a
    /// parallel fold over rows.
    fn column_sums(&self, f: impl Fn(usize, usize) -> f64 + Sync) -> Vec<f64> {
        (0..self.cols).into_par_iter().map(|j| (0..self.rows).map(|i| f(i, j)).sum()).collect()
    }
}

fn check_len(what: &str, data: &[f64], expected: usize) {
    assert_eq!(data.len(), expected, "{what} holds {} elements, expected {expected}", data.len());
}

/// The row maximum and `sum(exp(x - max))`, or `None` when the row has no distribution
/// (empty, all `-inf`, or holding NaN or `+inf`).
fn softmax_stats(row: &[f64]) -> Option<(f64, f64)> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let defined = max.is_finite() && !row.iter().any(|v| v.is_nan());
    defined.then(|| (max, row.iter().map(|&v| (v - max).exp()).sum()))
}

/// `softmax(x)_j = exp(x_j - max) / sum_k exp(x_k - max)` along each row. See the module
/// docs for rows with `-inf`, `+inf` or NaN.
pub fn softmax(x: &[f64], shape: Rows) -> Vec<f64> {
    shape.check("x", x);
    shape.map_rows(|i, out| {
        let row = shape.row(x, i);
        match softmax_stats(row) {
            Some((max, total)) => out.iter_mut().zip(row).for_each(|(o, &v)| *o = (v - max).exp() / total),
            None => out.fill(f64::NAN),
        }
    })
}

/// `log_softmax(x)_j = x_j - max - ln(sum_k exp(x_k - max))` along each row. See the module
/// docs for rows with `-inf`, `+inf` or NaN.
pub fn log_softmax(x: &[f64], shape: Rows) -> Vec<f64> {
    shape.check("x", x);
    shape.map_rows(|i, out| {
        let row = shape.row(x, i);
        match softmax_stats(row) {
            Some((max, total)) => {
                let log_total = total.ln();
                out.iter_mut().zip(row).for_each(|(o, &v)| *o = v - max - log_total);
            }
            None => out.fill(f64::NAN),
        }
    })
}

/// Gradient of softmax: `dx_j = y_j * (dy_j - sum_k dy_k * y_k)`, with `y` the forward output.
pub fn softmax_backward(dy: &[f64], y: &[f64], shape: Rows) -> Vec<f64> {
    shape.check("dy", dy);
    shape.check("y", y);
    shape.map_rows(|i, dx| {
        let (dy, y) = (shape.row(dy, i), shape.row(y, i));
        let dot: f64 = dy.iter().zip(y).map(|(a, b)| a * b).sum();
        for ((dx, &dy), &y) in dx.iter_mut().zip(dy).zip(y) {
            *dx = y * (dy - dot);
        }
    })
}

/// LayerNorm output and the statistics the backward pass needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNormOutput {
    /// Dense `rows x cols`.
    pub y: Vec<f64>,
    /// One per row.
    pub mean: Vec<f64>,
    /// `1 / sqrt(variance + eps)`, one per row.
    pub rstd: Vec<f64>,
}

/// Mean and biased variance of a row, shifted by its first element so that a constant row
/// gives exactly its value and 0.
fn mean_and_variance(row: &[f64]) -> (f64, f64) {
    let n = row.len() as f64;
    let shift = row.first().copied().unwrap_or(0.0);
    let mean = shift + row.iter().map(|&v| v - shift).sum::<f64>() / n;
    let variance = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, variance)
}

/// `y = (x - mean) * rstd * gamma + beta` per row, with `rstd = 1 / sqrt(var + eps)` and
/// `var` the biased variance. Empty rows (`cols == 0`) give NaN statistics.
///
/// # Panics
/// When `gamma` or `beta` does not have `cols` elements or `x` is too short.
pub fn layernorm(x: &[f64], shape: Rows, gamma: &[f64], beta: &[f64], eps: f64) -> LayerNormOutput {
    shape.check("x", x);
    check_len("gamma", gamma, shape.cols);
    check_len("beta", beta, shape.cols);
    let (mean, variance): (Vec<f64>, Vec<f64>) =
        (0..shape.rows).into_par_iter().map(|i| mean_and_variance(shape.row(x, i))).unzip();
    let rstd: Vec<f64> = variance.iter().map(|&var| 1.0 / (var + eps).sqrt()).collect();
    let y = shape.map_rows(|i, out| {
        for (j, (o, &v)) in out.iter_mut().zip(shape.row(x, i)).enumerate() {
            *o = (v - mean[i]) * rstd[i] * gamma[j] + beta[j];
        }
    });
    LayerNormOutput { y, mean, rstd }
}

/// LayerNorm gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNormGrads {
    /// Dense `rows x cols`.
    pub dx: Vec<f64>,
    /// One per column, summed over rows.
    pub dgamma: Vec<f64>,
    /// One per column, summed over rows.
    pub dbeta: Vec<f64>,
}

/// Gradients of [`layernorm`] from the saved `mean` and `rstd`: with `xhat = (x - mean) * rstd`
/// and `g = dy * gamma`, `dx = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat))`,
/// `dgamma = sum_rows(dy * xhat)`, `dbeta = sum_rows(dy)`.
pub fn layernorm_backward(
    dy: &[f64],
    x: &[f64],
    shape: Rows,
    gamma: &[f64],
    mean: &[f64],
    rstd: &[f64],
) -> LayerNormGrads {
    shape.check("dy", dy);
    shape.check("x", x);
    check_len("gamma", gamma, shape.cols);
    check_len("mean", mean, shape.rows);
    check_len("rstd", rstd, shape.rows);
    let xhat = |i: usize, j: usize| (shape.row(x, i)[j] - mean[i]) * rstd[i];
    let n = shape.cols as f64;
    let dx = shape.map_rows(|i, dx| {
        let dy = shape.row(dy, i);
        let g = |j: usize| dy[j] * gamma[j];
        let mean_g = (0..shape.cols).map(g).sum::<f64>() / n;
        let mean_g_xhat = (0..shape.cols).map(|j| g(j) * xhat(i, j)).sum::<f64>() / n;
        for (j, dx) in dx.iter_mut().enumerate() {
            *dx = rstd[i] * (g(j) - mean_g - xhat(i, j) * mean_g_xhat);
        }
    });
    LayerNormGrads {
        dx,
        dgamma: shape.column_sums(|i, j| shape.row(dy, i)[j] * xhat(i, j)),
        dbeta: shape.column_sums(|i, j| shape.row(dy, i)[j]),
    }
}

/// RMSNorm output and the statistic the backward pass needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RmsNormOutput {
    /// Dense `rows x cols`.
    pub y: Vec<f64>,
    /// `1 / sqrt(mean(x^2) + eps)`, one per row.
    pub rstd: Vec<f64>,
}

/// `y = x * rstd * gamma` per row, with `rstd = 1 / sqrt(mean(x^2) + eps)`. A zero row
/// gives `y == 0` for `eps > 0`.
///
/// # Panics
/// When `gamma` does not have `cols` elements or `x` is too short.
pub fn rmsnorm(x: &[f64], shape: Rows, gamma: &[f64], eps: f64) -> RmsNormOutput {
    shape.check("x", x);
    check_len("gamma", gamma, shape.cols);
    let rstd: Vec<f64> = (0..shape.rows)
        .into_par_iter()
        .map(|i| {
            let mean_square = shape.row(x, i).iter().map(|v| v * v).sum::<f64>() / shape.cols as f64;
            1.0 / (mean_square + eps).sqrt()
        })
        .collect();
    let y = shape.map_rows(|i, out| {
        for ((o, &v), &g) in out.iter_mut().zip(shape.row(x, i)).zip(gamma) {
            *o = v * rstd[i] * g;
        }
    });
    RmsNormOutput { y, rstd }
}

/// RMSNorm gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct RmsNormGrads {
    /// Dense `rows x cols`.
    pub dx: Vec<f64>,
    /// One per column, summed over rows.
    pub dgamma: Vec<f64>,
}

/// Gradients of [`rmsnorm`] from the saved `rstd`: with `g = dy * gamma`,
/// `dx = rstd * (g - x * rstd^2 * mean_j(g * x))` and `dgamma = sum_rows(dy * x * rstd)`.
pub fn rmsnorm_backward(dy: &[f64], x: &[f64], shape: Rows, gamma: &[f64], rstd: &[f64]) -> RmsNormGrads {
    shape.check("dy", dy);
    shape.check("x", x);
    check_len("gamma", gamma, shape.cols);
    check_len("rstd", rstd, shape.rows);
    let n = shape.cols as f64;
    let dx = shape.map_rows(|i, dx| {
        let (dy, x) = (shape.row(dy, i), shape.row(x, i));
        let mean_g_x = dy.iter().zip(gamma).zip(x).map(|((dy, g), x)| dy * g * x).sum::<f64>() / n;
        for (j, dx) in dx.iter_mut().enumerate() {
            *dx = rstd[i] * (dy[j] * gamma[j] - x[j] * rstd[i] * rstd[i] * mean_g_x);
        }
    });
    let dgamma = shape.column_sums(|i, j| shape.row(dy, i)[j] * shape.row(x, i)[j] * rstd[i]);
    RmsNormGrads { dx, dgamma }
}
