//! Running a gate: look it up in the table, measure, write the record, say pass or fail.

mod phase1;
mod phase2;
mod phase4;

use std::path::Path;

use anyhow::Result;
use ckb_common::{copy_bandwidth_gbs, Gpu};

use crate::record::{CaseResult, Check, DeviceInfo, GateRecord};
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
        _ => None,
    }
}

/// Bytes for the copy-bandwidth ceiling: large enough that L2 plays no part.
const COPY_PROBE_BYTES: usize = 1 << 30;

/// Returns whether the gate passed.
pub fn run(device: usize, name: &str, out: &Path) -> Result<bool> {
    let spec = table::find(name)?;
    let Some(gate) = implementation(name).filter(|_| spec.implemented) else {
        eprintln!(
            "gate {name}: the kernels for \"{}\" do not exist yet{}; nothing was measured, no record written",
            spec.operator,
            spec.issue.map(|i| format!(" (issue {i})")).unwrap_or_default()
        );
        return Ok(false);
    };
    if let Some(note) = &spec.note {
        tracing::info!("gate {name}: {note}");
    }
    let gpu = Gpu::new(device)?;
    tracing::info!("gate {name}: {} ({} >= {:.2})", spec.operator, spec.metric, spec.threshold);
    let copy_gbs = copy_bandwidth_gbs(&gpu, COPY_PROBE_BYTES)?;
    tracing::info!("copy bandwidth: {copy_gbs:.0} GB/s");
    let ctx = GateContext { gpu, copy_gbs };
    let (cases, checks) = gate(&ctx, &spec)?;
    let (device_info, _) = DeviceInfo::read(&ctx.gpu)?;
    let record = GateRecord::new(&spec, device_info, copy_gbs, cases, checks);
    let path = record.write(out)?;
    println!("{}", record.markdown());
    println!("record: {}", path.display());
    if record.dirty {
        eprintln!("note: built from a tree with uncommitted changes (dirty=true); gate records for the repo come from `cargo xtask bundle --clean-head`");
    }
    Ok(record.passed)
}
