//! The element-wise family (add, sub, mul, add+ReLU, axpy, scale, casts, bias add) against
//! the streaming roofline of its read/write mix, measured in the same run: phase 1, its bench, `ckb profile
//! elementwise` and the fuzzer.

use anyhow::{anyhow, bail, Result};
use ckb_common::{bf16, compare, f16, to_f64_vec, within_ulps, Comparison, DType, Gpu, Tolerance};
use ckb_reduce::elementwise::{self as ew, BinaryOp, EwVariant};
use ckb_reduce::reference as cpu;
use ckb_reduce::EwElement;
use clap::Parser;
use cudarc::driver::CudaSlice;
use serde::Deserialize;

use super::{Family, FuzzOptions, Options};
use crate::cli::{self, OutputArgs};
use crate::fuzzing::FuzzReport;
use crate::measure::{self, size_label, Context, Traffic};
use crate::record::CaseResult;
use crate::sweep::Sizes;

/// The element-wise family.
pub struct Elementwise;

/// An element-wise op, as commands and gates.toml name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EwOp {
    Binary(BinaryOp),
    /// y = 0.75 x + y
    Axpy,
    /// y = 0.75 x
    Scale,
    /// y = x as the output type
    Cast,
    /// `y[i, j] = x[i, j] + bias[j]`
    BiasAdd,
}

const OPS: [(&str, EwOp); 8] = [
    ("add", EwOp::Binary(BinaryOp::Add)),
    ("sub", EwOp::Binary(BinaryOp::Sub)),
    ("mul", EwOp::Binary(BinaryOp::Mul)),
    ("add_relu", EwOp::Binary(BinaryOp::AddRelu)),
    ("axpy", EwOp::Axpy),
    ("scale", EwOp::Scale),
    ("cast", EwOp::Cast),
    ("bias_add", EwOp::BiasAdd),
];

const ALPHA: f32 = 0.75;

impl EwOp {
    fn parse(name: &str) -> Result<EwOp> {
        OPS.iter().find(|(n, _)| *n == name).map(|(_, op)| *op).ok_or_else(|| {
            anyhow!("element-wise op {name:?}: one of {}", OPS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
        })
    }

    fn name(self) -> &'static str {
        OPS.iter().find(|(_, op)| *op == self).map(|(n, _)| *n).expect("every op is in OPS")
    }

    /// The fewest bytes the op moves for `n` outputs of `d` bytes from inputs of `s` bytes.
    /// The streams the op reads and writes, for `n` elements of `s` bytes in and `d` out.
    fn traffic(self, n: usize, s: usize, d: usize, bias_cols: usize) -> Traffic {
        match self {
            EwOp::Binary(_) | EwOp::Axpy => Traffic::new(&[n * d, n * d], &[n * d]),
            EwOp::Scale => Traffic::new(&[n * d], &[n * d]),
            EwOp::BiasAdd => Traffic::new(&[n * d, bias_cols * d], &[n * d]),
            EwOp::Cast => Traffic::new(&[n * s], &[n * d]),
        }
    }

    /// Every byte the op moves.
    fn bytes(self, n: usize, s: usize, d: usize, bias_cols: usize) -> usize {
        self.traffic(n, s, d, bias_cols).bytes()
    }
}

/// One problem.
#[derive(Debug, Clone, Copy)]
struct Run {
    op: EwOp,
    input: DType,
    output: DType,
    n: usize,
    /// Elements each view starts past a 256-byte-aligned allocation.
    offset: usize,
    /// Row length of bias_add.
    cols: usize,
}

impl Run {
    fn name(&self) -> String {
        let types =
            if self.op == EwOp::Cast { format!("{}->{}", self.input, self.output) } else { self.input.to_string() };
        let offset = if self.offset == 0 { String::new() } else { format!(" +{}", self.offset) };
        let cols = if self.op == EwOp::BiasAdd { format!(" cols={}", self.cols) } else { String::new() };
        format!("{} {types} n={}{cols}{offset}", self.op.name(), size_label(self.n))
    }
}

/// One case of a gate's set (phase 1: add), as gates.toml spells it.
#[derive(Debug, Clone, Deserialize)]
struct EwCase {
    #[serde(default = "default_op")]
    op: String,
    dtype: String,
    n: usize,
}

fn default_op() -> String {
    "add".into()
}

impl Family for Elementwise {
    fn name(&self) -> &'static str {
        "elementwise"
    }

    fn about(&self) -> &'static str {
        "add, sub, mul, add_relu, axpy, scale, cast, bias_add against the streaming roofline of each op's read/write mix"
    }

    fn measure_cases(
        &self,
        ctx: &Context,
        label: &str,
        cases: &toml::Value,
        options: &Options,
    ) -> Result<Vec<CaseResult>> {
        let cases: Vec<EwCase> = cases.clone().try_into()?;
        let runs = cases
            .iter()
            .map(|c| {
                let dtype = cli::dtype(&c.dtype)?;
                Ok(Run { op: EwOp::parse(&c.op)?, input: dtype, output: dtype, n: c.n, offset: 0, cols: 4096 })
            })
            .collect::<Result<Vec<_>>>()?;
        let runs = super::filter_only(runs, options.only.as_deref(), Run::name)?;
        measure_runs(ctx, label, &runs, variant(options.variant.as_deref())?)
    }

    fn bench_gate(&self) -> &'static str {
        "phase1"
    }

    /// Every op and dtype at 2^24 and 2^28 elements.
    fn bench(&self, ctx: &Context, options: &Options) -> Result<Vec<CaseResult>> {
        let mut runs = Vec::new();
        for n in [1usize << 24, 1 << 28] {
            for (_, op) in OPS {
                let pairs: &[(DType, DType)] = match op {
                    EwOp::Binary(_) => {
                        &[(DType::F32, DType::F32), (DType::BF16, DType::BF16), (DType::F16, DType::F16)]
                    }
                    EwOp::Cast => &[(DType::F32, DType::BF16), (DType::BF16, DType::F32), (DType::F32, DType::F16)],
                    _ => &[(DType::F32, DType::F32), (DType::BF16, DType::BF16)],
                };
                runs.extend(pairs.iter().map(|&(input, output)| Run { op, input, output, n, offset: 0, cols: 4096 }));
            }
        }
        let runs = super::filter_only(runs, options.only.as_deref(), Run::name)?;
        measure_runs(ctx, "bench elementwise", &runs, variant(options.variant.as_deref())?)
    }

    fn fuzz(&self, ctx: &Context, options: &FuzzOptions) -> Result<FuzzReport> {
        super::no_fuzz_scope(self.name(), options)?;
        fuzz(&ctx.gpu, options.cases, options.seed)
    }

    fn profile(&self, ctx: &Context, args: &[String]) -> Result<Vec<CaseResult>> {
        let parsed: ProfileArgs = cli::parse(args)?;
        let runs = parsed.runs()?;
        let rows = measure_runs(ctx, "profile elementwise", &runs, variant(parsed.variant.as_deref())?)?;
        let title = format!("element-wise against its streaming roofline (copy {:.0} GB/s)", ctx.copy_gbs);
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
        variant(parsed.variant.as_deref())?;
        parsed.runs().map(|_| ())
    }
}

fn variant(name: Option<&str>) -> Result<EwVariant> {
    match name {
        None => Ok(EwVariant::default()),
        Some(name) => EwVariant::by_name(name).ok_or_else(|| {
            anyhow!(
                "element-wise variant {name:?}: one of {}",
                ckb_reduce::elementwise::EW_VARIANTS.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
            )
        }),
    }
}

/// `ckb profile elementwise`.
#[derive(Debug, Parser)]
#[command(name = "ckb profile elementwise", about = "An element-wise op on any length, against its streaming roofline")]
struct ProfileArgs {
    /// add, sub, mul, add_relu, axpy, scale, cast or bias_add; a list.
    #[arg(long, value_delimiter = ',')]
    op: Vec<String>,
    /// Element type (the input type for cast); a list.
    #[arg(long, default_value = "f32", value_delimiter = ',')]
    dtype: Vec<String>,
    /// The output type of cast.
    #[arg(long)]
    to: Option<String>,
    /// Elements: a size, list or range.
    #[arg(long)]
    n: Sizes,
    /// Start every view this many elements past an aligned allocation (misaligned views).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Row length of bias_add (n must be a multiple of it).
    #[arg(long, default_value_t = 4096)]
    cols: usize,
    /// One variant of the element-wise table (default: the heuristic's).
    #[arg(long)]
    variant: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

impl ProfileArgs {
    fn runs(&self) -> Result<Vec<Run>> {
        if self.op.is_empty() {
            bail!("--op is required: one of {}", OPS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "));
        }
        let ops: Vec<EwOp> = self.op.iter().map(|o| EwOp::parse(o)).collect::<Result<_>>()?;
        let dtypes: Vec<DType> = self.dtype.iter().map(|d| cli::dtype(d)).collect::<Result<_>>()?;
        let to = self.to.as_deref().map(cli::dtype).transpose()?;
        let mut runs = Vec::new();
        for &op in &ops {
            for &input in &dtypes {
                for &n in &self.n.0 {
                    let output = if op == EwOp::Cast {
                        to.ok_or_else(|| anyhow!("cast needs --to, the output type"))?
                    } else {
                        input
                    };
                    supported(input)?;
                    supported(output)?;
                    if n == 0 {
                        bail!("--n must be at least 1");
                    }
                    if op == EwOp::BiasAdd && (self.cols == 0 || n % self.cols != 0) {
                        bail!("bias_add: n = {n} is not a whole number of rows of --cols {}", self.cols);
                    }
                    runs.push(Run { op, input, output, n, offset: self.offset, cols: self.cols });
                }
            }
        }
        Ok(runs)
    }
}

fn supported(dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => Ok(()),
        other => bail!("the element-wise kernels take f32, f16 and bf16, not {other}"),
    }
}

/// `got` against the exact result: ops of one IEEE operation (add, sub, mul, add-relu,
/// scale, bias add) within 0 ulps in f32 and 1 ulp in the 16-bit types (f32 math rounded
/// once more: double rounding), casts exactly; axpy, two operations whose sum may cancel,
/// to the output type's bounds on unit scale.
fn check_output(op: EwOp, dtype: DType, got: &[f64], exact: &[f64]) -> Result<Comparison> {
    let one_rounding = if dtype == DType::F32 { 0 } else { 1 };
    Ok(match op {
        EwOp::Cast => within_ulps(got, exact, dtype, 0)?.summary,
        EwOp::Axpy => {
            let rounded: Vec<f64> = exact.iter().map(|&v| dtype.round(v)).collect();
            compare(got, &rounded, Tolerance::for_output(dtype))
        }
        _ => within_ulps(got, exact, dtype, one_rounding)?.summary,
    })
}

fn measure_runs(ctx: &Context, label: &str, runs: &[Run], variant: EwVariant) -> Result<Vec<CaseResult>> {
    measure::each(label, runs, |run| {
        let bytes = run.op.bytes(run.n + run.offset, run.input.size_bytes(), run.output.size_bytes(), run.cols);
        measure::ensure_fits(&ctx.gpu, &run.name(), bytes + bytes / 2)?;
        match (run.input, run.output) {
            (DType::F32, DType::F32) => measure_run::<f32, f32>(ctx, run, variant),
            (DType::BF16, DType::BF16) => measure_run::<bf16, bf16>(ctx, run, variant),
            (DType::F16, DType::F16) => measure_run::<f16, f16>(ctx, run, variant),
            (DType::F32, DType::BF16) => measure_run::<f32, bf16>(ctx, run, variant),
            (DType::F32, DType::F16) => measure_run::<f32, f16>(ctx, run, variant),
            (DType::BF16, DType::F32) => measure_run::<bf16, f32>(ctx, run, variant),
            (DType::F16, DType::F32) => measure_run::<f16, f32>(ctx, run, variant),
            (DType::BF16, DType::F16) => measure_run::<bf16, f16>(ctx, run, variant),
            (DType::F16, DType::BF16) => measure_run::<f16, bf16>(ctx, run, variant),
            (i, o) => bail!("element-wise types {i} -> {o}"),
        }
    })
}

/// One op: checked against the float64 reference rounded once to the output type, then
/// timed interleaved with the streaming roofline of the bytes it must move (reads and writes as the op has them).
fn measure_run<S: EwElement, D: EwElement>(ctx: &Context, run: &Run, variant: EwVariant) -> Result<CaseResult> {
    let gpu = &ctx.gpu;
    let (n, off) = (run.n, run.offset);
    let x_full = gpu.random_normal::<S>(n + off, 3)?;
    let xd_full = gpu.random_normal::<D>(n + off, 3)?;
    let b_full = gpu.random_normal::<D>(n + off, 4)?;
    let y0_full = gpu.random_normal::<D>(n + off, 5)?;
    let bias = gpu.random_normal::<D>(run.cols, 6)?;
    let mut y_full = gpu.poisoned::<D>(n + off)?;
    let (x, xd, b) = (x_full.slice(off..), xd_full.slice(off..), b_full.slice(off..));
    let mut y = y_full.slice_mut(off..);
    if run.op == EwOp::Axpy {
        gpu.stream.memcpy_dtod(&y0_full.slice(off..), &mut y)?;
    }
    let launch = |y: &mut cudarc::driver::CudaViewMut<'_, D>| -> ckb_reduce::ReduceResult<ew::EwPlan> {
        match run.op {
            EwOp::Binary(op) => ew::binary_with(gpu, variant, op, &xd, &b, y),
            EwOp::Axpy => ew::axpy(gpu, ALPHA, &xd, y),
            EwOp::Scale => ew::scale(gpu, ALPHA, &xd, y),
            EwOp::Cast => ew::cast(gpu, &x, y),
            EwOp::BiasAdd => ew::bias_add(gpu, n / run.cols, run.cols, &xd, &bias, y),
        }
    };
    let plan = launch(&mut y)?;
    let first = to_f64_vec(&gpu.download(&y)?);
    let hx = to_f64_vec(&gpu.download(&xd)?);
    let exact: Vec<f64> = match run.op {
        EwOp::Binary(op) => {
            let hb = to_f64_vec(&gpu.download(&b)?);
            match op {
                BinaryOp::Add => cpu::add(&hx, &hb),
                BinaryOp::Sub => cpu::sub(&hx, &hb),
                BinaryOp::Mul => cpu::mul(&hx, &hb),
                BinaryOp::AddRelu => cpu::add_relu(&hx, &hb),
            }
        }
        EwOp::Axpy => {
            let hy = to_f64_vec(&gpu.download(&y0_full.slice(off..))?);
            hx.iter().zip(&hy).map(|(a, y)| f64::from(ALPHA) * a + y).collect()
        }
        EwOp::Scale => hx.iter().map(|a| f64::from(ALPHA) * a).collect(),
        EwOp::Cast => to_f64_vec(&gpu.download(&x)?),
        EwOp::BiasAdd => {
            let hb = to_f64_vec(&gpu.download(&bias)?);
            hx.iter().enumerate().map(|(i, a)| a + hb[i % run.cols]).collect()
        }
    };
    let traffic = run.op.traffic(n, S::DTYPE.size_bytes(), D::DTYPE.size_bytes(), run.cols);
    let bytes = traffic.bytes();
    let (ours, copy) = measure::against_roofline(gpu, &traffic, &mut |_| launch(&mut y).map(drop).map_err(Into::into))?;
    // The last timed run's output too; axpy's timed runs each updated the last one's y, so
    // y is put back and updated once more.
    if run.op == EwOp::Axpy {
        gpu.stream.memcpy_dtod(&y0_full.slice(off..), &mut y)?;
        launch(&mut y)?;
    }
    let last = to_f64_vec(&gpu.download(&y)?);
    let check = check_output(run.op, D::DTYPE, &first, &exact)?.and(check_output(run.op, D::DTYPE, &last, &exact)?);
    Ok(measure::streaming_case(run.name(), plan.to_string(), bytes, ours, copy, ctx.copy_gbs, check))
}

/// Random binary ops, dtypes, lengths and misaligned views against the CPU reference.
pub fn fuzz(gpu: &Gpu, cases: u32, seed: u64) -> Result<FuzzReport> {
    const BINARY: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::AddRelu];
    let strategy = (0..BINARY.len(), 0..3usize, 1usize..3_000_000, 0usize..8, 0usize..8);
    Ok(crate::fuzzing::fuzz_with("elementwise", cases, seed, strategy, |&(op, dtype, n, off_in, off_out)| {
        let op = BINARY[op];
        let outcome = match dtype {
            0 => fuzz_case::<f32>(gpu, op, n, off_in, off_out),
            1 => fuzz_case::<bf16>(gpu, op, n, off_in, off_out),
            _ => fuzz_case::<f16>(gpu, op, n, off_in, off_out),
        };
        match outcome {
            Ok(c) if c.passed => Ok(()),
            Ok(c) => Err(format!("{} n={n}: rel err {:.2e}, {} NaN", op.name(), c.rel_err, c.nan_count)),
            Err(e) => Err(format!("{e:#}")),
        }
    }))
}

/// Views offset by `off_in` (inputs) and `off_out` (output) elements.
fn fuzz_case<T: EwElement>(gpu: &Gpu, op: BinaryOp, n: usize, off_in: usize, off_out: usize) -> Result<Comparison> {
    let a: CudaSlice<T> = gpu.random_normal::<T>(n + off_in, n as u64)?;
    let b = gpu.random_normal::<T>(n + off_in, n as u64 + 1)?;
    let mut out = gpu.poisoned::<T>(n + off_out)?;
    let (va, vb) = (a.slice(off_in..), b.slice(off_in..));
    let mut vo = out.slice_mut(off_out..);
    ew::binary_with(gpu, EwVariant::default(), op, &va, &vb, &mut vo)?;
    let (ha, hb) = (to_f64_vec(&gpu.download(&va)?), to_f64_vec(&gpu.download(&vb)?));
    let exact = match op {
        BinaryOp::Add => cpu::add(&ha, &hb),
        BinaryOp::Sub => cpu::sub(&ha, &hb),
        BinaryOp::Mul => cpu::mul(&ha, &hb),
        BinaryOp::AddRelu => cpu::add_relu(&ha, &hb),
    };
    check_output(EwOp::Binary(op), T::DTYPE, &to_f64_vec(&gpu.download(&vo)?), &exact)
}
