//! Gate records: bench-results/<device-slug>/<gate>.json, with a Markdown table and an SVG
//! plot beside it. Written only here, from a real GPU run; never by hand.

use std::path::{Path, PathBuf};

use anyhow::Result;
use ckb_common::{DeviceFacts, Gpu};
use serde::Serialize;

use crate::table::GateSpec;

#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub name: String,
    pub driver: String,
    /// SM clock read right after the timed runs (nvidia-smi), else the peak the driver reports.
    pub sm_clock_mhz: i32,
    pub sm_clock_max_mhz: i32,
    pub sm_count: i32,
    pub l2_bytes: i32,
}

impl DeviceInfo {
    pub fn read(gpu: &Gpu) -> Result<(DeviceInfo, DeviceFacts)> {
        let facts = gpu.facts()?;
        let info = DeviceInfo {
            name: facts.name.clone(),
            driver: facts.driver.clone(),
            sm_clock_mhz: current_sm_clock_mhz().unwrap_or(facts.sm_clock_max_mhz),
            sm_clock_max_mhz: facts.sm_clock_max_mhz,
            sm_count: facts.sm_count,
            l2_bytes: facts.l2_bytes,
        };
        Ok((info, facts))
    }

    pub fn slug(&self) -> String {
        let mut slug = String::new();
        for c in self.name.to_lowercase().chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug.trim_matches('-').to_string()
    }
}

/// The SM clock now, from nvidia-smi when it is installed.
pub fn current_sm_clock_mhz() -> Option<i32> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=clocks.sm", "--format=csv,noheader,nounits", "-i", "0"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().lines().next()?.trim().parse().ok()
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CaseResult {
    pub name: String,
    /// The case's group for per-group thresholds (the norm op), if its gate has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kernel variant that ran.
    pub variant: String,
    pub ours_us: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_us: Option<f64>,
    /// What the gate's score is made of for this case (speedup, or fraction of copy bandwidth).
    pub ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_copy: Option<f64>,
    pub correct: bool,
    pub rel_err: f64,
    /// A vendor library's time for the same op where the gate's baseline is a roofline
    /// (cuDNN's softmax beside the copy), reported, not scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_us: Option<f64>,
}

impl CaseResult {
    /// One line for progress output: name, ratio, rate and variant.
    pub fn summary(&self) -> String {
        let rate = match (self.tflops, self.gbs) {
            (Some(t), _) => format!(", {t:.0} TFLOP/s"),
            (None, Some(g)) => format!(", {g:.0} GB/s"),
            _ => String::new(),
        };
        let wrong = if self.correct { "" } else { ", WRONG" };
        format!("{} {:.3}x{rate} ({}){wrong}", self.name, self.ratio, self.variant)
    }
}

/// The per-case Markdown table shared by records and benches.
pub fn cases_table(cases: &[CaseResult]) -> String {
    let vendor = cases.iter().any(|c| c.vendor_us.is_some());
    let mut md = String::from(
        "| case | variant | ours (us) | baseline (us) | ratio | TFLOP/s | GB/s | of copy | correct | rel. error |",
    );
    md += if vendor { " vendor (us) | speedup vs vendor |\n" } else { "\n" };
    md += "|---|---|---:|---:|---:|---:|---:|---:|:---:|---:|";
    md += if vendor { "---:|---:|\n" } else { "\n" };
    let opt = |v: Option<f64>, digits: usize| v.map(|x| format!("{x:.digits$}")).unwrap_or_default();
    for c in cases {
        md += &format!(
            "| {} | {} | {:.1} | {} | {:.3} | {} | {} | {} | {} | {:.1e} |",
            c.name,
            c.variant,
            c.ours_us,
            opt(c.baseline_us, 1),
            c.ratio,
            opt(c.tflops, 1),
            opt(c.gbs, 0),
            opt(c.fraction_of_copy, 3),
            if c.correct { "yes" } else { "**no**" },
            c.rel_err
        );
        if vendor {
            md += &format!(" {} | {} |", opt(c.vendor_us, 1), opt(c.vendor_us.map(|v| v / c.ours_us), 3));
        }
        md += "\n";
    }
    md
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateRecord {
    pub gate: String,
    pub metric: String,
    pub baseline: String,
    pub threshold: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_target: Option<f64>,
    pub score: f64,
    pub passed: bool,
    pub device: DeviceInfo,
    pub commit: String,
    pub dirty: bool,
    pub date: String,
    /// The copy bandwidth measured in this run (GB/s, read + write).
    pub copy_gbs: f64,
    pub cases: Vec<CaseResult>,
    /// Other pass/fail conditions of the gate (e.g. fuzzing).
    pub checks: Vec<Check>,
}

/// The commit the runner was built from (set by xtask at build time).
pub fn build_commit() -> (String, bool) {
    let commit = option_env!("CKB_GIT_COMMIT").unwrap_or("unknown").to_string();
    let dirty = option_env!("CKB_GIT_DIRTY").is_none_or(|d| d != "0");
    (commit, dirty)
}

pub fn geomean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v.max(1e-12).ln(), n + 1));
    if n == 0 {
        0.0
    } else {
        (sum / n as f64).exp()
    }
}

impl GateRecord {
    /// Scores the cases (geomean of ratios) and decides: every case correct, every check
    /// passed, and the score at or above the threshold.
    pub fn new(
        spec: &GateSpec,
        device: DeviceInfo,
        copy_gbs: f64,
        cases: Vec<CaseResult>,
        checks: Vec<Check>,
    ) -> GateRecord {
        let (commit, dirty) = build_commit();
        let score = geomean(cases.iter().map(|c| c.ratio));
        let passed = !cases.is_empty()
            && cases.iter().all(|c| c.correct)
            && checks.iter().all(|c| c.passed)
            && score >= spec.threshold;
        GateRecord {
            gate: spec.name.clone(),
            metric: spec.metric.clone(),
            baseline: spec.baseline.clone(),
            threshold: spec.threshold,
            final_target: spec.final_target,
            score,
            passed,
            device,
            commit,
            dirty,
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            copy_gbs,
            cases,
            checks,
        }
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# Gate {}: {}\n\n{} {:.3} against a threshold of {:.2}{}. Baseline: {}.\n\n",
            self.gate,
            if self.passed { "passed" } else { "FAILED" },
            self.metric,
            self.score,
            self.threshold,
            self.final_target.map(|t| format!(" (final target {t:.2})")).unwrap_or_default(),
            self.baseline
        );
        md += &format!(
            "{} (driver {}, SM clock {} MHz of {} max), copy bandwidth {:.0} GB/s, commit {}{}, {}.\n\n",
            self.device.name,
            self.device.driver,
            self.device.sm_clock_mhz,
            self.device.sm_clock_max_mhz,
            self.copy_gbs,
            &self.commit[..self.commit.len().min(10)],
            if self.dirty { " (dirty)" } else { "" },
            self.date
        );
        md += &cases_table(&self.cases);
        if !self.checks.is_empty() {
            md += "\n| check | passed | detail |\n|---|:---:|---|\n";
            for c in &self.checks {
                md += &format!("| {} | {} | {} |\n", c.name, if c.passed { "yes" } else { "**no**" }, c.detail);
            }
        }
        md
    }

    /// Writes the JSON, Markdown and SVG; returns the JSON's path.
    pub fn write(&self, out: &Path) -> Result<PathBuf> {
        let dir = out.join(self.device.slug());
        std::fs::create_dir_all(&dir)?;
        let json = dir.join(format!("{}.json", self.gate));
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")?;
        std::fs::write(dir.join(format!("{}.md", self.gate)), self.markdown())?;
        let bars: Vec<(String, f64)> = self.cases.iter().map(|c| (c.name.clone(), c.ratio)).collect();
        let title = format!(
            "{} on {}: {} = {:.3} (threshold {:.2})",
            self.gate, self.device.name, self.metric, self.score, self.threshold
        );
        std::fs::write(dir.join(format!("{}.svg", self.gate)), crate::plot::bar_chart(&title, &bars, self.threshold))?;
        Ok(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geomean_of_ratios() {
        assert!((geomean([1.0, 4.0]) - 2.0).abs() < 1e-12);
        assert_eq!(geomean(Vec::<f64>::new()), 0.0);
    }

    #[test]
    fn device_slug() {
        let d = DeviceInfo {
            name: "NVIDIA H100 80GB HBM3".into(),
            driver: String::new(),
            sm_clock_mhz: 0,
            sm_clock_max_mhz: 0,
            sm_count: 0,
            l2_bytes: 0,
        };
        assert_eq!(d.slug(), "nvidia-h100-80gb-hbm3");
    }
}
