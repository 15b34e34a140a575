//! House rules that a reviewer would otherwise check by hand: the runner's layering, and
//! that the paths the docs name exist.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace root").to_path_buf()
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                files_under(&path, ext, out);
            }
        } else if name.ends_with(ext) {
            out.push(path);
        }
    }
}

/// The `use`/path references of a Rust file, comments left out.
fn code_of(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

const RUNNER_COMMANDS: [&str; 4] = ["bench", "fuzz", "gate", "profile"];
const RUNNER_LOWER_LAYERS: [&str; 9] =
    ["measure", "fuzzing", "record", "output", "cli", "sweep", "table", "progress", "plot"];

#[test]
fn runner_families_import_no_sibling_family() {
    let ops = root().join("crates/runner/src/ops");
    let families: Vec<String> = fs::read_dir(&ops)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_string))
        .filter(|n| n != "mod")
        .collect();
    assert!(families.len() >= 4, "families found: {families:?}");
    for family in &families {
        let code = code_of(&ops.join(format!("{family}.rs")));
        for other in families.iter().filter(|o| *o != family) {
            for pattern in [format!("super::{other}"), format!("ops::{other}")] {
                assert!(!code.contains(&pattern), "ops/{family}.rs imports its sibling ({pattern})");
            }
        }
        for command in RUNNER_COMMANDS {
            assert!(!code.contains(&format!("crate::{command}::")), "ops/{family}.rs imports the {command} command");
        }
    }
}

#[test]
fn runner_lower_layers_import_no_family_or_command() {
    let src = root().join("crates/runner/src");
    for layer in RUNNER_LOWER_LAYERS {
        let code = code_of(&src.join(format!("{layer}.rs")));
        assert!(!code.contains("crate::ops"), "{layer}.rs imports the operator registry: a layer below it may not");
        for command in RUNNER_COMMANDS {
            assert!(!code.contains(&format!("crate::{command}::")), "{layer}.rs imports the {command} command");
        }
    }
}

/// Backticked spans in docs that name a file or folder of this repository.
fn named_paths(text: &str) -> Vec<String> {
    const TOP: [&str; 7] = ["crates/", "baselines/", "xtask/", "bench-results/", ".ci/", "gates.toml", "README.md"];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| TOP.iter().any(|t| span.starts_with(t)))
        .filter(|span| !span.contains(['<', '*', '{', ' ', '$']))
        .map(|span| span.trim_end_matches(['.', ',', ':', ')']).to_string())
        .collect()
}

#[test]
fn paths_named_in_docs_exist() {
    let root = root();
    let mut docs = Vec::new();
    files_under(&root, ".md", &mut docs);
    files_under(&root.join("crates"), ".rs", &mut docs);
    files_under(&root.join("xtask"), ".rs", &mut docs);
    docs.retain(|p| !p.starts_with(root.join("bench-results")) && !p.starts_with(root.join("target")));
    let mut missing = Vec::new();
    for doc in &docs {
        let text = fs::read_to_string(doc).unwrap();
        let text: String = if doc.extension().is_some_and(|e| e == "rs") {
            text.lines().filter(|l| l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
        } else {
            text
        };
        for path in named_paths(&text) {
            // A line number (file.rs:120) or an anchor (file.md#part) still names the file.
            let file = path.split([':', '#']).next().unwrap_or(&path);
            if !root.join(file).exists() {
                missing.push(format!("{}: `{path}`", doc.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(missing.is_empty(), "docs name paths that do not exist:\n{}", missing.join("\n"));
}

#[test]
fn named_paths_are_found() {
    assert_eq!(
        named_paths("see `crates/gemm/src/lib.rs` and `cargo test` or `crates/<op>/x`"),
        ["crates/gemm/src/lib.rs"]
    );
}
