//! The one table of compiled GEMM kernels: one row per variant, plain data.
//!
//! This file is shared source. `variants.rs` reads it as its `table` module; `build.rs`
//! includes it too and, per row, writes the variant's instantiation file (`<name>.cu` in
//! `OUT_DIR`, compiled with the crate's kernels) and its `extern "C"` declaration. There are
//! no hand-written variant `.cu` files, so a kernel without a row, a row without a kernel, or
//! a kernel compiled with other arguments than its row says cannot exist. Hence only `core`
//! here, nothing of the crate or its dependencies.

/// An input element type a kernel is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    /// IEEE fp32, on FMA units (the universal kernel).
    F32,
    /// fp32 storage read by the tensor cores as tf32 (10-bit mantissa). f32 problems reach
    /// these kernels split into tf32-exact terms (`launch.rs`, 3xTF32), never as they are.
    Tf32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

/// How a kernel organizes its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// One 64x64 tile per CTA, 4 warps, all doing everything (`kernels/gemm/universal.cuh`).
    Universal,
    /// Persistent: a TMA producer warp group and BM/64 consumer warp groups sharing each tile
    /// (`kernels/gemm/kernel_ws.cuh`).
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

/// A CTA's tile of the kernel's `M x N x K` iteration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileShape {
    /// Rows of the output tile.
    pub m: usize,
    /// Columns of the output tile.
    pub n: usize,
    /// Depth of one K step (one pipeline stage).
    pub k: usize,
}

/// One compiled kernel: its whole configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelConfig {
    /// Input element type (the output type is chosen at run time).
    pub input: InputType,
    /// The CTA tile.
    pub tile: TileShape,
    /// Shared-memory pipeline depth (2 for the universal kernel's load/compute overlap).
    pub stages: usize,
    /// Which skeleton the kernel is built on.
    pub schedule: Schedule,
    /// Majorness of (A, B) compiled into a TMA kernel; `None` takes any strides.
    pub majors: Option<(Major, Major)>,
    /// Throughput relative to the 128x256 tile on a problem both fill evenly: the shape
    /// heuristic weighs it against how well the tiles cover the problem. 64x128's 0.74 is
    /// from 4096 x 2112 x 7168 on the H200: its 8 even waves ran 2.8% faster than 128x128's
    /// 4.1 waves, which this model scores at 0.72. 64x256's 0.8 is a first estimate, between
    /// the two; the tile is there for skinny views (M of 64 or less: no padded half tile, and
    /// five stages of 256-wide B in flight).
    pub relative_speed: f64,
}

impl InputType {
    /// Bytes of one stored element.
    pub const fn bytes(self) -> usize {
        match self {
            InputType::F32 | InputType::Tf32 => 4,
            InputType::F16 | InputType::BF16 => 2,
        }
    }
}

impl KernelConfig {
    /// The universal kernel for `input`: any shape, stride and alignment.
    const fn universal(input: InputType) -> Self {
        KernelConfig {
            input,
            tile: TileShape { m: 64, n: 64, k: 32 },
            stages: 2,
            schedule: Schedule::Universal,
            majors: None,
            relative_speed: 0.1,
        }
    }

    /// A TMA + WGMMA warp-specialized kernel with a `bm x bn` tile, 128 bytes of K deep
    /// (one 128-byte swizzle row per stage row: 64 16-bit or 32 tf32 elements).
    const fn sm90(input: InputType, bm: usize, bn: usize, stages: usize, a: Major, b: Major, speed: f64) -> Self {
        KernelConfig {
            input,
            tile: TileShape { m: bm, n: bn, k: 128 / input.bytes() },
            stages,
            schedule: Schedule::WarpSpecializedCooperative,
            majors: Some((a, b)),
            relative_speed: speed,
        }
    }
}

use InputType::{Tf32, BF16, F16, F32};
use Major::{K, MN};

/// Every compiled kernel. Names are derived from the rows (`universal_bf16`,
/// `sm90_bf16_128x256_s4_rc`); so are the launcher symbols (`ckb_gemm_` + name).
pub const TABLE: [KernelConfig; 23] = [
    KernelConfig::universal(F32),
    KernelConfig::universal(F16),
    KernelConfig::universal(BF16),
    //               input  BM   BN  stages A   B  relative speed
    KernelConfig::sm90(BF16, 128, 256, 4, K, K, 1.0),
    KernelConfig::sm90(BF16, 128, 128, 6, K, K, 0.9),
    KernelConfig::sm90(BF16, 64, 128, 8, K, K, 0.74),
    KernelConfig::sm90(BF16, 64, 256, 5, K, K, 0.8),
    KernelConfig::sm90(BF16, 128, 256, 4, K, MN, 1.0),
    KernelConfig::sm90(BF16, 128, 128, 6, K, MN, 0.9),
    KernelConfig::sm90(BF16, 64, 256, 5, K, MN, 0.8),
    KernelConfig::sm90(BF16, 128, 256, 4, MN, MN, 1.0),
    KernelConfig::sm90(BF16, 64, 256, 5, MN, MN, 0.8),
    KernelConfig::sm90(F16, 128, 256, 4, K, K, 1.0),
    KernelConfig::sm90(F16, 128, 128, 6, K, K, 0.9),
    KernelConfig::sm90(F16, 64, 128, 8, K, K, 0.74),
    KernelConfig::sm90(F16, 64, 256, 5, K, K, 0.8),
    KernelConfig::sm90(F16, 128, 256, 4, K, MN, 1.0),
    KernelConfig::sm90(F16, 128, 128, 6, K, MN, 0.9),
    KernelConfig::sm90(F16, 64, 256, 5, K, MN, 0.8),
    KernelConfig::sm90(F16, 128, 256, 4, MN, MN, 1.0),
    KernelConfig::sm90(F16, 64, 256, 5, MN, MN, 0.8),
    // WGMMA reads tf32 K-major only; the split into terms writes both operands K-major. No
    // 128x256: its accumulators and their promotion (mainloop_tma_wgmma.cuh) would spill.
    KernelConfig::sm90(Tf32, 128, 128, 6, K, K, 0.9),
    KernelConfig::sm90(Tf32, 64, 128, 8, K, K, 0.74),
];
