//! The GEMM family: our GEMM against cuBLAS (checked, then timed interleaved on the same
//! inputs), for gates, benches, `ckb profile gemm` and the fuzzer.

use anyhow::{anyhow, bail, Result};
use ckb_common::baselines::Cublas;
use ckb_common::{bf16, f16, to_f64_vec, Comparison, DType, Gpu, Layout};
use ckb_gemm::verify::GemmSample;
use ckb_gemm::{GemmInput, GemmOutput, GemmProblem, Variant};
use clap::Parser;
use cudarc::driver::CudaSlice;
use proptest::prelude::*;
use serde::Deserialize;

use super::{Family, FuzzOptions, Options};
use crate::cli::{self, OutputArgs};
use crate::fuzzing::FuzzReport;
use crate::measure::{self, Context};
use crate::record::CaseResult;
use crate::sweep::{combinations, Sizes};

/// The GEMM family.
pub struct Gemm;

impl Family for Gemm {
    fn name(&self) -> &'static str {
        "gemm"
    }

    fn about(&self) -> &'static str {
        "C = alpha A B + beta C, f16/bf16/f32 inputs, against cuBLAS"
    }

    fn measure_cases(
        &self,
        ctx: &Context,
        label: &str,
        cases: &toml::Value,
        options: &Options,
    ) -> Result<Vec<CaseResult>> {
        let cases: Vec<GemmCase> = cases.clone().try_into()?;
        let cases = super::filter_only(cases, options.only.as_deref(), GemmCase::label)?;
        let runs: Vec<Run> = cases.iter().map(GemmCase::run).collect::<Result<_>>()?;
        measure_runs(ctx, label, &runs, options.variant.as_deref())
    }

    fn bench_gate(&self) -> &'static str {
        "phase2a"
    }

    fn fuzz(&self, ctx: &Context, options: &FuzzOptions) -> Result<FuzzReport> {
        let scope = match options.scope.as_deref() {
            None => FuzzScope::AllVariants,
            Some("universal") => FuzzScope::SimpleKernel,
            Some(other) => bail!("gemm fuzz scope {other:?}: universal, or none for every variant"),
        };
        fuzz(&ctx.gpu, options.cases, options.seed, scope)
    }

    fn profile(&self, ctx: &Context, args: &[String]) -> Result<Vec<CaseResult>> {
        let parsed: ProfileArgs = cli::parse(args)?;
        let runs = parsed.runs()?;
        let rows = measure_runs(ctx, "profile gemm", &runs, parsed.variant.as_deref())?;
        crate::output::emit("gemm against cuBLAS", &rows, serde_json::json!({ "args": args }), &parsed.output)?;
        Ok(rows)
    }

    fn check_profile_args(&self, args: &[String]) -> Result<()> {
        cli::parse::<ProfileArgs>(args)?.runs().map(|_| ())
    }
}

/// One case of a GEMM shape set, as gates.toml spells it.
#[derive(Debug, Clone, Deserialize)]
pub struct GemmCase {
    pub dtype: String,
    /// The output type; the input type when absent.
    pub out_dtype: Option<String>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A's and B's layout letters ("rc": A row-major, B column-major, a linear layer's
    /// weight), optionally C's third (row-major when absent).
    pub layouts: String,
    /// Scale of the product (1 when absent).
    pub alpha: Option<f32>,
    /// Scale of C (0 when absent: C is not read); non-zero reads a random C.
    pub beta: Option<f32>,
    /// Elements added to every leading dimension beyond the tightest (0 when absent).
    pub ld_pad: Option<usize>,
}

impl GemmCase {
    fn label(&self) -> String {
        let mut label = format!("{} {} m{} n{} k{}", self.dtype, self.layouts, self.m, self.n, self.k);
        if let Some(out) = &self.out_dtype {
            label += &format!(" ->{out}");
        }
        if self.alpha.is_some() || self.beta.is_some() {
            label += &format!(" a{} b{}", self.alpha.unwrap_or(1.0), self.beta.unwrap_or(0.0));
        }
        if let Some(pad) = self.ld_pad.filter(|&p| p > 0) {
            label += &format!(" ld+{pad}");
        }
        label
    }

    fn run(&self) -> Result<Run> {
        let input = cli::dtype(&self.dtype)?;
        let output = self.out_dtype.as_deref().map(cli::dtype).transpose()?.unwrap_or(input);
        let [a, b, c] = layouts(&self.layouts)?;
        let tight = GemmProblem::new(self.m, self.n, self.k, a, b, c);
        let pad = self.ld_pad.unwrap_or(0);
        let problem = tight
            .with_leading_dims(tight.lda + pad, tight.ldb + pad, tight.ldc + pad)
            .with_scalars(self.alpha.unwrap_or(1.0), self.beta.unwrap_or(0.0));
        Ok(Run { problem, input, output })
    }
}

/// "rc" or "rcr": A's, B's and (optionally) C's layout letters.
fn layouts(letters: &str) -> Result<[Layout; 3]> {
    let l: Vec<char> = letters.chars().collect();
    match l.as_slice() {
        [a, b] => Ok([cli::layout(*a)?, cli::layout(*b)?, Layout::RowMajor]),
        [a, b, c] => Ok([cli::layout(*a)?, cli::layout(*b)?, cli::layout(*c)?]),
        _ => bail!("layouts {letters:?}: two or three of r/c (A, B, then C), like rc or rcr"),
    }
}

/// One problem to measure, with its element types.
#[derive(Debug, Clone, Copy)]
struct Run {
    problem: GemmProblem,
    input: DType,
    output: DType,
}

/// `ckb profile gemm`: any GEMM shape, sweeps included, against cuBLAS.
#[derive(Debug, Parser)]
#[command(name = "ckb profile gemm", about = "Our GEMM against cuBLAS on any shape: C = alpha A B + beta C")]
struct ProfileArgs {
    /// Rows of A and C: a size, list or range (1024:8192:1024).
    #[arg(long)]
    m: Sizes,
    /// Columns of B and C.
    #[arg(long)]
    n: Sizes,
    /// The inner dimension.
    #[arg(long)]
    k: Sizes,
    /// Layout letters of A and B, and optionally C (r row-major, c column-major); a list.
    #[arg(long, default_value = "rc", value_delimiter = ',')]
    layout: Vec<String>,
    /// Input type: bf16, f16 or f32; a list.
    #[arg(long, default_value = "bf16", value_delimiter = ',')]
    dtype: Vec<String>,
    /// Output type (default: the input type).
    #[arg(long)]
    out_dtype: Option<String>,
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    alpha: f32,
    /// beta != 0 reads a random C.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    beta: f32,
    /// Leading dimensions of A, B and C in elements (default: packed).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    ld: Option<Vec<usize>>,
    /// A variant from ckb_gemm::variants(), or `all` for every variant that takes the problem.
    #[arg(long)]
    variant: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

impl ProfileArgs {
    /// Every combination, validated before anything runs.
    fn runs(&self) -> Result<Vec<Run>> {
        if let Some(ld) = &self.ld {
            if ld.len() != 3 {
                bail!("--ld takes three leading dimensions, A,B,C; got {}", ld.len());
            }
        }
        if let Some(v) = self.variant.as_deref().filter(|v| *v != "all") {
            ckb_gemm::find_variant(v).ok_or_else(|| anyhow!("no GEMM variant {v:?}"))?;
        }
        let out = self.out_dtype.as_deref().map(cli::dtype).transpose()?;
        let inputs: Vec<DType> = self.dtype.iter().map(|d| cli::dtype(d)).collect::<Result<_>>()?;
        let layouts: Vec<[Layout; 3]> = self.layout.iter().map(|l| layouts(l)).collect::<Result<_>>()?;
        let mut runs = Vec::new();
        for &input in &inputs {
            for &lay in &layouts {
                for dims in combinations(&[&self.m.0[..], &self.n.0[..], &self.k.0[..]]) {
                    let [a, b, c] = lay;
                    let mut problem =
                        GemmProblem::new(dims[0], dims[1], dims[2], a, b, c).with_scalars(self.alpha, self.beta);
                    if let Some(ld) = &self.ld {
                        problem = problem.with_leading_dims(ld[0], ld[1], ld[2]);
                    }
                    problem.lens()?;
                    let output = out.unwrap_or(input);
                    type_pair(input, output)?;
                    runs.push(Run { problem, input, output });
                }
            }
        }
        Ok(runs)
    }
}

/// The (input, output) pairs the kernels and cuBLAS both take.
fn type_pair(input: DType, output: DType) -> Result<()> {
    match (input, output) {
        (DType::BF16, DType::BF16 | DType::F32) | (DType::F16, DType::F16 | DType::F32) | (DType::F32, DType::F32) => {
            Ok(())
        }
        _ => bail!("GEMM types {input} -> {output}: bf16 or f16 in with the same type or f32 out, or f32 -> f32"),
    }
}

/// Measures each run, on the heuristic's variant, one forced variant, or (`all`) every
/// variant that takes it.
fn measure_runs(ctx: &Context, label: &str, runs: &[Run], variant: Option<&str>) -> Result<Vec<CaseResult>> {
    let cublas = Cublas::new(&ctx.gpu)?;
    let mut items: Vec<(Run, Option<&'static Variant>)> = Vec::new();
    for run in runs {
        match variant {
            None => items.push((*run, None)),
            Some("all") => {
                items.extend(ckb_gemm::variants().iter().filter(|v| v.input() == run.input).map(|v| (*run, Some(v))))
            }
            Some(name) => items
                .push((*run, Some(ckb_gemm::find_variant(name).ok_or_else(|| anyhow!("no GEMM variant {name:?}"))?))),
        }
    }
    let progress = crate::progress::Progress::new(label, items.len() as u64);
    let mut rows = Vec::new();
    for (run, forced) in items {
        match measure_problem(&ctx.gpu, &cublas, &run, forced) {
            Ok(row) => {
                progress.step(&row.summary());
                rows.push(row);
            }
            // A forced variant may not take every problem: say so and go on.
            Err(e) if forced.is_some() && is_cannot_run(&e) => progress.step(&format!("skipped: {e}")),
            Err(e) => return Err(e),
        }
    }
    progress.finish();
    Ok(rows)
}

fn is_cannot_run(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<ckb_gemm::GemmError>(), Some(ckb_gemm::GemmError::VariantCannotRun { .. }))
}

fn measure_problem(gpu: &Gpu, cublas: &Cublas, run: &Run, variant: Option<&'static Variant>) -> Result<CaseResult> {
    let p = &run.problem;
    let bytes = [ckb_gemm::Operand::A, ckb_gemm::Operand::B, ckb_gemm::Operand::C]
        .iter()
        .map(|&o| {
            p.required_len(o).map(|n| {
                n * if o == ckb_gemm::Operand::C { 2 * run.output.size_bytes() } else { run.input.size_bytes() }
            })
        })
        .sum::<Result<usize, _>>()?;
    measure::ensure_fits(gpu, "this GEMM", bytes)?;
    match (run.input, run.output) {
        (DType::BF16, DType::BF16) => measure_typed::<bf16, bf16>(gpu, cublas, p, variant),
        (DType::F16, DType::F16) => measure_typed::<f16, f16>(gpu, cublas, p, variant),
        (DType::BF16, DType::F32) => measure_typed::<bf16, f32>(gpu, cublas, p, variant),
        (DType::F16, DType::F32) => measure_typed::<f16, f32>(gpu, cublas, p, variant),
        (DType::F32, DType::F32) => measure_typed::<f32, f32>(gpu, cublas, p, variant),
        (i, o) => type_pair(i, o).and_then(|_| bail!("GEMM types {i} -> {o}")),
    }
}

/// One problem: inputs random normal, C poisoned (random where beta reads it), checked on
/// sampled rows, then timed interleaved with cuBLAS on the same inputs. The ratio is
/// cuBLAS's time over ours.
fn measure_typed<TIn: GemmInput, TOut: GemmOutput>(
    gpu: &Gpu,
    cublas: &Cublas,
    p: &GemmProblem,
    variant: Option<&'static Variant>,
) -> Result<CaseResult> {
    let a = gpu.random_normal::<TIn>(p.required_len(ckb_gemm::Operand::A)?, 11)?;
    let b = gpu.random_normal::<TIn>(p.required_len(ckb_gemm::Operand::B)?, 12)?;
    let c_len = p.required_len(ckb_gemm::Operand::C)?;
    // C before the GEMM, where beta reads it.
    let c_initial: Option<Vec<TOut>> =
        if p.beta == 0.0 { None } else { Some(gpu.download(&gpu.random_normal::<TOut>(c_len, 13)?)?) };
    let fresh_c = || match &c_initial {
        Some(host) => gpu.upload(host),
        None => gpu.poisoned::<TOut>(c_len),
    };
    let (mut c, mut theirs) = (fresh_c()?, fresh_c()?);
    let c0 = c_initial.as_deref().map(to_f64_vec);
    let run_ours = |c: &mut CudaSlice<TOut>| -> Result<ckb_gemm::Plan, ckb_gemm::GemmError> {
        match variant {
            Some(v) => ckb_gemm::gemm_with_variant(gpu, v, p, &a, &b, c),
            None => {
                let at = |x: &CudaSlice<TIn>| ckb_common::device_address(x, &gpu.stream);
                let addresses = [at(&a), at(&b), ckb_common::device_address(c, &gpu.stream)];
                let plan = ckb_gemm::choose_plan(gpu, p, TIn::DTYPE, TOut::DTYPE, addresses)?;
                ckb_gemm::gemm(gpu, p, &a, &b, c)?;
                Ok(plan)
            }
        }
    };
    let plan = run_ours(&mut c)?;
    let sample = GemmSample::new(gpu, p, &a, &b, c0.as_deref(), 7)?;
    let first = sample.check(gpu, &c)?;

    let (ours_us, cublas_us) =
        measure::against_vendor(gpu, &mut |_| run_ours(&mut c).map(|_| ()).map_err(Into::into), &mut |_| {
            cublas.gemm(p, &a, &b, &mut theirs)
        })?;
    // The last timed outputs are checked too. With beta != 0 every timed run read the
    // previous one's C, so C is put back and each side runs once more after the timing.
    if let Some(original) = &c_initial {
        gpu.stream.memcpy_htod(original, &mut c)?;
        gpu.stream.memcpy_htod(original, &mut theirs)?;
        run_ours(&mut c)?;
        cublas.gemm(p, &a, &b, &mut theirs)?;
    }
    let last = sample.check(gpu, &c)?;
    let cublas_check = sample.check(gpu, &theirs)?;
    let agreement = sample.cross_check(gpu, &c, &last, &theirs, &cublas_check)?;
    let check = first.comparison.and(last.comparison).and(agreement);
    let types =
        if TIn::DTYPE == TOut::DTYPE { TIn::DTYPE.to_string() } else { format!("{}->{}", TIn::DTYPE, TOut::DTYPE) };
    let scalars = if p.alpha == 1.0 && p.beta == 0.0 { String::new() } else { format!(" a{} b{}", p.alpha, p.beta) };
    let packed = GemmProblem::new(p.m, p.n, p.k, p.a_layout, p.b_layout, p.c_layout);
    let lds = if (p.lda, p.ldb, p.ldc) == (packed.lda, packed.ldb, packed.ldc) {
        String::new()
    } else {
        format!(" ld{},{},{}", p.lda, p.ldb, p.ldc)
    };
    let c_letter = if p.c_layout == Layout::RowMajor { String::new() } else { p.c_layout.letter().to_string() };
    let name = format!("{types} {}{c_letter} m{} n{} k{}{scalars}{lds}", p.layout_letters(), p.m, p.n, p.k);
    let mut row = measure::speedup_case(name, plan_label(&plan), ours_us, cublas_us, check);
    row.tflops = Some(p.flops() / (ours_us * 1e-6) / 1e12);
    Ok(row)
}

/// What ran, as records name it.
fn plan_label(plan: &ckb_gemm::Plan) -> String {
    let mut label = plan.variant.name.to_string();
    if plan.orientation == ckb_gemm::Orientation::Swapped {
        label += " (swapped)";
    }
    match (plan.staging.a, plan.staging.b) {
        (true, true) => label += " (A, B staged)",
        (true, false) => label += " (A staged)",
        (false, true) => label += " (B staged)",
        (false, false) => {}
    }
    if plan.split.splits > 1 {
        label += &format!(" (split-K {})", plan.split.splits);
    }
    if let Some(tf32) = plan.tf32 {
        label += &format!(" ({tf32})");
    }
    label
}

/// Which kernels the fuzzer runs.
#[derive(Debug, Clone, Copy)]
pub enum FuzzScope {
    /// The universal CuTe kernel only (`--scope universal`).
    SimpleKernel,
    /// Every variant of the input type that takes the problem, and the heuristic's choice.
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
}

fn fuzz_strategy(max_dim: usize) -> impl Strategy<Value = FuzzCase> {
    let layout = prop_oneof![Just(Layout::RowMajor), Just(Layout::ColMajor)];
    (
        (1..=max_dim, 1..=max_dim, 1..=max_dim),
        [layout.clone(), layout.clone(), layout],
        [0usize..9, 0usize..9, 0usize..9],
        (-2.0f32..2.0, prop_oneof![Just(0.0f32), -1.5f32..1.5]),
        0usize..5,
    )
        .prop_map(|((m, n, k), layouts, ld_pad, (alpha, beta), types)| FuzzCase {
            m,
            n,
            k,
            layouts,
            ld_pad,
            alpha,
            beta,
            types,
        })
}

/// Every case runs each kernel `scope` names on the same inputs, each checked against one
/// float64 reference on rows that cover every M tile (every row of small problems).
pub fn fuzz(gpu: &Gpu, cases: u32, seed: u64, scope: FuzzScope) -> Result<FuzzReport> {
    Ok(crate::fuzzing::fuzz_with("gemm", cases, seed, fuzz_strategy(5000), |case| {
        let outcome = match case.types {
            0 => fuzz_one::<bf16, bf16>(gpu, case, scope),
            1 => fuzz_one::<f16, f16>(gpu, case, scope),
            2 => fuzz_one::<bf16, f32>(gpu, case, scope),
            3 => fuzz_one::<f16, f32>(gpu, case, scope),
            _ => fuzz_one::<f32, f32>(gpu, case, scope),
        };
        let failed: Vec<String> = match outcome {
            Ok(runs) => runs
                .into_iter()
                .filter(|(_, c)| !c.passed)
                .map(|(variant, c)| {
                    format!(
                        "{variant}: rel err {:.2e}, worst element {:.2e}, {} NaN",
                        c.rel_err, c.max_elementwise, c.nan_count
                    )
                })
                .collect(),
            Err(e) => vec![format!("{e:#}")],
        };
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }))
}

/// Runs the case on every kernel of `scope` that can take it; returns each one's check.
fn fuzz_one<TIn: GemmInput, TOut: GemmOutput>(
    gpu: &Gpu,
    case: &FuzzCase,
    scope: FuzzScope,
) -> Result<Vec<(String, Comparison)>> {
    let [la, lb, lc] = case.layouts;
    let p = GemmProblem::new(case.m, case.n, case.k, la, lb, lc)
        .with_leading_dims(
            la.min_ld(case.m, case.k) + case.ld_pad[0],
            lb.min_ld(case.k, case.n) + case.ld_pad[1],
            lc.min_ld(case.m, case.n) + case.ld_pad[2],
        )
        .with_scalars(case.alpha, case.beta);
    let seed = (case.m * 31 + case.n * 17 + case.k) as u64;
    let lens = p.lens()?;
    let a = gpu.random_normal::<TIn>(lens.a, seed)?;
    let b = gpu.random_normal::<TIn>(lens.b, seed + 1)?;
    // beta == 0 must not read C: give it NaN then, real values otherwise.
    let c_initial =
        if p.beta == 0.0 { None } else { Some(gpu.download(&gpu.random_normal::<TOut>(lens.c, seed + 2)?)?) };
    let c0 = c_initial.as_deref().map(to_f64_vec);
    let sample = GemmSample::new(gpu, &p, &a, &b, c0.as_deref(), seed)?;
    let fresh_c = || match &c_initial {
        Some(host) => gpu.upload(host),
        None => gpu.poisoned::<TOut>(lens.c),
    };

    let kernels: Vec<Option<&'static Variant>> = match scope {
        FuzzScope::SimpleKernel => {
            let universal = ckb_gemm::variants().iter().find(|v| v.input() == TIn::DTYPE && !v.uses_tma());
            vec![Some(universal.ok_or_else(|| anyhow!("no universal kernel for {}", TIn::DTYPE))?)]
        }
        FuzzScope::AllVariants => std::iter::once(None)
            .chain(ckb_gemm::variants().iter().filter(|v| v.input() == TIn::DTYPE).map(Some))
            .collect(),
    };
    let mut checked = Vec::new();
    for kernel in kernels {
        let mut c = fresh_c()?;
        let name = match kernel {
            None => format!("heuristic: {}", plan_label(&ckb_gemm::gemm(gpu, &p, &a, &b, &mut c)?)),
            Some(v) => match ckb_gemm::gemm_with_variant(gpu, v, &p, &a, &b, &mut c) {
                Ok(plan) => plan_label(&plan),
                Err(ckb_gemm::GemmError::VariantCannotRun { .. }) => continue,
                Err(e) => return Err(e.into()),
            },
        };
        checked.push((name, sample.check(gpu, &c)?.comparison));
    }
    Ok(checked)
}
