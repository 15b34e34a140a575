//! The operator registry: each family is listed once, with how it measures its gate
//! cases, benches, fuzzes and profiles. `bench`, `fuzz`, `gate` and `profile` look families
//! up here, so a new family is one new file in this folder, one line in [`FAMILIES`], and
//! its gates.toml entries (`family = "<name>"`).
//!
//! Families use the shared layers below them (`measure`, `fuzzing`, `record`, `sweep`,
//! `progress`, `table`) and never import one another.

pub mod elementwise;
pub mod gemm;
pub mod norm;
pub mod reduce;

use anyhow::{anyhow, Result};

use crate::fuzzing::FuzzReport;
use crate::measure::Context;
use crate::record::CaseResult;

/// How a bench or gate run picks kernels and cases.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A variant from the family's table, `all` (every variant that holds each case), or
    /// None for the heuristic's choice.
    pub variant: Option<String>,
    /// Only the cases whose name contains this text.
    pub only: Option<String>,
}

/// How a fuzz run draws.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    pub cases: u32,
    pub seed: u64,
    /// A family-defined subset of its kernels (gemm: `universal`), or None for all.
    pub scope: Option<String>,
}

/// One operator family of the runner.
pub trait Family: Sync {
    /// The name commands and gates.toml use (`gemm`).
    fn name(&self) -> &'static str;
    /// One line for `--help` listings.
    fn about(&self) -> &'static str;
    /// Measures a gate's shape set, `cases` as gates.toml spells them for this family.
    fn measure_cases(
        &self,
        ctx: &Context,
        label: &str,
        cases: &toml::Value,
        options: &Options,
    ) -> Result<Vec<CaseResult>>;
    /// The gate whose shape set `ckb bench <family>` measures.
    fn bench_gate(&self) -> &'static str;
    /// `ckb bench`: the bench gate's cases, unless the family has a wider bench set.
    fn bench(&self, ctx: &Context, options: &Options) -> Result<Vec<CaseResult>> {
        let spec = crate::table::find(self.bench_gate())?;
        self.measure_cases(ctx, &format!("bench {}", self.name()), &spec.cases_value()?, options)
    }
    /// `ckb fuzz`: random problems against the CPU reference.
    fn fuzz(&self, ctx: &Context, options: &FuzzOptions) -> Result<FuzzReport>;
    /// `ckb profile <family> ARGS`: the family parses its own arguments (`args[0]` is the
    /// command name for messages) and measures every combination they name.
    fn profile(&self, ctx: &Context, args: &[String]) -> Result<Vec<CaseResult>>;
    /// Parses profile arguments without a GPU, so bad input fails before anything opens.
    fn check_profile_args(&self, args: &[String]) -> Result<()>;
}

/// Every family, once.
pub const FAMILIES: &[&dyn Family] = &[&elementwise::Elementwise, &gemm::Gemm, &reduce::Reduce, &norm::Norm];

/// The family named `name`, or an error listing them.
pub fn find(name: &str) -> Result<&'static dyn Family> {
    FAMILIES.iter().copied().find(|f| f.name() == name).ok_or_else(|| {
        let known: Vec<String> = FAMILIES.iter().map(|f| format!("{} ({})", f.name(), f.about())).collect();
        anyhow!("no operator family {name:?}; the families: {}", known.join("; "))
    })
}

/// Fails when a fuzz run asks a family that has no kernel subsets for one.
pub fn no_fuzz_scope(family: &str, options: &FuzzOptions) -> Result<()> {
    match &options.scope {
        Some(scope) => anyhow::bail!("the {family} fuzzer has no scope {scope:?}"),
        None => Ok(()),
    }
}

/// Keeps the cases whose `name` contains `only`.
pub fn filter_only<T>(cases: Vec<T>, only: Option<&str>, name: impl Fn(&T) -> String) -> Result<Vec<T>> {
    let Some(only) = only else { return Ok(cases) };
    let kept: Vec<T> = cases.into_iter().filter(|c| name(c).contains(only)).collect();
    if kept.is_empty() {
        anyhow::bail!("no case matches {only:?}");
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_are_unique_and_found() {
        let mut names: Vec<_> = FAMILIES.iter().map(|f| f.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        for name in names {
            assert_eq!(find(name).unwrap().name(), name);
        }
        assert!(find("conv3d").is_err());
    }

    #[test]
    fn every_gate_family_is_registered_and_bench_gates_exist() {
        for gate in crate::table::all().unwrap() {
            if let Some(family) = &gate.family {
                if gate.implemented {
                    find(family).unwrap();
                }
            }
        }
        for family in FAMILIES {
            let spec = crate::table::find(family.bench_gate()).unwrap();
            assert_eq!(spec.family.as_deref(), Some(family.name()));
        }
    }
}
