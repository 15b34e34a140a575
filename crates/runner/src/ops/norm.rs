//! Softmax, LayerNorm and RMSNorm against the memory roofline (a same-bytes copy in the same
//! run), with cuDNN's softmax timed beside; and the norm fuzzer, forward and backward.

use anyhow::{anyhow, bail, Result};
use ckb_common::baselines::cudnn_softmax::CudnnSoftmax;
use ckb_common::{bf16, compare, f16, to_f64_vec, Comparison, DType, Gpu, Timer, TimingConfig, Tolerance};
use ckb_norm::reference as cpu;
use ckb_norm::{NormElement, NormOp, NormVariant, Normalizer, RowsProblem, NORM_VARIANTS};
use cudarc::driver::CudaSlice;
use proptest::prelude::*;
use serde::Deserialize;

use super::elementwise::{streaming_case, time_against_copy};
use crate::fuzz::FuzzReport;
use crate::record::CaseResult;

const EPS: f32 = 1e-5;

#[derive(Debug, Clone, Deserialize)]
pub struct NormCase {
    pub op: String,
    pub dtype: String,
    pub rows: usize,
    pub cols: usize,
}

fn tolerance(dtype: DType) -> Tolerance {
    if dtype == DType::F32 {
        Tolerance::F32
    } else {
        Tolerance::HALF
    }
}

/// Statistics are f32 whatever T is; their error is absolute near zero (the mean of a long
/// row of unit normals), so they are held to an element-wise bound with scale 1.
const STATS: Tolerance = Tolerance { rel_frobenius: f64::INFINITY, elementwise: 1e-5, scale: 1.0 };

fn both(a: Comparison, b: Comparison) -> Comparison {
    Comparison {
        rel_err: a.rel_err.max(b.rel_err),
        max_abs_err: a.max_abs_err.max(b.max_abs_err),
        max_elementwise: a.max_elementwise.max(b.max_elementwise),
        nan_count: a.nan_count + b.nan_count,
        passed: a.passed && b.passed,
    }
}

/// The reference rounded to T, as the kernels write it.
fn rounded<T: NormElement>(xs: &[f64]) -> Vec<f64> {
    xs.iter().map(|&x| T::from_f64(x).to_f64()).collect()
}

fn got<T: NormElement>(gpu: &Gpu, buf: &CudaSlice<T>) -> Result<Vec<f64>> {
    Ok(to_f64_vec(&gpu.download(buf)?))
}

/// Inputs for one problem: x (strided rows), gamma, beta, dy.
struct Inputs<T: NormElement> {
    x: CudaSlice<T>,
    gamma: CudaSlice<T>,
    beta: CudaSlice<T>,
    host_x: Vec<f64>,
    host_gamma: Vec<f64>,
    host_beta: Vec<f64>,
}

fn inputs<T: NormElement>(gpu: &Gpu, p: &RowsProblem, seed: u64) -> Result<Inputs<T>> {
    let x = gpu.random_normal::<T>(p.input_len(), seed)?;
    let gamma = gpu.random_normal::<T>(p.cols, seed + 1)?;
    let beta = gpu.random_normal::<T>(p.cols, seed + 2)?;
    Ok(Inputs {
        host_x: to_f64_vec(&gpu.download(&x)?),
        host_gamma: to_f64_vec(&gpu.download(&gamma)?),
        host_beta: to_f64_vec(&gpu.download(&beta)?),
        x,
        gamma,
        beta,
    })
}

fn norm_err(e: ckb_norm::NormError) -> ckb_common::GpuError {
    match e {
        ckb_norm::NormError::Gpu(g) => g,
        other => ckb_common::GpuError::Library { library: "ckb-norm", detail: other.to_string() },
    }
}

/// Runs one forward op once into fresh poisoned outputs and checks it against the reference.
fn check_forward<T: NormElement>(
    gpu: &Gpu,
    norm: &mut Normalizer,
    op: NormOp,
    p: &RowsProblem,
    inp: &Inputs<T>,
) -> Result<Comparison> {
    let shape = p.reference_rows();
    let mut y = gpu.poisoned::<T>(p.output_len())?;
    let mut mean = gpu.poisoned::<f32>(p.rows)?;
    let mut rstd = gpu.poisoned::<f32>(p.rows)?;
    let tol = tolerance(T::DTYPE);
    Ok(match op {
        NormOp::Softmax | NormOp::LogSoftmax => {
            if op == NormOp::Softmax {
                norm.softmax(p, &inp.x, &mut y)?;
            } else {
                norm.log_softmax(p, &inp.x, &mut y)?;
            }
            let want = if op == NormOp::Softmax {
                cpu::softmax(&inp.host_x, shape)
            } else {
                cpu::log_softmax(&inp.host_x, shape)
            };
            compare(&got(gpu, &y)?, &rounded::<T>(&want), tol)
        }
        NormOp::LayerNorm => {
            norm.layernorm(p, &inp.x, &inp.gamma, &inp.beta, EPS, &mut y, &mut mean, &mut rstd)?;
            let want = cpu::layernorm(&inp.host_x, shape, &inp.host_gamma, &inp.host_beta, f64::from(EPS));
            let y_check = compare(&got(gpu, &y)?, &rounded::<T>(&want.y), tol);
            let stats = both(
                compare(&got(gpu, &mean)?, &want.mean, STATS),
                compare(&got(gpu, &rstd)?, &want.rstd, Tolerance::F32.with_scale(0.0)),
            );
            both(y_check, stats)
        }
        NormOp::RmsNorm => {
            norm.rmsnorm(p, &inp.x, &inp.gamma, EPS, &mut y, &mut rstd)?;
            let want = cpu::rmsnorm(&inp.host_x, shape, &inp.host_gamma, f64::from(EPS));
            both(
                compare(&got(gpu, &y)?, &rounded::<T>(&want.y), tol),
                compare(&got(gpu, &rstd)?, &want.rstd, Tolerance::F32.with_scale(0.0)),
            )
        }
        other => bail!("{} is not a forward op", other.name()),
    })
}

fn forward_op(name: &str) -> Result<NormOp> {
    match name {
        "softmax" => Ok(NormOp::Softmax),
        "log_softmax" => Ok(NormOp::LogSoftmax),
        "layernorm" => Ok(NormOp::LayerNorm),
        "rmsnorm" => Ok(NormOp::RmsNorm),
        other => Err(anyhow!("norm op {other}: softmax, log_softmax, layernorm or rmsnorm")),
    }
}

/// One gate case, on the heuristic's variant.
pub fn measure_case(gpu: &Gpu, copy_gbs: f64, case: &NormCase) -> Result<CaseResult> {
    measure_variant(gpu, copy_gbs, case, None)
}

/// One case on `variant` (None: the heuristic's).
fn measure_variant(gpu: &Gpu, copy_gbs: f64, case: &NormCase, variant: Option<NormVariant>) -> Result<CaseResult> {
    let op = forward_op(&case.op)?;
    match case.dtype.as_str() {
        "f32" => measure::<f32>(gpu, copy_gbs, op, case.rows, case.cols, variant),
        "bf16" => measure::<bf16>(gpu, copy_gbs, op, case.rows, case.cols, variant),
        "f16" => measure::<f16>(gpu, copy_gbs, op, case.rows, case.cols, variant),
        other => bail!("norm dtype {other}"),
    }
}

/// Whether `variant` holds a case's rows (benches skip the cases it cannot run).
fn holds(gpu: &Gpu, case: &NormCase, variant: NormVariant) -> Result<bool> {
    let op = forward_op(&case.op)?;
    let p = RowsProblem::dense(case.rows, case.cols);
    let mut norm = Normalizer::new(gpu)?;
    norm.force_variant(Some(variant));
    Ok(match case.dtype.as_str() {
        "f32" => norm.plan::<f32>(op, &p).is_ok(),
        "bf16" => norm.plan::<bf16>(op, &p).is_ok(),
        _ => norm.plan::<f16>(op, &p).is_ok(),
    })
}

/// One forward op: checked, then timed against a copy of the same bytes (one read and one
/// write of the matrix); softmax is also timed against cuDNN's.
fn measure<T: NormElement>(
    gpu: &Gpu,
    copy_gbs: f64,
    op: NormOp,
    rows: usize,
    cols: usize,
    forced: Option<NormVariant>,
) -> Result<CaseResult> {
    let p = RowsProblem::dense(rows, cols);
    let inp = inputs::<T>(gpu, &p, 31)?;
    let mut norm = Normalizer::new(gpu)?;
    norm.force_variant(forced);
    let check = check_forward(gpu, &mut norm, op, &p, &inp)?;
    let plan = norm.plan::<T>(op, &p)?;
    // Gate records name the variant; a forced (bench) run also gives its shape.
    let variant = match forced {
        None => plan.variant.name().to_string(),
        Some(_) => format!("{} {}x{} p{}", plan.variant.name(), plan.parts, plan.threads, plan.packs),
    };
    let mut y = gpu.zeros::<T>(p.output_len())?;
    let mut mean = gpu.zeros::<f32>(rows)?;
    let mut rstd = gpu.zeros::<f32>(rows)?;
    let bytes = 2 * rows * cols * T::DTYPE.size_bytes();
    let (ours_us, copy_us) = time_against_copy(gpu, bytes, &mut |_| {
        match op {
            NormOp::Softmax => norm.softmax(&p, &inp.x, &mut y),
            NormOp::LogSoftmax => norm.log_softmax(&p, &inp.x, &mut y),
            NormOp::LayerNorm => norm.layernorm(&p, &inp.x, &inp.gamma, &inp.beta, EPS, &mut y, &mut mean, &mut rstd),
            _ => norm.rmsnorm(&p, &inp.x, &inp.gamma, EPS, &mut y, &mut rstd),
        }
        .map(|_| ())
        .map_err(norm_err)
    })?;
    let mut case = streaming_case(
        format!("{} {} {rows}x{cols}", op.name(), T::DTYPE,),
        &variant,
        bytes,
        ours_us,
        copy_us,
        copy_gbs,
        check,
    );
    if matches!(op, NormOp::Softmax | NormOp::LogSoftmax) {
        case.vendor_us = cudnn_softmax_us(gpu, &p, &inp.x, op == NormOp::LogSoftmax);
    }
    Ok(case)
}

/// cuDNN's softmax on the same input, where the installed cuDNN takes this type.
fn cudnn_softmax_us<T: NormElement>(gpu: &Gpu, p: &RowsProblem, x: &CudaSlice<T>, log: bool) -> Option<f64> {
    let vendor = match CudnnSoftmax::<T>::new(gpu, p.rows, p.cols, p.row_stride, log) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("cuDNN softmax unavailable for {}: {e}", T::DTYPE);
            return None;
        }
    };
    let mut y = gpu.zeros::<T>(p.output_len()).ok()?;
    let mut timer = Timer::new(gpu, TimingConfig::default()).ok()?;
    timer.time(&mut |_| vendor.run(x, &mut y)).ok().map(|s| s.median_us)
}

/// `ckb bench norm [--variant NAME|all] [--only TEXT]`: the phase-5 set from gates.toml (or
/// the cases named like TEXT), on the heuristic's variant, one forced variant, or every
/// variant that holds each case.
pub fn bench(gpu: &Gpu, copy_gbs: f64, variant: Option<&str>, only: Option<&str>) -> Result<Vec<CaseResult>> {
    let mut cases: Vec<NormCase> = crate::table::find("phase5-norm")?.setting("cases")?;
    if let Some(only) = only {
        cases.retain(|c| format!("{} {} {}x{}", c.op, c.dtype, c.rows, c.cols).contains(only));
        if cases.is_empty() {
            bail!("no phase5-norm case matches {only:?}");
        }
    }
    let variants: Vec<NormVariant> = match variant {
        None => return cases.iter().map(|c| measure_case(gpu, copy_gbs, c)).collect(),
        Some("all") => NORM_VARIANTS.iter().map(|(v, _)| *v).collect(),
        Some(name) => vec![NormVariant::by_name(name).ok_or_else(|| {
            anyhow!(
                "norm variant {name}: one of all, {}",
                NORM_VARIANTS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
            )
        })?],
    };
    let progress = crate::progress::Progress::new("bench norm", (cases.len() * variants.len()) as u64);
    let mut results = Vec::new();
    for case in &cases {
        for &v in &variants {
            if holds(gpu, case, v)? {
                let row = measure_variant(gpu, copy_gbs, case, Some(v))?;
                progress.step(&format!("{} {:.3} of copy ({})", row.name, row.ratio, row.variant));
                results.push(row);
            } else {
                progress.step(&format!(
                    "{} {} {}x{}: {} does not hold it",
                    case.op,
                    case.dtype,
                    case.rows,
                    case.cols,
                    v.name()
                ));
            }
        }
    }
    progress.finish();
    Ok(results)
}

#[derive(Debug, Clone)]
struct FuzzCase {
    op: usize,
    dtype: usize,
    rows: usize,
    cols: usize,
    pad: usize,
}

const FUZZ_OPS: [&str; 7] =
    ["softmax", "log_softmax", "layernorm", "rmsnorm", "softmax_backward", "layernorm_backward", "rmsnorm_backward"];

/// Random ops (forward and backward), dtypes, row counts, row lengths up to 300k and row
/// strides against the CPU reference.
pub fn fuzz(gpu: &Gpu, cases: u32, seed: u64) -> Result<FuzzReport> {
    let strategy = (0..FUZZ_OPS.len(), 0..3usize, 1usize..40, prop_oneof![1usize..2048, 2048usize..300_000], 0usize..9)
        .prop_map(|(op, dtype, rows, cols, pad)| FuzzCase { op, dtype, rows, cols, pad });
    Ok(crate::fuzz::fuzz_with("norm", cases, seed, strategy, |c| {
        let outcome = match c.dtype {
            0 => fuzz_one::<f32>(gpu, c),
            1 => fuzz_one::<bf16>(gpu, c),
            _ => fuzz_one::<f16>(gpu, c),
        };
        match outcome {
            Ok(cmp) if cmp.passed => Ok(()),
            Ok(cmp) => Err(format!(
                "{}: rel err {:.2e}, worst element {:.2e}, {} NaN",
                FUZZ_OPS[c.op], cmp.rel_err, cmp.max_elementwise, cmp.nan_count
            )),
            Err(e) => Err(format!("{e:#}")),
        }
    }))
}

fn fuzz_one<T: NormElement>(gpu: &Gpu, c: &FuzzCase) -> Result<Comparison> {
    let p = RowsProblem::new(c.rows, c.cols, c.cols + c.pad);
    let inp = inputs::<T>(gpu, &p, (c.rows * 7 + c.cols) as u64)?;
    let mut norm = Normalizer::new(gpu)?;
    if c.op < 4 {
        return check_forward(gpu, &mut norm, forward_op(FUZZ_OPS[c.op])?, &p, &inp);
    }
    let shape = p.reference_rows();
    let tol = tolerance(T::DTYPE).with_scale(1.0);
    let dy = gpu.random_normal::<T>(p.input_len(), 77)?;
    let host_dy = to_f64_vec(&gpu.download(&dy)?);
    let mut dx = gpu.poisoned::<T>(p.output_len())?;
    match FUZZ_OPS[c.op] {
        "softmax_backward" => {
            // y: a softmax output laid out like x.
            let y_host = rounded::<T>(&cpu::softmax(&inp.host_x, shape));
            let mut y_strided = inp.host_x.clone();
            for r in 0..p.rows {
                y_strided[r * p.row_stride..r * p.row_stride + p.cols]
                    .copy_from_slice(&y_host[r * p.cols..(r + 1) * p.cols]);
            }
            let y = gpu.upload(&y_strided.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>())?;
            norm.softmax_backward(&p, &y, &dy, &mut dx)?;
            let want = cpu::softmax_backward(&host_dy, &y_strided, shape);
            Ok(compare(&got(gpu, &dx)?, &rounded::<T>(&want), tol))
        }
        name => {
            let fwd = cpu::layernorm(&inp.host_x, shape, &inp.host_gamma, &inp.host_beta, f64::from(EPS));
            let rms = cpu::rmsnorm(&inp.host_x, shape, &inp.host_gamma, f64::from(EPS));
            let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let mut dgamma = gpu.poisoned::<T>(p.cols)?;
            let (want_dx, want_dgamma, dbeta_check) = if name == "layernorm_backward" {
                let (mean, rstd) = (gpu.upload(&to_f32(&fwd.mean))?, gpu.upload(&to_f32(&fwd.rstd))?);
                let mut dbeta = gpu.poisoned::<T>(p.cols)?;
                norm.layernorm_backward(&p, &inp.x, &dy, &inp.gamma, &mean, &rstd, &mut dx, &mut dgamma, &mut dbeta)?;
                let mean64: Vec<f64> = to_f32(&fwd.mean).iter().map(|&v| f64::from(v)).collect();
                let rstd64: Vec<f64> = to_f32(&fwd.rstd).iter().map(|&v| f64::from(v)).collect();
                let g = cpu::layernorm_backward(&host_dy, &inp.host_x, shape, &inp.host_gamma, &mean64, &rstd64);
                let dbeta_check =
                    compare(&got(gpu, &dbeta)?, &rounded::<T>(&g.dbeta), tol.with_scale((p.rows as f64).sqrt()));
                (g.dx, g.dgamma, Some(dbeta_check))
            } else {
                let rstd = gpu.upload(&to_f32(&rms.rstd))?;
                norm.rmsnorm_backward(&p, &inp.x, &dy, &inp.gamma, &rstd, &mut dx, &mut dgamma)?;
                let rstd64: Vec<f64> = to_f32(&rms.rstd).iter().map(|&v| f64::from(v)).collect();
                let g = cpu::rmsnorm_backward(&host_dy, &inp.host_x, shape, &inp.host_gamma, &rstd64);
                (g.dx, g.dgamma, None)
            };
            let mut result = both(
                compare(&got(gpu, &dx)?, &rounded::<T>(&want_dx), tol),
                compare(&got(gpu, &dgamma)?, &rounded::<T>(&want_dgamma), tol.with_scale((p.rows as f64).sqrt())),
            );
            if let Some(d) = dbeta_check {
                result = both(result, d);
            }
            Ok(result)
        }
    }
}
