//! A user of the operator crates, outside their workspace: a GEMM, an argmax and a
//! layernorm on shapes of its own, each checked with its crate's `verify` helper, using
//! nothing but public API.

use std::error::Error;

use ckb_common::{bf16, Gpu, Layout};
use ckb_gemm::verify::GemmSample;
use ckb_gemm::GemmProblem;
use ckb_norm::{verify as norm_verify, Normalizer, RowsProblem};
use ckb_reduce::{verify as reduce_verify, ArgOp, Reducer};

fn main() -> Result<(), Box<dyn Error>> {
    let gpu = Gpu::new(0)?;
    println!("{} SMs", gpu.sm_count());
    let mut all_passed = true;

    // A linear layer x W^T with K = 1000 (no multiple of the 64-deep K tile), alpha and beta.
    let problem =
        GemmProblem::new(2304, 6144, 1000, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor).with_scalars(0.5, 1.0);
    let lens = problem.lens()?;
    let a = gpu.random_normal_on_device::<bf16>(lens.a, 1)?;
    let b = gpu.random_normal_on_device::<bf16>(lens.b, 2)?;
    let mut c = gpu.random_normal_on_device::<f32>(lens.c, 3)?;
    let c_before: Vec<f64> = gpu.download(&c)?.iter().map(|&v| f64::from(v)).collect();
    let plan = ckb_gemm::gemm(&gpu, &problem, &a, &b, &mut c)?;
    let check = GemmSample::new(&gpu, &problem, &a, &b, Some(&c_before), 7)?.check(&gpu, &c)?;
    println!("gemm {problem:?}\n  ran {plan}: {:?}", check.comparison);
    all_passed &= check.comparison.passed;

    // Argmax over a vocabulary-sized axis.
    let shape = [512, 50257];
    let x = gpu.random_normal_on_device::<bf16>(shape.iter().product(), 4)?;
    let (mut values, mut indices) = (gpu.poisoned::<f32>(512)?, gpu.poisoned::<i64>(512)?);
    let plan = Reducer::new(&gpu)?.arg_reduce_axis(ArgOp::ArgMax, &x, &shape, 1, &mut values, &mut indices)?;
    let check = reduce_verify::check_arg_reduce_axis(&gpu, ArgOp::ArgMax, &x, &shape, 1, &values, &indices)?;
    println!("argmax bf16 {shape:?} axis 1\n  ran {}: {check:?}", plan.map_or("nothing".into(), |p| p.to_string()));
    all_passed &= check.summary.passed;

    // LayerNorm over rows of 50257, training form (mean and rstd saved).
    let p = RowsProblem::dense(4096, 50257);
    let x = gpu.random_normal_on_device::<bf16>(p.input_len(), 5)?;
    let gamma = gpu.random_normal_on_device::<bf16>(p.cols, 6)?;
    let beta = gpu.random_normal_on_device::<bf16>(p.cols, 7)?;
    let mut y = gpu.poisoned::<bf16>(p.output_len())?;
    let (mut mean, mut rstd) = (gpu.poisoned::<f32>(p.rows)?, gpu.poisoned::<f32>(p.rows)?);
    let plan = Normalizer::new(&gpu)?.layernorm(&p, &x, &gamma, &beta, 1e-5, &mut y, &mut mean, &mut rstd)?;
    let check = norm_verify::check_layernorm(&gpu, &p, &x, &gamma, &beta, 1e-5, &y, &mean, &rstd, 8)?;
    println!(
        "layernorm bf16 {}x{}\n  ran {}: {:?} over {} rows",
        p.rows,
        p.cols,
        plan.map_or("nothing".into(), |p| p.to_string()),
        check.summary,
        check.rows_checked
    );
    all_passed &= check.summary.passed;

    println!("{}", if all_passed { "all verified" } else { "VERIFICATION FAILED" });
    std::process::exit(i32::from(!all_passed));
}
