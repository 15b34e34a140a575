//! `ckb fuzz <family>`: random problems against the CPU reference on the GPU.

use anyhow::Result;

use crate::measure::Context;
use crate::ops::{self, FuzzOptions};

/// Runs the family's fuzzer; returns whether every case passed.
pub fn run(device: usize, family: &str, options: &FuzzOptions) -> Result<bool> {
    let family = ops::find(family)?;
    let ctx = Context { gpu: ckb_common::Gpu::new(device)?, copy_gbs: f64::NAN };
    let report = family.fuzz(&ctx, options)?;
    println!("fuzz {}: {}", report.op, report.summary());
    Ok(report.passed())
}
