//! Checking a GEMM result: against the float64 [`reference`](mod@crate::reference) on sampled
//! rows that cover every 64-row M tile, and over the whole output against cuBLAS's result
//! for the same inputs from the same run.
//!
//! ```no_run
//! # use ckb_common::{bf16, Gpu};
//! # use ckb_gemm::{verify::GemmSample, GemmProblem};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let gpu = Gpu::new(0)?;
//! let problem = GemmProblem::row_col(8192, 8192, 8192);
//! let a = gpu.random_normal::<bf16>(8192 * 8192, 1)?;
//! let b = gpu.random_normal::<bf16>(8192 * 8192, 2)?;
//! let mut ours = gpu.poisoned::<bf16>(8192 * 8192)?;
//! let mut theirs = gpu.poisoned::<bf16>(8192 * 8192)?;
//! ckb_gemm::gemm(&gpu, &problem, &a, &b, &mut ours)?;
//! // ... cuBLAS into `theirs` ...
//! let sample = GemmSample::new(&gpu, &problem, &a, &b, None, 7)?; // beta = 0: no C before
//! let (ours_check, theirs_check) = (sample.check(&gpu, &ours)?, sample.check(&gpu, &theirs)?);
//! let agreement = sample.cross_check(&gpu, &ours, &ours_check, &theirs, &theirs_check)?;
//! let correct = ours_check.comparison.passed && agreement.passed;
//! # Ok(()) }
//! ```

use ckb_common::baselines::Fp32Math;
use ckb_common::{check, compare, to_f64_vec, Comparison, DType, Element, Gpu, GpuError, Layout, Tolerance};
use cudarc::driver::DevicePtr;
use rayon::prelude::*;

use crate::problem::{GemmError, GemmProblem, GemmShapeError, Operand};
use crate::reference::{self, MatRef};
use crate::{GemmInput, GemmOutput};

/// Problems of up to this many multiply-adds are checked on every row of C (the float64
/// reference then takes seconds); larger ones on [`check::tile_covering_rows`].
pub const FULL_CHECK_MACS: u128 = 1 << 31;

/// The rows of C a [`GemmSample`] checks: all of them up to [`FULL_CHECK_MACS`], else the
/// first, the last and one seeded random row in every 64-row M tile (whole rows, so every
/// N tile is seen too): about 130 rows at m = 8192, 1/64 of the full reference's cost.
pub fn sample_rows(problem: &GemmProblem, seed: u64) -> Vec<usize> {
    let macs = problem.m as u128 * problem.n as u128 * problem.k as u128;
    if macs <= FULL_CHECK_MACS {
        (0..problem.m).collect()
    } else {
        check::tile_covering_rows(problem.m, check::CHECK_TILE_ROWS, seed)
    }
}

/// How an output of a [`GemmSample`]'s problem compared with the reference on its rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmCheck {
    /// Against the reference rounded to the output type, held to
    /// [`GemmSample::tolerance`]: the verdict (`comparison.passed`) and the figures a
    /// record keeps.
    pub comparison: Comparison,
    /// Against the unrounded reference: the measured error [`GemmSample::cross_check`]
    /// builds its bound from (`measured.passed` is no verdict).
    pub measured: Comparison,
}

/// The float64 reference on the sampled rows of C, computed once for one set of inputs,
/// to check any number of outputs of them (ours, cuBLAS's).
#[derive(Debug, Clone)]
pub struct GemmSample {
    problem: GemmProblem,
    rows: Vec<usize>,
    /// Unrounded, `rows.len() x n`, row-major.
    expected: Vec<f64>,
}

impl GemmSample {
    /// Downloads A and B and computes the reference on [`sample_rows`] of C. `c_before`
    /// holds C as it was before the GEMM (its whole buffer, as f64); it may be None when
    /// beta = 0, which does not read C.
    pub fn new<TIn: GemmInput>(
        gpu: &Gpu,
        problem: &GemmProblem,
        a: &impl DevicePtr<TIn>,
        b: &impl DevicePtr<TIn>,
        c_before: Option<&[f64]>,
        seed: u64,
    ) -> Result<GemmSample, GemmError> {
        problem.lens()?;
        let (a, b) = (to_f64_vec(&gpu.download(a)?), to_f64_vec(&gpu.download(b)?));
        GemmSample::from_host(problem, &a, &b, c_before, sample_rows(problem, seed))
    }

    /// [`GemmSample::new`] from host copies of A and B (whole buffers, as f64), on the
    /// given rows of C.
    pub fn from_host(
        problem: &GemmProblem,
        a: &[f64],
        b: &[f64],
        c_before: Option<&[f64]>,
        rows: Vec<usize>,
    ) -> Result<GemmSample, GemmError> {
        let p = problem;
        p.lens()?;
        p.check_buffer(Operand::A, a.len())?;
        p.check_buffer(Operand::B, b.len())?;
        if let Some(&row) = rows.iter().find(|&&r| r >= p.m) {
            let detail = format!("row {row} of a {}-row C", p.m);
            return Err(GpuError::InvalidShape { what: "GEMM check", detail }.into());
        }
        let c_before = match c_before {
            Some(c) => p.check_buffer(Operand::C, c.len()).map(|_| Some(c))?,
            None if p.beta != 0.0 => {
                return Err(GemmShapeError::BufferTooSmall {
                    operand: Operand::C,
                    needed: p.required_len(Operand::C)?,
                    got: 0,
                }
                .into())
            }
            None => None,
        };
        let a_rows: Vec<f64> =
            rows.iter().flat_map(|&i| (0..p.k).map(move |kk| a[p.a_layout.offset(i, kk, p.lda)])).collect();
        let mut expected = match c_before {
            Some(c) => gather_rows(p, &rows, |at| c[at]),
            None => vec![0.0; rows.len() * p.n],
        };
        reference::gemm(
            f64::from(p.alpha),
            MatRef::dense(&a_rows, rows.len(), p.k, Layout::RowMajor),
            MatRef::new(b, p.k, p.n, p.b_layout, p.ldb),
            f64::from(p.beta),
            &mut expected,
            Layout::RowMajor,
            p.n.max(1),
        );
        Ok(GemmSample { problem: *p, rows, expected })
    }

    /// The rows of C checked.
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }

    /// The bounds an output of type `TOut` is held to: [`tolerance`].
    pub fn tolerance<TOut: GemmOutput>(&self) -> Tolerance {
        tolerance(&self.problem, TOut::DTYPE)
    }

    /// Downloads C (the whole buffer) and checks its sampled rows.
    pub fn check<TOut: GemmOutput>(&self, gpu: &Gpu, c: &impl DevicePtr<TOut>) -> Result<GemmCheck, GemmError> {
        self.check_host(&gpu.download(c)?)
    }

    /// [`GemmSample::check`] on a host copy of C.
    pub fn check_host<TOut: GemmOutput>(&self, c: &[TOut]) -> Result<GemmCheck, GemmError> {
        self.problem.check_buffer(Operand::C, c.len())?;
        let got = gather_rows(&self.problem, &self.rows, |at| c[at].to_f64());
        let rounded: Vec<f64> = self.expected.par_iter().map(|&x| TOut::DTYPE.round(x)).collect();
        let tol = self.tolerance::<TOut>();
        Ok(GemmCheck { comparison: compare(&got, &rounded, tol), measured: compare(&got, &self.expected, tol) })
    }

    /// Compares all of our C with all of cuBLAS's (`theirs`, same inputs, same run), with
    /// the bound [`check::cross_check`] derives from both sides' [`GemmCheck`]s: it finds
    /// what the sampled rows cannot see, a wrong row or partial tile between them.
    pub fn cross_check<TOut: GemmOutput>(
        &self,
        gpu: &Gpu,
        ours: &impl DevicePtr<TOut>,
        ours_check: &GemmCheck,
        theirs: &impl DevicePtr<TOut>,
        theirs_check: &GemmCheck,
    ) -> Result<Comparison, GemmError> {
        self.cross_check_host(&gpu.download(ours)?, ours_check, &gpu.download(theirs)?, theirs_check)
    }

    /// [`GemmSample::cross_check`] on host copies of both Cs.
    pub fn cross_check_host<TOut: GemmOutput>(
        &self,
        ours: &[TOut],
        ours_check: &GemmCheck,
        theirs: &[TOut],
        theirs_check: &GemmCheck,
    ) -> Result<Comparison, GemmError> {
        let p = &self.problem;
        p.check_buffer(Operand::C, ours.len())?;
        p.check_buffer(Operand::C, theirs.len())?;
        let (ours, theirs) = (matrix_elements(p, ours), matrix_elements(p, theirs));
        let scale = self.tolerance::<TOut>().scale;
        Ok(check::cross_check(&ours, &theirs, &ours_check.measured, &theirs_check.measured, TOut::DTYPE, scale)?)
    }
}

/// The bounds a GEMM output of type `out` is held to, against the reference rounded to `out`:
/// [`Tolerance::for_dot_product`], and no tighter than [`Tolerance::TF32`] where the problem
/// allows f32 inputs to be rounded to tf32 ([`Fp32Math::Tf32`]).
pub fn tolerance(problem: &GemmProblem, out: DType) -> Tolerance {
    let p = problem;
    let tol = Tolerance::for_dot_product(out, p.k, f64::from(p.alpha), f64::from(p.beta));
    match p.fp32_math {
        Fp32Math::Ieee => tol,
        Fp32Math::Tf32 => Tolerance {
            rel_frobenius: tol.rel_frobenius.max(Tolerance::TF32.rel_frobenius),
            elementwise: tol.elementwise.max(Tolerance::TF32.elementwise),
            ..tol
        },
    }
}

/// One GEMM output against the reference on [`sample_rows`] (a [`GemmSample`] used once).
pub fn check_gemm<TIn: GemmInput, TOut: GemmOutput>(
    gpu: &Gpu,
    problem: &GemmProblem,
    a: &impl DevicePtr<TIn>,
    b: &impl DevicePtr<TIn>,
    c_before: Option<&[f64]>,
    c: &impl DevicePtr<TOut>,
    seed: u64,
) -> Result<GemmCheck, GemmError> {
    GemmSample::new(gpu, problem, a, b, c_before, seed)?.check(gpu, c)
}

/// Elements of C on `rows`, row-major `rows.len() x n`; `at` reads one storage offset.
fn gather_rows(p: &GemmProblem, rows: &[usize], at: impl Fn(usize) -> f64 + Sync + Send) -> Vec<f64> {
    rows.par_iter().flat_map_iter(|&i| (0..p.n).map(move |j| p.c_layout.offset(i, j, p.ldc))).map(at).collect()
}

/// Every element of C in storage order, the padding between lines left out.
fn matrix_elements<T: Element>(p: &GemmProblem, c: &[T]) -> Vec<f64> {
    let (lines, line_len) = match p.c_layout {
        Layout::RowMajor => (p.m, p.n),
        Layout::ColMajor => (p.n, p.m),
    };
    (0..lines).into_par_iter().flat_map_iter(|line| c[line * p.ldc..][..line_len].iter().map(|x| x.to_f64())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckb_common::{bf16, f16, random, DType};

    /// A problem's inputs as f64, C before, and the exact result over the whole buffer.
    struct Case {
        a: Vec<f64>,
        b: Vec<f64>,
        c0: Vec<f64>,
        exact: Vec<f64>,
    }

    fn case(p: GemmProblem) -> Case {
        let a = to_f64_vec(&random::normal::<bf16>(p.required_len(Operand::A).unwrap(), 1));
        let b = to_f64_vec(&random::normal::<bf16>(p.required_len(Operand::B).unwrap(), 2));
        let c0 = to_f64_vec(&random::normal::<bf16>(p.required_len(Operand::C).unwrap(), 3));
        let mut exact = c0.clone();
        reference::gemm(
            f64::from(p.alpha),
            MatRef::new(&a, p.m, p.k, p.a_layout, p.lda),
            MatRef::new(&b, p.k, p.n, p.b_layout, p.ldb),
            f64::from(p.beta),
            &mut exact,
            p.c_layout,
            p.ldc,
        );
        Case { a, b, c0, exact }
    }

    fn written<T: GemmOutput>(exact: &[f64]) -> Vec<T> {
        exact.iter().map(|&x| T::from_f64(x)).collect()
    }

    /// 200 rows: three whole 64-row tiles and a partial one; odd N and K, padded C,
    /// both scalars, and either C layout.
    fn problems() -> Vec<GemmProblem> {
        Layout::ALL
            .iter()
            .map(|&lc| {
                let p = GemmProblem::new(200, 72, 40, Layout::RowMajor, Layout::ColMajor, lc);
                p.with_leading_dims(p.lda, p.ldb + 3, p.ldc + 5).with_scalars(-0.75, 0.5)
            })
            .collect()
    }

    #[test]
    fn a_correct_output_passes_and_a_wrong_sampled_row_fails() {
        for p in problems() {
            let c = case(p);
            let rows = check::tile_covering_rows(p.m, check::CHECK_TILE_ROWS, 9);
            assert!(rows.len() >= 5, "{rows:?}");
            let sample = GemmSample::from_host(&p, &c.a, &c.b, Some(&c.c0), rows.clone()).unwrap();
            let out: Vec<bf16> = written(&c.exact);
            let ours = sample.check_host(&out).unwrap();
            assert!(ours.comparison.passed, "{p:?}: {ours:?}");
            assert_eq!(ours.comparison.rel_err, 0.0);
            assert!(ours.measured.rel_err > 0.0, "the unrounded reference sees bf16's rounding");

            let mut bad = out.clone();
            for j in 0..p.n {
                bad[p.c_layout.offset(rows[2], j, p.ldc)] = bf16::ZERO;
            }
            assert!(!sample.check_host(&bad).unwrap().comparison.passed, "{p:?}");
        }
    }

    #[test]
    fn the_cross_check_sees_rows_the_sample_does_not() {
        for p in problems() {
            let c = case(p);
            let sample = GemmSample::from_host(&p, &c.a, &c.b, Some(&c.c0), vec![0, 70, 130, 199]).unwrap();
            let theirs: Vec<f16> = written(&c.exact);
            let mut ours = theirs.clone();
            for j in 0..p.n {
                ours[p.c_layout.offset(100, j, p.ldc)] = f16::ZERO;
            }
            // Padding differs between the two and must not count.
            ours[p.ldc - 1] = f16::NAN;
            let (ours_check, theirs_check) = (sample.check_host(&ours).unwrap(), sample.check_host(&theirs).unwrap());
            assert!(ours_check.comparison.passed && theirs_check.comparison.passed);
            assert!(sample.cross_check_host(&theirs, &theirs_check, &theirs, &theirs_check).unwrap().passed);
            assert!(!sample.cross_check_host(&ours, &ours_check, &theirs, &theirs_check).unwrap().passed, "{p:?}");
        }
    }

    #[test]
    fn f32_outputs_are_held_to_f32_bounds() {
        let p = problems()[0];
        let c = case(p);
        let sample = GemmSample::from_host(&p, &c.a, &c.b, Some(&c.c0), (0..p.m).collect()).unwrap();
        let exact: Vec<f32> = written(&c.exact);
        assert!(sample.check_host(&exact).unwrap().comparison.passed);
        // Rounded through bf16 on the way, as a kernel writing the wrong type would.
        let through_bf16: Vec<f32> = c.exact.iter().map(|&x| DType::BF16.round(x) as f32).collect();
        assert!(!sample.check_host(&through_bf16).unwrap().comparison.passed);
    }

    #[test]
    fn bad_requests_are_typed_errors() {
        let p = problems()[0];
        let c = case(p);
        assert!(matches!(
            GemmSample::from_host(&p, &c.a, &c.b, None, vec![0]),
            Err(GemmError::Shape(GemmShapeError::BufferTooSmall { operand: Operand::C, got: 0, .. }))
        ));
        assert!(GemmSample::from_host(&p, &c.a, &c.b, Some(&c.c0), vec![200]).is_err());
        assert!(GemmSample::from_host(&p, &c.a[1..], &c.b, Some(&c.c0), vec![0]).is_err());
        let sample = GemmSample::from_host(&p, &c.a, &c.b, Some(&c.c0), vec![0]).unwrap();
        assert!(sample.check_host(&written::<bf16>(&c.exact)[1..]).is_err());
        // beta = 0 reads no C: a NaN-poisoned one is fine.
        let p0 = p.with_scalars(1.0, 0.0);
        let poisoned = vec![f64::NAN; c.c0.len()];
        let s0 = GemmSample::from_host(&p0, &c.a, &c.b, Some(&poisoned), vec![0, 199]).unwrap();
        assert!(s0.expected.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn small_problems_check_every_row_and_large_ones_every_tile() {
        assert_eq!(sample_rows(&GemmProblem::row_col(300, 4096, 1024), 1), (0..300).collect::<Vec<_>>());
        let rows = sample_rows(&GemmProblem::row_col(8192, 8192, 8192), 1);
        assert!((128..=130).contains(&rows.len()), "128 tiles, the first and last row: {}", rows.len());
        assert_eq!(rows, check::tile_covering_rows(8192, 64, 1));
    }
}
