//! Times our GEMM against cuBLAS on the phase-2 shapes, interleaved in one process on the
//! same random-normal inputs, and checks each result against cuBLAS's.
//!
//! `cargo run --release -p ckb-gemm --example gemm_vs_cublas -- [--variant NAME] [--quick] [M N K ...]`

use ckb_common::baselines::{Cublas, GemmSpec};
use ckb_common::{bf16, compare, f16, to_f64_vec, Gpu, Layout, Timer, TimingConfig, Tolerance};
use ckb_gemm::{find_variant, gemm, gemm_with_variant, GemmInput, GemmProblem, Variant};

const SHAPES: [(usize, usize, usize); 9] = [
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

fn run<T: GemmInput + ckb_gemm::GemmOutput>(gpu: &Gpu, cublas: &Cublas, problem: GemmProblem, variant: Option<&'static Variant>, timing: TimingConfig) -> Result<f64, Box<dyn std::error::Error>> {
    let (m, n, k) = (problem.m, problem.n, problem.k);
    let a = gpu.random_normal::<T>(m * k, 1)?;
    let b = gpu.random_normal::<T>(k * n, 2)?;
    let mut ours = gpu.poisoned::<T>(m * n)?;
    let mut theirs = gpu.poisoned::<T>(m * n)?;
    let spec = GemmSpec::new(m, n, k, problem.a_layout, problem.b_layout, problem.c_layout);
    let mut name = String::new();
    let mut launch_ours = |c: &mut _| -> Result<(), ckb_gemm::GemmError> {
        name = match variant {
            Some(v) => {
                let plan = gemm_with_variant(gpu, v, &problem, &a, &b, c)?;
                format!("{} {:?}", plan.variant.name, plan.orientation)
            }
            None => gemm(gpu, &problem, &a, &b, c)?.name.to_string(),
        };
        Ok(())
    };
    launch_ours(&mut ours)?;
    cublas.gemm(&spec, &a, &b, &mut theirs)?;
    let check = compare(&to_f64_vec(&gpu.download(&ours)?), &to_f64_vec(&gpu.download(&theirs)?), Tolerance::HALF.with_scale((k as f64).sqrt()));

    let mut timer = Timer::new(gpu, timing)?;
    let stats = timer.time_interleaved(&mut [
        &mut |_| launch_ours(&mut ours).map_err(|e| ckb_common::GpuError::Library { library: "ckb-gemm", detail: e.to_string() }),
        &mut |_| cublas.gemm(&spec, &a, &b, &mut theirs),
    ])?;
    let tflops = |us: f64| problem.flops() / (us * 1e-6) / 1e12;
    let ratio = stats[1].median_us / stats[0].median_us;
    println!(
        "{:>5} {} m{m:<6} n{n:<6} k{k:<6} ours {:8.1} us {:6.1} TF/s | cuBLAS {:8.1} us {:6.1} TF/s | x{ratio:.3} | rel_err {:.1e} {} | {name}",
        T::DTYPE.name(),
        problem.layout_letters(),
        stats[0].median_us,
        tflops(stats[0].median_us),
        stats[1].median_us,
        tflops(stats[1].median_us),
        check.rel_err,
        if check.passed { "ok" } else { "MISMATCH" },
    );
    Ok(ratio)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let (mut variant, mut quick, mut dims) = (None, false, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--variant" => variant = Some(find_variant(&args.next().ok_or("--variant NAME")?).ok_or("unknown variant")?),
            "--quick" => quick = true,
            other => dims.push(other.parse::<usize>()?),
        }
    }
    let shapes: Vec<(usize, usize, usize)> = if dims.is_empty() { SHAPES.to_vec() } else { dims.chunks(3).map(|d| (d[0], d[1], d[2])).collect() };
    let gpu = Gpu::new(0)?;
    let cublas = Cublas::new(&gpu)?;
    let timing = if quick { TimingConfig { warmup: 3, min_reps: 10, max_reps: 30, budget_ms: 50.0, flush_l2: true } } else { TimingConfig::default() };
    let mut ratios = Vec::new();
    let mut record = |result: Result<f64, Box<dyn std::error::Error>>| -> Result<(), Box<dyn std::error::Error>> {
        match result {
            Ok(ratio) => ratios.push(ratio),
            // A forced variant skips the layouts it cannot take.
            Err(e) if e.downcast_ref::<ckb_gemm::GemmError>().is_some_and(|e| matches!(e, ckb_gemm::GemmError::VariantCannotRun { .. })) => println!("skipped: {e}"),
            Err(e) => return Err(e),
        }
        Ok(())
    };
    for &(m, n, k) in &shapes {
        let rc = GemmProblem::row_col(m, n, k);
        record(run::<bf16>(&gpu, &cublas, rc, variant, timing))?;
        record(run::<f16>(&gpu, &cublas, rc, variant, timing))?;
        if m == n && n == k {
            let rr = GemmProblem::packed(m, n, k, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor);
            record(run::<bf16>(&gpu, &cublas, rr, variant, timing))?;
            record(run::<f16>(&gpu, &cublas, rr, variant, timing))?;
        }
    }
    let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    println!("geomean speedup vs cuBLAS over {} cases: {geomean:.3}", ratios.len());
    Ok(())
}
