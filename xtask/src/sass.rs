//! `cargo xtask sass [crate]`: per kernel, registers, static shared memory, stack, spills
//! (from ptxas's report) and the count of HGMMA/QGMMA/LDL/STL instructions in its SASS.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use ckb_cuda_build::parse_ptxas_report;

use crate::cargo::cargo;

const CRATES: &[&str] = &["common", "baselines-cuda", "gemm", "conv", "reduce", "norm"];
const COUNTED: &[&str] = &["HGMMA", "QGMMA", "LDL", "STL"];

#[derive(Default)]
struct KernelRow {
    registers: u32,
    shared: u32,
    stack: u32,
    spill: u32,
    counts: [usize; 4],
}

pub fn run(krate: Option<&str>) -> Result<()> {
    let toolchain = crate::setup::run(false)?;
    let cuobjdump = toolchain.cuobjdump();
    let crates: Vec<&str> = match krate {
        Some(k) if CRATES.contains(&k) => vec![k],
        Some(k) => bail!("unknown crate {k}: one of {}", CRATES.join(", ")),
        None => CRATES.to_vec(),
    };
    println!(
        "{:<8} {:<64} {:>5} {:>7} {:>6} {:>6} {:>6} {:>6} {:>5} {:>5}",
        "crate", "kernel", "regs", "smem_B", "stack", "spill", "HGMMA", "QGMMA", "LDL", "STL"
    );
    for krate in crates {
        for object in kernel_objects(krate)? {
            let rows = inspect(&cuobjdump, &object)?;
            for (name, r) in rows {
                println!(
                    "{:<8} {:<64} {:>5} {:>7} {:>6} {:>6} {:>6} {:>6} {:>5} {:>5}",
                    krate,
                    shorten(&name, 64),
                    r.registers,
                    r.shared,
                    r.stack,
                    r.spill,
                    r.counts[0],
                    r.counts[1],
                    r.counts[2],
                    r.counts[3]
                );
            }
        }
    }
    Ok(())
}

/// Builds the crate and lists its kernel objects. Kernels compile with the same nvcc flags
/// in every cargo profile, so the dev build (shared with `cargo xtask test`) is used.
fn kernel_objects(krate: &str) -> Result<Vec<PathBuf>> {
    let package = format!("ckb-{krate}");
    let output = cargo()
        .args(["build", "--package", &package, "--message-format=json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cargo build")?;
    if !output.status.success() {
        bail!("building {package} failed");
    }
    let mut objects = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let is_ours = msg["package_id"].as_str().is_some_and(|id| {
            id.contains(&format!("/{krate}#"))
                || id.contains(&format!("{package}@"))
                || id.contains(&format!("{package} "))
        });
        if msg["reason"] != "build-script-executed" || !is_ours {
            continue;
        }
        let obj_dir = PathBuf::from(msg["out_dir"].as_str().unwrap_or_default()).join("obj");
        for entry in std::fs::read_dir(&obj_dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "o") {
                objects.push(entry.path());
            }
        }
    }
    objects.sort();
    Ok(objects)
}

fn inspect(cuobjdump: &PathBuf, object: &PathBuf) -> Result<BTreeMap<String, KernelRow>> {
    let mut rows: BTreeMap<String, KernelRow> = BTreeMap::new();
    let res = Command::new(cuobjdump).arg("-res-usage").arg(object).output().context("running cuobjdump")?;
    let res = String::from_utf8_lossy(&res.stdout);
    let mut current = None;
    for line in res.lines() {
        if let Some(name) = line.trim().strip_prefix("Function ") {
            current = Some(name.trim_end_matches(':').to_string());
        } else if let (Some(name), true) = (&current, line.contains("REG:")) {
            let field = |key: &str| -> u32 {
                line.split_whitespace().find_map(|f| f.strip_prefix(key)).and_then(|v| v.parse().ok()).unwrap_or(0)
            };
            let row = rows.entry(demangle(name)).or_default();
            row.registers = field("REG:");
            row.shared = field("SHARED:");
            row.stack = field("STACK:");
        }
    }
    let sass = Command::new(cuobjdump).arg("-sass").arg(object).output().context("running cuobjdump")?;
    if !sass.status.success() {
        bail!("cuobjdump -sass {} failed: {}", object.display(), String::from_utf8_lossy(&sass.stderr).trim());
    }
    let mut current = None;
    for line in String::from_utf8_lossy(&sass.stdout).lines() {
        if let Some(name) = line.trim().strip_prefix("Function : ") {
            current = Some(demangle(name.trim()));
        } else if let Some(name) = &current {
            let row = rows.entry(name.clone()).or_default();
            for (i, op) in COUNTED.iter().enumerate() {
                // Opcodes follow the `/*addr*/` column, e.g. "HGMMA.64x128x16.F32.BF16".
                if line.split_whitespace().any(|w| w == *op || w.starts_with(&format!("{op}."))) {
                    row.counts[i] += 1;
                }
            }
        }
    }
    let report = std::fs::read_to_string(object.with_extension("ptxas.txt")).unwrap_or_default();
    for k in parse_ptxas_report(&report) {
        if let Some(row) = rows.get_mut(&demangle(&k.function)) {
            row.spill = k.spill_store_bytes + k.spill_load_bytes;
        }
    }
    Ok(rows)
}

fn demangle(name: &str) -> String {
    cpp_demangle::Symbol::new(name)
        .ok()
        .and_then(|s| s.demangle(&cpp_demangle::DemangleOptions::new().no_params()).ok())
        .unwrap_or_else(|| name.to_string())
}

fn shorten(name: &str, width: usize) -> String {
    // Template arguments make names long; keep the head, which names the kernel.
    if name.chars().count() <= width {
        name.to_string()
    } else {
        format!("{}…", name.chars().take(width - 1).collect::<String>())
    }
}
