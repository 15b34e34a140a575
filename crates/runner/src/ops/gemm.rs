//! GEMM against cuBLAS: one case measured (checked, then timed interleaved with cuBLAS on
//! the same inputs), the phase-2 shape set for benches and gates, and the fuzzer.

use anyhow::{anyhow, Result};
use ckb_common::baselines::{naive, Cublas, GemmSpec};
use ckb_common::{bf16, compare, f16, to_f64_vec, Comparison, DType, Gpu, Layout, Timer, TimingConfig, Tolerance};
use ckb_gemm::reference::{self as cpu, MatRef};
use ckb_gemm::{GemmInput, GemmOutput, GemmProblem, Variant};
use cudarc::driver::CudaSlice;
use proptest::prelude::*;
use serde::Deserialize;

use crate::fuzz::FuzzReport;
use crate::record::CaseResult;

/// One case of a GEMM shape set, as gates.toml spells it.
#[derive(Debug, Clone, Deserialize)]
pub struct GemmCase {
    pub dtype: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// "rc": A row-major, B column-major (a linear layer's weight); "rr": both row-major.
    pub layouts: String,
}

impl GemmCase {
    pub fn problem(&self) -> Result<GemmProblem> {
        let layout = |c: char| match c {
            'r' => Ok(Layout::RowMajor),
            'c' => Ok(Layout::ColMajor),
            other => Err(anyhow!("layout letter {other}: r or c")),
        };
        let mut letters = self.layouts.chars();
        let (a, b) = (layout(letters.next().unwrap_or('?'))?, layout(letters.next().unwrap_or('?'))?);
        Ok(GemmProblem::packed(self.m, self.n, self.k, a, b, Layout::RowMajor))
    }
}

/// The phase-2 shape set (issue 3): both dtypes, A row x B column on nine shapes and
/// A row x B row on the three squares.
pub fn phase2_cases() -> Vec<GemmCase> {
    let rc = [
        (2048, 2048, 2048),
        (4096, 4096, 4096),
        (8192, 8192, 8192),
        (8192, 28672, 8192),
        (8192, 8192, 28672),
        (16384, 4096, 4096),
        (4096, 4096, 256),
        (128, 8192, 8192),
        (4000, 3000, 2048),
    ];
    let mut cases = Vec::new();
    for dtype in ["bf16", "f16"] {
        for &(m, n, k) in &rc {
            cases.push(GemmCase { dtype: dtype.into(), m, n, k, layouts: "rc".into() });
        }
        for s in [2048, 4096, 8192] {
            cases.push(GemmCase { dtype: dtype.into(), m: s, n: s, k: s, layouts: "rr".into() });
        }
    }
    cases
}

pub fn spec_of(p: &GemmProblem) -> GemmSpec {
    GemmSpec::new(p.m, p.n, p.k, p.a_layout, p.b_layout, p.c_layout)
        .with_leading_dims(p.lda, p.ldb, p.ldc)
        .with_scalars(p.alpha, p.beta)
}

fn tolerance(p: &GemmProblem, out: DType) -> Tolerance {
    let base = if out == DType::F32 && p.k == 0 { Tolerance::F32 } else { Tolerance::HALF };
    base.with_scale((p.k as f64).sqrt() * f64::from(p.alpha.abs()) + f64::from(p.beta.abs()))
}

/// Checks `c` (the GPU result) on a sample of rows against the float64 reference computed
/// from the same inputs and the original C (`c0`).
fn check_rows<TIn: GemmInput, TOut: GemmOutput>(
    gpu: &Gpu,
    p: &GemmProblem,
    a: &CudaSlice<TIn>,
    b: &CudaSlice<TIn>,
    c0: &[f64],
    c: &CudaSlice<TOut>,
    max_rows: usize,
) -> Result<Comparison> {
    let rows: Vec<usize> = if p.m <= max_rows {
        (0..p.m).collect()
    } else {
        (0..max_rows).map(|i| i * (p.m - 1) / (max_rows - 1)).collect()
    };
    let (a, b, c) = (to_f64_vec(&gpu.download(a)?), to_f64_vec(&gpu.download(b)?), to_f64_vec(&gpu.download(c)?));
    // The sampled rows of A and C, packed row-major.
    let a_rows: Vec<f64> = rows
        .iter()
        .flat_map(|&i| (0..p.k).map(move |kk| (i, kk)))
        .map(|(i, kk)| a[p.a_layout.offset(i, kk, p.lda)])
        .collect();
    let mut expected: Vec<f64> = rows
        .iter()
        .flat_map(|&i| (0..p.n).map(move |j| (i, j)))
        .map(|(i, j)| c0[p.c_layout.offset(i, j, p.ldc)])
        .collect();
    let got: Vec<f64> = rows
        .iter()
        .flat_map(|&i| (0..p.n).map(move |j| (i, j)))
        .map(|(i, j)| c[p.c_layout.offset(i, j, p.ldc)])
        .collect();
    let a_ref = MatRef { data: &a_rows, rows: rows.len(), cols: p.k, layout: Layout::RowMajor, ld: p.k.max(1) };
    let b_ref = MatRef { data: &b, rows: p.k, cols: p.n, layout: p.b_layout, ld: p.ldb };
    cpu::gemm(f64::from(p.alpha), a_ref, b_ref, f64::from(p.beta), &mut expected, Layout::RowMajor, p.n.max(1));
    let expected: Vec<f64> = expected.into_iter().map(|x| round_to(x, TOut::DTYPE)).collect();
    Ok(compare(&got, &expected, tolerance(p, TOut::DTYPE)))
}

fn round_to(x: f64, dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => bf16::from_f64(x).to_f64(),
        DType::F16 => f16::from_f64(x).to_f64(),
        _ => x as f32 as f64,
    }
}

/// One case: inputs random normal, C poisoned, checked on sampled rows, then timed
/// interleaved with cuBLAS on the same inputs. The ratio is cuBLAS's time over ours.
pub fn measure<T: GemmInput + GemmOutput>(
    gpu: &Gpu,
    cublas: &Cublas,
    p: &GemmProblem,
    variant: Option<&'static Variant>,
) -> Result<CaseResult> {
    let a = gpu.random_normal::<T>(p.required_len(ckb_gemm::Operand::A)?, 11)?;
    let b = gpu.random_normal::<T>(p.required_len(ckb_gemm::Operand::B)?, 12)?;
    let c_len = p.required_len(ckb_gemm::Operand::C)?;
    let mut c = gpu.poisoned::<T>(c_len)?;
    let mut theirs = gpu.zeros::<T>(c_len)?;
    let run_ours = |c: &mut CudaSlice<T>| -> ckb_common::GpuResult<&'static Variant> {
        let result = match variant {
            Some(v) => ckb_gemm::gemm_with_variant(gpu, v, p, &a, &b, c).map(|plan| plan.variant),
            None => ckb_gemm::gemm(gpu, p, &a, &b, c),
        };
        result.map_err(|e| ckb_common::GpuError::Library { library: "ckb-gemm", detail: e.to_string() })
    };
    let chosen = run_ours(&mut c)?;
    let check = check_rows(gpu, p, &a, &b, &vec![f64::NAN; c_len], &c, 48)?;

    let spec = spec_of(p);
    let mut timer = Timer::new(gpu, TimingConfig::default())?;
    let stats = timer.time_interleaved(&mut [&mut |_| run_ours(&mut c).map(|_| ()), &mut |_| {
        cublas.gemm(&spec, &a, &b, &mut theirs)
    }])?;
    let (ours_us, cublas_us) = (stats[0].median_us, stats[1].median_us);
    Ok(CaseResult {
        name: format!("{} {} m{} n{} k{}", T::DTYPE, p.layout_letters(), p.m, p.n, p.k),
        variant: chosen.name.to_string(),
        ours_us,
        baseline_us: Some(cublas_us),
        ratio: cublas_us / ours_us,
        tflops: Some(p.flops() / (ours_us * 1e-6) / 1e12),
        gbs: None,
        fraction_of_copy: None,
        correct: check.passed,
        rel_err: check.rel_err,
        vendor_us: None,
    })
}

/// Measures one case of a shape set.
pub fn measure_case(
    gpu: &Gpu,
    cublas: &Cublas,
    case: &GemmCase,
    variant: Option<&'static Variant>,
) -> Result<CaseResult> {
    let p = case.problem()?;
    match case.dtype.as_str() {
        "bf16" => measure::<bf16>(gpu, cublas, &p, variant),
        "f16" => measure::<f16>(gpu, cublas, &p, variant),
        other => Err(anyhow!("GEMM gate dtype {other}: bf16 or f16")),
    }
}

/// `ckb bench gemm`: the phase-2 shape set (or the cases a forced variant can take).
pub fn bench(gpu: &Gpu, variant: Option<&str>) -> Result<Vec<CaseResult>> {
    let forced = match variant {
        Some(name) => Some(ckb_gemm::find_variant(name).ok_or_else(|| anyhow!("no GEMM variant {name}"))?),
        None => None,
    };
    let cublas = Cublas::new(gpu)?;
    let cases: Vec<GemmCase> =
        phase2_cases().into_iter().filter(|c| forced.is_none_or(|v| v.input.name() == c.dtype)).collect();
    let progress = crate::progress::Progress::new("bench gemm", cases.len() as u64);
    let mut rows = Vec::new();
    for case in &cases {
        match measure_case(gpu, &cublas, case, forced) {
            Ok(row) => {
                progress.step(&format!("{} {:.3}x cuBLAS", row.name, row.ratio));
                rows.push(row);
            }
            // A forced variant may not take every layout: say so and go on.
            Err(e) if forced.is_some() => progress.step(&format!("skipped {case:?}: {e}")),
            Err(e) => return Err(e),
        }
    }
    progress.finish();
    Ok(rows)
}

/// Which kernels the fuzzer runs.
#[derive(Debug, Clone, Copy)]
pub enum FuzzScope {
    /// The universal CuTe kernel only (phase 1).
    SimpleKernel,
    /// A random variant per case where it can take the problem, else the heuristic's choice.
    AllVariants,
}

#[derive(Debug, Clone)]
struct FuzzCase {
    m: usize,
    n: usize,
    k: usize,
    layouts: [Layout; 3],
    /// Extra elements of leading dimension past the minimum.
    ld_pad: [usize; 3],
    alpha: f32,
    beta: f32,
    /// (input, output): 0 bf16->bf16, 1 f16->f16, 2 bf16->f32, 3 f16->f32, 4 f32->f32.
    types: usize,
    variant_pick: usize,
}

fn fuzz_strategy(max_dim: usize) -> impl Strategy<Value = FuzzCase> {
    let layout = prop_oneof![Just(Layout::RowMajor), Just(Layout::ColMajor)];
    (
        (1..=max_dim, 1..=max_dim, 1..=max_dim),
        [layout.clone(), layout.clone(), layout],
        [0usize..9, 0usize..9, 0usize..9],
        (-2.0f32..2.0, prop_oneof![Just(0.0f32), -1.5f32..1.5]),
        0usize..5,
        any::<usize>(),
    )
        .prop_map(|((m, n, k), layouts, ld_pad, (alpha, beta), types, variant_pick)| FuzzCase {
            m,
            n,
            k,
            layouts,
            ld_pad,
            alpha,
            beta,
            types,
            variant_pick,
        })
}

/// Shapes up to this many multiply-adds are checked against the CPU reference in full;
/// larger ones against the naive CUDA GEMM (itself tested against the reference).
const CPU_REFERENCE_MACS: usize = 1 << 31;

pub fn fuzz(gpu: &Gpu, cases: u32, seed: u64, scope: FuzzScope) -> Result<FuzzReport> {
    Ok(crate::fuzz::fuzz_with("gemm", cases, seed, fuzz_strategy(5000), |case| {
        let outcome = match case.types {
            0 => fuzz_one::<bf16, bf16>(gpu, case, scope),
            1 => fuzz_one::<f16, f16>(gpu, case, scope),
            2 => fuzz_one::<bf16, f32>(gpu, case, scope),
            3 => fuzz_one::<f16, f32>(gpu, case, scope),
            _ => fuzz_one::<f32, f32>(gpu, case, scope),
        };
        match outcome {
            Ok((_, c)) if c.passed => Ok(()),
            Ok((variant, c)) => Err(format!(
                "{variant}: rel err {:.2e}, worst element {:.2e}, {} NaN",
                c.rel_err, c.max_elementwise, c.nan_count
            )),
            Err(e) => Err(format!("{e:#}")),
        }
    }))
}

fn fuzz_one<TIn: GemmInput, TOut: GemmOutput>(
    gpu: &Gpu,
    case: &FuzzCase,
    scope: FuzzScope,
) -> Result<(String, Comparison)> {
    let [la, lb, lc] = case.layouts;
    let p = GemmProblem::packed(case.m, case.n, case.k, la, lb, lc)
        .with_leading_dims(
            la.min_ld(case.m, case.k) + case.ld_pad[0],
            lb.min_ld(case.k, case.n) + case.ld_pad[1],
            lc.min_ld(case.m, case.n) + case.ld_pad[2],
        )
        .with_scalars(case.alpha, case.beta);
    let seed = (case.m * 31 + case.n * 17 + case.k) as u64;
    let a = gpu.random_normal::<TIn>(p.required_len(ckb_gemm::Operand::A)?, seed)?;
    let b = gpu.random_normal::<TIn>(p.required_len(ckb_gemm::Operand::B)?, seed + 1)?;
    let c_len = p.required_len(ckb_gemm::Operand::C)?;
    // beta == 0 must not read C: give it NaN then, real values otherwise.
    let mut c = if p.beta == 0.0 { gpu.poisoned::<TOut>(c_len)? } else { gpu.random_normal::<TOut>(c_len, seed + 2)? };
    let c0 = to_f64_vec(&gpu.download(&c)?);

    let universal = ckb_gemm::variants().iter().find(|v| v.input == TIn::DTYPE && !v.uses_tma());
    let variant = match scope {
        FuzzScope::SimpleKernel => {
            let v = universal.ok_or_else(|| anyhow!("no universal kernel for {}", TIn::DTYPE))?;
            ckb_gemm::gemm_with_variant(gpu, v, &p, &a, &b, &mut c)?.variant
        }
        FuzzScope::AllVariants => {
            let candidates: Vec<&'static Variant> =
                ckb_gemm::variants().iter().filter(|v| v.input == TIn::DTYPE).collect();
            let pick = candidates[case.variant_pick % candidates.len()];
            match ckb_gemm::gemm_with_variant(gpu, pick, &p, &a, &b, &mut c) {
                Ok(plan) => plan.variant,
                Err(ckb_gemm::GemmError::VariantCannotRun { .. }) => ckb_gemm::gemm(gpu, &p, &a, &b, &mut c)?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let got = to_f64_vec(&gpu.download(&c)?);
    let expected = if case.m * case.n * case.k <= CPU_REFERENCE_MACS {
        let (ha, hb) = (to_f64_vec(&gpu.download(&a)?), to_f64_vec(&gpu.download(&b)?));
        let mut expected = c0;
        cpu::gemm(
            f64::from(p.alpha),
            MatRef { data: &ha, rows: p.m, cols: p.k, layout: la, ld: p.lda },
            MatRef { data: &hb, rows: p.k, cols: p.n, layout: lb, ld: p.ldb },
            f64::from(p.beta),
            &mut expected,
            lc,
            p.ldc,
        );
        expected
    } else {
        let mut reference = gpu.upload(&c0.iter().map(|&x| x as f32).collect::<Vec<f32>>())?;
        naive::gemm(gpu, &spec_of(&p), &a, &b, &mut reference)?;
        to_f64_vec(&gpu.download(&reference)?)
    };
    // Compare only the elements of C (padding between rows stays as it was).
    let (mut g, mut e) = (Vec::with_capacity(p.m * p.n), Vec::with_capacity(p.m * p.n));
    for i in 0..p.m {
        for j in 0..p.n {
            let at = lc.offset(i, j, p.ldc);
            g.push(got[at]);
            e.push(round_to(expected[at], TOut::DTYPE));
        }
    }
    // f32 products accumulate rounding like a random walk: a few units of eps * sqrt(K)
    // relative to the terms' scale (K = 4748 gave 1.1e-5 on the H100, rel. Frobenius 1.2e-6).
    let f32_elementwise = (8.0 * DType::F32.epsilon() * (p.k as f64).sqrt()).max(Tolerance::F32.elementwise);
    let tol = if TIn::DTYPE == DType::F32 {
        Tolerance { elementwise: f32_elementwise, ..Tolerance::F32 }
            .with_scale((p.k as f64).sqrt() * f64::from(p.alpha.abs()) + f64::from(p.beta.abs()))
    } else {
        tolerance(&p, TOut::DTYPE)
    };
    Ok((variant.name.to_string(), compare(&g, &e, tol)))
}
