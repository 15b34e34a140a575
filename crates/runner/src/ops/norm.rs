//! The norm family: softmax, LayerNorm and RMSNorm (alone or fused with a residual add)
//! against the memory roofline (a streaming kernel reading and writing the rows' bytes, in
//! the same run), with cuDNN's softmax timed beside; gates, benches, `ckb profile norm`, and
//! the fuzzer, forward and backward.

use anyhow::{anyhow, bail, Result};
use ckb_common::baselines::cudnn_softmax::CudnnSoftmax;
use ckb_common::{bf16, check_rows, f16, to_f64_vec, Comparison, DType, Gpu, Tolerance};
use ckb_norm::reference as cpu;
use ckb_norm::{verify, NormElement, NormOp, NormVariant, Normalizer, RowsProblem, NORM_VARIANTS};
use clap::Parser;
use cudarc::driver::CudaSlice;
use proptest::prelude::*;
use serde::Deserialize;

use super::{Family, FuzzOptions, Options};
use crate::cli::{self, OutputArgs};
use crate::fuzzing::FuzzReport;
use crate::measure::{self, Context, Traffic};
use crate::record::CaseResult;
use crate::sweep::{combinations, Sizes};

const EPS: f32 = 1e-5;

#[derive(Debug, Clone, Deserialize)]
pub struct NormCase {
    pub op: String,
    pub dtype: String,
    pub rows: usize,
    pub cols: usize,
    /// The gate group the case scores in (`group_thresholds`); absent: its op's name.
    #[serde(default)]
    pub group: Option<String>,
}

/// The reference rounded to T, as the kernels write it.
fn rounded<T: NormElement>(xs: &[f64]) -> Vec<f64> {
    xs.iter().map(|&x| T::DTYPE.round(x)).collect()
}

fn got<T: NormElement>(gpu: &Gpu, buf: &CudaSlice<T>) -> Result<Vec<f64>> {
    Ok(to_f64_vec(&gpu.download(buf)?))
}

/// A backward output (dense rows of `cols`) row by row against the rounded reference, at
/// the output type's bounds on `scale`.
fn backward_rows<T: NormElement>(got: &[f64], want: &[f64], cols: usize, scale: f64) -> Result<Comparison> {
    let tol = Tolerance::for_output(T::DTYPE).with_scale(scale);
    Ok(check_rows(got, &rounded::<T>(want), cols, tol, None)?.summary)
}

/// The largest magnitude in `xs` (the scale of outputs that carry no unit scale).
fn largest(xs: &[f64]) -> f64 {
    xs.iter().filter(|v| v.is_finite()).fold(0.0, |m, v| m.max(v.abs()))
}

/// Where one forward run's outputs live (`h`: fused adds only, else empty).
struct Outputs<T: NormElement> {
    y: CudaSlice<T>,
    h: CudaSlice<T>,
    mean: CudaSlice<f32>,
    rstd: CudaSlice<f32>,
}

impl<T: NormElement> Outputs<T> {
    fn poisoned(gpu: &Gpu, op: NormOp, p: &RowsProblem) -> Result<Outputs<T>> {
        let sum_len = if op.adds_residual() { p.output_len() } else { 0 };
        Ok(Outputs {
            y: gpu.poisoned(p.output_len())?,
            h: gpu.poisoned(sum_len)?,
            mean: gpu.poisoned(p.rows)?,
            rstd: gpu.poisoned(p.rows)?,
        })
    }
}

/// Inputs for one problem: x and (fused adds) the residual (strided rows), gamma, beta.
struct Inputs<T: NormElement> {
    x: CudaSlice<T>,
    residual: CudaSlice<T>,
    gamma: CudaSlice<T>,
    beta: CudaSlice<T>,
}

/// Inputs' x, gamma and beta in float64 on the host, for the backward references (the
/// forward checks download the rows they sample themselves: a gate case's x is 128M elements).
struct HostInputs {
    x: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
}

impl HostInputs {
    fn of<T: NormElement>(gpu: &Gpu, inp: &Inputs<T>) -> Result<HostInputs> {
        Ok(HostInputs {
            x: to_f64_vec(&gpu.download(&inp.x)?),
            gamma: to_f64_vec(&gpu.download(&inp.gamma)?),
            beta: to_f64_vec(&gpu.download(&inp.beta)?),
        })
    }
}

fn inputs<T: NormElement>(gpu: &Gpu, op: NormOp, p: &RowsProblem, seed: u64) -> Result<Inputs<T>> {
    let x = gpu.random_normal::<T>(p.input_len(), seed)?;
    let residual_len = if op.adds_residual() { p.input_len() } else { 0 };
    let residual = gpu.random_normal::<T>(residual_len, seed + 3)?;
    let gamma = gpu.random_normal::<T>(p.cols, seed + 1)?;
    let beta = gpu.random_normal::<T>(p.cols, seed + 2)?;
    Ok(Inputs { x, residual, gamma, beta })
}

/// Runs one forward op into `out`.
fn run_forward<T: NormElement>(
    norm: &mut Normalizer,
    op: NormOp,
    p: &RowsProblem,
    inp: &Inputs<T>,
    out: &mut Outputs<T>,
) -> Result<()> {
    let Outputs { y, h, mean, rstd } = out;
    let (x, r) = (&inp.x, &inp.residual);
    match op {
        NormOp::Softmax => norm.softmax(p, x, y),
        NormOp::LogSoftmax => norm.log_softmax(p, x, y),
        NormOp::LayerNorm => norm.layernorm(p, x, &inp.gamma, &inp.beta, EPS, y, mean, rstd),
        NormOp::RmsNorm => norm.rmsnorm(p, x, &inp.gamma, EPS, y, rstd),
        NormOp::AddLayerNorm => norm.add_layernorm(p, x, r, &inp.gamma, &inp.beta, EPS, h, y, mean, rstd),
        NormOp::AddRmsNorm => norm.add_rmsnorm(p, x, r, &inp.gamma, EPS, h, y, rstd),
        other => bail!("{} is not a forward op", other.name()),
    }?;
    Ok(())
}

/// `out` (a forward run of `op` on `inp`) row by row against the float64 reference
/// ([`ckb_norm::verify`]).
fn check_forward<T: NormElement>(
    gpu: &Gpu,
    op: NormOp,
    p: &RowsProblem,
    inp: &Inputs<T>,
    out: &Outputs<T>,
) -> Result<Comparison> {
    const SEED: u64 = 5;
    let check = match op {
        NormOp::Softmax => verify::check_softmax(gpu, p, &inp.x, &out.y, SEED)?,
        NormOp::LogSoftmax => verify::check_log_softmax(gpu, p, &inp.x, &out.y, SEED)?,
        NormOp::LayerNorm => {
            verify::check_layernorm(gpu, p, &inp.x, &inp.gamma, &inp.beta, EPS, &out.y, &out.mean, &out.rstd, SEED)?
        }
        NormOp::RmsNorm => verify::check_rmsnorm(gpu, p, &inp.x, &inp.gamma, EPS, &out.y, &out.rstd, SEED)?,
        NormOp::AddLayerNorm => verify::check_add_layernorm(
            gpu,
            p,
            &inp.x,
            &inp.residual,
            &inp.gamma,
            &inp.beta,
            EPS,
            &out.h,
            &out.y,
            &out.mean,
            &out.rstd,
            SEED,
        )?,
        NormOp::AddRmsNorm => {
            verify::check_add_rmsnorm(gpu, p, &inp.x, &inp.residual, &inp.gamma, EPS, &out.h, &out.y, &out.rstd, SEED)?
        }
        other => bail!("{} is not a forward op", other.name()),
    };
    Ok(check.summary)
}

/// Runs one forward op once into fresh poisoned outputs and checks it.
fn run_and_check<T: NormElement>(
    gpu: &Gpu,
    norm: &mut Normalizer,
    op: NormOp,
    p: &RowsProblem,
    inp: &Inputs<T>,
) -> Result<Comparison> {
    let mut out = Outputs::poisoned(gpu, op, p)?;
    run_forward(norm, op, p, inp, &mut out)?;
    check_forward(gpu, op, p, inp, &out)
}

const FORWARD_OPS: &str = "softmax, log_softmax, layernorm, rmsnorm, add_layernorm or add_rmsnorm";

fn forward_op(name: &str) -> Result<NormOp> {
    match name {
        "softmax" => Ok(NormOp::Softmax),
        "log_softmax" => Ok(NormOp::LogSoftmax),
        "layernorm" => Ok(NormOp::LayerNorm),
        "rmsnorm" => Ok(NormOp::RmsNorm),
        "add_layernorm" => Ok(NormOp::AddLayerNorm),
        "add_rmsnorm" => Ok(NormOp::AddRmsNorm),
        other => Err(anyhow!("norm op {other}: {FORWARD_OPS}")),
    }
}

/// One problem: a forward op on rows of `cols` elements, `row_stride` apart.
#[derive(Debug, Clone)]
struct Run {
    op: NormOp,
    dtype: DType,
    problem: RowsProblem,
    /// The gate group; None: the op's name.
    group: Option<String>,
}

impl Run {
    fn name(&self) -> String {
        let p = &self.problem;
        let stride = if p.row_stride == p.cols { String::new() } else { format!(" stride {}", p.row_stride) };
        format!("{} {} {}x{}{stride}", self.op.name(), self.dtype, p.rows, p.cols)
    }
}

impl NormCase {
    fn run(&self) -> Result<Run> {
        Ok(Run {
            op: forward_op(&self.op)?,
            dtype: cli::dtype(&self.dtype)?,
            problem: RowsProblem::dense(self.rows, self.cols),
            group: self.group.clone(),
        })
    }
}

/// The norm family.
pub struct Norm;

impl Family for Norm {
    fn name(&self) -> &'static str {
        "norm"
    }

    fn about(&self) -> &'static str {
        "softmax, log_softmax, layernorm, rmsnorm, add_layernorm, add_rmsnorm forward over rows, against the streaming roofline (cuDNN softmax beside)"
    }

    fn measure_cases(
        &self,
        ctx: &Context,
        label: &str,
        cases: &toml::Value,
        options: &Options,
    ) -> Result<Vec<CaseResult>> {
        let cases: Vec<NormCase> = cases.clone().try_into()?;
        let runs: Vec<Run> = cases.iter().map(NormCase::run).collect::<Result<_>>()?;
        let runs = super::filter_only(runs, options.only.as_deref(), Run::name)?;
        measure_runs(ctx, label, &runs, options.variant.as_deref())
    }

    fn bench_gate(&self) -> &'static str {
        "phase5-norm"
    }

    fn fuzz(&self, ctx: &Context, options: &FuzzOptions) -> Result<FuzzReport> {
        super::no_fuzz_scope(self.name(), options)?;
        fuzz(&ctx.gpu, options.cases, options.seed)
    }

    fn profile(&self, ctx: &Context, args: &[String]) -> Result<Vec<CaseResult>> {
        let parsed: ProfileArgs = cli::parse(args)?;
        let rows = measure_runs(ctx, "profile norm", &parsed.runs()?, parsed.variant.as_deref())?;
        let title = format!("row ops against the streaming roofline (copy {:.0} GB/s)", ctx.copy_gbs);
        crate::output::emit(
            &title,
            &rows,
            serde_json::json!({ "args": args, "copy_gbs": ctx.copy_gbs }),
            &parsed.output,
        )?;
        Ok(rows)
    }

    fn check_profile_args(&self, args: &[String]) -> Result<()> {
        let parsed: ProfileArgs = cli::parse(args)?;
        variants(parsed.variant.as_deref())?;
        parsed.runs().map(|_| ())
    }
}

/// `ckb profile norm`.
#[derive(Debug, Parser)]
#[command(name = "ckb profile norm", about = "A row op on any row count and length, against the streaming roofline")]
struct ProfileArgs {
    /// softmax, log_softmax, layernorm, rmsnorm, add_layernorm or add_rmsnorm; a list.
    #[arg(long, value_delimiter = ',')]
    op: Vec<String>,
    /// f32, f16 or bf16; a list.
    #[arg(long, default_value = "bf16", value_delimiter = ',')]
    dtype: Vec<String>,
    /// Rows: a size, list or range.
    #[arg(long)]
    rows: Sizes,
    /// Row length: a size, list or range (50257 for a GPT-2 vocabulary).
    #[arg(long)]
    cols: Sizes,
    /// Elements from one row's start to the next (default: the row length).
    #[arg(long)]
    row_stride: Option<usize>,
    /// A variant of the norm table, or `all` for every variant that holds each case.
    #[arg(long)]
    variant: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

impl ProfileArgs {
    fn runs(&self) -> Result<Vec<Run>> {
        if self.op.is_empty() {
            bail!("--op is required: {FORWARD_OPS}");
        }
        let ops: Vec<NormOp> = self.op.iter().map(|o| forward_op(o)).collect::<Result<_>>()?;
        let dtypes: Vec<DType> = self.dtype.iter().map(|d| cli::dtype(d)).collect::<Result<_>>()?;
        let mut runs = Vec::new();
        for &op in &ops {
            for &dtype in &dtypes {
                if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
                    bail!("the norm kernels take f32, f16 and bf16, not {dtype}");
                }
                for dims in combinations(&[&self.rows.0[..], &self.cols.0[..]]) {
                    let (rows, cols) = (dims[0], dims[1]);
                    let stride = self.row_stride.unwrap_or(cols);
                    let problem = RowsProblem::new(rows, cols, stride);
                    problem.validate(op.name())?;
                    if problem.is_empty() {
                        bail!("{rows}x{cols}: rows and row length must be at least 1");
                    }
                    runs.push(Run { op, dtype, problem, group: None });
                }
            }
        }
        Ok(runs)
    }
}

/// The variants a bench or profile forces: None (the heuristic's), one, or `all`.
fn variants(name: Option<&str>) -> Result<Vec<Option<NormVariant>>> {
    Ok(match name {
        None => vec![None],
        Some("all") => NORM_VARIANTS.iter().map(|(v, _)| Some(*v)).collect(),
        Some(name) => vec![Some(NormVariant::by_name(name).ok_or_else(|| {
            anyhow!(
                "norm variant {name}: one of all, {}",
                NORM_VARIANTS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
            )
        })?)],
    })
}

/// Measures each run on each variant that holds it (a forced variant that cannot hold a
/// run is skipped, with a note).
fn measure_runs(ctx: &Context, label: &str, runs: &[Run], variant: Option<&str>) -> Result<Vec<CaseResult>> {
    let variants = variants(variant)?;
    let mut norm = Normalizer::new(&ctx.gpu)?;
    let progress = crate::progress::Progress::new(label, (runs.len() * variants.len()) as u64);
    let mut rows = Vec::new();
    for run in runs {
        for &v in &variants {
            norm.force_variant(v);
            let plan = match run.dtype {
                DType::F32 => norm.plan::<f32>(run.op, &run.problem, true),
                DType::BF16 => norm.plan::<bf16>(run.op, &run.problem, true),
                _ => norm.plan::<f16>(run.op, &run.problem, true),
            };
            if let (Some(v), Err(e)) = (v, &plan) {
                progress.step(&format!("{}: {} does not hold it ({e})", run.name(), v.name()));
                continue;
            }
            plan?;
            let operands = run.op.row_inputs();
            let bytes = 2 * operands * (run.problem.input_len() + run.problem.output_len()) * run.dtype.size_bytes();
            measure::ensure_fits(&ctx.gpu, &run.name(), bytes)?;
            let row = match run.dtype {
                DType::F32 => measure::<f32>(ctx, &mut norm, run),
                DType::BF16 => measure::<bf16>(ctx, &mut norm, run),
                DType::F16 => measure::<f16>(ctx, &mut norm, run),
                other => bail!("norm dtype {other}"),
            }?;
            progress.step(&row.summary());
            rows.push(row);
        }
    }
    progress.finish();
    Ok(rows)
}

/// One forward op: checked, then timed against the streaming roofline of the same bytes (one
/// read and one write of the rows; fused adds two of each); softmax is also timed against
/// cuDNN's.
fn measure<T: NormElement>(ctx: &Context, norm: &mut Normalizer, run: &Run) -> Result<CaseResult> {
    let gpu = &ctx.gpu;
    let (op, p) = (run.op, run.problem);
    let inp = inputs::<T>(gpu, op, &p, 31)?;
    let first = run_and_check(gpu, norm, op, &p, &inp)?;
    // The plan the calls run (the planner's answer is what the launcher executes).
    let plan = norm.plan::<T>(op, &p, true)?.ok_or_else(|| anyhow!("{}: empty problem", run.name()))?;
    let variant = plan.to_string();
    let mut out = Outputs::poisoned(gpu, op, &p)?;
    // The gate's bytes: one read and one write of the matrix, two of each for fused adds
    // (x and the residual in, h and y out), and the f32 statistics written (layernorm's
    // mean and rstd, rmsnorm's rstd): on rows of 2 bf16 they are half of what layernorm
    // writes. Gamma and beta, read once per column, are left out.
    let matrix = p.rows * p.cols * T::DTYPE.size_bytes();
    let matrices = vec![matrix; op.row_inputs()];
    let mut writes = matrices.clone();
    writes.push(op.saved_stats() * p.rows * std::mem::size_of::<f32>());
    let traffic = Traffic::new(&matrices, &writes);
    let bytes = traffic.bytes();
    // cuDNN's softmax, where the installed cuDNN takes this type, timed in the same rotation.
    let vendor = match op {
        NormOp::Softmax | NormOp::LogSoftmax => {
            match CudnnSoftmax::<T>::new(gpu, p.rows, p.cols, p.row_stride, op == NormOp::LogSoftmax) {
                Ok(v) => Some((v, gpu.zeros::<T>(p.output_len())?)),
                Err(e) => {
                    tracing::warn!("cuDNN softmax unavailable for {}: {e}", T::DTYPE);
                    None
                }
            }
        }
        _ => None,
    };
    let x = &inp.x;
    let mut vendor_run = vendor.map(|(v, mut out)| move |_: usize| v.run(x, &mut out));
    let (ours_us, copy_us, vendor_us) = measure::against_roofline_and(
        gpu,
        &traffic,
        &mut |_| {
            run_forward(norm, op, &p, &inp, &mut out)
                .map_err(|e| ckb_common::GpuError::Operator { operator: "ckb-norm", detail: format!("{e:#}") })
        },
        vendor_run.as_mut().map(|f| f as ckb_common::timing::Candidate<'_>),
    )?;
    // The last timed run's outputs, as well as the first run's.
    let check = first.and(check_forward(gpu, op, &p, &inp, &out)?);
    let mut case = measure::streaming_case(run.name(), variant, bytes, ours_us, copy_us, ctx.copy_gbs, check);
    case.group = Some(run.group.clone().unwrap_or_else(|| op.name().to_string()));
    case.vendor_us = vendor_us;
    Ok(case)
}

#[derive(Debug, Clone)]
struct FuzzCase {
    op: usize,
    dtype: usize,
    rows: usize,
    cols: usize,
    pad: usize,
}

const FUZZ_OPS: [&str; 11] = [
    "softmax",
    "log_softmax",
    "layernorm",
    "rmsnorm",
    "add_layernorm",
    "add_rmsnorm",
    "softmax_backward",
    "layernorm_backward",
    "rmsnorm_backward",
    "add_layernorm_backward",
    "add_rmsnorm_backward",
];

/// Random ops (forward and backward, fused with a residual add or not), dtypes, row counts,
/// row lengths up to 300k (a third of them short rows of up to 40, which share warps) and
/// row strides against the CPU reference.
pub fn fuzz(gpu: &Gpu, cases: u32, seed: u64) -> Result<FuzzReport> {
    let lengths = prop_oneof![1usize..41, 41usize..2048, 2048usize..300_000];
    let strategy = (0..FUZZ_OPS.len(), 0..3usize, 1usize..200, lengths, 0usize..9)
        .prop_map(|(op, dtype, rows, cols, pad)| FuzzCase { op, dtype, rows, cols, pad });
    Ok(crate::fuzzing::fuzz_with("norm", cases, seed, strategy, |c| {
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
    let seed = (c.rows * 7 + c.cols) as u64;
    let mut norm = Normalizer::new(gpu)?;
    if let Ok(op) = forward_op(FUZZ_OPS[c.op]) {
        let inp = inputs::<T>(gpu, op, &p, seed)?;
        return run_and_check(gpu, &mut norm, op, &p, &inp);
    }
    let inp = inputs::<T>(gpu, NormOp::SoftmaxBackward, &p, seed)?;
    let host = HostInputs::of(gpu, &inp)?;
    let shape = p.reference_rows();
    let dy = gpu.random_normal::<T>(p.input_len(), 77)?;
    let host_dy = to_f64_vec(&gpu.download(&dy)?);
    let mut dx = gpu.poisoned::<T>(p.output_len())?;
    match FUZZ_OPS[c.op] {
        "softmax_backward" => {
            // y: a softmax output laid out like x.
            let y_host = rounded::<T>(&cpu::softmax(&host.x, shape));
            let mut y_strided = host.x.clone();
            for r in 0..p.rows {
                y_strided[r * p.row_stride..r * p.row_stride + p.cols]
                    .copy_from_slice(&y_host[r * p.cols..(r + 1) * p.cols]);
            }
            let y = gpu.upload(&y_strided.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>())?;
            norm.softmax_backward(&p, &y, &dy, &mut dx)?;
            let want = cpu::softmax_backward(&host_dy, &y_strided, shape);
            // dx = y (dy - <y, dy>) carries y's scale, far below 1 on long rows.
            backward_rows::<T>(&got(gpu, &dx)?, &want, p.cols, largest(&want))
        }
        name => {
            // Behind a fused add, x is h and dx gains h's own gradient dh (strided like x).
            let dh = if name.starts_with("add_") { Some(gpu.random_normal::<T>(p.input_len(), 78)?) } else { None };
            let fwd = cpu::layernorm(&host.x, shape, &host.gamma, &host.beta, f64::from(EPS));
            let rms = cpu::rmsnorm(&host.x, shape, &host.gamma, f64::from(EPS));
            let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let mut dgamma = gpu.poisoned::<T>(p.cols)?;
            let (mut want_dx, want_dgamma, dbeta_check, dx_rstd) = if name.ends_with("layernorm_backward") {
                let (mean, rstd) = (gpu.upload(&to_f32(&fwd.mean))?, gpu.upload(&to_f32(&fwd.rstd))?);
                let mut dbeta = gpu.poisoned::<T>(p.cols)?;
                let (x, g) = (&inp.x, &inp.gamma);
                match &dh {
                    Some(dh) => {
                        norm.add_layernorm_backward(&p, x, &dy, dh, g, &mean, &rstd, &mut dx, &mut dgamma, &mut dbeta)?
                    }
                    None => norm.layernorm_backward(&p, x, &dy, g, &mean, &rstd, &mut dx, &mut dgamma, &mut dbeta)?,
                };
                let mean64: Vec<f64> = to_f32(&fwd.mean).iter().map(|&v| f64::from(v)).collect();
                let rstd64: Vec<f64> = to_f32(&fwd.rstd).iter().map(|&v| f64::from(v)).collect();
                let g = cpu::layernorm_backward(&host_dy, &host.x, shape, &host.gamma, &mean64, &rstd64);
                // Column sums over the rows: errors grow with sqrt(rows).
                let dbeta_check = backward_rows::<T>(&got(gpu, &dbeta)?, &g.dbeta, p.cols, (p.rows as f64).sqrt())?;
                (g.dx, g.dgamma, Some(dbeta_check), rstd64)
            } else {
                let rstd = gpu.upload(&to_f32(&rms.rstd))?;
                match &dh {
                    Some(dh) => {
                        norm.add_rmsnorm_backward(&p, &inp.x, &dy, dh, &inp.gamma, &rstd, &mut dx, &mut dgamma)?
                    }
                    None => norm.rmsnorm_backward(&p, &inp.x, &dy, &inp.gamma, &rstd, &mut dx, &mut dgamma)?,
                };
                let rstd64: Vec<f64> = to_f32(&rms.rstd).iter().map(|&v| f64::from(v)).collect();
                let g = cpu::rmsnorm_backward(&host_dy, &host.x, shape, &host.gamma, &rstd64);
                (g.dx, g.dgamma, None, rstd64)
            };
            if let Some(dh) = &dh {
                // dx is dense; dh has x's row stride.
                let dh = got(gpu, dh)?;
                for (i, v) in want_dx.iter_mut().enumerate() {
                    *v += dh[i / p.cols * p.row_stride + i % p.cols];
                }
            }
            // dx element by element, its Frobenius error against the terms it cancels (rows of
            // one or two elements have dx of about 0).
            let got_dx = got(gpu, &dx)?;
            let tol = Tolerance::for_output(T::DTYPE);
            let mut dx_check = check_rows(
                &got_dx,
                &rounded::<T>(&want_dx),
                p.cols,
                Tolerance { rel_frobenius: f64::INFINITY, ..tol },
                None,
            )?
            .summary;
            dx_check.rel_err = verify::norm_dx_rel_err(&got_dx, &want_dx, &p, &host_dy, &host.gamma, &dx_rstd);
            dx_check.passed &= dx_check.rel_err <= tol.rel_frobenius;
            let mut result =
                dx_check.and(backward_rows::<T>(&got(gpu, &dgamma)?, &want_dgamma, p.cols, (p.rows as f64).sqrt())?);
            if let Some(d) = dbeta_check {
                result = result.and(d);
            }
            Ok(result)
        }
    }
}
