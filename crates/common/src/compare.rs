//! Checking a GPU result against a float64 CPU reference: relative Frobenius error, an
//! element-wise bound, and no NaN or unwritten (still poisoned) element.

use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Bound on ||out - ref||_F / ||ref||_F.
    pub rel_frobenius: f64,
    /// Each element must satisfy |out - ref| <= elementwise * (|ref| + scale), where the
    /// caller sets `scale` to the typical magnitude of a term (for a dot product of length
    /// K over unit-normal inputs, sqrt(K)).
    pub elementwise: f64,
    pub scale: f64,
}

impl Tolerance {
    pub const F32: Tolerance = Tolerance { rel_frobenius: 1e-5, elementwise: 1e-5, scale: 1.0 };
    pub const TF32: Tolerance = Tolerance { rel_frobenius: 3e-4, elementwise: 3e-3, scale: 1.0 };
    /// bf16/fp16 inputs with fp32 accumulation.
    pub const HALF: Tolerance = Tolerance { rel_frobenius: 1e-2, elementwise: 3e-2, scale: 1.0 };

    pub fn with_scale(self, scale: f64) -> Tolerance {
        Tolerance { scale, ..self }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub rel_err: f64,
    pub max_abs_err: f64,
    /// Worst |out - ref| / (|ref| + scale), to set against `Tolerance::elementwise`.
    pub max_elementwise: f64,
    /// Elements that are NaN in the output where the reference is not.
    pub nan_count: usize,
    pub passed: bool,
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
