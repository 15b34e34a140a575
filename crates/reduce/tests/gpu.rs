//! The element-wise family and the reductions on the GPU, against the float64 references of
//! `ckb_reduce::reference`: every op and type, lengths 1, 7, 4099 and 2^20 + 3, views off
//! 16-byte alignment, outputs poisoned with NaN (and the elements around a view checked
//! untouched), reproducibility, and more than 2^31 elements. The GPU tests are ignored
//! where there is no GPU (`cargo xtask test` runs them on one); the validation tests at the
//! end run everywhere.

use ckb_common::{bf16, f16, random, to_f64_vec, DType, Gpu};
use ckb_reduce::elementwise::{self as ew, BinaryOp};
use ckb_reduce::reduce::{AxisProblem, ReduceVariant};
use ckb_reduce::reference::{self as cpu, FloatType, StridedView};
use ckb_reduce::{ArgOp, EwElement, ReduceError, ReduceOp, ReduceOutput, Reducer};
use cudarc::driver::CudaSlice;

const LENGTHS: [usize; 4] = [1, 7, 4099, (1 << 20) + 3];
/// Room around every view so that offsets 0..=7 fit and stray writes show.
const PAD: usize = 8;

fn gpu() -> Gpu {
    Gpu::new(0).expect("these tests need a Hopper GPU")
}

fn float_type(dtype: DType) -> FloatType {
    match dtype {
        DType::F32 => FloatType::F32,
        DType::F16 => FloatType::F16,
        DType::BF16 => FloatType::BF16,
        other => panic!("no {other} here"),
    }
}

/// Offsets (in elements) of the operands' views: aligned, all equally misaligned (scalar
/// head, then vectors), and misaligned by different amounts (the all-scalar fallback).
fn offset_sets(n: usize) -> Vec<[usize; 3]> {
    let mut sets = vec![[0, 0, 0], [3, 3, 3], [1, 2, 3], [0, 5, 0]];
    if n < 1 << 20 {
        sets.extend((1..PAD).map(|o| [o, o, o]));
        sets.extend([[7, 0, 1], [2, 6, 4]]);
    }
    sets
}

/// Random normal values of T in a buffer of n + PAD elements.
fn padded_input<T: EwElement>(gpu: &Gpu, n: usize, seed: u64) -> (CudaSlice<T>, Vec<f64>) {
    let host = random::normal::<T>(n + PAD, seed);
    (gpu.upload(&host).unwrap(), to_f64_vec(&host))
}

/// Asserts that `got[off..off + want.len()]` matches `want` within `rel * |want| + abs`, and
/// that every element outside the view is still NaN (poison) — nothing wrote there.
fn check_view(what: &str, got: &[f64], off: usize, want: &[f64], rel: f64, abs: f64) {
    for (i, g) in got.iter().enumerate() {
        if i < off || i >= off + want.len() {
            assert!(g.is_nan(), "{what}: element {i} outside the view [{off}, {}) was written: {g}", off + want.len());
        }
    }
    for (i, (&g, &w)) in got[off..off + want.len()].iter().zip(want).enumerate() {
        let ok = if w.is_nan() { g.is_nan() } else { (g - w).abs() <= rel * w.abs() + abs };
        assert!(ok, "{what}: element {i} is {g}, the reference {w}");
    }
}

/// Tolerance of an element-wise result in T: one rounding of T (twice its unit roundoff for
/// the f32 -> T double rounding), and for f32 well inside 1e-5.
fn ew_tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F32 => (1e-6, 1e-30),
        DType::F16 => (2.0 * dtype.epsilon(), 6e-8), // plus f16's smallest subnormal
        _ => (2.0 * dtype.epsilon(), 1e-30),
    }
}

fn reference_binary(op: BinaryOp, a: &[f64], b: &[f64]) -> Vec<f64> {
    match op {
        BinaryOp::Add => cpu::add(a, b),
        BinaryOp::Sub => cpu::sub(a, b),
        BinaryOp::Mul => cpu::mul(a, b),
        BinaryOp::AddRelu => cpu::add_relu(a, b),
    }
}

fn check_binary<T: EwElement>(gpu: &Gpu, op: BinaryOp) {
    let (rel, abs) = ew_tolerance(T::DTYPE);
    for n in LENGTHS {
        let (a, a_host) = padded_input::<T>(gpu, n, 1);
        let (b, b_host) = padded_input::<T>(gpu, n, 2);
        for [oa, ob, oo] in offset_sets(n) {
            let mut out = gpu.poisoned::<T>(n + PAD).unwrap();
            ew::binary_with(
                gpu,
                ew::EwVariant::default(),
                op,
                &a.slice(oa..oa + n),
                &b.slice(ob..ob + n),
                &mut out.slice_mut(oo..oo + n),
            )
            .unwrap();
            let want: Vec<f64> = reference_binary(op, &a_host[oa..oa + n], &b_host[ob..ob + n])
                .into_iter()
                .map(|x| float_type(T::DTYPE).round(x))
                .collect();
            let got = to_f64_vec(&gpu.download(&out).unwrap());
            check_view(&format!("{} {} n={n} offsets {oa},{ob},{oo}", op.name(), T::DTYPE), &got, oo, &want, rel, abs);
        }
    }
}

fn for_each_type(check: impl Fn(DType)) {
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        check(dtype);
    }
}

#[test]
#[ignore = "needs a GPU"]
fn binary_ops_match_the_reference() {
    let gpu = gpu();
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::AddRelu] {
        for_each_type(|dtype| match dtype {
            DType::F32 => check_binary::<f32>(&gpu, op),
            DType::F16 => check_binary::<f16>(&gpu, op),
            _ => check_binary::<bf16>(&gpu, op),
        });
    }
}

#[test]
#[ignore = "needs a GPU"]
fn every_element_wise_variant_is_correct() {
    let gpu = gpu();
    let n = (1 << 20) + 3;
    let (a, a_host) = padded_input::<f32>(&gpu, n, 3);
    let (b, b_host) = padded_input::<f32>(&gpu, n, 4);
    for variant in ew::EW_VARIANTS {
        let mut out = gpu.poisoned::<f32>(n + PAD).unwrap();
        ew::binary_with(
            &gpu,
            *variant,
            BinaryOp::Add,
            &a.slice(1..1 + n),
            &b.slice(1..1 + n),
            &mut out.slice_mut(1..1 + n),
        )
        .unwrap();
        let want = cpu::add(&a_host[1..1 + n], &b_host[1..1 + n]);
        check_view(variant.name, &to_f64_vec(&gpu.download(&out).unwrap()), 1, &want, 1e-6, 0.0);
    }
}

fn check_alpha_ops<T: EwElement>(gpu: &Gpu) {
    let (rel, abs) = ew_tolerance(T::DTYPE);
    let alpha = -1.7f32;
    let round = |v: Vec<f64>| v.into_iter().map(|x| float_type(T::DTYPE).round(x)).collect::<Vec<_>>();
    for n in LENGTHS {
        let (x, x_host) = padded_input::<T>(gpu, n, 5);
        for [ox, _, oo] in offset_sets(n) {
            let what = format!("{} n={n} offsets {ox},{oo}", T::DTYPE);
            // scale
            let mut out = gpu.poisoned::<T>(n + PAD).unwrap();
            ew::scale(gpu, alpha, &x.slice(ox..ox + n), &mut out.slice_mut(oo..oo + n)).unwrap();
            let want = round(cpu::scale(f64::from(alpha), &x_host[ox..ox + n]));
            check_view(&format!("scale {what}"), &to_f64_vec(&gpu.download(&out).unwrap()), oo, &want, rel, abs);
            // axpy: y starts as random values in the view, NaN around it
            let y_init = random::normal::<T>(n, 6);
            let mut y = gpu.poisoned::<T>(n + PAD).unwrap();
            gpu.stream.memcpy_htod(&y_init, &mut y.slice_mut(oo..oo + n)).unwrap();
            ew::axpy(gpu, alpha, &x.slice(ox..ox + n), &mut y.slice_mut(oo..oo + n)).unwrap();
            let mut want = to_f64_vec(&y_init);
            cpu::axpy(f64::from(alpha), &x_host[ox..ox + n], &mut want);
            check_view(&format!("axpy {what}"), &to_f64_vec(&gpu.download(&y).unwrap()), oo, &round(want), rel, abs);
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn axpy_and_scale_match_the_reference() {
    let gpu = gpu();
    check_alpha_ops::<f32>(&gpu);
    check_alpha_ops::<f16>(&gpu);
    check_alpha_ops::<bf16>(&gpu);
}

/// Casts round to nearest even exactly as the reference does: compared bit for bit.
fn check_cast<S: EwElement, D: EwElement>(gpu: &Gpu) {
    for n in LENGTHS {
        let (src, src_host) = padded_input::<S>(gpu, n, 7);
        for [os, _, od] in offset_sets(n) {
            let mut dst = gpu.poisoned::<D>(n + PAD).unwrap();
            ew::cast(gpu, &src.slice(os..os + n), &mut dst.slice_mut(od..od + n)).unwrap();
            let want = cpu::cast(&src_host[os..os + n], float_type(D::DTYPE));
            let what = format!("cast {} -> {} n={n} offsets {os},{od}", S::DTYPE, D::DTYPE);
            check_view(&what, &to_f64_vec(&gpu.download(&dst).unwrap()), od, &want, 0.0, 0.0);
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn casts_match_the_reference_bit_for_bit() {
    let gpu = gpu();
    check_cast::<f32, f16>(&gpu);
    check_cast::<f32, bf16>(&gpu);
    check_cast::<f16, f32>(&gpu);
    check_cast::<bf16, f32>(&gpu);
    check_cast::<f16, bf16>(&gpu);
    check_cast::<bf16, f16>(&gpu);
    check_cast::<f32, f32>(&gpu);
    check_cast::<bf16, bf16>(&gpu);
}

fn check_bias_add<T: EwElement>(gpu: &Gpu) {
    let (rel, abs) = ew_tolerance(T::DTYPE);
    // Columns that are and are not a multiple of the pack, one column, one row, and a
    // row count that makes the last tile partial.
    for (m, n) in [(1, 1), (3, 7), (5, 1), (1, 4099), (64, 4099), (1025, 1024), (257, 96), (2, 8)] {
        let (x, x_host) = padded_input::<T>(gpu, m * n, 8);
        let (bias, bias_host) = padded_input::<T>(gpu, n, 9);
        for [ox, ob, oo] in [[0, 0, 0], [3, 3, 3], [1, 0, 1], [0, 5, 0], [2, 4, 6]] {
            let mut out = gpu.poisoned::<T>(m * n + PAD).unwrap();
            ew::bias_add(
                gpu,
                m,
                n,
                &x.slice(ox..ox + m * n),
                &bias.slice(ob..ob + n),
                &mut out.slice_mut(oo..oo + m * n),
            )
            .unwrap();
            let want: Vec<f64> = cpu::bias_add(&x_host[ox..ox + m * n], m, n, n, &bias_host[ob..ob + n])
                .into_iter()
                .map(|v| float_type(T::DTYPE).round(v))
                .collect();
            let what = format!("bias_add {} {m}x{n} offsets {ox},{ob},{oo}", T::DTYPE);
            check_view(&what, &to_f64_vec(&gpu.download(&out).unwrap()), oo, &want, rel, abs);
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn bias_add_matches_the_reference() {
    let gpu = gpu();
    check_bias_add::<f32>(&gpu);
    check_bias_add::<f16>(&gpu);
    check_bias_add::<bf16>(&gpu);
}

#[test]
#[ignore = "needs a GPU"]
fn element_wise_length_mismatches_are_typed_errors() {
    let gpu = gpu();
    let a = gpu.zeros::<f32>(10).unwrap();
    let b = gpu.zeros::<f32>(11).unwrap();
    let short = gpu.zeros::<f32>(9).unwrap();
    let mut out = gpu.zeros::<f32>(10).unwrap();
    let mut half = gpu.zeros::<bf16>(9).unwrap();
    // Longer buffers are fine (at least the needed length); shorter ones are refused.
    ew::add(&gpu, &a, &b, &mut out).unwrap();
    assert!(matches!(ew::add(&gpu, &a, &short, &mut out), Err(ReduceError::LengthMismatch { what: "b", .. })));
    assert!(matches!(ew::axpy(&gpu, 1.0, &b, &mut out), Err(ReduceError::LengthMismatch { what: "y", .. })));
    assert!(matches!(ew::cast(&gpu, &a, &mut half), Err(ReduceError::LengthMismatch { what: "dst", .. })));
    assert!(matches!(
        ew::bias_add(&gpu, 2, 5, &a, &a.slice(0..4), &mut out),
        Err(ReduceError::LengthMismatch { what: "bias", .. })
    ));
    assert!(matches!(
        ew::bias_add(&gpu, 3, 5, &a, &a.slice(0..5), &mut out),
        Err(ReduceError::LengthMismatch { what: "x", .. })
    ));
    // Empty inputs are no-ops.
    let empty = gpu.zeros::<f32>(0).unwrap();
    let mut empty_out = gpu.zeros::<f32>(0).unwrap();
    assert_eq!(ew::add(&gpu, &empty, &empty, &mut empty_out).unwrap().path, ew::EwPath::Empty);
    assert_eq!(ew::bias_add(&gpu, 0, 5, &empty, &a.slice(0..5), &mut empty_out).unwrap().path, ew::EwPath::Empty);
    // What ran: aligned views take vectors from the start, views one element apart in their
    // alignment take the scalar path, a same-type cast is a copy.
    assert_eq!(ew::add(&gpu, &a, &b, &mut out).unwrap().path, ew::EwPath::Vector { head: 0 });
    assert_eq!(
        ew::add(&gpu, &a.slice(1..9), &b.slice(1..9), &mut out.slice_mut(1..9)).unwrap().path,
        ew::EwPath::Vector { head: 3 }
    );
    assert_eq!(ew::add(&gpu, &a.slice(1..9), &b.slice(0..8), &mut out).unwrap().path, ew::EwPath::Scalar);
    assert_eq!(ew::cast(&gpu, &a, &mut out).unwrap().path, ew::EwPath::Copy);
}

// --- Reductions -----------------------------------------------------------------------------

fn reference_op(op: ReduceOp) -> cpu::ReduceOp {
    match op {
        ReduceOp::Sum => cpu::ReduceOp::Sum,
        ReduceOp::Mean => cpu::ReduceOp::Mean,
        ReduceOp::Max => cpu::ReduceOp::Max,
        ReduceOp::Min => cpu::ReduceOp::Min,
        ReduceOp::SumOfSquares => cpu::ReduceOp::SumOfSquares,
        ReduceOp::L2Norm => cpu::ReduceOp::L2Norm,
    }
}

fn reference_arg(op: ArgOp) -> cpu::ArgOp {
    match op {
        ArgOp::ArgMax => cpu::ArgOp::ArgMax,
        ArgOp::ArgMin => cpu::ArgOp::ArgMin,
    }
}

/// The bound on |got - want| for a reduction of `lane` written as `out`: f32 accumulation
/// (1e-5 relative to the result, or to the lane's L2 norm for sums that may cancel), plus one
/// rounding of the output type. Max and min are exact.
fn reduce_bound(op: ReduceOp, lane: &[f64], want: f64, out: DType) -> f64 {
    let norm = lane.iter().map(|x| x * x).sum::<f64>().sqrt();
    let accumulation = match op {
        ReduceOp::Max | ReduceOp::Min => 0.0,
        ReduceOp::Sum => 1e-5 * (want.abs() + norm),
        ReduceOp::Mean => 1e-5 * (want.abs() + norm / lane.len() as f64),
        ReduceOp::SumOfSquares | ReduceOp::L2Norm => 1e-5 * want.abs(),
    };
    let rounding = if out == DType::F32 || matches!(op, ReduceOp::Max | ReduceOp::Min) {
        0.0
    } else {
        2.0 * out.epsilon() * want.abs()
    };
    accumulation + rounding
}

/// The exact result as the output type can hold it: overflow to inf (a sum of squares of a
/// million f16 values is past f16's range), subnormals on their grid.
fn representable(want: f64, out: DType) -> f64 {
    match out {
        DType::F16 => FloatType::F16.round(want),
        DType::BF16 => FloatType::BF16.round(want),
        _ => FloatType::F32.round(want),
    }
}

/// Half the spacing of the output type's subnormals: the absolute rounding error near zero.
fn subnormal_step(out: DType) -> f64 {
    match out {
        DType::F16 => 2f64.powi(-24),
        DType::BF16 => 2f64.powi(-133),
        _ => 2f64.powi(-149),
    }
}

fn check_reduce_value(what: &str, op: ReduceOp, lane: &[f64], got: f64, want: f64, out: DType) {
    let want = representable(want, out);
    let bound = reduce_bound(op, lane, want, out) + subnormal_step(out);
    let ok = if want.is_nan() || want.is_infinite() {
        got.to_bits() == want.to_bits() || (want.is_nan() && got.is_nan())
    } else {
        (got - want).abs() <= bound
    };
    assert!(ok, "{what}: got {got}, the reference {want} (bound {bound:.3e})");
}

/// Full reductions of every op at every length and view offset, into O.
fn check_full<T: EwElement, O: ReduceOutput<T>>(gpu: &Gpu, reducer: &mut Reducer) {
    for n in LENGTHS {
        let (x, x_host) = padded_input::<T>(gpu, n, 11);
        let offsets: Vec<usize> = if n < 1 << 20 { (0..PAD).collect() } else { vec![0, 1, 5] };
        for off in offsets {
            let view = x.slice(off..off + n);
            let lane = &x_host[off..off + n];
            for op in ReduceOp::ALL {
                let mut out = gpu.poisoned::<O>(1).unwrap();
                reducer.reduce(op, &view, &mut out).unwrap();
                let got = gpu.download(&out).unwrap()[0].to_f64();
                let want = cpu::reduce(reference_op(op), lane).unwrap();
                let what = format!("{} {} -> {} n={n} offset {off}", op.name(), T::DTYPE, O::DTYPE);
                check_reduce_value(&what, op, lane, got, want, O::DTYPE);
            }
            for op in ArgOp::ALL {
                let mut value = gpu.poisoned::<O>(1).unwrap();
                let mut index = gpu.stream.alloc_zeros::<i64>(1).unwrap();
                reducer.arg_reduce(op, &view, &mut value, &mut index).unwrap();
                let want = cpu::arg_reduce(reference_arg(op), lane).unwrap();
                let what = format!("{} {} -> {} n={n} offset {off}", op.name(), T::DTYPE, O::DTYPE);
                assert_eq!(gpu.stream.clone_dtoh(&index).unwrap()[0], want.index as i64, "{what}: index");
                assert_eq!(gpu.download(&value).unwrap()[0].to_f64(), want.value, "{what}: value");
            }
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn full_reductions_match_the_reference() {
    let gpu = gpu();
    let mut reducer = Reducer::new(&gpu).unwrap();
    check_full::<f32, f32>(&gpu, &mut reducer);
    check_full::<f16, f16>(&gpu, &mut reducer);
    check_full::<f16, f32>(&gpu, &mut reducer);
    check_full::<bf16, bf16>(&gpu, &mut reducer);
    check_full::<bf16, f32>(&gpu, &mut reducer);
}

/// Axis reductions over 1-, 2- and 3-D shapes, every axis, at two view offsets.
fn check_axes<T: EwElement, O: ReduceOutput<T>>(gpu: &Gpu, reducer: &mut Reducer) {
    let shapes: [&[usize]; 12] = [
        &[1, 1],
        &[3, 7],
        &[7, 4099],
        &[4099, 7],
        &[64, 1000],
        &[1000, 64],
        &[300, 513],
        &[3, 5, 7],
        &[2, 4099, 3],
        &[4, 7, 33],
        &[5, 300, 64],
        &[33],
    ];
    for shape in shapes {
        let total: usize = shape.iter().product();
        let (x, x_host) = padded_input::<T>(gpu, total, 13);
        for off in [0, 3] {
            let view = x.slice(off..off + total);
            let tensor = StridedView::contiguous(&x_host[off..off + total], shape).unwrap();
            for axis in 0..shape.len() {
                let problem = AxisProblem::along("test", shape, axis).unwrap();
                let outputs = problem.outputs();
                let what =
                    |name: &str| format!("{name} {} -> {} {shape:?} axis {axis} offset {off}", T::DTYPE, O::DTYPE);
                for op in ReduceOp::ALL {
                    let mut out = gpu.poisoned::<O>(outputs).unwrap();
                    reducer.reduce_axis(op, &view, shape, axis, &mut out).unwrap();
                    let got = to_f64_vec(&gpu.download(&out).unwrap());
                    let want = cpu::reduce_axis(reference_op(op), &tensor, axis).unwrap();
                    for (j, (&g, &w)) in got.iter().zip(&want).enumerate() {
                        let lane = lane_of(&x_host[off..off + total], &problem, j);
                        check_reduce_value(&format!("{} output {j}", what(op.name())), op, &lane, g, w, O::DTYPE);
                    }
                }
                for op in ArgOp::ALL {
                    let mut values = gpu.poisoned::<O>(outputs).unwrap();
                    let mut indices = gpu.stream.alloc_zeros::<i64>(outputs).unwrap();
                    reducer.arg_reduce_axis(op, &view, shape, axis, &mut values, &mut indices).unwrap();
                    let want = cpu::arg_reduce_axis(reference_arg(op), &tensor, axis).unwrap();
                    let got_values = to_f64_vec(&gpu.download(&values).unwrap());
                    let got_indices = gpu.stream.clone_dtoh(&indices).unwrap();
                    for (j, w) in want.iter().enumerate() {
                        assert_eq!(got_indices[j], w.index as i64, "{} output {j}: index", what(op.name()));
                        assert_eq!(got_values[j], w.value, "{} output {j}: value", what(op.name()));
                    }
                }
            }
        }
    }
}

/// The elements reduced into output j of `problem` (row-major x).
fn lane_of(x: &[f64], problem: &AxisProblem, j: usize) -> Vec<f64> {
    let (o, i) = (j / problem.inner, j % problem.inner);
    (0..problem.len).map(|k| x[(o * problem.len + k) * problem.inner + i]).collect()
}

#[test]
#[ignore = "needs a GPU"]
fn axis_reductions_match_the_reference() {
    let gpu = gpu();
    let mut reducer = Reducer::new(&gpu).unwrap();
    check_axes::<f32, f32>(&gpu, &mut reducer);
    check_axes::<f16, f16>(&gpu, &mut reducer);
    check_axes::<f16, f32>(&gpu, &mut reducer);
    check_axes::<bf16, bf16>(&gpu, &mut reducer);
    check_axes::<bf16, f32>(&gpu, &mut reducer);
}

/// Every row variant on problems that make each of them do real work, through the same checks.
#[test]
#[ignore = "needs a GPU"]
fn every_row_variant_is_correct() {
    let gpu = gpu();
    for variant in [
        ReduceVariant::WarpPerRow,
        ReduceVariant::BlockPerRow,
        ReduceVariant::SplitTwoStage,
        ReduceVariant::SplitSinglePass,
    ] {
        let mut reducer = Reducer::new(&gpu).unwrap();
        reducer.force_variant(Some(variant));
        for (shape, off) in
            [(vec![3usize, 100_003], 1usize), (vec![1, (1 << 20) + 3], 0), (vec![40, 9000], 5), (vec![1, 5], 2)]
        {
            let total: usize = shape.iter().product();
            let (x, x_host) = padded_input::<bf16>(&gpu, total, 17);
            let tensor = StridedView::contiguous(&x_host[off..off + total], &shape).unwrap();
            let problem = AxisProblem::along("test", &shape, 1).unwrap();
            for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::L2Norm] {
                let mut out = gpu.poisoned::<f32>(shape[0]).unwrap();
                reducer.reduce_axis(op, &x.slice(off..off + total), &shape, 1, &mut out).unwrap();
                let got = to_f64_vec(&gpu.download(&out).unwrap());
                let want = cpu::reduce_axis(reference_op(op), &tensor, 1).unwrap();
                for (j, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    let lane = lane_of(&x_host[off..off + total], &problem, j);
                    check_reduce_value(
                        &format!("{} {} {shape:?} row {j}", variant.name(), op.name()),
                        op,
                        &lane,
                        g,
                        w,
                        DType::F32,
                    );
                }
            }
            let mut values = gpu.poisoned::<bf16>(shape[0]).unwrap();
            let mut indices = gpu.stream.alloc_zeros::<i64>(shape[0]).unwrap();
            reducer
                .arg_reduce_axis(ArgOp::ArgMin, &x.slice(off..off + total), &shape, 1, &mut values, &mut indices)
                .unwrap();
            let want = cpu::arg_reduce_axis(cpu::ArgOp::ArgMin, &tensor, 1).unwrap();
            let got = gpu.stream.clone_dtoh(&indices).unwrap();
            assert_eq!(
                got,
                want.iter().map(|w| w.index as i64).collect::<Vec<_>>(),
                "{} argmin {shape:?}",
                variant.name()
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn reductions_are_bitwise_reproducible() {
    let gpu = gpu();
    let mut reducer = Reducer::new(&gpu).unwrap();
    let n = (1 << 24) + 3;
    let x = gpu.random_normal::<f32>(n, 19).unwrap();
    let view = x.slice(1..n);
    let run = |reducer: &mut Reducer, op: ReduceOp| {
        let mut out = gpu.poisoned::<f32>(1).unwrap();
        reducer.reduce(op, &view, &mut out).unwrap();
        gpu.download(&out).unwrap()[0].to_bits()
    };
    for op in ReduceOp::ALL {
        let first = run(&mut reducer, op);
        for _ in 0..3 {
            assert_eq!(run(&mut reducer, op), first, "{} changed between runs", op.name());
        }
        // Single-pass and two-stage combine the same partials in the same order.
        reducer.force_variant(Some(ReduceVariant::SplitTwoStage));
        assert_eq!(run(&mut reducer, op), first, "{}: two-stage differs from single-pass", op.name());
        reducer.force_variant(None);
    }
    // Columns, split along the axis.
    let shape = [4096usize, 4096];
    let cols = gpu.random_normal::<bf16>(shape[0] * shape[1], 23).unwrap();
    let run_cols = |reducer: &mut Reducer| {
        let mut out = gpu.poisoned::<f32>(shape[1]).unwrap();
        reducer.reduce_axis(ReduceOp::Sum, &cols, &shape, 0, &mut out).unwrap();
        gpu.download(&out).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let first = run_cols(&mut reducer);
    for _ in 0..3 {
        assert_eq!(run_cols(&mut reducer), first, "column sums changed between runs");
    }
}

#[test]
#[ignore = "needs a GPU"]
fn empty_inputs_follow_the_reference_rules() {
    let gpu = gpu();
    let mut reducer = Reducer::new(&gpu).unwrap();
    let empty = gpu.zeros::<bf16>(0).unwrap();
    let value = |reducer: &mut Reducer, op| {
        let mut out = gpu.poisoned::<f32>(1).unwrap();
        reducer.reduce(op, &empty, &mut out).map(|_| gpu.download(&out).unwrap()[0])
    };
    assert_eq!(value(&mut reducer, ReduceOp::Sum).unwrap(), 0.0);
    assert_eq!(value(&mut reducer, ReduceOp::SumOfSquares).unwrap(), 0.0);
    assert_eq!(value(&mut reducer, ReduceOp::L2Norm).unwrap(), 0.0);
    assert!(value(&mut reducer, ReduceOp::Mean).unwrap().is_nan());
    for op in [ReduceOp::Max, ReduceOp::Min] {
        assert!(matches!(value(&mut reducer, op), Err(ReduceError::EmptyInput { .. })), "{}", op.name());
    }
    let mut v = gpu.zeros::<f32>(1).unwrap();
    let mut i = gpu.stream.alloc_zeros::<i64>(1).unwrap();
    for op in ArgOp::ALL {
        assert!(matches!(reducer.arg_reduce(op, &empty, &mut v, &mut i), Err(ReduceError::EmptyInput { .. })));
    }
    // An empty axis: a sum of nothing per output.
    let mut out = gpu.poisoned::<bf16>(3).unwrap();
    reducer.reduce_axis(ReduceOp::Sum, &empty, &[3, 0], 1, &mut out).unwrap();
    assert_eq!(to_f64_vec(&gpu.download(&out).unwrap()), vec![0.0; 3]);
    reducer.reduce_axis(ReduceOp::Mean, &empty, &[3, 0], 1, &mut out).unwrap();
    assert!(to_f64_vec(&gpu.download(&out).unwrap()).iter().all(|v| v.is_nan()));
    assert!(matches!(
        reducer.reduce_axis(ReduceOp::Max, &empty, &[3, 0], 1, &mut out),
        Err(ReduceError::EmptyInput { .. })
    ));
    // No outputs, a non-empty axis: nothing to do.
    let mut none = gpu.zeros::<f32>(0).unwrap();
    reducer.reduce_axis(ReduceOp::Max, &empty, &[0, 5], 1, &mut none).unwrap();
}

#[test]
#[ignore = "needs a GPU"]
fn reduction_shape_and_length_errors_are_typed() {
    let gpu = gpu();
    let mut reducer = Reducer::new(&gpu).unwrap();
    let x = gpu.zeros::<f32>(12).unwrap();
    let mut one = gpu.zeros::<f32>(1).unwrap();
    let mut none = gpu.zeros::<f32>(0).unwrap();
    let mut two = gpu.zeros::<f32>(2).unwrap();
    let mut three = gpu.zeros::<f32>(3).unwrap();
    let mut idx = gpu.stream.alloc_zeros::<i64>(3).unwrap();
    assert!(matches!(
        reducer.reduce(ReduceOp::Sum, &x, &mut none),
        Err(ReduceError::LengthMismatch { what: "out", .. })
    ));
    // Longer outputs are fine: only the problem's elements are written.
    reducer.reduce(ReduceOp::Sum, &x, &mut two).unwrap();
    assert!(matches!(
        reducer.reduce_axis(ReduceOp::Sum, &x, &[3, 5], 1, &mut three),
        Err(ReduceError::LengthMismatch { what: "x", .. })
    ));
    assert!(matches!(
        reducer.reduce_axis(ReduceOp::Sum, &x, &[3, 4], 1, &mut two),
        Err(ReduceError::LengthMismatch { what: "out", .. })
    ));
    assert!(matches!(
        reducer.reduce_axis(ReduceOp::Sum, &x, &[3, 4], 2, &mut three),
        Err(ReduceError::BadShape { .. })
    ));
    assert!(matches!(
        reducer.reduce_axis(ReduceOp::Sum, &x, &[1, 3, 2, 2], 0, &mut three),
        Err(ReduceError::BadShape { .. })
    ));
    assert!(matches!(
        reducer.arg_reduce_axis(ArgOp::ArgMax, &x, &[3, 4], 1, &mut three, &mut idx.slice_mut(0..2)),
        Err(ReduceError::LengthMismatch { what: "indices", .. })
    ));
    reducer.force_variant(Some(ReduceVariant::Columns));
    assert!(matches!(reducer.reduce(ReduceOp::Sum, &x, &mut one), Err(ReduceError::VariantMismatch { .. })));
}

/// More than 2^31 elements: 64-bit indexing in the element-wise kernels and the reductions.
/// Built on the device (memsets and a few uploads) to spare the host 2^31 random values.
#[test]
#[ignore = "needs a GPU (and 13 GiB of its memory)"]
fn more_than_two_to_the_31_elements() {
    use cudarc::driver::sys;
    let gpu = gpu();
    let n = (1usize << 31) + 5;
    let filled = |value: f32| {
        let mut buf = gpu.zeros::<bf16>(n).unwrap();
        let (ptr, _sync) = cudarc::driver::DevicePtrMut::device_ptr_mut(&mut buf, &gpu.stream);
        // SAFETY: ptr addresses n bf16 elements on this context.
        unsafe { sys::cuMemsetD16Async(ptr, bf16::from_f32(value).to_bits(), n, gpu.stream.cu_stream()) }
            .result()
            .unwrap();
        drop(_sync);
        buf
    };
    let a = filled(1.0);
    let b = filled(2.0);
    let mut out = gpu.poisoned::<bf16>(n).unwrap();
    ew::add(&gpu, &a, &b, &mut out).unwrap();
    let mut reducer = Reducer::new(&gpu).unwrap();
    // Any unwritten (NaN) element would make max and min NaN.
    for op in [ReduceOp::Max, ReduceOp::Min] {
        let mut v = gpu.poisoned::<f32>(1).unwrap();
        reducer.reduce(op, &out, &mut v).unwrap();
        assert_eq!(gpu.download(&v).unwrap()[0], 3.0, "add over 2^31 + 5 elements, {}", op.name());
    }
    drop(out);
    drop(b);

    // a: ones, with 3 at 2^31 + 2 and -2 at the last index.
    let mut a = a;
    let (hi, last) = ((1usize << 31) + 2, n - 1);
    gpu.stream.memcpy_htod(&[bf16::from_f32(3.0)], &mut a.slice_mut(hi..hi + 1)).unwrap();
    gpu.stream.memcpy_htod(&[bf16::from_f32(-2.0)], &mut a.slice_mut(last..last + 1)).unwrap();
    let mut v = gpu.poisoned::<f32>(1).unwrap();
    let mut i = gpu.stream.alloc_zeros::<i64>(1).unwrap();
    reducer.arg_reduce(ArgOp::ArgMax, &a, &mut v, &mut i).unwrap();
    assert_eq!((gpu.download(&v).unwrap()[0], gpu.stream.clone_dtoh(&i).unwrap()[0]), (3.0, hi as i64));
    reducer.arg_reduce(ArgOp::ArgMin, &a, &mut v, &mut i).unwrap();
    assert_eq!((gpu.download(&v).unwrap()[0], gpu.stream.clone_dtoh(&i).unwrap()[0]), (-2.0, last as i64));
    reducer.reduce(ReduceOp::Sum, &a, &mut v).unwrap();
    let want = (n - 2) as f64 + 3.0 - 2.0;
    let got = f64::from(gpu.download(&v).unwrap()[0]);
    assert!((got - want).abs() <= 1e-6 * want, "sum of 2^31 + 5 elements: {got} vs {want}");
    // A row reduction with rows beyond 2^31 elements in: two rows of 2^30 + 2 (plus change).
    let rows = [2usize, (n - 1) / 2];
    let mut sums = gpu.poisoned::<f32>(2).unwrap();
    reducer.reduce_axis(ReduceOp::Sum, &a.slice(1..n), &rows, 1, &mut sums).unwrap();
    let sums = gpu.download(&sums).unwrap();
    let second_want = (rows[1] - 2) as f64 + 3.0 - 2.0; // row 1 holds 3.0 and -2.0 among ones
    assert!((f64::from(sums[1]) - second_want).abs() <= 1e-6 * second_want, "row 1: {} vs {second_want}", sums[1]);
}

// --- Validation, no GPU needed --------------------------------------------------------------

#[test]
fn axis_problems_reject_bad_shapes() {
    assert!(matches!(AxisProblem::along("sum", &[2, 3], 2), Err(ReduceError::BadShape { .. })));
    assert!(matches!(AxisProblem::along("sum", &[], 0), Err(ReduceError::BadShape { .. })));
    assert!(matches!(AxisProblem::along("sum", &[2, 2, 2, 2], 0), Err(ReduceError::BadShape { .. })));
    assert!(matches!(AxisProblem::along("sum", &[usize::MAX, 2, 2], 1), Err(ReduceError::BadShape { .. })));
    assert_eq!(AxisProblem::along("sum", &[2, 3, 4], 0).unwrap(), AxisProblem { outer: 1, len: 2, inner: 12 });
}

#[test]
fn bias_add_shapes_that_overflow_are_rejected() {
    use ckb_reduce::problem::BiasAddProblem;
    assert!(matches!(BiasAddProblem { m: 1 << 40, n: 1 << 40 }.validate(), Err(ReduceError::BadShape { .. })));
}

#[test]
fn empty_rules_match_the_reference() {
    for op in ReduceOp::ALL {
        let ours = op.empty_value();
        let reference = cpu::reduce(reference_op(op), &[]).ok();
        let same = match (ours, reference) {
            (Some(a), Some(b)) => a == b || (a.is_nan() && b.is_nan()),
            (a, b) => a.is_none() && b.is_none(),
        };
        assert!(same, "{}: ours {ours:?}, the reference {reference:?}", op.name());
    }
}

#[test]
fn row_variants_refuse_strided_axes() {
    let cols = AxisProblem { outer: 2, len: 100, inner: 3 };
    for variant in [
        ReduceVariant::WarpPerRow,
        ReduceVariant::BlockPerRow,
        ReduceVariant::SplitTwoStage,
        ReduceVariant::SplitSinglePass,
    ] {
        assert!(matches!(variant.plan(&cols, 4, 132), Err(ReduceError::VariantMismatch { .. })));
    }
}

/// `verify` on real results: max and min of planted inputs (both plantings), row sums,
/// argmax along rows, an add and a cast pass; a max one ulp off and an index one off fail.
#[test]
#[ignore = "needs a GPU"]
fn verify_passes_real_results_and_fails_altered_ones() {
    use ckb_common::{plant_extrema, ulps_away};
    use ckb_reduce::verify::{check_arg_reduce_axis, check_binary, check_cast, check_reduce, check_reduce_axis};
    let gpu = gpu();
    let mut reducer = Reducer::new(&gpu).unwrap();
    let n = 1_000_007;
    for max_at_tail in [true, false] {
        let mut host: Vec<bf16> = random::normal(n, 1);
        plant_extrema(&mut host, max_at_tail, 2).unwrap();
        let x = gpu.upload(&host).unwrap();
        for op in [ReduceOp::Max, ReduceOp::Min] {
            let mut out = gpu.poisoned::<bf16>(1).unwrap();
            reducer.reduce(op, &x, &mut out).unwrap();
            let c = check_reduce(&gpu, op, &x, &out).unwrap();
            assert!(c.passed, "{} tail {max_at_tail}: {c:?}", op.name());
            let off = gpu.upload(&[bf16::from_f64(ulps_away(gpu.download(&out).unwrap()[0].to_f64(), DType::BF16, 1))]);
            assert!(!check_reduce(&gpu, op, &x, &off.unwrap()).unwrap().passed, "{} one ulp off", op.name());
        }
    }
    let shape = [256, 4096];
    let x = gpu.random_normal::<f32>(256 * 4096, 3).unwrap();
    let mut sums = gpu.poisoned::<f32>(256).unwrap();
    reducer.reduce_axis(ReduceOp::Sum, &x, &shape, 1, &mut sums).unwrap();
    let c = check_reduce_axis(&gpu, ReduceOp::Sum, &x, &shape, 1, &sums).unwrap();
    assert!(c.passed, "row sums: {c:?}");

    let shape = [64, 10000];
    let x = gpu.random_normal::<bf16>(64 * 10000, 4).unwrap();
    let (mut values, mut indices) = (gpu.poisoned::<f32>(64).unwrap(), gpu.stream.alloc_zeros::<i64>(64).unwrap());
    reducer.arg_reduce_axis(ArgOp::ArgMax, &x, &shape, 1, &mut values, &mut indices).unwrap();
    let c = check_arg_reduce_axis(&gpu, ArgOp::ArgMax, &x, &shape, 1, &values, &indices).unwrap();
    assert!(c.summary.passed, "argmax: {c:?}");
    let mut shifted = gpu.stream.clone_dtoh(&indices).unwrap();
    shifted[17] = (shifted[17] + 1) % 10000;
    let shifted = gpu.stream.clone_htod(&shifted).unwrap();
    let c = check_arg_reduce_axis(&gpu, ArgOp::ArgMax, &x, &shape, 1, &values, &shifted).unwrap();
    assert_eq!((c.summary.passed, c.first_index_mismatch), (false, Some(17)));

    let (a, b) = (gpu.random_normal::<bf16>(1 << 20, 5).unwrap(), gpu.random_normal::<bf16>(1 << 20, 6).unwrap());
    let mut sum = gpu.poisoned::<bf16>(1 << 20).unwrap();
    ew::add(&gpu, &a, &b, &mut sum).unwrap();
    let c = check_binary(&gpu, BinaryOp::Add, &a, &b, &sum).unwrap();
    assert!(c.summary.passed, "add: {c:?}");
    let wide = gpu.random_normal::<f32>(1 << 20, 7).unwrap();
    let mut narrow = gpu.poisoned::<bf16>(1 << 20).unwrap();
    ew::cast(&gpu, &wide, &mut narrow).unwrap();
    let c = check_cast(&gpu, &wide, &narrow).unwrap();
    assert!(c.summary.passed, "cast: {c:?}");
}

/// Every call returns the plan `Reducer::plan` gives for its problem, and None when nothing
/// ran (no outputs).
#[test]
#[ignore = "needs a GPU"]
fn calls_return_the_plan_they_ran() {
    let gpu = gpu();
    let mut reducer = Reducer::new(&gpu).unwrap();
    for (shape, axis) in [(vec![1 << 20], 0), (vec![64, 4096], 1), (vec![4096, 64], 0), (vec![3, 0, 5], 2)] {
        let problem = ckb_reduce::reduce::AxisProblem::along("sum", &shape, axis).unwrap();
        let x = gpu.random_normal::<f32>(problem.elements().max(1), 1).unwrap();
        let mut out = gpu.poisoned::<f32>(problem.outputs().max(1)).unwrap();
        let ran = reducer.reduce_axis(ReduceOp::Sum, &x, &shape, axis, &mut out).unwrap();
        let want = (problem.outputs() > 0).then(|| reducer.plan::<f32>(&problem).unwrap());
        assert_eq!(ran, want, "{shape:?} axis {axis}");
        let mut indices = gpu.poisoned::<i64>(problem.outputs().max(1)).unwrap();
        let ran = reducer.arg_reduce_axis(ArgOp::ArgMax, &x, &shape, axis, &mut out, &mut indices);
        if problem.len > 0 {
            assert_eq!(ran.unwrap(), want, "argmax {shape:?} axis {axis}");
        }
    }
}
