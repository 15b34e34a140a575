//! The gate table, gates.toml at the workspace root, compiled into the runner so a bundle
//! carries the exact table of the commit it was built from.

use anyhow::{anyhow, Result};
use serde::Deserialize;

const GATES_TOML: &str = include_str!("../../../gates.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct GateSpec {
    pub name: String,
    pub issue: Option<u32>,
    pub operator: String,
    pub baseline: String,
    pub metric: String,
    pub threshold: f64,
    pub final_target: Option<f64>,
    pub implemented: bool,
    /// The operator family (crates/runner/src/ops) that measures the cases.
    pub family: Option<String>,
    pub note: Option<String>,
    /// The gate's own settings and shape set, read by its implementation.
    #[serde(flatten)]
    pub settings: toml::Table,
}

#[derive(Debug, Deserialize)]
struct GateTable {
    gate: Vec<GateSpec>,
}

pub fn all() -> Result<Vec<GateSpec>> {
    Ok(toml::from_str::<GateTable>(GATES_TOML)?.gate)
}

pub fn find(name: &str) -> Result<GateSpec> {
    let gates = all()?;
    let names: Vec<_> = gates.iter().map(|g| g.name.clone()).collect();
    gates
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| anyhow!("no gate named {name} in gates.toml; gates: {}", names.join(", ")))
}

impl GateSpec {
    /// The shape set as written in gates.toml, for the family to parse.
    pub fn cases_value(&self) -> Result<toml::Value> {
        match self.settings.get("cases_from").and_then(|v| v.as_str()) {
            Some(other) => find(other)?.cases_value(),
            None => self
                .settings
                .get("cases")
                .cloned()
                .ok_or_else(|| anyhow!("gate {} has no `cases` in gates.toml", self.name)),
        }
    }

    /// The gate whose measurement this gate shares (itself unless `cases_from` names one).
    pub fn measured_as(&self) -> &str {
        self.settings.get("cases_from").and_then(|v| v.as_str()).unwrap_or(&self.name)
    }

    /// Deserializes one setting (e.g. the `cases` list) into the gate's own type.
    pub fn setting<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let value = self.settings.get(key).ok_or_else(|| anyhow!("gate {} has no `{key}` in gates.toml", self.name))?;
        Ok(value.clone().try_into()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_and_names_are_unique() {
        let gates = all().unwrap();
        let mut names: Vec<_> = gates.iter().map(|g| g.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), gates.len());
        for required in ["phase1", "phase2a", "phase2b", "phase4a", "phase4b", "phase5-norm"] {
            assert!(names.contains(&required), "{required} missing");
        }
        assert!(gates.iter().all(|g| g.threshold > 0.0));
    }
}
