//! `ckb`: the release runner. Gates, benches, profiles and GPU fuzzing over every operator
//! family's variants table. xtask builds and runs it here; the bundle carries it to a
//! driver-only GPU host.
//!
//! Layers, top down: the commands (`bench`, `fuzz`, `gate`, `profile`) look families up in
//! the registry (`ops`); families use the shared layers (`measure`, `fuzzing`, `record`,
//! `output`, `cli`, `sweep`, `table`, `progress`, `plot`) and never one another.

mod bench;
mod cli;
mod fuzz;
mod fuzzing;
mod gate;
mod measure;
mod ops;
mod output;
mod plot;
mod profile;
mod progress;
mod record;
mod sweep;
mod table;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ckb", about = "cute-kernel-bench runner: gates, benches, profiles and GPU fuzzing")]
struct Cli {
    /// GPU ordinal.
    #[arg(long, default_value_t = 0, global = true)]
    device: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Device facts and the measured copy bandwidth.
    Info,
    /// Run roadmap gates from gates.toml and write their records.
    Gate {
        #[arg(required = true)]
        names: Vec<String>,
        /// Records go to `OUT/<device-slug>/NAME.{json,md,svg}`.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// Benchmark a family's bench set against its baseline: a table, plus JSON.
    Bench {
        /// gemm, reduce, norm or elementwise.
        family: String,
        /// Force one kernel variant from the family's table (norm: `all`).
        #[arg(long)]
        variant: Option<String>,
        /// Only the cases whose name contains this ("layernorm f32 512x262144").
        #[arg(long)]
        only: Option<String>,
        /// Where to write the JSON (default: `bench-<family>.json` in the working folder).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Any shape from the command line: `ckb profile gemm --m 2304 --n 6144 --k 1000`.
    /// `ckb profile <family> --help` lists a family's arguments.
    Profile {
        /// gemm, reduce, norm or elementwise.
        family: String,
        /// The family's own arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Random shapes checked against the CPU reference on the GPU.
    Fuzz {
        family: String,
        #[arg(long, default_value_t = 200)]
        cases: u32,
        #[arg(long, default_value_t = 0x5EED)]
        seed: u64,
        /// A subset of the family's kernels (gemm: `universal`).
        #[arg(long)]
        scope: Option<String>,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs one command; Ok(false) when a gate, fuzz or profile found a failure.
fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Info => bench::info(cli.device).map(|_| true),
        Command::Gate { names, out } => gate::run(cli.device, &names, &out),
        Command::Bench { family, variant, only, json } => {
            bench::run(cli.device, &family, &ops::Options { variant, only }, json).map(|_| true)
        }
        Command::Profile { family, args } => profile::run(cli.device, &family, &args),
        Command::Fuzz { family, cases, seed, scope } => {
            fuzz::run(cli.device, &family, &ops::FuzzOptions { cases, seed, scope })
        }
    }
}
