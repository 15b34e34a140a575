//! Every GEMM variant against the float64 CPU reference, on the GPU.
//!
//! Inputs are random normal; C is NaN-poisoned (beta = 0: nothing may read it, and any
//! element left unwritten shows) or random (beta != 0). Padding between the lines of C is
//! poisoned too and must stay untouched. Bounds: `ckb_gemm::verify::tolerance` for the
//! output type, against the reference rounded to it. Run with `cargo test -p ckb-gemm --test gpu -- --ignored` on a Hopper GPU.

use ckb_common::baselines::{Cublas, Fp32Math};
use ckb_common::{bf16, compare, f16, random, to_f64_vec, DType, Element, Gpu, Layout};
use ckb_gemm::reference::{self, MatRef};
use ckb_gemm::verify::GemmSample;
use ckb_gemm::{
    gemm, gemm_with_variant, variants, GemmInput, GemmOutput, GemmProblem, Major, Operand, Orientation, Tf32Split,
    Variant,
};

/// Odd shapes that leave partial tiles in every dimension, and a few whole ones.
const SHAPES: [(usize, usize, usize); 6] =
    [(1, 1, 1), (17, 33, 65), (129, 257, 511), (300, 200, 100), (64, 128, 64), (257, 130, 1000)];

fn gpu() -> Gpu {
    Gpu::new(0).expect("these tests need a Hopper GPU")
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// The outcome of one case: a line for the report when it failed.
fn run_case<TIn: GemmInput, TOut: GemmOutput>(
    gpu: &Gpu,
    variant: Option<&'static Variant>,
    problem: &GemmProblem,
    seed: u64,
) -> Option<String> {
    let a_len = problem.required_len(Operand::A).unwrap();
    let b_len = problem.required_len(Operand::B).unwrap();
    let c_len = problem.required_len(Operand::C).unwrap();
    let a_host: Vec<TIn> = random::normal(a_len, seed);
    let b_host: Vec<TIn> = random::normal(b_len, seed + 1);
    let c_host: Vec<TOut> = if problem.beta == 0.0 {
        vec![TOut::from_f64(f64::NAN); c_len]
    } else {
        let mut c: Vec<TOut> = random::normal(c_len, seed + 2);
        poison_padding(problem, &mut c);
        c
    };
    let a = gpu.upload(&a_host).unwrap();
    let b = gpu.upload(&b_host).unwrap();
    let mut c = gpu.upload(&c_host).unwrap();
    let ran = match variant {
        Some(v) => gemm_with_variant(gpu, v, problem, &a, &b, &mut c),
        None => gemm(gpu, problem, &a, &b, &mut c),
    }
    .map(|plan| plan.to_string());
    let label = format!(
        "{} m{} n{} k{} {}->{} C{} ld({},{},{}) alpha {} beta {}",
        problem.layout_letters(),
        problem.m,
        problem.n,
        problem.k,
        TIn::DTYPE,
        TOut::DTYPE,
        problem.c_layout.letter(),
        problem.lda,
        problem.ldb,
        problem.ldc,
        problem.alpha,
        problem.beta
    );
    let ran = match ran {
        Ok(name) => name,
        Err(e) => return Some(format!("{label}: {e}")),
    };
    let out = gpu.download(&c).unwrap();
    gpu.synchronize().unwrap();

    let a64 = to_f64_vec(&a_host);
    let b64 = to_f64_vec(&b_host);
    let mut expected = to_f64_vec(&c_host);
    reference::gemm(
        problem.alpha as f64,
        MatRef::new(&a64, problem.m, problem.k, problem.a_layout, problem.lda),
        MatRef::new(&b64, problem.k, problem.n, problem.b_layout, problem.ldb),
        problem.beta as f64,
        &mut expected,
        problem.c_layout,
        problem.ldc,
    );
    let out64 = to_f64_vec(&out);
    let (mut got, mut want) = (Vec::new(), Vec::new());
    let mut padding_written = 0;
    for (idx, (&o, &e)) in out64.iter().zip(&expected).enumerate() {
        if in_matrix(problem, idx) {
            got.push(o);
            want.push(TOut::DTYPE.round(e));
        } else if !o.is_nan() {
            padding_written += 1;
        }
    }
    let result = compare(&got, &want, ckb_gemm::verify::tolerance(problem, TOut::DTYPE));
    if result.passed && padding_written == 0 {
        None
    } else {
        Some(format!(
            "{label} [{ran}]: rel_err {:.3e}, max elementwise {:.3e}, NaN {}, padding written {padding_written}",
            result.rel_err, result.max_elementwise, result.nan_count
        ))
    }
}

/// Is storage index `idx` of C an element of the matrix (not padding between lines)?
fn in_matrix(problem: &GemmProblem, idx: usize) -> bool {
    let line_len = match problem.c_layout {
        Layout::RowMajor => problem.n,
        Layout::ColMajor => problem.m,
    };
    idx % problem.ldc < line_len
}

fn poison_padding<T: Element>(problem: &GemmProblem, c: &mut [T]) {
    for (idx, x) in c.iter_mut().enumerate() {
        if !in_matrix(problem, idx) {
            *x = T::from_f64(f64::NAN);
        }
    }
}

fn layout_for(major: Major, operand: Operand) -> Layout {
    match (major, operand) {
        (Major::K, Operand::A) | (Major::MN, Operand::B) => Layout::RowMajor,
        _ => Layout::ColMajor,
    }
}

/// Problems a TMA variant can take: its majorness directly and swapped, both C layouts,
/// leading dimensions padded to 16 bytes (so M, N, K themselves can be odd).
fn tma_problems(variant: &Variant, shape: (usize, usize, usize)) -> Vec<GemmProblem> {
    let (a_major, b_major) = variant.config.majors.unwrap();
    let (m, n, k) = shape;
    let direct = (layout_for(a_major, Operand::A), layout_for(b_major, Operand::B));
    // Swapped, the kernel's A is the problem's B: B's majorness is a_major.
    let swapped = (layout_for(b_major, Operand::A), layout_for(a_major, Operand::B));
    let mut problems = Vec::new();
    for (a_layout, b_layout) in [direct, swapped] {
        for c_layout in Layout::ALL {
            let p = GemmProblem::new(m, n, k, a_layout, b_layout, c_layout);
            problems.push(p.with_leading_dims(round_up(p.lda, 8), round_up(p.ldb, 8), round_up(p.ldc, 8)));
        }
    }
    problems.dedup();
    problems
}

fn report(failures: Vec<String>, cases: usize) {
    assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
}

fn check_tma_variant<TIn: GemmInput + GemmOutput>(
    gpu: &Gpu,
    variant: &'static Variant,
    failures: &mut Vec<String>,
    cases: &mut usize,
) {
    for (i, &shape) in SHAPES.iter().enumerate() {
        for problem in tma_problems(variant, shape) {
            for (alpha, beta) in [(1.0, 0.0), (-0.75, 0.5)] {
                let problem = problem.with_scalars(alpha, beta);
                let seed = 1000 + i as u64;
                *cases += 3;
                failures.extend(run_case::<TIn, TIn>(gpu, Some(variant), &problem, seed));
                failures.extend(run_case::<TIn, f32>(gpu, Some(variant), &problem, seed));
                if TIn::DTYPE == DType::BF16 {
                    failures.extend(run_case::<TIn, f16>(gpu, Some(variant), &problem, seed));
                } else {
                    failures.extend(run_case::<TIn, bf16>(gpu, Some(variant), &problem, seed));
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn every_tma_variant_matches_the_reference() {
    let gpu = gpu();
    let (mut failures, mut cases) = (Vec::new(), 0);
    for variant in variants().iter().filter(|v| v.uses_tma()) {
        match variant.input() {
            DType::BF16 => check_tma_variant::<bf16>(&gpu, variant, &mut failures, &mut cases),
            DType::F16 => check_tma_variant::<f16>(&gpu, variant, &mut failures, &mut cases),
            DType::F32 => check_tma_variant::<f32>(&gpu, variant, &mut failures, &mut cases),
            other => panic!("TMA variant {} with {other} inputs", variant.name),
        }
    }
    report(failures, cases);
}

/// Shapes of at least 4 waves of the largest tile (128x256, either way round) on 132 SMs,
/// with partial tiles at both edges; K is kept short so the float64 reference stays cheap.
const MULTI_WAVE_SHAPES: [(usize, usize, usize); 2] = [(4100, 4100, 200), (8191, 2049, 72)];

/// One variant on one problem twice back to back, each into fresh C, both checked on the
/// rows of a [`GemmSample`] (every 64-row tile): state a persistent scheduler leaves behind
/// shows in the second run.
fn multi_wave_case<TIn: GemmInput + GemmOutput>(
    gpu: &Gpu,
    variant: &'static Variant,
    problem: &GemmProblem,
    seed: u64,
) -> Option<String> {
    let lens = problem.lens().unwrap();
    let a = gpu.random_normal::<TIn>(lens.a, seed).unwrap();
    let b = gpu.random_normal::<TIn>(lens.b, seed + 1).unwrap();
    let c_before: Option<Vec<TIn>> =
        (problem.beta != 0.0).then(|| gpu.download(&gpu.random_normal::<TIn>(lens.c, seed + 2).unwrap()).unwrap());
    let c0 = c_before.as_deref().map(to_f64_vec);
    let sample = GemmSample::new(gpu, problem, &a, &b, c0.as_deref(), seed).unwrap();
    let label = format!(
        "{} {}{} m{} n{} k{} beta {}",
        variant.name,
        problem.layout_letters(),
        problem.c_layout.letter(),
        problem.m,
        problem.n,
        problem.k,
        problem.beta
    );
    let mut failures = Vec::new();
    for run in ["first", "second"] {
        let mut c = match &c_before {
            Some(host) => gpu.upload(host).unwrap(),
            None => gpu.poisoned::<TIn>(lens.c).unwrap(),
        };
        if let Err(e) = gemm_with_variant(gpu, variant, problem, &a, &b, &mut c) {
            return Some(format!("{label}: {e}"));
        }
        let check = sample.check(gpu, &c).unwrap();
        if !check.comparison.passed {
            failures.push(format!("{label} ({run} run): {:?}", check.comparison));
        }
    }
    (!failures.is_empty()).then(|| failures.join("\n"))
}

#[test]
#[ignore = "needs a GPU"]
fn every_tma_variant_is_correct_over_many_waves() {
    let gpu = gpu();
    let (mut failures, mut cases) = (Vec::new(), 0);
    for variant in variants().iter().filter(|v| v.uses_tma()) {
        for (i, &shape) in MULTI_WAVE_SHAPES.iter().enumerate() {
            for problem in tma_problems(variant, shape) {
                for (alpha, beta) in [(1.0, 0.0), (-0.75, 0.5)] {
                    let problem = problem.with_scalars(alpha, beta);
                    cases += 1;
                    let seed = 4000 + i as u64;
                    failures.extend(match variant.input() {
                        DType::BF16 => multi_wave_case::<bf16>(&gpu, variant, &problem, seed),
                        DType::F16 => multi_wave_case::<f16>(&gpu, variant, &problem, seed),
                        DType::F32 => multi_wave_case::<f32>(&gpu, variant, &problem, seed),
                        other => Some(format!("TMA variant {} with {other} inputs", variant.name)),
                    });
                }
            }
        }
    }
    report(failures, cases);
}

fn check_universal<TIn: GemmInput, TOut: GemmOutput>(gpu: &Gpu, failures: &mut Vec<String>, cases: &mut usize) {
    let variant = variants().iter().find(|v| !v.uses_tma() && v.input() == TIn::DTYPE).unwrap();
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        for a_layout in Layout::ALL {
            for b_layout in Layout::ALL {
                for c_layout in Layout::ALL {
                    let p = GemmProblem::new(m, n, k, a_layout, b_layout, c_layout);
                    // Odd padding: nothing is aligned.
                    let p = p.with_leading_dims(p.lda + 1, p.ldb + 3, p.ldc + 1);
                    for (alpha, beta) in [(1.0, 0.0), (0.5, -1.25)] {
                        *cases += 1;
                        failures.extend(run_case::<TIn, TOut>(
                            gpu,
                            Some(variant),
                            &p.with_scalars(alpha, beta),
                            7 + i as u64,
                        ));
                    }
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn universal_kernel_matches_the_reference_for_every_layout_and_stride() {
    let gpu = gpu();
    let (mut failures, mut cases) = (Vec::new(), 0);
    check_universal::<bf16, bf16>(&gpu, &mut failures, &mut cases);
    check_universal::<bf16, f32>(&gpu, &mut failures, &mut cases);
    check_universal::<f16, f16>(&gpu, &mut failures, &mut cases);
    check_universal::<f16, f32>(&gpu, &mut failures, &mut cases);
    check_universal::<f32, f32>(&gpu, &mut failures, &mut cases);
    check_universal::<f32, bf16>(&gpu, &mut failures, &mut cases);
    report(failures, cases);
}

/// The heuristic's choice, packed and padded, aligned and not: always correct, and the
/// aligned row x column layout takes a TMA variant.
#[test]
#[ignore = "needs a GPU"]
fn automatic_choice_is_correct_for_every_layout() {
    let gpu = gpu();
    let (mut failures, mut cases) = (Vec::new(), 0);
    let shapes = [(1, 1, 1), (17, 33, 65), (136, 264, 200), (128, 520, 256), (300, 200, 100)];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for a_layout in Layout::ALL {
            for b_layout in Layout::ALL {
                for c_layout in Layout::ALL {
                    let p = GemmProblem::new(m, n, k, a_layout, b_layout, c_layout).with_scalars(1.5, 0.0);
                    cases += 2;
                    failures.extend(run_case::<bf16, bf16>(&gpu, None, &p, 50 + i as u64));
                    failures.extend(run_case::<f16, f32>(&gpu, None, &p.with_scalars(1.0, 1.0), 60 + i as u64));
                }
            }
        }
    }
    report(failures, cases);

    let p = GemmProblem::row_col(256, 512, 128);
    let a = gpu.random_normal::<bf16>(256 * 128, 1).unwrap();
    let b = gpu.random_normal::<bf16>(512 * 128, 2).unwrap();
    let mut c = gpu.zeros::<bf16>(256 * 512).unwrap();
    assert!(gemm(&gpu, &p, &a, &b, &mut c).unwrap().variant.uses_tma());
}

/// Operands TMA cannot read in place (odd K, odd leading dimensions, single rows stored
/// column-major) are staged into aligned scratch and run on a TMA kernel: correct in every
/// layout, over several waves, with beta != 0, and with C not aligned at all. The plan says
/// what was staged.
#[test]
#[ignore = "needs a GPU"]
fn unaligned_operands_are_staged_onto_tma_kernels() {
    let gpu = gpu();
    let (mut failures, mut cases) = (Vec::new(), 0);
    // (1200, 1100, 999): 90 tiles of 128 x 128, with scratch reused between calls of
    // different sizes; (1, 3000, 1001): a decode row.
    let shapes = [(300, 257, 1001), (1200, 1100, 999), (129, 1000, 777), (1, 3000, 1001)];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for a_layout in Layout::ALL {
            for b_layout in Layout::ALL {
                for c_layout in Layout::ALL {
                    let p = GemmProblem::new(m, n, k, a_layout, b_layout, c_layout);
                    for p in [p, p.with_leading_dims(p.lda + 3, p.ldb + 1, p.ldc + 1).with_scalars(-0.5, 1.25)] {
                        let plan = ckb_gemm::choose_plan(&gpu, &p, DType::BF16, DType::BF16, [0, 0, 0]).unwrap();
                        // A single row is one contiguous line whatever its layout and pitch.
                        let a_unaligned = p.lda % 8 != 0 && m > 1;
                        if a_unaligned && !(plan.variant.uses_tma() && plan.staging.a) {
                            failures.push(format!(
                                "{} {m}x{n}x{k} ld({},{}): A not staged: {plan}",
                                p.layout_letters(),
                                p.lda,
                                p.ldb
                            ));
                        }
                        cases += 2;
                        failures.extend(run_case::<bf16, bf16>(&gpu, None, &p, 90 + i as u64));
                        failures.extend(run_case::<f16, f32>(&gpu, None, &p, 95 + i as u64));
                    }
                }
            }
        }
    }
    report(failures, cases);
}

/// Shapes whose tiles fill at most half the SMs run split-K: correct in every layout, with
/// beta != 0 and staged operands, and the same bits on a second run.
#[test]
#[ignore = "needs a GPU"]
fn split_k_is_correct_and_reproducible() {
    let gpu = gpu();
    let (mut failures, mut cases) = (Vec::new(), 0);
    let shapes = [(256, 256, 16384), (64, 2048, 4096), (1, 4096, 8192), (33, 1000, 3001)];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for a_layout in Layout::ALL {
            for b_layout in Layout::ALL {
                for c_layout in Layout::ALL {
                    let p = GemmProblem::new(m, n, k, a_layout, b_layout, c_layout);
                    for p in [p, p.with_scalars(0.5, -1.0)] {
                        let plan = ckb_gemm::choose_plan(&gpu, &p, DType::BF16, DType::BF16, [0, 0, 0]).unwrap();
                        if plan.split.splits < 2 {
                            failures.push(format!("{} {m}x{n}x{k}: no split-K: {plan}", p.layout_letters()));
                        }
                        cases += 2;
                        failures.extend(run_case::<bf16, bf16>(&gpu, None, &p, 110 + i as u64));
                        failures.extend(run_case::<f16, f32>(&gpu, None, &p, 120 + i as u64));
                    }
                }
            }
        }
    }
    report(failures, cases);

    let p = GemmProblem::row_col(128, 512, 32768).with_scalars(1.0, 1.0);
    let a = gpu.random_normal::<bf16>(128 * 32768, 1).unwrap();
    let b = gpu.random_normal::<bf16>(512 * 32768, 2).unwrap();
    let c0 = gpu.random_normal::<f32>(128 * 512, 3).unwrap();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut c = c0.clone();
        let plan = gemm(&gpu, &p, &a, &b, &mut c).unwrap();
        assert!(plan.split.splits > 1, "{plan}");
        runs.push(gpu.download(&c).unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
    assert!(runs[0] == runs[1], "split-K results differ between runs");
}

/// f32 inputs run on the tf32 kernels split into terms (3xTF32), at fp32 accuracy (the f32
/// bound, which plain TF32 misses by more than 10x), in every layout, with odd and padded leading
/// dimensions, beta != 0 and split-K; with `Fp32Math::Tf32` as one term, at TF32's bound.
#[test]
#[ignore = "needs a GPU"]
fn f32_runs_on_tensor_cores_at_fp32_accuracy() {
    let gpu = gpu();
    let (mut failures, mut cases) = (Vec::new(), 0);
    let shapes = [(300, 257, 1001), (1200, 1100, 999), (129, 1000, 777), (1, 3000, 1001), (256, 256, 16384)];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for a_layout in Layout::ALL {
            for b_layout in Layout::ALL {
                for c_layout in Layout::ALL {
                    let p = GemmProblem::new(m, n, k, a_layout, b_layout, c_layout);
                    let padded = p.with_leading_dims(p.lda + 3, p.ldb + 1, p.ldc + 1).with_scalars(-0.5, 1.25);
                    let tf32 = p.with_fp32_math(Fp32Math::Tf32);
                    for (p, split) in
                        [(p, Tf32Split::ThreeTerms), (padded, Tf32Split::ThreeTerms), (tf32, Tf32Split::OneTerm)]
                    {
                        let plan = ckb_gemm::choose_plan(&gpu, &p, DType::F32, DType::F32, [0, 0, 0]).unwrap();
                        if plan.tf32 != Some(split) {
                            failures.push(format!("{} {m}x{n}x{k}: not {split}: {plan}", p.layout_letters()));
                        }
                        cases += 2;
                        failures.extend(run_case::<f32, f32>(&gpu, None, &p, 130 + i as u64));
                        failures.extend(run_case::<f32, bf16>(&gpu, None, &p, 140 + i as u64));
                    }
                }
            }
        }
    }
    report(failures, cases);
}

/// The tf32 split keeps SGEMM's non-finite results: an infinite input makes +-inf wherever
/// its products do not meet another infinity of the other sign, a NaN input makes NaN, and
/// the outputs they do not touch keep fp32 accuracy.
#[test]
#[ignore = "needs a GPU"]
fn f32_infinities_and_nan_survive_the_tf32_split() {
    let gpu = gpu();
    let (m, n, k) = (200, 150, 300);
    let mut failures = Vec::new();
    for math in [Fp32Math::Ieee, Fp32Math::Tf32] {
        let p = GemmProblem::row_col(m, n, k).with_fp32_math(math);
        let mut a_host: Vec<f32> = random::normal(m * k, 51);
        let mut b_host: Vec<f32> = random::normal(k * n, 52);
        a_host[3 * k + 5] = f32::INFINITY; // row 3 of C: +-inf
        a_host[7 * k + 9] = f32::NAN; // row 7: NaN
        b_host[4 * k + 2] = f32::NEG_INFINITY; // column 4: +-inf (NaN where it meets row 3's)
        b_host[11 * k + 6] = f32::MAX; // finite, but rounds to inf in tf32
        let a = gpu.upload(&a_host).unwrap();
        let b = gpu.upload(&b_host).unwrap();
        let mut c = gpu.upload(&vec![f32::NAN; m * n]).unwrap();
        let plan = gemm(&gpu, &p, &a, &b, &mut c).unwrap();
        let out = to_f64_vec(&gpu.download(&c).unwrap());
        let mut want = vec![0.0f64; m * n];
        reference::gemm(
            1.0,
            MatRef::new(&to_f64_vec(&a_host), m, k, Layout::RowMajor, k),
            MatRef::new(&to_f64_vec(&b_host), k, n, Layout::ColMajor, k),
            0.0,
            &mut want,
            Layout::RowMajor,
            n,
        );
        let (mut got_finite, mut want_finite) = (Vec::new(), Vec::new());
        for (idx, (&o, &w)) in out.iter().zip(&want).enumerate() {
            let (row, col) = (idx / n, idx % n);
            if col == 11 {
                continue; // f32::MAX products leave the f32 range: only "not NaN" is checked, below
            }
            if w.is_finite() {
                got_finite.push(o);
                want_finite.push(w);
            } else if !(o == w || (o.is_nan() && w.is_nan())) {
                failures.push(format!("{math:?} [{plan}] C({row}, {col}) = {o}, want {w}"));
            }
        }
        for row in (0..m).filter(|&r| r != 3 && r != 7) {
            if out[row * n + 11].is_nan() {
                failures.push(format!("{math:?} [{plan}] C({row}, 11) is NaN: f32::MAX input became inf * 0"));
            }
        }
        let result = compare(&got_finite, &want_finite, ckb_gemm::verify::tolerance(&p, DType::F32));
        if !result.passed {
            failures.push(format!("{math:?} [{plan}] finite outputs: rel_err {:.3e}", result.rel_err));
        }
    }
    report(failures, 2);
}

#[test]
#[ignore = "needs a GPU"]
fn forced_variant_refuses_what_it_cannot_run() {
    let gpu = gpu();
    let kk = ckb_gemm::find_variant("sm90_bf16_128x256_s4_rc").unwrap();
    let p = GemmProblem::new(64, 64, 64, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor);
    let a = gpu.random_normal::<bf16>(64 * 64, 1).unwrap();
    let b = gpu.random_normal::<bf16>(64 * 64, 2).unwrap();
    let mut c = gpu.zeros::<bf16>(64 * 64).unwrap();
    let err = gemm_with_variant(&gpu, kk, &p, &a, &b, &mut c).unwrap_err();
    assert!(matches!(err, ckb_gemm::GemmError::VariantCannotRun { .. }), "{err}");
    let plan = gemm_with_variant(&gpu, kk, &GemmProblem::row_col(64, 64, 64), &a, &b, &mut c).unwrap();
    assert_eq!(plan.orientation, Orientation::Direct);
}

#[test]
#[ignore = "needs a GPU"]
fn short_buffers_are_refused_before_launch() {
    let gpu = gpu();
    let p = GemmProblem::row_col(64, 64, 64);
    let a = gpu.random_normal::<bf16>(64 * 64 - 1, 1).unwrap();
    let b = gpu.random_normal::<bf16>(64 * 64, 2).unwrap();
    let mut c = gpu.zeros::<bf16>(64 * 64).unwrap();
    let err = gemm(&gpu, &p, &a, &b, &mut c).unwrap_err();
    assert!(
        matches!(err, ckb_gemm::GemmError::Shape(ckb_gemm::GemmShapeError::BufferTooSmall { operand: Operand::A, .. })),
        "{err}"
    );
}

/// `verify` on a real run at deep K: our output and cuBLAS's pass their sampled rows (one
/// per 64-row tile) against the float64 reference and agree everywhere; a row zeroed
/// between the sampled ones passes the sample and fails the cross-check.
fn verify_on_gpu<TIn: GemmInput, TOut: GemmOutput>(gpu: &Gpu, cublas: &Cublas) -> Option<String> {
    // 4096 x 1024 x 8192 is above FULL_CHECK_MACS, so rows are sampled.
    let p = GemmProblem::row_col(4096, 1024, 8192);
    let label = format!("{}->{}", TIn::DTYPE, TOut::DTYPE);
    let a = gpu.random_normal::<TIn>(p.required_len(Operand::A).unwrap(), 1).unwrap();
    let b = gpu.random_normal::<TIn>(p.required_len(Operand::B).unwrap(), 2).unwrap();
    let c_len = p.required_len(Operand::C).unwrap();
    let (mut ours, mut theirs) = (gpu.poisoned::<TOut>(c_len).unwrap(), gpu.poisoned::<TOut>(c_len).unwrap());
    gemm(gpu, &p, &a, &b, &mut ours).unwrap();
    cublas.gemm(&p, &a, &b, &mut theirs).unwrap();
    let sample = GemmSample::new(gpu, &p, &a, &b, None, 5).unwrap();
    assert!(sample.rows().len() < p.m / 32, "{label}: {} rows", sample.rows().len());
    let (ours_check, theirs_check) = (sample.check(gpu, &ours).unwrap(), sample.check(gpu, &theirs).unwrap());
    let agreement = sample.cross_check(gpu, &ours, &ours_check, &theirs, &theirs_check).unwrap();
    if !(ours_check.comparison.passed && theirs_check.comparison.passed && agreement.passed) {
        return Some(format!("{label}: ours {ours_check:?}, cuBLAS {theirs_check:?}, agreement {agreement:?}"));
    }
    let row = (0..p.m).find(|r| !sample.rows().contains(r)).unwrap();
    let mut host = gpu.download(&ours).unwrap();
    host[row * p.ldc..row * p.ldc + p.n].fill(TOut::from_f64(0.0));
    let bad = gpu.upload(&host).unwrap();
    let bad_check = sample.check(gpu, &bad).unwrap();
    let caught = !sample.cross_check(gpu, &bad, &bad_check, &theirs, &theirs_check).unwrap().passed;
    (!(bad_check.comparison.passed && caught)).then(|| format!("{label}: zeroed row {row} not caught: {bad_check:?}"))
}

#[test]
#[ignore = "needs a GPU"]
fn verify_accepts_ours_and_cublas_and_catches_a_row_between_samples() {
    let gpu = gpu();
    let cublas = Cublas::new(&gpu).unwrap();
    let failures: Vec<String> = [
        verify_on_gpu::<bf16, bf16>(&gpu, &cublas),
        verify_on_gpu::<bf16, f32>(&gpu, &cublas),
        verify_on_gpu::<f16, f16>(&gpu, &cublas),
        verify_on_gpu::<f16, f32>(&gpu, &cublas),
    ]
    .into_iter()
    .flatten()
    .collect();
    report(failures, 4);
}
