//! conv2d on the GPU against the float64 reference: every variant the planner picks, each
//! element-type pair, the fused bias and activations, on shapes that reach every index path
//! (padding, stride, dilation, groups, depthwise with channel multipliers, 1x1, the stem's
//! 3 channels, asymmetric filters, odd channel counts, one-pixel images). Outputs start
//! NaN-poisoned; the bound is `Tolerance::for_dot_product` over R * S * C / groups terms,
//! against the reference rounded to the output type.
//!
//! Run with `cargo test -p ckb-conv --test gpu -- --ignored` on a Hopper GPU.

use ckb_common::cudarc::driver::CudaSlice;
use ckb_common::{bf16, compare, f16, to_f64_vec, DType, Element, Gpu, Tolerance};
use ckb_conv::{conv2d, conv2d_fused, reference, Activation, Conv2dProblem, ConvError, ConvVariant};

fn gpu() -> Gpu {
    Gpu::new(0).expect("these tests need a Hopper GPU")
}

/// Shapes for every index path, small enough for the float64 reference.
fn shapes() -> Vec<Conv2dProblem> {
    vec![
        Conv2dProblem::new(2, (9, 11), 16, 24, (3, 3)).with_padding(1, 1),
        Conv2dProblem::new(3, (15, 13), 8, 16, (3, 3)).with_stride(2, 2).with_padding(1, 1),
        Conv2dProblem::new(1, (17, 17), 12, 8, (3, 3)).with_dilation(2, 2).with_padding(2, 2),
        Conv2dProblem::new(2, (8, 8), 32, 32, (3, 3)).with_padding(1, 1).with_groups(4),
        Conv2dProblem::depthwise(2, (14, 14), 40, (3, 3)).with_padding(1, 1),
        Conv2dProblem::depthwise(1, (16, 16), 24, (5, 5)).with_stride(2, 2).with_padding(2, 2),
        Conv2dProblem::new(2, (7, 7), 16, 32, (3, 3)).with_padding(1, 1).with_groups(16),
        Conv2dProblem::pointwise(2, (10, 10), 64, 48),
        Conv2dProblem::pointwise(1, (9, 9), 32, 16).with_stride(2, 2),
        Conv2dProblem::new(1, (32, 30), 3, 16, (7, 7)).with_stride(2, 2).with_same_padding(),
        Conv2dProblem::new(2, (12, 12), 16, 8, (1, 7)).with_padding(0, 3),
        Conv2dProblem::new(2, (12, 12), 16, 8, (7, 1)).with_padding(3, 0),
        Conv2dProblem::new(3, (5, 6), 5, 7, (2, 3)).with_stride(1, 2).with_dilation(2, 1).with_padding(1, 0),
        Conv2dProblem::new(4, (1, 1), 9, 3, (1, 1)),
        Conv2dProblem::new(1, (4, 5), 6, 2, (4, 5)),
    ]
}

/// One problem with `TIn` inputs and `TOut` output: Err with what went wrong.
fn check<TIn: Element, TOut: Element>(
    gpu: &Gpu,
    problem: &Conv2dProblem,
    bias: bool,
    activation: Activation,
    seed: u64,
) -> Result<(), String> {
    let label = format!("{} -> {} {problem:?} bias {bias} {}", TIn::DTYPE, TOut::DTYPE, activation.name());
    let x = gpu.random_normal::<TIn>(problem.input_len().unwrap(), seed).unwrap();
    let w = gpu.random_normal::<TIn>(problem.weights_len().unwrap(), seed + 1).unwrap();
    let b = gpu.random_normal::<TIn>(problem.out_channels, seed + 2).unwrap();
    let mut y = gpu.poisoned::<TOut>(problem.output_len().unwrap()).unwrap();
    let plan = conv2d_fused(gpu, problem, &x, &w, bias.then_some(&b), activation, &mut y)
        .map_err(|e| format!("{label}: {e}"))?
        .ok_or_else(|| format!("{label}: nothing ran"))?;
    let got = to_f64_vec(&gpu.download(&y).unwrap());
    let host = |d: &CudaSlice<TIn>| to_f64_vec(&gpu.download(d).unwrap());
    let mut want = reference::conv2d(problem, &host(&x), &host(&w)).unwrap();
    let host_bias = host(&b);
    reference::epilogue(&mut want, problem.out_channels, bias.then_some(&host_bias[..]), activation);
    let rounded: Vec<f64> = want.iter().map(|&v| TOut::DTYPE.round(v)).collect();
    let terms = problem.gemm_dims().unwrap().k;
    let cmp = compare(&got, &rounded, Tolerance::for_dot_product(TOut::DTYPE, terms, 1.0, 0.0));
    if cmp.passed {
        Ok(())
    } else {
        Err(format!(
            "{label} ({plan}): rel err {:.2e}, worst element {:.2e}, {} NaN",
            cmp.rel_err, cmp.max_elementwise, cmp.nan_count
        ))
    }
}

#[test]
#[ignore = "needs a GPU"]
fn every_shape_and_type_pair_matches_the_reference() {
    let gpu = gpu();
    let mut failures = Vec::new();
    for (n, problem) in shapes().iter().enumerate() {
        let seed = 100 + 3 * n as u64;
        let results = [
            check::<bf16, bf16>(&gpu, problem, false, Activation::Identity, seed),
            check::<bf16, f32>(&gpu, problem, false, Activation::Identity, seed),
            check::<f16, f16>(&gpu, problem, false, Activation::Identity, seed),
            check::<f16, f32>(&gpu, problem, false, Activation::Identity, seed),
            check::<f32, f32>(&gpu, problem, false, Activation::Identity, seed),
        ];
        failures.extend(results.into_iter().filter_map(Result::err));
    }
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
}

#[test]
#[ignore = "needs a GPU"]
fn fused_bias_and_activations_match_the_reference() {
    let gpu = gpu();
    let mut failures = Vec::new();
    for problem in [shapes()[0], shapes()[4], shapes()[12]] {
        for activation in Activation::ALL {
            for bias in [false, true] {
                for result in [
                    check::<bf16, bf16>(&gpu, &problem, bias, activation, 7),
                    check::<f16, f32>(&gpu, &problem, bias, activation, 7),
                    check::<f32, f32>(&gpu, &problem, bias, activation, 7),
                ] {
                    failures.extend(result.err());
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
}

#[test]
#[ignore = "needs a GPU"]
fn every_plan_is_the_direct_kernel_until_others_join() {
    let gpu = gpu();
    let problem = shapes()[0];
    let x = gpu.random_normal::<bf16>(problem.input_len().unwrap(), 1).unwrap();
    let w = gpu.random_normal::<bf16>(problem.weights_len().unwrap(), 2).unwrap();
    let mut y = gpu.poisoned::<bf16>(problem.output_len().unwrap()).unwrap();
    let plan = conv2d(&gpu, &problem, &x, &w, &mut y).unwrap().unwrap();
    assert_eq!(plan.variant, ConvVariant::Direct);
    assert!(plan.grid >= 1 && plan.grid <= 4 * gpu.sm_count(), "{plan}");
}

#[test]
#[ignore = "needs a GPU"]
fn bad_calls_are_refused_before_launch() {
    let gpu = gpu();
    let problem = shapes()[0];
    let x = gpu.zeros::<bf16>(problem.input_len().unwrap()).unwrap();
    let w = gpu.zeros::<bf16>(problem.weights_len().unwrap()).unwrap();
    let mut y = gpu.zeros::<bf16>(problem.output_len().unwrap()).unwrap();
    // Short buffers, each named.
    let short_x = gpu.zeros::<bf16>(problem.input_len().unwrap() - 1).unwrap();
    match conv2d(&gpu, &problem, &short_x, &w, &mut y) {
        Err(ConvError::BufferTooShort { what: "input", .. }) => {}
        other => panic!("{other:?}"),
    }
    let mut short_y = gpu.zeros::<bf16>(problem.output_len().unwrap() - 1).unwrap();
    assert!(matches!(
        conv2d(&gpu, &problem, &x, &w, &mut short_y),
        Err(ConvError::BufferTooShort { what: "output", .. })
    ));
    let short_bias = gpu.zeros::<bf16>(problem.out_channels - 1).unwrap();
    let err = conv2d_fused(&gpu, &problem, &x, &w, Some(&short_bias), Activation::Relu, &mut y).unwrap_err();
    assert!(matches!(err, ConvError::BufferTooShort { what: "bias", .. }), "{err}");
    // An invalid problem, and a type pair no kernel takes.
    let bad = problem.with_groups(5);
    assert!(matches!(conv2d(&gpu, &bad, &x, &w, &mut y), Err(ConvError::Shape(_))));
    let mut y16 = gpu.zeros::<f16>(problem.output_len().unwrap()).unwrap();
    let err = conv2d(&gpu, &problem, &x, &w, &mut y16).unwrap_err();
    assert!(matches!(err, ConvError::UnsupportedTypes { input: DType::BF16, output: DType::F16 }), "{err}");
    // An empty batch runs nothing.
    assert!(conv2d(&gpu, &Conv2dProblem { batch: 0, ..problem }, &x, &w, &mut y).unwrap().is_none());
}
