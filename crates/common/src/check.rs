//! Checkers that can fail. Each one is built so that the ways a kernel goes wrong (a row
//! zeroed, swapped or half written, a tile written to the wrong place, a dropped tail, a few
//! ulps off) fail it, while a correct result with realistic rounding noise passes; the
//! mutation tests at the bottom of this file hold each checker to that.
//!
//! - [`within_ulps`]: exact element-wise ops (add, sub, mul within one type, casts) against
//!   the correctly rounded reference, in ulps of the output type.
//! - [`check_rows`]: row-wise outputs (softmax, normalizations), each row held to its own
//!   bound, so one bad row fails even among 32768 good ones.
//! - [`tile_covering_rows`]: the rows of a large output to check against a float64
//!   reference, at least one in every 64-row tile.
//! - [`cross_check`]: a whole output against a vendor library's output from the same run,
//!   bounded by both sides' errors measured on the sampled rows.
//! - [`plant_extrema`]: inputs for max, min, argmax and argmin whose answers sit at the tail
//!   and inside a random block.
//!
//! Dense outputs and references are f64 slices holding values of the output type
//! ([`crate::to_f64_vec`]); tolerances are [`Tolerance`]s from [`crate::compare`](mod@crate::compare).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::compare::{compare, Comparison, Tolerance};
use crate::element::{DType, Element};
use crate::error::{GpuError, GpuResult};

fn same_len(what: &'static str, left: usize, right: usize) -> GpuResult<()> {
    if left == right {
        Ok(())
    } else {
        Err(GpuError::LengthMismatch { what, left, right })
    }
}

/// Position of a finite value of `dtype` on its number line: neighbouring values differ by
/// one, and both zeros are 0.
fn ulp_ordinal(x: f64, dtype: DType) -> i64 {
    let width = 8 * dtype.size_bytes() as u32;
    let bits = dtype.bits(x);
    let magnitude = i64::from(bits & ((1u32 << (width - 1)) - 1));
    if bits >> (width - 1) == 1 {
        -magnitude
    } else {
        magnitude
    }
}

/// How many values of `dtype` lie between two of its finite values: 0 for equal values
/// (and for -0 against +0), 1 for neighbours.
pub fn ulp_distance(a: f64, b: f64, dtype: DType) -> u64 {
    ulp_ordinal(a, dtype).abs_diff(ulp_ordinal(b, dtype))
}

/// The value `steps` ulps of `dtype` above `x` (below for negative steps), `x` rounded to
/// `dtype` first; stepping across zero skips -0. Past the largest finite value the result
/// is whatever the bit pattern holds (inf or NaN).
pub fn ulps_away(x: f64, dtype: DType, steps: i64) -> f64 {
    let width = 8 * dtype.size_bytes() as u32;
    let ordinal = ulp_ordinal(x, dtype) + steps;
    let bits = if ordinal < 0 { (1u32 << (width - 1)) | ordinal.unsigned_abs() as u32 } else { ordinal as u32 };
    dtype.from_bits(bits)
}

/// The outcome of [`within_ulps`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct UlpCheck {
    /// The figures a record keeps, against the reference rounded to the output type:
    /// relative Frobenius error, worst |out - ref|, worst |out - ref| / |ref| (|ref| no
    /// smaller than the type's smallest normal), NaN/inf mismatches; `passed` is the verdict.
    pub summary: Comparison,
    /// The largest distance in ulps between a finite output and its rounded reference.
    pub max_ulps: u64,
    /// Elements that failed: further than the bound, NaN or inf unmatched, or not a value
    /// of the output type at all.
    pub failures: usize,
    /// The first element that failed.
    pub first_failure: Option<usize>,
}

/// Running figures of [`within_ulps`], merged across threads.
#[derive(Debug, Clone, Copy, Default)]
struct UlpTally {
    num: f64,
    den: f64,
    max_abs: f64,
    max_rel: f64,
    specials: usize,
    max_ulps: u64,
    failures: usize,
    first_failure: Option<usize>,
}

impl UlpTally {
    fn element(index: usize, out: f64, rounded: f64, dtype: DType, ulps: u64) -> UlpTally {
        let failed = UlpTally { failures: 1, first_failure: Some(index), ..UlpTally::default() };
        if !out.is_finite() || !rounded.is_finite() {
            let same = (out.is_nan() && rounded.is_nan()) || out == rounded;
            return if same { UlpTally::default() } else { UlpTally { specials: 1, ..failed } };
        }
        if dtype.round(out) != out {
            return failed;
        }
        let distance = ulp_distance(out, rounded, dtype);
        let diff = (out - rounded).abs();
        let tally = UlpTally {
            num: diff * diff,
            den: rounded * rounded,
            max_abs: diff,
            max_rel: diff / rounded.abs().max(dtype.min_positive_normal()),
            max_ulps: distance,
            ..UlpTally::default()
        };
        if distance > ulps {
            UlpTally { failures: 1, first_failure: Some(index), ..tally }
        } else {
            tally
        }
    }

    fn merge(self, other: UlpTally) -> UlpTally {
        UlpTally {
            num: self.num + other.num,
            den: self.den + other.den,
            max_abs: self.max_abs.max(other.max_abs),
            max_rel: self.max_rel.max(other.max_rel),
            specials: self.specials + other.specials,
            max_ulps: self.max_ulps.max(other.max_ulps),
            failures: self.failures + other.failures,
            first_failure: match (self.first_failure, other.first_failure) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// Checks an exactly specified element-wise result (add, sub or mul of one type, a cast):
/// each element of `out` must lie within `ulps` ulps of `dtype` of the reference rounded to
/// `dtype` ([`DType::round`]; pass the exact float64 result or one already rounded). A
/// NaN must meet a NaN and an infinity the same infinity; an output that is not a value of
/// `dtype` fails. A kernel computing in f32 and rounding once more to a 16-bit type can be
/// one ulp off (double rounding): call with `ulps = 1`; f32 results of one IEEE operation
/// are exact (`ulps = 0`).
pub fn within_ulps(out: &[f64], reference: &[f64], dtype: DType, ulps: u64) -> GpuResult<UlpCheck> {
    same_len("within_ulps: output and reference", out.len(), reference.len())?;
    let tally = out
        .par_iter()
        .zip(reference.par_iter())
        .enumerate()
        .map(|(i, (&o, &r))| UlpTally::element(i, o, dtype.round(r), dtype, ulps))
        .reduce(UlpTally::default, UlpTally::merge);
    let rel_err = if tally.den > 0.0 { (tally.num / tally.den).sqrt() } else { tally.num.sqrt() };
    Ok(UlpCheck {
        summary: Comparison {
            rel_err,
            max_abs_err: tally.max_abs,
            max_elementwise: tally.max_rel,
            nan_count: tally.specials,
            passed: tally.failures == 0,
        },
        max_ulps: tally.max_ulps,
        failures: tally.failures,
        first_failure: tally.first_failure,
    })
}

/// The outcome of [`check_rows`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RowCheck {
    /// Over all rows at once: relative Frobenius error, worst element, NaN count; `passed`
    /// only when every row passed on its own.
    pub summary: Comparison,
    /// Rows that failed their bound or their sum.
    pub failed_rows: usize,
    /// The first row that failed.
    pub first_failed_row: Option<usize>,
    /// The largest relative Frobenius error of a single row.
    pub worst_row_rel_err: f64,
    /// The largest |sum(out row) - sum(reference row)| / sum(|reference row|); 0 when sums
    /// are not checked, infinite when an output row sums to NaN.
    pub max_row_sum_err: f64,
}

/// Rows shorter than this are checked as [`check_rows`] says (one flipped rounding may be
/// most of their norm).
pub const SHORT_ROW: usize = 64;

/// One row's verdict inside [`check_rows`].
struct RowOutcome {
    passed: bool,
    rel_err: f64,
    sum_err: f64,
}

/// Checks a dense output of rows `cols` long row by row: each row must meet `tol` on its own
/// (relative Frobenius error of the row, element-wise bound, NaN only where the reference
/// has NaN), so a zeroed, swapped or half-written row fails however many good rows
/// surround it; in a single norm over 32768 rows one zeroed row is an error of 1/181.
/// With `row_sum = Some(bound)`, each row's sum must also be within `bound * sum(|ref|)`
/// of the reference row's sum (1 for softmax), skipped where the reference sum is not finite.
/// Rows shorter than [`SHORT_ROW`] are held to the element-wise bound in Frobenius too: one
/// flipped rounding of their largest element (correct fp32 math, rounded the other way than
/// the reference) is up to that bound of the whole row (bf16 rows of 7 failed 3e-3 so).
pub fn check_rows(
    out: &[f64],
    reference: &[f64],
    cols: usize,
    tol: Tolerance,
    row_sum: Option<f64>,
) -> GpuResult<RowCheck> {
    same_len("check_rows: output and reference", out.len(), reference.len())?;
    if (cols == 0 && !out.is_empty()) || (cols > 0 && !out.len().is_multiple_of(cols)) {
        return Err(GpuError::InvalidShape {
            what: "check_rows",
            detail: format!("{} elements are not whole rows of {cols}", out.len()),
        });
    }
    let tol =
        if cols < SHORT_ROW { Tolerance { rel_frobenius: tol.rel_frobenius.max(tol.elementwise), ..tol } } else { tol };
    let outcomes: Vec<RowOutcome> = out
        .par_chunks(cols.max(1))
        .zip(reference.par_chunks(cols.max(1)))
        .map(|(o, r)| {
            let c = compare(o, r, tol);
            let want: f64 = r.iter().sum();
            let sum_err = if row_sum.is_some() && want.is_finite() {
                let magnitude: f64 = r.iter().map(|v| v.abs()).sum();
                let err = (o.iter().sum::<f64>() - want).abs() / magnitude.max(f64::MIN_POSITIVE);
                if err.is_nan() {
                    f64::INFINITY
                } else {
                    err
                }
            } else {
                0.0
            };
            RowOutcome { passed: c.passed && row_sum.is_none_or(|bound| sum_err <= bound), rel_err: c.rel_err, sum_err }
        })
        .collect();
    let first_failed_row = outcomes.iter().position(|o| !o.passed);
    let mut summary = compare(out, reference, tol);
    summary.passed = first_failed_row.is_none();
    Ok(RowCheck {
        summary,
        failed_rows: outcomes.iter().filter(|o| !o.passed).count(),
        first_failed_row,
        worst_row_rel_err: outcomes.iter().map(|o| o.rel_err).fold(0.0, f64::max),
        max_row_sum_err: outcomes.iter().map(|o| o.sum_err).fold(0.0, f64::max),
    })
}

/// The tile height [`tile_covering_rows`] is usually called with: the M extent of one WGMMA,
/// the smallest M tile of any GEMM variant.
pub const CHECK_TILE_ROWS: usize = 64;

/// Rows of a `rows`-row output to check against a float64 reference when checking them
/// all costs too much: the first and the last row (where partial tiles and dropped tails
/// show), and one seeded random row inside every `tile`-row tile, so no tile goes unseen.
/// Sorted, without repeats; `tile` 0 counts as 1. Coverage sets the size, not a cap: about
/// `rows / tile + 2` rows, a 1/64 share of the full reference's cost at tile 64. Checking
/// whole rows then covers every tile along the other dimension too.
pub fn tile_covering_rows(rows: usize, tile: usize, seed: u64) -> Vec<usize> {
    if rows == 0 {
        return Vec::new();
    }
    let tile = tile.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picked = vec![0, rows - 1];
    picked.extend((0..rows).step_by(tile).map(|start| start + rng.gen_range(0..tile.min(rows - start))));
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// How far [`cross_check`] widens the errors measured on sampled rows.
pub const CROSS_CHECK_MARGIN: f64 = 2.0;

/// Checks our whole output against the vendor library's output for the same inputs in the
/// same run (dense, same order), where only sampled rows were checked against the float64
/// reference. `ours_sampled` and `theirs_sampled` are each side's comparison on those rows
/// with the *unrounded* reference and element-wise scale `scale`.
///
/// Derivation: for the exact result r, |ours - theirs| <= |ours - r| + |r - theirs|, and the
/// sampled rows measure both terms; [`CROSS_CHECK_MARGIN`] covers the unsampled rows
/// reaching a larger maximum than the sample (extremes grow like sqrt(ln n)) and |theirs|
/// standing in for |r|. The bounds never drop below what two correct roundings of nearly
/// equal values can differ by: one ulp, 2u relative, element-wise and in Frobenius norm.
pub fn cross_check(
    ours: &[f64],
    theirs: &[f64],
    ours_sampled: &Comparison,
    theirs_sampled: &Comparison,
    dtype: DType,
    scale: f64,
) -> GpuResult<Comparison> {
    same_len("cross_check: our output and the vendor's", ours.len(), theirs.len())?;
    let u = dtype.epsilon();
    let tol = Tolerance {
        rel_frobenius: (CROSS_CHECK_MARGIN * (ours_sampled.rel_err + theirs_sampled.rel_err)).max(2.0 * u),
        elementwise: (CROSS_CHECK_MARGIN * (ours_sampled.max_elementwise + theirs_sampled.max_elementwise))
            .max(2.0 * u),
        scale,
    };
    Ok(compare(ours, theirs, tol))
}

/// Where [`plant_extrema`] put the extremes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Planted {
    /// Index of the unique maximum.
    pub max_at: usize,
    /// Index of the unique minimum.
    pub min_at: usize,
}

/// Plants a unique maximum and a unique minimum into `x` (finite values, at least two): one
/// at the last index, which a kernel dropping the tail misses, the other at a seeded random
/// index below it, which a kernel dropping a block misses. `max_at_tail` says which goes
/// to the tail. A max (argmax) check sees only the fault at its own spot: check min
/// (argmin) on the same input too, or max on both plantings. The planted values are
/// `±(2 max|x| + 1)` rounded to `T`, strictly beyond every other element.
pub fn plant_extrema<T: Element>(x: &mut [T], max_at_tail: bool, seed: u64) -> GpuResult<Planted> {
    let bad = |detail: String| Err(GpuError::InvalidShape { what: "plant_extrema", detail });
    let n = x.len();
    if n < 2 {
        return bad(format!("{n} elements: the tail and a block need at least 2"));
    }
    let (largest, finite) = x
        .par_iter()
        .map(|v| (v.to_f64().abs(), v.to_f64().is_finite()))
        .reduce(|| (0.0, true), |a, b| (a.0.max(b.0), a.1 && b.1));
    if !finite {
        return bad("the input holds NaN or inf, which no planted value can beat".into());
    }
    let (high, low) = (T::from_f64(2.0 * largest + 1.0), T::from_f64(-(2.0 * largest + 1.0)));
    if !(high.to_f64() > largest && low.to_f64() < -largest && high.to_f64().is_finite() && low.to_f64().is_finite()) {
        return bad(format!("{} cannot hold a value beyond ±{largest}", T::DTYPE));
    }
    let inner = ChaCha8Rng::seed_from_u64(seed).gen_range(0..n - 1);
    let planted =
        if max_at_tail { Planted { max_at: n - 1, min_at: inner } } else { Planted { max_at: inner, min_at: n - 1 } };
    x[planted.max_at] = high;
    x[planted.min_at] = low;
    Ok(planted)
}

#[cfg(test)]
mod tests {
    //! Mutation tests. A "correct" output is the float64 reference plus a kernel's own
    //! f32-level noise, rounded to the output type; each mutant is one way kernels fail.
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
    }

    /// What a correct kernel writes: `reference` plus Gaussian noise of `sigma * (|r| +
    /// scale)` (its f32 math), rounded to `dtype`.
    fn computed(reference: &[f64], dtype: DType, sigma: f64, scale: f64, seed: u64) -> Vec<f64> {
        let noise = normals(reference.len(), seed);
        reference.iter().zip(noise).map(|(&r, z)| dtype.round(r + z * sigma * (r.abs() + scale))).collect()
    }

    fn rounded(reference: &[f64], dtype: DType) -> Vec<f64> {
        reference.iter().map(|&r| dtype.round(r)).collect()
    }

    /// The ways an output goes wrong, on a dense matrix of rows `cols` long.
    #[derive(Debug, Clone, Copy)]
    enum Mutant {
        ZeroRow(usize),
        SwapRows(usize, usize),
        /// The 64x64 tile at (row, col) overwritten by the tile at (from_row, col): a tile
        /// stored at the wrong coordinates.
        Tile {
            row: usize,
            col: usize,
            from_row: usize,
        },
        /// The last `len` elements left as they were before the kernel: NaN poison.
        TailNan(usize),
        /// The same with a zero-filled output buffer.
        TailZeros(usize),
        /// Half of one row left poisoned.
        HalfRow(usize),
        /// One element moved `steps` ulps of the output type.
        Ulps {
            at: usize,
            steps: i64,
        },
    }

    fn mutate(out: &[f64], cols: usize, dtype: DType, mutant: Mutant) -> Vec<f64> {
        let mut m = out.to_vec();
        let n = m.len();
        match mutant {
            Mutant::ZeroRow(r) => m[r * cols..(r + 1) * cols].fill(0.0),
            Mutant::SwapRows(a, b) => {
                for j in 0..cols {
                    m.swap(a * cols + j, b * cols + j);
                }
            }
            Mutant::Tile { row, col, from_row } => {
                for i in 0..64 {
                    for j in 0..64 {
                        m[(row + i) * cols + col + j] = out[(from_row + i) * cols + col + j];
                    }
                }
            }
            Mutant::TailNan(len) => m[n - len..].fill(f64::NAN),
            Mutant::TailZeros(len) => m[n - len..].fill(0.0),
            Mutant::HalfRow(r) => m[r * cols + cols / 2..(r + 1) * cols].fill(f64::NAN),
            Mutant::Ulps { at, steps } => m[at] = ulps_away(m[at], dtype, steps),
        }
        m
    }

    fn pack_rows(x: &[f64], cols: usize, rows: &[usize]) -> Vec<f64> {
        rows.iter().flat_map(|&i| x[i * cols..(i + 1) * cols].iter().copied()).collect()
    }

    /// The index of the largest |value| in row `row`.
    fn largest_in_row(x: &[f64], cols: usize, row: usize) -> usize {
        let start = row * cols;
        start + (0..cols).max_by(|&a, &b| x[start + a].abs().total_cmp(&x[start + b].abs())).unwrap()
    }

    const DTYPES: [DType; 3] = [DType::BF16, DType::F16, DType::F32];

    // GEMM: sampled rows against the rounded reference, then the whole output against a
    // second correct output ("cuBLAS"). 512 x 256 with K = 4096: 8 M tiles and 4 N tiles of
    // 64 keep every failure of the gate shapes (a tile, a row, a tail), at 1/500 of the cost.
    const M: usize = 512;
    const N: usize = 256;
    const K: usize = 4096;

    struct GemmCase {
        dtype: DType,
        reference: Vec<f64>,
        theirs: Vec<f64>,
        ours: Vec<f64>,
        rows: Vec<usize>,
        tol: Tolerance,
    }

    impl GemmCase {
        fn new(dtype: DType) -> GemmCase {
            // C elements of unit-normal inputs are N(0, K). A truncating fp32 accumulator's
            // noise is about 3e-9 K sqrt(K) (see for_dot_product): sigma * (|r| + sqrt(K)).
            let scale = (K as f64).sqrt();
            let reference: Vec<f64> = normals(M * N, 1).into_iter().map(|z| z * scale).collect();
            let sigma = 1.5e-9 * K as f64;
            GemmCase {
                dtype,
                ours: computed(&reference, dtype, sigma, scale, 2),
                theirs: computed(&reference, dtype, sigma, scale, 3),
                rows: tile_covering_rows(M, CHECK_TILE_ROWS, 4),
                tol: Tolerance::for_dot_product(dtype, K, 1.0, 0.0),
                reference,
            }
        }

        /// (sampled check passed, cross-check passed) for an output in place of ours.
        fn verdict(&self, ours: &[f64]) -> (bool, bool) {
            let want = pack_rows(&self.reference, N, &self.rows);
            let got = pack_rows(ours, N, &self.rows);
            let sampled = compare(&got, &rounded(&want, self.dtype), self.tol);
            let measured = |out: &[f64]| compare(&pack_rows(out, N, &self.rows), &want, self.tol);
            let cross =
                cross_check(ours, &self.theirs, &measured(ours), &measured(&self.theirs), self.dtype, self.tol.scale)
                    .unwrap();
            (sampled.passed, cross.passed)
        }

        fn unsampled_rows(&self) -> Vec<usize> {
            (0..M).filter(|r| !self.rows.contains(r)).collect()
        }
    }

    #[test]
    fn gemm_checks_accept_a_correct_output() {
        for dtype in DTYPES {
            let case = GemmCase::new(dtype);
            assert_eq!(case.verdict(&case.ours), (true, true), "{dtype}");
            assert_eq!(case.verdict(&case.theirs), (true, true), "{dtype}");
        }
    }

    #[test]
    fn gemm_sampled_rows_reject_mutants_in_them() {
        for dtype in DTYPES {
            let case = GemmCase::new(dtype);
            let sampled = case.rows[3];
            let unsampled = case.unsampled_rows()[5];
            let mut mutants = vec![
                Mutant::ZeroRow(sampled),
                Mutant::SwapRows(sampled, unsampled),
                // Every 64-row tile holds a sampled row, so any tile shows.
                Mutant::Tile { row: 128, col: 64, from_row: 256 },
                Mutant::Tile { row: 448, col: 192, from_row: 0 },
                Mutant::TailNan(100),
                Mutant::TailZeros(100),
            ];
            // Four ulps on a large element of a sampled row. f32 bounds hold accumulation
            // noise of many f32 ulps, so only 16-bit outputs can see that.
            if dtype != DType::F32 {
                mutants.push(Mutant::Ulps { at: largest_in_row(&case.ours, N, sampled), steps: 4 });
                mutants.push(Mutant::Ulps { at: largest_in_row(&case.ours, N, sampled), steps: -4 });
            }
            for mutant in mutants {
                let (sampled_ok, _) = case.verdict(&mutate(&case.ours, N, dtype, mutant));
                assert!(!sampled_ok, "{dtype} {mutant:?} passed the sampled rows");
            }
        }
    }

    #[test]
    fn gemm_cross_check_rejects_mutants_outside_the_sample() {
        for dtype in DTYPES {
            let case = GemmCase::new(dtype);
            let unsampled = case.unsampled_rows();
            for mutant in [Mutant::ZeroRow(unsampled[7]), Mutant::SwapRows(unsampled[1], unsampled[200])] {
                let (sampled_ok, cross_ok) = case.verdict(&mutate(&case.ours, N, dtype, mutant));
                assert!(sampled_ok, "{dtype} {mutant:?}: the sample should not see this row");
                assert!(!cross_ok, "{dtype} {mutant:?} passed the cross-check");
            }
        }
    }

    #[test]
    fn sampled_rows_cover_every_tile_and_both_ends() {
        for (rows, tile) in [(8192, 64), (1000, 64), (64, 64), (65, 64), (1, 64), (5, 0), (300, 7)] {
            for seed in 0..4 {
                let picked = tile_covering_rows(rows, tile, seed);
                let tile = tile.max(1);
                assert!(picked.windows(2).all(|w| w[0] < w[1]), "{rows} {tile}: sorted, unique");
                assert_eq!(picked.first(), Some(&0));
                assert_eq!(picked.last(), Some(&(rows - 1)));
                for start in (0..rows).step_by(tile) {
                    assert!(picked.iter().any(|&r| (start..start + tile).contains(&r)), "{rows} {tile}: tile {start}");
                }
                assert!(picked.len() <= rows.div_ceil(tile) + 2);
            }
        }
        assert_eq!(tile_covering_rows(8192, 64, 1), tile_covering_rows(8192, 64, 1));
        assert_ne!(tile_covering_rows(8192, 64, 1), tile_covering_rows(8192, 64, 2));
        assert!(tile_covering_rows(0, 64, 1).is_empty());
    }

    // Softmax rows: 256 rows of the gate's 4096 columns. Each row is judged alone, so the
    // row count changes nothing but the cost; 32768 rows would take a minute in a debug build.
    const ROWS: usize = 256;
    const COLS: usize = 4096;

    fn softmax_reference() -> Vec<f64> {
        let x = normals(ROWS * COLS, 11);
        x.chunks(COLS)
            .flat_map(|row| {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = row.iter().map(|v| (v - max).exp()).sum();
                row.iter().map(move |v| (v - max).exp() / total).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The softmax rows, a correct output (f32 exp and division: a few f32 ulps of noise)
    /// and the tolerance the norm crate uses for them.
    fn softmax_case(dtype: DType) -> (Vec<f64>, Vec<f64>, Tolerance) {
        let exact = softmax_reference();
        let ours = computed(&exact, dtype, 1e-6, 0.0, 12);
        (rounded(&exact, dtype), ours, Tolerance::relative(dtype))
    }

    #[test]
    fn row_check_accepts_correct_rows_and_rejects_every_mutant() {
        for dtype in DTYPES {
            let (reference, ours, tol) = softmax_case(dtype);
            let sum = Some(tol.elementwise);
            let ok = check_rows(&ours, &reference, COLS, tol, sum).unwrap();
            assert!(ok.summary.passed, "{dtype}: {ok:?}");
            let mut mutants = vec![
                Mutant::ZeroRow(137),
                Mutant::SwapRows(10, 200),
                Mutant::HalfRow(99),
                Mutant::Tile { row: 64, col: 1024, from_row: 192 },
                Mutant::TailNan(100),
                Mutant::TailZeros(100),
            ];
            if dtype != DType::F32 {
                mutants.push(Mutant::Ulps { at: largest_in_row(&ours, COLS, 50), steps: 4 });
                mutants.push(Mutant::Ulps { at: largest_in_row(&ours, COLS, 50), steps: -4 });
            }
            for mutant in mutants {
                let c = check_rows(&mutate(&ours, COLS, dtype, mutant), &reference, COLS, tol, sum).unwrap();
                assert!(!c.summary.passed, "{dtype} {mutant:?} passed: {c:?}");
                assert!(c.failed_rows >= 1 && c.first_failed_row.is_some());
            }
        }
    }

    #[test]
    fn a_row_off_by_one_rounding_fails_its_own_norm_not_the_global_one() {
        // Row 77 divided by a sum u too small: no element is more than one ulp off, so the
        // element-wise bound passes it, and over 256 rows the global norm sees u / 16; the
        // row's own norm sees about u, over bf16's 3e-3.
        let dtype = DType::BF16;
        let (reference, ours, tol) = softmax_case(dtype);
        let mut scaled = ours.clone();
        // From the reference's row, so that no element is more than one ulp off.
        for (v, r) in scaled[77 * COLS..78 * COLS].iter_mut().zip(&reference[77 * COLS..78 * COLS]) {
            *v = dtype.round(*r * (1.0 + dtype.epsilon()));
        }
        let global = compare(&scaled, &reference, tol);
        assert!(global.passed, "{global:?}");
        let c = check_rows(&scaled, &reference, COLS, tol, None).unwrap();
        assert_eq!((c.summary.passed, c.failed_rows, c.first_failed_row), (false, 1, Some(77)), "{c:?}");
    }

    #[test]
    fn row_sums_catch_a_misnormalized_row_under_loose_bounds() {
        let dtype = DType::BF16;
        let (reference, ours, _) = softmax_case(dtype);
        let mut scaled = ours.clone();
        // Row 30 divided by a sum 2u too small: under HALF's 1e-2 bounds, caught by its sum.
        for v in &mut scaled[30 * COLS..31 * COLS] {
            *v = dtype.round(*v * (1.0 + 2.0 * dtype.epsilon()));
        }
        let loose = Tolerance::HALF.with_scale(0.0);
        assert!(check_rows(&scaled, &reference, COLS, loose, None).unwrap().summary.passed);
        let c = check_rows(&scaled, &reference, COLS, loose, Some(dtype.epsilon())).unwrap();
        assert_eq!((c.summary.passed, c.first_failed_row), (false, Some(30)));
        assert!(check_rows(&ours, &reference, COLS, loose, Some(dtype.epsilon())).unwrap().summary.passed);
    }

    #[test]
    fn row_check_rejects_bad_shapes() {
        assert!(check_rows(&[1.0; 6], &[1.0; 6], 4, Tolerance::F32, None).is_err());
        assert!(check_rows(&[1.0; 6], &[1.0; 5], 3, Tolerance::F32, None).is_err());
        assert!(check_rows(&[1.0; 6], &[1.0; 6], 0, Tolerance::F32, None).is_err());
        assert!(check_rows(&[], &[], 0, Tolerance::F32, None).unwrap().summary.passed);
    }

    /// `a + b` and `a * b` of values of `dtype`, exact in f64, and what a kernel writes:
    /// the f32 result rounded to `dtype` (double rounding, at most one ulp off).
    fn exact_case(dtype: DType) -> Vec<(Vec<f64>, Vec<f64>)> {
        let n = ROWS * ROWS;
        let a = rounded(&normals(n, 21), dtype);
        // b spread over 2^-16..2^7, so some sums round in f32 before the 16-bit rounding.
        let b: Vec<f64> =
            normals(n, 22).iter().enumerate().map(|(i, z)| dtype.round(z * 2f64.powi(i as i32 % 24 - 16))).collect();
        let kernel = |exact: Vec<f64>| -> (Vec<f64>, Vec<f64>) {
            let out = exact.iter().map(|&v| dtype.round(f64::from(v as f32))).collect();
            (exact, out)
        };
        vec![
            kernel(a.iter().zip(&b).map(|(x, y)| x + y).collect()),
            kernel(a.iter().zip(&b).map(|(x, y)| x * y).collect()),
            // A cast to dtype of f32 values.
            kernel(normals(n, 23).iter().map(|&v| f64::from(v as f32)).collect()),
        ]
    }

    #[test]
    fn exact_check_accepts_one_ulp_and_rejects_every_mutant() {
        for dtype in DTYPES {
            for (exact, out) in exact_case(dtype) {
                let ok = within_ulps(&out, &exact, dtype, 1).unwrap();
                assert!(ok.summary.passed && ok.max_ulps <= 1, "{dtype}: {ok:?}");
                // One ulp anywhere is allowed.
                let one = mutate(&out, ROWS, dtype, Mutant::Ulps { at: 777, steps: 1 });
                assert!(within_ulps(&one, &out, dtype, 1).unwrap().summary.passed);
                for mutant in [
                    Mutant::ZeroRow(137),
                    Mutant::SwapRows(10, 200),
                    Mutant::Tile { row: 64, col: 128, from_row: 192 },
                    Mutant::TailNan(3),
                    Mutant::TailZeros(3),
                    Mutant::Ulps { at: 12345, steps: 2 },
                    Mutant::Ulps { at: 12345, steps: -2 },
                ] {
                    let c = within_ulps(&mutate(&out, ROWS, dtype, mutant), &exact, dtype, 1).unwrap();
                    assert!(!c.summary.passed, "{dtype} {mutant:?} passed: {c:?}");
                }
            }
        }
    }

    #[test]
    fn exact_check_matches_nan_and_inf_and_rejects_foreign_values() {
        let d = DType::BF16;
        let c = |o: f64, r: f64| within_ulps(&[o], &[r], d, 1).unwrap().summary.passed;
        assert!(c(f64::NAN, f64::NAN) && c(f64::INFINITY, f64::INFINITY) && c(0.0, -0.0));
        assert!(!c(f64::NAN, 1.0) && !c(1.0, f64::NAN) && !c(f64::INFINITY, f64::NEG_INFINITY));
        // The largest finite bf16 is one ulp from inf by bit pattern, but not a match.
        let largest = ulps_away(f64::INFINITY, d, -1);
        assert!(largest.is_finite() && !c(largest, f64::INFINITY));
        // 1 + 2^-9 is no bf16 value.
        assert!(!c(1.0 + 2f64.powi(-9), 1.0));
        assert_eq!(within_ulps(&[1.0, 2.0], &[1.0, 2.5], d, 0).unwrap().first_failure, Some(1));
        assert!(within_ulps(&[1.0], &[1.0, 2.0], d, 0).is_err());
    }

    #[test]
    fn ulp_steps_walk_the_number_line() {
        assert_eq!(ulps_away(1.0, DType::BF16, 1), 1.0 + 2f64.powi(-7));
        assert_eq!(ulps_away(1.0, DType::BF16, -1), 1.0 - 2f64.powi(-8));
        assert_eq!(ulps_away(1.0, DType::F16, 1), 1.0 + 2f64.powi(-10));
        assert_eq!(ulps_away(0.0, DType::F32, -1), -f64::from(f32::from_bits(1)));
        assert_eq!(ulps_away(ulps_away(-3.5, DType::F16, 7), DType::F16, -7), -3.5);
        assert_eq!(ulp_distance(ulps_away(0.0, DType::BF16, -2), ulps_away(0.0, DType::BF16, 3), DType::BF16), 5);
    }

    #[test]
    fn dtype_bounds_take_one_flipped_rounding_but_not_three() {
        // Against the rounded reference a correct result is at most one ulp off: at the
        // bottom of a binade that is 2u relative, the most the element-wise bound allows.
        for dtype in [DType::BF16, DType::F16] {
            // Element-wise alone: over one element the Frobenius error is that element's.
            let tol = Tolerance { rel_frobenius: f64::INFINITY, ..Tolerance::for_output(dtype).with_scale(0.0) };
            for r in [1.0, 1.5, 1.999, -7.25] {
                let r = dtype.round(r);
                for steps in [-1, 1] {
                    assert!(compare(&[ulps_away(r, dtype, steps)], &[r], tol).passed, "{dtype} {r} {steps}");
                }
                assert!(!compare(&[ulps_away(r, dtype, 3)], &[r], tol).passed, "{dtype} {r} +3");
            }
        }
    }

    #[test]
    fn planted_extrema_expose_a_dropped_tail_and_a_dropped_block() {
        let mut x: Vec<half::bf16> = crate::random::normal(100_000, 5);
        let p = plant_extrema(&mut x, true, 9).unwrap();
        assert_eq!(p.max_at, x.len() - 1);
        assert!(p.min_at < x.len() - 1);
        let v: Vec<f64> = crate::to_f64_vec(&x);
        let argmax = |s: &[f64]| (0..s.len()).fold(0, |best, i| if s[i] > s[best] { i } else { best });
        let argmin = |s: &[f64]| (0..s.len()).fold(0, |best, i| if s[i] < s[best] { i } else { best });
        assert_eq!((argmax(&v), argmin(&v)), (p.max_at, p.min_at));
        // A kernel that drops the last 8 elements gets the maximum wrong.
        let without_tail = &v[..v.len() - 8];
        assert!(without_tail.iter().copied().fold(f64::NEG_INFINITY, f64::max) < v[p.max_at]);
        // One that drops the 1024-element block holding the minimum gets the minimum wrong.
        let block = p.min_at / 1024 * 1024;
        let rest = v[..block].iter().chain(&v[(block + 1024).min(v.len())..]);
        assert!(rest.copied().fold(f64::INFINITY, f64::min) > v[p.min_at]);
        // The other planting swaps the spots; seeds move the inner one.
        let mut y: Vec<half::bf16> = crate::random::normal(100_000, 5);
        let q = plant_extrema(&mut y, false, 9).unwrap();
        assert_eq!((q.min_at, q.max_at), (y.len() - 1, p.min_at));
        let mut z: Vec<half::bf16> = crate::random::normal(100_000, 5);
        assert_ne!(plant_extrema(&mut z, true, 10).unwrap().min_at, p.min_at);
    }

    #[test]
    fn planting_refuses_what_it_cannot_do() {
        assert!(plant_extrema(&mut [1.0f32], true, 0).is_err());
        assert!(plant_extrema(&mut [1.0f32, f32::NAN, 2.0], true, 0).is_err());
        assert!(plant_extrema(&mut [f32::MAX, 1.0], true, 0).is_err());
        let mut two = [3.0f32, -1.0];
        assert_eq!(plant_extrema(&mut two, true, 0).unwrap(), Planted { max_at: 1, min_at: 0 });
        assert_eq!(two, [-7.0, 7.0]);
    }

    #[test]
    fn cross_check_bound_never_drops_below_one_ulp() {
        let exact = Comparison { rel_err: 0.0, max_abs_err: 0.0, max_elementwise: 0.0, nan_count: 0, passed: true };
        let d = DType::BF16;
        let r = d.round(1.0);
        // Two exact samples, yet elsewhere the outputs may round apart by one ulp.
        assert!(cross_check(&[r], &[ulps_away(r, d, 1)], &exact, &exact, d, 0.0).unwrap().passed);
        assert!(!cross_check(&[r], &[ulps_away(r, d, 3)], &exact, &exact, d, 0.0).unwrap().passed);
        assert!(cross_check(&[r], &[r, r], &exact, &exact, d, 0.0).is_err());
    }
}
