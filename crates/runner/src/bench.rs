//! `ckb info` and `ckb bench <op>`: a table on stdout, the same rows as JSON.

use std::path::PathBuf;

use anyhow::{bail, Result};
use ckb_common::{copy_bandwidth_gbs, Gpu};

use crate::record::{CaseResult, DeviceInfo};

pub fn info(device: usize) -> Result<()> {
    let gpu = Gpu::open(device)?;
    let facts = gpu.facts()?;
    println!("{facts:#?}");
    println!("copy bandwidth (1 GiB, read + write): {:.0} GB/s", copy_bandwidth_gbs(&gpu, 1 << 30)?);
    Ok(())
}

pub fn run(device: usize, op: &str, variant: Option<&str>, only: Option<&str>, json: Option<PathBuf>) -> Result<()> {
    if only.is_some() && op != "norm" {
        bail!("--only filters the norm bench's cases; {op} has no filter");
    }
    let gpu = Gpu::new(device)?;
    let copy_gbs = copy_bandwidth_gbs(&gpu, 1 << 30)?;
    let cases: Vec<CaseResult> = match op {
        "elementwise" => crate::ops::elementwise::bench(&gpu, copy_gbs, variant)?,
        "gemm" => crate::ops::gemm::bench(&gpu, variant)?,
        "reduce" => crate::ops::reduce::bench(&gpu, copy_gbs)?,
        "norm" => crate::ops::norm::bench(&gpu, copy_gbs, variant, only)?,
        other => bail!("no bench for {other}: one of elementwise, gemm, reduce, norm"),
    };
    let (device, _) = DeviceInfo::read(&gpu)?;
    println!("{op} on {} (copy bandwidth {copy_gbs:.0} GB/s)\n", device.name);
    println!("{}", crate::record::cases_table(&cases));
    let path = json.unwrap_or_else(|| PathBuf::from(format!("bench-{op}.json")));
    let doc = serde_json::json!({ "op": op, "device": device, "copy_gbs": copy_gbs, "cases": cases });
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    println!("\nJSON: {}", path.display());
    Ok(())
}
