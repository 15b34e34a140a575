//! Phase 1: CuTe element-wise add at the bandwidth limit, and the first CuTe GEMM correct
//! on fuzzed shapes.

use anyhow::Result;
use ckb_common::bf16;
use ckb_reduce::elementwise::{BinaryOp, EwVariant};
use serde::Deserialize;

use super::GateContext;
use crate::ops::{elementwise, gemm};
use crate::progress::Progress;
use crate::record::{CaseResult, Check};
use crate::table::GateSpec;

#[derive(Debug, Deserialize)]
struct AddCase {
    dtype: String,
    n: usize,
}

pub fn run(ctx: &GateContext, spec: &GateSpec) -> Result<(Vec<CaseResult>, Vec<Check>)> {
    let cases: Vec<AddCase> = spec.setting("cases")?;
    let progress = Progress::new("phase1 add", cases.len() as u64);
    let mut results = Vec::new();
    for case in &cases {
        let variant = EwVariant::default();
        let result = match case.dtype.as_str() {
            "f32" => elementwise::measure_binary::<f32>(&ctx.gpu, ctx.copy_gbs, BinaryOp::Add, case.n, variant)?,
            "bf16" => elementwise::measure_binary::<bf16>(&ctx.gpu, ctx.copy_gbs, BinaryOp::Add, case.n, variant)?,
            other => anyhow::bail!("phase1: unsupported dtype {other}"),
        };
        progress.step(&format!("{} {:.3} of copy", result.name, result.ratio));
        results.push(result);
    }
    progress.finish();

    let fuzz_cases: u32 = spec.setting("gemm_fuzz_cases")?;
    let fuzz = gemm::fuzz(&ctx.gpu, fuzz_cases, 0x9E11, gemm::FuzzScope::SimpleKernel)?;
    let checks = vec![Check {
        name: format!("first CuTe GEMM on {fuzz_cases} fuzzed shapes"),
        passed: fuzz.passed(),
        detail: fuzz.summary(),
    }];
    Ok((results, checks))
}
