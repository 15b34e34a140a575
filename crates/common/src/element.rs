//! The element types kernels take, and their conversions to and from f64: the float types,
//! and `i64` for indices (argmax outputs, offsets).

use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use float8::{F8E4M3, F8E5M2};
use half::{bf16, f16};

/// The type of a buffer's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16: f32's exponent, 8 bits of mantissa.
    BF16,
    /// fp8 with 4 exponent and 3 mantissa bits (OCP e4m3, no infinities).
    F8E4M3,
    /// fp8 with 5 exponent and 2 mantissa bits (OCP e5m2).
    F8E5M2,
    /// A signed 64-bit integer: indices, offsets, counts.
    I64,
}

impl DType {
    /// Every type, in declaration order.
    pub const ALL: [DType; 6] = [DType::F32, DType::F16, DType::BF16, DType::F8E4M3, DType::F8E5M2, DType::I64];

    /// Bytes per element.
    pub const fn size_bytes(self) -> usize {
        match self {
            DType::I64 => 8,
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::F8E4M3 | DType::F8E5M2 => 1,
        }
    }

    /// The short name used in case names and records ("f32", "bf16", "e4m3", "i64").
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F8E4M3 => "e4m3",
            DType::F8E5M2 => "e5m2",
            DType::I64 => "i64",
        }
    }

    /// A floating-point type (every type but [`DType::I64`]).
    pub const fn is_float(self) -> bool {
        !matches!(self, DType::I64)
    }

    /// The 32-bit pattern outputs are poisoned with (repeated for each element): a quiet NaN
    /// for the float types. `i64` has no NaN: its elements are poisoned with the f32 NaN in
    /// both halves, `0x7FC0_0000_7FC0_0000` (about 9.2e18), which no index, offset or count
    /// reaches.
    pub const fn nan_bits(self) -> u32 {
        match self {
            DType::F32 | DType::I64 => 0x7FC0_0000,
            DType::F16 => 0x7E00,
            DType::BF16 => 0x7FC0,
            DType::F8E4M3 | DType::F8E5M2 => 0x7F,
        }
    }

    /// Unit roundoff: half the distance from 1.0 to the next value; 0 for `i64`, whose
    /// values (up to 2^53, where f64 stops holding every integer) compare exactly.
    pub const fn epsilon(self) -> f64 {
        match self {
            DType::F32 => 5.96e-8,
            DType::F16 => 4.88e-4,
            DType::BF16 => 3.91e-3,
            DType::F8E4M3 => 6.25e-2,
            DType::F8E5M2 => 1.25e-1,
            DType::I64 => 0.0,
        }
    }

    /// The smallest positive normal value; below it the spacing of values stops shrinking
    /// (subnormals), and kernels that flush subnormals write 0.
    pub fn min_positive_normal(self) -> f64 {
        match self {
            DType::F32 => f64::from(f32::MIN_POSITIVE),
            DType::F16 => f16::MIN_POSITIVE.to_f64(),
            DType::BF16 => bf16::MIN_POSITIVE.to_f64(),
            DType::F8E4M3 => F8E4M3::MIN_POSITIVE.to_f64(),
            DType::F8E5M2 => F8E5M2::MIN_POSITIVE.to_f64(),
            DType::I64 => 1.0,
        }
    }

    /// `x` rounded to the nearest value of this type (ties to even), as a kernel writes it.
    pub fn round(self, x: f64) -> f64 {
        match self {
            DType::F32 => f64::from(x as f32),
            DType::F16 => f16::from_f64(x).to_f64(),
            DType::BF16 => bf16_from_f64(x).to_f64(),
            DType::F8E4M3 => F8E4M3::from_f64(x).to_f64(),
            DType::F8E5M2 => F8E5M2::from_f64(x).to_f64(),
            DType::I64 => x.round(),
        }
    }

    /// The value whose bit pattern in this type is the low bits of `bits` (the inverse of
    /// [`DType::bits`]; for `i64`, of values that fit in 32 bits).
    pub fn from_bits(self, bits: u32) -> f64 {
        match self {
            DType::F32 => f64::from(f32::from_bits(bits)),
            DType::F16 => f16::from_bits(bits as u16).to_f64(),
            DType::BF16 => bf16::from_bits(bits as u16).to_f64(),
            DType::F8E4M3 => F8E4M3::from_bits(bits as u8).to_f64(),
            DType::F8E5M2 => F8E5M2::from_bits(bits as u8).to_f64(),
            DType::I64 => f64::from(bits as i32),
        }
    }

    /// The bit pattern of `x` in this type, after [`DType::round`], in the low bits.
    pub fn bits(self, x: f64) -> u32 {
        match self {
            DType::F32 => (x as f32).to_bits(),
            DType::F16 => u32::from(f16::from_f64(x).to_bits()),
            DType::BF16 => u32::from(bf16_from_f64(x).to_bits()),
            DType::F8E4M3 => u32::from(F8E4M3::from_f64(x).to_bits()),
            DType::F8E5M2 => u32::from(F8E5M2::from_f64(x).to_bits()),
            DType::I64 => x.round() as i64 as i32 as u32,
        }
    }
}

/// `x` rounded to the nearest bf16, ties to even. `half`'s `bf16::from_f64` (2.7) rounds
/// some values the wrong way (0.5332033 to 0.53125 where 0.53515625 is nearer), so the
/// value goes through f32 first, rounded to odd: with 16 more bits than bf16, the second
/// rounding is then exact.
pub fn bf16_from_f64(x: f64) -> bf16 {
    let nearest = x as f32;
    if !nearest.is_finite() || f64::from(nearest) == x {
        return bf16::from_f32(nearest);
    }
    // The f32 toward zero from x, then the odd one of it and its successor.
    let mut bits = nearest.to_bits();
    if f64::from(nearest).abs() > x.abs() {
        bits -= 1;
    }
    bf16::from_f32(f32::from_bits(bits | 1))
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An element a kernel reads or writes.
pub trait Element: DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// Its [`DType`].
    const DTYPE: DType;
    /// The value as f64 (exact for every type but i64 beyond 2^53).
    fn to_f64(self) -> f64;
    /// The value rounded to this type; for `i64` rounded half away from zero and saturated
    /// (NaN becomes 0).
    fn from_f64(v: f64) -> Self;
}

macro_rules! element {
    ($t:ty, $dtype:expr, |$x:ident| $to:expr, |$v:ident| $from:expr) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            fn to_f64(self) -> f64 {
                let $x = self;
                $to
            }
            fn from_f64($v: f64) -> Self {
                $from
            }
        }
    };
}

element!(f32, DType::F32, |x| x as f64, |v| v as f32);
element!(f16, DType::F16, |x| x.to_f64(), |v| f16::from_f64(v));
element!(bf16, DType::BF16, |x| x.to_f64(), |v| bf16_from_f64(v));
element!(F8E4M3, DType::F8E4M3, |x| F8E4M3::to_f64(&x), |v| F8E4M3::from_f64(v));
element!(F8E5M2, DType::F8E5M2, |x| F8E5M2::to_f64(&x), |v| F8E5M2::from_f64(v));
element!(i64, DType::I64, |x| x as f64, |v| v.round() as i64);

/// Converts a slice to f64 for references and comparisons.
pub fn to_f64_vec<T: Element>(xs: &[T]) -> Vec<f64> {
    use rayon::prelude::*;
    xs.par_iter().map(|x| x.to_f64()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_rust_types() {
        fn size<T: Element>() -> (DType, usize) {
            (T::DTYPE, std::mem::size_of::<T>())
        }
        for (dtype, bytes) in
            [size::<f32>(), size::<f16>(), size::<bf16>(), size::<F8E4M3>(), size::<F8E5M2>(), size::<i64>()]
        {
            assert_eq!(dtype.size_bytes(), bytes, "{dtype}");
        }
    }

    #[test]
    fn i64_rounds_half_away_from_zero_and_saturates() {
        assert_eq!([2.5, -2.5, 1.4, -0.6].map(i64::from_f64), [3, -3, 1, -1]);
        assert_eq!(i64::from_f64(1e300), i64::MAX);
        assert_eq!(i64::from_f64(f64::NAN), 0);
        assert_eq!((-7i64).to_f64(), -7.0);
        assert!(!DType::I64.is_float() && DType::F8E5M2.is_float());
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        // The value half's from_f64 rounds down.
        assert_eq!(bf16_from_f64(0.533_203_303_813_934_3).to_f64(), 0.535_156_25);
        // Ties go to even; just past a tie goes up; negative values mirror.
        let tie = 1.0 + 2f64.powi(-8);
        assert_eq!(bf16_from_f64(tie).to_f64(), 1.0);
        assert_eq!(bf16_from_f64(tie + 2f64.powi(-40)).to_f64(), 1.0 + 2f64.powi(-7));
        assert_eq!(bf16_from_f64(-(tie + 2f64.powi(-40))).to_f64(), -(1.0 + 2f64.powi(-7)));
        // Every f32 agrees with half's (correct) f32 conversion.
        let mut state: u32 = 1;
        for _ in 0..200_000 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let f = f32::from_bits(state);
            if f.is_finite() {
                assert_eq!(bf16_from_f64(f64::from(f)).to_bits(), bf16::from_f32(f).to_bits(), "{f}");
            }
        }
    }
}
