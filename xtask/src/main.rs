//! Project tasks. Run `cargo xtask --help`.
//!
//! Everything that needs the GPU runs through the release runner `ckb` (crates/runner):
//! here when this machine has a GPU, else on a GPU host from the bundle.

mod bundle;
mod cargo;
mod roadmap;
mod sass;
mod setup;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "cute-kernel-bench project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the pinned CUDA 13.0 compiler and CUTLASS 4.2 into .toolchain (idempotent).
    Setup {
        /// Reinstall even when the stamp says the install is complete.
        #[arg(long)]
        force: bool,
    },
    /// CPU tests always; GPU tests too when this machine has a GPU.
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Benchmark one operator against its baseline: a table, plus JSON.
    Bench {
        op: String,
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Run one gate of gates.toml; its record goes to bench-results/ (committed code only) or --out DIR.
    Gate {
        name: String,
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Any shape from the command line (`cargo xtask profile gemm --m 2304 --n 6144 --k 1000`);
    /// `cargo xtask profile <family> --help` lists a family's arguments.
    Profile {
        family: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz one operator's shapes against the CPU reference on the GPU.
    Fuzz {
        op: String,
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Build the release runner and GPU test binaries into a folder a driver-only GPU host can run.
    Bundle {
        #[arg(long, default_value = ".bundle")]
        out: String,
        /// Build from a clean checkout of HEAD, so records name a commit exactly.
        #[arg(long)]
        clean_head: bool,
    },
    /// Rewrite the README's roadmap table from gates.toml and bench-results/.
    Roadmap,
    /// Per-kernel registers, shared memory, spills and HGMMA/QGMMA/LDL/STL counts from SASS.
    Sass {
        /// Operator crate (gemm, conv, reduce, norm, common, baselines-cuda); all when omitted.
        krate: Option<String>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().task {
        Task::Setup { force } => setup::run(force).map(|_| ()),
        Task::Test { args } => cargo::test(&args),
        Task::Bench { op, args } => cargo::runner(&[&["bench".to_string(), op], &args[..]].concat()),
        Task::Gate { name, args } => cargo::gate(&name, &args),
        Task::Profile { family, args } => cargo::runner(&[&["profile".to_string(), family], &args[..]].concat()),
        Task::Fuzz { op, args } => cargo::runner(&[&["fuzz".to_string(), op], &args[..]].concat()),
        Task::Bundle { out, clean_head } => bundle::run(&out, clean_head),
        Task::Sass { krate } => sass::run(krate.as_deref()),
        Task::Roadmap => roadmap::run(),
    }
}
