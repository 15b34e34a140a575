//! Running a gate: look it up in the table, measure, write the record, say pass or fail.

mod phase1;
mod phase2;
mod phase4;
mod phase5;

use std::path::Path;

use anyhow::Result;
use ckb_common::{copy_bandwidth_gbs, Gpu};

use crate::record::{self, CaseResult, Check, DeviceInfo, GateRecord};
use crate::table::{self, GateSpec};

/// What every gate measures with.
pub struct GateContext {
    pub gpu: Gpu,
    /// Copy bandwidth measured at the start of this run, GB/s (read + write).
    pub copy_gbs: f64,
}

type GateFn = fn(&GateContext, &GateSpec) -> Result<(Vec<CaseResult>, Vec<Check>)>;

/// The implemented gates. A gate in gates.toml but not here fails with a note.
fn implementation(name: &str) -> Option<GateFn> {
    match name {
        "phase1" => Some(phase1::run),
        "phase2a" | "phase2b" => Some(phase2::run),
        "phase4a" | "phase4b" => Some(phase4::run),
        "phase5-norm" => Some(phase5::run),
        _ => None,
    }
}

/// Bytes for the copy-bandwidth ceiling: large enough that L2 plays no part.
const COPY_PROBE_BYTES: usize = 1 << 30;

/// Runs the named gates in one process; returns whether all passed. Gates that share a
/// shape set and an implementation (2A and 2B, 4A and 4B) are measured once and scored
/// against each threshold. Refuses, before touching the GPU, to write into a `bench-results`
/// folder from a dirty or unknown build, and to run while a `CKB_*` tuning knob is set.
pub fn run(device: usize, names: &[String], out: &Path) -> Result<bool> {
    let (commit, dirty) = record::build_commit();
    record::check_destination(out, &commit, dirty)?;
    record::check_no_tuning_env(std::env::vars_os())?;
    let mut measured: Vec<((usize, String), (Vec<CaseResult>, Vec<Check>))> = Vec::new();
    let mut context: Option<GateContext> = None;
    let mut all_passed = true;
    for name in names {
        let spec = table::find(name)?;
        let Some(gate) = implementation(name).filter(|_| spec.implemented) else {
            eprintln!(
                "gate {name}: the kernels for \"{}\" do not exist yet{}; nothing was measured, no record written",
                spec.operator,
                spec.issue.map(|i| format!(" (issue {i})")).unwrap_or_default()
            );
            all_passed = false;
            continue;
        };
        if let Some(note) = &spec.note {
            tracing::info!("gate {name}: {note}");
        }
        tracing::info!("gate {name}: {} ({} >= {:.2})", spec.operator, spec.metric, spec.threshold);
        if context.is_none() {
            let gpu = Gpu::new(device)?;
            let copy_gbs = copy_bandwidth_gbs(&gpu, COPY_PROBE_BYTES)?;
            tracing::info!("copy bandwidth: {copy_gbs:.0} GB/s");
            context = Some(GateContext { gpu, copy_gbs });
        }
        let ctx = context.as_ref().expect("set above");
        let key = (gate as usize, spec.settings.get("cases_from").and_then(|v| v.as_str()).unwrap_or(name).to_string());
        let (cases, checks) = match measured.iter().find(|(k, _)| *k == key) {
            Some((_, results)) => {
                tracing::info!("gate {name}: scoring the cases measured for {} in this run", key.1);
                results.clone()
            }
            None => {
                let results = gate(ctx, &spec)?;
                measured.push((key, results.clone()));
                results
            }
        };
        let (device_info, _) = DeviceInfo::read(&ctx.gpu)?;
        let record = GateRecord::new(&spec, device_info, ctx.copy_gbs, cases, checks);
        let path = record.write(out)?;
        println!("{}", record.markdown());
        println!("record: {}", path.display());
        if dirty {
            eprintln!("note: built from a tree with uncommitted changes (dirty=true); gate records for the repo come from `cargo xtask bundle --clean-head`");
        }
        all_passed &= record.passed;
    }
    Ok(all_passed)
}
