//! Gate records: `bench-results/<device-slug>/<gate>.json`, with a Markdown table and an SVG
//! plot beside it. Written only here, from a real GPU run; never by hand.
//!
//! A record says what made it: the commit and whether the tree was clean, the toolchain the
//! kernels were built with, the vendor libraries loaded, the card (by PCI address), its clock
//! and power draw after the timed runs, and the fingerprint of the gate spec it was judged by.
//! A gate writes into a `bench-results` folder only from a clean build of a known commit, and
//! runs only while no `CKB_*` tuning knob is set ([`check_destination`], [`check_no_tuning_env`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;
use ckb_common::baselines::{library_versions, LibraryVersions};
use ckb_common::{DeviceFacts, Gpu};
pub use ckb_gates::geomean;
use ckb_gates::{CaseScore, CheckOutcome, LowestCase};
use serde::Serialize;

use crate::table::GateSpec;

/// The card a run measured on, read right after its timed runs.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub name: String,
    pub driver: String,
    /// SM clock read right after the timed runs (nvidia-smi, asked for this card by its PCI
    /// address), else the peak the driver reports.
    pub sm_clock_mhz: i32,
    pub sm_clock_max_mhz: i32,
    pub sm_count: i32,
    pub l2_bytes: i32,
    /// The card's PCI address (`00000000:19:00.0`), from CUDA's device attributes: nvidia-smi
    /// is asked about this address, so CUDA's and nvidia-smi's numbering cannot mix cards up.
    pub pci_bus_id: String,
    /// Board power draw right after the timed runs, W (nvidia-smi `power.draw`); null when
    /// nvidia-smi is absent or cannot say.
    pub power_draw_w: Option<f64>,
    /// The board's power limit, W (nvidia-smi `power.limit`); null when unknown.
    pub power_limit_w: Option<f64>,
}

impl DeviceInfo {
    /// The card's facts, plus its clock and power now (nvidia-smi, by PCI address).
    pub fn read(gpu: &Gpu) -> Result<(DeviceInfo, DeviceFacts)> {
        let facts = gpu.facts()?;
        let power = nvidia_smi(&facts.pci_bus_id, "power.draw,power.limit");
        let info = DeviceInfo {
            name: facts.name.clone(),
            driver: facts.driver.clone(),
            sm_clock_mhz: current_sm_clock_mhz(&facts.pci_bus_id).unwrap_or(facts.sm_clock_max_mhz),
            sm_clock_max_mhz: facts.sm_clock_max_mhz,
            sm_count: facts.sm_count,
            l2_bytes: facts.l2_bytes,
            pci_bus_id: facts.pci_bus_id.clone(),
            power_draw_w: power.first().copied().flatten(),
            power_limit_w: power.get(1).copied().flatten(),
        };
        Ok((info, facts))
    }

    /// The record folder's name: the card's name in lower case, words joined by `-`.
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

/// The SM clock now of the card at `pci_bus_id`, from nvidia-smi when it is installed.
pub fn current_sm_clock_mhz(pci_bus_id: &str) -> Option<i32> {
    nvidia_smi(pci_bus_id, "clocks.sm").first().copied().flatten().map(|mhz| mhz.round() as i32)
}

/// nvidia-smi's values of `fields` (comma-separated) for the card at `pci_bus_id`; empty when
/// nvidia-smi is absent or fails (an unknown field fails the whole query, so callers ask for
/// fields that may be unsupported apart from the others).
fn nvidia_smi(pci_bus_id: &str, fields: &str) -> Vec<Option<f64>> {
    let Ok(out) = std::process::Command::new("nvidia-smi")
        .args([&format!("--query-gpu={fields}"), "--format=csv,noheader,nounits", "-i", pci_bus_id])
        .output()
    else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout).lines().next().map(smi_values).unwrap_or_default()
}

/// One line of `--format=csv,noheader,nounits`: a number per field, `None` where nvidia-smi
/// writes `[N/A]`, `[Not Supported]` or anything else that is not a number.
pub fn smi_values(line: &str) -> Vec<Option<f64>> {
    line.split(',').map(|v| v.trim().parse::<f64>().ok().filter(|v| v.is_finite())).collect()
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

/// One of a gate's other pass/fail conditions (fuzzing, per-op thresholds).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// The toolchain the runner's kernels were built with (embedded by build.rs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolchainInfo {
    /// nvcc's version (`13.0.88`).
    pub nvcc: String,
    /// CCCL's version (`3.0.1`).
    pub cccl: String,
    /// CUTLASS's version (`4.2.0`).
    pub cutlass: String,
    /// `pinned` (`cargo xtask setup`) or `user` (`NVCC`/`CUDA_HOME`/`CUTLASS_DIR`).
    pub source: String,
}

impl ToolchainInfo {
    /// The toolchain this binary was built with.
    pub fn of_this_build() -> ToolchainInfo {
        ToolchainInfo {
            nvcc: env!("CKB_BUILD_NVCC").into(),
            cccl: env!("CKB_BUILD_CCCL").into(),
            cutlass: env!("CKB_BUILD_CUTLASS").into(),
            source: env!("CKB_BUILD_TOOLCHAIN_SOURCE").into(),
        }
    }
}

/// What made a record, beyond the card: the build and the libraries loaded.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// The commit the runner was built from, or `unknown`.
    pub commit: String,
    /// Whether the tree it was built from differed from the commit.
    pub dirty: bool,
    /// The toolchain the kernels were built with.
    pub toolchain: ToolchainInfo,
    /// The vendor library versions this process loaded.
    pub libraries: LibraryVersions,
}

impl Provenance {
    /// This binary's build, and the libraries this process loads now.
    pub fn of_this_run() -> Provenance {
        let (commit, dirty) = build_commit();
        Provenance { commit, dirty, toolchain: ToolchainInfo::of_this_build(), libraries: library_versions() }
    }
}

/// A gate's result on one card: its cases, checks and verdict, and what made it.
#[derive(Debug, Clone, Serialize)]
pub struct GateRecord {
    pub gate: String,
    pub metric: String,
    pub baseline: String,
    pub threshold: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_target: Option<f64>,
    /// No case may be below this ratio (gates.toml's `floor`); absent when the gate has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    pub score: f64,
    /// The case with the lowest ratio, beside the geomean; absent when no case ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lowest: Option<LowestCase>,
    pub passed: bool,
    /// Why the gate failed, one line per reason; empty when it passed.
    pub failures: Vec<String>,
    /// The fingerprint of the gate's spec this record was judged by ([`GateSpec::fingerprint`]);
    /// `cargo xtask roadmap` shows the record as stale once gates.toml's differs.
    pub spec_fingerprint: String,
    pub device: DeviceInfo,
    #[serde(flatten)]
    pub provenance: Provenance,
    pub date: String,
    /// The copy bandwidth measured in this run (GB/s, read + write).
    pub copy_gbs: f64,
    pub cases: Vec<CaseResult>,
    /// Other pass/fail conditions of the gate (e.g. fuzzing).
    pub checks: Vec<Check>,
}

/// The commit the runner was built from (set by xtask at build time) and whether the tree
/// was dirty; a build outside xtask is `unknown` and dirty.
pub fn build_commit() -> (String, bool) {
    let commit = option_env!("CKB_GIT_COMMIT").unwrap_or("unknown").to_string();
    let dirty = option_env!("CKB_GIT_DIRTY").is_none_or(|d| d != "0");
    (commit, dirty)
}

/// Why a gate will not run.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A dirty build may not write where committed records live.
    #[error(
        "refusing to write gate records into {}: this runner was built from a tree with uncommitted changes \
         (untracked files under kernels/ count: the build compiles them), so no commit holds the code it would \
         measure. Commit and rebuild, build the bundle with `cargo xtask bundle --clean-head`, or send the records \
         elsewhere with --out DIR",
        out.display()
    )]
    DirtyBuild {
        /// The destination asked for.
        out: PathBuf,
    },
    /// A build that does not know its commit may not write where committed records live.
    #[error(
        "refusing to write gate records into {}: this runner does not know the commit it was built from (it was \
         built outside `cargo xtask`, or not from a git checkout). Build it with `cargo xtask gate` or \
         `cargo xtask bundle --clean-head`, or send the records elsewhere with --out DIR",
        out.display()
    )]
    UnknownCommit {
        /// The destination asked for.
        out: PathBuf,
    },
    /// Tuning knobs change what runs; a gate measures the defaults.
    #[error(
        "refusing to run a gate while tuning variables are set: {}. They change which kernels and shapes run, \
         so a record would not measure the committed defaults; unset them (bench and profile runs may use them)",
        vars.join(", ")
    )]
    TuningEnv {
        /// `NAME=value` of each.
        vars: Vec<String>,
    },
}

/// Where committed records live: any folder named `bench-results` on the path.
pub fn is_results_folder(out: &Path) -> bool {
    out.components().any(|c| c.as_os_str() == "bench-results")
}

/// The rule for where records may go: into a path with a folder named `bench-results` only
/// from a clean build of a known commit; anywhere else from any build (the record says
/// `dirty`).
pub fn check_destination(out: &Path, commit: &str, dirty: bool) -> Result<(), Refusal> {
    if !is_results_folder(out) {
        Ok(())
    } else if commit == "unknown" {
        Err(Refusal::UnknownCommit { out: out.to_path_buf() })
    } else if dirty {
        Err(Refusal::DirtyBuild { out: out.to_path_buf() })
    } else {
        Ok(())
    }
}

/// Fails when any variable of `vars` (the environment) is named `CKB_*`: every such variable
/// the project reads at run time is a tuning knob (`CKB_NORM_THREADS`, `CKB_NORM_STAGES`, ...).
pub fn check_no_tuning_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<(), Refusal> {
    let mut set: Vec<String> = vars
        .into_iter()
        .filter(|(name, _)| name.to_string_lossy().starts_with("CKB_"))
        .map(|(name, value)| format!("{}={}", name.to_string_lossy(), value.to_string_lossy()))
        .collect();
    set.sort();
    if set.is_empty() {
        Ok(())
    } else {
        Err(Refusal::TuningEnv { vars: set })
    }
}

impl GateRecord {
    /// Scores and judges the cases by the gate's pass rule ([`GateSpec::judge`]), with this
    /// build's and this process's provenance.
    pub fn new(
        spec: &GateSpec,
        device: DeviceInfo,
        copy_gbs: f64,
        cases: Vec<CaseResult>,
        checks: Vec<Check>,
    ) -> GateRecord {
        GateRecord::with_provenance(spec, device, Provenance::of_this_run(), copy_gbs, cases, checks)
    }

    /// [`GateRecord::new`] with the provenance given.
    pub fn with_provenance(
        spec: &GateSpec,
        device: DeviceInfo,
        provenance: Provenance,
        copy_gbs: f64,
        cases: Vec<CaseResult>,
        checks: Vec<Check>,
    ) -> GateRecord {
        let scores: Vec<CaseScore<'_>> =
            cases.iter().map(|c| CaseScore { name: &c.name, ratio: c.ratio, correct: c.correct }).collect();
        let outcomes: Vec<CheckOutcome<'_>> =
            checks.iter().map(|c| CheckOutcome { name: &c.name, passed: c.passed }).collect();
        let verdict = spec.judge(&scores, &outcomes);
        GateRecord {
            gate: spec.name.clone(),
            metric: spec.metric.clone(),
            baseline: spec.baseline.clone(),
            threshold: spec.threshold,
            final_target: spec.final_target,
            floor: spec.floor,
            score: verdict.score,
            lowest: verdict.lowest,
            passed: verdict.passed,
            failures: verdict.failures,
            spec_fingerprint: spec.fingerprint(),
            device,
            provenance,
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            copy_gbs,
            cases,
            checks,
        }
    }

    /// The record as Markdown: verdict, lowest case, why it failed, what made it, the cases.
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
        if let Some(lowest) = &self.lowest {
            md += &format!(
                "Lowest case: {} at {:.3} ({}).\n\n",
                lowest.name,
                lowest.ratio,
                self.floor.map(|f| format!("floor {f:.2}")).unwrap_or_else(|| "no floor".into())
            );
        }
        if !self.failures.is_empty() {
            md += "Failed because:\n";
            for failure in &self.failures {
                md += &format!("- {failure}\n");
            }
            md += "\n";
        }
        let d = &self.device;
        let watts = |w: Option<f64>| w.map(|w| format!("{w:.0} W")).unwrap_or_else(|| "unknown".into());
        md += &format!(
            "{} at {} (driver {}, SM clock {} MHz of {} max, board power {} of {} limit), copy bandwidth {:.0} GB/s, {}.\n\n",
            d.name,
            d.pci_bus_id,
            d.driver,
            d.sm_clock_mhz,
            d.sm_clock_max_mhz,
            watts(d.power_draw_w),
            watts(d.power_limit_w),
            self.copy_gbs,
            self.date
        );
        let p = &self.provenance;
        let t = &p.toolchain;
        let l = &p.libraries;
        md += &format!(
            "Commit {}{}, built with nvcc {}, CCCL {}, CUTLASS {} ({}); loaded cuBLAS {}, cuBLASLt {}, cuDNN {}. Gate spec {}.\n\n",
            &p.commit[..p.commit.len().min(10)],
            if p.dirty { " (dirty)" } else { "" },
            t.nvcc,
            t.cccl,
            t.cutlass,
            t.source,
            l.cublas,
            l.cublaslt,
            l.cudnn,
            &self.spec_fingerprint[..self.spec_fingerprint.len().min(19)]
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
    use ckb_common::baselines::LibraryVersion;

    use super::*;

    fn device() -> DeviceInfo {
        DeviceInfo {
            name: "NVIDIA H100 80GB HBM3".into(),
            driver: "580.159.04".into(),
            sm_clock_mhz: 1755,
            sm_clock_max_mhz: 1980,
            sm_count: 132,
            l2_bytes: 52428800,
            pci_bus_id: "00000000:19:00.0".into(),
            power_draw_w: Some(612.4),
            power_limit_w: None,
        }
    }

    fn provenance() -> Provenance {
        Provenance {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            dirty: false,
            toolchain: ToolchainInfo {
                nvcc: "13.0.88".into(),
                cccl: "3.0.1".into(),
                cutlass: "4.2.0".into(),
                source: "pinned".into(),
            },
            libraries: LibraryVersions {
                cublas: LibraryVersion::Loaded("13.1.0".into()),
                cublaslt: LibraryVersion::Loaded("13.1.0".into()),
                cudnn: LibraryVersion::Missing("libcudnn.so could not be loaded".into()),
            },
        }
    }

    fn case(name: &str, ratio: f64) -> CaseResult {
        CaseResult { name: name.into(), ratio, correct: true, ..CaseResult::default() }
    }

    fn spec(extra: &str) -> GateSpec {
        let table = format!(
            "[[gate]]\nname = \"g\"\noperator = \"o\"\nbaseline = \"b\"\nmetric = \"m\"\nthreshold = 0.8\n\
             implemented = true\n{extra}\ncases = []\n"
        );
        ckb_gates::GateTable::parse(&table).unwrap().find("g").unwrap().clone()
    }

    #[test]
    fn device_slug() {
        assert_eq!(device().slug(), "nvidia-h100-80gb-hbm3");
    }

    #[test]
    fn nvidia_smi_values() {
        assert_eq!(smi_values("1980"), vec![Some(1980.0)]);
        assert_eq!(smi_values("612.40, 700.00"), vec![Some(612.4), Some(700.0)]);
        assert_eq!(smi_values("[N/A], 700.00"), vec![None, Some(700.0)]);
        assert_eq!(smi_values("[Not Supported]"), vec![None]);
    }

    #[test]
    fn the_record_is_judged_by_the_pass_rule_and_shows_its_lowest_case() {
        let cases = vec![case("big", 3.0), case("cliff", 0.2), case("mid", 2.0)];
        let passing = GateRecord::with_provenance(&spec(""), device(), provenance(), 3000.0, cases.clone(), vec![]);
        assert!(passing.passed, "{:?}", passing.failures);
        let failing = GateRecord::with_provenance(&spec("floor = 0.5"), device(), provenance(), 3000.0, cases, vec![]);
        assert!(!failing.passed);
        assert_eq!(failing.failures, vec!["case cliff is below the floor: 0.200 < 0.50".to_string()]);
        assert_ne!(passing.spec_fingerprint, failing.spec_fingerprint);
        let md = failing.markdown();
        assert!(md.contains("# Gate g: FAILED"), "{md}");
        assert!(md.contains("Lowest case: cliff at 0.200 (floor 0.50)."), "{md}");
        assert!(md.contains("- case cliff is below the floor"), "{md}");
        assert!(md.contains("board power 612 W of unknown limit"), "{md}");
        assert!(md.contains("nvcc 13.0.88, CCCL 3.0.1, CUTLASS 4.2.0 (pinned)"), "{md}");
        assert!(md.contains("cuBLAS 13.1.0, cuBLASLt 13.1.0, cuDNN missing"), "{md}");
        assert!(passing.markdown().contains("Lowest case: cliff at 0.200 (no floor)."));
        // An empty run fails, and says so.
        let empty = GateRecord::with_provenance(&spec(""), device(), provenance(), 3000.0, vec![], vec![]);
        assert!(!empty.passed && empty.lowest.is_none());
    }

    #[test]
    fn record_json_carries_provenance_at_the_top_level() {
        let record =
            GateRecord::with_provenance(&spec(""), device(), provenance(), 3000.0, vec![case("a", 1.0)], vec![]);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["commit"], "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(json["dirty"], false);
        assert_eq!(json["toolchain"]["cutlass"], "4.2.0");
        assert_eq!(json["libraries"]["cublas"]["loaded"], "13.1.0");
        assert_eq!(json["libraries"]["cudnn"]["missing"], "libcudnn.so could not be loaded");
        assert_eq!(json["device"]["pci_bus_id"], "00000000:19:00.0");
        assert_eq!(json["device"]["power_limit_w"], serde_json::Value::Null);
        assert_eq!(json["lowest"]["name"], "a");
        assert_eq!(json["spec_fingerprint"], spec("").fingerprint());
        assert!(json.get("floor").is_none());
        assert_eq!(json["failures"], serde_json::json!([]));
    }

    #[test]
    fn only_clean_builds_of_known_commits_write_into_bench_results() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for out in ["bench-results", "/work/main/bench-results", "./bench-results/nvidia-h200"] {
            let out = Path::new(out);
            assert!(check_destination(out, sha, false).is_ok());
            let err = check_destination(out, sha, true).unwrap_err();
            assert!(matches!(err, Refusal::DirtyBuild { .. }));
            assert!(err.to_string().contains("uncommitted changes") && err.to_string().contains("--out"), "{err}");
            let err = check_destination(out, "unknown", true).unwrap_err();
            assert!(matches!(err, Refusal::UnknownCommit { .. }), "{err}");
        }
        // Elsewhere, any build may write (its record says dirty).
        for out in ["/tmp/x", "bench-results-dev", "/tmp/my-bench-results"] {
            assert!(check_destination(Path::new(out), "unknown", true).is_ok(), "{out}");
        }
    }

    #[test]
    fn tuning_variables_stop_a_gate_and_are_listed() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
            pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
        };
        assert!(check_no_tuning_env(env(&[("PATH", "/usr/bin"), ("RUST_LOG", "debug"), ("XCKB_A", "1")])).is_ok());
        let err = check_no_tuning_env(env(&[("CKB_NORM_THREADS", "256"), ("HOME", "/root"), ("CKB_NORM_STAGES", "3")]))
            .unwrap_err();
        match &err {
            Refusal::TuningEnv { vars } => assert_eq!(vars, &["CKB_NORM_STAGES=3", "CKB_NORM_THREADS=256"]),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("CKB_NORM_STAGES=3, CKB_NORM_THREADS=256"), "{err}");
    }
}
