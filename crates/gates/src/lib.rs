//! The roadmap's gates: the table in `gates.toml`, each gate's spec fingerprint, and the
//! rule that decides whether a gate passed.
//!
//! The runner (which measures and writes gate records) and xtask (which judges committed
//! records against the current table) both read the table through this crate, so a record's
//! fingerprint and the roadmap's are computed the same way, from one definition.

#![deny(missing_docs)]

mod fingerprint;
mod verdict;

use serde::Deserialize;

pub use verdict::{geomean, judge, CaseScore, CheckOutcome, LowestCase, Verdict};

/// Why the gate table, or a setting in it, could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// gates.toml is not valid TOML, or a gate lacks a required key.
    #[error("gates.toml does not parse: {0}")]
    Parse(Box<toml::de::Error>),
    /// Two gates share a name.
    #[error("gates.toml names gate {0} twice")]
    DuplicateName(String),
    /// A gate's threshold or floor is not a usable number.
    #[error("gate {gate}: {detail}")]
    BadLimit {
        /// The gate.
        gate: String,
        /// What is wrong with it.
        detail: String,
    },
    /// `cases_from` names a gate that does not exist or has no shape set of its own.
    #[error("gate {gate}: cases_from = \"{from}\" {detail}")]
    BadCasesFrom {
        /// The gate with `cases_from`.
        gate: String,
        /// The gate it names.
        from: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// No gate of that name.
    #[error("no gate named {name} in gates.toml; gates: {known}")]
    NoSuchGate {
        /// The name asked for.
        name: String,
        /// The names there are, comma-separated.
        known: String,
    },
    /// A setting the gate's implementation needs is absent.
    #[error("gate {gate} has no `{key}` in gates.toml")]
    MissingSetting {
        /// The gate.
        gate: String,
        /// The setting.
        key: String,
    },
    /// A setting does not have the shape the gate's implementation reads.
    #[error("gate {gate}: `{key}` in gates.toml: {source}")]
    BadSetting {
        /// The gate.
        gate: String,
        /// The setting.
        key: String,
        /// What serde said.
        source: Box<toml::de::Error>,
    },
}

/// One `[[gate]]` of gates.toml.
#[derive(Debug, Clone, Deserialize)]
pub struct GateSpec {
    /// The gate's name (`phase2a`), also its record's file name.
    pub name: String,
    /// The issue that defines it, where one is filed.
    pub issue: Option<u32>,
    /// What it measures, in words.
    pub operator: String,
    /// What our kernels are measured against, in words.
    pub baseline: String,
    /// What the score is, in words.
    pub metric: String,
    /// The score (geomean of the cases' ratios) the gate needs.
    pub threshold: f64,
    /// The score the operator aims at in the end; reported, not judged.
    pub final_target: Option<f64>,
    /// No case may have a ratio below this; absent means no floor.
    pub floor: Option<f64>,
    /// Whether the gate's kernels exist.
    pub implemented: bool,
    /// The operator family (crates/runner/src/ops) that measures the cases.
    pub family: Option<String>,
    /// A remark shown when the gate runs.
    pub note: Option<String>,
    /// The gate's own settings and shape set, read by its implementation.
    #[serde(flatten)]
    pub settings: toml::Table,
    /// The shape set: the gate's own `cases`, or those of the gate its `cases_from` names.
    #[serde(skip)]
    shape_set: Option<toml::Value>,
}

/// The whole table, with every `cases_from` resolved.
#[derive(Debug, Clone)]
pub struct GateTable {
    /// The gates, in the file's order.
    pub gates: Vec<GateSpec>,
}

#[derive(Deserialize)]
struct RawTable {
    gate: Vec<GateSpec>,
}

impl GateTable {
    /// Parses gates.toml's text: names unique, limits finite and positive, each `cases_from`
    /// naming a gate with a shape set of its own.
    pub fn parse(text: &str) -> Result<GateTable, GateError> {
        let mut gates = toml::from_str::<RawTable>(text).map_err(|e| GateError::Parse(Box::new(e)))?.gate;
        for (i, gate) in gates.iter().enumerate() {
            if gates[..i].iter().any(|g| g.name == gate.name) {
                return Err(GateError::DuplicateName(gate.name.clone()));
            }
            check_limit(&gate.name, "threshold", gate.threshold)?;
            if let Some(floor) = gate.floor {
                check_limit(&gate.name, "floor", floor)?;
            }
        }
        let resolved: Vec<Option<toml::Value>> =
            gates.iter().map(|gate| resolve_shape_set(&gates, gate)).collect::<Result<_, _>>()?;
        for (gate, shape_set) in gates.iter_mut().zip(resolved) {
            gate.shape_set = shape_set;
        }
        Ok(GateTable { gates })
    }

    /// The gate of that name.
    pub fn find(&self, name: &str) -> Result<&GateSpec, GateError> {
        self.gates.iter().find(|g| g.name == name).ok_or_else(|| GateError::NoSuchGate {
            name: name.to_string(),
            known: self.gates.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}

fn check_limit(gate: &str, key: &str, value: f64) -> Result<(), GateError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(GateError::BadLimit { gate: gate.to_string(), detail: format!("{key} = {value} is not a positive number") })
    }
}

fn resolve_shape_set(gates: &[GateSpec], gate: &GateSpec) -> Result<Option<toml::Value>, GateError> {
    let own = gate.settings.get("cases");
    let Some(from) = gate.settings.get("cases_from") else { return Ok(own.cloned()) };
    let bad = |detail| GateError::BadCasesFrom { gate: gate.name.clone(), from: from.to_string(), detail };
    let from = from.as_str().ok_or_else(|| bad("is not a gate name"))?;
    if own.is_some() {
        return Err(bad("beside a `cases` list of its own: keep one"));
    }
    let source = gates.iter().find(|g| g.name == from).ok_or_else(|| bad("names no gate"))?;
    match source.settings.get("cases") {
        Some(cases) if !source.settings.contains_key("cases_from") => Ok(Some(cases.clone())),
        _ => Err(bad("names a gate without a `cases` list of its own")),
    }
}

impl GateSpec {
    /// The gate's shape set, deserialized into its implementation's case type: its own
    /// `cases`, or those of the gate named by `cases_from` (gates that share a set, at
    /// different thresholds).
    pub fn cases<T: serde::de::DeserializeOwned>(&self) -> Result<T, GateError> {
        let cases = self
            .shape_set
            .clone()
            .ok_or_else(|| GateError::MissingSetting { gate: self.name.clone(), key: "cases".into() })?;
        cases.try_into().map_err(|source| GateError::BadSetting {
            gate: self.name.clone(),
            key: "cases".into(),
            source: Box::new(source),
        })
    }

    /// The shape set as written in gates.toml, for the family to parse.
    pub fn cases_value(&self) -> Result<toml::Value, GateError> {
        self.shape_set.clone().ok_or_else(|| GateError::MissingSetting { gate: self.name.clone(), key: "cases".into() })
    }

    /// Deserializes one setting (e.g. `op_thresholds`) into the gate's own type.
    pub fn setting<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, GateError> {
        let value = self
            .settings
            .get(key)
            .ok_or_else(|| GateError::MissingSetting { gate: self.name.clone(), key: key.to_string() })?;
        value.clone().try_into().map_err(|source| GateError::BadSetting {
            gate: self.name.clone(),
            key: key.into(),
            source: Box::new(source),
        })
    }

    /// The gate's name for its shape set: `cases_from`'s gate, else its own.
    pub fn shape_set_name(&self) -> &str {
        self.settings.get("cases_from").and_then(|v| v.as_str()).unwrap_or(&self.name)
    }

    /// A stable hash of everything in the spec that decides what is measured and how it is
    /// judged: the shape set (resolved through `cases_from`), the threshold, the floor, and
    /// the gate's other settings (`op_thresholds`, `gemm_fuzz_cases`, ...). Words (operator,
    /// metric, note) and the final target are left out. `sha256:` and 64 hex digits.
    pub fn fingerprint(&self) -> String {
        let mut settings = self.settings.clone();
        settings.remove("cases");
        settings.remove("cases_from");
        fingerprint::fingerprint(&[
            ("cases", self.shape_set.clone()),
            ("family", self.family.clone().map(toml::Value::String)),
            ("floor", self.floor.map(toml::Value::Float)),
            ("settings", Some(toml::Value::Table(settings))),
            ("threshold", Some(toml::Value::Float(self.threshold))),
        ])
    }

    /// The pass rule ([`judge`]) at this gate's threshold and floor.
    pub fn judge(&self, cases: &[CaseScore<'_>], checks: &[CheckOutcome<'_>]) -> Verdict {
        judge(self.threshold, self.floor, cases, checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"
[[gate]]
name = "a"
operator = "op"
baseline = "b"
metric = "m"
threshold = 0.8
implemented = true
extra = 3
cases = [{ n = 1 }, { n = 2 }]

[[gate]]
name = "b"
operator = "another op"
baseline = "b"
metric = "m"
threshold = 0.8
implemented = true
cases_from = "a"
extra = 3
"#;

    fn with(table: &str, from: &str, to: &str) -> Result<GateTable, GateError> {
        assert!(table.contains(from), "{from}");
        GateTable::parse(&table.replacen(from, to, 1))
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Case {
        n: u32,
    }

    #[test]
    fn the_repository_table_parses() {
        let table = GateTable::parse(include_str!("../../../gates.toml")).unwrap();
        for required in ["phase1", "phase2a", "phase2b", "phase4a", "phase4b", "phase5-norm"] {
            let gate = table.find(required).unwrap();
            assert!(gate.implemented, "{required}");
            assert!(gate.shape_set.is_some(), "{required} has no shape set");
        }
        assert!(matches!(table.find("phase9"), Err(GateError::NoSuchGate { .. })));
    }

    #[test]
    fn cases_from_resolves_to_the_other_gates_set() {
        let table = GateTable::parse(TABLE).unwrap();
        let a: Vec<Case> = table.find("a").unwrap().cases().unwrap();
        let b: Vec<Case> = table.find("b").unwrap().cases().unwrap();
        assert_eq!(a, vec![Case { n: 1 }, Case { n: 2 }]);
        assert_eq!(a, b);
        assert_eq!(table.find("b").unwrap().shape_set_name(), "a");
        assert_eq!(table.find("a").unwrap().setting::<u32>("extra").unwrap(), 3);
        assert!(matches!(table.find("a").unwrap().setting::<u32>("nope"), Err(GateError::MissingSetting { .. })));
        assert!(matches!(table.find("a").unwrap().setting::<String>("extra"), Err(GateError::BadSetting { .. })));
    }

    #[test]
    fn bad_tables_are_refused() {
        assert!(matches!(with(TABLE, "name = \"b\"", "name = \"a\""), Err(GateError::DuplicateName(_))));
        assert!(matches!(with(TABLE, "cases_from = \"a\"", "cases_from = \"z\""), Err(GateError::BadCasesFrom { .. })));
        assert!(matches!(
            with(TABLE, "cases_from = \"a\"", "cases_from = \"a\"\ncases = []"),
            Err(GateError::BadCasesFrom { .. })
        ));
        assert!(matches!(with(TABLE, "threshold = 0.8", "threshold = -1.0"), Err(GateError::BadLimit { .. })));
        assert!(matches!(
            with(TABLE, "threshold = 0.8", "threshold = 0.8\nfloor = nan"),
            Err(GateError::BadLimit { .. })
        ));
        assert!(matches!(GateTable::parse("[[gate]]\nname = 1"), Err(GateError::Parse(_))));
    }

    #[test]
    fn fingerprint_follows_what_is_judged_and_nothing_else() {
        let base = GateTable::parse(TABLE).unwrap();
        let print = |table: &GateTable, name: &str| table.find(name).unwrap().fingerprint();
        let a = print(&base, "a");
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        // Two gates of one shape set, threshold and settings hash alike; words do not count.
        assert_eq!(a, print(&base, "b"));
        assert_ne!(a, print(&with(TABLE, "extra = 3", "extra = 3\nfloor = 0.5").unwrap(), "a"));
        assert_eq!(a, print(&with(TABLE, "metric = \"m\"", "metric = \"other words\"").unwrap(), "a"));
        assert_eq!(a, print(&with(TABLE, "implemented = true", "implemented = true\nnote = \"x\"").unwrap(), "a"));
        // A changed case, threshold or setting changes it, in the gate that shares the set too.
        let changed = with(TABLE, "{ n = 2 }", "{ n = 3 }").unwrap();
        assert_ne!(a, print(&changed, "a"));
        assert_ne!(a, print(&changed, "b"));
        assert_ne!(a, print(&with(TABLE, "threshold = 0.8", "threshold = 0.9").unwrap(), "a"));
        assert_ne!(a, print(&with(TABLE, "extra = 3", "extra = 4").unwrap(), "a"));
        // The order of keys inside a case is not part of the spec.
        let two_keys = with(TABLE, "{ n = 1 }", "{ n = 1, m = 2 }").unwrap();
        let swapped = with(TABLE, "{ n = 1 }", "{ m = 2, n = 1 }").unwrap();
        assert_eq!(print(&two_keys, "a"), print(&swapped, "a"));
    }
}
