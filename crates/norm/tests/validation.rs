//! Bad problems, short buffers, bad eps and variants that cannot hold a row get typed errors
//! before anything touches a GPU.

use ckb_common::DType;
use ckb_norm::{
    check_buffers, check_eps, DeviceLimits, Extent, NormError, NormOp, NormResult, NormVariant, Planner, Residency,
    RowsProblem, StagedKernel, Tuning, MAX_COLS, NORM_VARIANTS,
};

/// A device where every staged configuration keeps two CTAs an SM and eight clusters.
struct Roomy;

impl Residency for Roomy {
    fn ctas_per_sm(&self, _: &StagedKernel) -> NormResult<usize> {
        Ok(2)
    }
    fn clusters(&self, _: &StagedKernel, _: usize) -> NormResult<usize> {
        Ok(8)
    }
}

/// An H100's limits, the default tuning.
fn planner() -> Planner<'static, Roomy> {
    Planner { limits: DeviceLimits::new(132, 227 * 1024), tuning: Tuning::default(), residency: &Roomy }
}

#[test]
fn strides_below_the_row_length_are_refused() {
    let err = RowsProblem::new(4, 100, 99).validate("softmax").unwrap_err();
    assert!(matches!(err, NormError::BadShape { op: "softmax", .. }), "{err}");
    RowsProblem::new(4, 100, 100).validate("softmax").unwrap();
    RowsProblem::new(4, 100, 103).validate("softmax").unwrap();
}

#[test]
fn rows_past_2_to_30_and_sizes_past_i64_are_refused() {
    let err = RowsProblem::dense(1, MAX_COLS + 1).validate("layernorm").unwrap_err();
    assert!(matches!(err, NormError::BadShape { .. }), "{err}");
    let err = RowsProblem::new(usize::MAX / 2, 4, 8).validate("layernorm").unwrap_err();
    assert!(matches!(err, NormError::BadShape { .. }), "{err}");
    RowsProblem::dense(1, MAX_COLS).validate("layernorm").unwrap();
}

#[test]
fn short_buffers_are_refused_per_role() {
    let p = RowsProblem::new(4, 100, 128);
    assert_eq!((p.needed(Extent::Rows), p.needed(Extent::Dense)), (3 * 128 + 100, 400));
    assert_eq!((p.needed(Extent::PerColumn), p.needed(Extent::PerRow)), (100, 4));
    let full = [
        ("x", Extent::Rows, p.input_len()),
        ("gamma", Extent::PerColumn, 100),
        ("beta", Extent::PerColumn, 100),
        ("y", Extent::Dense, 400),
        ("mean", Extent::PerRow, 4),
        ("rstd", Extent::PerRow, 4),
    ];
    check_buffers(NormOp::LayerNorm, &p, &full).unwrap();
    // Longer buffers are fine.
    let mut longer = full;
    longer[3].2 += 7;
    check_buffers(NormOp::LayerNorm, &p, &longer).unwrap();
    for short in 0..full.len() {
        let mut buffers = full;
        buffers[short].2 -= 1;
        match check_buffers(NormOp::LayerNorm, &p, &buffers).unwrap_err() {
            NormError::BufferTooShort { op, what, needed, got } => {
                assert_eq!((op, what), ("layernorm", full[short].0));
                assert_eq!(needed, got + 1);
            }
            other => panic!("{other}"),
        }
    }
    // A bad shape is reported before any buffer.
    let err = check_buffers(NormOp::Softmax, &RowsProblem::new(2, 8, 4), &[("x", Extent::Rows, 0)]).unwrap_err();
    assert!(matches!(err, NormError::BadShape { .. }), "{err}");
}

#[test]
fn eps_must_be_finite_and_non_negative() {
    for eps in [-1e-5, f32::NAN, f32::INFINITY] {
        assert!(matches!(check_eps("rmsnorm", eps), Err(NormError::BadEps { .. })), "{eps}");
    }
    check_eps("rmsnorm", 0.0).unwrap();
    check_eps("rmsnorm", 1e-5).unwrap();
}

#[test]
fn variants_refuse_rows_they_cannot_hold() {
    let plan = |v: NormVariant, op, cols, dtype| planner().plan(v, op, &RowsProblem::dense(4, cols), dtype, true);
    let refused = |r: Result<_, NormError>| matches!(r, Err(NormError::VariantMismatch { .. }));
    // A warp holds 32 lanes x packs x 16 bytes.
    assert!(plan(NormVariant::Warp { packs: 1 }, NormOp::Softmax, 128, DType::F32).is_ok());
    assert!(refused(plan(NormVariant::Warp { packs: 1 }, NormOp::Softmax, 129, DType::F32)));
    assert!(plan(NormVariant::Warp { packs: 1 }, NormOp::Softmax, 256, DType::BF16).is_ok());
    // Eight packs a lane only fit f32 forward registers.
    assert!(plan(NormVariant::Warp { packs: 8 }, NormOp::LayerNorm, 1024, DType::F32).is_ok());
    assert!(refused(plan(NormVariant::Warp { packs: 8 }, NormOp::LayerNorm, 64, DType::BF16)));
    assert!(refused(plan(NormVariant::Warp { packs: 8 }, NormOp::LayerNormBackward, 64, DType::F32)));
    // A CTA holds 512 threads x 32 elements forward, 16 backward.
    assert!(plan(NormVariant::Block, NormOp::RmsNorm, 16384, DType::F32).is_ok());
    assert!(refused(plan(NormVariant::Block, NormOp::RmsNorm, 16385, DType::F32)));
    assert!(refused(plan(NormVariant::Block, NormOp::RmsNormBackward, 8193, DType::BF16)));
    // A cluster holds 16 CTAs.
    assert!(plan(NormVariant::Cluster, NormOp::Softmax, 262144, DType::F32).is_ok());
    assert!(refused(plan(NormVariant::Cluster, NormOp::Softmax, 262145, DType::F32)));
    // A split holds anything.
    assert!(plan(NormVariant::Split, NormOp::SoftmaxBackward, MAX_COLS, DType::F16).is_ok());
}

#[test]
fn the_heuristic_always_has_a_plan() {
    for op in NormOp::ALL {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for cols in [1, 100, 1024, 1025, 4096, 16385, 100_000, 262_144, 1 << 22] {
                let p = RowsProblem::dense(7, cols);
                for aligned in [true, false] {
                    let plan = planner().choose(op, &p, dtype, aligned).unwrap();
                    let forced = planner().plan(plan.variant, op, &p, dtype, aligned).unwrap();
                    assert_eq!(plan, forced, "{op:?} {dtype} {cols}");
                    // Vectors of the plan's pack: 16 bytes, or (lanes-1) the row where that
                    // is a power of two of bytes up to 16.
                    let bytes = plan.width * dtype.size_bytes();
                    let vectors = bytes.is_power_of_two() && bytes <= 16 && cols % plan.width == 0;
                    assert_eq!(plan.vectorized, aligned && vectors, "{op:?} {dtype} {cols}");
                }
            }
        }
    }
    assert_eq!(NORM_VARIANTS.len(), 12);
}
