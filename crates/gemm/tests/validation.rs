//! Bad problems get typed errors before anything touches a GPU.

use ckb_common::Layout;
use ckb_gemm::{find_variant, variants, GemmError, GemmProblem, GemmShapeError, Operand};

#[test]
fn zero_dimensions_are_refused() {
    for (m, n, k) in [(0, 4, 4), (4, 0, 4), (4, 4, 0)] {
        let err = GemmProblem::row_col(m, n, k).lens().unwrap_err();
        assert!(matches!(err, GemmShapeError::ZeroDimension { .. }), "{err}");
    }
}

#[test]
fn sizes_past_32_bits_are_refused() {
    let err = GemmProblem::row_col(1 << 31, 1, 1).lens().unwrap_err();
    assert!(matches!(err, GemmShapeError::TooLarge { what: "m", .. }), "{err}");
}

#[test]
fn element_counts_past_i64_are_refused() {
    let big = i32::MAX as usize;
    // m * k = 2^62-ish fits, m * n with n the same does too; push one product past 2^63.
    let err = GemmProblem::row_col(big, big, 4).with_leading_dims(4, 4, usize::MAX / 2).lens().unwrap_err();
    assert!(matches!(err, GemmShapeError::SpanTooLarge { operand: Operand::C, .. }), "{err}");
}

#[test]
fn leading_dimensions_below_the_minimum_are_refused() {
    let p = GemmProblem::new(8, 16, 32, Layout::RowMajor, Layout::RowMajor, Layout::ColMajor);
    let cases = [
        (p.with_leading_dims(31, 16, 8), Operand::A, 32),
        (p.with_leading_dims(32, 15, 8), Operand::B, 16),
        (p.with_leading_dims(32, 16, 7), Operand::C, 8),
    ];
    for (problem, operand, min) in cases {
        match problem.lens().unwrap_err() {
            GemmShapeError::LeadingDimension { operand: o, min: m, .. } => assert_eq!((o, m), (operand, min)),
            other => panic!("{other}"),
        }
    }
    p.lens().unwrap();
}

#[test]
fn short_buffers_are_refused_per_operand() {
    let p = GemmProblem::row_col(8, 16, 32);
    p.validate(8 * 32, 32 * 16, 8 * 16).unwrap();
    let cases = [
        ((8 * 32 - 1, 32 * 16, 8 * 16), Operand::A),
        ((8 * 32, 32 * 16 - 1, 8 * 16), Operand::B),
        ((8 * 32, 32 * 16, 8 * 16 - 1), Operand::C),
    ];
    for ((a, b, c), operand) in cases {
        // As a launch reports it.
        match GemmError::from(p.validate(a, b, c).unwrap_err()) {
            GemmError::Shape(GemmShapeError::BufferTooSmall { operand: o, needed, got }) => {
                assert_eq!(o, operand);
                assert_eq!(got + 1, needed);
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn padded_leading_dimensions_need_no_padding_after_the_last_line() {
    let p = GemmProblem::row_col(3, 4, 5).with_leading_dims(8, 6, 7);
    assert_eq!(p.required_len(Operand::A).unwrap(), 2 * 8 + 5);
    assert_eq!(p.required_len(Operand::B).unwrap(), 3 * 6 + 5);
    assert_eq!(p.required_len(Operand::C).unwrap(), 2 * 7 + 4);
}

#[test]
fn the_variant_table_is_complete() {
    assert!(find_variant("universal_f32").is_some());
    for dtype in ["bf16", "f16"] {
        for layouts in ["rc", "rr", "cr"] {
            assert!(
                variants().iter().any(|v| v.name.starts_with(&format!("sm90_{dtype}_")) && v.name.ends_with(layouts)),
                "no {dtype} {layouts} TMA variant"
            );
        }
    }
}
