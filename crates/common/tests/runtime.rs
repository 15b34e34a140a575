//! The runtime pieces of common on the GPU: device facts, fills, the roofline, the timer,
//! and the vendor-library lookup (which needs no GPU).
//!
//! Tests that need a GPU are ignored by default (`cargo xtask test` runs them where there
//! is one).

use std::sync::{Mutex, MutexGuard, PoisonError};

use ckb_common::baselines::libraries::{ensure_loaded, VendorLibrary};
use ckb_common::cudarc::driver::CudaSlice;
use ckb_common::roofline::{index_vector, time_against_roofline_with};
use ckb_common::{bf16, f16, DType, Element, Gpu, GpuError, Roofline, Timer, TimingConfig, F8E4M3, F8E5M2};

// ---------------------------------------------------------------------------------------
// No GPU needed.
// ---------------------------------------------------------------------------------------

#[test]
fn a_vendor_library_is_loaded_or_missing_with_the_folders_looked_in() {
    for library in VendorLibrary::ALL {
        match ensure_loaded(library) {
            // SAFETY: only tries to dlopen the library by name.
            Ok(()) => assert!(
                match library {
                    VendorLibrary::Cublas => unsafe { ckb_common::cudarc::cublas::sys::is_culib_present() },
                    VendorLibrary::CublasLt => unsafe { ckb_common::cudarc::cublaslt::sys::is_culib_present() },
                    VendorLibrary::Cudnn => unsafe { ckb_common::cudarc::cudnn::sys::is_culib_present() },
                },
                "{library:?} reported loaded, yet cudarc does not find it"
            ),
            Err(GpuError::LibraryMissing { library: name, detail }) => {
                // cuBLAS is reported through cuBLASLt, which it needs, when that is missing.
                let expected: &[&str] = match library {
                    VendorLibrary::Cublas => &["cuBLAS", "cuBLASLt"],
                    _ => &[library.name()],
                };
                assert!(expected.contains(&name), "{library:?} reported as {name}");
                assert!(detail.contains("/usr/local/cuda"), "{detail}");
                assert!(detail.contains("looked in"), "{detail}");
            }
            Err(other) => panic!("{library:?}: unexpected error {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// On the GPU.
// ---------------------------------------------------------------------------------------

/// The GPU tests of this binary run one at a time, so that no other test's kernels share
/// the GPU with the runs a timing test compares.
static GPU_TESTS: Mutex<()> = Mutex::new(());

/// The GPU, with this binary's other GPU tests waiting (the guard goes with it).
fn gpu() -> (MutexGuard<'static, ()>, Gpu) {
    // A test that panicked while holding the lock left nothing behind it to repair.
    let turn = GPU_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
    (turn, Gpu::new(0).expect("these tests need a Hopper GPU"))
}

#[test]
#[ignore = "needs a GPU"]
fn sm_count_is_read_once_at_open_and_event_tracking_is_off() {
    let (_turn, gpu) = gpu();
    let facts = gpu.facts().unwrap();
    assert!(gpu.sm_count() > 0);
    assert_eq!(gpu.sm_count() as i32, facts.sm_count);
    let attribute = gpu
        .ctx
        .attribute(ckb_common::cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .unwrap();
    assert_eq!(gpu.sm_count() as i32, attribute);
    assert!(!gpu.ctx.is_event_tracking());
    assert!(!gpu.ctx.is_managing_stream_synchronization());
}

/// Fills a view in the middle of a zeroed buffer with `value` and checks every element.
fn check_fill_constant<T: Element + PartialEq>(gpu: &Gpu, value: T) {
    let mut buf = gpu.zeros::<T>(1000).unwrap();
    gpu.fill_constant(&mut buf.slice_mut(3..997), value).unwrap();
    let host = gpu.download(&buf).unwrap();
    for (i, x) in host.iter().enumerate() {
        let want = if (3..997).contains(&i) { value } else { T::default() };
        assert!(*x == want, "{}: element {i} is {x:?}, want {want:?}", T::DTYPE);
    }
}

#[test]
#[ignore = "needs a GPU"]
fn constant_fills_write_every_type_and_only_the_view() {
    let (_turn, gpu) = gpu();
    check_fill_constant(&gpu, -1.5f32);
    check_fill_constant(&gpu, f16::from_f32(3.25));
    check_fill_constant(&gpu, bf16::from_f32(-0.75));
    check_fill_constant(&gpu, F8E4M3::from_f32(2.0));
    check_fill_constant(&gpu, F8E5M2::from_f32(-4.0));
    // Different 32-bit halves: an 8-byte fill, not a repeated 4-byte pattern.
    check_fill_constant(&gpu, 0x0123_4567_89AB_CDEFi64);
    check_fill_constant(&gpu, -5i64);
}

#[test]
#[ignore = "needs a GPU"]
fn poisoned_i64_buffers_hold_the_documented_pattern() {
    let (_turn, gpu) = gpu();
    let host = gpu.download(&gpu.poisoned::<i64>(777).unwrap()).unwrap();
    assert!(host.iter().all(|&x| x == 0x7FC0_0000_7FC0_0000), "{:x?}", &host[..4]);
    let floats = gpu.download(&gpu.poisoned::<f32>(5).unwrap()).unwrap();
    assert!(floats.iter().all(|x| x.is_nan()));
}

#[test]
#[ignore = "needs a GPU"]
fn device_normals_are_seeded_standard_and_prefix_stable() {
    let (_turn, gpu) = gpu();
    let n = 1 << 21;
    let a = gpu.download(&gpu.random_normal_on_device::<f32>(n, 42).unwrap()).unwrap();
    assert_eq!(a, gpu.download(&gpu.random_normal_on_device::<f32>(n, 42).unwrap()).unwrap());
    let other = gpu.download(&gpu.random_normal_on_device::<f32>(n, 43).unwrap()).unwrap();
    assert!(a.iter().zip(&other).filter(|(x, y)| x == y).count() < n / 1000, "seeds 42 and 43 agree");
    let short = gpu.download(&gpu.random_normal_on_device::<f32>(1001, 42).unwrap()).unwrap();
    assert_eq!(short[..], a[..1001], "a shorter buffer gets a prefix");

    let len = n as f64;
    let mean = a.iter().map(|&x| x as f64).sum::<f64>() / len;
    let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / len;
    let within_one = a.iter().filter(|x| x.abs() < 1.0).count() as f64 / len;
    let within_two = a.iter().filter(|x| x.abs() < 2.0).count() as f64 / len;
    let largest = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(mean.abs() < 0.005, "mean {mean}");
    assert!((var - 1.0).abs() < 0.01, "variance {var}");
    assert!((within_one - 0.682_689).abs() < 0.002, "P(|z| < 1) = {within_one}");
    assert!((within_two - 0.954_500).abs() < 0.002, "P(|z| < 2) = {within_two}");
    assert!(largest > 4.0 && largest <= 6.67, "largest |z| {largest}");
    assert!(a.iter().all(|x| x.is_finite()));
}

/// Device normals of type T with `seed`, against the f32 ones rounded on the host: within
/// `rel` of the value (plus `abs` for subnormals), and, with `exact`, equal to host rounding.
fn check_rounded<T: Element>(gpu: &Gpu, seed: u64, rel: f64, abs: f64, exact: bool) {
    let n = 100_000;
    let reference = gpu.download(&gpu.random_normal_on_device::<f32>(n, seed).unwrap()).unwrap();
    let values = gpu.download(&gpu.random_normal_on_device::<T>(n, seed).unwrap()).unwrap();
    for (i, (&z, x)) in reference.iter().zip(&values).enumerate() {
        let (z, x) = (z as f64, x.to_f64());
        assert!((x - z).abs() <= rel * z.abs() + abs, "{} element {i}: {x} for {z}", T::DTYPE);
        if exact {
            assert_eq!(x, T::from_f64(z).to_f64(), "{} element {i}: {x} for {z}", T::DTYPE);
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn device_normals_are_rounded_to_each_type() {
    let (_turn, gpu) = gpu();
    check_rounded::<f16>(&gpu, 9, DType::F16.epsilon(), 6e-8, true);
    check_rounded::<bf16>(&gpu, 9, DType::BF16.epsilon(), 1e-38, true);
    check_rounded::<F8E4M3>(&gpu, 9, DType::F8E4M3.epsilon(), 1.0 / 1024.0, false);
    check_rounded::<F8E5M2>(&gpu, 9, DType::F8E5M2.epsilon(), 1.0 / 131072.0, false);
    check_rounded::<i64>(&gpu, 9, 0.0, 0.5, true);
}

/// Checks every output vector of a roofline against the XOR of its inputs, and that the
/// bytes past each output stream's size are untouched.
fn check_roofline(gpu: &Gpu, reads: &[usize], writes: &[usize]) {
    let mut roofline = Roofline::new(gpu, reads, writes).unwrap();
    roofline.run().unwrap();
    let words = |buf: &CudaSlice<f32>| -> Vec<u32> { gpu.download(buf).unwrap().iter().map(|x| x.to_bits()).collect() };
    let inputs: Vec<Vec<u32>> = roofline.inputs().iter().map(words).collect();
    for (k, (output, &bytes)) in roofline.outputs().iter().zip(writes).enumerate() {
        let out = words(output);
        for i in 0..bytes / 16 {
            let mut want = index_vector(i as u64);
            for (input, &in_bytes) in inputs.iter().zip(reads) {
                if i < in_bytes / 16 {
                    for (w, word) in want.iter_mut().enumerate() {
                        *word ^= input[4 * i + w];
                    }
                }
            }
            assert_eq!(out[4 * i..4 * i + 4], want, "{reads:?} {writes:?}: output {k} vector {i}");
        }
        let past: Vec<u8> = out.iter().flat_map(|w| w.to_le_bytes()).skip(bytes).collect();
        assert!(past.iter().all(|&b| b == 0), "{reads:?} {writes:?}: output {k} written past its {bytes} bytes");
    }
}

#[test]
#[ignore = "needs a GPU"]
fn the_roofline_streams_every_input_into_every_output() {
    let (_turn, gpu) = gpu();
    // add: two reads, one write, the same length, with a tail.
    check_roofline(&gpu, &[1 << 20, 1 << 20], &[1 << 20]);
    check_roofline(&gpu, &[100_003, 100_003], &[100_003]);
    // Streams of different lengths, and the most streams there are.
    check_roofline(&gpu, &[4096, 64, 1 << 16, 48], &[1 << 16, 4, 33, 4096]);
    // Writes only, and reads only (what the L2 flush runs).
    check_roofline(&gpu, &[], &[12_345]);
    check_roofline(&gpu, &[1 << 24], &[]);
    let too_many = Roofline::new(&gpu, &[16; 5], &[]);
    assert!(matches!(too_many, Err(GpuError::InvalidShape { .. })));
}

#[test]
#[ignore = "needs a GPU"]
fn a_roofline_timed_against_itself_scores_about_one() {
    let (_turn, gpu) = gpu();
    let n = 256 << 20;
    let mut same = Roofline::new(&gpu, &[n, n], &[n]).unwrap();
    let timing = time_against_roofline_with(&gpu, TimingConfig::default(), &[n, n], &[n], &mut |_| same.run()).unwrap();
    assert_eq!(timing.bytes, 3 * n);
    assert!((0.95..1.05).contains(&timing.ratio()), "{timing:?}");
    // Far above PCIe, below anything HBM does: the timing measured the GPU's streaming.
    assert!((500.0..10_000.0).contains(&timing.roofline_gbs()), "{timing:?}");
}

#[test]
#[ignore = "needs a GPU"]
fn the_timer_flushes_and_summarizes_each_candidate() {
    let (_turn, gpu) = gpu();
    let config = TimingConfig { warmup: 2, min_reps: 7, max_reps: 7, budget_ms: 1.0, flush_l2: true };
    let mut timer = Timer::new(&gpu, config).unwrap();
    let mut small = Roofline::new(&gpu, &[1 << 20], &[1 << 20]).unwrap();
    let mut large = Roofline::new(&gpu, &[256 << 20], &[256 << 20]).unwrap();
    let mut runs = [Vec::new(), Vec::new()];
    let (small_runs, large_runs) = runs.split_at_mut(1);
    let stats = timer
        .time_interleaved(&mut [
            &mut |rep| {
                small_runs[0].push(rep);
                small.run()
            },
            &mut |rep| {
                large_runs[0].push(rep);
                large.run()
            },
        ])
        .unwrap();
    for s in &stats {
        assert_eq!(s.samples, 7);
        assert!(s.min_us > 0.0 && s.min_us <= s.median_us && s.median_us <= s.max_us, "{s:?}");
    }
    // 256 times the bytes: far slower, even with the small one's launch overhead.
    assert!(stats[1].median_us > 4.0 * stats[0].median_us, "{stats:?}");
    // Warm-up (indices 0..2 offset by the candidate), the estimate (0), then runs 0..7.
    assert_eq!(runs[0], [0, 1, 0, 0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(runs[1], [1, 2, 0, 0, 1, 2, 3, 4, 5, 6]);
}
