//! Checking a forward op's device result against the float64 [`reference`](crate::reference),
//! row by row ([`check_rows`]): every row is held to its own bound, so one zeroed, swapped
//! or half-written row fails among tens of thousands. Outputs are compared with the
//! reference rounded to their type ([`Tolerance::for_output`]); softmax probabilities
//! element by element relative to themselves ([`Tolerance::relative`]), each row summing
//! like the reference's; saved statistics (f32) as in the norm crate's GPU tests.
//!
//! Problems of up to [`FULL_CHECK_ELEMENTS`] are checked on every row, every gate shape
//! among them; larger ones on rows covering every 64-row block ([`sample_rows`]).

use ckb_common::{
    check_rows, compare, tile_covering_rows, to_f64_vec, Comparison, Element, Gpu, RowCheck, Tolerance, CHECK_TILE_ROWS,
};
use cudarc::driver::DevicePtr;

use crate::problem::{check_buffers, check_eps, Extent, NormElement, NormOp, NormResult, RowsProblem};
use crate::reference::{self as cpu, Rows};

/// Problems of up to this many elements are checked on every row: the gate shapes
/// (2^27 elements) take about a second of float64 on the host, and only a check of every
/// row sees any one row go wrong. Larger ones are checked on [`sample_rows`].
pub const FULL_CHECK_ELEMENTS: usize = 1 << 28;

/// The rows a check reads: all of them up to [`FULL_CHECK_ELEMENTS`], else the first, the
/// last and one seeded random row in every 64-row block.
pub fn sample_rows(problem: &RowsProblem, seed: u64) -> Vec<usize> {
    if problem.rows.saturating_mul(problem.cols) <= FULL_CHECK_ELEMENTS {
        (0..problem.rows).collect()
    } else {
        tile_covering_rows(problem.rows, CHECK_TILE_ROWS, seed)
    }
}

/// The mean is f32 whatever T is, and its error is absolute near zero (the mean of a long
/// row of unit normals): element-wise with scale 1.
const MEAN: Tolerance = Tolerance { rel_frobenius: f64::INFINITY, elementwise: 1e-5, scale: 1.0 };
/// rstd is f32, positive and far from zero: relative.
const RSTD: Tolerance = Tolerance { rel_frobenius: 1e-5, elementwise: 1e-5, scale: 0.0 };

/// How a forward op's outputs compared with the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormCheck {
    /// The output and the statistics together ([`Comparison::and`]): the verdict and the
    /// figures a record keeps.
    pub summary: Comparison,
    /// The output, row by row.
    pub y: RowCheck,
    /// The saved statistics (mean and rstd, or rstd), for layernorm and rmsnorm.
    pub stats: Option<Comparison>,
    /// How many rows were checked (fewer than `problem.rows` when sampled).
    pub rows_checked: usize,
}

/// Rows `rows` of a buffer whose row `i` starts at `i * stride`, packed densely as f64.
fn gather<T: Element>(data: &[T], rows: &[usize], stride: usize, cols: usize) -> Vec<f64> {
    rows.iter().flat_map(|&i| data[i * stride..][..cols].iter().map(|v| v.to_f64())).collect()
}

fn per_row(data: &[f32], rows: &[usize]) -> Vec<f64> {
    rows.iter().map(|&i| f64::from(data[i])).collect()
}

fn rounded<T: NormElement>(xs: &[f64]) -> Vec<f64> {
    xs.iter().map(|&x| T::DTYPE.round(x)).collect()
}

/// `y = softmax(x)` along each row: each row within [`Tolerance::relative`] of the rounded
/// reference, and its sum within that element-wise bound (times the sum of |y|) of the
/// reference's.
pub fn check_softmax<T: NormElement>(
    gpu: &Gpu,
    problem: &RowsProblem,
    x: &impl DevicePtr<T>,
    y: &impl DevicePtr<T>,
    seed: u64,
) -> NormResult<NormCheck> {
    softmax_host(NormOp::Softmax, problem, &gpu.download(x)?, &gpu.download(y)?, &sample_rows(problem, seed))
}

/// `y = log_softmax(x)` along each row: each row within [`Tolerance::for_output`] (scale 1:
/// values near 0 carry the absolute error of the log of the row sum) of the rounded reference.
pub fn check_log_softmax<T: NormElement>(
    gpu: &Gpu,
    problem: &RowsProblem,
    x: &impl DevicePtr<T>,
    y: &impl DevicePtr<T>,
    seed: u64,
) -> NormResult<NormCheck> {
    softmax_host(NormOp::LogSoftmax, problem, &gpu.download(x)?, &gpu.download(y)?, &sample_rows(problem, seed))
}

fn softmax_host<T: NormElement>(
    op: NormOp,
    p: &RowsProblem,
    x: &[T],
    y: &[T],
    rows: &[usize],
) -> NormResult<NormCheck> {
    let (xs, shape) = checked_rows(op, p, None, x, y.len(), &[], rows)?;
    let (want, tol, sums) = if op == NormOp::Softmax {
        let tol = Tolerance::relative(T::DTYPE);
        (cpu::softmax(&xs, shape), tol, Some(tol.elementwise))
    } else {
        (cpu::log_softmax(&xs, shape), Tolerance::for_output(T::DTYPE), None)
    };
    let y = check_rows(&gather(y, rows, p.cols, p.cols), &rounded::<T>(&want), p.cols, tol, sums)?;
    Ok(NormCheck { summary: y.summary, y, stats: None, rows_checked: rows.len() })
}

/// LayerNorm forward: `y` row by row within [`Tolerance::for_output`] of the rounded
/// reference (scale 1), the saved `mean` to 1e-5 absolute and `rstd` to 1e-5 relative.
pub fn check_layernorm<T: NormElement>(
    gpu: &Gpu,
    problem: &RowsProblem,
    x: &impl DevicePtr<T>,
    gamma: &impl DevicePtr<T>,
    beta: &impl DevicePtr<T>,
    eps: f32,
    y: &impl DevicePtr<T>,
    mean: &impl DevicePtr<f32>,
    rstd: &impl DevicePtr<f32>,
    seed: u64,
) -> NormResult<NormCheck> {
    let params = [gpu.download(gamma)?, gpu.download(beta)?];
    let stats = [gpu.download(mean)?, gpu.download(rstd)?];
    let (x, y) = (gpu.download(x)?, gpu.download(y)?);
    layernorm_host(problem, &x, &params, eps, &y, &stats, &sample_rows(problem, seed))
}

fn layernorm_host<T: NormElement>(
    p: &RowsProblem,
    x: &[T],
    [gamma, beta]: &[Vec<T>; 2],
    eps: f32,
    y: &[T],
    [mean, rstd]: &[Vec<f32>; 2],
    rows: &[usize],
) -> NormResult<NormCheck> {
    let buffers = [
        ("gamma", Extent::PerColumn, gamma.len()),
        ("beta", Extent::PerColumn, beta.len()),
        ("mean", Extent::PerRow, mean.len()),
        ("rstd", Extent::PerRow, rstd.len()),
    ];
    let (xs, shape) = checked_rows(NormOp::LayerNorm, p, Some(eps), x, y.len(), &buffers, rows)?;
    let (gamma, beta) = (to_f64_vec(&gamma[..p.cols]), to_f64_vec(&beta[..p.cols]));
    let want = cpu::layernorm(&xs, shape, &gamma, &beta, f64::from(eps));
    let stats = compare(&per_row(mean, rows), &want.mean, MEAN).and(compare(&per_row(rstd, rows), &want.rstd, RSTD));
    finish::<T>(p, y, rows, &want.y, stats)
}

/// RMSNorm forward: `y` as for [`check_layernorm`], the saved `rstd` to 1e-5 relative.
pub fn check_rmsnorm<T: NormElement>(
    gpu: &Gpu,
    problem: &RowsProblem,
    x: &impl DevicePtr<T>,
    gamma: &impl DevicePtr<T>,
    eps: f32,
    y: &impl DevicePtr<T>,
    rstd: &impl DevicePtr<f32>,
    seed: u64,
) -> NormResult<NormCheck> {
    let (x, gamma, y, rstd) = (gpu.download(x)?, gpu.download(gamma)?, gpu.download(y)?, gpu.download(rstd)?);
    rmsnorm_host(problem, &x, &gamma, eps, &y, &rstd, &sample_rows(problem, seed))
}

fn rmsnorm_host<T: NormElement>(
    p: &RowsProblem,
    x: &[T],
    gamma: &[T],
    eps: f32,
    y: &[T],
    rstd: &[f32],
    rows: &[usize],
) -> NormResult<NormCheck> {
    let buffers = [("gamma", Extent::PerColumn, gamma.len()), ("rstd", Extent::PerRow, rstd.len())];
    let (xs, shape) = checked_rows(NormOp::RmsNorm, p, Some(eps), x, y.len(), &buffers, rows)?;
    let want = cpu::rmsnorm(&xs, shape, &to_f64_vec(&gamma[..p.cols]), f64::from(eps));
    finish::<T>(p, y, rows, &want.y, compare(&per_row(rstd, rows), &want.rstd, RSTD))
}

/// Fused add and LayerNorm forward: `h` against x + residual rounded to T, then `y`, mean
/// and rstd as [`check_layernorm`] holds them, of the `h` the kernel wrote (dense rows).
pub fn check_add_layernorm<T: NormElement>(
    gpu: &Gpu,
    problem: &RowsProblem,
    x: &impl DevicePtr<T>,
    residual: &impl DevicePtr<T>,
    gamma: &impl DevicePtr<T>,
    beta: &impl DevicePtr<T>,
    eps: f32,
    h: &impl DevicePtr<T>,
    y: &impl DevicePtr<T>,
    mean: &impl DevicePtr<f32>,
    rstd: &impl DevicePtr<f32>,
    seed: u64,
) -> NormResult<NormCheck> {
    let rows = sample_rows(problem, seed);
    let h = gpu.download(h)?;
    let sum = sum_host(problem, &gpu.download(x)?, &gpu.download(residual)?, &h, &rows)?;
    let params = [gpu.download(gamma)?, gpu.download(beta)?];
    let stats = [gpu.download(mean)?, gpu.download(rstd)?];
    let dense = RowsProblem::dense(problem.rows, problem.cols);
    let check = layernorm_host(&dense, &h, &params, eps, &gpu.download(y)?, &stats, &rows)?;
    Ok(NormCheck { summary: check.summary.and(sum), ..check })
}

/// Fused add and RMSNorm forward: `h` as for [`check_add_layernorm`], then `y` and rstd as
/// [`check_rmsnorm`] holds them, of that `h`.
pub fn check_add_rmsnorm<T: NormElement>(
    gpu: &Gpu,
    problem: &RowsProblem,
    x: &impl DevicePtr<T>,
    residual: &impl DevicePtr<T>,
    gamma: &impl DevicePtr<T>,
    eps: f32,
    h: &impl DevicePtr<T>,
    y: &impl DevicePtr<T>,
    rstd: &impl DevicePtr<f32>,
    seed: u64,
) -> NormResult<NormCheck> {
    let rows = sample_rows(problem, seed);
    let h = gpu.download(h)?;
    let sum = sum_host(problem, &gpu.download(x)?, &gpu.download(residual)?, &h, &rows)?;
    let dense = RowsProblem::dense(problem.rows, problem.cols);
    let (gamma, y, rstd) = (gpu.download(gamma)?, gpu.download(y)?, gpu.download(rstd)?);
    let check = rmsnorm_host(&dense, &h, &gamma, eps, &y, &rstd, &rows)?;
    Ok(NormCheck { summary: check.summary.and(sum), ..check })
}

/// A fused add's `h` (dense) on `rows` against x + residual (rows `row_stride` apart), the
/// exact sum rounded to T (the kernels' f32 sum differs from it by at most T's rounding).
fn sum_host<T: NormElement>(
    p: &RowsProblem,
    x: &[T],
    residual: &[T],
    h: &[T],
    rows: &[usize],
) -> NormResult<Comparison> {
    let buffers = [("residual", Extent::Rows, residual.len())];
    let (xs, _) = checked_rows(NormOp::AddRmsNorm, p, None, x, h.len(), &buffers, rows)?;
    let rs = gather(residual, rows, p.row_stride, p.cols);
    let want: Vec<f64> = xs.iter().zip(&rs).map(|(a, b)| a + b).collect();
    let tol = Tolerance::for_output(T::DTYPE);
    Ok(check_rows(&gather(h, rows, p.cols, p.cols), &rounded::<T>(&want), p.cols, tol, None)?.summary)
}

/// Checks eps and the buffers of `op` (x, a dense y of `y_len` elements, and `others`) as
/// a launch does, then gathers the checked rows of x, densely, with their shape.
fn checked_rows<T: Element>(
    op: NormOp,
    p: &RowsProblem,
    eps: Option<f32>,
    x: &[T],
    y_len: usize,
    others: &[(&'static str, Extent, usize)],
    rows: &[usize],
) -> NormResult<(Vec<f64>, Rows)> {
    eps.map_or(Ok(()), |eps| check_eps(op.name(), eps))?;
    let mut buffers = vec![("x", Extent::Rows, x.len()), ("y", Extent::Dense, y_len)];
    buffers.extend_from_slice(others);
    check_buffers(op, p, &buffers)?;
    Ok((gather(x, rows, p.row_stride, p.cols), Rows::dense(rows.len(), p.cols)))
}

/// The rows of `y` against the unrounded reference `want`, joined with the statistics.
fn finish<T: NormElement>(
    p: &RowsProblem,
    y: &[T],
    rows: &[usize],
    want: &[f64],
    stats: Comparison,
) -> NormResult<NormCheck> {
    let tol = Tolerance::for_output(T::DTYPE);
    let y = check_rows(&gather(y, rows, p.cols, p.cols), &rounded::<T>(want), p.cols, tol, None)?;
    Ok(NormCheck { summary: y.summary.and(stats), y, stats: Some(stats), rows_checked: rows.len() })
}

/// A norm backward's dx error: the relative Frobenius error of `got` against `want` (both
/// dense rows x cols), taken relative to the larger of ||want|| and ||dy * gamma * rstd||,
/// the size of the terms dx is the difference of (`dy` strided as `problem` says, `rstd` one
/// per row). For long rows the two norms are alike; for rows of one or two elements dx
/// cancels to about 0 (one element: rstd * g * eps / (x^2 + eps); two: exactly 0, xhat =
/// +-1), and a bound relative to ||want|| alone would ask f32 rounding of the terms to
/// vanish. Reference entries that are not finite are left to the element-wise check.
pub fn norm_dx_rel_err(
    got: &[f64],
    want: &[f64],
    problem: &RowsProblem,
    dy: &[f64],
    gamma: &[f64],
    rstd: &[f64],
) -> f64 {
    let (num, den) = got
        .iter()
        .zip(want)
        .filter(|(_, w)| w.is_finite())
        .fold((0.0, 0.0), |(n, d), (g, w)| (n + (g - w) * (g - w), d + w * w));
    let (cols, stride) = (problem.cols, problem.row_stride);
    let terms: f64 = (0..problem.rows)
        .flat_map(|i| (0..cols).map(move |j| (i, j)))
        .map(|(i, j)| (dy[i * stride + j] * gamma[j] * rstd[i]).powi(2))
        .sum();
    let den = den.max(terms);
    if den > 0.0 {
        (num / den).sqrt()
    } else {
        num.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckb_common::{bf16, random};

    const EPS: f32 = 1e-5;

    /// Padded rows of 1000 (stride 1003), 130 rows: two whole 64-row blocks and a partial one.
    fn problem() -> RowsProblem {
        RowsProblem::new(130, 1000, 1003)
    }

    fn written<T: NormElement>(exact: &[f64]) -> Vec<T> {
        exact.iter().map(|&v| T::from_f64(v)).collect()
    }

    #[test]
    fn softmax_rows_pass_when_right_and_fail_when_one_row_is_wrong() {
        let p = problem();
        let x: Vec<bf16> = random::normal(p.input_len(), 1);
        let all: Vec<usize> = (0..p.rows).collect();
        for op in [NormOp::Softmax, NormOp::LogSoftmax] {
            let exact = {
                let x = to_f64_vec(&x);
                match op {
                    NormOp::Softmax => cpu::softmax(&x, p.reference_rows()),
                    _ => cpu::log_softmax(&x, p.reference_rows()),
                }
            };
            let y: Vec<bf16> = written(&exact);
            let ok = softmax_host(op, &p, &x, &y, &all).unwrap();
            assert!(ok.summary.passed && ok.rows_checked == 130, "{op:?} {ok:?}");
            for (a, b) in [(77, 78), (129, 0)] {
                let mut swapped = y.clone();
                for j in 0..p.cols {
                    swapped.swap(a * p.cols + j, b * p.cols + j);
                }
                let c = softmax_host(op, &p, &x, &swapped, &all).unwrap();
                assert_eq!((c.summary.passed, c.y.failed_rows), (false, 2), "{op:?}");
            }
            // Only the sampled rows are read, found at their own place in x and y.
            let mut others_wrong = y.clone();
            others_wrong[5 * p.cols..6 * p.cols].fill(bf16::NAN);
            assert!(softmax_host(op, &p, &x, &others_wrong, &[0, 4, 6, 129]).unwrap().summary.passed);
            assert!(!softmax_host(op, &p, &x, &others_wrong, &[0, 5, 129]).unwrap().summary.passed);
        }
    }

    #[test]
    fn fused_sums_are_held_element_by_element() {
        let p = problem();
        let (x, r): (Vec<bf16>, Vec<bf16>) = (random::normal(p.input_len(), 5), random::normal(p.input_len(), 6));
        let rows: Vec<usize> = (0..p.rows).collect();
        let h: Vec<bf16> = (0..p.output_len())
            .map(|e| {
                let at = e / p.cols * p.row_stride + e % p.cols;
                bf16::from_f64(x[at].to_f64() + r[at].to_f64())
            })
            .collect();
        assert!(sum_host(&p, &x, &r, &h, &rows).unwrap().passed);
        let mut off = h.clone();
        off[77 * p.cols + 500] = bf16::from_f64(off[77 * p.cols + 500].to_f64() + 0.5);
        assert!(!sum_host(&p, &x, &r, &off, &rows).unwrap().passed);
        assert!(sum_host(&p, &x, &r[..10], &h, &rows).is_err(), "a short residual is refused");
    }

    #[test]
    fn layernorm_and_rmsnorm_check_their_statistics() {
        let p = problem();
        let x: Vec<f32> = random::normal(p.input_len(), 2);
        let (gamma, beta): (Vec<f32>, Vec<f32>) = (random::normal(p.cols, 3), random::normal(p.cols, 4));
        let (x64, g64, b64) = (to_f64_vec(&x), to_f64_vec(&gamma), to_f64_vec(&beta));
        let rows: Vec<usize> = (0..p.rows).collect();
        let ln = cpu::layernorm(&x64, p.reference_rows(), &g64, &b64, f64::from(EPS));
        let (y, mean, rstd): (Vec<f32>, Vec<f32>, Vec<f32>) = (written(&ln.y), written(&ln.mean), written(&ln.rstd));
        let params = [gamma.clone(), beta];
        let check = |y: &[f32], mean: &[f32], rstd: &[f32]| {
            layernorm_host(&p, &x, &params, EPS, y, &[mean.to_vec(), rstd.to_vec()], &rows).unwrap().summary.passed
        };
        assert!(check(&y, &mean, &rstd));
        let mut bad_mean = mean.clone();
        bad_mean[64] += 1e-4;
        assert!(!check(&y, &bad_mean, &rstd));
        let mut bad_rstd = rstd.clone();
        bad_rstd[129] = f32::NAN;
        assert!(!check(&y, &mean, &bad_rstd));
        let mut bad_y = y.clone();
        bad_y[p.output_len() - 10..].fill(0.0);
        assert!(!check(&bad_y, &mean, &rstd));

        let rms = cpu::rmsnorm(&x64, p.reference_rows(), &g64, f64::from(EPS));
        let (y, rstd): (Vec<f32>, Vec<f32>) = (written(&rms.y), written(&rms.rstd));
        assert!(rmsnorm_host(&p, &x, &gamma, EPS, &y, &rstd, &rows).unwrap().summary.passed);
        let mut bad_rstd = rstd.clone();
        bad_rstd[3] *= 1.001;
        assert!(!rmsnorm_host(&p, &x, &gamma, EPS, &y, &bad_rstd, &rows).unwrap().summary.passed);
    }

    #[test]
    fn short_buffers_and_bad_eps_are_typed_errors() {
        let p = problem();
        let x = vec![0.0f32; p.input_len()];
        let y = vec![0.0f32; p.output_len()];
        assert!(softmax_host(NormOp::Softmax, &p, &x[1..], &y, &[0]).is_err());
        assert!(softmax_host(NormOp::Softmax, &p, &x, &y[1..], &[0]).is_err());
        let g = vec![1.0f32; p.cols];
        assert!(rmsnorm_host(&p, &x, &g, -1.0, &y, &vec![1.0; p.rows], &[0]).is_err());
        assert!(rmsnorm_host(&p, &x, &g[1..], EPS, &y, &vec![1.0; p.rows], &[0]).is_err());
    }

    #[test]
    fn gate_shapes_are_checked_whole_and_larger_ones_on_every_block() {
        assert_eq!(sample_rows(&RowsProblem::dense(32768, 4096), 1).len(), 32768);
        assert_eq!(sample_rows(&RowsProblem::dense(512, 262144), 1).len(), 512);
        let rows = sample_rows(&RowsProblem::dense(65536, 8192), 1);
        assert!((1024..=1026).contains(&rows.len()), "{}", rows.len());
    }
}
