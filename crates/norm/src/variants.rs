//! The one table of compiled kernel variants, and the choice among them.
//!
//! Every op runs on two skeletons (kernels/rows_kernel.cuh), compiled per op, element type
//! and access pattern (16-byte vectors when every row and parameter is 16-byte aligned and
//! the row length a multiple of the pack, element accesses otherwise; chosen by address,
//! not a variant):
//!
//! | variant   | skeleton | a row is held by | rows up to (f32 / halves, forward) |
//! |-----------|----------|------------------|-------------------------------------|
//! | warp-x1   | warp     | a warp, 1 pack of 16 bytes a lane | 128 / 256   |
//! | warp-x2   | warp     | a warp, 2 packs a lane | 256 / 512              |
//! | warp-x4   | warp     | a warp, 4 packs a lane | 512 / 1024             |
//! | warp-x8   | warp     | a warp, 8 packs a lane (f32 forward only) | 1024 |
//! | block     | staged   | one CTA of up to 512 threads, row staged in shared memory | 16384 |
//! | cluster   | staged   | a cluster of 2-16 CTAs, statistics through distributed shared memory (run as a split where no GPC holds the cluster) | 262144 |
//! | split     | staged   | 2+ independent CTAs, statistics through global memory, row read twice | any |
//!
//! A lane or thread holds 32 row elements in forward ops and 16 (per operand) in backward
//! ops, so backward capacities are half the forward ones. [`NormVariant::choose`] takes the
//! first of warp (fewest packs that hold the row), block, cluster, split that holds the row.

use ckb_common::{DType, Gpu, GpuError};
use cudarc::driver::sys::CUdevice_attribute;

use crate::launch::{LAYOUT_CTA_PER_ROW, LAYOUT_WARP_PER_ROW, MODE_CLUSTER, MODE_SPLIT, MODE_WHOLE};
use crate::problem::{NormError, NormOp, NormResult, RowsProblem};

/// How a row operation is laid onto the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormVariant {
    /// One warp per row, `packs` 16-byte packs per lane in registers.
    Warp { packs: usize },
    /// One CTA per row, staged in shared memory.
    Block,
    /// A thread-block cluster per row.
    Cluster,
    /// Several independent CTAs per row, two launches.
    Split,
}

/// Every variant, with the name benches and records use.
pub const NORM_VARIANTS: &[(NormVariant, &str)] = &[
    (NormVariant::Warp { packs: 1 }, "warp-x1"),
    (NormVariant::Warp { packs: 2 }, "warp-x2"),
    (NormVariant::Warp { packs: 4 }, "warp-x4"),
    (NormVariant::Warp { packs: 8 }, "warp-x8"),
    (NormVariant::Block, "block"),
    (NormVariant::Cluster, "cluster"),
    (NormVariant::Split, "split"),
];

/// Row elements a thread holds per operand (`kForwardElems`, `kBackwardElems`).
const FORWARD_ELEMS: usize = 32;
const BACKWARD_ELEMS: usize = 16;
/// Threads per CTA: warp-per-row CTAs (`kWarpRowsPerCta` warps) and the staged kernel's most.
const WARP_ROWS_PER_CTA: usize = 4;
const MAX_THREADS: usize = 512;
/// The largest cluster (16 needs the non-portable cluster size, which H100 allows).
const MAX_CLUSTER: usize = 16;
/// gridDim.y
const MAX_SLOTS: usize = 65535;
/// Hopper's residency limits.
const MAX_THREADS_PER_SM: usize = 2048;
const MAX_CTAS_PER_SM: usize = 32;
/// Backward warp-per-row CTAs write one row of column sums each: cap them at this many per
/// SM so that the sums stay small next to the matrix.
const COLUMN_SUM_CTAS_PER_SM: usize = 8;

/// A variant made concrete for one problem: what the launcher needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormPlan {
    pub variant: NormVariant,
    /// 16-byte packs a thread holds per row operand.
    pub packs: usize,
    /// Threads per CTA.
    pub threads: usize,
    /// CTAs per row: 1, the cluster size or the split count.
    pub parts: usize,
    /// Row slots of the grid (gridDim.y). For the staged variants an upper bound: the
    /// launcher keeps as many as are resident at once.
    pub slots: usize,
}

/// Streaming multiprocessors on the stream's device.
pub(crate) fn sm_count(gpu: &Gpu) -> NormResult<usize> {
    let sms = gpu.ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(GpuError::from)?;
    Ok(sms.max(1) as usize)
}

impl NormVariant {
    pub fn name(self) -> &'static str {
        NORM_VARIANTS.iter().find(|(v, _)| *v == self).map(|(_, n)| *n).expect("every variant is in the table")
    }

    pub fn by_name(name: &str) -> Option<NormVariant> {
        NORM_VARIANTS.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }

    /// The heuristic: a warp with the fewest packs that hold the row, else a CTA, else a
    /// cluster, else a split row.
    pub fn choose(op: NormOp, problem: &RowsProblem, dtype: DType, sm_count: usize) -> NormPlan {
        NORM_VARIANTS
            .iter()
            .find_map(|(v, _)| v.plan(op, problem, dtype, sm_count).ok())
            .expect("split takes any row length")
    }

    /// This variant on `problem`; fails when it cannot hold the row (or, for warp-x8, the
    /// op's register budget has no 8 packs).
    pub fn plan(self, op: NormOp, problem: &RowsProblem, dtype: DType, sm_count: usize) -> NormResult<NormPlan> {
        let pack = 16 / dtype.size_bytes();
        let max_packs = if op.is_forward() { FORWARD_ELEMS } else { BACKWARD_ELEMS } / pack;
        let cols = problem.cols.max(1);
        let rows = problem.rows.max(1);
        let mismatch = |what: String| Err(NormError::VariantMismatch { variant: self.name(), op: op.name(), what });
        // Threads (a multiple of 32) for `parts` CTAs of max_packs packs each to hold the row.
        let threads_for = |parts: usize| (cols.div_ceil(parts * max_packs * pack)).div_ceil(32).max(1) * 32;
        let cta_capacity = MAX_THREADS * max_packs * pack;
        let plan = |packs, threads, parts, slots| Ok(NormPlan { variant: self, packs, threads, parts, slots });
        // The staged kernel's grid is persistent: at most the CTAs that fit on the GPU at
        // once (by the thread limit; the launcher lowers it to the real occupancy).
        let staged_slots = |threads: usize, parts: usize| {
            let per_sm = (MAX_THREADS_PER_SM / threads).min(MAX_CTAS_PER_SM);
            (sm_count.max(1) * per_sm / parts).clamp(1, rows.min(MAX_SLOTS))
        };
        match self {
            NormVariant::Warp { packs } => {
                if packs > max_packs {
                    return mismatch(format!("{dtype}: {packs} packs a lane exceed its register budget of {max_packs}"));
                }
                if cols > 32 * packs * pack {
                    return mismatch(format!("{cols}-element rows ({dtype}): a warp holds {}", 32 * packs * pack));
                }
                let mut slots = rows.div_ceil(WARP_ROWS_PER_CTA).min(MAX_SLOTS);
                if op.column_sums() > 0 {
                    slots = slots.min(sm_count.max(1) * COLUMN_SUM_CTAS_PER_SM);
                }
                plan(packs, 32 * WARP_ROWS_PER_CTA, 1, slots)
            }
            NormVariant::Block => {
                let threads = threads_for(1);
                if threads > MAX_THREADS {
                    return mismatch(format!("{cols}-element rows ({dtype}): a CTA holds {cta_capacity}"));
                }
                plan(max_packs, threads, 1, staged_slots(threads, 1))
            }
            NormVariant::Cluster => {
                let parts = cols.div_ceil(cta_capacity).max(2);
                if parts > MAX_CLUSTER {
                    return mismatch(format!("{cols}-element rows ({dtype}): a cluster holds {}", MAX_CLUSTER * cta_capacity));
                }
                let threads = threads_for(parts);
                plan(max_packs, threads, parts, staged_slots(threads, parts))
            }
            NormVariant::Split => {
                let parts = cols.div_ceil(cta_capacity).max(2);
                let threads = threads_for(parts);
                plan(max_packs, threads, parts, staged_slots(threads, parts))
            }
        }
    }
}

impl NormPlan {
    /// (layout, mode) codes for `RowParams`.
    pub(crate) fn codes(&self) -> (i32, i32) {
        match self.variant {
            NormVariant::Warp { .. } => (LAYOUT_WARP_PER_ROW, MODE_WHOLE),
            NormVariant::Block => (LAYOUT_CTA_PER_ROW, MODE_WHOLE),
            NormVariant::Cluster => (LAYOUT_CTA_PER_ROW, MODE_CLUSTER),
            NormVariant::Split => (LAYOUT_CTA_PER_ROW, MODE_SPLIT),
        }
    }

    /// Floats of per-row partial statistics a split needs (a cluster too: the launcher
    /// runs its parts as a split when no GPC can hold the whole cluster).
    pub fn row_partial_floats(&self, rows: usize) -> usize {
        if matches!(self.variant, NormVariant::Split | NormVariant::Cluster) {
            rows * self.parts * crate::launch::PARTIAL_FLOATS
        } else {
            0
        }
    }

    /// Floats of per-slot column sums a backward op needs.
    pub fn column_partial_floats(&self, op: NormOp, cols: usize) -> usize {
        op.column_sums() * self.slots * cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100_SMS: usize = 132;

    fn choose(op: NormOp, rows: usize, cols: usize, dtype: DType) -> NormPlan {
        NormVariant::choose(op, &RowsProblem::dense(rows, cols), dtype, H100_SMS)
    }

    #[test]
    fn heuristic_on_the_gate_shapes() {
        use NormOp::*;
        // 65536 x 1024: a warp per row.
        assert_eq!(choose(Softmax, 65536, 1024, DType::F32).variant, NormVariant::Warp { packs: 8 });
        assert_eq!(choose(LayerNorm, 65536, 1024, DType::BF16).variant, NormVariant::Warp { packs: 4 });
        // 32768 x 4096: a CTA of 128 threads (f32) or 128 (bf16, 4 packs of 8).
        let p = choose(RmsNorm, 32768, 4096, DType::F32);
        assert_eq!((p.variant, p.threads, p.packs), (NormVariant::Block, 128, 8));
        let p = choose(RmsNorm, 32768, 4096, DType::BF16);
        assert_eq!((p.variant, p.threads, p.packs), (NormVariant::Block, 128, 4));
        // 8192 x 32768: a cluster of 2 CTAs of 512 threads.
        let p = choose(Softmax, 8192, 32768, DType::F32);
        assert_eq!((p.variant, p.parts, p.threads), (NormVariant::Cluster, 2, 512));
        let p = choose(Softmax, 8192, 32768, DType::BF16);
        assert_eq!((p.variant, p.parts, p.threads), (NormVariant::Cluster, 2, 512));
        // 512 x 262144: a cluster of 16.
        let p = choose(LayerNorm, 512, 262144, DType::BF16);
        assert_eq!((p.variant, p.parts, p.threads), (NormVariant::Cluster, 16, 512));
        // Longer rows split.
        let p = choose(Softmax, 4, 1 << 20, DType::F32);
        assert_eq!((p.variant, p.parts, p.threads), (NormVariant::Split, 64, 512));
    }

    #[test]
    fn backward_holds_half() {
        let p = choose(NormOp::LayerNormBackward, 64, 4096, DType::F32);
        assert_eq!((p.variant, p.threads, p.packs), (NormVariant::Block, 256, 4));
        assert_eq!(choose(NormOp::SoftmaxBackward, 64, 512, DType::F32).variant, NormVariant::Warp { packs: 4 });
        assert_eq!(choose(NormOp::SoftmaxBackward, 64, 1024, DType::F32).variant, NormVariant::Block);
        let warp8 = NormVariant::Warp { packs: 8 }.plan(NormOp::RmsNormBackward, &RowsProblem::dense(4, 8), DType::F32, H100_SMS);
        assert!(matches!(warp8, Err(NormError::VariantMismatch { .. })));
    }

    #[test]
    fn every_plan_covers_its_row() {
        for op in NormOp::ALL {
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                for cols in [1, 7, 33, 1000, 4099, 70000, 262144, 1 << 20] {
                    for (variant, _) in NORM_VARIANTS {
                        let Ok(plan) = variant.plan(op, &RowsProblem::dense(3, cols), dtype, H100_SMS) else { continue };
                        let group = if matches!(variant, NormVariant::Warp { .. }) { 32 } else { plan.threads };
                        let pack = 16 / dtype.size_bytes();
                        assert!(plan.parts * group * plan.packs * pack >= cols, "{op:?} {dtype} {cols} {plan:?}");
                        assert!(plan.threads % 32 == 0 && plan.threads <= MAX_THREADS);
                        assert!((1..=MAX_SLOTS).contains(&plan.slots));
                        if *variant == NormVariant::Cluster || *variant == NormVariant::Split {
                            assert!(plan.parts >= 2);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for (v, name) in NORM_VARIANTS {
            assert_eq!(NormVariant::by_name(name), Some(*v));
            assert_eq!(v.name(), *name);
        }
    }
}
