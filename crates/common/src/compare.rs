//! Checking a GPU result against a float64 CPU reference: relative Frobenius error, an
//! element-wise bound, and no NaN or unwritten (still poisoned) element.

use rayon::prelude::*;

use crate::element::DType;

/// Bounds a result must meet against its reference; see [`compare`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Bound on ||out - ref||_F / ||ref||_F.
    pub rel_frobenius: f64,
    /// Each element must satisfy |out - ref| <= elementwise * (|ref| + scale), where the
    /// caller sets `scale` to the typical magnitude of a term (for a dot product of length
    /// K over unit-normal inputs, sqrt(K)).
    pub elementwise: f64,
    /// The magnitude added to |ref| in the element-wise bound, so that elements near zero
    /// are judged against a term's size rather than their own.
    pub scale: f64,
}

impl Tolerance {
    /// f32 results of f32 math: about 170 f32 roundings (unit roundoff 6e-8) of headroom.
    pub const F32: Tolerance = Tolerance { rel_frobenius: 1e-5, elementwise: 1e-5, scale: 1.0 };
    /// f32 inputs rounded to TF32 on tensor cores (10-bit significand, u = 2^-11) with fp32
    /// accumulation, as cuBLAS runs them under
    /// [`Fp32Math::Tf32`](crate::baselines::spec::Fp32Math::Tf32).
    pub const TF32: Tolerance = Tolerance { rel_frobenius: 3e-4, elementwise: 3e-3, scale: 1.0 };
    /// bf16/fp16 inputs with fp32 accumulation, against an unrounded reference (the loose
    /// bound of the first gates; [`Tolerance::for_output`] is the one for new checks).
    pub const HALF: Tolerance = Tolerance { rel_frobenius: 1e-2, elementwise: 3e-2, scale: 1.0 };
    /// bf16 output against the reference rounded to bf16 (unit roundoff u = 2^-8 = 3.9e-3).
    /// Frobenius 3e-3, under one rounding: a correct fp32 result differs from the rounded
    /// reference only where fp32 noise flips a rounding, while an output one rounding off
    /// everywhere (truncation, a wrong scale) scores about u. Element-wise 2^-7 = 2u: one
    /// flipped rounding at the bottom of a binade is exactly one ulp = 2u relative.
    pub const BF16: Tolerance = Tolerance { rel_frobenius: 3e-3, elementwise: 1.0 / 128.0, scale: 1.0 };
    /// f16 output against the reference rounded to f16 (u = 2^-11 = 4.9e-4). Frobenius 1e-3
    /// (2u): f16's 11-bit significand is within reach of fp32 accumulation noise at deep K,
    /// where flipped roundings become common. Element-wise 2^-10 = 2u, one flip, as for bf16.
    pub const F16: Tolerance = Tolerance { rel_frobenius: 1e-3, elementwise: 1.0 / 1024.0, scale: 1.0 };

    /// The same bounds with element-wise scale `scale` (see [`Tolerance::scale`]).
    pub fn with_scale(self, scale: f64) -> Tolerance {
        Tolerance { scale, ..self }
    }

    /// The bounds for a result written as `dtype`, to be compared with the float64 reference
    /// rounded to `dtype` first ([`DType::round`]); scale 1. fp8 outputs get bf16's rule in
    /// their own unit roundoff: 3/4 u Frobenius, 2u (one flip) element-wise.
    pub fn for_output(dtype: DType) -> Tolerance {
        match dtype {
            DType::F32 => Tolerance::F32,
            DType::BF16 => Tolerance::BF16,
            DType::F16 => Tolerance::F16,
            DType::F8E4M3 | DType::F8E5M2 => {
                let u = dtype.epsilon();
                Tolerance { rel_frobenius: 0.75 * u, elementwise: 2.0 * u, scale: 1.0 }
            }
            // Indices and counts are exact.
            DType::I64 => Tolerance { rel_frobenius: 0.0, elementwise: 0.0, scale: 1.0 },
        }
    }

    /// [`Tolerance::for_output`] for outputs whose every element is computed on its own
    /// scale (probabilities): element-wise relative to |reference|, with scale the smallest
    /// value that still has full relative precision: the type's smallest normal, or the one
    /// of the f32 math behind it (kernels may flush f32 subnormals), whichever is larger.
    pub fn relative(dtype: DType) -> Tolerance {
        let tol = Tolerance::for_output(dtype);
        tol.with_scale((DType::F32.min_positive_normal() / tol.elementwise).max(dtype.min_positive_normal()))
    }

    /// Bounds for `alpha * (a K-term dot product) + beta * c` written as `out` (GEMM, and
    /// convolution as implicit GEMM), against the reference rounded to `out`, for inputs of
    /// unit scale; the element-wise scale is a term's typical size, sqrt(K) |alpha| + |beta|.
    /// On top of [`Tolerance::for_output`] comes the fp32 accumulator's own error: tensor
    /// cores are reported to add each group of products with truncation (Fasi, Higham,
    /// Mikaitis and Pranesh 2021, V100 to A100), a bias that can follow the sign of the
    /// running sum and grow like K u32 / 16 relative. The bounds allow K u32 / 8 (Frobenius)
    /// and K u32 / 2 (element-wise): that raises f32's bounds from K = 1300 and K = 340 on,
    /// f16's element-wise bound from K = 33k. The f32 universal kernel measured 1.1e-5
    /// element-wise at K = 4748, where the bound is 1.4e-4.
    pub fn for_dot_product(out: DType, k: usize, alpha: f64, beta: f64) -> Tolerance {
        let base = Tolerance::for_output(out);
        let accumulation = k as f64 * DType::F32.epsilon();
        Tolerance {
            rel_frobenius: base.rel_frobenius.max(accumulation / 8.0),
            elementwise: base.elementwise.max(accumulation / 2.0),
            scale: (k as f64).sqrt() * alpha.abs() + beta.abs(),
        }
    }
}

/// How a result compared with its reference.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// ||out - ref||_F / ||ref||_F over the elements where both are finite (the absolute
    /// ||out - ref||_F where the reference is zero on all of them), to set against
    /// `Tolerance::rel_frobenius`.
    pub rel_err: f64,
    /// Worst |out - ref| over the elements where both are finite.
    pub max_abs_err: f64,
    /// Worst |out - ref| / (|ref| + scale), to set against `Tolerance::elementwise`.
    pub max_elementwise: f64,
    /// Elements that are NaN in the output where the reference is not.
    pub nan_count: usize,
    /// Every bound of the [`Tolerance`] met, and no NaN or infinity mismatch.
    pub passed: bool,
}

impl Comparison {
    /// Both comparisons at once (an output and its statistics): the worst of each figure,
    /// NaN counts added, passed only when both passed.
    pub fn and(self, other: Comparison) -> Comparison {
        Comparison {
            rel_err: self.rel_err.max(other.rel_err),
            max_abs_err: self.max_abs_err.max(other.max_abs_err),
            max_elementwise: self.max_elementwise.max(other.max_elementwise),
            nan_count: self.nan_count + other.nan_count,
            passed: self.passed && other.passed,
        }
    }
}

/// Compares `out` with `reference` element by element. An output NaN matches only a
/// reference NaN; ±inf must match exactly.
pub fn compare(out: &[f64], reference: &[f64], tol: Tolerance) -> Comparison {
    assert_eq!(out.len(), reference.len(), "compare: output and reference lengths differ");
    let (num, den, max_abs, max_el, nans, inf_mismatch) = out
        .par_iter()
        .zip(reference.par_iter())
        .map(|(&o, &r)| {
            if r.is_nan() || r.is_infinite() {
                let same = (r.is_nan() && o.is_nan()) || o == r;
                return (0.0, 0.0, 0.0, 0.0, 0usize, usize::from(!same));
            }
            if !o.is_finite() {
                return (0.0, 0.0, 0.0, 0.0, usize::from(o.is_nan()), usize::from(o.is_infinite()));
            }
            let d = (o - r).abs();
            (d * d, r * r, d, d / (r.abs() + tol.scale), 0, 0)
        })
        .reduce(
            || (0.0, 0.0, 0.0, 0.0, 0, 0),
            |a, b| (a.0 + b.0, a.1 + b.1, a.2.max(b.2), a.3.max(b.3), a.4 + b.4, a.5 + b.5),
        );
    let rel_err = if den > 0.0 { (num / den).sqrt() } else { num.sqrt() };
    let passed = nans == 0 && inf_mismatch == 0 && rel_err <= tol.rel_frobenius && max_el <= tol.elementwise;
    Comparison { rel_err, max_abs_err: max_abs, max_elementwise: max_el, nan_count: nans + inf_mismatch, passed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_passes() {
        let r = vec![1.0, -2.0, 3.5];
        let c = compare(&r, &r, Tolerance::F32);
        assert!(c.passed);
        assert_eq!(c.rel_err, 0.0);
    }

    #[test]
    fn unwritten_nan_fails() {
        let c = compare(&[1.0, f64::NAN], &[1.0, 2.0], Tolerance::HALF);
        assert!(!c.passed);
        assert_eq!(c.nan_count, 1);
    }

    #[test]
    fn one_bad_element_fails_elementwise_even_when_frobenius_is_small() {
        let reference: Vec<f64> = (0..100_000).map(|i| (i % 7) as f64 + 1.0).collect();
        let mut out = reference.clone();
        out[5] += 0.5;
        let c = compare(&out, &reference, Tolerance { rel_frobenius: 1e-2, elementwise: 1e-2, scale: 0.0 });
        assert!(c.rel_err < 1e-2);
        assert!(!c.passed);
    }

    #[test]
    fn infinities_must_match() {
        assert!(compare(&[f64::NEG_INFINITY], &[f64::NEG_INFINITY], Tolerance::F32).passed);
        assert!(!compare(&[0.0], &[f64::NEG_INFINITY], Tolerance::F32).passed);
    }
}
