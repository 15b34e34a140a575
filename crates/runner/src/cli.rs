//! Argument pieces the families' `profile` forms share: element types, layouts and the
//! output switches, parsed into one-line errors.

use std::path::PathBuf;

use anyhow::{bail, Result};
use ckb_common::{DType, Layout};

/// Where a profile's rows go besides the table on stdout.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Print CSV on stdout instead of the table.
    #[arg(long)]
    pub csv: bool,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// An element type by its name (`f32`, `f16`, `bf16`, `e4m3`, `e5m2`).
pub fn dtype(text: &str) -> Result<DType> {
    Ok(match text {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        "e4m3" => DType::F8E4M3,
        "e5m2" => DType::F8E5M2,
        other => bail!("unknown dtype {other:?}: f32, f16, bf16, e4m3 or e5m2"),
    })
}

/// A layout letter: `r` row-major, `c` column-major.
pub fn layout(letter: char) -> Result<Layout> {
    match letter {
        'r' => Ok(Layout::RowMajor),
        'c' => Ok(Layout::ColMajor),
        other => bail!("layout letter {other:?}: r (row-major) or c (column-major)"),
    }
}

/// Parses `args` (with `args[0]` the command name) as `P`, turning clap's usage errors into
/// one-line errors; `--help` prints the help and exits.
pub fn parse<P: clap::Parser>(args: &[String]) -> Result<P> {
    match P::try_parse_from(args) {
        Ok(parsed) => Ok(parsed),
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("bad arguments");
            bail!("{}: {}", args.first().map(String::as_str).unwrap_or("ckb"), first.trim_start_matches("error: "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(dtype("bf16").unwrap(), DType::BF16);
        assert!(dtype("f64").is_err());
        assert_eq!(layout('c').unwrap(), Layout::ColMajor);
        assert!(layout('t').is_err());
    }
}
