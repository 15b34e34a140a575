//! The gate table, gates.toml at the workspace root, compiled into the runner so a bundle
//! carries the exact table of the commit it was built from. Parsing, `cases_from`, the spec
//! fingerprint and the pass rule live in `ckb-gates`, which xtask reads the table with too.

use anyhow::Result;
pub use ckb_gates::GateSpec;
use ckb_gates::GateTable;

const GATES_TOML: &str = include_str!("../../../gates.toml");

/// The gate of that name.
pub fn find(name: &str) -> Result<GateSpec> {
    Ok(GateTable::parse(GATES_TOML)?.find(name)?.clone())
}

/// Every gate, in the file's order.
#[cfg(test)]
pub fn all() -> Result<Vec<GateSpec>> {
    Ok(GateTable::parse(GATES_TOML)?.gates)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_compiled_in_table_parses() {
        assert!(super::GateTable::parse(super::GATES_TOML).unwrap().gates.len() >= 6);
        assert_eq!(super::find("phase2b").unwrap().shape_set_name(), "phase2a");
        assert!(super::find("phase9").is_err());
    }
}
