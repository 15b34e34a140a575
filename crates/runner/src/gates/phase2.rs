//! Phases 2A and 2B: our GEMM against cuBLAS on the phase-2 shape set, every case correct.

use anyhow::Result;
use ckb_common::baselines::Cublas;

use super::GateContext;
use crate::ops::gemm::{self, GemmCase};
use crate::progress::Progress;
use crate::record::{CaseResult, Check};
use crate::table::GateSpec;

pub fn run(ctx: &GateContext, spec: &GateSpec) -> Result<(Vec<CaseResult>, Vec<Check>)> {
    let cases: Vec<GemmCase> = spec.cases()?;
    let cublas = Cublas::new(&ctx.gpu)?;
    let progress = Progress::new(&spec.name, cases.len() as u64);
    let mut results = Vec::new();
    for case in &cases {
        let row = gemm::measure_case(&ctx.gpu, &cublas, case, None)?;
        progress.step(&format!(
            "{} {:.3}x cuBLAS ({:.0} TFLOP/s, {})",
            row.name,
            row.ratio,
            row.tflops.unwrap_or(0.0),
            row.variant
        ));
        results.push(row);
    }
    progress.finish();
    Ok((results, Vec::new()))
}
