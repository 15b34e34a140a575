//! Reductions against CUB (full and row reductions) and against the bandwidth roofline
//! (column sums, which CUB has no direct counterpart for).

use anyhow::{anyhow, bail, Result};
use ckb_common::baselines::cub::{Cub, ReduceOp as CubOp};
use ckb_common::{bf16, compare, to_f64_vec, Comparison, DType, Gpu, Timer, TimingConfig, Tolerance};
use ckb_reduce::reference as cpu;
use ckb_reduce::{EwElement, ReduceOp, ReduceOutput, Reducer};
use serde::Deserialize;

use super::elementwise::into_gpu_error;
use super::size_label;
use crate::record::CaseResult;

/// One case of the phase-4 set, as gates.toml spells it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReduceCase {
    /// "full", "rows" (contiguous last axis) or "columns" (strided first axis).
    pub kind: String,
    pub op: String,
    pub dtype: String,
    #[serde(default)]
    pub n: usize,
    #[serde(default)]
    pub rows: usize,
    #[serde(default)]
    pub cols: usize,
}

fn ops(name: &str) -> Result<(ReduceOp, CubOp)> {
    match name {
        "sum" => Ok((ReduceOp::Sum, CubOp::Sum)),
        "max" => Ok((ReduceOp::Max, CubOp::Max)),
        "min" => Ok((ReduceOp::Min, CubOp::Min)),
        other => Err(anyhow!("reduce op {other}: sum, max or min")),
    }
}

/// Sums are checked against ||x||_2 as well as the result (they may cancel); extrema are exact.
fn tolerance(op: ReduceOp, lane_len: usize) -> Tolerance {
    match op {
        ReduceOp::Max | ReduceOp::Min => Tolerance { rel_frobenius: 0.0, elementwise: 0.0, scale: 0.0 },
        _ => Tolerance { rel_frobenius: 1e-5, elementwise: 1e-5, scale: (lane_len as f64).sqrt() },
    }
}

pub fn measure_case(
    gpu: &Gpu,
    reducer: &mut Reducer,
    cub: &mut Cub,
    copy_gbs: f64,
    case: &ReduceCase,
) -> Result<CaseResult> {
    let (op, cub_op) = ops(&case.op)?;
    match (case.kind.as_str(), case.dtype.as_str(), op) {
        ("full", "f32", _) => full::<f32, f32>(gpu, reducer, cub, copy_gbs, op, cub_op, case.n),
        ("full", "bf16", ReduceOp::Sum) => full::<bf16, f32>(gpu, reducer, cub, copy_gbs, op, cub_op, case.n),
        ("full", "bf16", _) => full::<bf16, bf16>(gpu, reducer, cub, copy_gbs, op, cub_op, case.n),
        ("rows", "f32", ReduceOp::Sum) => rows::<f32>(gpu, reducer, cub, copy_gbs, case.rows, case.cols),
        ("rows", "bf16", ReduceOp::Sum) => rows::<bf16>(gpu, reducer, cub, copy_gbs, case.rows, case.cols),
        ("columns", "f32", ReduceOp::Sum) => columns(gpu, reducer, copy_gbs, case.rows, case.cols),
        _ => bail!("no phase-4 measurement for {case:?}"),
    }
}

/// The output as f64 and whether it matches the reference (rounded to O).
fn check<O: EwElement>(
    gpu: &Gpu,
    out: &cudarc::driver::CudaSlice<O>,
    reference: &[f64],
    tol: Tolerance,
) -> Result<Comparison> {
    let round = |x: f64| O::from_f64(x).to_f64();
    let expected: Vec<f64> = reference.iter().map(|&x| round(x)).collect();
    Ok(compare(&to_f64_vec(&gpu.download(out)?), &expected, tol))
}

fn case_result(
    name: String,
    variant: String,
    bytes: usize,
    ours_us: f64,
    baseline_us: f64,
    copy_gbs: f64,
    check: Comparison,
) -> CaseResult {
    let gbs = bytes as f64 / (ours_us * 1e-6) / 1e9;
    CaseResult {
        name,
        variant,
        ours_us,
        baseline_us: Some(baseline_us),
        ratio: baseline_us / ours_us,
        tflops: None,
        gbs: Some(gbs),
        fraction_of_copy: Some(gbs / copy_gbs),
        correct: check.passed,
        rel_err: check.rel_err,
        vendor_us: None,
    }
}

fn full<T: EwElement, O: ReduceOutput<T>>(
    gpu: &Gpu,
    reducer: &mut Reducer,
    cub: &mut Cub,
    copy_gbs: f64,
    op: ReduceOp,
    cub_op: CubOp,
    n: usize,
) -> Result<CaseResult> {
    let x = gpu.random_normal::<T>(n, 21)?;
    let mut ours = gpu.poisoned::<O>(1)?;
    let mut theirs = gpu.zeros::<O>(1)?;
    reducer.reduce(op, &x, &mut ours)?;
    let reference = cpu::reduce(op, &to_f64_vec(&gpu.download(&x)?))?;
    let check = check(gpu, &ours, &[reference], tolerance(op, n))?;
    let variant = reducer.plan::<T>(&ckb_reduce::reduce::AxisProblem::full(n))?.variant.name().to_string();
    let mut timer = Timer::new(gpu, TimingConfig::default())?;
    let stats = timer
        .time_interleaved(&mut [&mut |_| reducer.reduce(op, &x, &mut ours).map_err(into_gpu_error), &mut |_| {
            cub.reduce(cub_op, &x, &mut theirs)
        }])?;
    let name = format!("{} {}->{} n={}", op.name(), T::DTYPE, O::DTYPE, size_label(n));
    Ok(case_result(name, variant, n * T::DTYPE.size_bytes(), stats[0].median_us, stats[1].median_us, copy_gbs, check))
}

fn rows<T: EwElement>(
    gpu: &Gpu,
    reducer: &mut Reducer,
    cub: &mut Cub,
    copy_gbs: f64,
    rows: usize,
    cols: usize,
) -> Result<CaseResult>
where
    f32: ReduceOutput<T>,
{
    let x = gpu.random_normal::<T>(rows * cols, 22)?;
    let mut ours = gpu.poisoned::<f32>(rows)?;
    let mut theirs = gpu.zeros::<f32>(rows)?;
    let shape = [rows, cols];
    reducer.reduce_axis(ReduceOp::Sum, &x, &shape, 1, &mut ours)?;
    let host = to_f64_vec(&gpu.download(&x)?);
    let view = cpu::StridedView::contiguous(&host, &shape)?;
    let reference = cpu::reduce_axis(ReduceOp::Sum, &view, 1)?;
    let check = check(gpu, &ours, &reference, tolerance(ReduceOp::Sum, cols))?;
    let variant =
        reducer.plan::<T>(&ckb_reduce::reduce::AxisProblem::along("sum", &shape, 1)?)?.variant.name().to_string();
    let mut timer = Timer::new(gpu, TimingConfig::default())?;
    let stats = timer.time_interleaved(&mut [
        &mut |_| reducer.reduce_axis(ReduceOp::Sum, &x, &shape, 1, &mut ours).map_err(into_gpu_error),
        &mut |_| cub.row_sum(&x, rows, cols, cols, &mut theirs),
    ])?;
    let name = format!("row-sum {}->f32 {rows}x{cols}", T::DTYPE);
    Ok(case_result(
        name,
        variant,
        rows * cols * T::DTYPE.size_bytes(),
        stats[0].median_us,
        stats[1].median_us,
        copy_gbs,
        check,
    ))
}

/// Column sums against the roofline: the time the bytes take at the copy bandwidth.
fn columns(gpu: &Gpu, reducer: &mut Reducer, copy_gbs: f64, rows: usize, cols: usize) -> Result<CaseResult> {
    let x = gpu.random_normal::<f32>(rows * cols, 23)?;
    let mut ours = gpu.poisoned::<f32>(cols)?;
    let shape = [rows, cols];
    reducer.reduce_axis(ReduceOp::Sum, &x, &shape, 0, &mut ours)?;
    let host = to_f64_vec(&gpu.download(&x)?);
    let view = cpu::StridedView::contiguous(&host, &shape)?;
    let reference = cpu::reduce_axis(ReduceOp::Sum, &view, 0)?;
    let check = check(gpu, &ours, &reference, tolerance(ReduceOp::Sum, rows))?;
    let variant =
        reducer.plan::<f32>(&ckb_reduce::reduce::AxisProblem::along("sum", &shape, 0)?)?.variant.name().to_string();
    let mut timer = Timer::new(gpu, TimingConfig::default())?;
    let stats =
        timer.time(&mut |_| reducer.reduce_axis(ReduceOp::Sum, &x, &shape, 0, &mut ours).map_err(into_gpu_error))?;
    let bytes = rows * cols * DType::F32.size_bytes();
    let roofline_us = bytes as f64 / (copy_gbs * 1e9) * 1e6;
    Ok(case_result(
        format!("column-sum f32 {rows}x{cols} (vs roofline)"),
        variant,
        bytes,
        stats.median_us,
        roofline_us,
        copy_gbs,
        check,
    ))
}

/// `ckb bench reduce`: the phase-4 set from gates.toml.
pub fn bench(gpu: &Gpu, copy_gbs: f64) -> Result<Vec<CaseResult>> {
    let cases: Vec<ReduceCase> = crate::table::find("phase4a")?.setting("cases")?;
    let mut reducer = Reducer::new(gpu)?;
    let mut cub = Cub::new(gpu);
    let progress = crate::progress::Progress::new("bench reduce", cases.len() as u64);
    let mut rows = Vec::new();
    for case in &cases {
        let row = measure_case(gpu, &mut reducer, &mut cub, copy_gbs, case)?;
        progress.step(&format!("{} {:.3}x", row.name, row.ratio));
        rows.push(row);
    }
    progress.finish();
    Ok(rows)
}

#[derive(Debug, Clone)]
struct FuzzCase {
    /// 0..6: ReduceOp::ALL, 6: argmax, 7: argmin.
    op: usize,
    dtype: usize,
    shape: Vec<usize>,
    /// None: the whole tensor; Some(a): along axis a.
    axis: Option<usize>,
    offset: usize,
}

/// Random ops, dtypes, 1-3-D shapes, axes and view offsets against the CPU reference
/// (f32 outputs; argmax/argmin must name the same first index).
pub fn fuzz(gpu: &Gpu, cases: u32, seed: u64) -> Result<crate::fuzz::FuzzReport> {
    use proptest::prelude::*;
    let shapes = prop_oneof![
        (1usize..3_000_000).prop_map(|n| vec![n]),
        (1usize..3000, 1usize..3000).prop_map(|(a, b)| vec![a, b]),
        (1usize..64, 1usize..300, 1usize..300).prop_map(|(a, b, c)| vec![a, b, c]),
    ];
    let strategy = (0..8usize, 0..3usize, shapes, any::<Option<prop::sample::Index>>(), 0usize..8).prop_map(
        |(op, dtype, shape, axis, offset)| {
            let axis = axis.map(|i| i.index(shape.len()));
            FuzzCase { op, dtype, shape, axis, offset }
        },
    );
    let mut reducer = Reducer::new(gpu)?;
    let reducer = std::cell::RefCell::new(&mut reducer);
    Ok(crate::fuzz::fuzz_with("reduce", cases, seed, strategy, |c| {
        let mut r = reducer.borrow_mut();
        let outcome = match c.dtype {
            0 => fuzz_one::<f32>(gpu, &mut r, c),
            1 => fuzz_one::<bf16>(gpu, &mut r, c),
            _ => fuzz_one::<ckb_common::f16>(gpu, &mut r, c),
        };
        outcome.map_err(|e| format!("{e:#}"))
    }))
}

fn fuzz_one<T: EwElement>(gpu: &Gpu, reducer: &mut Reducer, c: &FuzzCase) -> Result<()>
where
    f32: ReduceOutput<T>,
{
    let n: usize = c.shape.iter().product();
    let x = gpu.random_normal::<T>(n + c.offset, n as u64)?;
    let view = x.slice(c.offset..);
    let host = to_f64_vec(&gpu.download(&view)?);
    let (shape, axis) = match c.axis {
        Some(a) => (c.shape.clone(), a),
        None => (vec![n], 0),
    };
    let outputs = n / shape[axis];
    let strided = cpu::StridedView::contiguous(&host, &shape)?;
    if c.op < 6 {
        let op = ReduceOp::ALL[c.op];
        let mut out = gpu.poisoned::<f32>(outputs)?;
        reducer.reduce_axis(op, &view, &shape, axis, &mut out)?;
        let want = cpu::reduce_axis(op, &strided, axis)?;
        let got = check(gpu, &out, &want, tolerance(op, shape[axis]))?;
        if !got.passed {
            bail!(
                "{} {} {shape:?} axis {axis}: rel err {:.2e}, worst {:.2e}, {} NaN",
                op.name(),
                T::DTYPE,
                got.rel_err,
                got.max_elementwise,
                got.nan_count
            );
        }
    } else {
        let op = if c.op == 6 { ckb_reduce::ArgOp::ArgMax } else { ckb_reduce::ArgOp::ArgMin };
        let mut values = gpu.poisoned::<f32>(outputs)?;
        let mut indices = gpu.stream.alloc_zeros::<i64>(outputs)?;
        reducer.arg_reduce_axis(op, &view, &shape, axis, &mut values, &mut indices)?;
        let want = cpu::arg_reduce_axis(op, &strided, axis)?;
        let got_idx = gpu.stream.clone_dtoh(&indices)?;
        let got_val = to_f64_vec(&gpu.download(&values)?);
        for (j, w) in want.iter().enumerate() {
            if got_idx[j] != w.index as i64 || got_val[j] != w.value {
                bail!(
                    "{} {} {shape:?} axis {axis} output {j}: got ({}, {}), want ({}, {})",
                    op.name(),
                    T::DTYPE,
                    got_idx[j],
                    got_val[j],
                    w.index,
                    w.value
                );
            }
        }
    }
    Ok(())
}
