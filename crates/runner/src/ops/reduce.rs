//! The reduction family: sums, means, extrema, norms and arg-extrema over a whole tensor
//! or one axis, against CUB where CUB has the same call (full reductions, row sums, f32
//! argmax) and against the streaming roofline of its bytes elsewhere; for gates, benches, `ckb profile
//! reduce` and the fuzzer.

use anyhow::{anyhow, bail, Result};
use ckb_common::baselines::cub::{Cub, ReduceOp as CubOp};
use ckb_common::{bf16, f16, plant_extrema, Comparison, DType, Gpu};
use ckb_reduce::verify;
use ckb_reduce::{ArgOp, EwElement, ReduceOp, ReduceOutput, Reducer};
use clap::Parser;
use cudarc::driver::CudaSlice;
use serde::Deserialize;

use super::{Family, FuzzOptions, Options};
use crate::cli::{self, OutputArgs};
use crate::fuzzing::FuzzReport;
use crate::measure::{self, size_label, Context, Traffic};
use crate::record::CaseResult;
use crate::sweep::Shapes;

/// The reduction family.
pub struct Reduce;

/// A value reduction or an arg reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnyOp {
    Value(ReduceOp),
    Arg(ArgOp),
}

impl AnyOp {
    fn parse(name: &str) -> Result<AnyOp> {
        let values = ReduceOp::ALL.iter().map(|&o| (o.name(), AnyOp::Value(o)));
        let args = ArgOp::ALL.iter().map(|&o| (o.name(), AnyOp::Arg(o)));
        let all: Vec<(&str, AnyOp)> = values.chain(args).collect();
        all.iter().find(|(n, _)| *n == name).map(|(_, o)| *o).ok_or_else(|| {
            anyhow!("reduce op {name:?}: one of {}", all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
        })
    }

    fn name(self) -> &'static str {
        match self {
            AnyOp::Value(o) => o.name(),
            AnyOp::Arg(o) => o.name(),
        }
    }
}

/// One problem: `op` over `axis` of a contiguous row-major tensor (None: all of it).
#[derive(Debug, Clone)]
struct Run {
    op: AnyOp,
    input: DType,
    /// Values' type: f32 or the input type (arg ops write f32 values and i64 indices).
    output: DType,
    shape: Vec<usize>,
    axis: Option<usize>,
    /// The name gate records have used for this case, when it comes from a gate.
    label: Option<String>,
}

impl Run {
    fn name(&self) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        let shape = self.shape.iter().map(|&d| size_label(d)).collect::<Vec<_>>().join("x");
        let axis = self.axis.map(|a| format!(" axis {a}")).unwrap_or_default();
        format!("{} {}->{} {shape}{axis}", self.op.name(), self.input, self.output)
    }

    fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// How many results the reduction writes.
    fn outputs(&self) -> usize {
        self.axis.map_or(1, |a| self.elements() / self.shape[a].max(1))
    }
}

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

impl ReduceCase {
    /// Sums accumulate in f32 and write f32; max and min write the input type.
    fn run(&self) -> Result<Run> {
        let op = AnyOp::parse(&self.op)?;
        let input = cli::dtype(&self.dtype)?;
        let output = if op == AnyOp::Value(ReduceOp::Sum) { DType::F32 } else { input };
        let (shape, axis, label) = match self.kind.as_str() {
            "full" => (vec![self.n], None, format!("{} {input}->{output} n={}", op.name(), size_label(self.n))),
            "rows" => (
                vec![self.rows, self.cols],
                Some(1),
                format!("row-{} {input}->{output} {}x{}", op.name(), self.rows, self.cols),
            ),
            "columns" => (
                vec![self.rows, self.cols],
                Some(0),
                format!("column-{} {input} {}x{} (vs roofline)", op.name(), self.rows, self.cols),
            ),
            other => bail!("reduce case kind {other:?}: full, rows or columns"),
        };
        Ok(Run { op, input, output, shape, axis, label: Some(label) })
    }
}

impl Family for Reduce {
    fn name(&self) -> &'static str {
        "reduce"
    }

    fn about(&self) -> &'static str {
        "sum, mean, max, min, sum_of_squares, l2_norm, argmax, argmin over a tensor or an axis, against CUB"
    }

    fn measure_cases(
        &self,
        ctx: &Context,
        label: &str,
        cases: &toml::Value,
        options: &Options,
    ) -> Result<Vec<CaseResult>> {
        if let Some(v) = &options.variant {
            bail!("the reduce family picks its plan per problem; --variant {v} is not taken");
        }
        let cases: Vec<ReduceCase> = cases.clone().try_into()?;
        let runs: Vec<Run> = cases.iter().map(ReduceCase::run).collect::<Result<_>>()?;
        let runs = super::filter_only(runs, options.only.as_deref(), Run::name)?;
        measure_runs(ctx, label, &runs)
    }

    fn bench_gate(&self) -> &'static str {
        "phase4a"
    }

    fn fuzz(&self, ctx: &Context, options: &FuzzOptions) -> Result<FuzzReport> {
        super::no_fuzz_scope(self.name(), options)?;
        fuzz(&ctx.gpu, options.cases, options.seed)
    }

    fn profile(&self, ctx: &Context, args: &[String]) -> Result<Vec<CaseResult>> {
        let parsed: ProfileArgs = cli::parse(args)?;
        let rows = measure_runs(ctx, "profile reduce", &parsed.runs()?)?;
        let title = format!("reductions against CUB or the streaming roofline (copy {:.0} GB/s)", ctx.copy_gbs);
        crate::output::emit(
            &title,
            &rows,
            serde_json::json!({ "args": args, "copy_gbs": ctx.copy_gbs }),
            &parsed.output,
        )?;
        Ok(rows)
    }

    fn check_profile_args(&self, args: &[String]) -> Result<()> {
        cli::parse::<ProfileArgs>(args)?.runs().map(|_| ())
    }
}

/// `ckb profile reduce`.
#[derive(Debug, Parser)]
#[command(
    name = "ckb profile reduce",
    about = "A reduction of any shape and axis, against CUB or the streaming roofline"
)]
struct ProfileArgs {
    /// sum, mean, max, min, sum_of_squares, l2_norm, argmax or argmin; a list.
    #[arg(long, value_delimiter = ',')]
    op: Vec<String>,
    /// Input type: f32, f16 or bf16; a list.
    #[arg(long, default_value = "f32", value_delimiter = ',')]
    dtype: Vec<String>,
    /// The values' type: f32 (default) or `input`.
    #[arg(long, default_value = "f32")]
    out_dtype: String,
    /// Shapes of 1 to 3 dimensions, row-major: 8192x32768,1000000.
    #[arg(long)]
    shape: Shapes,
    /// The axis to reduce, or `all` for the whole tensor.
    #[arg(long, default_value = "all")]
    axis: String,
    #[command(flatten)]
    output: OutputArgs,
}

impl ProfileArgs {
    fn runs(&self) -> Result<Vec<Run>> {
        if self.op.is_empty() {
            bail!("--op is required (sum, mean, max, min, sum_of_squares, l2_norm, argmax, argmin)");
        }
        let axis = match self.axis.as_str() {
            "all" => None,
            a => Some(a.parse::<usize>().map_err(|_| anyhow!("--axis {a:?}: an axis number or `all`"))?),
        };
        let mut runs = Vec::new();
        for op in &self.op {
            let op = AnyOp::parse(op)?;
            for dtype in &self.dtype {
                let input = cli::dtype(dtype)?;
                if !matches!(input, DType::F32 | DType::F16 | DType::BF16) {
                    bail!("reductions take f32, f16 and bf16 inputs, not {input}");
                }
                let output = match self.out_dtype.as_str() {
                    "input" => input,
                    other => cli::dtype(other)?,
                };
                if output != DType::F32 && output != input {
                    bail!("--out-dtype {output}: f32 or the input type ({input})");
                }
                for shape in &self.shape.0 {
                    if shape.contains(&0) {
                        bail!("shape {shape:?} has a zero dimension");
                    }
                    let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
                    if elements.is_none_or(|e| e > i64::MAX as usize / 8) {
                        bail!("shape {shape:?} has too many elements");
                    }
                    if let Some(a) = axis {
                        ckb_reduce::reduce::AxisProblem::along(op.name(), shape, a)?;
                    }
                    runs.push(Run { op, input, output, shape: shape.clone(), axis, label: None });
                }
            }
        }
        Ok(runs)
    }
}

fn measure_runs(ctx: &Context, label: &str, runs: &[Run]) -> Result<Vec<CaseResult>> {
    let mut reducer = Reducer::new(&ctx.gpu)?;
    let mut cub = Cub::new(&ctx.gpu);
    measure::each(label, runs, |run| {
        let bytes = run.elements() * run.input.size_bytes() + run.outputs() * 16;
        measure::ensure_fits(&ctx.gpu, &run.name(), 2 * bytes)?;
        match (run.input, run.output) {
            (DType::F32, _) => measure_run::<f32, f32>(ctx, &mut reducer, &mut cub, run),
            (DType::BF16, DType::F32) => measure_run::<bf16, f32>(ctx, &mut reducer, &mut cub, run),
            (DType::BF16, _) => measure_run::<bf16, bf16>(ctx, &mut reducer, &mut cub, run),
            (DType::F16, DType::F32) => measure_run::<f16, f32>(ctx, &mut reducer, &mut cub, run),
            (DType::F16, _) => measure_run::<f16, f16>(ctx, &mut reducer, &mut cub, run),
            (other, _) => bail!("reductions take f32, f16 and bf16 inputs, not {other}"),
        }
    })
}

/// The CUB call that does the same work as `run`, if there is one.
fn cub_op(run: &Run) -> Option<CubOp> {
    match (run.op, run.axis) {
        (AnyOp::Value(ReduceOp::Sum), None) => Some(CubOp::Sum),
        (AnyOp::Value(ReduceOp::Max), None) if run.output == run.input => Some(CubOp::Max),
        (AnyOp::Value(ReduceOp::Min), None) if run.output == run.input => Some(CubOp::Min),
        _ => None,
    }
}

/// Whether `op` picks one element (max, min and the arg forms): those are checked on inputs
/// with planted extremes, once at the tail and once inside.
fn picks_an_element(op: AnyOp) -> bool {
    matches!(op, AnyOp::Value(ReduceOp::Max | ReduceOp::Min) | AnyOp::Arg(_))
}

/// Whether `op` looks for the largest element (its extreme goes to the tail first).
fn looks_for_max(op: AnyOp) -> bool {
    matches!(op, AnyOp::Value(ReduceOp::Max) | AnyOp::Arg(ArgOp::ArgMax))
}

/// One run: checked against the float64 reference ([`ckb_reduce::verify`]; extrema planted
/// at the tail and inside for the ops that pick an element), then timed interleaved with
/// its CUB counterpart (full reductions, row sums into f32, f32 argmax) or a same-bytes
/// streaming roofline (reads the input, writes the outputs), and the last timed output checked too.
fn measure_run<T: EwElement, O: ReduceOutput<T>>(
    ctx: &Context,
    reducer: &mut Reducer,
    cub: &mut Cub,
    run: &Run,
) -> Result<CaseResult>
where
    f32: ReduceOutput<T>,
{
    let gpu = &ctx.gpu;
    let n = run.elements();
    let mut x = gpu.random_normal::<T>(n, 21)?;
    let (shape, axis) = match run.axis {
        Some(a) => (run.shape.clone(), a),
        None => (vec![n], 0),
    };
    let outputs = run.outputs();
    let bytes = n * T::DTYPE.size_bytes();
    // The input read once; the outputs (values, and indices for the arg forms) written.
    let index_bytes = if matches!(run.op, AnyOp::Arg(_)) { outputs * 8 } else { 0 };
    let traffic = Traffic::new(&[bytes], &[outputs * O::DTYPE.size_bytes(), index_bytes]);
    let mut values = gpu.poisoned::<O>(outputs)?;
    let mut indices = gpu.poisoned::<i64>(outputs)?;
    let mut run_ours = |x: &CudaSlice<T>, values: &mut CudaSlice<O>, indices: &mut CudaSlice<i64>| match run.op {
        AnyOp::Value(op) => reducer.reduce_axis(op, x, &shape, axis, values),
        AnyOp::Arg(op) => reducer.arg_reduce_axis(op, x, &shape, axis, values, indices),
    };
    let check = |x: &CudaSlice<T>, values: &CudaSlice<O>, indices: &CudaSlice<i64>| -> Result<Comparison> {
        Ok(match run.op {
            AnyOp::Value(op) => verify::check_reduce_axis(gpu, op, x, &shape, axis, values)?,
            AnyOp::Arg(op) => verify::check_arg_reduce_axis(gpu, op, x, &shape, axis, values, indices)?.summary,
        })
    };
    let mut first = Comparison { rel_err: 0.0, max_abs_err: 0.0, max_elementwise: 0.0, nan_count: 0, passed: true };
    let mut ran = None;
    let plantings: &[bool] = if picks_an_element(run.op) && n >= 2 { &[true, false] } else { &[] };
    for &at_tail in plantings {
        let mut host = gpu.download(&x)?;
        plant_extrema(&mut host, at_tail == looks_for_max(run.op), 9)?;
        x = gpu.upload(&host)?;
        ran = run_ours(&x, &mut values, &mut indices)?;
        first = first.and(check(&x, &values, &indices)?);
    }
    if plantings.is_empty() {
        ran = run_ours(&x, &mut values, &mut indices)?;
        first = check(&x, &values, &indices)?;
    }
    // What ran, as the call reports it.
    let variant = ran.map_or_else(|| "nothing (empty)".to_string(), |plan| plan.to_string());

    let mut theirs = gpu.zeros::<O>(outputs)?;
    let mut theirs_f32 = gpu.zeros::<f32>(outputs)?;
    let mut ours_timed = |_| run_ours(&x, &mut values, &mut indices).map(|_| ()).map_err(Into::into);
    let (ours_us, baseline_us) = match (run.op, cub_op(run)) {
        (_, Some(c)) => measure::against_vendor(gpu, &mut ours_timed, &mut |_| cub.reduce(c, &x, &mut theirs))?,
        (AnyOp::Value(ReduceOp::Sum), None)
            if axis == shape.len() - 1 && shape.len() == 2 && O::DTYPE == DType::F32 =>
        {
            let (rows, cols) = (shape[0], shape[1]);
            measure::against_vendor(gpu, &mut ours_timed, &mut |_| cub.row_sum(&x, rows, cols, cols, &mut theirs_f32))?
        }
        (AnyOp::Arg(ArgOp::ArgMax), None) if run.axis.is_none() && O::DTYPE == DType::F32 => {
            match (&x as &dyn std::any::Any).downcast_ref::<CudaSlice<f32>>() {
                Some(xf) => {
                    let (mut v, mut i) = (gpu.zeros::<f32>(1)?, gpu.zeros::<i64>(1)?);
                    measure::against_vendor(gpu, &mut ours_timed, &mut |_| cub.argmax_f32(xf, &mut v, &mut i))?
                }
                None => measure::against_roofline(gpu, &traffic, &mut ours_timed)?,
            }
        }
        _ => measure::against_roofline(gpu, &traffic, &mut ours_timed)?,
    };
    let check = first.and(check(&x, &values, &indices)?);
    Ok(measure::streaming_case(run.name(), variant, bytes, ours_us, baseline_us, ctx.copy_gbs, check))
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
pub fn fuzz(gpu: &Gpu, cases: u32, seed: u64) -> Result<FuzzReport> {
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
    Ok(crate::fuzzing::fuzz_with("reduce", cases, seed, strategy, |c| {
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
    let (shape, axis) = match c.axis {
        Some(a) => (c.shape.clone(), a),
        None => (vec![n], 0),
    };
    let outputs = n / shape[axis];
    let detail = |what: &str, got: Comparison| {
        format!(
            "{what} {} {shape:?} axis {axis}: rel err {:.2e}, worst {:.2e}, {} NaN",
            T::DTYPE,
            got.rel_err,
            got.max_elementwise,
            got.nan_count
        )
    };
    if c.op < 6 {
        let op = ReduceOp::ALL[c.op];
        let mut out = gpu.poisoned::<f32>(outputs)?;
        reducer.reduce_axis(op, &view, &shape, axis, &mut out)?;
        let got = verify::check_reduce_axis(gpu, op, &view, &shape, axis, &out)?;
        if !got.passed {
            bail!(detail(op.name(), got));
        }
    } else {
        let op = if c.op == 6 { ArgOp::ArgMax } else { ArgOp::ArgMin };
        let mut values = gpu.poisoned::<f32>(outputs)?;
        let mut indices = gpu.poisoned::<i64>(outputs)?;
        reducer.arg_reduce_axis(op, &view, &shape, axis, &mut values, &mut indices)?;
        let got = verify::check_arg_reduce_axis(gpu, op, &view, &shape, axis, &values, &indices)?;
        if !got.summary.passed {
            let at = got.first_index_mismatch.map(|j| format!(", first wrong index at output {j}")).unwrap_or_default();
            bail!("{}{at}", detail(op.name(), got.summary));
        }
    }
    Ok(())
}
