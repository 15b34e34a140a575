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
//! | block     | staged   | one CTA, the row in shared memory (up to 64 KiB) | 16384 / 32768 |
//! | cluster   | staged   | a cluster of 2-8 CTAs of 32 KiB parts, or up to 16 of 64 KiB; statistics through distributed shared memory (run as a split where no GPC holds the cluster) | 262144 / 524288 |
//! | split     | staged   | 2+ independent CTAs, statistics through global memory, row read twice | any |
//!
//! A warp lane holds 32 row elements in forward ops and 16 (per operand) in backward ops. A
//! staged CTA holds its part in shared memory and takes it through registers 16 elements
//! per thread at a time (a chunk), once for the statistics and again for the outputs;
//! forward CTAs have up to 256 threads, so that three share an SM. Backward parts are one
//! chunk per thread of up to 512 threads (their column sums stay in registers).
//! [`NormVariant::choose`] takes the first of warp (fewest packs that hold the row), block,
//! cluster, split that holds the row.

use ckb_common::DType;

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

/// Row elements a warp lane holds per operand (`kForwardElems`, `kBackwardElems`).
const FORWARD_ELEMS: usize = 32;
const BACKWARD_ELEMS: usize = 16;
/// Row elements a staged thread takes through registers at once (`kChunkElems`).
const CHUNK_ELEMS: usize = 16;
/// A forward staged CTA's part of a row, in bytes: three such CTAs share an SM's 228 KiB.
const FORWARD_PART_BYTES: usize = 64 * 1024;
/// Clusters of up to `SMALL_CLUSTER` CTAs take parts of `CLUSTER_PART_BYTES` (each CTA then
/// keeps two rows in flight); longer rows take full parts, so that the cluster stays within
/// 16 CTAs. Measured on the H100 (ckb bench norm --variant all): 128 KiB f32 rows ran
/// 0.85-0.93 of copy as 4 x 32 KiB and 0.75-0.94 as 2 x 64 KiB; 512 KiB rows ran 0.55-0.76 as
/// 16 x 32 KiB and 0.78-0.89 as 8 x 64 KiB. A row of up to 64 KiB takes one CTA (no cluster
/// barrier), which beat two 32 KiB parts (0.90-0.94 against 0.81-0.94).
const CLUSTER_PART_BYTES: usize = 32 * 1024;
const SMALL_CLUSTER: usize = 8;
/// Row elements a forward staged thread aims at: halves 64 (a 4096-element bf16 row on 64
/// threads ran 0.88-0.92 of copy, on 256 threads 0.59-0.89: more, smaller CTAs per SM
/// overlap more rows' reductions), f32 32 (16 KiB rows on 128 threads: layernorm 0.938 of
/// copy against 0.890 on 256 threads, softmax 0.935 against 0.922, rmsnorm 0.952 both).
const HALF_THREAD_ELEMS: usize = 64;
const F32_THREAD_ELEMS: usize = 32;
/// Threads per CTA: warp-per-row CTAs (`kWarpRowsPerCta` warps), the staged kernel's most
/// (backward; `kStagedMaxThreads`), and the most forward staged CTAs take.
const WARP_ROWS_PER_CTA: usize = 4;
const MAX_THREADS: usize = 512;
const FORWARD_THREADS: usize = 256;

/// The forward staged CTA's shape: the longest part of a row it holds, and its most threads.
/// The defaults are the tuned ones; `CKB_NORM_PART_KIB` and `CKB_NORM_THREADS` override them
/// in tuning runs ([`StagedShape::from_env`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedShape {
    pub part_bytes: usize,
    pub threads: usize,
    /// Row elements a thread aims at; `None`: the tuned ones per type (`HALF_THREAD_ELEMS`,
    /// `F32_THREAD_ELEMS`).
    pub thread_elems: Option<usize>,
}

impl Default for StagedShape {
    fn default() -> Self {
        StagedShape { part_bytes: FORWARD_PART_BYTES, threads: FORWARD_THREADS, thread_elems: None }
    }
}

impl StagedShape {
    /// The defaults, with whichever of `CKB_NORM_PART_KIB` (1..=200), `CKB_NORM_THREADS` (a
    /// multiple of 32 up to 512) and `CKB_NORM_THREAD_ELEMS` (a multiple of 16 up to 1024) the
    /// environment sets; other values are ignored.
    pub fn from_env() -> StagedShape {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok());
        let mut shape = StagedShape::default();
        if let Some(kib) = var("CKB_NORM_PART_KIB").filter(|k| (1..=200).contains(k)) {
            shape.part_bytes = kib * 1024;
        }
        if let Some(threads) = var("CKB_NORM_THREADS").filter(|t| *t >= 32 && *t <= MAX_THREADS && t % 32 == 0) {
            shape.threads = threads;
        }
        if let Some(elems) =
            var("CKB_NORM_THREAD_ELEMS").filter(|e| *e >= CHUNK_ELEMS && *e <= 1024 && e % CHUNK_ELEMS == 0)
        {
            shape.thread_elems = Some(elems);
        }
        shape
    }
}
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
        Self::choose_shaped(op, problem, dtype, sm_count, StagedShape::default())
    }

    /// [`NormVariant::choose`] with forward staged CTAs of `shape`.
    pub fn choose_shaped(
        op: NormOp,
        problem: &RowsProblem,
        dtype: DType,
        sm_count: usize,
        shape: StagedShape,
    ) -> NormPlan {
        NORM_VARIANTS
            .iter()
            .find_map(|(v, _)| v.plan_shaped(op, problem, dtype, sm_count, shape).ok())
            .expect("split takes any row length")
    }

    /// This variant on `problem`; fails when it cannot hold the row (or, for warp-x8, the
    /// op's register budget has no 8 packs).
    pub fn plan(self, op: NormOp, problem: &RowsProblem, dtype: DType, sm_count: usize) -> NormResult<NormPlan> {
        self.plan_shaped(op, problem, dtype, sm_count, StagedShape::default())
    }

    /// [`NormVariant::plan`] with forward staged CTAs of `shape`.
    pub fn plan_shaped(
        self,
        op: NormOp,
        problem: &RowsProblem,
        dtype: DType,
        sm_count: usize,
        shape: StagedShape,
    ) -> NormResult<NormPlan> {
        let pack = 16 / dtype.size_bytes();
        let cols = problem.cols.max(1);
        let rows = problem.rows.max(1);
        let mismatch = |what: String| Err(NormError::VariantMismatch { variant: self.name(), op: op.name(), what });
        let plan = |packs, threads, parts, slots| Ok(NormPlan { variant: self, packs, threads, parts, slots });
        // Staged CTAs: the most elements a part takes, the most threads, the elements a
        // thread aims at, and (threads, packs) for `parts` parts.
        let (part_capacity, max_threads, thread_elems) = if op.is_forward() {
            let tuned = if dtype.size_bytes() >= 4 { F32_THREAD_ELEMS } else { HALF_THREAD_ELEMS };
            let elems = shape.thread_elems.unwrap_or(tuned);
            ((shape.part_bytes / dtype.size_bytes()).max(CHUNK_ELEMS), shape.threads, elems)
        } else {
            (MAX_THREADS * CHUNK_ELEMS, MAX_THREADS, CHUNK_ELEMS)
        };
        let chunk_packs = CHUNK_ELEMS / pack;
        let staged_shape = |parts: usize| {
            let part = cols.div_ceil(parts);
            let threads = (part.div_ceil(thread_elems).div_ceil(32).max(1) * 32).min(max_threads);
            (threads, part.div_ceil(threads * CHUNK_ELEMS) * chunk_packs)
        };
        // The staged kernel's grid is persistent: at most the CTAs that fit on the GPU at
        // once (by the thread limit; the launcher lowers it to the real occupancy).
        let staged_slots = |threads: usize, parts: usize| {
            let per_sm = (MAX_THREADS_PER_SM / threads).min(MAX_CTAS_PER_SM);
            (sm_count.max(1) * per_sm / parts).clamp(1, rows.min(MAX_SLOTS))
        };
        let staged = |parts: usize| {
            let (threads, packs) = staged_shape(parts);
            plan(packs, threads, parts, staged_slots(threads, parts))
        };
        let parts = cols.div_ceil(part_capacity);
        let cluster_parts = {
            let small = cols.div_ceil((CLUSTER_PART_BYTES.min(shape.part_bytes) / dtype.size_bytes()).max(CHUNK_ELEMS));
            if op.is_forward() && small <= SMALL_CLUSTER {
                small
            } else {
                parts
            }
        };
        match self {
            NormVariant::Warp { packs } => {
                let max_packs = if op.is_forward() { FORWARD_ELEMS } else { BACKWARD_ELEMS } / pack;
                if packs > max_packs {
                    return mismatch(format!(
                        "{dtype}: {packs} packs a lane exceed its register budget of {max_packs}"
                    ));
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
                if parts > 1 {
                    return mismatch(format!("{cols}-element rows ({dtype}): a CTA holds {part_capacity}"));
                }
                staged(1)
            }
            NormVariant::Cluster => {
                if cluster_parts > MAX_CLUSTER {
                    return mismatch(format!(
                        "{cols}-element rows ({dtype}): a cluster holds {}",
                        MAX_CLUSTER * part_capacity
                    ));
                }
                staged(cluster_parts.max(2))
            }
            NormVariant::Split => staged(parts.max(2)),
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
        let shape = |p: NormPlan| (p.variant, p.parts, p.threads, p.packs);
        // 65536 x 1024: a warp per row.
        assert_eq!(choose(Softmax, 65536, 1024, DType::F32).variant, NormVariant::Warp { packs: 8 });
        assert_eq!(choose(LayerNorm, 65536, 1024, DType::BF16).variant, NormVariant::Warp { packs: 4 });
        // 32768 x 4096: one CTA, 64 bf16 or 32 f32 elements a thread.
        assert_eq!(shape(choose(RmsNorm, 32768, 4096, DType::F32)), (NormVariant::Block, 1, 128, 8));
        assert_eq!(shape(choose(RmsNorm, 32768, 4096, DType::BF16)), (NormVariant::Block, 1, 64, 8));
        // 8192 x 32768: a 64 KiB bf16 row on one CTA; f32 rows as four 32 KiB parts.
        assert_eq!(shape(choose(Softmax, 8192, 32768, DType::F32)), (NormVariant::Cluster, 4, 256, 8));
        assert_eq!(shape(choose(Softmax, 8192, 32768, DType::BF16)), (NormVariant::Block, 1, 256, 16));
        // 512 x 262144: clusters of 8 (bf16) and 16 (f32) 64 KiB parts.
        assert_eq!(shape(choose(LayerNorm, 512, 262144, DType::BF16)), (NormVariant::Cluster, 8, 256, 16));
        assert_eq!(shape(choose(LayerNorm, 512, 262144, DType::F32)), (NormVariant::Cluster, 16, 256, 16));
        // Longer rows split.
        assert_eq!(shape(choose(Softmax, 4, 1 << 20, DType::F32)), (NormVariant::Split, 64, 256, 16));
    }

    #[test]
    fn backward_holds_one_chunk_per_thread() {
        let p = choose(NormOp::LayerNormBackward, 64, 4096, DType::F32);
        assert_eq!((p.variant, p.threads, p.packs), (NormVariant::Block, 256, 4));
        assert_eq!(choose(NormOp::SoftmaxBackward, 64, 512, DType::F32).variant, NormVariant::Warp { packs: 4 });
        assert_eq!(choose(NormOp::SoftmaxBackward, 64, 1024, DType::F32).variant, NormVariant::Block);
        let p = choose(NormOp::RmsNormBackward, 64, 32768, DType::BF16);
        assert_eq!((p.variant, p.parts, p.threads, p.packs), (NormVariant::Cluster, 4, 512, 2));
        let warp8 = NormVariant::Warp { packs: 8 }.plan(
            NormOp::RmsNormBackward,
            &RowsProblem::dense(4, 8),
            DType::F32,
            H100_SMS,
        );
        assert!(matches!(warp8, Err(NormError::VariantMismatch { .. })));
    }

    #[test]
    fn every_plan_covers_its_row() {
        for op in NormOp::ALL {
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                for cols in [1, 7, 33, 1000, 4099, 70000, 262144, 1 << 20] {
                    for (variant, _) in NORM_VARIANTS {
                        let Ok(plan) = variant.plan(op, &RowsProblem::dense(3, cols), dtype, H100_SMS) else {
                            continue;
                        };
                        let group = if matches!(variant, NormVariant::Warp { .. }) { 32 } else { plan.threads };
                        let pack = 16 / dtype.size_bytes();
                        assert!(plan.parts * group * plan.packs * pack >= cols, "{op:?} {dtype} {cols} {plan:?}");
                        if !matches!(variant, NormVariant::Warp { .. }) {
                            let chunk_packs = CHUNK_ELEMS / pack;
                            assert!(plan.packs % chunk_packs == 0, "{op:?} {dtype} {cols} {plan:?}");
                            assert!(op.is_forward() || plan.packs == chunk_packs, "{op:?} {dtype} {cols} {plan:?}");
                            let part_bytes = group * plan.packs * 16;
                            assert!(
                                !op.is_forward() || part_bytes <= FORWARD_PART_BYTES,
                                "{op:?} {dtype} {cols} {plan:?}"
                            );
                        }
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
