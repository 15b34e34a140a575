//! `ckb info` and `ckb bench <family>`: a table on stdout, the same rows as JSON.

use std::path::PathBuf;

use anyhow::Result;
use ckb_common::{copy_bandwidth_gbs, Gpu};

use crate::cli::OutputArgs;
use crate::measure::Context;
use crate::ops::{self, Options};
use crate::record::DeviceInfo;

/// `ckb info`: the device facts and the measured copy bandwidth.
pub fn info(device: usize) -> Result<()> {
    let gpu = Gpu::open(device)?;
    let facts = gpu.facts()?;
    println!("{facts:#?}");
    println!("copy bandwidth (1 GiB, read + write): {:.0} GB/s", copy_bandwidth_gbs(&gpu, 1 << 30)?);
    Ok(())
}

/// `ckb bench`: the family's bench set, written as a table and as JSON (`json`, default
/// `bench-<family>.json`).
pub fn run(device: usize, family: &str, options: &Options, json: Option<PathBuf>) -> Result<()> {
    let family = ops::find(family)?;
    let ctx = Context::open(device)?;
    let cases = family.bench(&ctx, options)?;
    let (device, _) = DeviceInfo::read(&ctx.gpu)?;
    let title = format!("{} on {} (copy bandwidth {:.0} GB/s)", family.name(), device.name, ctx.copy_gbs);
    let json = json.unwrap_or_else(|| PathBuf::from(format!("bench-{}.json", family.name())));
    let extra = serde_json::json!({ "op": family.name(), "device": device, "copy_gbs": ctx.copy_gbs });
    crate::output::emit(&title, &cases, extra, &OutputArgs { csv: false, json: Some(json) })
}
