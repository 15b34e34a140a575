//! Criterion bench of the streaming kernels, timed with CUDA events, plus a table of GB/s and
//! fraction of the device-to-device copy bandwidth measured in the same run. Prints
//! "no GPU: skipping" and returns where there is none.
//!
//! `cargo bench -p ckb-reduce` (criterion's filters apply: `cargo bench -p ckb-reduce -- add`).

use std::time::Duration;

use ckb_common::{bf16, copy_bandwidth_gbs, Gpu, Timer, TimingConfig};
use ckb_reduce::elementwise::{self as ew, BinaryOp};
use ckb_reduce::{ReduceOp, ReduceOutput, ReduceResult, Reducer};
use criterion::{Criterion, Throughput};
use cudarc::driver::{sys, CudaSlice};

/// One measured thing: its name, the fewest bytes it must move, and its launch.
struct Case<'a> {
    name: String,
    bytes: usize,
    run: Box<dyn FnMut() -> ReduceResult<()> + 'a>,
}

fn elementwise_cases<'a, T: ckb_reduce::EwElement>(gpu: &'a Gpu, n: usize) -> Vec<Case<'a>> {
    let size = T::DTYPE.size_bytes();
    let a = gpu.random_normal::<T>(n, 1).unwrap();
    let b = gpu.random_normal::<T>(n, 2).unwrap();
    let label = |op: &str| format!("{op} {} n=2^{}", T::DTYPE, n.trailing_zeros());
    let mut cases = Vec::new();
    for op in [BinaryOp::Add, BinaryOp::Mul, BinaryOp::AddRelu] {
        let (a, b, mut out) = (a.clone(), b.clone(), gpu.zeros::<T>(n).unwrap());
        cases.push(Case {
            name: label(op.name()),
            bytes: 3 * n * size,
            run: Box::new(move || ew::binary_with(gpu, Default::default(), op, &a, &b, &mut out).map(drop)),
        });
    }
    let (x, mut y) = (a.clone(), b.clone());
    cases.push(Case {
        name: label("axpy"),
        bytes: 3 * n * size,
        run: Box::new(move || ew::axpy(gpu, 0.5, &x, &mut y).map(drop)),
    });
    let (x, mut out) = (a.clone(), gpu.zeros::<T>(n).unwrap());
    cases.push(Case {
        name: label("scale"),
        bytes: 2 * n * size,
        run: Box::new(move || ew::scale(gpu, 0.5, &x, &mut out).map(drop)),
    });
    let (x, mut out) = (a.clone(), gpu.zeros::<f32>(n).unwrap());
    cases.push(Case {
        name: label("cast to f32"),
        bytes: n * (size + 4),
        run: Box::new(move || ew::cast(gpu, &x, &mut out).map(drop)),
    });
    let cols = 4096;
    let (x, bias, mut out) = (a, gpu.random_normal::<T>(cols, 5).unwrap(), gpu.zeros::<T>(n).unwrap());
    cases.push(Case {
        name: label("bias_add (rows of 4096)"),
        bytes: 2 * n * size,
        run: Box::new(move || ew::bias_add(gpu, n / cols, cols, &x, &bias, &mut out).map(drop)),
    });
    cases
}

fn reduction_cases<'a, T: ckb_reduce::EwElement>(gpu: &'a Gpu, sizes: &[usize]) -> Vec<Case<'a>>
where
    f32: ReduceOutput<T>,
{
    let size = T::DTYPE.size_bytes();
    let mut cases = Vec::new();
    for &n in sizes {
        let x = gpu.random_normal::<T>(n, 3).unwrap();
        for op in [ReduceOp::Sum, ReduceOp::Max] {
            let (x, mut out, mut reducer) = (x.clone(), gpu.zeros::<f32>(1).unwrap(), Reducer::new(gpu).unwrap());
            cases.push(Case {
                name: format!("{} {} n={n}", op.name(), T::DTYPE),
                bytes: n * size,
                run: Box::new(move || reducer.reduce(op, &x, &mut out).map(|_| ())),
            });
        }
    }
    cases
}

fn axis_case<'a, T: ckb_reduce::EwElement>(gpu: &'a Gpu, shape: [usize; 2], axis: usize) -> Case<'a>
where
    f32: ReduceOutput<T>,
{
    let x: CudaSlice<T> = gpu.random_normal(shape[0] * shape[1], 4).unwrap();
    let mut out = gpu.zeros::<f32>(shape[1 - axis]).unwrap();
    let mut reducer = Reducer::new(gpu).unwrap();
    let what = if axis == 1 { "row" } else { "column" };
    Case {
        name: format!("{what} sum {} {}x{}", T::DTYPE, shape[0], shape[1]),
        bytes: shape[0] * shape[1] * T::DTYPE.size_bytes(),
        run: Box::new(move || reducer.reduce_axis(ReduceOp::Sum, &x, &shape, axis, &mut out).map(|_| ())),
    }
}

/// `iters` launches between two CUDA events.
fn event_time(gpu: &Gpu, iters: u64, run: &mut dyn FnMut() -> ReduceResult<()>) -> Duration {
    let event = || gpu.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
    let (start, end) = (event(), event());
    start.record(&gpu.stream).unwrap();
    for _ in 0..iters {
        run().unwrap();
    }
    end.record(&gpu.stream).unwrap();
    end.synchronize().unwrap();
    Duration::from_secs_f64(f64::from(start.elapsed_ms(&end).unwrap()) / 1e3)
}

fn main() {
    let gpu = match Gpu::new(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("no GPU: skipping ({e})");
            return;
        }
    };
    let mut criterion =
        Criterion::default().configure_from_args().sample_size(20).warm_up_time(Duration::from_millis(500));
    let copy_gbs = copy_bandwidth_gbs(&gpu, 1 << 30).unwrap();
    let mut cases = Vec::new();
    for n in [1usize << 24, 1 << 28] {
        cases.extend(elementwise_cases::<f32>(&gpu, n));
        cases.extend(elementwise_cases::<bf16>(&gpu, n));
    }
    cases.extend(reduction_cases::<f32>(&gpu, &[1 << 20, 1_000_007, 1 << 24, 1 << 28]));
    cases.extend(reduction_cases::<bf16>(&gpu, &[1 << 20, 1_000_007, 1 << 24, 1 << 28]));
    cases.push(axis_case::<f32>(&gpu, [32768, 8192], 1));
    cases.push(axis_case::<bf16>(&gpu, [8192, 32768], 1));
    cases.push(axis_case::<f32>(&gpu, [8192, 8192], 0));

    let mut table = Vec::new();
    let mut timer = Timer::new(&gpu, TimingConfig::default()).unwrap();
    for case in &mut cases {
        let mut group = criterion.benchmark_group("streaming");
        group.throughput(Throughput::Bytes(case.bytes as u64));
        group.bench_function(&case.name, |b| b.iter_custom(|iters| event_time(&gpu, iters, &mut case.run)));
        group.finish();
        let stats = timer
            .time(&mut |_| {
                (case.run)().map_err(|e| ckb_common::GpuError::Library { library: "ckb-reduce", detail: e.to_string() })
            })
            .unwrap();
        let gbs = case.bytes as f64 / (stats.median_us * 1e-6) / 1e9;
        table.push(format!("| {} | {:.1} | {:.0} | {:.3} |", case.name, stats.median_us, gbs, gbs / copy_gbs));
    }
    println!("\ncopy bandwidth (device to device, read + write): {copy_gbs:.0} GB/s\n");
    println!("| case | median (us) | GB/s | fraction of copy |\n|---|---:|---:|---:|");
    for row in table {
        println!("{row}");
    }
    criterion.final_summary();
}
