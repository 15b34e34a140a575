//! `ckb`: the release runner. Gates, benches and GPU fuzzing over every operator's variants
//! table. xtask builds and runs it here; the bundle carries it to a driver-only GPU host.

mod bench;
mod fuzz;
mod gates;
mod ops;
mod plot;
mod progress;
mod record;
mod table;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ckb", about = "cute-kernel-bench runner: gates, benches and GPU fuzzing")]
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
        /// Records go to OUT/<device-slug>/NAME.{json,md,svg}.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// Benchmark an operator against its baseline: a table, plus JSON.
    Bench {
        op: String,
        /// Force one kernel variant from the operator's table.
        #[arg(long)]
        variant: Option<String>,
        /// Only the cases whose name contains this (norm: "layernorm f32 512x262144").
        #[arg(long)]
        only: Option<String>,
        /// Where to write the JSON (default: bench-<op>.json in the working folder).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Random shapes checked against the CPU reference on the GPU.
    Fuzz {
        op: String,
        #[arg(long, default_value_t = 200)]
        cases: u32,
        #[arg(long, default_value_t = 0x5EED)]
        seed: u64,
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
    let result: Result<bool> = (|| match cli.command {
        Command::Info => bench::info(cli.device).map(|_| true),
        Command::Gate { names, out } => gates::run(cli.device, &names, &out),
        Command::Bench { op, variant, only, json } => {
            bench::run(cli.device, &op, variant.as_deref(), only.as_deref(), json).map(|_| true)
        }
        Command::Fuzz { op, cases, seed } => fuzz::run(cli.device, &op, cases, seed),
    })();
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
