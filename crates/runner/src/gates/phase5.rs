//! Phase 5 (norms): softmax, LayerNorm and RMSNorm forward against the memory roofline.
//! Each op passes when its own geomean fraction of copy bandwidth reaches its threshold;
//! the score is the geomean over all cases.

use anyhow::Result;
use serde::Deserialize;

use super::GateContext;
use crate::ops::norm::{self, NormCase};
use crate::progress::Progress;
use crate::record::{geomean, CaseResult, Check};
use crate::table::GateSpec;

#[derive(Debug, Deserialize)]
struct OpThreshold {
    op: String,
    threshold: f64,
}

pub fn run(ctx: &GateContext, spec: &GateSpec) -> Result<(Vec<CaseResult>, Vec<Check>)> {
    let cases: Vec<NormCase> = spec.cases()?;
    let per_op: Vec<OpThreshold> = spec.setting("op_thresholds")?;
    let progress = Progress::new(&spec.name, cases.len() as u64);
    let mut results = Vec::new();
    for case in &cases {
        let row = norm::measure_case(&ctx.gpu, ctx.copy_gbs, case)?;
        progress.step(&format!("{} {:.3} of copy ({})", row.name, row.ratio, row.variant));
        results.push(row);
    }
    progress.finish();
    let checks = per_op
        .iter()
        .map(|t| {
            let mine: Vec<f64> =
                cases.iter().zip(&results).filter(|(c, _)| c.op == t.op).map(|(_, r)| r.ratio).collect();
            let score = geomean(mine.iter().copied());
            Check {
                name: format!("{} geomean fraction of copy >= {:.2}", t.op, t.threshold),
                passed: !mine.is_empty() && score >= t.threshold,
                detail: format!("{score:.3} over {} cases", mine.len()),
            }
        })
        .collect();
    Ok((results, checks))
}
