//! The CPU convolution reference against im2col x GEMM and naive special cases.

use ckb_conv::reference::{conv2d, im2col};
use ckb_conv::{Conv2dProblem, ConvShapeError};
use proptest::prelude::*;

/// Small integers keep every sum exact, so results can be compared with `==`.
fn small_values(len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((-4i32..=4).prop_map(f64::from), len)
}

/// Valid small convolution shapes, groups and dilation included.
fn params() -> impl Strategy<Value = Conv2dProblem> {
    (
        (0usize..=2, 1usize..=7, 1usize..=7),
        (1usize..=3, 1usize..=3, 1usize..=3),
        (1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3),
        (0usize..=2, 0usize..=2, 1usize..=2, 1usize..=2),
    )
        .prop_map(
            |(
                (batch, in_h, in_w),
                (groups, c_group, k_group),
                (r, s, stride_h, stride_w),
                (pad_h, pad_w, dil_h, dil_w),
            )| {
                Conv2dProblem {
                    stride_h,
                    stride_w,
                    pad_h,
                    pad_w,
                    dilation_h: dil_h,
                    dilation_w: dil_w,
                    groups,
                    ..Conv2dProblem::new(batch, (in_h, in_w), groups * c_group, groups * k_group, (r, s))
                }
            },
        )
        .prop_filter("output must be non-empty", |p| p.check_shape().is_ok())
}

fn with_tensors(
    params: impl Strategy<Value = Conv2dProblem>,
) -> impl Strategy<Value = (Conv2dProblem, Vec<f64>, Vec<f64>)> {
    params.prop_flat_map(|p| (Just(p), small_values(p.input_len().unwrap()), small_values(p.weights_len().unwrap())))
}

/// Row-major `m x k` times the transpose of row-major `n x k`: `out[i][j] = sum_p a[i][p] * b[j][p]`.
fn matmul_bt(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
        }
    }
    out
}

/// NHWC index.
fn at4(dims: [usize; 4], n: usize, h: usize, w: usize, c: usize) -> usize {
    ((n * dims[1] + h) * dims[2] + w) * dims[3] + c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn equals_im2col_times_gemm_per_group((p, input, weights) in with_tensors(params())) {
        let direct = conv2d(&p, &input, &weights).unwrap();
        let dims = p.gemm_dims().unwrap();
        for group in 0..p.groups {
            let columns = im2col(&p, &input, group).unwrap();
            let group_weights = &weights[group * dims.n * dims.k..][..dims.n * dims.k];
            let product = matmul_bt(&columns, group_weights, dims.m, dims.n, dims.k);
            for pixel in 0..dims.m {
                for j in 0..dims.n {
                    prop_assert_eq!(direct[pixel * p.out_channels + group * dims.n + j], product[pixel * dims.n + j]);
                }
            }
        }
    }

    #[test]
    fn one_by_one_filter_is_a_gemm_over_pixels(
        (p, input, weights) in with_tensors(
            (0usize..=2, 1usize..=5, 1usize..=5, 1usize..=6, 1usize..=6)
                .prop_map(|(n, h, w, c, k)| Conv2dProblem::new(n, (h, w), c, k, (1, 1))),
        )
    ) {
        let pixels = p.batch * p.in_h * p.in_w;
        let expected = matmul_bt(&input, &weights, pixels, p.out_channels, p.in_channels);
        prop_assert_eq!(conv2d(&p, &input, &weights).unwrap(), expected);
    }

    #[test]
    fn groups_equal_to_channels_is_depthwise(
        (p, input, weights) in with_tensors(params().prop_map(|p| Conv2dProblem {
            groups: p.in_channels,
            out_channels: p.in_channels * (1 + p.out_channels % 2),
            ..p
        }))
    ) {
        let (out_h, out_w) = p.output_hw().unwrap();
        let multiplier = p.out_channels / p.in_channels;
        let mut expected = vec![0.0; p.output_len().unwrap()];
        for n in 0..p.batch {
            for oh in 0..out_h {
                for ow in 0..out_w {
                    for k in 0..p.out_channels {
                        let c = k / multiplier;
                        let mut sum = 0.0;
                        for r in 0..p.filter_h {
                            for s in 0..p.filter_w {
                                let h = (oh * p.stride_h + r * p.dilation_h) as i64 - p.pad_h as i64;
                                let w = (ow * p.stride_w + s * p.dilation_w) as i64 - p.pad_w as i64;
                                if (0..p.in_h as i64).contains(&h) && (0..p.in_w as i64).contains(&w) {
                                    let x = input[at4([p.batch, p.in_h, p.in_w, p.in_channels], n, h as usize, w as usize, c)];
                                    sum += x * weights[(k * p.filter_h + r) * p.filter_w + s];
                                }
                            }
                        }
                        expected[at4([p.batch, out_h, out_w, p.out_channels], n, oh, ow, k)] = sum;
                    }
                }
            }
        }
        prop_assert_eq!(conv2d(&p, &input, &weights).unwrap(), expected);
    }

    #[test]
    fn padding_equals_explicit_zero_border((p, input, weights) in with_tensors(params())) {
        let (padded_h, padded_w) = (p.in_h + 2 * p.pad_h, p.in_w + 2 * p.pad_w);
        let mut padded = vec![0.0; p.batch * padded_h * padded_w * p.in_channels];
        for n in 0..p.batch {
            for h in 0..p.in_h {
                for w in 0..p.in_w {
                    for c in 0..p.in_channels {
                        padded[at4([p.batch, padded_h, padded_w, p.in_channels], n, h + p.pad_h, w + p.pad_w, c)] =
                            input[at4([p.batch, p.in_h, p.in_w, p.in_channels], n, h, w, c)];
                    }
                }
            }
        }
        let unpadded = Conv2dProblem { in_h: padded_h, in_w: padded_w, pad_h: 0, pad_w: 0, ..p };
        prop_assert_eq!(conv2d(&p, &input, &weights).unwrap(), conv2d(&unpadded, &padded, &weights).unwrap());
    }

    #[test]
    fn dilation_equals_filter_with_holes((p, input, weights) in with_tensors(params())) {
        // A dilated filter reads the same taps as a larger undilated filter that is zero between them.
        let (big_r, big_s) = ((p.filter_h - 1) * p.dilation_h + 1, (p.filter_w - 1) * p.dilation_w + 1);
        let c_group = p.channels_per_group();
        let mut holes = vec![0.0; p.out_channels * big_r * big_s * c_group];
        for k in 0..p.out_channels {
            for r in 0..p.filter_h {
                for s in 0..p.filter_w {
                    for c in 0..c_group {
                        holes[at4([p.out_channels, big_r, big_s, c_group], k, r * p.dilation_h, s * p.dilation_w, c)] =
                            weights[at4([p.out_channels, p.filter_h, p.filter_w, c_group], k, r, s, c)];
                    }
                }
            }
        }
        let undilated = Conv2dProblem { filter_h: big_r, filter_w: big_s, dilation_h: 1, dilation_w: 1, ..p };
        prop_assert_eq!(conv2d(&p, &input, &weights).unwrap(), conv2d(&undilated, &input, &holes).unwrap());
    }

    #[test]
    fn stride_subsamples_the_stride_one_output((p, input, weights) in with_tensors(params())) {
        let dense = Conv2dProblem { stride_h: 1, stride_w: 1, ..p };
        let (dense_h, dense_w) = dense.output_hw().unwrap();
        let (out_h, out_w) = p.output_hw().unwrap();
        let full = conv2d(&dense, &input, &weights).unwrap();
        let strided = conv2d(&p, &input, &weights).unwrap();
        for n in 0..p.batch {
            for oh in 0..out_h {
                for ow in 0..out_w {
                    for k in 0..p.out_channels {
                        prop_assert_eq!(
                            strided[at4([p.batch, out_h, out_w, p.out_channels], n, oh, ow, k)],
                            full[at4([p.batch, dense_h, dense_w, p.out_channels], n, oh * p.stride_h, ow * p.stride_w, k)]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn output_size_follows_the_usual_formula() {
    // 224x224, 7x7 filter, stride 2, pad 3: ResNet's stem gives 112x112.
    let stem = Conv2dProblem {
        stride_h: 2,
        stride_w: 2,
        pad_h: 3,
        pad_w: 3,
        ..Conv2dProblem::new(1, (224, 224), 3, 64, (7, 7))
    };
    assert_eq!(stem.output_hw(), Ok((112, 112)));
    let dilated = Conv2dProblem { dilation_h: 2, dilation_w: 3, ..Conv2dProblem::new(1, (10, 10), 1, 1, (3, 3)) };
    assert_eq!(dilated.output_hw(), Ok((6, 4)));
}

#[test]
fn impossible_shapes_are_errors() {
    let base = Conv2dProblem::new(1, (4, 4), 4, 4, (3, 3));
    assert_eq!(base.check_shape(), Ok(()));
    assert_eq!(Conv2dProblem { stride_w: 0, ..base }.check_shape(), Err(ConvShapeError::Zero("stride width")));
    assert_eq!(Conv2dProblem { in_channels: 0, ..base }.check_shape(), Err(ConvShapeError::Zero("input channels")));
    assert!(matches!(
        Conv2dProblem { groups: 3, ..base }.check_shape(),
        Err(ConvShapeError::NotDivisibleByGroups { what: "input channels", .. })
    ));
    assert!(matches!(
        Conv2dProblem { filter_h: 5, ..base }.check_shape(),
        Err(ConvShapeError::FilterLargerThanInput { axis: "height", extent: 5, padded: 4 })
    ));
    assert!(Conv2dProblem { dilation_w: 2, ..base }.check_shape().is_err());
    assert!(Conv2dProblem { dilation_w: 2, pad_w: 1, ..base }.check_shape().is_ok());
    assert!(matches!(Conv2dProblem { batch: usize::MAX / 2, ..base }.check_shape(), Err(ConvShapeError::Overflow(_))));
}

#[test]
fn wrong_buffer_lengths_are_errors() {
    let p = Conv2dProblem::new(1, (3, 3), 2, 1, (3, 3));
    let err = conv2d(&p, &[0.0; 17], &[0.0; 18]).unwrap_err();
    assert_eq!(err, ConvShapeError::LengthMismatch { what: "input", expected: 18, actual: 17 });
    let err = conv2d(&p, &[0.0; 18], &[0.0; 9]).unwrap_err();
    assert_eq!(err, ConvShapeError::LengthMismatch { what: "weights", expected: 18, actual: 9 });
}

#[test]
fn empty_batch_gives_empty_output() {
    let p = Conv2dProblem::new(0, (3, 3), 2, 1, (3, 3));
    assert_eq!(conv2d(&p, &[], &[0.0; 18]).unwrap(), Vec::<f64>::new());
}
