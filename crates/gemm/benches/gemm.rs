//! Criterion bench of the GEMM variants the heuristic picks, next to cuBLAS, on a few
//! shapes. Prints "no GPU: skipping" and returns on a machine without a Hopper GPU.
//! `CKB_GEMM_VARIANT=NAME` forces one variant (cases it cannot take are skipped).
//! For the interleaved CUDA-event comparison the gates use, see examples/gemm_vs_cublas.rs.

use ckb_common::baselines::Cublas;
use ckb_common::{bf16, Gpu};
use ckb_gemm::{find_variant, gemm, gemm_with_variant, GemmProblem};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let gpu = match Gpu::new(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("no GPU: skipping ({e})");
            return;
        }
    };
    let forced = std::env::var("CKB_GEMM_VARIANT")
        .ok()
        .map(|name| find_variant(&name).expect("CKB_GEMM_VARIANT names no variant"));
    let cublas = Cublas::new(&gpu).expect("cuBLAS");
    let mut group = c.benchmark_group("gemm_bf16_rc");
    group.sample_size(20);
    for (m, n, k) in [(2048, 2048, 2048), (4096, 4096, 4096), (128, 8192, 8192), (4000, 3000, 2048)] {
        let problem = GemmProblem::row_col(m, n, k);
        let a = gpu.random_normal::<bf16>(m * k, 1).unwrap();
        let b = gpu.random_normal::<bf16>(k * n, 2).unwrap();
        let mut out = gpu.zeros::<bf16>(m * n).unwrap();
        group.throughput(Throughput::Elements(problem.flops() as u64));
        let id = format!("m{m}_n{n}_k{k}");
        if let Some(variant) = forced {
            if gemm_with_variant(&gpu, variant, &problem, &a, &b, &mut out).is_err() {
                continue;
            }
        }
        group.bench_function(format!("ours/{id}"), |bench| {
            bench.iter(|| {
                match forced {
                    Some(v) => drop(gemm_with_variant(&gpu, v, &problem, &a, &b, &mut out).unwrap()),
                    None => drop(gemm(&gpu, &problem, &a, &b, &mut out).unwrap()),
                }
                gpu.synchronize().unwrap();
            })
        });
        group.bench_function(format!("cublas/{id}"), |bench| {
            bench.iter(|| {
                cublas.gemm(&problem, &a, &b, &mut out).unwrap();
                gpu.synchronize().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
