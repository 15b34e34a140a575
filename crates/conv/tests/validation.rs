//! The convolution problem: output sizes, element and FLOP counts on real layers, and one
//! test per way a problem can be invalid. CPU only.

use ckb_common::GpuError;
use ckb_conv::{Conv2dProblem, ConvError, ConvShapeError, GemmDims, MAX_ELEMENTS, MAX_EXTENT};
use proptest::prelude::*;

/// The dense direct-convolution FLOP count, written out from its definition.
fn direct_flops(problem: &Conv2dProblem, (p, q): (usize, usize)) -> f64 {
    let c_per_group = problem.in_channels / problem.groups;
    2.0 * [problem.batch, problem.out_channels, p, q, c_per_group, problem.filter_h, problem.filter_w]
        .iter()
        .map(|&size| size as f64)
        .product::<f64>()
}

/// Checks output size, element counts, FLOPs and the cuDNN spec of a valid layer.
fn check_layer(problem: Conv2dProblem, output_hw: (usize, usize)) {
    problem.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(problem.output_hw(), Ok(output_hw), "{problem:?}");
    let (p, q) = output_hw;
    let Conv2dProblem { batch, in_h, in_w, in_channels, out_channels, filter_h, filter_w, groups, .. } = problem;
    let input = batch * in_h * in_w * in_channels;
    let weights = out_channels * filter_h * filter_w * (in_channels / groups);
    let output = batch * p * q * out_channels;
    assert_eq!(
        (problem.input_len(), problem.weights_len(), problem.output_len()),
        (Ok(input), Ok(weights), Ok(output))
    );
    assert_eq!(problem.flops(), Ok(direct_flops(&problem, output_hw)), "{problem:?}");
    assert_eq!(
        problem.gemm_dims(),
        Ok(GemmDims { m: batch * p * q, n: out_channels / groups, k: filter_h * filter_w * in_channels / groups })
    );
    // cuDNN's baseline sees the same problem.
    let spec = problem.baseline_spec();
    let lens = spec.lens().unwrap();
    assert_eq!((lens.x, lens.w, lens.y, lens.p, lens.q), (input, weights, output, p, q));
    assert_eq!(spec.flops(), direct_flops(&problem, output_hw));
    problem.check_buffers(input, weights, output).unwrap();
}

#[test]
fn resnet50_layers() {
    // 3x3, 64 -> 64 at 56, stride 1, padding 1.
    check_layer(Conv2dProblem::new(256, (56, 56), 64, 64, (3, 3)).with_padding(1, 1), (56, 56));
    // The 7x7/2 stem, 3 -> 64 at 224, padding 3.
    let stem = Conv2dProblem::new(256, (224, 224), 3, 64, (7, 7)).with_stride(2, 2).with_padding(3, 3);
    check_layer(stem, (112, 112));
    assert_eq!(stem.flops(), Ok(2.0 * 256.0 * 64.0 * 112.0 * 112.0 * 3.0 * 49.0));
    // 1x1, 256 -> 64 at 56.
    check_layer(Conv2dProblem::pointwise(256, (56, 56), 256, 64), (56, 56));
    // The 1x1 stride-2 downsample, 256 -> 512 at 56.
    check_layer(Conv2dProblem::pointwise(256, (56, 56), 256, 512).with_stride(2, 2), (28, 28));
    // v1.5's stride-2 3x3, 128 -> 128 at 56, padding 1.
    check_layer(Conv2dProblem::new(256, (56, 56), 128, 128, (3, 3)).with_stride(2, 2).with_padding(1, 1), (28, 28));
    // 3x3, 512 -> 512 at 7.
    check_layer(Conv2dProblem::new(256, (7, 7), 512, 512, (3, 3)).with_padding(1, 1), (7, 7));
}

#[test]
fn same_padding_matches_the_usual_layers() {
    let stem = Conv2dProblem::new(1, (224, 224), 3, 64, (7, 7)).with_stride(2, 2).with_same_padding();
    assert_eq!((stem.pad_h, stem.pad_w), (3, 3));
    assert_eq!(stem.output_hw(), Ok((112, 112)));
    let dilated = Conv2dProblem::new(1, (33, 33), 256, 256, (3, 3)).with_dilation(2, 2).with_same_padding();
    assert_eq!((dilated.pad_h, dilated.pad_w), (2, 2));
    // Asymmetric 1x7 and 7x1 filters pad along their long axis only.
    let one_by_seven = Conv2dProblem::new(1, (17, 17), 192, 192, (1, 7)).with_same_padding();
    assert_eq!((one_by_seven.pad_h, one_by_seven.pad_w), (0, 3));
    check_layer(one_by_seven, (17, 17));
    check_layer(Conv2dProblem::new(1, (17, 17), 192, 192, (7, 1)).with_same_padding(), (17, 17));
}

#[test]
fn depthwise_is_one_group_per_channel() {
    let depthwise = Conv2dProblem::depthwise(64, (28, 28), 384, (3, 3)).with_same_padding();
    assert_eq!((depthwise.groups, depthwise.out_channels, depthwise.pad_h), (384, 384, 1));
    check_layer(depthwise, (28, 28));
    assert_eq!(depthwise.weights_len(), Ok(384 * 9));
    assert_eq!(depthwise.flops(), Ok(2.0 * 64.0 * 384.0 * 28.0 * 28.0 * 9.0));
    // Stride 2 at 112, and ConvNeXt's 7x7 at 14.
    check_layer(Conv2dProblem::depthwise(64, (112, 112), 96, (3, 3)).with_stride(2, 2).with_same_padding(), (56, 56));
    check_layer(Conv2dProblem::depthwise(64, (14, 14), 768, (7, 7)).with_same_padding(), (14, 14));
    // A channel multiplier of 2: K = 2C, still groups = C.
    check_layer(Conv2dProblem::new(2, (9, 9), 8, 16, (3, 3)).with_groups(8), (7, 7));
}

#[test]
fn grouped_and_dilated_layers() {
    // ResNeXt-50's grouped 3x3: 128 -> 128 in 32 groups of 4 channels at 56.
    let resnext = Conv2dProblem::new(256, (56, 56), 128, 128, (3, 3)).with_padding(1, 1).with_groups(32);
    check_layer(resnext, (56, 56));
    assert_eq!(resnext.gemm_dims().unwrap().k, 9 * 4);
    // Dilation 2 reaches 5 input pixels per axis: 33 -> 29 unpadded, 33 with padding 2.
    let dilated = Conv2dProblem::new(8, (33, 33), 256, 256, (3, 3)).with_dilation(2, 2);
    check_layer(dilated, (29, 29));
    check_layer(dilated.with_padding(2, 2), (33, 33));
    // Dilation and stride per axis.
    check_layer(Conv2dProblem::new(1, (10, 10), 1, 1, (3, 3)).with_dilation(2, 3), (6, 4));
    check_layer(Conv2dProblem::new(1, (15, 13), 3, 8, (5, 5)).with_padding(2, 2).with_stride(2, 1), (8, 13));
}

#[test]
fn an_empty_batch_is_valid_and_empty() {
    let empty = Conv2dProblem::new(0, (8, 8), 4, 4, (3, 3));
    empty.validate().unwrap();
    assert!(empty.is_empty() && !Conv2dProblem { batch: 1, ..empty }.is_empty());
    assert_eq!((empty.input_len(), empty.output_len(), empty.weights_len()), (Ok(0), Ok(0), Ok(4 * 9 * 4)));
    assert_eq!(empty.flops(), Ok(0.0));
    empty.check_buffers(0, 4 * 9 * 4, 0).unwrap();
}

fn shape_error(problem: Conv2dProblem) -> ConvShapeError {
    match problem.validate() {
        Err(ConvError::Shape(error)) => {
            assert_eq!(problem.check_shape(), Err(error.clone()), "validate and check_shape agree");
            assert!(problem.baseline_spec().lens().is_err(), "cuDNN's spec rejects {problem:?} too");
            error
        }
        other => panic!("{problem:?}: expected a shape error, got {other:?}"),
    }
}

/// A small valid problem the error tests change one field of.
const BASE: Conv2dProblem = Conv2dProblem {
    batch: 2,
    in_h: 4,
    in_w: 4,
    in_channels: 4,
    out_channels: 4,
    filter_h: 3,
    filter_w: 3,
    stride_h: 1,
    stride_w: 1,
    pad_h: 0,
    pad_w: 0,
    dilation_h: 1,
    dilation_w: 1,
    groups: 1,
};

#[test]
fn zero_sizes_are_named() {
    BASE.validate().unwrap();
    let zeros = [
        ("input height", Conv2dProblem { in_h: 0, ..BASE }),
        ("input width", Conv2dProblem { in_w: 0, ..BASE }),
        ("input channels", Conv2dProblem { in_channels: 0, ..BASE }),
        ("output channels", Conv2dProblem { out_channels: 0, ..BASE }),
        ("filter height", Conv2dProblem { filter_h: 0, ..BASE }),
        ("filter width", Conv2dProblem { filter_w: 0, ..BASE }),
        ("stride height", BASE.with_stride(0, 1)),
        ("stride width", BASE.with_stride(1, 0)),
        ("dilation height", BASE.with_dilation(0, 1)),
        ("dilation width", BASE.with_dilation(1, 0)),
        ("groups", BASE.with_groups(0)),
    ];
    for (what, problem) in zeros {
        assert_eq!(shape_error(problem), ConvShapeError::Zero(what));
    }
    // Zero padding is the default, not an error.
    BASE.with_padding(0, 0).validate().unwrap();
}

#[test]
fn channels_must_divide_by_groups() {
    assert_eq!(
        shape_error(BASE.with_groups(3)),
        ConvShapeError::NotDivisibleByGroups { what: "input channels", count: 4, groups: 3 }
    );
    assert_eq!(
        shape_error(Conv2dProblem { out_channels: 6, ..BASE.with_groups(4) }),
        ConvShapeError::NotDivisibleByGroups { what: "output channels", count: 6, groups: 4 }
    );
    Conv2dProblem { out_channels: 8, ..BASE.with_groups(4) }.validate().unwrap();
}

#[test]
fn a_filter_beyond_the_padded_input_is_an_error() {
    let larger = Conv2dProblem { filter_h: 5, ..BASE };
    assert_eq!(shape_error(larger), ConvShapeError::FilterLargerThanInput { axis: "height", extent: 5, padded: 4 });
    larger.with_padding(1, 0).validate().unwrap();
    // Dilation 2 stretches the 3-wide filter to 5.
    let dilated = BASE.with_dilation(1, 2);
    assert_eq!(shape_error(dilated), ConvShapeError::FilterLargerThanInput { axis: "width", extent: 5, padded: 4 });
    assert_eq!(dilated.with_padding(0, 1).output_hw(), Ok((2, 2)));
}

#[test]
fn usize_overflow_is_an_error() {
    // Every size fits the kernels' ints, but N*H*W*C does not fit in usize.
    let huge = Conv2dProblem::pointwise(1 << 20, (1 << 20, 1 << 20), 1 << 20, 1).with_stride(1 << 20, 1 << 20);
    assert_eq!(shape_error(huge), ConvShapeError::Overflow("input"));
}

fn too_large(problem: Conv2dProblem) -> (&'static str, usize, usize) {
    match problem.validate() {
        Err(ConvError::TooLarge { what, value, limit }) => (what, value, limit),
        other => panic!("{problem:?}: expected TooLarge, got {other:?}"),
    }
}

#[test]
fn sizes_beyond_the_kernels_ints_are_errors() {
    let limit = MAX_EXTENT;
    // A -1 cast to usize.
    let negative = Conv2dProblem { batch: -1i64 as usize, ..BASE };
    assert_eq!(too_large(negative), ("batch", usize::MAX, limit));
    assert_eq!(too_large(BASE.with_padding(0, -1i64 as usize)), ("padding width", usize::MAX, limit));
    assert_eq!(too_large(Conv2dProblem { in_channels: 1 << 31, ..BASE }), ("input channels", 1 << 31, limit));
    // The padded input, whose coordinates the kernels compute.
    let padded = Conv2dProblem { in_h: limit - 10, ..BASE.with_padding(10, 0) };
    assert_eq!(too_large(padded), ("padded input height", limit + 10, limit));
    // 2^16 images of 256x256 pixels: 2^32 output pixels.
    let pixels = Conv2dProblem::pointwise(1 << 16, (256, 256), 1, 1);
    assert_eq!(too_large(pixels), ("output pixels N*P*Q", 1 << 32, limit));
    // The implicit GEMM's reduction, 3 * 3 * 2^28.
    let reduction = Conv2dProblem::new(1, (3, 3), 1 << 28, 1, (3, 3));
    assert_eq!(too_large(reduction), ("reduction R*S*C/groups", 9 << 28, limit));
    reduction.check_shape().unwrap(); // The reference can still compute it.
                                      // An input with more elements than an i64 counts (fewer than usize's): strides of 2^30
                                      // keep the output at 2x2 pixels.
    let side = limit;
    let elements = Conv2dProblem::pointwise(1, (side, side), 3, 1).with_stride(1 << 30, 1 << 30);
    assert_eq!(elements.output_hw(), Ok((2, 2)));
    assert_eq!(too_large(elements), ("input elements", 3 * side * side, MAX_ELEMENTS));
    // At the limits themselves, valid.
    Conv2dProblem::pointwise(1, (1, limit), 1, 1).validate().unwrap();
    Conv2dProblem::pointwise(1, (1, 1), 1, limit).validate().unwrap();
}

#[test]
fn short_buffers_are_errors() {
    let problem = Conv2dProblem::new(2, (5, 5), 4, 8, (3, 3)).with_padding(1, 1);
    let (input, weights, output) = (2 * 5 * 5 * 4, 8 * 3 * 3 * 4, 2 * 5 * 5 * 8);
    problem.check_buffers(input, weights, output).unwrap();
    problem.check_buffers(input + 1, weights + 7, output + 100).unwrap();
    let short = |lens: (usize, usize, usize)| match problem.check_buffers(lens.0, lens.1, lens.2) {
        Err(ConvError::BufferTooShort { what, needed, got }) => (what, needed, got),
        other => panic!("{lens:?}: expected BufferTooShort, got {other:?}"),
    };
    assert_eq!(short((input - 1, weights, output)), ("input", input, input - 1));
    assert_eq!(short((input, 0, output)), ("weights", weights, 0));
    assert_eq!(short((input, weights, output - 1)), ("output", output, output - 1));
    // The problem is checked before the buffers.
    assert!(matches!(
        BASE.with_stride(0, 0).check_buffers(0, 0, 0),
        Err(ConvError::Shape(ConvShapeError::Zero("stride height")))
    ));
}

#[test]
fn errors_say_what_is_wrong_and_convert_to_gpu_errors() {
    let error = BASE.with_groups(3).validate().unwrap_err();
    let message = error.to_string();
    assert!(message.contains("input channels (4) is not divisible by groups (3)"), "{message}");
    match GpuError::from(error) {
        GpuError::Operator { operator, detail } => assert_eq!((operator, detail), ("ckb-conv", message)),
        other => panic!("{other:?}"),
    }
    let short = BASE.check_buffers(0, 0, 0).unwrap_err().to_string();
    assert_eq!(short, "conv2d: input holds 0 elements, the problem needs 128");
    assert!(matches!(GpuError::from(ConvError::from(GpuError::NoDriver)), GpuError::NoDriver));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The output size is the number of window positions that fit in the padded input, as
    /// counted by stepping the window along; cuDNN's spec agrees, valid or not.
    #[test]
    fn output_size_counts_the_window_positions(
        (in_h, in_w) in (1usize..=20, 1usize..=20),
        (filter_h, filter_w) in (1usize..=5, 1usize..=5),
        (stride_h, stride_w) in (1usize..=3, 1usize..=3),
        (pad_h, pad_w) in (0usize..=3, 0usize..=3),
        (dilation_h, dilation_w) in (1usize..=3, 1usize..=3),
    ) {
        let problem = Conv2dProblem::new(1, (in_h, in_w), 2, 2, (filter_h, filter_w))
            .with_stride(stride_h, stride_w)
            .with_padding(pad_h, pad_w)
            .with_dilation(dilation_h, dilation_w);
        let positions = |input: usize, filter: usize, stride: usize, pad: usize, dilation: usize| {
            let reach = (filter - 1) * dilation + 1;
            (0..).step_by(stride).take_while(|start| start + reach <= input + 2 * pad).count()
        };
        let expected = (
            positions(in_h, filter_h, stride_h, pad_h, dilation_h),
            positions(in_w, filter_w, stride_w, pad_w, dilation_w),
        );
        let spec = problem.baseline_spec().lens();
        if expected.0 == 0 || expected.1 == 0 {
            let is_filter_error = matches!(
                problem.validate(),
                Err(ConvError::Shape(ConvShapeError::FilterLargerThanInput { .. }))
            );
            prop_assert!(is_filter_error);
            prop_assert!(spec.is_err());
        } else {
            prop_assert_eq!(problem.output_hw(), Ok(expected));
            prop_assert!(problem.validate().is_ok());
            let spec = spec.unwrap();
            prop_assert_eq!((spec.p, spec.q), expected);
        }
    }
}
