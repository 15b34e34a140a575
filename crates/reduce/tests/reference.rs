//! The CPU reductions and element-wise references against naive definitions and identities.

use ckb_reduce::reference::*;
use proptest::prelude::*;

/// Small integers keep sums exact, so results can be compared with `==`; the narrow range
/// makes ties for argmax/argmin common.
fn small_values(len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((-6i32..=6).prop_map(f64::from), len)
}

fn any_values() -> impl Strategy<Value = Vec<f64>> {
    (0usize..=200).prop_flat_map(small_values)
}

/// A 1- to 3-D tensor in a buffer: random axis order (so rows, columns and transposes all
/// occur), padding between lines, and spare elements at the end of the buffer.
fn strided_tensor(ranks: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = (Vec<f64>, Vec<usize>, Vec<usize>)> {
    ranks
        .prop_flat_map(|rank| {
            (
                prop::collection::vec(0usize..=5, rank),
                Just((0..rank).collect::<Vec<_>>()).prop_shuffle(),
                prop::collection::vec(0usize..=2, rank),
                0usize..=3,
            )
        })
        .prop_flat_map(|(shape, innermost_last, padding, spare)| {
            let mut strides = vec![0; shape.len()];
            let mut stride = 1;
            for &axis in innermost_last.iter().rev() {
                strides[axis] = stride;
                stride *= shape[axis] + padding[axis];
            }
            let len = stride + spare;
            (small_values(len), Just(shape), Just(strides))
        })
}

fn with_axis() -> impl Strategy<Value = (Vec<f64>, Vec<usize>, Vec<usize>, usize)> {
    strided_tensor(1..=3).prop_flat_map(|(data, shape, strides)| {
        let rank = shape.len();
        (Just(data), Just(shape), Just(strides), 0..rank)
    })
}

/// The values along `axis` for every output position, outputs in row-major order, by explicit
/// index arithmetic.
fn naive_lanes(data: &[f64], shape: &[usize], strides: &[usize], axis: usize) -> Vec<Vec<f64>> {
    let padded: Vec<usize> = (0..3).map(|a| if a < shape.len() { shape[a] } else { 1 }).collect();
    let stride = |a: usize| strides.get(a).copied().unwrap_or(0);
    let mut lanes = Vec::new();
    for i0 in 0..if axis == 0 { 1 } else { padded[0] } {
        for i1 in 0..if axis == 1 { 1 } else { padded[1] } {
            for i2 in 0..if axis == 2 { 1 } else { padded[2] } {
                let start = i0 * stride(0) + i1 * stride(1) + i2 * stride(2);
                lanes.push((0..shape[axis]).map(|i| data[start + i * strides[axis]]).collect());
            }
        }
    }
    lanes
}

fn naive_reduce(op: ReduceOp, lane: &[f64]) -> f64 {
    let sum: f64 = lane.iter().sum();
    let squares: f64 = lane.iter().map(|x| x * x).sum();
    match op {
        ReduceOp::Sum => sum,
        ReduceOp::Mean => sum / lane.len() as f64,
        ReduceOp::Max => lane.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ReduceOp::Min => lane.iter().copied().fold(f64::INFINITY, f64::min),
        ReduceOp::SumOfSquares => squares,
        ReduceOp::L2Norm => squares.sqrt(),
    }
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

fn any_op() -> impl Strategy<Value = ReduceOp> {
    prop::sample::select(ReduceOp::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn axis_reduction_matches_naive_lanes((data, shape, strides, axis) in with_axis(), op in any_op()) {
        let view = StridedView::new(&data, &shape, &strides).unwrap();
        let lanes = naive_lanes(&data, &shape, &strides, axis);
        match reduce_axis(op, &view, axis) {
            Ok(result) => {
                prop_assert_eq!(result.len(), lanes.len());
                for (got, lane) in result.iter().zip(&lanes) {
                    prop_assert!(same(*got, naive_reduce(op, lane)), "{:?}: {} vs {:?}", op, got, lane);
                }
            }
            Err(err) => {
                prop_assert!(matches!(op, ReduceOp::Max | ReduceOp::Min) && shape[axis] == 0, "{}", err);
            }
        }
    }

    #[test]
    fn axis_argmax_and_argmin_pick_the_first_extreme((data, shape, strides, axis) in with_axis()) {
        prop_assume!(shape[axis] > 0);
        let view = StridedView::new(&data, &shape, &strides).unwrap();
        let lanes = naive_lanes(&data, &shape, &strides, axis);
        for (op, value_op) in [(ArgOp::ArgMax, ReduceOp::Max), (ArgOp::ArgMin, ReduceOp::Min)] {
            let picked = arg_reduce_axis(op, &view, axis).unwrap();
            for (extremum, lane) in picked.iter().zip(&lanes) {
                let extreme = naive_reduce(value_op, lane);
                let first = lane.iter().position(|&v| v == extreme).unwrap();
                prop_assert_eq!(*extremum, Extremum { index: first, value: extreme });
            }
        }
    }

    #[test]
    fn summing_an_axis_then_the_rest_gives_the_full_sum((data, shape, strides, axis) in with_axis()) {
        let view = StridedView::new(&data, &shape, &strides).unwrap();
        let partial = reduce_axis(ReduceOp::Sum, &view, axis).unwrap();
        let everything: Vec<f64> = naive_lanes(&data, &shape, &strides, axis).concat();
        prop_assert_eq!(sum(&partial), sum(&everything));
    }

    #[test]
    fn column_reduction_is_row_reduction_of_the_transpose(
        (data, shape, strides) in strided_tensor(2..=2),
        op in any_op(),
    ) {
        let view = StridedView::new(&data, &shape, &strides).unwrap();
        let transposed = StridedView::new(&data, &[shape[1], shape[0]], &[strides[1], strides[0]]).unwrap();
        match (reduce_axis(op, &view, 0), reduce_axis(op, &transposed, 1)) {
            (Ok(columns), Ok(rows)) => {
                prop_assert_eq!(columns.len(), rows.len());
                prop_assert!(columns.iter().zip(&rows).all(|(&c, &r)| same(c, r)));
            }
            (columns, rows) => prop_assert_eq!(columns, rows),
        }
    }

    #[test]
    fn whole_tensor_reductions_agree_with_each_other(x in any_values()) {
        let n = x.len() as f64;
        prop_assert!(x.is_empty() || (mean(&x) * n - sum(&x)).abs() <= 1e-12 * (1.0 + sum(&x).abs()));
        prop_assert_eq!(sum_of_squares(&x), sum(&mul(&x, &x)));
        prop_assert_eq!(l2_norm(&x), sum_of_squares(&x).sqrt());
        if x.is_empty() {
            prop_assert!(mean(&x).is_nan());
            prop_assert!(max(&x).is_err() && min(&x).is_err() && argmax(&x).is_err() && argmin(&x).is_err());
        } else {
            let (hi, lo) = (argmax(&x).unwrap(), argmin(&x).unwrap());
            prop_assert_eq!(hi.value, max(&x).unwrap());
            prop_assert_eq!(lo.value, min(&x).unwrap());
            prop_assert_eq!(x[hi.index], hi.value);
            prop_assert!(x[..hi.index].iter().all(|&v| v < hi.value));
            prop_assert!(x[..lo.index].iter().all(|&v| v > lo.value));
            prop_assert!(x.iter().all(|&v| lo.value <= v && v <= hi.value));
        }
    }

    #[test]
    fn one_nan_poisons_values_and_is_found_first(mut x in any_values(), at in any::<prop::sample::Index>()) {
        prop_assume!(!x.is_empty());
        let at = at.index(x.len());
        x[at] = f64::NAN;
        for op in ReduceOp::ALL {
            prop_assert!(reduce(op, &x).unwrap().is_nan(), "{:?}", op);
        }
        prop_assert_eq!(argmax(&x).unwrap().index, at);
        prop_assert_eq!(argmin(&x).unwrap().index, at);
    }

    #[test]
    fn element_wise_identities(
        (x, y) in (0usize..=64).prop_flat_map(|n| (small_values(n), small_values(n))),
        alpha in -3i32..=3,
    ) {
        let alpha = f64::from(alpha);
        prop_assert_eq!(sub(&add(&x, &y), &y), x.clone());
        prop_assert_eq!(mul(&x, &y), mul(&y, &x));
        let mut updated = y.clone();
        axpy(alpha, &x, &mut updated);
        prop_assert_eq!(updated, add(&scale(alpha, &x), &y));
        let relu = add_relu(&x, &y);
        for (r, s) in relu.iter().zip(add(&x, &y)) {
            prop_assert_eq!(*r, s.max(0.0));
        }
    }

    #[test]
    fn bias_add_adds_the_bias_to_every_row(
        (rows, cols, padding) in (0usize..=6, 0usize..=6, 0usize..=3),
        seed in small_values(64),
    ) {
        let row_stride = cols + padding;
        let x: Vec<f64> = seed.iter().cycle().take(rows * row_stride).copied().collect();
        let bias: Vec<f64> = seed.iter().rev().take(cols).copied().collect();
        let out = bias_add(&x, rows, cols, row_stride, &bias);
        prop_assert_eq!(out.len(), rows * cols);
        for i in 0..rows {
            prop_assert_eq!(&out[i * cols..(i + 1) * cols], &add(&x[i * row_stride..][..cols], &bias)[..]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn casts_round_to_nearest_even_like_an_independent_rounding(single in any_f32()) {
        let x = f64::from(single);
        prop_assert!(same(FloatType::F32.round(x), x));
        for (to, mantissa_bits, min_exp, max_exp) in [(FloatType::F16, 10, -14, 15), (FloatType::BF16, 7, -126, 127)] {
            let rounded = to.round(x);
            let expected = round_to_format(x, mantissa_bits, min_exp, max_exp);
            prop_assert!(same(rounded, expected), "{:?}: {} rounds to {}, expected {}", to, x, rounded, expected);
            prop_assert!(same(to.round(rounded), rounded), "{:?} is not idempotent at {}", to, x);
        }
    }
}

/// Every f32 bit pattern (NaN, inf, subnormals), with extra weight on the f16 range.
fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![any::<u32>().prop_map(f32::from_bits), -70000.0f32..70000.0, -1e-3f32..1e-3,]
}

/// Round-to-nearest-even into a binary format with `mantissa_bits` stored mantissa bits and
/// normal exponents `min_exp..=max_exp`, by scaling to the unit in the last place: an
/// implementation independent of `half`.
fn round_to_format(x: f64, mantissa_bits: i32, min_exp: i32, max_exp: i32) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let exponent = ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let ulp = 2f64.powi(exponent.max(min_exp) - mantissa_bits);
    let rounded = (x / ulp).round_ties_even() * ulp;
    let max_finite = (2.0 - 2f64.powi(-mantissa_bits)) * 2f64.powi(max_exp);
    if rounded.abs() > max_finite {
        f64::INFINITY.copysign(x)
    } else {
        rounded
    }
}

#[test]
fn empty_input_follows_the_documented_rules() {
    assert_eq!(sum(&[]), 0.0);
    assert_eq!(sum_of_squares(&[]), 0.0);
    assert_eq!(l2_norm(&[]), 0.0);
    assert!(mean(&[]).is_nan());
    assert_eq!(max(&[]), Err(ReduceError::Empty(Reduction::Value(ReduceOp::Max))));
    assert_eq!(argmin(&[]), Err(ReduceError::Empty(Reduction::Arg(ArgOp::ArgMin))));
    let view = StridedView::new(&[], &[3, 0], &[0, 1]).unwrap();
    assert_eq!(reduce_axis(ReduceOp::Sum, &view, 1), Ok(vec![0.0; 3]));
    assert!(reduce_axis(ReduceOp::Mean, &view, 1).unwrap().iter().all(|m| m.is_nan()));
    assert!(reduce_axis(ReduceOp::Min, &view, 1).is_err());
    assert!(arg_reduce_axis(ArgOp::ArgMax, &view, 1).is_err());
}

#[test]
fn ties_across_chunks_pick_the_first_index() {
    let mut x = vec![0.0; 3 * CHUNK + 7];
    x[CHUNK + 3] = 5.0;
    x[2 * CHUNK + 1] = 5.0;
    x[CHUNK - 1] = -5.0;
    x[3 * CHUNK] = -5.0;
    assert_eq!(argmax(&x), Ok(Extremum { index: CHUNK + 3, value: 5.0 }));
    assert_eq!(argmin(&x), Ok(Extremum { index: CHUNK - 1, value: -5.0 }));
    x[3 * CHUNK + 2] = f64::NAN;
    x[2 * CHUNK + 9] = f64::NAN;
    assert_eq!(argmax(&x).unwrap().index, 2 * CHUNK + 9);
}

#[test]
fn infinities_follow_ieee_arithmetic() {
    assert_eq!(max(&[f64::NEG_INFINITY]), Ok(f64::NEG_INFINITY));
    assert_eq!(min(&[1.0, f64::NEG_INFINITY]), Ok(f64::NEG_INFINITY));
    assert!(sum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
    assert_eq!(argmax(&[f64::INFINITY, 1.0, f64::INFINITY]), Ok(Extremum { index: 0, value: f64::INFINITY }));
}

#[test]
fn add_relu_keeps_nan() {
    assert!(add_relu(&[f64::NAN], &[-1.0])[0].is_nan());
    assert_eq!(add_relu(&[-2.0, 2.0], &[1.0, 1.0]), vec![0.0, 3.0]);
}

#[test]
fn casts_saturate_to_infinity_and_keep_nan() {
    assert_eq!(FloatType::F16.round(65504.0), 65504.0);
    assert_eq!(FloatType::F16.round(65520.0), f64::INFINITY);
    assert_eq!(FloatType::F16.round(-1e6), f64::NEG_INFINITY);
    assert_eq!(FloatType::F16.round(1.0 + 2f64.powi(-11)), 1.0); // a tie, to even
    assert_eq!(FloatType::F16.round(1.0 + 3.0 * 2f64.powi(-11)), 1.0 + 4.0 * 2f64.powi(-11));
    assert_eq!(FloatType::F16.round(2f64.powi(-25)), 0.0); // half the smallest subnormal, to even
    assert_eq!(FloatType::BF16.round(1.0 + 1.0 / 256.0), 1.0); // a tie, to even
    assert_eq!(FloatType::BF16.round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0); // a tie, to even
    assert!(cast(&[f64::NAN], FloatType::BF16)[0].is_nan());
    assert_eq!(cast(&[0.1], FloatType::F32), vec![f64::from(0.1f32)]);
}

#[test]
fn views_outside_the_buffer_are_errors() {
    let data = [0.0; 6];
    assert!(StridedView::new(&data, &[2, 3], &[3, 1]).is_ok());
    assert!(matches!(StridedView::new(&data, &[2, 3], &[4, 1]), Err(ReduceError::OutOfBounds { last: 6, len: 6 })));
    assert_eq!(StridedView::new(&data, &[2], &[1, 1]).unwrap_err(), ReduceError::RankMismatch { shape: 1, strides: 2 });
    assert_eq!(StridedView::new(&data, &[1, 1, 1, 1], &[1, 1, 1, 1]).unwrap_err(), ReduceError::UnsupportedRank(4));
    let view = StridedView::contiguous(&data, &[2, 3]).unwrap();
    assert_eq!(view.strides(), &[3, 1]);
    assert_eq!(reduce_axis(ReduceOp::Sum, &view, 2), Err(ReduceError::AxisOutOfRange { axis: 2, rank: 2 }));
}
