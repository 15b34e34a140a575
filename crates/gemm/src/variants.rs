//! The one table of compiled GEMM kernels, and what each can run.
//!
//! Every row is one `extern "C"` launcher in `kernels/*.cu`. A row is configuration on one
//! of two skeletons:
//! - `universal`: any shape, stride and alignment, f32/f16/bf16 inputs (SM80 tensor cores,
//!   FMA for f32). The fallback for whatever the TMA kernels cannot take.
//! - `sm90_*`: TMA + WGMMA, warp-specialized (producer warp group, cooperative consumer
//!   warp groups), persistent. f16/bf16 inputs; base addresses and leading dimensions
//!   16-byte aligned; the operand majorness is compiled in.
//!
//! All rows write f32, f16 or bf16 output (chosen at run time) with fp32 accumulation.
//! The kernels see `D(M,N) = A(M,K) * B(N,K)^T`; `launch.rs` maps a problem onto that view
//! directly or swapped (`C^T = B^T A^T`), so a `kn` kernel also serves `nk` problems and a
//! 128x256 tile also acts as 256x128.

use std::ffi::c_void;

use ckb_common::DType;

use crate::launch::KernelArgs;

/// How a kernel organizes its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// One 64x64 tile per CTA, 4 warps, all doing everything.
    Universal,
    /// Persistent: a TMA producer warp group and BM/64 consumer warp groups sharing each tile.
    WarpSpecializedCooperative,
}

/// Which dimension of an operand is contiguous in memory, in the kernel's view
/// (A is M x K, B is N x K).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Major {
    /// K contiguous: row-major A, column-major B.
    K,
    /// M (for A) or N (for B) contiguous: column-major A, row-major B.
    MN,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

pub(crate) type Launcher = unsafe extern "C" fn(args: *const KernelArgs, stream: *mut c_void) -> i32;

#[derive(Debug)]
pub struct Variant {
    pub name: &'static str,
    pub input: DType,
    pub tile: TileShape,
    /// Shared-memory pipeline depth (2 for the universal kernel's load/compute overlap).
    pub stages: usize,
    pub schedule: Schedule,
    /// Majorness of (A, B) compiled into a TMA kernel; `None` takes any strides.
    pub majors: Option<(Major, Major)>,
    /// Throughput relative to the 128x256 tile on a problem both fill evenly: the shape
    /// heuristic weighs it against how well the tiles cover the problem.
    pub relative_speed: f64,
    pub(crate) launcher: Launcher,
}

impl Variant {
    /// Output dtypes every variant writes.
    pub const OUTPUTS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    /// Does this kernel need TMA's alignment (16-byte base addresses and leading dimensions)?
    pub fn uses_tma(&self) -> bool {
        self.majors.is_some()
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Declares each launcher and its table row. `universal`: (name, input dtype);
/// `sm90`: (name, input dtype, BM, BN, stages, A major, B major, relative speed).
macro_rules! variant_table {
    (
        universal: [$( ($u_name:ident, $u_dtype:ident) ),* $(,)?],
        sm90: [$( ($name:ident, $dtype:ident, $bm:literal, $bn:literal, $stages:literal, $a:ident, $b:ident, $speed:literal) ),* $(,)?] $(,)?
    ) => {
        extern "C" {
            $( fn $u_name(args: *const KernelArgs, stream: *mut c_void) -> i32; )*
            $( fn $name(args: *const KernelArgs, stream: *mut c_void) -> i32; )*
        }

        static VARIANTS: &[Variant] = &[
            $( Variant {
                name: strip_prefix(stringify!($u_name)),
                input: DType::$u_dtype,
                tile: TileShape { m: 64, n: 64, k: 32 },
                stages: 2,
                schedule: Schedule::Universal,
                majors: None,
                relative_speed: 0.1,
                launcher: $u_name,
            }, )*
            $( Variant {
                name: strip_prefix(stringify!($name)),
                input: DType::$dtype,
                tile: TileShape { m: $bm, n: $bn, k: 64 },
                stages: $stages,
                schedule: Schedule::WarpSpecializedCooperative,
                majors: Some((Major::$a, Major::$b)),
                relative_speed: $speed,
                launcher: $name,
            }, )*
        ];
    };
}

/// `ckb_gemm_sm90_bf16_...` is listed as `sm90_bf16_...`.
const fn strip_prefix(symbol: &'static str) -> &'static str {
    let (_, rest) = symbol.as_bytes().split_at(b"ckb_gemm_".len());
    match std::str::from_utf8(rest) {
        Ok(name) => name,
        Err(_) => panic!("variant symbols are ASCII"),
    }
}

variant_table! {
    universal: [
        (ckb_gemm_universal_f32, F32),
        (ckb_gemm_universal_f16, F16),
        (ckb_gemm_universal_bf16, BF16),
    ],
    sm90: [
        (ckb_gemm_sm90_bf16_128x256_s4_kk, BF16, 128, 256, 4, K, K, 1.0),
        (ckb_gemm_sm90_bf16_128x128_s6_kk, BF16, 128, 128, 6, K, K, 0.9),
        (ckb_gemm_sm90_bf16_64x128_s8_kk, BF16, 64, 128, 8, K, K, 0.55),
        (ckb_gemm_sm90_bf16_128x256_s4_kn, BF16, 128, 256, 4, K, MN, 1.0),
        (ckb_gemm_sm90_bf16_128x128_s6_kn, BF16, 128, 128, 6, K, MN, 0.9),
        (ckb_gemm_sm90_bf16_128x256_s4_nn, BF16, 128, 256, 4, MN, MN, 1.0),
        (ckb_gemm_sm90_f16_128x256_s4_kk, F16, 128, 256, 4, K, K, 1.0),
        (ckb_gemm_sm90_f16_128x128_s6_kk, F16, 128, 128, 6, K, K, 0.9),
        (ckb_gemm_sm90_f16_64x128_s8_kk, F16, 64, 128, 8, K, K, 0.55),
        (ckb_gemm_sm90_f16_128x256_s4_kn, F16, 128, 256, 4, K, MN, 1.0),
        (ckb_gemm_sm90_f16_128x128_s6_kn, F16, 128, 128, 6, K, MN, 0.9),
        (ckb_gemm_sm90_f16_128x256_s4_nn, F16, 128, 256, 4, MN, MN, 1.0),
    ],
}

/// Every compiled variant.
pub fn variants() -> &'static [Variant] {
    VARIANTS
}

/// The variant named `name` (as listed by [`variants`], e.g. `sm90_bf16_128x256_s4_kk`).
pub fn find_variant(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name)
}

/// The fallback for an input dtype.
pub(crate) fn universal_for(input: DType) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.schedule == Schedule::Universal && v.input == input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_findable() {
        for v in variants() {
            assert_eq!(find_variant(v.name).map(|f| f.name), Some(v.name));
            assert_eq!(variants().iter().filter(|w| w.name == v.name).count(), 1, "{}", v.name);
        }
        assert!(find_variant("sm90_bf16_128x256_s4_kk").is_some());
        assert!(find_variant("nope").is_none());
    }

    #[test]
    fn every_input_dtype_has_a_fallback() {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            assert!(universal_for(dtype).is_some(), "{dtype}");
        }
    }

    #[test]
    fn names_match_the_configuration() {
        for v in variants().iter().filter(|v| v.uses_tma()) {
            let (a, b) = v.majors.unwrap();
            let letter = |m: Major| if m == Major::K { 'k' } else { 'n' };
            let expected =
                format!("sm90_{}_{}x{}_s{}_{}{}", v.input, v.tile.m, v.tile.n, v.stages, letter(a), letter(b));
            assert_eq!(v.name, expected);
        }
    }
}
