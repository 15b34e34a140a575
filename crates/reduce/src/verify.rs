//! Checking a device result against the float64 [`reference`](crate::reference):
//! - value reductions ([`check_reduce`], [`check_reduce_axis`]): sum, mean, sum of squares
//!   and L2 norm to the output type's [`Tolerance::for_output`], on the scale their
//!   rounding errors grow with; max and min exactly;
//! - arg reductions ([`check_arg_reduce`], [`check_arg_reduce_axis`]): the reference's index
//!   (first index on ties, first NaN) and its value, exactly;
//! - element-wise ops ([`check_binary`], [`check_cast`]): in ulps of the correctly rounded
//!   result ([`within_ulps`]).
//!
//! Random normal inputs almost never put a maximum where a faulty kernel looks away: plant
//! extremes at the tail and inside a block first ([`ckb_common::plant_extrema`]).

use ckb_common::{compare, to_f64_vec, within_ulps, Comparison, DType, Gpu, Tolerance, UlpCheck};
use cudarc::driver::DevicePtr;

use crate::elementwise::BinaryOp;
use crate::problem::{require_len, ArgOp, AxisProblem, EwElement, ReduceOp, ReduceOutput, ReduceResult};
use crate::reference::{self as cpu, StridedView};

/// `out` (the device result of `op` along `axis` of the contiguous row-major tensor `x` of
/// `shape`) against the reference rounded to `O`. Sums are held to the output type's
/// bounds with scale the largest ||lane||_2 (what the rounding errors of a sum grow with;
/// a sum may cancel to near 0), means to that over the lane length; sums of squares and L2
/// norms, which cannot cancel, relative to themselves; max and min to 0 ulps.
pub fn check_reduce_axis<T: EwElement, O: ReduceOutput<T>>(
    gpu: &Gpu,
    op: ReduceOp,
    x: &impl DevicePtr<T>,
    shape: &[usize],
    axis: usize,
    out: &impl DevicePtr<O>,
) -> ReduceResult<Comparison> {
    let x = to_f64_vec(&gpu.download(x)?);
    reduce_host(op, &x, shape, axis, &to_f64_vec(&gpu.download(out)?), O::DTYPE)
}

/// [`check_reduce_axis`] over all of `x` (`out` holds one element).
pub fn check_reduce<T: EwElement, O: ReduceOutput<T>>(
    gpu: &Gpu,
    op: ReduceOp,
    x: &impl DevicePtr<T>,
    out: &impl DevicePtr<O>,
) -> ReduceResult<Comparison> {
    check_reduce_axis(gpu, op, x, &[x.len()], 0, out)
}

fn reduce_host(
    op: ReduceOp,
    x: &[f64],
    shape: &[usize],
    axis: usize,
    out: &[f64],
    dtype: DType,
) -> ReduceResult<Comparison> {
    let problem = AxisProblem::along(op.name(), shape, axis)?;
    require_len(op.name(), "x", problem.elements(), x.len())?;
    require_len(op.name(), "out", problem.outputs(), out.len())?;
    let (x, out) = (&x[..problem.elements()], &out[..problem.outputs()]);
    let view = StridedView::contiguous(x, shape)?;
    let want = cpu::reduce_axis(op, &view, axis)?;
    if matches!(op, ReduceOp::Max | ReduceOp::Min) {
        return Ok(within_ulps(out, &want, dtype, 0)?.summary);
    }
    let largest_norm = || -> ReduceResult<f64> {
        let norms = cpu::reduce_axis(ReduceOp::L2Norm, &view, axis)?;
        Ok(norms.into_iter().filter(|v| v.is_finite()).fold(0.0, f64::max))
    };
    let scale = match op {
        ReduceOp::Sum => largest_norm()?,
        ReduceOp::Mean => largest_norm()? / shape[axis].max(1) as f64,
        _ => 0.0,
    };
    let rounded: Vec<f64> = want.iter().map(|&v| dtype.round(v)).collect();
    Ok(compare(out, &rounded, Tolerance::for_output(dtype).with_scale(scale)))
}

/// The outcome of an arg-reduction check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArgCheck {
    /// The values against the reference's, to 0 ulps ([`UlpCheck::summary`]); `passed`
    /// only when every value and every index matched.
    pub summary: Comparison,
    /// Outputs whose index differs from the reference's.
    pub index_mismatches: usize,
    /// The first of them.
    pub first_index_mismatch: Option<usize>,
}

/// `values` and `indices` (the device result of `op` along `axis` of `x` of `shape`)
/// against the reference: the same index along the axis (the first one on ties, the first
/// NaN if any) and exactly its value.
pub fn check_arg_reduce_axis<T: EwElement, O: ReduceOutput<T>>(
    gpu: &Gpu,
    op: ArgOp,
    x: &impl DevicePtr<T>,
    shape: &[usize],
    axis: usize,
    values: &impl DevicePtr<O>,
    indices: &impl DevicePtr<i64>,
) -> ReduceResult<ArgCheck> {
    let x = to_f64_vec(&gpu.download(x)?);
    let values = to_f64_vec(&gpu.download(values)?);
    let indices = gpu.stream.clone_dtoh(indices).map_err(ckb_common::GpuError::from)?;
    arg_reduce_host(op, &x, shape, axis, &values, &indices, O::DTYPE)
}

/// [`check_arg_reduce_axis`] over all of `x` (flat index; one value and one index).
pub fn check_arg_reduce<T: EwElement, O: ReduceOutput<T>>(
    gpu: &Gpu,
    op: ArgOp,
    x: &impl DevicePtr<T>,
    value: &impl DevicePtr<O>,
    index: &impl DevicePtr<i64>,
) -> ReduceResult<ArgCheck> {
    check_arg_reduce_axis(gpu, op, x, &[x.len()], 0, value, index)
}

fn arg_reduce_host(
    op: ArgOp,
    x: &[f64],
    shape: &[usize],
    axis: usize,
    values: &[f64],
    indices: &[i64],
    dtype: DType,
) -> ReduceResult<ArgCheck> {
    let problem = AxisProblem::along(op.name(), shape, axis)?;
    require_len(op.name(), "x", problem.elements(), x.len())?;
    require_len(op.name(), "values", problem.outputs(), values.len())?;
    require_len(op.name(), "indices", problem.outputs(), indices.len())?;
    let (x, values, indices) = (&x[..problem.elements()], &values[..problem.outputs()], &indices[..problem.outputs()]);
    let want = cpu::arg_reduce_axis(op, &StridedView::contiguous(x, shape)?, axis)?;
    let want_values: Vec<f64> = want.iter().map(|w| w.value).collect();
    let mut summary = within_ulps(values, &want_values, dtype, 0)?.summary;
    let mismatched = |j: &usize| i64::try_from(want[*j].index) != Ok(indices[*j]);
    let index_mismatches = (0..want.len()).filter(mismatched).count();
    summary.passed &= index_mismatches == 0;
    Ok(ArgCheck { summary, index_mismatches, first_index_mismatch: (0..want.len()).find(mismatched) })
}

/// `out = a op b` (all of one type) within one ulp of the correctly rounded result: f32
/// math rounded once more to a 16-bit type may be one ulp off (double rounding).
pub fn check_binary<T: EwElement>(
    gpu: &Gpu,
    op: BinaryOp,
    a: &impl DevicePtr<T>,
    b: &impl DevicePtr<T>,
    out: &impl DevicePtr<T>,
) -> ReduceResult<UlpCheck> {
    require_len(op.name(), "b", a.len(), b.len())?;
    require_len(op.name(), "out", a.len(), out.len())?;
    let n = a.len();
    let (a, b) = (to_f64_vec(&gpu.download(a)?), to_f64_vec(&gpu.download(b)?)[..n].to_vec());
    let exact = match op {
        BinaryOp::Add => cpu::add(&a, &b),
        BinaryOp::Sub => cpu::sub(&a, &b),
        BinaryOp::Mul => cpu::mul(&a, &b),
        BinaryOp::AddRelu => cpu::add_relu(&a, &b),
    };
    Ok(within_ulps(&to_f64_vec(&gpu.download(out)?)[..n], &exact, T::DTYPE, 1)?)
}

/// `y = x as D`, exactly the correctly rounded value: every f32, f16 and bf16 value is exact
/// in f32, so a conversion rounds once and has no excuse for an ulp (a truncating one fails).
pub fn check_cast<S: EwElement, D: EwElement>(
    gpu: &Gpu,
    x: &impl DevicePtr<S>,
    y: &impl DevicePtr<D>,
) -> ReduceResult<UlpCheck> {
    require_len("cast", "dst", x.len(), y.len())?;
    // within_ulps rounds the exact source values to D: the reference's `cast`.
    Ok(within_ulps(&to_f64_vec(&gpu.download(y)?)[..x.len()], &to_f64_vec(&gpu.download(x)?), D::DTYPE, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckb_common::{bf16, plant_extrema, random};

    fn normals(n: usize, seed: u64) -> Vec<f64> {
        to_f64_vec(&random::normal::<bf16>(n, seed))
    }

    #[test]
    fn sums_pass_with_f32_noise_and_fail_on_a_dropped_lane_or_block() {
        let (rows, cols) = (64, 4096);
        let x = normals(rows * cols, 1);
        let exact = cpu::reduce_axis(ReduceOp::Sum, &StridedView::contiguous(&x, &[rows, cols]).unwrap(), 1).unwrap();
        // A correct f32 sum: the exact one rounded to f32 plus f32 accumulation noise.
        let ours: Vec<f64> =
            exact.iter().enumerate().map(|(i, &s)| f64::from((s + 1e-6 * (i % 3) as f64) as f32)).collect();
        assert!(reduce_host(ReduceOp::Sum, &x, &[rows, cols], 1, &ours, DType::F32).unwrap().passed);
        // A lane left unwritten, and a lane missing one 256-element block of its inputs.
        let mut unwritten = ours.clone();
        unwritten[rows - 1] = f64::NAN;
        assert!(!reduce_host(ReduceOp::Sum, &x, &[rows, cols], 1, &unwritten, DType::F32).unwrap().passed);
        let mut short = ours.clone();
        short[7] -= x[7 * cols + 1024..7 * cols + 1280].iter().sum::<f64>();
        assert!(!reduce_host(ReduceOp::Sum, &x, &[rows, cols], 1, &short, DType::F32).unwrap().passed);
        // Means are judged on their own scale: the sum's error divided by the length.
        let mean_ok: Vec<f64> = ours.iter().map(|s| s / cols as f64).collect();
        assert!(reduce_host(ReduceOp::Mean, &x, &[rows, cols], 1, &mean_ok, DType::F32).unwrap().passed);
        let mean_short: Vec<f64> = short.iter().map(|s| s / cols as f64).collect();
        assert!(!reduce_host(ReduceOp::Mean, &x, &[rows, cols], 1, &mean_short, DType::F32).unwrap().passed);
    }

    #[test]
    fn planted_extrema_fail_a_max_that_drops_the_tail_and_an_argmin_that_drops_a_block() {
        let n = 1_000_007;
        let mut input: Vec<bf16> = random::normal(n, 2);
        let planted = plant_extrema(&mut input, true, 3).unwrap();
        let x = to_f64_vec(&input);
        let max = |s: &[f64]| s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(reduce_host(ReduceOp::Max, &x, &[n], 0, &[max(&x)], DType::BF16).unwrap().passed);
        assert!(!reduce_host(ReduceOp::Max, &x, &[n], 0, &[max(&x[..n - 3])], DType::BF16).unwrap().passed);
        // Rounded to bf16 the planted maximum is the same, but max allows no ulp at all.
        let off = ckb_common::ulps_away(max(&x), DType::BF16, -1);
        assert!(!reduce_host(ReduceOp::Max, &x, &[n], 0, &[off], DType::BF16).unwrap().passed);

        let min_value = x[planted.min_at];
        let ok = arg_reduce_host(ArgOp::ArgMin, &x, &[n], 0, &[min_value], &[planted.min_at as i64], DType::F32);
        assert!(ok.unwrap().summary.passed);
        // Without the 4096-element block holding the minimum, the kernel finds another one.
        let block = planted.min_at / 4096 * 4096;
        let (other_at, other) = x
            .iter()
            .enumerate()
            .filter(|(i, _)| !(block..block + 4096).contains(i))
            .fold((0, f64::INFINITY), |best, (i, &v)| if v < best.1 { (i, v) } else { best });
        let c = arg_reduce_host(ArgOp::ArgMin, &x, &[n], 0, &[other], &[other_at as i64], DType::F32).unwrap();
        assert!(!c.summary.passed && c.index_mismatches == 1 && c.first_index_mismatch == Some(0));
    }

    #[test]
    fn arg_reductions_need_the_first_index_of_a_tie() {
        let x = [1.0, 3.0, 3.0, 2.0, 0.5, 0.5];
        let good = arg_reduce_host(ArgOp::ArgMax, &x, &[2, 3], 1, &[3.0, 2.0], &[1, 0], DType::F32).unwrap();
        assert!(good.summary.passed, "{good:?}");
        let late = arg_reduce_host(ArgOp::ArgMax, &x, &[2, 3], 1, &[3.0, 2.0], &[2, 0], DType::F32).unwrap();
        assert_eq!((late.summary.passed, late.first_index_mismatch), (false, Some(0)));
        let wrong_value = arg_reduce_host(ArgOp::ArgMax, &x, &[2, 3], 1, &[3.0, 2.5], &[1, 0], DType::F32).unwrap();
        assert!(!wrong_value.summary.passed && wrong_value.index_mismatches == 0);
        // Along axis 0 the index counts rows.
        let cols = arg_reduce_host(ArgOp::ArgMin, &x, &[2, 3], 0, &[1.0, 0.5, 0.5], &[0, 1, 1], DType::F32).unwrap();
        assert!(cols.summary.passed, "{cols:?}");
    }

    #[test]
    fn short_buffers_are_typed_errors_and_longer_ones_are_checked_on_their_start() {
        let x = [1.0, 2.0, 3.0];
        assert!(reduce_host(ReduceOp::Sum, &x, &[3], 0, &[], DType::F32).is_err());
        // At least the needed length, as the launches take: the extra element is not read.
        assert!(reduce_host(ReduceOp::Sum, &x, &[3], 0, &[6.0, f64::NAN], DType::F32).unwrap().passed);
        assert!(reduce_host(ReduceOp::Sum, &x, &[4], 0, &[6.0], DType::F32).is_err());
        assert!(reduce_host(ReduceOp::Sum, &x, &[3], 1, &[6.0], DType::F32).is_err());
        assert!(arg_reduce_host(ArgOp::ArgMax, &x, &[3], 0, &[3.0], &[], DType::F32).is_err());
        assert!(arg_reduce_host(ArgOp::ArgMax, &[], &[0], 0, &[], &[], DType::F32).is_err());
        assert!(reduce_host(ReduceOp::Sum, &x, &[3], 0, &[bf16::from_f64(6.0).to_f64()], DType::BF16).unwrap().passed);
    }
}
