//! The element types kernels take, and their conversions to and from f64.

use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use float8::{F8E4M3, F8E5M2};
use half::{bf16, f16};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    BF16,
    F8E4M3,
    F8E5M2,
}

impl DType {
    pub const fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::F8E4M3 | DType::F8E5M2 => 1,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F8E4M3 => "e4m3",
            DType::F8E5M2 => "e5m2",
        }
    }

    /// The bit pattern of a quiet NaN, used to poison outputs.
    pub const fn nan_bits(self) -> u32 {
        match self {
            DType::F32 => 0x7FC0_0000,
            DType::F16 => 0x7E00,
            DType::BF16 => 0x7FC0,
            DType::F8E4M3 | DType::F8E5M2 => 0x7F,
        }
    }

    /// Unit roundoff: half the distance from 1.0 to the next value.
    pub const fn epsilon(self) -> f64 {
        match self {
            DType::F32 => 5.96e-8,
            DType::F16 => 4.88e-4,
            DType::BF16 => 3.91e-3,
            DType::F8E4M3 => 6.25e-2,
            DType::F8E5M2 => 1.25e-1,
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
        }
    }

    /// `x` rounded to the nearest value of this type (ties to even), as a kernel writes it.
    pub fn round(self, x: f64) -> f64 {
        match self {
            DType::F32 => f64::from(x as f32),
            DType::F16 => f16::from_f64(x).to_f64(),
            DType::BF16 => bf16::from_f64(x).to_f64(),
            DType::F8E4M3 => F8E4M3::from_f64(x).to_f64(),
            DType::F8E5M2 => F8E5M2::from_f64(x).to_f64(),
        }
    }

    /// The value whose bit pattern in this type is the low bits of `bits` (the inverse of
    /// [`DType::bits`]).
    pub fn from_bits(self, bits: u32) -> f64 {
        match self {
            DType::F32 => f64::from(f32::from_bits(bits)),
            DType::F16 => f16::from_bits(bits as u16).to_f64(),
            DType::BF16 => bf16::from_bits(bits as u16).to_f64(),
            DType::F8E4M3 => F8E4M3::from_bits(bits as u8).to_f64(),
            DType::F8E5M2 => F8E5M2::from_bits(bits as u8).to_f64(),
        }
    }

    /// The bit pattern of `x` in this type, after [`DType::round`], in the low bits.
    pub fn bits(self, x: f64) -> u32 {
        match self {
            DType::F32 => (x as f32).to_bits(),
            DType::F16 => u32::from(f16::from_f64(x).to_bits()),
            DType::BF16 => u32::from(bf16::from_f64(x).to_bits()),
            DType::F8E4M3 => u32::from(F8E4M3::from_f64(x).to_bits()),
            DType::F8E5M2 => u32::from(F8E5M2::from_f64(x).to_bits()),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An element a kernel reads or writes.
pub trait Element: DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    const DTYPE: DType;
    fn to_f64(self) -> f64;
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
element!(bf16, DType::BF16, |x| x.to_f64(), |v| bf16::from_f64(v));
element!(F8E4M3, DType::F8E4M3, |x| F8E4M3::to_f64(&x), |v| F8E4M3::from_f64(v));
element!(F8E5M2, DType::F8E5M2, |x| F8E5M2::to_f64(&x), |v| F8E5M2::from_f64(v));

/// Converts a slice to f64 for references and comparisons.
pub fn to_f64_vec<T: Element>(xs: &[T]) -> Vec<f64> {
    use rayon::prelude::*;
    xs.par_iter().map(|x| x.to_f64()).collect()
}
