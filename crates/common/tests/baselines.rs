//! The vendor and raw-CUDA baselines checked against float64 loops written here.
//!
//! Tests that need a GPU are ignored by default (`cargo xtask test` runs them where there
//! is one). The typed errors are checked without a GPU: validation runs before any CUDA call.

use ckb_common::baselines::cub::{check_reduce, check_row_sum};
use ckb_common::baselines::cublas::{check_fp8_form, cublas_gemm_types};
use ckb_common::baselines::cudnn::{MAX_CANDIDATES, WORKSPACE_LIMIT};
use ckb_common::baselines::naive;
use ckb_common::baselines::{ConvAlgorithm, ConvSpec, Cub, Cublas, Cudnn, Fp32Math, Fp8Scales, GemmSpec, ReduceOp};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ckb_common::cudarc::driver::CudaSlice;
use ckb_common::{
    bf16, compare, f16, random, to_f64_vec, DType, Element, Gpu, GpuError, GpuResult, Layout, Tolerance, F8E4M3,
};

// ---------------------------------------------------------------------------------------
// Typed errors, no GPU needed.
// ---------------------------------------------------------------------------------------

#[test]
fn gemm_spec_rejects_zero_dimensions() {
    let spec = GemmSpec::new(0, 4, 4, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor);
    assert!(matches!(spec.lens().map_err(GpuError::from), Err(GpuError::InvalidShape { what: "GEMM", .. })));
}

#[test]
fn gemm_spec_rejects_leading_dimension_below_minimum() {
    let spec = GemmSpec::new(8, 4, 6, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor).with_leading_dims(5, 6, 4);
    assert!(matches!(spec.lens().map_err(GpuError::from), Err(GpuError::InvalidShape { what: "A", .. })));
    let spec = GemmSpec::new(8, 4, 6, Layout::RowMajor, Layout::ColMajor, Layout::ColMajor).with_leading_dims(6, 6, 7);
    assert!(matches!(spec.lens().map_err(GpuError::from), Err(GpuError::InvalidShape { what: "C", .. })));
}

#[test]
fn gemm_spec_rejects_short_buffers_with_the_needed_length() {
    // Row-major A 3x5 with lda 7 spans 2*7 + 5 = 19; column-major B 5x2 with ldb 5 spans 10.
    let spec = GemmSpec::new(3, 2, 5, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor).with_leading_dims(7, 5, 2);
    let lens = spec.lens().unwrap();
    assert_eq!((lens.a, lens.b, lens.c), (19, 10, 6));
    assert!(spec.validate(19, 10, 6).is_ok());
    assert!(matches!(
        spec.validate(18, 10, 6).map_err(GpuError::from),
        Err(GpuError::BufferTooSmall { what: "A", needed: 19, got: 18 })
    ));
    assert!(matches!(
        spec.validate(19, 9, 6).map_err(GpuError::from),
        Err(GpuError::BufferTooSmall { what: "B", needed: 10, got: 9 })
    ));
    assert!(matches!(
        spec.validate(19, 10, 5).map_err(GpuError::from),
        Err(GpuError::BufferTooSmall { what: "C", needed: 6, got: 5 })
    ));
}

#[test]
fn gemm_spec_rejects_overflowing_sizes() {
    let spec = GemmSpec::new(3, 3, 3, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor).with_leading_dims(
        usize::MAX / 2,
        3,
        3,
    );
    assert!(matches!(spec.lens().map_err(GpuError::from), Err(GpuError::InvalidShape { what: "A", .. })));
}

#[test]
fn cublas_rejects_type_pairs_it_does_not_run() {
    for (input, output) in
        [(DType::F16, DType::BF16), (DType::BF16, DType::F16), (DType::F32, DType::BF16), (DType::F8E4M3, DType::BF16)]
    {
        assert!(
            matches!(cublas_gemm_types(input, output, Fp32Math::Ieee), Err(GpuError::Unsupported { .. })),
            "{input} -> {output}"
        );
    }
    for (input, output) in [
        (DType::F32, DType::F32),
        (DType::F16, DType::F16),
        (DType::F16, DType::F32),
        (DType::BF16, DType::BF16),
        (DType::BF16, DType::F32),
    ] {
        assert!(cublas_gemm_types(input, output, Fp32Math::Tf32).is_ok(), "{input} -> {output}");
    }
}

#[test]
fn fp8_runs_only_as_a_row_major_times_b_column_major() {
    for c_layout in Layout::ALL {
        let tn = GemmSpec::new(64, 32, 128, Layout::RowMajor, Layout::ColMajor, c_layout);
        assert!(check_fp8_form(&tn, DType::BF16).is_ok());
        for (a_layout, b_layout) in [
            (Layout::ColMajor, Layout::ColMajor),
            (Layout::RowMajor, Layout::RowMajor),
            (Layout::ColMajor, Layout::RowMajor),
        ] {
            let spec = GemmSpec::new(64, 32, 128, a_layout, b_layout, c_layout);
            assert!(matches!(check_fp8_form(&spec, DType::BF16), Err(GpuError::Unsupported { .. })));
        }
    }
    // 16-byte leading dimensions: k = 40 e4m3 elements is 40 bytes.
    let unaligned = GemmSpec::new(64, 32, 40, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor);
    assert!(matches!(check_fp8_form(&unaligned, DType::BF16), Err(GpuError::Unsupported { .. })));
    // Extents that are not multiples of 16 are refused before cuBLASLt sees them.
    let odd = GemmSpec::new(200, 136, 96, Layout::RowMajor, Layout::ColMajor, Layout::ColMajor);
    assert!(matches!(check_fp8_form(&odd, DType::BF16), Err(GpuError::Unsupported { .. })));
}

#[test]
fn conv_spec_computes_output_size_and_rejects_bad_shapes() {
    let spec = ConvSpec::new(2, 9, 11, 8, 16, 3, 3).with_padding(1, 1).with_stride(2, 2);
    let lens = spec.lens().unwrap();
    assert_eq!((lens.p, lens.q), (5, 6));
    assert_eq!((lens.x, lens.w, lens.y), (2 * 9 * 11 * 8, 16 * 3 * 3 * 8, 2 * 5 * 6 * 16));
    let dilated = ConvSpec::new(1, 12, 10, 12, 6, 3, 2).with_padding(2, 1).with_dilation(2, 1).with_groups(3);
    let lens = dilated.lens().unwrap();
    assert_eq!((lens.p, lens.q, lens.w), (12, 11, 6 * 3 * 2 * 4));

    let bad_groups = ConvSpec::new(1, 8, 8, 6, 4, 3, 3).with_groups(4);
    assert!(matches!(bad_groups.lens(), Err(GpuError::InvalidShape { .. })));
    let zero_stride = ConvSpec::new(1, 8, 8, 4, 4, 3, 3).with_stride(0, 1);
    assert!(matches!(zero_stride.lens(), Err(GpuError::InvalidShape { .. })));
    let filter_too_big = ConvSpec::new(1, 4, 4, 4, 4, 3, 3).with_dilation(2, 2);
    assert!(matches!(filter_too_big.lens(), Err(GpuError::InvalidShape { .. })));
    let ok = ConvSpec::new(1, 4, 4, 4, 4, 3, 3);
    let lens = ok.lens().unwrap();
    assert!(matches!(
        ok.validate(lens.x, lens.w - 1, lens.y),
        Err(GpuError::BufferTooSmall { what: "conv filter w", .. })
    ));
}

#[test]
fn cub_checks_reject_empty_extrema_and_short_buffers() {
    assert!(check_reduce(ReduceOp::Sum, 0, 1).is_ok());
    assert!(matches!(check_reduce(ReduceOp::Max, 0, 1), Err(GpuError::InvalidShape { .. })));
    assert!(matches!(check_reduce(ReduceOp::Min, 5, 0), Err(GpuError::BufferTooSmall { .. })));
    assert_eq!(check_row_sum(3, 4, 6, 16, 3).unwrap(), 16);
    assert!(matches!(check_row_sum(3, 4, 3, 100, 3), Err(GpuError::InvalidShape { .. })));
    assert!(matches!(check_row_sum(3, 4, 6, 15, 3), Err(GpuError::BufferTooSmall { what: "row-sum input", .. })));
    assert!(matches!(check_row_sum(3, 4, 6, 16, 2), Err(GpuError::BufferTooSmall { what: "row-sum output", .. })));
}

#[test]
fn naive_strides_follow_the_layout() {
    assert_eq!(naive::strides(Layout::RowMajor, 9), (9, 1));
    assert_eq!(naive::strides(Layout::ColMajor, 9), (1, 9));
}

// ---------------------------------------------------------------------------------------
// GPU checks against float64 loops.
// ---------------------------------------------------------------------------------------

/// The GPU for one test, held with a share of [`GPU_TESTS`]: shared by the tests that may
/// overlap, exclusive for the cuDNN tests.
struct TestGpu<G> {
    gpu: Gpu,
    _turn: G,
}

impl<G> std::ops::Deref for TestGpu<G> {
    type Target = Gpu;
    fn deref(&self) -> &Gpu {
        &self.gpu
    }
}

/// The GPU tests of this binary run on libtest's threads, in parallel. cuDNN loads its
/// kernels lazily and loading waits for the GPU to drain: on the H100 its searches failed
/// intermittently (`CUDNN_STATUS_EXECUTION_FAILED`) while other tests' long kernels were in
/// flight (see `baselines::cudnn`). So the cuDNN tests take this lock exclusively, and every
/// other GPU test takes it shared.
static GPU_TESTS: RwLock<()> = RwLock::new(());

fn open_gpu() -> Gpu {
    Gpu::new(0).expect("these tests need a Hopper GPU")
}

/// The GPU, alongside other tests that do not use cuDNN.
fn gpu() -> TestGpu<RwLockReadGuard<'static, ()>> {
    // A test that panicked while holding the lock left nothing behind it to repair.
    let turn = GPU_TESTS.read().unwrap_or_else(PoisonError::into_inner);
    TestGpu { gpu: open_gpu(), _turn: turn }
}

/// The GPU, with no other GPU test of this binary running: for tests that set up cuDNN.
fn gpu_alone() -> TestGpu<RwLockWriteGuard<'static, ()>> {
    let turn = GPU_TESTS.write().unwrap_or_else(PoisonError::into_inner);
    TestGpu { gpu: open_gpu(), _turn: turn }
}

/// `C = alpha * A * B + beta * C0` in float64 over the whole C buffer; elements outside the
/// matrix keep C0's value.
fn reference_gemm(spec: &GemmSpec, a: &[f64], b: &[f64], c0: &[f64]) -> Vec<f64> {
    let mut c = c0.to_vec();
    for i in 0..spec.m {
        for j in 0..spec.n {
            let dot: f64 = (0..spec.k)
                .map(|p| a[spec.a_layout.offset(i, p, spec.lda)] * b[spec.b_layout.offset(p, j, spec.ldb)])
                .sum();
            let at = spec.c_layout.offset(i, j, spec.ldc);
            let old = if spec.beta == 0.0 { 0.0 } else { spec.beta as f64 * c0[at] };
            c[at] = spec.alpha as f64 * dot + old;
        }
    }
    c
}

/// Runs one GEMM on random inputs (C poisoned with NaN when beta is 0, random otherwise)
/// and compares it with [`reference_gemm`]. `scale_a`/`scale_b` are the fp8 scales (1 otherwise).
fn check_gemm<TIn: Element, TOut: Element>(
    gpu: &Gpu,
    label: &str,
    spec: &GemmSpec,
    tolerance: Tolerance,
    (scale_a, scale_b): (f64, f64),
    run: impl FnOnce(&CudaSlice<TIn>, &CudaSlice<TIn>, &mut CudaSlice<TOut>) -> GpuResult<()>,
) {
    let lens = spec.lens().unwrap();
    let seed = (spec.m * 7919 + spec.n * 31 + spec.k) as u64;
    let a_host = random::normal::<TIn>(lens.a, seed);
    let b_host = random::normal::<TIn>(lens.b, seed + 1);
    let a = gpu.upload(&a_host).unwrap();
    let b = gpu.upload(&b_host).unwrap();
    let (mut c, c0) = if spec.beta == 0.0 {
        (gpu.poisoned::<TOut>(lens.c).unwrap(), vec![f64::NAN; lens.c])
    } else {
        let c_host = random::normal::<TOut>(lens.c, seed + 2);
        (gpu.upload(&c_host).unwrap(), to_f64_vec(&c_host))
    };
    run(&a, &b, &mut c).unwrap_or_else(|e| panic!("{label}: {e}"));
    let out = to_f64_vec(&gpu.download(&c).unwrap());
    let a64: Vec<f64> = to_f64_vec(&a_host).iter().map(|v| v * scale_a).collect();
    let b64: Vec<f64> = to_f64_vec(&b_host).iter().map(|v| v * scale_b).collect();
    let reference = reference_gemm(spec, &a64, &b64, &c0);
    let result = compare(&out, &reference, tolerance.with_scale((spec.k as f64).sqrt() * scale_a * scale_b));
    assert!(result.passed, "{label} {spec:?}: {result:?}");
}

/// Odd shapes, one with padded leading dimensions and alpha/beta.
fn gemm_shapes(a_layout: Layout, b_layout: Layout, c_layout: Layout) -> [GemmSpec; 2] {
    let plain = GemmSpec::new(37, 61, 45, a_layout, b_layout, c_layout);
    let padded = GemmSpec::new(129, 67, 200, a_layout, b_layout, c_layout);
    let padded = padded.with_leading_dims(padded.lda + 3, padded.ldb + 5, padded.ldc + 2).with_scalars(0.75, -0.5);
    [plain, padded]
}

fn all_layouts() -> impl Iterator<Item = (Layout, Layout, Layout)> {
    Layout::ALL
        .into_iter()
        .flat_map(|a| Layout::ALL.into_iter().flat_map(move |b| Layout::ALL.into_iter().map(move |c| (a, b, c))))
}

const TF32: Tolerance = Tolerance { rel_frobenius: 1e-3, elementwise: 5e-3, scale: 1.0 };

/// Every layout combination at [`gemm_shapes`], run by `run` and checked.
fn check_gemm_cases<TIn: Element, TOut: Element>(
    gpu: &Gpu,
    label: &str,
    fp32_math: Fp32Math,
    tolerance: Tolerance,
    run: impl Fn(&GemmSpec, &CudaSlice<TIn>, &CudaSlice<TIn>, &mut CudaSlice<TOut>) -> GpuResult<()>,
) {
    for (a_layout, b_layout, c_layout) in all_layouts() {
        for spec in gemm_shapes(a_layout, b_layout, c_layout) {
            let spec = spec.with_fp32_math(fp32_math);
            let label = format!("{label} {}->{} {fp32_math:?}", TIn::DTYPE, TOut::DTYPE);
            check_gemm::<TIn, TOut>(gpu, &label, &spec, tolerance, (1.0, 1.0), |a, b, c| run(&spec, a, b, c));
        }
    }
}

fn check_cublas_types<TIn: Element, TOut: Element>(
    gpu: &Gpu,
    blas: &Cublas,
    fp32_math: Fp32Math,
    tolerance: Tolerance,
) {
    check_gemm_cases::<TIn, TOut>(gpu, "cuBLAS", fp32_math, tolerance, |spec, a, b, c| blas.gemm(spec, a, b, c));
}

#[test]
#[ignore = "needs a GPU"]
fn cublas_gemm_matches_reference_for_every_type_and_layout() {
    let gpu = gpu();
    let blas = Cublas::new(&gpu).unwrap();
    check_cublas_types::<f32, f32>(&gpu, &blas, Fp32Math::Ieee, Tolerance::F32);
    check_cublas_types::<f32, f32>(&gpu, &blas, Fp32Math::Tf32, TF32);
    check_cublas_types::<f16, f16>(&gpu, &blas, Fp32Math::Ieee, Tolerance::HALF);
    check_cublas_types::<f16, f32>(&gpu, &blas, Fp32Math::Ieee, Tolerance::HALF);
    check_cublas_types::<bf16, bf16>(&gpu, &blas, Fp32Math::Ieee, Tolerance::HALF);
    check_cublas_types::<bf16, f32>(&gpu, &blas, Fp32Math::Ieee, Tolerance::HALF);
}

#[test]
#[ignore = "needs a GPU"]
fn cublas_fp8_matches_reference_in_tn_form() {
    let gpu = gpu();
    let blas = Cublas::new(&gpu).unwrap();
    let scales = Fp8Scales { a: 0.5, b: 0.25, fast_accum: false };
    for c_layout in Layout::ALL {
        for (m, n, k) in [(64, 48, 128), (208, 144, 96)] {
            for (alpha, beta) in [(1.0, 0.0), (0.5, 1.5)] {
                let spec =
                    GemmSpec::new(m, n, k, Layout::RowMajor, Layout::ColMajor, c_layout).with_scalars(alpha, beta);
                check_gemm::<F8E4M3, bf16>(&gpu, "cuBLASLt fp8", &spec, Tolerance::HALF, (0.5, 0.25), |a, b, c| {
                    blas.gemm_fp8(&spec, scales, a, b, c)
                });
            }
        }
    }
    // The other layouts fail with a typed error, not a cuBLAS status.
    let spec = GemmSpec::new(64, 64, 64, Layout::ColMajor, Layout::ColMajor, Layout::RowMajor);
    let a = gpu.zeros::<F8E4M3>(64 * 64).unwrap();
    let mut c = gpu.zeros::<bf16>(64 * 64).unwrap();
    assert!(matches!(blas.gemm_fp8(&spec, scales, &a, &a, &mut c), Err(GpuError::Unsupported { .. })));
}

#[test]
#[ignore = "needs a GPU"]
fn cublas_rejects_short_buffers_before_launching() {
    let gpu = gpu();
    let blas = Cublas::new(&gpu).unwrap();
    let spec = GemmSpec::new(16, 16, 16, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor);
    let a = gpu.zeros::<bf16>(16 * 16).unwrap();
    let short = gpu.zeros::<bf16>(16 * 16 - 1).unwrap();
    let mut c = gpu.zeros::<bf16>(16 * 16).unwrap();
    assert!(matches!(blas.gemm(&spec, &a, &short, &mut c), Err(GpuError::BufferTooSmall { what: "B", .. })));
    let mut wrong_output = gpu.zeros::<f16>(16 * 16).unwrap();
    assert!(matches!(blas.gemm(&spec, &a, &a, &mut wrong_output), Err(GpuError::Unsupported { .. })));
    gpu.synchronize().unwrap();
}

fn check_naive_types<TIn: Element, TOut: Element>(gpu: &Gpu, tolerance: Tolerance) {
    check_gemm_cases::<TIn, TOut>(gpu, "naive", Fp32Math::Ieee, tolerance, |spec, a, b, c| {
        naive::gemm(gpu, spec, a, b, c)
    });
}

#[test]
#[ignore = "needs a GPU"]
fn naive_gemm_matches_reference_for_every_type_and_layout() {
    let gpu = gpu();
    check_naive_types::<f32, f32>(&gpu, Tolerance::F32);
    check_naive_types::<f32, f16>(&gpu, Tolerance::HALF);
    check_naive_types::<f32, bf16>(&gpu, Tolerance::HALF);
    check_naive_types::<f16, f32>(&gpu, Tolerance::HALF);
    check_naive_types::<f16, f16>(&gpu, Tolerance::HALF);
    check_naive_types::<f16, bf16>(&gpu, Tolerance::HALF);
    check_naive_types::<bf16, f32>(&gpu, Tolerance::HALF);
    check_naive_types::<bf16, f16>(&gpu, Tolerance::HALF);
    check_naive_types::<bf16, bf16>(&gpu, Tolerance::HALF);
    // Degenerate extents.
    for (m, n, k) in [(1, 1, 1), (1, 300, 1), (300, 1, 2)] {
        let spec = GemmSpec::new(m, n, k, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor);
        check_gemm::<f32, f32>(&gpu, "naive", &spec, Tolerance::F32, (1.0, 1.0), |a, b, c| {
            naive::gemm(&gpu, &spec, a, b, c)
        });
    }
}

#[test]
#[ignore = "needs a GPU"]
fn naive_gemm_agrees_with_cublas_on_a_large_shape() {
    // What the fuzzer relies on: the naive kernel as the checker where the CPU is too slow.
    let gpu = gpu();
    let blas = Cublas::new(&gpu).unwrap();
    let spec = GemmSpec::new(1531, 1277, 2049, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor);
    let lens = spec.lens().unwrap();
    let a = gpu.random_normal::<bf16>(lens.a, 1).unwrap();
    let b = gpu.random_normal::<bf16>(lens.b, 2).unwrap();
    let mut from_naive = gpu.poisoned::<f32>(lens.c).unwrap();
    let mut from_cublas = gpu.poisoned::<f32>(lens.c).unwrap();
    naive::gemm(&gpu, &spec, &a, &b, &mut from_naive).unwrap();
    blas.gemm(&spec, &a, &b, &mut from_cublas).unwrap();
    let naive_out = to_f64_vec(&gpu.download(&from_naive).unwrap());
    let cublas_out = to_f64_vec(&gpu.download(&from_cublas).unwrap());
    let result = compare(&naive_out, &cublas_out, Tolerance::F32.with_scale((spec.k as f64).sqrt()));
    assert!(result.passed, "{result:?}");
}

// --- cuDNN --------------------------------------------------------------------------------

/// NHWC x KRSC -> NHWK cross-correlation in float64.
fn reference_conv(spec: &ConvSpec, x: &[f64], w: &[f64]) -> Vec<f64> {
    let lens = spec.lens().unwrap();
    let (cg, kg) = (spec.channels_per_group(), spec.k / spec.groups);
    let mut y = vec![0.0; lens.y];
    for n in 0..spec.n {
        for p in 0..lens.p {
            for q in 0..lens.q {
                for k in 0..spec.k {
                    let group = k / kg;
                    let mut acc = 0.0;
                    for r in 0..spec.r {
                        let h = (p * spec.stride[0] + r * spec.dilation[0]) as isize - spec.pad[0] as isize;
                        if h < 0 || h >= spec.h as isize {
                            continue;
                        }
                        for s in 0..spec.s {
                            let wi = (q * spec.stride[1] + s * spec.dilation[1]) as isize - spec.pad[1] as isize;
                            if wi < 0 || wi >= spec.w as isize {
                                continue;
                            }
                            let x_row = ((n * spec.h + h as usize) * spec.w + wi as usize) * spec.c + group * cg;
                            let w_row = ((k * spec.r + r) * spec.s + s) * cg;
                            acc += (0..cg).map(|c| x[x_row + c] * w[w_row + c]).sum::<f64>();
                        }
                    }
                    y[((n * lens.p + p) * lens.q + q) * spec.k + k] = acc;
                }
            }
        }
    }
    y
}

fn conv_shapes() -> Vec<ConvSpec> {
    vec![
        ConvSpec::new(2, 9, 11, 8, 16, 3, 3).with_padding(1, 1).with_stride(2, 2),
        ConvSpec::new(1, 12, 10, 12, 6, 3, 2).with_padding(2, 1).with_stride(1, 2).with_dilation(2, 1).with_groups(3),
        ConvSpec::new(2, 7, 7, 8, 8, 3, 3).with_padding(1, 1).with_groups(8),
        ConvSpec::new(3, 5, 6, 16, 24, 1, 1),
        ConvSpec::new(1, 15, 13, 3, 8, 5, 5).with_padding(2, 2).with_stride(2, 1),
    ]
}

fn check_cudnn_type<T: Element>(gpu: &Gpu, cudnn: &Cudnn, fp32_math: Fp32Math, tolerance: Tolerance) {
    for spec in conv_shapes() {
        let spec = spec.with_fp32_math(fp32_math);
        let lens = spec.lens().unwrap();
        let x_host = random::normal::<T>(lens.x, 11);
        let w_host = random::normal::<T>(lens.w, 12);
        let x = gpu.upload(&x_host).unwrap();
        let w = gpu.upload(&w_host).unwrap();
        let mut y = gpu.poisoned::<T>(lens.y).unwrap();
        let conv = cudnn.conv2d_forward(&spec, &x, &w, &mut y).unwrap_or_else(|e| panic!("{} {spec:?}: {e}", T::DTYPE));
        let algorithm = conv.algorithm();
        println!("cuDNN {} {fp32_math:?} {spec:?}: {algorithm}", T::DTYPE);
        check_conv_algorithm::<T>(algorithm, fp32_math);
        // The search wrote y; poison again so the checked run must write every element.
        gpu.poison(&mut y).unwrap();
        conv.run(&x, &w, &mut y).unwrap();
        let out = to_f64_vec(&gpu.download(&y).unwrap());
        let reference = reference_conv(&spec, &to_f64_vec(&x_host), &to_f64_vec(&w_host));
        let terms = (spec.r * spec.s * spec.channels_per_group()) as f64;
        let result = compare(&out, &reference, tolerance.with_scale(terms.sqrt()));
        assert!(result.passed, "{} {spec:?} with {algorithm}: {result:?}", T::DTYPE);
    }
}

/// What the search records is what it promises: a measured time, candidates within the
/// limits, and no engine whose numerics the baseline rules out.
fn check_conv_algorithm<T: Element>(algorithm: &ConvAlgorithm, fp32_math: Fp32Math) {
    assert!(algorithm.time_us.is_finite() && algorithm.time_us > 0.0, "{algorithm}");
    assert!((1..=MAX_CANDIDATES).contains(&algorithm.candidates), "{algorithm}");
    assert!(["A", "FALLBACK"].contains(&algorithm.heuristic), "{algorithm}");
    assert!(algorithm.workspace_bytes <= WORKSPACE_LIMIT, "{algorithm}");
    assert!(algorithm.engine >= 0, "{algorithm}");
    let has = |note: &str| algorithm.notes.iter().any(|n| n == note);
    assert!(!has("DOWN_CONVERT_INPUTS") && !has("REDUCED_PRECISION_REDUCTION"), "{algorithm}");
    if T::DTYPE == DType::F32 && fp32_math == Fp32Math::Ieee {
        assert!(!has("TENSOR_CORE"), "IEEE f32 ran on tensor cores (TF32): {algorithm}");
    }
}

#[test]
#[ignore = "needs a GPU"]
fn cudnn_conv_matches_reference_with_stride_padding_dilation_and_groups() {
    let gpu = gpu_alone();
    let cudnn = Cudnn::new(&gpu).unwrap();
    // cuDNN may pick Winograd or FFT for f32, which round more than a direct sum.
    let f32_transforms = Tolerance { rel_frobenius: 2e-4, elementwise: 2e-4, scale: 1.0 };
    check_cudnn_type::<f32>(&gpu, &cudnn, Fp32Math::Ieee, f32_transforms);
    check_cudnn_type::<f32>(&gpu, &cudnn, Fp32Math::Tf32, TF32);
    check_cudnn_type::<f16>(&gpu, &cudnn, Fp32Math::Ieee, Tolerance::HALF);
    check_cudnn_type::<bf16>(&gpu, &cudnn, Fp32Math::Ieee, Tolerance::HALF);
}

#[test]
#[ignore = "needs a GPU"]
fn cudnn_run_rejects_short_buffers() {
    let gpu = gpu_alone();
    let cudnn = Cudnn::new(&gpu).unwrap();
    let spec = ConvSpec::new(1, 8, 8, 8, 8, 3, 3);
    let lens = spec.lens().unwrap();
    let x = gpu.random_normal::<f16>(lens.x, 1).unwrap();
    let w = gpu.random_normal::<f16>(lens.w, 2).unwrap();
    let mut y = gpu.zeros::<f16>(lens.y).unwrap();
    let conv = cudnn.conv2d_forward(&spec, &x, &w, &mut y).unwrap();
    let mut short = gpu.zeros::<f16>(lens.y - 1).unwrap();
    assert!(matches!(conv.run(&x, &w, &mut short), Err(GpuError::BufferTooSmall { .. })));
}

#[test]
#[ignore = "needs a GPU"]
fn cudnn_plans_follow_the_alignment_of_the_setup_buffers() {
    let gpu = gpu_alone();
    let cudnn = Cudnn::new(&gpu).unwrap();
    let spec = ConvSpec::new(2, 8, 8, 16, 32, 3, 3).with_padding(1, 1);
    let lens = spec.lens().unwrap();
    let x_host = random::normal::<f16>(lens.x + 1, 21);
    let w_host = random::normal::<f16>(lens.w + 1, 22);
    let x = gpu.upload(&x_host).unwrap();
    let w = gpu.upload(&w_host).unwrap();
    let mut y = gpu.poisoned::<f16>(lens.y + 1).unwrap();

    // Made on 256-byte-aligned allocations, a plan refuses views one element (2 bytes) in.
    let aligned =
        cudnn.conv2d_forward(&spec, &x.slice(..lens.x), &w.slice(..lens.w), &mut y.slice_mut(..lens.y)).unwrap();
    let refused = aligned.run(&x.slice(1..), &w.slice(..lens.w), &mut y.slice_mut(..lens.y));
    assert!(matches!(refused, Err(GpuError::Misaligned { align: 16, .. })), "{refused:?}");

    // Made on those views, a plan runs on them and matches the reference.
    let offset = cudnn.conv2d_forward(&spec, &x.slice(1..), &w.slice(1..), &mut y.slice_mut(1..)).unwrap();
    println!("cuDNN f16 on 2-byte-aligned views {spec:?}: {}", offset.algorithm());
    gpu.poison(&mut y).unwrap();
    offset.run(&x.slice(1..), &w.slice(1..), &mut y.slice_mut(1..)).unwrap();
    let out = to_f64_vec(&gpu.download(&y).unwrap());
    let reference = reference_conv(&spec, &to_f64_vec(&x_host[1..]), &to_f64_vec(&w_host[1..]));
    let terms = (spec.r * spec.s * spec.channels_per_group()) as f64;
    let result = compare(&out[1..], &reference, Tolerance::HALF.with_scale(terms.sqrt()));
    assert!(result.passed, "{} {result:?}", offset.algorithm());
}

// --- CUB ----------------------------------------------------------------------------------

const CUB_LENGTHS: [usize; 3] = [1, 1001, (1 << 20) + 3];

/// Scalar outputs: the relative Frobenius error of one value is meaningless near zero, so
/// only the element-wise bound, scaled by sqrt(n), applies.
fn scalar_tolerance(elementwise: f64, n: usize) -> Tolerance {
    Tolerance { rel_frobenius: f64::INFINITY, elementwise, scale: (n as f64).sqrt() }
}

fn check_cub_reduce<TIn: Element, TOut: Element>(gpu: &Gpu, cub: &mut Cub, sum_tolerance: f64) {
    for n in CUB_LENGTHS {
        let host = random::normal::<TIn>(n, n as u64);
        let values = to_f64_vec(&host);
        let input = gpu.upload(&host).unwrap();
        let mut out = gpu.poisoned::<TOut>(1).unwrap();
        cub.reduce(ReduceOp::Sum, &input, &mut out).unwrap();
        let sum = to_f64_vec(&gpu.download(&out).unwrap());
        let expected = values.iter().sum::<f64>();
        let result = compare(&sum, &[expected], scalar_tolerance(sum_tolerance, n));
        assert!(result.passed, "sum {}->{} n={n}: {sum:?} vs {expected}: {result:?}", TIn::DTYPE, TOut::DTYPE);
        // The second run on the same shape must not grow the temporary storage.
        let held = cub.temp_bytes();
        cub.reduce(ReduceOp::Sum, &input, &mut out).unwrap();
        assert_eq!(cub.temp_bytes(), held);
    }
}

fn check_cub_extrema<T: Element>(gpu: &Gpu, cub: &mut Cub) {
    for n in CUB_LENGTHS {
        let host = random::normal::<T>(n, 3 * n as u64);
        let values = to_f64_vec(&host);
        let input = gpu.upload(&host).unwrap();
        for (op, expected) in [
            (ReduceOp::Max, values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            (ReduceOp::Min, values.iter().copied().fold(f64::INFINITY, f64::min)),
        ] {
            let mut out = gpu.poisoned::<T>(1).unwrap();
            cub.reduce(op, &input, &mut out).unwrap();
            let got = gpu.download(&out).unwrap()[0].to_f64();
            assert_eq!(got, expected, "{op:?} {} n={n}", T::DTYPE);
        }
    }
}

fn check_cub_native_sum<T: Element>(gpu: &Gpu, cub: &mut Cub) {
    for n in CUB_LENGTHS {
        let host = random::normal::<T>(n, 5 * n as u64);
        let expected = to_f64_vec(&host).iter().sum::<f64>();
        let input = gpu.upload(&host).unwrap();
        let mut out = gpu.poisoned::<T>(1).unwrap();
        cub.sum_native(&input, &mut out).unwrap();
        let got = to_f64_vec(&gpu.download(&out).unwrap());
        // Accumulating in the input type loses precision: a loose bound, only to catch garbage.
        let result = compare(&got, &[expected], scalar_tolerance(0.1, n));
        assert!(result.passed, "native sum {} n={n}: {got:?} vs {expected}", T::DTYPE);
    }
}

#[test]
#[ignore = "needs a GPU"]
fn cub_reductions_match_reference() {
    let gpu = gpu();
    let mut cub = Cub::new(&gpu);
    check_cub_reduce::<f32, f32>(&gpu, &mut cub, 1e-5);
    check_cub_reduce::<f16, f32>(&gpu, &mut cub, 1e-5);
    check_cub_reduce::<bf16, f32>(&gpu, &mut cub, 1e-5);
    check_cub_reduce::<f16, f16>(&gpu, &mut cub, 2e-3);
    check_cub_reduce::<bf16, bf16>(&gpu, &mut cub, 8e-3);
    check_cub_extrema::<f32>(&gpu, &mut cub);
    check_cub_extrema::<f16>(&gpu, &mut cub);
    check_cub_extrema::<bf16>(&gpu, &mut cub);
    check_cub_native_sum::<f16>(&gpu, &mut cub);
    check_cub_native_sum::<bf16>(&gpu, &mut cub);
}

#[test]
#[ignore = "needs a GPU"]
fn cub_argmax_returns_the_first_maximum() {
    let gpu = gpu();
    let mut cub = Cub::new(&gpu);
    let mut value = gpu.poisoned::<f32>(1).unwrap();
    let mut index = gpu.stream.alloc_zeros::<i64>(1).unwrap();
    let ties = gpu.upload(&[1.0f32, 5.0, 3.0, 5.0, -2.0]).unwrap();
    cub.argmax_f32(&ties, &mut value, &mut index).unwrap();
    assert_eq!((gpu.download(&value).unwrap()[0], gpu.stream.clone_dtoh(&index).unwrap()[0]), (5.0, 1));
    for n in CUB_LENGTHS {
        let host = random::normal::<f32>(n, 7 * n as u64);
        let (best_index, best) =
            host.iter().enumerate().fold((0, f32::NEG_INFINITY), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
        let input = gpu.upload(&host).unwrap();
        cub.argmax_f32(&input, &mut value, &mut index).unwrap();
        let got = (gpu.download(&value).unwrap()[0], gpu.stream.clone_dtoh(&index).unwrap()[0]);
        assert_eq!(got, (best, best_index as i64), "n={n}");
    }
}

fn check_cub_row_sum<TIn: Element, TOut: Element>(gpu: &Gpu, cub: &mut Cub, tolerance: Tolerance) {
    for (rows, cols, ld) in [(1, 1, 1), (37, 1000, 1003), (1000, 7, 7), (3, 70_001, 70_001)] {
        let host = random::normal::<TIn>((rows - 1) * ld + cols, (rows * cols) as u64);
        let values = to_f64_vec(&host);
        let input = gpu.upload(&host).unwrap();
        let mut out = gpu.poisoned::<TOut>(rows).unwrap();
        cub.row_sum(&input, rows, cols, ld, &mut out).unwrap();
        let got = to_f64_vec(&gpu.download(&out).unwrap());
        let expected: Vec<f64> = (0..rows).map(|i| values[i * ld..i * ld + cols].iter().sum()).collect();
        let result = compare(&got, &expected, tolerance.with_scale((cols as f64).sqrt()));
        assert!(result.passed, "row sum {}->{} {rows}x{cols} ld {ld}: {result:?}", TIn::DTYPE, TOut::DTYPE);
    }
}

#[test]
#[ignore = "needs a GPU"]
fn cub_row_sums_match_reference() {
    let gpu = gpu();
    let mut cub = Cub::new(&gpu);
    let f32_out = Tolerance { rel_frobenius: 1e-5, elementwise: 1e-5, scale: 1.0 };
    let half_out = Tolerance { rel_frobenius: 1e-2, elementwise: 8e-3, scale: 1.0 };
    check_cub_row_sum::<f32, f32>(&gpu, &mut cub, f32_out);
    check_cub_row_sum::<bf16, f32>(&gpu, &mut cub, f32_out);
    check_cub_row_sum::<f16, f32>(&gpu, &mut cub, f32_out);
    check_cub_row_sum::<bf16, bf16>(&gpu, &mut cub, half_out);
    check_cub_row_sum::<f16, f16>(&gpu, &mut cub, half_out);
}

#[test]
#[ignore = "needs a GPU"]
fn cub_reduces_a_view_that_starts_off_alignment() {
    let gpu = gpu();
    let mut cub = Cub::new(&gpu);
    let host = random::normal::<bf16>(10_007, 9);
    let input = gpu.upload(&host).unwrap();
    let view = input.slice(3..10_004);
    assert_eq!(view.len(), 10_001);
    let mut out = gpu.poisoned::<f32>(1).unwrap();
    cub.reduce(ReduceOp::Sum, &view, &mut out).unwrap();
    let expected: f64 = to_f64_vec(&host[3..10_004]).iter().sum();
    let got = to_f64_vec(&gpu.download(&out).unwrap());
    assert!(compare(&got, &[expected], scalar_tolerance(1e-5, 10_001)).passed, "{got:?} vs {expected}");
}
