//! The element-wise family against the copy-bandwidth ceiling (phase 1, issue 4's bench).

use anyhow::Result;
use ckb_common::{bf16, compare, f16, to_f64_vec, DType, Element, Gpu, Timer, TimingConfig, Tolerance};
use ckb_reduce::elementwise::{self as ew, BinaryOp, EwVariant};
use ckb_reduce::reference as cpu;
use ckb_reduce::EwElement;

use super::size_label;
use crate::fuzz::FuzzReport;
use crate::record::CaseResult;

const BINARY_OPS: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::AddRelu];

fn tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::F32 => Tolerance::F32,
        _ => Tolerance::HALF,
    }
}

/// The CPU result of a binary op, rounded once to T as the kernels do.
fn binary_reference<T: Element>(op: BinaryOp, a: &[T], b: &[T]) -> Vec<f64> {
    let (a, b) = (to_f64_vec(a), to_f64_vec(b));
    let exact = match op {
        BinaryOp::Add => cpu::add(&a, &b),
        BinaryOp::Sub => cpu::sub(&a, &b),
        BinaryOp::Mul => cpu::mul(&a, &b),
        BinaryOp::AddRelu => cpu::add_relu(&a, &b),
    };
    exact.into_iter().map(|x| T::from_f64(x).to_f64()).collect()
}

/// One binary op at length n: checked against the reference, then timed against a
/// device-to-device copy of the same bytes; the ratio is the fraction of `copy_gbs`.
pub fn measure_binary<T: EwElement>(
    gpu: &Gpu,
    copy_gbs: f64,
    op: BinaryOp,
    n: usize,
    variant: EwVariant,
) -> Result<CaseResult> {
    let a = gpu.random_normal::<T>(n, 1)?;
    let b = gpu.random_normal::<T>(n, 2)?;
    let mut out = gpu.poisoned::<T>(n)?;
    ew::binary_with(gpu, variant, op, &a, &b, &mut out)?;
    let reference = binary_reference(op, &gpu.download(&a)?, &gpu.download(&b)?);
    let check = compare(&to_f64_vec(&gpu.download(&out)?), &reference, tolerance(T::DTYPE));
    drop(reference);

    let bytes = 3 * n * T::DTYPE.size_bytes();
    let (ours, copy) = time_against_copy(gpu, bytes, &mut |_| {
        ew::binary_with(gpu, variant, op, &a, &b, &mut out).map_err(into_gpu_error)
    })?;
    Ok(streaming_case(
        format!("{} {} n={}", op.name(), T::DTYPE, size_label(n)),
        variant.name,
        bytes,
        ours,
        copy,
        copy_gbs,
        check,
    ))
}

/// Times `ours` interleaved with a device-to-device copy that moves the same bytes (half
/// read, half written); returns both medians in microseconds.
pub fn time_against_copy(gpu: &Gpu, bytes: usize, ours: ckb_common::timing::Candidate<'_>) -> Result<(f64, f64)> {
    let src = gpu.stream.alloc_zeros::<u8>(bytes / 2)?;
    let mut dst = gpu.stream.alloc_zeros::<u8>(bytes / 2)?;
    let mut timer = Timer::new(gpu, TimingConfig::default())?;
    let stats = timer.time_interleaved(&mut [ours, &mut |_| Ok(gpu.stream.memcpy_dtod(&src, &mut dst)?)])?;
    Ok((stats[0].median_us, stats[1].median_us))
}

/// A memory-bound case: its ratio is the same-bytes copy's time over ours, i.e. the
/// fraction of copy bandwidth reached in this run.
pub fn streaming_case(
    name: String,
    variant: &str,
    bytes: usize,
    ours_us: f64,
    copy_us: f64,
    ceiling_gbs: f64,
    check: ckb_common::Comparison,
) -> CaseResult {
    let gbs = bytes as f64 / (ours_us * 1e-6) / 1e9;
    CaseResult {
        name,
        variant: variant.to_string(),
        ours_us,
        baseline_us: Some(copy_us),
        ratio: copy_us / ours_us,
        tflops: None,
        gbs: Some(gbs),
        fraction_of_copy: Some(gbs / ceiling_gbs),
        correct: check.passed,
        rel_err: check.rel_err,
        vendor_us: None,
    }
}

/// Ops return the crate's error; the timer wants the GPU error it wraps.
pub(crate) fn into_gpu_error(e: ckb_reduce::ReduceError) -> ckb_common::GpuError {
    match e {
        ckb_reduce::ReduceError::Gpu(g) => g,
        other => ckb_common::GpuError::Library { library: "ckb-reduce", detail: other.to_string() },
    }
}

/// `ckb bench elementwise`: every binary op and dtype at 2^24 and 2^28 elements.
pub fn bench(gpu: &Gpu, copy_gbs: f64, variant: Option<&str>) -> Result<Vec<CaseResult>> {
    let variant = match variant {
        Some(name) => EwVariant::by_name(name).ok_or_else(|| anyhow::anyhow!("no element-wise variant {name}"))?,
        None => EwVariant::default(),
    };
    let mut rows = Vec::new();
    for n in [1usize << 24, 1 << 28] {
        for op in BINARY_OPS {
            rows.push(measure_binary::<f32>(gpu, copy_gbs, op, n, variant)?);
            rows.push(measure_binary::<bf16>(gpu, copy_gbs, op, n, variant)?);
            rows.push(measure_binary::<f16>(gpu, copy_gbs, op, n, variant)?);
        }
        rows.push(measure_unary::<f32, f32>(gpu, copy_gbs, Unary::Axpy, n)?);
        rows.push(measure_unary::<bf16, bf16>(gpu, copy_gbs, Unary::Axpy, n)?);
        rows.push(measure_unary::<f32, f32>(gpu, copy_gbs, Unary::Scale, n)?);
        rows.push(measure_unary::<bf16, bf16>(gpu, copy_gbs, Unary::Scale, n)?);
        rows.push(measure_unary::<f32, bf16>(gpu, copy_gbs, Unary::Cast, n)?);
        rows.push(measure_unary::<bf16, f32>(gpu, copy_gbs, Unary::Cast, n)?);
        rows.push(measure_unary::<f32, f16>(gpu, copy_gbs, Unary::Cast, n)?);
        rows.push(measure_unary::<f32, f32>(gpu, copy_gbs, Unary::BiasAdd, n)?);
        rows.push(measure_unary::<bf16, bf16>(gpu, copy_gbs, Unary::BiasAdd, n)?);
    }
    Ok(rows)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unary {
    /// y = 0.75 x + y
    Axpy,
    /// y = 0.75 x
    Scale,
    /// y = x as D
    Cast,
    /// y[i, j] = x[i, j] + bias[j], rows of 4096
    BiasAdd,
}

/// The one-input ops: checked against the reference (rounded to D), then timed against a
/// copy of the bytes they must move.
fn measure_unary<S: EwElement, D: EwElement>(gpu: &Gpu, copy_gbs: f64, op: Unary, n: usize) -> Result<CaseResult> {
    const ALPHA: f32 = 0.75;
    const ROW: usize = 4096;
    let x = gpu.random_normal::<S>(n, 3)?;
    let hx = to_f64_vec(&gpu.download(&x)?);
    let mut y = gpu.random_normal::<D>(n, 4)?;
    let hy = to_f64_vec(&gpu.download(&y)?);
    let bias = gpu.random_normal::<D>(ROW, 5)?;
    let hb = to_f64_vec(&gpu.download(&bias)?);
    // The same input in the output type, for the ops that take one type.
    let xd = gpu.upload(&hx.iter().map(|&v| D::from_f64(v)).collect::<Vec<D>>())?;
    let run = |y: &mut cudarc::driver::CudaSlice<D>| -> ckb_reduce::ReduceResult<()> {
        match op {
            Unary::Axpy => ew::axpy(gpu, ALPHA, &xd, y),
            Unary::Scale => ew::scale(gpu, ALPHA, &xd, y),
            Unary::Cast => ew::cast(gpu, &x, y),
            Unary::BiasAdd => ew::bias_add(gpu, n / ROW, ROW, &xd, &bias, y),
        }
    };
    run(&mut y)?;
    let exact: Vec<f64> = match op {
        Unary::Axpy => hx.iter().zip(&hy).map(|(a, b)| f64::from(ALPHA) * D::from_f64(*a).to_f64() + b).collect(),
        Unary::Scale => hx.iter().map(|a| f64::from(ALPHA) * D::from_f64(*a).to_f64()).collect(),
        Unary::Cast => hx.clone(),
        Unary::BiasAdd => hx.iter().enumerate().map(|(i, a)| D::from_f64(*a).to_f64() + hb[i % ROW]).collect(),
    };
    let reference: Vec<f64> = exact.into_iter().map(|v| D::from_f64(v).to_f64()).collect();
    let check = compare(&to_f64_vec(&gpu.download(&y)?), &reference, tolerance(D::DTYPE));
    let (s, d) = (S::DTYPE.size_bytes(), D::DTYPE.size_bytes());
    let bytes = match op {
        Unary::Axpy => 3 * n * d,
        Unary::Scale | Unary::BiasAdd => 2 * n * d,
        Unary::Cast => n * (s + d),
    };
    let (ours, copy) = time_against_copy(gpu, bytes, &mut |_| run(&mut y).map_err(into_gpu_error))?;
    let name = match op {
        Unary::Cast => format!("cast {}->{} n={}", S::DTYPE, D::DTYPE, size_label(n)),
        other => format!("{} {} n={}", format!("{other:?}").to_lowercase(), D::DTYPE, size_label(n)),
    };
    Ok(streaming_case(name, EwVariant::default().name, bytes, ours, copy, copy_gbs, check))
}

/// Random ops, dtypes, lengths and misaligned views against the CPU reference.
pub fn fuzz(gpu: &Gpu, cases: u32, seed: u64) -> Result<FuzzReport> {
    let strategy = (0..BINARY_OPS.len(), 0..3usize, 1usize..3_000_000, 0usize..8, 0usize..8);
    Ok(crate::fuzz::fuzz_with("elementwise", cases, seed, strategy, |&(op, dtype, n, off_in, off_out)| {
        let op = BINARY_OPS[op];
        match dtype {
            0 => fuzz_case::<f32>(gpu, op, n, off_in, off_out),
            1 => fuzz_case::<bf16>(gpu, op, n, off_in, off_out),
            _ => fuzz_case::<f16>(gpu, op, n, off_in, off_out),
        }
        .map_err(|e| format!("{e:#}"))
        .and_then(|ok| {
            if ok.0 {
                Ok(())
            } else {
                Err(format!("{} {} n={n}: rel err {:.2e}, {} NaN", op.name(), T_NAME[dtype], ok.1, ok.2))
            }
        })
    }))
}

const T_NAME: [&str; 3] = ["f32", "bf16", "f16"];

/// Views offset by `off_in` (inputs) and `off_out` (output) elements; returns (passed, rel_err, nans).
fn fuzz_case<T: EwElement>(
    gpu: &Gpu,
    op: BinaryOp,
    n: usize,
    off_in: usize,
    off_out: usize,
) -> Result<(bool, f64, usize)> {
    let a = gpu.random_normal::<T>(n + off_in, n as u64)?;
    let b = gpu.random_normal::<T>(n + off_in, n as u64 + 1)?;
    let mut out = gpu.poisoned::<T>(n + off_out)?;
    let (va, vb) = (a.slice(off_in..), b.slice(off_in..));
    let mut vo = out.slice_mut(off_out..);
    ew::binary_with(gpu, EwVariant::default(), op, &va, &vb, &mut vo)?;
    let reference = binary_reference(op, &gpu.download(&va)?, &gpu.download(&vb)?);
    let got = to_f64_vec(&gpu.download(&vo)?);
    let c = compare(&got, &reference, tolerance(T::DTYPE));
    Ok((c.passed, c.rel_err, c.nan_count))
}
