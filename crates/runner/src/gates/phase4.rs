//! Phases 4A and 4B: reductions against CUB in the same run (and column sums against the
//! roofline), every case correct.

use anyhow::Result;
use ckb_common::baselines::cub::Cub;
use ckb_reduce::Reducer;

use super::GateContext;
use crate::ops::reduce::{self, ReduceCase};
use crate::progress::Progress;
use crate::record::{CaseResult, Check};
use crate::table::GateSpec;

pub fn run(ctx: &GateContext, spec: &GateSpec) -> Result<(Vec<CaseResult>, Vec<Check>)> {
    let cases: Vec<ReduceCase> = spec.cases()?;
    let mut reducer = Reducer::new(&ctx.gpu)?;
    let mut cub = Cub::new(&ctx.gpu);
    let progress = Progress::new(&spec.name, cases.len() as u64);
    let mut results = Vec::new();
    for case in &cases {
        let row = reduce::measure_case(&ctx.gpu, &mut reducer, &mut cub, ctx.copy_gbs, case)?;
        progress.step(&format!("{} {:.3}x ({:.0} GB/s)", row.name, row.ratio, row.gbs.unwrap_or(0.0)));
        results.push(row);
    }
    progress.finish();
    Ok((results, Vec::new()))
}
