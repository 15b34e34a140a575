//! Criterion bench of the row kernels on the phase-5 gate shapes, next to a device-to-device
//! copy of the same bytes (the roofline) and cuDNN's softmax. Throughput counts one read and
//! one write of the matrix (backward: two reads and one write). Prints "no GPU: skipping"
//! and returns on a machine without a Hopper GPU. `CKB_NORM_VARIANT=NAME` forces a variant
//! (cases it cannot hold are skipped). The gate times with CUDA events, interleaved; this
//! bench is for quick comparisons.

use ckb_common::baselines::cudnn_softmax::CudnnSoftmax;
use ckb_common::{bf16, Gpu};
use ckb_norm::{NormElement, NormVariant, Normalizer, RowsProblem};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use cudarc::driver::CudaSlice;

const SHAPES: [(usize, usize); 4] = [(32768, 4096), (8192, 32768), (65536, 1024), (512, 262144)];
const EPS: f32 = 1e-5;

fn bench(c: &mut Criterion) {
    let gpu = match Gpu::new(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("no GPU: skipping ({e})");
            return;
        }
    };
    let forced = std::env::var("CKB_NORM_VARIANT")
        .ok()
        .map(|name| NormVariant::by_name(&name).unwrap_or_else(|| panic!("CKB_NORM_VARIANT names no variant: {name}")));
    bench_type::<bf16>(c, &gpu, forced);
    bench_type::<f32>(c, &gpu, forced);
}

/// Device buffers for one shape.
struct Buffers<T> {
    x: CudaSlice<T>,
    dy: CudaSlice<T>,
    y: CudaSlice<T>,
    gamma: CudaSlice<T>,
    beta: CudaSlice<T>,
    dgamma: CudaSlice<T>,
    dbeta: CudaSlice<T>,
    mean: CudaSlice<f32>,
    rstd: CudaSlice<f32>,
}

fn buffers<T: NormElement>(gpu: &Gpu, p: &RowsProblem) -> Buffers<T> {
    Buffers {
        x: gpu.random_normal(p.input_len(), 1).unwrap(),
        dy: gpu.random_normal(p.input_len(), 2).unwrap(),
        y: gpu.zeros(p.output_len()).unwrap(),
        gamma: gpu.random_normal(p.cols, 3).unwrap(),
        beta: gpu.random_normal(p.cols, 4).unwrap(),
        dgamma: gpu.zeros(p.cols).unwrap(),
        dbeta: gpu.zeros(p.cols).unwrap(),
        mean: gpu.zeros(p.rows).unwrap(),
        rstd: gpu.zeros(p.rows).unwrap(),
    }
}

/// Benches `run` unless its first call fails (a forced variant that cannot hold the shape).
fn bench_case<M: criterion::measurement::Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    gpu: &Gpu,
    name: String,
    mut run: impl FnMut() -> Result<(), String>,
) {
    if let Err(e) = run() {
        println!("{name}: skipped ({e})");
        return;
    }
    group.bench_function(name, |bench| {
        bench.iter(|| {
            run().unwrap();
            gpu.synchronize().unwrap();
        })
    });
}

fn bench_type<T: NormElement>(c: &mut Criterion, gpu: &Gpu, forced: Option<NormVariant>) {
    let mut group = c.benchmark_group(format!("norm_{}", T::DTYPE));
    group.sample_size(20);
    let mut norm = Normalizer::new(gpu).unwrap();
    norm.force_variant(forced);
    for (rows, cols) in SHAPES {
        let p = RowsProblem::dense(rows, cols);
        let mut b = buffers::<T>(gpu, &p);
        let matrix_bytes = (p.output_len() * T::DTYPE.size_bytes()) as u64;
        let id = format!("{rows}x{cols}");
        let err = |e: ckb_norm::NormError| e.to_string();

        group.throughput(Throughput::Bytes(2 * matrix_bytes));
        bench_case(&mut group, gpu, format!("copy/{id}"), || {
            gpu.stream.memcpy_dtod(&b.x, &mut b.y).map_err(|e| e.to_string())
        });
        bench_case(&mut group, gpu, format!("softmax/{id}"), || {
            norm.softmax(&p, &b.x, &mut b.y).map(drop).map_err(err)
        });
        match CudnnSoftmax::<T>::new(gpu, rows, cols, cols, false) {
            Ok(cudnn) => bench_case(&mut group, gpu, format!("cudnn_softmax/{id}"), || {
                cudnn.run(&b.x, &mut b.y).map_err(|e| e.to_string())
            }),
            Err(e) => println!("cudnn_softmax/{id}: skipped ({e})"),
        }
        bench_case(&mut group, gpu, format!("layernorm/{id}"), || {
            norm.layernorm(&p, &b.x, &b.gamma, &b.beta, EPS, &mut b.y, &mut b.mean, &mut b.rstd).map(drop).map_err(err)
        });
        bench_case(&mut group, gpu, format!("layernorm_inference/{id}"), || {
            norm.layernorm_inference(&p, &b.x, &b.gamma, &b.beta, EPS, &mut b.y).map(drop).map_err(err)
        });
        bench_case(&mut group, gpu, format!("rmsnorm/{id}"), || {
            norm.rmsnorm(&p, &b.x, &b.gamma, EPS, &mut b.y, &mut b.rstd).map(drop).map_err(err)
        });

        group.throughput(Throughput::Bytes(3 * matrix_bytes));
        bench_case(&mut group, gpu, format!("softmax_backward/{id}"), || {
            norm.softmax_backward(&p, &b.x, &b.dy, &mut b.y).map(drop).map_err(err)
        });
        bench_case(&mut group, gpu, format!("layernorm_backward/{id}"), || {
            norm.layernorm_backward(&p, &b.x, &b.dy, &b.gamma, &b.mean, &b.rstd, &mut b.y, &mut b.dgamma, &mut b.dbeta)
                .map(drop)
                .map_err(err)
        });
        bench_case(&mut group, gpu, format!("rmsnorm_backward/{id}"), || {
            norm.rmsnorm_backward(&p, &b.x, &b.dy, &b.gamma, &b.rstd, &mut b.y, &mut b.dgamma).map(drop).map_err(err)
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
