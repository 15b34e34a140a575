//! `ckb gate`: look the gate up in gates.toml, have its family measure the shape set, run
//! its extra checks, write the record, say pass or fail.

use std::path::Path;

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::measure::Context;
use crate::ops::{self, FuzzOptions, Options};
use crate::record::{self, geomean, CaseResult, Check, DeviceInfo, GateRecord};
use crate::table::{self, GateSpec};

/// A fuzz run a gate requires to pass (`fuzz_checks` in gates.toml).
#[derive(Debug, Deserialize)]
struct FuzzCheck {
    family: String,
    cases: u32,
    seed: u64,
    scope: Option<String>,
    what: String,
}

/// A geomean threshold for the cases of one group (`group_thresholds`).
#[derive(Debug, Deserialize)]
struct GroupThreshold {
    group: String,
    threshold: f64,
}

/// The gate's checks beyond its score: required fuzz runs and per-group thresholds.
fn checks(ctx: &Context, spec: &GateSpec, cases: &[CaseResult]) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    if spec.settings.contains_key("fuzz_checks") {
        for f in spec.setting::<Vec<FuzzCheck>>("fuzz_checks")? {
            let report = ops::find(&f.family)?
                .fuzz(ctx, &FuzzOptions { cases: f.cases, seed: f.seed, scope: f.scope.clone() })?;
            checks.push(Check { name: f.what, passed: report.passed(), detail: report.summary() });
        }
    }
    if spec.settings.contains_key("group_thresholds") {
        for t in spec.setting::<Vec<GroupThreshold>>("group_thresholds")? {
            checks.push(group_check(cases, &t.group, t.threshold));
        }
    }
    Ok(checks)
}

/// Passes when the cases of `group` have a geomean ratio of at least `threshold`.
fn group_check(cases: &[CaseResult], group: &str, threshold: f64) -> Check {
    let mine: Vec<f64> = cases.iter().filter(|c| c.group.as_deref() == Some(group)).map(|c| c.ratio).collect();
    let score = geomean(mine.iter().copied());
    Check {
        name: format!("{group} geomean >= {threshold:.2}"),
        passed: !mine.is_empty() && score >= threshold,
        detail: format!("{score:.3} over {} cases", mine.len()),
    }
}

/// Runs the named gates in one process; returns whether all passed. Gates that share a
/// shape set (2A and 2B, 4A and 4B) are measured once and scored against each threshold.
/// Refuses, before touching the GPU, to write into a `bench-results` folder from a dirty or
/// unknown build, and to run while a `CKB_*` tuning knob is set.
pub fn run(device: usize, names: &[String], out: &Path) -> Result<bool> {
    let (commit, dirty) = record::build_commit();
    record::check_destination(out, &commit, dirty)?;
    record::check_no_tuning_env(std::env::vars_os())?;
    let mut measured: Vec<(String, Vec<CaseResult>, Vec<Check>)> = Vec::new();
    let mut context: Option<Context> = None;
    let mut all_passed = true;
    for name in names {
        let spec = table::find(name)?;
        let family = match (&spec.family, spec.implemented) {
            (Some(family), true) => ops::find(family)?,
            _ => {
                eprintln!(
                    "gate {name}: the kernels for \"{}\" do not exist yet{}; nothing was measured, no record written",
                    spec.operator,
                    spec.issue.map(|i| format!(" (issue {i})")).unwrap_or_default()
                );
                all_passed = false;
                continue;
            }
        };
        if let Some(note) = &spec.note {
            tracing::info!("gate {name}: {note}");
        }
        tracing::info!("gate {name}: {} ({} >= {:.2})", spec.operator, spec.metric, spec.threshold);
        if context.is_none() {
            context = Some(Context::open(device)?);
        }
        let ctx = context.as_ref().expect("set above");
        let key = spec.shape_set_name().to_string();
        let (cases, checks) = match measured.iter().find(|(k, _, _)| *k == key) {
            Some((_, cases, checks)) => {
                tracing::info!("gate {name}: scoring the cases measured for {key} in this run");
                (cases.clone(), checks.clone())
            }
            None => {
                let cases = family.measure_cases(ctx, name, &spec.cases_value()?, &Options::default())?;
                let checks = checks(ctx, &spec, &cases)?;
                measured.push((key, cases.clone(), checks.clone()));
                (cases, checks)
            }
        };
        if cases.is_empty() {
            bail!("gate {name} measured no case");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn case(group: &str, ratio: f64) -> CaseResult {
        CaseResult { group: Some(group.into()), ratio, correct: true, ..CaseResult::default() }
    }

    #[test]
    fn group_thresholds_score_only_their_group() {
        let cases = [case("softmax", 0.9), case("layernorm", 0.5), case("softmax", 0.9)];
        assert!(group_check(&cases, "softmax", 0.85).passed);
        assert!(!group_check(&cases, "layernorm", 0.85).passed);
        assert!(!group_check(&cases, "rmsnorm", 0.1).passed, "a group with no case must fail");
    }

    #[test]
    fn every_implemented_gate_names_a_family_and_parses_its_settings() {
        for spec in table::all().unwrap().into_iter().filter(|g| g.implemented) {
            ops::find(spec.family.as_deref().expect("implemented gates name a family")).unwrap();
            spec.cases_value().unwrap();
            if spec.settings.contains_key("fuzz_checks") {
                spec.setting::<Vec<FuzzCheck>>("fuzz_checks").unwrap();
            }
            if spec.settings.contains_key("group_thresholds") {
                spec.setting::<Vec<GroupThreshold>>("group_thresholds").unwrap();
            }
        }
    }
}
